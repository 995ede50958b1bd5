//! Accepting a document: the step every front door (gRPC, SMTP) ends in. The submission has
//! passed its door's field checks; here its content is checked against its label, a repeat of
//! (sender, local id) is answered with the original receipt (or refused when the local id now
//! names another document), the recipients are routed (`route::plan`), each planned delivery
//! is rendered once as a check that it can be served, and the message, its deliveries, their
//! work and the timeline are stored in one transaction. The receipt comes only once that is on
//! disk.

use crate::bus::messages::{LocalIdClaim, CLAIMS};
use crate::config::BusKind;
use crate::hub::Hub;
use crate::route;
use crate::store::{Enqueue, NewMessage, StoreError, Submitted};
use crate::track::{
    new_message_id, now_ms, AuditEvent, Channel, DeliveryRecord, DeliveryState, MessageRecord,
};
use edt_transforms::DocumentType;
use std::sync::atomic::Ordering;
use uuid::Uuid;

/// A document that passed validation, ready to store.
#[derive(Debug, Clone)]
pub struct Submission {
    pub sender_ods: String,
    pub recipients: Vec<String>,
    pub document_type: DocumentType,
    pub content_type: String,
    pub payload: Vec<u8>,
    pub local_id: String,
    pub nhs_number: Option<String>,
    pub file_name: Option<String>,
    pub title: Option<String>,
    pub channel: Channel,
    /// Where notices about this document go (the envelope sender of a mailed document).
    pub reply_to: Option<String>,
}

/// The receipt for a submission.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub message_id: Uuid,
    pub duplicate: bool,
    pub received_ms: u64,
    pub deliveries: Vec<DeliveryRecord>,
}

