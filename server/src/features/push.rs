//! Push on outcomes: when a message for a local user is stored offline, their registered devices are woken
//! through the built-in relay (as Prosody's mod_cloud_notify and ejabberd's mod_push do for offline
//! messages; XEP-0357 "Publishing Notifications"). The router never talks to a push vendor: [`OfflineWaker`]
//! is the first of its delivery-event subscribers (`router::events`), and the relay's durable outbox does
//! the rest.
//!
//! The wake-up runs beside the sender's session, not in it: a session handles its stanzas in order
//! (RFC 6120 section 10.1), so waiting for the relay's write (a database commit, an fsync on
//! PostgreSQL) would hold up every later message of that sender. Measured with herald-load's push
//! phase on PostgreSQL (BENCHMARKS.md): p99 485-740 ms when the session waited, 37-63 ms when it
//! does not. The message itself is stored before this runs, so it is never lost; only the wake-up of
//! a process that crashes in between is.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::router::events::WakeUps;

/// Something that can wake an account's devices. The server implements it over `herald_relay::Relay`;
/// tests use their own.
#[async_trait]
pub trait PushWaker: Send + Sync {
    /// Queues a wake-up (no sender, no text) for every device of `account` (a bare JID).
    /// Returns how many devices were queued.
    async fn wake(&self, account: &str) -> Result<usize, String>;
}

/// Wake-ups handed to the relay and not yet stored by it, at most. Beyond this (the database has
/// stalled), storing the next offline message waits for a slot: memory stays bounded and senders
/// slow down instead of the server queueing without end.
const MAX_PENDING_WAKE_UPS: usize = 10_000;

/// The push subscriber of the router's delivery events: hands wake-ups to a [`PushWaker`] without waiting
/// for them.
pub struct OfflineWaker {
    waker: Arc<dyn PushWaker>,
    pending: Arc<Semaphore>,
}

impl OfflineWaker {
    pub fn new(waker: Arc<dyn PushWaker>) -> OfflineWaker {
        OfflineWaker {
            waker,
            pending: Arc::new(Semaphore::new(MAX_PENDING_WAKE_UPS)),
        }
    }

    /// Starts waking `account`'s devices and returns at once, unless [`MAX_PENDING_WAKE_UPS`] are
    /// already pending, in which case it first waits for one of them to finish.
    pub async fn wake_soon(&self, account: String) {
        let Ok(slot) = Arc::clone(&self.pending).acquire_owned().await else {
            return; // The semaphore is never closed.
        };
        let waker = Arc::clone(&self.waker);
        tokio::spawn(async move {
            if let Err(error) = waker.wake(&account).await {
                tracing::warn!(%error, "could not queue a push notification");
            }
            drop(slot);
        });
    }
}

#[async_trait]
impl WakeUps for OfflineWaker {
    async fn wake_soon(&self, account: String) {
        OfflineWaker::wake_soon(self, account).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::events::{DeliveryEvent, Subscribers};
    use crate::xmpp::{BareJid, Element, Envelope};
    use tokio::sync::{Notify, mpsc};

    /// Records wake-ups; each waits until `release` is notified.
    struct Held {
        woken: mpsc::UnboundedSender<String>,
        release: Arc<Notify>,
    }

    #[async_trait]
    impl PushWaker for Held {
        async fn wake(&self, account: &str) -> Result<usize, String> {
            self.release.notified().await;
            let _ = self.woken.send(account.to_string());
            Ok(1)
        }
    }

    /// What the router does when a message was stored offline: tells its subscribers.
    async fn on_stored_offline(subscribers: &Subscribers, account: &str) -> bool {
        let user: BareJid = account.parse().expect("jid");
        let element: Element = format!("<message xmlns='jabber:client' to='{account}'/>")
            .parse()
            .expect("message");
        let envelope = Envelope::parse(element).expect("envelope");
        let sessions = crate::router::Registry::default();
        subscribers
            .emit(
                &sessions,
                DeliveryEvent::StoredOffline {
                    user: &user,
                    envelope: &envelope,
                },
            )
            .await
            .is_waking
    }

    #[tokio::test]
    async fn the_caller_does_not_wait_for_the_wake_up() {
        let (woken, mut seen) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let waker = OfflineWaker::new(Arc::new(Held {
            woken,
            release: Arc::clone(&release),
        }));
        let subscribers = Subscribers::new(Some(Arc::new(waker)));
        // Returns although the wake-up cannot finish yet.
        assert!(on_stored_offline(&subscribers, "alice@example.org").await);
        assert!(seen.try_recv().is_err());
        release.notify_one();
        assert_eq!(seen.recv().await.as_deref(), Some("alice@example.org"));
        assert!(!on_stored_offline(&Subscribers::new(None), "bob@example.org").await);
    }
}
