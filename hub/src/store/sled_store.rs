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
use std::path::Path;
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

// Positions of the trees in `SledStore::trees`.
const MESSAGES: usize = 0;
const AUDIT: usize = 1;
const BY_STATE: usize = 2;
const QUEUE: usize = 3;
const COUNTS: usize = 4;
const LISTS: usize = 5;
const BUCKETS: usize = 6;
const TREE_NAMES: [&str; 7] = [
    "messages",
    "audit",
    "idx_state",
    embedded::READY_TREE,
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

    fn after_commit(&self, message: Uuid, queues: impl IntoIterator<Item = String>) {
        let _ = self.changes.send(message);
        for q in queues {
            self.signals.notify(&q);
        }
    }
}

fn recipient_list(ods: &str) -> Vec<u8> {
    [b"R", ods.as_bytes()].concat()
}

fn sender_list(ods: &str) -> Vec<u8> {
    [b"S", ods.as_bytes()].concat()
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

/// A delivery, read from its message's record.
fn tx_delivery(t: &Tx, id: Uuid) -> TxResult<Option<DeliveryRecord>> {
    let Some(message) = lists::tx_get(&t[BUCKETS], HOME_MAP, id.as_bytes())? else {
        return Ok(None);
    };
    kept_in(t[MESSAGES].get(message.as_bytes())?, id).or_else(abort)
}

/// Records a delivery in its message's record, and indexes it.
fn put_delivery(t: &Tx, d: &DeliveryRecord) -> TxResult<()> {
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
            let Some(old) = tx_delivery(t, delivery)? else {
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
            put_delivery(t, &d)?;
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
            let Some(mut orig) = tx_delivery(t, r.original)? else {
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
            put_delivery(t, &orig)?;
            let mut new = r.new.clone();
            new.replay_of = Some(orig.id);
            new.created_ms = now;
            new.updated_ms = now;
            lists::put(&t[BUCKETS], HOME_MAP, new.id.as_bytes(), new.message_id)?;
            put_delivery(t, &new)?;
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
        self.payloads
            .read(&id)
            .map_err(|e| StoreError::Engine(format!("reading the payload of {id}: {e}")))
    }

    fn delivery(&self, id: Uuid) -> Result<Option<DeliveryRecord>, StoreError> {
        match lists::get(self.tree(BUCKETS), HOME_MAP, id.as_bytes())? {
            Some(message) => kept_in(self.tree(MESSAGES).get(message.as_bytes())?, id),
            None => Ok(None),
        }
    }

    fn deliveries_of(&self, message: Uuid) -> Result<Vec<DeliveryRecord>, StoreError> {
        let Some(v) = self.tree(MESSAGES).get(message.as_bytes())? else {
            return Ok(Vec::new());
        };
        Entry::decode(&v)?
            .records
            .iter()
            .map(|(_, r)| dec(r, "delivery"))
            .collect()
    }

    fn audit_of(&self, message: Uuid) -> Result<Vec<AuditEvent>, StoreError> {
        // Events recorded before the message itself come first.
        let mut events = match self.tree(AUDIT).get(message.as_bytes())? {
            Some(v) => timeline_events(&v)?,
            None => Vec::new(),
        };
        if let Some(v) = self.tree(MESSAGES).get(message.as_bytes())? {
            events.extend(timeline_events(&Entry::decode(&v)?.timeline)?);
        }
        Ok(events)
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
            let (_, v) = kv?;
            for e in timeline_events(&v)? {
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
        let key = keys::dedupe(sender_ods, local_id);
        Ok(lists::get(self.tree(BUCKETS), DEDUPE_MAP, &key)?)
    }

    fn payload_candidates(
        &self,
        before_ms: u64,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.payloads
            .candidates(before_ms, after, limit)
            .map_err(|e| StoreError::Engine(format!("listing payload files: {e}")))
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
                if tx_delivery(t, d.id)?.as_ref() != Some(d) {
                    return abort(StoreError::Busy(d.id));
                }
            }
            let Some(len) = on_file else {
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
        self.payloads
            .size(&id)
            .map_err(|e| StoreError::Engine(format!("reading the payload of {id}: {e}")))
    }

    fn delivery_by_transport(&self, transport_id: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(lists::get(
            self.tree(BUCKETS),
            TRANSPORT_MAP,
            transport_id.as_bytes(),
        )?)
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
        // A state index entry's message and recipient, from its value.
        let state_entry = |v: &[u8]| -> Result<(Uuid, String), StoreError> {
            let message = v.get(..16).and_then(|b| Uuid::from_slice(b).ok());
            let message = message.ok_or_else(|| StoreError::Corrupt("state index entry".into()))?;
            Ok((message, String::from_utf8_lossy(&v[16..]).into_owned()))
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
                    let (_, v) = kv?;
                    let (message, recipient) = state_entry(&v)?;
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
    async fn state_counts_follow_every_change_and_survive_reopen() {
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
