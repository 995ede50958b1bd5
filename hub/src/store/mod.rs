//! The store: messages, original payloads, deliveries, the audit trail, the indexes that make
//! ops queries range scans, and the outbox of work to do.
//!
//! Callers see the narrow [`Store`] trait; [`SledStore`] is the one engine today. Every state
//! change is written with its index updates, audit event and follow-up work in **one
//! transaction**. Nothing is durable until [`Store::flush`] returns: callers await it before they
//! acknowledge anything to anyone, and concurrent callers share one fsync (group commit).
//! `conformance` is the test suite every engine must pass (compiled for tests only);
//! [`fixtures`] makes sample messages for it, other tests and the bench.

#[cfg(test)]
pub mod conformance;
mod entry;
pub mod fixtures;
mod keys;
mod lists;
pub mod payload_log;
pub mod payloads;
mod sled_store;

pub use keys::id_ms;
pub use sled_store::SledStore;

/// A payload written for a submission that was never recorded is removed once it is this
/// old (no submission can still be recording it).
pub const ORPHAN_AFTER_MS: u64 = 600_000;

use crate::track::MessageRecord;
use crate::track::{AuditEvent, DeliveryEvent, DeliveryRecord, DeliveryState, InvalidTransition};
use futures::future::BoxFuture;
use uuid::Uuid;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("no delivery {0}")]
    NoSuchDelivery(Uuid),
    #[error("no message {0}")]
    NoSuchMessage(Uuid),
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    #[error("delivery {0} was already replayed as {1}")]
    AlreadyReplayed(Uuid, Uuid),
    #[error("delivery {0} is {1}; only failed, rejected, unroutable, cancelled or overdue deliveries are replayed")]
    NotReplayable(Uuid, DeliveryState),
    #[error("delivery {0} is being attempted right now; try again in a moment")]
    Busy(Uuid),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        Self::Engine(e.to_string())
    }
}

/// Work to put on a bus queue, written in the same transaction as the change that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueue {
    pub queue: String,
    pub body: Vec<u8>,
    /// Not to be handed out before this time (ms since the epoch); 0 for now.
    pub due_ms: u64,
}

/// A message to store, complete with its first deliveries and their work.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message: MessageRecord,
    pub payload: Vec<u8>,
    pub deliveries: Vec<DeliveryRecord>,
    pub audit: Vec<AuditEvent>,
    pub enqueue: Vec<Enqueue>,
}

/// What a node holds for another node's claim on a local id (see [`Store::record_claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimSeen {
    /// Recorded: a resubmission here gets that node's receipt.
    New,
    /// Already recorded.
    Known,
    /// This node holds another message under the same (sender, local id): a sender got two
    /// receipts for one letter, from two nodes, before either heard of the other's.
    Conflict(Uuid),
}

/// The outcome of [`Store::submit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Created(Uuid),
    /// (sender, local id) was seen before: the original message id.
    Duplicate(Uuid),
}

/// A state change to apply to one delivery.
#[derive(Debug, Clone)]
pub struct Change {
    pub event: DeliveryEvent,
    pub actor: String,
    pub reason: String,
    /// This change ends a transport attempt: count it.
    pub count_attempt: bool,
    /// Sets `last_error`.
    pub error: Option<String>,
    /// Sets `ack_code` / `ack_reason`.
    pub ack: Option<(String, String)>,
    /// Records the transport's id for the delivery (and indexes it).
    pub transport_id: Option<String>,
    pub next_attempt_ms: Option<u64>,
    pub enqueue: Option<Enqueue>,
}

impl Change {
    pub fn new(event: DeliveryEvent, actor: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            event,
            actor: actor.into(),
            reason: reason.into(),
            count_attempt: false,
            error: None,
            ack: None,
            transport_id: None,
            next_attempt_ms: None,
            enqueue: None,
        }
    }
}

