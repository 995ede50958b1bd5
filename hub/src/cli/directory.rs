//! `edthub directory reload` and `edthub organisation show`.

use super::client::{self, status_error};
use super::nodes::{each_node, on_node, print_per_node};
use super::output::{planned_json, print_json, table, unroutable_json};
use super::HubArgs;
use edt_proto::v1;
use serde_json::json;
use std::process::ExitCode;

/// Reloads the directory on every hub named.
pub async fn reload(hub: &HubArgs, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    let ask = |mut a: client::Admin| async move {
        a.reload_directory(v1::ReloadDirectoryRequest {}).await
    };
    each_node(hub, ask, |addr, r| {
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
    })
    .await?;
    if json {
        print_per_node(&out);
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
