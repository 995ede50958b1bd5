//! Tracking: the records the hub keeps for every message and delivery, and the delivery state
//! machine.
//!
//! A delivery (one message to one recipient endpoint) moves through
//! `pending → sent → delivered → accepted`, with `retrying`, `failed`, `rejected`, `overdue`,
//! `cancelled` and `unroutable` beside them. [`transition`] is the only way a state changes: a
//! pure function, property-tested, and every change it allows is recorded as an [`AuditEvent`]
//! by the store in the same transaction.

pub mod ack;

use edt_transforms::itk3::RecipientType;
use edt_transforms::ReceiverFormat;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Where a delivery stands. The discriminants are stable: they are part of index keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum DeliveryState {
    Pending = 1,
    Sent = 2,
    Delivered = 3,
    Accepted = 4,
    Retrying = 5,
    Failed = 6,
    Rejected = 7,
    Overdue = 8,
    Cancelled = 9,
    Unroutable = 10,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 10] = [
        Self::Pending,
        Self::Sent,
        Self::Delivered,
        Self::Accepted,
        Self::Retrying,
        Self::Failed,
        Self::Rejected,
        Self::Overdue,
        Self::Cancelled,
        Self::Unroutable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Accepted => "accepted",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Overdue => "overdue",
            Self::Cancelled => "cancelled",
            Self::Unroutable => "unroutable",
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u8 == v)
    }

    /// No further progress without a person: the receiver answered, every attempt failed, ops
    /// cancelled it, or there is no route. (A replay starts a new delivery.)
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Accepted | Self::Rejected | Self::Failed | Self::Cancelled | Self::Unroutable
        )
    }

    /// Whether ops may replay a delivery in this state.
    pub fn is_replayable(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Rejected | Self::Unroutable | Self::Cancelled | Self::Overdue
        )
    }

    /// Waiting for the transport: a worker should attempt it.
    pub fn awaits_transport(self) -> bool {
        matches!(self, Self::Pending | Self::Retrying)
    }

    /// Rank used to summarise a message: the lower, the more it needs attention.
    fn attention_rank(self) -> u8 {
        match self {
            Self::Failed => 0,
            Self::Rejected => 1,
            Self::Unroutable => 2,
            Self::Overdue => 3,
            Self::Retrying => 4,
            Self::Pending => 5,
            Self::Sent => 6,
            Self::Delivered => 7,
            Self::Accepted => 8,
            Self::Cancelled => 9,
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown state {s:?}; expected one of: {}",
                    Self::ALL.map(|x| x.as_str()).join(", ")
                )
            })
    }
}

/// Something that happened to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryEvent {
    /// The transport took the document (file fsynced and renamed, MESH 202, SMTP 250).
    TransportAccepted,
    /// An attempt failed with a transient error and another is scheduled.
    RetryScheduled,
    /// A permanent error, or the last attempt failed.
    GaveUp,
    /// Infrastructure acknowledgement (ITK3 20013, receiver pull ack).
    InfrastructureAck,
    /// The receiver filed it.
    BusinessAccept,
    /// The receiver refused it (negative infrastructure or business response).
    ReceiverReject,
    /// No acknowledgement within the SLA.
    SlaExpired,
    /// Ops cancelled it.
    Cancel,
    /// The transport reported later that it could not deliver what it had taken (a MESH
    /// REPORT: undelivered, unregistered recipient, endpoint lookup failure).
    TransportFailed,
}

impl DeliveryEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportAccepted => "transport-accepted",
            Self::RetryScheduled => "retry-scheduled",
            Self::GaveUp => "gave-up",
            Self::InfrastructureAck => "infrastructure-ack",
            Self::BusinessAccept => "business-accept",
            Self::ReceiverReject => "receiver-reject",
            Self::SlaExpired => "sla-expired",
            Self::Cancel => "cancel",
            Self::TransportFailed => "transport-failed",
        }
    }
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a delivery that is {from} cannot take event {}", event.as_str())]
pub struct InvalidTransition {
    pub from: DeliveryState,
    pub event: DeliveryEvent,
}

