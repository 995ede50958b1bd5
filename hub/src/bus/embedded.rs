//! The embedded bus: queues in the node's own sled database.
//!
//! Trees:
//! - `bus_ready`: `[queue len][queue][due ms][seq] → [deliveries][body]`, so the first key of a
//!   queue's prefix is the next item due. The store writes here inside its transactions.
//! - `bus_inflight`: `[queue len][queue][seq] → [deliveries][body]`: handed out, not settled.
//!   On open every in-flight item goes back to the head of its queue in `bus_ready`: that is
//!   the redelivery after a crash or restart.
//! - `bus_dead`: `[queue len][queue][seq] → [deliveries][reason len][reason][body]`.
//!
//! Moves between trees are sled transactions, so an item is always in exactly one of them.
//! Consumers wait on an in-process [`Signals`] wake-up, or until the next delayed item is due;
//! a wake-up goes to one waiting consumer, which passes it on when it finds an item.

use super::{
    count_dead_letter, dead_letter_at_limit, Bus, BusError, BusItem, DeadLetter, Requeued,
    LIMIT_REACHED,
};
use crate::durable::{GroupCommit, Signals};
use crate::track::now_ms;
use futures::future::BoxFuture;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const READY_TREE: &str = "bus_ready";
const INFLIGHT_TREE: &str = "bus_inflight";
const DEAD_TREE: &str = "bus_dead";

fn queue_prefix(queue: &str) -> Vec<u8> {
    let len = u8::try_from(queue.len()).expect("queue names are short");
    [&[len][..], queue.as_bytes()].concat()
}

fn ready_key(queue: &str, due_ms: u64, seq: u64) -> Vec<u8> {
    [
        queue_prefix(queue).as_slice(),
        &due_ms.to_be_bytes(),
        &seq.to_be_bytes(),
    ]
    .concat()
}

fn tag_key(queue: &str, seq: u64) -> Vec<u8> {
    [queue_prefix(queue).as_slice(), &seq.to_be_bytes()].concat()
}

fn encode(deliveries: u32, body: &[u8]) -> Vec<u8> {
    [&deliveries.to_be_bytes()[..], body].concat()
}

fn decode(v: &[u8]) -> Result<(u32, Vec<u8>), BusError> {
    if v.len() < 4 {
        return Err(BusError::Corrupt("item shorter than its header".into()));
    }
    let d = u32::from_be_bytes(v[..4].try_into().expect("4 bytes"));
    Ok((d, v[4..].to_vec()))
}

fn tail_u64(k: &[u8]) -> Result<u64, BusError> {
    k.len()
        .checked_sub(8)
        .and_then(|at| k[at..].try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| BusError::Corrupt("key shorter than its sequence number".into()))
}

/// Enqueues inside a store transaction on the `bus_ready` tree.
pub fn enqueue_in(
    ready: &TransactionalTree,
    queue: &str,
    body: &[u8],
    due_ms: u64,
) -> Result<(), sled::transaction::UnabortableTransactionError> {
    let seq = ready.generate_id()?;
    ready.insert(ready_key(queue, due_ms, seq), encode(0, body))?;
    Ok(())
}

enum Claim {
    Item(BusItem),
    WaitUntil(u64),
    /// The next item is committed but not yet on disk: wait for the flush.
    NotDurable,
    Empty,
}

type TxErr = ConflictableTransactionError<BusError>;

/// The sled-backed bus.
pub struct EmbeddedBus {
    ready: sled::Tree,
    inflight: sled::Tree,
    dead: sled::Tree,
    signals: Arc<Signals>,
    commit: GroupCommit,
    /// Items claimed and not yet handed out, by queue (see `try_claim`).
    claimed: Mutex<HashMap<String, VecDeque<BusItem>>>,
    max_deliveries: u32,
}

/// Most items claimed in one transaction.
const CLAIM_MOST: usize = 32;

impl EmbeddedBus {
    /// Opens the bus in `db`, returning every in-flight item to its queue (they were handed out
    /// before a restart and never settled). Items handed out `max_deliveries` times are
    /// dead-lettered instead of being handed out again. Items are handed out only once the
    /// write that queued them is durable (`commit` must be the group commit of every writer
    /// that queues work).
    pub fn open(
        db: &sled::Db,
        signals: Arc<Signals>,
        commit: GroupCommit,
        max_deliveries: u32,
    ) -> Result<Self, BusError> {
        let bus = Self {
            ready: db.open_tree(READY_TREE)?,
            inflight: db.open_tree(INFLIGHT_TREE)?,
            dead: db.open_tree(DEAD_TREE)?,
            commit,
            signals,
            claimed: Mutex::new(HashMap::new()),
            max_deliveries: max_deliveries.max(1),
        };
        bus.requeue_inflight()?;
        Ok(bus)
    }

