//! Reading the hub's MESH inbox: ITK3 responses (on the `_ACK` workflows) and MESH reports,
//! correlated to deliveries and applied to the state machine; anything that cannot be matched
//! is kept and listed (`edthub acks unmatched`), never dropped. A message is acknowledged at
//! MESH (and so leaves the inbox) only once what it said is on disk.
//!
//! | Arrives | Correlated by | Delivery becomes |
//! |---|---|---|
//! | ITK3 20013 | `response.identifier` = the delivery's MessageHeader id | `delivered` |
//! | ITK3 30001, 30004 | same | `accepted` |
//! | ITK3 30002, 30003, 1xxxx, 2xxxx | same | `rejected` (code and text kept) |
//! | MESH REPORT (`mex-StatusSuccess: ERROR`) | `mex-LinkedMsgID` = MESH id of the send | `failed` |

use crate::acks::{Ack, AckStatus, Outcome};
use crate::clients::mesh::Downloaded;
use crate::clients::SendError;
use crate::hub::Hub;
use crate::shutdown::Shutdown;
use crate::store::{Change, StoreError, UnmatchedAck};
use crate::track::{now_ms, DeliveryEvent, DeliveryState};
use edt_transforms::itk3::{self, ResponseKind};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollSummary {
    /// Messages found in the inbox.
    pub seen: usize,
    /// Applied to a delivery (or a repeat of what is recorded).
    pub applied: usize,
    /// Kept as unmatched.
    pub unmatched: usize,
    /// Left in the inbox for the next poll (the delivery's hand-over is not recorded yet, or
    /// a download failed).
    pub later: usize,
}

enum Handled {
    Applied,
    /// Another node's delivery: pass it to that node's queue.
    Forward(crate::bus::messages::HomeEvent),
    Unmatched(String),
    Later,
}

/// Polls the inbox every `mesh.poll_ms` until `shutdown` fires.
pub fn spawn(hub: Arc<Hub>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    let period = Duration::from_millis(hub.config.mesh.poll_ms.max(1));
    let mut every = crate::shutdown::Every::new(period, shutdown);
    tokio::spawn(async move {
        let mut last_handshake: Option<std::time::Instant> = None;
        while every.tick().await {
            let Some(client) = hub.mesh.as_ref() else {
                break;
            };
            if last_handshake.is_none_or(|t| t.elapsed() > Duration::from_secs(86_400)) {
                match client.handshake().await {
                    Ok(()) => last_handshake = Some(std::time::Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "MESH handshake failed"),
                }
            }
            match poll_once(&hub).await {
                Ok(s) if s.seen > 0 => tracing::info!(
                    seen = s.seen,
                    applied = s.applied,
                    unmatched = s.unmatched,
                    later = s.later,
                    "MESH inbox read"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "MESH inbox could not be read; will try again")
                }
            }
        }
    })
}

