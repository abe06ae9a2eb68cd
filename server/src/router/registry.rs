//! Who is online: every bound resource of every local account, with its presence state.
//!
//! The lock is a `std::sync::RwLock` held only for map operations, never across an `.await`; sessions are
//! reached through their channel handles, so the registry never touches a socket.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use xmpp_parsers::minidom::Element;

use super::mailbox::{Mailbox, MailboxSender, mailbox};
use super::rules::ResourceView;
use crate::xmpp::PackedElement;

/// What a session task can be told to do.
#[derive(Debug)]
pub enum SessionCommand {
    /// Write this stanza to the client. Boxed: the channel allocates its slots in blocks, and an idle
    /// session should hold blocks of pointers, not of whole elements.
    Stanza(Box<Element>),
    /// Another login took this resource (RFC 6120 section 7.7.2.2): end with `<conflict/>`.
    Replaced,
    /// The account was deleted or the session must go: end with `<not-authorized/>`.
    Terminate,
    /// The server is stopping: end with `<system-shutdown/>` (RFC 6120 section 4.9.3.20).
    Shutdown,
}

/// A way to reach one session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub id: u64,
    tx: MailboxSender<SessionCommand>,
}

/// Commands a session may have queued before it is considered stuck and is disconnected.
pub const SESSION_QUEUE_LENGTH: usize = 4096;

impl SessionHandle {
    /// Queues a command without waiting. Returns `false` if the session is gone or its queue is full; a full
    /// queue means the client does not read, so the caller treats the stanza as undeliverable.
    pub fn send(&self, command: SessionCommand) -> bool {
        self.tx.try_send(command).is_ok()
    }
}

/// One bound resource.
#[derive(Debug, Clone)]
pub struct OnlineResource {
    pub resource: String,
    pub handle: SessionHandle,
    pub view: ResourceView,
    /// The last available presence broadcast by this resource, for probes (RFC 6121 section 4.3.2). Kept
    /// serialised: a parsed element costs about 1 KiB for every online resource, and is read only on probes.
    pub presence: Option<PackedElement>,
    /// Requested the roster, so it receives roster pushes (RFC 6121 section 2.1.6).
    pub is_interested: bool,
}

/// Every online resource, by bare JID.
#[derive(Debug, Default)]
pub struct Registry {
    accounts: RwLock<HashMap<String, Vec<OnlineResource>>>,
    next_session_id: AtomicU64,
    /// Set by [`Registry::shut_down`]; read and written only under the `accounts` write lock, so a session
    /// binding during shutdown is either told by `shut_down` or sees the flag in `bind`.
    is_shut_down: AtomicBool,
}

impl Registry {
    /// A handle for a new session, and the receiver its task reads.
    pub fn new_session(&self) -> (SessionHandle, Mailbox<SessionCommand>) {
        let (tx, rx) = mailbox(SESSION_QUEUE_LENGTH);
        let id = self.next_session_id.fetch_add(1, Ordering::Relaxed);
        (SessionHandle { id, tx }, rx)
    }

    /// Binds `resource` for `bare`. Returns the session it replaces, if that resource was already bound.
    pub fn bind(&self, bare: &str, resource: &str, handle: SessionHandle) -> Option<SessionHandle> {
        let mut accounts = self.write();
        if self.is_shut_down.load(Ordering::Relaxed) {
            // Err only when the session task already ended: nothing left to stop.
            let _ = handle.tx.send_first(SessionCommand::Shutdown);
        }
        let resources = accounts.entry(bare.to_string()).or_default();
        let entry = OnlineResource {
            resource: resource.to_string(),
            handle,
            view: ResourceView {
                is_available: false,
                priority: 0,
            },
            presence: None,
            is_interested: false,
        };
        match resources.iter_mut().find(|r| r.resource == resource) {
            Some(existing) => Some(std::mem::replace(existing, entry).handle),
            None => {
                // Most accounts have one resource online: grow one slot at a time, not by four.
                resources.reserve_exact(1);
                resources.push(entry);
                None
            }
        }
    }

    /// Tells every bound session, and every one bound from now on, to end with `<system-shutdown/>`.
    /// The command overtakes queued stanzas and ignores the queue bound. Calling it again does no harm.
    pub fn shut_down(&self) {
        let accounts = self.write();
        self.is_shut_down.store(true, Ordering::Relaxed);
        for resource in accounts.values().flatten() {
            let _ = resource.handle.tx.send_first(SessionCommand::Shutdown);
        }
    }

