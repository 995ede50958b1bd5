//! Commands that speak to several hubs: asking each in turn, which hub holds an id, and how a
//! per-node result is printed.

use super::client::{self, status_error};
use super::output::print_json;
use super::HubArgs;
use edt_proto::v1;
use serde_json::{json, Value};
use std::future::Future;

/// Asks each hub named, in order, with `call`, and hands each answer to `each` with that hub's
/// address as it comes (so what is printed of one hub stands if a later one fails).
pub(super) async fn each_node<T, Fut>(
    hub: &HubArgs,
    call: impl Fn(client::Admin) -> Fut,
    mut each: impl FnMut(&str, T),
) -> anyhow::Result<()>
where
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    for addr in &hub.hub {
        let admin = client::admin(addr).await?;
        each(addr, call(admin).await.map_err(status_error)?.into_inner());
    }
    Ok(())
}

/// " on ADDR" when several hubs were named, for lines about one of them.
pub(super) fn on_node(hub: &HubArgs, addr: &str) -> String {
    if hub.hub.len() > 1 {
        format!(" on {addr}")
    } else {
        String::new()
    }
}

/// One node's result as it is; several as `{"nodes": [...]}`.
pub(super) fn print_per_node(out: &[Value]) {
    match out {
        [one] => print_json(one),
        _ => print_json(&json!({ "nodes": out })),
    }
}

/// Where each named hub's ids come from: (node tag, address). Asked only when there are
/// several hubs.
pub(super) async fn node_tags(hub: &HubArgs) -> anyhow::Result<Vec<(u32, String)>> {
    let mut tags = Vec::new();
    if hub.hub.len() > 1 {
        each_node(
            hub,
            |mut a| async move { a.get_stats(v1::GetStatsRequest {}).await },
            |addr, s| tags.push((s.node_tag, addr.to_string())),
        )
        .await?;
    }
    Ok(tags)
}

/// The hub (of those named) that holds `id`'s tracking: the one whose node tag the id
/// carries. With one hub named (no `tags`), that hub.
pub(super) fn home_of(hub: &HubArgs, tags: &[(u32, String)], id: &str) -> anyhow::Result<String> {
    if hub.hub.len() == 1 {
        return Ok(hub.first().to_string());
    }
    let tag = uuid::Uuid::parse_str(id.trim())
        .map_err(|e| anyhow::anyhow!("{id:?} is not a message or delivery id: {e}"))
        .map(|u| crate::track::home_tag(&u))?;
    tags.iter()
        .find(|(t, _)| *t == u32::from(tag))
        .map(|(_, addr)| addr.clone())
        .ok_or_else(|| {
            status_error(tonic::Status::not_found(format!(
                "none of the hubs named holds {id} (it was minted by a node with tag {tag:04x})"
            )))
        })
}
