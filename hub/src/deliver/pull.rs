//! `edt.hub.v1.ReceiverDelivery`: receivers that pull their documents over gRPC. A delivery to
//! an endpoint of kind "grpc" is `sent` once held for the receiver; the receiver's stream
//! offers it (again on every new stream) until the receiver acknowledges it, and its
//! acknowledgements feed the same state machine as every other ack.

use crate::acks::{Ack, AckStatus, Outcome};
use crate::hub::Hub;
use crate::track::{DeliveryRecord, DeliveryState};
use crate::wire as convert;
use edt_proto::v1::{self, receiver_delivery_server::ReceiverDelivery};
use edt_routers::{Action, EndpointKind};
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

pub struct ReceiverService {
    pub hub: Arc<Hub>,
}

/// Whose documents a caller may see.
#[derive(Clone)]
enum Scope {
    /// An endpoint's own token: everything routed to that endpoint.
    Endpoint(String),
    /// An identity with the receiver role: its ODS codes' documents at pull endpoints.
    Recipients { name: String, ods: Vec<String> },
}

impl Scope {
    fn actor(&self) -> String {
        match self {
            Self::Endpoint(e) => format!("grpc-receiver:{e}"),
            Self::Recipients { name, .. } => format!("grpc-receiver:{name}"),
        }
    }

    /// Whether delivery `d` is this caller's (whatever its state).
    fn owns(&self, hub: &Hub, d: &DeliveryRecord) -> bool {
        match self {
            Self::Endpoint(e) => d.endpoint.as_deref() == Some(e.as_str()),
            Self::Recipients { ods, .. } => {
                ods.iter().any(|o| o.eq_ignore_ascii_case(&d.recipient_ods))
                    && d.endpoint.as_deref().is_some_and(|e| {
                        matches!(
                            hub.directory.get().directory.endpoint(e).map(|e| &e.kind),
                            Some(EndpointKind::Grpc { .. })
                        )
                    })
            }
        }
    }
}

/// The caller: an endpoint's token, or an identity with the receiver role.
fn scope_of<T>(hub: &Hub, req: &Request<T>) -> Result<Scope, Status> {
    let token = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            crate::auth::deny(
                Status::unauthenticated("ReceiverDelivery needs a bearer token"),
                "(none)",
                "pull documents",
            )
        })?;
    let hash = edt_transforms::sha256_hex(token.as_bytes());
    let loaded = hub.directory.get();
    let found = loaded.directory.endpoints().find(|e| {
        matches!(&e.kind, EndpointKind::Grpc { token_sha256 } if token_sha256.eq_ignore_ascii_case(&hash))
    });
    if let Some(e) = found {
        return Ok(Scope::Endpoint(e.id.clone()));
    }
    match crate::auth::identify(&hub.config, req, "pull documents")? {
        Some(c) => {
            crate::auth::require(
                &Some(c.clone()),
                &[crate::config::Role::Receiver],
                "pull documents",
            )?;
            Ok(Scope::Recipients {
                name: c.name,
                ods: c.ods,
            })
        }
        None => Err(crate::auth::deny(
            Status::unauthenticated("the bearer token is not valid"),
            "(unknown token)",
            "pull documents",
        )),
    }
}

/// Held for a receiver that pulls over gRPC: rendered when it does; its acknowledgement moves
/// the delivery on from `sent`.
pub struct Held {
    pub endpoint: String,
}

impl super::Transport for Held {
    fn send<'a>(
        &'a self,
        _d: &'a DeliveryRecord,
        _m: &'a crate::track::MessageRecord,
        _doc: super::Document,
    ) -> futures::future::BoxFuture<'a, Result<super::Sent, super::SendError>> {
        Box::pin(async move {
            Ok(super::Sent {
                refused: None,
                transport_id: String::new(),
                detail: format!("held for endpoint {} to pull over gRPC", self.endpoint),
            })
        })
    }
}

/// The document of a delivery as the receiver gets it.
fn document(hub: &Hub, d: &DeliveryRecord) -> Option<v1::ReceivedDocument> {
    let m = hub.store.message(d.message_id).ok()??;
    let payload = hub.store.payload(m.id).ok()??;
    let r = crate::render::render_for(hub, d, &m, &payload).ok()?;
    Some(v1::ReceivedDocument {
        delivery_id: d.id.to_string(),
        message_id: m.id.to_string(),
        recipient_ods: d.recipient_ods.clone(),
        sender_ods: m.sender_ods.clone(),
        document_type: crate::wire::document_type_wire(m.document_type) as i32,
        content_type: r.meta.content_type.clone(),
        file_name: edt_transforms::index::document_file_name(
            &d.id.to_string(),
            &r.meta.content_type,
            r.meta.file_name.as_deref(),
        ),
        title: m.title.clone().unwrap_or_default(),
        nhs_number: m.nhs_number.clone().unwrap_or_default(),
        format: d.format.unwrap_or_default().as_str().to_string(),
        sha256: r.meta.payload_sha256.clone(),
        payload: r.bytes,
        sent_at: d.sent_ms.map(convert::ts),
    })
}

fn offered(hub: &Hub, d: &DeliveryRecord, scope: &Scope, ods: &str) -> bool {
    // Overdue ones too: a practice offline past the SLA still gets what waits for it.
    d.is_current()
        && matches!(d.state, DeliveryState::Sent | DeliveryState::Overdue)
        && (ods.is_empty() || d.recipient_ods == ods)
        && scope.owns(hub, d)
}

type DocStream = Pin<Box<dyn Stream<Item = Result<v1::ReceivedDocument, Status>> + Send>>;

