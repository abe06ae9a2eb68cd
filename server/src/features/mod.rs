//! Server features, one file per RFC or XEP, and the closed dispatch that reaches them.
//!
//! [`Features`] is the router's [`LocalHandling`]: what the server does itself for its domains and users.
//! IQ payloads the server answers are listed once in [`iq::IQ_HANDLERS`]; disco#info features are derived
//! from the same table ([`disco::server_features`]), so what is advertised and what is handled cannot drift.

pub mod app_server;
pub mod app_server_commands;
pub mod archive;
pub mod blocking;
pub mod bookmarks_compat;
pub mod carbons;
pub mod client_state;
pub mod disco;
pub mod entity_caps;
pub mod iq;
pub mod offline;
pub mod pep;
pub mod ping;
pub mod presence;
pub mod private_xml;
pub mod push;
pub mod push_notifications;
pub mod register;
pub mod relay_forward;
pub mod roster;
pub mod stream_management;
pub mod subscription;
pub mod vcard;
pub mod vcard4;
pub mod vcard_avatar;
pub mod version;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use crate::router::events::DeliveryEvent;
use crate::router::{Bounce, Delivery, LocalHandling, Router, Stored};
use crate::xmpp::{
    BareJid, DefinedCondition, Element, Envelope, FullJid, Jid, PresenceKind, StanzaKind,
};

/// Per-session state the features keep for a bound client (RFC 6121 sections 4.2 to 4.6).
#[derive(Debug)]
pub struct ClientSession {
    pub jid: FullJid,
    /// `jid` without the resource, as the storage key.
    pub bare: String,
    /// Has sent initial presence and not gone unavailable (RFC 6121 section 4.2).
    pub is_available: bool,
    /// Entities this session sent directed presence to (RFC 6121 section 4.6); they get unavailable at the end.
    pub directed_presence: HashSet<Jid>,
    /// Offline messages could not be read when it became available; the next presence tries again.
    pub has_undelivered_offline: bool,
    /// The avatar hash stamped on its presence (XEP-0398 section 4), read once.
    pub avatar_photo: vcard_avatar::AvatarPhoto,
}

impl ClientSession {
    pub fn new(jid: FullJid) -> ClientSession {
        ClientSession {
            bare: jid.to_bare().to_string(),
            jid,
            is_available: false,
            directed_presence: HashSet::new(),
            has_undelivered_offline: false,
            avatar_photo: vcard_avatar::AvatarPhoto::Unread,
        }
    }

    pub fn bare_jid(&self) -> BareJid {
        self.jid.to_bare()
    }
}

/// Why a session must end after a stanza was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The account was removed (XEP-0077 section 3.2).
    AccountRemoved,
}

/// Handles a stanza a bound client sent, whose `from` has been stamped with the session's full JID.
///
/// The sender's own block list is checked first (XEP-0191 section 3.4), so what it refuses is neither
/// told to the subscribers (no carbons of a message that never left, XEP-0280) nor handled.
pub async fn from_client(
    router: &Arc<Router>,
    session: &mut ClientSession,
    envelope: Envelope,
) -> Result<(), SessionEnd> {
    let for_own_account = match envelope.kind {
        StanzaKind::IqRequest => is_for_own_account(session, &envelope),
        // Answers to the server's own requests (pings, roster pushes).
        StanzaKind::IqResponse => envelope.to.is_none(),
        _ => false,
    };
    if !for_own_account && let Some(to) = &envelope.to {
        match blocking::is_blocked_by_sender(router, session, to).await {
            Ok(false) => {}
            Ok(true) => {
                // XEP-0191 section 3.4: no presence, directed or subscription, goes to a JID the user
                // blocked, silently; anything else is answered, so the user learns why it was not
                // sent. Straight to this session: routed, the error would come "from" the blocked JID
                // and be dropped by the user's own block list.
                if !matches!(envelope.kind, StanzaKind::Presence(_))
                    && let Some(reply) = blocking::blocked_error_reply(&envelope)
                {
                    reply_to_session(router, session, &reply).await;
                }
                return Ok(());
            }
            Err(_) => {
                reply_storage_failure(router, session, &envelope).await;
                return Ok(());
            }
        }
    }
    router
        .emit(DeliveryEvent::SentByClient {
            from: &session.jid,
            envelope: &envelope,
        })
        .await;
    match envelope.kind {
        StanzaKind::Presence(kind) => {
            presence::from_client(router, session, envelope, kind).await;
            Ok(())
        }
        StanzaKind::IqRequest if for_own_account => {
            iq::from_own_client(router, session, envelope).await
        }
        // Nothing to do with the answer to a request of the server's own.
        StanzaKind::IqResponse if for_own_account => Ok(()),
        _ => {
            router.route(envelope).await;
            Ok(())
        }
    }
}

