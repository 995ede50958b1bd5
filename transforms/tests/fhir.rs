//! FHIR XML/JSON conversion: corpus round trips, golden JSON, navigation, errors and limits.

use std::time::{Duration, Instant};

use edt_transforms::fhir::{
    self, parse_json, parse_json_with, parse_xml, parse_xml_with, systems, to_json, to_json_pretty,
    to_xml, to_xml_pretty, Element, ErrorKind, Kind, Limits,
};

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/fhir/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn consultation_report() -> Element {
    parse_xml(&data("gpconnect-senddocument-consultation-report.xml")).expect("corpus parses")
}

fn ack_template() -> String {
    String::from_utf8(data("itk3-response-ack-template.xml")).unwrap()
}

/// The ITK3 ack template with its placeholder block (text inside an element) removed.
fn ack() -> Element {
    let xml = ack_template().replace("__PRIORITY_BLOCK__", "");
    parse_xml(xml.as_bytes()).expect("ack parses")
}

const NS: &str = r#"xmlns="http://hl7.org/fhir""#;

fn xml_err(xml: &str) -> fhir::Error {
    parse_xml(xml.as_bytes()).expect_err("should be rejected")
}

fn json_err(json: &str) -> fhir::Error {
    parse_json(json.as_bytes()).expect_err("should be rejected")
}

fn json_of(xml: &str) -> String {
    to_json(&parse_xml(xml.as_bytes()).expect("parses"))
}

/// Asserts that a tree survives every writer and both parsers unchanged.
fn assert_round_trips(tree: &Element) {
    let json = to_json(tree);
    assert_eq!(&parse_json(json.as_bytes()).unwrap(), tree, "compact JSON");
    let json_pretty = to_json_pretty(tree);
    assert_eq!(
        &parse_json(json_pretty.as_bytes()).unwrap(),
        tree,
        "pretty JSON"
    );
    let xml = to_xml(tree);
    assert_eq!(&parse_xml(xml.as_bytes()).unwrap(), tree, "compact XML");
    let xml_pretty = to_xml_pretty(tree);
    assert_eq!(
        &parse_xml(xml_pretty.as_bytes()).unwrap(),
        tree,
        "pretty XML"
    );
    // JSON -> XML -> JSON is stable text.
    let again =
        to_json(&parse_xml(to_xml(&parse_json(json.as_bytes()).unwrap()).as_bytes()).unwrap());
    assert_eq!(again, json);
}

// --- Corpus -------------------------------------------------------------------------------

#[test]
fn corpus_message_round_trips() {
    let tree = consultation_report();
    assert_round_trips(&tree);
    // XML -> JSON -> XML gives the same XML text as XML -> XML.
    let direct = to_xml(&tree);
    let via_json = to_xml(&parse_json(to_json(&tree).as_bytes()).unwrap());
    assert_eq!(direct, via_json);
}

#[test]
fn ack_template_round_trips() {
    assert_round_trips(&ack());
}

#[test]
fn ack_template_placeholder_text_is_rejected_with_its_path() {
    let err = parse_xml(ack_template().as_bytes()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Text);
    assert_eq!(
        err.path,
        "Bundle.entry[0].resource.MessageHeader.extension[0]"
    );
}

