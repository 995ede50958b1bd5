//! Running a node: bind the listeners, start the workers, serve until shutdown.

use crate::admin::grpc::{check_token, AdminService, TrackingService};
use crate::config::{Config, ListenAddr};
use crate::hub::Hub;
use crate::ingest::grpc::SubmissionService;
use crate::shutdown::{Every, Shutdown};
use edt_proto::v1::{
    admin_server::AdminServer, document_submission_server::DocumentSubmissionServer,
    tracking_server::TrackingServer,
};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How long open client connections (watch streams, idle channels) may hold up a shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
/// How often memory freed into the allocator is returned to the system.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// How often the metrics recorder folds the histogram samples it holds into its summaries.
const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Addresses a running node listens on.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub smtp: Option<SocketAddr>,
    pub mllp: Option<SocketAddr>,
}

/// Opens the hub, binds its listeners and serves until `shutdown` fires. `on_bound` is told
/// the real addresses (port 0 in the config picks free ports).
///
/// When the storage engine fails for good (see `admin::health`), the node is drained, its
/// database closed and the node opened again on the same addresses, without a restart.
pub async fn run(
    config: Config,
    shutdown: Shutdown,
    on_bound: impl FnOnce(&Hub, Bound),
) -> anyhow::Result<()> {
    // One TLS provider for every listener and client (lapin, lettre, tonic and reqwest all
    // use aws-lc-rs; installing it keeps any crate from having to guess).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut on_bound = Some(on_bound);
    let mut previous: Option<Bound> = None;
    let mut attempt = 0u32;
    loop {
        let opened = async {
            let (listeners, bound) = bind_all(&config, previous).await?;
            let hub = Hub::open(config.clone()).await?;
            anyhow::Ok((listeners, bound, hub))
        }
        .await;
        let (listeners, bound, hub) = match opened {
            Ok(o) => o,
            // The first open reports its error; a reopen keeps trying.
            Err(e) if previous.is_none() => return Err(e),
            Err(e) => {
                attempt += 1;
                let wait = reopen_backoff(attempt);
                tracing::error!(error = %e, retry_in_secs = wait.as_secs(), "could not reopen the node");
                if !pause(wait, &shutdown).await {
                    return Ok(());
                }
                continue;
            }
        };
        previous = Some(bound);
        let weak = Arc::downgrade(&hub);
        let limit = std::time::Duration::from_secs(config.shutdown_timeout_secs);
        let ended = serve(hub, listeners, shutdown.clone(), |h| {
            match on_bound.take() {
                Some(f) => f(h, bound),
                None => tracing::info!("the node is open again and takes work"),
            }
        })
        .await;
        let guard = match ended {
            Ok(Ended::Shutdown) => return Ok(()),
            Ok(Ended::Reopen(guard)) => guard,
            Err(e) => return Err(e),
        };
        // Every task holding the node has ended; the database closes with the last of them.
        crate::shutdown::waiting_for("the failed database to close");
        let closing = std::time::Instant::now();
        while weak.strong_count() > 0 && closing.elapsed() < limit {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if weak.strong_count() > 0 {
            // Something still holds the old database (and its lock): only a new process can
            // open it again.
            tracing::error!(
                "the failed database did not close within {} s; exiting for the service \
                 manager to start the node again",
                limit.as_secs()
            );
            std::process::exit(1);
        }
        guard.cancel();
        attempt = if closing.elapsed() > RESET_AFTER {
            0
        } else {
            attempt + 1
        };
        let wait = reopen_backoff(attempt);
        if !pause(wait, &shutdown).await {
            return Ok(());
        }
    }
}

/// How a round of serving ended.
pub enum Ended {
    /// The shutdown fired.
    Shutdown,
    /// The node asked to reopen its database; the watchdog ends the process if the old one
    /// does not close in time.
    Reopen(crate::shutdown::Watchdog),
}

/// Reopens that follow each other more closely than this back off.
const RESET_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// How long to wait before the `attempt`th reopen in a row: none at first, then 1, 2, 4… s,
/// at most 30 s.
fn reopen_backoff(attempt: u32) -> std::time::Duration {
    if attempt == 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_secs((1u64 << (attempt - 1).min(5)).min(30))
}

/// Sleeps for `wait`; `false` if the shutdown fired first.
async fn pause(wait: std::time::Duration, shutdown: &Shutdown) -> bool {
    let mut s = shutdown.clone();
    tokio::select! {
        _ = tokio::time::sleep(wait) => !shutdown.fired(),
        _ = s.wait() => false,
    }
}

/// Binds every listener the config asks for; on a reopen, on the addresses bound before.
async fn bind_all(config: &Config, previous: Option<Bound>) -> anyhow::Result<(Listeners, Bound)> {
    async fn again(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
        TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for {what} on {addr} again: {e}"))
    }
    let (grpc, http, smtp, mllp) = match previous {
        Some(b) => (
            again(b.grpc, "gRPC").await?,
            again(b.http, "HTTP").await?,
            match b.smtp {
                Some(a) => Some(again(a, "SMTP").await?),
                None => None,
            },
            match b.mllp {
                Some(a) => Some(again(a, "MLLP").await?),
                None => None,
            },
        ),
        None => (
            bind(&config.grpc_addr, "gRPC").await?,
            bind(&config.http_addr, "HTTP").await?,
            match &config.smtp.listen {
                Some(addr) => Some(bind(addr, "SMTP").await?),
                None => None,
            },
            match &config.mllp.listen {
                Some(addr) => Some(bind(addr, "MLLP").await?),
                None => None,
            },
        ),
    };
    let bound = Bound {
        grpc: grpc.local_addr()?,
        http: http.local_addr()?,
        smtp: smtp.as_ref().map(|l| l.local_addr()).transpose()?,
        mllp: mllp.as_ref().map(|l| l.local_addr()).transpose()?,
    };
    Ok((
        Listeners {
            grpc,
            http,
            smtp,
            mllp,
        },
        bound,
    ))
}

/// Binds a listener on the first address `addr` stands for that can be bound (a host name is
/// resolved here).
async fn bind(addr: &ListenAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind((addr.host(), addr.port()))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for {what} on {addr}: {e}"))
}

/// The bound listeners a node serves on.
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
    pub smtp: Option<TcpListener>,
    pub mllp: Option<TcpListener>,
}

