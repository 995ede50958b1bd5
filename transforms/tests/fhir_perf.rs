//! Throughput of the FHIR parsers and writers on the 63 KB GP Connect message.
//! Run with `cargo test --release -p edt-transforms --test fhir_perf -- --ignored --nocapture`.

use std::time::Instant;

use edt_transforms::fhir::{parse_json, parse_xml, to_json, to_xml};

fn mb_per_s(bytes: usize, iterations: usize, f: impl Fn()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    (bytes * iterations) as f64 / start.elapsed().as_secs_f64() / 1e6
}

#[test]
#[ignore = "throughput measurement; run in release"]
fn throughput() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fhir/gpconnect-senddocument-consultation-report.xml"
    );
    let xml = std::fs::read(path).unwrap();
    let tree = parse_xml(&xml).unwrap();
    let json = to_json(&tree);
    let n = 2000;
    let parse_x = mb_per_s(xml.len(), n, || {
        std::hint::black_box(parse_xml(std::hint::black_box(&xml)).unwrap());
    });
    let parse_j = mb_per_s(json.len(), n, || {
        std::hint::black_box(parse_json(std::hint::black_box(json.as_bytes())).unwrap());
    });
    let write_x = mb_per_s(xml.len(), n, || {
        std::hint::black_box(to_xml(std::hint::black_box(&tree)));
    });
    let write_j = mb_per_s(json.len(), n, || {
        std::hint::black_box(to_json(std::hint::black_box(&tree)));
    });
    println!(
        "{} byte message: parse XML {parse_x:.0} MB/s, parse JSON {parse_j:.0} MB/s, \
         write XML {write_x:.0} MB/s, write JSON {write_j:.0} MB/s",
        xml.len()
    );
    assert!(parse_x >= 100.0, "XML parsing at {parse_x:.0} MB/s");
}
