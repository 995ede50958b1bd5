//! Delivery: the workers that take `deliver` work items off the bus and hand each document to
//! its endpoint's transport. One module per transport.

pub mod file;
pub mod mesh;
pub mod pull;
pub mod smtp;

use crate::bus::{Bus, DELIVER_QUEUE};
use crate::cluster::{self, Work};
use crate::config::BusKind;
use crate::hub::{Attempt, Hub};
use crate::shutdown::Shutdown;
use crate::track::own_tag;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// How a transport attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying (folder missing or unwritable, connection refused, 4xx).
    Transient(String),
    /// Will never work as it is (endpoint removed, 5xx): fail now.
    Permanent(String),
}

/// A successful hand-over to the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The transport's own id for the delivery (for ack correlation).
    pub transport_id: String,
    /// For the audit trail: where it went.
    pub detail: String,
}

/// Runs `workers` delivery workers until `shutdown` fires.
pub fn spawn_workers(
    hub: Arc<Hub>,
    workers: usize,
    shutdown: Shutdown,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|n| {
            let hub = hub.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        item = hub.bus.receive(DELIVER_QUEUE) => match item {
                            Ok(item) => work(&hub, item).await,
                            Err(e) => {
                                tracing::error!(worker = n, error = %e, "bus receive failed; pausing");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

async fn work(hub: &Hub, item: crate::bus::BusItem) {
    let bus: &dyn Bus = hub.bus.as_ref();
    let work = match cluster::decode_work(&item.body) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(tag = item.tag, error = %e, "unusable deliver work item; dead-lettering");
            let _ = bus.dead_letter(&item, &e).await;
            return;
        }
    };
    let id = work.delivery_id();
    let span = tracing::info_span!("deliver", delivery = %id);
    match work {
        Work::Shared(w) if w.header.home != own_tag() => {
            attempt_for_home(hub, &item, *w).instrument(span).await
        }
        _ => attempt_here(hub, &item, id).instrument(span).await,
    }
}

/// Attempts one of this node's own deliveries and settles the work item.
pub(crate) async fn attempt_here(hub: &Hub, item: &crate::bus::BusItem, id: Uuid) {
    match hub.attempt(id).await {
        Ok(Attempt::Busy) => retry(hub, item, id, Duration::from_millis(500), "busy").await,
        Ok(outcome) => {
            if outcome != Attempt::Skipped {
                tracing::info!(outcome = ?outcome, "delivery attempt");
            }
            // On the broker, the work item must outlive the record of the attempt (and of the
            // retry it may have scheduled): settle it only once that is on disk. (The embedded
            // bus lives in the same database, which keeps writes in order.)
            if hub.config.bus == BusKind::Amqp && outcome != Attempt::Skipped {
                if let Err(e) = hub.store.flush().await {
                    tracing::error!(error = %e, "flush failed; the work item will be handed out again");
                    retry(hub, item, id, Duration::from_secs(1), "flush failed").await;
                    return;
                }
            }
            if let Err(e) = hub.bus.ack(item).await {
                tracing::warn!(error = %e, "ack of work item failed; it will be redelivered");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "delivery attempt could not be recorded; will retry");
            retry(
                hub,
                item,
                id,
                Duration::from_secs(5),
                "attempt not recorded",
            )
            .await;
        }
    }
}

/// Attempts another node's delivery from its self-contained work item, then tells the home
/// node how it went (through its queue) before settling the item. If this node dies in
/// between, the item is handed out again and the attempt repeated: the file lands under the
/// same name, and the home node applies one outcome per attempt.
async fn attempt_for_home(hub: &Hub, item: &crate::bus::BusItem, w: cluster::WorkItem) {
    let id = w.header.delivery.id;
    let result = match hub
        .execute(&w.header.delivery, &w.header.message, w.payload)
        .await
    {
        Ok(sent) => cluster::RemoteResult::Sent {
            transport_id: sent.transport_id,
            detail: sent.detail,
        },
        Err(SendError::Transient(error)) => cluster::RemoteResult::Transient { error },
        Err(SendError::Permanent(error)) => cluster::RemoteResult::Permanent { error },
    };
    tracing::info!(home = %w.header.home_node, result = ?result, "delivery attempt for another node");
    let event = cluster::HomeEvent::Outcome {
        delivery: id,
        attempt: w.header.attempt,
        node: hub.node.clone(),
        result,
    };
    match hub
        .bus
        .publish(
            &cluster::home_queue(w.header.home),
            event.encode(),
            Duration::ZERO,
        )
        .await
    {
        Ok(()) => {
            if let Err(e) = hub.bus.ack(item).await {
                tracing::warn!(error = %e, "ack of work item failed; it will be redelivered");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not tell the home node; the attempt will be repeated");
            let _ = hub.bus.retry_later(item, Duration::from_secs(1)).await;
        }
    }
}

/// Gives a work item back; when it has reached the delivery limit the delivery is failed, so
/// that it shows up for ops instead of waiting forever.
pub(crate) async fn retry(
    hub: &Hub,
    item: &crate::bus::BusItem,
    id: Uuid,
    delay: Duration,
    why: &str,
) {
    match hub.bus.retry_later(item, delay).await {
        Ok(crate::bus::Requeued::Later) => {}
        Ok(crate::bus::Requeued::DeadLettered) => {
            tracing::error!(delivery = %id, why, "work item reached the delivery limit");
            hub.fail_dead_lettered(id, item.deliveries).await;
        }
        Err(e) => {
            tracing::error!(delivery = %id, error = %e, "could not requeue the work item; it returns at restart");
        }
    }
}
