//! Delivery events: what happened to stanzas and sessions, told to a closed, statically known set of
//! subscribers (Prosody's hooks, typed and in one place).
//!
//! Every hand-over to a session goes through [`super::Router::deliver`], which emits
//! [`DeliveryEvent::DeliveredToResource`]; storing offline (XEP-0160) emits
//! [`DeliveryEvent::StoredOffline`]; the session task emits bound and ended (RFC 6120 section 7) and, with
//! stream management (XEP-0198), hibernated and resumed. A new reactor (carbons, XEP-0280; the archive,
//! XEP-0313; XEP-0357 push) is a new field of [`Subscribers`] and a line in [`Subscribers::emit`], not a
//! call added to each delivery path.

use std::sync::Arc;

use crate::xmpp::{BareJid, Envelope, FullJid, WireStanza};
use async_trait::async_trait;

/// Something that happened to a stanza or a session.
#[derive(Debug, Clone, Copy)]
pub enum DeliveryEvent<'a> {
    /// A stanza was queued for one bound resource (`user` is the bare JID, as the registry keys it).
    DeliveredToResource {
        user: &'a str,
        resource: &'a str,
        stanza: &'a WireStanza,
    },
    /// A message was stored for a user with no available resource (XEP-0160).
    StoredOffline {
        user: &'a BareJid,
        envelope: &'a Envelope,
    },
    /// A subscription request for a user with no available resource was kept as pending, to be
    /// delivered at their next login (RFC 6121 section 3.1.3).
    SubscriptionRequestKept {
        user: &'a BareJid,
        envelope: &'a Envelope,
    },
    /// A bound client sent a stanza (its `from` already stamped, RFC 6120 section 8.1.2.1).
    SentByClient {
        from: &'a FullJid,
        envelope: &'a Envelope,
    },
    /// A resource was bound (RFC 6120 section 7).
    SessionBound { jid: &'a FullJid },
    /// The session lost its transport and waits to be resumed (XEP-0198 section 5).
    SessionHibernated { jid: &'a FullJid },
    /// A hibernated session got a transport again (XEP-0198 section 5).
    SessionResumed { jid: &'a FullJid },
    /// The session ended and its resource is unbound.
    SessionEnded { jid: &'a FullJid },
}

/// What the subscribers did that the emitter reports back (into [`super::Delivery`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reactions {
    /// A wake-up of the user's push devices was started.
    pub is_waking: bool,
}

/// The push subscriber's side, implemented by `features::push`: wake an account's devices soon. The
/// router never talks to a push vendor; this only starts the relay's work.
#[async_trait]
pub trait WakeUps: Send + Sync {
    /// Starts waking `account`'s devices (a bare JID) and returns without waiting for the wake-up; it may
    /// wait for room when too many wake-ups are pending, so a stalled relay slows senders down instead
    /// of growing memory.
    async fn wake_soon(&self, account: String);
}

/// The XEP-0357 subscriber's side, implemented by `features::push_notifications`: notices the events
/// that warrant a publish to the app servers a user enabled (a message stored offline, a stanza queued
/// for a hibernated session) and publishes later, off the delivery path.
pub trait PushTriggers: Send + Sync {
    /// Called with every event. Must not wait: it is on the path of every delivered stanza.
    fn observe(&self, event: &DeliveryEvent<'_>);
    /// The account enabled a registration: whatever was concluded from having none is stale.
    fn registrations_changed(&self, account: &str) {
        let _ = account;
    }
}

/// The closed set of subscribers, called in a fixed order by [`Subscribers::emit`]: one field each.
#[derive(Default)]
pub struct Subscribers {
    /// First: wakes a user's devices when a message for them is stored offline (XEP-0357 section 5,
    /// as Prosody's mod_cloud_notify does). `None` when no relay or waker is attached.
    pub push: Option<Arc<dyn WakeUps>>,
    /// XEP-0357 publishes to the app servers users enabled (`features::push_notifications`).
    pub push_notifications: Option<Arc<dyn PushTriggers>>,
    /// Every event, in order, for the router's unit tests.
    #[cfg(test)]
    pub log: Option<EventLog>,
}

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribers")
            .field("push", &self.push.is_some())
            .field("push_notifications", &self.push_notifications.is_some())
            .finish_non_exhaustive()
    }
}

impl Subscribers {
    /// Subscribers with a push waker (or none).
    pub fn new(push: Option<Arc<dyn WakeUps>>) -> Subscribers {
        Subscribers {
            push,
            push_notifications: None,
            #[cfg(test)]
            log: None,
        }
    }

    /// These subscribers with XEP-0357 publishing.
    pub fn with_push_notifications(mut self, triggers: Arc<dyn PushTriggers>) -> Subscribers {
        self.push_notifications = Some(triggers);
        self
    }

    /// Tells every subscriber about `event`, in the order of the fields. Returns what they did. On the
    /// path of a delivered chat message this awaits nothing that does I/O and allocates nothing.
    pub async fn emit(&self, event: DeliveryEvent<'_>) -> Reactions {
        let mut reactions = Reactions::default();
        #[cfg(test)]
        if let Some(log) = &self.log {
            log.record(&event);
        }
        if let (Some(push), DeliveryEvent::StoredOffline { user, .. }) = (&self.push, event) {
            push.wake_soon(user.to_string()).await;
            reactions.is_waking = true;
        }
        if let Some(push_notifications) = &self.push_notifications {
            push_notifications.observe(&event);
        }
        reactions
    }
}

/// A recorded event, owned, for tests.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Delivered { to: String },
    StoredOffline { user: String },
    SubscriptionRequestKept { user: String },
    SentByClient { from: String },
    Bound { jid: String },
    Hibernated { jid: String },
    Resumed { jid: String },
    Ended { jid: String },
}

/// An inspectable log of every event a router emitted (test builds only).
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub struct EventLog(Arc<std::sync::Mutex<Vec<Recorded>>>);

#[cfg(test)]
impl EventLog {
    fn record(&self, event: &DeliveryEvent<'_>) {
        let recorded = match *event {
            DeliveryEvent::DeliveredToResource { user, resource, .. } => Recorded::Delivered {
                to: format!("{user}/{resource}"),
            },
            DeliveryEvent::StoredOffline { user, .. } => Recorded::StoredOffline {
                user: user.to_string(),
            },
            DeliveryEvent::SubscriptionRequestKept { user, .. } => {
                Recorded::SubscriptionRequestKept {
                    user: user.to_string(),
                }
            }
            DeliveryEvent::SentByClient { from, .. } => Recorded::SentByClient {
                from: from.to_string(),
            },
            DeliveryEvent::SessionBound { jid } => Recorded::Bound {
                jid: jid.to_string(),
            },
            DeliveryEvent::SessionHibernated { jid } => Recorded::Hibernated {
                jid: jid.to_string(),
            },
            DeliveryEvent::SessionResumed { jid } => Recorded::Resumed {
                jid: jid.to_string(),
            },
            DeliveryEvent::SessionEnded { jid } => Recorded::Ended {
                jid: jid.to_string(),
            },
        };
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(recorded);
    }

    /// Takes the events recorded so far.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