/// Tells the session that its stanza was not handled because storage failed: `<internal-server-error/>`
/// of type `wait` (RFC 6120 section 8.3.3.6), so the client may retry, rather than silence or a
/// permanent error. Straight to the session, like the other answers to a client's own stanzas.
pub async fn reply_storage_failure(
    router: &Arc<Router>,
    session: &ClientSession,
    envelope: &Envelope,
) {
    if let Some(reply) = envelope.error_reply(DefinedCondition::InternalServerError, None) {
        reply_to_session(router, session, &reply).await;
    }
}

/// Delivers `reply` to this session's resource, past the rules (through [`Router::deliver_to_resource`]).
pub async fn reply_to_session(
    router: &Arc<Router>,
    session: &ClientSession,
    reply: &Element,
) -> bool {
    router
        .deliver_to_resource(&session.bare, session.jid.resource().as_str(), reply)
        .await
}

/// Whether an IQ from a client is for the server acting on its own account (no `to`, or its bare JID).
fn is_for_own_account(session: &ClientSession, envelope: &Envelope) -> bool {
    match &envelope.to {
        None => true,
        Some(to) => to.resource().is_none() && to.to_bare() == session.bare_jid(),
    }
}

/// The server's own handling of stanzas for its domains and users, as the router sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features;

#[async_trait]
impl LocalHandling for Features {
    async fn for_server(
        &self,
        router: &Arc<Router>,
        envelope: Envelope,
    ) -> Result<Delivery, Bounce> {
        server_handles(router, envelope).await
    }

    async fn for_user(
        &self,
        router: &Arc<Router>,
        user: &BareJid,
        envelope: Envelope,
    ) -> Result<Delivery, Bounce> {
        user_handles(router, user, envelope).await
    }

    async fn remote_presence(&self, router: &Arc<Router>, user: &BareJid, envelope: &Envelope) {
        entity_caps::remote_presence(router, user, envelope).await;
    }

    async fn store_offline(
        &self,
        router: &Arc<Router>,
        user: &BareJid,
        envelope: &Envelope,
    ) -> Result<Stored, Bounce> {
        offline::store(router, user, envelope).await
    }
}

/// Handles a stanza addressed to one of our domains itself (`to='example.org'`).
async fn server_handles(router: &Arc<Router>, envelope: Envelope) -> Result<Delivery, Bounce> {
    match envelope.kind {
        StanzaKind::IqRequest => iq::for_server(router, envelope).await,
        StanzaKind::Presence(PresenceKind::Probe) | StanzaKind::Presence(_) => {
            Ok(Delivery::Dropped)
        }
        StanzaKind::IqResponse => {
            router.pending_iqs.complete(envelope);
            Ok(Delivery::Dropped)
        }
        StanzaKind::Message(_) => {
            // RFC 6120 section 10.3.1 lets the server ignore messages to itself; answering keeps senders
            // from waiting on something that will never be read.
            Err(Bounce::new(envelope, DefinedCondition::ServiceUnavailable))
        }
    }
}

/// Handles a stanza the rules give to the server on behalf of a local user (RFC 6121 section 8.5.2.1.4:
/// IQs to a bare JID; sections 3 and 4.3: subscriptions and probes).
async fn user_handles(
    router: &Arc<Router>,
    user: &BareJid,
    envelope: Envelope,
) -> Result<Delivery, Bounce> {
    match envelope.kind {
        StanzaKind::IqRequest => iq::for_account(router, user, envelope).await,
        StanzaKind::Presence(PresenceKind::Probe) => {
            presence::answer_probe(router, user, envelope).await
        }
        StanzaKind::Presence(PresenceKind::Subscription) => {
            presence::inbound_subscription(router, user, envelope).await
        }
        // An answer to a request the server sent on the user's behalf (XEP-0357 publishes).
        StanzaKind::IqResponse => {
            router.pending_iqs.complete(envelope);
            Ok(Delivery::Dropped)
        }
        _ => Ok(Delivery::Dropped),
    }
}
