//! Acknowledgements: MSH + MSA (+ ERR), original mode.

use super::builder::MessageBuilder;
use super::message::{FieldValue, Hl7Error, Message, SegmentRef};
use super::oru::OruError;
use std::fmt;

/// MSA-1: the acknowledgement code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// `AA`: accepted.
    ApplicationAccept,
    /// `AE`: error in the content; the sender should fix and resend.
    ApplicationError,
    /// `AR`: rejected (unreadable, wrong type or version, bad header).
    ApplicationReject,
    /// `CA`: enhanced-mode commit accept.
    CommitAccept,
    /// `CE`: enhanced-mode commit error.
    CommitError,
    /// `CR`: enhanced-mode commit reject.
    CommitReject,
}

impl AckCode {
    /// The two-letter code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApplicationAccept => "AA",
            Self::ApplicationError => "AE",
            Self::ApplicationReject => "AR",
            Self::CommitAccept => "CA",
            Self::CommitError => "CE",
            Self::CommitReject => "CR",
        }
    }

    /// Reads a two-letter code.
    pub fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "AA" => Self::ApplicationAccept,
            "AE" => Self::ApplicationError,
            "AR" => Self::ApplicationReject,
            "CA" => Self::CommitAccept,
            "CE" => Self::CommitError,
            "CR" => Self::CommitReject,
            _ => return None,
        })
    }

    /// True for `AA` and `CA`.
    pub fn is_accept(self) -> bool {
        matches!(self, Self::ApplicationAccept | Self::CommitAccept)
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ERR-4: how serious an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorSeverity {
    /// `E`.
    Error,
    /// `W`.
    Warning,
    /// `I`.
    Information,
}

impl ErrorSeverity {
    /// The one-letter code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "E",
            Self::Warning => "W",
            Self::Information => "I",
        }
    }

    fn parse(code: &str) -> Self {
        match code {
            "W" => Self::Warning,
            "I" => Self::Information,
            _ => Self::Error,
        }
    }
}

/// ERR-2 (ERL): where an error is. Numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorLocation {
    /// Segment name.
    pub segment: String,
    /// Which occurrence of the segment.
    pub sequence: usize,
    /// Field number.
    pub field: Option<usize>,
    /// Field repetition.
    pub repetition: Option<usize>,
    /// Component number.
    pub component: Option<usize>,
}

impl fmt::Display for ErrorLocation {
    /// `PID[1]-3[2].1`, omitting what is not known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.segment, self.sequence)?;
        if let Some(field) = self.field {
            write!(f, "-{field}")?;
            if let Some(r) = self.repetition {
                write!(f, "[{r}]")?;
            }
            if let Some(c) = self.component {
                write!(f, ".{c}")?;
            }
        }
        Ok(())
    }
}

/// One ERR segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorDetail {
    /// ERR-2 (and ERR-1 for v2.4 readers).
    pub location: Option<ErrorLocation>,
    /// ERR-3.1, an HL7 table 0357 code such as `102`.
    pub code: String,
    /// ERR-4.
    pub severity: ErrorSeverity,
    /// ERR-8, the text for a person.
    pub text: String,
}

/// The description of an HL7 table 0357 error code, or `""` when unknown.
pub fn hl7_error_description(code: &str) -> &'static str {
    match code {
        "0" => "Message accepted",
        "100" => "Segment sequence error",
        "101" => "Required field missing",
        "102" => "Data type error",
        "103" => "Table value not found",
        "104" => "Value too long",
        "200" => "Unsupported message type",
        "201" => "Unsupported event code",
        "202" => "Unsupported processing id",
        "203" => "Unsupported version id",
        "204" => "Unknown key identifier",
        "205" => "Duplicate key identifier",
        "206" => "Application record locked",
        "207" => "Application internal error",
        _ => "",
    }
}

/// What to say in an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRequest {
    /// MSA-1.
    pub code: AckCode,
    /// MSH-10 of the acknowledgement itself.
    pub control_id: String,
    /// MSH-7 of the acknowledgement (HL7 timestamp, e.g. `20240115103005`).
    pub timestamp: String,
    /// MSA-3; omitted when empty.
    pub text: String,
    /// One ERR segment each.
    pub errors: Vec<ErrorDetail>,
}

