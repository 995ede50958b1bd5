//! The document each receiver gets, by the format its route names: the original bytes, an
//! ITK3 message addressed to it, a GP Connect Send Document wrapping the original, or the
//! HL7 v2 result as sent. Pure and repeatable: the same delivery renders the same bytes, so a
//! retried delivery writes the same document.

use crate::extract::{fhir_format, is_hl7v2};
use crate::itk3::{self, Handling, MessageParams, RecipientType, SendDocumentMeta};
use crate::model::{DocumentMeta, ReceiverFormat};
use crate::{NhsNumber, OdsCode};

/// One delivery's side of the rendering.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// The delivery's id: the rendered message's id, so a receiver's ack names it.
    pub id: &'a str,
    pub recipient_ods: &'a str,
    pub recipient_type: RecipientType,
    /// RFC 3339, when the delivery was created (the rendered message's timestamp).
    pub created_at: &'a str,
    /// The MESH mailbox that sends for the sender (`MessageHeader.source.endpoint` of the ITK3
    /// messages rendered): the sender's own mailbox from the directory, else the hub's.
    pub source_endpoint: Option<&'a str>,
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

/// A UUID-shaped id derived from `seed` and `label` (stable for the same inputs): the
/// SHA-256 of `seed/label` in hex, its first 32 digits grouped 8-4-4-4-12, with the version
/// digit set to 4 and the variant digit to 8.
pub(crate) fn derived(seed: &str, label: &str) -> String {
    derived_parts(seed, &[label])
}

/// [`derived`] with the label given in parts (joined with nothing).
pub(crate) fn derived_parts(seed: &str, label: &[&str]) -> String {
    derived_into(seed, label, &mut [0; 36]).to_string()
}

/// [`derived_parts`] written into `out`, without allocating.
pub(crate) fn derived_into<'o>(seed: &str, label: &[&str], out: &'o mut [u8; 36]) -> &'o str {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(seed.as_bytes());
    h.update(b"/");
    for part in label {
        h.update(part.as_bytes());
    }
    let mut hex = [0u8; 32];
    hex::encode_to_slice(&h.finalize()[..16], &mut hex).expect("32 hex digits for 16 bytes");
    // 8-4-4-4-12, the version digit 4 and the variant digit 8.
    out[0..8].copy_from_slice(&hex[0..8]);
    out[8] = b'-';
    out[9..13].copy_from_slice(&hex[8..12]);
    out[13] = b'-';
    out[14] = b'4';
    out[15..18].copy_from_slice(&hex[13..16]);
    out[18] = b'-';
    out[19] = b'8';
    out[20..23].copy_from_slice(&hex[17..20]);
    out[23] = b'-';
    out[24..36].copy_from_slice(&hex[20..32]);
    std::str::from_utf8(out).expect("hex digits and dashes are ASCII")
}

fn rendered(original: &DocumentMeta, content_type: &str, bytes: Vec<u8>) -> Rendered {
    let mut meta = original.clone();
    meta.content_type = content_type.to_string();
    meta.file_name = None;
    meta.payload_size = bytes.len() as u64;
    meta.payload_sha256 = crate::sha256_hex(&bytes);
    Rendered { meta, bytes }
}

/// `MessageHeader.source.endpoint` for a message sent for this delivery: the configured
/// mailbox, else the one the original message named.
fn source_endpoint(
    d: &Delivery<'_>,
    original: Option<&str>,
    fail: &dyn Fn(String) -> RenderError,
) -> Result<String, RenderError> {
    d.source_endpoint
        .or(original)
        .map(str::to_string)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            fail(
                "an ITK3 message names the MESH mailbox that sends it (MessageHeader.source): \
                 set mesh_mailbox for the sender in the directory, or the hub's mesh.mailbox"
                    .into(),
            )
        })
}

