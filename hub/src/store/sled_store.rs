//! [`Store`] on sled 0.34: one database per node, one tree per record kind and index, every
//! change one multi-tree transaction, durability by explicit group-committed flushes (sled's
//! background flush is not relied on).

use super::entry::Entry;
use super::keys;
use super::lists;
use super::payloads::PayloadFiles;
use super::{
    Change, Enqueue, ListPage, ListQuery, NewMessage, Replay, Store, StoreError, Submitted,
    UnmatchedAck,
};
use crate::bus::embedded;
use crate::durable::{GroupCommit, Signals};
use crate::track::{now_ms, transition, AuditEvent, DeliveryRecord, DeliveryState, MessageRecord};
use futures::future::BoxFuture;
use serde::{de::DeserializeOwned, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::collections::HashSet;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

// Positions of the trees in `SledStore::txn_trees`.
const MESSAGES: usize = 0;
const PAYLOADS: usize = 1;
const DELIVERIES: usize = 2;
const MSG_DELIVERIES: usize = 3;
const AUDIT: usize = 4;
const BY_STATE: usize = 5;
const BY_RECIPIENT: usize = 6;
const BY_SENDER: usize = 7;
const DEDUPE: usize = 8;
const QUEUE: usize = 9;
const TRANSPORTS: usize = 10;
const COUNTS: usize = 11;
const LISTS: usize = 12;
const BUCKETS: usize = 13;
const TREE_NAMES: [&str; 14] = [
    "messages",
    "payloads",
    "deliveries",
    "message_deliveries",
    "audit",
    "idx_state",
    "idx_recipient",
    "idx_sender",
    "dedupe",
    embedded::READY_TREE,
    "idx_transport",
    "state_counts",
    "lists",
    "buckets",
];

/// Bucketed maps in `buckets` (see `lists`): submissions by sender and local id, deliveries by
/// transport id, and the message whose record keeps a delivery.
const DEDUPE_MAP: u8 = b'D';
const TRANSPORT_MAP: u8 = b'T';
/// Deliveries kept in their message's record, by id: the message.
const HOME_MAP: u8 = b'H';

/// How long [`Store::list_page`] may go on counting once a match past its page is known.
const COUNT_BUDGET: std::time::Duration = std::time::Duration::from_millis(30);

/// Key in `state_counts` saying the counts cover every delivery (set once they are built).
const COUNTS_BUILT: &[u8] = b"built";
/// Entries an index conversion holds in memory at most (whole list chunks).
const CONVERT_BATCH: usize = 4096 * lists::CHUNK;

/// Key in `state_counts` saying an older store's indexes have been converted into lists.
const LISTS_CONVERTED: &[u8] = b"lists";
/// Key in `state_counts` holding the number of messages.
const MESSAGE_COUNT: &[u8] = b"messages";

type Tx = [TransactionalTree];
type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// The sled-backed store.
pub struct SledStore {
    db: sled::Db,
    payloads: Arc<PayloadFiles>,
    trees: Vec<sled::Tree>,
    unmatched: sled::Tree,
    commit: GroupCommit,
    changes: broadcast::Sender<Uuid>,
    signals: Arc<Signals>,
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialise")
}

fn dec<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn unwrap_tx<T>(r: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    })
}

