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

use super::registry::{Registry, SessionHandle};
use super::rules::ResourceView;
use crate::context::QueuedAppend;
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
    /// A stanza routed to a local user was handed to the resources the rules chose: `delivered` indexes
    /// `online`, the user's bound resources when it was routed. Told once per routed stanza, after its
    /// [`DeliveryEvent::DeliveredToResource`] events, because a subscriber such as carbons (XEP-0280
    /// section 7) must know which of the user's resources did not get it, which no single per-resource
    /// event tells. Stanzas handed straight to a resource (`Router::deliver_to_resource`) do not tell it.
    DeliveredToUser {
        user: &'a str,
        envelope: &'a Envelope,
        online: &'a [(String, SessionHandle, ResourceView)],
        delivered: &'a [usize],
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
    /// A bound client sent a stanza (its `from` already stamped, RFC 6120 section 8.1.2.1) and the server
    /// accepted it: told before it is handled, and not for a stanza the sender's own block list refused
    /// (XEP-0191 section 3.4).
    SentByClient {
        from: &'a FullJid,
        envelope: &'a Envelope,
    },
    /// A resource was bound (RFC 6120 section 7).
    SessionBound { jid: &'a FullJid },
    /// The session lost its transport and waits to be resumed (XEP-0198 section 5). It still holds
    /// what it wrote and the client never acknowledged (a connection can die unnoticed for a while,
    /// and what was written meanwhile is lost with it) and what it had not yet written: both are
    /// written again on resumption, and push treats them as queued for the hibernated session.
    SessionHibernated {
        jid: &'a FullJid,
        unacknowledged: &'a [WireStanza],
        unwritten: &'a [WireStanza],
    },
    /// A hibernated session got a transport again (XEP-0198 section 5).
    SessionResumed { jid: &'a FullJid },
    /// A hibernated session kept for push ([`super::SessionCommand::KeepForPush`]) ends soon unless
    /// resumed: its user's devices should be woken (XEP-0357), so the user does not silently drop out.
    HibernationExpiring { jid: &'a FullJid },
    /// The session ended and its resource is unbound.
    SessionEnded { jid: &'a FullJid },
}

/// What the subscribers did or ask the router to do, reported back to the emitter.
#[derive(Debug, Default)]
pub struct Reactions {
    /// A wake-up of the user's push devices was started (into [`super::Delivery`]).
    pub is_waking: bool,
    /// Carbons to hand over (XEP-0280): the router delivers them through `Router::deliver`, so they are
    /// counted like any other stanza. Empty, and not allocated, for almost every event.
    pub carbon_copies: Vec<CarbonCopy>,
}

/// One carbon for one resource (XEP-0280 sections 7 and 8).
#[derive(Debug)]
pub struct CarbonCopy {
    /// The bare JID whose resource gets it.
    pub user: String,
    pub resource: String,
    pub handle: SessionHandle,
    pub stanza: WireStanza,
}

/// The carbons subscriber's side, implemented by `features::carbons`: decides, without I/O, which
/// copies an event calls for; the router hands them over.
pub trait CarbonCopies: Send + Sync {
    /// The copies `event` calls for (none for most events).
    fn copies(&self, sessions: &Registry, event: &DeliveryEvent<'_>) -> Vec<CarbonCopy>;
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

/// The archive subscriber's side, implemented by `features::archive` (XEP-0313). Unlike the other
/// subscribers it also acts *before* an incoming message is delivered: XEP-0359 section 3 puts the
/// archive's `<stanza-id/>` on the message the recipient gets, so the id must exist before the first
/// resource (or the offline store) takes the stanza. The row itself is queued only once the message was
/// kept ([`Self::kept`]): a message bounced for a full offline quota is not archived. [`Self::applies`]
/// is a cheap synchronous check, so a stanza no archive wants costs no boxed future and no allocation.
#[async_trait]
pub trait Archiving: Send + Sync {
    /// Whether [`Self::before_delivery`] has anything to do with this message (archive it, or strip a
    /// forged `<stanza-id/>`).
    fn applies(&self, envelope: &Envelope) -> bool;

    /// A message for the local user `user` is about to be delivered or stored offline, once per message
    /// whatever the number of resources: stamps the stanza id on it and returns the row for `user`'s
    /// archive, or `None` when it is not archived (preferences, or nothing worth keeping).
    async fn before_delivery(
        &self,
        user: &BareJid,
        envelope: &mut Envelope,
    ) -> Option<QueuedAppend>;

    /// The message of `row` reached a resource or the offline store: queue it for the archive. Never
    /// fails: a full queue or a storage failure is logged and the message stays delivered.
    async fn kept(&self, row: QueuedAppend);

    /// A bound client sent a message: archive it as outgoing in the sender's archive.
    async fn sent_by_client(&self, from: &FullJid, envelope: &Envelope);
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
    /// Second: the message archive (XEP-0313), for outgoing messages; incoming ones go through
    /// [`Subscribers::before_delivery`]. `None` in unit tests that do not need it.
    pub archive: Option<Arc<dyn Archiving>>,
    /// Third: copies of messages to the user's other resources (XEP-0280). `None` in tests that do not
    /// need it.
    pub carbons: Option<Arc<dyn CarbonCopies>>,
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
            .field("archive", &self.archive.is_some())
            .field("carbons", &self.carbons.is_some())
            .field("push_notifications", &self.push_notifications.is_some())
            .finish_non_exhaustive()
    }
}

impl Subscribers {
    /// Subscribers with a push waker (or none).
    pub fn new(push: Option<Arc<dyn WakeUps>>) -> Subscribers {
        Subscribers {
            push,
            archive: None,
            carbons: None,
            push_notifications: None,
            #[cfg(test)]
            log: None,
        }
    }

    /// The same subscribers with the message archive attached.
    pub fn with_archive(mut self, archive: Arc<dyn Archiving>) -> Subscribers {
        self.archive = Some(archive);
        self
    }

    /// The pre-delivery step for a message to the local user `user` (see [`Archiving`]): called by the
    /// router once per message, after the delivery rules chose to deliver or store it and before the
    /// stanza is serialised for the first resource. Returns the archive row to hand to
    /// [`Self::archive_kept`] once the message was delivered or stored.
    pub async fn before_delivery(
        &self,
        user: &BareJid,
        envelope: &mut Envelope,
    ) -> Option<QueuedAppend> {
        match &self.archive {
            Some(archive) if archive.applies(envelope) => {
                archive.before_delivery(user, envelope).await
            }
            _ => None,
        }
    }

    /// The message of `row` (from [`Self::before_delivery`]) was delivered or stored offline.
    pub async fn archive_kept(&self, row: QueuedAppend) {
        if let Some(archive) = &self.archive {
            archive.kept(row).await;
        }
    }

    /// With the carbons subscriber (XEP-0280).
    pub fn with_carbons(mut self, carbons: Arc<dyn CarbonCopies>) -> Subscribers {
        self.carbons = Some(carbons);
        self
    }

    /// These subscribers with XEP-0357 publishing.
    pub fn with_push_notifications(mut self, triggers: Arc<dyn PushTriggers>) -> Subscribers {
        self.push_notifications = Some(triggers);
        self
    }

    /// Tells every subscriber about `event`, in the order of the fields. Returns what they did and what
    /// the router must still hand over. On the path of a delivered chat message this awaits nothing that
    /// does I/O, and allocates only for the carbons it calls for.
    pub async fn emit(&self, sessions: &Registry, event: DeliveryEvent<'_>) -> Reactions {
        let mut reactions = Reactions::default();
        #[cfg(test)]
        if let Some(log) = &self.log {
            log.record(&event);
        }
        if let (Some(push), DeliveryEvent::StoredOffline { user, .. }) = (&self.push, event) {
            push.wake_soon(user.to_string()).await;
            reactions.is_waking = true;
        }
        if let (Some(archive), DeliveryEvent::SentByClient { from, envelope }) =
            (&self.archive, event)
            && archive.applies(envelope)
        {
            archive.sent_by_client(from, envelope).await;
        }
        if let Some(carbons) = &self.carbons {
            reactions.carbon_copies = carbons.copies(sessions, &event);
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
    Delivered {
        to: String,
    },
    DeliveredToUser {
        user: String,
        resources: Vec<String>,
    },
    StoredOffline {
        user: String,
    },
    SubscriptionRequestKept {
        user: String,
    },
    SentByClient {
        from: String,
    },
    Bound {
        jid: String,
    },
    Hibernated {
        jid: String,
    },
    Resumed {
        jid: String,
    },
    Expiring {
        jid: String,
    },
    Ended {
        jid: String,
    },
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
            DeliveryEvent::DeliveredToUser {
                user,
                online,
                delivered,
                ..
            } => Recorded::DeliveredToUser {
                user: user.to_string(),
                resources: delivered
                    .iter()
                    .filter_map(|&index| online.get(index).map(|(name, _, _)| name.clone()))
                    .collect(),
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
            DeliveryEvent::SessionHibernated { jid, .. } => Recorded::Hibernated {
                jid: jid.to_string(),
            },
            DeliveryEvent::SessionResumed { jid } => Recorded::Resumed {
                jid: jid.to_string(),
            },
            DeliveryEvent::HibernationExpiring { jid } => Recorded::Expiring {
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