impl AckRequest {
    /// An `AA` with no text.
    pub fn accept(control_id: &str, timestamp: &str) -> Self {
        Self {
            code: AckCode::ApplicationAccept,
            control_id: control_id.to_string(),
            timestamp: timestamp.to_string(),
            text: String::new(),
            errors: Vec::new(),
        }
    }

    /// The `AE` or `AR` for a validation failure, with its text and one ERR segment.
    pub fn for_error(error: &OruError, control_id: &str, timestamp: &str) -> Self {
        Self {
            code: error.ack_code(),
            control_id: control_id.to_string(),
            timestamp: timestamp.to_string(),
            text: error.to_string(),
            errors: vec![error.error_detail()],
        }
    }
}

/// Builds the acknowledgement of `original`, in its delimiters.
///
/// MSH-3/4 and MSH-5/6 are the original's MSH-5/6 and MSH-3/4 (sender and receiver swapped);
/// MSH-9 is `ACK^<original trigger event>^ACK` (so `ACK^R01^ACK` for an ORU^R01, just `ACK`
/// when the original has no trigger); MSH-11 and MSH-12 echo the original (`P` and `2.4`
/// when it has none; for MSH-12, `2.5` when the original has none or one that is not 2.x). MSA-2 is the original MSH-10. Each error becomes an ERR segment
/// carrying both the v2.5 fields (ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 text)
/// and the v2.4 ERR-1.
pub fn build_ack(
    original: &Message<'_>,
    request: &AckRequest,
) -> Result<Message<'static>, Hl7Error> {
    let msh = original.msh();
    let raw = |n: usize| msh.raw(n).unwrap_or("");
    let trigger = msh.component(9, 1, 2).unwrap_or_default();
    let message_type: &[&str] = if trigger.is_empty() {
        &["ACK"]
    } else {
        &["ACK", &trigger, "ACK"]
    };
    // An answer to a message of a version this side does not speak is given in one it does.
    let version = if raw(12).starts_with("2.") {
        raw(12)
    } else {
        ""
    };
    let builder = MessageBuilder::with_encoding(*original.encoding())
        .segment("MSH")
        .raw(3, raw(5))
        .raw(4, raw(6))
        .raw(5, raw(3))
        .raw(6, raw(4))
        .text(7, &request.timestamp)
        .components(9, message_type)
        .text(10, &request.control_id)
        .raw(11, raw(11))
        .raw(12, version);
    let builder = default_text(builder, 11, raw(11), "P");
    // The ERR segments carry the v2.5 fields.
    let builder = default_text(builder, 12, version, "2.5");
    finish(builder, request, &msh.text(10))
}

/// Builds an `AR` (or whatever `request.code` says) for input that could not be parsed:
/// standard delimiters, MSH-9 `ACK`, empty MSA-2, the hub named in MSH-3/4.
pub fn build_unreadable_ack(
    request: &AckRequest,
    sending_application: &str,
    sending_facility: &str,
) -> Result<Message<'static>, Hl7Error> {
    let builder = MessageBuilder::new()
        .segment("MSH")
        .text(3, sending_application)
        .text(4, sending_facility)
        .text(7, &request.timestamp)
        .text(9, "ACK")
        .text(10, &request.control_id)
        .text(11, "P")
        .text(12, "2.4");
    finish(builder, request, "")
}

/// Sets field `n` to `default` when the original value is empty.
fn default_text(
    builder: MessageBuilder,
    n: usize,
    original: &str,
    default: &str,
) -> MessageBuilder {
    if original.is_empty() {
        builder.text(n, default)
    } else {
        builder
    }
}

fn finish(
    builder: MessageBuilder,
    request: &AckRequest,
    acknowledged: &str,
) -> Result<Message<'static>, Hl7Error> {
    let mut builder = builder
        .segment("MSA")
        .text(1, request.code.as_str())
        .text(2, acknowledged);
    if !request.text.is_empty() {
        builder = builder.text(3, &request.text);
    }
    for error in &request.errors {
        builder = error_segment(builder, error);
    }
    builder.build()
}