/// Reads the inbox once and handles everything in it.
pub async fn poll_once(hub: &Hub) -> Result<PollSummary, SendError> {
    let Some(client) = hub.mesh.as_ref() else {
        return Err(SendError::Permanent(
            "MESH is not configured on this hub".into(),
        ));
    };
    let mut summary = PollSummary::default();
    for id in client.inbox().await? {
        summary.seen += 1;
        let message = match client.download(&id).await {
            Ok(m) => m,
            Err(SendError::Permanent(e)) => {
                // It will never download: kept as unmatched (with what is known) so ops see
                // it, and taken out of the inbox.
                tracing::warn!(mesh_message = %id, error = %e, "MESH message cannot be downloaded");
                let stub = Downloaded {
                    id: id.clone(),
                    message_type: String::new(),
                    from: String::new(),
                    workflow: String::new(),
                    local_id: String::new(),
                    linked_message_id: String::new(),
                    status_success: String::new(),
                    status_code: String::new(),
                    status_description: String::new(),
                    body: Vec::new(),
                };
                let kept = keep_unmatched(hub, &stub, &format!("cannot be downloaded: {e}"));
                if kept.is_ok() && hub.store.flush().await.is_ok() {
                    summary.unmatched += 1;
                    let _ = client.acknowledge(&id).await;
                } else {
                    summary.later += 1;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(mesh_message = %id, error = %e, "MESH download failed; left in the inbox");
                summary.later += 1;
                continue;
            }
        };
        let handled = match handle(hub, &message) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(mesh_message = %id, error = %e, "could not record a MESH message; left in the inbox");
                summary.later += 1;
                continue;
            }
        };
        match handled {
            Handled::Later => {
                summary.later += 1;
                continue;
            }
            Handled::Forward(ref event) => {
                let home =
                    crate::bus::messages::home_queue(crate::track::home_tag(&event.delivery_id()));
                if let Err(e) = hub.bus.publish(&home, event.encode(), Duration::ZERO).await {
                    tracing::warn!(mesh_message = %id, error = %e, "could not pass a MESH response to its home node; left in the inbox");
                    summary.later += 1;
                    continue;
                }
                summary.applied += 1;
            }
            Handled::Applied => summary.applied += 1,
            Handled::Unmatched(ref problem) => {
                if let Err(e) = keep_unmatched(hub, &message, problem) {
                    tracing::error!(mesh_message = %id, error = %e, "could not keep an unmatched MESH message; left in the inbox");
                    summary.later += 1;
                    continue;
                }
                summary.unmatched += 1;
            }
        }
        metrics::counter!("edthub_mesh_inbox_total", "outcome" => match handled {
            Handled::Applied => "applied",
            _ => "unmatched",
        })
        .increment(1);
        // What the message said is on disk before MESH forgets it.
        if let Err(e) = hub.store.flush().await {
            tracing::error!(error = %e, "flush failed; MESH message left in the inbox");
            summary.later += 1;
            continue;
        }
        if let Err(e) = client.acknowledge(&id).await {
            tracing::warn!(mesh_message = %id, error = %e, "MESH acknowledge failed; it will be read again (and recognised)");
        }
    }
    Ok(summary)
}

fn handle(hub: &Hub, m: &Downloaded) -> Result<Handled, StoreError> {
    if m.message_type.eq_ignore_ascii_case("REPORT") {
        return report(hub, m);
    }
    let format = itk3::Format::sniff(&m.body);
    let response = match itk3::read_response(&m.body, format) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Handled::Unmatched(format!(
                "not a readable ITK3 response ({} from {} on {}): {e}",
                m.id, m.from, m.workflow
            )))
        }
    };
    let Ok(delivery) = Uuid::parse_str(&response.original_message_id) else {
        return Ok(Handled::Unmatched(format!(
            "ITK3 response {} acknowledges message {:?}, which is not one of this hub's",
            response.message_id, response.original_message_id
        )));
    };
    let status = match (response.positive, response.kind) {
        (true, ResponseKind::Infrastructure) => AckStatus::Delivered,
        (true, ResponseKind::Business) => AckStatus::Accepted,
        (false, _) => AckStatus::Rejected,
    };
    let detail = || {
        let mut reason = response.text.clone();
        if let Some(diag) = response.diagnostics.as_deref().filter(|d| !d.is_empty()) {
            reason = format!("{reason} ({diag})");
        }
        reason
    };
    let Some(d) = hub.store.delivery(delivery)? else {
        // With several nodes on one mailbox, the response may be for another node's delivery.
        if crate::track::home_tag(&delivery) != crate::track::own_tag()
            && hub.config.bus == crate::config::BusKind::Amqp
        {
            return Ok(Handled::Forward(crate::bus::messages::HomeEvent::Ack {
                delivery,
                endpoint: String::new(),
                node: hub.node.clone(),
                status,
                code: Some(response.code.code().to_string()),
                reason: Some(detail()),
                channel: crate::acks::AckChannel::Mesh,
                by: format!("mesh:{}", m.from),
            }));
        }
        return Ok(Handled::Unmatched(format!(
            "ITK3 response {} acknowledges {delivery}, which this hub does not know",
            response.message_id
        )));
    };
    let code = response.code.code().to_string();
    let reason = detail();
    // A business response can overtake the infrastructure one: a late 20013 changes nothing.
    if status == AckStatus::Delivered
        && matches!(d.state, DeliveryState::Accepted | DeliveryState::Rejected)
    {
        hub.store.audit(crate::track::AuditEvent {
            at_ms: now_ms(),
            message_id: d.message_id,
            delivery_id: Some(d.id),
            event: "late-infrastructure-ack".into(),
            from: Some(d.state),
            to: Some(d.state),
            actor: format!("mesh:{}", m.from),
            reason: format!("ITK3 {code} {reason} arrived after the business response"),
        })?;
        return Ok(Handled::Applied);
    }
    let ack = Ack {
        status,
        code: Some(code),
        reason: Some(reason),
        channel: crate::acks::AckChannel::Mesh,
    };
    let endpoint = d.endpoint.clone().unwrap_or_default();
    match crate::acks::apply(hub, d.id, &endpoint, &ack, &format!("mesh:{}", m.from))? {
        Outcome::Consumed | Outcome::Forward(_) => Ok(Handled::Applied),
        Outcome::Later => Ok(Handled::Later),
        Outcome::SetAside(problem) => Ok(Handled::Unmatched(format!(
            "ITK3 response {} for delivery {}: {problem}",
            response.message_id, d.id
        ))),
    }
}

