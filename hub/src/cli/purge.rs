//! `edthub purge`: drops the payloads of finished messages.

use super::client::{self, parse_since};
use super::nodes::{each_node, on_node, print_per_node};
use super::HubArgs;
use crate::track::now_ms;
use edt_proto::v1;
use serde_json::json;
use std::process::ExitCode;

pub async fn purge(
    hub: &HubArgs,
    older_than: Option<&str>,
    dry_run: bool,
    reason: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let secs = match older_than {
        None => 0,
        Some(s) => {
            let now = now_ms();
            let at = parse_since(s, now).map_err(|e| anyhow::anyhow!("--older-than: {e}"))?;
            (now.saturating_sub(at) / 1000).max(1)
        }
    };
    let mut out = Vec::new();
    let req = v1::PurgePayloadsRequest {
        older_than_seconds: secs,
        dry_run,
        reason: reason.to_string(),
    };
    let ask = |mut a: client::Admin| {
        let req = req.clone();
        async move { a.purge_payloads(req).await }
    };
    each_node(hub, ask, |addr, r| {
        if !json {
            println!(
                "{} {} payloads ({} bytes){}; {} kept (a delivery is not final yet)",
                if dry_run { "would purge" } else { "purged" },
                r.messages,
                r.bytes,
                on_node(hub, addr),
                r.kept_not_final
            );
            if dry_run {
                for id in &r.message_ids {
                    println!("  {id}");
                }
                let more = r.messages.saturating_sub(r.message_ids.len() as u64);
                if more > 0 {
                    println!("  ... and {more} more");
                }
            }
        }
        out.push(json!({
            "dry_run": dry_run,
            "messages": r.messages,
            "bytes": r.bytes,
            "kept_not_final": r.kept_not_final,
            "message_ids": r.message_ids,
        }));
    })
    .await?;
    if json {
        print_per_node(&out);
    }
    Ok(ExitCode::SUCCESS)
}
