//! The document each receiver gets, by the format its route names: the original bytes, an
//! ITK3 message addressed to it, a GP Connect Send Document wrapping the original, or the
//! HL7 v2 result as sent. Pure and repeatable: the same delivery renders the same bytes, so a
//! retried delivery writes the same document.

use crate::extract::{fhir_format, is_hl7v2};
use crate::itk3::{self, Handling, MessageParams, RecipientType, SendDocumentMeta};
use crate::model::DocumentMeta;
use crate::{NhsNumber, OdsCode};

/// One delivery's side of the rendering.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// The delivery's id: the rendered message's id, so a receiver's ack names it.
    pub id: &'a str,
    pub recipient_ods: &'a str,
    /// `FA` or `FI`.
    pub recipient_type: &'a str,
    /// RFC 3339, when the delivery was created (the rendered message's timestamp).
    pub created_at: &'a str,
}

/// What to send: the metadata describing it (content type, size, hash of the rendered bytes)
/// and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub meta: DocumentMeta,
    pub bytes: Vec<u8>,
}

/// The document cannot be given to this receiver in its format (never worth retrying).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render for format {format}: {problem}")]
pub struct RenderError {
    pub format: String,
    pub problem: String,
}

/// A UUID-shaped id derived from `seed` and `label` (stable for the same inputs).
fn derived(seed: &str, label: &str) -> String {
    let h = crate::sha256_hex(format!("{seed}/{label}").as_bytes());
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn rendered(original: &DocumentMeta, content_type: &str, bytes: Vec<u8>) -> Rendered {
    let mut meta = original.clone();
    meta.content_type = content_type.to_string();
    meta.file_name = None;
    meta.payload_size = bytes.len() as u64;
    meta.payload_sha256 = crate::sha256_hex(&bytes);
    Rendered { meta, bytes }
}

fn recipient_type(code: &str) -> RecipientType {
    if code == "FI" {
        RecipientType::ForInformation
    } else {
        RecipientType::ForAction
    }
}

/// Renders `payload` (described by `meta`) for one delivery in `format` (a route format name:
/// `original`, `itk3`, `gp-connect`, `hl7v2`, `email`).
pub fn render(
    format: &str,
    meta: &DocumentMeta,
    payload: &[u8],
    d: &Delivery<'_>,
) -> Result<Rendered, RenderError> {
    let fail = |problem: String| RenderError {
        format: format.to_string(),
        problem,
    };
    let sender =
        || OdsCode::parse(&meta.sender_ods).map_err(|e| fail(format!("sender ODS code {e}")));
    match format {
        // The letter for email is rendered by the email transport.
        "original" | "email" => Ok(Rendered {
            meta: meta.clone(),
            bytes: payload.to_vec(),
        }),
        "hl7v2" if is_hl7v2(&meta.content_type) => Ok(Rendered {
            meta: meta.clone(),
            bytes: payload.to_vec(),
        }),
        // Any other file becomes an ORU^R01 carrying it in an OBX of type ED (the UK way of
        // sending a PDF report to a results system).
        "hl7v2" => {
            let nhs = meta.nhs_number.as_deref().ok_or_else(|| {
                fail("an HL7 v2 result needs the patient's NHS number (PID-3)".into())
            })?;
            let when: String = d
                .created_at
                .chars()
                .take(19)
                .filter(char::is_ascii_digit)
                .collect();
            let subtype = match crate::index::extension_for(&meta.content_type) {
                "bin" => "OCTET-STREAM".to_string(),
                ext => ext.to_ascii_uppercase(),
            };
            let title = meta
                .title
                .clone()
                .unwrap_or_else(|| meta.document_type.to_string());
            let data = itk3::base64_encode(payload);
            let msg = crate::hl7::MessageBuilder::new()
                .segment("MSH")
                .text(3, "EDTHUB")
                .text(4, &meta.sender_ods)
                .text(6, d.recipient_ods)
                .text(7, &when)
                .components(9, &["ORU", "R01", "ORU_R01"])
                .text(10, d.id)
                .text(11, "P")
                .text(12, "2.4")
                .segment("PID")
                .text(1, "1")
                .components(3, &[nhs, "", "", "NHS", "NH"])
                .segment("PD1")
                .components(3, &["", "", d.recipient_ods])
                .segment("OBR")
                .text(1, "1")
                .text(2, &meta.message_id)
                .components(4, &["", &title])
                .text(7, &when)
                .text(25, "F")
                .segment("OBX")
                .text(1, "1")
                .text(2, "ED")
                .components(3, &["", &title])
                .components(5, &["", "AP", &subtype, "Base64", &data])
                .text(11, "F")
                .build()
                .map_err(|e| fail(e.to_string()))?;
            Ok(rendered(
                meta,
                "application/hl7-v2",
                msg.render().into_bytes(),
            ))
        }
        "itk3" => {
            let Some(f) = fhir_format(&meta.content_type) else {
                return Err(fail(format!(
                    "an ITK3 message needs a FHIR document; this is {} (route it as gp-connect to wrap it)",
                    meta.content_type
                )));
            };
            // Read in full at ingest; only the header and document are needed here.
            let options = itk3::ReadOptions {
                skip_attachments: true,
                ..Default::default()
            };
            let m =
                itk3::read_message_with(payload, f, options).map_err(|e| fail(e.to_string()))?;
            let mut handling = m.handling.clone();
            handling.recipient_type = recipient_type(d.recipient_type);
            let receiver = OdsCode::parse(d.recipient_ods)
                .map_err(|e| fail(format!("recipient ODS code {e}")))?;
            let msg = itk3::render_message(
                &m.document,
                MessageParams {
                    bundle_id: derived(d.id, "bundle"),
                    bundle_identifier: derived(d.id, "bundle-identifier"),
                    message_id: d.id.to_string(),
                    timestamp: d.created_at.to_string(),
                    document_type: m.document_type.unwrap_or(meta.document_type),
                    sender_ods: sender()?,
                    receiver_ods: Some(receiver),
                    source_endpoint: m.source_endpoint.clone(),
                    handling,
                },
            );
            let bytes = crate::fhir::to_xml(&msg).into_bytes();
            Ok(rendered(meta, "application/fhir+xml", bytes))
        }
        "gp-connect" => {
            if let Some(f) = fhir_format(&meta.content_type) {
                // Already a message: pass it on if it is a Send Document.
                let m = itk3::read_message(payload, f).map_err(|e| fail(e.to_string()))?;
                if m.event == itk3::EVENT_SEND_DOCUMENT {
                    return Ok(Rendered {
                        meta: meta.clone(),
                        bytes: payload.to_vec(),
                    });
                }
                return Err(fail(format!(
                    "the document is an ITK3 {} message, not a document to wrap",
                    m.event
                )));
            }
            let nhs = meta
                .nhs_number
                .as_deref()
                .ok_or_else(|| {
                    fail("GP Connect Send Document needs the patient's NHS number".into())
                })
                .and_then(|n| NhsNumber::parse(n).map_err(|e| fail(e.to_string())))?;
            let mut handling = Handling::new(itk3::MESSAGE_DEFINITION_SEND_DOCUMENT);
            handling.recipient_type = recipient_type(d.recipient_type);
            let send = SendDocumentMeta {
                message: MessageParams {
                    bundle_id: derived(d.id, "bundle"),
                    bundle_identifier: derived(d.id, "bundle-identifier"),
                    message_id: d.id.to_string(),
                    timestamp: d.created_at.to_string(),
                    document_type: meta.document_type,
                    sender_ods: sender()?,
                    receiver_ods: None,
                    source_endpoint: None,
                    handling,
                },
                document_bundle_id: derived(&meta.message_id, "document-bundle"),
                // The hub's message id: the same document to several receivers is one document.
                document_identifier: meta.message_id.clone(),
                composition_identifier: derived(&meta.message_id, "composition"),
                composition_type: None,
                title: meta
                    .title
                    .clone()
                    .unwrap_or_else(|| meta.document_type.to_string()),
                date: meta.received_at.clone(),
                nhs_number: nhs,
                sender_name: None,
                replaces: None,
            };
            let msg = itk3::render_send_document(payload, &meta.content_type, send);
            let bytes = crate::fhir::to_xml(&msg).into_bytes();
            Ok(rendered(meta, "application/fhir+xml", bytes))
        }
        other => Err(fail(format!("unknown format {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DocumentType;

    fn meta(content_type: &str, payload: &[u8]) -> DocumentMeta {
        DocumentMeta {
            message_id: "0190a0b0-0000-7000-8000-000000000001".into(),
            sender_ods: "RX1".into(),
            document_type: DocumentType::DischargeSummary,
            content_type: content_type.into(),
            local_id: "L1".into(),
            nhs_number: Some("9434765919".into()),
            file_name: Some("letter.pdf".into()),
            title: Some("Discharge summary".into()),
            payload_size: payload.len() as u64,
            payload_sha256: crate::sha256_hex(payload),
            received_at: "2026-11-25T09:00:00Z".into(),
        }
    }

    const D: Delivery<'static> = Delivery {
        id: "0190a0b0-0000-7000-8000-000000000002",
        recipient_ods: "A81001",
        recipient_type: "FA",
        created_at: "2026-11-25T09:00:01Z",
    };

    #[test]
    fn a_pdf_becomes_a_send_document_that_reads_back() {
        let pdf = b"%PDF-1.4\n\x00\x01\x02 letter".to_vec();
        let m = meta("application/pdf", &pdf);
        let r = render("gp-connect", &m, &pdf, &D).unwrap();
        assert_eq!(r, render("gp-connect", &m, &pdf, &D).unwrap(), "repeatable");
        assert_eq!(r.meta.content_type, "application/fhir+xml");
        assert_eq!(r.meta.payload_sha256, crate::sha256_hex(&r.bytes));
        let read = itk3::read_message(&r.bytes, itk3::Format::Xml).unwrap();
        assert_eq!(read.event, "ITK007C");
        assert_eq!(read.message_id, D.id);
        assert_eq!(read.nhs_number.as_deref(), Some("9434765919"));
        assert_eq!(read.sender_ods.unwrap().to_string(), "RX1");
        let binary = read.document.resources_of_type("Binary").next().unwrap();
        assert_eq!(itk3::binary_content(binary).unwrap(), pdf);
        // And a Send Document is passed on as it is.
        let again = meta("application/fhir+xml", &r.bytes);
        assert_eq!(
            render("gp-connect", &again, &r.bytes, &D).unwrap().bytes,
            r.bytes
        );
        // Re-addressed as an ITK3 message to this receiver.
        let itk = render("itk3", &again, &r.bytes, &D).unwrap();
        let read = itk3::read_message(&itk.bytes, itk3::Format::Xml).unwrap();
        assert_eq!(read.receiver_ods[0].to_string(), "A81001");
    }

    #[test]
    fn a_pdf_result_becomes_an_oru_carrying_it() {
        let pdf = b"%PDF-1.4\n\x00\xff|^~\\& report".to_vec();
        let mut m = meta("application/pdf", &pdf);
        m.document_type = DocumentType::OrderResult;
        let r = render("hl7v2", &m, &pdf, &D).unwrap();
        assert_eq!(r.meta.content_type, "application/hl7-v2");
        let oru = crate::hl7::parse_oru(&r.bytes).unwrap();
        assert_eq!(oru.control_id, D.id);
        assert_eq!(oru.patient.nhs_number.unwrap().to_string(), "9434765919");
        assert_eq!(oru.recipient.unwrap().ods_code.to_string(), "A81001");
        let ed = oru.results[0].observations[0].encapsulated.clone().unwrap();
        assert_eq!(ed.data_subtype, "PDF");
        assert_eq!(itk3::base64_decode(&ed.data).unwrap(), pdf);
    }

    #[test]
    fn what_cannot_be_rendered_says_why() {
        let pdf = b"%PDF-1.4".to_vec();
        let mut m = meta("application/pdf", &pdf);
        assert!(render("itk3", &m, &pdf, &D)
            .unwrap_err()
            .problem
            .contains("gp-connect"));
        m.nhs_number = None;
        let e = render("hl7v2", &m, &pdf, &D).unwrap_err();
        assert!(e.problem.contains("NHS number (PID-3)"), "{e}");
        assert!(render("gp-connect", &m, &pdf, &D)
            .unwrap_err()
            .problem
            .contains("NHS number"));
        assert_eq!(render("original", &m, &pdf, &D).unwrap().bytes, pdf);
    }
}
