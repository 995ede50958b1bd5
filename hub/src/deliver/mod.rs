//! Delivery: the workers that take `deliver` work items off the bus and hand each document to
//! its endpoint's transport. One module per transport.

pub mod file;
pub mod mesh;
pub mod mllp;
pub mod pull;
pub mod smtp;
pub mod worker;

pub use worker::{attempt, execute, reconcile, spawn_workers, Attempt};

pub use crate::clients::{SendError, Sent};

use crate::track::{DeliveryRecord, MessageRecord};
use edt_transforms::DocumentMeta;
use futures::future::BoxFuture;

/// The document as its receiver gets it, rendered once (by the worker) before the transport.
#[derive(Debug, Clone)]
pub struct Document {
    pub meta: DocumentMeta,
    pub bytes: Vec<u8>,
    /// The route format it was rendered in; `None` for the original as sent.
    pub rendered_as: Option<edt_transforms::ReceiverFormat>,
}

/// One way of handing a document to its receiver: a drop folder, a MESH mailbox, a mailbox
/// through the SMTP relay, or a gRPC receiver that pulls. Each is built for one attempt from
/// its endpoint, its own client and its own settings.
pub trait Transport: Send + Sync {
    fn send<'a>(
        &'a self,
        d: &'a DeliveryRecord,
        m: &'a MessageRecord,
        doc: Document,
    ) -> BoxFuture<'a, Result<Sent, SendError>>;
}
