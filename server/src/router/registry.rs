//! Who is online: every bound resource of every local account, with its presence state.
//!
//! The lock is a `std::sync::RwLock` held only for map operations, never across an `.await`; sessions are
//! reached through their channel handles, so the registry never touches a socket.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::mailbox::{Mailbox, MailboxSender, mailbox};
use super::rules::ResourceView;
use crate::xmpp::Element;
use crate::xmpp::{PackedElement, WireStanza};

/// What a session task can be told to do.
#[derive(Debug)]
pub enum SessionCommand {
    /// Write this stanza to the client. Serialised when queued: it is written as is, and while it waits it
    /// costs its length, not the tens of times more a parsed element costs.
    Stanza(WireStanza),
    /// Another login took this resource (RFC 6120 section 7.7.2.2): end with `<conflict/>`.
    Replaced,
    /// The account was deleted or the session must go: end with `<not-authorized/>`.
    Terminate,
    /// The server is stopping: end with `<system-shutdown/>` (RFC 6120 section 4.9.3.20).
    Shutdown,
    /// A new connection resumed this session (XEP-0198 section 5): take it over. Boxed, so the command
    /// stays as small as the others.
    Resume(Box<Resumption>),
    /// A push notification went out for this hibernated session (XEP-0357): wait for the longer
    /// `[c2s] push_resume_timeout` and wake the devices shortly before it ends. Ignored by a session
    /// that is not hibernating.
    KeepForPush,
    /// The user published a new avatar (XEP-0398 section 4): stamp this hash on the session's
    /// presence and, if it is available, send its presence again.
    AvatarChanged(Box<str>),
}

/// A connection that authenticated as a session's user and asked to resume it (XEP-0198 section 5).
pub struct Resumption {
    /// The new connection, past SASL, ready for `<resumed/>`.
    pub stream: Box<dyn crate::c2s::stream::ClientStream>,
    /// How many of the session's stanzas the client says it handled.
    pub h: u32,
}

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumption")
            .field("h", &self.h)
            .finish_non_exhaustive()
    }
}

/// A way to reach one session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub id: u64,
    tx: MailboxSender<SessionCommand>,
}

/// Stanzas a session may have queued; beyond it (or beyond `[limits] session_queue_bytes`) further
/// stanzas are refused.
pub const SESSION_QUEUE_LENGTH: usize = 4096;

/// The byte bound of a session's queue when none is configured (`[limits] session_queue_bytes`).
pub const DEFAULT_SESSION_QUEUE_BYTES: usize = 2 * 1024 * 1024;

impl SessionHandle {
    /// Queues a command without waiting. Returns `false` if the session is gone or, for a stanza, if its
    /// queue is full in entries or bytes. A full queue means the client does not read as fast as it is
    /// written to, so the caller handles the stanza as if that resource were unavailable (RFC 6121 section
    /// 8.5.3.2: messages go to another resource or offline storage); the sender cannot grow the queue past
    /// its bound. Commands that end the session are never refused for a full queue.
    pub fn send(&self, command: SessionCommand) -> bool {
        match command {
            SessionCommand::Stanza(stanza) => {
                let bytes = stanza.wire_bytes();
                self.tx
                    .try_send(SessionCommand::Stanza(stanza), bytes)
                    .is_ok()
            }
            ending => self.tx.send_unbounded(ending).is_ok(),
        }
    }

    /// Queues a stanza for the client (see [`SessionHandle::send`]).
    pub fn send_stanza(&self, element: &Element) -> bool {
        self.send(SessionCommand::Stanza(WireStanza::for_client_stream(
            element,
        )))
    }

    /// Hands a resuming connection to the session (XEP-0198 section 5), behind what is queued. Gives it
    /// back if the session task is gone.
    pub fn resume(&self, resumption: Box<Resumption>) -> Result<(), Box<Resumption>> {
        self.tx
            .send_unbounded(SessionCommand::Resume(resumption))
            .map_err(|command| match command {
                SessionCommand::Resume(resumption) => resumption,
                // `send_unbounded` gives back the command it was given.
                _ => unreachable!("the command given"),
            })
    }
}

