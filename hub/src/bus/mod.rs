//! The bus: durable work queues between pipeline stages.
//!
//! [`Bus`] is the contract; [`embedded::EmbeddedBus`] keeps its queues in the node's sled
//! database (the default: one node, no broker), where the store enqueues work in the same
//! transaction as the state change that causes it. Delivery is at least once: an item handed
//! out and not acknowledged (the consumer died, the node restarted) is handed out again, so
//! consumers are idempotent. `conformance` is the suite every implementation must pass
//! (compiled for tests only).

pub mod amqp;
#[cfg(test)]
pub mod conformance;
pub mod embedded;
pub mod messages;

use futures::future::BoxFuture;
use std::time::Duration;

/// The queue of deliveries waiting for their transport.
pub const DELIVER_QUEUE: &str = "deliver";

/// Bus failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("bus storage: {0}")]
    Storage(String),
    #[error("bus item is corrupt: {0}")]
    Corrupt(String),
    #[error("bus is unavailable: {0}")]
    Unavailable(String),
}

impl From<sled::Error> for BusError {
    fn from(e: sled::Error) -> Self {
        Self::Storage(e.to_string())
    }
}

/// One item handed to a consumer. Settle it with [`Bus::ack`], [`Bus::retry_later`] or
/// [`Bus::dead_letter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusItem {
    pub queue: String,
    /// Identifies this hand-out for settling.
    pub tag: u64,
    pub body: Vec<u8>,
    /// How many times this item has been handed out, this time included.
    pub deliveries: u32,
}

impl BusItem {
    /// Handed out before and not settled (the consumer or the node went away).
    pub fn redelivered(&self) -> bool {
        self.deliveries > 1
    }

    /// The error for settling an item that is not handed out (or no longer).
    fn not_in_flight(&self) -> BusError {
        BusError::Corrupt(format!("item {} is not in flight", self.tag))
    }
}

/// The reason kept with an item dead-lettered for reaching the delivery limit.
const LIMIT_REACHED: &str = "delivery limit reached";

/// Counts an item dead-lettered on `queue` (`edthub_bus_dead_letters_total`).
fn count_dead_letter(queue: &str) {
    metrics::counter!("edthub_bus_dead_letters_total", "queue" => queue.to_string()).increment(1);
}

/// For [`Bus::retry_later`]: dead-letters `item`, handed out `deliveries` times, if that has
/// reached the delivery limit `max`; says whether it did.
async fn dead_letter_at_limit(
    bus: &(impl Bus + ?Sized),
    item: &BusItem,
    deliveries: u32,
    max: u32,
) -> Result<bool, BusError> {
    if deliveries < max {
        return Ok(false);
    }
    bus.dead_letter(item, LIMIT_REACHED).await?;
    Ok(true)
}

/// An item that will not be handed out again, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub queue: String,
    pub body: Vec<u8>,
    pub deliveries: u32,
    pub reason: String,
}

/// What became of an item given back with [`Bus::retry_later`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeued {
    /// It will be handed out again after the delay.
    Later,
    /// It reached the delivery limit and was dead-lettered.
    DeadLettered,
}

/// Durable work queues with at-least-once delivery.
pub trait Bus: Send + Sync + 'static {
    /// Adds an item, handed out no sooner than `delay` from now. Durable when it returns.
    fn publish<'a>(
        &'a self,
        queue: &'a str,
        body: Vec<u8>,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), BusError>>;
    /// Waits for the next item that is due.
    fn receive<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<BusItem, BusError>>;
    /// Done with an item: it will not be handed out again.
    fn ack<'a>(&'a self, item: &'a BusItem) -> BoxFuture<'a, Result<(), BusError>>;
    /// Gives an item back, to be handed out again after `delay` — unless it has reached the
    /// delivery limit, when it is dead-lettered instead.
    fn retry_later<'a>(
        &'a self,
        item: &'a BusItem,
        delay: Duration,
    ) -> BoxFuture<'a, Result<Requeued, BusError>>;
    /// Takes an item out of circulation, keeping it with the reason.
    fn dead_letter<'a>(
        &'a self,
        item: &'a BusItem,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BusError>>;
    /// The dead letters of a queue, oldest first.
    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, BusError>>;
    /// The bodies of every item waiting or handed out on `queue`, where the implementation
    /// can tell (`None` where it cannot, e.g. a broker). Used to reconcile after a crash.
    fn queued<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::collections::HashSet<Vec<u8>>>, BusError>>;
    /// Whether the bus can take work now (a broker connection is up).
    fn healthy(&self) -> bool {
        true
    }
    /// Items waiting or handed out and not settled.
    fn depth<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64, BusError>>;
    /// Publishes `body` to every queue subscribed to `topic` (on a broker, every node of the
    /// cluster, this one included). Durable when it returns. A bus without other nodes has
    /// no one to tell, and does nothing.
    fn broadcast<'a>(
        &'a self,
        _topic: &'a str,
        _body: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }
    /// Subscribes `queue` to `topic`: from now on it receives what is broadcast there.
    fn subscribe<'a>(
        &'a self,
        _topic: &'a str,
        _queue: &'a str,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }
    /// Whether `queue` was already there before this process used it (on a broker, someone
    /// declared it earlier), with the items waiting in it; `None` where it was not, or where
    /// the bus keeps no queues of its own beyond the node's database.
    fn history<'a>(&'a self, _queue: &'a str) -> BoxFuture<'a, Result<Option<u64>, BusError>> {
        Box::pin(async { Ok(None) })
    }
}
