//! What ops do to messages, whichever way they ask (the admin API, the CLI through it, the
//! retention job): replay (a new attempt linked to the original, routes resolved again),
//! cancel (never while an attempt is under way), and purge payloads past retention.

use crate::hub::Hub;
use crate::route;
use crate::store::{id_ms, Change, Replay, StoreError, ORPHAN_AFTER_MS};
use crate::track::{now_ms, AuditEvent, DeliveryEvent, DeliveryRecord};
use uuid::Uuid;

/// The timeline event of a purge.
const PAYLOAD_PURGED: &str = "payload-purged";

/// What a replay did (or would do) for one message.
#[derive(Debug, Clone)]
pub struct ReplayResult {
    pub message_id: Uuid,
    pub new_deliveries: Vec<DeliveryRecord>,
    pub skipped: Vec<String>,
}

/// Purges the payloads of messages received more than `older_than_ms` ago whose every
/// current delivery is final. Returns (messages, bytes, kept because not final, ids).
pub async fn purge(
    hub: &Hub,
    older_than_ms: u64,
    dry_run: bool,
    actor: &str,
    reason: &str,
) -> Result<(u64, u64, u64, Vec<Uuid>), StoreError> {
    let before = now_ms().saturating_sub(older_than_ms);
    let mut p = Purge {
        hub,
        before,
        dry_run,
        actor,
        reason,
        messages: 0,
        bytes: 0,
        kept: 0,
        ids: Vec::new(),
    };
    // In batches, oldest first, so a store of millions is purged in one go without
    // holding a runtime thread for long. First the payloads earlier releases kept as files.
    const BATCH: usize = 1000;
    let mut after = None;
    loop {
        let batch = hub.store.payload_candidates(before, after, BATCH)?;
        let next = (batch.len() == BATCH)
            .then(|| batch.last().copied())
            .flatten();
        p.batch(&batch).await?;
        if next.is_none() {
            break;
        }
        after = next;
        tokio::task::yield_now().await;
    }
    // Then the payload log, segment by segment: a segment goes once nothing in it is held
    // and it takes no more payloads.
    for segment in hub.store.payload_segments(before)? {
        let mut held = false;
        for batch in hub.store.segment_payloads(segment)?.chunks(BATCH) {
            held |= p.batch(batch).await?;
            tokio::task::yield_now().await;
        }
        if !held && !dry_run {
            hub.store.remove_segment(segment)?;
        }
    }
    let Purge {
        messages,
        bytes,
        kept,
        ids,
        ..
    } = p;
    if !dry_run && messages > 0 {
        metrics::counter!("edthub_payloads_purged_total").increment(messages);
        tracing::info!(target: "audit", actor, messages, bytes, "payloads purged");
    }
    Ok((messages, bytes, kept, ids))
}

/// One purge under way, and what it has done so far.
struct Purge<'a> {
    hub: &'a Hub,
    before: u64,
    dry_run: bool,
    actor: &'a str,
    reason: &'a str,
    messages: u64,
    bytes: u64,
    kept: u64,
    ids: Vec<Uuid>,
}

