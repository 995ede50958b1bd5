//! Understanding ORU^R01 (unsolicited observation result) messages.

use super::ack::{AckCode, ErrorDetail, ErrorLocation, ErrorSeverity};
use super::message::{Hl7Error, Limits, Message, SegmentRef};
use crate::model::DocumentType;
use crate::nhs::{NhsNumber, NhsNumberError};
use crate::ods::{OdsCode, OdsCodeError};
use std::fmt;

/// What an ORU^R01 says, in decoded, owned form. Text fields are empty when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OruSummary {
    /// MSH-10.
    pub control_id: String,
    /// MSH-7 (HL7 timestamp, as sent).
    pub message_datetime: String,
    /// MSH-3, first component.
    pub sending_application: String,
    /// MSH-4, first component.
    pub sending_facility: String,
    /// MSH-5, first component.
    pub receiving_application: String,
    /// MSH-6, first component.
    pub receiving_facility: String,
    /// MSH-11 (`P` production, `T` training, `D` debugging).
    pub processing_id: String,
    /// MSH-12, first component.
    pub version: String,
    /// From PID.
    pub patient: Patient,
    /// The practice the result is for, when the message names one (see [`RecipientSource`]).
    pub recipient: Option<Recipient>,
    /// GP code from PD1-4, first component.
    pub gp: String,
    /// Each OBR with its observations and notes, in message order.
    pub results: Vec<OrderResult>,
}

/// The patient (PID).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patient {
    /// The NHS number from PID-3, when one is tagged `NH` (identifier type) or `NHS`
    /// (assigning authority).
    pub nhs_number: Option<NhsNumber>,
    /// Every non-empty identifier in PID-3, in order (the NHS number included).
    pub identifiers: Vec<PatientIdentifier>,
    /// PID-5, first repetition.
    pub name: PersonName,
    /// PID-7, first component (HL7 date, as sent).
    pub date_of_birth: String,
    /// PID-8.
    pub sex: String,
}

/// One repetition of PID-3 (CX).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientIdentifier {
    /// CX-1.
    pub id: String,
    /// CX-4, first subcomponent (e.g. `NHS`, or a trust ODS code for a local MRN).
    pub assigning_authority: String,
    /// CX-5 (e.g. `NH`, `MR`).
    pub identifier_type: String,
}

/// A person's name (XPN).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersonName {
    /// XPN-1, first subcomponent.
    pub family: String,
    /// XPN-2.
    pub given: String,
    /// XPN-3 (second and further given names or initials).
    pub middle: String,
    /// XPN-4.
    pub suffix: String,
    /// XPN-5.
    pub prefix: String,
}

impl fmt::Display for PersonName {
    /// `prefix given middle FAMILY suffix`, skipping empty parts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            &self.prefix,
            &self.given,
            &self.middle,
            &self.family,
            &self.suffix,
        ];
        let mut first = true;
        for p in parts.into_iter().filter(|p| !p.is_empty()) {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(p)?;
            first = false;
        }
        Ok(())
    }
}

/// Where the recipient practice was found, strongest first. The first source present wins.
///
/// PD1-3 (patient primary facility, XON) is the registered practice: its identifier slots
/// (XON-10, then XON-3) must hold a well-formed ODS code when filled, or the message is
/// rejected. Its name (XON-1) and PV1-3 (assigned location, where some UK senders such as
/// INRstar put the practice) are used only when they are shaped like an ODS code; a ward code
/// can pass that test, so check codes from PV1-3 against the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientSource {
    /// PD1-3.10, organization identifier (v2.5 onwards).
    Pd1OrganizationIdentifier,
    /// PD1-3.3, ID number (v2.4 and earlier).
    Pd1IdNumber,
    /// PD1-3.1, organization name, when shaped like an ODS code.
    Pd1Name,
    /// PV1-3.1, point of care, when shaped like an ODS code.
    Pv1AssignedLocation,
}

