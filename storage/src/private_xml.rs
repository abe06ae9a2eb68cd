//! XEP-0049 private XML storage: per account, one XML fragment per (namespace, element name), as
//! the client stored it (section 2.3: a set replaces what was stored for that namespace, a get
//! returns it). The SQL is in `sql/private_xml.rs`.
//!
//! Keys are plain strings: the account's bare JID, the fragment's namespace and its element's local
//! name. Fragments are deleted with their account ([`crate::Accounts::delete`]).

use async_trait::async_trait;

use crate::StorageResult;

/// One fragment to store: the root element's namespace and local name, and the whole element as
/// serialised XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateFragment {
    pub namespace: String,
    pub name: String,
    pub xml: String,
}

/// What [`PrivateXml::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivatePut {
    /// Every fragment was stored, replacing any of the same (namespace, name).
    Stored,
    /// Storing them would have left the account with more than the limit of fragments; nothing
    /// was stored (and nothing stored before was touched).
    LimitReached,
}

/// XEP-0049 fragments, per account.
#[async_trait]
pub trait PrivateXml: Send + Sync {
    /// The fragment `owner` stored for (`namespace`, `name`), or `None`.
    async fn get(&self, owner: &str, namespace: &str, name: &str) -> StorageResult<Option<String>>;
    /// Stores `fragments` for `owner` in one transaction, each replacing the fragment of the same
    /// (namespace, name), unless the account would then hold more than `limit` fragments (replacing
    /// one never counts as growth). Puts of one owner take turns (SQLite's write lock, a per-owner
    /// advisory lock on PostgreSQL), so racing puts never pass the limit together.
    async fn put(
        &self,
        owner: &str,
        fragments: &[PrivateFragment],
        limit: usize,
    ) -> StorageResult<PrivatePut>;
    /// How many fragments `owner` has stored.
    async fn count(&self, owner: &str) -> StorageResult<u64>;
}
