//! The hub itself: the operations every front door (gRPC, later SMTP) and every worker share —
//! accept a document, attempt a delivery, replay, cancel, report status — over the store, the
//! bus and the directory.

use crate::bus::amqp::{AmqpBus, AmqpSettings};
use crate::bus::{embedded::EmbeddedBus, Bus, DELIVER_QUEUE};
use crate::config::{BusKind, Config};
use crate::deliver::{self, SendError};
use crate::route::{self, DirectoryHandle};
use crate::store::{Change, NewMessage, Replay, SledStore, Store, StoreError, Submitted};
use crate::track::{
    new_id, now_ms, summarise, AuditEvent, Channel, DeliveryEvent, DeliveryRecord, DeliveryState,
    MessageRecord,
};
use edt_transforms::DocumentType;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The timeline event of a purge.
const PAYLOAD_PURGED: &str = "payload-purged";

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
    stored: &MessageRecord,
    recipients: &[String],
    payload_sha256: &str,
) -> Option<&'static str> {
    let set = |r: &[String]| {
        r.iter()
            .map(|s| s.trim().to_ascii_uppercase())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let content = !stored.payload_sha256.is_empty()
        && !stored.payload_sha256.eq_ignore_ascii_case(payload_sha256);
    let recipients = set(&stored.recipients) != set(recipients);
    match (content, recipients) {
        (true, true) => Some("content and recipients"),
        (true, false) => Some("content"),
        (false, true) => Some("recipients"),
        (false, false) => None,
    }
}

/// A message with its current deliveries.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub message: MessageRecord,
    /// Current deliveries (not superseded by a replay).
    pub deliveries: Vec<DeliveryRecord>,
    pub state: Option<DeliveryState>,
    pub complete: bool,
}

/// What a replay did (or would do) for one message.
#[derive(Debug, Clone)]
pub struct ReplayResult {
    pub message_id: Uuid,
    pub new_deliveries: Vec<DeliveryRecord>,
    pub skipped: Vec<String>,
}

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

/// Where a queued delivery's work goes (see [`Hub::work_for`]).
#[derive(Debug)]
pub enum WorkFor {
    Nothing,
    Home,
    Shared(Box<crate::cluster::WorkItem>),
}

/// A delivery claimed by [`Hub::claim`]; released on drop.
struct Claimed<'a> {
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

/// A running node's shared state.
pub struct Hub {
    pub config: Config,
    pub store: Arc<dyn Store>,
    /// The bus workers take work from: the outbox itself (embedded) or RabbitMQ.
    pub bus: Arc<dyn Bus>,
    /// Where the store's transactions put work (the embedded bus in this node's database).
    /// With RabbitMQ, relays move it to the broker.
    pub outbox: Arc<EmbeddedBus>,
    /// Work items waiting in the outbox for the broker (counted by the relays).
    pub outbox_depth: std::sync::atomic::AtomicU64,
    pub directory: Arc<DirectoryHandle>,
    pub node: String,
    pub started_ms: u64,
    ready: AtomicBool,
    in_progress: Mutex<HashSet<Uuid>>,
    /// The outbound mail relay, when one is configured.
    pub relay: Option<deliver::smtp::Relay>,
    /// The MESH client, when MESH is configured.
    pub mesh: Option<crate::deliver::mesh::client::MeshClient>,
}

