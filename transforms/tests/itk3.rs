//! ITK3 messaging: the GP Connect corpus message, render → read round trips for every
//! document type and every response code, XML and JSON, and errors that name their path.

use edt_transforms::fhir::{self, parse_json, parse_xml, to_json, to_xml, Element};
use edt_transforms::itk3::{
    self, base64_decode, base64_encode, binary_content, composition_type_for, event_for,
    read_message, read_message_with, read_response, render_message, render_response,
    render_send_document, Format, Handling, ItkError, ItkMessage, MessageParams, ReadOptions,
    RecipientType, ResponseCode, ResponseKind, ResponseParams, ResponseTo, SendDocumentMeta,
    SnomedCode, MESSAGE_DEFINITION_SEND_DOCUMENT, UNREADABLE_ORIGINAL,
};
use edt_transforms::{DocumentType, NhsNumber, OdsCode};

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/fhir/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn corpus() -> Vec<u8> {
    data("gpconnect-senddocument-consultation-report.xml")
}

const LENIENT: ReadOptions = ReadOptions {
    lenient_nhs_number: true,
    skip_attachments: false,
    check_attachments_only: false,
};

/// Serialises in `format` and reads back.
fn reread(msg: &Element, format: Format, options: ReadOptions) -> Result<ItkMessage, ItkError> {
    let bytes = match format {
        Format::Xml => to_xml(msg),
        Format::Json => to_json(msg),
    };
    read_message_with(bytes.as_bytes(), format, options)
}

fn header_mut(bundle: &mut Element) -> &mut Element {
    bundle
        .child_mut("entry")
        .and_then(|e| e.child_mut("resource"))
        .map(|r| &mut r.children[0])
        .expect("first entry has a resource")
}

fn handling_mut(bundle: &mut Element) -> &mut Element {
    header_mut(bundle)
        .children
        .iter_mut()
        .find(|c| c.url.as_deref() == Some(itk3::ITK_MESSAGE_HANDLING))
        .expect("handling extension")
}

// ---------------------------------------------------------------- corpus

#[test]
fn corpus_nhs_number_fails_modulus_11_in_strict_mode() {
    let err = read_message(&corpus(), Format::Xml).unwrap_err();
    assert_eq!(
        err.path,
        "Bundle.entry[2].resource.Bundle.entry[5].resource.Patient.identifier[0].value"
    );
    assert_eq!(err.code, ResponseCode::PayloadValidationFailure);
    assert!(err.problem.contains("9989453456"), "{err}");
    assert!(err.to_string().contains("20009"), "{err}");
}

#[test]
fn corpus_reads_in_lenient_mode() {
    let m = read_message_with(&corpus(), Format::Xml, LENIENT).unwrap();
    assert_eq!(
        m.bundle_id.as_deref(),
        Some("d12dc439-ca5c-4177-bb70-4fece88edab0")
    );
    assert_eq!(m.message_id, "ea7221b8-3cc0-4b11-bc95-585b056b5428");
    assert_eq!(m.event, "ITK007C");
    assert_eq!(m.document_type, Some(DocumentType::GenericDocument));
    assert_eq!(m.timestamp, "2018-07-12T10:30:16+00:00");
    assert_eq!(m.source_endpoint.as_deref(), Some("MESHGP0001"));
    assert_eq!(m.sender_ods.as_ref().map(OdsCode::as_str), Some("GP0001"));
    assert!(m.receiver_ods.is_empty());
    assert_eq!(
        m.handling,
        Handling {
            inf_ack_requested: true,
            bus_ack_requested: true,
            recipient_type: RecipientType::ForAction,
            message_definition: MESSAGE_DEFINITION_SEND_DOCUMENT.to_string(),
            sender_reference: "846ebe66-5ff8-4499-bc57-a112d3d0daa3".to_string(),
            local_extension: Some("SendDocument-ConsultationSummary".to_string()),
            priority: None,
        }
    );
    assert_eq!(
        m.document_bundle_id.as_deref(),
        Some("70c35c4a-65f4-4a03-bcf7-d1041ab999fd")
    );
    assert_eq!(
        m.document_identifier.as_deref(),
        Some("0bcb5098-ce5a-4a85-a547-2574f90310e4")
    );
    assert_eq!(
        m.composition_type,
        Some(SnomedCode::new("371531000", "Report of clinical encounter"))
    );
    assert_eq!(m.title.as_deref(), Some("Consultation report"));
    assert_eq!(m.replaces, None);
    assert_eq!(m.nhs_number.as_deref(), Some("9989453456"));
    assert_eq!(m.warnings.len(), 1);
    assert_eq!(m.warnings[0].code, ResponseCode::PayloadValidationFailure);
    assert_eq!(m.attachments.len(), 1);
    let a = &m.attachments[0];
    assert_eq!(a.content_type, "application/pdf");
    assert!(a.is_gp_supported());
    assert_eq!(
        a.id.as_deref(),
        Some("caf5f17d-e73d-4aaa-a406-dab1717da0c4")
    );
    let skipping = ReadOptions {
        skip_attachments: true,
        ..LENIENT
    };
    let light = read_message_with(&corpus(), Format::Xml, skipping).unwrap();
    assert!(light.attachments.is_empty());
    assert_eq!(
        ItkMessage {
            attachments: m.attachments.clone(),
            ..light
        },
        m
    );
    let pdf = binary_content(m.document.first_resource("Binary").unwrap()).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    assert_eq!(a.size, pdf.len());
    assert_eq!(a.sha256, edt_transforms::sha256_hex(&pdf));
    // The focus is kept exactly as carried.
    let root = parse_xml(&corpus()).unwrap();
    let focus = root.get("Bundle.entry[2].resource.Bundle").unwrap();
    assert_eq!(&m.document, focus);
}

