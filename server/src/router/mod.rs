//! The one place that decides where a stanza goes (RFC 6120 section 10, RFC 6121 section 8).
//!
//! [`Router::route`] takes an [`Envelope`] whose `from` is already trusted and looks its domain up in the
//! [`routes::RouteTable`]: a local user (the pure rules of [`rules::decide`] applied to their online
//! resources), the server itself, a component, an in-process service, or a remote domain. It carries the
//! decision out and returns the [`Delivery`]. What the server does itself (IQs, subscriptions, offline
//! storage) sits behind [`LocalHandling`], which the features implement; every hand-over to a session goes
//! through [`Router::deliver`] and is told to the [`events::Subscribers`].

pub mod events;
pub mod local;
pub mod mailbox;
pub mod offline_gate;
pub mod pending_iqs;
pub mod registry;
pub mod routes;
pub mod rules;
/// The addressee as the rules see it, for an existing account with these resources online.
fn online_addressee<'a>(
    to: &Jid,
    online: &[(String, SessionHandle, rules::ResourceView)],
    views: &'a [rules::ResourceView],
) -> Addressee<'a> {
    match to.resource() {
        None => Addressee::Bare { resources: views },
        Some(resource) => Addressee::Full {
            exact: online
                .iter()
                .position(|(name, _, _)| name == resource.as_str()),
            resources: views,
        },
    }
}

#[cfg(test)]
mod tests;

use std::sync::Arc;

use events::{DeliveryEvent, Reactions, Subscribers};
pub use local::{LocalHandling, Stored};
pub use registry::{Registry, Resumption, SessionCommand, SessionHandle};
use routes::{InProcessService, RemoteDelivery, Route, RouteTable};
use rules::{Addressee, Decision};

use crate::context::ServerContext;
use crate::xmpp::{
    BareJid, DefinedCondition, Element, Envelope, Jid, MessageKind, PresenceKind, StanzaKind,
    WireStanza, ns,
};
use herald_storage::StorageError;

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

/// Who is online and where each domain's stanzas go, over the server's context.
pub struct Router {
    /// Configuration, storage, caches and throttles.
    pub context: Arc<ServerContext>,
    pub sessions: Registry,
    routes: RouteTable,
    local: Arc<dyn LocalHandling>,
    subscribers: Subscribers,
    /// Orders offline stores against resources becoming available (`offline_gate.rs`).
    pub offline_gates: offline_gate::UserGates,
    /// Serialises the read-change-write of one user's roster items (`offline_gate.rs`).
    pub roster_gates: offline_gate::UserGates,
    /// IQ requests the server sent and waits for the answer of (`pending_iqs.rs`).
    pub pending_iqs: pending_iqs::PendingIqs,
    /// The outbound federation queue, once `[s2s]` attached it.
    remote: std::sync::OnceLock<Arc<dyn RemoteDelivery>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("domains", &self.context.config.domains)
            .field("sessions", &self.sessions.session_count())
            .field("subscribers", &self.subscribers)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router over `context` serving its configured domains, handing the server's own work to `local`
    /// and telling `subscribers` about deliveries.
    pub fn new(
        context: Arc<ServerContext>,
        local: Arc<dyn LocalHandling>,
        subscribers: Subscribers,
    ) -> Arc<Router> {
        Arc::new(Router {
            sessions: Registry::new(context.config.session_queue_bytes),
            routes: RouteTable::new(context.config.domains.clone()),
            context,
            local,
            subscribers,
            offline_gates: Default::default(),
            roster_gates: Default::default(),
            pending_iqs: Default::default(),
            remote: std::sync::OnceLock::new(),
        })
    }

    /// Routes a stanza whose `from` the caller has verified. A stanza without `to` is for the sender's own
    /// account and must be handled by the caller before routing; here it is dropped.
    pub async fn route(self: &Arc<Self>, envelope: Envelope) -> Delivery {
        let Some(to) = envelope.to.clone() else {
            return Delivery::Dropped;
        };
        match self.routes.route(to.domain().as_str()) {
            Route::LocalUsers if to.node().is_none() => {
                let outcome = self.local.for_server(self, envelope).await;
                self.bounce_or(outcome)
            }
            Route::LocalUsers => self.route_to_user(envelope, &to).await,
            Route::Component(component) => {
                let element = crate::xmpp::to_component_namespace(envelope.element.clone());
                // Queued serialised and charged its size, so a component that reads slowly cannot make
                // the server hold more than `[limits] component_queue_bytes` for it.
                let stanza = WireStanza::for_stream(&element, crate::xmpp::ns::COMPONENT_ACCEPT);
                let bytes = stanza.wire_bytes();
                if component.try_send(stanza, bytes).is_ok() {
                    return Delivery::Forwarded;
                }
                self.bounce(&envelope, DefinedCondition::RemoteServerTimeout)
            }
            Route::InProcess(service) => {
                let outcome = service.receive(self, envelope).await;
                self.bounce_or(outcome)
            }
            Route::Remote => match self.remote.get() {
                Some(remote) => match remote.submit(&envelope).await {
                    Ok(()) => Delivery::Forwarded,
                    Err(condition) => self.bounce(&envelope, condition),
                },
                // Federation is off: tell the sender at once rather than letting the stanza vanish
                // (RFC 6120 section 8.3.3.15).
                None => self.bounce(&envelope, DefinedCondition::RemoteServerNotFound),
            },
        }
    }

