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

impl Shutdown {
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }

    pub fn fired(&self) -> bool {
        *self.0.borrow()
    }
}
