//! The letter a receiver reads by email: a plain-text and an HTML body built from the
//! document (for an ITK3 / Transfer of Care document, its title and each section's heading and
//! narrative; for a file, a short covering note). The hub puts them in a MIME message with the
//! original attached (its mail builder encodes the headers and names).
//!
//! The narrative is the sender's XHTML: it is reduced to text and escaped again rather than
//! copied into the HTML part, so nothing the sender wrote can act in the reader's mail client.

use crate::fhir::Element;
use crate::itk3;
use crate::model::DocumentMeta;

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
            ..itk3::ReadOptions::default()
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

/// The attachment's file name: the one the sender gave, else one made from the type.
pub fn file_name_of(meta: &DocumentMeta) -> String {
    meta.file_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| crate::index::document_file_name("document", &meta.content_type, None))
}

/// The patient and a table per test: test, value, units, range, flag; then the notes.
fn results_table(r: &crate::hl7::report::Report, text: &mut String, html: &mut String) {
    let mut patient = vec![("Patient", r.patient.clone())];
    if let Some(n) = &r.nhs_number {
        patient.push(("NHS number", n.clone()));
    }
    if !r.date_of_birth.is_empty() {
        patient.push(("Date of birth", r.date_of_birth.clone()));
    }
    text.push_str("\r\n");
    html.push_str("<table>\r\n");
    for (k, v) in patient.iter().filter(|(_, v)| !v.trim().is_empty()) {
        text.push_str(&format!("{k}: {v}\r\n"));
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>\r\n",
            escape_html(k),
            escape_html(v)
        ));
    }
    html.push_str("</table>\r\n");
    const HEAD: [&str; 5] = ["Test", "Value", "Units", "Range", "Flag"];
    for t in &r.tests {
        text.push_str(&format!("\r\n{}\r\n", t.name));
        html.push_str(&format!("<h2>{}</h2>\r\n", escape_html(&t.name)));
        if !t.rows.is_empty() {
            let cells: Vec<[&str; 5]> = t
                .rows
                .iter()
                .map(|x| [x.test.as_str(), &x.value, &x.units, &x.range, &x.flag])
                .collect();
            let width = |i: usize| {
                cells
                    .iter()
                    .map(|c| c[i].chars().count())
                    .chain([HEAD[i].len()])
                    .max()
                    .unwrap_or(0)
            };
            let widths: Vec<usize> = (0..5).map(width).collect();
            let line = |c: [&str; 5]| {
                let mut l = String::new();
                for (i, v) in c.iter().enumerate() {
                    l.push_str(v);
                    if i < 4 {
                        l.push_str(&" ".repeat(widths[i] - v.chars().count() + 2));
                    }
                }
                l.trim_end().to_string()
            };
            text.push_str(&line(HEAD));
            text.push_str("\r\n");
            html.push_str("<table border=\"1\" cellpadding=\"4\">\r\n<tr>");
            for h in HEAD {
                html.push_str(&format!("<th align=\"left\">{h}</th>"));
            }
            html.push_str("</tr>\r\n");
            for c in &cells {
                text.push_str(&line(*c));
                text.push_str("\r\n");
                html.push_str("<tr>");
                for v in c {
                    html.push_str(&format!("<td>{}</td>", escape_html(v)));
                }
                html.push_str("</tr>\r\n");
            }
            html.push_str("</table>\r\n");
        }
        for n in &t.notes {
            text.push_str(&format!("Note: {}\r\n", n.replace('\n', "\r\n")));
            html.push_str(&format!("<p>Note: {}</p>\r\n", escape_html(n)));
        }
    }
}

