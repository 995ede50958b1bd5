//! Durability shared by the store, the embedded bus (which write to one sled database) and the
//! file transports.
//!
//! [`GroupCommit`] flushes the database for every writer that asks (one fsync for many writes)
//! and keeps the watermark below which every write is on disk; [`FileSync`] does the same for
//! files (payloads, drop files): one round of syncs for every writer waiting; [`Signals`] wakes
//! the bus's consumers when work is enqueued or becomes durable. They live here, not in
//! `store` or `bus`, so that neither has to import the other to share them.

mod commit;
mod files;
mod signals;

pub use commit::{GroupCommit, Watermark};
pub use files::{count_sync, disk_syncs, Durable, FileSync};
pub use signals::Signals;

/// How long a round of syncs (database flush or file syncs) waits for more writers when the
/// hub is busy (see [`Pacing`]).
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);
/// A round that ended this recently, with enough writers, shows the hub is busy.
const LINGER_UNDER_LOAD: std::time::Duration = std::time::Duration::from_millis(2);

/// When a round of syncs waits for more writers: after a round of at least `busy` writers
/// that ended under [`LINGER_UNDER_LOAD`] ago, it waits [`LINGER`]; under load that makes
/// fewer, fuller rounds, and a quiet hub syncs at once.
pub(crate) struct Pacing {
    busy: usize,
    last_end: tokio::time::Instant,
    last_size: usize,
}

impl Pacing {
    pub(crate) fn new(busy: usize) -> Self {
        Self {
            busy,
            last_end: tokio::time::Instant::now(),
            last_size: 0,
        }
    }

    /// Waits, if the hub is busy, before a round gathers its writers.
    async fn linger(&self) {
        if self.busy_now() {
            tokio::time::sleep(LINGER).await;
        }
    }

    /// [`Pacing::linger`] for a thread of its own.
    pub(crate) fn linger_blocking(&self) {
        if self.busy_now() {
            std::thread::sleep(LINGER);
        }
    }

    fn busy_now(&self) -> bool {
        self.last_size >= self.busy && self.last_end.elapsed() < LINGER_UNDER_LOAD
    }

    /// A round of `size` writers has ended.
    pub(crate) fn ended(&mut self, size: usize) {
        self.last_end = tokio::time::Instant::now();
        self.last_size = size;
    }
}
