//! HTTP: `/healthz` (the process is up), `/readyz` (the hub can take work: it has started, its
//! store passes its probe, its broker is reachable, its data disk is above the free-space
//! reserve and its directory registers senders; a line per check follows the verdict)
//! and `/metrics` (Prometheus text format).

use crate::hub::Hub;
use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Buckets of the timing histograms, in seconds: half a millisecond to ten minutes.
const SECONDS_BUCKETS: [f64; 19] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
];
/// Buckets of the batch-size histograms (writers or files per round).
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Installs the Prometheus recorder once per process. Histograms are Prometheus histograms
/// with fixed buckets: their memory does not grow with what they record, and they add up
/// across the nodes of a cluster (summaries' quantiles do not).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    METRICS
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_batch".into()), &BATCH_BUCKETS)
                })
                .ok()?
                .install_recorder()
                .ok()
        })
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
