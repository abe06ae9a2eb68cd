//! The one place that decides where a stanza goes (RFC 6120 section 10, RFC 6121 section 8).
//!
//! [`Router::route`] takes an [`Envelope`] whose `from` is already trusted, applies the pure rules of
//! [`rules::decide`] to the addressee's online resources, and carries the decision out: a session's channel,
//! offline storage, a component, the server's own handlers, or an error back to the sender. It returns the
//! [`Delivery`] so callers and tests can see what happened.

pub mod mailbox;
pub mod registry;
pub mod rules;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub use registry::{Registry, SessionCommand, SessionHandle};
use rules::{Addressee, Decision};

use crate::config::Config;
use crate::features;
use crate::xmpp::{BareJid, DefinedCondition, Element, Envelope, Jid, StanzaKind};
use herald_relay::login_throttle::LoginThrottle;
use herald_storage::{Storage, StorageError};

/// What happened to a routed stanza.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Handed to at least one local session.
    Delivered,
    /// Handed to an external component (XEP-0114).
    Forwarded,
    /// Kept for the user's next login; `waking` tells whether a wake-up of their push devices was
    /// started (the relay wakes whatever devices they registered).
    StoredOffline { waking: bool },
    /// Processed by the server itself (IQ answered, subscription handled, probe answered).
    Handled,
    /// An error went back to the sender.
    Bounced(DefinedCondition),
    /// Dropped silently, as the rules allow.
    Dropped,
}

/// Shared state of a running server: configuration, storage, who is online, components.
pub struct Router {
    pub config: Arc<Config>,
    pub storage: Storage,
    pub sessions: Registry,
    /// Failed password checks (SASL, component handshakes), shared with the hosted relay's HTTP login.
    pub login_throttle: LoginThrottle,
    /// XEP-0077 account creation attempts per client address.
    pub registrations: features::register::RegistrationLimit,
    pub push: Option<features::push::OfflineWaker>,
    pub block_lists: features::blocking::BlockListCache,
    /// Random bytes made at start that key the fake SCRAM salts of unknown users, so they cannot be told
    /// apart from real ones (RFC 5802 section 9 leaves enumeration resistance to the server).
    pub unknown_user_secret: [u8; 32],
    components: RwLock<HashMap<String, mailbox::MailboxSender<crate::xmpp::WireStanza>>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("domains", &self.config.domains)
            .field("sessions", &self.sessions.session_count())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router with a throttle of its own (no relay hosted, or tests).
    pub fn new(
        config: Arc<Config>,
        storage: Storage,
        push: Option<Arc<dyn features::push::PushWaker>>,
    ) -> Arc<Router> {
        Router::with_login_throttle(config, storage, push, LoginThrottle::default())
    }

    /// A router counting failed logins in `login_throttle` (the hosted relay's, so that one throttle
    /// covers every place a password is checked).
    pub fn with_login_throttle(
        config: Arc<Config>,
        storage: Storage,
        push: Option<Arc<dyn features::push::PushWaker>>,
        login_throttle: LoginThrottle,
    ) -> Arc<Router> {
        Arc::new(Router {
            registrations: features::register::RegistrationLimit::new(
                config.registrations_per_address_per_hour,
            ),
            sessions: Registry::new(config.session_queue_bytes),
            config,
            storage,
            login_throttle,
            push: push.map(features::push::OfflineWaker::new),
            block_lists: features::blocking::BlockListCache::default(),
            unknown_user_secret: rand::random(),
            components: RwLock::new(HashMap::new()),
        })
    }

    /// Routes a stanza whose `from` the caller has verified. A stanza without `to` is for the sender's own
    /// account and must be handled by the caller before routing; here it is dropped.
    pub async fn route(self: &Arc<Self>, envelope: Envelope) -> Delivery {
        let Some(to) = envelope.to.clone() else {
            return Delivery::Dropped;
        };
        if self.config.is_local_domain(to.domain().as_str()) {
            if to.node().is_none() {
                return self.bounce_or(features::server_handles(self, envelope).await);
            }
            return self.route_to_user(envelope, &to).await;
        }
        if let Some(component) = self.component(to.domain().as_str()) {
            let element = crate::xmpp::to_component_namespace(envelope.element.clone());
            // Queued serialised and charged its size, so a component that reads slowly cannot make the
            // server hold more than `[limits] component_queue_bytes` for it.
            let stanza =
                crate::xmpp::WireStanza::for_stream(&element, crate::xmpp::ns::COMPONENT_ACCEPT);
            let bytes = stanza.wire_bytes();
            if component.try_send(stanza, bytes).is_ok() {
                return Delivery::Forwarded;
            }
            return self.bounce(&envelope, DefinedCondition::RemoteServerTimeout);
        }
        // Server-to-server federation is not part of this build yet: tell the sender at once rather than
        // letting the stanza vanish (RFC 6120 section 8.3.3.15).
        self.bounce(&envelope, DefinedCondition::RemoteServerNotFound)
    }

