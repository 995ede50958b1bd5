//! ITK3 FHIR messaging: reading and writing ITK3 message Bundles, GP Connect Send Document
//! messages and ITK3 responses (infrastructure and business acknowledgements).
//!
//! Everything here is pure: ids and timestamps come from the caller, and the FHIR trees are
//! the generic [`Element`] of [`crate::fhir`].
//!
//! * [`read_message`] takes an ITK3 message (XML or JSON) apart into an [`ItkMessage`]: header,
//!   handling keys, sender and receivers, the document Bundle (unchanged), Composition type,
//!   patient NHS number, replacement target and attachments.
//! * [`render_message`] wraps a document Bundle in an ITK3 message; [`render_send_document`]
//!   builds a GP Connect Send Document (ITK007C) message around one binary attachment.
//! * [`render_response`] and [`read_response`] write and read ITK3 responses (ITK008M).
//!
//! Every rejection is an [`ItkError`] naming the FHIR path of the offending element and the
//! ITK3 response code a receiver would send for it. The codes used:
//!
//! | Problem | Code |
//! |---|---|
//! | Not parseable as FHIR XML/JSON | 10009 Unreadable message received |
//! | Well-formed but a primitive value invalid for its type (bad base64, date, boolean) | 20006 in the first entry (the MessageHeader), 20009 elsewhere |
//! | Handling extension missing | 10001 Handling Specification Error |
//! | `InfAckRequested` missing or not a boolean | 10002 Infrastructure Level Response Value |
//! | `BusAckRequested` missing or not a boolean | 10003 Business Level Response Value |
//! | `MessageDefinition` missing or empty; unexpected event in a response | 10004 Message Definition Value |
//! | `Priority` not routine/urgent/asap/stat | 10006 Priority Value |
//! | `SenderReference` missing, empty or over 255 characters | 10007 Sender Reference Value |
//! | `RecipientType` missing or not FA/FI | 10010 Recipient Type |
//! | Sender Organization without a well-formed ODS code | 20003 Unrecognised Sender |
//! | Receiver Organization without a well-formed ODS code | 20002 Unrecognised Recipient Organisation |
//! | Not a message Bundle; MessageHeader, id, event, timestamp, sender, focus missing or unresolvable | 20006 ITK3 Header validation failure |
//! | Focus not a document Bundle; Composition missing; invalid NHS number; Binary without content type or with bad base64; response without a readable response code | 20009 Payload validation failure |
//!
//! The standards name 20006 and 20009 only as "header" and "payload" validation failures; the
//! split above (anything in or referenced by the MessageHeader is header, anything in the
//! focus is payload) is this module's reading of them.

mod base64;
mod codes;
mod message;
mod render;
mod response;

use thiserror::Error;

use crate::fhir::{self, Element};

pub use base64::{decode as base64_decode, encode as base64_encode, Base64Error};
pub use codes::{
    composition_type_for, document_type_for, event_display, event_for, message_definition_for,
    RecipientType, ResponseCode, ResponseKind, SnomedCode, EVENTS, EVENT_RESPONSE,
    EVENT_SEND_DOCUMENT, ITK_PRIORITY_SYSTEM, MESSAGE_DEFINITION_BASE,
    MESSAGE_DEFINITION_EDISCHARGE, MESSAGE_DEFINITION_OUTPATIENT_LETTER,
    MESSAGE_DEFINITION_RESPONSE, MESSAGE_DEFINITION_SEND_DOCUMENT, UNREADABLE_ORIGINAL,
};
pub use message::{
    binary_content, read_message, read_message_element, read_message_with, Attachment, Handling,
    ItkMessage, ReadOptions,
};
pub use render::{
    reheader_send_document, render_message, render_send_document, MessageParams, SendDocumentMeta,
    SEND_DOCUMENT_GENERIC,
};
pub use response::{
    read_response, read_response_element, render_response, ItkResponse, ResponseParams, ResponseTo,
};

/// The extension URL of the handling keys (`Extension-ITK-MessageHandling-2`).
pub use fhir::systems::ITK_MESSAGE_HANDLING;

/// Profile base for NHS Digital STU3 structure definitions.
pub const PROFILE_BASE: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/";
/// Profile base for CareConnect STU3 structure definitions (Composition, Patient, ...).
pub const CARECONNECT_PROFILE_BASE: &str = "https://fhir.hl7.org.uk/STU3/StructureDefinition/";
/// The identifier system used for UUID identifiers (`Bundle.identifier`, `Composition.identifier`).
pub const UUID_SYSTEM: &str = "https://tools.ietf.org/html/rfc4122";

/// The serialisation of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// FHIR XML (what ITK3 mandates).
    Xml,
    /// FHIR JSON.
    Json,
}

impl Format {
    /// Guesses the format from the first non-whitespace byte: `{` is JSON, anything else XML.
    pub fn sniff(bytes: &[u8]) -> Self {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Self::Json,
            _ => Self::Xml,
        }
    }
}

/// Why an ITK3 message or response was rejected: where, what, and the ITK3 response code a
/// receiver would answer with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {problem} (ITK3 {code})")]
pub struct ItkError {
    /// FHIR path of the offending element, e.g. `Bundle.entry[0].resource.MessageHeader.event`.
    pub path: String,
    /// What is wrong with it, e.g. `missing`.
    pub problem: String,
    /// The ITK3 response code for this failure.
    pub code: ResponseCode,
}

impl ItkError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, problem: impl Into<String>, code: ResponseCode) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
            code,
        }
    }

    pub(crate) fn missing(path: impl Into<String>, code: ResponseCode) -> Self {
        Self::new(path, "missing", code)
    }
}

/// Parses bytes as FHIR in the given format. A parse failure is 10009 at the parser's path,
/// except an invalid primitive value, which is a header (20006) or payload (20009) failure.
pub(crate) fn parse(bytes: &[u8], format: Format) -> Result<Element, ItkError> {
    let parsed = match format {
        Format::Xml => fhir::parse_xml(bytes),
        Format::Json => fhir::parse_json(bytes),
    };
    parsed.map_err(|e| {
        let path = if e.path.is_empty() {
            "Bundle".to_string()
        } else {
            e.path.clone()
        };
        let code = match e.kind {
            fhir::ErrorKind::InvalidValue { .. } if path.starts_with("Bundle.entry[0].") => {
                ResponseCode::HeaderValidationFailure
            }
            fhir::ErrorKind::InvalidValue { .. } => ResponseCode::PayloadValidationFailure,
            _ => ResponseCode::UnreadableMessage,
        };
        ItkError::new(path, e.to_string(), code)
    })
}

/// The path of the entry of `bundle` (found at `bundle_path`) holding `target`, e.g.
/// `Bundle.entry[2].resource.Bundle`.
pub(crate) fn entry_path(bundle_path: &str, bundle: &Element, target: &Element) -> String {
    bundle
        .children_named("entry")
        .enumerate()
        .find(|(_, e)| {
            e.child("resource")
                .and_then(Element::as_slot)
                .is_some_and(|r| std::ptr::eq(r, target))
        })
        .map(|(i, _)| format!("{bundle_path}.entry[{i}].resource.{}", target.name))
        .unwrap_or_else(|| format!("{bundle_path}.entry.resource.{}", target.name))
}