impl RecipientSource {
    /// The HL7 path, e.g. `PD1-3.10`.
    pub fn path(self) -> &'static str {
        match self {
            Self::Pd1OrganizationIdentifier => "PD1-3.10",
            Self::Pd1IdNumber => "PD1-3.3",
            Self::Pd1Name => "PD1-3.1",
            Self::Pv1AssignedLocation => "PV1-3.1",
        }
    }

    fn location(self) -> ErrorLocation {
        let (segment, field, component) = match self {
            Self::Pd1OrganizationIdentifier => ("PD1", 3, 10),
            Self::Pd1IdNumber => ("PD1", 3, 3),
            Self::Pd1Name => ("PD1", 3, 1),
            Self::Pv1AssignedLocation => ("PV1", 3, 1),
        };
        ErrorLocation {
            segment: segment.to_string(),
            sequence: 1,
            field: Some(field),
            repetition: Some(1),
            component: Some(component),
        }
    }
}

impl fmt::Display for RecipientSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// The practice a result is addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The ODS code.
    pub ods_code: OdsCode,
    /// Where it was found.
    pub source: RecipientSource,
    /// The practice name sent with it (PD1-3.1 or PV1-3.2), when there is one.
    pub name: String,
}

/// A coded element (CE / CWE): code, text, coding system.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodedValue {
    /// Component 1.
    pub code: String,
    /// Component 2.
    pub text: String,
    /// Component 3.
    pub coding_system: String,
}

/// One OBR and the segments that belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderResult {
    /// Position of the OBR in the message (0-based; MSH is 0).
    pub segment_index: usize,
    /// OBR-1.
    pub set_id: String,
    /// OBR-2, first component.
    pub placer_order_number: String,
    /// OBR-3, first component.
    pub filler_order_number: String,
    /// OBR-4, the test or panel.
    pub service: CodedValue,
    /// OBR-7, first component.
    pub observation_datetime: String,
    /// OBR-25 (`F` final, `P` preliminary, `C` correction, …).
    pub result_status: String,
    /// NTE-3 of each non-empty NTE directly after the OBR.
    pub notes: Vec<String>,
    /// The OBX segments after the OBR, in order.
    pub observations: Vec<Observation>,
}

/// One OBX and its notes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observation {
    /// Position of the OBX in the message (0-based; MSH is 0).
    pub segment_index: usize,
    /// OBX-1.
    pub set_id: String,
    /// OBX-2 (`NM`, `ST`, `TX`, `FT`, `SN`, `CE`, `CWE`, `ED`, …).
    pub value_type: String,
    /// OBX-3, what was observed.
    pub identifier: CodedValue,
    /// OBX-4.
    pub sub_id: String,
    /// OBX-5 as readable text: `SN` components joined (`>` `10` → `>10`), coded values by
    /// their text (or code), other types as decoded text; repetitions on separate lines.
    /// Empty for `ED`, whose content is in [`Observation::encapsulated`].
    pub value: String,
    /// OBX-5 of an `ED` observation (e.g. a PDF report).
    pub encapsulated: Option<EncapsulatedData>,
    /// OBX-6, first component (or the second when the first is empty).
    pub units: String,
    /// OBX-7.
    pub reference_range: String,
    /// OBX-8, each repetition.
    pub abnormal_flags: Vec<String>,
    /// OBX-11 (`F` final, `P` preliminary, `C` correction, …).
    pub status: String,
    /// OBX-14, first component.
    pub observation_datetime: String,
    /// NTE-3 of each non-empty NTE directly after the OBX.
    pub notes: Vec<String>,
}

/// Encapsulated data (ED) from OBX-5.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncapsulatedData {
    /// ED-1, first subcomponent.
    pub source_application: String,
    /// ED-2 (e.g. `AP` application data, `TEXT`).
    pub type_of_data: String,
    /// ED-3 (e.g. `PDF`).
    pub data_subtype: String,
    /// ED-4 (`Base64`, `Hex`, `A` for none).
    pub encoding: String,
    /// ED-5, still in the ED-4 encoding.
    pub data: String,
}