#[test]
fn corpus_reads_the_same_from_json() {
    let json = fhir::xml_to_json(&corpus()).unwrap();
    let from_json = read_message_with(json.as_bytes(), Format::Json, LENIENT).unwrap();
    let from_xml = read_message_with(&corpus(), Format::Xml, LENIENT).unwrap();
    assert_eq!(from_json, from_xml);
    let err = read_message(json.as_bytes(), Format::Json).unwrap_err();
    assert_eq!(err.code, ResponseCode::PayloadValidationFailure);
    assert!(err.path.ends_with("Patient.identifier[0].value"));
}

#[test]
fn corpus_with_a_valid_nhs_number_reads_strictly() {
    let xml = String::from_utf8(corpus())
        .unwrap()
        .replace("9989453456", "9434765919");
    let m = read_message(xml.as_bytes(), Format::Xml).unwrap();
    assert_eq!(m.nhs_number.as_deref(), Some("9434765919"));
    assert!(m.warnings.is_empty());
}

// ---------------------------------------------------------------- render → read

fn params(doc_type: DocumentType, n: usize) -> MessageParams {
    let mut handling = Handling::new(
        itk3::message_definition_for(doc_type)
            .unwrap_or("https://fhir.nhs.uk/STU3/MessageDefinition/Local-Test-MessageDefinition-1"),
    );
    handling.recipient_type = if n.is_multiple_of(2) {
        RecipientType::ForAction
    } else {
        RecipientType::ForInformation
    };
    handling.inf_ack_requested = n.is_multiple_of(2);
    handling.bus_ack_requested = n.is_multiple_of(3);
    handling.sender_reference = format!("sender-ref-{n}");
    handling.local_extension = (n % 2 == 1).then(|| "SendDocument-Generic".to_string());
    handling.priority = (n == 2).then(|| "urgent".to_string());
    MessageParams {
        bundle_id: format!("00000000-0000-4000-8000-00000000000{n}"),
        bundle_identifier: format!("11111111-0000-4000-8000-00000000000{n}"),
        message_id: format!("22222222-0000-4000-8000-00000000000{n}"),
        timestamp: "2026-11-25T10:00:00+00:00".to_string(),
        document_type: doc_type,
        sender_ods: OdsCode::parse("RX1").unwrap(),
        receiver_ods: n
            .is_multiple_of(2)
            .then(|| OdsCode::parse("A81001").unwrap()),
        source_endpoint: "X26ABC1".to_string(),
        handling,
    }
}