/// A GP Connect Send Document re-headed for one delivery: its own header id, bundle id and
/// timestamp (so the receiver's responses name this delivery, and each receiver of a fan-out
/// gets a message id of its own), the document Bundle unchanged.
fn reheader(
    meta: &DocumentMeta,
    m: &itk3::ItkMessage,
    d: &Delivery<'_>,
    fail: &dyn Fn(String) -> RenderError,
) -> Result<Rendered, RenderError> {
    let sender_ods =
        OdsCode::parse(&meta.sender_ods).map_err(|e| fail(format!("sender ODS code {e}")))?;
    let mut handling = m.handling.clone();
    handling.recipient_type = d.recipient_type;
    let msg = itk3::reheader_send_document(
        &m.document,
        MessageParams {
            bundle_id: derived(d.id, "bundle"),
            bundle_identifier: derived(d.id, "bundle-identifier"),
            message_id: d.id.to_string(),
            timestamp: d.created_at.to_string(),
            document_type: meta.document_type,
            sender_ods,
            receiver_ods: None,
            source_endpoint: source_endpoint(d, m.source_endpoint.as_deref(), fail)?,
            handling,
        },
    );
    let bytes = crate::fhir::to_xml(&msg).into_bytes();
    Ok(rendered(meta, "application/fhir+xml", bytes))
}

