//! The resources of contacts on other servers that announced entity capabilities (XEP-0115) to a
//! local user, so that the user's PEP service can notify them (XEP-0163 section 4.3: notifications
//! go to the full JIDs whose caps ask for a node) and send them the last items (section 6.2). A local
//! resource's caps live in [`super::CapsCache`] with its session; a remote one is known only from the
//! presence its server sends each local contact, so it is kept per owner here: the owner's bare JID ->
//! the remote full JID -> the `ver` of its latest available presence.
//!
//! Bounded, and never by evicting someone already kept (a contact must not be able to push the others
//! out): at most [`MAX_PER_CONTACT`] resources of one remote contact per owner, [`MAX_PER_OWNER`] per
//! owner and [`MAX_TOTAL`] server-wide; a presence beyond them is not tracked. An entry goes on the
//! resource's unavailable presence, when the owner's roster stops linking them, and with the owner.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Resources of one remote contact tracked per owner at most.
pub const MAX_PER_CONTACT: usize = 16;
/// Remote resources tracked per owner at most.
pub const MAX_PER_OWNER: usize = 256;
/// Remote resources tracked server-wide at most.
pub const MAX_TOTAL: usize = 65_536;

/// What [`RemoteResources::record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Tracked; the `ver` the resource announced before, if it was tracked already.
    Tracked { before: Option<String> },
    /// Not tracked: a bound is reached.
    Refused,
}

#[derive(Default)]
struct Inner {
    /// Owner's bare JID -> remote full JID -> `ver`.
    by_owner: HashMap<String, HashMap<String, String>>,
    total: usize,
}

/// The tracker (see the module comment).
#[derive(Default)]
pub struct RemoteResources {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for RemoteResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteResources")
            .field("total", &self.lock().total)
            .finish()
    }
}

/// The bare part of a full JID string.
fn bare_of(full: &str) -> &str {
    full.split_once('/').map_or(full, |(bare, _)| bare)
}

impl RemoteResources {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remote resource `full` announced `ver` in an available presence to `owner`.
    pub fn record(&self, owner: &str, full: &str, ver: &str) -> Recorded {
        let mut inner = self.lock();
        let total = inner.total;
        let resources = inner.by_owner.entry(owner.to_string()).or_default();
        if let Some(known) = resources.get_mut(full) {
            let before = std::mem::replace(known, ver.to_string());
            return Recorded::Tracked {
                before: Some(before),
            };
        }
        let contact = bare_of(full);
        let of_contact = resources.keys().filter(|k| bare_of(k) == contact).count();
        if total >= MAX_TOTAL || resources.len() >= MAX_PER_OWNER || of_contact >= MAX_PER_CONTACT {
            if resources.is_empty() {
                inner.by_owner.remove(owner);
            }
            return Recorded::Refused;
        }
        resources.insert(full.to_string(), ver.to_string());
        inner.total += 1;
        Recorded::Tracked { before: None }
    }

    /// `full` went unavailable for `owner` (or announced no caps).
    pub fn forget(&self, owner: &str, full: &str) {
        self.remove_where(owner, |k| k == full);
    }

    /// `owner`'s roster no longer links them with `contact` (a bare JID): all its resources go.
    pub fn forget_contact(&self, owner: &str, contact: &str) {
        self.remove_where(owner, |k| bare_of(k) == contact);
    }

    /// `owner` is gone.
    pub fn forget_owner(&self, owner: &str) {
        self.remove_where(owner, |_| true);
    }

    fn remove_where(&self, owner: &str, gone: impl Fn(&str) -> bool) {
        let mut inner = self.lock();
        let Some(resources) = inner.by_owner.get_mut(owner) else {
            return;
        };
        let before = resources.len();
        resources.retain(|k, _| !gone(k));
        let removed = before - resources.len();
        if resources.is_empty() {
            inner.by_owner.remove(owner);
        }
        inner.total -= removed;
    }

    /// `owner`'s tracked remote resources with their `ver`.
    pub fn of_owner(&self, owner: &str) -> Vec<(String, String)> {
        self.lock().by_owner.get(owner).map_or_else(Vec::new, |r| {
            r.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        })
    }

    /// `owner`'s tracked resources of the remote `contact` (a bare JID), with their `ver`.
    pub fn of_contact(&self, owner: &str, contact: &str) -> Vec<(String, String)> {
        let mut all = self.of_owner(owner);
        all.retain(|(full, _)| bare_of(full) == contact);
        all
    }