fn document(n: usize, nhs: &str) -> Element {
    let composition = Element::resource("Composition")
        .with(Element::primitive("id", "comp-1"))
        .with(
            Element::new("identifier")
                .with(Element::primitive("system", itk3::UUID_SYSTEM))
                .with(Element::primitive("value", format!("comp-ident-{n}"))),
        )
        .with(Element::primitive("status", "final"))
        .with(
            Element::new("type").with(
                Element::new("coding")
                    .with(Element::primitive("system", fhir::systems::SNOMED_CT))
                    .with(Element::primitive("code", "373942005"))
                    .with(Element::primitive("display", "Discharge summary")),
            ),
        )
        .with(Element::new("subject").with(Element::primitive("reference", "urn:uuid:pat-1")))
        .with(Element::primitive("title", "Discharge summary"))
        .with(
            Element::new("relatesTo")
                .with(Element::primitive("code", "replaces"))
                .with(
                    Element::new("targetIdentifier")
                        .with(Element::primitive("value", "old-doc-id")),
                ),
        );
    let patient = Element::resource("Patient")
        .with(Element::primitive("id", "pat-1"))
        .with(
            Element::new("identifier")
                .with(Element::primitive("system", fhir::systems::NHS_NUMBER))
                .with(Element::primitive("value", nhs)),
        );
    let entry = |url: &str, r: Element| {
        Element::new("entry")
            .with(Element::primitive("fullUrl", url))
            .with(Element::slot("resource", r))
    };
    Element::resource("Bundle")
        .with(Element::primitive("id", format!("doc-bundle-{n}")))
        .with(
            Element::new("identifier").with(Element::primitive("value", format!("doc-ident-{n}"))),
        )
        .with(Element::primitive("type", "document"))
        .with(entry("urn:uuid:comp-1", composition))
        .with(entry("urn:uuid:pat-1", patient))
}

#[test]
fn render_read_round_trip_for_every_document_type() {
    for (n, doc_type) in DocumentType::ALL.into_iter().enumerate() {
        let p = params(doc_type, n);
        let doc = document(n, "9434765919");
        let msg = render_message(&doc, p.clone());
        for format in [Format::Xml, Format::Json] {
            let m = reread(&msg, format, ReadOptions::default())
                .unwrap_or_else(|e| panic!("{doc_type} {format:?}: {e}"));
            assert_eq!(m.bundle_id.as_deref(), Some(p.bundle_id.as_str()));
            assert_eq!(
                m.bundle_identifier.as_deref(),
                Some(p.bundle_identifier.as_str())
            );
            assert_eq!(m.message_id, p.message_id);
            assert_eq!(m.event, event_for(doc_type));
            assert_eq!(m.document_type, Some(doc_type));
            assert_eq!(m.timestamp, p.timestamp);
            assert_eq!(
                m.source_endpoint.as_deref(),
                Some(p.source_endpoint.as_str())
            );
            assert_eq!(m.sender_ods, Some(p.sender_ods.clone()));
            assert_eq!(
                m.receiver_ods,
                p.receiver_ods.iter().cloned().collect::<Vec<_>>()
            );
            // All six keys are written: LocalExtension is `None` where none was given.
            let mut handling = p.handling.clone();
            handling
                .local_extension
                .get_or_insert_with(|| "None".into());
            assert_eq!(m.handling, handling);
            assert_eq!(m.document, doc, "document carried unchanged");
            assert_eq!(
                m.document_bundle_id.as_deref(),
                Some(&*format!("doc-bundle-{n}"))
            );
            assert_eq!(
                m.document_identifier.as_deref(),
                Some(&*format!("doc-ident-{n}"))
            );
            assert_eq!(
                m.composition_identifier.as_deref(),
                Some(&*format!("comp-ident-{n}"))
            );
            assert_eq!(m.composition_type.as_ref().unwrap().code, "373942005");
            assert_eq!(m.replaces.as_deref(), Some("old-doc-id"));
            assert_eq!(m.nhs_number.as_deref(), Some("9434765919"));
            assert!(m.attachments.is_empty());
        }
    }
}

#[test]
fn rendered_message_is_stable_and_header_comes_first() {
    let p = params(DocumentType::DischargeSummary, 0);
    let a = to_xml(&render_message(&document(0, "9434765919"), p.clone()));
    let b = to_xml(&render_message(&document(0, "9434765919"), p));
    assert_eq!(a, b);
    let root = parse_xml(a.as_bytes()).unwrap();
    assert_eq!(
        root.get_value("Bundle.entry[0].resource.MessageHeader.event.code"),
        Some("ITK003D")
    );
    assert_eq!(
        root.get_value("Bundle.entry[3].fullUrl"),
        Some("urn:uuid:doc-bundle-0")
    );
}

