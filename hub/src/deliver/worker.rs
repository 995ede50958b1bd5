//! The delivery worker: takes `deliver` work items off the bus, claims the delivery (so an
//! attempt and a cancel never overlap), renders the document once for its receiver, hands it
//! to the endpoint's transport, and records how it went (sent, a retry scheduled with its work
//! item, or failed) before the work item is settled.

use super::SendError;
use crate::bus::messages::Work;
use crate::bus::{Bus, DELIVER_QUEUE};
use crate::config::BusKind;
use crate::hub::Hub;
use crate::route;
use crate::shutdown::Shutdown;
use crate::store::{Change, StoreError};
use crate::track::{now_ms, own_tag, DeliveryEvent, DeliveryRecord, DeliveryState, MessageRecord};
use edt_transforms::ReceiverFormat;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Sent,
    Retrying,
    Failed,
    /// Nothing to do: the delivery is not waiting for its transport (a redelivered work item).
    Skipped,
    /// Someone else is working on this delivery right now: try the work item again shortly.
    Busy,
}

/// A delivery claimed by [`claim`]; released on drop.
pub(crate) struct Claimed<'a> {
    hub: &'a Hub,
    id: Uuid,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.hub.in_progress.lock() {
            busy.remove(&self.id);
        }
    }
}

/// One attempt at a delivery, as a worker does it for a `deliver` work item. Safe to call
/// again for the same delivery (work items are redelivered after a crash).
pub async fn attempt(hub: &Hub, delivery_id: Uuid) -> Result<Attempt, StoreError> {
    let Some(_busy) = claim(hub, delivery_id) else {
        return Ok(Attempt::Busy);
    };
    attempt_inner(hub, delivery_id).await
}

/// [`claim`], waiting up to `wait` for an attempt in progress to finish (an ops action that
/// arrives mid-attempt goes after it rather than failing).
pub(crate) async fn claim_within(
    hub: &Hub,
    delivery_id: Uuid,
    wait: Duration,
) -> Option<Claimed<'_>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(c) = claim(hub, delivery_id) {
            return Some(c);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Marks a delivery as being worked on by this node (an attempt or a cancel), so that the
/// two never overlap: a cancel cannot land between writing a document and recording it.
pub(crate) fn claim(hub: &Hub, delivery_id: Uuid) -> Option<Claimed<'_>> {
    let fresh = hub
        .in_progress
        .lock()
        .expect("in-progress lock")
        .insert(delivery_id);
    // Built only when the claim succeeded: dropping a `Claimed` releases the claim.
    fresh.then(|| Claimed {
        hub,
        id: delivery_id,
    })
}

async fn attempt_inner(hub: &Hub, delivery_id: Uuid) -> Result<Attempt, StoreError> {
    let Some(d) = hub.store.delivery(delivery_id)? else {
        return Ok(Attempt::Skipped);
    };
    if !d.state.awaits_transport() || !d.is_current() {
        return Ok(Attempt::Skipped);
    }
    let outcome = match hub.store.message(d.message_id)? {
        None => Err(SendError::Permanent("message record is missing".into())),
        Some(m) => match hub.store.payload(m.id)? {
            None => Err(SendError::Permanent(
                "the payload is no longer held (retention)".into(),
            )),
            Some(payload) => execute(hub, &d, &m, payload).await,
        },
    };
    record(hub, &d, outcome, None).await
}

/// Hands a document to its endpoint's transport. Needs nothing from the store, so any
/// node can do it for any node's delivery.
pub async fn execute(
    hub: &Hub,
    d: &DeliveryRecord,
    m: &MessageRecord,
    payload: Vec<u8>,
) -> Result<super::Sent, SendError> {
    let loaded = hub.directory.get();
    let Some(ep) = d
        .endpoint
        .as_deref()
        .and_then(|e| loaded.directory.endpoint(e))
        .cloned()
    else {
        return Err(SendError::Permanent(format!(
            "endpoint {:?} is no longer in the directory",
            d.endpoint.as_deref().unwrap_or("")
        )));
    };
    // Rendered once, here, for whichever transport takes it.
    let doc = match d.format.unwrap_or_default() {
        ReceiverFormat::Original | ReceiverFormat::Email => super::Document {
            meta: m.meta(),
            bytes: payload,
            rendered_as: None,
        },
        format => {
            let r = crate::render::render_for(hub, d, m, &payload).map_err(SendError::Permanent)?;
            super::Document {
                meta: r.meta,
                bytes: r.bytes,
                rendered_as: Some(format),
            }
        }
    };
    let transport: Box<dyn super::Transport + '_> = match &ep.kind {
        edt_routers::EndpointKind::Mesh { mailbox, workflow } => Box::new(super::mesh::Mesh {
            client: hub.mesh.as_ref(),
            settings: &hub.config.mesh,
            mailbox: mailbox.clone(),
            workflow: workflow.clone(),
        }),
        edt_routers::EndpointKind::Mllp {
            address,
            timeout_secs,
        } => Box::new(super::mllp::Mllp {
            address: address.clone(),
            timeout: std::time::Duration::from_secs(timeout_secs.unwrap_or(30).max(1)),
        }),
        edt_routers::EndpointKind::Grpc { .. } => Box::new(super::pull::Held {
            endpoint: ep.id.clone(),
        }),
        edt_routers::EndpointKind::Email { address } => Box::new(super::smtp::Mail {
            relay: hub.relay.as_ref(),
            domain: &hub.config.smtp.domain,
            address: address.clone(),
        }),
        edt_routers::EndpointKind::File { .. } => Box::new(super::file::FileDrop {
            folder: loaded.folder(&ep).ok_or_else(|| {
                SendError::Permanent(format!("endpoint {:?} has no folder", ep.id))
            })?,
            files: &hub.files,
        }),
    };
    transport.send(d, m, doc).await
}