/// The delivery state machine.
pub fn transition(
    from: DeliveryState,
    event: DeliveryEvent,
) -> Result<DeliveryState, InvalidTransition> {
    use DeliveryEvent as E;
    use DeliveryState as S;
    let to = match (from, event) {
        (S::Pending | S::Retrying, E::TransportAccepted) => S::Sent,
        (S::Pending | S::Retrying, E::RetryScheduled) => S::Retrying,
        (S::Pending | S::Retrying, E::GaveUp) => S::Failed,
        (S::Sent | S::Overdue, E::InfrastructureAck) => S::Delivered,
        (S::Sent | S::Delivered | S::Overdue, E::BusinessAccept) => S::Accepted,
        (S::Sent | S::Delivered | S::Overdue, E::ReceiverReject) => S::Rejected,
        (S::Sent | S::Delivered, E::SlaExpired) => S::Overdue,
        (S::Sent | S::Overdue, E::TransportFailed) => S::Failed,
        (
            S::Pending | S::Retrying | S::Sent | S::Delivered | S::Overdue | S::Unroutable,
            E::Cancel,
        ) => S::Cancelled,
        _ => return Err(InvalidTransition { from, event }),
    };
    Ok(to)
}

/// The summary state of a message: the state of its current delivery that most needs
/// attention (failed before rejected before unroutable ... before accepted).
pub fn summarise<'a>(states: impl IntoIterator<Item = &'a DeliveryState>) -> Option<DeliveryState> {
    states
        .into_iter()
        .copied()
        .min_by_key(|s| s.attention_rank())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 rendering of a millisecond timestamp.
/// Always with milliseconds, so the strings sort as the times do.
pub fn rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

static NODE_TAG: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The 16-bit tag of a node name: what ids minted on that node carry, and what names its
/// home queue. Stable across restarts and versions (FNV-1a folded to 16 bits).
pub fn node_tag(name: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    ((h >> 16) ^ (h & 0xffff)) as u16
}

/// Sets the tag this process stamps into the ids it mints (once, at node start).
pub fn set_node_tag(tag: u16) {
    NODE_TAG.store(u32::from(tag), std::sync::atomic::Ordering::Relaxed);
}

/// The tag this process stamps into the ids it mints.
pub fn own_tag() -> u16 {
    NODE_TAG.load(std::sync::atomic::Ordering::Relaxed) as u16
}

/// A new, time-ordered identifier (UUIDv7) carrying this node's tag in its last two bytes (the random part; the ordering counter sits before them), so that
/// any node (and the CLI) can tell which node a message or delivery belongs to.
pub fn new_id() -> Uuid {
    let mut b = *Uuid::now_v7().as_bytes();
    let tag = own_tag();
    b[14..16].copy_from_slice(&tag.to_be_bytes());
    Uuid::from_bytes(b)
}

/// A new message's id: a [`new_id`] with byte 13 (random) zero, so that its deliveries' ids
/// can be derived from it (see [`delivery_id`]).
pub fn new_message_id() -> Uuid {
    let mut b = *new_id().as_bytes();
    b[13] = 0;
    Uuid::from_bytes(b)
}

/// The id of a message's `index`th planned delivery (from 0): the message's id with `index + 1`
/// in byte 13, so the store finds a delivery's message from its id alone (see
/// [`derived_message`]). A message with more than 255 deliveries, or whose id was not made by
/// [`new_message_id`], gets new ids for them instead.
pub fn delivery_id(message: Uuid, index: usize) -> Uuid {
    match u8::try_from(index + 1) {
        Ok(k) if message.as_bytes()[13] == 0 => {
            let mut b = *message.as_bytes();
            b[13] = k;
            Uuid::from_bytes(b)
        }
        _ => new_id(),
    }
}

/// The message whose id `delivery` would be derived from by [`delivery_id`]; whether it was is
/// for the caller to check (a delivery with a new id names no message, or one without it).
pub fn derived_message(delivery: Uuid) -> Option<Uuid> {
    let mut b = *delivery.as_bytes();
    if b[13] == 0 {
        return None;
    }
    b[13] = 0;
    Some(Uuid::from_bytes(b))
}

/// The tag of the node that minted `id` (its home node).
pub fn home_tag(id: &Uuid) -> u16 {
    let b = id.as_bytes();
    u16::from_be_bytes([b[14], b[15]])
}

/// Where a document came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Grpc,
    Smtp,
    Mllp,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Smtp => "smtp",
            Self::Mllp => "mllp",
        }
    }
}