    /// Removes the resource if it is still held by session `session_id`; returns the removed entry.
    pub fn unbind(&self, bare: &str, resource: &str, session_id: u64) -> Option<OnlineResource> {
        let mut accounts = self.write();
        let resources = accounts.get_mut(bare)?;
        let index = resources
            .iter()
            .position(|r| r.resource == resource && r.handle.id == session_id)?;
        let removed = resources.remove(index);
        if resources.is_empty() {
            accounts.remove(bare);
        }
        Some(removed)
    }

    /// Records a presence change of one resource (`None` = unavailable).
    pub fn set_presence(&self, bare: &str, resource: &str, presence: Option<(Element, i8)>) {
        let mut accounts = self.write();
        if let Some(entry) = accounts
            .get_mut(bare)
            .and_then(|rs| rs.iter_mut().find(|r| r.resource == resource))
        {
            match presence {
                Some((element, priority)) => {
                    entry.view = ResourceView {
                        is_available: true,
                        priority,
                    };
                    entry.presence = Some(PackedElement::pack(&element));
                }
                None => {
                    entry.view.is_available = false;
                    entry.presence = None;
                }
            }
        }
    }

    /// Marks a resource as interested in roster pushes.
    pub fn set_interested(&self, bare: &str, resource: &str) {
        if let Some(entry) = self
            .write()
            .get_mut(bare)
            .and_then(|rs| rs.iter_mut().find(|r| r.resource == resource))
        {
            entry.is_interested = true;
        }
    }

    /// A copy of every online resource of `bare` (empty when offline).
    pub fn resources(&self, bare: &str) -> Vec<OnlineResource> {
        self.read().get(bare).cloned().unwrap_or_default()
    }

    /// Resource names, handles and delivery views of `bare`, without copying presence (the message path).
    pub fn routes(&self, bare: &str) -> Vec<(String, SessionHandle, ResourceView)> {
        match self.read().get(bare) {
            Some(resources) => resources
                .iter()
                .map(|r| (r.resource.clone(), r.handle.clone(), r.view))
                .collect(),
            None => Vec::new(),
        }
    }

    /// The handle of one resource.
    pub fn handle(&self, bare: &str, resource: &str) -> Option<SessionHandle> {
        self.read()
            .get(bare)?
            .iter()
            .find(|r| r.resource == resource)
            .map(|r| r.handle.clone())
    }

    /// Whether `bare` has at least one bound resource.
    pub fn is_online(&self, bare: &str) -> bool {
        self.read().contains_key(bare)
    }

    /// Number of bound resources on the server.
    pub fn session_count(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Vec<OnlineResource>>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is one call), so a
        // poisoned lock is still consistent.
        self.accounts.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Vec<OnlineResource>>> {
        self.accounts.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_the_same_resource_replaces_the_older_session() {
        let registry = Registry::default();
        let (first, _rx1) = registry.new_session();
        let (second, _rx2) = registry.new_session();
        assert!(registry.bind("a@b", "phone", first.clone()).is_none());
        let replaced = registry.bind("a@b", "phone", second.clone()).unwrap();
        assert_eq!(replaced.id, first.id);
        // The replaced session's cleanup must not remove its successor.
        assert!(registry.unbind("a@b", "phone", first.id).is_none());
        assert_eq!(registry.resources("a@b").len(), 1);
        assert!(registry.unbind("a@b", "phone", second.id).is_some());
        assert!(!registry.is_online("a@b"));
    }

    #[tokio::test]
    async fn shutdown_reaches_bound_sessions_ahead_of_stanzas_and_later_ones_too() {
        let registry = Registry::default();
        let (before, mut before_rx) = registry.new_session();
        registry.bind("a@b", "phone", before.clone());
        assert!(before.send(SessionCommand::Stanza(Box::new(Element::bare(
            "message",
            "jabber:client"
        )))));
        registry.shut_down();
        assert!(matches!(
            before_rx.recv().await,
            Some(SessionCommand::Shutdown)
        ));
        let (after, mut after_rx) = registry.new_session();
        registry.bind("a@b", "laptop", after);
        assert!(matches!(
            after_rx.recv().await,
            Some(SessionCommand::Shutdown)
        ));
    }
}
