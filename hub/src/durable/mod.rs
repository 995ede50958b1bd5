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

pub use commit::GroupCommit;
pub use files::{count_sync, disk_syncs, Durable, FileSync};
pub use signals::Signals;

/// How long a round of syncs (database flush or file syncs) waits for more writers when the
/// previous round ended within [`LINGER_UNDER_LOAD`]: under load, fewer and fuller rounds.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);
const LINGER_UNDER_LOAD: std::time::Duration = std::time::Duration::from_millis(2);
