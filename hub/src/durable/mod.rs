//! Durability shared by the store and the embedded bus, which write to one sled database.
//!
//! [`GroupCommit`] flushes the database for every writer that asks (one fsync for many writes)
//! and keeps the watermark below which every write is on disk; [`Signals`] wakes the bus's
//! consumers when work is enqueued or becomes durable. Both live here, not in `store` or
//! `bus`, so that neither has to import the other to share them.

mod commit;
mod signals;

pub use commit::GroupCommit;
pub use signals::Signals;
