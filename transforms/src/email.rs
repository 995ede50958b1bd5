//! The letter a receiver reads by email: a MIME message with a plain-text and an HTML part
//! built from the document (for an ITK3 / Transfer of Care document, its title and each
//! section's heading and narrative; for a file, a short covering note), and the original
//! attached.
//!
//! The narrative is the sender's XHTML: it is reduced to text and escaped again rather than
//! copied into the HTML part, so nothing the sender wrote can act in the reader's mail client.

use crate::fhir::Element;
use crate::itk3;
use crate::model::DocumentMeta;

/// Addressing and identity of the email.
#[derive(Debug, Clone)]
pub struct EmailParams<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    /// `<id@domain>`, linking the email back to its delivery.
    pub message_id: &'a str,
    /// RFC 5322 date, e.g. `Wed, 25 Nov 2026 09:00:00 +0000`.
    pub date: &'a str,
}

/// Something that must not go into a mail header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("email header {header}: {problem}")]
pub struct EmailError {
    pub header: &'static str,
    pub problem: String,
}

/// One heading and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    pub text: String,
}

/// The readable content of a document: a title and its sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub title: String,
    pub sections: Vec<Section>,
}

/// Text of an XHTML fragment: tags dropped, block ends as line breaks, entities decoded,
/// runs of blank lines collapsed.
pub fn xhtml_text(xhtml: &str) -> String {
    let mut out = String::new();
    let mut rest = xhtml;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let Some(gt) = rest[lt..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[lt + 1..lt + gt]
            .trim_start_matches('/')
            .to_ascii_lowercase();
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if matches!(
            name.as_str(),
            "br" | "p" | "div" | "tr" | "li" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table"
        ) {
            out.push('\n');
        } else if matches!(name.as_str(), "td" | "th") {
            out.push(' ');
        }
        rest = &rest[lt + gt + 1..];
    }
    out.push_str(rest);
    let decoded = decode_entities(&out);
    let mut lines: Vec<String> = Vec::new();
    for line in decoded.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() && lines.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let name = &after[..e];
            match name {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => name
                    .strip_prefix("#x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            }
        });
        match (decoded, end) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn sections_of(parent: &Element, depth: usize, out: &mut Vec<Section>) {
    for s in parent.children_named("section") {
        let text = s
            .child("text")
            .and_then(|t| t.child("div"))
            .and_then(|d| d.value())
            .map(xhtml_text)
            .unwrap_or_default();
        let code = s.child("code");
        let title = s
            .child_value("title")
            .or_else(|| code.and_then(|c| c.child_value("text")))
            .or_else(|| {
                code.and_then(|c| c.child("coding"))
                    .and_then(|c| c.child_value("display"))
            })
            .unwrap_or("")
            .to_string();
        out.push(Section { title, text });
        if depth < 8 {
            sections_of(s, depth + 1, out);
        }
    }
}

/// The readable content of an ITK3 message or FHIR document (`None` for other content).
pub fn letter_of(content_type: &str, payload: &[u8]) -> Option<Letter> {
    let format = crate::extract::fhir_format(content_type)?;
    let m = itk3::read_message_with(
        payload,
        format,
        itk3::ReadOptions {
            lenient_nhs_number: true,
            skip_attachments: true,
        },
    )
    .ok()?;
    let composition = m.document.first_resource("Composition")?;
    let mut sections = Vec::new();
    sections_of(composition, 0, &mut sections);
    Some(Letter {
        title: composition
            .child_value("title")
            .map(str::to_string)
            .or(m.title)
            .unwrap_or_default(),
        sections,
    })
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn header_value(header: &'static str, v: &str) -> Result<String, EmailError> {
    if v.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        return Err(EmailError {
            header,
            problem: "must not contain line breaks".into(),
        });
    }
    if v.is_ascii() {
        return Ok(v.to_string());
    }
    // RFC 2047 encoded words, each under the 75-character limit, split on characters.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in v.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    Ok(words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", itk3::base64_encode(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n "))
}

fn base64_lines(bytes: &[u8]) -> String {
    let b64 = itk3::base64_encode(bytes);
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 * 2 + 2);
    for line in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push_str("\r\n");
    }
    out
}

