//! File drop: each endpoint is a folder. A delivery writes the document as
//! `<delivery id>.<ext>` and its index `<delivery id>.json`: both are written to hidden
//! temporary names, synced, renamed into place (the document first), and the folder synced, so
//! a receiver that sees an index file also sees the complete document. The syncs are shared
//! with concurrent deliveries (see [`crate::durable::FileSync`]). Receivers pick up by index
//! file and acknowledge with `acks/<delivery id>.ack` (see `acks::file`).
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
use crate::durable::{Durable, FileSync};
use crate::track::DeliveryRecord;
use edt_transforms::index::DropIndex;
use edt_transforms::DocumentMeta;
use std::fs;
use std::path::{Path, PathBuf};

/// Prefix of temporary files; receivers ignore names starting with a dot.
pub const TEMP_PREFIX: &str = ".edthub-tmp-";

/// A drop folder, and the syncer that makes its files durable with other deliveries'.
pub struct FileDrop<'a> {
    pub folder: PathBuf,
    pub files: &'a FileSync,
}

impl super::Transport for FileDrop<'_> {
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
                write_drop(self.files, &self.folder, d, &doc.meta, &doc.bytes, &extras).await?;
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

/// Writes the document (with `extras`: further files, by name suffix) and its index into
/// `folder`: all to temporaries, synced (in one round with concurrent deliveries), renamed
/// into place (the index last), and the folder synced.
pub async fn write_drop(
    files: &FileSync,
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
    let mut contents: Vec<(String, &[u8])> = vec![(doc_name.clone(), payload)];
    for (suffix, bytes) in extras {
        contents.push((format!("{id}.{suffix}"), bytes));
    }
    let index_json = index.to_json();
    contents.push((index_name, index_json.as_ref()));
    let temps: Vec<(PathBuf, PathBuf)> = contents
        .iter()
        .map(|(name, _)| (temp_path(folder, name), folder.join(name)))
        .collect();
    let remove_temps = || {
        for (tmp, _) in &temps {
            let _ = fs::remove_file(tmp);
        }
    };
    let written = contents
        .iter()
        .zip(&temps)
        .try_for_each(|((name, bytes), (tmp, _))| {
            fs::write(tmp, bytes).map_err(|e| io_err(folder, &format!("write {name}"), e))
        });
    if let Err(e) = written {
        remove_temps();
        return Err(e);
    }
    // The data is on disk before either name appears: a receiver that sees an index file
    // also sees the whole document, after a crash too.
    let data = Durable {
        files: temps.iter().map(|(tmp, _)| tmp.clone()).collect(),
        dirs: Vec::new(),
    };
    if let Err(e) = files.sync(data).await {
        remove_temps();
        return Err(io_err(folder, "sync", e));
    }
    for (tmp, name) in &temps {
        if let Err(e) = fs::rename(tmp, name) {
            remove_temps();
            return Err(io_err(folder, "rename", e));
        }
    }
    files
        .sync(Durable::dir(folder))
        .await
        .map_err(|e| io_err(folder, "sync folder", e))?;
    Ok(Sent {
        refused: None,
        transport_id: id,
        detail: format!("written to {}", folder.join(&doc_name).display()),
    })
}

/// A temporary name for `name` in `folder`. The node's tag is in it: nodes sharing a folder
/// never write (or clean up) each other's temporaries.
fn temp_path(folder: &Path, name: &str) -> PathBuf {
    folder.join(format!("{}{name}", own_temp_prefix()))
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
    use crate::track::new_id;
    use edt_transforms::DocumentType;

    fn delivery() -> DeliveryRecord {
        DeliveryRecord {
            endpoint: Some("e".into()),
            ..DeliveryRecord::new(new_id(), new_id(), "A81001".into(), 0)
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

    #[tokio::test]
    async fn writes_document_and_index_and_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = delivery();
        let files = FileSync::start();
        let sent = write_drop(
            &files,
            dir.path(),
            &d,
            &meta(&d, b"%PDF-1.4"),
            b"%PDF-1.4",
            &[],
        )
        .await
        .unwrap();
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
        write_drop(
            &files,
            dir.path(),
            &d,
            &meta(&d, b"%PDF-1.4"),
            b"%PDF-1.4",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[tokio::test]
    async fn missing_or_blocked_folder_is_transient_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = delivery();
        let files = FileSync::start();
        let missing = dir.path().join("gone");
        match write_drop(&files, &missing, &d, &meta(&d, b"x"), b"x", &[]).await {
            Err(SendError::Transient(e)) => assert!(e.contains("gone"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(!missing.exists(), "the folder is not created");
        let file_in_the_way = dir.path().join("blocked");
        fs::write(&file_in_the_way, b"").unwrap();
        assert!(matches!(
            write_drop(&files, &file_in_the_way, &d, &meta(&d, b"x"), b"x", &[]).await,
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
