//! Push relay persistence: relay accounts and API keys, devices, whitelist tokens, the durable push
//! outbox (messages and their deliveries) and the audit trail. See relay/README.md for the domain;
//! this module knows no HTTP, no vendor and no XMPP.
//!
//! Secrets are stored only as hashes (API keys, whitelist tokens) or as argon2 PHC strings (relay-only
//! passwords); the callers hash, this module only compares hashes. Times are milliseconds since the
//! Unix epoch.

use async_trait::async_trait;

use crate::StorageResult;

pub(crate) mod rows;
pub(crate) mod sql;

/// An account of the push relay. Local XMPP accounts get one automatically (id = bare JID, no
/// password here); people without a local account register relay-only accounts (id = UUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAccount {
    pub id: String,
    /// Unique login name: the bare JID for local accounts, a name without `@` for relay-only ones.
    pub username: String,
    pub email: Option<String>,
    /// argon2 PHC string for relay-only accounts; `None` for local accounts (the server verifies).
    pub password_hash: Option<String>,
    pub is_local: bool,
    pub created_at_ms: i64,
}

/// Relay accounts and their API keys (`Authorization: Token <key>`; only the key's hash is stored).
#[async_trait]
pub trait RelayAccounts: Send + Sync {
    /// Creates an account. Errors: [`crate::StorageError::AlreadyExists`] if the id, username or email is
    /// taken.
    async fn create(&self, account: &RelayAccount) -> StorageResult<()>;
    async fn by_id(&self, id: &str) -> StorageResult<Option<RelayAccount>>;
    async fn by_username(&self, username: &str) -> StorageResult<Option<RelayAccount>>;
    async fn by_email(&self, email: &str) -> StorageResult<Option<RelayAccount>>;
    /// Deletes the account with its keys, devices, tokens, messages, the outbox entries of its devices
    /// and its audit entries, in one transaction; `false` if absent.
    async fn delete(&self, id: &str) -> StorageResult<bool>;
    /// Adds an API key hash to the account, then keeps only the `keep` newest keys.
    async fn add_api_key(
        &self,
        account_id: &str,
        key_hash: &str,
        now_ms: i64,
        keep: usize,
    ) -> StorageResult<()>;
    /// Replaces every API key of the account by this one (key rotation).
    async fn replace_api_keys(
        &self,
        account_id: &str,
        key_hash: &str,
        now_ms: i64,
    ) -> StorageResult<()>;
    /// The account owning the API key with this hash.
    async fn by_api_key(&self, key_hash: &str) -> StorageResult<Option<RelayAccount>>;
}

/// Which push network a device is reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    Apns,
    Fcm,
    WebPush,
    UnifiedPush,
}

impl DeviceKind {
    /// The stored name (`apns`, `fcm`, `webpush`, `unifiedpush`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Apns => "apns",
            DeviceKind::Fcm => "fcm",
            DeviceKind::WebPush => "webpush",
            DeviceKind::UnifiedPush => "unifiedpush",
        }
    }

    /// Parses a stored name; `None` for anything else.
    pub fn parse(s: &str) -> Option<DeviceKind> {
        Some(match s {
            "apns" => DeviceKind::Apns,
            "fcm" => DeviceKind::Fcm,
            "webpush" => DeviceKind::WebPush,
            "unifiedpush" => DeviceKind::UnifiedPush,
            _ => return None,
        })
    }
}

/// One device of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Server-chosen UUID.
    pub id: String,
    pub account_id: String,
    pub kind: DeviceKind,
    pub name: String,
    /// ChatSecure's opaque `device_id` field (unused by the relay).
    pub device_id: String,
    pub active: bool,
    /// APNs device token (hex), FCM registration token, or the Web Push / UnifiedPush endpoint URL.
    pub token: String,
    /// APNs topic (bundle id); `None` means the relay's configured default.
    pub apns_topic: Option<String>,
    pub apns_sandbox: bool,
    /// Web Push subscription keys (RFC 8291 section 3.2), base64url.
    pub webpush_p256dh: Option<String>,
    pub webpush_auth: Option<String>,
    pub created_at_ms: i64,
}