/// Renders `payload` (described by `meta`) for one delivery in `format` (a route format name:
/// see [`ReceiverFormat`]).
pub fn render(
    format: ReceiverFormat,
    meta: &DocumentMeta,
    payload: &[u8],
    d: &Delivery<'_>,
) -> Result<Rendered, RenderError> {
    let fail = |problem: String| RenderError {
        format: format.as_str().to_string(),
        problem,
    };
    let sender =
        || OdsCode::parse(&meta.sender_ods).map_err(|e| fail(format!("sender ODS code {e}")));
    match format {
        // The letter for email is rendered by the email transport.
        ReceiverFormat::Original | ReceiverFormat::Email => Ok(Rendered {
            meta: meta.clone(),
            bytes: payload.to_vec(),
        }),
        ReceiverFormat::Hl7v2 if is_hl7v2(&meta.content_type) => Ok(Rendered {
            meta: meta.clone(),
            bytes: payload.to_vec(),
        }),
        // Any other file becomes an ORU^R01 carrying it in an OBX of type ED (the UK way of
        // sending a PDF report to a results system).
        ReceiverFormat::Hl7v2 => {
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
                .text(12, "2.5")
                .segment("PID")
                .text(1, "1")
                .components(3, &[nhs, "", "", "NHS", "NH"])
                // PID-5 is required; the hub does not hold the patient's name: HL7's explicit
                // null.
                .text(5, "\"\"")
                .segment("PD1")
                // The practice's ODS code in XON-10, Organization Identifier (ST): XON-3 is
                // numeric (NM), so a code such as A81001 cannot go there.
                .components(3, &["", "", "", "", "", "", "", "", "", d.recipient_ods])
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
        ReceiverFormat::FhirPathology => {
            if !is_hl7v2(&meta.content_type) {
                return Err(fail(format!(
                    "a FHIR pathology report is made from an HL7 v2 ORU^R01 result; this is {}",
                    meta.content_type
                )));
            }
            let bytes = crate::fhir::r4::pathology::bundle_json(
                payload,
                &crate::fhir::r4::pathology::Context {
                    seed: d.id,
                    timestamp: d.created_at,
                    sender_ods: &meta.sender_ods,
                },
            )
            .map_err(|e| fail(e.to_string()))?
            .into_bytes();
            Ok(rendered(meta, "application/fhir+json", bytes))
        }
        ReceiverFormat::Itk3 => {
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
            if m.event == itk3::EVENT_SEND_DOCUMENT {
                // A GP Connect Send Document keeps its own event and header rules (no
                // receiver: MESH routes it).
                return reheader(meta, &m, d, &fail);
            }
            let mut handling = m.handling.clone();
            handling.recipient_type = d.recipient_type;
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
                    source_endpoint: source_endpoint(d, m.source_endpoint.as_deref(), &fail)?,
                    handling,
                },
            );
            let bytes = crate::fhir::to_xml(&msg).into_bytes();
            Ok(rendered(meta, "application/fhir+xml", bytes))
        }
        ReceiverFormat::GpConnect => {
            if let Some(f) = fhir_format(&meta.content_type) {
                // Already a message: if it is a Send Document, it goes on with a header of this
                // delivery's own, the document inside untouched.
                let options = itk3::ReadOptions {
                    skip_attachments: true,
                    ..Default::default()
                };
                let m = itk3::read_message_with(payload, f, options)
                    .map_err(|e| fail(e.to_string()))?;
                if m.event == itk3::EVENT_SEND_DOCUMENT {
                    return reheader(meta, &m, d, &fail);
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
            handling.recipient_type = d.recipient_type;
            handling.local_extension = Some(itk3::SEND_DOCUMENT_GENERIC.to_string());
            let send = SendDocumentMeta {
                message: MessageParams {
                    bundle_id: derived(d.id, "bundle"),
                    bundle_identifier: derived(d.id, "bundle-identifier"),
                    message_id: d.id.to_string(),
                    timestamp: d.created_at.to_string(),
                    document_type: meta.document_type,
                    sender_ods: sender()?,
                    receiver_ods: None,
                    source_endpoint: source_endpoint(d, None, &fail)?,
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DocumentType;

    proptest::proptest! {
        /// Derived ids are the same as they have always been: ids already given out name the
        /// same resources when a document is rendered again.
        #[test]
        fn derived_ids_keep_their_form(seed in ".{0,40}", label in ".{0,20}") {
            let h = crate::sha256_hex(format!("{seed}/{label}").as_bytes());
            let want = format!(
                "{}-{}-4{}-8{}-{}",
                &h[0..8],
                &h[8..12],
                &h[13..16],
                &h[17..20],
                &h[20..32]
            );
            proptest::prop_assert_eq!(derived(&seed, &label), want);
        }
    }

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
        recipient_type: RecipientType::ForAction,
        created_at: "2026-11-25T09:00:01Z",
        source_endpoint: Some("RX1EDT001"),
    };

    #[test]
    fn a_pdf_becomes_a_send_document_that_reads_back() {
        let pdf = b"%PDF-1.4\n\x00\x01\x02 letter".to_vec();
        let m = meta("application/pdf", &pdf);
        let r = render(ReceiverFormat::GpConnect, &m, &pdf, &D).unwrap();
        assert_eq!(
            r,
            render(ReceiverFormat::GpConnect, &m, &pdf, &D).unwrap(),
            "repeatable"
        );
        assert_eq!(r.meta.content_type, "application/fhir+xml");
        assert_eq!(r.meta.payload_sha256, crate::sha256_hex(&r.bytes));
        let read = itk3::read_message(&r.bytes, itk3::Format::Xml).unwrap();
        assert_eq!(read.event, "ITK007C");
        assert_eq!(read.message_id, D.id);
        assert_eq!(read.nhs_number.as_deref(), Some("9434765919"));
        assert_eq!(read.sender_ods.unwrap().to_string(), "RX1");
        let binary = read.document.resources_of_type("Binary").next().unwrap();
        assert_eq!(itk3::binary_content(binary).unwrap(), pdf);
        // The header carries the sending mailbox and all six handling keys.
        assert_eq!(read.source_endpoint.as_deref(), Some("RX1EDT001"));
        assert_eq!(
            read.handling.local_extension.as_deref(),
            Some("SendDocument-Generic")
        );
        assert!(read.receiver_ods.is_empty(), "GP Connect names no receiver");
    }

    #[test]
    fn a_send_document_passed_on_gets_a_header_of_its_own_per_delivery() {
        let pdf = b"%PDF-1.4 letter".to_vec();
        let m = meta("application/pdf", &pdf);
        let original = render(ReceiverFormat::GpConnect, &m, &pdf, &D)
            .unwrap()
            .bytes;
        let first = itk3::read_message(&original, itk3::Format::Xml).unwrap();
        let again = meta("application/fhir+xml", &original);
        let other = Delivery {
            id: "0190a0b0-0000-7000-8000-000000000003",
            recipient_ods: "A81002",
            ..D
        };
        for format in [ReceiverFormat::GpConnect, ReceiverFormat::Itk3] {
            let out = render(format, &again, &original, &other).unwrap();
            let read = itk3::read_message(&out.bytes, itk3::Format::Xml).unwrap();
            assert_eq!(read.event, "ITK007C", "{format}");
            assert_eq!(read.message_id, other.id, "{format}: the delivery's id");
            assert_ne!(read.message_id, first.message_id);
            assert!(read.receiver_ods.is_empty(), "{format}: no receiver");
            assert_eq!(
                read.document, first.document,
                "{format}: document untouched"
            );
            assert_eq!(read.source_endpoint.as_deref(), Some("RX1EDT001"));
        }
    }

    #[test]
    fn without_a_sending_mailbox_an_itk3_message_cannot_be_rendered() {
        let pdf = b"%PDF-1.4".to_vec();
        let m = meta("application/pdf", &pdf);
        let d = Delivery {
            source_endpoint: None,
            ..D
        };
        let e = render(ReceiverFormat::GpConnect, &m, &pdf, &d).unwrap_err();
        assert!(e.problem.contains("mesh_mailbox"), "{e}");
    }

    #[test]
    fn a_pdf_result_becomes_an_oru_carrying_it() {
        let pdf = b"%PDF-1.4\n\x00\xff|^~\\& report".to_vec();
        let mut m = meta("application/pdf", &pdf);
        m.document_type = DocumentType::OrderResult;
        let r = render(ReceiverFormat::Hl7v2, &m, &pdf, &D).unwrap();
        assert_eq!(r.meta.content_type, "application/hl7-v2");
        let oru = crate::hl7::parse_oru(&r.bytes).unwrap();
        assert_eq!(oru.control_id, D.id);
        assert_eq!(oru.patient.nhs_number.unwrap().to_string(), "9434765919");
        let recipient = oru.recipient.unwrap();
        assert_eq!(recipient.ods_code.to_string(), "A81001");
        assert_eq!(
            recipient.source.path(),
            "PD1-3.10",
            "XON-10, not the numeric XON-3"
        );
        assert!(
            String::from_utf8_lossy(&r.bytes).contains("|2.5\r"),
            "XON-10 is v2.5"
        );
        let ed = oru.results[0].observations[0].encapsulated.clone().unwrap();
        assert_eq!(ed.data_subtype, "PDF");
        assert_eq!(itk3::base64_decode(&ed.data).unwrap(), pdf);
    }

    #[test]
    fn what_cannot_be_rendered_says_why() {
        let pdf = b"%PDF-1.4".to_vec();
        let mut m = meta("application/pdf", &pdf);
        assert!(render(ReceiverFormat::Itk3, &m, &pdf, &D)
            .unwrap_err()
            .problem
            .contains("gp-connect"));
        m.nhs_number = None;
        let e = render(ReceiverFormat::Hl7v2, &m, &pdf, &D).unwrap_err();
        assert!(e.problem.contains("NHS number (PID-3)"), "{e}");
        assert!(render(ReceiverFormat::GpConnect, &m, &pdf, &D)
            .unwrap_err()
            .problem
            .contains("NHS number"));
        assert_eq!(
            render(ReceiverFormat::Original, &m, &pdf, &D)
                .unwrap()
                .bytes,
            pdf
        );
    }
}
