//! The routing stage: a submission's recipients resolved in the directory and turned into
//! planned deliveries, one per route and one per unroutable recipient, each with its first
//! work item and the timeline event that says why it goes where it goes (the routers'
//! structured trace, rendered by [`Directory::why_routed`]).

use crate::bus::DELIVER_QUEUE;
use crate::store::Enqueue;
use crate::track::{new_id, AuditEvent, DeliveryRecord, DeliveryState};
use edt_routers::{Directory, RecipientType, Route, RouteRequest, Unroutable};
use edt_transforms::DocumentType;
use uuid::Uuid;

/// The deliveries planned for one message, their work and their timeline events.
#[derive(Debug, Default)]
pub struct Plan {
    pub deliveries: Vec<DeliveryRecord>,
    pub enqueue: Vec<Enqueue>,
    pub audit: Vec<AuditEvent>,
}

impl Plan {
    fn push(&mut self, (d, e, a): Planned) {
        self.deliveries.push(d);
        self.enqueue.extend(e);
        self.audit.push(a);
    }
}

/// Who sends what to whom, as routing sees it.
pub struct Request<'a> {
    pub message_id: Uuid,
    pub sender_ods: &'a str,
    pub recipients: &'a [String],
    pub document_type: DocumentType,
    /// Who the timeline says planned it.
    pub actor: &'a str,
    pub now_ms: u64,
}

/// Plans the deliveries of a new message.
pub fn plan(directory: &Directory, req: &Request<'_>) -> Plan {
    let resolution = directory.resolve(&RouteRequest {
        sender_ods: req.sender_ods,
        recipients: req.recipients,
        document_type: req.document_type,
        today: super::today(),
    });
    let mut plan = Plan::default();
    let targets = (resolution.routes.iter().map(Target::Route))
        .chain(resolution.unroutable.iter().map(Target::Unroutable));
    for (i, target) in targets.enumerate() {
        let why = match &target {
            Target::Route(route) => directory.why_routed(&resolution, &route.recipient_ods),
            Target::Unroutable(u) => u.reason.clone(),
        };
        let id = crate::track::delivery_id(req.message_id, i);
        plan.push(planned_delivery(req, id, target, &why));
    }
    plan
}

/// What routing says now for a replay of `original`: its new delivery (keeping the original's
/// For Action / For Information role), or why it is still unroutable; `None` when the
/// directory gives it nothing at all.
pub fn replan(
    directory: &Directory,
    req: &Request<'_>,
    original: &DeliveryRecord,
) -> Option<Result<Planned, String>> {
    let recipients = [original.recipient_ods.clone()];
    let res = directory.resolve(&RouteRequest {
        sender_ods: req.sender_ods,
        recipients: &recipients,
        document_type: req.document_type,
        today: super::today(),
    });
    match (res.routes.first(), res.unroutable.first()) {
        (Some(route), _) => {
            let mut route = route.clone();
            if original.recipient_type == RecipientType::ForInformation {
                route.recipient_type = RecipientType::ForInformation;
            }
            let why = directory.why_routed(&res, &route.recipient_ods);
            let mut planned = planned_delivery(req, new_id(), Target::Route(&route), &why);
            planned.0.replay_of = Some(original.id);
            Some(Ok(planned))
        }
        (None, Some(u)) => Some(Err(u.reason.clone())),
        (None, None) => None,
    }
}

/// One planned delivery: the record, its first work item, the timeline event.
pub type Planned = (DeliveryRecord, Option<Enqueue>, AuditEvent);

enum Target<'a> {
    Route(&'a Route),
    Unroutable(&'a Unroutable),
}

/// The work item that asks a worker to attempt a delivery.
pub fn deliver_item(delivery: Uuid, due_ms: u64) -> Enqueue {
    Enqueue {
        queue: DELIVER_QUEUE.to_string(),
        body: delivery.as_bytes().to_vec(),
        due_ms,
    }
}

fn planned_delivery(req: &Request<'_>, id: Uuid, target: Target<'_>, why: &str) -> Planned {
    let now = req.now_ms;
    let (recipient, endpoint, rtype, state, error, format) = match target {
        Target::Route(r) => (
            r.recipient_ods.clone(),
            Some(r.endpoint.id.clone()),
            r.recipient_type,
            DeliveryState::Pending,
            None,
            Some(r.format),
        ),
        Target::Unroutable(u) => (
            u.recipient_ods.clone(),
            None,
            RecipientType::ForAction,
            DeliveryState::Unroutable,
            Some(u.reason.clone()),
            None,
        ),
    };
    let d = DeliveryRecord {
        endpoint,
        recipient_type: rtype,
        state,
        last_error: error,
        format,
        ..DeliveryRecord::new(id, req.message_id, recipient, now)
    };
    let enqueue = (state == DeliveryState::Pending).then(|| deliver_item(id, 0));
    let audit = AuditEvent {
        at_ms: now,
        message_id: req.message_id,
        delivery_id: Some(id),
        event: "created".into(),
        from: None,
        to: Some(state),
        actor: req.actor.to_string(),
        reason: why.to_string(),
    };
    (d, enqueue, audit)
}
