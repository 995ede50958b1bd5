//! `edthub route explain`: where a document would go, and why.

use super::client::{self, status_error};
use super::output::{planned_json, print_json, table, unroutable_json};
use super::HubArgs;
use edt_proto::v1;
use serde_json::json;
use std::process::ExitCode;

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
    for x in &r.routes {
        if let Ok(f) = x.format.parse::<edt_transforms::ReceiverFormat>() {
            println!("{} gets {}", x.recipient_ods, f.describe());
        }
    }
    println!("Why:");
    for line in &r.trace {
        println!("  {line}");
    }
    Ok(ExitCode::SUCCESS)
}
