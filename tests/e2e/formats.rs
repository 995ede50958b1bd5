//! What the hub writes for a receiver, checked by parsers this project did not write: FHIR STU3
//! by `fhir.resources`' STU3 models plus the ITK3 and GP Connect header rules, HL7 v2 by
//! hl7apy at strict validation (`tests/peers/validate.py`). Every sample document the hub
//! accepts (`tests/fixtures/`) is rendered in every format a route can ask for it in.

use edt_tests::{peers_python as python, workspace};
use edt_transforms::render::{render, Delivery};
use edt_transforms::{DocumentMeta, DocumentType, ReceiverFormat};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the independent validator on files; returns its verdict for each.
pub fn validate(kind: &str, files: &[PathBuf]) -> Vec<serde_json::Value> {
    let out = Command::new(python())
        .arg(workspace().join("tests/peers/validate.py"))
        .arg(kind)
        .args(files)
        .output()
        .expect("run tests/peers/validate.py");
    let verdicts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON verdict a line"))
        .collect();
    assert_eq!(
        verdicts.len(),
        files.len(),
        "validator output: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    verdicts
}

/// Fails with every error the validator found.
pub fn assert_valid(kind: &str, files: &[PathBuf]) -> Vec<serde_json::Value> {
    let verdicts = validate(kind, files);
    let bad: Vec<_> = verdicts.iter().filter(|v| v["ok"] != true).collect();
    assert!(bad.is_empty(), "rejected by the {kind} validator: {bad:#?}");
    verdicts
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(workspace().join("tests/fixtures").join(name)).expect("fixture")
}

fn meta(content_type: &str, document_type: DocumentType, payload: &[u8]) -> DocumentMeta {
    DocumentMeta {
        message_id: "0190a0b0-0000-7000-8000-0000000000aa".into(),
        sender_ods: "RX1".into(),
        document_type,
        content_type: content_type.into(),
        local_id: "L1".into(),
        nhs_number: Some("9434765919".into()),
        file_name: None,
        title: Some("Discharge summary".into()),
        payload_size: payload.len() as u64,
        payload_sha256: edt_transforms::sha256_hex(payload),
        received_at: "2026-11-25T09:00:00Z".into(),
    }
}

const DELIVERY: Delivery<'static> = Delivery {
    id: "0190a0b0-0000-7000-8000-0000000000bb",
    recipient_ods: "A81001",
    recipient_type: edt_transforms::itk3::RecipientType::ForAction,
    created_at: "2026-11-25T09:00:01Z",
    source_endpoint: Some("RX1EDT001"),
};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn the_sample_documents_are_valid_to_the_independent_validators() {
    let dir = workspace().join("tests/fixtures");
    assert_valid(
        "itk3",
        &[
            dir.join("itk003d-discharge.xml"),
            dir.join("itk006d-outpatient-letter.xml"),
        ],
    );
    assert_valid("hl7v2", &[dir.join("oru-r01-uk-pdf.hl7")]);
    // The GP Connect sample is kept as published (its header's `source` comes before
    // `event`): the hub re-heads it, and what it sends must be valid.
    let v = validate("itk3", &[dir.join("itk007c-send-document.xml")]);
    assert!(
        v[0]["errors"]
            .to_string()
            .contains("out of FHIR STU3 order"),
        "{v:?}"
    );
}

#[test]
fn every_itk3_message_the_hub_renders_is_valid_fhir_stu3_and_itk3() {
    let tmp = tempfile::tempdir().unwrap();
    let pdf = fixture("letter.pdf");
    let cases: Vec<(&str, ReceiverFormat, &str, DocumentType, Vec<u8>)> = vec![
        (
            "gp-connect from a PDF",
            ReceiverFormat::GpConnect,
            "application/pdf",
            DocumentType::DischargeSummary,
            pdf.clone(),
        ),
        (
            "gp-connect passing on an ITK007C",
            ReceiverFormat::GpConnect,
            "application/fhir+xml",
            DocumentType::GenericDocument,
            fixture("itk007c-send-document.xml"),
        ),
        (
            "itk3 passing on an ITK007C",
            ReceiverFormat::Itk3,
            "application/fhir+xml",
            DocumentType::GenericDocument,
            fixture("itk007c-send-document.xml"),
        ),
        (
            "itk3 eDischarge",
            ReceiverFormat::Itk3,
            "application/fhir+xml",
            DocumentType::DischargeSummary,
            fixture("itk003d-discharge.xml"),
        ),
        (
            "itk3 outpatient letter",
            ReceiverFormat::Itk3,
            "application/fhir+xml",
            DocumentType::OutpatientLetter,
            fixture("itk006d-outpatient-letter.xml"),
        ),
    ];
    let mut files = Vec::new();
    for (i, (what, format, ct, dt, payload)) in cases.iter().enumerate() {
        let r = render(*format, &meta(ct, *dt, payload), payload, &DELIVERY)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        files.push(write(tmp.path(), &format!("{i}.xml"), &r.bytes));
    }
    let verdicts = assert_valid("itk3", &files);
    for (v, (what, ..)) in verdicts.iter().zip(&cases) {
        assert_eq!(
            v["message_id"], DELIVERY.id,
            "{what}: headed for the delivery"
        );
        assert_eq!(v["source_endpoint"], "RX1EDT001", "{what}");
        assert_eq!(v["nhs_number"], "9434765919", "{what}");
    }
    let events: Vec<_> = verdicts.iter().map(|v| v["event"].clone()).collect();
    assert_eq!(
        events,
        ["ITK007C", "ITK007C", "ITK007C", "ITK003D", "ITK006D"],
        "each event keeps its own rules"
    );
}

