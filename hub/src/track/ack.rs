//! What a receiver's acknowledgement says, and the way it came: part of the delivery model, so
//! that acknowledgement intake, cluster messages and the timeline share one definition.

use super::{DeliveryEvent, DeliveryState};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    Delivered,
    Accepted,
    Rejected,
}

impl AckStatus {
    pub fn event(self) -> DeliveryEvent {
        match self {
            Self::Delivered => DeliveryEvent::InfrastructureAck,
            Self::Accepted => DeliveryEvent::BusinessAccept,
            Self::Rejected => DeliveryEvent::ReceiverReject,
        }
    }

    pub fn target(self) -> DeliveryState {
        match self {
            Self::Delivered => DeliveryState::Delivered,
            Self::Accepted => DeliveryState::Accepted,
            Self::Rejected => DeliveryState::Rejected,
        }
    }
}

/// The way an acknowledgement reached the hub, named in the delivery's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckChannel {
    /// A file in the drop folder's `acks/`.
    #[default]
    File,
    /// An ITK3 response read from the hub's MESH inbox.
    Mesh,
    /// `ReceiverDelivery/Acknowledge` from a receiver pulling over gRPC.
    Grpc,
}

impl AckChannel {
    /// How the timeline names it.
    pub fn label(self) -> &'static str {
        match self {
            Self::File => "ack file",
            Self::Mesh => "ITK3 response over MESH",
            Self::Grpc => "gRPC acknowledgement",
        }
    }
}
