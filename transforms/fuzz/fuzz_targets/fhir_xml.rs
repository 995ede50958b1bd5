//! Parses arbitrary bytes as FHIR XML; whatever parses must convert to JSON and back, and
//! re-parse from its own XML unchanged.
#![no_main]

use edt_transforms::fhir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = fhir::parse_xml(data) else {
        return;
    };
    let xml = fhir::to_xml(&tree);
    let again = fhir::parse_xml(xml.as_bytes()).expect("written XML parses");
    assert_eq!(again, tree);

    let json = fhir::to_json(&tree);
    let from_json = fhir::parse_json(json.as_bytes()).expect("written JSON parses");
    assert_eq!(fhir::to_json(&from_json), json);
    let back = fhir::parse_xml(fhir::to_xml(&from_json).as_bytes()).expect("XML from JSON parses");
    assert_eq!(back, from_json);
});
