//! Herald persistence: one small trait per area, implemented for SQLite (the embedded default) and PostgreSQL.
//!
//! Business code sees only the traits in this file and in the area files (`archive.rs`, `s2s_queue.rs`, ...; re-exported here) and the
//! [`Storage`] handle; sqlx stays inside `sql/` (the XMPP areas' SQL, written once), `relay/`,
//! `sqlite/`, `postgres/` and the test support in [`testing`]. Both backends run the same [`contract`] suite, so a behaviour that differs
//! between them is a bug. Keys are plain strings: a bare JID `user@domain` for XMPP data; this crate
//! knows nothing of JID syntax, sessions or routing.

use std::sync::Arc;

use async_trait::async_trait;

mod archive;
pub mod contract;
pub mod contract_relay;
mod pep;
mod postgres;
mod private_xml;
mod push_registrations;
pub mod relay;
mod rows;
mod s2s_queue;
mod sql;
mod sqlite;
pub mod testing;

pub use archive::{
    ARCHIVE_MAX_IDS, ARCHIVE_MAX_PAGE, ARCHIVE_PURGE_BATCH, Archive, ArchiveAppend, ArchiveDefault,
    ArchiveMark, ArchiveMetadata, ArchivePage, ArchivePaging, ArchivePrefs, ArchiveQuery,
    ArchivedMessage, Direction, new_stanza_id,
};
pub use pep::{Pep, PepCreate, PepItem, PepNode, PepPublish};
pub use private_xml::{PrivateFragment, PrivatePut, PrivateXml};
pub use push_registrations::{PushRegistration, PushRegistrations, PushUpsert};
pub use s2s_queue::{S2sEnqueue, S2sQueue, S2sQueueLimits, S2sQueueUsage, S2sQueued};

/// How [`Storage::connect_with`] sets up the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// PostgreSQL: connections in the pool, all opened at start; `None` for
    /// [`default_postgres_pool_size`]. SQLite has its own fixed arrangement (one writer) and ignores it.
    pub postgres_pool_size: Option<u32>,
}

/// The PostgreSQL pool size used when none is configured (see its definition for why).
pub fn default_postgres_pool_size() -> u32 {
    postgres::default_pool_size()
}

/// Everything that can go wrong talking to a database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The row to create already exists (for example an account name that is taken).
    #[error("already exists")]
    AlreadyExists,
    /// The URL names no backend this build knows (`sqlite:` and `postgres:` are known).
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
    /// A migration failed to apply at start.
    #[error("migration failed: {0}")]
    Migration(String),
    /// An archive query named a message id that is not in the owner's archive (XEP-0313 sections
    /// 4.1.3 and 4.3.2: answered with `item-not-found`). Carries the id as the client sent it.
    #[error("no such archived message: {0}")]
    UnknownArchiveId(String),
    /// A request is over a limit this crate documents (for example [`ARCHIVE_MAX_IDS`]).
    #[error("over limit: {0}")]
    OverLimit(String),
    /// Any other database error; the message is for logs, never for peers.
    #[error("database error: {0}")]
    Database(String),
}

/// Result alias for this crate.
pub type StorageResult<T> = Result<T, StorageError>;

/// The SCRAM keys for one hash function (RFC 5802 section 3): all the server ever stores of a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// An account's credentials: SCRAM keys for SHA-1 and SHA-256 (RFC 7677).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

/// Local XMPP accounts, keyed by bare JID (`user@domain`, already normalised by the caller).
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates an account. Errors: [`StorageError::AlreadyExists`] if the JID is taken.
    async fn create(&self, jid: &str, credentials: &Credentials) -> StorageResult<()>;
    /// The stored credentials, or `None` if there is no such account.
    async fn credentials(&self, jid: &str) -> StorageResult<Option<Credentials>>;
    /// Replaces the credentials; returns `false` if there is no such account.
    async fn set_credentials(&self, jid: &str, credentials: &Credentials) -> StorageResult<bool>;
    /// Deletes the account and everything it owns (roster, offline messages, vCard, block list,
    /// message archive and archiving preferences, XEP-0357 push registrations, XEP-0049 private XML, PEP
    /// nodes and items, and its push relay account, whose id is the bare
    /// JID, with that account's API keys, devices, tokens, messages, outbox entries and audit trail),
    /// in one transaction.
    /// Returns `false` if there was no such account.
    async fn delete(&self, jid: &str) -> StorageResult<bool>;
    /// Bare JIDs of all accounts on `domain`, sorted.
    async fn list(&self, domain: &str) -> StorageResult<Vec<String>>;
    /// Whether the account exists.
    async fn exists(&self, jid: &str) -> StorageResult<bool>;
}