#[test]
fn corpus_tree_shape() {
    let tree = consultation_report();
    assert_eq!(tree.kind, Kind::Resource);
    assert_eq!(tree.name, "Bundle");
    assert_eq!(
        tree.resource_id(),
        Some("d12dc439-ca5c-4177-bb70-4fece88edab0")
    );
    let slot = tree.get("Bundle.entry[2].resource").unwrap();
    assert_eq!(slot.kind, Kind::Element);
    let doc = slot.as_slot().unwrap();
    assert_eq!(doc.name, "Bundle");
    assert_eq!(doc.kind, Kind::Resource);
    let div = doc
        .get("Bundle.entry[0].resource.Composition.text.div")
        .unwrap();
    assert_eq!(div.kind, Kind::Xhtml);
    let raw = div.value().unwrap();
    assert!(
        raw.starts_with(r#"<div xmlns="http://www.w3.org/1999/xhtml">"#),
        "{raw}"
    );
    assert!(raw.ends_with("</div>"));
    assert!(raw.contains("<p>Consultation report for {Patient Name}"));
    // Comments are gone: no element has a comment name and the first child is the id.
    assert_eq!(tree.children[0].name, "id");
}

#[test]
fn corpus_navigation() {
    let msg = consultation_report();
    let header = msg.first_resource("MessageHeader").unwrap();
    let event = header.child("event").unwrap().as_coding();
    assert_eq!(event.system, Some(systems::ITK_MESSAGE_EVENT));
    assert_eq!(event.code, Some("ITK007C"));
    assert_eq!(
        header.get_value("MessageHeader.event.code"),
        Some("ITK007C")
    );

    let handling = header
        .find_extension(systems::ITK_MESSAGE_HANDLING)
        .unwrap();
    let flag = |key: &str| {
        handling
            .find_extension(key)
            .and_then(Element::extension_value)
            .and_then(Element::as_bool)
    };
    assert_eq!(flag("BusAckRequested"), Some(true));
    assert_eq!(flag("InfAckRequested"), Some(true));
    let recipient = handling
        .find_extension("RecipientType")
        .and_then(Element::extension_value)
        .unwrap();
    assert_eq!(recipient.name, "valueCoding");
    assert_eq!(recipient.code_in(systems::ITK_RECIPIENT_TYPE), Some("FA"));
    let local = handling
        .find_extension("LocalExtension")
        .and_then(Element::extension_value)
        .and_then(Element::value);
    assert_eq!(local, Some("SendDocument-ConsultationSummary"));

    // The focus points at the document Bundle by fullUrl.
    let focus = header.child("focus").and_then(Element::reference).unwrap();
    let doc = msg.resolve_reference(focus).unwrap();
    assert_eq!(doc.name, "Bundle");
    assert_eq!(doc.child_value("type"), Some("document"));

    // The sender resolves to the header Organization with its ODS code.
    let sender = header.child("sender").and_then(Element::reference).unwrap();
    let org = msg.resolve_reference(sender).unwrap();
    assert_eq!(
        org.identifier_value(systems::ODS_ORGANIZATION_CODE),
        Some("GP0001")
    );

    let composition = doc.first_resource("Composition").unwrap();
    assert_eq!(
        composition
            .child("type")
            .unwrap()
            .code_in(systems::SNOMED_CT),
        Some("371531000")
    );
    let patient = doc.first_resource("Patient").unwrap();
    assert_eq!(
        patient.identifier_value(systems::NHS_NUMBER),
        Some("9989453456")
    );
    let status = patient
        .child("identifier")
        .unwrap()
        .find_extension(systems::NHS_NUMBER_VERIFICATION_STATUS)
        .and_then(Element::extension_value)
        .unwrap();
    assert_eq!(status.codings().next().unwrap().code, Some("01"));

    // The first section's first entry is the PDF Binary.
    let attachment_ref = composition
        .get_value("Composition.section[0].entry.reference")
        .unwrap();
    let binary = doc.resolve_reference(attachment_ref).unwrap();
    assert_eq!(binary.name, "Binary");
    assert_eq!(binary.child_value("contentType"), Some("application/pdf"));
    assert!(binary
        .child_value("content")
        .unwrap()
        .starts_with("JVBERi0"));

    // select fans out; descendant_resources walks nested Bundles.
    assert_eq!(msg.select("Bundle.entry.resource").len(), 3);
    assert_eq!(
        doc.select("Bundle.entry.resource.Composition.section.title")
            .len(),
        2
    );
    let names: Vec<&str> = msg
        .descendant_resources()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "MessageHeader",
            "Organization",
            "Bundle",
            "Composition",
            "Binary",
            "Observation",
            "Practitioner",
            "Organization",
            "Patient"
        ]
    );
    assert_eq!(doc.resources_of_type("Organization").count(), 1);
}

#[test]
fn ack_navigation() {
    let ack = ack();
    let header = ack.first_resource("MessageHeader").unwrap();
    assert_eq!(
        header.get_value("MessageHeader.event.code"),
        Some("ITK008M")
    );
    let details = header
        .get("MessageHeader.response.details")
        .and_then(Element::reference)
        .unwrap();
    let outcome = ack.resolve_reference(details).unwrap();
    assert_eq!(outcome.name, "OperationOutcome");
    let issue = outcome.child("issue").unwrap();
    assert_eq!(
        issue
            .child("details")
            .unwrap()
            .code_in(systems::ITK_RESPONSE_CODES),
        Some("30001")
    );
}

// --- Golden JSON ---------------------------------------------------------------------------

#[test]
fn golden_single_entry_is_an_array() {
    let xml = format!(
        r#"<Bundle {NS}><type value="collection"/><entry><fullUrl value="urn:uuid:1"/><resource><Patient><id value="p1"/></Patient></resource></entry></Bundle>"#
    );
    assert_eq!(
        json_of(&xml),
        r#"{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","id":"p1"}}]}"#
    );
}

#[test]
fn golden_primitive_companions() {
    let xml = format!(
        r#"<Patient {NS}><birthDate id="b1" value="1957-01-09"><extension url="http://example.org/x"><valueString value="y"/></extension></birthDate></Patient>"#
    );
    assert_eq!(
        json_of(&xml),
        r#"{"resourceType":"Patient","birthDate":"1957-01-09","_birthDate":{"id":"b1","extension":[{"url":"http://example.org/x","valueString":"y"}]}}"#
    );
}

#[test]
fn golden_companion_arrays_line_up_with_null() {
    let xml = format!(
        r#"<Patient {NS}><name><given value="Ann"/><given id="g2" value="Bo"/><given><extension url="u"><valueCode value="masked"/></extension></given></name></Patient>"#
    );
    assert_eq!(
        json_of(&xml),
        r#"{"resourceType":"Patient","name":[{"given":["Ann","Bo",null],"_given":[null,{"id":"g2"},{"extension":[{"url":"u","valueCode":"masked"}]}]}]}"#
    );
}

#[test]
fn golden_primitive_without_value_is_only_a_companion() {
    let xml = format!(
        r#"<Patient {NS}><gender><extension url="u"><valueBoolean value="false"/></extension></gender></Patient>"#
    );
    assert_eq!(
        json_of(&xml),
        r#"{"resourceType":"Patient","_gender":{"extension":[{"url":"u","valueBoolean":false}]}}"#
    );
}