/// Devices, many per account.
#[async_trait]
pub trait RelayDevices: Send + Sync {
    /// Errors: [`crate::StorageError::AlreadyExists`] if the id is taken.
    async fn create(&self, device: &Device) -> StorageResult<()>;
    async fn get(&self, id: &str) -> StorageResult<Option<Device>>;
    /// The devices among `ids` that exist, in no particular order (one query for a batch of outbox
    /// entries).
    async fn get_many(&self, ids: &[String]) -> StorageResult<Vec<Device>>;
    /// Devices of the account, oldest first; only those of `kind` when given.
    async fn list(&self, account_id: &str, kind: Option<DeviceKind>) -> StorageResult<Vec<Device>>;
    /// Devices of every account in `account_ids`, each account's oldest first (one query for a batch
    /// of wake-ups).
    async fn list_for_accounts(&self, account_ids: &[String]) -> StorageResult<Vec<Device>>;
    /// How many devices accounts whose id starts with `prefix` hold together (the push service's
    /// cap on every remote domain's nodes).
    async fn count_with_account_prefix(&self, prefix: &str) -> StorageResult<u64>;
    /// Replaces every field but `id`, `account_id` and `created_at_ms`; `false` if absent.
    async fn update(&self, device: &Device) -> StorageResult<bool>;
    async fn delete(&self, id: &str) -> StorageResult<bool>;
}

/// A whitelist token: whoever holds the secret may push to the owner's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhitelistToken {
    /// Server-chosen UUID, used to name the token without revealing it.
    pub id: String,
    /// Hex SHA-256 of the secret; the secret itself is shown once and never stored.
    pub token_hash: String,
    pub account_id: String,
    pub name: Option<String>,
    /// The devices it reaches; empty = every device of the account.
    pub device_ids: Vec<String>,
    /// Only this sender (JID or domain) may use it, when set.
    pub sender: Option<String>,
    /// Its own rate limit in messages per minute, when set.
    pub rate_per_minute: Option<u32>,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// Whitelist tokens.
#[async_trait]
pub trait WhitelistTokens: Send + Sync {
    /// Errors: [`crate::StorageError::AlreadyExists`] if the id or hash is taken.
    async fn create(&self, token: &WhitelistToken) -> StorageResult<()>;
    async fn by_hash(&self, token_hash: &str) -> StorageResult<Option<WhitelistToken>>;
    async fn get(&self, id: &str) -> StorageResult<Option<WhitelistToken>>;
    /// Every token of the account (revoked and expired included), oldest first.
    async fn list(&self, account_id: &str) -> StorageResult<Vec<WhitelistToken>>;
    /// Replaces `name`, `device_ids`, `sender`, `rate_per_minute` and `expires_at_ms`; `false` if absent.
    async fn update(&self, token: &WhitelistToken) -> StorageResult<bool>;
    /// Sets `revoked_at_ms` unless already revoked; `false` if absent or already revoked.
    async fn revoke(&self, id: &str, now_ms: i64) -> StorageResult<bool>;
    /// Deletes the account's dead tokens (revoked, or expired at `now_ms`) but the `keep` newest of
    /// them, so creating and revoking tokens in a loop cannot grow the table without end; returns
    /// how many were deleted.
    async fn delete_dead(&self, account_id: &str, now_ms: i64, keep: usize) -> StorageResult<u64>;
}

/// Where one delivery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryTarget {
    /// A device of this relay.
    Device(String),
    /// A whitelist token issued by another relay, posted to its messages endpoint.
    Remote { endpoint: String, token: String },
}

