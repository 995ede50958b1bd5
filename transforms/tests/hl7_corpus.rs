//! HL7 v2 against the sample messages: parsing, ORU^R01 understanding, validation errors and
//! acknowledgements.

use edt_transforms::hl7::*;
use edt_transforms::DocumentType;

const INRSTAR: &str = include_str!("data/hl7v2/hl7v2-oru-r01-uk-inrstar-testscript.hl7");
const PYHL7: &str = include_str!("data/hl7v2/hl7v2-oru-r01-python-hl7-sample.hl7");

fn oru(text: &str) -> Result<OruSummary, OruError> {
    parse_oru(text.as_bytes())
}

#[test]
fn samples_round_trip_byte_for_byte() {
    for sample in [INRSTAR, PYHL7] {
        let m = Message::parse(sample).unwrap();
        assert_eq!(m.render(), sample);
        let framed = m.render_mllp();
        assert_eq!(Message::parse_bytes(&framed).unwrap(), m);
        let crlf = sample.replace('\r', "\r\n");
        assert_eq!(Message::parse(&crlf).unwrap(), m);
        let lf = sample.replace('\r', "\n");
        assert_eq!(Message::parse(&lf).unwrap(), m);
    }
}

#[test]
fn inrstar_summary() {
    let s = oru(INRSTAR).unwrap();
    assert_eq!(s.document_type(), DocumentType::OrderResult);
    assert_eq!(s.control_id, "32081737");
    assert_eq!(s.message_datetime, "202401151030");
    assert_eq!(s.sending_application, "iLABTP");
    assert_eq!(s.sending_facility, "");
    assert_eq!(s.processing_id, "T");
    assert_eq!(s.version, "2.4");

    let p = &s.patient;
    assert_eq!(p.nhs_number.as_ref().unwrap().as_str(), "9999999999");
    assert_eq!(
        p.identifiers,
        vec![
            PatientIdentifier {
                id: "100321".into(),
                assigning_authority: "HISID".into(),
                identifier_type: "CPD".into(),
            },
            PatientIdentifier {
                id: "9999999999".into(),
                assigning_authority: "NHS".into(),
                identifier_type: "NH".into(),
            },
        ]
    );
    assert_eq!(p.name.family, "SMITH");
    assert_eq!(p.name.given, "JOHN");
    assert_eq!(p.name.to_string(), "JOHN SMITH");
    assert_eq!(p.date_of_birth, "19700101");
    assert_eq!(p.sex, "M");

    let r = s.recipient.as_ref().unwrap();
    assert_eq!(r.ods_code.as_str(), "ZZZZ4");
    assert_eq!(r.source, RecipientSource::Pv1AssignedLocation);
    assert_eq!(r.source.path(), "PV1-3.1");
    assert_eq!(r.name, "Virtual GP Practice");

    assert_eq!(s.results.len(), 1);
    let obr = &s.results[0];
    assert_eq!(obr.segment_index, 4);
    assert_eq!(obr.filler_order_number, "P,15.0023433.D");
    assert_eq!(
        obr.service,
        CodedValue {
            code: "PT".into(),
            text: "Prothrombin Time INR".into(),
            coding_system: "HAE".into(),
        }
    );
    assert_eq!(obr.observation_datetime, "202401151030");
    // The sample puts its status in OBR-16, not OBR-25.
    assert_eq!(obr.result_status, "");
    assert!(obr.notes.is_empty());
    let values: Vec<_> = obr
        .observations
        .iter()
        .map(|o| {
            (
                o.segment_index,
                o.identifier.code.as_str(),
                o.value.as_str(),
                o.units.as_str(),
                o.status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        values,
        [(5, "PT", "10.0 ", "s", "F"), (7, "INR", "2.5 ", "", "F")]
    );
    // The NTEs in the sample are empty.
    assert!(obr.observations.iter().all(|o| o.notes.is_empty()));
}

#[test]
fn python_hl7_summary() {
    let s = oru(PYHL7).unwrap();
    assert_eq!(s.control_id, "CNTRL-3456");
    assert_eq!(
        (
            s.sending_application.as_str(),
            s.sending_facility.as_str(),
            s.receiving_application.as_str(),
            s.receiving_facility.as_str(),
        ),
        ("GHH LAB", "ELAB-3", "GHH OE", "BLDG4")
    );
    assert_eq!(s.patient.nhs_number, None);
    assert_eq!(s.patient.identifiers.len(), 1);
    assert_eq!(s.patient.name.to_string(), "EVE E EVERYWOMAN");
    assert_eq!(s.recipient, None);
    let obr = &s.results[0];
    assert_eq!(obr.placer_order_number, "845439");
    assert_eq!(obr.filler_order_number, "1045813");
    let glucose = &obr.observations[0];
    assert_eq!(glucose.value_type, "SN");
    assert_eq!(glucose.value, "182");
    assert_eq!(glucose.units, "mg/dl");
    assert_eq!(glucose.reference_range, "70_105");
    assert_eq!(glucose.abnormal_flags, ["H"]);
    assert_eq!(obr.observations[1].value, "^182");
}

#[test]
fn invalid_nhs_number_names_the_repetition() {
    let text = INRSTAR.replace("9999999999^^^NHS^NH", "1234567890^^^NHS^NH");
    let err = oru(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "PID-3[3]: NHS number 1234567890 fails the Modulus 11 check (no valid check digit exists for these nine digits)"
    );
    assert_eq!(err.ack_code(), AckCode::ApplicationError);
    assert_eq!(err.itk_code(), 20009);
    assert_eq!(err.hl7_error_code(), 102);
    assert_eq!(err.location().unwrap().to_string(), "PID[1]-3[3].1");

    let text = INRSTAR.replace("9999999999^^^NHS^NH", "9434765918^^^NHS^NH");
    assert_eq!(
        oru(&text).unwrap_err().to_string(),
        "PID-3[3]: NHS number 9434765918 fails the Modulus 11 check (check digit 8, expected 9)"
    );
}

#[test]
fn conflicting_nhs_numbers() {
    let text = INRSTAR.replace(
        "9999999999^^^NHS^NH",
        "9999999999^^^NHS^NH~9434765919^^^NHS^NH",
    );
    assert_eq!(
        oru(&text).unwrap_err().to_string(),
        "PID-3[4]: NHS number 9434765919 conflicts with 9999999999 in an earlier repetition"
    );
    let same = INRSTAR.replace(
        "9999999999^^^NHS^NH",
        "9999999999^^^NHS^NH~999 999 9999^^^^NH",
    );
    assert!(oru(&same).is_ok());
}

#[test]
fn header_errors_are_rejects() {
    let err = oru(&INRSTAR.replace("ORU^R01", "ADT^A01")).unwrap_err();
    assert_eq!(err.to_string(), "MSH-9: expected ORU^R01, found ADT^A01");
    assert_eq!(err.ack_code(), AckCode::ApplicationReject);
    assert_eq!(err.itk_code(), 10004);
    assert_eq!(err.hl7_error_code(), 200);
    assert_eq!(
        oru(&INRSTAR.replace("ORU^R01", "ORU^R30"))
            .unwrap_err()
            .hl7_error_code(),
        201
    );

    let err = oru(&INRSTAR.replace("|32081737|", "||")).unwrap_err();
    assert_eq!(err, OruError::MissingControlId);
    assert_eq!(err.itk_code(), 10007);

    let err = oru(&INRSTAR.replace("|202401151030||ORU", "|15/01/2024||ORU")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "MSH-7: message date/time \"15/01/2024\" is not an HL7 timestamp (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])"
    );
    assert_eq!(err.ack_code(), AckCode::ApplicationReject);

    let err = oru(&INRSTAR.replace("|T|2.4", "|T|3.0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "MSH-12: unsupported HL7 version \"3.0\" (expected 2.x)"
    );
    assert_eq!(err.itk_code(), 10005);

    let err = parse_oru(b"garbage").unwrap_err();
    assert!(matches!(
        err,
        OruError::Unreadable(Hl7Error::MissingMsh { .. })
    ));
    assert_eq!(err.ack_code(), AckCode::ApplicationReject);
    assert_eq!(err.itk_code(), 10009);
    let limits = Limits {
        max_bytes: 100,
        ..Limits::DEFAULT
    };
    let err = parse_oru_with_limits(INRSTAR.as_bytes(), &limits).unwrap_err();
    assert_eq!(err.itk_code(), 20015);
}

#[test]
fn structure_errors() {
    let without_pid: String = INRSTAR
        .split_inclusive('\r')
        .filter(|s| !s.starts_with("PID"))
        .collect();
    let err = oru(&without_pid).unwrap_err();
    assert_eq!(err, OruError::MissingPatient);
    assert_eq!(err.ack_code(), AckCode::ApplicationError);

    let two_pids = INRSTAR.replace("PV1|", "PID|1\rPV1|");
    assert_eq!(
        oru(&two_pids).unwrap_err(),
        OruError::MultiplePatients { count: 2 }
    );

    let without_obr: String = INRSTAR
        .split_inclusive('\r')
        .filter(|s| !s.starts_with("OBR"))
        .collect();
    let err = oru(&without_obr).unwrap_err();
    assert_eq!(
        err.to_string(),
        "OBX (segment 5, OBX number 1): observation before any OBR"
    );
    assert_eq!(err.location().unwrap().to_string(), "OBX[1]");

    let no_results: String = INRSTAR
        .split_inclusive('\r')
        .filter(|s| !s.starts_with("OB") && !s.starts_with("NTE"))
        .collect();
    assert_eq!(oru(&no_results).unwrap_err(), OruError::NoResults);
}

#[test]
fn recipient_precedence() {
    // PD1-3.3 beats PV1-3.
    let with_pd1 = INRSTAR.replace(
        "PV1|",
        "PD1|||SAUGHALL PRACTICE^^N81123|G9991234^GP^ANN\rPV1|",
    );
    let s = oru(&with_pd1).unwrap();
    let r = s.recipient.unwrap();
    assert_eq!(
        (r.ods_code.as_str(), r.source, r.name.as_str()),
        ("N81123", RecipientSource::Pd1IdNumber, "SAUGHALL PRACTICE")
    );
    assert_eq!(s.gp, "G9991234");

    // PD1-3.10 beats PD1-3.3.
    let v25 = INRSTAR.replace("PV1|", "PD1|||SAUGHALL PRACTICE^^N81123^^^^^^^A81001\rPV1|");
    let r = oru(&v25).unwrap().recipient.unwrap();
    assert_eq!(
        (r.ods_code.as_str(), r.source),
        ("A81001", RecipientSource::Pd1OrganizationIdentifier)
    );

    // A code as the name, when nothing else is given.
    let by_name = INRSTAR.replace("PV1|", "PD1|||b82001\rPV1|");
    let r = oru(&by_name).unwrap().recipient.unwrap();
    assert_eq!(
        (r.ods_code.as_str(), r.source),
        ("B82001", RecipientSource::Pd1Name)
    );

    // A name that is not a code falls through to PV1-3.
    let named = INRSTAR.replace("PV1|", "PD1|||SAUGHALL PRACTICE\rPV1|");
    let r = oru(&named).unwrap().recipient.unwrap();
    assert_eq!(r.source, RecipientSource::Pv1AssignedLocation);

    // The HL7 explicit null counts as absent.
    let null = INRSTAR.replace("PV1|", "PD1|||\"\"^^\"\"\rPV1|");
    let r = oru(&null).unwrap().recipient.unwrap();
    assert_eq!(r.source, RecipientSource::Pv1AssignedLocation);

    // A malformed identifier is an error, not a fall-through.
    let bad = INRSTAR.replace("PV1|", "PD1|||SAUGHALL^^N81 123\rPV1|");
    let err = oru(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "PD1-3.3: recipient practice \"N81 123\" is not an ODS code: it may contain only letters and digits; found ' '"
    );
    assert_eq!(err.itk_code(), 20010);
    assert_eq!(err.ack_code(), AckCode::ApplicationError);
    assert_eq!(err.location().unwrap().to_string(), "PD1[1]-3[1].3");
}

#[test]
fn notes_attach_to_their_parent() {
    let text = "MSH|^~\\&|LAB|RBS|||20240115||ORU^R01|M1|P|2.4\r\
                PID|||9434765919^^^NHS^NH\r\
                NTE|1||patient note, ignored\r\
                OBR|1||F1|FBC^Full blood count\r\
                NTE|1||order note\r\
                OBX|1|NM|HB^Haemoglobin||135|g/L|130-170|N|||F\r\
                NTE|1||first line~second \\T\\ line\r\
                NTE|2||\r\
                OBX|2|ST|COM^Comment||see \\E\\ note||||||F\r\
                ZXX|1\r\
                NTE|1||after a Z-segment, ignored\r\
                OBR|2||F2|ED^Report\r\
                OBX|1|ED|PDF^Report||^AP^PDF^Base64^JVBERi0xLjQK||||||F\r\
                OBX|2|CE|ORG^Organism||123^E. coli^SCT~456^^SCT||||||F\r";
    let s = oru(text).unwrap();
    assert_eq!(s.results.len(), 2);
    let fbc = &s.results[0];
    assert_eq!(fbc.notes, ["order note"]);
    assert_eq!(fbc.observations[0].notes, ["first line\nsecond & line"]);
    assert_eq!(fbc.observations[0].abnormal_flags, ["N"]);
    assert_eq!(fbc.observations[0].reference_range, "130-170");
    assert_eq!(fbc.observations[1].value, "see \\ note");
    assert!(fbc.observations[1].notes.is_empty());
    let report = &s.results[1];
    assert_eq!(report.service.text, "Report");
    let pdf = report.observations[0].encapsulated.as_ref().unwrap();
    assert_eq!(
        (
            pdf.type_of_data.as_str(),
            pdf.data_subtype.as_str(),
            pdf.encoding.as_str(),
            pdf.data.as_str()
        ),
        ("AP", "PDF", "Base64", "JVBERi0xLjQK")
    );
    assert_eq!(report.observations[0].value, "");
    assert_eq!(report.observations[1].value, "E. coli\n456");
}

#[test]
fn acks_for_the_samples() {
    let original = Message::parse(INRSTAR).unwrap();
    let ack = build_ack(&original, &AckRequest::accept("HUB-1", "20240115103005")).unwrap();
    assert_eq!(
        ack.render(),
        "MSH|^~\\&|||iLABTP||20240115103005||ACK^R01^ACK|HUB-1|T|2.4\rMSA|AA|32081737\r"
    );

    let bad = INRSTAR.replace("9999999999^^^NHS^NH", "1234567890^^^NHS^NH");
    let original = Message::parse(&bad).unwrap();
    let err = OruSummary::from_message(&original).unwrap_err();
    let request = AckRequest::for_error(&err, "HUB-2", "20240115103006");
    let rendered = build_ack(&original, &request).unwrap().render_mllp();
    let ack = Message::parse_bytes(&rendered).unwrap();
    let summary = parse_ack(&ack).unwrap();
    assert_eq!(summary.code, AckCode::ApplicationError);
    assert_eq!(summary.acknowledged_control_id, "32081737");
    assert_eq!(summary.control_id, "HUB-2");
    assert_eq!(summary.text, err.to_string());
    assert_eq!(summary.errors, vec![err.error_detail()]);
    assert_eq!(ack.segment("ERR").unwrap().raw(2), Some("PID^1^3^3^1"));

    let python = Message::parse(PYHL7).unwrap();
    let ack = build_ack(&python, &AckRequest::accept("X", "2024")).unwrap();
    let msh = ack.msh();
    assert_eq!(
        (msh.text(3), msh.text(4), msh.text(5), msh.text(6)),
        (
            "GHH OE".into(),
            "BLDG4".into(),
            "GHH LAB".into(),
            "ELAB-3".into()
        )
    );
}

#[test]
fn limits_apply_to_the_samples() {
    let limits = Limits {
        max_segments: 3,
        ..Limits::DEFAULT
    };
    assert_eq!(
        Message::parse_with_limits(INRSTAR, &limits),
        Err(Hl7Error::TooManySegments { limit: 3 })
    );
    let limits = Limits {
        max_fields: 20,
        ..Limits::DEFAULT
    };
    assert_eq!(
        Message::parse_with_limits(INRSTAR, &limits)
            .unwrap_err()
            .to_string(),
        "segment 2 (PID): 23 fields, over the limit of 20"
    );
}
