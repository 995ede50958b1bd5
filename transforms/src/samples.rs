//! Sample documents built in code, shared by `edthub bench` and the end-to-end tests so that
//! both send the same shape of message. The fixed sample files are in `tests/fixtures/`.

use crate::itk3::{self, Handling, MessageParams, SendDocumentMeta};

/// What varies between sample ITK3 messages.
pub struct Itk3Sample<'a> {
    /// Makes the message's ids unique.
    pub n: usize,
    /// The patient's NHS number (one that passes Modulus 11).
    pub nhs_number: &'a str,
    pub title: &'a str,
    /// The sending organisation's name (its ODS code is RX1).
    pub sender_name: &'a str,
    /// An eDischarge (ITK003D) message around the document Bundle, rather than a GP Connect
    /// Send Document.
    pub discharge: bool,
}

/// An ITK3 message (FHIR XML) from sender RX1 carrying `pdf`: a GP Connect Send Document, or
/// with `discharge` an eDischarge message around the same document Bundle.
pub fn itk3_message(s: &Itk3Sample<'_>, pdf: &[u8]) -> Vec<u8> {
    let n = s.n;
    let id = |k: &str| format!("{k:0>8}-0000-4000-8000-{n:012}");
    let params = |document_type, definition: &str| MessageParams {
        bundle_id: id("1"),
        bundle_identifier: id("2"),
        message_id: id("3"),
        timestamp: "2026-11-25T09:00:00+00:00".into(),
        document_type,
        sender_ods: crate::OdsCode::parse("RX1").expect("ODS code"),
        receiver_ods: None,
        source_endpoint: "RX1EDT001".into(),
        handling: Handling::new(definition),
    };
    let meta = SendDocumentMeta {
        message: params(
            crate::DocumentType::GenericDocument,
            itk3::MESSAGE_DEFINITION_SEND_DOCUMENT,
        ),
        document_bundle_id: id("4"),
        document_identifier: id("5"),
        composition_identifier: id("6"),
        composition_type: None,
        title: s.title.into(),
        date: "2026-11-25T09:00:00+00:00".into(),
        nhs_number: crate::NhsNumber::parse(s.nhs_number).expect("NHS number"),
        sender_name: Some(s.sender_name.into()),
        replaces: None,
    };
    let wrapped = itk3::render_send_document(pdf, "application/pdf", meta);
    if !s.discharge {
        return crate::fhir::to_xml(&wrapped).into_bytes();
    }
    let doc = itk3::read_message_element(&wrapped, Default::default())
        .expect("reads back")
        .document;
    let message = itk3::render_message(
        &doc,
        params(
            crate::DocumentType::DischargeSummary,
            itk3::MESSAGE_DEFINITION_EDISCHARGE,
        ),
    );
    crate::fhir::to_xml(&message).into_bytes()
}
