//! [`Store`] on sled 0.34: one database per node, one tree per record kind and index, every
//! change one multi-tree transaction (changes made at the same moment share one, see
//! [`batch`]), durability by explicit group-committed flushes (sled's
//! background flush is not relied on).
//!
//! The layout is in [`schema`], the transactions in [`write`], the reads in [`query`]; this
//! module opens the database and answers the [`Store`] trait from them.

mod batch;
mod query;
mod schema;
#[cfg(test)]
mod tests;
mod write;

use super::payload_log::{PayloadAt, PayloadLog};
use super::payloads::PayloadFiles;
use super::{
    Change, ListPage, ListQuery, NewMessage, Replay, Store, StoreError, Submitted, UnmatchedAck,
};
use crate::durable::{FileSync, GroupCommit, Signals, Watermark};
use crate::track::{AuditEvent, DeliveryRecord, DeliveryState, MessageRecord};
use futures::future::BoxFuture;
use schema::{unwrap_tx, Tx, TxResult, QUEUE, TREE_NAMES};
use sled::transaction::TransactionalTree;
use sled::Transactional;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

/// The sled-backed store.
pub struct SledStore {
    db: sled::Db,
    /// Payloads kept as files of their own by earlier releases.
    payloads: Arc<PayloadFiles>,
    log: Arc<PayloadLog>,
    /// Payloads purged (their records say so) whose space is still to be given back.
    purged: std::sync::Mutex<std::collections::HashMap<Uuid, PayloadAt>>,
    trees: Vec<sled::Tree>,
    unmatched: sled::Tree,
    /// Other nodes' claims on local ids (by `keys::dedupe`), and the same by receipt time.
    claims: sled::Tree,
    claims_by_time: sled::Tree,
    commit: GroupCommit,
    /// The writer that commits concurrent changes together.
    batch: Arc<batch::Batcher>,
    files: FileSync,
    changes: broadcast::Sender<Uuid>,
    signals: Arc<Signals>,
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

