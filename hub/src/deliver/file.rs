//! File drop: each endpoint is a folder. A delivery writes the document as
//! `<delivery id>.<ext>` and then its index `<delivery id>.json`; each is written to a hidden
//! temporary name, fsynced, renamed into place, and the folder fsynced, so a receiver that
//! sees an index file also sees the complete document. Receivers pick up by index file and
//! acknowledge with `acks/<delivery id>.ack` (see `acks::file`).
//!
//! An HL7 v2 result given as it was sent (no results-system format on the route) also gets a
//! readable report beside it, `<delivery id>.report.html` (patient, then test, value, units,
//! range and flag), and the PDFs it carries (OBX type ED) as `<delivery id>.report.pdf`,
//! written before the index like the document.
//!
//! The folder is never created here: a missing folder usually means a share that is not
//! mounted, and writing letters to the local disk instead would lose them from view. It is a
//! transient error; the delivery is retried.

use super::{SendError, Sent};
use crate::track::DeliveryRecord;
use edt_transforms::index::DropIndex;
use edt_transforms::DocumentMeta;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Prefix of temporary files; receivers ignore names starting with a dot.
pub const TEMP_PREFIX: &str = ".edthub-tmp-";

/// Writes the document (with `extras`: further files, by name suffix) and its index into
/// `folder` (on the blocking pool).
pub async fn send(
    folder: PathBuf,
    delivery: DeliveryRecord,
    meta: DocumentMeta,
    payload: Vec<u8>,
    extras: Vec<(String, Vec<u8>)>,
) -> Result<Sent, SendError> {
    tokio::task::spawn_blocking(move || write_drop(&folder, &delivery, &meta, &payload, &extras))
        .await
        .map_err(|e| SendError::Transient(format!("file-drop task failed: {e}")))?
}

/// A drop folder.
pub struct FileDrop {
    pub folder: PathBuf,
}

impl super::Transport for FileDrop {
    fn send<'a>(
        &'a self,
        d: &'a DeliveryRecord,
        _m: &'a crate::track::MessageRecord,
        doc: super::Document,
    ) -> futures::future::BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let what = doc.rendered_as.map(|format| {
                format!(
                    "rendered as {format} ({}, {} bytes, sha256 {})",
                    doc.meta.content_type, doc.meta.payload_size, doc.meta.payload_sha256
                )
            });
            let extras = if doc.rendered_as.is_none() {
                readable_report(&doc.meta, &doc.bytes)
            } else {
                Vec::new()
            };
            let mut sent =
                send(self.folder.clone(), d.clone(), doc.meta, doc.bytes, extras).await?;
            if let Some(what) = what {
                sent.detail = format!("{}, {what}", sent.detail);
            }
            Ok(sent)
        })
    }
}

/// For an HL7 v2 result: the readable report (`report.html`) and its PDFs (`report.pdf`, ...),
/// by file name suffix. Nothing for other documents.
pub fn readable_report(meta: &DocumentMeta, payload: &[u8]) -> Vec<(String, Vec<u8>)> {
    if !edt_transforms::extract::is_hl7v2(&meta.content_type)
        || edt_transforms::hl7::report::report(payload).is_none()
    {
        return Vec::new();
    }
    let (_, html) = edt_transforms::email::bodies(meta, payload);
    let mut out = vec![("report.html".to_string(), html.into_bytes())];
    for (i, (_, _, bytes)) in edt_transforms::email::extra_attachments(meta, payload)
        .into_iter()
        .enumerate()
    {
        let name = if i == 0 {
            "report.pdf".to_string()
        } else {
            format!("report-{}.pdf", i + 1)
        };
        out.push((name, bytes));
    }
    out
}

/// The blocking body of [`send`].
pub fn write_drop(
    folder: &Path,
    delivery: &DeliveryRecord,
    meta: &DocumentMeta,
    payload: &[u8],
    extras: &[(String, Vec<u8>)],
) -> Result<Sent, SendError> {
    let meta_dir = fs::metadata(folder).map_err(|e| {
        SendError::Transient(format!(
            "drop folder {} is not usable: {e}",
            folder.display()
        ))
    })?;
    if !meta_dir.is_dir() {
        return Err(SendError::Transient(format!(
            "drop folder {} is not a directory",
            folder.display()
        )));
    }
    let id = delivery.id.to_string();
    let index = DropIndex::new(
        meta,
        &id,
        &delivery.recipient_ods,
        delivery.recipient_type.code(),
    );
    let doc_name = index.document_file.clone();
    let index_name = format!("{id}.json");
    write_atomically(folder, &doc_name, payload)?;
    for (suffix, bytes) in extras {
        write_atomically(folder, &format!("{id}.{suffix}"), bytes)?;
    }
    write_atomically(folder, &index_name, &index.to_json())?;
    File::open(folder)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(folder, "fsync folder", e))?;
    Ok(Sent {
        refused: None,
        transport_id: id,
        detail: format!("written to {}", folder.join(&doc_name).display()),
    })
}

