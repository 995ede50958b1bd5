//! `edt.hub.v1.Tracking` (for senders) and `edt.hub.v1.Admin` (for ops and the CLI).

use crate::hub::Hub;
use crate::store::{ListQuery, StoreError};
use crate::wire as convert;
use edt_proto::v1::{self, admin_server::Admin, tracking_server::Tracking};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::Stream;
use uuid::Uuid;

use tonic::{Request, Response, Status};

/// How far `ListMessages` counts matches past its page.
const LIST_COUNT_CAP: usize = 10_000;

fn parse_id(field: &str, s: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(s.trim())
        .map_err(|_| Status::invalid_argument(format!("{field}: {s:?} is not a message id (UUID)")))
}

pub(crate) fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NoSuchMessage(id) => Status::not_found(format!("no message {id}")),
        StoreError::NoSuchDelivery(id) => Status::not_found(format!("no delivery {id}")),
        StoreError::InvalidTransition(t) => Status::failed_precondition(t.to_string()),
        e @ (StoreError::AlreadyReplayed(..)
        | StoreError::NotReplayable(..)
        | StoreError::Busy(_)) => Status::failed_precondition(e.to_string()),
        other => {
            tracing::error!(error = %other, "store failure");
            Status::unavailable(other.to_string())
        }
    }
}

fn status_of(hub: &Hub, id: Uuid) -> Result<v1::MessageStatus, Status> {
    hub.view(id)
        .map_err(store_status)?
        .map(|v| convert::status(&v))
        .ok_or_else(|| Status::not_found(format!("no message {id}")))
}

/// Ops and auditors track any message; a submitter only those sent as its own ODS codes.
fn may_track<T>(hub: &Hub, request: &Request<T>, id: Uuid) -> Result<(), Status> {
    use crate::config::Role;
    let caller = crate::auth::identify(&hub.config, request, "track a message")?;
    let Some(c) = caller else {
        return Ok(());
    };
    if c.has(Role::Ops) || c.has(Role::Auditor) {
        return Ok(());
    }
    crate::auth::require(&Some(c.clone()), &[Role::Submitter], "track messages")?;
    let sender = hub
        .store
        .message(id)
        .map_err(store_status)?
        .map(|m| m.sender_ods);
    match sender {
        Some(s) if c.acts_for(&s) => Ok(()),
        _ => Err(crate::auth::deny(
            Status::permission_denied(format!("message {id} was not sent by {}", c.name)),
            &c.name,
            "track a message",
        )),
    }
}

pub struct TrackingService {
    pub hub: Arc<Hub>,
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<v1::MessageStatus, Status>> + Send>>;

#[tonic::async_trait]
impl Tracking for TrackingService {
    async fn get_message(
        &self,
        request: Request<v1::GetMessageRequest>,
    ) -> Result<Response<v1::MessageStatus>, Status> {
        let id = parse_id("message_id", &request.get_ref().message_id)?;
        may_track(&self.hub, &request, id)?;
        Ok(Response::new(status_of(&self.hub, id)?))
    }

    type WatchMessageStream = StatusStream;