// ---------------------------------------------------------------- send document

fn send_meta(doc_type: DocumentType, n: usize) -> SendDocumentMeta {
    let mut message = params(doc_type, n);
    message.receiver_ods = None;
    message.handling.message_definition = MESSAGE_DEFINITION_SEND_DOCUMENT.to_string();
    SendDocumentMeta {
        message,
        document_bundle_id: format!("33333333-0000-4000-8000-00000000000{n}"),
        document_identifier: format!("44444444-0000-4000-8000-00000000000{n}"),
        composition_identifier: format!("55555555-0000-4000-8000-00000000000{n}"),
        composition_type: None,
        title: "Letter <& summary>".to_string(),
        date: "2026-11-24T09:00:00+00:00".to_string(),
        nhs_number: NhsNumber::parse("9434765919").unwrap(),
        sender_name: Some("Test Trust".to_string()),
        replaces: (n == 1).then(|| "earlier-doc".to_string()),
    }
}

#[test]
fn send_document_round_trips_and_the_binary_decodes() {
    let pdf: Vec<u8> = b"%PDF-1.7\n"
        .iter()
        .copied()
        .chain((0..=255u8).cycle().take(4099))
        .collect();
    for (n, doc_type) in DocumentType::ALL.into_iter().enumerate() {
        let meta = send_meta(doc_type, n);
        let msg = render_send_document(&pdf, "application/pdf", meta.clone());
        for format in [Format::Xml, Format::Json] {
            let m = reread(&msg, format, ReadOptions::default())
                .unwrap_or_else(|e| panic!("{doc_type} {format:?}: {e}"));
            assert_eq!(m.event, "ITK007C");
            assert_eq!(m.document_type, Some(DocumentType::GenericDocument));
            assert!(m.handling.inf_ack_requested && m.handling.bus_ack_requested);
            assert_eq!(
                m.handling.sender_reference,
                meta.message.handling.sender_reference
            );
            assert!(m.receiver_ods.is_empty());
            assert_eq!(m.message_id, meta.message.message_id);
            assert_eq!(m.nhs_number.as_deref(), Some("9434765919"));
            assert_eq!(
                m.document_bundle_id.as_deref(),
                Some(&*meta.document_bundle_id)
            );
            assert_eq!(
                m.document_identifier.as_deref(),
                Some(&*meta.document_identifier)
            );
            assert_eq!(
                m.composition_identifier.as_deref(),
                Some(&*meta.composition_identifier)
            );
            assert_eq!(m.composition_type, Some(composition_type_for(doc_type)));
            assert_eq!(m.title.as_deref(), Some("Letter <& summary>"));
            assert_eq!(m.replaces, meta.replaces);
            assert_eq!(m.attachments.len(), 1);
            assert_eq!(m.attachments[0].content_type, "application/pdf");
            assert_eq!(m.attachments[0].size, pdf.len());
            let binary = m.document.first_resource("Binary").unwrap();
            assert_eq!(binary_content(binary).unwrap(), pdf);
            // The Composition's section points at the Binary.
            let comp = m.document.first_resource("Composition").unwrap();
            let target = comp
                .get_value("Composition.section.entry.reference")
                .unwrap();
            assert!(std::ptr::eq(
                m.document.resolve_reference(target).unwrap(),
                binary
            ));
        }
    }
}

#[test]
fn send_document_takes_an_explicit_composition_type() {
    let mut meta = send_meta(DocumentType::OutpatientLetter, 3);
    meta.composition_type = Some(SnomedCode::new("123", "Local letter"));
    let msg = render_send_document(b"hello", "text/plain", meta);
    let m = reread(&msg, Format::Xml, ReadOptions::default()).unwrap();
    assert_eq!(
        m.composition_type,
        Some(SnomedCode::new("123", "Local letter"))
    );
    assert_eq!(m.attachments[0].size, 5);
}

#[test]
fn base64_matches_the_corpus_encoding() {
    let root = parse_xml(&corpus()).unwrap();
    let text = root
        .get_value("Bundle.entry[2].resource.Bundle.entry[1].resource.Binary.content")
        .unwrap();
    let bytes = base64_decode(text).unwrap();
    assert_eq!(base64_encode(&bytes), text);
}