    /// Returns every in-flight item to the head of its queue, in the order they were queued:
    /// they were due before anything still waiting.
    fn requeue_inflight(&self) -> Result<(), BusError> {
        for kv in self.inflight.iter() {
            let (k, v) = kv?;
            let queue_len = usize::from(
                *k.first()
                    .ok_or_else(|| BusError::Corrupt("empty in-flight key".into()))?,
            );
            let queue = k
                .get(1..1 + queue_len)
                .map(|q| String::from_utf8_lossy(q).to_string())
                .ok_or_else(|| BusError::Corrupt("in-flight key".into()))?;
            let seq = tail_u64(&k)?;
            let rk = ready_key(&queue, 0, seq);
            move_item((&self.inflight, &k), (&self.ready, &rk), &v)?;
        }
        Ok(())
    }

    /// The next item of `queue` for a consumer. Items are claimed in groups: every item due
    /// and durable at the head of the queue, up to [`CLAIM_MOST`], moves to `bus_inflight` in one
    /// transaction, and those not handed out at once wait in memory for the next consumer (a
    /// restart finds them in flight and hands them out again).
    fn try_claim(&self, queue: &str) -> Result<Claim, BusError> {
        // Nothing is left half-done while the lock is held: a panic elsewhere does not matter.
        let mut claimed = self
            .claimed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(item) = claimed.get_mut(queue).and_then(|q| q.pop_front()) {
            return Ok(Claim::Item(item));
        }
        let prefix = queue_prefix(queue);
        loop {
            let mut moves = Vec::new();
            let mut otherwise = Claim::Empty;
            let now = now_ms();
            for kv in self.ready.scan_prefix(&prefix) {
                if moves.len() >= CLAIM_MOST {
                    break;
                }
                let (k, v) = kv?;
                let due = k
                    .get(prefix.len()..prefix.len() + 8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| BusError::Corrupt("ready key".into()))?;
                if due > now {
                    otherwise = Claim::WaitUntil(due);
                    break;
                }
                let seq = tail_u64(&k)?;
                if !self.commit.is_durable(seq) {
                    self.commit.request();
                    otherwise = Claim::NotDurable;
                    break;
                }
                let (deliveries, body) = decode(&v)?;
                let deliveries = deliveries + 1;
                let tk = tag_key(queue, seq);
                if deliveries > self.max_deliveries {
                    let dv = dead_value(deliveries - 1, LIMIT_REACHED, &body);
                    moves.push((k, tk, dv, None));
                } else {
                    let iv = encode(deliveries, &body);
                    let item = BusItem {
                        queue: queue.to_string(),
                        tag: seq,
                        body,
                        deliveries,
                    };
                    moves.push((k, tk, iv, Some(item)));
                }
            }
            if moves.is_empty() {
                return Ok(otherwise);
            }
            (&self.ready, &self.inflight, &self.dead)
                .transaction(|(ready, inflight, dead)| {
                    for (k, tk, value, item) in &moves {
                        ready.remove(k)?;
                        match item {
                            Some(_) => inflight.insert(tk.as_slice(), value.as_slice())?,
                            None => dead.insert(tk.as_slice(), value.as_slice())?,
                        };
                    }
                    Ok::<_, TxErr>(())
                })
                .map_err(tx_err)?;
            let mut items = Vec::with_capacity(moves.len());
            for (.., item) in moves {
                match item {
                    Some(item) => items.push(item),
                    None => count_dead_letter(queue),
                }
            }
            let mut items = items.into_iter();
            if let Some(first) = items.next() {
                claimed.entry(queue.to_string()).or_default().extend(items);
                return Ok(Claim::Item(first));
            }
        }
    }

    fn take_inflight(&self, item: &BusItem) -> Result<Option<(u32, Vec<u8>)>, BusError> {
        self.inflight
            .get(tag_key(&item.queue, item.tag))?
            .map(|v| decode(&v))
            .transpose()
    }
}

fn dead_value(deliveries: u32, reason: &str, body: &[u8]) -> Vec<u8> {
    [
        &deliveries.to_be_bytes()[..],
        &(reason.len() as u32).to_be_bytes(),
        reason.as_bytes(),
        body,
    ]
    .concat()
}

/// Moves an item between trees in one transaction: the key `from` out of its tree, `value`
/// into the other under the key `to`.
fn move_item(
    from: (&sled::Tree, &[u8]),
    to: (&sled::Tree, &[u8]),
    value: &[u8],
) -> Result<(), BusError> {
    (from.0, to.0)
        .transaction(|(f, t)| {
            f.remove(from.1)?;
            t.insert(to.1, value)?;
            Ok::<_, TxErr>(())
        })
        .map_err(tx_err)
}

fn tx_err(e: sled::transaction::TransactionError<BusError>) -> BusError {
    match e {
        sled::transaction::TransactionError::Abort(e) => e,
        sled::transaction::TransactionError::Storage(e) => e.into(),
    }
}