    /// Every (owner, remote full JID) whose latest presence announced `ver`.
    pub fn announcing(&self, ver: &str) -> Vec<(String, String)> {
        let inner = self.lock();
        inner
            .by_owner
            .iter()
            .flat_map(|(owner, resources)| {
                resources
                    .iter()
                    .filter(|(_, v)| v.as_str() == ver)
                    .map(move |(full, _)| (owner.clone(), full.clone()))
            })
            .collect()
    }

    /// Whether `owner` tracks `full` with `ver`.
    pub fn announces(&self, owner: &str, full: &str, ver: &str) -> bool {
        self.lock()
            .by_owner
            .get(owner)
            .and_then(|r| r.get(full))
            .is_some_and(|v| v == ver)
    }

    /// Remote resources tracked server-wide.
    pub fn len(&self) -> usize {
        self.lock().total
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_updates_and_forgets() {
        let tracker = RemoteResources::default();
        assert_eq!(
            tracker.record("a@x", "c@y/1", "v1"),
            Recorded::Tracked { before: None }
        );
        assert_eq!(
            tracker.record("a@x", "c@y/1", "v2"),
            Recorded::Tracked {
                before: Some("v1".into())
            }
        );
        tracker.record("a@x", "c@y/2", "v2");
        tracker.record("b@x", "c@y/1", "v2");
        tracker.record("a@x", "d@y/1", "v3");
        assert_eq!(tracker.len(), 4);
        let mut announcing = tracker.announcing("v2");
        announcing.sort();
        assert_eq!(
            announcing,
            [
                ("a@x".to_string(), "c@y/1".to_string()),
                ("a@x".to_string(), "c@y/2".to_string()),
                ("b@x".to_string(), "c@y/1".to_string())
            ]
        );
        assert!(tracker.announces("a@x", "c@y/1", "v2"));
        tracker.forget("a@x", "c@y/1");
        assert!(!tracker.announces("a@x", "c@y/1", "v2"));
        assert!(tracker.announces("b@x", "c@y/1", "v2"), "per owner");
        tracker.forget_contact("a@x", "c@y");
        assert_eq!(tracker.of_owner("a@x"), [("d@y/1".into(), "v3".into())]);
        tracker.forget_owner("a@x");
        tracker.forget_owner("b@x");
        assert!(tracker.is_empty());
        assert!(tracker.lock().by_owner.is_empty(), "no empty owners kept");
    }

    #[test]
    fn bounds_refuse_newcomers_and_keep_who_is_there() {
        let tracker = RemoteResources::default();
        for n in 0..MAX_PER_CONTACT {
            assert!(matches!(
                tracker.record("a@x", &format!("c@y/{n}"), "v"),
                Recorded::Tracked { .. }
            ));
        }
        assert_eq!(
            tracker.record("a@x", "c@y/one-more", "v"),
            Recorded::Refused
        );
        // A known resource may still change its `ver`.
        assert!(matches!(
            tracker.record("a@x", "c@y/0", "w"),
            Recorded::Tracked { before: Some(_) }
        ));
        for n in 0..MAX_PER_OWNER - MAX_PER_CONTACT {
            assert!(matches!(
                tracker.record("a@x", &format!("c{n}@y/r"), "v"),
                Recorded::Tracked { .. }
            ));
        }
        assert_eq!(tracker.record("a@x", "new@y/r", "v"), Recorded::Refused);
        assert_eq!(tracker.of_owner("a@x").len(), MAX_PER_OWNER);
        assert!(matches!(
            tracker.record("b@x", "new@y/r", "v"),
            Recorded::Tracked { .. }
        ));
        // Server-wide.
        let mut owner = 0;
        while tracker.len() < MAX_TOTAL {
            for n in 0..MAX_PER_OWNER {
                if tracker.len() == MAX_TOTAL {
                    break;
                }
                tracker.record(&format!("o{owner}@x"), &format!("c{n}@y/r"), "v");
            }
            owner += 1;
        }
        assert_eq!(tracker.record("last@x", "c@y/r", "v"), Recorded::Refused);
        assert!(
            !tracker.lock().by_owner.contains_key("last@x"),
            "a refused owner leaves no entry"
        );
        tracker.forget("b@x", "new@y/r");
        assert_eq!(tracker.len(), MAX_TOTAL - 1);
        assert!(matches!(
            tracker.record("last@x", "c@y/r", "v"),
            Recorded::Tracked { .. }
        ));
    }
}