/// Why a message is not an acceptable ORU^R01.
///
/// Each error names its segment/field path. [`OruError::ack_code`] gives the HL7
/// acknowledgement (`AR` for header problems, `AE` for content), [`OruError::itk_code`] the
/// nearest ITK3 response code and [`OruError::hl7_error_code`] the HL7 table 0357 code:
///
/// | Error | Ack | ITK3 | HL7 |
/// |---|---|---|---|
/// | unreadable | AR | 10009 (20015 if too large) | 100 (207 if too large) |
/// | MSH-9 not ORU^R01 | AR | 10004 | 200 (201 for ORU with another event) |
/// | MSH-10 empty | AR | 10007 | 101 |
/// | MSH-7 empty or malformed | AR | 20006 | 101 / 102 |
/// | MSH-12 not 2.x | AR | 10005 | 203 |
/// | no PID, several PIDs, OBX before OBR, no OBR | AE | 20009 | 100 |
/// | bad or conflicting NHS number | AE | 20009 | 102 |
/// | malformed recipient ODS code | AE | 20010 | 102 |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OruError {
    /// The bytes are not an HL7 v2 message.
    #[error("unreadable HL7 v2 message: {0}")]
    Unreadable(#[from] Hl7Error),
    /// MSH-9 is not ORU^R01.
    #[error("MSH-9: expected ORU^R01, found {found}")]
    MessageType {
        /// MSH-9 as sent: the components of its first repetition joined by `^` (at most 40
        /// characters).
        found: String,
    },
    /// MSH-10 is empty.
    #[error("MSH-10: message control id is empty")]
    MissingControlId,
    /// MSH-7 is empty or not an HL7 timestamp.
    #[error("MSH-7: message date/time {found:?} is not an HL7 timestamp (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])")]
    MessageDateTime {
        /// MSH-7 as sent (at most 40 characters).
        found: String,
    },
    /// MSH-12 is not an HL7 v2 version.
    #[error("MSH-12: unsupported HL7 version {found:?} (expected 2.x)")]
    Version {
        /// MSH-12 as sent (at most 40 characters).
        found: String,
    },
    /// No PID segment.
    #[error("PID: no PID segment; an ORU^R01 needs the patient")]
    MissingPatient,
    /// More than one PID segment.
    #[error("PID: {count} PID segments; one patient per message is supported")]
    MultiplePatients {
        /// PID segments found.
        count: usize,
    },
    /// An NHS-tagged identifier in PID-3 is not a valid NHS number.
    #[error("PID-3[{repetition}]: NHS number {value} {reason}")]
    NhsNumber {
        /// 1-based repetition of PID-3.
        repetition: usize,
        /// The identifier as sent (at most 40 characters).
        value: String,
        /// What is wrong with it.
        reason: NhsNumberError,
    },
    /// Two NHS-tagged identifiers in PID-3 differ.
    #[error(
        "PID-3[{repetition}]: NHS number {second} conflicts with {first} in an earlier repetition"
    )]
    ConflictingNhsNumbers {
        /// 1-based repetition of the second number.
        repetition: usize,
        /// The number used.
        first: String,
        /// The number that differs.
        second: String,
    },
    /// A recipient identifier slot holds something that is not an ODS code.
    #[error("{at}: recipient practice {value:?} is not an ODS code: it {reason}")]
    RecipientOds {
        /// Where it was found.
        at: RecipientSource,
        /// The value as sent (at most 40 characters).
        value: String,
        /// What is wrong with it.
        reason: OdsCodeError,
    },
    /// No OBR segment.
    #[error("OBR: no OBR segment; an ORU^R01 needs at least one order result")]
    NoResults,
    /// An OBX came before any OBR.
    #[error("OBX (segment {}, OBX number {sequence}): observation before any OBR", index + 1)]
    OrphanObservation {
        /// Position of the OBX in the message (0-based).
        index: usize,
        /// Which OBX it is (1-based).
        sequence: usize,
    },
}

impl OruError {
    /// The HL7 acknowledgement code: `AR` for header problems, `AE` for content.
    pub fn ack_code(&self) -> AckCode {
        match self {
            Self::Unreadable(_)
            | Self::MessageType { .. }
            | Self::MissingControlId
            | Self::MessageDateTime { .. }
            | Self::Version { .. } => AckCode::ApplicationReject,
            _ => AckCode::ApplicationError,
        }
    }

