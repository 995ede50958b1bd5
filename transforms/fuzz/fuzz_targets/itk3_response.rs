//! Feeds arbitrary bytes (XML or JSON, sniffed) to the ITK3 response reader, the path every
//! acknowledgement from a GP system takes.
//!
//! Run with `cargo fuzz run itk3_response` from `transforms/` (nightly toolchain); the seed
//! corpus is in `corpus/itk3_response/`.
#![no_main]

use edt_transforms::fhir::{to_json, to_xml};
use edt_transforms::itk3::{read_response, render_response, Format, ResponseParams, ResponseTo};
use edt_transforms::ods::OdsCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let format = Format::sniff(data);
    let Ok(response) = read_response(data, format) else {
        return;
    };
    // Whatever was read can be answered again in the same terms, and reads back the same.
    let to = ResponseTo {
        message_id: Some(response.original_message_id.clone()),
        sender_reference: response.sender_reference.clone(),
    };
    let params = ResponseParams {
        bundle_id: "b".to_string(),
        bundle_identifier: "bi".to_string(),
        message_id: response.message_id.clone(),
        timestamp: "2026-01-01T00:00:00+00:00".to_string(),
        sender_ods: OdsCode::parse("A81001").expect("valid"),
        source_endpoint: None,
        diagnostics: response.diagnostics.clone(),
    };
    let tree = render_response(&to, response.code, &params);
    for (bytes, format) in [
        (to_xml(&tree).into_bytes(), Format::Xml),
        (to_json(&tree).into_bytes(), Format::Json),
    ] {
        let again = read_response(&bytes, format).expect("a rendered response reads back");
        assert_eq!(again.code, response.code);
        assert_eq!(again.original_message_id, response.original_message_id);
        assert_eq!(again.positive, response.positive);
        assert_eq!(again.kind, response.kind);
    }
});
