//! The `fhir-pathology` route format: every ORU^R01 sample (the corpus samples and the full
//! blood count, urea and electrolytes and microbiology fixtures) rendered as a FHIR R4 test
//! report bundle, validated by `tests/peers/validate.py fhir-pathology` (FHIR.js against the
//! R4 core definitions, fhir.resources' models and the Pathology FHIR IG's bundle rules, not
//! the hub's reader), and read back with
//! plain JSON to check that what the ORU said is there and nothing else.

use crate::formats::{assert_valid, fixture};
use edt_transforms::render::{render, Delivery};
use edt_transforms::{DocumentMeta, DocumentType, ReceiverFormat};
use serde_json::Value;

pub const ORU_FIXTURES: [&str; 6] = [
    "oru-r01-fbc.hl7",
    "oru-r01-ue.hl7",
    "oru-r01-microbiology.hl7",
    "oru-r01-uk-pdf.hl7",
    "oru-r01-uk-inrstar.hl7",
    "oru-r01-python-hl7-sample.hl7",
];

fn meta(payload: &[u8]) -> DocumentMeta {
    DocumentMeta {
        message_id: "0190a0b0-0000-7000-8000-0000000000aa".into(),
        sender_ods: "RX1".into(),
        document_type: DocumentType::OrderResult,
        content_type: "application/hl7-v2".into(),
        local_id: "RX1/1".into(),
        nhs_number: None,
        file_name: None,
        title: None,
        payload_size: payload.len() as u64,
        payload_sha256: edt_transforms::sha256_hex(payload),
        received_at: "2026-11-25T09:00:00Z".into(),
    }
}

const DELIVERY: Delivery<'static> = Delivery {
    id: "0190a0b0-0000-7000-8000-0000000000cc",
    recipient_ods: "A81001",
    recipient_type: edt_transforms::itk3::RecipientType::ForAction,
    created_at: "2026-11-25T09:00:01Z",
    source_endpoint: None,
};

fn render_bundle(name: &str) -> Vec<u8> {
    let payload = fixture(name);
    let r = render(
        ReceiverFormat::FhirPathology,
        &meta(&payload),
        &payload,
        &DELIVERY,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(r.meta.content_type, "application/fhir+json");
    r.bytes
}

fn resources<'a>(b: &'a Value, kind: &str) -> Vec<&'a Value> {
    b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

fn result<'a>(b: &'a Value, local_code: &str) -> &'a Value {
    resources(b, "Observation")
        .into_iter()
        .find(|o| o["code"]["coding"][0]["code"] == local_code)
        .unwrap_or_else(|| panic!("no result {local_code}"))
}

#[test]
fn every_oru_sample_becomes_a_valid_r4_test_report_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = ORU_FIXTURES
        .iter()
        .map(|name| {
            let p = dir.path().join(format!("{name}.json"));
            std::fs::write(&p, render_bundle(name)).unwrap();
            p
        })
        .collect();
    let verdicts = assert_valid("fhir-pathology", &files);
    for v in &verdicts {
        assert!(v["resources"]["DiagnosticReport"] == 1, "{v}");
    }
    // The same delivery renders the same bytes (a retried delivery sends the same bundle).
    assert_eq!(
        render_bundle("oru-r01-fbc.hl7"),
        render_bundle("oru-r01-fbc.hl7")
    );
}