    /// The nearest ITK3 response code (`ITK-ResponseCodes-1`).
    pub fn itk_code(&self) -> u16 {
        match self {
            Self::Unreadable(Hl7Error::TooLarge { .. }) => 20015,
            Self::Unreadable(_) => 10009,
            Self::MessageType { .. } => 10004,
            Self::MissingControlId => 10007,
            Self::MessageDateTime { .. } => 20006,
            Self::Version { .. } => 10005,
            Self::RecipientOds { .. } => 20010,
            Self::MissingPatient
            | Self::MultiplePatients { .. }
            | Self::NhsNumber { .. }
            | Self::ConflictingNhsNumbers { .. }
            | Self::NoResults
            | Self::OrphanObservation { .. } => 20009,
        }
    }

    /// The HL7 error code (table 0357) for an ERR segment.
    pub fn hl7_error_code(&self) -> u16 {
        match self {
            Self::Unreadable(
                Hl7Error::TooLarge { .. }
                | Hl7Error::TooManySegments { .. }
                | Hl7Error::TooManyFields { .. },
            ) => 207,
            Self::Unreadable(_) => 100,
            Self::MessageType { found } => {
                if found.split('^').next() == Some("ORU") {
                    201
                } else {
                    200
                }
            }
            Self::MissingControlId => 101,
            Self::MessageDateTime { found } => {
                if found.is_empty() {
                    101
                } else {
                    102
                }
            }
            Self::Version { .. } => 203,
            Self::MissingPatient
            | Self::MultiplePatients { .. }
            | Self::NoResults
            | Self::OrphanObservation { .. } => 100,
            Self::NhsNumber { .. }
            | Self::ConflictingNhsNumbers { .. }
            | Self::RecipientOds { .. } => 102,
        }
    }

    /// Where the error is, for ERR-2.
    pub fn location(&self) -> Option<ErrorLocation> {
        let at = |segment: &str, sequence: usize, field: Option<usize>| ErrorLocation {
            segment: segment.to_string(),
            sequence,
            field,
            repetition: None,
            component: None,
        };
        Some(match self {
            Self::Unreadable(_) => return None,
            Self::MessageType { .. } => at("MSH", 1, Some(9)),
            Self::MissingControlId => at("MSH", 1, Some(10)),
            Self::MessageDateTime { .. } => at("MSH", 1, Some(7)),
            Self::Version { .. } => at("MSH", 1, Some(12)),
            Self::MissingPatient => at("PID", 1, None),
            Self::MultiplePatients { .. } => at("PID", 2, None),
            Self::NhsNumber { repetition, .. } | Self::ConflictingNhsNumbers { repetition, .. } => {
                ErrorLocation {
                    repetition: Some(*repetition),
                    component: Some(1),
                    ..at("PID", 1, Some(3))
                }
            }
            Self::RecipientOds { at, .. } => at.location(),
            Self::NoResults => at("OBR", 1, None),
            Self::OrphanObservation { sequence, .. } => at("OBX", *sequence, None),
        })
    }

    /// The error as an ERR segment entry for an acknowledgement.
    pub fn error_detail(&self) -> ErrorDetail {
        ErrorDetail {
            location: self.location(),
            code: self.hl7_error_code().to_string(),
            severity: ErrorSeverity::Error,
            text: self.to_string(),
        }
    }
}

/// Parses bytes and summarises them as an ORU^R01, with the default [`Limits`].
pub fn parse_oru(input: &[u8]) -> Result<OruSummary, OruError> {
    parse_oru_with_limits(input, &Limits::DEFAULT)
}

/// Parses bytes within `limits` and summarises them as an ORU^R01.
pub fn parse_oru_with_limits(input: &[u8], limits: &Limits) -> Result<OruSummary, OruError> {
    let message = Message::parse_bytes_with_limits(input, limits)?;
    OruSummary::from_message(&message)
}

