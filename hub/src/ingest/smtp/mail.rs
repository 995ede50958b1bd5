//! From a received mail to a submission: which MIME part is the document, and where its
//! metadata comes from. The rules (also in the README):
//!
//! - Exactly one attachment is the document: FHIR / ITK3 XML or JSON, HL7 v2, PDF or any other
//!   file. The body text is not a document. A part named `edthub.json` is metadata, not a
//!   document.
//! - Metadata, first found wins: the `edthub.json` part (`{"nhs_number", "document_type",
//!   "title", "local_id"}`); tags in the subject (`[nhs:9434765919]`, `[type:discharge-summary]`,
//!   `[ref:EPR-123]`, the rest of the subject being the title); what a structured document says
//!   about itself; the Message-ID header with a short hash of the recipients as the local id
//!   (so a resent mail is recognised, and one sent again to other recipients is not).

use edt_proto::v1;
use edt_transforms::DocumentType;
use mail_parser::{MessageParser, MimeHeaders};

/// Why a mail cannot become a submission; the text goes into a `554 5.6.0` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailError(pub String);

/// Metadata the sender may give in `edthub.json`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    nhs_number: Option<String>,
    document_type: Option<String>,
    title: Option<String>,
    local_id: Option<String>,
}

const METADATA_PART: &str = "edthub.json";

/// The content type the hub files a part under: what its bytes are when they say so (a
/// sender's mail client often labels XML `text/xml` or HL7 `text/plain`), else what the part
/// was labelled.
fn content_type_of(declared: &str, name: Option<&str>, bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF)
        .unwrap_or(bytes.len());
    let head = &bytes[start..bytes.len().min(start + 512)];
    let ext = name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    if head.starts_with(b"%PDF-") {
        return "application/pdf".into();
    }
    if head.starts_with(b"MSH|") || ext.as_deref() == Some("hl7") {
        return "application/hl7-v2".into();
    }
    let text = String::from_utf8_lossy(head);
    if head.starts_with(b"<") && text.contains("http://hl7.org/fhir") {
        return "application/fhir+xml".into();
    }
    if head.starts_with(b"{") && text.contains("\"resourceType\"") {
        return "application/fhir+json".into();
    }
    declared.to_string()
}