/// The state of one delivery (and, aggregated, of a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Claimed by a worker; back to pending at the next start if the process died.
    Sending,
    Sent,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Some(match s {
            "pending" => DeliveryStatus::Pending,
            "sending" => DeliveryStatus::Sending,
            "sent" => DeliveryStatus::Sent,
            "failed" => DeliveryStatus::Failed,
            _ => return None,
        })
    }
}

/// A message accepted by the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    /// UUID, the ticket returned to the poster.
    pub id: String,
    /// The owner of the token used; `None` for forwards to a remote relay.
    pub account_id: Option<String>,
    pub token_id: Option<String>,
    pub sender: Option<String>,
    /// `high` or `low`.
    pub priority: String,
    pub created_at_ms: i64,
}

/// One delivery waiting in (or done by) the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    pub target: DeliveryTarget,
    /// Entries with the same key collapse (one per device or remote token).
    pub collapse_key: String,
    pub priority: String,
    /// Opaque data forwarded with the push (ChatSecure `data`); `None` by default.
    pub data: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    /// Why it failed, or the last transient error.
    pub reason: Option<String>,
    pub created_at_ms: i64,
}

/// A delivery to add with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub target: DeliveryTarget,
    pub collapse_key: String,
    pub priority: String,
    pub data: Option<String>,
}

/// One message for [`PushOutbox::enqueue_batch`]: the message, its deliveries and, when given, the
/// audit line recording it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueRequest {
    pub message: PushMessage,
    pub deliveries: Vec<NewDelivery>,
    pub audit: Option<AuditEntry>,
}

/// What [`PushOutbox::enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Enqueued {
    /// Outbox ids serving the message, one per delivery, in order.
    pub outbox_ids: Vec<i64>,
    /// How many deliveries joined an already pending entry instead of adding one.
    pub collapsed: usize,
}

/// One round of an outbox worker ([`PushOutbox::claim_due_with_devices`]).
#[derive(Debug)]
pub struct Claim {
    /// The claimed entries (now `sending`), earliest due first.
    pub entries: Vec<OutboxEntry>,
    /// The devices the entries target that still exist, in no particular order; an error if they
    /// could not be read (the entries stay claimed: retry them later).
    pub devices: StorageResult<Vec<Device>>,
    /// When fewer entries than asked for were claimed: when the earliest entry left pending is due
    /// (`None`: none is). `Ok(None)` after a full claim.
    pub next_due_at_ms: StorageResult<Option<i64>>,
}

