//! Does a document's content match its label? A PDF starts `%PDF-`, a PNG with its eight-byte
//! signature, a Word document is a ZIP or an OLE compound file, and so on. A receiver files a
//! document by its type, so "hello world" labelled `application/pdf` must be refused at the
//! door, not delivered as a `.pdf` no viewer can open.
//!
//! Structured types (FHIR, HL7 v2) are read in full by [`crate::extract`], which checks far
//! more than a signature; types this module does not name are taken as labelled.

/// The content does not match its declared type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is labelled {content_type} but {problem} (ITK3 {code})")]
pub struct ContentMismatch {
    pub content_type: String,
    /// What the bytes are not, e.g. "does not start with %PDF-".
    pub problem: String,
    /// The ITK3 response code a receiver would answer with: 20009 Payload validation failure.
    pub code: u16,
}

const PAYLOAD_VALIDATION_FAILURE: u16 = 20009;
const ZIP: &[u8] = b"PK\x03\x04";
const OLE: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

fn base_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// What the start of a document of this type must look like, as the alternatives allowed and
/// a description for the refusal; `None` for types without a signature check here.
fn signatures(base: &str) -> Option<(&'static [&'static [u8]], &'static str)> {
    Some(match base {
        "application/pdf" => (&[b"%PDF-"], "does not start with %PDF-"),
        "application/rtf" | "text/rtf" => (&[b"{\\rtf"], "does not start with {\\rtf"),
        "application/zip" | "application/x-zip-compressed" => (&[ZIP], "is not a ZIP archive"),
        "application/msword" | "application/vnd.ms-excel" | "application/vnd.ms-powerpoint" => (
            &[OLE, ZIP],
            "is not an Office document (neither OLE compound file nor ZIP)",
        ),
        b if b.starts_with("application/vnd.openxmlformats-officedocument.")
            || b.starts_with("application/vnd.oasis.opendocument.") =>
        {
            (
                &[ZIP],
                "is not an Office Open XML / OpenDocument file (not a ZIP archive)",
            )
        }
        "image/png" => (
            &[b"\x89PNG\r\n\x1a\n"],
            "does not start with the PNG signature",
        ),
        "image/jpeg" | "image/jpg" => (&[b"\xFF\xD8\xFF"], "does not start with a JPEG SOI marker"),
        "image/gif" => (
            &[b"GIF87a", b"GIF89a"],
            "does not start with GIF87a or GIF89a",
        ),
        "image/tiff" => (
            &[b"II*\x00", b"MM\x00*"],
            "does not start with a TIFF header",
        ),
        "image/bmp" => (&[b"BM"], "does not start with BM"),
        _ => return None,
    })
}

fn mismatch(content_type: &str, problem: impl Into<String>) -> ContentMismatch {
    ContentMismatch {
        content_type: content_type.to_string(),
        problem: problem.into(),
        code: PAYLOAD_VALIDATION_FAILURE,
    }
}

/// Checks that `bytes` look like what `content_type` says they are.
pub fn check(content_type: &str, bytes: &[u8]) -> Result<(), ContentMismatch> {
    if crate::extract::fhir_format(content_type).is_some() || crate::extract::is_hl7v2(content_type)
    {
        // Read in full by `extract`.
        return Ok(());
    }
    let base = base_type(content_type);
    if let Some((allowed, problem)) = signatures(&base) {
        // PDF readers accept the header anywhere in the first kilobyte (after junk some
        // generators write); every other signature is at offset 0.
        let found = if base == "application/pdf" {
            let head = &bytes[..bytes.len().min(1024)];
            head.windows(5).any(|w| w == b"%PDF-")
        } else {
            allowed.iter().any(|sig| bytes.starts_with(sig))
        };
        return if found {
            Ok(())
        } else {
            Err(mismatch(content_type, problem))
        };
    }
    if base == "application/xml" || base == "text/xml" || base.ends_with("+xml") {
        let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let first = text.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'<') {
            return Err(mismatch(content_type, "does not start with an XML tag"));
        }
        return Ok(());
    }
    if base == "application/json" || base.ends_with("+json") {
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
            return Err(mismatch(content_type, "is not well-formed JSON"));
        }
        return Ok(());
    }
    if base.starts_with("text/") {
        let head = &bytes[..bytes.len().min(64 * 1024)];
        if head.contains(&0) {
            return Err(mismatch(
                content_type,
                "holds NUL bytes, so it is binary, not text",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_named_type_is_checked_by_its_signature() {
        let good: &[(&str, &[u8])] = &[
            ("application/pdf", b"%PDF-1.4\n..."),
            ("application/pdf; name=x.pdf", b"\r\n%PDF-1.7"),
            ("text/rtf", b"{\\rtf1\\ansi hello}"),
            (
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                b"PK\x03\x04rest",
            ),
            ("application/msword", b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1..."),
            ("image/png", b"\x89PNG\r\n\x1a\n...."),
            ("image/jpeg", b"\xFF\xD8\xFF\xE0"),
            ("image/tiff", b"II*\x00"),
            ("text/plain", b"Dear Dr Smith"),
            ("application/xml", b"\xEF\xBB\xBF <a/>"),
            ("application/json", b"{\"a\":1}"),
            ("application/octet-stream", b"\x00\x01"),
        ];
        for (ct, bytes) in good {
            assert_eq!(check(ct, bytes), Ok(()), "{ct}");
        }
        let bad: &[(&str, &[u8], &str)] = &[
            ("application/pdf", b"hello world", "%PDF-"),
            ("text/rtf", b"plain", "{\\rtf"),
            (
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                b"%PDF-1.4",
                "ZIP",
            ),
            ("image/png", b"\xFF\xD8\xFF\xE0", "PNG"),
            ("image/jpeg", b"\x89PNG\r\n\x1a\n", "JPEG"),
            ("text/plain", b"%PDF-1.4\n\x00\x01", "NUL"),
            ("application/xml", b"hello", "XML"),
            ("application/json", b"{", "JSON"),
        ];
        for (ct, bytes, words) in bad {
            let e = check(ct, bytes).unwrap_err();
            assert!(e.to_string().contains(words), "{ct}: {e}");
            assert!(e.to_string().contains(ct), "names the label: {e}");
            assert_eq!(e.code, 20009);
        }
    }

    proptest! {
        #[test]
        fn a_pdf_label_on_bytes_without_the_header_is_always_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048)
        ) {
            let has = bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-");
            prop_assert_eq!(check("application/pdf", &bytes).is_ok(), has);
        }
    }
}