/// A session that can be resumed (XEP-0198 section 5): its account and how to reach it.
#[derive(Debug, Clone)]
pub struct Resumable {
    /// The bare JID it is bound for: only that account may resume it.
    pub bare: String,
    pub handle: SessionHandle,
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
    /// Enabled message carbons (XEP-0280 section 4). Kept here, where the router looks up the user's
    /// resources, rather than in the session: it fits in the padding after `is_interested`.
    pub has_carbons: bool,
    /// Hibernating under XEP-0198 section 5: bound, but its connection is gone. Messages for a user
    /// whose chosen resources are all detached are stored rather than held in memory (see
    /// `Router::store_for_detached`), so a crash loses none the server acknowledged.
    pub is_detached: bool,
}

/// Every online resource, by bare JID.
#[derive(Debug)]
pub struct Registry {
    accounts: RwLock<HashMap<String, Vec<OnlineResource>>>,
    /// The byte bound of every session's queue.
    session_queue_bytes: usize,
    next_session_id: AtomicU64,
    /// Set by [`Registry::shut_down`]; read and written only under the `accounts` write lock, so a session
    /// binding during shutdown is either told by `shut_down` or sees the flag in `bind`.
    is_shut_down: AtomicBool,
    /// Sessions that enabled resumption (XEP-0198 section 5), by resumption id: at most one entry per
    /// bound session, removed when it ends.
    resumable: RwLock<HashMap<String, Resumable>>,
    /// Bound resources that are detached (`OnlineResource::is_detached`), so the message path skips
    /// the check while none is.
    detached: AtomicUsize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(DEFAULT_SESSION_QUEUE_BYTES)
    }
}

impl Registry {
    /// An empty registry whose sessions queue at most `session_queue_bytes` of stanzas each.
    pub fn new(session_queue_bytes: usize) -> Registry {
        Registry {
            accounts: RwLock::default(),
            session_queue_bytes,
            next_session_id: AtomicU64::default(),
            is_shut_down: AtomicBool::default(),
            resumable: RwLock::default(),
            detached: AtomicUsize::default(),
        }
    }

    /// A handle for a new session, and the receiver its task reads.
    pub fn new_session(&self) -> (SessionHandle, Mailbox<SessionCommand>) {
        let (tx, rx) = mailbox(SESSION_QUEUE_LENGTH, self.session_queue_bytes);
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
            has_carbons: false,
            is_detached: false,
        };
        match resources.iter_mut().find(|r| r.resource == resource) {
            Some(existing) => {
                let replaced = std::mem::replace(existing, entry);
                if replaced.is_detached {
                    self.detached.fetch_sub(1, Ordering::Relaxed);
                }
                Some(replaced.handle)
            }
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
        if removed.is_detached {
            self.detached.fetch_sub(1, Ordering::Relaxed);
        }
        Some(removed)
    }

    /// Marks session `session_id`'s resource as detached (hibernating, XEP-0198 section 5) or attached
    /// again. Nothing happens if another session holds the resource by now.
    pub fn set_detached(&self, bare: &str, resource: &str, session_id: u64, detached: bool) {
        let mut accounts = self.write();
        if let Some(entry) = accounts.get_mut(bare).and_then(|rs| {
            rs.iter_mut()
                .find(|r| r.resource == resource && r.handle.id == session_id)
        }) && entry.is_detached != detached
        {
            entry.is_detached = detached;
            if detached {
                self.detached.fetch_add(1, Ordering::Relaxed);
            } else {
                self.detached.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether every one of `resources` of `bare` is bound and detached (and there is at least one).
    /// Cheap while no session on the server is detached.
    pub fn are_all_detached<'a>(
        &self,
        bare: &str,
        mut resources: impl Iterator<Item = &'a str>,
    ) -> bool {
        if self.detached.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let accounts = self.read();
        let Some(bound) = accounts.get(bare) else {
            return false;
        };
        let mut any = false;
        let all = resources.all(|name| {
            any = true;
            bound.iter().any(|r| r.resource == name && r.is_detached)
        });
        any && all
    }

    /// Makes session `handle` of `bare` resumable under `id` (XEP-0198 section 5).
    pub fn add_resumable(&self, id: &str, bare: &str, handle: SessionHandle) {
        let entry = Resumable {
            bare: bare.to_string(),
            handle,
        };
        self.resumable
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), entry);
    }