    fn from_db(db: sled::Db, dir: &Path) -> Result<Self, StoreError> {
        let payloads =
            Arc::new(PayloadFiles::open(dir).map_err(|e| {
                StoreError::Engine(format!("payload folder {}: {e}", dir.display()))
            })?);
        let log_dir = dir.join("log");
        let log =
            Arc::new(PayloadLog::open(&log_dir).map_err(|e| {
                StoreError::Engine(format!("payload log {}: {e}", log_dir.display()))
            })?);
        let trees = TREE_NAMES
            .iter()
            .map(|n| db.open_tree(n))
            .collect::<Result<Vec<_>, _>>()?;
        let unmatched = db.open_tree("unmatched_acks")?;
        let claims = db.open_tree("claims")?;
        let claims_by_time = db.open_tree("claims_by_time")?;
        let (changes, _) = broadcast::channel(4096);
        let signals = Arc::new(Signals::default());
        let batch = Arc::new(batch::Batcher::start(trees.clone())?);
        let writer = batch.clone();
        let watermark: Watermark = Arc::new(move || {
            let writer = writer.clone();
            Box::pin(async move {
                writer
                    .run(|t| Ok(t[QUEUE].generate_id()?))
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        Ok(Self {
            commit: GroupCommit::start_with(db.clone(), signals.clone(), watermark),
            batch,
            files: FileSync::start(),
            payloads,
            log,
            purged: Default::default(),
            db,
            trees,
            unmatched,
            claims,
            claims_by_time,
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

    /// The file syncer shared with the file transports.
    pub fn file_sync(&self) -> FileSync {
        self.files.clone()
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

impl Store for SledStore {
    fn submit(&self, new: NewMessage) -> BoxFuture<'_, Result<Submitted, StoreError>> {
        Box::pin(write::submit(self, new))
    }

    fn apply(&self, delivery: Uuid, change: Change) -> Result<DeliveryRecord, StoreError> {
        write::apply(self, delivery, change)
    }

    fn apply_batched(
        &self,
        delivery: Uuid,
        change: Change,
    ) -> BoxFuture<'_, Result<DeliveryRecord, StoreError>> {
        Box::pin(write::apply_batched(self, delivery, change))
    }

    fn replay(&self, r: Replay) -> Result<DeliveryRecord, StoreError> {
        write::replay(self, r)
    }

    fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        write::audit(self, event)
    }

    fn message(&self, id: Uuid) -> Result<Option<MessageRecord>, StoreError> {
        query::message(self, id)
    }

    fn payload(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        query::payload(self, id)
    }

    fn delivery(&self, id: Uuid) -> Result<Option<DeliveryRecord>, StoreError> {
        query::delivery(self, id)
    }

    fn deliveries_of(&self, message: Uuid) -> Result<Vec<DeliveryRecord>, StoreError> {
        query::deliveries_of(self, message)
    }

    fn audit_of(&self, message: Uuid) -> Result<Vec<AuditEvent>, StoreError> {
        query::audit_of(self, message)
    }

    fn audit_between(
        &self,
        since_ms: u64,
        until_ms: u64,
        f: &mut dyn FnMut(AuditEvent) -> bool,
    ) -> Result<(), StoreError> {
        query::audit_between(self, since_ms, until_ms, f)
    }

    fn find_by_local_id(
        &self,
        sender_ods: &str,
        local_id: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        query::find_by_local_id(self, sender_ods, local_id)
    }

    fn payload_candidates(
        &self,
        before_ms: u64,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        query::payload_candidates(self, before_ms, after, limit)
    }

    fn purge_payload(
        &self,
        message: Uuid,
        final_deliveries: &[DeliveryRecord],
        event: AuditEvent,
    ) -> Result<Option<u64>, StoreError> {
        write::purge_payload(self, message, final_deliveries, event)
    }

    fn release_payload(&self, message: Uuid) -> Result<(), StoreError> {
        write::release_payload(self, message)
    }

    fn payload_size(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        query::payload_size(self, id)
    }

    fn payload_segments(&self, before_ms: u64) -> Result<Vec<u64>, StoreError> {
        query::payload_segments(self, before_ms)
    }

    fn segment_payloads(&self, segment: u64) -> Result<Vec<Uuid>, StoreError> {
        query::segment_payloads(self, segment)
    }

    fn remove_segment(&self, segment: u64) -> Result<Option<u64>, StoreError> {
        write::remove_segment(self, segment)
    }

    fn delivery_by_transport(&self, transport_id: &str) -> Result<Option<Uuid>, StoreError> {
        query::delivery_by_transport(self, transport_id)
    }

    fn list_page(&self, q: &ListQuery, count_to: usize) -> Result<ListPage, StoreError> {
        query::list_page(self, q, count_to)
    }

    fn deliveries_in_state(
        &self,
        state: DeliveryState,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError> {
        query::deliveries_in_state(self, state, before_ms, limit)
    }

    fn messages_since(
        &self,
        since_ms: u64,
        f: &mut dyn FnMut(MessageRecord, Vec<DeliveryRecord>) -> bool,
    ) -> Result<(), StoreError> {
        query::messages_since(self, since_ms, f)
    }

    fn count_by_state(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError> {
        query::count_by_state(self)
    }

    fn message_count(&self) -> Result<u64, StoreError> {
        query::message_count(self)
    }

    fn record_unmatched_ack(&self, ack: UnmatchedAck) -> Result<(), StoreError> {
        write::record_unmatched_ack(self, ack)
    }

    fn unmatched_acks(&self, limit: usize) -> Result<Vec<UnmatchedAck>, StoreError> {
        query::unmatched_acks(self, limit)
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.commit.flush().await.map_err(StoreError::Engine) })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.db
                .insert(b"health-probe", &crate::track::now_ms().to_be_bytes())?;
            self.commit.flush().await.map_err(StoreError::Engine)
        })
    }

    fn record_claim(
        &self,
        claim: &crate::bus::messages::LocalIdClaim,
    ) -> Result<super::ClaimSeen, StoreError> {
        let key = super::keys::dedupe(&claim.sender_ods, &claim.local_id);
        if let Some(own) = query::find_by_local_id(self, &claim.sender_ods, &claim.local_id)? {
            if own != claim.message_id {
                return Ok(super::ClaimSeen::Conflict(own));
            }
            return Ok(super::ClaimSeen::Known);
        }
        let previous = self.claims.insert(&key, claim.encode())?;
        let when = [&claim.received_ms.to_be_bytes()[..], &key].concat();
        self.claims_by_time.insert(when, &[])?;
        self.commit.request();
        Ok(match previous {
            Some(_) => super::ClaimSeen::Known,
            None => super::ClaimSeen::New,
        })
    }

    fn claim_of(
        &self,
        sender_ods: &str,
        local_id: &str,
    ) -> Result<Option<crate::bus::messages::LocalIdClaim>, StoreError> {
        let key = super::keys::dedupe(sender_ods, local_id);
        match self.claims.get(key)? {
            None => Ok(None),
            Some(v) => crate::bus::messages::LocalIdClaim::decode(&v)
                .map(Some)
                .map_err(StoreError::Corrupt),
        }
    }

    fn prune_claims(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for entry in self
            .claims_by_time
            .range(..before_ms.to_be_bytes().to_vec())
        {
            let (when, _) = entry?;
            self.claims.remove(&when[8..])?;
            self.claims_by_time.remove(&when)?;
            n += 1;
        }
        if n > 0 {
            self.commit.request();
        }
        Ok(n)
    }

    fn marker(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.db.contains_key([b"marker:", key].concat())?)
    }

    fn set_marker(&self, key: &[u8]) -> Result<(), StoreError> {
        self.db.insert([b"marker:", key].concat(), &[1u8])?;
        self.commit.request();
        Ok(())
    }

    fn changes(&self) -> broadcast::Receiver<Uuid> {
        self.changes.subscribe()
    }
}
