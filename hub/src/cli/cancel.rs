//! `edthub cancel`: stops one delivery.

use super::client::{self, status_error};
use super::nodes::{home_of, node_tags};
use super::output::{delivery_json, print_json, state_name};
use super::HubArgs;
use edt_proto::v1;
use std::process::ExitCode;

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
