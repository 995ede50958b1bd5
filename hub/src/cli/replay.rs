//! `edthub replay`: sends messages again, by id or by filter.

use super::client::{self, status_error};
use super::list::to_request;
use super::nodes::{home_of, node_tags};
use super::output::{delivery_json, print_json};
use super::{Filter, HubArgs};
use edt_proto::v1;
use serde_json::json;
use std::process::ExitCode;

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
