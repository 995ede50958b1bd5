//! Several nodes on one RabbitMQ.
//!
//! Every node keeps the tracking of the messages it received (their *home*): ids minted on a
//! node carry its tag ([`crate::track::node_tag`]), so any node can tell where a message or
//! delivery belongs. Work is shared through the broker's `deliver` queue, and each work item
//! carries what a node needs to attempt the delivery without the home node's database: the
//! delivery, the message's metadata and the payload ([`WorkItem`]). What happens to it comes
//! back to the home node through its own queue, `home.<tag>` ([`HomeEvent`]):
//!
//! - the outcome of an attempt made on another node (sent, or the error), applied by the home
//!   node like its own attempts (retry scheduling stays with the home node);
//! - an acknowledgement file another node picked up for one of the home node's deliveries;
//! - a delivery whose payload is too large to share, attempted by the home node itself.
//!
//! Events are idempotent: an outcome names the attempt it is for, and is applied only while
//! that attempt is still the one the home node is waiting on.

pub mod claims;
pub mod relay;

use crate::acks::{Ack, Outcome};
use crate::bus::{BusItem, Requeued};
use crate::deliver::Attempt;
use crate::hub::Hub;
use crate::shutdown::Shutdown;
use crate::store::StoreError;
use crate::track::DeliveryState;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

pub use crate::bus::messages::*;

/// Starts the consumers of this node's home queue.
pub fn spawn_home(
    hub: Arc<Hub>,
    consumers: usize,
    shutdown: Shutdown,
) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = own_home_queue();
    tracing::info!(node = %hub.node, queue = %queue, "consuming this node's home queue");
    (0..consumers)
        .map(|_| {
            let hub = hub.clone();
            let queue = queue.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        item = hub.bus.receive(&queue) => match item {
                            Ok(item) => home_event(&hub, item).await,
                            Err(e) => {
                                tracing::error!(error = %e, "home queue receive failed; pausing");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

async fn home_event(hub: &Hub, item: BusItem) {
    let event = match HomeEvent::decode(&item.body) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "unusable home event; dead-lettering");
            let _ = hub.bus.dead_letter(&item, &e).await;
            return;
        }
    };
    let id = event.delivery_id();
    let span = tracing::info_span!("home", delivery = %id);
    let settle = handle(hub, &item, event).instrument(span.clone()).await;
    settle_item(hub, &item, id, settle).instrument(span).await;
}

async fn handle(hub: &Hub, item: &BusItem, event: HomeEvent) -> Settle {
    match event {
        HomeEvent::Deliver { delivery } => {
            crate::deliver::worker::attempt_here(hub, item, delivery).await;
            Settle::Settled
        }
        HomeEvent::Outcome {
            delivery,
            attempt,
            node,
            result,
        } => match apply_remote_outcome(hub, delivery, attempt, &node, result).await {
            Ok(Attempt::Busy) => Settle::Later(Duration::from_millis(500)),
            Ok(a) => {
                if a != Attempt::Skipped {
                    tracing::info!(node = %node, outcome = ?a, "attempt by another node recorded");
                }
                Settle::Done
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record another node's attempt; will retry");
                Settle::Later(Duration::from_secs(5))
            }
        },
        HomeEvent::Ack {
            delivery,
            endpoint,
            node,
            status,
            code,
            reason,
            channel,
            by,
        } => {
            let ack = Ack {
                status,
                code,
                reason,
                channel,
            };
            let by = if by.is_empty() { "ack-file" } else { &by };
            match crate::acks::apply(hub, delivery, &endpoint, &ack, &format!("{by} via {node}")) {
                Ok(Outcome::Consumed) => match hub.store.flush().await {
                    Ok(()) => {
                        metrics::counter!("edthub_acks_total", "outcome" => "applied").increment(1);
                        Settle::Done
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "flush failed; the ack will be applied again");
                        Settle::Later(Duration::from_secs(1))
                    }
                },
                Ok(Outcome::Later) => Settle::Later(Duration::from_secs(2)),
                Ok(Outcome::SetAside(problem)) => Settle::Dead(problem),
                Ok(Outcome::Forward(_)) => {
                    Settle::Dead(format!("delivery {delivery} belongs to another node"))
                }
                Err(e) => {
                    tracing::error!(error = %e, "ack not applied; will retry");
                    Settle::Later(Duration::from_secs(5))
                }
            }
        }
    }
}

