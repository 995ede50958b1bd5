//! Clients of the services the hub talks to: the MESH API (sending, and reading the hub's
//! inbox) and the SMTP relay (letters and notices), with the one builder of every mail the hub
//! writes (`compose`). Delivery, acknowledgement intake and
//! notices use them; each owns its settings, not the hub.

pub mod compose;
pub mod mesh;
pub mod relay;

/// A successful hand-over to a transport.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sent {
    /// The transport's own id for the delivery (for ack correlation).
    pub transport_id: String,
    /// For the audit trail: where it went.
    pub detail: String,
    /// The receiver answered at once that it will not take it (an MLLP `AE`/`AR`): its code
    /// and text. The delivery is then `rejected`, not `sent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<(String, String)>,
}

/// How a request to a peer failed, for every transport and client alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum SendError {
    /// Worth retrying: connection trouble, timeouts, a folder missing or unwritable, 4xx SMTP,
    /// 429 or 5xx HTTP.
    #[error("{0}")]
    Transient(String),
    /// Will never work as it is (endpoint removed, unregistered recipient, refused
    /// authorization): fail now.
    #[error("{0}")]
    Permanent(String),
}