fn error_segment(builder: MessageBuilder, error: &ErrorDetail) -> MessageBuilder {
    let description = hl7_error_description(&error.code);
    let code = vec![
        error.code.clone(),
        description.to_string(),
        "HL70357".to_string(),
    ];
    let number = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_default();
    let (eld, erl) = match &error.location {
        Some(l) => (
            vec![
                vec![l.segment.clone()],
                vec![l.sequence.to_string()],
                vec![number(l.field)],
                code.clone(),
            ],
            Some(FieldValue(vec![vec![
                vec![l.segment.clone()],
                vec![l.sequence.to_string()],
                vec![number(l.field)],
                vec![number(l.repetition)],
                vec![number(l.component)],
            ]])),
        ),
        None => (vec![vec![], vec![], vec![], code.clone()], None),
    };
    let mut builder = builder.segment("ERR").value(1, &FieldValue(vec![eld]));
    if let Some(erl) = erl {
        builder = builder.value(2, &trim_components(erl));
    }
    builder
        .value(
            3,
            &FieldValue(vec![code.into_iter().map(|c| vec![c]).collect()]),
        )
        .text(4, error.severity.as_str())
        .text(8, &error.text)
}

/// Drops trailing empty components so `PID^1^3^^` renders as `PID^1^3`.
fn trim_components(mut value: FieldValue) -> FieldValue {
    for rep in &mut value.0 {
        while rep.len() > 1 && rep.last().is_some_and(|c| c.iter().all(String::is_empty)) {
            rep.pop();
        }
    }
    value
}

/// What an acknowledgement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckSummary {
    /// MSA-1.
    pub code: AckCode,
    /// MSH-10 of the acknowledgement.
    pub control_id: String,
    /// MSH-7 of the acknowledgement.
    pub timestamp: String,
    /// MSA-2: MSH-10 of the message acknowledged (empty for an unreadable-message reject).
    pub acknowledged_control_id: String,
    /// MSA-3.
    pub text: String,
    /// The ERR segments.
    pub errors: Vec<ErrorDetail>,
}

/// Why a message is not a usable acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No MSA segment.
    #[error("MSA: no MSA segment; not an acknowledgement")]
    MissingMsa,
    /// MSA-1 is not a known code.
    #[error("MSA-1: unknown acknowledgement code {found:?} (expected AA, AE, AR, CA, CE or CR)")]
    Code {
        /// MSA-1 as sent (at most 40 characters).
        found: String,
    },
}

/// Reads an acknowledgement. Any message with an MSA segment is accepted, whatever its MSH-9.
pub fn parse_ack(message: &Message<'_>) -> Result<AckSummary, AckError> {
    let msa = message.segment("MSA").ok_or(AckError::MissingMsa)?;
    let code_text = msa.text(1);
    let code = AckCode::parse(code_text.trim()).ok_or_else(|| AckError::Code {
        found: code_text.chars().take(40).collect(),
    })?;
    let msh = message.msh();
    Ok(AckSummary {
        code,
        control_id: msh.text(10).into_owned(),
        timestamp: msh.text(7).into_owned(),
        acknowledged_control_id: msa.text(2).into_owned(),
        text: msa.text(3).into_owned(),
        errors: message.segments("ERR").map(read_error).collect(),
    })
}