fn quoted_file_name(meta: &DocumentMeta) -> String {
    let name = meta
        .file_name
        .clone()
        .unwrap_or_else(|| crate::index::document_file_name("document", &meta.content_type, None));
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The plain-text and HTML bodies of the letter for `meta` / `payload`.
pub fn bodies(meta: &DocumentMeta, payload: &[u8]) -> (String, String) {
    let letter = letter_of(&meta.content_type, payload);
    let title = letter
        .as_ref()
        .map(|l| l.title.clone())
        .filter(|t| !t.is_empty())
        .or_else(|| meta.title.clone())
        .unwrap_or_else(|| meta.document_type.to_string());
    let mut facts = vec![
        ("Document", meta.document_type.to_string()),
        ("From", meta.sender_ods.clone()),
    ];
    if let Some(n) = &meta.nhs_number {
        facts.push(("Patient NHS number", n.clone()));
    }
    facts.push(("Received", meta.received_at.clone()));
    facts.push(("Message id", meta.message_id.clone()));
    let mut text = format!("{title}\r\n\r\n");
    let mut html = format!(
        "<!DOCTYPE html>\r\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head><body>\r\n<h1>{t}</h1>\r\n<table>\r\n",
        t = escape_html(&title)
    );
    for (k, v) in &facts {
        text.push_str(&format!("{k}: {v}\r\n"));
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>\r\n",
            escape_html(k),
            escape_html(v)
        ));
    }
    html.push_str("</table>\r\n");
    match &letter {
        Some(l) => {
            for s in &l.sections {
                text.push_str(&format!("\r\n{}\r\n", s.title));
                if !s.text.is_empty() {
                    text.push_str(&s.text.replace('\n', "\r\n"));
                    text.push_str("\r\n");
                }
                html.push_str(&format!("<h2>{}</h2>\r\n", escape_html(&s.title)));
                for para in s.text.split('\n').filter(|p| !p.is_empty()) {
                    html.push_str(&format!("<p>{}</p>\r\n", escape_html(para)));
                }
            }
        }
        None => {
            let note = format!(
                "The document is attached ({}, {}).",
                quoted_file_name(meta),
                meta.content_type
            );
            text.push_str(&format!("\r\n{note}\r\n"));
            html.push_str(&format!("<p>{}</p>\r\n", escape_html(&note)));
        }
    }
    html.push_str("</body></html>\r\n");
    (text, html)
}

