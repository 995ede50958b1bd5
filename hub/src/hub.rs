//! A running node's shared state: its configuration, store, bus, directory and the clients of
//! its peers, opened once and handed to every stage. The stages do the work (`ingest`,
//! `route`, `deliver`, `acks`, `cluster`, `admin`); what is here is only what they share, and
//! the one read every stage needs: a message with its current deliveries.

use crate::bus::amqp::{AmqpBus, AmqpSettings};
use crate::bus::{embedded::EmbeddedBus, Bus};
use crate::config::{BusKind, Config};
use crate::route::{self, DirectoryHandle};
use crate::store::{SledStore, Store, StoreError};
use crate::track::{now_ms, summarise, DeliveryRecord, DeliveryState, MessageRecord};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// How long a sender refused for the backlog is told to wait, in seconds.
pub const BACKLOG_RETRY_SECS: u64 = 10;

/// A message with its current deliveries.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub message: MessageRecord,
    /// Current deliveries (not superseded by a replay).
    pub deliveries: Vec<DeliveryRecord>,
    pub state: Option<DeliveryState>,
    pub complete: bool,
}

/// What the node's health checks found: whether its store can take work, and whether the
/// node has asked to reopen its database (the storage engine failed and cannot recover in
/// place).
#[derive(Default)]
pub struct Health {
    storage: Mutex<Option<String>>,
    reopen: Mutex<Option<crate::shutdown::Watchdog>>,
    warnings: Mutex<Vec<String>>,
}

impl Health {
    /// Records the outcome of a storage probe; `true` if it changed.
    pub fn note_storage(&self, outcome: Result<(), String>) -> bool {
        let mut s = self.storage.lock().unwrap_or_else(|e| e.into_inner());
        let changed = s.is_some() != outcome.is_err();
        *s = outcome.err();
        changed
    }

