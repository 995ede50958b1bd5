//! What a submitted document says about itself: the routing metadata the hub needs (recipient
//! ODS codes, patient NHS number, document type, sender, the document's own id), read from
//! the document by its content type.
//!
//! - `application/fhir+xml`, `application/fhir+json`: an ITK3 message ([`crate::itk3`]).
//! - `application/hl7-v2` (also `x-application/hl7-v2+er7`): an HL7 v2 ORU^R01
//!   ([`crate::hl7`]).
//! - anything else (PDF, Word, images): opaque; the submission's metadata is all there is.
//!
//! A document of a structured type that cannot be read is an error naming where it broke and
//! the ITK3 response code a receiver would send for it.

use crate::itk3::{self, Format};
use crate::DocumentType;

/// Routing metadata found in a document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extracted {
    /// Which reader found it: `itk3` or `hl7v2`.
    pub format: &'static str,
    /// Where in the document the recipients were found (for messages about disagreements).
    pub recipients_from: &'static str,
    /// Recipient ODS codes, upper case.
    pub recipients: Vec<String>,
    /// The sender's ODS code, when the document names it.
    pub sender_ods: Option<String>,
    /// The patient's NHS number (Modulus 11 checked), ten digits.
    pub nhs_number: Option<String>,
    /// The document type the document declares, when it is specific (a GP Connect Send
    /// Document can carry any kind of letter, so it declares none).
    pub document_type: Option<DocumentType>,
    /// The document's own identifier (ITK3 message id, HL7 MSH-10).
    pub document_id: Option<String>,
}

/// A structured document that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {problem} (ITK3 {code})")]
pub struct ExtractError {
    /// Where it broke: a FHIR path or an HL7 segment-field.
    pub location: String,
    pub problem: String,
    /// The ITK3 response code a receiver would send for it.
    pub code: u16,
}

fn base_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The FHIR format of an ITK3 / FHIR content type (parameters ignored); `None` otherwise.
pub fn fhir_format(content_type: &str) -> Option<Format> {
    match base_type(content_type).as_str() {
        "application/fhir+xml" => Some(Format::Xml),
        "application/fhir+json" => Some(Format::Json),
        _ => None,
    }
}

/// Whether a content type is HL7 v2 (parameters ignored).
pub fn is_hl7v2(content_type: &str) -> bool {
    matches!(
        base_type(content_type).as_str(),
        "application/hl7-v2" | "x-application/hl7-v2+er7"
    )
}

/// Reads the routing metadata of a document of a structured type; `Ok(None)` for other types.
pub fn extract(content_type: &str, payload: &[u8]) -> Result<Option<Extracted>, ExtractError> {
    if let Some(format) = fhir_format(content_type) {
        let options = itk3::ReadOptions {
            check_attachments_only: true,
            ..itk3::ReadOptions::default()
        };
        let m = itk3::read_message_with(payload, format, options).map_err(|e| ExtractError {
            location: e.path.clone(),
            problem: e.problem.clone(),
            code: e.code.code(),
        })?;
        return Ok(Some(Extracted {
            format: "itk3",
            recipients_from: "MessageHeader.destination.receiver",
            recipients: m.receiver_ods.iter().map(|o| o.to_string()).collect(),
            sender_ods: m.sender_ods.map(|o| o.to_string()),
            nhs_number: m.nhs_number,
            document_type: m
                .document_type
                .filter(|t| *t != DocumentType::GenericDocument),
            document_id: Some(m.message_id),
        }));
    }
    if is_hl7v2(content_type) {
        let oru = crate::hl7::parse_oru(payload).map_err(|e| {
            // The reader's messages start with the field they are about (`PID-3[3]: …`).
            let text = e.to_string();
            let (location, problem) = match text.split_once(": ") {
                Some((l, p)) if !l.contains(' ') => (l.to_string(), p.to_string()),
                _ => (
                    e.location()
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "MSH".to_string()),
                    text.clone(),
                ),
            };
            ExtractError {
                location,
                problem,
                code: e.itk_code(),
            }
        })?;
        return Ok(Some(Extracted {
            format: "hl7v2",
            recipients_from: "PD1-3/PV1-3",
            recipients: oru
                .recipient
                .iter()
                .map(|r| r.ods_code.to_string())
                .collect(),
            sender_ods: None,
            nhs_number: oru.patient.nhs_number.map(|n| n.to_string()),
            document_type: Some(DocumentType::OrderResult),
            document_id: Some(oru.control_id),
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &str = "MSH|^~\\&|LAB|RX1|GP|A81001|20261125093000||ORU^R01|CTRL-1|P|2.4\r\
PID|||9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\r\
PD1|||GP PRACTICE^^A81001\r\
OBR|1|||PT^Prothrombin Time\r\
OBX|1|NM|INR^I.N.R.||2.5||||||F\r";

    #[test]
    fn hl7_results_say_who_they_are_for() {
        let x = extract("application/hl7-v2", ORU.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(x.format, "hl7v2");
        assert_eq!(x.recipients, vec!["A81001".to_string()]);
        assert_eq!(x.nhs_number.as_deref(), Some("9434765919"));
        assert_eq!(x.document_type, Some(DocumentType::OrderResult));
        assert_eq!(x.document_id.as_deref(), Some("CTRL-1"));
    }

    #[test]
    fn a_bad_nhs_number_in_a_result_names_the_field() {
        let bad = ORU.replace("9434765919", "9434765918");
        let e = extract("application/hl7-v2", bad.as_bytes()).unwrap_err();
        assert!(e.location.starts_with("PID-3"), "{e}");
        assert!(e.to_string().contains("Modulus 11"), "{e}");
    }

    #[test]
    fn opaque_types_are_not_read() {
        assert_eq!(extract("application/pdf", b"%PDF-1.4").unwrap(), None);
        assert!(extract("application/fhir+xml", b"%PDF-1.4").is_err());
        assert!(extract("application/fhir+json; charset=utf-8", b"{").is_err());
    }
}
