//! Delivery: the workers that take `deliver` work items off the bus and hand each document to
//! its endpoint's transport. One module per transport.

pub mod file;

use crate::bus::{Bus, DELIVER_QUEUE};
use crate::hub::{Attempt, Hub};
use crate::shutdown::Shutdown;
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
    let Ok(id) = Uuid::from_slice(&item.body) else {
        tracing::error!(
            tag = item.tag,
            "deliver work item is not a delivery id; dead-lettering"
        );
        let _ = bus.dead_letter(&item, "body is not a delivery id").await;
        return;
    };
    let span = tracing::info_span!("deliver", delivery = %id);
    match hub.attempt(id).instrument(span).await {
        Ok(Attempt::Busy) => retry(hub, &item, id, Duration::from_millis(500), "busy").await,
        Ok(outcome) => {
            if outcome != Attempt::Skipped {
                tracing::info!(outcome = ?outcome, "delivery attempt");
            }
            if let Err(e) = bus.ack(&item).await {
                tracing::warn!(error = %e, "ack of work item failed; it will be redelivered");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "delivery attempt could not be recorded; will retry");
            retry(
                hub,
                &item,
                id,
                Duration::from_secs(5),
                "attempt not recorded",
            )
            .await;
        }
    }
}

/// Gives a work item back; when it has reached the delivery limit the delivery is failed, so
/// that it shows up for ops instead of waiting forever.
async fn retry(hub: &Hub, item: &crate::bus::BusItem, id: Uuid, delay: Duration, why: &str) {
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