impl SledStore {
    /// Opens (or creates) the store: the database in `dir`, payload files in `payloads`. Must
    /// be called inside a tokio runtime: it starts the group-commit task.
    /// `cache_mb` bounds sled's cache of tree nodes.
    pub fn open(dir: &Path, payloads: &Path, cache_mb: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_mb.max(1) * 1024 * 1024)
            .flush_every_ms(Some(1000))
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Self::from_db(db, payloads)
    }

    /// A store in a temporary database, removed on drop, with payloads in `payloads` (tests).
    #[cfg(test)]
    pub fn temporary(payloads: &Path) -> Result<Self, StoreError> {
        Self::from_db(sled::Config::new().temporary(true).open()?, payloads)
    }

    fn from_db(db: sled::Db, payloads: &Path) -> Result<Self, StoreError> {
        let payloads = Arc::new(PayloadFiles::open(payloads).map_err(|e| {
            StoreError::Engine(format!("payload folder {}: {e}", payloads.display()))
        })?);
        let trees = TREE_NAMES
            .iter()
            .map(|n| db.open_tree(n))
            .collect::<Result<Vec<_>, _>>()?;
        let unmatched = db.open_tree("unmatched_acks")?;
        build_counts(&trees)?;
        convert_indexes(&db, &trees)?;
        let (changes, _) = broadcast::channel(4096);
        let signals = Arc::new(Signals::default());
        Ok(Self {
            commit: GroupCommit::start(db.clone(), signals.clone()),
            payloads,
            db,
            trees,
            unmatched,
            changes,
            signals,
        })
    }

    /// The database, for the embedded bus that shares it.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Wake-ups for embedded bus consumers when work is enqueued or made durable.
    pub fn signals(&self) -> Arc<Signals> {
        self.signals.clone()
    }

    /// The group commit shared with the embedded bus.
    pub fn group_commit(&self) -> GroupCommit {
        self.commit.clone()
    }

    /// Whether sled had to recover on open (the last run did not close cleanly).
    pub fn was_recovered(&self) -> bool {
        self.db.was_recovered()
    }

    fn tree(&self, i: usize) -> &sled::Tree {
        &self.trees[i]
    }

    fn run<T>(&self, f: impl Fn(&Tx) -> TxResult<T>) -> Result<T, StoreError> {
        unwrap_tx(self.trees[..].transaction(|t: &Vec<TransactionalTree>| f(t)))
    }

    /// The id `key` maps to in the bucketed map `kind`, or in the tree `older` where an
    /// older version kept that map.
    fn mapped(&self, kind: u8, key: &[u8], older: usize) -> Result<Option<Uuid>, StoreError> {
        if let Some(id) = lists::get(self.tree(BUCKETS), kind, key)? {
            return Ok(Some(id));
        }
        self.tree(older)
            .get(key)?
            .map(|v| Uuid::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    fn after_commit(&self, message: Uuid, queues: impl IntoIterator<Item = String>) {
        let _ = self.changes.send(message);
        for q in queues {
            self.signals.notify(&q);
        }
    }
}

/// Counts the state index once, for a database written before the counts were kept.
fn build_counts(trees: &[sled::Tree]) -> Result<(), StoreError> {
    if trees[COUNTS].contains_key(COUNTS_BUILT)? {
        return Ok(());
    }
    let counted: Vec<(DeliveryState, u64)> = DeliveryState::ALL
        .into_iter()
        .map(|s| {
            let n = trees[BY_STATE].scan_prefix(keys::state_prefix(s)).count();
            (s, n as u64)
        })
        .collect();
    let messages = trees[MESSAGES].len() as u64;
    // Nothing else writes while the store is being opened.
    for (s, n) in counted {
        trees[COUNTS].insert([s as u8], &n.to_be_bytes())?;
    }
    trees[COUNTS].insert(MESSAGE_COUNT, &messages.to_be_bytes())?;
    trees[COUNTS].insert(COUNTS_BUILT, &[])?;
    Ok(())
}

/// Converts the sender and recipient indexes of a store written before lists (an entry per
/// message or delivery) into lists, once, streaming. A conversion cut short is started again;
/// one finished is marked before the old entries are removed.
fn convert_indexes(db: &sled::Db, trees: &[sled::Tree]) -> Result<(), StoreError> {
    if trees[BY_RECIPIENT].is_empty() && trees[BY_SENDER].is_empty() {
        return Ok(());
    }
    if !trees[COUNTS].contains_key(LISTS_CONVERTED)? {
        // Nothing but a conversion writes lists before it is marked done.
        trees[LISTS].clear()?;
        // `[ODS][0][state][ms][delivery]` and `[ODS][0][ms][message]`: one ODS code's
        // entries are together.
        for (tree, kind, skip) in [(BY_RECIPIENT, b'R', 1), (BY_SENDER, b'S', 0)] {
            let mut name = Vec::new();
            let mut entries: Vec<(u64, Uuid)> = Vec::new();
            let write = |name: &[u8], entries: &mut Vec<(u64, Uuid)>| {
                entries.sort();
                let done = lists::append_all(&trees[LISTS], name, entries);
                entries.clear();
                done
            };
            for kv in trees[tree].iter() {
                let (k, _) = kv?;
                let Some(zero) = k.iter().position(|b| *b == 0) else {
                    continue;
                };
                let rest = k.get(zero + 1 + skip..).unwrap_or_default();
                let (Some(ms), Ok(id)) = (
                    rest.get(..8).and_then(|b| b.try_into().ok()),
                    Uuid::from_slice(rest.get(8..).unwrap_or_default()),
                ) else {
                    continue;
                };
                let this = [&[kind], &k[..zero]].concat();
                if this != name || entries.len() >= CONVERT_BATCH {
                    write(&name, &mut entries)?;
                    name = this;
                }
                entries.push((u64::from_be_bytes(ms), id));
            }
            write(&name, &mut entries)?;
        }
        trees[COUNTS].insert(LISTS_CONVERTED, &[])?;
        db.flush()?;
    }
    trees[BY_RECIPIENT].clear()?;
    trees[BY_SENDER].clear()?;
    db.flush()?;
    Ok(())
}

fn recipient_list(ods: &str) -> Vec<u8> {
    [b"R", ods.as_bytes()].concat()
}

fn sender_list(ods: &str) -> Vec<u8> {
    [b"S", ods.as_bytes()].concat()
}

fn tx_get<T: DeserializeOwned>(
    t: &TransactionalTree,
    key: &[u8],
    what: &str,
) -> TxResult<Option<T>> {
    match t.get(key)? {
        Some(v) => dec(&v, what).map(Some).or_else(abort),
        None => Ok(None),
    }
}

/// Where a delivery's record is kept.
#[derive(Clone, Copy)]
enum Home {
    /// In its message's record (see `entry`).
    Message,
    /// In the deliveries tree, as older versions kept it.
    Tree,
}

/// The delivery `id` if the message record `record` keeps it.
fn kept_in(record: Option<sled::IVec>, id: Uuid) -> Result<Option<DeliveryRecord>, StoreError> {
    match record {
        Some(v) => Entry::record_of(&v, id)?
            .map(|r| dec(r, "delivery"))
            .transpose(),
        None => Ok(None),
    }
}

/// A delivery, and where it is kept.
fn tx_delivery(t: &Tx, id: Uuid) -> TxResult<Option<(DeliveryRecord, Home)>> {
    if let Some(message) = lists::tx_get(&t[BUCKETS], HOME_MAP, id.as_bytes())? {
        let record = t[MESSAGES].get(message.as_bytes())?;
        if let Some(d) = kept_in(record, id).or_else(abort)? {
            return Ok(Some((d, Home::Message)));
        }
    }
    Ok(
        tx_get::<DeliveryRecord>(&t[DELIVERIES], id.as_bytes(), "delivery")?
            .map(|d| (d, Home::Tree)),
    )
}

/// Records a delivery where it is kept, and indexes it.
fn put_delivery(t: &Tx, d: &DeliveryRecord, home: Home) -> TxResult<()> {
    match home {
        Home::Tree => {
            t[DELIVERIES].insert(d.id.as_bytes().as_slice(), enc(d))?;
        }
        Home::Message => {
            let key = d.message_id.as_bytes();
            let Some(v) = t[MESSAGES].get(key)? else {
                return abort(StoreError::Corrupt(format!(
                    "no record of message {}",
                    d.message_id
                )));
            };
            let mut entry = Entry::decode(&v).or_else(abort)?;
            entry.set_record(d.id, enc(d));
            t[MESSAGES].insert(key.as_slice(), entry.encode())?;
        }
    }
    index_delivery(t, d)
}

/// Indexes a current delivery by state (the entry's value names its message and recipient, so
/// listings need not read the delivery) and appends it to its recipient's list, where the
/// entry is current while the delivery's `updated_ms` still matches it.
fn index_delivery(t: &Tx, d: &DeliveryRecord) -> TxResult<()> {
    if d.is_current() {
        let value = [d.message_id.as_bytes(), d.recipient_ods.as_bytes()].concat();
        if t[BY_STATE].insert(keys::by_state(d), value)?.is_none() {
            add_count(t, d.state, 1)?;
        }
        let list = recipient_list(&d.recipient_ods);
        lists::append(&t[LISTS], &list, d.updated_ms, d.id)?;
    }
    Ok(())
}

fn unindex_delivery(t: &Tx, d: &DeliveryRecord) -> TxResult<()> {
    if t[BY_STATE].remove(keys::by_state(d))?.is_some() {
        add_count(t, d.state, -1)?;
    }
    Ok(())
}

fn read_count(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| v.as_ref().try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// Keeps the number of current deliveries in each state, so stats need no scan.
fn add_count(t: &Tx, state: DeliveryState, by: i64) -> TxResult<()> {
    let key = [state as u8];
    let n = read_count(t[COUNTS].get(key)?).saturating_add_signed(by);
    t[COUNTS].insert(&key, &n.to_be_bytes())?;
    Ok(())
}

fn push_event(timeline: &mut Vec<u8>, e: &AuditEvent) {
    serde_json::to_writer(&mut *timeline, e).expect("records serialise");
    timeline.push(b'\n');
}

/// Appends to the message's timeline, the tail of its record (see `entry`). Events of a
/// message with no record go to the audit tree.
fn put_audit(t: &Tx, e: &AuditEvent) -> TxResult<()> {
    let key = e.message_id.as_bytes();
    let (tree, mut record) = match t[MESSAGES].get(key)? {
        // A record in the older layout is rewritten in the current one.
        Some(v) if v.first() == Some(&b'{') => {
            (MESSAGES, Entry::decode(&v).or_else(abort)?.encode())
        }
        Some(v) => (MESSAGES, v.to_vec()),
        None => (
            AUDIT,
            t[AUDIT].get(key)?.map(|v| v.to_vec()).unwrap_or_default(),
        ),
    };
    push_event(&mut record, e);
    t[tree].insert(key.as_slice(), record)?;
    Ok(())
}

/// The events of one entry of the audit tree: a timeline (keyed by the message id alone) or,
/// in stores written before timelines, a single event (keyed by message id and sequence).
fn audit_events(key: &[u8], value: &[u8]) -> Result<Vec<AuditEvent>, StoreError> {
    if key.len() == 16 {
        timeline_events(value)
    } else {
        Ok(vec![dec(value, "audit event")?])
    }
}

/// The events of a timeline (JSON lines).
fn timeline_events(timeline: &[u8]) -> Result<Vec<AuditEvent>, StoreError> {
    timeline
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| dec(line, "audit event"))
        .collect()
}

fn put_enqueue(t: &Tx, e: &Enqueue) -> TxResult<()> {
    embedded::enqueue_in(&t[QUEUE], &e.queue, &e.body, e.due_ms)?;
    Ok(())
}

impl Store for SledStore {
    fn submit(&self, new: NewMessage) -> Result<Submitted, StoreError> {
        let m = &new.message;
        let dedupe = keys::dedupe(&m.sender_ods, &m.local_id);
        // The payload is on file before its message is recorded (see `payloads`).
        self.payloads
            .write(&m.id, &new.payload)
            .map_err(|e| StoreError::Engine(format!("writing the payload of {}: {e}", m.id)))?;
        let mut entry = Entry {
            records: new.deliveries.iter().map(|d| (d.id, enc(d))).collect(),
            message: enc(m),
            ..Entry::default()
        };
        for e in new.audit.iter().filter(|e| e.message_id == m.id) {
            push_event(&mut entry.timeline, e);
        }
        let entry = entry.encode();
        let outcome = self.run(|t| {
            if let Some(id) = lists::tx_get(&t[BUCKETS], DEDUPE_MAP, &dedupe)? {
                return Ok(Submitted::Duplicate(id));
            }
            // Submissions recorded before the bucketed map.
            if let Some(orig) = t[DEDUPE].get(&dedupe)? {
                return match Uuid::from_slice(&orig) {
                    Ok(id) => Ok(Submitted::Duplicate(id)),
                    Err(e) => abort(StoreError::Corrupt(format!("dedupe entry: {e}"))),
                };
            }
            lists::put(&t[BUCKETS], DEDUPE_MAP, &dedupe, m.id)?;
            t[MESSAGES].insert(m.id.as_bytes().as_slice(), entry.as_slice())?;
            let messages = read_count(t[COUNTS].get(MESSAGE_COUNT)?) + 1;
            t[COUNTS].insert(MESSAGE_COUNT, &messages.to_be_bytes())?;
            lists::append(&t[LISTS], &sender_list(&m.sender_ods), m.received_ms, m.id)?;
            for d in &new.deliveries {
                lists::put(&t[BUCKETS], HOME_MAP, d.id.as_bytes(), m.id)?;
                index_delivery(t, d)?;
            }
            for e in new.audit.iter().filter(|e| e.message_id != m.id) {
                put_audit(t, e)?;
            }
            for e in &new.enqueue {
                put_enqueue(t, e)?;
            }
            Ok(Submitted::Created(m.id))
        });
        match &outcome {
            Ok(Submitted::Created(id)) => {
                self.after_commit(*id, new.enqueue.iter().map(|e| e.queue.clone()))
            }
            // Nothing recorded: the payload written for it goes too.
            Ok(Submitted::Duplicate(_)) | Err(_) => {
                let _ = self.payloads.remove(&m.id);
            }
        }
        outcome
    }

    fn apply(&self, delivery: Uuid, change: Change) -> Result<DeliveryRecord, StoreError> {
        let updated = self.run(|t| {
            let Some((old, home)) = tx_delivery(t, delivery)? else {
                return abort(StoreError::NoSuchDelivery(delivery));
            };
            let to = match transition(old.state, change.event) {
                Ok(to) => to,
                Err(e) => return abort(e.into()),
            };
            let now = now_ms().max(old.updated_ms);
            let mut d = old.clone();
            d.state = to;
            d.updated_ms = now;
            if change.count_attempt {
                d.attempts += 1;
            }
            if let Some(err) = &change.error {
                d.last_error = Some(err.clone());
            }
            if let Some((code, reason)) = &change.ack {
                d.ack_code = Some(code.clone());
                d.ack_reason = Some(reason.clone());
            }
            d.next_attempt_ms = change.next_attempt_ms;
            if to == DeliveryState::Sent {
                d.sent_ms = Some(now);
            }
            if let Some(tid) = &change.transport_id {
                d.transport_id = Some(tid.clone());
                lists::put(&t[BUCKETS], TRANSPORT_MAP, tid.as_bytes(), d.id)?;
            }
            if old.is_current() {
                unindex_delivery(t, &old)?;
            }
            put_delivery(t, &d, home)?;
            put_audit(
                t,
                &AuditEvent {
                    at_ms: now,
                    message_id: d.message_id,
                    delivery_id: Some(d.id),
                    event: change.event.as_str().to_string(),
                    from: Some(old.state),
                    to: Some(to),
                    actor: change.actor.clone(),
                    reason: change.reason.clone(),
                },
            )?;
            if let Some(e) = &change.enqueue {
                put_enqueue(t, e)?;
            }
            Ok(d)
        })?;
        self.after_commit(
            updated.message_id,
            change.enqueue.iter().map(|e| e.queue.clone()),
        );
        Ok(updated)
    }

    fn replay(&self, r: Replay) -> Result<DeliveryRecord, StoreError> {
        let new = self.run(|t| {
            let Some((mut orig, home)) = tx_delivery(t, r.original)? else {
                return abort(StoreError::NoSuchDelivery(r.original));
            };
            if let Some(by) = orig.superseded_by {
                return abort(StoreError::AlreadyReplayed(orig.id, by));
            }
            // Checked here, inside the transaction: an ack may have landed since the caller
            // looked.
            if !orig.state.is_replayable() {
                return abort(StoreError::NotReplayable(orig.id, orig.state));
            }
            let now = now_ms();
            unindex_delivery(t, &orig)?;
            orig.superseded_by = Some(r.new.id);
            put_delivery(t, &orig, home)?;
            let mut new = r.new.clone();
            new.replay_of = Some(orig.id);
            new.created_ms = now;
            new.updated_ms = now;
            lists::put(&t[BUCKETS], HOME_MAP, new.id.as_bytes(), new.message_id)?;
            put_delivery(t, &new, Home::Message)?;
            put_audit(
                t,
                &AuditEvent {
                    at_ms: now,
                    message_id: orig.message_id,
                    delivery_id: Some(orig.id),
                    event: "replayed".into(),
                    from: Some(orig.state),
                    to: None,
                    actor: r.actor.clone(),
                    reason: format!("replayed as delivery {}: {}", new.id, r.reason),
                },
            )?;
            put_audit(
                t,
                &AuditEvent {
                    at_ms: now,
                    message_id: new.message_id,
                    delivery_id: Some(new.id),
                    event: "created".into(),
                    from: None,
                    to: Some(new.state),
                    actor: r.actor.clone(),
                    reason: if r.routing.is_empty() {
                        format!("replay of delivery {}", orig.id)
                    } else {
                        format!("replay of delivery {}; {}", orig.id, r.routing)
                    },
                },
            )?;
            if let Some(e) = &r.enqueue {
                put_enqueue(t, e)?;
            }
            Ok(new)
        })?;
        self.after_commit(new.message_id, r.enqueue.iter().map(|e| e.queue.clone()));
        Ok(new)
    }

    fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.run(|t| put_audit(t, &event))?;
        let _ = self.changes.send(event.message_id);
        Ok(())
    }

    fn message(&self, id: Uuid) -> Result<Option<MessageRecord>, StoreError> {
        self.tree(MESSAGES)
            .get(id.as_bytes())?
            .map(|v| dec(Entry::message_of(&v)?, "message"))
            .transpose()
    }

    fn payload(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        match self.payloads.read(&id) {
            Ok(Some(p)) => Ok(Some(p)),
            // Stores written before payloads moved to files keep them in the database.
            Ok(None) => Ok(self.tree(PAYLOADS).get(id.as_bytes())?.map(|v| v.to_vec())),
            Err(e) => Err(StoreError::Engine(format!(
                "reading the payload of {id}: {e}"
            ))),
        }
    }

    fn delivery(&self, id: Uuid) -> Result<Option<DeliveryRecord>, StoreError> {
        if let Some(message) = lists::get(self.tree(BUCKETS), HOME_MAP, id.as_bytes())? {
            if let Some(d) = kept_in(self.tree(MESSAGES).get(message.as_bytes())?, id)? {
                return Ok(Some(d));
            }
        }
        self.tree(DELIVERIES)
            .get(id.as_bytes())?
            .map(|v| dec(&v, "delivery"))
            .transpose()
    }

    fn deliveries_of(&self, message: Uuid) -> Result<Vec<DeliveryRecord>, StoreError> {
        // Deliveries recorded before they were listed in the message's record come first.
        let mut ids = Vec::new();
        for kv in self.tree(MSG_DELIVERIES).scan_prefix(message.as_bytes()) {
            let (k, _) = kv?;
            ids.push(
                keys::trailing_id(&k)
                    .ok_or_else(|| StoreError::Corrupt("message_deliveries key".into()))?,
            );
        }
        let entry = match self.tree(MESSAGES).get(message.as_bytes())? {
            Some(v) => Entry::decode(&v)?,
            None => Entry::default(),
        };
        ids.extend(entry.legacy);
        let mut out = Vec::new();
        for id in ids {
            if let Some(v) = self.tree(DELIVERIES).get(id.as_bytes())? {
                out.push(dec(&v, "delivery")?);
            }
        }
        for (_, r) in &entry.records {
            out.push(dec(r, "delivery")?);
        }
        Ok(out)
    }

    fn audit_of(&self, message: Uuid) -> Result<Vec<AuditEvent>, StoreError> {
        // Events stored one per entry by an older version come first: they are the older.
        let (mut earlier, mut timeline) = (Vec::new(), Vec::new());
        for kv in self.tree(AUDIT).scan_prefix(message.as_bytes()) {
            let (k, v) = kv?;
            let events = audit_events(&k, &v)?;
            if k.len() == 16 {
                timeline = events;
            } else {
                earlier.extend(events);
            }
        }
        earlier.append(&mut timeline);
        if let Some(v) = self.tree(MESSAGES).get(message.as_bytes())? {
            earlier.extend(timeline_events(&Entry::decode(&v)?.timeline)?);
        }
        Ok(earlier)
    }

    fn audit_between(
        &self,
        since_ms: u64,
        until_ms: u64,
        f: &mut dyn FnMut(AuditEvent) -> bool,
    ) -> Result<(), StoreError> {
        // Events are keyed by message: a message received before `since` can have events
        // after it, so the whole tree is read (messages received after `until` are skipped).
        let end = keys::min_id_at(until_ms.saturating_add(1))
            .as_bytes()
            .to_vec();
        for kv in self.tree(AUDIT).range(..end.clone()) {
            let (k, v) = kv?;
            for e in audit_events(&k, &v)? {
                if e.at_ms >= since_ms && e.at_ms <= until_ms && !f(e) {
                    return Ok(());
                }
            }
        }
        for kv in self.tree(MESSAGES).range(..end) {
            let (_, v) = kv?;
            for e in timeline_events(&Entry::decode(&v)?.timeline)? {
                if e.at_ms >= since_ms && e.at_ms <= until_ms && !f(e) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn find_by_local_id(
        &self,
        sender_ods: &str,
        local_id: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        self.mapped(DEDUPE_MAP, &keys::dedupe(sender_ods, local_id), DEDUPE)
    }

    fn payload_candidates(
        &self,
        before_ms: u64,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        let end = keys::min_id_at(before_ms).as_bytes().to_vec();
        let mut out = Vec::new();
        let older = match after {
            Some(a) => self
                .tree(PAYLOADS)
                .range((Bound::Excluded(a.as_bytes().to_vec()), Bound::Excluded(end))),
            None => self.tree(PAYLOADS).range(..end),
        };
        // Payloads kept in the database by an older version, then files.
        for kv in older {
            let (k, _) = kv?;
            if let Ok(id) = Uuid::from_slice(&k) {
                out.push(id);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        let files = self
            .payloads
            .candidates(before_ms, after, limit - out.len())
            .map_err(|e| StoreError::Engine(format!("listing payload files: {e}")))?;
        out.extend(files);
        Ok(out)
    }

    fn purge_payload(
        &self,
        message: Uuid,
        final_deliveries: &[DeliveryRecord],
        event: AuditEvent,
    ) -> Result<Option<u64>, StoreError> {
        let file = |e: std::io::Error| StoreError::Engine(format!("payload of {message}: {e}"));
        if self.message(message)?.is_none() {
            // An orphan: written for a submission that was never recorded. Removed once it is
            // old enough that no submission can still be recording it.
            let orphaned = keys::id_ms(&message) + 600_000 < crate::track::now_ms();
            return match orphaned {
                true => self.payloads.remove(&message).map_err(file).map(|_| None),
                false => Ok(None),
            };
        }
        let on_file = self.payloads.size(&message).map_err(file)?;
        let freed = self.run(|t| {
            for d in final_deliveries {
                let now = tx_delivery(t, d.id)?.map(|(d, _)| d);
                if now.as_ref() != Some(d) {
                    return abort(StoreError::Busy(d.id));
                }
            }
            let in_db = t[PAYLOADS]
                .remove(message.as_bytes())?
                .map(|v| v.len() as u64);
            let Some(len) = in_db.or(on_file) else {
                return Ok(None);
            };
            put_audit(t, &event)?;
            Ok(Some(len))
        })?;
        if freed.is_some() {
            let _ = self.changes.send(message);
        }
        Ok(freed)
    }

    fn release_payload(&self, message: Uuid) -> Result<(), StoreError> {
        self.payloads
            .remove(&message)
            .map(|_| ())
            .map_err(|e| StoreError::Engine(format!("removing the payload of {message}: {e}")))
    }

    fn payload_size(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        match self.payloads.size(&id) {
            Ok(Some(n)) => Ok(Some(n)),
            Ok(None) => Ok(self
                .tree(PAYLOADS)
                .get(id.as_bytes())?
                .map(|v| v.len() as u64)),
            Err(e) => Err(StoreError::Engine(format!(
                "reading the payload of {id}: {e}"
            ))),
        }
    }

    fn delivery_by_transport(&self, transport_id: &str) -> Result<Option<Uuid>, StoreError> {
        self.mapped(TRANSPORT_MAP, transport_id.as_bytes(), TRANSPORTS)
    }

    fn list_page(&self, q: &ListQuery, count_to: usize) -> Result<ListPage, StoreError> {
        let limit = if q.limit == 0 { 100 } else { q.limit };
        let cap = count_to.max(limit + 1);
        let since = q.since_ms.unwrap_or(0);
        let until = q.until_ms.unwrap_or(u64::MAX);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut total = 0usize;
        // Counting past the page reads records the page did not need: it gets a time budget,
        // so a big count costs a listing little (the total is then a lower bound).
        let counting_ends = std::time::Instant::now() + COUNT_BUDGET;
        let mut out_of_time = false;
        // Accepts a candidate message if the filters not used for the scan hold; false once
        // the count has reached `cap` or its time is up.
        let mut examined = 0usize;
        // `None`: an index entry that did not match (it counts against the time budget too).
        let mut take = |id: Option<Uuid>, out: &mut Vec<Uuid>| -> Result<bool, StoreError> {
            examined += 1;
            // Only once a match past the page is known, so `truncated` stays exact.
            if total > limit
                && examined.is_multiple_of(64)
                && std::time::Instant::now() > counting_ends
            {
                out_of_time = true;
                return Ok(false);
            }
            let Some(id) = id else {
                return Ok(true);
            };
            if seen.contains(&id) {
                return Ok(true);
            }
            if q.needs_message() {
                match self.message(id)? {
                    Some(m) if q.accepts(&m) => {}
                    _ => return Ok(true),
                }
            }
            seen.insert(id);
            total += 1;
            if out.len() < limit {
                out.push(id);
            }
            Ok(total < cap)
        };
        // A state index entry's message and recipient: in its value, or (entries written
        // before values were kept) in the delivery.
        let state_entry = |k: &[u8], v: &[u8]| -> Result<Option<(Uuid, String)>, StoreError> {
            if let Some(mid) = v.get(..16).and_then(|b| Uuid::from_slice(b).ok()) {
                return Ok(Some((mid, String::from_utf8_lossy(&v[16..]).into_owned())));
            }
            Ok(keys::trailing_id(k)
                .map(|id| self.delivery(id))
                .transpose()?
                .flatten()
                .map(|d| (d.message_id, d.recipient_ods)))
        };
        enum Scan<'a> {
            State(DeliveryState, Option<&'a str>),
            Recipient(&'a str, Option<DeliveryState>),
            Sender(&'a str),
            Received,
        }
        let scan = match (&q.state, &q.recipient_ods) {
            // Whichever of the two is shorter.
            (Some(state), Some(ods)) => {
                let listed = lists::len(self.tree(LISTS), &recipient_list(ods))?;
                let in_state = read_count(self.tree(COUNTS).get([*state as u8])?);
                match listed <= in_state {
                    true => Scan::Recipient(ods, Some(*state)),
                    false => Scan::State(*state, Some(ods)),
                }
            }
            (Some(state), None) => Scan::State(*state, None),
            (None, Some(ods)) => Scan::Recipient(ods, None),
            (None, None) => match &q.sender_ods {
                Some(sender) => Scan::Sender(sender),
                None => Scan::Received,
            },
        };
        match scan {
            Scan::State(state, ods) => {
                let from = keys::state_prefix_from(state, since);
                let end = match q.until_ms {
                    Some(u) => keys::state_prefix_from(state, u.saturating_add(1)),
                    None => keys::state_prefix(state)
                        .into_iter()
                        .map(|b| b + 1)
                        .collect::<Vec<u8>>(),
                };
                for kv in self.tree(BY_STATE).range(from..end).rev() {
                    let (k, v) = kv?;
                    let Some((message, recipient)) = state_entry(&k, &v)? else {
                        continue;
                    };
                    let matched = ods.is_none_or(|o| o == recipient).then_some(message);
                    if !take(matched, &mut out)? {
                        break;
                    }
                }
            }
            // Lists hold every change, newest last: an entry is current while its delivery
            // was last changed at its time.
            Scan::Recipient(ods, state) => {
                for entry in lists::newest_first(self.tree(LISTS), &recipient_list(ods)) {
                    let (ms, id) = entry?;
                    if ms < since {
                        break;
                    }
                    if ms > until {
                        continue;
                    }
                    let matched = self.delivery(id)?.filter(|d| {
                        d.is_current() && d.updated_ms == ms && state.is_none_or(|s| d.state == s)
                    });
                    if !take(matched.map(|d| d.message_id), &mut out)? {
                        break;
                    }
                }
            }
            Scan::Sender(sender) => {
                for entry in lists::newest_first(self.tree(LISTS), &sender_list(sender)) {
                    let (ms, id) = entry?;
                    if ms < since {
                        break;
                    }
                    if ms <= until && !take(Some(id), &mut out)? {
                        break;
                    }
                }
            }
            Scan::Received => {
                let from = keys::min_id_at(since);
                // Ids are time-ordered: until and after bound the scan itself.
                let mut upper = vec![0xffu8; 17];
                if let Some(u) = q.until_ms {
                    upper = keys::min_id_at(u.saturating_add(1)).as_bytes().to_vec();
                }
                if let Some(a) = q.after {
                    if a.as_bytes().as_slice() < upper.as_slice() {
                        upper = a.as_bytes().to_vec();
                    }
                }
                for kv in self
                    .tree(MESSAGES)
                    .range(from.as_bytes().to_vec()..upper)
                    .rev()
                {
                    let (k, _) = kv?;
                    if let Ok(id) = Uuid::from_slice(&k) {
                        if !take(Some(id), &mut out)? {
                            break;
                        }
                    }
                }
            }
        }
        Ok(ListPage {
            ids: out,
            total: total as u64,
            total_is_lower_bound: total >= cap || out_of_time,
        })
    }

    fn deliveries_in_state(
        &self,
        state: DeliveryState,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        let from = keys::state_prefix(state);
        let end = keys::state_prefix_from(state, before_ms);
        let mut out = Vec::new();
        for kv in self.tree(BY_STATE).range(from..end) {
            if out.len() >= limit {
                break;
            }
            let (k, _) = kv?;
            if let Some(id) = keys::trailing_id(&k) {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn count_by_state(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError> {
        DeliveryState::ALL
            .into_iter()
            .map(|s| Ok((s, read_count(self.tree(COUNTS).get([s as u8])?))))
            .collect()
    }

    fn message_count(&self) -> Result<u64, StoreError> {
        Ok(read_count(self.tree(COUNTS).get(MESSAGE_COUNT)?))
    }

    fn record_unmatched_ack(&self, ack: UnmatchedAck) -> Result<(), StoreError> {
        let id = self.db.generate_id()?;
        self.unmatched.insert(id.to_be_bytes(), enc(&ack))?;
        Ok(())
    }

    fn unmatched_acks(&self, limit: usize) -> Result<Vec<UnmatchedAck>, StoreError> {
        self.unmatched
            .iter()
            .rev()
            .take(limit)
            .map(|kv| {
                let (_, v) = kv?;
                dec(&v, "unmatched ack")
            })
            .collect()
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.commit.flush().await.map_err(StoreError::Engine) })
    }

    fn changes(&self) -> broadcast::Receiver<Uuid> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{self, StoreFactory};
    use std::path::PathBuf;
    use std::time::Duration;

    struct Factory(PathBuf);

    impl StoreFactory for Factory {
        fn open(&self) -> BoxFuture<'_, Arc<dyn Store>> {
            Box::pin(async move { Arc::new(open_in(&self.0).await) as Arc<dyn Store> })
        }
    }

    /// Opens the store kept in `dir` (database and payloads), waiting out a dropped handle's
    /// background tasks, which may still hold the file lock briefly.
    async fn open_in(dir: &std::path::Path) -> SledStore {
        for _ in 0..100 {
            match SledStore::open(&dir.join("db"), &dir.join("payloads"), 8) {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("cannot reopen {}", dir.display())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sled_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        conformance::run_all(&Factory(dir.path().to_path_buf())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn state_counts_follow_every_change_and_are_rebuilt() {
        use crate::track::DeliveryEvent;
        let dir = tempfile::tempdir().unwrap();
        let scanned = |s: &SledStore| -> Vec<(DeliveryState, u64)> {
            DeliveryState::ALL
                .into_iter()
                .map(|st| {
                    let n = s.tree(BY_STATE).scan_prefix(keys::state_prefix(st)).count();
                    (st, n as u64)
                })
                .collect()
        };
        let s = open_in(dir.path()).await;
        let mut first = Vec::new();
        for i in 0..3 {
            let new = conformance::sample("RX1", &format!("C{i}"), &["A81001", "A81002"]);
            first.push(new.deliveries[0].clone());
            s.submit(new).unwrap();
        }
        let step = |d: Uuid, e: DeliveryEvent| s.apply(d, Change::new(e, "t", "")).unwrap();
        step(first[0].id, DeliveryEvent::GaveUp);
        step(first[1].id, DeliveryEvent::Cancel);
        let mut again = first[0].clone();
        again.id = crate::track::new_id();
        s.replay(Replay {
            original: first[0].id,
            new: again,
            actor: "t".into(),
            reason: "t".into(),
            routing: String::new(),
            enqueue: None,
        })
        .unwrap();
        let counts = s.count_by_state().unwrap();
        assert_eq!(counts, scanned(&s), "counts match the index");
        assert_eq!(s.message_count().unwrap(), 3);
        let n = |st| counts.iter().find(|(x, _)| *x == st).unwrap().1;
        assert_eq!(
            (
                n(DeliveryState::Pending),
                n(DeliveryState::Cancelled),
                n(DeliveryState::Failed)
            ),
            (5, 1, 0),
            "the replay took the failed delivery's place"
        );
        // A database from before the counts: they are built on open.
        s.tree(COUNTS).clear().unwrap();
        s.flush().await.unwrap();
        drop(s);
        let s = open_in(dir.path()).await;
        assert_eq!(s.count_by_state().unwrap(), counts);
        assert_eq!(s.message_count().unwrap(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orphaned_and_duplicate_payload_files_do_not_stay() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        let old = keys::min_id_at(now_ms() - 3_600_000);
        let young = crate::track::new_id();
        s.payloads.write(&old, b"o").unwrap();
        s.payloads.write(&young, b"y").unwrap();
        let event = |id| AuditEvent {
            at_ms: now_ms(),
            message_id: id,
            delivery_id: None,
            event: "payload-purged".into(),
            from: None,
            to: None,
            actor: "t".into(),
            reason: "orphaned payload".into(),
        };
        assert_eq!(s.purge_payload(old, &[], event(old)).unwrap(), None);
        assert_eq!(s.purge_payload(young, &[], event(young)).unwrap(), None);
        assert_eq!(s.payload(old).unwrap(), None, "an old orphan is removed");
        assert!(
            s.payload(young).unwrap().is_some(),
            "a submission may still be recording a young one"
        );
        assert!(
            s.audit_of(old).unwrap().is_empty(),
            "not a message: no timeline"
        );
        // A duplicate submission leaves no file behind.
        s.submit(conformance::sample("RX1", "DUP", &["A81001"]))
            .unwrap();
        let dup = conformance::sample("RX1", "DUP", &["A81001"]);
        let dup_id = dup.message.id;
        assert!(matches!(s.submit(dup).unwrap(), Submitted::Duplicate(_)));
        assert_eq!(s.payload(dup_id).unwrap(), None);
        // A purge records itself first; the bytes go when released, after a flush.
        let new = conformance::sample("RX1", "PURGE", &["A81001"]);
        let (mid, deliveries) = (new.message.id, new.deliveries.clone());
        let size = new.payload.len() as u64;
        s.submit(new).unwrap();
        assert_eq!(s.payload_size(mid).unwrap(), Some(size));
        assert_eq!(
            s.purge_payload(mid, &deliveries, event(mid)).unwrap(),
            Some(size)
        );
        assert!(
            s.payload(mid).unwrap().is_some(),
            "still there until released"
        );
        assert!(s
            .audit_of(mid)
            .unwrap()
            .iter()
            .any(|e| e.event == "payload-purged"));
        s.release_payload(mid).unwrap();
        assert_eq!(s.payload(mid).unwrap(), None);
        assert_eq!(s.payload_size(mid).unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timelines_stored_one_event_per_entry_still_read_in_order() {
        use crate::track::DeliveryEvent;
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        let new = conformance::sample("RX1", "LEGACY", &["A81001"]);
        let (mid, did) = (new.message.id, new.deliveries[0].id);
        // As an older version stored them: an entry per event, keyed by message and sequence.
        for (seq, what) in ["imported", "noted"].into_iter().enumerate() {
            let e = AuditEvent {
                at_ms: seq as u64 + 1,
                message_id: mid,
                delivery_id: None,
                event: what.into(),
                from: None,
                to: None,
                actor: "older version".into(),
                reason: String::new(),
            };
            s.tree(AUDIT)
                .insert(keys::audit(mid, seq as u64), enc(&e))
                .unwrap();
        }
        s.submit(new).unwrap();
        s.apply(did, Change::new(DeliveryEvent::Cancel, "t", ""))
            .unwrap();
        let events: Vec<String> = s
            .audit_of(mid)
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        let cancelled = DeliveryEvent::Cancel.as_str().to_string();
        assert_eq!(
            events,
            ["imported", "noted", "received", cancelled.as_str()]
        );
        assert_eq!(s.tree(AUDIT).len(), 2, "the old entries stay as they were");
        let record =
            Entry::decode(&s.tree(MESSAGES).get(mid.as_bytes()).unwrap().unwrap()).unwrap();
        assert_eq!(
            timeline_events(&record.timeline).unwrap().len(),
            2,
            "the new events are in the message's record"
        );
        let mut exported = Vec::new();
        s.audit_between(0, u64::MAX, &mut |e| {
            exported.push(e.event);
            true
        })
        .unwrap();
        exported.sort();
        let mut all = events.clone();
        all.sort();
        assert_eq!(exported, all);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_in_the_older_layout_are_read_and_their_indexes_converted() {
        use crate::track::DeliveryEvent;
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        // A message as an older version recorded it: the message JSON alone, and an entry of
        // its own in each index.
        let new = conformance::sample("RX1", "OLD", &["A81001"]);
        let m = new.message.clone();
        let mut d = new.deliveries[0].clone();
        d.transport_id = Some("MESH-OLD".into());
        let put = |tree: usize, k: &[u8], v: &[u8]| {
            s.tree(tree).insert(k, v).unwrap();
        };
        put(MESSAGES, m.id.as_bytes(), &enc(&m));
        put(DELIVERIES, d.id.as_bytes(), &enc(&d));
        put(MSG_DELIVERIES, &keys::msg_delivery(m.id, d.id), &[]);
        put(DEDUPE, &keys::dedupe("RX1", "OLD"), m.id.as_bytes());
        put(TRANSPORTS, b"MESH-OLD", d.id.as_bytes());
        put(BY_STATE, &keys::by_state(&d), &[]);
        let at = d.updated_ms.to_be_bytes();
        put(
            BY_RECIPIENT,
            &[b"A81001\0", &[d.state as u8][..], &at, d.id.as_bytes()].concat(),
            &[],
        );
        let at = m.received_ms.to_be_bytes();
        put(
            BY_SENDER,
            &[b"RX1\0", &at[..], m.id.as_bytes()].concat(),
            &[],
        );
        s.tree(COUNTS).clear().unwrap();
        // What a conversion cut short would have left: it is done again from the start.
        lists::append_all(s.tree(LISTS), b"RA81001", &[(1, crate::track::new_id())]).unwrap();
        s.flush().await.unwrap();
        drop(s);

        let s = open_in(dir.path()).await;
        assert!(s.tree(BY_RECIPIENT).is_empty() && s.tree(BY_SENDER).is_empty());
        assert_eq!(lists::len(s.tree(LISTS), b"RA81001").unwrap(), 1);
        assert_eq!(lists::len(s.tree(LISTS), b"SRX1").unwrap(), 1);
        assert_eq!(s.message(m.id).unwrap(), Some(m.clone()));
        assert_eq!(s.deliveries_of(m.id).unwrap(), vec![d.clone()]);
        assert_eq!(s.find_by_local_id("RX1", "OLD").unwrap(), Some(m.id));
        assert_eq!(s.delivery_by_transport("MESH-OLD").unwrap(), Some(d.id));
        let listed = |q: ListQuery| s.list(&q).unwrap().0;
        let by = |state: Option<DeliveryState>, to: Option<&str>, from: Option<&str>| ListQuery {
            state,
            recipient_ods: to.map(String::from),
            sender_ods: from.map(String::from),
            ..Default::default()
        };
        for q in [
            by(Some(d.state), None, None),
            by(None, Some("A81001"), None),
            by(Some(d.state), Some("A81001"), None),
            by(None, None, Some("RX1")),
        ] {
            assert_eq!(listed(q.clone()), vec![m.id], "{q:?}");
        }
        assert_eq!(listed(by(None, Some("A81002"), None)), Vec::<Uuid>::new());
        let again = conformance::sample("RX1", "OLD", &["A81001"]);
        assert_eq!(s.submit(again).unwrap(), Submitted::Duplicate(m.id));

        // Changes to the old message are recorded in the current layout.
        s.apply(d.id, Change::new(DeliveryEvent::GaveUp, "t", ""))
            .unwrap();
        let mut second = d.clone();
        second.id = crate::track::new_id();
        second.transport_id = None;
        s.replay(Replay {
            original: d.id,
            new: second.clone(),
            actor: "t".into(),
            reason: "t".into(),
            routing: String::new(),
            enqueue: None,
        })
        .unwrap();
        let now: Vec<Uuid> = s
            .deliveries_of(m.id)
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(now, vec![d.id, second.id]);
        assert_eq!(
            listed(by(Some(DeliveryState::Failed), None, None)),
            Vec::<Uuid>::new()
        );
        assert_eq!(
            listed(by(Some(second.state), Some("A81001"), None)),
            vec![m.id]
        );
        let events: Vec<String> = s
            .audit_of(m.id)
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(s.message(m.id).unwrap(), Some(m));
        // The old delivery was changed where it was; its replay is kept in the record.
        let old = dec::<DeliveryRecord>(
            &s.tree(DELIVERIES).get(d.id.as_bytes()).unwrap().unwrap(),
            "d",
        )
        .unwrap();
        assert_eq!(old.superseded_by, Some(second.id));
        assert_eq!(s.delivery(d.id).unwrap(), Some(old));
        assert!(s
            .tree(DELIVERIES)
            .get(second.id.as_bytes())
            .unwrap()
            .is_none());
        assert_eq!(
            s.delivery(second.id).unwrap().unwrap().replay_of,
            Some(d.id)
        );
    }

    /// A message and its deliveries are one record: changes and replays rewrite it, and no
    /// delivery has a record of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_are_kept_in_their_messages_record() {
        use crate::track::DeliveryEvent;
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        let new = conformance::sample("RX1", "ONE", &["A81001", "A81002"]);
        let m = new.message.id;
        let (a, b) = (new.deliveries[0].clone(), new.deliveries[1].clone());
        s.submit(new).unwrap();
        s.apply(a.id, Change::new(DeliveryEvent::TransportAccepted, "t", ""))
            .unwrap();
        s.apply(a.id, Change::new(DeliveryEvent::ReceiverReject, "t", ""))
            .unwrap();
        let mut again = a.clone();
        again.id = crate::track::new_id();
        s.replay(Replay {
            original: a.id,
            new: again.clone(),
            actor: "t".into(),
            reason: "t".into(),
            routing: String::new(),
            enqueue: None,
        })
        .unwrap();
        assert!(s.tree(DELIVERIES).is_empty());
        assert_eq!(s.tree(MESSAGES).len(), 1);
        let record = Entry::decode(&s.tree(MESSAGES).get(m.as_bytes()).unwrap().unwrap()).unwrap();
        let kept: Vec<Uuid> = record.records.iter().map(|(id, _)| *id).collect();
        assert_eq!(kept, vec![a.id, b.id, again.id]);
        let now = s.delivery(a.id).unwrap().unwrap();
        assert_eq!(
            (now.state, now.superseded_by),
            (DeliveryState::Rejected, Some(again.id))
        );
        assert_eq!(s.delivery(b.id).unwrap().unwrap().state, b.state);
        assert_eq!(s.delivery(again.id).unwrap().unwrap().replay_of, Some(a.id));
        let all: Vec<Uuid> = s.deliveries_of(m).unwrap().iter().map(|d| d.id).collect();
        assert_eq!(all, kept);
        assert_eq!(s.delivery(crate::track::new_id()).unwrap(), None);
        assert!(matches!(
            s.apply(
                crate::track::new_id(),
                Change::new(DeliveryEvent::TransportAccepted, "t", "")
            ),
            Err(StoreError::NoSuchDelivery(_))
        ));
        // Written by the previous version: the deliveries' ids in the record, their records
        // in the deliveries tree. They are read and changed there.
        let old = conformance::sample("RX1", "LAYOUT1", &["A81004"]);
        let (om, od) = (old.message.clone(), old.deliveries[0].clone());
        let mut bytes = vec![1u8, 0, 1];
        bytes.extend_from_slice(od.id.as_bytes());
        let json = enc(&om);
        bytes.extend_from_slice(&(json.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&json);
        s.tree(MESSAGES).insert(om.id.as_bytes(), bytes).unwrap();
        s.tree(DELIVERIES)
            .insert(od.id.as_bytes(), enc(&od))
            .unwrap();
        assert_eq!(s.deliveries_of(om.id).unwrap(), vec![od.clone()]);
        assert_eq!(s.message(om.id).unwrap(), Some(om.clone()));
        s.apply(
            od.id,
            Change::new(DeliveryEvent::TransportAccepted, "t", ""),
        )
        .unwrap();
        assert_eq!(
            s.delivery(od.id).unwrap().unwrap().state,
            DeliveryState::Sent
        );
        assert_eq!(
            s.deliveries_of(om.id).unwrap()[0].state,
            DeliveryState::Sent
        );
        assert_eq!(s.audit_of(om.id).unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sender_and_recipient_listings_are_newest_first_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        // Recorded in an order other than their times' (as when clocks step back or changes
        // commit in another order than they were stamped), over several list chunks.
        let n = 5 * lists::CHUNK as u64;
        let base = now_ms() - 3_600_000;
        let mut ids = Vec::new();
        for i in 0..n {
            let at = base + (i * 37 % n) * 1000;
            let mut new = conformance::sample("RX1", &format!("ORDER-{i}"), &["A81001"]);
            new.message.received_ms = at;
            for d in &mut new.deliveries {
                d.updated_ms = at;
                d.created_ms = at;
            }
            ids.push((at, new.message.id));
            s.submit(new).unwrap();
        }
        ids.sort_by(|a, b| b.cmp(a));
        let since = base + n / 3 * 1000;
        let want: Vec<Uuid> = ids
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|x| x.1)
            .collect();
        let pending = conformance::sample("RX1", "-", &["A81001"]).deliveries[0].state;
        for q in [
            ListQuery {
                recipient_ods: Some("A81001".into()),
                ..Default::default()
            },
            ListQuery {
                sender_ods: Some("RX1".into()),
                ..Default::default()
            },
            ListQuery {
                recipient_ods: Some("A81001".into()),
                state: Some(pending),
                ..Default::default()
            },
        ] {
            let all = ListQuery {
                limit: 1000,
                ..q.clone()
            };
            let got = s.list(&all).unwrap().0;
            assert_eq!(got, ids.iter().map(|x| x.1).collect::<Vec<_>>(), "{q:?}");
            let recent = ListQuery {
                since_ms: Some(since),
                limit: 1000,
                ..q.clone()
            };
            assert_eq!(s.list(&recent).unwrap().0, want, "{q:?} since");
            let page = ListQuery {
                since_ms: Some(since),
                limit: 5,
                ..q.clone()
            };
            let page = s.list_page(&page, 10_000).unwrap();
            assert_eq!(page.ids, want[..5], "{q:?} first page");
            assert_eq!(page.total, want.len() as u64, "{q:?} total");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submit_enqueues_work_in_the_same_transaction() {
        use crate::bus::{embedded::EmbeddedBus, Bus};
        let payloads = tempfile::tempdir().unwrap();
        let s = SledStore::temporary(payloads.path()).unwrap();
        let bus = EmbeddedBus::open(s.db(), s.signals(), s.group_commit(), 5).unwrap();
        let mut new = conformance::sample("RX1", "L1", &["A81001"]);
        new.enqueue.push(Enqueue {
            queue: "work".into(),
            body: b"d1".to_vec(),
            due_ms: 0,
        });
        let waiter = tokio::spawn(async move {
            let item = bus.receive("work").await.unwrap();
            item.body
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.submit(new.clone()).unwrap();
        assert_eq!(waiter.await.unwrap(), b"d1", "a waiting consumer is woken");
        // A duplicate enqueues nothing.
        let bus = EmbeddedBus::open(s.db(), s.signals(), s.group_commit(), 5).unwrap();
        let mut dup = conformance::sample("RX1", "L1", &["A81001"]);
        dup.enqueue = new.enqueue.clone();
        s.submit(dup).unwrap();
        assert_eq!(
            bus.depth("work").await.unwrap(),
            1,
            "only the in-flight original"
        );
    }
}