async fn settle_item(hub: &Hub, item: &BusItem, id: Uuid, settle: Settle) {
    match settle {
        Settle::Settled => {}
        Settle::Done => {
            if let Err(e) = hub.bus.ack(item).await {
                tracing::warn!(error = %e, "ack of home event failed; it will be redelivered");
            }
        }
        Settle::Later(delay) => {
            if let Ok(Requeued::DeadLettered) = hub.bus.retry_later(item, delay).await {
                tracing::error!(delivery = %id, "home event reached the delivery limit; kept as a dead letter");
            }
        }
        Settle::Dead(problem) => {
            tracing::error!(delivery = %id, problem = %problem, "ack from another node is unusable; kept as a dead letter of the home queue");
            metrics::counter!("edthub_acks_total", "outcome" => "set-aside").increment(1);
            let queue = own_home_queue();
            set_aside(
                hub,
                format!("{queue}: acknowledgement of delivery {id}"),
                problem.clone(),
                format!("the dead letters of {queue} on the broker"),
            );
            let _ = hub.bus.dead_letter(item, &problem).await;
        }
    }
}

enum Settle {
    /// Settled already (by the delivery worker's own logic).
    Settled,
    Done,
    Later(Duration),
    Dead(String),
}

/// Keeps a home event this node could not apply where ops will see it: among the unmatched
/// acknowledgements (`edthub acks unmatched`, counted by `edthub stats`).
fn set_aside(hub: &Hub, source: String, problem: String, kept_at: String) {
    let r = hub.store.record_unmatched_ack(crate::store::UnmatchedAck {
        at_ms: crate::track::now_ms(),
        source,
        problem,
        kept_at,
    });
    if let Err(e) = r {
        tracing::error!(error = %e, "could not record a home event set aside");
    }
}

/// Key in the node's database saying this database has used its home queue on the broker.
const HOME_QUEUE_MARK: &[u8] = b"home-queue-used";

/// Before this node consumes its home queue: if the broker already has that queue but this
/// database never used it, the node ran before under this name and its data folder was lost
/// or replaced. Says so loudly (log, `edthub_node_history_lost`, `/readyz`, `edthub stats`);
/// what arrives for the lost deliveries is set aside as unmatched acknowledgements.
pub async fn check_history(hub: &Hub) {
    let queue = own_home_queue();
    // A database that holds messages has its history (one from before the mark existed
    // included): only an empty one without the mark can have lost it.
    let marked = match hub
        .store
        .marker(HOME_QUEUE_MARK)
        .and_then(|m| Ok(m || hub.store.message_count()? > 0))
    {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the home queue mark");
            return;
        }
    };
    if !marked {
        tracing::info!(queue = %queue, "first start of this database on the broker: checking the broker for this node's history (the client may log NOT_FOUND for the queue: that is the answer hoped for)");
        match hub.bus.history(&queue).await {
            Ok(Some(waiting)) => {
                let dead = hub.bus.dead_letters(&queue).await.map_or(0, |d| d.len());
                let warning = format!(
                    "node {} starts with a database that never used its home queue {queue}, \
                     which the broker already holds ({waiting} events waiting, {dead} set \
                     aside): the node ran before under this name and its data folder was lost \
                     or replaced. Its unfinished deliveries are not known here and will not \
                     be retried; what arrives for them is set aside as unmatched \
                     acknowledgements. Restore the data folder, or replay from the senders' \
                     receipts (deploy/OPERATIONS.md)",
                    hub.node
                );
                tracing::error!(node = %hub.node, queue = %queue, waiting, dead, "{warning}");
                metrics::gauge!("edthub_node_history_lost").set(1.0);
                hub.health.warn(warning);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not check the broker for this node's history");
                return;
            }
        }
    }
    if let Err(e) = hub.store.set_marker(HOME_QUEUE_MARK) {
        tracing::warn!(error = %e, "could not record the home queue mark");
    }
}

/// Where a queued delivery's work goes (see [`work_for`]).
#[derive(Debug)]
pub enum WorkFor {
    Nothing,
    Home,
    Shared(Box<crate::cluster::WorkItem>),
}