/// A message as received (the payload is stored separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub id: Uuid,
    pub sender_ods: String,
    pub document_type: edt_transforms::DocumentType,
    pub content_type: String,
    pub local_id: String,
    pub nhs_number: Option<String>,
    pub file_name: Option<String>,
    pub title: Option<String>,
    pub payload_size: u64,
    pub payload_sha256: String,
    pub channel: Channel,
    pub received_ms: u64,
    /// Recipients as requested.
    pub recipients: Vec<String>,
    /// Where notices about this document go (the envelope sender of a mailed document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

impl MessageRecord {
    /// The metadata renderers need.
    pub fn meta(&self) -> edt_transforms::DocumentMeta {
        edt_transforms::DocumentMeta {
            message_id: self.id.to_string(),
            sender_ods: self.sender_ods.clone(),
            document_type: self.document_type,
            content_type: self.content_type.clone(),
            local_id: self.local_id.clone(),
            nhs_number: self.nhs_number.clone(),
            file_name: self.file_name.clone(),
            title: self.title.clone(),
            payload_size: self.payload_size,
            payload_sha256: self.payload_sha256.clone(),
            received_at: rfc3339(self.received_ms),
        }
    }
}

/// One message to one recipient endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub message_id: Uuid,
    pub recipient_ods: String,
    /// Endpoint id from the directory; `None` while unroutable.
    pub endpoint: Option<String>,
    /// For Action or For Information (stored as `FA` / `FI`).
    pub recipient_type: RecipientType,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub next_attempt_ms: Option<u64>,
    pub sent_ms: Option<u64>,
    pub replay_of: Option<Uuid>,
    pub superseded_by: Option<Uuid>,
    pub ack_code: Option<String>,
    pub ack_reason: Option<String>,
    /// The format its route gives the receiver; `None` while unroutable (nothing to render).
    #[serde(default)]
    pub format: Option<ReceiverFormat>,
    /// The transport's id for the last hand-over (MESH message id, SMTP Message-ID, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_id: Option<String>,
}

impl DeliveryRecord {
    /// A new delivery of `message_id` to `recipient_ods`, created at `now_ms`: pending, for
    /// action, with no endpoint or format yet and nothing attempted. Callers set the rest.
    pub fn new(id: Uuid, message_id: Uuid, recipient_ods: String, now_ms: u64) -> Self {
        Self {
            id,
            message_id,
            recipient_ods,
            endpoint: None,
            recipient_type: edt_routers::RecipientType::ForAction,
            state: DeliveryState::Pending,
            attempts: 0,
            last_error: None,
            created_ms: now_ms,
            updated_ms: now_ms,
            next_attempt_ms: None,
            sent_ms: None,
            replay_of: None,
            superseded_by: None,
            ack_code: None,
            ack_reason: None,
            format: None,
            transport_id: None,
        }
    }

    /// Whether this delivery is the current one for its recipient (not replaced by a replay).
    pub fn is_current(&self) -> bool {
        self.superseded_by.is_none()
    }
}

