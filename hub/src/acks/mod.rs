//! Acknowledgements coming back from receivers, and the SLA that turns silence into `overdue`.
//!
//! File-drop receivers write `acks/<delivery id>.ack` into their drop folder:
//!
//! ```json
//! {"status": "accepted"}
//! {"status": "rejected", "code": "30002", "reason": "Patient not known here"}
//! {"status": "delivered"}
//! ```
//!
//! `delivered` is an infrastructure acknowledgement (the receiving system has it); `accepted`
//! and `rejected` are business answers (filed, or refused). An ack file is consumed (deleted)
//! only after the state change it caused is on disk. A file that cannot be read, names no
//! delivery, belongs to another endpoint or contradicts the delivery's state is moved to
//! `acks/rejected/` with a `.error` note beside it, recorded for ops, and logged — never
//! silently deleted.

use crate::hub::Hub;
use crate::shutdown::Shutdown;
use crate::store::{Change, StoreError, UnmatchedAck};
use crate::track::{now_ms, DeliveryEvent, DeliveryState};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Subfolder of a drop folder where receivers write acks.
pub const ACK_DIR: &str = "acks";
/// Subfolder of `acks/` where unusable acks are kept.
pub const SET_ASIDE_DIR: &str = "rejected";

/// The content of an ack file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckFile {
    pub status: AckStatus,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    Delivered,
    Accepted,
    Rejected,
}

impl AckStatus {
    fn event(self) -> DeliveryEvent {
        match self {
            Self::Delivered => DeliveryEvent::InfrastructureAck,
            Self::Accepted => DeliveryEvent::BusinessAccept,
            Self::Rejected => DeliveryEvent::ReceiverReject,
        }
    }

    fn target(self) -> DeliveryState {
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

/// Parses ack file bytes, naming what is wrong.
pub fn parse_ack(bytes: &[u8]) -> Result<AckFile, String> {
    let ack: AckFile = serde_json::from_slice(bytes).map_err(|e| {
        format!("not a valid ack (expected JSON like {{\"status\":\"accepted\"}}): {e}")
    })?;
    if ack.status == AckStatus::Rejected && ack.reason.as_deref().unwrap_or("").trim().is_empty() {
        return Err("a rejected ack must say why in \"reason\"".into());
    }
    Ok(ack)
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
    Forward(crate::cluster::HomeEvent),
}

/// Prefix an ack file is renamed to while the hub works on it, so that a receiver writing the
/// same name again does not have its new ack deleted with the old one.
const PROCESSING: &str = ".processing-";

/// How long an unreadable ack file is given to be finished before it is set aside.
const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads every endpoint's `acks/` folder once. Returns (consumed, set aside).
pub async fn scan_file_acks(hub: &Hub) -> (usize, usize) {
    let loaded = hub.directory.get();
    let mut consumed = Vec::new();
    let mut set_aside = 0;
    for endpoint in loaded.directory.endpoints() {
        let Some(folder) = loaded.folder(endpoint) else {
            continue;
        };
        let folder = folder.join(ACK_DIR);
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".ack") && (!n.starts_with('.') || n.starts_with(PROCESSING)))
            .collect();
        // A fresh ack replaces a leftover one of the same name (taking it renames over it).
        let fresh: std::collections::HashSet<String> = names
            .iter()
            .filter(|n| !n.starts_with(PROCESSING))
            .cloned()
            .collect();
        names.retain(|n| {
            n.strip_prefix(PROCESSING)
                .is_none_or(|o| !fresh.contains(o))
        });
        for name in names {
            let original = name.strip_prefix(PROCESSING).unwrap_or(&name).to_string();
            let working = folder.join(format!("{PROCESSING}{original}"));
            if !name.starts_with(PROCESSING) {
                if let Err(e) = std::fs::rename(folder.join(&name), &working) {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        // Another node sharing this folder took it first.
                        continue;
                    }
                    tracing::warn!(file = %folder.join(&name).display(), error = %e, "could not take the ack file; will retry");
                    continue;
                }
            }
            match process(hub, &endpoint.id, &working, &original) {
                Ok(Outcome::Consumed) => consumed.push(working),
                Ok(Outcome::Forward(event)) => {
                    let home =
                        crate::cluster::home_queue(crate::track::home_tag(&event.delivery_id()));
                    match hub.bus.publish(&home, event.encode(), Duration::ZERO).await {
                        Ok(()) => {
                            metrics::counter!("edthub_acks_total", "outcome" => "forwarded")
                                .increment(1);
                            if let Err(e) = std::fs::remove_file(&working) {
                                tracing::warn!(file = %working.display(), error = %e, "could not remove a forwarded ack");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(file = %working.display(), error = %e, "could not pass the ack to its home node; will retry")
                        }
                    }
                }
                Ok(Outcome::Later) => {}
                Ok(Outcome::SetAside(problem)) => {
                    set_aside_file(hub, &folder, &working, &original, &problem);
                    set_aside += 1;
                }
                Err(e) => {
                    tracing::error!(file = %working.display(), error = %e, "ack not processed; will retry")
                }
            }
        }
    }
    if consumed.is_empty() {
        return (0, set_aside);
    }
    if let Err(e) = hub.store.flush().await {
        tracing::error!(error = %e, "flush failed; ack files kept for the next pass");
        return (0, set_aside);
    }
    for p in &consumed {
        if let Err(e) = std::fs::remove_file(p) {
            tracing::warn!(file = %p.display(), error = %e, "could not remove consumed ack");
        }
    }
    metrics::counter!("edthub_acks_total", "outcome" => "applied").increment(consumed.len() as u64);
    (consumed.len(), set_aside)
}

