//! Property tests for HL7 v2: generated messages survive render and parse, escaping round
//! trips, acknowledgements round trip, and no input makes the parser panic.

use edt_transforms::hl7::*;
use proptest::prelude::*;

/// Every printable ASCII punctuation character is a candidate delimiter.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Characters that need escaping under some encoding, and line breaks.
const AWKWARD: &[char] = &[
    '|', '^', '~', '\\', '&', '#', '!', '@', '$', '%', '*', '+', '\r', '\n', '\u{b}', '\u{1c}',
    'é', '€', ' ',
];

fn encoding() -> impl Strategy<Value = Encoding> {
    let chars: Vec<char> = PUNCTUATION.chars().collect();
    prop_oneof![
        Just(Encoding::STANDARD),
        Just(Encoding::from_msh('|', "^~\\&#").unwrap()),
        prop::sample::subsequence(chars, 5..=6)
            .prop_shuffle()
            .prop_map(|c| {
                let msh2: String = c[1..].iter().collect();
                Encoding::from_msh(c[0], &msh2).unwrap()
            }),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::char::range('a', 'z'),
            3 => prop::sample::select(AWKWARD),
            1 => any::<char>(),
        ],
        0..8,
    )
    .prop_map(String::from_iter)
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop::collection::vec(
        prop::collection::vec(prop::collection::vec(text(), 1..3), 1..3),
        1..3,
    )
    .prop_map(FieldValue)
}

fn segment_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["PID", "PD1", "PV1", "ORC", "OBR", "OBX", "NTE", "ZAB"])
            .prop_map(String::from),
        "Z[A-Z0-9]{2}",
        "[A-Z][A-Z0-9]{2}".prop_filter("not a header segment", |n| {
            !matches!(n.as_str(), "MSH" | "BHS" | "FHS")
        }),
    ]
}

/// A message description: encoding, MSH fields from MSH-3, then other segments.
type Spec = (Encoding, Vec<FieldValue>, Vec<(String, Vec<FieldValue>)>);

fn spec() -> impl Strategy<Value = Spec> {
    (
        encoding(),
        prop::collection::vec(field_value(), 0..10),
        prop::collection::vec(
            (segment_name(), prop::collection::vec(field_value(), 0..6)),
            0..8,
        ),
    )
}