    /// Why the store cannot take work, if it cannot.
    pub fn storage_problem(&self) -> Option<String> {
        self.storage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keeps a warning for ops: shown by `/readyz` and `edthub stats` until the node restarts.
    pub fn warn(&self, warning: String) {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(warning);
    }

    /// The warnings kept so far.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks for the database to be reopened; `guard` ends the process if that takes too long.
    pub fn ask_reopen(&self, guard: crate::shutdown::Watchdog) {
        *self.reopen.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
    }

    /// The reopen asked for, if any (its watchdog still armed).
    pub fn take_reopen(&self) -> Option<crate::shutdown::Watchdog> {
        self.reopen.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A running node's shared state.
pub struct Hub {
    pub config: Config,
    pub store: Arc<dyn Store>,
    /// The bus workers take work from: the outbox itself (embedded) or RabbitMQ.
    pub bus: Arc<dyn Bus>,
    /// Where the store's transactions put work (the embedded bus in this node's database).
    /// With RabbitMQ, relays move it to the broker.
    pub outbox: Arc<EmbeddedBus>,
    /// Work items waiting in the outbox for the broker (counted by the relays).
    pub outbox_depth: std::sync::atomic::AtomicU64,
    pub directory: Arc<DirectoryHandle>,
    pub node: String,
    pub started_ms: u64,
    ready: AtomicBool,
    pub(crate) in_progress: Mutex<HashSet<Uuid>>,
    /// The outbound mail relay, when one is configured.
    pub relay: Option<crate::clients::relay::Relay>,
    /// The MESH client, when MESH is configured.
    pub mesh: Option<crate::clients::mesh::MeshClient>,
    /// Makes written files durable in shared rounds of syncs (payloads, drop files).
    pub files: crate::durable::FileSync,
    pub health: Health,
}

impl Hub {
    /// Opens the node's store, bus and directory. With no directory configured, writes the
    /// sample directory (and its drop folders) under the data directory on first run.
    pub async fn open(config: Config) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display())
        })?;
        let dir_file = config.directory_path();
        if config.directory.is_none() && route::write_sample(&dir_file)? {
            tracing::info!(file = %dir_file.display(), "wrote a sample directory");
        }
        let directory = Arc::new(DirectoryHandle::load(&dir_file)?);
        let store = SledStore::open(
            &config.data_dir.join("db"),
            &config.data_dir.join("payloads"),
            config.cache_mb,
        )?;
        let bus = EmbeddedBus::open(
            store.db(),
            store.signals(),
            store.group_commit(),
            config.delivery.max_bus_deliveries,
        )?;
        let outbox = Arc::new(bus);
        let work: Arc<dyn Bus> = match config.bus {
            BusKind::Embedded => outbox.clone(),
            BusKind::Amqp => Arc::new(AmqpBus::lazy(AmqpSettings {
                url: config.amqp.url.clone(),
                prefetch: config.amqp.prefetch,
                prefix: config.amqp.queue_prefix.clone(),
                max_deliveries: config.delivery.max_bus_deliveries,
            })),
        };
        let relay = config
            .smtp
            .relay
            .as_ref()
            .map(crate::clients::relay::Relay::new)
            .transpose()?;
        let mesh = match &config.mesh.url {
            Some(_) => Some(crate::clients::mesh::MeshClient::new(&config.mesh)?),
            None => None,
        };
        let node = config.node_name();
        crate::track::set_node_tag(crate::track::node_tag(&node));
        let files = store.file_sync();
        let hub = Arc::new(Self {
            files,
            node,
            config,
            store: Arc::new(store),
            bus: work,
            outbox,
            outbox_depth: std::sync::atomic::AtomicU64::new(0),
            directory,
            started_ms: now_ms(),
            ready: AtomicBool::new(false),
            in_progress: Mutex::new(HashSet::new()),
            relay,
            mesh,
            health: Health::default(),
        });
        Ok(hub)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed)
    }

    /// Bytes free to the hub on the data directory's disk, if the system says.
    pub fn disk_free(&self) -> Option<u64> {
        rustix::fs::statvfs(&self.config.data_dir)
            .ok()
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Whether the data directory's disk can take `bytes` more and keep its reserve
    /// (`limits.min_free_disk_mb`); if not, why not.
    pub fn disk_headroom(&self, bytes: u64) -> Result<(), String> {
        let reserve = self.config.limits.min_free_disk_mb.saturating_mul(1 << 20);
        // Not knowing is not a reason to refuse: the writes themselves will say.
        let Some(free) = self.disk_free() else {
            return Ok(());
        };
        if free >= reserve.saturating_add(bytes) {
            return Ok(());
        }
        Err(format!(
            "the data disk has {} MiB free, below the {} MiB kept in reserve \
             (limits.min_free_disk_mb): new documents are refused until space is freed",
            free >> 20,
            reserve >> 20
        ))
    }

    /// The deliveries waiting for their transport (pending or retrying), which is also
    /// published as the `edthub_backlog` gauge; an error if there are `limits.max_backlog`
    /// or more.
    pub fn backlog(&self) -> Result<u64, String> {
        let waiting: u64 = self
            .store
            .count_by_state()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(state, _)| state.awaits_transport())
            .map(|(_, n)| n)
            .sum();
        metrics::gauge!("edthub_backlog").set(waiting as f64);
        let max = self.config.limits.max_backlog;
        if max > 0 && waiting >= max {
            metrics::counter!("edthub_ingest_refused_total", "reason" => "backlog").increment(1);
            return Err(format!(
                "{waiting} deliveries are waiting to be sent, the most this hub takes on \
                 (limits.max_backlog = {max}); try again in {BACKLOG_RETRY_SECS} s"
            ));
        }
        Ok(waiting)
    }

    /// A message with its current deliveries.
    pub fn view(&self, id: Uuid) -> Result<Option<MessageView>, StoreError> {
        let Some(message) = self.store.message(id)? else {
            return Ok(None);
        };
        let deliveries: Vec<_> = self
            .store
            .deliveries_of(id)?
            .into_iter()
            .filter(DeliveryRecord::is_current)
            .collect();
        let state = summarise(deliveries.iter().map(|d| &d.state));
        let complete = deliveries.iter().all(|d| d.state.is_final());
        Ok(Some(MessageView {
            message,
            deliveries,
            state,
            complete,
        }))
    }
}