    async fn watch_message(
        &self,
        request: Request<v1::GetMessageRequest>,
    ) -> Result<Response<Self::WatchMessageStream>, Status> {
        let id = parse_id("message_id", &request.get_ref().message_id)?;
        may_track(&self.hub, &request, id)?;
        let mut changes = self.hub.store.changes();
        let first = status_of(&self.hub, id)?;
        let hub = self.hub.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut last = first.clone();
            let mut done = first.complete;
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            while !done {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tick.tick() => {}
                    changed = changes.recv() => match changed {
                        Ok(m) if m != id => continue,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                }
                let now = match status_of(&hub, id) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if now != last {
                    done = now.complete;
                    last = now.clone();
                    if tx.send(Ok(now)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// The last day's traffic: totals, and by sender and recipient.
struct Recent {
    hour: u64,
    day: u64,
    senders: Vec<v1::Activity>,
    recipients: Vec<v1::Activity>,
}

fn recent_activity(hub: &Hub) -> Result<Recent, StoreError> {
    use std::collections::HashMap;
    let now = crate::track::now_ms();
    let (hour_ago, day_ago) = (
        now.saturating_sub(3_600_000),
        now.saturating_sub(86_400_000),
    );
    let mut r = Recent {
        hour: 0,
        day: 0,
        senders: Vec::new(),
        recipients: Vec::new(),
    };
    let mut senders: HashMap<String, v1::Activity> = HashMap::new();
    let mut recipients: HashMap<String, v1::Activity> = HashMap::new();
    let mut after = None;
    loop {
        let (ids, more) = hub.store.list(&ListQuery {
            since_ms: Some(day_ago),
            after,
            limit: 1000,
            ..Default::default()
        })?;
        for id in &ids {
            let Some(m) = hub.store.message(*id)? else {
                continue;
            };
            let recent = m.received_ms >= hour_ago;
            r.day += 1;
            r.hour += u64::from(recent);
            let bump = |map: &mut HashMap<String, v1::Activity>, ods: &str, attention: u64| {
                let a = map.entry(ods.to_string()).or_insert_with(|| v1::Activity {
                    ods_code: ods.to_string(),
                    ..Default::default()
                });
                a.last_day += 1;
                a.last_hour += u64::from(recent);
                a.need_attention += attention;
            };
            let deliveries = hub.store.deliveries_of(m.id)?;
            let mut attention_here = 0;
            for d in deliveries.iter().filter(|d| d.is_current()) {
                use crate::track::DeliveryState as S;
                let bad = u64::from(matches!(
                    d.state,
                    S::Failed | S::Rejected | S::Unroutable | S::Overdue
                ));
                attention_here += bad;
                bump(&mut recipients, &d.recipient_ods, bad);
            }
            bump(&mut senders, &m.sender_ods, attention_here);
        }
        if !more {
            break;
        }
        after = ids.last().copied().map(crate::store::After::Message);
    }
    let top = |map: HashMap<String, v1::Activity>| {
        let mut v: Vec<v1::Activity> = map.into_values().collect();
        v.sort_by(|a, b| {
            b.last_day
                .cmp(&a.last_day)
                .then(a.ods_code.cmp(&b.ods_code))
        });
        v.truncate(50);
        v
    };
    r.senders = top(senders);
    r.recipients = top(recipients);
    Ok(r)
}

pub struct AdminService {
    pub hub: Arc<Hub>,
}

impl AdminService {
    /// Checks the caller may make this call (ops for changes; ops or auditor for reads) and
    /// names it for the audit trail.
    fn authorize<T>(
        &self,
        request: &Request<T>,
        write: bool,
        what: &str,
    ) -> Result<String, Status> {
        use crate::config::Role;
        let caller = crate::auth::identify(&self.hub.config, request, what)?;
        let roles: &[Role] = if write {
            &[Role::Ops]
        } else {
            &[Role::Ops, Role::Auditor]
        };
        crate::auth::require(&caller, roles, what)?;
        Ok(match caller {
            Some(c) => format!("ops:{}", c.name),
            None => actor(request),
        })
    }
}

/// Who is acting, for the audit trail: `ops:<x-edthub-user>` or `ops`.
fn actor<T>(r: &Request<T>) -> String {
    match r
        .metadata()
        .get("x-edthub-user")
        .and_then(|v| v.to_str().ok())
    {
        Some(u) if !u.trim().is_empty() => format!("ops:{}", u.trim()),
        _ => "ops".to_string(),
    }
}

pub(crate) fn query(f: &v1::ListMessagesRequest) -> Result<ListQuery, Status> {
    let state = match f.state {
        0 => None,
        v => Some(convert::state_from_wire(v).ok_or_else(|| {
            Status::invalid_argument(format!("state: {v} is not a delivery state"))
        })?),
    };
    let ods = |s: &str, field: &str| -> Result<Option<String>, Status> {
        if s.trim().is_empty() {
            return Ok(None);
        }
        edt_transforms::OdsCode::parse(s)
            .map(|c| Some(c.to_string()))
            .map_err(|e| Status::invalid_argument(format!("{field}: ODS code {e}")))
    };
    let document_type = match f.document_type {
        0 => None,
        v => Some(crate::wire::document_type(v).ok_or_else(|| {
            Status::invalid_argument(format!("document_type: {v} is not a document type"))
        })?),
    };
    let nhs_number = match f.nhs_number.trim() {
        "" => None,
        n => Some(
            edt_transforms::NhsNumber::parse(n)
                .map_err(|e| Status::invalid_argument(format!("nhs_number: {e}")))?
                .to_string(),
        ),
    };
    let channel = match f.channel.trim() {
        "" => None,
        "grpc" => Some(crate::track::Channel::Grpc),
        "smtp" => Some(crate::track::Channel::Smtp),
        "mllp" => Some(crate::track::Channel::Mllp),
        other => {
            return Err(Status::invalid_argument(format!(
                "channel: {other:?} is not a channel (grpc, smtp, mllp)"
            )))
        }
    };
    let after = match f.after.trim() {
        "" => None,
        a => Some(
            crate::store::After::parse(a)
                .map_err(|e| Status::invalid_argument(format!("after: {e}")))?,
        ),
    };
    Ok(ListQuery {
        state,
        recipient_ods: ods(&f.recipient_ods, "recipient_ods")?,
        sender_ods: ods(&f.sender_ods, "sender_ods")?,
        since_ms: f.since.as_ref().map(convert::ms),
        until_ms: f.until.as_ref().map(convert::ms),
        document_type,
        nhs_number,
        channel,
        text: Some(f.text.trim().to_string()).filter(|t| !t.is_empty()),
        after,
        limit: f.limit as usize,
    })
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_messages(
        &self,
        request: Request<v1::ListMessagesRequest>,
    ) -> Result<Response<v1::ListMessagesResponse>, Status> {
        self.authorize(&request, false, "list messages")?;
        let q = query(request.get_ref())?;
        let page = self
            .hub
            .store
            .list_page(&q, LIST_COUNT_CAP)
            .map_err(store_status)?;
        let truncated = page.total > page.ids.len() as u64;
        let mut messages = Vec::with_capacity(page.ids.len());
        let mut positions = Vec::with_capacity(page.ids.len());
        for (id, at) in page.ids.iter().zip(&page.positions) {
            if let Some(v) = self.hub.view(*id).map_err(store_status)? {
                messages.push(convert::status(&v));
                positions.push(at.to_string());
            }
        }
        let next_after = match truncated {
            true => page.positions.last().map(|p| p.to_string()),
            false => None,
        };
        Ok(Response::new(v1::ListMessagesResponse {
            messages,
            truncated,
            total: page.total,
            total_is_lower_bound: page.total_is_lower_bound,
            next_after: next_after.unwrap_or_default(),
            positions,
        }))
    }

    async fn get_message(
        &self,
        request: Request<v1::GetMessageRequest>,
    ) -> Result<Response<v1::MessageDetail>, Status> {
        self.authorize(&request, false, "read a message")?;
        let asked = parse_id("message_id", &request.get_ref().message_id)?;
        // A delivery id (the name of every drop file and letter) finds its message too.
        let id = match self.hub.store.message(asked).map_err(store_status)? {
            Some(_) => asked,
            None => match self.hub.store.delivery(asked).map_err(store_status)? {
                Some(d) => d.message_id,
                None => return Err(Status::not_found(format!("no message or delivery {asked}"))),
            },
        };
        let status = status_of(&self.hub, id)?;
        let all = self.hub.store.deliveries_of(id).map_err(store_status)?;
        let timeline = self.hub.store.audit_of(id).map_err(store_status)?;
        Ok(Response::new(v1::MessageDetail {
            status: Some(status),
            all_deliveries: all.iter().map(convert::delivery).collect(),
            timeline: timeline.iter().map(convert::audit).collect(),
        }))
    }

    async fn replay_messages(
        &self,
        request: Request<v1::ReplayMessagesRequest>,
    ) -> Result<Response<v1::ReplayMessagesResponse>, Status> {
        let actor = self.authorize(&request, true, "replay")?;
        let req = request.into_inner();
        let mut truncated = false;
        let ids: Vec<Uuid> = if !req.message_ids.is_empty() {
            req.message_ids
                .iter()
                .map(|s| parse_id("message_ids", s))
                .collect::<Result<_, _>>()?
        } else {
            let Some(f) = &req.filter else {
                return Err(Status::invalid_argument(
                    "give message_ids or a filter (e.g. state = failed)",
                ));
            };
            let mut q = query(f)?;
            if q.state.is_none() {
                return Err(Status::invalid_argument(
                    "filter.state: a replay by filter must name a state (failed, rejected, unroutable, cancelled or overdue)",
                ));
            }
            if q.limit == 0 {
                q.limit = 10_000;
            }
            let (ids, cut) = self.hub.store.list(&q).map_err(store_status)?;
            truncated = cut;
            ids
        };
        let report =
            crate::admin::actions::replay_many(&self.hub, &ids, req.dry_run, &actor, &req.reason)
                .await
                .map_err(store_status)?;
        let resp = v1::ReplayMessagesResponse {
            dry_run: req.dry_run,
            truncated,
            replayed: report.replayed,
            skipped: report.skipped,
            outcomes: report
                .outcomes
                .iter()
                .map(|o| v1::ReplayOutcome {
                    message_id: o.message_id.to_string(),
                    new_deliveries: o.new_deliveries.iter().map(convert::delivery).collect(),
                    skipped_reason: o.skipped.join("; "),
                })
                .collect(),
        };
        Ok(Response::new(resp))
    }

    async fn cancel_delivery(
        &self,
        request: Request<v1::CancelDeliveryRequest>,
    ) -> Result<Response<v1::CancelDeliveryResponse>, Status> {
        let actor = self.authorize(&request, true, "cancel deliveries")?;
        let req = request.into_inner();
        let id = Uuid::parse_str(req.delivery_id.trim()).map_err(|_| {
            Status::invalid_argument(format!("delivery_id: {:?} is not a UUID", req.delivery_id))
        })?;
        let d = crate::admin::actions::cancel(&self.hub, id, &actor, &req.reason)
            .await
            .map_err(store_status)?;
        Ok(Response::new(v1::CancelDeliveryResponse {
            delivery: Some(convert::delivery(&d)),
        }))
    }

    async fn explain_route(
        &self,
        request: Request<v1::ExplainRouteRequest>,
    ) -> Result<Response<v1::ExplainRouteResponse>, Status> {
        self.authorize(&request, false, "explain routes")?;
        let req = request.into_inner();
        let document_type = crate::wire::document_type(req.document_type).ok_or_else(|| {
            Status::invalid_argument("document_type: must be set to a known document type")
        })?;
        if req.recipient_ods.is_empty() {
            return Err(Status::invalid_argument(
                "recipient_ods: name at least one recipient",
            ));
        }
        let mut recipients = Vec::new();
        for r in &req.recipient_ods {
            recipients.push(
                edt_transforms::OdsCode::parse(r)
                    .map_err(|e| {
                        Status::invalid_argument(format!("recipient_ods {r:?}: ODS code {e}"))
                    })?
                    .to_string(),
            );
        }
        let loaded = self.hub.directory.get();
        let d = &loaded.directory;
        let mut trace = Vec::new();
        if !req.sender_ods.trim().is_empty() && d.sender(req.sender_ods.trim()).is_none() {
            trace.push(format!(
                "{}: not a registered sender: a submission from it would be refused",
                req.sender_ods.trim()
            ));
        }
        let res = d.resolve(&edt_routers::RouteRequest {
            sender_ods: req.sender_ods.trim(),
            recipients: &recipients,
            document_type,
            today: crate::route::today(),
        });
        trace.extend(d.explain(&res));
        Ok(Response::new(v1::ExplainRouteResponse {
            routes: res.routes.iter().map(|r| planned(d, r, None)).collect(),
            unroutable: res
                .unroutable
                .iter()
                .map(|u| v1::UnroutableRecipient {
                    recipient_ods: u.recipient_ods.clone(),
                    reason: u.reason.clone(),
                    document_type: String::new(),
                })
                .collect(),
            trace,
        }))
    }

    async fn reload_directory(
        &self,
        request: Request<v1::ReloadDirectoryRequest>,
    ) -> Result<Response<v1::ReloadDirectoryResponse>, Status> {
        let actor = self.authorize(&request, true, "reload the directory")?;
        let loaded = crate::admin::actions::reload_directory(&self.hub, &actor, "")
            .await
            .map_err(Status::failed_precondition)?;
        let d = &loaded.directory;
        Ok(Response::new(v1::ReloadDirectoryResponse {
            organisations: d.organisation_count() as u64,
            rules: d.rules().len() as u64,
            endpoints: d.endpoints().count() as u64,
            files: d.files().iter().map(|f| f.display().to_string()).collect(),
        }))
    }

    async fn get_document(
        &self,
        request: Request<v1::GetDocumentRequest>,
    ) -> Result<Response<v1::DocumentBytes>, Status> {
        self.authorize(&request, false, "read documents")?;
        let req = request.into_inner();
        let id = parse_id("message_id", &req.message_id)?;
        let hub = &self.hub;
        let m = hub
            .store
            .message(id)
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("no message {id}")))?;
        let payload = hub
            .store
            .payload(id)
            .map_err(store_status)?
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "the bytes of message {id} are no longer held (retention)"
                ))
            })?;
        if req.delivery_id.trim().is_empty() {
            return Ok(Response::new(v1::DocumentBytes {
                content_type: m.content_type.clone(),
                sha256: m.payload_sha256.clone(),
                file_name: m.file_name.clone().unwrap_or_default(),
                format: "original".into(),
                payload,
            }));
        }
        let did = Uuid::parse_str(req.delivery_id.trim()).map_err(|_| {
            Status::invalid_argument(format!(
                "delivery_id: {:?} is not a delivery id (UUID)",
                req.delivery_id
            ))
        })?;
        let d = hub
            .store
            .delivery(did)
            .map_err(store_status)?
            .filter(|d| d.message_id == id)
            .ok_or_else(|| Status::not_found(format!("message {id} has no delivery {did}")))?;
        if d.endpoint.is_none() {
            return Err(Status::failed_precondition(format!(
                "delivery {did} was never routed, so nothing was rendered for it"
            )));
        }
        let r = crate::render::render_for(hub, &d, &m, &payload)
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(v1::DocumentBytes {
            file_name: edt_transforms::index::document_file_name(
                &did.to_string(),
                &r.meta.content_type,
                r.meta.file_name.as_deref(),
            ),
            content_type: r.meta.content_type,
            sha256: r.meta.payload_sha256,
            format: d.format.unwrap_or_default().as_str().to_string(),
            payload: r.bytes,
        }))
    }

    async fn poll_mesh(
        &self,
        request: Request<v1::PollMeshRequest>,
    ) -> Result<Response<v1::PollMeshResponse>, Status> {
        let actor = self.authorize(&request, true, "poll MESH")?;
        use crate::clients::SendError;
        let s = crate::acks::mesh::poll_once(&self.hub)
            .await
            .map_err(|e| match e {
                SendError::Transient(m) => Status::unavailable(m),
                SendError::Permanent(m) => Status::failed_precondition(m),
            })?;
        tracing::info!(
            actor,
            seen = s.seen,
            applied = s.applied,
            "MESH inbox read on request"
        );
        Ok(Response::new(v1::PollMeshResponse {
            seen: s.seen as u32,
            applied: s.applied as u32,
            unmatched: s.unmatched as u32,
            later: s.later as u32,
        }))
    }

    async fn list_unmatched_acks(
        &self,
        request: Request<v1::ListUnmatchedAcksRequest>,
    ) -> Result<Response<v1::ListUnmatchedAcksResponse>, Status> {
        self.authorize(&request, false, "list unmatched acks")?;
        let limit = match request.into_inner().limit {
            0 => 100,
            n => n as usize,
        };
        let acks = self
            .hub
            .store
            .unmatched_acks(limit)
            .map_err(store_status)?
            .into_iter()
            .map(|u| v1::UnmatchedAck {
                at: Some(convert::ts(u.at_ms)),
                source: u.source,
                problem: u.problem,
                kept_at: u.kept_at,
            })
            .collect();
        Ok(Response::new(v1::ListUnmatchedAcksResponse { acks }))
    }

    type ExportAuditStream = Pin<Box<dyn Stream<Item = Result<v1::AuditEvent, Status>> + Send>>;

    async fn export_audit(
        &self,
        request: Request<v1::ExportAuditRequest>,
    ) -> Result<Response<Self::ExportAuditStream>, Status> {
        let actor = self.authorize(&request, false, "export the audit trail")?;
        let req = request.into_inner();
        let since = req.since.as_ref().map(convert::ms).unwrap_or(0);
        let until = req
            .until
            .as_ref()
            .map(convert::ms)
            .unwrap_or_else(crate::track::now_ms);
        tracing::info!(target: "audit", actor, since, until, "audit trail exported");
        let hub = self.hub.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            let mut events = Vec::new();
            let r = hub.store.audit_between(since, until, &mut |e| {
                events.push(e);
                true
            });
            if let Err(e) = r {
                let _ = tx.blocking_send(Err(store_status(e)));
                return;
            }
            events.sort_by_key(|e| e.at_ms);
            for e in events {
                if tx.blocking_send(Ok(convert::audit(&e))).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn purge_payloads(
        &self,
        request: Request<v1::PurgePayloadsRequest>,
    ) -> Result<Response<v1::PurgePayloadsResponse>, Status> {
        let req = request.get_ref().clone();
        let actor = self.authorize(&request, !req.dry_run, "purge payloads")?;
        let secs = match req.older_than_seconds {
            0 => self
                .hub
                .config
                .retention
                .payload_days
                .saturating_mul(86_400),
            s => s,
        };
        if secs == 0 {
            return Err(Status::invalid_argument(
                "older_than_seconds: give an age (this hub has no retention.payload_days)",
            ));
        }
        let reason = if req.reason.trim().is_empty() {
            format!("older than {secs} s and every delivery final")
        } else {
            req.reason.clone()
        };
        let (messages, bytes, kept, ids) = crate::admin::actions::purge(
            &self.hub,
            secs.saturating_mul(1000),
            req.dry_run,
            &actor,
            &reason,
        )
        .await
        .map_err(store_status)?;
        Ok(Response::new(v1::PurgePayloadsResponse {
            messages,
            bytes,
            kept_not_final: kept,
            message_ids: ids.iter().take(1000).map(Uuid::to_string).collect(),
        }))
    }

    async fn get_organisation(
        &self,
        request: Request<v1::GetOrganisationRequest>,
    ) -> Result<Response<v1::OrganisationInfo>, Status> {
        self.authorize(&request, false, "look up organisations")?;
        let ods = edt_transforms::OdsCode::parse(&request.get_ref().ods)
            .map_err(|e| Status::invalid_argument(format!("ods: ODS code {e}")))?
            .to_string();
        let loaded = self.hub.directory.get();
        let d = &loaded.directory;
        let org = d.organisation(&ods);
        let successor = d.successor(&ods);
        if org.is_none() && successor.is_none() && d.sender(&ods).is_none() {
            return Err(Status::not_found(format!("{ods} is not in the directory")));
        }
        let day = |x: Option<u32>| x.map(edt_routers::ods::show_day).unwrap_or_default();
        let mut info = v1::OrganisationInfo {
            ods: ods.clone(),
            name: org.map(|o| o.name.clone()).unwrap_or_default(),
            status: org
                .map(|o| o.status.as_str().to_string())
                .unwrap_or_default(),
            open_date: day(org.and_then(|o| o.open_date)),
            close_date: day(org.and_then(|o| o.close_date)),
            commissioner: org.map(|o| o.commissioner.clone()).unwrap_or_default(),
            prescribing_setting: org
                .map(|o| u32::from(o.prescribing_setting))
                .unwrap_or_default(),
            postcode: org.map(|o| o.postcode.clone()).unwrap_or_default(),
            supplier: d.supplier(&ods).unwrap_or_default().to_string(),
            source: match org.map(|o| o.source) {
                Some(edt_routers::OrgSource::PracticeFile) => "practice-file".into(),
                Some(edt_routers::OrgSource::DirectoryFile) => "directory-file".into(),
                None => String::new(),
            },
            successor: successor.map(|s| s.new_code.clone()).unwrap_or_default(),
            successor_effective: day(successor.map(|s| s.effective)),
            rules: d.rules_for(&ods).iter().map(|r| r.describe()).collect(),
            registered_sender: d.sender(&ods).is_some(),
            ..Default::default()
        };
        let recipients = [ods.clone()];
        for t in edt_transforms::DocumentType::ALL {
            let res = d.resolve(&edt_routers::RouteRequest {
                sender_ods: "",
                recipients: &recipients,
                document_type: t,
                today: crate::route::today(),
            });
            info.routes_by_type
                .extend(res.routes.iter().map(|r| planned(d, r, Some(t))));
            info.unroutable_by_type
                .extend(res.unroutable.iter().map(|u| v1::UnroutableRecipient {
                    recipient_ods: u.recipient_ods.clone(),
                    reason: u.reason.clone(),
                    document_type: t.as_str().to_string(),
                }));
        }
        Ok(Response::new(info))
    }

    async fn get_stats(
        &self,
        request: Request<v1::GetStatsRequest>,
    ) -> Result<Response<v1::Stats>, Status> {
        self.authorize(&request, false, "read stats")?;
        let hub = &self.hub;
        // Read first: counting the last day's messages below reads through the database, and
        // what this call costs is not the hub's work.
        let cpu_ms = cpu_ms().unwrap_or(0);
        let resident = resident_bytes().unwrap_or(0);
        let counts = hub.store.count_by_state().map_err(store_status)?;
        let activity = {
            let hub = hub.clone();
            tokio::task::spawn_blocking(move || recent_activity(&hub))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(store_status)?
        };
        let q = crate::bus::DELIVER_QUEUE;
        let bus_err = |e: crate::bus::BusError| Status::unavailable(e.to_string());
        Ok(Response::new(v1::Stats {
            messages: hub.store.message_count().map_err(store_status)?,
            deliveries_by_state: counts
                .into_iter()
                .map(|(s, count)| v1::StateCount {
                    state: convert::state(s),
                    count,
                })
                .collect(),
            queue_depth: hub.bus.depth(q).await.map_err(bus_err)?,
            dead_letters: hub.bus.dead_letters(q).await.map_err(bus_err)?.len() as u64,
            unmatched_acks: hub
                .store
                .unmatched_acks(usize::MAX)
                .map_err(store_status)?
                .len() as u64,
            started_at: Some(convert::ts(hub.started_ms)),
            node: hub.node.clone(),
            node_tag: u32::from(crate::track::own_tag()),
            received_last_hour: activity.hour,
            received_last_day: activity.day,
            senders: activity.senders,
            recipients: activity.recipients,
            resident_bytes: resident,
            disk_syncs: crate::durable::disk_syncs(),
            broker_messages: crate::bus::amqp::broker_messages(),
            home_dead_letters: match hub.config.bus {
                crate::config::BusKind::Amqp => hub
                    .bus
                    .dead_letters(&crate::bus::messages::own_home_queue())
                    .await
                    .map_err(bus_err)?
                    .len() as u64,
                crate::config::BusKind::Embedded => 0,
            },
            warnings: hub.health.warnings(),
            cpu_ms,
        }))
    }
}

/// CPU time this process has used (user and system), in milliseconds, from `/proc`.
pub fn cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let ticks = process_cpu_ticks(&stat)?;
    Some(ticks.saturating_mul(1000) / rustix::param::clock_ticks_per_second().max(1))
}