fn report(hub: &Hub, m: &Downloaded) -> Result<Handled, StoreError> {
    let Some(id) = hub.store.delivery_by_transport(&m.linked_message_id)? else {
        return Ok(Handled::Unmatched(format!(
            "MESH report {} about message {:?}, which this hub did not send: {} {}",
            m.id, m.linked_message_id, m.status_code, m.status_description
        )));
    };
    if !m.status_success.eq_ignore_ascii_case("ERROR") {
        // A report that something went well adds nothing to the timeline.
        return Ok(Handled::Applied);
    }
    let Some(d) = hub.store.delivery(id)? else {
        return Ok(Handled::Unmatched(format!(
            "MESH report {} names delivery {id}, which is gone",
            m.id
        )));
    };
    let why = format!(
        "MESH report {}: code {} {}",
        m.id, m.status_code, m.status_description
    );
    let mut change = Change::new(DeliveryEvent::TransportFailed, "mesh-report", why.clone());
    change.error = Some(why);
    match hub.store.apply(d.id, change) {
        Ok(_) => Ok(Handled::Applied),
        Err(StoreError::InvalidTransition(_)) if d.state == DeliveryState::Failed => {
            Ok(Handled::Applied)
        }
        Err(StoreError::InvalidTransition(t)) => Ok(Handled::Unmatched(format!(
            "MESH report {} for delivery {}: {t}",
            m.id, d.id
        ))),
        Err(e) => Err(e),
    }
}

/// Keeps the bytes of an unmatched message under the data directory and lists it.
fn keep_unmatched(hub: &Hub, m: &Downloaded, problem: &str) -> Result<(), StoreError> {
    let dir = hub.config.data_dir.join("mesh-unmatched");
    let path = dir.join(format!("{}.msg", m.id));
    // On disk before MESH is told it can forget the message.
    let written = std::fs::create_dir_all(&dir).and_then(|_| {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&m.body)?;
        crate::durable::count_sync();
        f.sync_all()?;
        crate::durable::count_sync();
        std::fs::File::open(&dir)?.sync_all()
    });
    written.map_err(|e| StoreError::Engine(format!("keeping {}: {e}", path.display())))?;
    tracing::warn!(mesh_message = %m.id, problem, "unmatched MESH message kept");
    hub.store.record_unmatched_ack(UnmatchedAck {
        at_ms: now_ms(),
        source: format!(
            "mesh:{} message {} from {} on {}",
            hub.config.mesh.mailbox, m.id, m.from, m.workflow
        ),
        problem: problem.to_string(),
        kept_at: path.display().to_string(),
    })
}
