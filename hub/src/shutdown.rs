//! Graceful shutdown: one trigger, any number of listeners (`run(listener, shutdown)` style).

use tokio::sync::watch;

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
/// ```ignore
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
