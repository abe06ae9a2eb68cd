//! Push on outcomes: when a message for a local user is stored offline, their registered devices are woken
//! through the built-in relay (push.md section 2). The router never talks to a push vendor; it reports the
//! outcome here and the relay's durable outbox does the rest.

use async_trait::async_trait;

/// Something that can wake an account's devices. The server implements it over `herald_relay::Relay`;
/// tests use their own.
#[async_trait]
pub trait PushWaker: Send + Sync {
    /// Queues a wake-up (no sender, no text) for every device of `account` (a bare JID).
    /// Returns how many devices were queued.
    async fn wake(&self, account: &str) -> Result<usize, String>;
}

/// Wakes `account`'s devices if a relay is attached; returns whether at least one device was queued.
pub async fn on_stored_offline(waker: Option<&dyn PushWaker>, account: &str) -> bool {
    let Some(waker) = waker else {
        return false;
    };
    match waker.wake(account).await {
        Ok(devices) => devices > 0,
        Err(error) => {
            tracing::warn!(%error, "could not queue a push notification");
            false
        }
    }
}