/// Files to attach besides the document: the PDFs an HL7 v2 result carries (OBX type ED), as
/// (file name, content type, bytes).
pub fn extra_attachments(meta: &DocumentMeta, payload: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    if !crate::extract::is_hl7v2(&meta.content_type) {
        return Vec::new();
    }
    let Some(r) = crate::hl7::report::report(payload) else {
        return Vec::new();
    };
    r.pdfs
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let stem: String = p
                .title
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || c == ' ' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let stem = if stem.trim().is_empty() {
                "report".to_string()
            } else {
                stem.trim().to_string()
            };
            let name = if i == 0 {
                format!("{stem}.pdf")
            } else {
                format!("{stem} {}.pdf", i + 1)
            };
            (name, "application/pdf".to_string(), p.bytes)
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
    let results = crate::extract::is_hl7v2(&meta.content_type)
        .then(|| crate::hl7::report::report(payload))
        .flatten();
    if let Some(r) = &results {
        results_table(r, &mut text, &mut html);
    }
    match &letter {
        _ if results.is_some() => {
            let mut note = format!(
                "The result is attached as sent ({}, {}).",
                file_name_of(meta),
                meta.content_type
            );
            if let Some(r) = &results {
                if !r.pdfs.is_empty() {
                    note.push_str(&format!(
                        " The laboratory's report is attached as {}.",
                        if r.pdfs.len() == 1 {
                            "a PDF".to_string()
                        } else {
                            format!("{} PDFs", r.pdfs.len())
                        }
                    ));
                }
            }
            text.push_str(&format!("\r\n{note}\r\n"));
            html.push_str(&format!("<p>{}</p>\r\n", escape_html(&note)));
        }
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
                file_name_of(meta),
                meta.content_type
            );
            text.push_str(&format!("\r\n{note}\r\n"));
            html.push_str(&format!("<p>{}</p>\r\n", escape_html(&note)));
        }
    }
    html.push_str("</body></html>\r\n");
    (text, html)
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

    #[test]
    fn a_file_gets_a_covering_note() {
        let pdf = b"%PDF-1.4\n\x00\xff binary".to_vec();
        let mut m = meta("application/pdf", &pdf);
        m.file_name = Some("Entlassbrief Zoë.pdf".into());
        let (text, html) = bodies(&m, &pdf);
        assert!(text.contains("Patient NHS number: 9434765919"), "{text}");
        assert!(
            text.contains("The document is attached (Entlassbrief Zoë.pdf, application/pdf)"),
            "{text}"
        );
        assert!(html.contains("Entlassbrief Zoë.pdf"), "{html}");
        assert_eq!(file_name_of(&m), "Entlassbrief Zoë.pdf");
        m.file_name = None;
        assert!(file_name_of(&m).ends_with(".pdf"), "{}", file_name_of(&m));
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
    fn a_result_gets_a_table_and_its_pdf() {
        let oru = include_bytes!("../../tests/fixtures/oru-r01-uk-pdf.hl7");
        let mut m = meta("application/hl7-v2", oru);
        m.document_type = DocumentType::OrderResult;
        let (text, html) = bodies(&m, oru);
        assert!(
            text.contains("Patient: ALEX SAMPLE") || text.contains("Patient: "),
            "{text}"
        );
        assert!(text.contains("NHS number: 9434765919"), "{text}");
        assert!(text.contains("Full blood count"), "{text}");
        assert!(text.contains("Haemoglobin"), "{text}");
        assert!(text.contains("130-170"), "{text}");
        assert!(html.contains("<th align=\"left\">Flag</th>"), "{html}");
        assert!(html.contains("<td>g/L</td>"), "{html}");
        let extra = extra_attachments(&m, oru);
        assert_eq!(extra.len(), 1);
        assert!(extra[0].2.starts_with(b"%PDF-"));
        assert_eq!(extra[0].1, "application/pdf");
    }

    #[test]
    fn text_is_extracted() {
        assert_eq!(
            xhtml_text("<div><p>A &amp; B</p><p>C&#65;<br/>D</p>\n\n\n<p> E </p></div>"),
            "A & B\n\nCA\nD\n\nE"
        );
    }
}
