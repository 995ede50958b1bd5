//! Ack files: the acknowledgement channel of file-drop receivers.
//!
//! Receivers write `acks/<delivery id>.ack` into their drop folder:
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

use super::{apply, Ack, AckChannel, AckStatus, Outcome};
use crate::hub::Hub;
use crate::store::{StoreError, UnmatchedAck};
use crate::track::now_ms;
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

/// Subfolder of a drop folder where receivers write acks.
pub const ACK_DIR: &str = "acks";
/// Subfolder of `acks/` where unusable acks are kept.
pub const SET_ASIDE_DIR: &str = "rejected";

/// Parses ack file bytes, naming what is wrong.
pub fn parse_ack(bytes: &[u8]) -> Result<Ack, String> {
    let ack: Ack = serde_json::from_slice(bytes).map_err(|e| {
        format!("not a valid ack (expected JSON like {{\"status\":\"accepted\"}}): {e}")
    })?;
    if ack.status == AckStatus::Rejected && ack.reason.as_deref().unwrap_or("").trim().is_empty() {
        return Err("a rejected ack must say why in \"reason\"".into());
    }
    Ok(ack)
}

/// Prefix an ack file is renamed to while the hub works on it, so that a receiver writing the
/// same name again does not have its new ack deleted with the old one.
const PROCESSING: &str = ".processing-";

/// The prefix of this node's files in hand: nodes sharing a folder each know their own, and
/// never take another's work in progress for a crash leftover.
fn own_processing_prefix() -> String {
    format!("{PROCESSING}{:04x}-", crate::track::own_tag())
}

/// Of the names in an `acks/` folder, those to work on, each with the ack's own name: fresh
/// ack files, and this node's own files in hand (left by a crash) unless a fresh ack of the
/// same name replaces them. Other nodes' files in hand are theirs.
fn to_take(names: Vec<String>, own: &str) -> Vec<(String, String)> {
    let fresh: std::collections::HashSet<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| n.ends_with(".ack") && !n.starts_with('.'))
        .collect();
    let mut take: Vec<(String, String)> = names
        .iter()
        .filter(|n| n.ends_with(".ack"))
        .filter_map(|n| {
            if fresh.contains(n.as_str()) {
                return Some((n.clone(), n.clone()));
            }
            let original = n.strip_prefix(own)?;
            (!fresh.contains(original)).then(|| (n.clone(), original.to_string()))
        })
        .collect();
    take.sort();
    take
}

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
        let names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        let own = own_processing_prefix();
        for (name, original) in to_take(names, &own) {
            let working = folder.join(format!("{own}{original}"));
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
                    let home = crate::bus::messages::home_queue(crate::track::home_tag(
                        &event.delivery_id(),
                    ));
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
        return Ok(Outcome::Forward(crate::bus::messages::HomeEvent::Ack {
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
    apply(hub, id, endpoint, &ack, "ack-file")
}

/// Moves an unusable ack file to `acks/rejected/` with a `.error` note, and records it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fresh_acks_and_this_nodes_own_leftovers_are_taken() {
        let own = ".processing-0001-";
        let names = [
            "a.ack",
            ".processing-0001-a.ack",
            ".processing-0001-b.ack",
            ".processing-00ff-c.ack",
            ".processing-c.ack",
            "note.txt",
            ".hidden.ack",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            to_take(names, own),
            vec![
                (".processing-0001-b.ack".to_string(), "b.ack".to_string()),
                ("a.ack".to_string(), "a.ack".to_string()),
            ],
            "another node's file in hand (c) is left to it"
        );
    }

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
