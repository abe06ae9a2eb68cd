//! XEP-0357 push registrations: which app servers (a push service JID and a node) each account
//! enabled, with the publish-options the client gave (section 5, replayed with every publish), and
//! how many publishes to it failed in a row (section 7.1 lets a server keep a registration through
//! transient errors "until a sufficient number of errors have been received in a row"). The SQL is in
//! `sql/push_registrations.rs`.
//!
//! Keys are plain strings: the account's bare JID, the service JID and the node as the client sent
//! them. A registration is deleted with its account ([`crate::Accounts::delete`]).

use async_trait::async_trait;

use crate::StorageResult;

/// One enabled (service, node) of an account (XEP-0357 section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRegistration {
    /// The account's bare JID.
    pub account: String,
    /// The XMPP push service's JID (the `jid` of `<enable/>`).
    pub service: String,
    /// The node on that service (the `node` of `<enable/>`).
    pub node: String,
    /// The publish-options data form as the client sent it (serialised XML), if any.
    pub publish_options: Option<String>,
    /// Publishes to this registration that failed in a row since the last success.
    pub failures: u32,
    /// When it was enabled (or last re-enabled), in milliseconds since the Unix epoch.
    pub enabled_at_ms: i64,
}

/// What [`PushRegistrations::upsert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushUpsert {
    /// Stored: new, or replacing the publish-options of the same (service, node), with its failure
    /// count back at zero.
    Stored,
    /// The account already has `limit` other registrations; nothing was stored.
    LimitReached,
}

/// XEP-0357 registrations, per account.
#[async_trait]
pub trait PushRegistrations: Send + Sync {
    /// Every registration of `account`, sorted by service and node.
    async fn list(&self, account: &str) -> StorageResult<Vec<PushRegistration>>;
    /// Every account with at least one registration, sorted, so that a cache can tell the (many)
    /// accounts without one apart without a read each.
    async fn accounts_with_registrations(&self) -> StorageResult<Vec<String>>;
    /// Enables `registration` (section 5: enabling a (service, node) again replaces its
    /// publish-options), unless that would give the account more than `limit` registrations.
    /// The count and the write are one statement; two enables racing on PostgreSQL may still pass
    /// the limit by one each.
    async fn upsert(
        &self,
        registration: &PushRegistration,
        limit: usize,
    ) -> StorageResult<PushUpsert>;
    /// Removes the registration (service, node) of `account`, or, with `node` `None`, every
    /// registration of `account` at `service` (section 6). Returns how many were removed.
    async fn delete(&self, account: &str, service: &str, node: Option<&str>) -> StorageResult<u64>;
    /// Removes every registration of `account`; returns how many.
    async fn delete_all(&self, account: &str) -> StorageResult<u64>;
    /// Counts one more failed publish to (service, node); returns the new count in a row, or `None`
    /// if there is no such registration (it was disabled meanwhile).
    async fn record_failure(
        &self,
        account: &str,
        service: &str,
        node: &str,
    ) -> StorageResult<Option<u32>>;
    /// A publish succeeded: the count of failures in a row goes back to zero.
    async fn clear_failures(&self, account: &str, service: &str, node: &str) -> StorageResult<()>;
}
