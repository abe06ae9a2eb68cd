//! XEP-0115 entity capabilities, as far as the server keeps them: which verification strings it has
//! verified (section 5.4) and what they say about PEP (the nodes a client wants notifications for,
//! XEP-0163 section 4.3.1 `+notify`), and which `ver` each available local resource announced in its
//! presence. `features::entity_caps` fills it; `features::pep` reads it.
//!
//! Bounded: at most [`MAX_VERIFIED`] verification strings (the oldest is forgotten first; a client
//! announcing it again is asked again), one entry per available resource (dropped when it goes
//! unavailable), and at most [`MAX_QUERIES`] disco#info queries in flight, one per account, so an
//! account announcing made-up strings and never answering cannot take every slot.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Verification strings remembered at most.
pub const MAX_VERIFIED: usize = 4096;
/// disco#info queries for unknown verification strings in flight at most, server-wide.
pub const MAX_QUERIES: usize = 256;

/// What one verified `ver` stands for, as far as PEP cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    /// Nodes the entity wants notifications for: its features `node+notify` (XEP-0163 section 4.3.1).
    pub notify: BTreeSet<String>,
}

/// What [`CapsCache::announce`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announced {
    /// The `ver` is verified: what it says now, and what the resource's previous `ver` said.
    Known {
        now: Arc<Caps>,
        before: Option<Arc<Caps>>,
    },
    /// Nobody is asking about this `ver` yet: the caller must query the resource (and then call
    /// [`CapsCache::verified`] or [`CapsCache::query_failed`]).
    Query,
    /// A query for this `ver` is in flight (or too many are); its answer serves this resource too.
    Waiting,
}

#[derive(Default)]
struct Inner {
    verified: HashMap<String, Arc<Caps>>,
    /// `verified`'s keys, oldest first, for eviction.
    order: VecDeque<String>,
    /// Full JID of an available local resource -> the `ver` of its latest available presence.
    resources: HashMap<String, String>,
    /// `ver`s with a disco#info query in flight -> the bare JID of the account asked.
    querying: HashMap<String, String>,
}

/// The cache (see the module comment).
#[derive(Default)]
pub struct CapsCache {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for CapsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("CapsCache")
            .field("verified", &inner.verified.len())
            .field("resources", &inner.resources.len())
            .finish()
    }
}

