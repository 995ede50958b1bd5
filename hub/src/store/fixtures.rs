//! Sample messages for the store: the conformance suite's, tests' and `edthub bench --seed`'s.

use super::NewMessage;
use crate::track::{
    delivery_id, new_message_id, now_ms, AuditEvent, Channel, DeliveryRecord, MessageRecord,
};
use edt_transforms::DocumentType;

/// A message for `sender` with one pending delivery per recipient.
pub fn sample(sender: &str, local_id: &str, recipients: &[&str]) -> NewMessage {
    let id = new_message_id();
    let now = now_ms();
    let payload = format!("document {local_id}").into_bytes();
    let deliveries: Vec<DeliveryRecord> = recipients
        .iter()
        .enumerate()
        .map(|(i, r)| DeliveryRecord {
            endpoint: Some(format!("{r}-drop")),
            ..DeliveryRecord::new(delivery_id(id, i), id, r.to_string(), now)
        })
        .collect();
    NewMessage {
        message: MessageRecord {
            id,
            sender_ods: sender.into(),
            document_type: DocumentType::DischargeSummary,
            content_type: "application/pdf".into(),
            local_id: local_id.into(),
            nhs_number: Some("9434765919".into()),
            file_name: None,
            title: None,
            payload_size: payload.len() as u64,
            payload_sha256: edt_transforms::sha256_hex(&payload),
            channel: Channel::Grpc,
            received_ms: now,
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            reply_to: None,
        },
        audit: vec![AuditEvent {
            at_ms: now,
            message_id: id,
            delivery_id: None,
            event: "received".into(),
            from: None,
            to: None,
            actor: "test".into(),
            reason: String::new(),
        }],
        payload,
        deliveries,
        enqueue: Vec::new(),
    }
}
