//! Health: a probe of the store every second, and the readiness report `/readyz` serves.
//!
//! sled stops for good at its first write error (a full disk, say): every later write returns
//! that error, even once the disk has room again. When the probe fails and the disk has room
//! again, the node asks to reopen its database: the server drains the node, closes the
//! database and opens it again, without a process restart.

use crate::hub::Hub;
use crate::shutdown::{Every, Shutdown, Trigger};
use std::sync::Arc;
use std::time::Duration;

/// How often the store is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A probe slower than this counts as failing (but is no reason to reopen).
const PROBE_LIMIT: Duration = Duration::from_secs(10);
/// Free space, beyond the reserve, a reopened database needs to be worth opening.
const REOPEN_ROOM: u64 = 8 << 20;

/// Probes the store until `shutdown`; fires `reopen` (after recording why in the hub's
/// health) when the store has failed and the disk has room again.
pub fn spawn(
    hub: Arc<Hub>,
    shutdown: Shutdown,
    reopen: Arc<Trigger>,
) -> tokio::task::JoinHandle<()> {
    let mut every = Every::new(PROBE_EVERY, shutdown);
    tokio::spawn(async move {
        while every.tick().await {
            let outcome = match tokio::time::timeout(PROBE_LIMIT, hub.store.probe()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err((e.to_string(), true)),
                Err(_) => Err((
                    format!(
                        "the database did not write a record within {} s",
                        PROBE_LIMIT.as_secs()
                    ),
                    false,
                )),
            };
            let failed = outcome.as_ref().err().cloned();
            if hub.health.note_storage(outcome.map_err(|(e, _)| e)) {
                match &failed {
                    Some((e, _)) => {
                        tracing::error!(error = %e, "the store cannot take work; not ready")
                    }
                    None => tracing::info!("the store takes work again; ready"),
                }
            }
            metrics::gauge!("edthub_storage_ok").set(if failed.is_none() { 1.0 } else { 0.0 });
            let Some((error, engine_failed)) = failed else {
                continue;
            };
            if !engine_failed || hub.disk_headroom(REOPEN_ROOM).is_err() {
                continue;
            }
            tracing::warn!(
                error = %error,
                "the storage engine failed and the disk has room again; reopening the database"
            );
            metrics::counter!("edthub_store_reopens_total").increment(1);
            let limit = Duration::from_secs(hub.config.shutdown_timeout_secs);
            hub.health
                .ask_reopen(crate::shutdown::watchdog(limit, "reopening the database"));
            reopen.fire();
            return;
        }
    })
}

/// Whether the node can take work now, and a report line per check: the store (its last
/// probe), the bus, the data disk against its reserve, and the directory.
pub fn readiness(hub: &Hub) -> (bool, String) {
    let mut problems: Vec<String> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    if !hub.is_ready() {
        problems.push("the node is starting or stopping".into());
    }
    match hub.health.storage_problem() {
        None => lines.push("storage: ok".into()),
        Some(e) => {
            lines.push(format!("storage: failing: {e}"));
            problems.push(format!("the store cannot take work: {e}"));
        }
    }
    if hub.bus.healthy() {
        lines.push("bus: ok".into());
    } else {
        lines.push("bus: the message broker is unavailable".into());
        problems.push("the message broker is unavailable".into());
    }
    match hub.disk_headroom(0) {
        Ok(()) => lines.push(match hub.disk_free() {
            Some(free) => format!(
                "disk: {} MiB free, {} MiB kept in reserve",
                free >> 20,
                hub.config.limits.min_free_disk_mb
            ),
            None => "disk: free space unknown".into(),
        }),
        Err(why) => {
            lines.push(format!("disk: {why}"));
            problems.push(why);
        }
    }
    let loaded = hub.directory.get();
    let senders = loaded.directory.sender_count();
    let endpoints = loaded.directory.endpoints().count();
    let mut directory = format!(
        "directory: {} ({senders} senders, {endpoints} endpoints)",
        loaded.file.display()
    );
    if let Some(e) = hub.directory.last_error() {
        // The directory in use stays; the node still routes with it.
        directory.push_str(&format!("; the last reload was refused: {e}"));
    }
    if senders == 0 {
        problems.push("the directory registers no senders: every document would be refused".into());
    }
    lines.push(directory);
    // Warnings do not stop the node taking work; they say what ops must look at.
    for w in hub.health.warnings() {
        lines.push(format!("warning: {w}"));
    }
    let head = match problems.first() {
        None => "ready".to_string(),
        Some(p) => format!("not ready: {p}"),
    };
    (
        problems.is_empty(),
        format!("{head}\n{}\n", lines.join("\n")),
    )
}
