//! The ops subcommands: tables for people, `--json` for scripts.

use super::client::{self, parse_since, status_error};
use super::{Filter, HubArgs};
use crate::track::{now_ms, rfc3339, DeliveryState};
use crate::wire as convert;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Attribute, Cell, Color, Table};
use edt_proto::v1;
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;

fn state_name(v: i32) -> String {
    convert::state_from_wire(v)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| "-".into())
}

fn time_of(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .map(|t| rfc3339(convert::ms(t)))
        .unwrap_or_default()
}

fn doc_type_name(v: i32) -> String {
    crate::wire::document_type(v)
        .map(|t| t.as_str().to_string())
        .unwrap_or_else(|| "-".into())
}

/// A table for people. Cells are coloured only when standard output is a terminal and
/// `NO_COLOR` is not set.
fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(
        header
            .iter()
            .map(|h| Cell::new(h).add_attribute(Attribute::Bold)),
    );
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        t.force_no_tty();
    }
    t
}

/// A delivery state, coloured by what it asks of ops: red needs action, yellow needs a look,
/// green is done.
fn state_cell(v: i32) -> Cell {
    coloured(Cell::new(state_name(v)), v)
}

fn coloured(cell: Cell, state: i32) -> Cell {
    match convert::state_from_wire(state) {
        Some(DeliveryState::Failed | DeliveryState::Rejected | DeliveryState::Unroutable) => {
            cell.fg(Color::Red)
        }
        Some(DeliveryState::Overdue | DeliveryState::Retrying) => cell.fg(Color::Yellow),
        Some(DeliveryState::Accepted | DeliveryState::Delivered) => cell.fg(Color::Green),
        Some(DeliveryState::Sent) => cell.fg(Color::Cyan),
        _ => cell,
    }
}

pub fn delivery_json(d: &v1::Delivery) -> Value {
    json!({
        "delivery_id": d.delivery_id,
        "message_id": d.message_id,
        "recipient_ods": d.recipient_ods,
        "recipient_type": d.recipient_type,
        "endpoint": d.endpoint,
        "state": state_name(d.state),
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": time_of(&d.created_at),
        "updated_at": time_of(&d.updated_at),
        "next_attempt_at": time_of(&d.next_attempt_at),
        "sent_at": time_of(&d.sent_at),
        "replay_of": d.replay_of,
        "superseded_by": d.superseded_by,
        "ack_code": d.ack_code,
        "ack_reason": d.ack_reason,
    })
}

pub fn status_json(s: &v1::MessageStatus) -> Value {
    let m = s.message.clone().unwrap_or_default();
    json!({
        "message_id": m.message_id,
        "sender_ods": m.sender_ods,
        "document_type": doc_type_name(m.document_type),
        "content_type": m.content_type,
        "local_id": m.local_id,
        "nhs_number": m.nhs_number,
        "file_name": m.file_name,
        "title": m.title,
        "payload_size": m.payload_size,
        "payload_sha256": m.payload_sha256,
        "channel": m.channel,
        "received_at": time_of(&m.received_at),
        "recipients": m.recipient_ods,
        "state": state_name(s.state),
        "complete": s.complete,
        "deliveries": s.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
    })
}

/// " on ADDR" when several hubs were named, for lines about one of them.
fn on_node(hub: &HubArgs, addr: &str) -> String {
    if hub.hub.len() > 1 {
        format!(" on {addr}")
    } else {
        String::new()
    }
}

/// One node's result as it is; several as `{"nodes": [...]}`.
fn print_per_node(out: &[Value]) {
    match out {
        [one] => print_json(one),
        _ => print_json(&json!({ "nodes": out })),
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("json"));
}