/// The subscription part of a roster item (RFC 6121 section 2.1.2.5), without the pending flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
}

impl Subscription {
    /// The wire name (`none`, `to`, `from`, `both`).
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Subscription> {
        Some(match s {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => return None,
        })
    }
}

/// One roster item with its full subscription state (RFC 6121 section 3 and appendix A).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RosterItem {
    /// Bare JID of the contact.
    pub contact: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// We asked the contact for a subscription and have no answer yet ("Pending Out", `ask='subscribe'`).
    pub pending_out: bool,
    /// The contact asked us for a subscription and the user has not answered ("Pending In"). Kept so the
    /// request is delivered again at the next login (RFC 6121 section 3.1.3).
    pub pending_in: bool,
    /// The user pre-approved a subscription request from the contact (RFC 6121 section 3.4).
    pub pre_approved: bool,
    /// Whether the item is visible in the user's roster. Items that exist only to remember a pending-in
    /// request are not (RFC 6121 section 3.1.3: the server does not add an item for an inbound request).
    pub in_roster: bool,
    pub groups: Vec<String>,
}

/// Rosters with versioning (RFC 6121 section 2.6): every change bumps the owner's version.
#[async_trait]
pub trait Rosters: Send + Sync {
    /// All items of `owner` (including not-in-roster items that only hold pending state), sorted by
    /// contact, and the current roster version (0 for an empty, never-changed roster). Both come from one
    /// snapshot, so the version matches the items.
    async fn items(&self, owner: &str) -> StorageResult<(u64, Vec<RosterItem>)>;
    /// One item, or `None`.
    async fn item(&self, owner: &str, contact: &str) -> StorageResult<Option<RosterItem>>;
    /// Inserts or replaces the item for `item.contact`; returns the new roster version. Groups keep the
    /// given order; a repeated group name is stored once.
    async fn upsert(&self, owner: &str, item: &RosterItem) -> StorageResult<u64>;
    /// Removes the item; returns the new version, or `None` if there was no such item.
    async fn remove(&self, owner: &str, contact: &str) -> StorageResult<Option<u64>>;
    /// How many items `owner` has, including not-in-roster ones (what a roster size limit bounds).
    async fn count(&self, owner: &str) -> StorageResult<u64>;
}

/// A message stored for a user who was offline (XEP-0160).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineMessage {
    /// Increasing per store; delivery order is by id.
    pub id: i64,
    /// The stanza as serialised XML.
    pub stanza: String,
    /// When it was stored, in milliseconds since the Unix epoch (for the XEP-0203 delay stamp).
    pub stored_at_ms: i64,
}

/// What happened to a message handed to [`OfflineMessages::store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineStore {
    Stored,
    /// The owner already has `quota` messages waiting; nothing was stored.
    QuotaExceeded,
}

/// Offline message storage (XEP-0160).
#[async_trait]
pub trait OfflineMessages: Send + Sync {
    /// Stores a message for `owner` unless they already have `quota` waiting.
    async fn store(
        &self,
        owner: &str,
        stanza: &str,
        stored_at_ms: i64,
        quota: usize,
    ) -> StorageResult<OfflineStore>;
    /// Every waiting message of `owner`, oldest first. Does not delete: call [`Self::remove_up_to`] once
    /// they have been handed to a session, so a crash in between loses nothing.
    async fn fetch(&self, owner: &str) -> StorageResult<Vec<OfflineMessage>>;
    /// Deletes the messages of `owner` with `id <= last_id`; returns how many were deleted.
    async fn remove_up_to(&self, owner: &str, last_id: i64) -> StorageResult<u64>;
    /// How many messages wait for `owner`.
    async fn count(&self, owner: &str) -> StorageResult<u64>;
}

/// vcard-temp storage (XEP-0054): one opaque XML document per account.
#[async_trait]
pub trait VCards: Send + Sync {
    async fn get(&self, owner: &str) -> StorageResult<Option<String>>;
    async fn set(&self, owner: &str, vcard_xml: &str) -> StorageResult<()>;
}

