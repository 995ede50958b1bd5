//! The document model shared by every stage.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What kind of clinical document this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentType {
    DischargeSummary,
    OutpatientLetter,
    EmergencyCareDischarge,
    MentalHealthDischarge,
    OrderResult,
    GenericDocument,
}

impl DocumentType {
    pub const ALL: [DocumentType; 6] = [
        Self::DischargeSummary,
        Self::OutpatientLetter,
        Self::EmergencyCareDischarge,
        Self::MentalHealthDischarge,
        Self::OrderResult,
        Self::GenericDocument,
    ];

    /// The kebab-case name used in config files, the CLI and index files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DischargeSummary => "discharge-summary",
            Self::OutpatientLetter => "outpatient-letter",
            Self::EmergencyCareDischarge => "emergency-care-discharge",
            Self::MentalHealthDischarge => "mental-health-discharge",
            Self::OrderResult => "order-result",
            Self::GenericDocument => "generic-document",
        }
    }
}

impl fmt::Display for DocumentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown document type name.
/// The form a receiver takes documents in: a route's `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiverFormat {
    /// The document exactly as the sender sent it.
    #[default]
    Original,
    /// An ITK3 FHIR message (Transfer of Care), re-headed for the delivery.
    Itk3,
    /// GP Connect Send Document.
    GpConnect,
    /// HL7 v2 ORU^R01.
    Hl7v2,
    /// A letter by email (the document as sent, attached).
    Email,
    /// An HL7 v2 result as a FHIR R4 UK Core pathology test report bundle (JSON).
    FhirPathology,
}

impl ReceiverFormat {
    pub const ALL: [Self; 6] = [
        Self::Original,
        Self::Itk3,
        Self::GpConnect,
        Self::Hl7v2,
        Self::Email,
        Self::FhirPathology,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Original => "original",
            Self::Itk3 => "itk3",
            Self::GpConnect => "gp-connect",
            Self::Hl7v2 => "hl7v2",
            Self::Email => "email",
            Self::FhirPathology => "fhir-pathology",
        }
    }
}

impl FromStr for ReceiverFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown receiver format {s:?}"))
    }
}

impl ReceiverFormat {
    /// What a receiver routed in this format is given, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Original => {
                "the document as sent (an HL7 v2 result with a readable report and its PDF)"
            }
            Self::Itk3 => "an ITK3 FHIR STU3 message (XML), headed for the receiver",
            Self::GpConnect => "a GP Connect Send Document (ITK3, XML) wrapping the document",
            Self::Hl7v2 => "an HL7 v2 ORU^R01 result",
            Self::Email => {
                "a letter by email, the document attached (for a result: a results table and its PDF)"
            }
            Self::FhirPathology => "a FHIR R4 pathology test report bundle (JSON)",
        }
    }
}

impl fmt::Display for ReceiverFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown document type {0:?} (expected one of: discharge-summary, outpatient-letter, emergency-care-discharge, mental-health-discharge, order-result, generic-document)")]
pub struct UnknownDocumentType(pub String);

impl FromStr for DocumentType {
    type Err = UnknownDocumentType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownDocumentType(s.to_string()))
    }
}

/// What the hub knows about a document, apart from its bytes: enough to route it, render an
/// index for it and find it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentMeta {
    pub message_id: String,
    pub sender_ods: String,
    pub document_type: DocumentType,
    pub content_type: String,
    pub local_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub payload_size: u64,
    pub payload_sha256: String,
    /// RFC 3339.
    pub received_at: String,
}
