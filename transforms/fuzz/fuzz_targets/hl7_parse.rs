//! Feeds arbitrary bytes to the HL7 v2 parser and everything built on it.
//!
//! Run with `cargo fuzz run hl7_parse` from `transforms/` (nightly toolchain); the seed corpus
//! is in `corpus/hl7_parse/`.
#![no_main]

use edt_transforms::hl7::{build_ack, parse_ack, AckRequest, Limits, Message, OruSummary};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_segments: 1_000,
        max_fields: 200,
    };
    let Ok(message) = Message::parse_bytes_with_limits(data, &limits) else {
        return;
    };

    // Rendering is lossless.
    let rendered = message.render();
    let again = Message::parse(&rendered).expect("a rendered message parses");
    assert_eq!(again, message);
    assert_eq!(again.render(), rendered);

    // Every accessor copes with whatever was parsed.
    for segment in message.iter() {
        for n in 0..=segment.field_count() + 1 {
            if let Some(field) = segment.field(n) {
                let value = field.to_value();
                let _ = segment.component(n, 1, 1);
                let _ = segment.subcomponent(n, 2, 2, 2);
                let _ = value.encode(message.encoding());
            }
        }
    }

    // Escaping round trips through this message's delimiters.
    let encoding = message.encoding();
    let text = String::from_utf8_lossy(data);
    assert_eq!(encoding.unescape(&encoding.escape(&text)), text);

    let summary = OruSummary::from_message(&message);
    if let Err(error) = &summary {
        let _ = (error.ack_code(), error.itk_code(), error.location());
        let request = AckRequest::for_error(error, "FUZZ", "20240101");
        let ack = build_ack(&message, &request).expect("an ACK can always be built");
        let rendered = ack.render();
        let parsed = Message::parse(&rendered).expect("an ACK parses");
        let summary = parse_ack(&parsed).expect("an ACK reads back");
        assert_eq!(summary.code, request.code);
        assert_eq!(summary.errors, request.errors);
    }
    let _ = parse_ack(&message);
});
