//! `edthub submit`: sends a file into the hub, optionally watching its deliveries.

use super::client::{self, status_error};
use super::output::{
    deliveries_summary, delivery_json, print_json, state_name, status_json, time_of,
};
use super::HubArgs;
use edt_proto::v1;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

pub struct SubmitOpts<'a> {
    pub hub: &'a HubArgs,
    pub from: &'a str,
    pub to: &'a [String],
    pub doc_type: &'a str,
    pub file: &'a Path,
    pub content_type: Option<&'a str>,
    pub local_id: Option<&'a str>,
    pub nhs_number: Option<&'a str>,
    pub title: Option<&'a str>,
    pub watch: bool,
    pub json: bool,
}

fn guess_content_type(p: &Path) -> &'static str {
    match p
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("xml") => "application/fhir+xml",
        Some("json") => "application/fhir+json",
        Some("hl7") => "application/hl7-v2",
        Some("txt") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("rtf") => "application/rtf",
        _ => "application/octet-stream",
    }
}

pub async fn submit(o: SubmitOpts<'_>) -> anyhow::Result<ExitCode> {
    let doc_type: edt_transforms::DocumentType = o.doc_type.parse()?;
    let payload = std::fs::read(o.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", o.file.display()))?;
    let mut client = client::submission(o.hub.first()).await?;
    let r = client
        .submit_document(v1::SubmitDocumentRequest {
            sender_ods: o.from.to_string(),
            recipient_ods: o.to.to_vec(),
            document_type: crate::wire::document_type_wire(doc_type) as i32,
            content_type: o
                .content_type
                .unwrap_or_else(|| guess_content_type(o.file))
                .to_string(),
            payload,
            local_id: o
                .local_id
                .map(str::to_string)
                .unwrap_or_else(|| crate::track::new_id().to_string()),
            nhs_number: o.nhs_number.unwrap_or_default().to_string(),
            file_name: o
                .file
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            title: o.title.unwrap_or_default().to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if o.json && !o.watch {
        print_json(&json!({
            "message_id": r.message_id,
            "duplicate": r.duplicate,
            "received_at": time_of(&r.received_at),
            "deliveries": r.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
        }));
    } else if !o.json {
        println!(
            "{} message {}",
            if r.duplicate {
                "duplicate of"
            } else {
                "accepted as"
            },
            r.message_id
        );
        for d in &r.deliveries {
            println!(
                "  {} → {} {}",
                d.recipient_ods,
                d.endpoint,
                state_name(d.state)
            );
        }
    }
    if o.watch {
        let mut tracking = client::tracking(o.hub.first()).await?;
        let mut stream = tracking
            .watch_message(v1::GetMessageRequest {
                message_id: r.message_id.clone(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        while let Some(s) = stream.message().await.map_err(status_error)? {
            if o.json {
                println!("{}", status_json(&s));
            } else {
                println!("  {}: {}", state_name(s.state), deliveries_summary(&s));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
