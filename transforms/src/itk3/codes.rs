//! ITK3 code tables: message events, recipient types, message definitions, response codes.

use std::fmt;

use crate::model::DocumentType;

/// `MessageHeader.event` of an ITK3 response (ITK008M).
pub const EVENT_RESPONSE: &str = "ITK008M";
/// `MessageHeader.event` of a GP Connect Send Document message (ITK007C).
pub const EVENT_SEND_DOCUMENT: &str = "ITK007C";

/// Base of the ITK3 MessageDefinition references in the `MessageDefinition` handling key.
pub const MESSAGE_DEFINITION_BASE: &str = "https://fhir.nhs.uk/STU3/MessageDefinition/";
/// MessageDefinition of GP Connect Send Document.
pub const MESSAGE_DEFINITION_SEND_DOCUMENT: &str =
    "https://fhir.nhs.uk/STU3/MessageDefinition/ITK-GPConnectSendDocument-MessageDefinition-1";
/// MessageDefinition of Transfer of Care eDischarge.
pub const MESSAGE_DEFINITION_EDISCHARGE: &str =
    "https://fhir.nhs.uk/STU3/MessageDefinition/ITK-eDischarge-MessageDefinition-4";
/// MessageDefinition of the outpatient letter.
pub const MESSAGE_DEFINITION_OUTPATIENT_LETTER: &str =
    "https://fhir.nhs.uk/STU3/MessageDefinition/ITK-OPL-MessageDefinition-4";
/// MessageDefinition of an ITK3 response.
pub const MESSAGE_DEFINITION_RESPONSE: &str =
    "https://fhir.nhs.uk/STU3/MessageDefinition/ITK-Response-MessageDefinition-1";

/// Code system of the `Priority` handling key.
pub const ITK_PRIORITY_SYSTEM: &str = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-Priority-1";

/// `response.identifier` of a response to a message whose header could not be read.
pub const UNREADABLE_ORIGINAL: &str = "UNREADABLE-IN-ORIGINAL-MESSAGE";

/// The ITK-MessageEvent-2 codes and their displays.
pub const EVENTS: [(&str, &str); 10] = [
    ("ITK003D", "ITK eDischarge"),
    ("ITK004D", "ITK Mental Health eDischarge"),
    ("ITK005D", "ITK Emergency Care eDischarge"),
    ("ITK006D", "ITK Outpatient Letter"),
    ("ITK007C", "ITK GP Connect Send Document"),
    ("ITK008M", "ITK Response"),
    ("ITK009D", "ITK Digital Medicine Immunization Document"),
    ("ITK010D", "ITK Digital Medicine Emergency Supply Document"),
    ("ITK011M", "ITK Events Management Service"),
    ("ITK012M", "ITK National Pathology"),
];

/// The display of an ITK-MessageEvent-2 code.
pub fn event_display(code: &str) -> Option<&'static str> {
    EVENTS.iter().find(|(c, _)| *c == code).map(|(_, d)| *d)
}

/// The ITK3 event a document of this type is sent with.
///
/// [`DocumentType::OrderResult`] maps to ITK012M (National Pathology), the only result-bearing
/// event in the table, and [`DocumentType::GenericDocument`] to ITK007C (GP Connect Send
/// Document), which carries any document as an attachment.
pub fn event_for(doc_type: DocumentType) -> &'static str {
    match doc_type {
        DocumentType::DischargeSummary => "ITK003D",
        DocumentType::MentalHealthDischarge => "ITK004D",
        DocumentType::EmergencyCareDischarge => "ITK005D",
        DocumentType::OutpatientLetter => "ITK006D",
        DocumentType::GenericDocument => EVENT_SEND_DOCUMENT,
        DocumentType::OrderResult => "ITK012M",
    }
}

/// The document type an event carries; the inverse of [`event_for`]. `None` for events that
/// carry no document of a known type (responses, immunisations, events management, ...).
pub fn document_type_for(event: &str) -> Option<DocumentType> {
    DocumentType::ALL
        .into_iter()
        .find(|t| event_for(*t) == event)
}