/// Serves an opened hub on bound listeners until `outer` fires, or until the node asks to
/// reopen its database.
pub async fn serve(
    hub: Arc<Hub>,
    listeners: Listeners,
    outer: Shutdown,
    on_ready: impl FnOnce(&Hub),
) -> anyhow::Result<Ended> {
    // This round's own shutdown: fired by the outer one, or by the health probe to reopen.
    let (stop, shutdown) = crate::shutdown::channel();
    let stop = Arc::new(stop);
    let forward = {
        let stop = stop.clone();
        let mut outer = outer.clone();
        tokio::spawn(async move {
            outer.wait().await;
            stop.fire();
        })
    };
    let Listeners {
        grpc,
        http,
        smtp,
        mllp,
    } = listeners;
    let loaded = hub.directory.get();
    for (ep, folder) in loaded
        .directory
        .endpoints()
        .filter_map(|ep| Some((ep, loaded.folder(ep)?)))
    {
        let n = crate::deliver::file::clean_temporaries(&folder);
        if n > 0 {
            tracing::info!(endpoint = %ep.id, removed = n, "removed temporary files left by a crash");
        }
    }
    if let Err(e) = crate::deliver::reconcile(&hub).await {
        tracing::warn!(error = %e, "could not check for lost work at start-up");
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // Reflection in both versions: grpcurl and grpcui speak v1; Python's grpcio-reflection,
    // older grpcurl and Postman speak only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(edt_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    // A request is refused from its length prefix, before any of it is read, once it cannot
    // fit a payload of the limit; `SizeLimited` turns tonic's status for that into ours.
    let max = hub.config.limits.max_payload_bytes + crate::ingest::grpc::ENVELOPE_ALLOWANCE;
    let submission = crate::ingest::grpc::SizeLimited::new(
        DocumentSubmissionServer::new(SubmissionService { hub: hub.clone() })
            .max_decoding_message_size(max),
        hub.config.limits.max_payload_bytes,
    );
    let tracking = TrackingServer::new(TrackingService { hub: hub.clone() });
    let receiver = edt_proto::v1::receiver_delivery_server::ReceiverDeliveryServer::new(
        crate::deliver::pull::ReceiverService { hub: hub.clone() },
    );
    let admin = AdminServer::with_interceptor(
        AdminService { hub: hub.clone() },
        // With identities configured, they decide (admin_token is for hubs without them).
        check_token(
            hub.config
                .identities
                .is_empty()
                .then(|| hub.config.admin_token.clone())
                .flatten(),
        ),
    );
    health_reporter
        .set_serving::<DocumentSubmissionServer<SubmissionService>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    let workers =
        crate::deliver::spawn_workers(hub.clone(), hub.config.delivery.workers, shutdown.clone());
    let relays = match hub.config.bus {
        crate::config::BusKind::Amqp => {
            crate::cluster::check_history(&hub).await;
            let mut tasks =
                crate::cluster::relay::spawn(hub.clone(), hub.config.amqp.relays, shutdown.clone());
            tasks.extend(crate::cluster::spawn_home(hub.clone(), 2, shutdown.clone()));
            tasks.extend(crate::cluster::claims::spawn(hub.clone(), shutdown.clone()));
            tasks
        }
        crate::config::BusKind::Embedded => Vec::new(),
    };
    let acks = crate::acks::spawn(hub.clone(), shutdown.clone());
    let smtp = match smtp {
        Some(l) => Some(crate::ingest::smtp::spawn(
            hub.clone(),
            l,
            shutdown.clone(),
        )?),
        None => None,
    };
    let mllp = match mllp {
        Some(l) => Some(crate::ingest::mllp::spawn(
            hub.clone(),
            l,
            shutdown.clone(),
        )?),
        None => None,
    };
    let mesh_poll = hub
        .mesh
        .is_some()
        .then(|| crate::acks::mesh::spawn(hub.clone(), shutdown.clone()));
    let retention = (hub.config.retention.payload_days > 0).then(|| {
        let hub = hub.clone();
        let mut every = Every::new(std::time::Duration::from_secs(3600), shutdown.clone());
        tokio::spawn(async move {
            let days = hub.config.retention.payload_days;
            while every.tick().await {
                let reason = format!("retention: older than {days} days, every delivery final");
                if let Err(e) = crate::admin::actions::purge(
                    &hub,
                    days.saturating_mul(86_400_000),
                    false,
                    "hub",
                    &reason,
                )
                .await
                {
                    tracing::error!(error = %e, "retention purge failed; will try again");
                }
            }
        })
    });
    // Memory freed after a burst of documents goes back to the system (see `memory`).
    let trimmer = {
        let mut every = Every::new(TRIM_EVERY, shutdown.clone());
        tokio::spawn(async move {
            while every.tick().await {
                let _ = tokio::task::spawn_blocking(crate::memory::trim).await;
            }
        })
    };
    // The Prometheus recorder keeps every histogram sample until its upkeep folds them into
    // summaries; a scrape of /metrics runs it, but nothing may scrape.
    let metrics_upkeep = crate::admin::http::metrics_handle().map(|handle| {
        let mut every = Every::new(METRICS_UPKEEP_EVERY, shutdown.clone());
        tokio::spawn(async move {
            while every.tick().await {
                handle.run_upkeep();
            }
        })
    });
    let notices = hub
        .relay
        .is_some()
        .then(|| crate::notices::spawn(hub.clone(), shutdown.clone()));
    let health = crate::admin::health::spawn(hub.clone(), shutdown.clone(), stop.clone());
    let directory_watch = hub.directory.clone().spawn_watcher(
        std::time::Duration::from_millis(hub.config.directory_check_ms.max(100)),
        shutdown.clone(),
    );

    let mut s1 = shutdown.clone();
    // Documents are tens of kilobytes to megabytes: HTTP/2's default 64 KiB windows would
    // throttle concurrent submissions on one connection to a trickle.
    let mut builder = tonic::transport::Server::builder();
    if let (Some(cert), Some(key)) = (&hub.config.tls.cert, &hub.config.tls.key) {
        let read = |p: &std::path::Path, what: &str| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("tls.{what} {}: {e}", p.display()))
        };
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(read(cert, "cert")?, read(key, "key")?),
        );
        if let Some(ca) = &hub.config.tls.client_ca {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(
                ca,
                "client_ca",
            )?));
        }
        builder = builder
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("TLS for gRPC: {e}"))?;
    }
    let grpc_server = builder
        .initial_connection_window_size(32 * 1024 * 1024)
        .initial_stream_window_size(4 * 1024 * 1024)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(submission)
        .add_service(tracking)
        .add_service(receiver)
        .add_service(admin)
        .serve_with_incoming_shutdown(
            // Small replies (receipts, statuses) must not wait for Nagle's algorithm.
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            async move { s1.wait().await },
        );
    let mut s2 = shutdown.clone();
    let mut http_routes = crate::admin::http::router(hub.clone());
    if hub.config.console.enabled {
        http_routes = http_routes.merge(crate::console::router(hub.clone()));
    }
    let http_server =
        axum::serve(http, http_routes).with_graceful_shutdown(async move { s2.wait().await });

    hub.set_ready(true);
    on_ready(&hub);
    let servers = async { tokio::join!(grpc_server, http_server) };
    tokio::pin!(servers);
    let mut s3 = shutdown.clone();
    let (g, h) = tokio::select! {
        r = &mut servers => r,
        _ = async { s3.wait().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("clients still connected after {SHUTDOWN_GRACE:?}; closing their connections");
            (Ok(()), Ok(()))
        }
    };
    hub.set_ready(false);
    use crate::shutdown::waiting_for;
    waiting_for("deliveries in progress");
    for w in workers {
        let _ = w.await;
    }
    waiting_for("acknowledgements being applied");
    let _ = acks.await;
    waiting_for("mail sessions");
    if let Some(s) = smtp {
        let _ = s.await;
    }
    waiting_for("MLLP connections");
    if let Some(m) = mllp {
        let _ = m.await;
    }
    waiting_for("background jobs (notices, MESH polling, retention, relays)");
    if let Some(n) = notices {
        let _ = n.await;
    }
    if let Some(p) = mesh_poll {
        let _ = p.await;
    }
    if let Some(r) = retention {
        let _ = r.await;
    }
    for r in relays {
        let _ = r.await;
    }
    let _ = directory_watch.await;
    let _ = health.await;
    forward.abort();
    let _ = trimmer.await;
    if let Some(u) = metrics_upkeep {
        let _ = u.await;
    }
    if let Some(guard) = hub.health.take_reopen() {
        // The database has failed; what it still holds was flushed before it failed.
        if let Err(e) = hub.store.flush().await {
            tracing::warn!(error = %e, "the failed database could not flush; it is reopened from what is on disk");
        }
        return Ok(Ended::Reopen(guard));
    }
    waiting_for("the database's last flush");
    hub.store.flush().await?;
    waiting_for("the database to close");
    g?;
    h?;
    Ok(Ended::Shutdown)
}
