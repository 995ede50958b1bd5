//! What the ops commands print: tables for people (coloured by delivery state), JSON for
//! scripts, and the names of times, states and document types both use.

use crate::track::{rfc3339, DeliveryState};
use crate::wire as convert;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Attribute, Cell, Color, Table};
use edt_proto::v1;
use serde_json::{json, Value};

pub(super) fn state_name(v: i32) -> String {
    convert::state_from_wire(v)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| "-".into())
}

pub(super) fn time_of(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .map(|t| rfc3339(convert::ms(t)))
        .unwrap_or_default()
}

pub(super) fn doc_type_name(v: i32) -> String {
    crate::wire::document_type(v)
        .map(|t| t.as_str().to_string())
        .unwrap_or_else(|| "-".into())
}

/// A table for people. Cells are coloured only when standard output is a terminal and
/// `NO_COLOR` is not set.
pub(super) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(
        header
            .iter()
            .map(|h| Cell::new(h).add_attribute(Attribute::Bold)),
    );
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        t.force_no_tty();
    }
    t
}

/// A delivery state, coloured by what it asks of ops: red needs action, yellow needs a look,
/// green is done.
pub(super) fn state_cell(v: i32) -> Cell {
    coloured(Cell::new(state_name(v)), v)
}

pub(super) fn coloured(cell: Cell, state: i32) -> Cell {
    match convert::state_from_wire(state) {
        Some(DeliveryState::Failed | DeliveryState::Rejected | DeliveryState::Unroutable) => {
            cell.fg(Color::Red)
        }
        Some(DeliveryState::Overdue | DeliveryState::Retrying) => cell.fg(Color::Yellow),
        Some(DeliveryState::Accepted | DeliveryState::Delivered) => cell.fg(Color::Green),
        Some(DeliveryState::Sent) => cell.fg(Color::Cyan),
        _ => cell,
    }
}

pub(super) fn delivery_json(d: &v1::Delivery) -> Value {
    json!({
        "delivery_id": d.delivery_id,
        "message_id": d.message_id,
        "recipient_ods": d.recipient_ods,
        "recipient_type": d.recipient_type,
        "endpoint": d.endpoint,
        "state": state_name(d.state),
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": time_of(&d.created_at),
        "updated_at": time_of(&d.updated_at),
        "next_attempt_at": time_of(&d.next_attempt_at),
        "sent_at": time_of(&d.sent_at),
        "replay_of": d.replay_of,
        "superseded_by": d.superseded_by,
        "ack_code": d.ack_code,
        "ack_reason": d.ack_reason,
    })
}

/// One event of a message's timeline (its message is given where it is not known).
pub(super) fn event_json(e: &v1::AuditEvent) -> Value {
    json!({
        "at": time_of(&e.at),
        "delivery_id": e.delivery_id,
        "event": e.event,
        "from": state_name(e.from_state),
        "to": state_name(e.to_state),
        "actor": e.actor,
        "reason": e.reason,
    })
}

pub(super) fn status_json(s: &v1::MessageStatus) -> Value {
    let m = s.message.clone().unwrap_or_default();
    json!({
        "message_id": m.message_id,
        "sender_ods": m.sender_ods,
        "document_type": doc_type_name(m.document_type),
        "content_type": m.content_type,
        "local_id": m.local_id,
        "nhs_number": m.nhs_number,
        "file_name": m.file_name,
        "title": m.title,
        "payload_size": m.payload_size,
        "payload_sha256": m.payload_sha256,
        "channel": m.channel,
        "received_at": time_of(&m.received_at),
        "recipients": m.recipient_ods,
        "state": state_name(s.state),
        "complete": s.complete,
        "deliveries": s.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
    })
}

pub(super) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("json"));
}

pub(super) fn deliveries_summary(s: &v1::MessageStatus) -> String {
    s.deliveries
        .iter()
        .map(|d| {
            let mut x = format!("{} {}", d.recipient_ods, state_name(d.state));
            if d.attempts > 1 {
                x.push_str(&format!(" ({} attempts)", d.attempts));
            }
            x
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn planned_json(r: &v1::PlannedRoute) -> Value {
    json!({
        "recipient_ods": r.recipient_ods,
        "endpoint": r.endpoint,
        "format": r.format,
        "recipient_type": r.recipient_type,
        "rule": r.rule,
        "document_type": r.document_type,
    })
}

pub(super) fn unroutable_json(u: &v1::UnroutableRecipient) -> Value {
    json!({"recipient_ods": u.recipient_ods, "reason": u.reason, "document_type": u.document_type})
}
