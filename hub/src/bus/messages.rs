//! What travels on the bus between nodes: work items on the shared `deliver` queue (a bare
//! delivery id, or a self-contained item any node can attempt), and the events a home node
//! receives on its own queue (work to do here, the outcome of an attempt another node made,
//! an acknowledgement another node took). Encoding and decoding only; `cluster` acts on them.

use crate::track::ack::{AckChannel, AckStatus};
use crate::track::{own_tag, DeliveryRecord, MessageRecord};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The logical queue (before the bus's prefix) that carries a node's home events.
pub fn home_queue(tag: u16) -> String {
    format!("home.{tag:04x}")
}

/// This node's home queue.
pub fn own_home_queue() -> String {
    home_queue(own_tag())
}

const WORK_MAGIC: &[u8; 4] = b"EDW1";

/// What a work item on the shared `deliver` queue carries (besides the payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkHeader {
    /// Tag of the node that holds the delivery's tracking.
    pub home: u16,
    /// That node's name (for logs and the audit trail).
    pub home_node: String,
    /// The attempt this item is for (the delivery's attempts so far, plus one).
    pub attempt: u32,
    pub delivery: DeliveryRecord,
    pub message: MessageRecord,
}

/// A self-contained work item: any node can attempt the delivery with it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    pub header: WorkHeader,
    pub payload: Vec<u8>,
}

/// A work item as found on the `deliver` queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// A delivery id: attempted by the node whose database holds it (the embedded bus, and
    /// the home node's own queue).
    Local(Uuid),
    /// A self-contained item from the shared queue.
    Shared(Box<WorkItem>),
}

impl Work {
    /// The delivery this work is for.
    pub fn delivery_id(&self) -> Uuid {
        match self {
            Work::Local(id) => *id,
            Work::Shared(w) => w.header.delivery.id,
        }
    }
}

impl WorkItem {
    /// `EDW1`, the header's length (u32, big-endian), the header (JSON), then the payload.
    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("work header serialises");
        let mut out = Vec::with_capacity(8 + header.len() + self.payload.len());
        out.extend_from_slice(WORK_MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Reads a `deliver` work item: a bare delivery id or a [`WorkItem`].
pub fn decode_work(body: &[u8]) -> Result<Work, String> {
    if body.len() == 16 {
        return Ok(Work::Local(
            Uuid::from_slice(body).expect("sixteen bytes make a uuid"),
        ));
    }
    let rest = body
        .strip_prefix(WORK_MAGIC.as_slice())
        .ok_or("neither a delivery id nor a work item")?;
    if rest.len() < 4 {
        return Err("work item is truncated".into());
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let rest = &rest[4..];
    if rest.len() < len {
        return Err(format!(
            "work item header is truncated ({} of {len} bytes)",
            rest.len()
        ));
    }
    let header: WorkHeader = serde_json::from_slice(&rest[..len])
        .map_err(|e| format!("work item header is unreadable: {e}"))?;
    let payload = rest[len..].to_vec();
    if payload.len() as u64 != header.message.payload_size {
        return Err(format!(
            "work item payload is {} bytes, the message says {}",
            payload.len(),
            header.message.payload_size
        ));
    }
    Ok(Work::Shared(Box::new(WorkItem { header, payload })))
}

/// How an attempt made on another node ended: the same outcome a local attempt has.
pub type RemoteResult = Result<crate::clients::Sent, crate::clients::SendError>;

/// Events for a home node, on its own queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HomeEvent {
    /// Attempt this delivery here (its payload is too large to share).
    Deliver { delivery: Uuid },
    /// Another node attempted one of this node's deliveries.
    Outcome {
        delivery: Uuid,
        attempt: u32,
        node: String,
        result: RemoteResult,
    },
    /// Another node picked up an acknowledgement file for one of this node's deliveries.
    Ack {
        delivery: Uuid,
        endpoint: String,
        node: String,
        status: AckStatus,
        code: Option<String>,
        reason: Option<String>,
        /// How the acknowledgement reached the node that passes it on.
        #[serde(default)]
        channel: AckChannel,
        /// Who sent it there (e.g. `mesh:<mailbox>`).
        #[serde(default)]
        by: String,
    },
}

impl HomeEvent {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("home event serialises")
    }

    pub fn decode(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|e| format!("unreadable home event: {e}"))
    }

    pub fn delivery_id(&self) -> Uuid {
        match self {
            HomeEvent::Deliver { delivery }
            | HomeEvent::Outcome { delivery, .. }
            | HomeEvent::Ack { delivery, .. } => *delivery,
        }
    }
}

/// The broadcast topic (and outbox queue) of local-id claims.
pub const CLAIMS: &str = "claims";

/// The queue on which a node receives the claims broadcast by every node.
pub fn claims_queue(tag: u16) -> String {
    format!("claims.{tag:04x}")
}

/// A node's claim on a sender's local id: told to every node of a cluster, so that a sender
/// who fails over to another node with the same local id gets the original receipt, not a
/// second message. Carries what a receipt needs and nothing about the patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalIdClaim {
    /// The node that holds the message, and its tag.
    pub node: String,
    pub tag: u16,
    pub message_id: Uuid,
    pub sender_ods: String,
    pub local_id: String,
    pub payload_sha256: String,
    pub recipients: Vec<String>,
    pub received_ms: u64,
    /// The deliveries as receipted.
    pub deliveries: Vec<DeliveryRecord>,
}

impl LocalIdClaim {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("claim serialises")
    }

    pub fn decode(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|e| format!("unreadable local-id claim: {e}"))
    }

    /// Several claims in one broker message.
    pub fn encode_batch(claims: &[LocalIdClaim]) -> Vec<u8> {
        serde_json::to_vec(claims).expect("claims serialise")
    }

    pub fn decode_batch(body: &[u8]) -> Result<Vec<Self>, String> {
        serde_json::from_slice(body).map_err(|e| format!("unreadable local-id claims: {e}"))
    }
}