// ---------------------------------------------------------------- responses

fn response_params(n: usize) -> ResponseParams {
    ResponseParams {
        bundle_id: format!("66666666-0000-4000-8000-{n:012}"),
        bundle_identifier: format!("77777777-0000-4000-8000-{n:012}"),
        message_id: format!("88888888-0000-4000-8000-{n:012}"),
        timestamp: "2026-11-25T11:00:00+00:00".to_string(),
        sender_ods: OdsCode::parse("A81001").unwrap(),
        source_endpoint: Some("X26ABC2".to_string()),
        diagnostics: (n % 2 == 1).then(|| format!("detail {n}")),
    }
}

#[test]
fn every_response_code_round_trips() {
    let original = read_message_with(&corpus(), Format::Xml, LENIENT).unwrap();
    let to = ResponseTo::from(&original);
    for (n, &code) in ResponseCode::ALL.iter().enumerate() {
        let p = response_params(n);
        let el = render_response(&to, code, &p);
        for format in [Format::Xml, Format::Json] {
            let bytes = match format {
                Format::Xml => to_xml(&el),
                Format::Json => to_json(&el),
            };
            let r = read_response(bytes.as_bytes(), format)
                .unwrap_or_else(|e| panic!("{code} {format:?}: {e}"));
            assert_eq!(r.message_id, p.message_id);
            assert_eq!(r.original_message_id, original.message_id);
            assert_eq!(r.code, code);
            assert_eq!(r.kind, code.kind());
            assert_eq!(
                r.kind,
                if code.code() >= 30000 {
                    ResponseKind::Business
                } else {
                    ResponseKind::Infrastructure
                }
            );
            assert_eq!(
                r.positive,
                matches!(code.code(), 20013 | 30001 | 30004),
                "{code}"
            );
            assert_eq!(
                r.response_type.as_deref(),
                Some(if r.positive { "ok" } else { "fatal-error" })
            );
            assert_eq!(r.text, code.display());
            assert_eq!(r.diagnostics, p.diagnostics);
            assert_eq!(
                r.sender_reference.as_deref(),
                Some("846ebe66-5ff8-4499-bc57-a112d3d0daa3")
            );
            assert_eq!(r.timestamp.as_deref(), Some(p.timestamp.as_str()));
        }
        // A response is itself an ITK3 message with both flags off.
        let header = el.get("Bundle.entry[0].resource.MessageHeader").unwrap();
        assert_eq!(
            header.get_value("MessageHeader.event.code"),
            Some("ITK008M")
        );
    }
}

#[test]
fn response_to_an_unreadable_message() {
    let el = render_response(
        &ResponseTo::default(),
        ResponseCode::UnreadableMessage,
        &response_params(0),
    );
    let r = read_response(to_xml(&el).as_bytes(), Format::Xml).unwrap();
    assert_eq!(r.original_message_id, UNREADABLE_ORIGINAL);
    assert_eq!(r.code, ResponseCode::UnreadableMessage);
    assert!(!r.positive);
    assert_eq!(r.sender_reference.as_deref(), Some("None"));
}

fn template(priority_block: &str, response_code: &str) -> String {
    String::from_utf8(data("itk3-response-ack-template.xml"))
        .unwrap()
        .replace("__PRIORITY_BLOCK__", priority_block)
        .replace(
            "__IAID_BUNDLE_UUID__",
            "a0000000-0000-4000-8000-000000000001",
        )
        .replace("__IA_BUNDLE_UUID__", "a0000000-0000-4000-8000-000000000002")
        .replace(
            "__IA_MESSAGE_HEADER_UUID__",
            "a0000000-0000-4000-8000-000000000003",
        )
        .replace("__SENDER_UUID__", "a0000000-0000-4000-8000-000000000004")
        .replace("__TIMESTAMP__", "2026-11-25T12:00:00+00:00")
        .replace("__REQUEST_UUID__", "ea7221b8-3cc0-4b11-bc95-585b056b5428")
        .replace("__RESPONSE_CODE__", response_code)
        .replace(
            "__IA_OPERATION_OUTCOME_UUID__",
            "a0000000-0000-4000-8000-000000000005",
        )
        .replace("__ISSUE_SEVERITY__", "information")
        .replace("__ISSUE_CODE__", "informational")
}