    /// The session resumable under `id`, if any.
    pub fn resumable(&self, id: &str) -> Option<Resumable> {
        self.resumable
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Forgets the resumption id of an ending session.
    pub fn remove_resumable(&self, id: &str) {
        self.resumable
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
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

    /// Enables or disables message carbons for a resource (XEP-0280 sections 4 and 5).
    pub fn set_carbons(&self, bare: &str, resource: &str, enabled: bool) {
        if let Some(entry) = self
            .write()
            .get_mut(bare)
            .and_then(|rs| rs.iter_mut().find(|r| r.resource == resource))
        {
            entry.has_carbons = enabled;
        }
    }

    /// The resources of `bare` that enabled carbons, with their handles (empty, and not allocated, when
    /// none did).
    pub fn carbons_enabled(&self, bare: &str) -> Vec<(String, SessionHandle)> {
        match self.read().get(bare) {
            Some(resources) => resources
                .iter()
                .filter(|r| r.has_carbons)
                .map(|r| (r.resource.clone(), r.handle.clone()))
                .collect(),
            None => Vec::new(),
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

    #[test]
    fn only_resources_that_are_all_detached_count_as_detached() {
        let registry = Registry::default();
        let (phone, _rx1) = registry.new_session();
        let (laptop, _rx2) = registry.new_session();
        registry.bind("a@b", "phone", phone.clone());
        registry.bind("a@b", "laptop", laptop.clone());
        assert!(!registry.are_all_detached("a@b", ["phone"].into_iter()));
        registry.set_detached("a@b", "phone", phone.id, true);
        assert!(registry.are_all_detached("a@b", ["phone"].into_iter()));
        assert!(!registry.are_all_detached("a@b", ["phone", "laptop"].into_iter()));
        assert!(
            !registry.are_all_detached("a@b", std::iter::empty()),
            "none chosen"
        );
        // Another session's id does not attach it; its own does.
        registry.set_detached("a@b", "phone", laptop.id, false);
        assert!(registry.are_all_detached("a@b", ["phone"].into_iter()));
        registry.set_detached("a@b", "phone", phone.id, false);
        assert!(!registry.are_all_detached("a@b", ["phone"].into_iter()));
        // Unbinding a detached resource forgets it, so the cheap path returns.
        registry.set_detached("a@b", "phone", phone.id, true);
        registry.unbind("a@b", "phone", phone.id);
        assert_eq!(registry.detached.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn shutdown_reaches_bound_sessions_ahead_of_stanzas_and_later_ones_too() {
        let registry = Registry::default();
        let (before, mut before_rx) = registry.new_session();
        registry.bind("a@b", "phone", before.clone());
        assert!(before.send_stanza(&Element::bare("message", "jabber:client")));
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

    #[test]
    fn a_full_queue_refuses_stanzas_by_bytes_but_not_the_command_that_ends_the_session() {
        let registry = Registry::new(10_000);
        let (handle, mut rx) = registry.new_session();
        let mut message = Element::bare("message", "jabber:client");
        message.append_text_node("x".repeat(6_000));
        assert!(handle.send_stanza(&message));
        assert!(!handle.send_stanza(&message), "past the byte bound");
        assert!(
            handle.send(SessionCommand::Replaced),
            "the session must still learn it is replaced"
        );
        assert!(matches!(rx.try_recv(), Some(SessionCommand::Stanza(_))));
        assert!(matches!(rx.try_recv(), Some(SessionCommand::Replaced)));
    }

    #[test]
    fn a_queue_full_of_entries_still_takes_the_command_that_ends_the_session() {
        let registry = Registry::default();
        let (handle, _rx) = registry.new_session();
        let small = Element::bare("presence", "jabber:client");
        for _ in 0..SESSION_QUEUE_LENGTH {
            assert!(handle.send_stanza(&small));
        }
        assert!(!handle.send_stanza(&small), "full");
        assert!(
            handle.send(SessionCommand::Terminate),
            "account deletion must reach it"
        );
        assert!(
            handle.send(SessionCommand::Replaced),
            "a newer login must reach it"
        );
    }
}