/// Block lists (XEP-0191). JIDs are stored as given (bare, full or domain), deduplicated.
#[async_trait]
pub trait BlockLists: Send + Sync {
    /// The blocked JIDs, sorted.
    async fn list(&self, owner: &str) -> StorageResult<Vec<String>>;
    /// The blocked JIDs of an account, sorted, or `None` when there is no account `owner`: what the
    /// router needs before delivering to a user with no session, in one round trip instead of two.
    async fn list_of_account(&self, owner: &str) -> StorageResult<Option<Vec<String>>>;
    /// Adds JIDs (already-blocked ones are ignored).
    async fn block(&self, owner: &str, jids: &[String]) -> StorageResult<()>;
    /// Removes JIDs (unknown ones are ignored).
    async fn unblock(&self, owner: &str, jids: &[String]) -> StorageResult<()>;
    /// Removes every JID.
    async fn unblock_all(&self, owner: &str) -> StorageResult<()>;
}

/// The handle the rest of Herald holds: one trait object per area, all on one connection pool.
#[derive(Clone)]
pub struct Storage {
    pub accounts: Arc<dyn Accounts>,
    pub rosters: Arc<dyn Rosters>,
    pub offline: Arc<dyn OfflineMessages>,
    pub vcards: Arc<dyn VCards>,
    pub block_lists: Arc<dyn BlockLists>,
    /// Message archives (XEP-0313).
    pub archive: Arc<dyn Archive>,
    /// XEP-0357 push registrations.
    pub push_registrations: Arc<dyn PushRegistrations>,
    /// XEP-0049 private XML fragments.
    pub private_xml: Arc<dyn PrivateXml>,
    /// XEP-0163 PEP nodes and items.
    pub pep: Arc<dyn Pep>,
    /// The outbound server-to-server queue, per remote domain.
    pub s2s_queue: Arc<dyn S2sQueue>,
    /// Push relay areas (see [`relay`]).
    pub relay_accounts: Arc<dyn relay::RelayAccounts>,
    pub relay_devices: Arc<dyn relay::RelayDevices>,
    pub whitelist_tokens: Arc<dyn relay::WhitelistTokens>,
    pub push_outbox: Arc<dyn relay::PushOutbox>,
    pub push_audit: Arc<dyn relay::PushAudit>,
    /// Which backend this is, for logs (`sqlite` or `postgres`).
    pub backend: &'static str,
    /// PostgreSQL: connections in the pool; `None` on SQLite.
    pub pool_size: Option<u32>,
}

impl Storage {
    /// Connects to `url` and applies the migrations.
    ///
    /// `sqlite://path/to/file.db` (created if missing, WAL mode), `sqlite::memory:` for tests, or
    /// `postgres://user@host/db`. Errors: [`StorageError::UnsupportedUrl`], [`StorageError::Migration`],
    /// [`StorageError::Database`].
    pub async fn connect(url: &str) -> StorageResult<Storage> {
        Storage::connect_with(url, ConnectOptions::default()).await
    }

    /// [`Storage::connect`] with `options`.
    pub async fn connect_with(url: &str, options: ConnectOptions) -> StorageResult<Storage> {
        if url.starts_with("sqlite:") {
            sqlite::connect(url).await
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool_size = options
                .postgres_pool_size
                .unwrap_or_else(postgres::default_pool_size);
            postgres::connect(url, pool_size).await
        } else {
            Err(StorageError::UnsupportedUrl(url.to_string()))
        }
    }

    /// One backend behind every area: `xmpp` serves the XMPP areas, `relay` the push relay's.
    fn from_backend<X, R>(xmpp: X, relay: R, backend: &'static str) -> Storage
    where
        X: Accounts
            + Rosters
            + OfflineMessages
            + VCards
            + BlockLists
            + Archive
            + PushRegistrations
            + PrivateXml
            + Pep
            + S2sQueue
            + 'static,
        R: relay::RelayAccounts
            + relay::RelayDevices
            + relay::WhitelistTokens
            + relay::PushOutbox
            + relay::PushAudit
            + 'static,
    {
        let xmpp = Arc::new(xmpp);
        let relay = Arc::new(relay);
        Storage {
            accounts: xmpp.clone(),
            rosters: xmpp.clone(),
            offline: xmpp.clone(),
            vcards: xmpp.clone(),
            block_lists: xmpp.clone(),
            archive: xmpp.clone(),
            push_registrations: xmpp.clone(),
            private_xml: xmpp.clone(),
            pep: xmpp.clone(),
            s2s_queue: xmpp,
            relay_accounts: relay.clone(),
            relay_devices: relay.clone(),
            whitelist_tokens: relay.clone(),
            push_outbox: relay.clone(),
            push_audit: relay,
            backend,
            pool_size: None,
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.backend)
            .finish()
    }
}
