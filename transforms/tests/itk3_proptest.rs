//! Property tests for ITK3: base64 round trips, and rendered messages, Send Document
//! messages and responses read back to what was rendered for arbitrary values, in XML and
//! JSON; arbitrary input never panics the readers.

use edt_transforms::fhir::{to_json, to_xml, Element};
use edt_transforms::itk3::{
    base64_decode, base64_encode, binary_content, read_message, read_response, render_message,
    render_response, render_send_document, Format, Handling, MessageParams, RecipientType,
    ResponseCode, ResponseParams, ResponseTo, SendDocumentMeta, MESSAGE_DEFINITION_SEND_DOCUMENT,
};
use edt_transforms::{DocumentType, NhsNumber, OdsCode};
use proptest::prelude::*;

fn serialise(el: &Element, format: Format) -> String {
    match format {
        Format::Xml => to_xml(el),
        Format::Json => to_json(el),
    }
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::Xml), Just(Format::Json)]
}

/// Text with markup-significant and non-ASCII characters, no surrounding whitespace.
fn text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9<>&\"'é€😀_-][A-Za-z0-9 <>&\"'é€😀_-]{0,60}[A-Za-z0-9]"
}

fn params(
    doc_type: DocumentType,
    sender_reference: String,
    local: Option<String>,
    flags: (bool, bool, bool),
) -> MessageParams {
    let mut handling = Handling::new(MESSAGE_DEFINITION_SEND_DOCUMENT);
    handling.inf_ack_requested = flags.0;
    handling.bus_ack_requested = flags.1;
    handling.recipient_type = if flags.2 {
        RecipientType::ForAction
    } else {
        RecipientType::ForInformation
    };
    handling.sender_reference = sender_reference;
    handling.local_extension = local;
    MessageParams {
        bundle_id: "b".to_string(),
        bundle_identifier: "bi".to_string(),
        message_id: "m".to_string(),
        timestamp: "2026-01-01T00:00:00Z".to_string(),
        document_type: doc_type,
        sender_ods: OdsCode::parse("RX1").unwrap(),
        receiver_ods: flags.2.then(|| OdsCode::parse("A81001").unwrap()),
        source_endpoint: "X26ABC1".into(),
        handling,
    }
}

fn meta(p: MessageParams, title: String) -> SendDocumentMeta {
    SendDocumentMeta {
        message: p,
        document_bundle_id: "d".to_string(),
        document_identifier: "di".to_string(),
        composition_identifier: "ci".to_string(),
        composition_type: None,
        title,
        date: "2026-01-01".to_string(),
        nhs_number: NhsNumber::parse("9999999999").unwrap(),
        sender_name: None,
        replaces: None,
    }
}

proptest! {
    #[test]
    fn base64_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = base64_encode(&bytes);
        prop_assert_eq!(text.len() % 4, 0);
        prop_assert_eq!(base64_decode(&text).unwrap(), bytes);
    }

    #[test]
    fn base64_decode_never_panics(text in "[A-Za-z0-9+/= \n!]{0,80}") {
        let _ = base64_decode(&text);
    }

    #[test]
    fn send_document_round_trips(
        content in proptest::collection::vec(any::<u8>(), 0..2000),
        doc_type in proptest::sample::select(DocumentType::ALL.to_vec()),
        sender_reference in text(),
        local in proptest::option::of(text()),
        title in text(),
        flags in any::<(bool, bool, bool)>(),
        format in format(),
    ) {
        let p = params(doc_type, sender_reference, local, flags);
        let msg = render_send_document(&content, "application/octet-stream", meta(p.clone(), title.clone()));
        let m = read_message(serialise(&msg, format).as_bytes(), format).unwrap();
        prop_assert_eq!(&m.handling.sender_reference, &p.handling.sender_reference);
        // A Send Document always names its use case: the given one, else Generic.
        let local = p.handling.local_extension.clone().unwrap_or_else(|| "SendDocument-Generic".into());
        prop_assert_eq!(m.handling.local_extension.as_deref(), Some(local.as_str()));
        prop_assert_eq!(m.handling.recipient_type, p.handling.recipient_type);
        prop_assert_eq!(m.title.as_deref(), Some(title.as_str()));
        prop_assert_eq!(m.attachments[0].size, content.len());
        let binary = m.document.first_resource("Binary").unwrap();
        prop_assert_eq!(binary_content(binary).unwrap(), content);
    }

    #[test]
    fn wrapped_documents_come_back_unchanged(
        title in text(),
        doc_type in proptest::sample::select(DocumentType::ALL.to_vec()),
        flags in any::<(bool, bool, bool)>(),
        format in format(),
    ) {
        let inner = render_send_document(b"x", "text/plain", meta(params(doc_type, "r".into(), None, flags), title));
        let doc = inner.entry_resources().last().unwrap().clone();
        let p = params(doc_type, "s".into(), None, flags);
        let m = read_message(serialise(&render_message(&doc, p.clone()), format).as_bytes(), format).unwrap();
        prop_assert_eq!(m.document, doc);
        let mut handling = p.handling.clone();
        handling.local_extension = Some("None".into());
        prop_assert_eq!(m.handling, handling);
        prop_assert_eq!(m.document_type, Some(doc_type));
    }

    #[test]
    fn responses_round_trip(
        code in proptest::sample::select(ResponseCode::ALL.to_vec()),
        original in proptest::option::of(text()),
        sender_reference in proptest::option::of(text()),
        diagnostics in proptest::option::of(text()),
        format in format(),
    ) {
        let to = ResponseTo { message_id: original.clone(), sender_reference: sender_reference.clone() };
        let p = ResponseParams {
            bundle_id: "b".into(),
            bundle_identifier: "bi".into(),
            message_id: "m".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            sender_ods: OdsCode::parse("A81001").unwrap(),
            source_endpoint: None,
            diagnostics: diagnostics.clone(),
        };
        let r = read_response(serialise(&render_response(&to, code, &p), format).as_bytes(), format).unwrap();
        prop_assert_eq!(r.code, code);
        prop_assert_eq!(r.original_message_id, original.unwrap_or_else(|| "UNREADABLE-IN-ORIGINAL-MESSAGE".into()));
        prop_assert_eq!(r.sender_reference, Some(sender_reference.unwrap_or_else(|| "None".into())));
        prop_assert_eq!(r.diagnostics, diagnostics);
    }

    #[test]
    fn readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), format in format()) {
        let _ = read_message(&bytes, format);
        let _ = read_response(&bytes, format);
    }
}