/// The MessageDefinition reference published for a document type, where one is known:
/// eDischarge for discharge summaries, OPL for outpatient letters, GP Connect Send Document
/// for generic documents. Mental health, emergency care and pathology definitions are not
/// known here, so callers supply their own.
pub fn message_definition_for(doc_type: DocumentType) -> Option<&'static str> {
    match doc_type {
        DocumentType::DischargeSummary => Some(MESSAGE_DEFINITION_EDISCHARGE),
        DocumentType::OutpatientLetter => Some(MESSAGE_DEFINITION_OUTPATIENT_LETTER),
        DocumentType::GenericDocument => Some(MESSAGE_DEFINITION_SEND_DOCUMENT),
        _ => None,
    }
}

/// A SNOMED CT code with its display, as used for `Composition.type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnomedCode {
    /// The concept id.
    pub code: String,
    /// Its display term.
    pub display: String,
}

impl SnomedCode {
    /// A code and display.
    pub fn new(code: impl Into<String>, display: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            display: display.into(),
        }
    }
}

/// The `Composition.type` used for a document type when the caller gives none.
///
/// Only two are published for these payloads: 373942005 "Discharge summary" (Transfer of Care
/// eDischarge) and 371531000 "Report of clinical encounter" (the GP Connect consultation
/// report, used for [`DocumentType::GenericDocument`]). For the others this falls back to
/// 419891008 "Record artifact", the root of the record artifact hierarchy, rather than
/// guessing a more specific concept.
pub fn composition_type_for(doc_type: DocumentType) -> SnomedCode {
    match doc_type {
        DocumentType::DischargeSummary => SnomedCode::new("373942005", "Discharge summary"),
        DocumentType::GenericDocument => {
            SnomedCode::new("371531000", "Report of clinical encounter")
        }
        _ => SnomedCode::new("419891008", "Record artifact"),
    }
}

/// The `RecipientType` handling key: whether a recipient is to act on the document or is
/// copied for information. Serialised as its code.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum RecipientType {
    /// `FA`: the recipient is expected to act on the message.
    #[default]
    #[serde(rename = "FA")]
    ForAction,
    /// `FI`: a copy for information.
    #[serde(rename = "FI")]
    ForInformation,
}

impl RecipientType {
    /// The ITK-RecipientType-1 code.
    pub fn code(self) -> &'static str {
        match self {
            Self::ForAction => "FA",
            Self::ForInformation => "FI",
        }
    }

    /// The display for the code.
    pub fn display(self) -> &'static str {
        match self {
            Self::ForAction => "For Action",
            Self::ForInformation => "For Information",
        }
    }

    /// Reads an ITK-RecipientType-1 code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "FA" => Some(Self::ForAction),
            "FI" => Some(Self::ForInformation),
            _ => None,
        }
    }
}

/// Which acknowledgement a response code belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseKind {
    /// Infrastructure acknowledgement (1xxxx / 2xxxx), sent when InfAckRequested.
    Infrastructure,
    /// Business acknowledgement (3xxxx), sent when BusAckRequested.
    Business,
}

macro_rules! response_codes {
    ($($variant:ident = $code:literal, $text:literal;)*) => {
        /// An ITK-ResponseCodes-1 code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ResponseCode {
            $(
                #[doc = concat!("`", stringify!($code), "`: ", $text, ".")]
                $variant,
            )*
        }

        impl ResponseCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ResponseCode] = &[$(Self::$variant),*];

            /// The numeric code.
            pub fn code(self) -> u16 {
                match self { $(Self::$variant => $code,)* }
            }

            /// The code's meaning, used as the coding display.
            pub fn display(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }
        }
    };
}

