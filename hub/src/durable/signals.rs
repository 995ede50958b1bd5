//! Per-queue wake-ups for the embedded bus's waiting consumers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Per-queue wake-ups for waiting consumers.
#[derive(Default)]
pub struct Signals {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Signals {
    /// The wake-up of `queue`, for a consumer to wait on.
    pub fn get(&self, queue: &str) -> Arc<Notify> {
        let mut q = self.queues.lock().expect("signals lock");
        q.entry(queue.to_string()).or_default().clone()
    }

    /// Wakes a consumer of `queue` (the next one to wait, if none is waiting). A consumer that
    /// finds work passes the wake-up on, so consumers wake one after another while there is
    /// work, not all at once for every write.
    pub fn notify(&self, queue: &str) {
        self.get(queue).notify_one();
    }

    /// Wakes a consumer of every queue (new writes became durable).
    pub fn notify_all(&self) {
        let q = self.queues.lock().expect("signals lock");
        for n in q.values() {
            n.notify_one();
        }
    }
}