/// Subject tags: `[key:value]` (or `key=value`) pulled out, the rest is the title.
fn subject_tags(subject: &str) -> (Vec<(String, String)>, String) {
    let mut tags = Vec::new();
    let mut title = String::new();
    let mut rest = subject;
    while let Some(open) = rest.find('[') {
        let Some(len) = rest[open..].find(']') else {
            break;
        };
        let inner = &rest[open + 1..open + len];
        title.push_str(&rest[..open]);
        // A tag without a value (`[secure]`) is for mail systems, not the title: dropped.
        if let Some((k, v)) = inner.split_once([':', '=']) {
            tags.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        rest = &rest[open + len + 1..];
    }
    title.push_str(rest);
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    (tags, title)
}

fn document_type_named(name: &str) -> Result<DocumentType, MailError> {
    name.trim()
        .parse::<DocumentType>()
        .map_err(|e| MailError(e.to_string()))
}

/// The bytes of a part exactly as the sender attached them. For text parts the parser converts
/// the content to UTF-8; a document's bytes must not change (an HL7 file in Latin-1, an XML
/// file declaring its own encoding), so those are taken from the raw message and only the
/// transfer encoding is undone.
fn part_bytes(message: &mail_parser::Message<'_>, part: &mail_parser::MessagePart<'_>) -> Vec<u8> {
    if !part.is_text() {
        return part.contents().to_vec();
    }
    let raw = message.raw_message();
    let (start, end) = (
        part.raw_body_offset() as usize,
        part.raw_end_offset() as usize,
    );
    let Some(body) = raw.get(start..end.max(start)) else {
        return part.contents().to_vec();
    };
    let decoded = match part.encoding {
        mail_parser::Encoding::Base64 => std::str::from_utf8(body)
            .ok()
            .and_then(|s| edt_transforms::itk3::base64_decode(s).ok()),
        mail_parser::Encoding::QuotedPrintable => {
            mail_parser::decoders::quoted_printable::quoted_printable_decode(body)
        }
        _ => std::str::from_utf8(body).is_err().then(|| body.to_vec()),
    };
    decoded.unwrap_or_else(|| part.contents().to_vec())
}

/// How a part is named in a refusal: the message itself, or its number and file name or type.
fn part_label(index: usize, part: &mail_parser::MessagePart<'_>) -> String {
    if index == 0 {
        return "the message".into();
    }
    let what = part
        .attachment_name()
        .map(|n| n.chars().filter(|c| !c.is_control()).take(80).collect())
        .or_else(|| {
            part.content_type().map(|c| match c.subtype() {
                Some(s) => format!("{}/{}", c.ctype(), s),
                None => c.ctype().to_string(),
            })
        })
        .unwrap_or_else(|| "text/plain".into());
    format!("part {index} ({what})")
}

/// Whether `body` is base64 as RFC 2045 section 6.8 has it: the alphabet, line breaks and
/// spaces, `=` padding only at the end, and whole groups of four.
fn check_base64(body: &[u8]) -> Result<(), String> {
    let mut count = 0usize;
    let mut padding = 0usize;
    for (at, &b) in body.iter().enumerate() {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            b'=' => padding += 1,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => {
                if padding > 0 {
                    return Err("base64 continues after its '=' padding".into());
                }
            }
            _ => {
                let shown = if b.is_ascii_graphic() {
                    format!("'{}'", b as char)
                } else {
                    format!("byte 0x{b:02x}")
                };
                return Err(format!(
                    "the body is declared base64 but is not: {shown} at offset {at} is not a \
                     base64 character"
                ));
            }
        }
        count += 1;
    }
    if padding > 2 {
        return Err("base64 ends with more than two '=' characters".into());
    }
    if !count.is_multiple_of(4) {
        return Err(format!(
            "the base64 body is truncated: {count} characters, not whole groups of four"
        ));
    }
    Ok(())
}

/// MIME defects the parser would read past (it recovers what it can, which is the wrong
/// thing for a clinical document): an unknown Content-Transfer-Encoding, base64 that is not
/// base64 or is cut short, a multipart without a boundary, whose boundary is never used, or
/// that never closes.
fn check_structure(message: &mail_parser::Message<'_>) -> Result<(), MailError> {
    let raw = message.raw_message();
    for (index, part) in message.parts.iter().enumerate() {
        let refuse = |why: String| MailError(format!("{}: {why}", part_label(index, part)));
        let cte = part
            .content_transfer_encoding()
            .map(|c| c.trim().to_ascii_lowercase());
        if let Some(cte) = &cte {
            if !matches!(
                cte.as_str(),
                "7bit" | "8bit" | "binary" | "base64" | "quoted-printable"
            ) {
                return Err(refuse(format!(
                    "unknown Content-Transfer-Encoding \"{}\" (7bit, 8bit, binary, \
                     quoted-printable or base64)",
                    cte.chars()
                        .filter(|c| !c.is_control())
                        .take(40)
                        .collect::<String>()
                )));
            }
        }
        if let Some(ct) = part.content_type() {
            if ct.ctype().eq_ignore_ascii_case("multipart") {
                let kind = format!("multipart/{}", ct.subtype().unwrap_or("mixed"));
                let Some(boundary) = ct.attribute("boundary").filter(|b| !b.is_empty()) else {
                    return Err(refuse(format!("{kind} without a boundary parameter")));
                };
                let delimiter = format!("--{boundary}");
                let closing = format!("--{boundary}--");
                let body = raw
                    .get(part.raw_body_offset() as usize..)
                    .unwrap_or_default();
                let (mut used, mut closed) = (false, false);
                for line in body.split(|b| *b == b'\n') {
                    let line = line.trim_ascii_end();
                    if line == closing.as_bytes() {
                        closed = true;
                        break;
                    }
                    used |= line == delimiter.as_bytes();
                }
                if !used {
                    return Err(refuse(format!(
                        "{kind} declares the boundary \"{boundary}\" but never uses it"
                    )));
                }
                if !closed {
                    return Err(refuse(format!(
                        "{kind} has no closing boundary (\"{closing}\"): the message is cut \
                         short"
                    )));
                }
            }
        }
        // The parser's own idea of the encoding is lost when it gives up decoding a part.
        if cte.as_deref() == Some("base64") && !part.is_multipart() {
            let body = raw
                .get(part.raw_body_offset() as usize..part.raw_end_offset() as usize)
                .unwrap_or_default();
            check_base64(body).map_err(refuse)?;
        }
        if part.is_encoding_problem {
            return Err(refuse("its content cannot be decoded".into()));
        }
    }
    Ok(())
}

