//! HTTP: `/healthz` (the process is up), `/readyz` (the hub can take work: it has started, its
//! store passes its probe, its broker is reachable, its data disk is above the free-space
//! reserve and its directory registers senders; a line per check follows the verdict)
//! and `/metrics` (Prometheus text format).

use crate::hub::Hub;
use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    METRICS
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    metrics: Option<PrometheusHandle>,
}

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState {
            hub,
            metrics: metrics_handle(),
        })
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let (ready, report) = crate::admin::health::readiness(&s.hub);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, report)
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let Some(h) = &s.metrics else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n".to_string(),
        );
    };
    let hub = &s.hub;
    if let Ok(counts) = hub.store.count_by_state() {
        for (state, n) in counts {
            metrics::gauge!("edthub_deliveries", "state" => state.as_str()).set(n as f64);
        }
    }
    if let Ok(depth) = hub.bus.depth(crate::bus::DELIVER_QUEUE).await {
        metrics::gauge!("edthub_queue_depth", "queue" => crate::bus::DELIVER_QUEUE)
            .set(depth as f64);
    }
    (StatusCode::OK, h.render())
}