impl CapsCache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `full` (an available resource) announced `ver` (sha-1) in its presence.
    pub fn announce(&self, full: &str, ver: &str) -> Announced {
        let mut inner = self.lock();
        let previous = inner.resources.insert(full.to_string(), ver.to_string());
        if let Some(now) = inner.verified.get(ver).cloned() {
            let before = previous.and_then(|p| inner.verified.get(&p).cloned());
            return Announced::Known { now, before };
        }
        let account = full.split('/').next().unwrap_or(full);
        Self::claim_query(&mut inner, ver, account)
    }

    /// A `ver` announced by a resource of another server, which [`CapsCache`] does not track (its
    /// owner's contacts do, `RemoteResources`): what is known of it, or whether the caller must query
    /// (one query per `ver`, the same bounds as for local resources; `account` is the announcer's
    /// bare JID).
    pub fn announce_remote(&self, account: &str, ver: &str) -> Announced {
        let mut inner = self.lock();
        if let Some(now) = inner.verified.get(ver).cloned() {
            return Announced::Known { now, before: None };
        }
        Self::claim_query(&mut inner, ver, account)
    }

    fn claim_query(inner: &mut Inner, ver: &str, account: &str) -> Announced {
        if inner.querying.contains_key(ver)
            || inner.querying.len() >= MAX_QUERIES
            || inner.querying.values().any(|asked| asked == account)
        {
            return Announced::Waiting;
        }
        inner.querying.insert(ver.to_string(), account.to_string());
        Announced::Query
    }

    /// `full` went unavailable (or announced no caps): its `ver` is forgotten.
    pub fn forget(&self, full: &str) {
        self.lock().resources.remove(full);
    }

    /// The query for `ver` was answered and the answer verified (XEP-0115 section 5.4): remembers
    /// `caps` for it and returns them with every resource that announced `ver` meanwhile.
    pub fn verified(&self, ver: &str, caps: Caps) -> (Arc<Caps>, Vec<String>) {
        let mut inner = self.lock();
        inner.querying.remove(ver);
        let caps = Arc::new(caps);
        if inner
            .verified
            .insert(ver.to_string(), caps.clone())
            .is_none()
        {
            inner.order.push_back(ver.to_string());
            while inner.order.len() > MAX_VERIFIED {
                if let Some(oldest) = inner.order.pop_front() {
                    inner.verified.remove(&oldest);
                }
            }
        }
        let waiting = inner
            .resources
            .iter()
            .filter(|(_, announced)| announced.as_str() == ver)
            .map(|(full, _)| full.clone())
            .collect();
        (caps, waiting)
    }

    /// The query for `ver` got no usable answer; the next announcement asks again.
    pub fn query_failed(&self, ver: &str) {
        self.lock().querying.remove(ver);
    }

    /// The verified caps of an available resource, if its `ver` is verified.
    pub fn of(&self, full: &str) -> Option<Arc<Caps>> {
        let inner = self.lock();
        let ver = inner.resources.get(full)?;
        inner.verified.get(ver).cloned()
    }

    /// The caps `ver` stands for, if verified (and remembered).
    pub fn of_ver(&self, ver: &str) -> Option<Arc<Caps>> {
        self.lock().verified.get(ver).cloned()
    }

    /// Whether `ver` is verified (and remembered).
    pub fn is_verified(&self, ver: &str) -> bool {
        self.lock().verified.contains_key(ver)
    }

    /// Whether a query for `ver` is in flight.
    pub fn is_querying(&self, ver: &str) -> bool {
        self.lock().querying.contains_key(ver)
    }

    /// Whether `full` still announces `ver` (it may have gone unavailable or changed meanwhile).
    pub fn announces(&self, full: &str, ver: &str) -> bool {
        self.lock().resources.get(full).is_some_and(|v| v == ver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(nodes: &[&str]) -> Caps {
        Caps {
            notify: nodes.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn one_query_per_ver_and_every_announcer_is_served() {
        let cache = CapsCache::default();
        assert_eq!(cache.announce("a@x/1", "v1"), Announced::Query);
        assert_eq!(cache.announce("a@x/2", "v1"), Announced::Waiting);
        assert_eq!(cache.announce("b@x/1", "v1"), Announced::Waiting);
        cache.forget("b@x/1");
        assert_eq!(cache.of("a@x/1"), None, "not verified yet");
        let (now, mut waiting) = cache.verified("v1", caps(&["n"]));
        waiting.sort();
        assert_eq!(waiting, ["a@x/1", "a@x/2"]);
        assert_eq!(cache.of("a@x/2"), Some(now.clone()));
        assert_eq!(
            cache.announce("b@x/1", "v1"),
            Announced::Known {
                now: now.clone(),
                before: None
            }
        );
        assert_eq!(
            cache.announce("b@x/1", "v1"),
            Announced::Known {
                now: now.clone(),
                before: Some(now)
            }
        );
        assert!(cache.announces("b@x/1", "v1"));
        cache.forget("b@x/1");
        assert!(!cache.announces("b@x/1", "v1"));
    }

    #[test]
    fn a_failed_query_is_asked_again() {
        let cache = CapsCache::default();
        assert_eq!(cache.announce("a@x/1", "v1"), Announced::Query);
        cache.query_failed("v1");
        assert_eq!(cache.announce("a@x/1", "v1"), Announced::Query);
    }

    #[test]
    fn queries_and_verified_strings_are_bounded() {
        let cache = CapsCache::default();
        assert_eq!(cache.announce("a@x/1", "q"), Announced::Query);
        assert_eq!(
            cache.announce("a@x/2", "another"),
            Announced::Waiting,
            "one query per account"
        );
        for n in 1..MAX_QUERIES {
            assert_eq!(
                cache.announce(&format!("u{n}@x/1"), &format!("q{n}")),
                Announced::Query
            );
        }
        assert_eq!(cache.announce("b@x/1", "one-more"), Announced::Waiting);
        for n in 0..=MAX_VERIFIED {
            cache.verified(&format!("v{n}"), Caps::default());
        }
        let inner = cache.lock();
        assert_eq!(inner.verified.len(), MAX_VERIFIED);
        assert!(!inner.verified.contains_key("v0"), "the oldest went first");
    }
}