#[test]
fn corpus_response_template_reads() {
    let priority = r#"<extension url="Priority"><valueCoding><system value="https://fhir.nhs.uk/STU3/CodeSystem/ITK-Priority-1"/><code value="routine"/></valueCoding></extension>"#;
    for block in ["", priority] {
        let xml = template(block, "ok");
        assert!(!xml.contains("__"), "every placeholder substituted");
        let r = read_response(xml.as_bytes(), Format::Xml).unwrap();
        assert_eq!(r.message_id, "a0000000-0000-4000-8000-000000000003");
        assert_eq!(
            r.original_message_id,
            "ea7221b8-3cc0-4b11-bc95-585b056b5428"
        );
        assert_eq!(r.code, ResponseCode::PatientKnown);
        assert_eq!(r.kind, ResponseKind::Business);
        assert!(r.positive);
        assert_eq!(r.response_type.as_deref(), Some("ok"));
        assert_eq!(r.text, "errortext");
        assert_eq!(r.sender_reference, None);
        // And the same through JSON.
        let json = fhir::xml_to_json(xml.as_bytes()).unwrap();
        assert_eq!(read_response(json.as_bytes(), Format::Json).unwrap(), r);
    }
}

#[test]
fn a_document_message_is_not_a_response() {
    let err = read_response(&corpus(), Format::Xml).unwrap_err();
    assert_eq!(
        err.path,
        "Bundle.entry[0].resource.MessageHeader.event.code"
    );
    assert_eq!(err.code, ResponseCode::MessageDefinitionError);
}

#[test]
fn response_with_unknown_code_names_the_coding() {
    let xml = template("", "ok").replace("\"30001\"", "\"39999\"");
    let err = read_response(xml.as_bytes(), Format::Xml).unwrap_err();
    assert_eq!(
        err.path,
        "Bundle.entry[2].resource.OperationOutcome.issue[0].details.coding.code"
    );
    assert_eq!(err.code, ResponseCode::PayloadValidationFailure);
}

// ---------------------------------------------------------------- errors

fn rendered() -> Element {
    render_message(
        &document(0, "9434765919"),
        params(DocumentType::DischargeSummary, 0),
    )
}

fn read_err(msg: &Element) -> ItkError {
    reread(msg, Format::Xml, ReadOptions::default()).unwrap_err()
}

#[test]
fn missing_event_names_its_path() {
    let mut msg = rendered();
    header_mut(&mut msg).children.retain(|c| c.name != "event");
    let err = read_err(&msg);
    assert_eq!(
        err.to_string(),
        "Bundle.entry[0].resource.MessageHeader.event: missing (ITK3 20006 ITK3 Header validation failure)"
    );
}

/// What is broken, how to break it, the path the error names and its ITK3 code.
type Case = (&'static str, fn(&mut Element), &'static str, u16);

