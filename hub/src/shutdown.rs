//! Graceful shutdown: one trigger, any number of listeners (`run(listener, shutdown)` style).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// What the shutdown is waiting for now, for the watchdog to name.
static WAITING_FOR: Mutex<&str> = Mutex::new("the listeners to close");

/// Records what the shutdown is waiting for next.
pub fn waiting_for(what: &'static str) {
    *WAITING_FOR.lock().unwrap_or_else(|e| e.into_inner()) = what;
}

/// An armed watchdog (see [`watchdog`]). Dropping it leaves it armed; [`Watchdog::cancel`]
/// disarms it once what it guards has finished.
#[must_use = "dropping the guard leaves the watchdog armed; keep it to cancel it"]
pub struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    /// Disarms the watchdog: what it guarded has finished.
    pub fn cancel(self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Starts a watchdog for `doing` (a shutdown, or the node reopening its database): if it is
/// not cancelled within `limit`, it logs what the node was waiting for and exits the process
/// with status 1, for the service manager to start it again. A thread of its own, so that
/// nothing stuck in the runtime or the database can hold it up.
pub fn watchdog(limit: Duration, doing: &'static str) -> Watchdog {
    let cancelled = Arc::new(AtomicBool::new(false));
    let seen = cancelled.clone();
    let started = std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            if seen.load(Ordering::Acquire) {
                return;
            }
            let what = *WAITING_FOR.lock().unwrap_or_else(|e| e.into_inner());
            tracing::error!(
                limit_secs = limit.as_secs(),
                abandoned = what,
                "{doing} did not finish in time; exiting without waiting for {what}"
            );
            // Not eprintln!, which panics where stderr cannot be written.
            let _ = writeln!(
                std::io::stderr(),
                "edthub: {doing} did not finish within {} s; exiting without waiting for {what}",
                limit.as_secs()
            );
            std::process::exit(1);
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "could not start the {doing} watchdog");
    }
    Watchdog(cancelled)
}

/// Fires the shutdown.
pub struct Trigger(watch::Sender<bool>);

/// Resolves once the shutdown has fired.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

/// A periodic tick that ends when the shutdown fires: the one loop-until-shutdown of every
/// background job. The first tick is at once; a late tick delays the next rather than
/// bunching them up.
///
/// ```text
/// let mut every = Every::new(Duration::from_secs(60), shutdown);
/// while every.tick().await { /* the job */ }
/// ```
pub struct Every {
    interval: tokio::time::Interval,
    shutdown: Shutdown,
}

impl Every {
    pub fn new(period: std::time::Duration, shutdown: Shutdown) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { interval, shutdown }
    }

    /// Waits for the next tick: `true`, or `false` once the shutdown has fired.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.shutdown.wait() => false,
            _ = self.interval.tick() => true,
        }
    }
}

impl Shutdown {
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }

    pub fn fired(&self) -> bool {
        *self.0.borrow()
    }
}
