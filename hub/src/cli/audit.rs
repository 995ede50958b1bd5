//! `edthub audit export`: the audit trail as CSV or JSON.

use super::client::{self, parse_since, status_error};
use super::output::{event_json, print_json, state_name, time_of};
use super::HubArgs;
use crate::track::now_ms;
use crate::wire as convert;
use edt_proto::v1;
use serde_json::{json, Value};
use std::process::ExitCode;

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub async fn audit_export(
    hub: &HubArgs,
    since: &str,
    until: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let now = now_ms();
    let since = parse_since(since, now).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let until = until
        .map(|u| parse_since(u, now).map_err(|e| anyhow::anyhow!("--until: {e}")))
        .transpose()?;
    let mut events = Vec::new();
    for addr in &hub.hub {
        let mut admin = client::admin(addr).await?;
        let mut stream = admin
            .export_audit(v1::ExportAuditRequest {
                since: Some(convert::ts(since)),
                until: until.map(convert::ts),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        while let Some(e) = stream.message().await.map_err(status_error)? {
            events.push(e);
        }
    }
    events.sort_by_key(|e| e.at.map(|t| (t.seconds, t.nanos)));
    if json {
        let rows: Vec<Value> = events
            .iter()
            .map(|e| {
                let mut v = event_json(e);
                v["message_id"] = json!(e.message_id);
                v
            })
            .collect();
        print_json(&json!({ "events": rows }));
    } else {
        println!("at,message_id,delivery_id,event,from,to,actor,reason");
        for e in &events {
            println!(
                "{},{},{},{},{},{},{},{}",
                time_of(&e.at),
                e.message_id,
                e.delivery_id,
                csv_field(&e.event),
                state_name(e.from_state),
                state_name(e.to_state),
                csv_field(&e.actor),
                csv_field(&e.reason)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