/// Applies the outcome of an attempt another node made at one of this node's deliveries.
/// Idempotent: applied only while `attempt` is the attempt this delivery is waiting on.
pub async fn apply_remote_outcome(
    hub: &Hub,
    delivery_id: Uuid,
    attempt: u32,
    node: &str,
    result: crate::cluster::RemoteResult,
) -> Result<crate::deliver::Attempt, StoreError> {
    let Some(_busy) = crate::deliver::worker::claim(hub, delivery_id) else {
        return Ok(crate::deliver::Attempt::Busy);
    };
    let Some(d) = hub.store.delivery(delivery_id)? else {
        // Minted here (its tag says so) but unknown: this node's database lost it.
        let what = match &result {
            Ok(_) => "sent",
            Err(_) => "failed",
        };
        tracing::error!(delivery = %delivery_id, node, what, "another node attempted a delivery this node does not know; its data folder may have been lost");
        set_aside(
            hub,
            format!(
                "{}: attempt {attempt} by node {node} of delivery {delivery_id}",
                own_home_queue()
            ),
            format!("the attempt {what}, but this node has no record of delivery {delivery_id}"),
            "nowhere else: this record is all that is left".into(),
        );
        return Ok(crate::deliver::Attempt::Skipped);
    };
    if !d.state.awaits_transport() || !d.is_current() || d.attempts + 1 != attempt {
        if result.is_ok() && d.state == DeliveryState::Cancelled {
            tracing::warn!(delivery = %delivery_id, node, "node handed over a delivery that was cancelled meanwhile");
        }
        return Ok(crate::deliver::Attempt::Skipped);
    }
    let r = crate::deliver::worker::record(hub, &d, result, Some(node)).await?;
    hub.store.flush().await?;
    Ok(r)
}

/// How a queued delivery's work goes to the broker: as a self-contained item on the
/// shared queue; to this node's own queue (payload larger than `max_shared`, or no
/// longer held); or not at all (it no longer waits for its transport).
pub fn work_for(hub: &Hub, delivery_id: Uuid, max_shared: u64) -> Result<WorkFor, StoreError> {
    let Some(d) = hub.store.delivery(delivery_id)? else {
        return Ok(WorkFor::Nothing);
    };
    if !d.state.awaits_transport() || !d.is_current() {
        return Ok(WorkFor::Nothing);
    }
    let Some(m) = hub.store.message(d.message_id)? else {
        return Ok(WorkFor::Home);
    };
    if m.payload_size > max_shared {
        return Ok(WorkFor::Home);
    }
    let Some(payload) = hub.store.payload(m.id)? else {
        return Ok(WorkFor::Home);
    };
    Ok(WorkFor::Shared(Box::new(crate::cluster::WorkItem {
        header: crate::cluster::WorkHeader {
            home: crate::track::own_tag(),
            home_node: hub.node.clone(),
            attempt: d.attempts + 1,
            delivery: d,
            message: m,
        },
        payload,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::{new_id, Channel};
    use crate::track::{DeliveryRecord, MessageRecord};
    use edt_transforms::DocumentType;
    use proptest::prelude::*;

    fn item(payload: Vec<u8>) -> WorkItem {
        let message = MessageRecord {
            id: new_id(),
            sender_ods: "RXX".into(),
            document_type: DocumentType::DischargeSummary,
            content_type: "application/pdf".into(),
            local_id: "L1".into(),
            nhs_number: Some("9434765919".into()),
            file_name: None,
            title: Some("Discharge".into()),
            payload_size: payload.len() as u64,
            payload_sha256: edt_transforms::sha256_hex(&payload),
            channel: Channel::Grpc,
            received_ms: 1,
            recipients: vec!["A81001".into()],
            reply_to: None,
        };
        let delivery = DeliveryRecord {
            endpoint: Some("a81001".into()),
            format: Some(edt_transforms::ReceiverFormat::Original),
            ..DeliveryRecord::new(new_id(), message.id, "A81001".into(), 1)
        };
        WorkItem {
            header: WorkHeader {
                home: 7,
                home_node: "a".into(),
                attempt: 1,
                delivery,
                message,
            },
            payload,
        }
    }

    proptest! {
        #[test]
        fn work_items_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let w = item(payload);
            let decoded = decode_work(&w.encode()).unwrap();
            prop_assert_eq!(decoded, Work::Shared(Box::new(w)));
        }

        #[test]
        fn decoding_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_work(&body);
            let _ = HomeEvent::decode(&body);
        }
    }

    #[test]
    fn bare_ids_and_damaged_items() {
        let id = new_id();
        assert_eq!(decode_work(id.as_bytes()).unwrap(), Work::Local(id));
        let mut bytes = item(b"hello".to_vec()).encode();
        bytes.pop();
        assert!(decode_work(&bytes)
            .unwrap_err()
            .contains("payload is 4 bytes, the message says 5"));
        assert!(decode_work(b"EDW1\0\0").unwrap_err().contains("truncated"));
        assert!(decode_work(b"nonsense here")
            .unwrap_err()
            .contains("neither"));
    }

    #[test]
    fn home_events_round_trip() {
        let e = HomeEvent::Outcome {
            delivery: new_id(),
            attempt: 2,
            node: "b".into(),
            result: Err(crate::clients::SendError::Transient(
                "folder missing".into(),
            )),
        };
        assert_eq!(HomeEvent::decode(&e.encode()).unwrap(), e);
        assert_eq!(home_queue(0x1a2b), "home.1a2b");
    }
}