#[test]
fn golden_booleans_numbers_and_decimal_precision() {
    let xml = format!(
        r#"<Observation {NS}><status value="final"/><valueQuantity><value value="1.50"/><unit value="mmol/L"/></valueQuantity><referenceRange><low><value value="-0.0e+2"/></low></referenceRange></Observation>"#
    );
    assert_eq!(
        json_of(&xml),
        r#"{"resourceType":"Observation","status":"final","valueQuantity":{"value":1.50,"unit":"mmol/L"},"referenceRange":[{"low":{"value":-0.0e+2}}]}"#
    );
    let xml = format!(
        r#"<Patient {NS}><active value="true"/><multipleBirthInteger value="2"/><telecom><rank value="1"/></telecom></Patient>"#
    );
    assert_eq!(
        json_of(&xml),
        r#"{"resourceType":"Patient","active":true,"multipleBirthInteger":2,"telecom":[{"rank":1}]}"#
    );
    // The one-call conversions agree with parse + write.
    let json = fhir::xml_to_json(xml.as_bytes()).unwrap();
    assert_eq!(json, json_of(&xml));
    assert_eq!(
        fhir::json_to_xml(json.as_bytes()).unwrap(),
        to_xml(&parse_xml(xml.as_bytes()).unwrap())
    );
    // The decimal text survives JSON -> tree -> XML.
    let tree = parse_json(
        br#"{"resourceType":"Location","position":{"longitude":-1.50,"latitude":53.8000}}"#,
    )
    .unwrap();
    let xml = to_xml(&tree);
    assert!(xml.contains(r#"<longitude value="-1.50"/>"#), "{xml}");
    assert!(xml.contains(r#"<latitude value="53.8000"/>"#), "{xml}");
}

#[test]
fn golden_div_is_a_string() {
    let xml = format!(
        r#"<Composition {NS}><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p class="x">A &amp; B &lt; C &#8364;</p></div></text></Composition>"#
    );
    assert_eq!(
        json_of(&xml),
        r#"{"resourceType":"Composition","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p class=\"x\">A &amp; B &lt; C &#8364;</p></div>"}}"#
    );
}

#[test]
fn golden_extension_url_and_element_id() {
    let xml = format!(
        r#"<MessageHeader {NS}><extension url="https://e/x"><extension url="BusAckRequested"><valueBoolean value="true"/></extension></extension><event id="ev"><code value="ITK007C"/></event><focus><reference value="urn:uuid:f"/></focus></MessageHeader>"#
    );
    assert_eq!(
        json_of(&xml),
        r#"{"resourceType":"MessageHeader","extension":[{"url":"https://e/x","extension":[{"url":"BusAckRequested","valueBoolean":true}]}],"event":{"id":"ev","code":"ITK007C"},"focus":[{"reference":"urn:uuid:f"}]}"#
    );
}

#[test]
fn golden_contained_and_resource_id_companion() {
    let json = r##"{"resourceType":"Patient","id":"p","_id":{"extension":[{"url":"u","valueString":"v"}]},"contained":[{"resourceType":"Organization","id":"o"}],"managingOrganization":{"reference":"#o"}}"##;
    let tree = parse_json(json.as_bytes()).unwrap();
    assert_eq!(to_json(&tree), json);
    let xml = to_xml(&tree);
    assert_eq!(
        xml,
        r##"<Patient xmlns="http://hl7.org/fhir"><id value="p"><extension url="u"><valueString value="v"/></extension></id><contained><Organization><id value="o"/></Organization></contained><managingOrganization><reference value="#o"/></managingOrganization></Patient>"##
    );
    assert_round_trips(&tree);
}

#[test]
fn json_pretty_output_is_indented_and_equivalent() {
    let tree = parse_json(br#"{"resourceType":"Patient","name":[{"given":["A"]}],"active":false}"#)
        .unwrap();
    assert_eq!(
        to_json_pretty(&tree),
        "{\n  \"resourceType\": \"Patient\",\n  \"name\": [\n    {\n      \"given\": [\n        \"A\"\n      ]\n    }\n  ],\n  \"active\": false\n}\n"
    );
}

// --- Unknown content -------------------------------------------------------------------------

#[test]
fn unknown_elements_single_value_once_array_when_repeated() {
    let xml = format!(
        r#"<Patient {NS}><zzOnce value="1"/><zzTwice value="a"/><zzTwice value="b"/><zzComplex><zzInner value="x"/></zzComplex></Patient>"#
    );
    let json = json_of(&xml);
    assert_eq!(
        json,
        r#"{"resourceType":"Patient","zzOnce":"1","zzTwice":["a","b"],"zzComplex":{"zzInner":"x"}}"#
    );
    let tree = parse_xml(xml.as_bytes()).unwrap();
    assert_round_trips(&tree);
}

#[test]
fn unknown_json_values_normalise_to_strings_and_single_values() {
    let tree = parse_json(
        br#"{"resourceType":"Patient","zzNum":1.50,"zzBool":true,"zzList":[{"a":"b"}]}"#,
    )
    .unwrap();
    assert_eq!(tree.child_value("zzNum"), Some("1.50"));
    assert_eq!(tree.child_value("zzBool"), Some("true"));
    let once = to_json(&tree);
    assert_eq!(
        once,
        r#"{"resourceType":"Patient","zzNum":"1.50","zzBool":"true","zzList":{"a":"b"}}"#
    );
    // After one pass the JSON is a fixed point.
    let twice =
        to_json(&parse_xml(to_xml(&parse_json(once.as_bytes()).unwrap()).as_bytes()).unwrap());
    assert_eq!(twice, once);
}

#[test]
fn unknown_resource_types_and_unknown_slots_round_trip() {
    let json = r#"{"resourceType":"Basic","id":"b","code":{"text":"t"},"zzHolder":{"resourceType":"Patient","active":true},"contained":[{"resourceType":"ZzThing","zzField":"v"}]}"#;
    let tree = parse_json(json.as_bytes()).unwrap();
    assert_eq!(to_json(&tree), json);
    let holder = tree.child("zzHolder").unwrap();
    assert_eq!(holder.as_slot().unwrap().name, "Patient");
    assert_round_trips(&tree);
}

#[test]
fn known_single_element_repeated_is_kept_as_an_array() {
    let xml = format!(r#"<Patient {NS}><gender value="male"/><gender value="female"/></Patient>"#);
    let json = json_of(&xml);
    assert_eq!(
        json,
        r#"{"resourceType":"Patient","gender":["male","female"]}"#
    );
    assert_round_trips(&parse_xml(xml.as_bytes()).unwrap());
}

#[test]
fn parameters_round_trip() {
    let json = r#"{"resourceType":"Parameters","parameter":[{"name":"a","valueInteger":5},{"name":"b","resource":{"resourceType":"Patient","id":"x"}},{"name":"c","part":[{"name":"d","valueBoolean":false}]}]}"#;
    let tree = parse_json(json.as_bytes()).unwrap();
    assert_eq!(to_json(&tree), json);
    assert_round_trips(&tree);
}

#[test]
fn awkward_characters_round_trip() {
    let value = "a&b<c>d\"e'f\ng\th\r i ]]> € 😀 \\ /";
    let tree = Element::resource("Patient")
        .with(Element::new("name").with(Element::primitive("family", value)));
    assert_round_trips(&tree);
    let xml = to_xml(&tree);
    assert!(
        xml.contains("&#10;") && xml.contains("&#9;") && xml.contains("&#13;"),
        "{xml}"
    );
}

#[test]
fn non_adjacent_repeats_are_gathered_in_json() {
    let xml = format!(
        r#"<Patient {NS}><identifier><value value="1"/></identifier><active value="true"/><identifier><value value="2"/></identifier></Patient>"#
    );
    let json = json_of(&xml);
    assert_eq!(
        json,
        r#"{"resourceType":"Patient","identifier":[{"value":"1"},{"value":"2"}],"active":true}"#
    );
}

// --- XML input variants ------------------------------------------------------------------------

#[test]
fn xml_declaration_bom_prefix_and_xsi_are_accepted() {
    let xml = "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c --><f:Patient xmlns:f=\"http://hl7.org/fhir\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"http://hl7.org/fhir fhir-all.xsd\"><f:active value=\"true\"/><?pi x?></f:Patient>\n<!-- end -->";
    let tree = parse_xml(xml.as_bytes()).unwrap();
    assert_eq!(tree.name, "Patient");
    assert_eq!(tree.child_value("active"), Some("true"));
}

#[test]
fn xml_rejects_other_encodings_and_non_utf8() {
    let err = xml_err(&format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1"?><Patient {NS}/>"#
    ));
    assert_eq!(err.kind, ErrorKind::Encoding("ISO-8859-1".into()));
    let mut bytes = format!(r#"<Patient {NS}><gender value=""#).into_bytes();
    bytes.extend_from_slice(b"\xff\"/></Patient>");
    assert_eq!(parse_xml(&bytes).unwrap_err().kind, ErrorKind::NotUtf8);
}

// --- Errors with paths ---------------------------------------------------------------------------

fn nested_bundle_xml(bad_code: &str) -> String {
    format!(
        r#"<Bundle {NS}><type value="document"/>
<entry><resource><Patient/></resource></entry>
<entry><resource><Practitioner/></resource></entry>
<entry><resource><Composition><status value="final"/>
  <section><title value="one"/></section>
  <section><title value="two"/>{bad_code}</section>
</Composition></resource></entry></Bundle>"#
    )
}

#[test]
fn xml_error_carries_the_fhir_path() {
    let err = xml_err(&nested_bundle_xml(r#"<code value="oops"/>"#));
    assert_eq!(err.kind, ErrorKind::Attribute("value".into()));
    assert_eq!(
        err.path,
        "Bundle.entry[2].resource.Composition.section[1].code"
    );
    let text = err.to_string();
    assert!(
        text.contains("`Bundle.entry[2].resource.Composition.section[1].code`"),
        "{text}"
    );

    let err = xml_err(&nested_bundle_xml(
        r#"<code><coding><userSelected value="yes"/></coding></code>"#,
    ));
    assert_eq!(
        err.kind,
        ErrorKind::InvalidValue {
            ty: "boolean",
            value: "yes".into()
        }
    );
    assert_eq!(
        err.path,
        "Bundle.entry[2].resource.Composition.section[1].code.coding[0].userSelected"
    );
}

#[test]
fn json_error_carries_the_fhir_path() {
    let json = r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"}},{"resource":{"resourceType":"Practitioner"}},{"resource":{"resourceType":"Composition","section":[{"title":"one"},{"title":"two","code":"oops"}]}}]}"#;
    let err = json_err(json);
    assert_eq!(
        err.kind,
        ErrorKind::JsonType {
            expected: "a JSON object",
            found: "string"
        }
    );
    assert_eq!(
        err.path,
        "Bundle.entry[2].resource.Composition.section[1].code"
    );
}

#[test]
fn xml_structural_errors() {
    let cases: Vec<(String, ErrorKind, &str)> = vec![
        (
            r#"<Patient xmlns="http://example.org"/>"#.into(),
            ErrorKind::Namespace {
                name: "Patient".into(),
                namespace: "http://example.org".into(),
                expected: "http://hl7.org/fhir",
            },
            "",
        ),
        (
            "<Patient/>".into(),
            ErrorKind::Namespace {
                name: "Patient".into(),
                namespace: "(none)".into(),
                expected: "http://hl7.org/fhir",
            },
            "",
        ),
        (
            format!(r#"<name {NS}/>"#),
            ErrorKind::Unexpected {
                expected: "a resource as the root element",
                found: "name".into(),
            },
            "",
        ),
        (
            format!(r#"<Patient {NS}><gender value="x" foo="y"/></Patient>"#),
            ErrorKind::Attribute("foo".into()),
            "Patient.gender",
        ),
        (
            format!(r#"<Patient {NS} id="x"/>"#),
            ErrorKind::Attribute("id".into()),
            "Patient",
        ),
        (
            format!(r#"<Patient {NS}><active value="true">yes</active></Patient>"#),
            ErrorKind::Text,
            "Patient.active",
        ),
        (
            format!(r#"<Patient {NS}><name><![CDATA[x]]></name></Patient>"#),
            ErrorKind::Text,
            "Patient.name[0]",
        ),
        (
            format!(r#"<Bundle {NS}><entry><resource><id value="x"/></resource></entry></Bundle>"#),
            ErrorKind::Unexpected {
                expected: "a resource",
                found: "id".into(),
            },
            "Bundle.entry[0].resource",
        ),
        (
            format!(r#"<Bundle {NS}><entry><resource/></entry></Bundle>"#),
            ErrorKind::Slot("resource".into()),
            "Bundle.entry[0].resource",
        ),
        (
            format!(
                r#"<Bundle {NS}><entry><resource><Patient/><Patient/></resource></entry></Bundle>"#
            ),
            ErrorKind::Slot("resource".into()),
            "Bundle.entry[0].resource",
        ),
        (
            format!(r#"<Patient {NS}><name><Patient/></name></Patient>"#),
            ErrorKind::Unexpected {
                expected: "an element (resources only go in resource slots)",
                found: "Patient".into(),
            },
            "Patient.name[0]",
        ),
        (
            format!(r#"<Patient {NS}><name><id value="x"/></name></Patient>"#),
            ErrorKind::Unexpected {
                expected: "`id` as an attribute of its parent",
                found: "an `id` element".into(),
            },
            "Patient.name[0].id",
        ),
        (
            format!(r#"<Patient {NS}><text><div/></text></Patient>"#),
            ErrorKind::Namespace {
                name: "div".into(),
                namespace: "http://hl7.org/fhir".into(),
                expected: "http://www.w3.org/1999/xhtml",
            },
            "Patient.text.div",
        ),
        (
            format!(r#"<Patient {NS}><gender url="u" value="male"/></Patient>"#),
            ErrorKind::Attribute("url".into()),
            "Patient.gender",
        ),
        (
            format!(r#"<Patient {NS}><multipleBirthInteger value="1.5"/></Patient>"#),
            ErrorKind::InvalidValue {
                ty: "integer",
                value: "1.5".into(),
            },
            "Patient.multipleBirthInteger",
        ),
        (
            format!(r#"<Binary {NS}><content value="not base64!"/></Binary>"#),
            ErrorKind::InvalidValue {
                ty: "base64Binary",
                value: "not base64!".into(),
            },
            "Binary.content",
        ),
        (
            format!(r#"<Patient {NS}><gender value="a&#1;b"/></Patient>"#),
            ErrorKind::ForbiddenChar(1),
            "Patient.gender",
        ),
        (
            format!(r#"<Patient {NS}/><Patient {NS}/>"#),
            ErrorKind::Document("content after the root element"),
            "",
        ),
        ("".into(), ErrorKind::Document("no root element"), ""),
    ];
    for (xml, kind, path) in cases {
        let err = xml_err(&xml);
        assert_eq!(err.kind, kind, "{xml}");
        assert_eq!(err.path, path, "{xml}");
    }
    // Malformed XML is reported, not panicked on.
    for bad in [
        format!(r#"<Patient {NS}><name></Patient>"#),
        format!(r#"<Patient {NS}><gender value="x"/>"#),
        format!(r#"<Patient {NS}><gender value="a & b"/></Patient>"#),
    ] {
        assert!(matches!(xml_err(&bad).kind, ErrorKind::Xml(_)), "{bad}");
    }
}

#[test]
fn json_structural_errors() {
    let cases: Vec<(&str, ErrorKind, &str)> = vec![
        (
            "[]",
            ErrorKind::JsonType {
                expected: "a resource object",
                found: "array",
            },
            "",
        ),
        (r#"{"id":"x"}"#, ErrorKind::MissingResourceType, ""),
        (
            r#"{"resourceType":"patient"}"#,
            ErrorKind::InvalidName("patient".into()),
            "",
        ),
        (
            r#"{"resourceType":"Patient","active":"true"}"#,
            ErrorKind::JsonType {
                expected: "a JSON boolean",
                found: "string",
            },
            "Patient.active",
        ),
        (
            r#"{"resourceType":"Patient","birthDate":19570109}"#,
            ErrorKind::JsonType {
                expected: "a JSON string",
                found: "number",
            },
            "Patient.birthDate",
        ),
        (
            r#"{"resourceType":"Patient","multipleBirthInteger":2.0}"#,
            ErrorKind::InvalidValue {
                ty: "integer",
                value: "2.0".into(),
            },
            "Patient.multipleBirthInteger",
        ),
        (
            r#"{"resourceType":"Patient","active":true,"active":false}"#,
            ErrorKind::DuplicateKey("active".into()),
            "Patient",
        ),
        (
            r#"{"resourceType":"Patient","name":[{"given":["a","b"],"_given":[null]}]}"#,
            ErrorKind::CompanionLength {
                name: "given".into(),
                values: 2,
                companions: 1,
            },
            "Patient.name[0]",
        ),
        (
            r#"{"resourceType":"Patient","name":[{"given":["a",null],"_given":[{"id":"x"},null]}]}"#,
            ErrorKind::NullItem("given".into()),
            "Patient.name[0]",
        ),
        (
            r#"{"resourceType":"Patient","name":[{"given":[null]}]}"#,
            ErrorKind::NullItem("given".into()),
            "Patient.name[0]",
        ),
        (
            r#"{"resourceType":"Patient","_name":[{"id":"x"}]}"#,
            ErrorKind::Companion("name".into()),
            "Patient",
        ),
        (
            r#"{"resourceType":"Bundle","entry":[{"resource":{"id":"x"}}]}"#,
            ErrorKind::MissingResourceType,
            "Bundle.entry[0].resource",
        ),
        (
            r#"{"resourceType":"Patient","name":{"resourceType":"Patient"}}"#,
            ErrorKind::Unexpected {
                expected: "element content (a resource is not allowed here)",
                found: "resourceType".into(),
            },
            "Patient.name",
        ),
        (
            r#"{"resourceType":"Patient","name":[{"id":"a","_id":{"extension":[]}}]}"#,
            ErrorKind::Unexpected {
                expected: "a member that is not an attribute companion",
                found: "_id".into(),
            },
            "Patient.name[0]",
        ),
        (
            r#"{"resourceType":"Patient","extension":[{"url":"u","_url":{}}]}"#,
            ErrorKind::Unexpected {
                expected: "a member that is not an attribute companion",
                found: "_url".into(),
            },
            "Patient.extension[0]",
        ),
        (
            r#"{"resourceType":"Patient","_resourceType":{}}"#,
            ErrorKind::Unexpected {
                expected: "a member that is not an attribute companion",
                found: "_resourceType".into(),
            },
            "Patient",
        ),
        (
            r#"{"resourceType":"Patient","bad-name":1}"#,
            ErrorKind::InvalidName("bad-name".into()),
            "Patient",
        ),
        (
            r#"{"resourceType":"Patient","gender":"a\u0001"}"#,
            ErrorKind::ForbiddenChar(1),
            "Patient.gender",
        ),
        (
            r#"{"resourceType":"Patient","gender":"\ud800"}"#,
            ErrorKind::ForbiddenChar(0xD800),
            "Patient.gender",
        ),
        (
            r#"{"resourceType":"Patient","zz":[[1]]}"#,
            ErrorKind::JsonType {
                expected: "a JSON value",
                found: "array",
            },
            "Patient.zz[0]",
        ),
        (
            r#"{"resourceType":"Patient","text":{"div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"></div><evil/>"}}"#,
            ErrorKind::Xhtml("content after the closing </div>".into()),
            "Patient.text.div",
        ),
        (
            r#"{"resourceType":"Patient","text":{"div":"<div>no namespace</div>"}}"#,
            ErrorKind::Xhtml("the div must declare xmlns=\"http://www.w3.org/1999/xhtml\"".into()),
            "Patient.text.div",
        ),
        (
            r#"{"resourceType":"Patient","text":{"div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">&nbsp;</div>"}}"#,
            ErrorKind::Entity("nbsp".into()),
            "Patient.text.div",
        ),
    ];
    for (json, kind, path) in cases {
        let err = json_err(json);
        assert_eq!(err.kind, kind, "{json}");
        assert_eq!(err.path, path, "{json}");
    }
    for bad in [
        r#"{"resourceType":"Patient""#,
        r#"{"resourceType":"Patient",}"#,
        r#"{"resourceType":"Patient"} x"#,
        r#"{"resourceType":"Patient","active":tru}"#,
        r#"{"resourceType":"Patient","gender":"unterminated}"#,
    ] {
        assert!(matches!(json_err(bad).kind, ErrorKind::Json(_)), "{bad}");
    }
}

#[test]
fn narrative_entities_are_checked() {
    let err = xml_err(&format!(
        r#"<Patient {NS}><text><div xmlns="http://www.w3.org/1999/xhtml">&nbsp;</div></text></Patient>"#
    ));
    assert_eq!(err.kind, ErrorKind::Entity("nbsp".into()));
    assert_eq!(err.path, "Patient.text.div");
    let err = xml_err(&format!(
        r#"<Patient {NS}><text><div xmlns="http://www.w3.org/1999/xhtml">&#0;</div></text></Patient>"#
    ));
    assert!(
        matches!(err.kind, ErrorKind::ForbiddenChar(0) | ErrorKind::Entity(_)),
        "{err}"
    );
    let err = xml_err(&format!(
        r#"<Patient {NS}><text><h:div xmlns:h="http://www.w3.org/1999/xhtml"/></text></Patient>"#
    ));
    assert!(matches!(err.kind, ErrorKind::Xhtml(_)), "{err}");
}

// --- Hostile input --------------------------------------------------------------------------------

#[test]
fn doctype_and_entity_bombs_are_rejected_fast() {
    let mut bomb =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        bomb.push_str(&format!(
            " <!ENTITY lol{i} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
    }
    bomb.push_str(
        "]>\n<Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"&lol9;\"/></Patient>",
    );
    let start = Instant::now();
    let err = xml_err(&bomb);
    assert_eq!(err.kind, ErrorKind::Doctype);
    assert!(start.elapsed() < Duration::from_secs(1));

    let xxe = format!(r#"<!DOCTYPE Patient SYSTEM "file:///etc/passwd"><Patient {NS}/>"#);
    assert_eq!(xml_err(&xxe).kind, ErrorKind::Doctype);

    // Undeclared entities are refused in attributes and text.
    let err = xml_err(&format!(
        r#"<Patient {NS}><gender value="&lol9;"/></Patient>"#
    ));
    assert_eq!(err.kind, ErrorKind::Entity("lol9".into()));
    assert_eq!(err.path, "Patient.gender");
}

#[test]
fn ten_thousand_deep_nesting_is_rejected_fast() {
    let depth = 10_000;
    let mut xml = format!("<Patient {NS}>");
    xml.push_str(&"<zz>".repeat(depth));
    xml.push_str(&"</zz>".repeat(depth));
    xml.push_str("</Patient>");
    let start = Instant::now();
    let err = xml_err(&xml);
    assert_eq!(err.kind, ErrorKind::TooDeep { limit: 64 });
    assert!(start.elapsed() < Duration::from_millis(500));

    let mut json = String::from(r#"{"resourceType":"Patient","zz":"#);
    json.push_str(&r#"{"zz":"#.repeat(depth));
    json.push('1');
    json.push_str(&"}".repeat(depth + 1));
    let start = Instant::now();
    let err = json_err(&json);
    assert_eq!(err.kind, ErrorKind::TooDeep { limit: 64 });
    assert!(start.elapsed() < Duration::from_millis(500));

    // Deep nesting hidden before resourceType is caught by the look-ahead too.
    let mut json = String::from(r#"{"zz":"#);
    json.push_str(&"[".repeat(depth));
    json.push_str(&"]".repeat(depth));
    json.push_str(r#","resourceType":"Patient"}"#);
    assert_eq!(json_err(&json).kind, ErrorKind::TooDeep { limit: 64 });

    // Deep XHTML inside a narrative counts too.
    let mut xml = format!(r#"<Patient {NS}><text><div xmlns="http://www.w3.org/1999/xhtml">"#);
    xml.push_str(&"<b>".repeat(depth));
    xml.push_str(&"</b>".repeat(depth));
    xml.push_str("</div></text></Patient>");
    assert_eq!(xml_err(&xml).kind, ErrorKind::TooDeep { limit: 64 });
}

#[test]
fn limits_are_enforced() {
    let tight = Limits {
        max_input_bytes: 10_000,
        max_depth: 8,
        max_elements: 20,
        max_attributes: 3,
        max_value_len: 50,
        max_base64_len: 100,
        max_xhtml_len: 120,
    };
    let big = format!("<Patient {NS}>{}</Patient>", " ".repeat(10_000));
    assert_eq!(
        parse_xml_with(big.as_bytes(), &tight).unwrap_err().kind,
        ErrorKind::InputTooLarge {
            size: big.len(),
            limit: 10_000
        }
    );
    assert_eq!(
        parse_json_with(big.as_bytes(), &tight).unwrap_err().kind,
        ErrorKind::InputTooLarge {
            size: big.len(),
            limit: 10_000
        }
    );

    let many = format!(
        "<Patient {NS}>{}</Patient>",
        r#"<zz value="1"/>"#.repeat(25)
    );
    assert_eq!(
        parse_xml_with(many.as_bytes(), &tight).unwrap_err().kind,
        ErrorKind::TooManyElements { limit: 20 }
    );
    let many_json = format!(
        r#"{{"resourceType":"Patient","zz":[{}]}}"#,
        vec!["1"; 25].join(",")
    );
    assert_eq!(
        parse_json_with(many_json.as_bytes(), &tight)
            .unwrap_err()
            .kind,
        ErrorKind::TooManyElements { limit: 20 }
    );

    let attrs =
        format!(r#"<Patient {NS}><zz id="a" value="b" xmlns:a="x" xmlns:b="y"/></Patient>"#);
    assert_eq!(
        parse_xml_with(attrs.as_bytes(), &tight).unwrap_err().kind,
        ErrorKind::TooManyAttributes { limit: 3 }
    );

    let long = "x".repeat(51);
    let err = parse_xml_with(
        format!(r#"<Patient {NS}><gender value="{long}"/></Patient>"#).as_bytes(),
        &tight,
    )
    .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::TooLong {
            what: "value",
            len: 51,
            limit: 50
        }
    );
    assert_eq!(err.path, "Patient.gender");
    let err = parse_json_with(
        format!(r#"{{"resourceType":"Patient","gender":"{long}"}}"#).as_bytes(),
        &tight,
    )
    .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::TooLong {
            what: "value",
            len: 51,
            limit: 50
        }
    );

    // base64 has its own, larger limit.
    let b64_ok = "QUJD".repeat(25);
    let b64_big = "QUJD".repeat(26);
    assert!(parse_xml_with(
        format!(r#"<Binary {NS}><content value="{b64_ok}"/></Binary>"#).as_bytes(),
        &tight
    )
    .is_ok());
    let err = parse_xml_with(
        format!(r#"<Binary {NS}><content value="{b64_big}"/></Binary>"#).as_bytes(),
        &tight,
    )
    .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::TooLong {
            what: "base64 value",
            len: 104,
            limit: 100
        }
    );
    assert_eq!(err.path, "Binary.content");
    let err = parse_json_with(
        format!(r#"{{"resourceType":"DocumentReference","content":[{{"attachment":{{"data":"{b64_big}"}}}}]}}"#).as_bytes(),
        &tight,
    )
    .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::TooLong {
            what: "base64 value",
            len: 104,
            limit: 100
        }
    );
    assert_eq!(err.path, "DocumentReference.content[0].attachment.data");

    let div = format!(
        r#"<div xmlns="http://www.w3.org/1999/xhtml">{}</div>"#,
        "y".repeat(100)
    );
    let err = parse_xml_with(
        format!(r#"<Patient {NS}><text>{div}</text></Patient>"#).as_bytes(),
        &tight,
    )
    .unwrap_err();
    assert!(
        matches!(
            err.kind,
            ErrorKind::TooLong {
                what: "narrative div",
                ..
            }
        ),
        "{err}"
    );

    let deep = format!(
        "<Patient {NS}>{}{}</Patient>",
        "<zz>".repeat(8),
        "</zz>".repeat(8)
    );
    assert_eq!(
        parse_xml_with(deep.as_bytes(), &tight).unwrap_err().kind,
        ErrorKind::TooDeep { limit: 8 }
    );
}

#[test]
fn huge_flat_unknown_objects_stay_linear() {
    // Many distinct unknown members: grouping must not be quadratic.
    let n = 50_000;
    let mut json = String::from(r#"{"resourceType":"Patient""#);
    for i in 0..n {
        json.push_str(&format!(r#","zz{i}":"v""#));
    }
    json.push('}');
    let start = Instant::now();
    let tree = parse_json(json.as_bytes()).unwrap();
    assert_eq!(tree.children.len(), n);
    let out = to_json(&tree);
    assert_eq!(out, json);
    let xml = to_xml(&tree);
    assert_eq!(parse_xml(xml.as_bytes()).unwrap(), tree);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn resource_type_look_ahead_stays_linear() {
    // Sixty nested objects, each naming no resource type until after a large payload: each
    // level needs the look-ahead, which must not rescan the payload sixty times.
    let levels = 60;
    let payload = format!("[{}]", vec!["\"0123456789abcdef\""; 60_000].join(","));
    let mut json = String::from(r#"{"resourceType":"Patient","zz":"#);
    for _ in 0..levels {
        json.push_str(r#"{"zz":"#);
    }
    json.push_str(&payload);
    json.push_str(&"}".repeat(levels + 1));
    let start = Instant::now();
    let tree = parse_json(json.as_bytes()).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(to_json(&tree), json);
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // Resources found during a look-ahead are still recognised further down.
    let json = r#"{"resourceType":"Patient","zz":{"zz":{"a":"b","zz":{"x":"y","resourceType":"Organization","name":"o"}},"resourceType":"Basic"}}"#;
    let tree = parse_json(json.as_bytes()).unwrap();
    let basic = tree.child("zz").unwrap().as_slot().unwrap();
    assert_eq!(basic.name, "Basic");
    let org = basic.get("Basic.zz.zz.Organization").unwrap();
    assert_eq!(org.child_value("name"), Some("o"));
}

#[test]
fn builders_make_writable_trees() {
    let tree = Element::resource("Bundle")
        .with(Element::primitive("type", "message"))
        .with(
            Element::new("entry").with(Element::slot(
                "resource",
                Element::resource("OperationOutcome").with(
                    Element::new("issue")
                        .with(Element::primitive("severity", "information"))
                        .with(Element::primitive("code", "informational")),
                ),
            )),
        )
        .with(
            Element::new("signature")
                .with(Element::extension("u").with(Element::primitive("valueInteger", "3"))),
        );
    assert_eq!(
        to_json(&tree),
        r#"{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}}],"signature":{"extension":[{"url":"u","valueInteger":3}]}}"#
    );
    assert_round_trips(&tree);
    let narrative = Element::resource("Composition").with(Element::new("text").with(
        Element::xhtml(r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>hi</p></div>"#),
    ));
    assert_round_trips(&narrative);
}

#[test]
fn errors_display_path_and_offset() {
    let err = xml_err(&format!(
        r#"<Patient {NS}><active value="maybe"/></Patient>"#
    ));
    let text = err.to_string();
    assert!(
        text.starts_with("invalid boolean value \"maybe\" at `Patient.active` (byte"),
        "{text}"
    );
    let err = json_err("{");
    assert!(err.to_string().contains("document level"), "{err}");
}