/// The whole email (RFC 5322, CRLF line ends): the letter in plain text and HTML, and the
/// original document attached.
pub fn render_email(
    meta: &DocumentMeta,
    payload: &[u8],
    p: &EmailParams<'_>,
) -> Result<Vec<u8>, EmailError> {
    let (text, html) = bodies(meta, payload);
    // Boundaries that cannot occur in base64 content (they contain `=_`).
    let seed = &crate::sha256_hex(p.message_id.as_bytes())[..16];
    let mixed = format!("=_edthub_mixed_{seed}");
    let alt = format!("=_edthub_alt_{seed}");
    let mut m = String::new();
    m.push_str(&format!("From: {}\r\n", header_value("From", p.from)?));
    m.push_str(&format!("To: {}\r\n", header_value("To", p.to)?));
    m.push_str(&format!(
        "Subject: {}\r\n",
        header_value("Subject", p.subject)?
    ));
    m.push_str(&format!("Date: {}\r\n", header_value("Date", p.date)?));
    m.push_str(&format!(
        "Message-ID: {}\r\n",
        header_value("Message-ID", p.message_id)?
    ));
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{mixed}\"\r\n\r\n"
    ));
    m.push_str(&format!("--{mixed}\r\n"));
    m.push_str(&format!(
        "Content-Type: multipart/alternative; boundary=\"{alt}\"\r\n\r\n"
    ));
    for (ct, body) in [("text/plain", &text), ("text/html", &html)] {
        m.push_str(&format!("--{alt}\r\n"));
        m.push_str(&format!("Content-Type: {ct}; charset=utf-8\r\n"));
        m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        m.push_str(&base64_lines(body.as_bytes()));
    }
    m.push_str(&format!("--{alt}--\r\n"));
    let name = quoted_file_name(meta);
    let ct = header_value("Content-Type", &meta.content_type)?;
    m.push_str(&format!("--{mixed}\r\n"));
    m.push_str(&format!("Content-Type: {ct}; name=\"{name}\"\r\n"));
    m.push_str(&format!(
        "Content-Disposition: attachment; filename=\"{name}\"\r\n"
    ));
    m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    m.push_str(&base64_lines(payload));
    m.push_str(&format!("--{mixed}--\r\n"));
    Ok(m.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DocumentType;

    fn meta(content_type: &str, payload: &[u8]) -> DocumentMeta {
        DocumentMeta {
            message_id: "m-1".into(),
            sender_ods: "RX1".into(),
            document_type: DocumentType::DischargeSummary,
            content_type: content_type.into(),
            local_id: "L1".into(),
            nhs_number: Some("9434765919".into()),
            file_name: Some("letter \"final\".pdf".into()),
            title: Some("Discharge summary".into()),
            payload_size: payload.len() as u64,
            payload_sha256: crate::sha256_hex(payload),
            received_at: "2026-11-25T09:00:00Z".into(),
        }
    }

    const P: EmailParams<'static> = EmailParams {
        from: "edthub@trust.nhs.net",
        to: "a81001@nhs.net",
        subject: "Discharge summary — 9434765919",
        message_id: "<d-1@edthub>",
        date: "Wed, 25 Nov 2026 09:00:00 +0000",
    };

    /// The decoded body of the part whose headers contain `marker`.
    fn part(mail: &str, marker: &str) -> Vec<u8> {
        let at = mail.find(marker).expect(marker);
        let body_start = at + mail[at..].find("\r\n\r\n").unwrap() + 4;
        let body_end = body_start + mail[body_start..].find("--").unwrap();
        let b64: String = mail[body_start..body_end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        itk3::base64_decode(&b64).unwrap()
    }

    #[test]
    fn a_file_is_attached_under_a_covering_note() {
        let pdf = b"%PDF-1.4\n\x00\xff binary".to_vec();
        let mail =
            String::from_utf8(render_email(&meta("application/pdf", &pdf), &pdf, &P).unwrap())
                .unwrap();
        assert!(mail.contains("Subject: =?UTF-8?B?"), "{mail}");
        assert!(mail.contains("Message-ID: <d-1@edthub>\r\n"));
        assert_eq!(part(&mail, "Content-Type: application/pdf"), pdf);
        assert!(mail.contains("filename=\"letter _final_.pdf\""));
        let text = String::from_utf8(part(&mail, "Content-Type: text/plain")).unwrap();
        assert!(text.contains("Patient NHS number: 9434765919"), "{text}");
        assert!(text.contains("The document is attached"), "{text}");
        assert!(mail.lines().all(|l| l.len() <= 998));
    }

    #[test]
    fn a_document_becomes_a_readable_letter_and_its_markup_stays_inert() {
        let fhir = crate::fhir::parse_xml(include_bytes!(
            "../tests/data/fhir/gpconnect-senddocument-consultation-report.xml"
        ))
        .unwrap();
        let xml = crate::fhir::to_xml(&fhir);
        let title = "<section><title value=\"Consultation report\"/>";
        assert!(xml.contains(title));
        let xml = xml.replacen(
            title,
            &format!(
                "{title}<text><status value=\"generated\"/><div xmlns=\"http://www.w3.org/1999/xhtml\">\
                 <p>Take &lt;script&gt;alert(1)&lt;/script&gt; twice daily</p></div></text>"
            ),
            1,
        );
        let m = meta("application/fhir+xml", xml.as_bytes());
        let (text, html) = bodies(&m, xml.as_bytes());
        assert!(text.contains("twice daily"), "{text}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("<h2>"), "{html}");
    }

    #[test]
    fn header_injection_is_refused_and_text_is_extracted() {
        let p = EmailParams {
            subject: "hi\r\nBcc: someone@else",
            ..P
        };
        let e = render_email(&meta("application/pdf", b"x"), b"x", &p).unwrap_err();
        assert_eq!(e.header, "Subject");
        assert_eq!(
            xhtml_text("<div><p>A &amp; B</p><p>C&#65;<br/>D</p>\n\n\n<p> E </p></div>"),
            "A & B\n\nCA\nD\n\nE"
        );
    }
}