fn read_error(err: SegmentRef<'_>) -> ErrorDetail {
    let number = |n: usize, c: usize| {
        err.component(n, 1, c)
            .and_then(|t| t.trim().parse::<usize>().ok())
    };
    let location = if err.raw(2).is_some_and(|r| !r.is_empty()) {
        Some(ErrorLocation {
            segment: err.text(2).into_owned(),
            sequence: number(2, 2).unwrap_or(1),
            field: number(2, 3),
            repetition: number(2, 4),
            component: number(2, 5),
        })
    } else {
        let segment = err.text(1);
        (!segment.is_empty()).then(|| ErrorLocation {
            segment: segment.into_owned(),
            sequence: number(1, 2).unwrap_or(1),
            field: number(1, 3),
            repetition: None,
            component: None,
        })
    };
    let mut code = err.text(3).into_owned();
    let mut text = err.text(8).into_owned();
    if text.is_empty() {
        text = err.text(7).into_owned();
    }
    if code.is_empty() {
        code = err
            .subcomponent(1, 1, 4, 1)
            .unwrap_or_default()
            .into_owned();
        if text.is_empty() {
            text = err
                .subcomponent(1, 1, 4, 2)
                .unwrap_or_default()
                .into_owned();
        }
    }
    ErrorDetail {
        location,
        code,
        severity: ErrorSeverity::parse(&err.text(4)),
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &str = "MSH|^~\\&|LAB|RBS|GPSYS|A81001|202401151030||ORU^R01|MSG1|P|2.4\rPID|||9434765919^^^NHS^NH\rOBR|1\r";

    #[test]
    fn accept_ack() {
        let original = Message::parse(ORU).unwrap();
        let ack = build_ack(&original, &AckRequest::accept("ACK1", "20240115103005")).unwrap();
        assert_eq!(
            ack.render(),
            "MSH|^~\\&|GPSYS|A81001|LAB|RBS|20240115103005||ACK^R01^ACK|ACK1|P|2.4\rMSA|AA|MSG1\r"
        );
        let summary = parse_ack(&Message::parse(&ack.render()).unwrap()).unwrap();
        assert_eq!(summary.code, AckCode::ApplicationAccept);
        assert_eq!(summary.acknowledged_control_id, "MSG1");
        assert_eq!(summary.control_id, "ACK1");
        assert!(summary.errors.is_empty());
    }

    #[test]
    fn error_ack() {
        let original = Message::parse(ORU).unwrap();
        let request = AckRequest {
            code: AckCode::ApplicationError,
            control_id: "ACK2".into(),
            timestamp: "20240115103005".into(),
            text: "PID-3[1]: bad | number".into(),
            errors: vec![ErrorDetail {
                location: Some(ErrorLocation {
                    segment: "PID".into(),
                    sequence: 1,
                    field: Some(3),
                    repetition: Some(1),
                    component: Some(1),
                }),
                code: "102".into(),
                severity: ErrorSeverity::Error,
                text: "PID-3[1]: bad | number".into(),
            }],
        };
        let ack = build_ack(&original, &request).unwrap();
        let rendered = ack.render();
        assert!(rendered.contains(
            "\rERR|PID^1^3^102&Data type error&HL70357|PID^1^3^1^1|102^Data type error^HL70357|E||||PID-3[1]: bad \\F\\ number\r"
        ), "{rendered}");
        let summary = parse_ack(&Message::parse(&rendered).unwrap()).unwrap();
        assert_eq!(summary.code, AckCode::ApplicationError);
        assert_eq!(summary.text, request.text);
        assert_eq!(summary.errors, request.errors);
    }

    #[test]
    fn v24_err_is_read() {
        let m = Message::parse(
            "MSH|^~\\&|GP||LAB||2024||ACK|9|P|2.3\rMSA|AR|MSG1|bad\rERR|MSH^1^9^200&Unsupported message type&HL70357\r",
        )
        .unwrap();
        let s = parse_ack(&m).unwrap();
        assert_eq!(s.code, AckCode::ApplicationReject);
        assert_eq!(
            s.errors,
            vec![ErrorDetail {
                location: Some(ErrorLocation {
                    segment: "MSH".into(),
                    sequence: 1,
                    field: Some(9),
                    repetition: None,
                    component: None,
                }),
                code: "200".into(),
                severity: ErrorSeverity::Error,
                text: "Unsupported message type".into(),
            }]
        );
        assert_eq!(
            s.errors[0].location.as_ref().unwrap().to_string(),
            "MSH[1]-9"
        );
    }

    #[test]
    fn unreadable_and_bad_acks() {
        let ack = build_unreadable_ack(
            &AckRequest {
                code: AckCode::ApplicationReject,
                control_id: "A9".into(),
                timestamp: "20240115".into(),
                text: "unreadable".into(),
                errors: vec![],
            },
            "EDTHUB",
            "X26",
        )
        .unwrap();
        assert_eq!(
            ack.render(),
            "MSH|^~\\&|EDTHUB|X26|||20240115||ACK|A9|P|2.4\rMSA|AR||unreadable\r"
        );
        assert_eq!(
            parse_ack(&Message::parse(ORU).unwrap()),
            Err(AckError::MissingMsa)
        );
        assert_eq!(
            parse_ack(&Message::parse("MSH|^~\\&\rMSA|XX|1").unwrap())
                .unwrap_err()
                .to_string(),
            "MSA-1: unknown acknowledgement code \"XX\" (expected AA, AE, AR, CA, CE or CR)"
        );
    }

    #[test]
    fn codes() {
        for code in [
            AckCode::ApplicationAccept,
            AckCode::ApplicationError,
            AckCode::ApplicationReject,
            AckCode::CommitAccept,
            AckCode::CommitError,
            AckCode::CommitReject,
        ] {
            assert_eq!(AckCode::parse(code.as_str()), Some(code));
        }
        assert!(AckCode::CommitAccept.is_accept());
        assert!(!AckCode::ApplicationError.is_accept());
    }
}