#[test]
fn a_full_blood_count_keeps_values_units_ranges_flags_and_codes() {
    let b: Value = serde_json::from_slice(&render_bundle("oru-r01-fbc.hl7")).unwrap();
    assert_eq!(b["type"], "document");
    assert_eq!(b["entry"][0]["resource"]["resourceType"], "Composition");
    let patient = resources(&b, "Patient")[0];
    assert_eq!(
        patient["identifier"][0],
        serde_json::json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"})
    );
    assert_eq!(patient["birthDate"], "1970-01-01");
    assert_eq!(patient["gender"], "female");
    assert_eq!(
        patient["name"][0]["given"],
        serde_json::json!(["ALEX", "JAMIE"])
    );

    let hb = result(&b, "HB");
    assert_eq!(hb["valueQuantity"]["value"], serde_json::json!(118));
    assert_eq!(hb["valueQuantity"]["unit"], "g/L");
    assert_eq!(hb["valueQuantity"]["system"], "http://unitsofmeasure.org");
    assert_eq!(
        hb["referenceRange"][0]["low"]["value"],
        serde_json::json!(130)
    );
    assert_eq!(
        hb["referenceRange"][0]["high"]["value"],
        serde_json::json!(170)
    );
    assert_eq!(hb["interpretation"][0]["coding"][0]["code"], "L");
    // The local code and its LOINC alternate, each with its system (none for the local one).
    assert!(hb["code"]["coding"][0].get("system").is_none());
    assert_eq!(hb["code"]["coding"][1]["system"], "http://loinc.org");
    assert_eq!(hb["code"]["coding"][1]["code"], "718-7");
    assert_eq!(hb["effectiveDateTime"], "2026-11-25T09:00:00+00:00");
    assert_eq!(
        result(&b, "PLT")["interpretation"][0]["coding"][0]["code"],
        "H"
    );
    assert_eq!(
        result(&b, "LYMPH")["note"][0]["text"],
        "Film reviewed: mild hypochromia."
    );

    let group = resources(&b, "Observation")
        .into_iter()
        .find(|o| o["code"]["coding"][0]["code"] == "FBC")
        .unwrap();
    assert_eq!(group["hasMember"].as_array().unwrap().len(), 10);
    let report = resources(&b, "DiagnosticReport")[0];
    assert_eq!(report["status"], "final");
    assert_eq!(report["category"][0]["coding"][0]["code"], "HM");
    assert_eq!(report["issued"], "2026-11-25T09:30:00+00:00");
    assert!(report.get("presentedForm").is_none());

    let specimen = resources(&b, "Specimen")[0];
    assert_eq!(
        specimen["type"]["coding"][0]["system"],
        "http://snomed.info/sct"
    );
    assert_eq!(specimen["type"]["coding"][0]["code"], "119297000");
    assert_eq!(
        specimen["collection"]["collectedDateTime"],
        "2026-11-25T08:00:00+00:00"
    );
    let request = resources(&b, "ServiceRequest")[0];
    assert_eq!(request["status"], "completed");
    assert_eq!(request["identifier"][0]["value"], "ORD-FBC-1");
    let requester = resources(&b, "Practitioner")[0];
    assert_eq!(
        requester["identifier"][0]["system"],
        "https://fhir.hl7.org.uk/Id/gmp-number"
    );
    let orgs: Vec<String> = resources(&b, "Organization")
        .iter()
        .map(|o| {
            o["identifier"][0]["value"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        orgs.contains(&"RX1".into()) && orgs.contains(&"A81001".into()),
        "{orgs:?}"
    );
}

#[test]
fn urea_and_electrolytes_in_summer_and_microbiology_text() {
    let b: Value = serde_json::from_slice(&render_bundle("oru-r01-ue.hl7")).unwrap();
    // July: British Summer Time.
    assert_eq!(
        resources(&b, "DiagnosticReport")[0]["effectiveDateTime"],
        "2026-07-14T08:30:00+01:00"
    );
    let egfr = result(&b, "EGFR");
    assert_eq!(egfr["valueQuantity"]["comparator"], ">");
    assert_eq!(egfr["valueQuantity"]["value"], serde_json::json!(90));
    assert!(
        egfr["valueQuantity"].get("system").is_none(),
        "units not said to be UCUM"
    );
    assert_eq!(
        result(&b, "K")["note"][0]["text"],
        "Sample not haemolysed. Please repeat if clinically indicated."
    );
    // A v2.4 specimen source (OBR-15).
    assert_eq!(
        resources(&b, "Specimen")[0]["type"]["coding"][0]["code"],
        "SER"
    );
    assert_eq!(
        resources(&b, "ServiceRequest")[0]["status"],
        "unknown",
        "no ORC: the order's status is not known"
    );
    assert_eq!(resources(&b, "Patient")[0]["gender"], "male");

    let b: Value = serde_json::from_slice(&render_bundle("oru-r01-microbiology.hl7")).unwrap();
    let micro = result(&b, "MICRO");
    assert_eq!(
        micro["valueString"],
        "White cells  >100 x10*6/L\nRed cells  10-100 x10*6/L\nEpithelial cells  Few"
    );
    let organism = result(&b, "ORG");
    assert_eq!(
        organism["valueCodeableConcept"]["coding"][0],
        serde_json::json!({"system": "http://snomed.info/sct", "code": "112283007", "display": "Escherichia coli"})
    );
    assert_eq!(result(&b, "CFU")["valueString"], ">10^5 cfu/mL");
    assert_eq!(
        result(&b, "AMOX")["interpretation"][0]["coding"][0]["code"],
        "R"
    );
    assert_eq!(
        result(&b, "COMMENT")["valueString"],
        "Significant bacteriuria with pyuria.\nSuggest treat with nitrofurantoin if clinically indicated."
    );
    assert_eq!(
        resources(&b, "DiagnosticReport")[0]["category"][0]["coding"][0]["code"],
        "MB"
    );
}

#[test]
fn nothing_is_invented_for_a_sparse_result_and_a_pdf_is_the_presented_form() {
    // The US-style corpus sample: no NHS number, no practice.
    let b: Value = serde_json::from_slice(&render_bundle("oru-r01-python-hl7-sample.hl7")).unwrap();
    let patient = resources(&b, "Patient")[0];
    assert!(patient["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i.get("system").is_none()));
    assert!(patient.get("birthDate").is_none(), "196203520 is no date");
    assert!(patient.get("generalPractitioner").is_none());
    let glucose = result(&b, "1554-5");
    assert_eq!(glucose["code"]["coding"][0].get("system"), None);
    assert_eq!(
        glucose["referenceRange"][0],
        serde_json::json!({"text": "70_105"})
    );

    let b: Value = serde_json::from_slice(&render_bundle("oru-r01-uk-pdf.hl7")).unwrap();
    let report = resources(&b, "DiagnosticReport")[0];
    assert_eq!(report["presentedForm"][0]["contentType"], "application/pdf");
    let pdf = report["presentedForm"][0]["data"].as_str().unwrap();
    assert!(pdf.starts_with("JVBER"), "the PDF, base64");
}

#[test]
fn the_pathology_validator_refuses_what_r4_does_not_allow() {
    let good = String::from_utf8(render_bundle("oru-r01-fbc.hl7")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // A time without its offset is no R4 dateTime.
        good.replacen("T09:00:00+00:00", "T09:00:00", 1),
        // A value that is not a decimal.
        good.replacen("\"value\":118", "\"value\":\"118 g\"", 1),
        // A reference to nothing in the bundle.
        good.replacen("\"reference\":\"urn:uuid:", "\"reference\":\"urn:uuid:0", 1),
        // An element R4 does not have.
        good.replacen(
            "\"status\":\"final\"",
            "\"status\":\"final\",\"colour\":\"red\"",
            1,
        ),
    ];
    let files: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, text)| {
            assert_ne!(text, &good, "case {i} changed nothing");
            let p = dir.path().join(format!("bad{i}.json"));
            std::fs::write(&p, text).unwrap();
            p
        })
        .collect();
    let verdicts = crate::formats::validate("fhir-pathology", &files);
    for v in verdicts {
        assert_eq!(v["ok"], false, "accepted: {v}");
    }
}