#[test]
fn header_errors() {
    let cases: Vec<Case> = vec![
        (
            "no id",
            |m| header_mut(m).children.retain(|c| c.name != "id"),
            "Bundle.entry[0].resource.MessageHeader.id",
            20006,
        ),
        (
            "no timestamp",
            |m| header_mut(m).children.retain(|c| c.name != "timestamp"),
            "Bundle.entry[0].resource.MessageHeader.timestamp",
            20006,
        ),
        (
            "no focus",
            |m| header_mut(m).children.retain(|c| c.name != "focus"),
            "Bundle.entry[0].resource.MessageHeader.focus",
            20006,
        ),
        (
            "dangling focus",
            |m| {
                let focus = header_mut(m).child_mut("focus").unwrap();
                focus.children[0].value = Some("urn:uuid:nowhere".into());
            },
            "Bundle.entry[0].resource.MessageHeader.focus.reference",
            20006,
        ),
        (
            "no sender",
            |m| header_mut(m).children.retain(|c| c.name != "sender"),
            "Bundle.entry[0].resource.MessageHeader.sender",
            20006,
        ),
        (
            "wrong bundle type",
            |m| m.child_mut("type").unwrap().value = Some("collection".into()),
            "Bundle.type",
            20006,
        ),
        (
            "no handling",
            |m| header_mut(m).children.retain(|c| c.name != "extension"),
            "Bundle.entry[0].resource.MessageHeader.extension('https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2')",
            10001,
        ),
        (
            "no InfAck",
            |m| {
                handling_mut(m)
                    .children
                    .retain(|c| c.url.as_deref() != Some("InfAckRequested"))
            },
            "Bundle.entry[0].resource.MessageHeader.extension('https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2').extension('InfAckRequested').valueBoolean",
            10002,
        ),
        (
            "no BusAck",
            |m| {
                handling_mut(m)
                    .children
                    .retain(|c| c.url.as_deref() != Some("BusAckRequested"))
            },
            "Bundle.entry[0].resource.MessageHeader.extension('https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2').extension('BusAckRequested').valueBoolean",
            10003,
        ),
        (
            "no MessageDefinition",
            |m| {
                handling_mut(m)
                    .children
                    .retain(|c| c.url.as_deref() != Some("MessageDefinition"))
            },
            "Bundle.entry[0].resource.MessageHeader.extension('https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2').extension('MessageDefinition').valueReference.reference",
            10004,
        ),
        (
            "bad RecipientType",
            |m| {
                let rt = handling_mut(m)
                    .children
                    .iter_mut()
                    .find(|c| c.url.as_deref() == Some("RecipientType"))
                    .unwrap();
                rt.children[0].child_mut("code").unwrap().value = Some("XX".into());
            },
            "Bundle.entry[0].resource.MessageHeader.extension('https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2').extension('RecipientType').valueCoding.code",
            10010,
        ),
        (
            "long SenderReference",
            |m| {
                let sr = handling_mut(m)
                    .children
                    .iter_mut()
                    .find(|c| c.url.as_deref() == Some("SenderReference"))
                    .unwrap();
                sr.children[0].value = Some("x".repeat(256).into());
            },
            "Bundle.entry[0].resource.MessageHeader.extension('https://fhir.nhs.uk/STU3/StructureDefinition/Extension-ITK-MessageHandling-2').extension('SenderReference').valueString",
            10007,
        ),
        (
            "bad sender ODS",
            |m| {
                let org = m.get("Bundle.entry[1].resource.Organization").unwrap().clone();
                let mut org = org;
                org.child_mut("identifier").unwrap().child_mut("value").unwrap().value =
                    Some("A-1".into());
                m.children
                    .iter_mut()
                    .filter(|c| c.name == "entry")
                    .nth(1)
                    .unwrap()
                    .child_mut("resource")
                    .unwrap()
                    .children[0] = org;
            },
            "Bundle.entry[1].resource.Organization.identifier.value",
            20003,
        ),
    ];
    for (what, mutate, path, code) in cases {
        let mut msg = rendered();
        mutate(&mut msg);
        let err = read_err(&msg);
        assert_eq!(err.path, path, "{what}: {err}");
        assert_eq!(err.code.code(), code, "{what}: {err}");
    }
}