fn young(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < GRACE)
}

fn process(hub: &Hub, endpoint: &str, path: &Path, name: &str) -> Result<Outcome, StoreError> {
    let stem = name.trim_end_matches(".ack");
    let Ok(id) = Uuid::parse_str(stem) else {
        return Ok(Outcome::SetAside(format!(
            "file name must be <delivery id>.ack; {stem:?} is not a delivery id"
        )));
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Ok(Outcome::SetAside(format!("cannot read: {e}"))),
    };
    let ack = match parse_ack(&bytes) {
        Ok(a) => a,
        // Perhaps still being written: give it a moment before giving up on it.
        Err(_) if young(path) => return Ok(Outcome::Later),
        Err(problem) => return Ok(Outcome::SetAside(problem)),
    };
    if hub.store.delivery(id)?.is_none()
        && crate::track::home_tag(&id) != crate::track::own_tag()
        && hub.config.bus == crate::config::BusKind::Amqp
    {
        return Ok(Outcome::Forward(crate::cluster::HomeEvent::Ack {
            delivery: id,
            endpoint: endpoint.to_string(),
            node: hub.node.clone(),
            status: ack.status,
            code: ack.code,
            reason: ack.reason,
            channel: AckChannel::File,
            by: "ack-file".into(),
        }));
    }
    apply(hub, id, endpoint, &ack, AckChannel::File, "ack-file")
}

/// Applies an acknowledgement to one of this node's deliveries (from a file here, or passed
/// on by the node that picked the file up).
pub fn apply(
    hub: &Hub,
    id: Uuid,
    endpoint: &str,
    ack: &AckFile,
    channel: AckChannel,
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
            (true, true) => format!("{} by {}", ack.status.target(), channel.label()),
            _ => format!(
                "{} by {}: {code} {reason}",
                ack.status.target(),
                channel.label()
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

fn set_aside_file(hub: &Hub, ack_dir: &Path, path: &Path, name: &str, problem: &str) {
    let aside = ack_dir.join(SET_ASIDE_DIR);
    // Never overwrite earlier evidence.
    let mut target: PathBuf = aside.join(name);
    if target.exists() {
        target = aside.join(format!("{name}.{}", now_ms()));
    }
    let note = PathBuf::from(format!("{}.error", target.display()));
    let moved = std::fs::create_dir_all(&aside)
        .and_then(|_| std::fs::rename(path, &target))
        .and_then(|_| std::fs::write(&note, format!("{problem}\n")));
    let kept_at = match moved {
        Ok(()) => target.display().to_string(),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "could not move unusable ack aside; left in place");
            path.display().to_string()
        }
    };
    tracing::warn!(file = %ack_dir.join(name).display(), kept_at = %kept_at, problem, "unusable ack file set aside");
    metrics::counter!("edthub_acks_total", "outcome" => "set-aside").increment(1);
    if let Err(e) = hub.store.record_unmatched_ack(UnmatchedAck {
        at_ms: now_ms(),
        source: ack_dir.join(name).display().to_string(),
        problem: problem.to_string(),
        kept_at,
    }) {
        tracing::error!(error = %e, "could not record unmatched ack");
    }
}

/// Marks sent or delivered deliveries with no acknowledgement within the SLA as `overdue`.
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
    tokio::spawn(async move {
        let mut shutdown = shutdown;
        let mut poll = tokio::time::interval(Duration::from_millis(hub.config.acks.poll_ms));
        let mut sla =
            tokio::time::interval(Duration::from_secs(hub.config.acks.sla_check_secs.max(1)));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sla.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = poll.tick() => { scan_file_acks(&hub).await; }
                _ = sla.tick() => {
                    if let Err(e) = check_sla(&hub).await {
                        tracing::error!(error = %e, "SLA check failed");
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_parsing_names_the_problem() {
        assert_eq!(
            parse_ack(br#"{"status":"accepted"}"#).unwrap().status,
            AckStatus::Accepted
        );
        let r =
            parse_ack(br#"{"status":"rejected","code":"30002","reason":"Patient not known here"}"#)
                .unwrap();
        assert_eq!(r.code.as_deref(), Some("30002"));
        assert!(parse_ack(br#"{"status":"rejected"}"#)
            .unwrap_err()
            .contains("reason"));
        assert!(parse_ack(b"accepted").unwrap_err().contains("JSON"));
        assert!(parse_ack(br#"{"status":"filed"}"#)
            .unwrap_err()
            .contains("filed"));
        assert!(parse_ack(br#"{"status":"accepted","extra":1}"#).is_err());
    }
}
