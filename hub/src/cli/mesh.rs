//! `edthub mesh poll`: reads the MESH inbox now.

use super::client::{self};
use super::nodes::{each_node, on_node, print_per_node};
use super::HubArgs;
use edt_proto::v1;
use serde_json::json;
use std::process::ExitCode;

pub async fn mesh_poll(hub: &HubArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    let ask = |mut a: client::Admin| async move { a.poll_mesh(v1::PollMeshRequest {}).await };
    each_node(hub, ask, |addr, r| {
        if !json {
            println!(
                "MESH inbox{}: {} messages, {} applied, {} unmatched (kept), {} left for later",
                on_node(hub, addr),
                r.seen,
                r.applied,
                r.unmatched,
                r.later
            );
        }
        out.push(json!({"seen": r.seen, "applied": r.applied, "unmatched": r.unmatched, "later": r.later}));
    })
    .await?;
    if json {
        print_per_node(&out);
    }
    Ok(ExitCode::SUCCESS)
}
