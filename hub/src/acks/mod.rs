//! Acknowledgements: every way a receiver's answer comes back, converging on one [`apply`].
//!
//! | Channel | Module | Matched by |
//! |---|---|---|
//! | ack files in a drop folder's `acks/` | [`mod@file`] | the file name (delivery id) and the folder (endpoint) |
//! | ITK3 responses and MESH reports in the hub's MESH inbox | [`mesh`] | `response.identifier` (the delivery's MessageHeader id), `mex-LinkedMsgID` |
//! | `ReceiverDelivery/Acknowledge` from receivers pulling over gRPC | `deliver::pull` | the delivery id, within the caller's endpoint |
//! | acknowledgements another node took for this node's deliveries | `cluster` | the delivery id |
//!
//! Each becomes an [`Ack`] that carries its channel, so the timeline says how the answer came.
//! Silence has an outcome too: [`check_sla`] turns deliveries with no acknowledgement within
//! `acks.sla_secs` into `overdue`.

pub mod file;
pub mod mesh;

pub use crate::track::ack::{AckChannel, AckStatus};
pub use file::{parse_ack, scan_file_acks, ACK_DIR, SET_ASIDE_DIR};

use crate::hub::Hub;
use crate::shutdown::{Every, Shutdown};
use crate::store::{Change, StoreError};
use crate::track::{now_ms, DeliveryEvent, DeliveryState};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// An acknowledgement, whichever way it came (an ack file's JSON is this, less the channel).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub status: AckStatus,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// How it reached the hub.
    #[serde(skip)]
    pub channel: AckChannel,
}

/// What became of an ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (or a repeat of what is already recorded): delete after the flush.
    Consumed,
    /// Unusable: set aside with this problem.
    SetAside(String),
    /// Not yet: the delivery is still on its way out, or the file is still being written.
    Later,
    /// Another node's delivery: pass it to that node, then delete.
    Forward(crate::bus::messages::HomeEvent),
}

/// Applies an acknowledgement to one of this node's deliveries, whichever channel brought it
/// (an ack file, a MESH response, a gRPC acknowledgement, or one passed on by another node).
pub fn apply(
    hub: &Hub,
    id: Uuid,
    endpoint: &str,
    ack: &Ack,
    actor: &str,
) -> Result<Outcome, StoreError> {
    let Some(d) = hub.store.delivery(id)? else {
        return Ok(Outcome::SetAside(format!(
            "no delivery {id} is known to this hub"
        )));
    };
    // An empty endpoint: the transport matched the delivery by its own id (an ITK3 response
    // read from MESH by another node) rather than by where it was sent.
    if !endpoint.is_empty() && d.endpoint.as_deref() != Some(endpoint) {
        return Ok(Outcome::SetAside(format!(
            "delivery {id} was not sent to endpoint {endpoint}"
        )));
    }
    if d.state.awaits_transport() {
        // The receiver has it but the hub has not recorded the hand-over yet (or is about
        // to send it again after a restart): apply the ack once it has.
        return Ok(Outcome::Later);
    }
    let code = ack.code.clone().unwrap_or_default();
    let reason = ack.reason.clone().unwrap_or_default();
    let mut change = Change::new(
        ack.status.event(),
        actor,
        match (code.is_empty(), reason.is_empty()) {
            (true, true) => format!("{} by {}", ack.status.target(), ack.channel.label()),
            _ => format!(
                "{} by {}: {code} {reason}",
                ack.status.target(),
                ack.channel.label()
            )
            .trim()
            .to_string(),
        },
    );
    if ack.code.is_some() || ack.reason.is_some() {
        change.ack = Some((code, reason));
    }
    match hub.store.apply(id, change) {
        Ok(_) => Ok(Outcome::Consumed),
        Err(StoreError::InvalidTransition(_)) if d.state == ack.status.target() => {
            Ok(Outcome::Consumed)
        }
        Err(StoreError::InvalidTransition(t)) => Ok(Outcome::SetAside(format!(
            "conflicts with the delivery's state: {t}"
        ))),
        Err(e) => Err(e),
    }
}

pub async fn check_sla(hub: &Hub) -> Result<usize, StoreError> {
    let acks = &hub.config.acks;
    let now = now_ms();
    let business_ms = acks.sla_secs.saturating_mul(1000);
    let infra_ms = match acks.infrastructure_sla_secs {
        0 => business_ms,
        s => s.saturating_mul(1000).min(business_ms),
    };
    let mut late = Vec::new();
    // Sent and never acknowledged: the infrastructure SLA (or the business one).
    for id in
        hub.store
            .deliveries_in_state(DeliveryState::Sent, now.saturating_sub(infra_ms), 10_000)?
    {
        let why = if infra_ms < business_ms {
            format!(
                "no infrastructure acknowledgement within {} s",
                acks.infrastructure_sla_secs
            )
        } else {
            format!("no business acknowledgement within {} s", acks.sla_secs)
        };
        late.push((id, why));
    }
    // Delivered but not filed: the business SLA, from when it was sent.
    for id in hub
        .store
        .deliveries_in_state(DeliveryState::Delivered, now, 10_000)?
    {
        let Some(d) = hub.store.delivery(id)? else {
            continue;
        };
        if d.sent_ms
            .unwrap_or(d.updated_ms)
            .saturating_add(business_ms)
            <= now
        {
            late.push((
                id,
                format!("no business acknowledgement within {} s", acks.sla_secs),
            ));
        }
    }
    let mut n = 0;
    for (id, why) in late {
        match hub
            .store
            .apply(id, Change::new(DeliveryEvent::SlaExpired, "hub", why))
        {
            Ok(_) => n += 1,
            Err(StoreError::InvalidTransition(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if n > 0 {
        hub.store.flush().await?;
        metrics::counter!("edthub_overdue_total").increment(n as u64);
        tracing::warn!(count = n, "deliveries overdue");
    }
    let overdue = hub
        .store
        .count_by_state()?
        .into_iter()
        .find(|(s, _)| *s == DeliveryState::Overdue)
        .map_or(0, |(_, c)| c);
    metrics::gauge!("edthub_deliveries_overdue").set(overdue as f64);
    Ok(n)
}

/// Runs the ack-folder poller and the SLA checker until shutdown.
pub fn spawn(hub: Arc<Hub>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    let mut poll = Every::new(
        Duration::from_millis(hub.config.acks.poll_ms),
        shutdown.clone(),
    );
    let mut sla = Every::new(
        Duration::from_secs(hub.config.acks.sla_check_secs.max(1)),
        shutdown,
    );
    tokio::spawn(async move {
        let files = async {
            while poll.tick().await {
                scan_file_acks(&hub).await;
            }
        };
        let overdue = async {
            while sla.tick().await {
                if let Err(e) = check_sla(&hub).await {
                    tracing::error!(error = %e, "SLA check failed");
                }
            }
        };
        tokio::join!(files, overdue);
    })
}