#[test]
fn every_hl7v2_message_the_hub_writes_passes_a_strict_parser() {
    use edt_transforms::hl7::{build_ack, parse_oru, AckRequest, Message};
    let tmp = tempfile::tempdir().unwrap();
    let pdf = fixture("letter.pdf");
    let mut m = meta("application/pdf", DocumentType::OrderResult, &pdf);
    m.title = Some("Full blood count".into());
    // A PDF result becomes an ORU^R01 carrying it (OBX type ED); an ORU goes as it came.
    let wrapped = render(ReceiverFormat::Hl7v2, &m, &pdf, &DELIVERY).unwrap();
    let oru = fixture("oru-r01-uk-pdf.hl7");
    let passed = render(
        ReceiverFormat::Hl7v2,
        &meta("application/hl7-v2", DocumentType::OrderResult, &oru),
        &oru,
        &DELIVERY,
    )
    .unwrap();
    // The acknowledgements the hub answers a result with: AA, and AE naming the field.
    let text = std::str::from_utf8(&oru).unwrap();
    let original = Message::parse(text).unwrap();
    let aa = build_ack(
        &original,
        &AckRequest::accept("ACK-000001", "20261125093001"),
    )
    .unwrap();
    let broken = text.replace("9434765919^^^NHS^NH", "9434765918^^^NHS^NH");
    let error = parse_oru(broken.as_bytes()).unwrap_err();
    let ae = build_ack(
        &Message::parse(&broken).unwrap(),
        &AckRequest::for_error(&error, "ACK-000002", "20261125093002"),
    )
    .unwrap();
    let files = vec![
        write(tmp.path(), "wrapped.hl7", &wrapped.bytes),
        write(tmp.path(), "passed.hl7", &passed.bytes),
        write(tmp.path(), "aa.hl7", aa.render().as_bytes()),
        write(tmp.path(), "ae.hl7", ae.render().as_bytes()),
    ];
    let v = assert_valid("hl7v2", &files);
    assert_eq!(v[0]["message_type"], "ORU^R01^ORU_R01");
    assert_eq!(v[0]["embedded"][0], "PDF");
    assert_eq!(v[2]["message_type"], "ACK^R01^ACK");
}

#[test]
fn the_validators_catch_what_receivers_refused_before() {
    // The shapes the hub used to send: a GP Connect header without `source` or
    // LocalExtension, a receiver on a GP Connect message, and the practice code in the
    // numeric PD1-3.3. Each must be refused, or the checks above prove nothing.
    let tmp = tempfile::tempdir().unwrap();
    let pdf = fixture("letter.pdf");
    let good = render(
        ReceiverFormat::GpConnect,
        &meta("application/pdf", DocumentType::DischargeSummary, &pdf),
        &pdf,
        &DELIVERY,
    )
    .unwrap();
    let xml = String::from_utf8(good.bytes).unwrap();
    let no_source = regex_lite_remove(&xml, "<source>", "</source>");
    let no_local = regex_lite_remove(&xml, "<extension url=\"LocalExtension\">", "</extension>");
    let with_receiver = xml.replace(
        "<sender>",
        "<receiver><reference value=\"urn:uuid:x\"/></receiver><sender>",
    );
    let files = vec![
        write(tmp.path(), "no-source.xml", no_source.as_bytes()),
        write(tmp.path(), "no-local.xml", no_local.as_bytes()),
        write(tmp.path(), "receiver.xml", with_receiver.as_bytes()),
    ];
    for (v, words) in validate("itk3", &files).iter().zip([
        "source",
        "LocalExtension",
        "receiver/destination must not be present",
    ]) {
        assert_eq!(v["ok"], false, "{v}");
        assert!(v["errors"].to_string().contains(words), "{words}: {v}");
    }
    let old = "MSH|^~\\&|EDTHUB|RX1||A81001|20261125090001||ORU^R01^ORU_R01|abc|P|2.4\r\
PID|1||9434765919^^^NHS^NH||\"\"\rPD1|||^^A81001\rOBR|1|m1||^Result\rOBX|1|TX|^Result||text||||||F\r";
    let v = validate("hl7v2", &[write(tmp.path(), "old.hl7", old.as_bytes())]);
    assert_eq!(v[0]["ok"], false, "{v:?}");
    assert!(v[0]["errors"].to_string().contains("NM"), "{v:?}");
}