/// Records how an attempt at `d` ended: sent, a retry scheduled (with its work item), or
/// failed. `node` names the node that made the attempt when it was not this one.
pub(crate) async fn record(
    hub: &Hub,
    d: &DeliveryRecord,
    outcome: Result<super::Sent, SendError>,
    node: Option<&str>,
) -> Result<Attempt, StoreError> {
    let delivery_id = d.id;
    let by = node.map(|n| format!(" (by node {n})")).unwrap_or_default();
    let attempts_made = d.attempts + 1;
    let mut refusal = None;
    let (change, result) = match outcome {
        Ok(sent) => {
            let mut c = Change::new(
                DeliveryEvent::TransportAccepted,
                "hub",
                format!("{}{by}", sent.detail),
            );
            c.count_attempt = true;
            c.transport_id = Some(sent.transport_id).filter(|t| !t.is_empty());
            refusal = sent.refused;
            (c, Attempt::Sent)
        }
        Err(SendError::Transient(e)) if attempts_made < hub.config.delivery.max_attempts => {
            let delay = hub.config.delivery.backoff(attempts_made);
            let due = now_ms() + delay.as_millis() as u64;
            let mut c = Change::new(
                DeliveryEvent::RetryScheduled,
                "hub",
                format!(
                    "attempt {attempts_made} of {}{by} failed: {e}; next in {} ms",
                    hub.config.delivery.max_attempts,
                    delay.as_millis()
                ),
            );
            c.count_attempt = true;
            c.error = Some(e);
            c.next_attempt_ms = Some(due);
            c.enqueue = Some(route::plan::deliver_item(delivery_id, due));
            (c, Attempt::Retrying)
        }
        Err(SendError::Transient(e)) => {
            let mut c = Change::new(
                DeliveryEvent::GaveUp,
                "hub",
                format!(
                    "attempt {attempts_made} of {}{by} failed, giving up: {e}",
                    hub.config.delivery.max_attempts
                ),
            );
            c.count_attempt = true;
            c.error = Some(e);
            (c, Attempt::Failed)
        }
        Err(SendError::Permanent(e)) => {
            let mut c = Change::new(
                DeliveryEvent::GaveUp,
                "hub",
                format!("permanent error{by}, not retried: {e}"),
            );
            c.count_attempt = true;
            c.error = Some(e);
            (c, Attempt::Failed)
        }
    };
    match hub.store.apply_batched(delivery_id, change).await {
        Ok(_) => {}
        Err(StoreError::InvalidTransition(_)) => return Ok(Attempt::Skipped),
        Err(e) => return Err(e),
    }
    // The receiver took it and said at once that it will not file it.
    if let Some((code, text)) = refusal {
        let mut c = Change::new(
            DeliveryEvent::ReceiverReject,
            "hub",
            format!("rejected by the receiver{by}: {code} {text}")
                .trim()
                .to_string(),
        );
        c.error = Some(format!("{code} {text}").trim().to_string());
        c.ack = Some((code, text));
        match hub.store.apply_batched(delivery_id, c).await {
            Ok(_) | Err(StoreError::InvalidTransition(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let label = match result {
        Attempt::Sent => "sent",
        Attempt::Retrying => "retrying",
        Attempt::Failed => "failed",
        Attempt::Skipped => "skipped",
        Attempt::Busy => "busy",
    };
    metrics::counter!("edthub_delivery_attempts_total", "outcome" => label).increment(1);
    if result == Attempt::Sent {
        metrics::histogram!("edthub_receipt_to_sent_seconds")
            .record(now_ms().saturating_sub(d.created_ms) as f64 / 1000.0);
    }
    Ok(result)
}

/// Marks a delivery `failed` because its work item was dead-lettered (every hand-out ended
/// without the attempt being recorded), so ops sees it and can replay it.
pub async fn fail_dead_lettered(hub: &Hub, id: Uuid, handed_out: u32) {
    let mut c = Change::new(
        DeliveryEvent::GaveUp,
        "hub",
        format!("work item dead-lettered after {handed_out} hand-outs without a recorded attempt"),
    );
    c.error = Some("delivery work kept failing; see the hub log".into());
    match hub.store.apply(id, c) {
        Ok(_) => {
            if let Err(e) = hub.store.flush().await {
                tracing::error!(delivery = %id, error = %e, "flush failed");
            }
        }
        Err(StoreError::InvalidTransition(_)) | Err(StoreError::NoSuchDelivery(_)) => {}
        Err(e) => {
            tracing::error!(delivery = %id, error = %e, "could not mark a dead-lettered delivery failed")
        }
    }
}

/// Puts back work that a crash may have lost: every current delivery waiting for its
/// transport without a queued work item gets one (at its scheduled retry time), and
/// deliveries whose work item was dead-lettered are marked failed. Work items are
/// idempotent, so an extra one costs a skipped attempt, never a second delivery.
pub async fn reconcile(hub: &Hub) -> Result<usize, anyhow::Error> {
    for dead in hub.bus.dead_letters(DELIVER_QUEUE).await? {
        // Work items of other nodes are theirs to deal with.
        if let Ok(id) = crate::bus::messages::decode_work(&dead.body).map(|w| w.delivery_id()) {
            let ours = hub.config.bus == BusKind::Embedded
                || crate::track::home_tag(&id) == crate::track::own_tag();
            if ours
                && hub
                    .store
                    .delivery(id)?
                    .is_some_and(|d| d.state.awaits_transport())
            {
                fail_dead_lettered(hub, id, dead.deliveries).await;
            }
        }
    }
    let Some(queued) = hub.bus.queued(DELIVER_QUEUE).await? else {
        return Ok(0);
    };
    let mut fixed = 0;
    let now = now_ms();
    for state in [DeliveryState::Pending, DeliveryState::Retrying] {
        for id in hub.store.deliveries_in_state(state, u64::MAX, usize::MAX)? {
            if queued.contains(id.as_bytes().as_slice()) {
                continue;
            }
            let due = hub
                .store
                .delivery(id)?
                .and_then(|d| d.next_attempt_ms)
                .unwrap_or(now);
            hub.bus
                .publish(
                    DELIVER_QUEUE,
                    id.as_bytes().to_vec(),
                    std::time::Duration::from_millis(due.saturating_sub(now)),
                )
                .await?;
            fixed += 1;
        }
    }
    if fixed > 0 {
        tracing::warn!(fixed, "re-queued deliveries that had lost their work item");
    }
    Ok(fixed)
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
    let work = match crate::bus::messages::decode_work(&item.body) {
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
    match attempt(hub, id).await {
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
async fn attempt_for_home(
    hub: &Hub,
    item: &crate::bus::BusItem,
    w: crate::bus::messages::WorkItem,
) {
    let id = w.header.delivery.id;
    let result = execute(hub, &w.header.delivery, &w.header.message, w.payload).await;
    tracing::info!(home = %w.header.home_node, result = ?result, "delivery attempt for another node");
    let event = crate::bus::messages::HomeEvent::Outcome {
        delivery: id,
        attempt: w.header.attempt,
        node: hub.node.clone(),
        result,
    };
    match hub
        .bus
        .publish(
            &crate::bus::messages::home_queue(w.header.home),
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
            fail_dead_lettered(hub, id, item.deliveries).await;
        }
        Err(e) => {
            tracing::error!(delivery = %id, error = %e, "could not requeue the work item; it returns at restart");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::track::new_id;

    #[tokio::test]
    async fn a_second_claim_is_refused_and_leaves_the_first_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let hub = Hub::open(config).await.unwrap();
        let id = new_id();
        let first = claim(&hub, id).expect("first claim");
        assert!(claim(&hub, id).is_none(), "a second claim is refused");
        assert!(claim(&hub, id).is_none(), "and does not release the first");
        drop(first);
        assert!(claim(&hub, id).is_some(), "released on drop");
        let cancel = crate::admin::actions::cancel;
        assert!(matches!(
            cancel(&hub, new_id(), "ops", "x").await,
            Err(StoreError::NoSuchDelivery(_))
        ));
        let held = claim(&hub, id).unwrap();
        assert!(
            claim_within(&hub, id, Duration::from_millis(60))
                .await
                .is_none(),
            "still held after the wait"
        );
        // A cancel that arrives mid-attempt waits for it, then goes ahead.
        let release = async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(held);
        };
        let (_, cancelled) = tokio::join!(release, cancel(&hub, id, "ops", "x"));
        assert!(
            matches!(cancelled, Err(StoreError::NoSuchDelivery(_))),
            "past the claim: {cancelled:?}"
        );
    }
}