/// A replay of one delivery: the new delivery that supersedes it.
#[derive(Debug, Clone)]
pub struct Replay {
    pub original: Uuid,
    pub new: DeliveryRecord,
    pub actor: String,
    /// Why ops replayed it.
    pub reason: String,
    /// How the new delivery was routed.
    pub routing: String,
    pub enqueue: Option<Enqueue>,
}

/// Filters for [`Store::list`]; all given filters must hold.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub state: Option<DeliveryState>,
    pub recipient_ods: Option<String>,
    pub sender_ods: Option<String>,
    /// Changed (with a state or recipient filter) or received (otherwise) at or after this
    /// time.
    pub since_ms: Option<u64>,
    /// Changed (with a state or recipient filter) or received at or before this time.
    pub until_ms: Option<u64>,
    pub document_type: Option<edt_transforms::DocumentType>,
    pub nhs_number: Option<String>,
    pub channel: Option<crate::track::Channel>,
    /// Case-insensitive text in the message's metadata.
    pub text: Option<String>,
    /// Where the previous page ended (paging, newest first).
    pub after: Option<After>,
    pub limit: usize,
}

/// Where a page of a listing ended, for the next page to go on from.
///
/// A listing filtered by state or recipient is in order of each delivery's last change, not of
/// receipt, so a message id alone cannot say where a page ended: a message received early but
/// changed late would show again on the next page, and one received late but changed early
/// would be skipped. [`ListPage::positions`] gives each message's place in the listing's own
/// order instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum After {
    /// Only messages received before this one (the form a message id gives).
    Message(Uuid),
    /// Only entries before this place in the listing's order: a time (of the change, or of
    /// receipt) and the id of what the index entry points at, newest first.
    At(u64, Uuid),
}

impl After {
    /// `MS.ID` (a position) or a bare message id.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let parsed = match s.split_once('.') {
            Some((ms, id)) => ms
                .parse::<u64>()
                .ok()
                .zip(Uuid::parse_str(id).ok())
                .map(|(ms, id)| Self::At(ms, id)),
            None => Uuid::parse_str(s).ok().map(Self::Message),
        };
        parsed.ok_or_else(|| {
            format!("{s:?} is not a paging cursor (a message id, or MS.ID as a listing gives)")
        })
    }
}

impl std::fmt::Display for After {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Message(id) => write!(f, "{id}"),
            Self::At(ms, id) => write!(f, "{ms}.{id}"),
        }
    }
}

impl ListQuery {
    /// Whether `m` passes the filters that need the message itself.
    pub fn accepts(&self, m: &crate::track::MessageRecord) -> bool {
        if self.sender_ods.as_ref().is_some_and(|s| &m.sender_ods != s)
            || self.document_type.is_some_and(|t| m.document_type != t)
            || self.channel.is_some_and(|c| m.channel != c)
            || matches!(self.after, Some(After::Message(a)) if m.id >= a)
        {
            return false;
        }
        if let Some(n) = &self.nhs_number {
            if m.nhs_number.as_deref() != Some(n.as_str()) {
                return false;
            }
        }
        if self.state.is_none() && self.recipient_ods.is_none() {
            if let Some(u) = self.until_ms {
                if m.received_ms > u {
                    return false;
                }
            }
        }
        if let Some(t) = &self.text {
            let t = t.to_lowercase();
            let fields = [
                Some(m.id.to_string()),
                Some(m.local_id.clone()),
                m.title.clone(),
                m.file_name.clone(),
                Some(m.sender_ods.clone()),
                Some(m.recipients.join(" ")),
                Some(m.content_type.clone()),
            ];
            if !fields
                .iter()
                .flatten()
                .any(|f| f.to_lowercase().contains(&t))
            {
                return false;
            }
        }
        true
    }

    /// Whether filters beyond the indexes' own are set.
    pub fn needs_message(&self) -> bool {
        self.sender_ods.is_some()
            || self.document_type.is_some()
            || self.nhs_number.is_some()
            || self.channel.is_some()
            || self.text.is_some()
            || matches!(self.after, Some(After::Message(_)))
            || (self.until_ms.is_some() && self.state.is_none() && self.recipient_ods.is_none())
    }
}

