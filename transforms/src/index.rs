//! The file-drop index: a small JSON document written beside each delivered document so the
//! receiving system can file it without opening the payload.
//!
//! File names are `<delivery id>.<ext>` for the document and `<delivery id>.json` for the
//! index, so a receiver acknowledges with `<delivery id>.ack`.

use crate::model::DocumentMeta;
use serde::{Deserialize, Serialize};

/// Version of the index format, written into every index file.
pub const INDEX_FORMAT: &str = "edthub-index/1";

/// The index file describing one delivered document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropIndex {
    pub format: String,
    pub delivery_id: String,
    pub recipient_ods: String,
    /// "FA" (For Action) or "FI" (For Information).
    pub recipient_type: String,
    /// Name of the document file in the same folder.
    pub document_file: String,
    #[serde(flatten)]
    pub meta: DocumentMeta,
}

impl DropIndex {
    pub fn new(
        meta: &DocumentMeta,
        delivery_id: &str,
        recipient_ods: &str,
        recipient_type: &str,
    ) -> Self {
        Self {
            format: INDEX_FORMAT.to_string(),
            delivery_id: delivery_id.to_string(),
            recipient_ods: recipient_ods.to_string(),
            recipient_type: recipient_type.to_string(),
            document_file: document_file_name(
                delivery_id,
                &meta.content_type,
                meta.file_name.as_deref(),
            ),
            meta: meta.clone(),
        }
    }

    /// Pretty JSON bytes, newline terminated.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("index serialises");
        v.push(b'\n');
        v
    }
}

/// The document's file name in a drop folder: the delivery id plus an extension taken from the
/// original file name, else from the content type, else `.bin`.
pub fn document_file_name(delivery_id: &str, content_type: &str, original: Option<&str>) -> String {
    let from_name = original
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric()));
    let ext = from_name.unwrap_or_else(|| extension_for(content_type).to_string());
    format!("{delivery_id}.{ext}")
}

/// A file extension for a MIME type.
pub fn extension_for(content_type: &str) -> &'static str {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "application/pdf" => "pdf",
        "application/fhir+xml" | "application/xml" | "text/xml" => "xml",
        "application/fhir+json" | "application/json" => "json",
        "application/hl7-v2" | "x-application/hl7-v2+er7" | "application/edi-hl7" => "hl7",
        "text/plain" => "txt",
        "text/html" => "html",
        "application/rtf" | "text/rtf" => "rtf",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/tiff" => "tiff",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DocumentType;

    fn meta() -> DocumentMeta {
        DocumentMeta {
            message_id: "m1".into(),
            sender_ods: "RX1".into(),
            document_type: DocumentType::DischargeSummary,
            content_type: "application/pdf".into(),
            local_id: "L1".into(),
            nhs_number: Some("9434765919".into()),
            file_name: Some("Letter.PDF".into()),
            title: None,
            payload_size: 3,
            payload_sha256: crate::sha256_hex(b"abc"),
            received_at: "2026-11-25T12:00:00Z".into(),
        }
    }

    #[test]
    fn index_round_trips_and_names_fields() {
        let idx = DropIndex::new(&meta(), "d1", "A81001", "FA");
        let json = idx.to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["message_id"], "m1");
        assert_eq!(v["document_type"], "discharge-summary");
        assert_eq!(v["document_file"], "d1.pdf");
        assert_eq!(v["nhs_number"], "9434765919");
        assert_eq!(
            v["payload_sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(serde_json::from_slice::<DropIndex>(&json).unwrap(), idx);
    }

    #[test]
    fn extensions() {
        assert_eq!(document_file_name("d", "application/pdf", None), "d.pdf");
        assert_eq!(
            document_file_name("d", "application/fhir+xml; charset=utf-8", None),
            "d.xml"
        );
        assert_eq!(
            document_file_name("d", "application/octet-stream", Some("x.../../")),
            "d.bin"
        );
        assert_eq!(
            document_file_name("d", "weird/type", Some("a.RTF")),
            "d.rtf"
        );
    }
}