/// One line of a message's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at_ms: u64,
    pub message_id: Uuid,
    pub delivery_id: Option<Uuid>,
    /// What happened: a [`DeliveryEvent`] name, or "received", "routed", "replayed", ...
    pub event: String,
    pub from: Option<DeliveryState>,
    pub to: Option<DeliveryState>,
    /// Who did it: "hub", "grpc:RX1", "ops:alice", "ack-file", ...
    pub actor: String,
    pub reason: String,
}

/// Parses `90s`, `30m`, `2h`, `7d` (meaning "that long ago"), a day (`2026-02-28`, from its
/// midnight UTC) or an RFC 3339 time, to ms since the epoch. A day the calendar does not have
/// (`2026-02-31`) is refused, never rolled over.
pub fn parse_since(s: &str, now_ms: u64) -> anyhow::Result<u64> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
    // A calendar day (midnight UTC), or a time on one: 31 February is no day at all.
    let looks_dated = s.len() >= 10
        && s.as_bytes()[4] == b'-'
        && s.as_bytes()[7] == b'-'
        && s[..4].bytes().all(|b| b.is_ascii_digit());
    if looks_dated {
        let day = s.get(..10).and_then(|d| {
            let n = |r: std::ops::Range<usize>| d.get(r)?.parse::<u16>().ok();
            Some((n(0..4)?, n(5..7)?, n(8..10)?))
        });
        let Some((y, m, d)) = day else {
            anyhow::bail!("{s:?}: expected a date as YYYY-MM-DD or an RFC 3339 time");
        };
        let month = u8::try_from(m)
            .ok()
            .and_then(|m| time::Month::try_from(m).ok())
            .ok_or_else(|| anyhow::anyhow!("{s:?}: there is no month {m}"))?;
        let date = time::Date::from_calendar_date(i32::from(y), month, d as u8)
            .map_err(|_| anyhow::anyhow!("{s:?}: {month} {y} has no day {d}"))?;
        if s.len() == 10 {
            return Ok(ms(date.midnight().assume_utc()));
        }
        return time::OffsetDateTime::parse(s, &Rfc3339)
            .map(ms)
            .map_err(|e| anyhow::anyhow!("{s:?}: not an RFC 3339 time ({e})"));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| {
        anyhow::anyhow!("{s:?}: expected e.g. 90s, 30m, 2h, 7d, a date or an RFC 3339 time")
    })?;
    let unit_ms = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => anyhow::bail!("{s:?}: unit must be s, m, h or d"),
    };
    Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EVENTS: [DeliveryEvent; 9] = [
        DeliveryEvent::TransportAccepted,
        DeliveryEvent::RetryScheduled,
        DeliveryEvent::GaveUp,
        DeliveryEvent::InfrastructureAck,
        DeliveryEvent::BusinessAccept,
        DeliveryEvent::ReceiverReject,
        DeliveryEvent::SlaExpired,
        DeliveryEvent::Cancel,
        DeliveryEvent::TransportFailed,
    ];

    #[test]
    fn delivery_ids_name_their_message() {
        let m = new_message_id();
        assert_eq!(m.as_bytes()[13], 0);
        assert_eq!(derived_message(m), None, "a message id names no message");
        let ids: Vec<Uuid> = (0..255).map(|i| delivery_id(m, i)).collect();
        for d in &ids {
            assert_eq!(derived_message(*d), Some(m));
            assert_eq!(home_tag(d), home_tag(&m), "same home node");
        }
        let distinct: std::collections::HashSet<_> = ids.iter().chain([&m]).collect();
        assert_eq!(distinct.len(), 256);
        // The 256th, and deliveries of a message whose id was minted otherwise, get new ids.
        assert_ne!(derived_message(delivery_id(m, 255)), Some(m));
        let other = Uuid::from_bytes([0xff; 16]);
        assert_ne!(derived_message(delivery_id(other, 0)), Some(other));
    }

    #[test]
    fn ids_carry_the_node_tag_and_stay_time_ordered_and_unique() {
        let a = node_tag("hub-a");
        assert_ne!(a, node_tag("hub-b"));
        assert_eq!(a, node_tag("hub-a"));
        set_node_tag(a);
        let ids: Vec<Uuid> = (0..10_000).map(|_| new_id()).collect();
        assert!(ids.iter().all(|id| home_tag(id) == a));
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "time-ordered");
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn times_render_with_milliseconds_and_sort_as_strings() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.500Z");
        assert!(rfc3339(999) < rfc3339(1_000));
    }

    #[test]
    fn happy_path() {
        let mut s = DeliveryState::Pending;
        for e in [
            DeliveryEvent::RetryScheduled,
            DeliveryEvent::TransportAccepted,
            DeliveryEvent::InfrastructureAck,
            DeliveryEvent::BusinessAccept,
        ] {
            s = transition(s, e).unwrap();
        }
        assert_eq!(s, DeliveryState::Accepted);
    }

    #[test]
    fn final_states_take_no_event() {
        for s in DeliveryState::ALL.into_iter().filter(|s| s.is_final()) {
            for e in EVENTS {
                let r = transition(s, e);
                // Only cancelling an unroutable delivery leaves a final state.
                if s == DeliveryState::Unroutable && e == DeliveryEvent::Cancel {
                    assert_eq!(r, Ok(DeliveryState::Cancelled));
                } else {
                    assert_eq!(r, Err(InvalidTransition { from: s, event: e }), "{s} {e:?}");
                }
            }
        }
    }

    #[test]
    fn state_names_round_trip_and_u8_is_stable() {
        for s in DeliveryState::ALL {
            assert_eq!(s.as_str().parse::<DeliveryState>(), Ok(s));
            assert_eq!(DeliveryState::from_u8(s as u8), Some(s));
        }
        assert!("nope".parse::<DeliveryState>().is_err());
        assert_eq!(DeliveryState::from_u8(0), None);
    }

    #[test]
    fn summary_prefers_what_needs_attention() {
        use DeliveryState::*;
        assert_eq!(summarise(&[Accepted, Failed, Sent]), Some(Failed));
        assert_eq!(summarise(&[Accepted, Sent]), Some(Sent));
        assert_eq!(summarise(&[]), None);
    }

    fn event() -> impl Strategy<Value = DeliveryEvent> {
        proptest::sample::select(EVENTS.to_vec())
    }

    proptest! {
        /// From either starting state, any sequence of events (invalid ones refused) stays
        /// inside the machine: final states are never left, a delivery is never sent twice
        /// without a retry in between, and an accepted delivery was sent first.
        #[test]
        fn random_event_sequences_stay_valid(
            start_unroutable in any::<bool>(),
            events in proptest::collection::vec(event(), 0..40),
        ) {
            let mut s = if start_unroutable { DeliveryState::Unroutable } else { DeliveryState::Pending };
            let mut was_sent = false;
            let mut audit = Vec::new();
            for e in events {
                match transition(s, e) {
                    Ok(next) => {
                        prop_assert!(!s.is_final() || (s == DeliveryState::Unroutable && next == DeliveryState::Cancelled),
                            "left final state {} via {:?}", s, e);
                        if next == DeliveryState::Sent {
                            prop_assert!(s.awaits_transport());
                            was_sent = true;
                        }
                        if matches!(next, DeliveryState::Accepted | DeliveryState::Delivered | DeliveryState::Rejected | DeliveryState::Overdue) {
                            prop_assert!(was_sent, "{} without being sent", next);
                        }
                        audit.push((s, e, next));
                        s = next;
                    }
                    Err(err) => {
                        prop_assert_eq!(err.from, s);
                        prop_assert_eq!(err.event, e);
                    }
                }
            }
            // The audit trail chains: each step starts where the previous ended.
            for w in audit.windows(2) {
                prop_assert_eq!(w[0].2, w[1].0);
            }
        }
    }
}