/// One page of a listing and how many messages match in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Newest first.
    pub ids: Vec<Uuid>,
    /// Matching messages, the page included.
    pub total: u64,
    /// Counting stopped at the limit asked for: there may be more.
    pub total_is_lower_bound: bool,
    /// Each message's place in the listing's order (beside `ids`): the last one is where the
    /// next page goes on from ([`ListQuery::after`]).
    pub positions: Vec<After>,
}

/// An acknowledgement that matched no delivery, or could not be read, kept for ops.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnmatchedAck {
    pub at_ms: u64,
    /// Where it came from (file path, MESH message id, ...).
    pub source: String,
    pub problem: String,
    /// Where the original was moved for inspection.
    pub kept_at: String,
}

/// The storage contract. Reads see every committed write; writes are durable once a later
/// [`Store::flush`] has returned.
pub trait Store: Send + Sync + 'static {
    /// Stores a new message with its deliveries, audit events, index entries and work, unless
    /// (sender, local id) is already known. The payload is made durable first, in one round
    /// of syncs with concurrent submissions.
    fn submit(&self, new: NewMessage) -> BoxFuture<'_, Result<Submitted, StoreError>>;
    /// Applies a state-machine event to a delivery (with its audit event, index updates and
    /// any work) and returns the updated delivery.
    fn apply(&self, delivery: Uuid, change: Change) -> Result<DeliveryRecord, StoreError>;
    /// [`Store::apply`], committed together with other changes made at the same moment: the
    /// same outcome, at a fraction of the disk writes under load.
    fn apply_batched(
        &self,
        delivery: Uuid,
        change: Change,
    ) -> BoxFuture<'_, Result<DeliveryRecord, StoreError>>;
    /// Supersedes a delivery with a new one (a replay); history is kept.
    fn replay(&self, replay: Replay) -> Result<DeliveryRecord, StoreError>;
    /// Appends a message-level audit event.
    fn audit(&self, event: AuditEvent) -> Result<(), StoreError>;

    fn message(&self, id: Uuid) -> Result<Option<MessageRecord>, StoreError>;
    fn payload(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError>;
    fn delivery(&self, id: Uuid) -> Result<Option<DeliveryRecord>, StoreError>;
    /// Every delivery of a message, oldest first, including superseded ones.
    fn deliveries_of(&self, message: Uuid) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// The message's timeline, oldest first.
    fn audit_of(&self, message: Uuid) -> Result<Vec<AuditEvent>, StoreError>;
    /// Every audit event with `since_ms <= at_ms <= until_ms`, handed to `f` (in key order);
    /// `f` returns false to stop.
    fn audit_between(
        &self,
        since_ms: u64,
        until_ms: u64,
        f: &mut dyn FnMut(AuditEvent) -> bool,
    ) -> Result<(), StoreError>;
    fn find_by_local_id(
        &self,
        sender_ods: &str,
        local_id: &str,
    ) -> Result<Option<Uuid>, StoreError>;
    /// Message ids matching the query, newest first, and whether the limit cut the list.
    fn list(&self, query: &ListQuery) -> Result<(Vec<Uuid>, bool), StoreError> {
        let page = self.list_page(query, 0)?;
        let truncated = page.total > page.ids.len() as u64;
        Ok((page.ids, truncated))
    }
    /// A page of [`Store::list`] with the number of matching messages, counted up to
    /// `count_to` (at least one more than the page).
    fn list_page(&self, query: &ListQuery, count_to: usize) -> Result<ListPage, StoreError>;
    /// Messages received before `before_ms` (and after `after`, for paging) whose payload is
    /// still held as a file of its own (as earlier releases kept them), oldest first.
    fn payload_candidates(
        &self,
        before_ms: u64,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError>;
    /// Purges a message's payload, recording `event` in its timeline, provided the
    /// deliveries `final_deliveries` are still as they were read (final and not replayed).
    /// Returns the bytes to be freed, or `None` if there was nothing to remove. The bytes
    /// themselves go with [`Store::release_payload`], called once a flush has made the event
    /// durable, so no document is deleted without its record. (An orphan, a payload without a
    /// message, is removed at once.)
    fn purge_payload(
        &self,
        message: Uuid,
        final_deliveries: &[DeliveryRecord],
        event: AuditEvent,
    ) -> Result<Option<u64>, StoreError>;
    /// Deletes the bytes of a payload already purged by [`Store::purge_payload`].
    fn release_payload(&self, message: Uuid) -> Result<(), StoreError>;
    /// The size of a message's payload, if it is held.
    fn payload_size(&self, id: Uuid) -> Result<Option<u64>, StoreError>;
    /// Segments of the payload log started before `before_ms`, oldest first
    /// ([`Store::payload_candidates`] lists payloads kept as files of their own).
    fn payload_segments(&self, before_ms: u64) -> Result<Vec<u64>, StoreError>;
    /// The ids of the payloads written to a segment (recorded messages' and orphans').
    fn segment_payloads(&self, segment: u64) -> Result<Vec<Uuid>, StoreError>;
    /// Removes a segment whose payloads are all purged or orphaned; returns the bytes freed,
    /// or `None` if it is still being written (it stays).
    fn remove_segment(&self, segment: u64) -> Result<Option<u64>, StoreError>;
    /// The delivery a transport id (e.g. a MESH message id) was recorded for.
    fn delivery_by_transport(&self, transport_id: &str) -> Result<Option<Uuid>, StoreError>;
    /// Current deliveries in `state` last changed before `before_ms` (oldest first).
    fn deliveries_in_state(
        &self,
        state: DeliveryState,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<Uuid>, StoreError>;
    /// Every message received at or after `since_ms` (by its time-ordered id), oldest first,
    /// with all its deliveries (superseded ones included), handed to `f`; `f` returns false
    /// to stop. One read per message: for figures over a window (the console's overview).
    fn messages_since(
        &self,
        since_ms: u64,
        f: &mut dyn FnMut(MessageRecord, Vec<DeliveryRecord>) -> bool,
    ) -> Result<(), StoreError>;
    /// Number of current deliveries in each state.
    fn count_by_state(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError>;
    fn message_count(&self) -> Result<u64, StoreError>;
    fn record_unmatched_ack(&self, ack: UnmatchedAck) -> Result<(), StoreError>;
    fn unmatched_acks(&self, limit: usize) -> Result<Vec<UnmatchedAck>, StoreError>;

    /// Resolves once every write committed before the call is on disk. Concurrent callers
    /// share flushes.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Writes a small record and waits until it is on disk: whether the store can take work
    /// now. An error here means submissions would fail too.
    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Records another node's claim on (sender, local id).
    fn record_claim(
        &self,
        claim: &crate::bus::messages::LocalIdClaim,
    ) -> Result<ClaimSeen, StoreError>;
    /// Another node's claim on (sender, local id), if one is recorded.
    fn claim_of(
        &self,
        sender_ods: &str,
        local_id: &str,
    ) -> Result<Option<crate::bus::messages::LocalIdClaim>, StoreError>;
    /// Forgets claims on local ids first receipted before `before_ms`; how many.
    fn prune_claims(&self, before_ms: u64) -> Result<usize, StoreError>;
    /// Whether the node has set the marker `key` in this database (see [`Store::set_marker`]).
    fn marker(&self, key: &[u8]) -> Result<bool, StoreError>;
    /// Sets a marker: a fact about this database's own history, durable at the next flush.
    fn set_marker(&self, key: &[u8]) -> Result<(), StoreError>;
    /// Message ids whose tracking changed, as they change (a hint: re-read the store).
    fn changes(&self) -> tokio::sync::broadcast::Receiver<Uuid>;
}
