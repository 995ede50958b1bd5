//! Group commit: writers ask for a flush and wait; one task runs `flush_async` for everyone who
//! asked while the previous flush was running. A request is answered only by a flush that
//! started after the request was made, so it covers every write committed before it.
//!
//! It also keeps a durability watermark: every sled id (`generate_id`) below it belongs to a
//! write that is on disk. The embedded bus hands out only work items below the watermark, so
//! nothing is delivered before the hub could have acknowledged it; each flush wakes the bus.

use super::{Pacing, Signals};
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Reply = Option<oneshot::Sender<Result<(), String>>>;

/// Draws a sled id inside a transaction: every transaction that drew a smaller id has
/// committed by the time it returns (see [`GroupCommit::start_with`]).
pub type Watermark = Arc<dyn Fn() -> BoxFuture<'static, Result<u64, String>> + Send + Sync>;

#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::UnboundedSender<Reply>,
    durable: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts the flusher task for `db` on the current runtime; `signals` are woken after each
    /// flush.
    pub fn start(db: sled::Db, signals: Arc<Signals>) -> Self {
        let own = db.clone();
        let watermark: Watermark = Arc::new(move || {
            // sled runs transactions one at a time, so every transaction that drew a smaller
            // id has committed before this one.
            let drawn = own
                .transaction(|t| {
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(t.generate_id()?)
                })
                .map_err(|_| "drawing the durability watermark".to_string());
            Box::pin(async move { drawn })
        });
        Self::start_with(db, signals, watermark)
    }

    /// [`GroupCommit::start`], drawing the watermark with `watermark` (the store's writer
    /// draws it in the transaction it is about to commit anyway).
    pub fn start_with(db: sled::Db, signals: Arc<Signals>, watermark: Watermark) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
        // Everything already in the database at open was read back from disk.
        let durable = Arc::new(AtomicU64::new(db.generate_id().unwrap_or(0)));
        let mark = durable.clone();
        tokio::spawn(async move {
            // Any flush that ended a moment ago shows load: fewer, fuller flushes, each one a
            // job for the database's IO threads.
            let mut pacing = Pacing::new(1);
            while let Some(first) = rx.recv().await {
                pacing.linger().await;
                let mut waiting = vec![first];
                while let Ok(more) = rx.try_recv() {
                    waiting.push(more);
                }
                // Every transaction below the watermark has committed, so the flush below
                // covers it.
                let watermark = watermark().await;
                super::count_sync();
                // (A flush on tokio's blocking threads instead of sled's IO pool saves a
                // wake-up of that pool but holds tens of megabytes more: measured, not kept.)
                let result = db
                    .flush_async()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                if let (Ok(()), Ok(w)) = (&result, watermark) {
                    mark.fetch_max(w, Ordering::AcqRel);
                }
                signals.notify_all();
                metrics::counter!("edthub_store_flushes_total").increment(1);
                let size = waiting.len();
                let replies: Vec<_> = waiting.into_iter().flatten().collect();
                metrics::histogram!("edthub_store_flush_batch").record(replies.len() as f64);
                for w in replies {
                    let _ = w.send(result.clone());
                }
                pacing.ended(size);
            }
        });
        Self { tx, durable }
    }

    /// Waits until every write committed before the call is on disk.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Some(tx))
            .map_err(|_| "the flusher has stopped".to_string())?;
        rx.await
            .map_err(|_| "the flusher has stopped".to_string())?
    }

    /// Asks for a flush without waiting for it.
    pub fn request(&self) {
        let _ = self.tx.send(None);
    }

    /// Whether the write that took sled id `id` is on disk.
    pub fn is_durable(&self, id: u64) -> bool {
        id < self.durable.load(Ordering::Acquire)
    }
}
