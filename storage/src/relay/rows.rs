//! Row types of the relay tables and their conversions to the domain types of [`crate::relay`];
//! decoded by name, so one definition serves SQLite and PostgreSQL.

use crate::StorageError;
use crate::relay::{
    AuditEntry, DeliveryStatus, DeliveryTarget, Device, DeviceKind, OutboxEntry, PushMessage,
    RelayAccount, WhitelistToken,
};

#[derive(sqlx::FromRow)]
pub(crate) struct AccountRow {
    id: String,
    username: String,
    email: Option<String>,
    password_hash: Option<String>,
    is_local: bool,
    created_at_ms: i64,
}

impl From<AccountRow> for RelayAccount {
    fn from(r: AccountRow) -> Self {
        RelayAccount {
            id: r.id,
            username: r.username,
            email: r.email,
            password_hash: r.password_hash,
            is_local: r.is_local,
            created_at_ms: r.created_at_ms,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeviceRow {
    id: String,
    account_id: String,
    kind: String,
    name: String,
    device_id: String,
    active: bool,
    token: String,
    apns_topic: Option<String>,
    apns_sandbox: bool,
    webpush_p256dh: Option<String>,
    webpush_auth: Option<String>,
    created_at_ms: i64,
}

impl TryFrom<DeviceRow> for Device {
    type Error = StorageError;
    fn try_from(r: DeviceRow) -> Result<Self, StorageError> {
        let kind = DeviceKind::parse(&r.kind)
            .ok_or_else(|| StorageError::Database(format!("unknown device kind {}", r.kind)))?;
        Ok(Device {
            id: r.id,
            account_id: r.account_id,
            kind,
            name: r.name,
            device_id: r.device_id,
            active: r.active,
            token: r.token,
            apns_topic: r.apns_topic,
            apns_sandbox: r.apns_sandbox,
            webpush_p256dh: r.webpush_p256dh,
            webpush_auth: r.webpush_auth,
            created_at_ms: r.created_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: String,
    token_hash: String,
    account_id: String,
    name: Option<String>,
    device_ids: String,
    sender: Option<String>,
    rate_per_minute: Option<i64>,
    created_at_ms: i64,
    expires_at_ms: Option<i64>,
    revoked_at_ms: Option<i64>,
}

impl From<TokenRow> for WhitelistToken {
    fn from(r: TokenRow) -> Self {
        WhitelistToken {
            id: r.id,
            token_hash: r.token_hash,
            account_id: r.account_id,
            name: r.name,
            device_ids: r
                .device_ids
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            sender: r.sender,
            rate_per_minute: r
                .rate_per_minute
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            created_at_ms: r.created_at_ms,
            expires_at_ms: r.expires_at_ms,
            revoked_at_ms: r.revoked_at_ms,
        }
    }
}

/// Device ids as stored: space-separated (ids are UUIDs, never contain spaces).
pub(crate) fn join_ids(ids: &[String]) -> String {
    ids.join(" ")
}

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: String,
    account_id: Option<String>,
    token_id: Option<String>,
    sender: Option<String>,
    priority: String,
    created_at_ms: i64,
}

impl From<MessageRow> for PushMessage {
    fn from(r: MessageRow) -> Self {
        PushMessage {
            id: r.id,
            account_id: r.account_id,
            token_id: r.token_id,
            sender: r.sender,
            priority: r.priority,
            created_at_ms: r.created_at_ms,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OutboxRow {
    id: i64,
    device_id: Option<String>,
    remote_endpoint: Option<String>,
    remote_token: Option<String>,
    collapse_key: String,
    priority: String,
    data: Option<String>,
    status: String,
    attempts: i64,
    next_attempt_at_ms: i64,
    reason: Option<String>,
    created_at_ms: i64,
}

impl TryFrom<OutboxRow> for OutboxEntry {
    type Error = StorageError;
    fn try_from(r: OutboxRow) -> Result<Self, StorageError> {
        let target = match (r.device_id, r.remote_endpoint, r.remote_token) {
            (Some(d), _, _) => DeliveryTarget::Device(d),
            (None, Some(endpoint), Some(token)) => DeliveryTarget::Remote { endpoint, token },
            _ => {
                return Err(StorageError::Database(format!(
                    "outbox row {} has no target",
                    r.id
                )));
            }
        };
        let status = DeliveryStatus::parse(&r.status)
            .ok_or_else(|| StorageError::Database(format!("unknown status {}", r.status)))?;
        Ok(OutboxEntry {
            id: r.id,
            target,
            collapse_key: r.collapse_key,
            priority: r.priority,
            data: r.data,
            status,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            next_attempt_at_ms: r.next_attempt_at_ms,
            reason: r.reason,
            created_at_ms: r.created_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    account_id: String,
    at_ms: i64,
    token_id: Option<String>,
    sender: Option<String>,
    message_id: Option<String>,
    outcome: String,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            id: r.id,
            account_id: r.account_id,
            at_ms: r.at_ms,
            token_id: r.token_id,
            sender: r.sender,
            message_id: r.message_id,
            outcome: r.outcome,
        }
    }
}

/// Converts a `usize` limit to the `i64` SQL wants.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One row of the one-statement claim (`$claim` of `relay_sql_impl`): a claimed entry, its device
/// (columns `d_*`, null for a remote entry or a removed device) and, on every row, when the earliest
/// entry left pending is due.
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
    #[sqlx(flatten)]
    entry: OutboxRow,
    d_id: Option<String>,
    d_account_id: Option<String>,
    d_kind: Option<String>,
    d_name: Option<String>,
    d_device_id: Option<String>,
    d_active: Option<bool>,
    d_token: Option<String>,
    d_apns_topic: Option<String>,
    d_apns_sandbox: Option<bool>,
    d_webpush_p256dh: Option<String>,
    d_webpush_auth: Option<String>,
    d_created_at_ms: Option<i64>,
    next_due_at_ms: Option<i64>,
}

/// What the rows of the one-statement claim say.
pub(crate) struct ClaimedRows {
    /// The claimed entries, earliest due first.
    pub(crate) entries: Vec<OutboxEntry>,
    /// Their devices that exist, each once.
    pub(crate) devices: Vec<Device>,
    /// The next due time of what was left pending; `None` when no row came back (the caller asks
    /// separately then).
    pub(crate) next_due: Option<Option<i64>>,
}

/// Decodes the rows of the one-statement claim.
pub(crate) fn claim_from_rows(rows: Vec<ClaimRow>) -> Result<ClaimedRows, StorageError> {
    let next_due = rows.first().map(|r| r.next_due_at_ms);
    let mut entries = Vec::with_capacity(rows.len());
    let mut devices: Vec<Device> = Vec::new();
    for r in rows {
        if let Some(id) = r.d_id
            && !devices.iter().any(|d| d.id == id)
        {
            devices.push(Device::try_from(DeviceRow {
                id,
                account_id: r.d_account_id.unwrap_or_default(),
                kind: r.d_kind.unwrap_or_default(),
                name: r.d_name.unwrap_or_default(),
                device_id: r.d_device_id.unwrap_or_default(),
                active: r.d_active.unwrap_or_default(),
                token: r.d_token.unwrap_or_default(),
                apns_topic: r.d_apns_topic,
                apns_sandbox: r.d_apns_sandbox.unwrap_or_default(),
                webpush_p256dh: r.d_webpush_p256dh,
                webpush_auth: r.d_webpush_auth,
                created_at_ms: r.d_created_at_ms.unwrap_or_default(),
            })?);
        }
        entries.push(OutboxEntry::try_from(r.entry)?);
    }
    entries.sort_by_key(|e| (e.next_attempt_at_ms, e.id));
    Ok(ClaimedRows {
        entries,
        devices,
        next_due,
    })
}
