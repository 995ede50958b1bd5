//! `edthub acks unmatched`: acknowledgements that matched no delivery.

use super::nodes::each_node;
use super::output::{print_json, time_of};
use super::HubArgs;
use edt_proto::v1;
use serde_json::json;
use std::process::ExitCode;

pub async fn unmatched(hub: &HubArgs, limit: u32, json: bool) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    each_node(
        hub,
        |mut a| async move {
            a.list_unmatched_acks(v1::ListUnmatchedAcksRequest { limit })
                .await
        },
        |_, r| all.extend(r.acks),
    )
    .await?;
    all.sort_by_key(|a| std::cmp::Reverse(a.at.map(|t| (t.seconds, t.nanos))));
    if json {
        print_json(&json!({
            "acks": all.iter().map(|a| json!({
                "at": time_of(&a.at),
                "source": a.source,
                "problem": a.problem,
                "kept_at": a.kept_at,
            })).collect::<Vec<_>>()
        }));
    } else if all.is_empty() {
        println!("no unmatched acknowledgements");
    } else {
        for a in &all {
            println!(
                "{}  {}\n    {}\n    kept at {}",
                time_of(&a.at),
                a.source,
                a.problem,
                a.kept_at
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
