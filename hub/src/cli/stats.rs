//! `edthub stats`: counts and activity of each hub named.

use super::nodes::{each_node, print_per_node};
use super::output::{coloured, state_name, table, time_of};
use super::HubArgs;
use comfy_table::Cell;
use edt_proto::v1;
use serde_json::{json, Value};
use std::process::ExitCode;

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
        "home_dead_letters": s.home_dead_letters,
        "warnings": s.warnings,
        "received_last_hour": s.received_last_hour,
        "received_last_day": s.received_last_day,
        "resident_bytes": s.resident_bytes,
        "cpu_ms": s.cpu_ms,
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
    each_node(
        hub,
        |mut a| async move { a.get_stats(v1::GetStatsRequest {}).await },
        |_, s| all.push(s),
    )
    .await?;
    if json {
        print_per_node(&all.iter().map(stats_json).collect::<Vec<_>>());
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
        "home events set aside".to_string(),
        s.home_dead_letters.to_string(),
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
    if s.cpu_ms > 0 {
        t.add_row(vec![
            "CPU time since start".to_string(),
            format!("{:.1} s", s.cpu_ms as f64 / 1e3),
        ]);
    }
    println!("{t}");
    for w in &s.warnings {
        println!("WARNING: {w}");
    }
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