/// `text` without the first span from `start` to the next `end` (inclusive).
fn regex_lite_remove(text: &str, start: &str, end: &str) -> String {
    let a = text.find(start).expect("start");
    let b = a + text[a..].find(end).expect("end") + end.len();
    format!("{}{}", &text[..a], &text[b..])
}

/// A hub whose sample directory routes A81001 as `a81001` and A81002 as `a81002` (route
/// formats), with the trust's MESH mailbox known.
fn hub_with_formats(dir: &Path, a81001: &str, a81002: &str) -> edt_tests::Hub {
    let hub = edt_tests::Hub::start(dir, edt_tests::FAST);
    let directory = dir.join("directory.toml");
    let mut text = std::fs::read_to_string(&directory).unwrap();
    text = text.replace(
        "name = \"Sample Acute Trust\"\n",
        "name = \"Sample Acute Trust\"\nmesh_mailbox = \"RX1OT001\"\n",
    );
    for (ods, format) in [("A81001", a81001), ("A81002", a81002)] {
        let rule = format!("endpoint = \"{}-drop\"\n", ods.to_ascii_lowercase());
        assert!(text.contains(&rule), "sample directory changed: {rule}");
        text = text.replace(&rule, &format!("{rule}format = \"{format}\"\n"));
    }
    std::fs::write(&directory, text).unwrap();
    hub.cli_json(&["directory", "reload"]);
    hub
}

fn refusal(
    r: Result<tonic::Response<edt_proto::v1::SubmitDocumentResponse>, tonic::Status>,
) -> String {
    let status = r.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status.message().to_string()
}

#[tokio::test]
async fn a_document_its_route_cannot_render_is_refused_at_submission() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_with_formats(dir.path(), "gp-connect", "itk3");
    let mut sub = hub.submission().await;

    // A PDF to a route that takes ITK3 (Transfer of Care) messages.
    let mut pdf = edt_tests::letter("FMT-PDF", &["A81002"]);
    pdf.payload = fixture("letter.pdf");
    let why = refusal(sub.submit_document(pdf.clone()).await);
    assert!(
        why.contains("recipient_ods") && why.contains("A81002"),
        "{why}"
    );
    assert!(
        why.contains("itk3") && why.contains("gp-connect"),
        "says why: {why}"
    );

    // A Transfer of Care message to a route that takes GP Connect Send Documents.
    let toc = edt_proto::v1::SubmitDocumentRequest {
        recipient_ods: vec!["A81001".into()],
        content_type: "application/fhir+xml".into(),
        payload: fixture("itk003d-discharge.xml"),
        local_id: "FMT-TOC".into(),
        ..pdf.clone()
    };
    let why = refusal(sub.submit_document(toc).await);
    assert!(why.contains("A81001") && why.contains("ITK003D"), "{why}");

    // Nothing was stored for either; the same PDF to the GP Connect route is taken.
    let listed = hub.cli_json(&["messages", "list"]);
    assert_eq!(listed["messages"].as_array().unwrap().len(), 0, "{listed}");
    pdf.recipient_ods = vec!["A81001".into()];
    let ok = sub.submit_document(pdf).await.unwrap().into_inner();
    assert!(!ok.message_id.is_empty());
}

#[tokio::test]
async fn content_that_is_not_what_its_label_says_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = edt_tests::Hub::start(dir.path(), edt_tests::FAST);
    let mut sub = hub.submission().await;
    let mut req = edt_tests::letter("LABEL-1", &["A81001"]);
    req.payload = b"hello world".to_vec();
    let why = refusal(sub.submit_document(req.clone()).await);
    assert!(why.starts_with("payload"), "names the field: {why}");
    assert!(
        why.contains("application/pdf") && why.contains("%PDF-"),
        "{why}"
    );
    req.content_type = "image/png".into();
    req.payload = fixture("letter.pdf");
    let why = refusal(sub.submit_document(req).await);
    assert!(why.contains("PNG"), "{why}");
    let listed = hub.cli_json(&["messages", "list"]);
    assert_eq!(listed["messages"].as_array().unwrap().len(), 0, "{listed}");
}
