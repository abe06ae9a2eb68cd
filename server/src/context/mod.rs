//! The server context: what every part of a running server reads and nothing routes through.
//!
//! Configuration, storage, the caches in front of storage (block lists, XEP-0191) and the throttles
//! (failed logins, RFC 6120 section 13.5; in-band registrations, XEP-0077 section 9). The router holds the
//! sessions and the route table ([`crate::router`]); the features and the listeners read this.

pub mod archive_prefs;
pub mod archive_queue;
pub mod block_lists;
pub mod entity_caps;
pub mod registration_limit;
pub mod remote_resources;

use std::sync::Arc;

use herald_relay::login_throttle::LoginThrottle;
use herald_storage::Storage;

pub use archive_prefs::ArchivePrefsCache;
pub use archive_queue::{ArchiveQueue, QueueError, QueuedAppend};
pub use block_lists::{BlockListCache, Recipient};
pub use entity_caps::CapsCache;
pub use registration_limit::RegistrationLimit;
pub use remote_resources::RemoteResources;

use crate::config::Config;

/// Configuration, storage, caches and throttles of one running server (no globals: two can run in one
/// process, as the federation tests need).
pub struct ServerContext {
    pub config: Arc<Config>,
    pub storage: Storage,
    /// Failed password checks (SASL, component handshakes), shared with the hosted relay's HTTP login.
    pub login_throttle: LoginThrottle,
    /// XEP-0077 account creation attempts per client address.
    pub registrations: RegistrationLimit,
    /// Block lists read on every delivery to a local user (XEP-0191 section 3.3).
    pub block_lists: BlockListCache,
    /// Archive appends waiting for their batch's commit (XEP-0313, written behind delivery).
    pub archive: ArchiveQueue,
    /// Archiving preferences read on every archived message (XEP-0441).
    pub archive_prefs: ArchivePrefsCache,
    /// XEP-0115 verification strings and what each available resource announced (for XEP-0163).
    pub caps: CapsCache,
    /// Resources of contacts on other servers that announced caps to a local user (XEP-0163).
    pub remote_resources: RemoteResources,
    /// Random bytes made at start that key the fake SCRAM salts of unknown users, so they cannot be told
    /// apart from real ones (RFC 5802 section 9 leaves enumeration resistance to the server).
    pub unknown_user_secret: [u8; 32],
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext")
            .field("domains", &self.config.domains)
            .field("storage", &self.storage.backend)
            .finish_non_exhaustive()
    }
}

impl ServerContext {
    /// A context counting failed logins in `login_throttle` (the hosted relay's, so that one throttle
    /// covers every place a password is checked; `LoginThrottle::default()` otherwise). Starts the
    /// archive's writer task on the current runtime.
    pub fn new(
        config: Arc<Config>,
        storage: Storage,
        login_throttle: LoginThrottle,
    ) -> ServerContext {
        ServerContext {
            archive: ArchiveQueue::new(storage.clone()),
            registrations: RegistrationLimit::new(config.registrations_per_address_per_hour),
            config,
            storage,
            login_throttle,
            block_lists: BlockListCache::default(),
            archive_prefs: ArchivePrefsCache::default(),
            caps: CapsCache::default(),
            remote_resources: RemoteResources::default(),
            unknown_user_secret: rand::random(),
        }
    }
}