#[tonic::async_trait]
impl ReceiverDelivery for ReceiverService {
    type PullDocumentsStream = DocStream;

    async fn pull_documents(
        &self,
        request: Request<v1::PullDocumentsRequest>,
    ) -> Result<Response<DocStream>, Status> {
        let scope = scope_of(&self.hub, &request)?;
        let ods = request
            .into_inner()
            .recipient_ods
            .trim()
            .to_ascii_uppercase();
        if !ods.is_empty() {
            let loaded = self.hub.directory.get();
            let routed_here = match &scope {
                Scope::Endpoint(endpoint) => loaded.directory.rules_for(&ods).iter().any(|r| {
                    matches!(&r.action, Action::Deliver { endpoint: e, .. } if &e.id == endpoint)
                }),
                Scope::Recipients { ods: mine, .. } => {
                    mine.iter().any(|o| o.eq_ignore_ascii_case(&ods))
                }
            };
            if !routed_here {
                return Err(crate::auth::deny(
                    Status::permission_denied(format!(
                        "documents for {ods} are not routed to this receiver"
                    )),
                    &scope.actor(),
                    "pull documents",
                ));
            }
        }
        let hub = self.hub.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            // Subscribe before the backlog scan so nothing falls between the two.
            let mut changes = hub.store.changes();
            let mut given: HashSet<Uuid> = HashSet::new();
            // The scan reads the store: off the async workers.
            let backlog = |hub: Arc<Hub>, scope: Scope, ods: String| async move {
                tokio::task::spawn_blocking(move || {
                    let mut found = Vec::new();
                    for state in [DeliveryState::Sent, DeliveryState::Overdue] {
                        for id in hub
                            .store
                            .deliveries_in_state(state, u64::MAX, 1_000_000)
                            .unwrap_or_default()
                        {
                            if let Some(d) = hub.store.delivery(id).ok().flatten() {
                                if offered(&hub, &d, &scope, &ods) {
                                    found.push(d);
                                }
                            }
                        }
                    }
                    found
                })
                .await
                .unwrap_or_default()
            };
            let mut pending: Vec<DeliveryRecord> = backlog(hub.clone(), scope.clone(), ods.clone())
                .await
                .into_iter()
                .filter(|d| given.insert(d.id))
                .collect();
            loop {
                for d in pending.drain(..) {
                    if let Some(doc) = document(&hub, &d) {
                        if tx.send(Ok(doc)).await.is_err() {
                            return;
                        }
                    }
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    changed = changes.recv() => match changed {
                        Ok(message) => {
                            pending = hub
                                .store
                                .deliveries_of(message)
                                .unwrap_or_default()
                                .into_iter()
                                .filter(|d| offered(&hub, d, &scope, &ods) && given.insert(d.id))
                                .collect();
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            pending = backlog(hub.clone(), scope.clone(), ods.clone())
                                .await
                                .into_iter()
                                .filter(|d| given.insert(d.id))
                                .collect();
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn acknowledge(
        &self,
        request: Request<v1::AcknowledgeRequest>,
    ) -> Result<Response<v1::AcknowledgeResponse>, Status> {
        let scope = scope_of(&self.hub, &request)?;
        let req = request.into_inner();
        let id = Uuid::parse_str(req.delivery_id.trim()).map_err(|_| {
            Status::invalid_argument(format!(
                "delivery_id: {:?} is not a delivery id",
                req.delivery_id
            ))
        })?;
        let status = match v1::AckStatus::try_from(req.status) {
            Ok(v1::AckStatus::Delivered) => AckStatus::Delivered,
            Ok(v1::AckStatus::Accepted) => AckStatus::Accepted,
            Ok(v1::AckStatus::Rejected) => AckStatus::Rejected,
            _ => {
                return Err(Status::invalid_argument(
                    "status: must be DELIVERED, ACCEPTED or REJECTED",
                ))
            }
        };
        if status == AckStatus::Rejected && req.reason.trim().is_empty() {
            return Err(Status::invalid_argument("reason: a rejection must say why"));
        }
        let d = self
            .hub
            .store
            .delivery(id)
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(|| Status::not_found(format!("no delivery {id}")))?;
        if !scope.owns(&self.hub, &d) {
            return Err(crate::auth::deny(
                Status::permission_denied(format!(
                    "delivery {id} is not one of this receiver's documents"
                )),
                &scope.actor(),
                "acknowledge a document",
            ));
        }
        let endpoint = d.endpoint.clone().unwrap_or_default();
        let ack = Ack {
            status,
            code: Some(req.code).filter(|c| !c.is_empty()),
            reason: Some(req.reason).filter(|r| !r.is_empty()),
            channel: crate::acks::AckChannel::Grpc,
        };
        let outcome = crate::acks::apply(
            &self.hub,
            id,
            &endpoint,
            &ack,
            &format!("grpc-receiver:{endpoint}"),
        )
        .map_err(|e| Status::unavailable(e.to_string()))?;
        match outcome {
            Outcome::Consumed | Outcome::Forward(_) => {
                self.hub
                    .store
                    .flush()
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                let state = self
                    .hub
                    .store
                    .delivery(id)
                    .map_err(|e| Status::unavailable(e.to_string()))?
                    .map_or(d.state, |d| d.state);
                Ok(Response::new(v1::AcknowledgeResponse {
                    state: convert::state(state),
                }))
            }
            Outcome::Later => Err(Status::unavailable(
                "the hand-over of this document is still being recorded; try again shortly",
            )),
            Outcome::SetAside(problem) => Err(Status::failed_precondition(problem)),
        }
    }
}