impl Purge<'_> {
    fn event(&self, id: Uuid, reason: &str) -> AuditEvent {
        AuditEvent {
            at_ms: now_ms(),
            message_id: id,
            delivery_id: None,
            event: PAYLOAD_PURGED.into(),
            from: None,
            to: None,
            actor: self.actor.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Purges what it may of the payloads `batch` names; returns whether any of them is still
    /// held (too young, not final, an orphan a submission may still be recording, or a dry
    /// run).
    async fn batch(&mut self, batch: &[Uuid]) -> Result<bool, StoreError> {
        let store = &self.hub.store;
        let mut held = false;
        let mut purged_ids = Vec::new();
        for &id in batch {
            if id_ms(&id) >= self.before {
                held = true;
                continue;
            }
            let all = store.deliveries_of(id)?;
            if all.is_empty() && store.message(id)?.is_none() {
                // A payload whose submission was never recorded: not a message, so not
                // reported; the store removes it once it is old enough.
                if !self.dry_run {
                    store.purge_payload(id, &[], self.event(id, "orphaned payload"))?;
                }
                held |= self.dry_run || id_ms(&id) + ORPHAN_AFTER_MS >= now_ms();
                continue;
            }
            let current: Vec<DeliveryRecord> =
                all.into_iter().filter(DeliveryRecord::is_current).collect();
            if current.iter().any(|d| !d.state.is_final()) {
                self.kept += 1;
                held = true;
                continue;
            }
            if store
                .audit_of(id)?
                .iter()
                .any(|e| e.event == PAYLOAD_PURGED)
            {
                // Purged and recorded, but the bytes outlived a crash: they go now.
                if !self.dry_run {
                    store.release_payload(id)?;
                }
                continue;
            }
            if self.dry_run {
                let size = store.payload_size(id)?.unwrap_or(0);
                self.messages += 1;
                self.bytes += size;
                self.ids.push(id);
                held = true;
                continue;
            }
            match store.purge_payload(id, &current, self.event(id, self.reason)) {
                Ok(Some(n)) => {
                    self.messages += 1;
                    self.bytes += n;
                    self.ids.push(id);
                    purged_ids.push(id);
                }
                Ok(None) => {}
                // A delivery changed meanwhile (a replay): keep it this time.
                Err(StoreError::Busy(_)) => {
                    self.kept += 1;
                    held = true;
                }
                Err(e) => return Err(e),
            }
        }
        if !purged_ids.is_empty() {
            // The records first, then the bytes.
            store.flush().await?;
            for id in purged_ids {
                store.release_payload(id)?;
            }
        }
        Ok(held)
    }
}

/// Replays a message's failed, rejected, unroutable, cancelled or overdue deliveries as
/// new deliveries (routes resolved again against the current directory). The originals
/// keep their history and point at their replacements.
pub async fn replay(
    hub: &Hub,
    message_id: Uuid,
    dry_run: bool,
    actor: &str,
    reason: &str,
) -> Result<ReplayResult, StoreError> {
    let view = hub
        .view(message_id)?
        .ok_or(StoreError::NoSuchMessage(message_id))?;
    let loaded = hub.directory.get();
    let mut out = ReplayResult {
        message_id,
        new_deliveries: Vec::new(),
        skipped: Vec::new(),
    };
    for d in &view.deliveries {
        if !d.state.is_replayable() {
            out.skipped.push(format!(
                "{} ({}): {} — only failed, rejected, unroutable, cancelled or overdue deliveries are replayed",
                d.recipient_ods, d.id, d.state
            ));
            continue;
        }
        let req = route::plan::Request {
            message_id,
            sender_ods: &view.message.sender_ods,
            recipients: &[],
            document_type: view.message.document_type,
            actor,
            now_ms: now_ms(),
        };
        let (mut new, enqueue, created) = match route::plan::replan(&loaded.directory, &req, d) {
            Some(Ok(planned)) => planned,
            Some(Err(reason)) => {
                out.skipped.push(format!(
                    "{} ({}): still unroutable: {reason}",
                    d.recipient_ods, d.id
                ));
                continue;
            }
            None => continue,
        };
        if !dry_run {
            let replayed = hub.store.replay(Replay {
                original: d.id,
                new,
                actor: actor.to_string(),
                reason: reason.to_string(),
                routing: created.reason,
                enqueue,
            });
            new = match replayed {
                Ok(n) => n,
                // Its state changed since we looked (an ack arrived, another operator
                // replayed it): report it and carry on with the rest of the message.
                Err(e @ (StoreError::NotReplayable(..) | StoreError::AlreadyReplayed(..))) => {
                    out.skipped
                        .push(format!("{} ({}): {e}", d.recipient_ods, d.id));
                    continue;
                }
                Err(e) => {
                    if !out.new_deliveries.is_empty() {
                        hub.store.flush().await?;
                    }
                    return Err(e);
                }
            };
            metrics::counter!("edthub_replays_total").increment(1);
        }
        out.new_deliveries.push(new);
    }
    if !dry_run && !out.new_deliveries.is_empty() {
        hub.store.flush().await?;
    }
    Ok(out)
}

/// What a replay of several messages did (or would do).
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Messages with at least one new delivery.
    pub replayed: u32,
    /// Messages with none.
    pub skipped: u32,
    pub outcomes: Vec<ReplayResult>,
}

/// Replays each of `ids` (see [`replay`]); an empty reason is recorded as "replayed by ops".
/// One message's problem (a concurrent replay, an unknown id) is reported with it and the
/// others still go ahead; only a storage failure stops the run. Logged for the audit trail
/// unless a dry run.
pub async fn replay_many(
    hub: &Hub,
    ids: &[Uuid],
    dry_run: bool,
    actor: &str,
    reason: &str,
) -> Result<ReplayReport, StoreError> {
    let reason = if reason.trim().is_empty() {
        "replayed by ops"
    } else {
        reason
    };
    let mut report = ReplayReport::default();
    for &id in ids {
        let outcome = match replay(hub, id, dry_run, actor, reason).await {
            Ok(r) => r,
            Err(e @ (StoreError::Engine(_) | StoreError::Corrupt(_))) => return Err(e),
            Err(e) => ReplayResult {
                message_id: id,
                new_deliveries: Vec::new(),
                skipped: vec![e.to_string()],
            },
        };
        if outcome.new_deliveries.is_empty() {
            report.skipped += 1;
        } else {
            report.replayed += 1;
        }
        report.outcomes.push(outcome);
    }
    if !dry_run {
        tracing::info!(
            actor,
            replayed = report.replayed,
            skipped = report.skipped,
            "replay"
        );
    }
    Ok(report)
}

/// Cancels a delivery that has not reached a final state; an empty reason is recorded as
/// "cancelled by ops".
pub async fn cancel(
    hub: &Hub,
    delivery_id: Uuid,
    actor: &str,
    reason: &str,
) -> Result<DeliveryRecord, StoreError> {
    let reason = if reason.trim().is_empty() {
        "cancelled by ops"
    } else {
        reason
    };
    // A cancel that arrives mid-attempt waits for the attempt to be recorded.
    let wait = std::time::Duration::from_secs(10);
    let Some(_busy) = crate::deliver::worker::claim_within(hub, delivery_id, wait).await else {
        return Err(StoreError::Busy(delivery_id));
    };
    let d = hub.store.apply(
        delivery_id,
        Change::new(DeliveryEvent::Cancel, actor, reason),
    )?;
    hub.store.flush().await?;
    tracing::info!(actor, delivery = %delivery_id, "delivery cancelled");
    Ok(d)
}

/// Reloads the directory from its files; a directory that fails to load leaves the one in use
/// (the error says why).
pub async fn reload_directory(
    hub: &Hub,
    actor: &str,
    reason: &str,
) -> Result<std::sync::Arc<crate::route::Loaded>, String> {
    let handle = hub.directory.clone();
    let loaded = tokio::task::spawn_blocking(move || handle.reload())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("directory not reloaded, the previous one stays in use: {e}"))?;
    tracing::info!(actor, reason, "directory reloaded on request");
    Ok(loaded)
}
