//! `edthub show`: one message, its deliveries and its timeline; optionally saves its documents.

use super::client::{self, status_error};
use super::nodes::{home_of, node_tags};
use super::output::{
    delivery_json, doc_type_name, event_json, print_json, state_cell, state_name, status_json,
    table, time_of,
};
use super::HubArgs;
use comfy_table::Cell;
use edt_proto::v1;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

/// Saves the original (to `original`) and each routed delivery's rendered document (into the
/// folder `rendered`); returns what was written as (path, format, sha256).
async fn save_documents(
    admin: &client::Admin,
    id: &str,
    status: &v1::MessageStatus,
    rendered: Option<&Path>,
    original: Option<&Path>,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut saved = Vec::new();
    let fetch = |delivery_id: String| {
        let mut admin = admin.clone();
        let message_id = id.to_string();
        async move {
            admin
                .get_document(v1::GetDocumentRequest {
                    message_id,
                    delivery_id,
                })
                .await
                .map_err(status_error)
                .map(|r| r.into_inner())
        }
    };
    if let Some(path) = original {
        let doc = fetch(String::new()).await?;
        std::fs::write(path, &doc.payload)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        saved.push((path.display().to_string(), doc.format, doc.sha256));
    }
    if let Some(dir) = rendered {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        for d in status.deliveries.iter().filter(|d| !d.endpoint.is_empty()) {
            let doc = fetch(d.delivery_id.clone()).await?;
            let path = dir.join(&doc.file_name);
            std::fs::write(&path, &doc.payload)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            saved.push((path.display().to_string(), doc.format, doc.sha256));
        }
    }
    Ok(saved)
}

pub async fn show(
    hub: &HubArgs,
    id: &str,
    json: bool,
    rendered: Option<&Path>,
    original: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let tags = node_tags(hub).await?;
    let mut admin = client::admin(&home_of(hub, &tags, id)?).await?;
    let d = admin
        .get_message(v1::GetMessageRequest {
            message_id: id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let status = d.status.clone().unwrap_or_default();
    // Asked by a delivery id: the message it belongs to.
    let message_id = status
        .message
        .as_ref()
        .map(|m| m.message_id.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| id.trim().to_string());
    let by_delivery = (message_id != id.trim()).then(|| id.trim().to_string());
    let saved = save_documents(&admin, &message_id, &status, rendered, original).await?;
    if json {
        let mut v = status_json(&status);
        if let Some(delivery) = &by_delivery {
            v["asked_for_delivery"] = json!(delivery);
        }
        v["saved"] = saved
            .iter()
            .map(|(path, format, sha256)| json!({"path": path, "format": format, "sha256": sha256}))
            .collect();
        v["all_deliveries"] = d.all_deliveries.iter().map(delivery_json).collect();
        v["timeline"] = d.timeline.iter().map(event_json).collect();
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let m = status.message.clone().unwrap_or_default();
    if let Some(delivery) = &by_delivery {
        println!("Delivery  {delivery} is one of this message's deliveries");
    }
    println!("Message   {}", m.message_id);
    println!(
        "State     {}{}",
        state_name(status.state),
        if status.complete { " (complete)" } else { "" }
    );
    println!("From      {}  local id {}", m.sender_ods, m.local_id);
    println!(
        "Type      {}  {}  {} bytes  sha256 {}",
        doc_type_name(m.document_type),
        m.content_type,
        m.payload_size,
        m.payload_sha256
    );
    if !m.nhs_number.is_empty() {
        println!("Patient   NHS number {}", m.nhs_number);
    }
    println!("Received  {} over {}", time_of(&m.received_at), m.channel);
    let mut t = table(&["DELIVERY", "TO", "ENDPOINT", "STATE", "ATTEMPTS", "DETAIL"]);
    for x in &d.all_deliveries {
        let mut detail = Vec::new();
        if !x.last_error.is_empty() {
            detail.push(format!("last error: {}", x.last_error));
        }
        if !x.ack_code.is_empty() || !x.ack_reason.is_empty() {
            detail.push(format!("ack: {} {}", x.ack_code, x.ack_reason));
        }
        if !x.superseded_by.is_empty() {
            detail.push(format!("replayed as {}", x.superseded_by));
        }
        if !x.replay_of.is_empty() {
            detail.push(format!("replay of {}", x.replay_of));
        }
        t.add_row(vec![
            Cell::new(&x.delivery_id),
            Cell::new(format!("{} ({})", x.recipient_ods, x.recipient_type)),
            Cell::new(&x.endpoint),
            state_cell(x.state),
            Cell::new(x.attempts),
            Cell::new(detail.join("; ")),
        ]);
    }
    println!("{t}");
    let mut t = table(&["AT", "DELIVERY", "EVENT", "CHANGE", "BY", "WHY"]);
    for e in &d.timeline {
        let change = match (e.from_state, e.to_state) {
            (0, 0) => String::new(),
            (0, to) => format!("→ {}", state_name(to)),
            (from, 0) => state_name(from),
            (from, to) => format!("{} → {}", state_name(from), state_name(to)),
        };
        t.add_row(vec![
            time_of(&e.at),
            // The tail of a UUIDv7 is its random part: it tells deliveries apart.
            e.delivery_id
                .chars()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect(),
            e.event.clone(),
            change,
            e.actor.clone(),
            e.reason.clone(),
        ]);
    }
    println!("Timeline\n{t}");
    for (path, format, sha256) in &saved {
        println!("saved {format} document to {path} (sha256 {sha256})");
    }
    Ok(ExitCode::SUCCESS)
}