#[test]
fn payload_errors() {
    // Invalid NHS number in a rendered message: strict fails, lenient warns.
    let msg = render_message(
        &document(0, "9434765918"),
        params(DocumentType::DischargeSummary, 0),
    );
    let err = read_err(&msg);
    assert_eq!(
        err.path,
        "Bundle.entry[3].resource.Bundle.entry[1].resource.Patient.identifier[0].value"
    );
    assert_eq!(err.code, ResponseCode::PayloadValidationFailure);
    let m = reread(&msg, Format::Json, LENIENT).unwrap();
    assert_eq!(m.nhs_number.as_deref(), Some("9434765918"));
    assert_eq!(m.warnings, vec![err]);

    // No Composition.
    let mut doc = document(0, "9434765919");
    doc.children.retain(|c| {
        !(c.name == "entry" && c.get_value("entry.fullUrl") == Some("urn:uuid:comp-1"))
    });
    let err = read_err(&render_message(
        &doc,
        params(DocumentType::DischargeSummary, 0),
    ));
    assert_eq!(
        err.path,
        "Bundle.entry[3].resource.Bundle.entry.resource.Composition"
    );
    assert_eq!(err.code, ResponseCode::PayloadValidationFailure);

    // Focus that is not a document Bundle.
    let mut doc = document(0, "9434765919");
    doc.child_mut("type").unwrap().value = Some("collection".into());
    let err = read_err(&render_message(
        &doc,
        params(DocumentType::DischargeSummary, 0),
    ));
    assert_eq!(err.path, "Bundle.entry[3].resource.Bundle");
    assert_eq!(err.code, ResponseCode::PayloadValidationFailure);

    // Broken base64 in the attachment.
    let xml = String::from_utf8(corpus())
        .unwrap()
        .replace("9989453456", "9434765919")
        .replace("JVBERi0xLjcNCiW1", "JVBERi0xLjcNCiW!");
    let err = read_message(xml.as_bytes(), Format::Xml).unwrap_err();
    assert_eq!(
        err.path,
        "Bundle.entry[2].resource.Bundle.entry[1].resource.Binary.content"
    );
    assert_eq!(err.code, ResponseCode::PayloadValidationFailure);

    // Read only for what it says about itself (as at ingest), the attachment is still checked,
    // padding too, and none is kept.
    let only = ReadOptions {
        check_attachments_only: true,
        ..ReadOptions::default()
    };
    let good = String::from_utf8(corpus())
        .unwrap()
        .replace("9989453456", "9434765919");
    let full = read_message(good.as_bytes(), Format::Xml).unwrap();
    assert_eq!(full.attachments.len(), 1);
    let checked = read_message_with(good.as_bytes(), Format::Xml, only).unwrap();
    assert!(checked.attachments.is_empty());
    assert_eq!(checked.receiver_ods, full.receiver_ods);
    for broken in ["JVBERi0xLjcNCiW!", "JVB=Ri0xLjcNCiW1"] {
        let xml = good.replace("JVBERi0xLjcNCiW1", broken);
        let err = read_message_with(xml.as_bytes(), Format::Xml, only).unwrap_err();
        assert_eq!(
            err.path, "Bundle.entry[2].resource.Bundle.entry[1].resource.Binary.content",
            "{broken}"
        );
        assert_eq!(err.code, ResponseCode::PayloadValidationFailure);
    }
}

#[test]
fn unreadable_input_is_10009() {
    let err = read_message(b"<Bundle xmlns=\"http://hl7.org/fhir\"><id", Format::Xml).unwrap_err();
    assert_eq!(err.code, ResponseCode::UnreadableMessage);
    let err = read_message(b"{\"resourceType\":", Format::Json).unwrap_err();
    assert_eq!(err.code, ResponseCode::UnreadableMessage);
    let err = read_message(
        br#"<Patient xmlns="http://hl7.org/fhir"><id value="x"/></Patient>"#,
        Format::Xml,
    )
    .unwrap_err();
    assert_eq!(err.path, "Patient");
    assert_eq!(err.code, ResponseCode::HeaderValidationFailure);
    let _ = parse_json(b"{}");
}

#[test]
fn format_sniffing() {
    assert_eq!(
        Format::sniff(b"  {\"resourceType\":\"Bundle\"}"),
        Format::Json
    );
    assert_eq!(Format::sniff(&corpus()), Format::Xml);
}

// ---------------------------------------------------------------- golden output

/// Compares with `tests/data/itk3/<name>`; `ITK3_UPDATE_GOLDEN=1` rewrites the file.
fn golden(name: &str, actual: &str) {
    let path = format!("{}/tests/data/itk3/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("ITK3_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        actual, expected,
        "{path} differs; rerun with ITK3_UPDATE_GOLDEN=1 to accept"
    );
}

#[test]
fn golden_send_document() {
    let mut meta = send_meta(DocumentType::GenericDocument, 1);
    meta.message.handling.local_extension = Some("SendDocument-Generic".to_string());
    let msg = render_send_document(b"%PDF-1.7 tiny", "application/pdf", meta);
    golden("send-document.xml", &fhir::to_xml_pretty(&msg));
}

#[test]
fn golden_responses() {
    let original = read_message_with(&corpus(), Format::Xml, LENIENT).unwrap();
    let to = ResponseTo::from(&original);
    let ok = render_response(&to, ResponseCode::Success, &response_params(0));
    golden("response-20013.xml", &fhir::to_xml_pretty(&ok));
    let bad = render_response(
        &to,
        ResponseCode::PayloadValidationFailure,
        &response_params(1),
    );
    golden("response-20009.xml", &fhir::to_xml_pretty(&bad));
}
