//! The one place the hub's records and the gRPC wire types (`edt.hub.v1`) meet: used by the
//! gRPC front door (ingest), the admin service and the receiver stream alike.

use crate::hub::MessageView;
use crate::track::{AuditEvent, DeliveryRecord, DeliveryState, MessageRecord};
use edt_proto::v1;
use edt_transforms::DocumentType;
use prost_types::Timestamp;

pub fn ts(ms: u64) -> Timestamp {
    Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

pub fn ms(t: &Timestamp) -> u64 {
    (t.seconds.max(0) as u64)
        .saturating_mul(1000)
        .saturating_add(t.nanos.clamp(0, 999_999_999) as u64 / 1_000_000)
}

pub fn state(s: DeliveryState) -> i32 {
    // The wire enum uses the same numbers as the store.
    s as u8 as i32
}

pub fn state_from_wire(v: i32) -> Option<DeliveryState> {
    u8::try_from(v).ok().and_then(DeliveryState::from_u8)
}

pub fn delivery(d: &DeliveryRecord) -> v1::Delivery {
    v1::Delivery {
        delivery_id: d.id.to_string(),
        message_id: d.message_id.to_string(),
        recipient_ods: d.recipient_ods.clone(),
        endpoint: d.endpoint.clone().unwrap_or_default(),
        state: state(d.state),
        attempts: d.attempts,
        last_error: d.last_error.clone().unwrap_or_default(),
        created_at: Some(ts(d.created_ms)),
        updated_at: Some(ts(d.updated_ms)),
        next_attempt_at: d.next_attempt_ms.map(ts),
        sent_at: d.sent_ms.map(ts),
        replay_of: d.replay_of.map(|u| u.to_string()).unwrap_or_default(),
        superseded_by: d.superseded_by.map(|u| u.to_string()).unwrap_or_default(),
        ack_code: d.ack_code.clone().unwrap_or_default(),
        ack_reason: d.ack_reason.clone().unwrap_or_default(),
        recipient_type: d.recipient_type.code().to_string(),
        format: d.format.unwrap_or_default().as_str().to_string(),
    }
}

pub fn message(m: &MessageRecord) -> v1::Message {
    v1::Message {
        message_id: m.id.to_string(),
        sender_ods: m.sender_ods.clone(),
        document_type: crate::wire::document_type_wire(m.document_type) as i32,
        content_type: m.content_type.clone(),
        local_id: m.local_id.clone(),
        nhs_number: m.nhs_number.clone().unwrap_or_default(),
        file_name: m.file_name.clone().unwrap_or_default(),
        title: m.title.clone().unwrap_or_default(),
        payload_size: m.payload_size,
        payload_sha256: m.payload_sha256.clone(),
        channel: m.channel.as_str().to_string(),
        received_at: Some(ts(m.received_ms)),
        recipient_ods: m.recipients.clone(),
    }
}

pub fn status(v: &MessageView) -> v1::MessageStatus {
    v1::MessageStatus {
        message: Some(message(&v.message)),
        deliveries: v.deliveries.iter().map(delivery).collect(),
        state: v.state.map(state).unwrap_or(0),
        complete: v.complete,
    }
}

pub fn audit(e: &AuditEvent) -> v1::AuditEvent {
    v1::AuditEvent {
        at: Some(ts(e.at_ms)),
        message_id: e.message_id.to_string(),
        delivery_id: e.delivery_id.map(|u| u.to_string()).unwrap_or_default(),
        event: e.event.clone(),
        from_state: e.from.map(state).unwrap_or(0),
        to_state: e.to.map(state).unwrap_or(0),
        actor: e.actor.clone(),
        reason: e.reason.clone(),
    }
}

/// Maps the wire document type.
pub fn document_type(v: i32) -> Option<DocumentType> {
    use v1::DocumentType as W;
    Some(match W::try_from(v).ok()? {
        W::Unspecified => return None,
        W::DischargeSummary => DocumentType::DischargeSummary,
        W::OutpatientLetter => DocumentType::OutpatientLetter,
        W::EmergencyCareDischarge => DocumentType::EmergencyCareDischarge,
        W::MentalHealthDischarge => DocumentType::MentalHealthDischarge,
        W::OrderResult => DocumentType::OrderResult,
        W::GenericDocument => DocumentType::GenericDocument,
    })
}

/// The wire value of a document type.
pub fn document_type_wire(t: DocumentType) -> v1::DocumentType {
    use v1::DocumentType as W;
    match t {
        DocumentType::DischargeSummary => W::DischargeSummary,
        DocumentType::OutpatientLetter => W::OutpatientLetter,
        DocumentType::EmergencyCareDischarge => W::EmergencyCareDischarge,
        DocumentType::MentalHealthDischarge => W::MentalHealthDischarge,
        DocumentType::OrderResult => W::OrderResult,
        DocumentType::GenericDocument => W::GenericDocument,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_match_the_wire_enum() {
        for s in DeliveryState::ALL {
            let wire = v1::DeliveryState::try_from(state(s)).unwrap();
            let name = wire.as_str_name();
            assert_eq!(
                name,
                format!("DELIVERY_STATE_{}", s.as_str().to_uppercase())
            );
            assert_eq!(state_from_wire(state(s)), Some(s));
        }
        assert_eq!(ms(&ts(1_764_072_000_123)), 1_764_072_000_123);
    }
}