/// utime plus stime, in clock ticks, from the text of a `/proc/<pid>/stat`.
pub fn process_cpu_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces and brackets) start at the state,
    // field 3; utime and stime are fields 14 and 15.
    let mut times = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = times.next()?.parse().ok()?;
    let stime: u64 = times.next()?.parse().ok()?;
    Some(utime + stime)
}

/// This process's resident memory, from `/proc/self/status` (Linux).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Checks the admin bearer token, when one is configured.
pub fn check_token(
    expected: Option<String>,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let Some(token) = &expected else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if crate::auth::constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(req),
            Some(_) => Err(Status::permission_denied("admin token is not valid")),
            None => Err(Status::unauthenticated(
                "admin API needs a bearer token (set EDTHUB_TOKEN)",
            )),
        }
    }
}

fn planned(
    d: &edt_routers::Directory,
    r: &edt_routers::Route,
    t: Option<edt_transforms::DocumentType>,
) -> v1::PlannedRoute {
    v1::PlannedRoute {
        recipient_ods: r.recipient_ods.clone(),
        endpoint: r.endpoint.id.clone(),
        format: r.format.as_str().to_string(),
        recipient_type: r.recipient_type.code().to_string(),
        rule: r
            .rule
            .map(|i| d.rules()[i].name.clone())
            .unwrap_or_else(|| "unknown_gp".into()),
        document_type: t.map(|t| t.as_str().to_string()).unwrap_or_default(),
    }
}