    async fn route_to_user(self: &Arc<Self>, mut envelope: Envelope, to: &Jid) -> Delivery {
        let bare = to.to_bare();
        let bare_str = bare.to_string();
        // A storage failure is not an answer: neither "no such account" nor "blocks nobody" may be
        // concluded from it, so the sender hears of a temporary failure (RFC 6120 section 8.3.3.6,
        // type `wait`) and may retry, instead of a permanent `service-unavailable`.
        let context = &self.context;
        let recipient = match context
            .block_lists
            .recipient(&context.storage, &bare_str)
            .await
        {
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
        if envelope.kind == StanzaKind::Presence(PresenceKind::Availability)
            && to.resource().is_none()
            && envelope
                .from
                .as_ref()
                .is_some_and(|from| !self.is_local_user(&from.to_bare()))
        {
            self.local.remote_presence(self, &bare, &envelope).await;
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
            online_addressee(to, &online, &views)
        } else {
            Addressee::NoAccount
        };
        let decision = rules::decide(envelope.kind, addressee);
        let archive_row = if matches!(decision, Decision::DeliverTo(_) | Decision::StoreOffline)
            && matches!(envelope.kind, StanzaKind::Message(_))
        {
            // Here and not in a delivery event: the message is about to reach the user (a resource or
            // the offline store), once, whatever the number of resources, and the archive's
            // `<stanza-id/>` (XEP-0359 section 3) must be on it before it is serialised for the first
            // one. A message that later falls back to offline storage keeps the id it got here.
            self.subscribers.before_delivery(&bare, &mut envelope).await
        } else {
            None
        };
        let delivery = self
            .carry_out(decision, envelope, &bare, &bare_str, to, &online)
            .await;
        // Archived only if it was kept: not when every resource vanished and the offline store refused
        // it (a full quota bounces it, XEP-0160), so the archive holds only what the user can have.
        if let Some(row) = archive_row
            && matches!(
                delivery,
                Delivery::Delivered | Delivery::StoredOffline { .. }
            )
        {
            self.subscribers.archive_kept(row).await;
        }
        delivery
    }

    /// Carries out the rules' decision for a stanza to the local user `bare`.
    async fn carry_out(
        self: &Arc<Self>,
        decision: Decision,
        envelope: Envelope,
        bare: &BareJid,
        bare_str: &str,
        to: &Jid,
        online: &[(String, SessionHandle, rules::ResourceView)],
    ) -> Delivery {
        match decision {
            Decision::DeliverTo(mut indices) => {
                // The kinds offline storage is for (RFC 6121 section 8.5.2.1.1; XEP-0160).
                if matches!(
                    envelope.kind,
                    StanzaKind::Message(MessageKind::Normal | MessageKind::Chat)
                ) && let Some(delivery) = self
                    .store_for_detached(bare, bare_str, &envelope, online, &indices)
                    .await
                {
                    return delivery;
                }
                // Serialised once for every resource it goes to. XEP-0280 section 9: `<private/>` is for
                // the sender's and the recipient's servers, not for the recipient's client.
                let stanza =
                    match crate::xmpp::without_child(&envelope.element, "private", ns::CARBONS) {
                        Some(stripped) => WireStanza::for_client_stream(&stripped),
                        None => WireStanza::for_client_stream(&envelope.element),
                    };
                // Keeps, in place, the resources whose session took it.
                let mut taken = 0;
                for position in 0..indices.len() {
                    let index = indices[position];
                    if let Some((resource, handle, _)) = online.get(index)
                        && self.deliver(bare_str, resource, handle, &stanza).await
                    {
                        indices[taken] = index;
                        taken += 1;
                    }
                }
                indices.truncate(taken);
                if !indices.is_empty() {
                    let event = DeliveryEvent::DeliveredToUser {
                        user: bare_str,
                        envelope: &envelope,
                        online,
                        delivered: &indices,
                    };
                    self.emit(event).await;
                    Delivery::Delivered
                } else if matches!(envelope.kind, StanzaKind::Message(_)) {
                    // Every chosen session vanished or is stuck: keep the message rather than lose it.
                    self.store_offline(bare, &envelope, None).await
                } else if envelope.kind == StanzaKind::IqRequest {
                    // The resource cannot take it (gone, or its queue is full): as for a full JID with no
                    // such resource, the requester gets service-unavailable rather than waiting forever
                    // (RFC 6121 section 8.5.3.2).
                    self.bounce(&envelope, DefinedCondition::ServiceUnavailable)
                } else {
                    Delivery::Dropped
                }
            }
            Decision::StoreOffline => self.store_offline(bare, &envelope, Some(to)).await,
            Decision::ServerHandles => {
                let outcome = self.local.for_user(self, bare, envelope).await;
                self.bounce_or(outcome)
            }
            Decision::Bounce(condition) => self.bounce(&envelope, condition),
            Decision::Ignore => Delivery::Dropped,
        }
    }

    /// A message for resources that are all detached (hibernating, XEP-0198 section 5) is stored
    /// offline rather than held in their sessions' memory: committed before the sender's stanza counts
    /// as handled, so a crash loses nothing the server acknowledged (section 5 leaves what survives
    /// to the server). The session that resumes takes it from storage (`features::offline::deliver`);
    /// if none does, the next login does. Storing is told like any offline store, so push wakes the
    /// user (XEP-0357). `None`: deliver as usual (a resource is attached, or the store did not keep it:
    /// a chat state, a full quota; the sessions' queues still take those).
    async fn store_for_detached(
        self: &Arc<Self>,
        bare: &BareJid,
        bare_str: &str,
        envelope: &Envelope,
        online: &[(String, SessionHandle, rules::ResourceView)],
        indices: &[usize],
    ) -> Option<Delivery> {
        let chosen = || {
            indices
                .iter()
                .filter_map(|&index| online.get(index))
                .map(|(resource, _, _)| resource.as_str())
        };
        if !self.sessions.are_all_detached(bare_str, chosen()) {
            return None;
        }
        let gate = self.offline_gates.lock(bare_str).await;
        // Again under the gate, which a resumption holds to mark its resource attached before it
        // fetches what was stored.
        if !self.sessions.are_all_detached(bare_str, chosen()) {
            return None;
        }
        match self.local.store_offline(self, bare, envelope).await {
            Ok(Stored::Kept) => {
                drop(gate);
                let reactions = self
                    .emit(DeliveryEvent::StoredOffline {
                        user: bare,
                        envelope,
                    })
                    .await;
                Some(Delivery::StoredOffline {
                    waking: reactions.is_waking,
                })
            }
            Ok(Stored::NotKept) | Err(_) => None,
        }
    }

    /// Hands `stanza` to one bound resource of `user` and, if its session took it, tells the subscribers.
    /// Every delivery to a session goes through here. Returns `false` if the session is gone or its queue
    /// is full (see [`SessionHandle::send`]).
    pub async fn deliver(
        &self,
        user: &str,
        resource: &str,
        handle: &SessionHandle,
        stanza: &WireStanza,
    ) -> bool {
        if !handle.send(SessionCommand::Stanza(stanza.clone())) {
            return false;
        }
        let event = DeliveryEvent::DeliveredToResource {
            user,
            resource,
            stanza,
        };
        // Carbons are decided once per routed stanza (`DeliveredToUser`), never per resource, so nothing
        // is handed over here: a carbon's own delivery cannot call for more carbons.
        self.subscribers.emit(&self.sessions, event).await;
        true
    }

    /// Delivers a server-generated stanza straight to one resource of `user` (bare JID), bypassing the
    /// rules but not [`Router::deliver`]: replies to that session's own requests, roster and block-list
    /// pushes, offline messages and subscription requests being handed over. Returns `false` if the
    /// resource is not bound or cannot take it.
    pub async fn deliver_to_resource(&self, user: &str, resource: &str, element: &Element) -> bool {
        match self.sessions.handle(user, resource) {
            Some(handle) => {
                let stanza = WireStanza::for_client_stream(element);
                self.deliver(user, resource, &handle, &stanza).await
            }
            None => false,
        }
    }

    /// The delivery-event subscribers (for a feature to reach its own subscriber).
    pub fn subscribers(&self) -> &Subscribers {
        &self.subscribers
    }

    /// Tells the subscribers about an event other than a hand-over to one resource (a stanza routed to a
    /// user, a client's stanza, a session bound or ended) and hands over what they asked for: carbons
    /// (XEP-0280) go through [`Router::deliver`], like every stanza for a session.
    pub async fn emit(&self, event: DeliveryEvent<'_>) -> Reactions {
        let mut reactions = self.subscribers.emit(&self.sessions, event).await;
        for copy in std::mem::take(&mut reactions.carbon_copies) {
            self.deliver(&copy.user, &copy.resource, &copy.handle, &copy.stanza)
                .await;
        }
        reactions
    }

    /// Stores a message for `user`. With `recheck` (the address the rules decided "store offline" for),
    /// the user's offline gate is held and the rules run again on the resources online now: if a
    /// resource became available since, the message is routed again instead (`offline_gate.rs`).
    /// Without it (every chosen session refused the stanza), it is stored whatever the registry says,
    /// so a stuck session cannot make the router loop.
    async fn store_offline(
        self: &Arc<Self>,
        user: &BareJid,
        envelope: &Envelope,
        recheck: Option<&Jid>,
    ) -> Delivery {
        let user_key = user.to_string();
        let _gate = self.offline_gates.lock(&user_key).await;
        if let Some(to) = recheck {
            let online = self.sessions.routes(&user_key);
            let views: Vec<_> = online.iter().map(|(_, _, view)| *view).collect();
            match rules::decide(envelope.kind, online_addressee(to, &online, &views)) {
                Decision::StoreOffline => {}
                // Delivered here rather than routed again: the message already went through
                // `before_delivery` (it has its archive id and is archived once).
                Decision::DeliverTo(indices) => {
                    drop(_gate);
                    let stanza = WireStanza::for_client_stream(&envelope.element);
                    let mut delivered = false;
                    for index in indices {
                        if let Some((resource, handle, _)) = online.get(index) {
                            delivered |= self.deliver(&user_key, resource, handle, &stanza).await;
                        }
                    }
                    if delivered {
                        return Delivery::Delivered;
                    }
                    return Box::pin(self.store_offline(user, envelope, None)).await;
                }
                _ => {
                    drop(_gate);
                    return Box::pin(self.route(envelope.clone())).await;
                }
            }
        }
        match self.local.store_offline(self, user, envelope).await {
            Ok(Stored::Kept) => {
                let reactions = self
                    .emit(DeliveryEvent::StoredOffline { user, envelope })
                    .await;
                Delivery::StoredOffline {
                    waking: reactions.is_waking,
                }
            }
            Ok(Stored::NotKept) => Delivery::Dropped,
            Err(bounce) => self.bounce_or(Err(bounce)),
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

    /// Whether a local account exists (sessions count as proof, so the hot path avoids the database).
    /// Errors: the storage error, logged here; callers must not read it as "no such account".
    pub async fn account_exists(&self, bare: &str) -> Result<bool, StorageError> {
        if self.sessions.is_online(bare) {
            return Ok(true);
        }
        self.context
            .storage
            .accounts
            .exists(bare)
            .await
            .inspect_err(|e| {
                tracing::error!(error = %e, "account lookup failed");
            })
    }

    /// Whether `jid` is an account on one of our domains.
    pub fn is_local_user(&self, jid: &BareJid) -> bool {
        jid.node().is_some() && self.routes.is_local(jid.domain().as_str())
    }

    /// Sends stanzas for remote domains to `remote` from now on (federation, `[s2s]`); only the first
    /// call takes effect.
    pub fn attach_remote(&self, remote: Arc<dyn RemoteDelivery>) {
        let _ = self.remote.set(remote);
    }

    /// Whether stanzas to `domain` are ours to handle: one of our domains, an attached component or an
    /// in-process service (what an inbound s2s stream may address, RFC 6120 section 4.9.3.6).
    pub fn serves_domain(&self, domain: &str) -> bool {
        self.routes.serves(domain)
    }

    /// Attaches an external component for `domain`; returns `false` if one is already attached.
    pub fn attach_component(
        &self,
        domain: &str,
        sender: mailbox::MailboxSender<WireStanza>,
    ) -> bool {
        self.routes.attach(domain, Route::Component(sender))
    }

    /// Detaches the component for `domain`.
    pub fn detach_component(&self, domain: &str) {
        self.routes.detach(domain);
    }

    /// Domains of attached components (for disco#items).
    pub fn component_domains(&self) -> Vec<String> {
        self.routes.component_domains()
    }

    /// Domains of attached components and in-process services (for disco#items).
    pub fn hosted_service_domains(&self) -> Vec<String> {
        self.routes.hosted_service_domains()
    }

    /// Attaches an in-process service (MUC later) for `domain`; returns `false` if something is already
    /// attached there.
    pub fn attach_service(&self, domain: &str, service: Arc<dyn InProcessService>) -> bool {
        self.routes.attach(domain, Route::InProcess(service))
    }

    /// Detaches the in-process service for `domain`.
    pub fn detach_service(&self, domain: &str) {
        self.routes.detach(domain);
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
