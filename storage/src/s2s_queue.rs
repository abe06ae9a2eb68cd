//! The durable outbound server-to-server queue: one queue per remote domain, so stanzas wait in
//! storage while a connection to the peer is established, survive a restart, and are either written
//! to a live stream or taken out to bounce (RFC 6120 section 10.4.3: a stanza that cannot be
//! delivered is answered with `remote-server-not-found` or `remote-server-timeout`). The SQL is in
//! `sql/s2s_queue.rs`.
//!
//! Order is per domain, by id: ids grow in the order enqueues commit (SQLite has one writer; on
//! PostgreSQL an enqueue locks its domain before it draws the id), which keeps the in-order
//! processing RFC 6120 section 10.1 asks of a stream. This crate knows nothing of JIDs or streams:
//! a domain, a sender and a stanza are plain strings.

use async_trait::async_trait;

use crate::StorageResult;

/// One stanza waiting for its remote domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S2sQueued {
    /// Increasing per enqueue, never reused; the order to send in.
    pub id: i64,
    /// The local JID that sent it (the `from`), so a bounce can find its way back.
    pub sender: String,
    /// The stanza as serialised XML.
    pub stanza: String,
    /// When it was enqueued, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: i64,
}

/// The per-domain cap an enqueue is checked against, atomically with the insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S2sQueueLimits {
    /// At most this many stanzas wait for one domain.
    pub max_stanzas: usize,
    /// At most this many bytes of serialised stanzas wait for one domain.
    pub max_bytes: usize,
}

/// What [`S2sQueue::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S2sEnqueue {
    /// Queued under this id.
    Queued(i64),
    /// The domain's queue is at its limit (stanzas, or bytes with this stanza); nothing was stored.
    /// The caller bounces the stanza.
    Full,
}

/// How much waits for one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct S2sQueueUsage {
    pub stanzas: u64,
    /// Bytes of serialised stanzas (UTF-8 length).
    pub bytes: u64,
}

/// The outbound queues, one per remote domain.
///
/// A link task reads [`Self::oldest`], writes them to its stream, then [`Self::remove`]s them, so a
/// crash in between sends a stanza twice at worst and loses none. When its peer cannot be reached
/// for too long it [`Self::take_enqueued_before`] a cutoff and bounces what it got.
#[async_trait]
pub trait S2sQueue: Send + Sync {
    /// Appends `stanza` (sent by `sender`) to `domain`'s queue, unless the queue would then hold more
    /// than `limits` allow; the check and the insert are atomic (enqueues of one domain take turns).
    async fn enqueue(
        &self,
        domain: &str,
        sender: &str,
        stanza: &str,
        enqueued_at_ms: i64,
        limits: S2sQueueLimits,
    ) -> StorageResult<S2sEnqueue>;
    /// Appends `stanza` (sent by `sender`) to `domain`'s queue without reading the queue: one
    /// insert whatever its length, for a caller that keeps the per-domain cap itself (the server's
    /// queue counts what it stored in memory). Ids keep the order of appends that take turns; on
    /// PostgreSQL it locks the domain as [`Self::enqueue`] does. Returns the new id.
    async fn append(
        &self,
        domain: &str,
        sender: &str,
        stanza: &str,
        enqueued_at_ms: i64,
    ) -> StorageResult<i64>;
    /// Up to `limit` of `domain`'s stanzas with an id above `after_id` (all when `None`), oldest
    /// first: one range scan of the `(domain, id)` index. Does not remove them.
    async fn oldest(
        &self,
        domain: &str,
        after_id: Option<i64>,
        limit: usize,
    ) -> StorageResult<Vec<S2sQueued>>;
    /// Removes the stanzas of `domain` with these ids (ids of other domains, or already gone, are
    /// ignored), in one transaction; returns how many were removed.
    async fn remove(&self, domain: &str, ids: &[i64]) -> StorageResult<u64>;
    /// Removes and returns, oldest first, `domain`'s stanzas enqueued before `cutoff_ms` (all of
    /// them with `i64::MAX`): the ones to bounce.
    async fn take_enqueued_before(
        &self,
        domain: &str,
        cutoff_ms: i64,
    ) -> StorageResult<Vec<S2sQueued>>;
    /// Every domain with at least one stanza waiting, sorted: what to reconnect to at start.
    async fn domains(&self) -> StorageResult<Vec<String>>;
    /// How many stanzas and bytes wait for `domain`.
    async fn usage(&self, domain: &str) -> StorageResult<S2sQueueUsage>;
}
