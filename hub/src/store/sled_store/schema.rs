//! The database's layout: its trees, the bucketed maps and count keys inside them, and how
//! records are encoded. Key layouts are in `keys`, a message's record in `entry`, lists and
//! bucketed maps in `lists`.

use crate::bus::embedded;
use crate::store::entry::Entry;
use crate::store::StoreError;
use crate::track::{AuditEvent, DeliveryRecord};
use serde::{de::DeserializeOwned, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use uuid::Uuid;

// Positions of the trees in `SledStore::trees`.
pub(super) const MESSAGES: usize = 0;
pub(super) const AUDIT: usize = 1;
pub(super) const BY_STATE: usize = 2;
pub(super) const QUEUE: usize = 3;
pub(super) const COUNTS: usize = 4;
pub(super) const LISTS: usize = 5;
pub(super) const BUCKETS: usize = 6;
pub(super) const TREE_NAMES: [&str; 7] = [
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
pub(super) const DEDUPE_MAP: u8 = b'D';
pub(super) const TRANSPORT_MAP: u8 = b'T';
/// Deliveries kept in their message's record, by id: the message (for deliveries whose id does
/// not name it, see `track::delivery_id`).
pub(super) const HOME_MAP: u8 = b'H';

/// Key in `state_counts` holding the number of messages.
pub(super) const MESSAGE_COUNT: &[u8] = b"messages";

pub(super) type Tx = [TransactionalTree];
pub(super) type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

pub(super) fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialise")
}

pub(super) fn dec<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

pub(super) fn unwrap_tx<T>(r: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    })
}

pub(super) fn recipient_list(ods: &str) -> Vec<u8> {
    [b"R", ods.as_bytes()].concat()
}

pub(super) fn sender_list(ods: &str) -> Vec<u8> {
    [b"S", ods.as_bytes()].concat()
}

/// True when `transport_id` is the delivery `id` itself, as written everywhere (hyphenated,
/// lower case): such transport ids are not kept in the transport map.
pub(super) fn names_itself(transport_id: &str, id: Uuid) -> bool {
    let mut buf = Uuid::encode_buffer();
    transport_id == id.hyphenated().encode_lower(&mut buf)
}

/// The delivery `id` if the message record `record` keeps it.
pub(super) fn kept_in(
    record: Option<sled::IVec>,
    id: Uuid,
) -> Result<Option<DeliveryRecord>, StoreError> {
    match record {
        Some(v) => Entry::record_of(&v, id)?
            .map(|r| dec(r, "delivery"))
            .transpose(),
        None => Ok(None),
    }
}

pub(super) fn read_count(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| v.as_ref().try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

pub(super) fn push_event(timeline: &mut Vec<u8>, e: &AuditEvent) {
    serde_json::to_writer(&mut *timeline, e).expect("records serialise");
    timeline.push(b'\n');
}

/// The events of a timeline (JSON lines).
pub(super) fn timeline_events(timeline: &[u8]) -> Result<Vec<AuditEvent>, StoreError> {
    timeline
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| dec(line, "audit event"))
        .collect()
}
