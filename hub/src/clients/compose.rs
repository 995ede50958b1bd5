//! One MIME builder for every mail the hub writes: letters to receivers (`deliver::smtp`) and
//! notices to senders (`smtp::notice`). lettre's builder does the encoding, so a non-ASCII
//! display name is an RFC 2047 word beside a readable address, a non-ASCII subject is RFC 2047
//! words, and a non-ASCII file name is an RFC 2231 parameter. The rules every mail follows
//! live here too: `[secure]` at the head of the subject for a recipient outside the secure
//! domains, no line breaks in any header, the attachment base64 so its bytes arrive unchanged.

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use std::time::{Duration, SystemTime};

/// Who, what and which: the headers of one mail.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    /// `address` or `Display Name <address>`.
    pub from: &'a str,
    pub to: &'a str,
    /// The subject without `[secure]`; `secure` adds it.
    pub subject: &'a str,
    /// Mark the subject `[secure]` (NHSmail encrypts mail so marked).
    pub secure: bool,
    /// `<id@domain>`.
    pub message_id: &'a str,
    /// When, in ms since the epoch.
    pub date_ms: u64,
    /// `<id@domain>` of the mail this one answers.
    pub in_reply_to: Option<&'a str>,
}

/// The body of a mail.
#[derive(Debug, Clone)]
pub enum Content<'a> {
    /// A letter to a receiver: plain text and HTML alternatives, and the document attached.
    Letter {
        text: String,
        html: String,
        file_name: &'a str,
        content_type: &'a str,
        bytes: &'a [u8],
        /// Further files: (file name, content type, bytes), e.g. the PDF an HL7 v2 result
        /// carries.
        extra: &'a [(String, String, Vec<u8>)],
    },
    /// A notice to a sender: plain text.
    Notice { text: String },
}

/// A mailbox (`address` or `Name <address>`) from configuration or the directory.
pub fn mailbox(value: &str, what: &str) -> Result<Mailbox, String> {
    value
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| format!("{what} {value:?} is not a mail address: {e}"))
}

/// The subject as sent: `[secure] ` first where the recipient needs it.
pub fn subject(text: &str, secure: bool) -> String {
    if secure {
        format!("[secure] {text}")
    } else {
        text.to_string()
    }
}

/// The whole mail (RFC 5322, CRLF line ends).
pub fn build(h: &Headers<'_>, content: Content<'_>) -> Result<Vec<u8>, String> {
    for (name, value) in [
        ("From", h.from),
        ("To", h.to),
        ("Subject", h.subject),
        ("Message-ID", h.message_id),
    ] {
        if value.contains(['\r', '\n', '\0']) {
            return Err(format!("email header {name}: must not contain line breaks"));
        }
    }
    let mut builder = lettre::Message::builder()
        .from(mailbox(h.from, "the From address")?)
        .to(mailbox(h.to, "the To address")?)
        .subject(subject(h.subject, h.secure))
        .date(SystemTime::UNIX_EPOCH + Duration::from_millis(h.date_ms))
        .message_id(Some(h.message_id.to_string()));
    if let Some(id) = h.in_reply_to {
        builder = builder.in_reply_to(id.to_string());
    }
    let message = match content {
        Content::Notice { text } => builder.singlepart(SinglePart::plain(text)),
        Content::Letter {
            text,
            html,
            file_name,
            content_type,
            bytes,
            extra,
        } => {
            let part = |name: &str, content_type: &str, bytes: &[u8]| {
                let content_type = ContentType::parse(content_type)
                    .unwrap_or_else(|_| ContentType::parse("application/octet-stream").unwrap());
                Body::new_with_encoding(bytes.to_vec(), ContentTransferEncoding::Base64)
                    .map(|body| Attachment::new(name.to_string()).body(body, content_type))
                    .map_err(|_| "the attachment cannot be base64-encoded".to_string())
            };
            let mut mixed = MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(text, html))
                .singlepart(part(file_name, content_type, bytes)?);
            for (name, content_type, bytes) in extra {
                mixed = mixed.singlepart(part(name, content_type, bytes)?);
            }
            builder.multipart(mixed)
        }
    }
    .map_err(|e| e.to_string())?;
    Ok(message.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Headers<'static> {
        Headers {
            from: "Hôpital Général EDT <edthub@trust.nhs.net>",
            to: "Dr Zoë Åström <a81001@nhs.net>",
            subject: "Discharge summary — Zoë",
            secure: true,
            message_id: "<d-1@edthub>",
            date_ms: 0,
            in_reply_to: Some("<m-1@trust>"),
        }
    }

    #[test]
    fn non_ascii_names_keep_their_addresses() {
        let pdf = b"%PDF-1.4\r\x00\xff binary\rbare CR".to_vec();
        let mail = build(
            &headers(),
            Content::Letter {
                text: "Letter\nfor Zoë".into(),
                html: "<p>Letter</p>".into(),
                file_name: "Entlassbrief Zoë Müller.pdf",
                content_type: "application/pdf",
                bytes: &pdf,
                extra: &[],
            },
        )
        .unwrap();
        let text = String::from_utf8(mail.clone()).unwrap();
        assert!(text.is_ascii(), "{text}");
        assert!(text.lines().all(|l| l.len() <= 998));
        assert!(text.contains("<edthub@trust.nhs.net>"), "{text}");
        assert!(text.contains("<a81001@nhs.net>"), "{text}");
        assert!(text.contains("filename*"), "RFC 2231: {text}");
        assert!(!text.contains("filename=\"Entlassbrief Zo_"), "{text}");
        assert!(
            text.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000"),
            "{text}"
        );
        assert!(text.contains("In-Reply-To: <m-1@trust>"), "{text}");
        let m = mail_parser::MessageParser::default().parse(&mail).unwrap();
        assert_eq!(m.subject(), Some("[secure] Discharge summary — Zoë"));
        let from = m.from().and_then(|a| a.first()).unwrap();
        assert_eq!(from.name(), Some("Hôpital Général EDT"));
        assert_eq!(from.address(), Some("edthub@trust.nhs.net"));
        let attached: Vec<_> = m.attachments().collect();
        assert_eq!(attached.len(), 1);
        assert_eq!(attached[0].contents(), &pdf[..]);
        use mail_parser::MimeHeaders;
        assert_eq!(
            attached[0].attachment_name(),
            Some("Entlassbrief Zoë Müller.pdf")
        );
        assert_eq!(m.body_text(0).as_deref(), Some("Letter\r\nfor Zoë"));
    }

    #[test]
    fn line_breaks_in_headers_are_refused() {
        let h = Headers {
            subject: "hi\r\nBcc: someone@else",
            ..headers()
        };
        let e = build(&h, Content::Notice { text: "x".into() }).unwrap_err();
        assert!(e.starts_with("email header Subject"), "{e}");
        let h = Headers {
            secure: false,
            ..headers()
        };
        let mail = build(&h, Content::Notice { text: "x".into() }).unwrap();
        let m = mail_parser::MessageParser::default().parse(&mail).unwrap();
        assert_eq!(m.subject(), Some("Discharge summary — Zoë"));
        assert!(mailbox("not an address", "x").is_err());
    }
}