impl Bus for EmbeddedBus {
    fn publish<'a>(
        &'a self,
        queue: &'a str,
        body: Vec<u8>,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let due = now_ms() + delay.as_millis() as u64;
            // In a transaction, like the store's enqueues, so the durability watermark covers it.
            self.ready
                .transaction(|t| {
                    enqueue_in(t, queue, &body, due)?;
                    Ok::<_, TxErr>(())
                })
                .map_err(tx_err)?;
            self.signals.notify(queue);
            self.commit.flush().await.map_err(BusError::Storage)
        })
    }

    fn receive<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<BusItem, BusError>> {
        Box::pin(async move {
            let signal = self.signals.get(queue);
            loop {
                let notified = signal.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                match self.try_claim(queue)? {
                    Claim::Item(item) => {
                        // The next waiting consumer looks for the next item.
                        signal.notify_one();
                        return Ok(item);
                    }
                    Claim::WaitUntil(due) => {
                        let wait = Duration::from_millis(due.saturating_sub(now_ms()));
                        tokio::select! {
                            _ = notified => {}
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    Claim::Empty | Claim::NotDurable => notified.await,
                }
            }
        })
    }

    fn ack<'a>(&'a self, item: &'a BusItem) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            self.inflight.remove(tag_key(&item.queue, item.tag))?;
            Ok(())
        })
    }

    fn retry_later<'a>(
        &'a self,
        item: &'a BusItem,
        delay: Duration,
    ) -> BoxFuture<'a, Result<Requeued, BusError>> {
        Box::pin(async move {
            let Some((deliveries, body)) = self.take_inflight(item)? else {
                return Err(item.not_in_flight());
            };
            if dead_letter_at_limit(self, item, deliveries, self.max_deliveries).await? {
                return Ok(Requeued::DeadLettered);
            }
            let tk = tag_key(&item.queue, item.tag);
            let rk = ready_key(&item.queue, now_ms() + delay.as_millis() as u64, item.tag);
            let v = encode(deliveries, &body);
            move_item((&self.inflight, &tk), (&self.ready, &rk), &v)?;
            self.signals.notify(&item.queue);
            Ok(Requeued::Later)
        })
    }

    fn dead_letter<'a>(
        &'a self,
        item: &'a BusItem,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let Some((deliveries, body)) = self.take_inflight(item)? else {
                return Err(item.not_in_flight());
            };
            let tk = tag_key(&item.queue, item.tag);
            let dv = dead_value(deliveries, reason, &body);
            move_item((&self.inflight, &tk), (&self.dead, &tk), &dv)?;
            count_dead_letter(&item.queue);
            self.commit.flush().await.map_err(BusError::Storage)
        })
    }

    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, BusError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for kv in self.dead.scan_prefix(queue_prefix(queue)) {
                let (_, v) = kv?;
                if v.len() < 8 {
                    return Err(BusError::Corrupt("dead letter header".into()));
                }
                let deliveries = u32::from_be_bytes(v[..4].try_into().expect("4"));
                let rlen = u32::from_be_bytes(v[4..8].try_into().expect("4")) as usize;
                let reason = v
                    .get(8..8 + rlen)
                    .ok_or_else(|| BusError::Corrupt("dead letter reason".into()))?;
                out.push(DeadLetter {
                    queue: queue.to_string(),
                    deliveries,
                    reason: String::from_utf8_lossy(reason).to_string(),
                    body: v[8 + rlen..].to_vec(),
                });
            }
            Ok(out)
        })
    }

    fn queued<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::collections::HashSet<Vec<u8>>>, BusError>> {
        Box::pin(async move {
            let p = queue_prefix(queue);
            let mut out = std::collections::HashSet::new();
            for kv in self
                .ready
                .scan_prefix(&p)
                .chain(self.inflight.scan_prefix(&p))
            {
                let (_, v) = kv?;
                out.insert(decode(&v)?.1);
            }
            Ok(Some(out))
        })
    }

    fn depth<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<u64, BusError>> {
        Box::pin(async move {
            let p = queue_prefix(queue);
            let n = self.ready.scan_prefix(&p).keys().count()
                + self.inflight.scan_prefix(&p).keys().count();
            Ok(n as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::conformance::{self, BusFactory};
    use std::path::PathBuf;

    struct Factory(PathBuf);

    impl BusFactory for Factory {
        fn open(&self) -> BoxFuture<'_, Arc<dyn Bus>> {
            Box::pin(async move {
                // A previous handle may still be closing: retry the file lock briefly.
                let mut tries = 0;
                let db = loop {
                    match sled::open(&self.0) {
                        Ok(db) => break db,
                        Err(_) if tries < 100 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("cannot reopen {}: {e}", self.0.display()),
                    }
                };
                let signals = Arc::new(Signals::default());
                let commit = GroupCommit::start(db.clone(), signals.clone());
                let bus = EmbeddedBus::open(&db, signals, commit, conformance::MAX_DELIVERIES)
                    .expect("open bus");
                Arc::new(bus) as Arc<dyn Bus>
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_bus_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        conformance::run_all(&Factory(dir.path().join("bus"))).await;
    }
}