impl Hub {
    /// Opens the node's store, bus and directory. With no directory configured, writes the
    /// sample directory (and its drop folders) under the data directory on first run.
    pub async fn open(config: Config) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display())
        })?;
        let dir_file = config.directory_path();
        if config.directory.is_none() && route::write_sample(&dir_file)? {
            tracing::info!(file = %dir_file.display(), "wrote a sample directory");
        }
        let directory = Arc::new(DirectoryHandle::load(&dir_file)?);
        let store = SledStore::open(
            &config.data_dir.join("db"),
            &config.data_dir.join("payloads"),
            config.cache_mb,
        )?;
        let bus = EmbeddedBus::open(
            store.db(),
            store.signals(),
            store.group_commit(),
            config.delivery.max_bus_deliveries,
        )?;
        let outbox = Arc::new(bus);
        let work: Arc<dyn Bus> = match config.bus {
            BusKind::Embedded => outbox.clone(),
            BusKind::Amqp => Arc::new(AmqpBus::lazy(AmqpSettings {
                url: config.amqp.url.clone(),
                prefetch: config.amqp.prefetch,
                prefix: config.amqp.queue_prefix.clone(),
                max_deliveries: config.delivery.max_bus_deliveries,
            })),
        };
        let relay = config
            .smtp
            .relay
            .as_ref()
            .map(deliver::smtp::Relay::new)
            .transpose()?;
        let mesh = match &config.mesh.url {
            Some(_) => Some(crate::deliver::mesh::client::MeshClient::new(&config.mesh)?),
            None => None,
        };
        let node = config.node_name();
        crate::track::set_node_tag(crate::track::node_tag(&node));
        let hub = Arc::new(Self {
            node,
            config,
            store: Arc::new(store),
            bus: work,
            outbox,
            outbox_depth: std::sync::atomic::AtomicU64::new(0),
            directory,
            started_ms: now_ms(),
            ready: AtomicBool::new(false),
            in_progress: Mutex::new(HashSet::new()),
            relay,
            mesh,
        });
        Ok(hub)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed)
    }

    /// Accepts a validated document: routes it, stores it with its deliveries and their work in
    /// one transaction, and returns once that is on disk. A repeat of (sender, local id)
    /// returns the original message.
    pub async fn submit(&self, sub: Submission, actor: &str) -> Result<Receipt, SubmitError> {
        let loaded = self.directory.get();
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
        if let Some(orig) = self
            .store
            .find_by_local_id(&sub.sender_ods, &sub.local_id)?
        {
            return self
                .duplicate_receipt(orig, &sub.local_id, &sub.recipients, &payload_sha256)
                .await;
        }
        if self.config.bus == BusKind::Amqp {
            let held = self.outbox_depth.load(Ordering::Relaxed);
            if held >= self.config.amqp.max_outbox {
                metrics::counter!("edthub_ingest_refused_total", "reason" => "outbox-full")
                    .increment(1);
                return Err(SubmitError::Unavailable(format!(
                    "the hub cannot take more work now: {held} work items are waiting in its outbox \
                     for RabbitMQ (amqp.max_outbox = {}); nothing was stored, try again shortly",
                    self.config.amqp.max_outbox
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
        let id = new_id();
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
        self.check_renders(&new)?;
        let deliveries = new.deliveries.clone();
        let t0 = std::time::Instant::now();
        let outcome = self.store.submit(new)?;
        metrics::histogram!("edthub_store_write_seconds", "op" => "submit")
            .record(t0.elapsed().as_secs_f64());
        match outcome {
            Submitted::Created(id) => {
                let t1 = std::time::Instant::now();
                self.store.flush().await?;
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
                self.duplicate_receipt(orig, &sub.local_id, &sub.recipients, &payload_sha256)
                    .await
            }
        }
    }

    /// Renders the document for each planned delivery whose route takes another format, so
    /// that nothing certain to fail at delivery (a PDF to an ITK3 route, a Transfer of Care
    /// message to a GP Connect route, a missing NHS number or sending mailbox) is receipted.
    fn check_renders(&self, new: &NewMessage) -> Result<(), SubmitError> {
        for d in &new.deliveries {
            let format = d.format.as_deref().unwrap_or("original");
            if d.endpoint.is_none() || matches!(format, "original" | "email") {
                continue;
            }
            if let Err(problem) = self.render_for(d, &new.message, &new.payload) {
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
        &self,
        orig: Uuid,
        local_id: &str,
        recipients: &[String],
        payload_sha256: &str,
    ) -> Result<Receipt, SubmitError> {
        // The original may have been committed by a concurrent call whose flush is still
        // running: make sure it is durable before saying so.
        self.store.flush().await?;
        let view = self.view(orig)?.ok_or(StoreError::NoSuchMessage(orig))?;
        if let Some(what) = resubmission_differs(&view.message, recipients, payload_sha256) {
            metrics::counter!("edthub_ingest_refused_total", "reason" => "local-id-reused")
                .increment(1);
            return Err(SubmitError::Invalid {
                field: "local_id",
                rule: format!(
                    "{:?} {LOCAL_ID_REUSED}{orig} with different {what}: a corrected or \
                     changed document needs a new local id (by mail, a new Message-ID)",
                    local_id
                ),
            });
        }
        metrics::counter!("edthub_ingest_duplicates_total").increment(1);
        Ok(Receipt {
            message_id: orig,
            duplicate: true,
            received_ms: view.message.received_ms,
            deliveries: view.deliveries,
        })
    }

    /// A message with its current deliveries.
    pub fn view(&self, id: Uuid) -> Result<Option<MessageView>, StoreError> {
        let Some(message) = self.store.message(id)? else {
            return Ok(None);
        };
        let deliveries: Vec<_> = self
            .store
            .deliveries_of(id)?
            .into_iter()
            .filter(DeliveryRecord::is_current)
            .collect();
        let state = summarise(deliveries.iter().map(|d| &d.state));
        let complete = deliveries.iter().all(|d| d.state.is_final());
        Ok(Some(MessageView {
            message,
            deliveries,
            state,
            complete,
        }))
    }

    /// One attempt at a delivery, as a worker does it for a `deliver` work item. Safe to call
    /// again for the same delivery (work items are redelivered after a crash).
    pub async fn attempt(&self, delivery_id: Uuid) -> Result<Attempt, StoreError> {
        let Some(_busy) = self.claim(delivery_id) else {
            return Ok(Attempt::Busy);
        };
        self.attempt_inner(delivery_id).await
    }

    /// Marks a delivery as being worked on by this node (an attempt or a cancel), so that the
    /// two never overlap: a cancel cannot land between writing a document and recording it.
    fn claim(&self, delivery_id: Uuid) -> Option<Claimed<'_>> {
        let fresh = self
            .in_progress
            .lock()
            .expect("in-progress lock")
            .insert(delivery_id);
        // Built only when the claim succeeded: dropping a `Claimed` releases the claim.
        fresh.then(|| Claimed {
            hub: self,
            id: delivery_id,
        })
    }

    async fn attempt_inner(&self, delivery_id: Uuid) -> Result<Attempt, StoreError> {
        let Some(d) = self.store.delivery(delivery_id)? else {
            return Ok(Attempt::Skipped);
        };
        if !d.state.awaits_transport() || !d.is_current() {
            return Ok(Attempt::Skipped);
        }
        let outcome = match self.store.message(d.message_id)? {
            None => Err(SendError::Permanent("message record is missing".into())),
            Some(m) => match self.store.payload(m.id)? {
                None => Err(SendError::Permanent(
                    "the payload is no longer held (retention)".into(),
                )),
                Some(payload) => self.execute(&d, &m, payload).await,
            },
        };
        self.record(&d, outcome, None)
    }

    /// Hands a document to its endpoint's transport. Needs nothing from the store, so any
    /// node can do it for any node's delivery.
    pub async fn execute(
        &self,
        d: &DeliveryRecord,
        m: &MessageRecord,
        payload: Vec<u8>,
    ) -> Result<deliver::Sent, SendError> {
        let loaded = self.directory.get();
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
        if let edt_routers::EndpointKind::Mesh { mailbox, workflow } = &ep.kind {
            return deliver::mesh::send(
                self,
                d,
                m,
                payload,
                mailbox.as_deref(),
                workflow.as_deref(),
            )
            .await;
        }
        if let edt_routers::EndpointKind::Grpc { .. } = &ep.kind {
            // Held for the receiver to pull; rendered when it does. Its acknowledgement moves
            // the delivery on from here.
            self.render_for(d, m, &payload)
                .map_err(SendError::Permanent)?;
            return Ok(deliver::Sent {
                transport_id: String::new(),
                detail: format!("held for endpoint {} to pull over gRPC", ep.id),
            });
        }
        if let edt_routers::EndpointKind::Email { address } = &ep.kind {
            // The letter carries the document in the route's format (the original by default).
            let (meta, bytes) = match d.format.as_deref().unwrap_or("original") {
                "original" | "email" => (m.meta(), payload),
                _ => {
                    let r = self
                        .render_for(d, m, &payload)
                        .map_err(SendError::Permanent)?;
                    (r.meta, r.bytes)
                }
            };
            return deliver::smtp::send(
                self.relay.as_ref(),
                &self.config.smtp.domain,
                d,
                &meta,
                &bytes,
                address,
            )
            .await;
        }
        let folder = loaded
            .folder(&ep)
            .ok_or_else(|| SendError::Permanent(format!("endpoint {:?} has no folder", ep.id)))?;
        if d.format.as_deref().unwrap_or("original") == "original" {
            return deliver::file::send(folder, d.clone(), m.meta(), payload).await;
        }
        // The receiver's format: rendered afresh on each attempt (repeatably: the same
        // delivery always renders the same bytes).
        let r = self
            .render_for(d, m, &payload)
            .map_err(SendError::Permanent)?;
        let what = format!(
            "rendered as {} ({}, {} bytes, sha256 {})",
            d.format.as_deref().unwrap_or("original"),
            r.meta.content_type,
            r.meta.payload_size,
            r.meta.payload_sha256
        );
        let mut sent = deliver::file::send(folder, d.clone(), r.meta, r.bytes).await?;
        sent.detail = format!("{}, {what}", sent.detail);
        Ok(sent)
    }

    /// The MESH mailbox that ITK3 messages sent for `sender_ods` name as their source: the
    /// sender's own (`mesh_mailbox` in the directory), else the hub's (`mesh.mailbox`).
    pub fn source_mailbox(&self, sender_ods: &str) -> Option<String> {
        self.directory
            .get()
            .directory
            .sender(sender_ods)
            .and_then(|s| s.mesh_mailbox.clone())
            .or_else(|| Some(self.config.mesh.mailbox.clone()))
            .filter(|m| !m.trim().is_empty())
    }

    /// The document delivery `d` gives its receiver, in the delivery's format.
    pub fn render_for(
        &self,
        d: &DeliveryRecord,
        m: &MessageRecord,
        payload: &[u8],
    ) -> Result<edt_transforms::render::Rendered, String> {
        let id = d.id.to_string();
        let created_at = crate::track::rfc3339(d.created_ms);
        let source = self.source_mailbox(&m.sender_ods);
        edt_transforms::render::render(
            d.format.as_deref().unwrap_or("original"),
            &m.meta(),
            payload,
            &edt_transforms::render::Delivery {
                id: &id,
                recipient_ods: &d.recipient_ods,
                recipient_type: &d.recipient_type,
                created_at: &created_at,
                source_endpoint: source.as_deref(),
            },
        )
        .map_err(|e| e.to_string())
    }

    /// Records how an attempt at `d` ended: sent, a retry scheduled (with its work item), or
    /// failed. `node` names the node that made the attempt when it was not this one.
    fn record(
        &self,
        d: &DeliveryRecord,
        outcome: Result<deliver::Sent, SendError>,
        node: Option<&str>,
    ) -> Result<Attempt, StoreError> {
        let delivery_id = d.id;
        let by = node.map(|n| format!(" (by node {n})")).unwrap_or_default();
        let attempts_made = d.attempts + 1;
        let (change, result) = match outcome {
            Ok(sent) => {
                let mut c = Change::new(
                    DeliveryEvent::TransportAccepted,
                    "hub",
                    format!("{}{by}", sent.detail),
                );
                c.count_attempt = true;
                c.transport_id = Some(sent.transport_id).filter(|t| !t.is_empty());
                (c, Attempt::Sent)
            }
            Err(SendError::Transient(e)) if attempts_made < self.config.delivery.max_attempts => {
                let delay = self.config.delivery.backoff(attempts_made);
                let due = now_ms() + delay.as_millis() as u64;
                let mut c = Change::new(
                    DeliveryEvent::RetryScheduled,
                    "hub",
                    format!(
                        "attempt {attempts_made} of {}{by} failed: {e}; next in {} ms",
                        self.config.delivery.max_attempts,
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
                        self.config.delivery.max_attempts
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
        match self.store.apply(delivery_id, change) {
            Ok(_) => {}
            Err(StoreError::InvalidTransition(_)) => return Ok(Attempt::Skipped),
            Err(e) => return Err(e),
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

    /// Purges the payloads of messages received more than `older_than_ms` ago whose every
    /// current delivery is final. Returns (messages, bytes, kept because not final, ids).
    pub async fn purge(
        &self,
        older_than_ms: u64,
        dry_run: bool,
        actor: &str,
        reason: &str,
    ) -> Result<(u64, u64, u64, Vec<Uuid>), StoreError> {
        let before = now_ms().saturating_sub(older_than_ms);
        let (mut messages, mut bytes, mut kept) = (0u64, 0u64, 0u64);
        let mut ids = Vec::new();
        let purged = |id, reason: &str| AuditEvent {
            at_ms: now_ms(),
            message_id: id,
            delivery_id: None,
            event: PAYLOAD_PURGED.into(),
            from: None,
            to: None,
            actor: actor.to_string(),
            reason: reason.to_string(),
        };
        // In batches, oldest first, so a store of millions is purged in one go without
        // holding a runtime thread for long.
        const BATCH: usize = 1000;
        let mut after = None;
        loop {
            let batch = self.store.payload_candidates(before, after, BATCH)?;
            let next = (batch.len() == BATCH)
                .then(|| batch.last().copied())
                .flatten();
            let mut purged_ids = Vec::new();
            for id in batch {
                let all = self.store.deliveries_of(id)?;
                if all.is_empty() && self.store.message(id)?.is_none() {
                    // A payload file whose submission was never recorded: not a message, so not
                    // reported; the store removes it once it is old enough.
                    if !dry_run {
                        self.store
                            .purge_payload(id, &[], purged(id, "orphaned payload"))?;
                    }
                    continue;
                }
                let current: Vec<DeliveryRecord> =
                    all.into_iter().filter(DeliveryRecord::is_current).collect();
                if current.iter().any(|d| !d.state.is_final()) {
                    kept += 1;
                    continue;
                }
                if self
                    .store
                    .audit_of(id)?
                    .iter()
                    .any(|e| e.event == PAYLOAD_PURGED)
                {
                    // Purged and recorded, but the bytes outlived a crash: they go now.
                    if !dry_run {
                        self.store.release_payload(id)?;
                    }
                    continue;
                }
                if dry_run {
                    let size = self.store.payload_size(id)?.unwrap_or(0);
                    messages += 1;
                    bytes += size;
                    ids.push(id);
                    continue;
                }
                match self.store.purge_payload(id, &current, purged(id, reason)) {
                    Ok(Some(n)) => {
                        messages += 1;
                        bytes += n;
                        ids.push(id);
                        purged_ids.push(id);
                    }
                    Ok(None) => {}
                    // A delivery changed meanwhile (a replay): keep it this time.
                    Err(StoreError::Busy(_)) => kept += 1,
                    Err(e) => return Err(e),
                }
            }
            if !purged_ids.is_empty() {
                // The records first, then the bytes.
                self.store.flush().await?;
                for id in purged_ids {
                    self.store.release_payload(id)?;
                }
            }
            if next.is_none() {
                break;
            }
            after = next;
            tokio::task::yield_now().await;
        }
        if !dry_run && messages > 0 {
            metrics::counter!("edthub_payloads_purged_total").increment(messages);
            tracing::info!(target: "audit", actor, messages, bytes, "payloads purged");
        }
        Ok((messages, bytes, kept, ids))
    }

    /// Applies the outcome of an attempt another node made at one of this node's deliveries.
    /// Idempotent: applied only while `attempt` is the attempt this delivery is waiting on.
    pub async fn apply_remote_outcome(
        &self,
        delivery_id: Uuid,
        attempt: u32,
        node: &str,
        result: crate::cluster::RemoteResult,
    ) -> Result<Attempt, StoreError> {
        use crate::cluster::RemoteResult;
        let Some(_busy) = self.claim(delivery_id) else {
            return Ok(Attempt::Busy);
        };
        let Some(d) = self.store.delivery(delivery_id)? else {
            return Ok(Attempt::Skipped);
        };
        if !d.state.awaits_transport() || !d.is_current() || d.attempts + 1 != attempt {
            if matches!(result, RemoteResult::Sent { .. }) && d.state == DeliveryState::Cancelled {
                tracing::warn!(delivery = %delivery_id, node, "node handed over a delivery that was cancelled meanwhile");
            }
            return Ok(Attempt::Skipped);
        }
        let outcome = match result {
            RemoteResult::Sent {
                transport_id,
                detail,
            } => Ok(deliver::Sent {
                transport_id,
                detail,
            }),
            RemoteResult::Transient { error } => Err(SendError::Transient(error)),
            RemoteResult::Permanent { error } => Err(SendError::Permanent(error)),
        };
        let r = self.record(&d, outcome, Some(node))?;
        self.store.flush().await?;
        Ok(r)
    }

    /// How a queued delivery's work goes to the broker: as a self-contained item on the
    /// shared queue; to this node's own queue (payload larger than `max_shared`, or no
    /// longer held); or not at all (it no longer waits for its transport).
    pub fn work_for(&self, delivery_id: Uuid, max_shared: u64) -> Result<WorkFor, StoreError> {
        let Some(d) = self.store.delivery(delivery_id)? else {
            return Ok(WorkFor::Nothing);
        };
        if !d.state.awaits_transport() || !d.is_current() {
            return Ok(WorkFor::Nothing);
        }
        let Some(m) = self.store.message(d.message_id)? else {
            return Ok(WorkFor::Home);
        };
        if m.payload_size > max_shared {
            return Ok(WorkFor::Home);
        }
        let Some(payload) = self.store.payload(m.id)? else {
            return Ok(WorkFor::Home);
        };
        Ok(WorkFor::Shared(Box::new(crate::cluster::WorkItem {
            header: crate::cluster::WorkHeader {
                home: crate::track::own_tag(),
                home_node: self.node.clone(),
                attempt: d.attempts + 1,
                delivery: d,
                message: m,
            },
            payload,
        })))
    }

    /// Replays a message's failed, rejected, unroutable, cancelled or overdue deliveries as
    /// new deliveries (routes resolved again against the current directory). The originals
    /// keep their history and point at their replacements.
    pub async fn replay(
        &self,
        message_id: Uuid,
        dry_run: bool,
        actor: &str,
        reason: &str,
    ) -> Result<ReplayResult, StoreError> {
        let view = self
            .view(message_id)?
            .ok_or(StoreError::NoSuchMessage(message_id))?;
        let loaded = self.directory.get();
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
            let (mut new, enqueue, created) = match route::plan::replan(&loaded.directory, &req, d)
            {
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
                let replayed = self.store.replay(Replay {
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
                            self.store.flush().await?;
                        }
                        return Err(e);
                    }
                };
                metrics::counter!("edthub_replays_total").increment(1);
            }
            out.new_deliveries.push(new);
        }
        if !dry_run && !out.new_deliveries.is_empty() {
            self.store.flush().await?;
        }
        Ok(out)
    }

    /// Cancels a delivery that has not reached a final state.
    pub async fn cancel(
        &self,
        delivery_id: Uuid,
        actor: &str,
        reason: &str,
    ) -> Result<DeliveryRecord, StoreError> {
        let Some(_busy) = self.claim(delivery_id) else {
            return Err(StoreError::Busy(delivery_id));
        };
        let d = self.store.apply(
            delivery_id,
            Change::new(DeliveryEvent::Cancel, actor, reason),
        )?;
        self.store.flush().await?;
        Ok(d)
    }

    /// Marks a delivery `failed` because its work item was dead-lettered (every hand-out ended
    /// without the attempt being recorded), so ops sees it and can replay it.
    pub async fn fail_dead_lettered(&self, id: Uuid, handed_out: u32) {
        let mut c = Change::new(
            DeliveryEvent::GaveUp,
            "hub",
            format!(
                "work item dead-lettered after {handed_out} hand-outs without a recorded attempt"
            ),
        );
        c.error = Some("delivery work kept failing; see the hub log".into());
        match self.store.apply(id, c) {
            Ok(_) => {
                if let Err(e) = self.store.flush().await {
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
    pub async fn reconcile(&self) -> Result<usize, anyhow::Error> {
        for dead in self.bus.dead_letters(DELIVER_QUEUE).await? {
            // Work items of other nodes are theirs to deal with.
            if let Ok(id) = crate::cluster::decode_work(&dead.body).map(|w| w.delivery_id()) {
                let ours = self.config.bus == BusKind::Embedded
                    || crate::track::home_tag(&id) == crate::track::own_tag();
                if ours
                    && self
                        .store
                        .delivery(id)?
                        .is_some_and(|d| d.state.awaits_transport())
                {
                    self.fail_dead_lettered(id, dead.deliveries).await;
                }
            }
        }
        let Some(queued) = self.bus.queued(DELIVER_QUEUE).await? else {
            return Ok(0);
        };
        let mut fixed = 0;
        let now = now_ms();
        for state in [DeliveryState::Pending, DeliveryState::Retrying] {
            for id in self
                .store
                .deliveries_in_state(state, u64::MAX, usize::MAX)?
            {
                if queued.contains(id.as_bytes().as_slice()) {
                    continue;
                }
                let due = self
                    .store
                    .delivery(id)?
                    .and_then(|d| d.next_attempt_ms)
                    .unwrap_or(now);
                self.bus
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_is_refused_and_leaves_the_first_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let hub = Hub::open(config).await.unwrap();
        let id = new_id();
        let first = hub.claim(id).expect("first claim");
        assert!(hub.claim(id).is_none(), "a second claim is refused");
        assert!(hub.claim(id).is_none(), "and does not release the first");
        drop(first);
        assert!(hub.claim(id).is_some(), "released on drop");
        assert!(matches!(
            hub.cancel(new_id(), "ops", "x").await,
            Err(StoreError::NoSuchDelivery(_))
        ));
        let _held = hub.claim(id).unwrap();
        assert!(matches!(
            hub.cancel(id, "ops", "x").await,
            Err(StoreError::Busy(_))
        ));
    }
}
