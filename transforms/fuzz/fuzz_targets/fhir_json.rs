//! Parses arbitrary bytes as FHIR JSON; whatever parses must re-parse from its own JSON and
//! from its XML unchanged.
#![no_main]

use edt_transforms::fhir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = fhir::parse_json(data) else {
        return;
    };
    let json = fhir::to_json(&tree);
    let again = fhir::parse_json(json.as_bytes()).expect("written JSON parses");
    assert_eq!(again, tree);

    let xml = fhir::to_xml(&tree);
    let from_xml = fhir::parse_xml(xml.as_bytes()).expect("written XML parses");
    assert_eq!(from_xml, tree);
    assert_eq!(fhir::to_json(&from_xml), json);
});