/// Why a submission was refused. Nothing is stored when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// A field broke a rule.
    #[error("{field}: {rule}")]
    Invalid { field: &'static str, rule: String },
    /// The hub cannot take more work now (the broker is away and the outbox is full).
    #[error("{0}")]
    Unavailable(String),
    /// The data disk is down to its reserve of free space.
    #[error("{0}")]
    DiskFull(String),
    /// More deliveries are waiting than the hub takes on (`limits.max_backlog`).
    #[error("{0}")]
    Backlog(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a refusal of a reused local id reads, just before the original message id.
const LOCAL_ID_REUSED: &str = "was already used for message ";

impl SubmitError {
    /// The original message, when this refuses a (sender, local id) already used for another
    /// document (different content or recipients): gRPC's `ALREADY_EXISTS`.
    pub fn reused_local_id(&self) -> Option<Uuid> {
        match self {
            SubmitError::Invalid {
                field: "local_id",
                rule,
            } => {
                let (_, rest) = rule.split_once(LOCAL_ID_REUSED)?;
                Uuid::parse_str(rest.get(..36)?).ok()
            }
            _ => None,
        }
    }
}

/// What differs between a stored message and a resubmission of its (sender, local id): its
/// content (the payload's bytes) or its recipients (in any order). `None`: the same document.
fn resubmission_differs(
    stored_sha256: &str,
    stored_recipients: &[String],
    recipients: &[String],
    payload_sha256: &str,
) -> Option<&'static str> {
    let set = |r: &[String]| {
        r.iter()
            .map(|s| s.trim().to_ascii_uppercase())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let content = !stored_sha256.is_empty() && !stored_sha256.eq_ignore_ascii_case(payload_sha256);
    let recipients = set(stored_recipients) != set(recipients);
    match (content, recipients) {
        (true, true) => Some("content and recipients"),
        (true, false) => Some("content"),
        (false, true) => Some("recipients"),
        (false, false) => None,
    }
}

/// Accepts a validated document: routes it, stores it with its deliveries and their work in
/// one transaction, and returns once that is on disk. A repeat of (sender, local id)
/// returns the original message.
pub async fn submit(hub: &Hub, sub: Submission, actor: &str) -> Result<Receipt, SubmitError> {
    let loaded = hub.directory.get();
    if loaded.directory.sender(&sub.sender_ods).is_none() {
        return Err(SubmitError::Invalid {
            field: "sender_ods",
            rule: format!(
                "{} is not a registered sender in the directory",
                sub.sender_ods
            ),
        });
    }
    // A document whose bytes are not what its label says is refused before anything else.
    edt_transforms::content::check(&sub.content_type, &sub.payload).map_err(|e| {
        SubmitError::Invalid {
            field: "payload",
            rule: e.to_string(),
        }
    })?;
    let payload_sha256 = edt_transforms::sha256_hex(&sub.payload);
    if let Some(orig) = hub.store.find_by_local_id(&sub.sender_ods, &sub.local_id)? {
        return duplicate_receipt(hub, orig, &sub.local_id, &sub.recipients, &payload_sha256).await;
    }
    let cluster = hub.config.bus == BusKind::Amqp;
    if cluster {
        if let Some(claim) = hub.store.claim_of(&sub.sender_ods, &sub.local_id)? {
            return claimed_receipt(claim, &sub.local_id, &sub.recipients, &payload_sha256);
        }
    }
    if let Some(problem) = hub.health.storage_problem() {
        metrics::counter!("edthub_ingest_refused_total", "reason" => "storage").increment(1);
        return Err(SubmitError::Unavailable(format!(
            "the hub's store cannot take work now ({problem}); nothing was stored, try again \
             shortly"
        )));
    }
    hub.disk_headroom(sub.payload.len() as u64).map_err(|why| {
        metrics::counter!("edthub_ingest_refused_total", "reason" => "disk-reserve").increment(1);
        SubmitError::DiskFull(why)
    })?;
    hub.backlog().map_err(SubmitError::Backlog)?;
    if hub.config.bus == BusKind::Amqp {
        let held = hub.outbox_depth.load(Ordering::Relaxed);
        if held >= hub.config.amqp.max_outbox {
            metrics::counter!("edthub_ingest_refused_total", "reason" => "outbox-full")
                .increment(1);
            return Err(SubmitError::Unavailable(format!(
                "the hub cannot take more work now: {held} work items are waiting in its outbox \
                 for RabbitMQ (amqp.max_outbox = {}); nothing was stored, try again shortly",
                hub.config.amqp.max_outbox
            )));
        }
    }
    if sub.recipients.is_empty() {
        return Err(SubmitError::Invalid {
            field: "recipient_ods",
            rule: format!(
                "at least one recipient is required: the hub cannot read recipients from a {} document",
                sub.content_type
            ),
        });
    }
    let now = now_ms();
    let id = new_message_id();
    let plan = route::plan::plan(
        &loaded.directory,
        &route::plan::Request {
            message_id: id,
            sender_ods: &sub.sender_ods,
            recipients: &sub.recipients,
            document_type: sub.document_type,
            actor,
            now_ms: now,
        },
    );
    let message = MessageRecord {
        id,
        sender_ods: sub.sender_ods.clone(),
        document_type: sub.document_type,
        content_type: sub.content_type.clone(),
        local_id: sub.local_id.clone(),
        nhs_number: sub.nhs_number.clone(),
        file_name: sub.file_name.clone(),
        title: sub.title.clone(),
        payload_size: sub.payload.len() as u64,
        payload_sha256: payload_sha256.clone(),
        channel: sub.channel,
        received_ms: now,
        recipients: sub.recipients.clone(),
        reply_to: sub.reply_to.clone(),
    };
    let received = format!(
        "{} ({}, {} bytes) from {} over {}, local id {}",
        sub.document_type,
        sub.content_type,
        sub.payload.len(),
        sub.sender_ods,
        sub.channel.as_str(),
        sub.local_id
    );
    let mut new = NewMessage {
        message,
        payload: sub.payload,
        deliveries: plan.deliveries,
        audit: vec![AuditEvent {
            at_ms: now,
            message_id: id,
            delivery_id: None,
            event: "received".into(),
            from: None,
            to: None,
            actor: actor.to_string(),
            reason: received,
        }],
        enqueue: plan.enqueue,
    };
    new.audit.extend(plan.audit);
    check_renders(hub, &new)?;
    if cluster {
        // Every node hears of this (sender, local id) through the outbox, with the receipt.
        let m = &new.message;
        new.enqueue.push(Enqueue {
            queue: CLAIMS.to_string(),
            body: LocalIdClaim {
                node: hub.node.clone(),
                tag: crate::track::own_tag(),
                message_id: m.id,
                sender_ods: m.sender_ods.clone(),
                local_id: m.local_id.clone(),
                payload_sha256: m.payload_sha256.clone(),
                recipients: m.recipients.clone(),
                received_ms: m.received_ms,
                deliveries: new.deliveries.clone(),
            }
            .encode(),
            due_ms: 0,
        });
    }
    let deliveries = new.deliveries.clone();
    let t0 = std::time::Instant::now();
    let outcome = hub.store.submit(new).await?;
    metrics::histogram!("edthub_store_write_seconds", "op" => "submit")
        .record(t0.elapsed().as_secs_f64());
    match outcome {
        Submitted::Created(id) => {
            let t1 = std::time::Instant::now();
            hub.store.flush().await?;
            metrics::histogram!("edthub_store_flush_wait_seconds")
                .record(t1.elapsed().as_secs_f64());
            metrics::counter!("edthub_ingest_total", "channel" => sub.channel.as_str())
                .increment(1);
            for d in &deliveries {
                if d.state == DeliveryState::Unroutable {
                    metrics::counter!("edthub_unroutable_total").increment(1);
                }
            }
            Ok(Receipt {
                message_id: id,
                duplicate: false,
                received_ms: now,
                deliveries,
            })
        }
        Submitted::Duplicate(orig) => {
            duplicate_receipt(hub, orig, &sub.local_id, &sub.recipients, &payload_sha256).await
        }
    }
}

/// Renders the document for each planned delivery whose route takes another format, so
/// that nothing certain to fail at delivery (a PDF to an ITK3 route, a Transfer of Care
/// message to a GP Connect route, a missing NHS number or sending mailbox) is receipted.
fn check_renders(hub: &Hub, new: &NewMessage) -> Result<(), SubmitError> {
    for d in &new.deliveries {
        let format = d.format.unwrap_or_default();
        if d.endpoint.is_none()
            || matches!(
                format,
                edt_transforms::ReceiverFormat::Original | edt_transforms::ReceiverFormat::Email
            )
        {
            continue;
        }
        if let Err(problem) = crate::render::render_for(hub, d, &new.message, &new.payload) {
            return Err(SubmitError::Invalid {
                field: "recipient_ods",
                rule: format!(
                    "{} takes documents as {format} (endpoint {}), and this document cannot \
                     be sent that way: {problem}",
                    d.recipient_ods,
                    d.endpoint.as_deref().unwrap_or("")
                ),
            });
        }
    }
    Ok(())
}

/// The receipt for a resubmission of (sender, local id): the original's, when it is the
/// same document to the same recipients; refused (see [`SubmitError::reused_local_id`])
/// when the local id now names another document, so a correction is never dropped silently.
async fn duplicate_receipt(
    hub: &Hub,
    orig: Uuid,
    local_id: &str,
    recipients: &[String],
    payload_sha256: &str,
) -> Result<Receipt, SubmitError> {
    // The original may have been committed by a concurrent call whose flush is still
    // running: make sure it is durable before saying so.
    hub.store.flush().await?;
    let view = hub.view(orig)?.ok_or(StoreError::NoSuchMessage(orig))?;
    let stored = &view.message;
    if let Some(what) = resubmission_differs(
        &stored.payload_sha256,
        &stored.recipients,
        recipients,
        payload_sha256,
    ) {
        return Err(local_id_reused(local_id, orig, what));
    }
    metrics::counter!("edthub_ingest_duplicates_total").increment(1);
    Ok(Receipt {
        message_id: orig,
        duplicate: true,
        received_ms: view.message.received_ms,
        deliveries: view.deliveries,
    })
}

/// The refusal of a local id that already names another document.
fn local_id_reused(local_id: &str, orig: Uuid, what: &str) -> SubmitError {
    metrics::counter!("edthub_ingest_refused_total", "reason" => "local-id-reused").increment(1);
    SubmitError::Invalid {
        field: "local_id",
        rule: format!(
            "{local_id:?} {LOCAL_ID_REUSED}{orig} with different {what}: a corrected or \
             changed document needs a new local id (by mail, a new Message-ID)"
        ),
    }
}

/// The receipt for a resubmission of (sender, local id) that another node of the cluster
/// took first: that node's receipt, as it gave it.
fn claimed_receipt(
    claim: LocalIdClaim,
    local_id: &str,
    recipients: &[String],
    payload_sha256: &str,
) -> Result<Receipt, SubmitError> {
    if let Some(what) = resubmission_differs(
        &claim.payload_sha256,
        &claim.recipients,
        recipients,
        payload_sha256,
    ) {
        return Err(local_id_reused(local_id, claim.message_id, what));
    }
    metrics::counter!("edthub_ingest_duplicates_total").increment(1);
    tracing::info!(message = %claim.message_id, node = %claim.node, "a resubmission of a document another node took; its receipt is returned");
    Ok(Receipt {
        message_id: claim.message_id,
        duplicate: true,
        received_ms: claim.received_ms,
        deliveries: claim.deliveries,
    })
}