/// Empty, spaces, or the HL7 explicit null `""`.
fn is_blank(value: &str) -> bool {
    let value = value.trim();
    value.is_empty() || value == "\"\""
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// True for `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`.
fn is_hl7_timestamp(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if ![4, 6, 8, 10, 12, 14].contains(&digits) {
        return false;
    }
    let mut rest = &s[digits..];
    if digits == 14 {
        if let Some(fraction) = rest.strip_prefix('.') {
            let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if !(1..=4).contains(&n) {
                return false;
            }
            rest = &fraction[n..];
        }
    }
    match rest.as_bytes() {
        [] => true,
        [b'+' | b'-', zone @ ..] => zone.len() == 4 && zone.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

impl OruSummary {
    /// Reads and checks an ORU^R01 (see [`OruError`] for the checks).
    pub fn from_message(message: &Message<'_>) -> Result<Self, OruError> {
        Self::read(message, true)
    }

    /// The same checks, with `results` left empty: for a writer that reads the results from
    /// the message itself.
    pub fn without_results(message: &Message<'_>) -> Result<Self, OruError> {
        Self::read(message, false)
    }

    fn read(message: &Message<'_>, with_results: bool) -> Result<Self, OruError> {
        let msh = message.msh();
        let message_type = msh.field(9).and_then(|f| f.repetition(1));
        let (kind, event) = message_type.map_or((Default::default(), Default::default()), |r| {
            (r.text(1), r.text(2))
        });
        if kind != "ORU" || event != "R01" {
            let found = message_type
                .map(|r| {
                    r.components()
                        .map(|c| c.text())
                        .collect::<Vec<_>>()
                        .join("^")
                })
                .unwrap_or_default();
            return Err(OruError::MessageType {
                found: clip(&found),
            });
        }
        let control_id = msh.text(10).into_owned();
        if control_id.trim().is_empty() {
            return Err(OruError::MissingControlId);
        }
        let message_datetime = msh.text(7).into_owned();
        if !is_hl7_timestamp(&message_datetime) {
            return Err(OruError::MessageDateTime {
                found: clip(&message_datetime),
            });
        }
        let version = msh.text(12).into_owned();
        if !version.is_empty() && !version.starts_with("2.") {
            return Err(OruError::Version {
                found: clip(&version),
            });
        }

        let mut pids = message.segments("PID");
        let pid = pids.next().ok_or(OruError::MissingPatient)?;
        let extra = pids.count();
        if extra > 0 {
            return Err(OruError::MultiplePatients { count: extra + 1 });
        }
        let patient = read_patient(pid)?;
        let recipient = find_recipient(message)?;
        let gp = message
            .segment("PD1")
            .map(|pd1| pd1.text(4).into_owned())
            .unwrap_or_default();
        let results = match with_results {
            true => read_results(message)?,
            false => {
                check_results(message)?;
                Vec::new()
            }
        };

        Ok(Self {
            control_id,
            message_datetime,
            sending_application: msh.text(3).into_owned(),
            sending_facility: msh.text(4).into_owned(),
            receiving_application: msh.text(5).into_owned(),
            receiving_facility: msh.text(6).into_owned(),
            processing_id: msh.text(11).into_owned(),
            version,
            patient,
            recipient,
            gp,
            results,
        })
    }

    /// Always [`DocumentType::OrderResult`].
    pub fn document_type(&self) -> DocumentType {
        DocumentType::OrderResult
    }
}

fn read_patient(pid: SegmentRef<'_>) -> Result<Patient, OruError> {
    let mut patient = Patient::default();
    for (i, rep) in pid.repetitions(3).enumerate() {
        let id = rep.text(1);
        if is_blank(&id) {
            continue;
        }
        let identifier = PatientIdentifier {
            id: id.into_owned(),
            assigning_authority: rep.text(4).into_owned(),
            identifier_type: rep.text(5).into_owned(),
        };
        let is_nhs = identifier.identifier_type.eq_ignore_ascii_case("NH")
            || identifier.assigning_authority.eq_ignore_ascii_case("NHS");
        if is_nhs {
            let repetition = i + 1;
            let number =
                NhsNumber::parse(&identifier.id).map_err(|reason| OruError::NhsNumber {
                    repetition,
                    value: clip(&identifier.id),
                    reason,
                })?;
            match &patient.nhs_number {
                Some(first) if *first != number => {
                    return Err(OruError::ConflictingNhsNumbers {
                        repetition,
                        first: first.to_string(),
                        second: number.to_string(),
                    })
                }
                Some(_) => {}
                None => patient.nhs_number = Some(number),
            }
        }
        patient.identifiers.push(identifier);
    }
    if let Some(name) = pid.field(5).and_then(|f| f.repetition(1)) {
        patient.name = PersonName {
            family: name.text(1).into_owned(),
            given: name.text(2).into_owned(),
            middle: name.text(3).into_owned(),
            suffix: name.text(4).into_owned(),
            prefix: name.text(5).into_owned(),
        };
    }
    patient.date_of_birth = pid.text(7).into_owned();
    patient.sex = pid.text(8).into_owned();
    Ok(patient)
}

fn find_recipient(message: &Message<'_>) -> Result<Option<Recipient>, OruError> {
    if let Some(facility) = message
        .segment("PD1")
        .and_then(|pd1| pd1.field(3))
        .and_then(|f| f.repetition(1))
    {
        let name = facility.text(1);
        for (source, comp) in [
            (RecipientSource::Pd1OrganizationIdentifier, 10),
            (RecipientSource::Pd1IdNumber, 3),
        ] {
            let value = facility.text(comp);
            if is_blank(&value) {
                continue;
            }
            return match OdsCode::parse(&value) {
                Ok(ods_code) => Ok(Some(Recipient {
                    ods_code,
                    source,
                    name: name.into_owned(),
                })),
                Err(reason) => Err(OruError::RecipientOds {
                    at: source,
                    value: clip(&value),
                    reason,
                }),
            };
        }
        if let Ok(ods_code) = OdsCode::parse(&name) {
            return Ok(Some(Recipient {
                ods_code,
                source: RecipientSource::Pd1Name,
                name: String::new(),
            }));
        }
    }
    if let Some(location) = message
        .segment("PV1")
        .and_then(|pv1| pv1.field(3))
        .and_then(|f| f.repetition(1))
    {
        if let Ok(ods_code) = OdsCode::parse(&location.text(1)) {
            return Ok(Some(Recipient {
                ods_code,
                source: RecipientSource::Pv1AssignedLocation,
                name: location.text(2).into_owned(),
            }));
        }
    }
    Ok(None)
}

fn coded(segment: SegmentRef<'_>, n: usize) -> CodedValue {
    let rep = segment.field(n).and_then(|f| f.repetition(1));
    let text = |c| rep.map(|r| r.text(c).into_owned()).unwrap_or_default();
    CodedValue {
        code: text(1),
        text: text(2),
        coding_system: text(3),
    }
}

/// Which OBR or OBX a following NTE belongs to.
enum NoteTarget {
    None,
    Order,
    Observation,
}

/// What [`read_results`] checks, without reading anything out.
fn check_results(message: &Message<'_>) -> Result<(), OruError> {
    let mut orders = 0;
    let mut obx_count = 0;
    for segment in message.iter().skip(1) {
        match segment.name() {
            "OBR" => orders += 1,
            "OBX" => {
                obx_count += 1;
                if orders == 0 {
                    return Err(OruError::OrphanObservation {
                        index: segment.index(),
                        sequence: obx_count,
                    });
                }
            }
            _ => {}
        }
    }
    match orders {
        0 => Err(OruError::NoResults),
        _ => Ok(()),
    }
}

fn read_results(message: &Message<'_>) -> Result<Vec<OrderResult>, OruError> {
    let encoding = message.encoding();
    let mut results: Vec<OrderResult> = Vec::new();
    let mut target = NoteTarget::None;
    let mut obx_count = 0;
    for segment in message.iter().skip(1) {
        match segment.name() {
            "OBR" => {
                results.push(read_order(segment));
                target = NoteTarget::Order;
            }
            "OBX" => {
                obx_count += 1;
                let Some(order) = results.last_mut() else {
                    return Err(OruError::OrphanObservation {
                        index: segment.index(),
                        sequence: obx_count,
                    });
                };
                order.observations.push(read_observation(segment));
                target = NoteTarget::Observation;
            }
            "NTE" => {
                if segment.raw(3).is_none_or(|r| r.trim().is_empty()) {
                    continue;
                }
                let mut note = String::new();
                for (i, r) in segment.repetitions(3).enumerate() {
                    if i > 0 {
                        note.push('\n');
                    }
                    note.push_str(&encoding.unescape(r.raw()));
                }
                if note.trim().is_empty() {
                    continue;
                }
                let Some(order) = results.last_mut() else {
                    continue;
                };
                match target {
                    NoteTarget::Order => order.notes.push(note),
                    NoteTarget::Observation => {
                        if let Some(obx) = order.observations.last_mut() {
                            obx.notes.push(note);
                        }
                    }
                    NoteTarget::None => {}
                }
            }
            _ => target = NoteTarget::None,
        }
    }
    if results.is_empty() {
        return Err(OruError::NoResults);
    }
    Ok(results)
}

fn read_order(obr: SegmentRef<'_>) -> OrderResult {
    OrderResult {
        segment_index: obr.index(),
        set_id: obr.text(1).into_owned(),
        placer_order_number: obr.text(2).into_owned(),
        filler_order_number: obr.text(3).into_owned(),
        service: coded(obr, 4),
        observation_datetime: obr.text(7).into_owned(),
        result_status: obr.text(25).into_owned(),
        notes: Vec::new(),
        observations: Vec::new(),
    }
}

fn read_observation(obx: SegmentRef<'_>) -> Observation {
    let value_type = obx.text(2).into_owned();
    let mut value = String::new();
    let mut encapsulated = None;
    for (i, rep) in obx.repetitions(5).enumerate() {
        if value_type == "ED" {
            if encapsulated.is_none() {
                encapsulated = Some(EncapsulatedData {
                    source_application: rep.text(1).into_owned(),
                    type_of_data: rep.text(2).into_owned(),
                    data_subtype: rep.text(3).into_owned(),
                    encoding: rep.text(4).into_owned(),
                    data: rep.text(5).into_owned(),
                });
            }
            continue;
        }
        if i > 0 {
            value.push('\n');
        }
        match value_type.as_str() {
            "SN" => (1..=4).for_each(|c| value.push_str(&rep.text(c))),
            "CE" | "CWE" | "CNE" | "CF" => {
                let text = rep.text(2);
                let text = if text.is_empty() { rep.text(1) } else { text };
                value.push_str(&text);
            }
            _ => value.push_str(&obx_text(obx, rep.raw())),
        }
    }
    let units = {
        let first = obx.component(6, 1, 1).unwrap_or_default();
        if first.is_empty() {
            obx.component(6, 1, 2).unwrap_or_default()
        } else {
            first
        }
    };
    Observation {
        segment_index: obx.index(),
        set_id: obx.text(1).into_owned(),
        value_type,
        identifier: coded(obx, 3),
        sub_id: obx.text(4).into_owned(),
        value,
        encapsulated,
        units: units.into_owned(),
        reference_range: obx
            .field(7)
            .map(|f| obx_text(obx, f.raw()))
            .unwrap_or_default(),
        abnormal_flags: obx
            .repetitions(8)
            .map(|r| r.text(1).into_owned())
            .filter(|f| !f.is_empty())
            .collect(),
        status: obx.text(11).into_owned(),
        observation_datetime: obx.text(14).into_owned(),
        notes: Vec::new(),
    }
}

/// Decodes a text-typed value whole: delimiters other than escapes have no meaning in it.
fn obx_text(obx: SegmentRef<'_>, raw: &str) -> String {
    obx.encoding().unescape(raw).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        for ok in [
            "2024",
            "202401",
            "20240115",
            "202401151030",
            "20240115103000",
            "20240115103000.1234",
            "20240115103000+0100",
            "202401151030-0500",
        ] {
            assert!(is_hl7_timestamp(ok), "{ok}");
        }
        for bad in [
            "",
            "24",
            "2024011",
            "20240115103000.",
            "20240115103000.12345",
            "202401151030+01",
            "2024-01-15",
            "20240115 ",
        ] {
            assert!(!is_hl7_timestamp(bad), "{bad}");
        }
    }

    #[test]
    fn names_display() {
        let n = PersonName {
            family: "SMITH".into(),
            given: "JOHN".into(),
            prefix: "MR".into(),
            ..Default::default()
        };
        assert_eq!(n.to_string(), "MR JOHN SMITH");
        assert_eq!(PersonName::default().to_string(), "");
    }
}
