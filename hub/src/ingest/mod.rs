//! Ingest: the front doors through which documents arrive. Each checks what it was given
//! field by field (a bad field is named with the rule it broke, and nothing is stored), then
//! hands a [`Submission`] to [`accept::submit`], which answers only once
//! the document is durable.

pub mod accept;
pub mod grpc;
pub mod mllp;
pub mod smtp;
pub mod tls;

pub use accept::{submit, Receipt, Submission, SubmitError};

use crate::config::Limits;
use crate::track::Channel;
use edt_proto::v1;
use edt_transforms::{NhsNumber, OdsCode};

fn invalid(field: &'static str, rule: impl Into<String>) -> SubmitError {
    SubmitError::Invalid {
        field,
        rule: rule.into(),
    }
}

fn optional(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Checks a gRPC submission against the rules and limits.
pub fn validate(
    req: v1::SubmitDocumentRequest,
    limits: &Limits,
) -> Result<Submission, SubmitError> {
    let sender = OdsCode::parse(&req.sender_ods)
        .map_err(|e| invalid("sender_ods", format!("ODS code {e}")))?;
    if req.recipient_ods.len() > limits.max_recipients {
        return Err(invalid(
            "recipient_ods",
            format!(
                "at most {} recipients per submission, got {}",
                limits.max_recipients,
                req.recipient_ods.len()
            ),
        ));
    }
    let mut recipients = Vec::with_capacity(req.recipient_ods.len());
    for (i, r) in req.recipient_ods.iter().enumerate() {
        let code = OdsCode::parse(r)
            .map_err(|e| invalid("recipient_ods", format!("entry {i} ({r:?}): ODS code {e}")))?;
        recipients.push(code.to_string());
    }
    let document_type = crate::wire::document_type(req.document_type).ok_or_else(|| {
        invalid(
            "document_type",
            "must be set to a known document type (e.g. DOCUMENT_TYPE_DISCHARGE_SUMMARY)",
        )
    })?;
    let content_type = req.content_type.trim().to_string();
    let (kind, sub) = content_type.split_once('/').unwrap_or(("", ""));
    if kind.is_empty()
        || sub.split(';').next().unwrap_or("").trim().is_empty()
        || content_type.len() > 255
        || has_control(&content_type)
        || kind.contains(' ')
    {
        return Err(invalid(
            "content_type",
            format!("must be a MIME type such as application/pdf, got {content_type:?}"),
        ));
    }
    if req.payload.is_empty() {
        return Err(invalid("payload", "must not be empty"));
    }
    if req.payload.len() > limits.max_payload_bytes {
        return Err(invalid(
            "payload",
            format!(
                "is {} bytes; the limit is {} bytes",
                req.payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let local_id = req.local_id.trim().to_string();
    if local_id.is_empty() {
        return Err(invalid(
            "local_id",
            "is required: the sender's own id for the document, used to detect resubmissions",
        ));
    }
    if local_id.len() > limits.max_local_id_len || has_control(&local_id) {
        return Err(invalid(
            "local_id",
            format!(
                "must be at most {} bytes with no control characters",
                limits.max_local_id_len
            ),
        ));
    }
    let nhs_number = match optional(req.nhs_number) {
        None => None,
        Some(n) => Some(
            NhsNumber::parse(&n)
                .map_err(|e| invalid("nhs_number", e.to_string()))?
                .to_string(),
        ),
    };
    let file_name = optional(req.file_name);
    if let Some(f) = &file_name {
        if f.len() > 255 || has_control(f) || f.contains('/') || f.contains('\\') {
            return Err(invalid(
                "file_name",
                "must be a plain file name (no folders, no control characters, at most 255 bytes)",
            ));
        }
    }
    let title = optional(req.title);
    if let Some(t) = &title {
        if t.len() > 1000 || has_control(t) {
            return Err(invalid(
                "title",
                "must be at most 1000 bytes with no control characters",
            ));
        }
    }
    let mut sub = Submission {
        sender_ods: sender.to_string(),
        recipients,
        document_type,
        content_type,
        payload: req.payload,
        local_id,
        nhs_number,
        file_name,
        title,
        channel: Channel::Grpc,
        reply_to: None,
    };
    reconcile(&mut sub)?;
    Ok(sub)
}

/// Reads what a structured document (ITK3, HL7 v2) says about itself and checks it against
/// the submission: what the submission leaves out (recipients, NHS number) is taken from the
/// document; where the two disagree, the submission is refused saying both.
fn reconcile(sub: &mut Submission) -> Result<(), SubmitError> {
    let found = edt_transforms::extract::extract(&sub.content_type, &sub.payload).map_err(|e| {
        invalid(
            "payload",
            format!("the {} document cannot be read: {e}", sub.content_type),
        )
    })?;
    let Some(doc) = found else {
        return Ok(());
    };
    let from = doc.format;
    if let Some(s) = &doc.sender_ods {
        if *s != sub.sender_ods {
            return Err(invalid(
                "sender_ods",
                format!(
                    "the submission is from {} but the {from} document names {s} as its sender",
                    sub.sender_ods
                ),
            ));
        }
    }
    if let Some(t) = doc.document_type {
        if t != sub.document_type {
            return Err(invalid(
                "document_type",
                format!(
                    "the submission says {} but the {from} document is a {t}",
                    sub.document_type
                ),
            ));
        }
    }
    match (&sub.nhs_number, &doc.nhs_number) {
        (Some(s), Some(d)) if s != d => {
            return Err(invalid(
                "nhs_number",
                format!("the submission says {s} but the {from} document says {d}"),
            ))
        }
        (None, Some(d)) => sub.nhs_number = Some(d.clone()),
        _ => {}
    }
    if sub.recipients.is_empty() {
        sub.recipients = doc.recipients;
    } else if !doc.recipients.is_empty()
        && !doc.recipients.iter().any(|r| sub.recipients.contains(r))
    {
        return Err(invalid(
            "recipient_ods",
            format!(
                "the submission is addressed to {} but the {from} document to {} ({})",
                sub.recipients.join(", "),
                doc.recipients.join(", "),
                doc.recipients_from
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn good() -> v1::SubmitDocumentRequest {
        v1::SubmitDocumentRequest {
            sender_ods: "rx1".into(),
            recipient_ods: vec!["A81001".into()],
            document_type: v1::DocumentType::DischargeSummary as i32,
            content_type: "application/pdf".into(),
            payload: b"%PDF-1.4".to_vec(),
            local_id: "EPR-1".into(),
            nhs_number: "943 476 5919".into(),
            file_name: "letter.pdf".into(),
            title: String::new(),
        }
    }

    fn field_of(r: Result<Submission, SubmitError>) -> (&'static str, String) {
        match r {
            Err(SubmitError::Invalid { field, rule }) => (field, rule),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    const ORU: &str = "MSH|^~\\&|LAB|RX1|GP|A81001|20261125093000||ORU^R01|CTRL-1|P|2.4\r\
PID|||9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r\
PD1|||GP PRACTICE^^A81001\r\
OBR|1|||PT^Prothrombin Time\r\
OBX|1|NM|INR^I.N.R.||2.5||||||F\r";

    fn result(oru: &str) -> v1::SubmitDocumentRequest {
        v1::SubmitDocumentRequest {
            recipient_ods: vec![],
            document_type: v1::DocumentType::OrderResult as i32,
            content_type: "application/hl7-v2".into(),
            payload: oru.as_bytes().to_vec(),
            nhs_number: String::new(),
            ..good()
        }
    }

    #[test]
    fn a_structured_document_fills_in_what_the_submission_leaves_out() {
        let s = validate(result(ORU), &Limits::default()).unwrap();
        assert_eq!(s.recipients, vec!["A81001".to_string()]);
        assert_eq!(s.nhs_number.as_deref(), Some("9434765919"));
    }

    #[test]
    fn where_document_and_submission_disagree_both_are_named() {
        let l = Limits::default();
        let mut r = result(ORU);
        r.nhs_number = "4010232137".into();
        let (f, rule) = field_of(validate(r, &l));
        assert_eq!(f, "nhs_number");
        assert!(
            rule.contains("4010232137") && rule.contains("9434765919"),
            "{rule}"
        );
        let mut r = result(ORU);
        r.recipient_ods = vec!["A81002".into()];
        let (f, rule) = field_of(validate(r, &l));
        assert_eq!(f, "recipient_ods");
        assert!(rule.contains("A81002") && rule.contains("A81001"), "{rule}");
        let mut r = result(ORU);
        r.document_type = v1::DocumentType::DischargeSummary as i32;
        assert_eq!(field_of(validate(r, &l)).0, "document_type");
        let (f, rule) = field_of(validate(result(&ORU.replace("ORU^R01", "ADT^A01")), &l));
        assert_eq!(f, "payload");
        assert!(rule.contains("MSH-9"), "{rule}");
    }

    #[test]
    fn a_good_request_is_normalised() {
        let s = validate(good(), &Limits::default()).unwrap();
        assert_eq!(s.sender_ods, "RX1");
        assert_eq!(s.nhs_number.as_deref(), Some("9434765919"));
        assert_eq!(s.title, None);
    }

    #[test]
    fn each_bad_field_is_named() {
        let l = Limits {
            max_payload_bytes: 10,
            ..Limits::default()
        };
        type Mutate = fn(&mut v1::SubmitDocumentRequest);
        let cases: [(Mutate, &str, &str); 10] = [
            (|r| r.sender_ods = String::new(), "sender_ods", "empty"),
            (
                |r| r.recipient_ods = vec!["A8!".into()],
                "recipient_ods",
                "entry 0",
            ),
            (|r| r.document_type = 0, "document_type", "must be set"),
            (|r| r.document_type = 99, "document_type", "must be set"),
            (|r| r.content_type = "pdf".into(), "content_type", "MIME"),
            (|r| r.payload.clear(), "payload", "empty"),
            (|r| r.payload = vec![0; 11], "payload", "limit is 10"),
            (|r| r.local_id = " ".into(), "local_id", "required"),
            (
                |r| r.nhs_number = "9434765918".into(),
                "nhs_number",
                "Modulus 11",
            ),
            (
                |r| r.file_name = "../etc/passwd".into(),
                "file_name",
                "plain file name",
            ),
        ];
        for (mutate, field, words) in cases {
            let mut r = good();
            mutate(&mut r);
            let (f, rule) = field_of(validate(r, &l));
            assert_eq!(f, field);
            assert!(
                rule.contains(words),
                "{field}: {rule:?} should mention {words:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn validation_never_panics(
            sender in "\\PC{0,12}", rcpt in proptest::collection::vec("\\PC{0,12}", 0..4),
            dt in -2i32..10, ct in "\\PC{0,40}", payload in proptest::collection::vec(any::<u8>(), 0..64),
            local in "\\PC{0,40}", nhs in "\\PC{0,14}", file in "\\PC{0,20}",
        ) {
            let req = v1::SubmitDocumentRequest {
                sender_ods: sender, recipient_ods: rcpt, document_type: dt, content_type: ct,
                payload, local_id: local, nhs_number: nhs, file_name: file, title: String::new(),
            };
            if let Ok(s) = validate(req, &Limits::default()) {
                prop_assert!(!s.payload.is_empty());
                prop_assert!(!s.local_id.is_empty());
            }
        }
    }
}