fn build((encoding, msh, segments): &Spec) -> Message<'static> {
    let mut b = MessageBuilder::with_encoding(*encoding).segment("MSH");
    for (i, v) in msh.iter().enumerate() {
        b = b.value(i + 3, v);
    }
    for (name, fields) in segments {
        b = b.segment(name);
        for (i, v) in fields.iter().enumerate() {
            b = b.value(i + 1, v);
        }
    }
    b.build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_render_round_trip(spec in spec()) {
        let m = build(&spec);
        let rendered = m.render();
        let parsed = Message::parse(&rendered).unwrap();
        prop_assert_eq!(&parsed, &m);
        prop_assert_eq!(parsed.render(), rendered.clone());
        prop_assert_eq!(*parsed.encoding(), spec.0);

        // Decoded values come back exactly.
        let msh = parsed.msh();
        for (i, v) in spec.1.iter().enumerate() {
            prop_assert_eq!(&msh.field(i + 3).unwrap().to_value(), v);
        }
        prop_assert_eq!(parsed.segment_count(), spec.2.len() + 1);
        for (s, (name, fields)) in spec.2.iter().enumerate() {
            let seg = parsed.get(s + 1).unwrap();
            prop_assert_eq!(seg.name(), name.as_str());
            prop_assert_eq!(seg.field_count(), fields.len());
            for (i, v) in fields.iter().enumerate() {
                let field = seg.field(i + 1).unwrap();
                prop_assert_eq!(&field.to_value(), v);
                let first = seg.component(i + 1, 1, 1);
                prop_assert_eq!(first.as_deref(), Some(v.0[0][0][0].as_str()));
            }
        }

        // Other line endings and MLLP framing parse to the same message.
        let crlf = rendered.replace('\r', "\r\n");
        prop_assert_eq!(&Message::parse(&crlf).unwrap(), &m);
        let lf = rendered.replace('\r', "\n");
        prop_assert_eq!(&Message::parse(&lf).unwrap(), &m);
        let framed = m.render_mllp();
        prop_assert_eq!(&Message::parse_bytes(&framed).unwrap(), &m);
        let (payload, used) = mllp::next_frame(&framed).unwrap();
        prop_assert_eq!(used, framed.len());
        prop_assert_eq!(payload, rendered.as_bytes());
    }

    #[test]
    fn escape_round_trip(encoding in encoding(), text in text()) {
        let escaped = encoding.escape(&text);
        for c in [encoding.field(), encoding.component(), encoding.repetition(), encoding.subcomponent(), '\r', '\n'] {
            prop_assert!(!escaped.contains(c));
        }
        let back = encoding.unescape(&escaped).into_owned();
        prop_assert_eq!(back, text);
    }

    #[test]
    fn escape_round_trip_any_string(encoding in encoding(), text in any::<String>()) {
        let escaped = encoding.escape(&text).into_owned();
        let back = encoding.unescape(&escaped).into_owned();
        prop_assert_eq!(back, text);
    }

    #[test]
    fn unescape_never_panics(encoding in encoding(), raw in "[\\\\XxFSTREP.br0-9a-fA-F]{0,24}") {
        let _ = encoding.unescape(&raw);
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_no_panic(&bytes)?;
    }

    #[test]
    fn oru_checks_are_the_same_without_reading_results(
        segments in prop::collection::vec(
            prop::sample::select(vec![
                "OBR|1|ORD-1|LAB-1|UE^Urea and electrolytes^L|||20261125080000",
                "OBX|1|NM|NA^Sodium^L||140|mmol/L|133-146||||F",
                "NTE|1||A comment",
                "NTE|1||",
                "SPM|1|S1||BLD^Blood",
                "ZXX|1|local",
            ]),
            0..8,
        ),
    ) {
        let mut text = String::from(
            "MSH|^~\\&|LAB|RX1|HUB|A81001|20261125093000||ORU^R01^ORU_R01|C1|P|2.5\r\
             PID|1||9434765919^^^NHS^NH||SAMPLE^ALEX\r",
        );
        for s in &segments {
            text.push_str(s);
            text.push('\r');
        }
        let m = Message::parse(&text).unwrap();
        let full = OruSummary::from_message(&m);
        let checked = OruSummary::without_results(&m);
        prop_assert_eq!(full.as_ref().err(), checked.as_ref().err());
        if let (Ok(f), Ok(c)) = (full, checked) {
            prop_assert!(c.results.is_empty());
            prop_assert_eq!(OruSummary { results: vec![], ..f }, c);
        }
    }

    #[test]
    fn parse_never_panics_on_near_messages(
        header in prop::sample::select(vec!["MSH|^~\\&|", "MSH|^~\\&#|", "\u{b}MSH|^~\\&", "MSH^|~\\&|", "MSH|", "MSH"]),
        body in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec!['|', '^', '~', '\\', '&', '\r', '\n', '\u{b}', '\u{1c}', 'X', 'M', 'S', 'H']),
                prop::char::range('A', 'Z'),
                any::<char>(),
            ],
            0..200,
        ),
    ) {
        let text = format!("{header}{}", String::from_iter(body));
        check_no_panic(text.as_bytes())?;
    }

    #[test]
    fn ack_round_trip(
        spec in spec(),
        original_id in text(),
        code in prop::sample::select(vec!["AA", "AE", "AR", "CA", "CE", "CR"]),
        control_id in text(),
        timestamp in text(),
        msa_text in text(),
        errors in prop::collection::vec(
            (
                prop::option::of((
                    segment_name(),
                    1usize..5,
                    prop::option::of(1usize..40),
                    prop::option::of(1usize..5),
                    prop::option::of(1usize..12),
                )),
                prop::sample::select(vec!["100", "101", "102", "200", "207", "E999"]),
                prop::sample::select(vec![ErrorSeverity::Error, ErrorSeverity::Warning, ErrorSeverity::Information]),
                text(),
            ),
            0..3,
        ),
    ) {
        let mut original = build(&spec).render();
        // Give the original a known MSH-10.
        let rebuilt = {
            let m = Message::parse(&original).unwrap();
            let mut b = MessageBuilder::with_encoding(*m.encoding()).segment("MSH");
            for n in 3..=m.msh().field_count().max(10) {
                b = if n == 10 {
                    b.text(10, &original_id)
                } else {
                    b.raw(n, m.msh().raw(n).unwrap_or(""))
                };
            }
            b.build().unwrap()
        };
        original = rebuilt.render();
        let original = Message::parse(&original).unwrap();

        let request = AckRequest {
            code: AckCode::parse(code).unwrap(),
            control_id,
            timestamp,
            text: msa_text,
            errors: errors
                .into_iter()
                .map(|(location, code, severity, text)| ErrorDetail {
                    location: location.map(|(segment, sequence, field, repetition, component)| ErrorLocation {
                        segment,
                        sequence,
                        field,
                        repetition,
                        component,
                    }),
                    code: code.to_string(),
                    severity,
                    text,
                })
                .collect(),
        };
        let ack = build_ack(&original, &request).unwrap();
        let framed = ack.render_mllp();
        let parsed = Message::parse_bytes(&framed).unwrap();
        prop_assert_eq!(&parsed, &ack);
        let summary = parse_ack(&parsed).unwrap();
        prop_assert_eq!(summary.code, request.code);
        prop_assert_eq!(&summary.control_id, &request.control_id);
        prop_assert_eq!(&summary.timestamp, &request.timestamp);
        prop_assert_eq!(&summary.acknowledged_control_id, &original_id);
        prop_assert_eq!(&summary.text, &request.text);
        prop_assert_eq!(&summary.errors, &request.errors);
        let msh = parsed.msh();
        let orig = original.msh();
        prop_assert_eq!(msh.raw(3), orig.raw(5));
        prop_assert_eq!(msh.raw(5), orig.raw(3));
    }
}

/// Parsing must not panic; when it succeeds, everything reachable must not panic either and
/// the message must survive render and parse.
fn check_no_panic(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(m) = Message::parse_bytes(bytes) else {
        let _ = parse_oru(bytes);
        return Ok(());
    };
    let rendered = m.render();
    prop_assert_eq!(&Message::parse(&rendered).unwrap(), &m);
    for seg in m.iter() {
        for n in 0..=seg.field_count() + 1 {
            if let Some(f) = seg.field(n) {
                let _ = f.to_value();
                let _ = seg.component(n, 2, 3);
            }
        }
    }
    // The checks without the results are the checks with them.
    let full = OruSummary::from_message(&m);
    let checked = OruSummary::without_results(&m);
    prop_assert_eq!(full.as_ref().err(), checked.as_ref().err());
    let _ = parse_ack(&m);
    let _ = build_ack(&m, &AckRequest::accept("1", "2024"));
    Ok(())
}