/// Builds the submission for a mail from `sender_ods` to `recipients`.
pub fn request_from_mail(
    raw: &[u8],
    sender_ods: &str,
    recipients: &[String],
) -> Result<v1::SubmitDocumentRequest, MailError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| MailError("the message is not a readable MIME message".into()))?;
    check_structure(&message).map_err(|e| MailError(format!("malformed MIME: {}", e.0)))?;
    let mut metadata = Metadata::default();
    let mut documents = Vec::new();
    for part in message.attachments() {
        let name = part.attachment_name();
        if name.is_some_and(|n| n.eq_ignore_ascii_case(METADATA_PART)) {
            metadata = serde_json::from_slice(part.contents())
                .map_err(|e| MailError(format!("{METADATA_PART} cannot be read: {e}")))?;
            continue;
        }
        if part.is_message() || part.is_empty() {
            continue;
        }
        let declared = part
            .content_type()
            .map(|c| match c.subtype() {
                Some(s) => format!("{}/{}", c.ctype(), s).to_ascii_lowercase(),
                None => c.ctype().to_ascii_lowercase(),
            })
            .unwrap_or_else(|| "application/octet-stream".into());
        documents.push((name, declared, part_bytes(&message, part)));
    }
    let (name, declared, bytes) =
        match documents.len() {
            0 => return Err(MailError(
                "no usable attachment: attach the document (PDF, FHIR or ITK3 XML/JSON, HL7 v2)"
                    .into(),
            )),
            1 => documents.remove(0),
            n => {
                let names: Vec<&str> = documents
                    .iter()
                    .map(|(n, _, _)| n.unwrap_or("(unnamed)"))
                    .collect();
                return Err(MailError(format!(
                    "{n} documents attached ({}): send one document per message",
                    names.join(", ")
                )));
            }
        };
    let bytes = &bytes[..];
    let content_type = content_type_of(&declared, name, bytes);
    let (tags, subject_title) = subject_tags(message.subject().unwrap_or(""));
    let tag = |k: &str| {
        tags.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };

    let document_type = match metadata.document_type.or_else(|| tag("type")) {
        Some(t) => document_type_named(&t)?,
        None => edt_transforms::extract::extract(&content_type, bytes)
            .ok()
            .flatten()
            .and_then(|d| d.document_type)
            .unwrap_or(DocumentType::GenericDocument),
    };
    // A Message-ID names the mail, not the document for each recipient: a client that sends
    // the same mail again to recipients refused earlier (452) must not be taken for a resend.
    let local_id = match metadata.local_id.or_else(|| tag("ref")) {
        Some(id) => id,
        None => {
            let mut to = recipients.to_vec();
            to.sort();
            let for_whom = &edt_transforms::sha256_hex(to.join(",").as_bytes())[..8];
            match message.message_id() {
                Some(id) => format!("{id}#{for_whom}"),
                None => format!("{}#{for_whom}", &edt_transforms::sha256_hex(raw)[..32]),
            }
        }
    };
    let title = metadata
        .title
        .or_else(|| (!subject_title.is_empty()).then_some(subject_title));
    Ok(v1::SubmitDocumentRequest {
        sender_ods: sender_ods.to_string(),
        recipient_ods: recipients.to_vec(),
        document_type: crate::wire::document_type_wire(document_type) as i32,
        content_type,
        payload: bytes.to_vec(),
        local_id,
        nhs_number: metadata
            .nhs_number
            .or_else(|| tag("nhs"))
            .unwrap_or_default(),
        file_name: name.unwrap_or_default().to_string(),
        title: title.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(subject: &str, parts: &[(&str, &str, &str)]) -> Vec<u8> {
        let mut m = format!(
            "From: a@trust.nhs.uk\r\nTo: A81001@hub\r\nSubject: {subject}\r\n\
             Message-ID: <m-1@trust.nhs.uk>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nPlease see attached.\r\n"
        );
        for (ctype, name, body) in parts {
            m.push_str(&format!(
                "--b\r\nContent-Type: {ctype}\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                edt_transforms::itk3::base64_encode(body.as_bytes())
            ));
        }
        m.push_str("--b--\r\n");
        m.into_bytes()
    }

    #[test]
    fn pdf_with_subject_tags() {
        let raw = mail(
            "[secure] Discharge letter [nhs:943 476 5919] [type:discharge-summary]",
            &[("application/pdf", "letter.pdf", "%PDF-1.4 body")],
        );
        let r = request_from_mail(&raw, "RX1", &["A81001".into()]).unwrap();
        assert_eq!(r.content_type, "application/pdf");
        assert_eq!(r.payload, b"%PDF-1.4 body");
        assert_eq!(r.nhs_number, "943 476 5919");
        assert_eq!(r.title, "Discharge letter");
        assert_eq!(r.file_name, "letter.pdf");
        assert!(
            r.local_id.starts_with("m-1@trust.nhs.uk#"),
            "{}",
            r.local_id
        );
        let again = request_from_mail(&raw, "RX1", &["A81001".into()]).unwrap();
        assert_eq!(
            again.local_id, r.local_id,
            "the same mail again is a resend"
        );
        let others = request_from_mail(&raw, "RX1", &["A81002".into()]).unwrap();
        assert_ne!(others.local_id, r.local_id, "to other recipients it is not");
        assert_eq!(r.document_type, v1::DocumentType::DischargeSummary as i32);
    }

    #[test]
    fn metadata_part_wins_and_labels_are_corrected() {
        let raw = mail(
            "Results [type:discharge-summary]",
            &[
                ("text/plain", "result.hl7", "MSH|^~\\&|LAB\r"),
                (
                    "application/json",
                    "edthub.json",
                    r#"{"document_type":"order-result","local_id":"LAB-9","title":"FBC"}"#,
                ),
            ],
        );
        let r = request_from_mail(&raw, "RX1", &[]).unwrap();
        assert_eq!(r.content_type, "application/hl7-v2");
        assert_eq!(r.local_id, "LAB-9");
        assert_eq!(r.title, "FBC");
        assert_eq!(r.document_type, v1::DocumentType::OrderResult as i32);
    }

    #[test]
    fn refusals_name_the_problem() {
        let none = request_from_mail(&mail("x", &[]), "RX1", &[]).unwrap_err();
        assert!(none.0.starts_with("no usable attachment"), "{}", none.0);
        let two = request_from_mail(
            &mail(
                "x",
                &[
                    ("application/pdf", "a.pdf", "%PDF-a"),
                    ("application/pdf", "b.pdf", "%PDF-b"),
                ],
            ),
            "RX1",
            &[],
        )
        .unwrap_err();
        assert_eq!(
            two.0,
            "2 documents attached (a.pdf, b.pdf): send one document per message"
        );
        let bad_type = request_from_mail(
            &mail("x [type:letter]", &[("application/pdf", "a.pdf", "%PDF-a")]),
            "RX1",
            &[],
        )
        .unwrap_err();
        assert!(
            bad_type.0.starts_with("unknown document type \"letter\""),
            "{}",
            bad_type.0
        );
        let bad_meta = request_from_mail(
            &mail(
                "x",
                &[
                    ("application/pdf", "a.pdf", "%PDF-a"),
                    ("application/json", "edthub.json", "{\"nhs\":1}"),
                ],
            ),
            "RX1",
            &[],
        )
        .unwrap_err();
        assert!(
            bad_meta.0.starts_with("edthub.json cannot be read"),
            "{}",
            bad_meta.0
        );
    }

    #[test]
    fn text_attachments_keep_their_bytes() {
        // An HL7 result in Latin-1, labelled as text: the bytes must not be re-encoded.
        let hl7: &[u8] = b"MSH|^~\\&|LAB|RX1\rPID|||9434765919^^^NHS^NH||M\xc9NARD\r";
        let raw = format!(
            "From: a@trust.nhs.uk\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
             Content-Disposition: attachment; filename=\"r.hl7\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            edt_transforms::itk3::base64_encode(hl7)
        );
        let r = request_from_mail(raw.as_bytes(), "RX1", &["A81001".into()]).unwrap();
        assert_eq!(r.payload, hl7);
        assert_eq!(r.content_type, "application/hl7-v2");
        let qp = raw.replace("base64", "quoted-printable").replace(
            &edt_transforms::itk3::base64_encode(hl7),
            "MSH|^~\\&|LAB|RX1=0DPID|||9434765919^^^NHS^NH||M=C9NARD=0D",
        );
        let r = request_from_mail(qp.as_bytes(), "RX1", &["A81001".into()]).unwrap();
        assert_eq!(r.payload, hl7);
    }

    #[test]
    fn malformed_mime_is_refused_naming_the_defect() {
        let good = String::from_utf8(mail(
            "x",
            &[("application/pdf", "a.pdf", "%PDF-1.4 a letter")],
        ))
        .unwrap();
        assert!(request_from_mail(good.as_bytes(), "RX1", &[]).is_ok());
        let b64 = edt_transforms::itk3::base64_encode(b"%PDF-1.4 a letter");
        let refused = |raw: String| {
            request_from_mail(raw.as_bytes(), "RX1", &[])
                .expect_err(&raw)
                .0
        };
        let e = refused(good.replace(&b64, "JVBERi0x!!!not*base64"));
        assert!(
            e.starts_with("malformed MIME: part 2 (a.pdf): the body is declared base64 but is not"),
            "{e}"
        );
        let e = refused(good.replace(&b64, &b64[..b64.len() - 3]));
        assert!(
            e.contains("part 2 (a.pdf): the base64 body is truncated"),
            "{e}"
        );
        let e = refused(good.replace("--b--\r\n", ""));
        assert!(
            e.contains("the message: multipart/mixed has no closing boundary"),
            "{e}"
        );
        let e = refused(good.replace("boundary=\"b\"", "boundary=\"other\""));
        assert!(
            e.contains("declares the boundary \"other\" but never uses it"),
            "{e}"
        );
        let e = refused(good.replace("; boundary=\"b\"", ""));
        assert!(
            e.contains("multipart/mixed without a boundary parameter"),
            "{e}"
        );
        let e = refused(good.replace(
            "Content-Transfer-Encoding: base64",
            "Content-Transfer-Encoding: x-uuencode",
        ));
        assert!(
            e.contains("part 2 (a.pdf): unknown Content-Transfer-Encoding \"x-uuencode\""),
            "{e}"
        );
        // Line breaks and padding are base64 as mail clients write it.
        let padded = edt_transforms::itk3::base64_encode(b"%PDF-1.4 ab");
        assert!(padded.ends_with('='));
        let wrapped = format!("{}\r\n{}", &padded[..8], &padded[8..]);
        let ok = good.replace(&b64, &wrapped);
        assert_eq!(
            request_from_mail(ok.as_bytes(), "RX1", &[])
                .unwrap()
                .payload,
            b"%PDF-1.4 ab"
        );
    }

    #[test]
    fn subject_tags_split() {
        let (tags, title) = subject_tags("[secure] A  letter [ref=X-1] for [nhs: 9434765919]");
        assert_eq!(title, "A letter for");
        assert_eq!(
            tags,
            vec![
                ("ref".to_string(), "X-1".to_string()),
                ("nhs".to_string(), "9434765919".to_string())
            ]
        );
    }
}