    async fn route_to_user(self: &Arc<Self>, envelope: Envelope, to: &Jid) -> Delivery {
        let bare = to.to_bare();
        let bare_str = bare.to_string();
        // A storage failure is not an answer: neither "no such account" nor "blocks nobody" may be
        // concluded from it, so the sender hears of a temporary failure (RFC 6120 section 8.3.3.6,
        // type `wait`) and may retry, instead of a permanent `service-unavailable`.
        let recipient = match self.block_lists.recipient(&self.storage, &bare_str).await {
            Ok(recipient) => recipient,
            Err(_) => return self.bounce(&envelope, DefinedCondition::InternalServerError),
        };
        if let Some(from) = &envelope.from
            && recipient.blocks(from)
        {
            // XEP-0191 section 3.3: nothing from a blocked entity reaches the user; messages and IQ requests
            // are answered with service-unavailable, so the blocker is not revealed beyond that.
            return match envelope.kind {
                StanzaKind::Message(_) | StanzaKind::IqRequest => {
                    self.bounce(&envelope, DefinedCondition::ServiceUnavailable)
                }
                _ => Delivery::Dropped,
            };
        }
        let online = self.sessions.routes(&bare_str);
        let views: Vec<_> = online.iter().map(|(_, _, view)| *view).collect();
        // Reading the block list may already have told whether the account exists.
        let exists = if !online.is_empty() {
            true
        } else {
            match recipient.account_exists {
                Some(known) => known,
                None => match self.account_exists(&bare_str).await {
                    Ok(exists) => exists,
                    Err(_) => return self.bounce(&envelope, DefinedCondition::InternalServerError),
                },
            }
        };
        let addressee = if exists {
            match to.resource() {
                None => Addressee::Bare { resources: &views },
                Some(resource) => Addressee::Full {
                    exact: online
                        .iter()
                        .position(|(name, _, _)| name == resource.as_str()),
                    resources: &views,
                },
            }
        } else {
            Addressee::NoAccount
        };
        match rules::decide(envelope.kind, addressee) {
            Decision::DeliverTo(indices) => {
                let mut delivered = false;
                // Serialised once for every resource it goes to.
                let stanza = crate::xmpp::WireStanza::for_client_stream(&envelope.element);
                for index in indices {
                    if let Some((_, handle, _)) = online.get(index) {
                        delivered |= handle.send(SessionCommand::Stanza(stanza.clone()));
                    }
                }
                if delivered {
                    Delivery::Delivered
                } else if matches!(envelope.kind, StanzaKind::Message(_)) {
                    // Every chosen session vanished or is stuck: keep the message rather than lose it.
                    self.bounce_or(features::offline::store(self, &bare, &envelope).await)
                } else if envelope.kind == StanzaKind::IqRequest {
                    // The resource cannot take it (gone, or its queue is full): as for a full JID with no
                    // such resource, the requester gets service-unavailable rather than waiting forever
                    // (RFC 6121 section 8.5.3.2).
                    self.bounce(&envelope, DefinedCondition::ServiceUnavailable)
                } else {
                    Delivery::Dropped
                }
            }
            Decision::StoreOffline => {
                self.bounce_or(features::offline::store(self, &bare, &envelope).await)
            }
            Decision::ServerHandles => {
                self.bounce_or(features::user_handles(self, &bare, envelope).await)
            }
            Decision::Bounce(condition) => self.bounce(&envelope, condition),
            Decision::Ignore => Delivery::Dropped,
        }
    }

    /// Sends an error reply for `envelope` back to its sender (never for an error stanza).
    pub fn bounce(self: &Arc<Self>, envelope: &Envelope, condition: DefinedCondition) -> Delivery {
        self.bounce_with_text(envelope, condition, None)
    }

    /// Like [`Self::bounce`], with a human-readable text (RFC 6120 section 8.3.2).
    pub fn bounce_with_text(
        self: &Arc<Self>,
        envelope: &Envelope,
        condition: DefinedCondition,
        text: Option<&str>,
    ) -> Delivery {
        if let Some(reply) = envelope.error_reply(condition.clone(), text) {
            self.send_detached(reply);
        }
        Delivery::Bounced(condition)
    }

    fn bounce_or(self: &Arc<Self>, outcome: Result<Delivery, Bounce>) -> Delivery {
        match outcome {
            Ok(delivery) => delivery,
            Err(Bounce {
                envelope,
                condition,
                text,
            }) => self.bounce_with_text(&envelope, condition, text.as_deref()),
        }
    }

