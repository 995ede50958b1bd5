//! Group commit: writers ask for a flush and wait; one task runs `flush_async` for everyone who
//! asked while the previous flush was running. A request is answered only by a flush that
//! started after the request was made, so it covers every write committed before it.

use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::UnboundedSender<Reply>,
}

impl GroupCommit {
    /// Starts the flusher task for `db` on the current runtime.
    pub fn start(db: sled::Db) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut waiting = vec![first];
                while let Ok(more) = rx.try_recv() {
                    waiting.push(more);
                }
                let result = db
                    .flush_async()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                metrics::counter!("edthub_store_flushes_total").increment(1);
                metrics::histogram!("edthub_store_flush_batch").record(waiting.len() as f64);
                for w in waiting {
                    let _ = w.send(result.clone());
                }
            }
        });
        Self { tx }
    }

    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .map_err(|_| "the flusher has stopped".to_string())?;
        rx.await
            .map_err(|_| "the flusher has stopped".to_string())?
    }
}