fn to_request(f: &Filter, limit: u32) -> anyhow::Result<v1::ListMessagesRequest> {
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

fn deliveries_summary(s: &v1::MessageStatus) -> String {
    s.deliveries
        .iter()
        .map(|d| {
            let mut x = format!("{} {}", d.recipient_ods, state_name(d.state));
            if d.attempts > 1 {
                x.push_str(&format!(" ({} attempts)", d.attempts));
            }
            x
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where each named hub's ids come from: (node tag, address). Asked only when there are
/// several hubs.
async fn node_tags(hub: &HubArgs) -> anyhow::Result<Vec<(u32, String)>> {
    let mut tags = Vec::new();
    if hub.hub.len() > 1 {
        for addr in &hub.hub {
            let mut admin = client::admin(addr).await?;
            let s = admin
                .get_stats(v1::GetStatsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            tags.push((s.node_tag, addr.clone()));
        }
    }
    Ok(tags)
}

/// The hub (of those named) that holds `id`'s tracking: the one whose node tag the id
/// carries. With one hub named (no `tags`), that hub.
fn home_of(hub: &HubArgs, tags: &[(u32, String)], id: &str) -> anyhow::Result<String> {
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

pub async fn list(hub: &HubArgs, f: &Filter, limit: u32, json: bool) -> anyhow::Result<ExitCode> {
    let req = to_request(f, limit)?;
    let mut resp = v1::ListMessagesResponse::default();
    for addr in &hub.hub {
        let mut admin = client::admin(addr).await?;
        let r = admin
            .list_messages(req.clone())
            .await
            .map_err(status_error)?
            .into_inner();
        resp.truncated |= r.truncated;
        resp.total += r.total;
        resp.total_is_lower_bound |= r.total_is_lower_bound;
        resp.messages.extend(r.messages);
    }
    if hub.hub.len() > 1 {
        // Newest first across the nodes (ids are time-ordered), then the limit again.
        resp.messages.sort_by(|a, b| {
            let id = |s: &v1::MessageStatus| {
                s.message
                    .as_ref()
                    .map(|m| m.message_id.clone())
                    .unwrap_or_default()
            };
            id(b).cmp(&id(a))
        });
        if resp.messages.len() > limit as usize {
            resp.messages.truncate(limit as usize);
            resp.truncated = true;
        }
    }
    // The cursor for the next page: the oldest message shown.
    let next_after = resp
        .truncated
        .then(|| resp.messages.last().and_then(|s| s.message.as_ref()))
        .flatten()
        .map(|m| m.message_id.clone());
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
        v["timeline"] = d
            .timeline
            .iter()
            .map(|e| {
                json!({
                    "at": time_of(&e.at),
                    "delivery_id": e.delivery_id,
                    "event": e.event,
                    "from": state_name(e.from_state),
                    "to": state_name(e.to_state),
                    "actor": e.actor,
                    "reason": e.reason,
                })
            })
            .collect();
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

/// More matches than this need `--yes` (or an answer at the terminal).
const CONFIRM_ABOVE: usize = 20;

pub struct ReplayOpts<'a> {
    pub dry_run: bool,
    pub yes: bool,
    pub reason: &'a str,
    pub json: bool,
}

pub async fn replay(
    hub: &HubArgs,
    ids: &[String],
    f: &Filter,
    opts: ReplayOpts<'_>,
) -> anyhow::Result<ExitCode> {
    let ReplayOpts {
        dry_run,
        yes,
        reason,
        json,
    } = opts;
    let filtered = f.state.is_some()
        || f.recipient.is_some()
        || f.sender.is_some()
        || f.since.is_some()
        || f.until.is_some()
        || f.doc_type.is_some()
        || f.nhs_number.is_some()
        || f.channel.is_some()
        || f.search.is_some();
    if ids.is_empty() && !filtered {
        anyhow::bail!("give message ids, or a filter such as --state failed");
    }
    if !ids.is_empty() && filtered {
        anyhow::bail!("give message ids or a filter, not both");
    }
    // Find the messages first (and the node holding each), so that a long replay can show
    // progress.
    let mut targets: Vec<(String, String)> = Vec::new();
    if ids.is_empty() {
        for addr in &hub.hub {
            let mut admin = client::admin(addr).await?;
            let plan = admin
                .replay_messages(v1::ReplayMessagesRequest {
                    message_ids: vec![],
                    filter: Some(to_request(f, 10_000)?),
                    dry_run: true,
                    reason: reason.to_string(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if plan.truncated {
                eprintln!(
                    "note: more than {} messages match on {addr}; this run replays the first {} there — run it again for the rest",
                    plan.outcomes.len(),
                    plan.outcomes.len()
                );
            }
            targets.extend(
                plan.outcomes
                    .into_iter()
                    .map(|o| (addr.clone(), o.message_id)),
            );
        }
    } else {
        let tags = node_tags(hub).await?;
        for id in ids {
            targets.push((home_of(hub, &tags, id)?, id.clone()));
        }
    }
    if !dry_run && !yes && targets.len() > CONFIRM_ABOVE {
        use std::io::{BufRead, IsTerminal, Write};
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "{} messages match: add --yes to replay them all (or --dry-run to list them)",
                targets.len()
            );
        }
        eprint!("Replay {} messages? [y/N] ", targets.len());
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("nothing replayed");
            return Ok(ExitCode::from(1));
        }
    }
    let bar = indicatif::ProgressBar::new(targets.len() as u64);
    if json || targets.len() < 10 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message(if dry_run { "checking" } else { "replaying" });
    let mut outcomes = Vec::new();
    let (mut replayed, mut skipped) = (0u32, 0u32);
    let mut by_hub: Vec<(String, Vec<String>)> = Vec::new();
    for (addr, id) in &targets {
        match by_hub.iter_mut().find(|(a, _)| a == addr) {
            Some((_, v)) => v.push(id.clone()),
            None => by_hub.push((addr.clone(), vec![id.clone()])),
        }
    }
    for (addr, hub_ids) in &by_hub {
        let mut admin = client::admin(addr).await?;
        for chunk in hub_ids.chunks(25) {
            let r = admin
                .replay_messages(v1::ReplayMessagesRequest {
                    message_ids: chunk.to_vec(),
                    filter: None,
                    dry_run,
                    reason: reason.to_string(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            replayed += r.replayed;
            skipped += r.skipped;
            outcomes.extend(r.outcomes);
            bar.inc(chunk.len() as u64);
        }
    }
    bar.finish_and_clear();
    if json {
        print_json(&json!({
            "dry_run": dry_run,
            "replayed": replayed,
            "skipped": skipped,
            "outcomes": outcomes.iter().map(|o| json!({
                "message_id": o.message_id,
                "new_deliveries": o.new_deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
                "skipped_reason": o.skipped_reason,
            })).collect::<Vec<_>>(),
        }));
    } else {
        let verb = if dry_run { "would replay" } else { "replayed" };
        for o in &outcomes {
            for d in &o.new_deliveries {
                println!(
                    "{} {verb}: {} → {} as delivery {}",
                    o.message_id, d.recipient_ods, d.endpoint, d.delivery_id
                );
            }
            if !o.skipped_reason.is_empty() {
                println!("{} skipped: {}", o.message_id, o.skipped_reason);
            }
        }
        println!(
            "{} {verb}, {} skipped{}",
            replayed,
            skipped,
            if dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        );
    }
    // Asked to replay something and nothing could be: that is a failure for scripts.
    Ok(if !dry_run && replayed == 0 && !targets.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn cancel(hub: &HubArgs, id: &str, reason: &str, json: bool) -> anyhow::Result<ExitCode> {
    let tags = node_tags(hub).await?;
    let mut admin = client::admin(&home_of(hub, &tags, id)?).await?;
    let r = admin
        .cancel_delivery(v1::CancelDeliveryRequest {
            delivery_id: id.to_string(),
            reason: reason.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let d = r.delivery.unwrap_or_default();
    if json {
        print_json(&delivery_json(&d));
    } else {
        println!(
            "delivery {} to {} is {}",
            d.delivery_id,
            d.recipient_ods,
            state_name(d.state)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn stats_json(s: &v1::Stats) -> Value {
    let by_state: serde_json::Map<String, Value> = s
        .deliveries_by_state
        .iter()
        .map(|c| (state_name(c.state), json!(c.count)))
        .collect();
    json!({
        "node": s.node,
        "node_tag": format!("{:04x}", s.node_tag),
        "started_at": time_of(&s.started_at),
        "messages": s.messages,
        "deliveries_by_state": by_state,
        "queue_depth": s.queue_depth,
        "dead_letters": s.dead_letters,
        "unmatched_acks": s.unmatched_acks,
        "received_last_hour": s.received_last_hour,
        "received_last_day": s.received_last_day,
        "resident_bytes": s.resident_bytes,
        "senders": s.senders.iter().map(activity_json).collect::<Vec<_>>(),
        "recipients": s.recipients.iter().map(activity_json).collect::<Vec<_>>(),
    })
}

fn activity_json(a: &v1::Activity) -> Value {
    json!({
        "ods_code": a.ods_code,
        "last_hour": a.last_hour,
        "last_day": a.last_day,
        "need_attention": a.need_attention,
    })
}

/// Stats of each hub named (JSON: one object for one hub, `{"nodes": [...]}` for several).
pub async fn stats(hub: &HubArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    for addr in &hub.hub {
        let mut admin = client::admin(addr).await?;
        all.push(
            admin
                .get_stats(v1::GetStatsRequest {})
                .await
                .map_err(status_error)?
                .into_inner(),
        );
    }
    if json {
        match all.as_slice() {
            [one] => print_json(&stats_json(one)),
            many => {
                print_json(&json!({ "nodes": many.iter().map(stats_json).collect::<Vec<_>>() }))
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    for s in &all {
        print_stats(s);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_stats(s: &v1::Stats) {
    println!("Node {} (up since {})", s.node, time_of(&s.started_at));
    let mut t = table(&["", "COUNT"]);
    t.add_row(vec!["messages".to_string(), s.messages.to_string()]);
    for c in &s.deliveries_by_state {
        let count = Cell::new(c.count);
        t.add_row(vec![
            Cell::new(format!("deliveries {}", state_name(c.state))),
            // The state's colour on a count that is not zero, so what needs action stands out.
            if c.count > 0 {
                coloured(count, c.state)
            } else {
                count
            },
        ]);
    }
    t.add_row(vec!["work queued".to_string(), s.queue_depth.to_string()]);
    t.add_row(vec!["dead letters".to_string(), s.dead_letters.to_string()]);
    t.add_row(vec![
        "unmatched acks".to_string(),
        s.unmatched_acks.to_string(),
    ]);
    t.add_row(vec![
        "received, last hour / day".to_string(),
        format!("{} / {}", s.received_last_hour, s.received_last_day),
    ]);
    if s.resident_bytes > 0 {
        t.add_row(vec![
            "memory (resident)".to_string(),
            format!("{:.1} MB", s.resident_bytes as f64 / 1e6),
        ]);
    }
    println!("{t}");
    for (what, list) in [("SENDER", &s.senders), ("RECIPIENT", &s.recipients)] {
        if list.is_empty() {
            continue;
        }
        let mut t = table(&[what, "LAST HOUR", "LAST DAY", "NEED ATTENTION"]);
        for a in list.iter().take(20) {
            t.add_row(vec![
                a.ods_code.clone(),
                a.last_hour.to_string(),
                a.last_day.to_string(),
                a.need_attention.to_string(),
            ]);
        }
        println!("{t}");
    }
}

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

fn planned_json(r: &v1::PlannedRoute) -> Value {
    json!({
        "recipient_ods": r.recipient_ods,
        "endpoint": r.endpoint,
        "format": r.format,
        "recipient_type": r.recipient_type,
        "rule": r.rule,
        "document_type": r.document_type,
    })
}

fn unroutable_json(u: &v1::UnroutableRecipient) -> Value {
    json!({"recipient_ods": u.recipient_ods, "reason": u.reason, "document_type": u.document_type})
}

pub async fn explain(
    hub: &HubArgs,
    to: &[String],
    doc_type: &str,
    from: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let t: edt_transforms::DocumentType = doc_type.parse()?;
    let mut admin = client::admin(hub.first()).await?;
    let r = admin
        .explain_route(v1::ExplainRouteRequest {
            recipient_ods: to.to_vec(),
            document_type: crate::wire::document_type_wire(t) as i32,
            sender_ods: from.unwrap_or_default().to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if json {
        print_json(&json!({
            "routes": r.routes.iter().map(planned_json).collect::<Vec<_>>(),
            "unroutable": r.unroutable.iter().map(unroutable_json).collect::<Vec<_>>(),
            "trace": r.trace,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    if !r.routes.is_empty() {
        let mut t = table(&["TO", "ENDPOINT", "FORMAT", "ROLE", "RULE"]);
        for x in &r.routes {
            t.add_row(vec![
                x.recipient_ods.clone(),
                x.endpoint.clone(),
                x.format.clone(),
                x.recipient_type.clone(),
                x.rule.clone(),
            ]);
        }
        println!("{t}");
    }
    for u in &r.unroutable {
        println!("{}: unroutable: {}", u.recipient_ods, u.reason);
    }
    println!("Why:");
    for line in &r.trace {
        println!("  {line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Reloads the directory on every hub named.
pub async fn reload(hub: &HubArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    for addr in &hub.hub {
        let mut admin = client::admin(addr).await?;
        let r = admin
            .reload_directory(v1::ReloadDirectoryRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
        if !json {
            let on = on_node(hub, addr);
            println!(
                "directory reloaded{on}: {} organisations, {} rules, {} endpoints from {}",
                r.organisations,
                r.rules,
                r.endpoints,
                r.files.join(", ")
            );
        }
        out.push(json!({
            "organisations": r.organisations,
            "rules": r.rules,
            "endpoints": r.endpoints,
            "files": r.files,
        }));
    }
    if json {
        print_per_node(&out);
    }
    Ok(ExitCode::SUCCESS)
}

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
                json!({
                    "at": time_of(&e.at),
                    "message_id": e.message_id,
                    "delivery_id": e.delivery_id,
                    "event": e.event,
                    "from": state_name(e.from_state),
                    "to": state_name(e.to_state),
                    "actor": e.actor,
                    "reason": e.reason,
                })
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
    for addr in &hub.hub {
        let mut admin = client::admin(addr).await?;
        let r = admin
            .purge_payloads(v1::PurgePayloadsRequest {
                older_than_seconds: secs,
                dry_run,
                reason: reason.to_string(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
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
    }
    if json {
        print_per_node(&out);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn mesh_poll(hub: &HubArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    for addr in &hub.hub {
        let mut admin = client::admin(addr).await?;
        let r = admin
            .poll_mesh(v1::PollMeshRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
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
    }
    if json {
        print_per_node(&out);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn unmatched(hub: &HubArgs, limit: u32, json: bool) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    for addr in &hub.hub {
        let mut admin = client::admin(addr).await?;
        let r = admin
            .list_unmatched_acks(v1::ListUnmatchedAcksRequest { limit })
            .await
            .map_err(status_error)?
            .into_inner();
        all.extend(r.acks);
    }
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

pub async fn organisation(hub: &HubArgs, ods: &str, json: bool) -> anyhow::Result<ExitCode> {
    let mut admin = client::admin(hub.first()).await?;
    let o = admin
        .get_organisation(v1::GetOrganisationRequest {
            ods: ods.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if json {
        print_json(&json!({
            "ods": o.ods,
            "name": o.name,
            "status": o.status,
            "open_date": o.open_date,
            "close_date": o.close_date,
            "commissioner": o.commissioner,
            "prescribing_setting": o.prescribing_setting,
            "postcode": o.postcode,
            "supplier": o.supplier,
            "source": o.source,
            "successor": o.successor,
            "successor_effective": o.successor_effective,
            "rules": o.rules,
            "registered_sender": o.registered_sender,
            "routes_by_type": o.routes_by_type.iter().map(planned_json).collect::<Vec<_>>(),
            "unroutable_by_type": o.unroutable_by_type.iter().map(unroutable_json).collect::<Vec<_>>(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    println!("{}  {}", o.ods, or_dash(&o.name));
    println!("Status        {}", or_dash(&o.status));
    println!(
        "Opened        {}   Closed {}",
        or_dash(&o.open_date),
        or_dash(&o.close_date)
    );
    println!(
        "Commissioner  {}   Postcode {}",
        or_dash(&o.commissioner),
        or_dash(&o.postcode)
    );
    println!(
        "Setting       {}   Supplier {}",
        o.prescribing_setting,
        or_dash(&o.supplier)
    );
    println!("Source        {}", or_dash(&o.source));
    if !o.successor.is_empty() {
        println!(
            "Successor     {} from {}",
            o.successor, o.successor_effective
        );
    }
    if o.registered_sender {
        println!("Sender        registered: may submit documents");
    }
    if !o.rules.is_empty() {
        println!("Rules that could apply (most specific first):");
        for r in &o.rules {
            println!("  {r}");
        }
    }
    let mut t = table(&["DOCUMENT TYPE", "GOES TO"]);
    for r in &o.routes_by_type {
        t.add_row(vec![
            r.document_type.clone(),
            format!(
                "{} → {} as {} ({})",
                r.recipient_ods, r.endpoint, r.format, r.recipient_type
            ),
        ]);
    }
    for u in &o.unroutable_by_type {
        t.add_row(vec![
            u.document_type.clone(),
            format!("unroutable: {}", u.reason),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
