//! Shutdown as an argument, not a global: the trigger side ends `serve`, every task holds a [`Shutdown`].

use tokio::sync::watch;

/// Held by whoever may stop the server.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Held by every task that must stop when the server stops.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A new trigger and the receiver side to hand to `run`.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Resolves once shutdown was triggered (or the trigger was dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Drop for ShutdownTrigger {
    fn drop(&mut self) {
        self.trigger();
    }
}