/// The durable outbox: a message and its deliveries are persisted before the relay answers 202.
#[async_trait]
pub trait PushOutbox: Send + Sync {
    /// Stores the message and its deliveries in one transaction. A delivery whose collapse key has a
    /// pending entry joins it (priority raised to `high` if needed). Otherwise a new entry is due at
    /// `now_ms`, or `collapse_window_ms` after the newest entry with that key created within the window,
    /// so one device gets at most one push per window.
    async fn enqueue(
        &self,
        message: &PushMessage,
        deliveries: &[NewDelivery],
        collapse_window_ms: i64,
        now_ms: i64,
    ) -> StorageResult<Enqueued> {
        let request = EnqueueRequest {
            message: message.clone(),
            deliveries: deliveries.to_vec(),
            audit: None,
        };
        let mut done = self
            .enqueue_batch(std::slice::from_ref(&request), collapse_window_ms, now_ms)
            .await?;
        done.pop()
            .ok_or_else(|| crate::StorageError::Database("enqueue_batch returned nothing".into()))
    }
    /// [`PushOutbox::enqueue`] for many messages in one transaction, each with its audit line when
    /// given; a few statements for the whole batch, whatever its size, so a burst of wake-ups costs
    /// the database little more than one. Deliveries are considered in order, so a later one in the
    /// batch collapses into an earlier one with the same key. Returns one [`Enqueued`] per request.
    async fn enqueue_batch(
        &self,
        requests: &[EnqueueRequest],
        collapse_window_ms: i64,
        now_ms: i64,
    ) -> StorageResult<Vec<Enqueued>>;
    /// Claims those of `ids` that are still pending and due at `now_ms` (status becomes sending),
    /// earliest first: the entries a caller just enqueued and will send itself at once (the server's
    /// wake-ups), without waiting for a worker's next claim. An entry a worker claimed first is not
    /// returned, so each is sent once.
    async fn claim_ids(&self, ids: &[i64], now_ms: i64) -> StorageResult<Vec<OutboxEntry>>;
    /// Claims up to `limit` pending entries due at `now_ms` (status becomes sending), earliest first.
    async fn claim_due(&self, now_ms: i64, limit: usize) -> StorageResult<Vec<OutboxEntry>>;
    /// When the earliest pending entry is due, if any.
    async fn next_due_at(&self) -> StorageResult<Option<i64>>;
    /// What an outbox worker needs for one round: [`PushOutbox::claim_due`], the devices of the
    /// claimed entries, and, when fewer than `limit` were claimed, [`PushOutbox::next_due_at`]
    /// after the claim. Errors: the claim failed (nothing was claimed). A failed device or due-time
    /// look-up after a claim that stands is reported in [`Claim`] instead, so the claimed entries
    /// are not left in `sending`.
    async fn claim_due_with_devices(&self, now_ms: i64, limit: usize) -> StorageResult<Claim>;
    /// Marks an entry sent.
    async fn mark_sent(&self, id: i64, now_ms: i64) -> StorageResult<()> {
        self.mark_sent_many(&[id], now_ms).await
    }
    /// Marks entries sent, in one statement.
    async fn mark_sent_many(&self, ids: &[i64], now_ms: i64) -> StorageResult<()>;
    /// Marks an entry failed for good with its reason.
    async fn mark_failed(&self, id: i64, reason: &str, now_ms: i64) -> StorageResult<()>;
    /// Puts an entry back to pending for another attempt at `next_attempt_at_ms` (attempts + 1).
    async fn retry_at(
        &self,
        id: i64,
        next_attempt_at_ms: i64,
        reason: &str,
        now_ms: i64,
    ) -> StorageResult<()>;
    /// Fails every pending entry for a device (used when the device is gone); returns how many.
    async fn fail_device(&self, device_id: &str, reason: &str, now_ms: i64) -> StorageResult<u64>;
    /// Back to pending every entry left in sending by a process that stopped; returns how many.
    async fn recover(&self) -> StorageResult<u64>;
    async fn message(&self, id: &str) -> StorageResult<Option<PushMessage>>;
    /// The entries serving a message.
    async fn deliveries(&self, message_id: &str) -> StorageResult<Vec<OutboxEntry>>;
    /// Deletes finished entries and messages older than `before_ms`; returns how many entries.
    async fn purge_finished(&self, before_ms: i64) -> StorageResult<u64>;
}

/// One line of the audit trail: who pushed to whom, when, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Assigned by the store; ignored by [`PushAudit::record`].
    pub id: i64,
    pub account_id: String,
    pub at_ms: i64,
    pub token_id: Option<String>,
    /// The sender as the relay saw it (bound JID/domain, or the peer address).
    pub sender: Option<String>,
    pub message_id: Option<String>,
    /// `accepted`, `rate-limited`, `expired`, `revoked`, `sender-mismatch`, ...
    pub outcome: String,
}

/// The audit trail, readable by the account owner.
#[async_trait]
pub trait PushAudit: Send + Sync {
    async fn record(&self, entry: &AuditEntry) -> StorageResult<()>;
    /// Newest first, at most `limit`, only entries with `id < before_id` when given.
    async fn list(
        &self,
        account_id: &str,
        before_id: Option<i64>,
        limit: usize,
    ) -> StorageResult<Vec<AuditEntry>>;
    /// Deletes entries older than `before_ms`.
    async fn purge(&self, before_ms: i64) -> StorageResult<u64>;
}
