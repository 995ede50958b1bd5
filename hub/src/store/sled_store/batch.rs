//! Changes made at the same moment share one transaction.
//!
//! sled commits a transaction by writing out its log buffer before and after it, each write
//! a job for its IO threads and a wait for the disk. With a transaction per change, every
//! submission and every delivery outcome paid for two such writes. Here one writer thread takes
//! every change waiting and commits them in one transaction, in the order they arrived: under
//! load a commit carries dozens (the writer waits a moment for more), when quiet it carries one
//! and costs what it did before.
//!
//! Each change keeps its own outcome. A change that refuses (an invalid transition, a missing
//! delivery) is answered with its refusal and the rest are committed without it, so every
//! change sees exactly the changes before it, as if each had run alone in that order.

use super::schema::{Tx, TxResult};
use crate::durable::Pacing;
use crate::store::StoreError;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::cell::RefCell;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Most changes committed together.
const MOST: usize = 256;

/// Changes in one transaction that show the hub is busy.
const BUSY: usize = 4;

/// A change waiting for the writer: the body of a transaction (run again if sled must retry
/// it), and where its outcome goes.
trait Job: Send {
    fn run(&self, t: &Tx) -> TxResult<()>;
    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

struct Typed<T, F> {
    change: F,
    out: RefCell<Option<T>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send, F: Fn(&Tx) -> TxResult<T> + Send> Job for Typed<T, F> {
    fn run(&self, t: &Tx) -> TxResult<()> {
        let v = (self.change)(t)?;
        *self.out.borrow_mut() = Some(v);
        Ok(())
    }

    fn answer(self: Box<Self>, committed: Result<(), StoreError>) {
        let Typed { out, reply, .. } = *self;
        let out = committed.and_then(|()| {
            out.into_inner()
                .ok_or_else(|| StoreError::Engine("a committed change left no outcome".into()))
        });
        let _ = reply.send(out);
    }
}

/// The writer thread's queue.
pub(super) struct Batcher {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Batcher {
    /// Starts the writer thread over `trees`; it ends when the batcher is dropped.
    pub fn start(trees: Vec<sled::Tree>) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("edthub-store".into())
            .spawn(move || {
                // Under load, a moment's wait makes fewer, fuller transactions.
                let mut pacing = Pacing::new(BUSY);
                while let Ok(first) = queue.recv() {
                    pacing.linger_blocking();
                    let mut batch = vec![first];
                    while batch.len() < MOST {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let size = batch.len();
                    metrics::histogram!("edthub_store_batch").record(size as f64);
                    commit(&trees, batch);
                    pacing.ended(size);
                }
            })
            .map_err(|e| StoreError::Engine(format!("starting the store's writer: {e}")))?;
        Ok(Self { jobs })
    }

    /// Commits `change` with whatever else is waiting, and gives its outcome once committed
    /// (not yet flushed: callers flush as before).
    pub async fn run<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Tx) -> TxResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Typed {
            change,
            out: RefCell::new(None),
            reply,
        });
        let stopped = || StoreError::Engine("the store's writer has stopped".into());
        self.jobs.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Commits `batch` in one transaction, leaving out (and answering) each change that refuses.
fn commit(trees: &[sled::Tree], mut batch: Vec<Box<dyn Job>>) {
    while !batch.is_empty() {
        let result = trees.transaction(|t: &Vec<TransactionalTree>| {
            for (i, job) in batch.iter().enumerate() {
                match job.run(t) {
                    Ok(()) => {}
                    Err(ConflictableTransactionError::Abort(e)) => {
                        return Err(ConflictableTransactionError::Abort((i, e)))
                    }
                    Err(ConflictableTransactionError::Storage(e)) => {
                        return Err(ConflictableTransactionError::Storage(e))
                    }
                    Err(_) => return Err(ConflictableTransactionError::Conflict),
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                for job in batch {
                    job.answer(Ok(()));
                }
                return;
            }
            Err(TransactionError::Abort((i, e))) => batch.remove(i).answer(Err(e)),
            Err(TransactionError::Storage(e)) => {
                let e = e.to_string();
                for job in batch {
                    job.answer(Err(StoreError::Engine(e.clone())));
                }
                return;
            }
        }
    }
}