fn write_atomically(folder: &Path, name: &str, bytes: &[u8]) -> Result<(), SendError> {
    // The node's tag in the name: nodes sharing a folder never write (or clean up) each
    // other's temporaries.
    let tmp = folder.join(format!("{}{name}", own_temp_prefix()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, folder.join(name))
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(folder, &format!("write {name}"), e)
    })
}

fn io_err(folder: &Path, what: &str, e: std::io::Error) -> SendError {
    SendError::Transient(format!("{what} in {}: {e}", folder.display()))
}

/// The prefix of this node's temporary files.
fn own_temp_prefix() -> String {
    format!("{TEMP_PREFIX}{:04x}-", crate::track::own_tag())
}

/// Removes temporary files a crash of this node left in `folder`. Returns how many.
pub fn clean_temporaries(folder: &Path) -> usize {
    clean_with_prefix(folder, &own_temp_prefix())
}

fn clean_with_prefix(folder: &Path, prefix: &str) -> usize {
    let Ok(entries) = fs::read_dir(folder) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::{new_id, DeliveryState};
    use edt_transforms::DocumentType;

    fn delivery() -> DeliveryRecord {
        DeliveryRecord {
            id: new_id(),
            message_id: new_id(),
            recipient_ods: "A81001".into(),
            endpoint: Some("e".into()),
            recipient_type: edt_routers::RecipientType::ForAction,
            state: DeliveryState::Pending,
            attempts: 0,
            last_error: None,
            created_ms: 0,
            updated_ms: 0,
            next_attempt_ms: None,
            sent_ms: None,
            replay_of: None,
            superseded_by: None,
            ack_code: None,
            ack_reason: None,
            format: None,
            transport_id: None,
        }
    }

    fn meta(d: &DeliveryRecord, payload: &[u8]) -> DocumentMeta {
        DocumentMeta {
            message_id: d.message_id.to_string(),
            sender_ods: "RX1".into(),
            document_type: DocumentType::DischargeSummary,
            content_type: "application/pdf".into(),
            local_id: "L1".into(),
            nhs_number: None,
            file_name: None,
            title: None,
            payload_size: payload.len() as u64,
            payload_sha256: edt_transforms::sha256_hex(payload),
            received_at: "2026-11-25T00:00:00Z".into(),
        }
    }

    #[test]
    fn writes_document_and_index_and_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = delivery();
        let sent = write_drop(dir.path(), &d, &meta(&d, b"%PDF-1.4"), b"%PDF-1.4", &[]).unwrap();
        assert_eq!(sent.transport_id, d.id.to_string());
        let doc = dir.path().join(format!("{}.pdf", d.id));
        assert_eq!(fs::read(&doc).unwrap(), b"%PDF-1.4");
        let idx: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join(format!("{}.json", d.id))).unwrap())
                .unwrap();
        assert_eq!(idx["message_id"], d.message_id.to_string());
        assert_eq!(idx["recipient_ods"], "A81001");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
        // Writing again (a redelivered work item) replaces, never duplicates.
        write_drop(dir.path(), &d, &meta(&d, b"%PDF-1.4"), b"%PDF-1.4", &[]).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn missing_or_blocked_folder_is_transient_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = delivery();
        let missing = dir.path().join("gone");
        match write_drop(&missing, &d, &meta(&d, b"x"), b"x", &[]) {
            Err(SendError::Transient(e)) => assert!(e.contains("gone"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(!missing.exists(), "the folder is not created");
        let file_in_the_way = dir.path().join("blocked");
        fs::write(&file_in_the_way, b"").unwrap();
        assert!(matches!(
            write_drop(&file_in_the_way, &d, &meta(&d, b"x"), b"x", &[]),
            Err(SendError::Transient(_))
        ));
    }

    #[test]
    fn temporaries_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(format!("{}x.pdf", own_temp_prefix())),
            b"half",
        )
        .unwrap();
        fs::write(
            dir.path().join(format!("{TEMP_PREFIX}ffff-y.pdf")),
            b"other node",
        )
        .unwrap();
        fs::write(dir.path().join("keep.json"), b"{}").unwrap();
        assert_eq!(clean_temporaries(dir.path()), 1);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "another node's is kept"
        );
    }
}
