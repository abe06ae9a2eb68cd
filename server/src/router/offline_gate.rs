//! Orders storing a message offline against its recipient becoming available (RFC 6121 section 8.5.2.2.1,
//! XEP-0160 section 3).
//!
//! The rules decide "store offline" from a snapshot of the recipient's resources; the store then takes a
//! database round trip. If the recipient's initial presence is handled in between, its session fetches
//! the offline messages before the store commits, and the message waits for the next login instead of
//! arriving now. So both sides pass a per-user gate: a store holds it from re-checking availability to
//! its commit, and initial presence takes it to mark the resource available. A store that finds the
//! recipient available by then routes the message again instead of storing it; a store that committed
//! first is in the storage before the session fetches. Only the offline path takes the gate: delivery to
//! an online resource never waits for it.
//!
//! The router keeps a second set of the same gates for roster items (`Router::roster_gates`): a
//! subscription change is read, changed and written back (RFC 6121 section 3), and the user's own
//! approval and the contact's arriving at once must not overwrite each other.

use std::hash::BuildHasher;

use tokio::sync::{Mutex, MutexGuard};

/// Gates per router: users share a gate by hash, so memory stays fixed whatever the number of accounts;
/// two users on one gate only wait for each other's offline stores.
const GATES: usize = 64;

/// Per-user gates, sharded by hash.
#[derive(Debug)]
pub struct UserGates {
    gates: Box<[Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for UserGates {
    fn default() -> Self {
        UserGates {
            gates: (0..GATES).map(|_| Mutex::new(())).collect(),
            hasher: Default::default(),
        }
    }
}

impl UserGates {
    /// Waits for and holds `user`'s gate (a bare JID). Never hold it across anything but the
    /// availability check and the offline store, or the presence that marks a resource available.
    pub async fn lock(&self, user: &str) -> MutexGuard<'_, ()> {
        let index = (self.hasher.hash_one(user) % self.gates.len() as u64) as usize;
        self.gates[index].lock().await
    }
}
