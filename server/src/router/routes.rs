//! The route table: which way a stanza goes, by the domain it is addressed to (RFC 6120 section 10.4).
//!
//! Our own domains are served by the local users' route (and by the server itself for the bare domain,
//! section 10.3); an external component (XEP-0114) or an in-process service (MUC, XEP-0045, later) owns a
//! domain of its own; every other domain is remote (section 10.4.4), which is where federation plugs in.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::mailbox::MailboxSender;
use super::{Bounce, Delivery, Router};
use crate::xmpp::{Envelope, WireStanza};

/// A service running inside this process that owns a domain (a MUC service, XEP-0045, later).
#[async_trait]
pub trait InProcessService: Send + Sync {
    /// Takes a stanza addressed to the service's domain, its `from` verified by the caller. `Err` asks
    /// the router to answer the sender with that error.
    async fn receive(&self, router: &Arc<Router>, envelope: Envelope) -> Result<Delivery, Bounce>;
}

/// Where stanzas for remote domains go when federation is on (RFC 6120 section 10.4.2): the outbound queue.
#[async_trait]
pub trait RemoteDelivery: Send + Sync {
    /// Queues `envelope` (its `from` verified, its `to` a remote domain) for delivery. `Err` asks the router
    /// to bounce it with that condition (a full queue: `resource-constraint`).
    async fn submit(&self, envelope: &Envelope) -> Result<(), crate::xmpp::DefinedCondition>;
}

/// Where stanzas for one domain go.
#[derive(Clone)]
pub enum Route {
    /// One of our domains: its accounts, and the server itself for the bare domain.
    LocalUsers,
    /// An attached external component (XEP-0114): its stream's queue, in the component namespace.
    Component(MailboxSender<WireStanza>),
    /// A service in this process (MUC later).
    InProcess(Arc<dyn InProcessService>),
    /// Any other domain: a remote server, reached through [`RemoteDelivery`] when `[s2s]` is configured;
    /// without it the sender is told at once with `<remote-server-not-found/>` (RFC 6120 section
    /// 8.3.3.15) rather than the stanza vanishing.
    Remote,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Route::LocalUsers => "LocalUsers",
            Route::Component(_) => "Component",
            Route::InProcess(_) => "InProcess",
            Route::Remote => "Remote",
        })
    }
}

/// From domain to route. Our own domains are fixed at start and looked up without a lock (the path of
/// every message between local users); components and services attach and detach while running.
#[derive(Debug)]
pub struct RouteTable {
    local_domains: Vec<String>,
    attached: RwLock<HashMap<String, Route>>,
}

impl RouteTable {
    /// A table serving `local_domains` to local users, with nothing attached.
    pub fn new(local_domains: Vec<String>) -> RouteTable {
        RouteTable {
            local_domains,
            attached: RwLock::new(HashMap::new()),
        }
    }

    /// The route for `domain`: [`Route::Remote`] for a domain that is neither ours nor attached.
    pub fn route(&self, domain: &str) -> Route {
        if self.is_local(domain) {
            return Route::LocalUsers;
        }
        self.read().get(domain).cloned().unwrap_or(Route::Remote)
    }

    /// Whether `domain` is served here (ours, or something attached that is not remote): what
    /// [`RouteTable::route`] would say, without cloning the route.
    pub fn serves(&self, domain: &str) -> bool {
        self.is_local(domain)
            || self
                .read()
                .get(domain)
                .is_some_and(|route| !matches!(route, Route::Remote))
    }

    /// Whether `domain` is one of ours.
    pub fn is_local(&self, domain: &str) -> bool {
        self.local_domains.iter().any(|d| d == domain)
    }

    /// Attaches `route` for `domain`; returns `false` (and leaves the table as it was) if something is
    /// already attached there. Our own domains always route to local users, whatever is attached.
    pub fn attach(&self, domain: &str, route: Route) -> bool {
        let mut attached = self.write();
        if attached.contains_key(domain) {
            return false;
        }
        attached.insert(domain.to_string(), route);
        true
    }

    /// Detaches whatever is attached for `domain`; it becomes remote again.
    pub fn detach(&self, domain: &str) {
        self.write().remove(domain);
    }

    /// Domains of attached components, sorted (for disco#items, XEP-0030 section 4.1).
    pub fn component_domains(&self) -> Vec<String> {
        let mut domains: Vec<_> = self
            .read()
            .iter()
            .filter(|(_, route)| matches!(route, Route::Component(_)))
            .map(|(domain, _)| domain.clone())
            .collect();
        domains.sort();
        domains
    }

    /// Domains of attached components and in-process services, sorted: what the server hosts besides
    /// its users (for disco#items, XEP-0030 section 4.1).
    pub fn hosted_service_domains(&self) -> Vec<String> {
        let mut domains: Vec<_> = self
            .read()
            .iter()
            .filter(|(_, route)| matches!(route, Route::Component(_) | Route::InProcess(_)))
            .map(|(domain, _)| domain.clone())
            .collect();
        domains.sort();
        domains
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Route>> {
        // Every update is one map operation, so a poisoned lock still holds a consistent map.
        self.attached.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Route>> {
        self.attached.write().unwrap_or_else(|e| e.into_inner())
    }
}