response_codes! {
    HandlingSpecificationError = 10001, "Handling Specification Error";
    InfrastructureResponseValueError = 10002, "Infrastructure Level Response Value - Processing Error";
    BusinessResponseValueError = 10003, "Business Level Response Value - Processing Error";
    MessageDefinitionError = 10004, "Message Definition Value - Processing Error";
    MessageDefinitionVersionError = 10005, "Message Definition Version Value - Processing Error";
    PriorityValueError = 10006, "Priority Value - Processing Error";
    SenderReferenceError = 10007, "Sender Reference Value - Processing Error";
    HandlingBusinessRuleError = 10008, "Handling Specification Business Rule Error";
    UnreadableMessage = 10009, "Unreadable message received";
    RecipientTypeError = 10010, "Recipient Type - Processing Error";
    UnrecognisedRecipientPerson = 20001, "Unrecognised Recipient Person";
    UnrecognisedRecipientOrganisation = 20002, "Unrecognised Recipient Organisation";
    UnrecognisedSender = 20003, "Unrecognised Sender";
    NonApprovedAttachmentType = 20004, "Non-Approved file type received as an attachment";
    UnsupportedAttachmentType = 20005, "Unsupported file type received as an attachment";
    HeaderValidationFailure = 20006, "ITK3 Header validation failure";
    DuplicateMessage = 20007, "Duplicate Message received";
    DuplicateDocument = 20008, "Duplicate Document received";
    PayloadValidationFailure = 20009, "Payload validation failure";
    UnrecognisedPayloadRecipientOrganisation = 20010, "Unrecognised Payload Recipient Organisation";
    UnrecognisedPayloadRecipientPerson = 20011, "Unrecognised Payload Recipient Person";
    UnauthorisedSender = 20012, "Unauthorised Sender";
    Success = 20013, "Success";
    ReplacementFailed = 20014, "Unable to Process Replacement Document";
    MessageTooLarge = 20015, "Message too large";
    PatientKnown = 30001, "Patient known here";
    PatientNotKnown = 30002, "Patient not known here";
    PatientNoLongerHere = 30003, "Patient no longer at this clinical setting";
    PatientKnownRecentlyDeceased = 30004, "Patient known here and recently deceased";
}

impl ResponseCode {
    /// The code with this number.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// Reads the code from its text form, e.g. `"20013"`.
    pub fn parse(text: &str) -> Option<Self> {
        text.trim().parse().ok().and_then(Self::from_code)
    }

    /// Infrastructure (1xxxx, 2xxxx) or business (3xxxx).
    pub fn kind(self) -> ResponseKind {
        if self.code() >= 30000 {
            ResponseKind::Business
        } else {
            ResponseKind::Infrastructure
        }
    }

    /// Whether the code reports success: 20013 for infrastructure, and 30001 / 30004 (patient
    /// known here) for business. Every other code is negative and is sent as `fatal-error`.
    pub fn is_positive(self) -> bool {
        matches!(
            self,
            Self::Success | Self::PatientKnown | Self::PatientKnownRecentlyDeceased
        )
    }

    /// `MessageHeader.response.code`: `ok` for positive codes, `fatal-error` otherwise.
    pub fn response_type(self) -> &'static str {
        if self.is_positive() {
            "ok"
        } else {
            "fatal-error"
        }
    }

    /// `OperationOutcome.issue.severity`: `information` for positive codes, `fatal` otherwise.
    pub fn issue_severity(self) -> &'static str {
        if self.is_positive() {
            "information"
        } else {
            "fatal"
        }
    }

    /// `OperationOutcome.issue.code` (FHIR IssueType): `informational` for positive codes;
    /// for negative ones `not-found` (unknown recipient, person or patient), `security`
    /// (unrecognised or unauthorised sender), `invalid` (header, payload, attachment, size and
    /// handling-value failures) and `processing` for the rest.
    pub fn issue_code(self) -> &'static str {
        use ResponseCode::*;
        if self.is_positive() {
            return "informational";
        }
        match self {
            UnrecognisedRecipientPerson
            | UnrecognisedRecipientOrganisation
            | UnrecognisedPayloadRecipientOrganisation
            | UnrecognisedPayloadRecipientPerson
            | PatientNotKnown
            | PatientNoLongerHere => "not-found",
            UnrecognisedSender | UnauthorisedSender => "security",
            HandlingSpecificationError
            | InfrastructureResponseValueError
            | BusinessResponseValueError
            | MessageDefinitionError
            | MessageDefinitionVersionError
            | PriorityValueError
            | SenderReferenceError
            | RecipientTypeError
            | NonApprovedAttachmentType
            | UnsupportedAttachmentType
            | HeaderValidationFailure
            | PayloadValidationFailure
            | MessageTooLarge => "invalid",
            _ => "processing",
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_document_types_are_inverse() {
        for t in DocumentType::ALL {
            assert_eq!(document_type_for(event_for(t)), Some(t));
            assert!(event_display(event_for(t)).is_some());
        }
        assert_eq!(document_type_for(EVENT_RESPONSE), None);
    }

    #[test]
    fn response_codes_are_ordered_and_unique() {
        let nums: Vec<u16> = ResponseCode::ALL.iter().map(|c| c.code()).collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(nums.len(), 29);
        for c in ResponseCode::ALL {
            assert_eq!(ResponseCode::parse(&c.code().to_string()), Some(*c));
        }
        assert_eq!(ResponseCode::parse("20016"), None);
    }
}
