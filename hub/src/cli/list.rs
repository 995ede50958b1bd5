//! `edthub list` (and `edthub failed`): the messages that match a filter, newest first.

use super::client::parse_since;
use super::nodes::each_node;
use super::output::{
    deliveries_summary, doc_type_name, print_json, state_cell, status_json, table, time_of,
};
use super::{Filter, HubArgs};
use crate::store::After;
use crate::track::{now_ms, DeliveryState};
use crate::wire as convert;
use comfy_table::Cell;
use edt_proto::v1;
use serde_json::json;
use std::process::ExitCode;

pub(super) fn to_request(f: &Filter, limit: u32) -> anyhow::Result<v1::ListMessagesRequest> {
    let state = match &f.state {
        Some(s) => convert::state(
            s.parse::<DeliveryState>()
                .map_err(|e| anyhow::anyhow!("--state: {e}"))?,
        ),
        None => 0,
    };
    let since = match &f.since {
        Some(s) => Some(convert::ts(
            parse_since(s, now_ms()).map_err(|e| anyhow::anyhow!("--since: {e}"))?,
        )),
        None => None,
    };
    let until = match &f.until {
        Some(s) => Some(convert::ts(
            parse_since(s, now_ms()).map_err(|e| anyhow::anyhow!("--until: {e}"))?,
        )),
        None => None,
    };
    let document_type = match &f.doc_type {
        Some(t) => crate::wire::document_type_wire(
            t.parse::<edt_transforms::DocumentType>()
                .map_err(|e| anyhow::anyhow!("--type: {e}"))?,
        ) as i32,
        None => 0,
    };
    Ok(v1::ListMessagesRequest {
        state,
        recipient_ods: f.recipient.clone().unwrap_or_default(),
        sender_ods: f.sender.clone().unwrap_or_default(),
        since,
        limit,
        until,
        document_type,
        nhs_number: f.nhs_number.clone().unwrap_or_default(),
        channel: f.channel.clone().unwrap_or_default(),
        text: f.search.clone().unwrap_or_default(),
        after: f.after.clone().unwrap_or_default(),
    })
}

pub async fn list(hub: &HubArgs, f: &Filter, limit: u32, json: bool) -> anyhow::Result<ExitCode> {
    let req = to_request(f, limit)?;
    let mut resp = v1::ListMessagesResponse::default();
    // Each message with its place in the listing's order, to merge the nodes' pages.
    let mut placed: Vec<(Option<After>, v1::MessageStatus)> = Vec::new();
    each_node(
        hub,
        |mut a| {
            let req = req.clone();
            async move { a.list_messages(req).await }
        },
        |_, r| {
            resp.truncated |= r.truncated;
            resp.total += r.total;
            resp.total_is_lower_bound |= r.total_is_lower_bound;
            resp.next_after = r.next_after;
            let positions = r.positions.iter().map(|p| After::parse(p).ok());
            placed.extend(positions.chain(std::iter::repeat(None)).zip(r.messages));
        },
    )
    .await?;
    if hub.hub.len() > 1 {
        // Newest first across the nodes, each where its node's listing put it, then the
        // limit again.
        placed.sort_by_key(|p| std::cmp::Reverse(p.0));
        if placed.len() > limit as usize {
            placed.truncate(limit as usize);
            resp.truncated = true;
        }
        resp.next_after = match resp.truncated {
            true => placed
                .last()
                .and_then(|(at, _)| at.as_ref())
                .map(ToString::to_string)
                .unwrap_or_default(),
            false => String::new(),
        };
    }
    resp.messages = placed.into_iter().map(|(_, m)| m).collect();
    // The cursor for the next page: where this one ended (a hub that gives no places: the
    // oldest message shown).
    let next_after = match resp.next_after.is_empty() {
        false => Some(resp.next_after.clone()),
        true => resp
            .messages
            .last()
            .and_then(|s| s.message.as_ref())
            .map(|m| m.message_id.clone()),
    }
    .filter(|_| resp.truncated);
    if json {
        print_json(&json!({
            "messages": resp.messages.iter().map(status_json).collect::<Vec<_>>(),
            "shown": resp.messages.len(),
            "total": resp.total,
            "total_is_lower_bound": resp.total_is_lower_bound,
            "truncated": resp.truncated,
            "next_after": next_after,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    if resp.messages.is_empty() {
        println!("No messages match.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["MESSAGE", "RECEIVED", "FROM", "TYPE", "STATE", "DELIVERIES"]);
    for s in &resp.messages {
        let m = s.message.clone().unwrap_or_default();
        t.add_row(vec![
            Cell::new(&m.message_id),
            Cell::new(time_of(&m.received_at)),
            Cell::new(&m.sender_ods),
            Cell::new(doc_type_name(m.document_type)),
            state_cell(s.state),
            Cell::new(deliveries_summary(s)),
        ]);
    }
    println!("{t}");
    let total = format!(
        "{}{}",
        if resp.total_is_lower_bound {
            "at least "
        } else {
            ""
        },
        resp.total
    );
    // With --after, the count is of the matches from that point on.
    let from_here = if f.after.is_some() {
        " from here on"
    } else {
        ""
    };
    match next_after {
        Some(after) => println!(
            "{} of {total} matching messages{from_here} shown, newest first; next page with --after {after}",
            resp.messages.len()
        ),
        None => println!("{} matching messages{from_here}", resp.messages.len()),
    }
    Ok(ExitCode::SUCCESS)
}
