//! Local ids unique across the cluster. Each node tells every node, through a fanout
//! exchange, which (sender, local id) it took, with the receipt it gave ([`LocalIdClaim`]); each
//! node keeps the others' claims for `amqp.claim_days`. A sender who fails over to another
//! node with the same local id gets the original receipt back (or a refusal, when the local
//! id now names other content), not a second message.
//!
//! Claims leave through the outbox, written in the submission's own transaction, so none is
//! lost at a crash; a relay sends them in batches, one broker message for up to
//! [`BATCH`] of them. A node that took a local id in the moment before hearing of another
//! node's claim on it (a retry sent to a second node before the first node's claim arrived)
//! is told when the claim arrives: the conflict is logged and counted
//! (`edthub_local_id_conflicts_total`).

use super::relay::{next_item, until_published};
use crate::bus::messages::{claims_queue, LocalIdClaim, CLAIMS};
use crate::bus::Bus;
use crate::hub::Hub;
use crate::shutdown::{Every, Shutdown};
use crate::store::ClaimSeen;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Most claims in one broker message.
const BATCH: usize = 256;

/// Starts the relay of this node's claims, the consumer of every node's, and the pruning of
/// old ones.
pub fn spawn(hub: Arc<Hub>, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(relay(hub.clone(), shutdown.clone())),
        tokio::spawn(consume(hub.clone(), shutdown.clone())),
        tokio::spawn(prune(hub, shutdown)),
    ]
}

/// Takes claims from the outbox as they come, and broadcasts those waiting together.
async fn relay(hub: Arc<Hub>, mut shutdown: Shutdown) {
    while let Some(first) = next_item(&hub, CLAIMS, &mut shutdown).await {
        let mut items = vec![first];
        // Whatever else is waiting now joins this message (a receive that finds nothing
        // ready takes nothing).
        while items.len() < BATCH {
            match tokio::time::timeout(Duration::ZERO, hub.outbox.receive(CLAIMS)).await {
                Ok(Ok(i)) => items.push(i),
                _ => break,
            }
        }
        let mut claims = Vec::with_capacity(items.len());
        for item in &items {
            match LocalIdClaim::decode(&item.body) {
                Ok(c) => claims.push(c),
                Err(e) => {
                    tracing::error!(error = %e, "a claim in the outbox is unreadable; dropped")
                }
            }
        }
        let body = LocalIdClaim::encode_batch(&claims);
        let published = until_published(&mut shutdown, "the local ids taken", || {
            hub.bus.broadcast(CLAIMS, body.clone())
        })
        .await;
        if !published {
            return;
        }
        for item in &items {
            if let Err(e) = hub.outbox.ack(item).await {
                tracing::warn!(error = %e, "outbox ack failed; a claim may be sent twice");
            }
        }
        metrics::counter!("edthub_claims_sent_total").increment(claims.len() as u64);
        metrics::counter!("edthub_claims_broadcasts_total").increment(1);
    }
}

/// Records the claims every other node broadcasts.
async fn consume(hub: Arc<Hub>, mut shutdown: Shutdown) {
    let own = crate::track::own_tag();
    let queue = claims_queue(own);
    let mut backoff = Duration::from_millis(200);
    while let Err(e) = hub.bus.subscribe(CLAIMS, &queue).await {
        tracing::warn!(error = %e, "cannot subscribe to the cluster's local-id claims; trying again");
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    // From here the broker keeps every claim for this node, while it runs and while it is
    // away.
    tracing::info!(queue = %queue, "receiving the cluster's local-id claims");
    loop {
        let item = tokio::select! {
            _ = shutdown.wait() => return,
            item = hub.bus.receive(&queue) => item,
        };
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(error = %e, "claims queue receive failed; pausing");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let claims = match LocalIdClaim::decode_batch(&item.body) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "unusable claims; dead-lettering");
                let _ = hub.bus.dead_letter(&item, &e).await;
                continue;
            }
        };
        match record(&hub, &claims) {
            Ok(()) => {
                if let Err(e) = hub.bus.ack(&item).await {
                    tracing::warn!(error = %e, "claims ack failed; they will be recorded again");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record the cluster's claims; will retry");
                let _ = hub.bus.retry_later(&item, Duration::from_secs(5)).await;
            }
        }
    }
}

fn record(hub: &Hub, claims: &[LocalIdClaim]) -> Result<(), crate::store::StoreError> {
    let own = crate::track::own_tag();
    for c in claims.iter().filter(|c| c.tag != own) {
        match hub.store.record_claim(c)? {
            ClaimSeen::New => {
                metrics::counter!("edthub_claims_recorded_total").increment(1);
            }
            ClaimSeen::Known => {}
            ClaimSeen::Conflict(here) => {
                metrics::counter!("edthub_local_id_conflicts_total").increment(1);
                tracing::error!(
                    sender = %c.sender_ods,
                    local_id = %c.local_id,
                    here = %here,
                    there = %c.message_id,
                    node = %c.node,
                    "this node and node {} each took the same (sender, local id) before hearing \
                     of the other: the receivers may get the letter twice, as messages {here} \
                     and {}",
                    c.node,
                    c.message_id
                );
            }
        }
    }
    Ok(())
}

/// Forgets claims older than `amqp.claim_days`, hourly.
async fn prune(hub: Arc<Hub>, shutdown: Shutdown) {
    let mut every = Every::new(Duration::from_secs(3600), shutdown);
    while every.tick().await {
        let days = hub.config.amqp.claim_days;
        let before = crate::track::now_ms().saturating_sub(days.saturating_mul(86_400_000));
        match hub.store.prune_claims(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                forgotten = n,
                days,
                "claims older than the claim window forgotten"
            ),
            Err(e) => tracing::warn!(error = %e, "could not prune claims; will try again"),
        }
    }
}
