//! The transactional outbox relay. The store always queues work in this node's own database, in
//! the same transaction as the state change behind it; with RabbitMQ, relays take each item,
//! publish it to the broker, wait for the confirm, and only then remove it from the outbox.
//! While the broker is away the outbox holds the work (up to `amqp.max_outbox`, after which
//! submissions are refused rather than accepted and put at risk).
//!
//! On the way, each delivery id becomes a self-contained work item for the shared queue (see
//! [`crate::cluster`]), or — when the payload is too large to share — an instruction on this
//! node's own queue to attempt it here.

use super::WorkFor;
use crate::bus::{Bus, DELIVER_QUEUE};
use crate::cluster;
use crate::hub::Hub;
use crate::shutdown::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// What to publish for an outbox item, and where; `None` when there is nothing to do.
fn expand(hub: &Hub, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let Ok(id) = Uuid::from_slice(body) else {
        // Not a delivery id: pass it on as it is.
        return Some((DELIVER_QUEUE.to_string(), body.to_vec()));
    };
    let home = || {
        Some((
            cluster::own_home_queue(),
            cluster::HomeEvent::Deliver { delivery: id }.encode(),
        ))
    };
    match crate::cluster::work_for(hub, id, hub.config.amqp.max_shared_payload) {
        Ok(WorkFor::Nothing) => None,
        Ok(WorkFor::Home) => home(),
        Ok(WorkFor::Shared(w)) => Some((DELIVER_QUEUE.to_string(), w.encode())),
        Err(e) => {
            tracing::warn!(delivery = %id, error = %e, "could not read the delivery; this node will attempt it");
            home()
        }
    }
}

/// The next item of an outbox queue; `None` once the shutdown fires.
pub(super) async fn next_item(
    hub: &Hub,
    queue: &str,
    shutdown: &mut Shutdown,
) -> Option<crate::bus::BusItem> {
    loop {
        let item = tokio::select! {
            _ = shutdown.wait() => return None,
            item = hub.outbox.receive(queue) => item,
        };
        match item {
            Ok(i) => return Some(i),
            Err(e) => {
                tracing::error!(error = %e, queue, "outbox read failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Runs `publish` until the broker takes what it sends, backing off while it is away;
/// `false` if the shutdown fired first (what was taken from the outbox stays in flight and
/// goes back to it at restart).
pub(super) async fn until_published<F, Fut>(
    shutdown: &mut Shutdown,
    what: &str,
    mut publish: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::bus::BusError>>,
{
    let first = Duration::from_millis(100);
    let mut backoff = first;
    loop {
        match publish().await {
            Ok(()) => return true,
            Err(e) => {
                if backoff == first {
                    tracing::warn!(error = %e, "cannot hand {what} to RabbitMQ; holding it in the outbox");
                }
                tokio::select! {
                    _ = shutdown.wait() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Starts `n` relays for the deliver queue and the outbox depth gauge.
pub fn spawn(hub: Arc<Hub>, n: usize, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
    let mut tasks: Vec<JoinHandle<()>> = (0..n)
        .map(|_| {
            let hub = hub.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                while let Some(item) = next_item(&hub, DELIVER_QUEUE, &mut shutdown).await {
                    let Some((queue, body)) = expand(&hub, &item.body) else {
                        // Nothing left to do for it (cancelled, or already handed over).
                        let _ = hub.outbox.ack(&item).await;
                        continue;
                    };
                    let published = until_published(&mut shutdown, "work", || {
                        hub.bus.publish(&queue, body.clone(), Duration::ZERO)
                    })
                    .await;
                    if !published {
                        return;
                    }
                    if let Err(e) = hub.outbox.ack(&item).await {
                        tracing::warn!(error = %e, "outbox ack failed; the item may be published twice");
                    }
                    metrics::counter!("edthub_outbox_relayed_total").increment(1);
                }
            })
        })
        .collect();
    let mut shutdown = shutdown;
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            if let Ok(d) = hub.outbox.depth(DELIVER_QUEUE).await {
                hub.outbox_depth.store(d, Ordering::Relaxed);
                metrics::gauge!("edthub_outbox_depth").set(d as f64);
            }
        }
    }));
    tasks
}