    /// Routes a stanza generated by the server (an error reply, a roster push, a presence on someone's
    /// behalf) without waiting for the outcome. Spawned so a handler never awaits its own recursion.
    pub fn send_detached(self: &Arc<Self>, element: Element) {
        match Envelope::parse(element) {
            Ok(envelope) => {
                let router = self.clone();
                tokio::spawn(async move {
                    router.route(envelope).await;
                });
            }
            Err(e) => tracing::warn!(error = %e, "server generated an unroutable stanza"),
        }
    }

    /// Routes a server-generated stanza and waits for the outcome (used where order matters, e.g. offline
    /// messages after presence).
    pub async fn send(self: &Arc<Self>, element: Element) -> Delivery {
        match Envelope::parse(element) {
            Ok(envelope) => Box::pin(self.route(envelope)).await,
            Err(e) => {
                tracing::warn!(error = %e, "server generated an unroutable stanza");
                Delivery::Dropped
            }
        }
    }

    /// Writes a stanza straight to one session (for replies to that session's own requests).
    pub fn send_to_session(&self, bare: &str, resource: &str, element: Element) -> bool {
        match self.sessions.handle(bare, resource) {
            Some(handle) => handle.send_stanza(&element),
            None => false,
        }
    }

    /// Whether a local account exists (sessions count as proof, so the hot path avoids the database).
    /// Errors: the storage error, logged here; callers must not read it as "no such account".
    pub async fn account_exists(&self, bare: &str) -> Result<bool, StorageError> {
        if self.sessions.is_online(bare) {
            return Ok(true);
        }
        self.storage.accounts.exists(bare).await.inspect_err(|e| {
            tracing::error!(error = %e, "account lookup failed");
        })
    }

    /// Whether `jid` is an account on one of our domains.
    pub fn is_local_user(&self, jid: &BareJid) -> bool {
        jid.node().is_some() && self.config.is_local_domain(jid.domain().as_str())
    }

    /// Attaches an external component for `domain`; returns `false` if one is already attached.
    pub fn attach_component(
        &self,
        domain: &str,
        sender: mailbox::MailboxSender<crate::xmpp::WireStanza>,
    ) -> bool {
        let mut components = self.components.write().unwrap_or_else(|e| e.into_inner());
        if components.contains_key(domain) {
            return false;
        }
        components.insert(domain.to_string(), sender);
        true
    }

    /// Detaches the component for `domain`.
    pub fn detach_component(&self, domain: &str) {
        self.components
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(domain);
    }

    /// Domains of attached components (for disco#items).
    pub fn component_domains(&self) -> Vec<String> {
        let mut domains: Vec<_> = self
            .components
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        domains.sort();
        domains
    }

    fn component(&self, domain: &str) -> Option<mailbox::MailboxSender<crate::xmpp::WireStanza>> {
        self.components
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(domain)
            .cloned()
    }
}

/// A handler's request to answer the sender with an error.
#[derive(Debug)]
pub struct Bounce {
    pub envelope: Envelope,
    pub condition: DefinedCondition,
    pub text: Option<String>,
}

impl Bounce {
    pub fn new(envelope: Envelope, condition: DefinedCondition) -> Bounce {
        Bounce {
            envelope,
            condition,
            text: None,
        }
    }

    pub fn with_text(mut self, text: &str) -> Bounce {
        self.text = Some(text.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    /// A router on an in-memory database whose sessions queue at most 10,000 bytes.
    async fn router_with_small_queues() -> Arc<Router> {
        let mut raw = RawConfig::default();
        raw.limits.max_stanza_bytes = 10_000;
        raw.limits.session_queue_bytes = 10_000;
        let config = Config::resolve(raw).expect("config");
        let storage = Storage::connect("sqlite::memory:").await.expect("storage");
        let alice = crate::accounts::parse_account("alice@localhost").expect("jid");
        crate::accounts::create(&storage, &alice, "secret")
            .await
            .expect("create");
        Router::new(Arc::new(config), storage, None)
    }

    #[tokio::test]
    async fn an_iq_to_a_resource_whose_queue_is_full_is_answered_service_unavailable() {
        let router = router_with_small_queues().await;
        let (handle, _commands) = router.sessions.new_session();
        router
            .sessions
            .bind("alice@localhost", "phone", handle.clone());
        let mut backlog = Element::bare("message", crate::xmpp::ns::CLIENT);
        backlog.append_text_node("x".repeat(10_000));
        assert!(handle.send_stanza(&backlog), "the queue is now full");
        let iq: Element = "<iq xmlns='jabber:client' type='get' id='v1' from='bob@localhost/r' \
                           to='alice@localhost/phone'><query xmlns='jabber:iq:version'/></iq>"
            .parse()
            .expect("iq");
        let delivery = router.route(Envelope::parse(iq).expect("envelope")).await;
        assert_eq!(
            delivery,
            Delivery::Bounced(DefinedCondition::ServiceUnavailable)
        );
    }
}
