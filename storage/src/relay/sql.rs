//! The relay's SQL, written once for SQLite and PostgreSQL: the queries use only syntax both accept
//! (`$N` placeholders in order of first use, `RETURNING`, `ON CONFLICT`), and [`relay_sql_impl`]
//! stamps the trait implementations out for each pool type. The contract suite checks both.

use crate::StorageError;
use crate::relay::{Claim, DeliveryTarget, EnqueueRequest, Enqueued, PushOutbox, RelayDevices};

/// Maps a sqlx error: unique violations become [`StorageError::AlreadyExists`].
pub(crate) fn db_err(e: sqlx::Error) -> StorageError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return StorageError::AlreadyExists;
    }
    StorageError::Database(e.to_string())
}

/// Rows (or list items) per statement in the batch operations: far below SQLite's 32,766 and
/// PostgreSQL's 65,535 bound parameters even at a dozen columns a row.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// Deletes a relay account and everything it owns, each statement binding the account id as `$1`;
/// run in this order in one transaction. Deliveries are keyed by device, not by account, so the
/// outbox rows of the account's devices go first, explicitly (a pending push must not outlive the
/// device it wakes); the rest is listed too rather than left to `ON DELETE CASCADE`, so the
/// deletion does not depend on SQLite's `foreign_keys` pragma. The last statement deletes the
/// account row: its row count says whether the account existed.
pub(crate) const RELAY_ACCOUNT_DELETES: [&str; 7] = [
    "DELETE FROM relay_outbox WHERE device_id IN (SELECT id FROM relay_devices WHERE account_id = $1)",
    "DELETE FROM relay_audit WHERE account_id = $1",
    // Their delivery links follow by ON DELETE CASCADE from both sides.
    "DELETE FROM relay_messages WHERE account_id = $1",
    "DELETE FROM relay_tokens WHERE account_id = $1",
    "DELETE FROM relay_devices WHERE account_id = $1",
    "DELETE FROM relay_api_keys WHERE account_id = $1",
    "DELETE FROM relay_accounts WHERE id = $1",
];

/// A batch for the `$enqueue` statement of [`relay_sql_impl`] (PostgreSQL's `herald_relay_enqueue`,
/// migration 0010): a JSON array of `{message, deliveries, audit}` objects.
pub(crate) fn enqueue_json(requests: &[EnqueueRequest]) -> String {
    let rows: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| {
            let m = &r.message;
            let deliveries: Vec<serde_json::Value> = r
                .deliveries
                .iter()
                .map(|d| {
                    let (device, endpoint, token) = match &d.target {
                        DeliveryTarget::Device(id) => (Some(id.as_str()), None, None),
                        DeliveryTarget::Remote { endpoint, token } => {
                            (None, Some(endpoint.as_str()), Some(token.as_str()))
                        }
                    };
                    serde_json::json!({
                        "device_id": device,
                        "remote_endpoint": endpoint,
                        "remote_token": token,
                        "collapse_key": d.collapse_key,
                        "priority": d.priority,
                        "data": d.data,
                    })
                })
                .collect();
            let audit = r.audit.as_ref().map(|e| {
                serde_json::json!({
                    "account_id": e.account_id,
                    "at_ms": e.at_ms,
                    "token_id": e.token_id,
                    "sender": e.sender,
                    "message_id": e.message_id,
                    "outcome": e.outcome,
                })
            });
            serde_json::json!({
                "message": {
                    "id": m.id,
                    "account_id": m.account_id,
                    "token_id": m.token_id,
                    "sender": m.sender,
                    "priority": m.priority,
                    "created_at_ms": m.created_at_ms,
                },
                "deliveries": deliveries,
                "audit": audit,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// What each of `requests` got, from the `$enqueue` statement's rows: (request index, outbox id,
/// joined a pending entry), one per delivery in order. Errors: a row names no request, or a
/// request's rows do not match its deliveries.
pub(crate) fn enqueued_from_rows(
    requests: &[EnqueueRequest],
    rows: Vec<(i64, i64, bool)>,
) -> Result<Vec<Enqueued>, StorageError> {
    let mut out = vec![Enqueued::default(); requests.len()];
    for (request, outbox_id, collapsed) in rows {
        let done = usize::try_from(request)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| StorageError::Database(format!("enqueue returned request {request}")))?;
        done.outbox_ids.push(outbox_id);
        done.collapsed += usize::from(collapsed);
    }
    for (done, request) in out.iter().zip(requests) {
        if done.outbox_ids.len() != request.deliveries.len() {
            return Err(StorageError::Database(
                "enqueue returned a different number of deliveries".into(),
            ));
        }
    }
    Ok(out)
}

/// [`PushOutbox::claim_due_with_devices`] as three statements: the claim, the devices, and the next
/// due time when the claim was not full.
///
/// [`PushOutbox::claim_due_with_devices`]: crate::relay::PushOutbox::claim_due_with_devices
pub(crate) async fn claim_in_steps<S: PushOutbox + RelayDevices>(
    store: &S,
    now_ms: i64,
    limit: usize,
) -> Result<Claim, StorageError> {
    let entries = store.claim_due(now_ms, limit).await?;
    let ids: Vec<String> = entries
        .iter()
        .filter_map(|e| match &e.target {
            DeliveryTarget::Device(id) => Some(id.clone()),
            DeliveryTarget::Remote { .. } => None,
        })
        .collect();
    let devices = if ids.is_empty() {
        Ok(Vec::new())
    } else {
        store.get_many(&ids).await
    };
    let next_due_at_ms = if entries.len() < limit {
        store.next_due_at().await
    } else {
        Ok(None)
    };
    Ok(Claim {
        entries,
        devices,
        next_due_at_ms,
    })
}

/// Implements the relay traits for `$store` (a struct with `pool` (reads) and `writer` (writes) fields).
/// `$begin` starts the enqueue transaction (SQLite takes the write lock up front with
/// `BEGIN IMMEDIATE`, so two writers never deadlock on lock upgrade); `$skip_locked` is appended to
/// the claim sub-select (PostgreSQL `FOR UPDATE SKIP LOCKED` lets several workers claim at once);
/// `$enqueue` is one statement that stores a whole [`PushOutbox::enqueue_batch`] (`$1` the JSON of
/// [`enqueue_json`], `$2` the collapse window, `$3` now; rows as [`enqueued_from_rows`] reads them),
/// or `""` to run the statements below in one transaction; `$claim` is one statement for
/// [`PushOutbox::claim_due_with_devices`] (`$1` now, `$2` the limit; rows as `ClaimRow`), or `""` for
/// [`claim_in_steps`]. `$devices_of_accounts` (`$1` a JSON array of account ids) and `$mark_sent`
/// (`$1` now, `$2` a JSON array of outbox ids) are [`RelayDevices::list_for_accounts`] and
/// [`PushOutbox::mark_sent_many`] as one statement whose text does not change with the number of
/// ids, so it is prepared once per connection rather than once per count, and so is `$claim_ids`
/// (`$1` now, `$2` a JSON array of outbox ids) for [`PushOutbox::claim_ids`]; `""` builds an `IN (...)`
/// list.
///
/// [`PushOutbox::enqueue_batch`]: crate::relay::PushOutbox::enqueue_batch
/// [`PushOutbox::claim_due_with_devices`]: crate::relay::PushOutbox::claim_due_with_devices
macro_rules! relay_sql_impl {
    (
        $store:ident,
        $db:ty,
        $begin:literal,
        $skip_locked:literal,
        $enqueue:expr,
        $claim:expr,
        $devices_of_accounts:expr,
        $mark_sent:expr,
        $claim_ids:expr $(,)?
    ) => {
        mod relay_sql_generated {
            use super::$store;
            use async_trait::async_trait;
            use $crate::StorageResult;
            use $crate::relay::rows::{
                AccountRow, AuditRow, ClaimRow, DeviceRow, MessageRow, OutboxRow, TokenRow,
                claim_from_rows, join_ids, limit,
            };
            use $crate::relay::sql::{
                RELAY_ACCOUNT_DELETES, ROWS_PER_STATEMENT, claim_in_steps, db_err, enqueue_json,
                enqueued_from_rows,
            };
            use $crate::relay::*;
            use sqlx::QueryBuilder;
            use std::collections::HashMap;


            #[async_trait]
            impl RelayAccounts for $store {
                async fn create(&self, a: &RelayAccount) -> StorageResult<()> {
                    sqlx::query::<$db>("INSERT INTO relay_accounts (id, username, email, password_hash, is_local, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(&a.id).bind(&a.username).bind(&a.email).bind(&a.password_hash)
                        .bind(a.is_local).bind(a.created_at_ms)
                        .execute(&self.writer).await.map_err(db_err)?;
                    Ok(())
                }
                async fn by_id(&self, id: &str) -> StorageResult<Option<RelayAccount>> {
                    let r = sqlx::query_as::<$db, AccountRow>("SELECT id, username, email, password_hash, is_local, created_at_ms FROM relay_accounts WHERE id = $1")
                        .bind(id).fetch_optional(&self.pool).await.map_err(db_err)?;
                    Ok(r.map(Into::into))
                }
                async fn by_username(&self, username: &str) -> StorageResult<Option<RelayAccount>> {
                    let r = sqlx::query_as::<$db, AccountRow>("SELECT id, username, email, password_hash, is_local, created_at_ms FROM relay_accounts WHERE username = $1")
                        .bind(username).fetch_optional(&self.pool).await.map_err(db_err)?;
                    Ok(r.map(Into::into))
                }
                async fn by_email(&self, email: &str) -> StorageResult<Option<RelayAccount>> {
                    let r = sqlx::query_as::<$db, AccountRow>("SELECT id, username, email, password_hash, is_local, created_at_ms FROM relay_accounts WHERE email = $1")
                        .bind(email).fetch_optional(&self.pool).await.map_err(db_err)?;
                    Ok(r.map(Into::into))
                }
                async fn delete(&self, id: &str) -> StorageResult<bool> {
                    let mut tx = self.writer.begin_with($begin).await.map_err(db_err)?;
                    let mut existed = false;
                    for statement in RELAY_ACCOUNT_DELETES {
                        let r = sqlx::query::<$db>(statement).bind(id).execute(&mut *tx).await.map_err(db_err)?;
                        existed = r.rows_affected() > 0;
                    }
                    tx.commit().await.map_err(db_err)?;
                    Ok(existed)
                }
                async fn add_api_key(&self, account_id: &str, key_hash: &str, now_ms: i64, keep: usize) -> StorageResult<()> {
                    sqlx::query::<$db>("INSERT INTO relay_api_keys (key_hash, account_id, created_at_ms) VALUES ($1, $2, $3)")
                        .bind(key_hash).bind(account_id).bind(now_ms)
                        .execute(&self.writer).await.map_err(db_err)?;
                    sqlx::query::<$db>("DELETE FROM relay_api_keys WHERE account_id = $1 AND key_hash NOT IN (SELECT key_hash FROM relay_api_keys WHERE account_id = $1 ORDER BY created_at_ms DESC, key_hash LIMIT $2)")
                        .bind(account_id).bind(limit(keep))
                        .execute(&self.writer).await.map_err(db_err)?;
                    Ok(())
                }
                async fn replace_api_keys(&self, account_id: &str, key_hash: &str, now_ms: i64) -> StorageResult<()> {
                    let mut tx = self.writer.begin().await.map_err(db_err)?;
                    sqlx::query::<$db>("DELETE FROM relay_api_keys WHERE account_id = $1")
                        .bind(account_id).execute(&mut *tx).await.map_err(db_err)?;
                    sqlx::query::<$db>("INSERT INTO relay_api_keys (key_hash, account_id, created_at_ms) VALUES ($1, $2, $3)")
                        .bind(key_hash).bind(account_id).bind(now_ms)
                        .execute(&mut *tx).await.map_err(db_err)?;
                    tx.commit().await.map_err(db_err)
                }
                async fn by_api_key(&self, key_hash: &str) -> StorageResult<Option<RelayAccount>> {
                    let r = sqlx::query_as::<$db, AccountRow>("SELECT a.id, a.username, a.email, a.password_hash, a.is_local, a.created_at_ms FROM relay_accounts a JOIN relay_api_keys k ON k.account_id = a.id WHERE k.key_hash = $1")
                        .bind(key_hash).fetch_optional(&self.pool).await.map_err(db_err)?;
                    Ok(r.map(Into::into))
                }
            }

            #[async_trait]
            impl RelayDevices for $store {
                async fn create(&self, d: &Device) -> StorageResult<()> {
                    sqlx::query::<$db>("INSERT INTO relay_devices (id, account_id, kind, name, device_id, active, token, apns_topic, apns_sandbox, webpush_p256dh, webpush_auth, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
                        .bind(&d.id).bind(&d.account_id).bind(d.kind.as_str()).bind(&d.name)
                        .bind(&d.device_id).bind(d.active).bind(&d.token).bind(&d.apns_topic)
                        .bind(d.apns_sandbox).bind(&d.webpush_p256dh).bind(&d.webpush_auth)
                        .bind(d.created_at_ms)
                        .execute(&self.writer).await.map_err(db_err)?;
                    Ok(())
                }
                async fn get(&self, id: &str) -> StorageResult<Option<Device>> {
                    let r = sqlx::query_as::<$db, DeviceRow>("SELECT * FROM relay_devices WHERE id = $1")
                        .bind(id).fetch_optional(&self.pool).await.map_err(db_err)?;
                    r.map(Device::try_from).transpose()
                }
                async fn get_many(&self, ids: &[String]) -> StorageResult<Vec<Device>> {
                    let mut devices = Vec::with_capacity(ids.len());
                    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                        let mut q = QueryBuilder::<$db>::new("SELECT * FROM relay_devices WHERE id IN (");
                        let mut list = q.separated(", ");
                        for id in chunk { list.push_bind(id.clone()); }
                        q.push(")");
                        let rows = q.build_query_as::<DeviceRow>().fetch_all(&self.pool).await.map_err(db_err)?;
                        for row in rows { devices.push(Device::try_from(row)?); }
                    }
                    Ok(devices)
                }
                async fn list_for_accounts(&self, account_ids: &[String]) -> StorageResult<Vec<Device>> {
                    if !$devices_of_accounts.is_empty() {
                        let rows = sqlx::query_as::<$db, DeviceRow>($devices_of_accounts)
                            .bind(serde_json::Value::from(account_ids.to_vec()).to_string())
                            .fetch_all(&self.pool).await.map_err(db_err)?;
                        return rows.into_iter().map(Device::try_from).collect();
                    }
                    let mut devices = Vec::new();
                    for chunk in account_ids.chunks(ROWS_PER_STATEMENT) {
                        let mut q = QueryBuilder::<$db>::new("SELECT * FROM relay_devices WHERE account_id IN (");
                        let mut list = q.separated(", ");
                        for id in chunk { list.push_bind(id.clone()); }
                        q.push(") ORDER BY account_id, created_at_ms, id");
                        let rows = q.build_query_as::<DeviceRow>().fetch_all(&self.pool).await.map_err(db_err)?;
                        for row in rows { devices.push(Device::try_from(row)?); }
                    }
                    Ok(devices)
                }
                async fn count_with_account_prefix(&self, prefix: &str) -> StorageResult<u64> {
                    // substr rather than LIKE: the prefix is compared as is, `%` and `_` included.
                    let count: i64 = sqlx::query_scalar::<$db, i64>("SELECT COUNT(*) FROM relay_devices WHERE substr(account_id, 1, length($1)) = $1")
                        .bind(prefix).fetch_one(&self.pool).await.map_err(db_err)?;
                    Ok(u64::try_from(count).unwrap_or(0))
                }
                async fn list(&self, account_id: &str, kind: Option<DeviceKind>) -> StorageResult<Vec<Device>> {
                    let rows = sqlx::query_as::<$db, DeviceRow>("SELECT * FROM relay_devices WHERE account_id = $1 AND ($2 IS NULL OR kind = $2) ORDER BY created_at_ms, id")
                        .bind(account_id).bind(kind.map(DeviceKind::as_str))
                        .fetch_all(&self.pool).await.map_err(db_err)?;
                    rows.into_iter().map(Device::try_from).collect()
                }
                async fn update(&self, d: &Device) -> StorageResult<bool> {
                    let r = sqlx::query::<$db>("UPDATE relay_devices SET kind = $1, name = $2, device_id = $3, active = $4, token = $5, apns_topic = $6, apns_sandbox = $7, webpush_p256dh = $8, webpush_auth = $9 WHERE id = $10")
                        .bind(d.kind.as_str()).bind(&d.name).bind(&d.device_id).bind(d.active)
                        .bind(&d.token).bind(&d.apns_topic).bind(d.apns_sandbox)
                        .bind(&d.webpush_p256dh).bind(&d.webpush_auth).bind(&d.id)
                        .execute(&self.writer).await.map_err(db_err)?;
                    Ok(r.rows_affected() > 0)
                }
                async fn delete(&self, id: &str) -> StorageResult<bool> {
                    let r = sqlx::query::<$db>("DELETE FROM relay_devices WHERE id = $1")
                        .bind(id).execute(&self.writer).await.map_err(db_err)?;
                    Ok(r.rows_affected() > 0)
                }
            }

            #[async_trait]
            impl WhitelistTokens for $store {
                async fn create(&self, t: &WhitelistToken) -> StorageResult<()> {
                    sqlx::query::<$db>("INSERT INTO relay_tokens (id, token_hash, account_id, name, device_ids, sender, rate_per_minute, created_at_ms, expires_at_ms, revoked_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                        .bind(&t.id).bind(&t.token_hash).bind(&t.account_id).bind(&t.name)
                        .bind(join_ids(&t.device_ids)).bind(&t.sender)
                        .bind(t.rate_per_minute.map(i64::from)).bind(t.created_at_ms)
                        .bind(t.expires_at_ms).bind(t.revoked_at_ms)
                        .execute(&self.writer).await.map_err(db_err)?;
                    Ok(())
                }
                async fn by_hash(&self, token_hash: &str) -> StorageResult<Option<WhitelistToken>> {
                    let r = sqlx::query_as::<$db, TokenRow>("SELECT * FROM relay_tokens WHERE token_hash = $1")
                        .bind(token_hash).fetch_optional(&self.pool).await.map_err(db_err)?;
                    Ok(r.map(Into::into))
                }
                async fn get(&self, id: &str) -> StorageResult<Option<WhitelistToken>> {
                    let r = sqlx::query_as::<$db, TokenRow>("SELECT * FROM relay_tokens WHERE id = $1")
                        .bind(id).fetch_optional(&self.pool).await.map_err(db_err)?;
                    Ok(r.map(Into::into))
                }
                async fn list(&self, account_id: &str) -> StorageResult<Vec<WhitelistToken>> {
                    let rows = sqlx::query_as::<$db, TokenRow>("SELECT * FROM relay_tokens WHERE account_id = $1 ORDER BY created_at_ms, id")
                        .bind(account_id).fetch_all(&self.pool).await.map_err(db_err)?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }
                async fn update(&self, t: &WhitelistToken) -> StorageResult<bool> {
                    let r = sqlx::query::<$db>("UPDATE relay_tokens SET name = $1, device_ids = $2, sender = $3, rate_per_minute = $4, expires_at_ms = $5 WHERE id = $6")
                        .bind(&t.name).bind(join_ids(&t.device_ids)).bind(&t.sender)
                        .bind(t.rate_per_minute.map(i64::from)).bind(t.expires_at_ms).bind(&t.id)
                        .execute(&self.writer).await.map_err(db_err)?;
                    Ok(r.rows_affected() > 0)
                }
                async fn revoke(&self, id: &str, now_ms: i64) -> StorageResult<bool> {
                    let r = sqlx::query::<$db>("UPDATE relay_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL")
                        .bind(now_ms).bind(id).execute(&self.writer).await.map_err(db_err)?;
                    Ok(r.rows_affected() > 0)
                }
                async fn delete_dead(&self, account_id: &str, now_ms: i64, keep: usize) -> StorageResult<u64> {
                    let r = sqlx::query::<$db>("DELETE FROM relay_tokens WHERE account_id = $1 AND (revoked_at_ms IS NOT NULL OR expires_at_ms <= $2) AND id NOT IN (SELECT id FROM relay_tokens WHERE account_id = $1 AND (revoked_at_ms IS NOT NULL OR expires_at_ms <= $2) ORDER BY created_at_ms DESC, id DESC LIMIT $3)")
                        .bind(account_id).bind(now_ms).bind(limit(keep))
                        .execute(&self.writer).await.map_err(db_err)?;
                    Ok(r.rows_affected())
                }
            }

            #[async_trait]
            impl PushOutbox for $store {
                async fn enqueue_batch(&self, requests: &[EnqueueRequest], window_ms: i64, now_ms: i64) -> StorageResult<Vec<Enqueued>> {
                    if requests.is_empty() {
                        return Ok(Vec::new());
                    }
                    if !$enqueue.is_empty() {
                        let rows = sqlx::query_as::<$db, (i64, i64, bool)>($enqueue)
                            .bind(enqueue_json(requests)).bind(window_ms).bind(now_ms)
                            .fetch_all(&self.writer).await.map_err(db_err)?;
                        return enqueued_from_rows(requests, rows);
                    }
                    let mut tx = self.writer.begin_with($begin).await.map_err(db_err)?;
                    for chunk in requests.chunks(ROWS_PER_STATEMENT) {
                        let mut q = QueryBuilder::<$db>::new("INSERT INTO relay_messages (id, account_id, token_id, sender, priority, created_at_ms) ");
                        q.push_values(chunk, |mut row, r| {
                            let m = &r.message;
                            row.push_bind(m.id.clone()).push_bind(m.account_id.clone()).push_bind(m.token_id.clone())
                                .push_bind(m.sender.clone()).push_bind(m.priority.clone()).push_bind(m.created_at_ms);
                        });
                        q.build().execute(&mut *tx).await.map_err(db_err)?;
                    }
                    // What the outbox holds for each collapse key of the batch: its pending entry, and
                    // when the newest entry within the window was created. One statement for both (a
                    // round trip per statement on PostgreSQL).
                    let mut keys: Vec<&str> = requests.iter().flat_map(|r| r.deliveries.iter().map(|d| d.collapse_key.as_str())).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    let mut pending: HashMap<String, i64> = HashMap::new();
                    let mut newest: HashMap<String, i64> = HashMap::new();
                    let window_start = now_ms - window_ms;
                    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
                        let mut q = QueryBuilder::<$db>::new("SELECT collapse_key, MAX(CASE WHEN status = 'pending' THEN id END), MAX(CASE WHEN created_at_ms > ");
                        q.push_bind(window_start).push(" THEN created_at_ms END) FROM relay_outbox WHERE collapse_key IN (");
                        let mut list = q.separated(", ");
                        for k in chunk { list.push_bind(k.to_string()); }
                        q.push(") AND (status = 'pending' OR created_at_ms > ").push_bind(window_start).push(") GROUP BY collapse_key");
                        let found = q.build_query_as::<(String, Option<i64>, Option<i64>)>().fetch_all(&mut *tx).await.map_err(db_err)?;
                        for (key, pending_id, newest_at) in found {
                            if let Some(id) = pending_id { pending.insert(key.clone(), id); }
                            if let Some(at) = newest_at { newest.insert(key, at); }
                        }
                    }
                    // Plan every delivery in order: join a pending entry, join a new entry planned
                    // earlier in this batch, or plan a new one.
                    enum Slot { Existing(i64), Planned(String) }
                    let mut planned: Vec<(&NewDelivery, String, i64)> = Vec::new();
                    let mut planned_by_key: HashMap<String, usize> = HashMap::new();
                    let mut raise: Vec<i64> = Vec::new();
                    let mut slots: Vec<Vec<Slot>> = Vec::with_capacity(requests.len());
                    let mut out: Vec<Enqueued> = Vec::with_capacity(requests.len());
                    for r in requests {
                        let mut done = Enqueued::default();
                        let mut these = Vec::with_capacity(r.deliveries.len());
                        for d in &r.deliveries {
                            let key = &d.collapse_key;
                            if let Some(&id) = pending.get(key) {
                                done.collapsed += 1;
                                if d.priority == "high" { raise.push(id); }
                                these.push(Slot::Existing(id));
                            } else if let Some(&i) = planned_by_key.get(key) {
                                done.collapsed += 1;
                                if d.priority == "high" { planned[i].1 = "high".into(); }
                                these.push(Slot::Planned(key.clone()));
                            } else {
                                let due = newest.get(key).map_or(now_ms, |&last| (last + window_ms).max(now_ms));
                                planned_by_key.insert(key.clone(), planned.len());
                                planned.push((d, d.priority.clone(), due));
                                these.push(Slot::Planned(key.clone()));
                            }
                        }
                        slots.push(these);
                        out.push(done);
                    }
                    // Collapse keys are unique among the planned entries, so they name the new ids.
                    let mut created: HashMap<String, i64> = HashMap::new();
                    for chunk in planned.chunks(ROWS_PER_STATEMENT) {
                        let mut q = QueryBuilder::<$db>::new("INSERT INTO relay_outbox (device_id, remote_endpoint, remote_token, collapse_key, priority, data, status, attempts, next_attempt_at_ms, reason, created_at_ms, updated_at_ms) ");
                        q.push_values(chunk, |mut row, (d, priority, due)| {
                            let (device, endpoint, token) = match &d.target {
                                DeliveryTarget::Device(id) => (Some(id.clone()), None, None),
                                DeliveryTarget::Remote { endpoint, token } => (None, Some(endpoint.clone()), Some(token.clone())),
                            };
                            row.push_bind(device).push_bind(endpoint).push_bind(token).push_bind(d.collapse_key.clone())
                                .push_bind(priority.clone()).push_bind(d.data.clone()).push("'pending'").push("0")
                                .push_bind(*due).push("NULL").push_bind(now_ms).push_bind(now_ms);
                        });
                        q.push(" RETURNING collapse_key, id");
                        created.extend(q.build_query_as::<(String, i64)>().fetch_all(&mut *tx).await.map_err(db_err)?);
                    }
                    raise.sort_unstable();
                    raise.dedup();
                    for chunk in raise.chunks(ROWS_PER_STATEMENT) {
                        let mut q = QueryBuilder::<$db>::new("UPDATE relay_outbox SET priority = 'high' WHERE id IN (");
                        let mut list = q.separated(", ");
                        for id in chunk { list.push_bind(*id); }
                        q.push(")");
                        q.build().execute(&mut *tx).await.map_err(db_err)?;
                    }
                    let mut links: Vec<(&str, i64)> = Vec::new();
                    for ((r, these), done) in requests.iter().zip(slots).zip(out.iter_mut()) {
                        for slot in these {
                            let id = match slot {
                                Slot::Existing(id) => id,
                                Slot::Planned(key) => *created.get(&key).ok_or_else(|| $crate::StorageError::Database(format!("no outbox id returned for {key}")))?,
                            };
                            links.push((r.message.id.as_str(), id));
                            done.outbox_ids.push(id);
                        }
                    }
                    for chunk in links.chunks(ROWS_PER_STATEMENT) {
                        let mut q = QueryBuilder::<$db>::new("INSERT INTO relay_message_deliveries (message_id, outbox_id) ");
                        q.push_values(chunk, |mut row, (message, outbox)| {
                            row.push_bind(message.to_string()).push_bind(*outbox);
                        });
                        q.push(" ON CONFLICT DO NOTHING");
                        q.build().execute(&mut *tx).await.map_err(db_err)?;
                    }
                    let audits: Vec<&AuditEntry> = requests.iter().filter_map(|r| r.audit.as_ref()).collect();
                    for chunk in audits.chunks(ROWS_PER_STATEMENT) {
                        let mut q = QueryBuilder::<$db>::new("INSERT INTO relay_audit (account_id, at_ms, token_id, sender, message_id, outcome) ");
                        q.push_values(chunk, |mut row, e| {
                            row.push_bind(e.account_id.clone()).push_bind(e.at_ms).push_bind(e.token_id.clone())
                                .push_bind(e.sender.clone()).push_bind(e.message_id.clone()).push_bind(e.outcome.clone());
                        });
                        q.build().execute(&mut *tx).await.map_err(db_err)?;
                    }
                    tx.commit().await.map_err(db_err)?;
                    Ok(out)
                }
                async fn claim_due(&self, now_ms: i64, n: usize) -> StorageResult<Vec<OutboxEntry>> {
                    let rows = sqlx::query_as::<$db, OutboxRow>(concat!("UPDATE relay_outbox SET status = 'sending', updated_at_ms = $1 WHERE id IN (SELECT id FROM relay_outbox WHERE status = 'pending' AND next_attempt_at_ms <= $1 ORDER BY next_attempt_at_ms, id LIMIT $2", $skip_locked, ") RETURNING id, device_id, remote_endpoint, remote_token, collapse_key, priority, data, status, attempts, next_attempt_at_ms, reason, created_at_ms"))
                        .bind(now_ms).bind(limit(n)).fetch_all(&self.writer).await.map_err(db_err)?;
                    let mut v = rows.into_iter().map(OutboxEntry::try_from).collect::<StorageResult<Vec<_>>>()?;
                    v.sort_by_key(|e| (e.next_attempt_at_ms, e.id));
                    Ok(v)
                }
                async fn claim_ids(&self, ids: &[i64], now_ms: i64) -> StorageResult<Vec<OutboxEntry>> {
                    let mut rows: Vec<OutboxRow> = Vec::new();
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    if !$claim_ids.is_empty() {
                        rows = sqlx::query_as::<$db, OutboxRow>($claim_ids)
                            .bind(now_ms).bind(serde_json::Value::from(ids.to_vec()).to_string())
                            .fetch_all(&self.writer).await.map_err(db_err)?;
                    } else {
                        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                            let mut q = QueryBuilder::<$db>::new("UPDATE relay_outbox SET status = 'sending', updated_at_ms = ");
                            q.push_bind(now_ms).push(" WHERE status = 'pending' AND next_attempt_at_ms <= ").push_bind(now_ms).push(" AND id IN (");
                            let mut list = q.separated(", ");
                            for id in chunk { list.push_bind(*id); }
                            q.push(") RETURNING id, device_id, remote_endpoint, remote_token, collapse_key, priority, data, status, attempts, next_attempt_at_ms, reason, created_at_ms");
                            rows.extend(q.build_query_as::<OutboxRow>().fetch_all(&self.writer).await.map_err(db_err)?);
                        }
                    }
                    let mut v = rows.into_iter().map(OutboxEntry::try_from).collect::<StorageResult<Vec<_>>>()?;
                    v.sort_by_key(|e| (e.next_attempt_at_ms, e.id));
                    Ok(v)
                }
                async fn claim_due_with_devices(&self, now_ms: i64, n: usize) -> StorageResult<Claim> {
                    if $claim.is_empty() {
                        return claim_in_steps(self, now_ms, n).await;
                    }
                    let rows = sqlx::query_as::<$db, ClaimRow>($claim)
                        .bind(now_ms).bind(limit(n)).fetch_all(&self.writer).await.map_err(db_err)?;
                    let claimed = claim_from_rows(rows)?;
                    let next_due_at_ms = match claimed.next_due {
                        _ if claimed.entries.len() >= n => Ok(None),
                        Some(due) => Ok(due),
                        None => self.next_due_at().await,
                    };
                    Ok(Claim { entries: claimed.entries, devices: Ok(claimed.devices), next_due_at_ms })
                }
                async fn next_due_at(&self) -> StorageResult<Option<i64>> {
                    let (v,): (Option<i64>,) = sqlx::query_as::<$db, (Option<i64>,)>("SELECT MIN(next_attempt_at_ms) FROM relay_outbox WHERE status = 'pending'")
                        .fetch_one(&self.pool).await.map_err(db_err)?;
                    Ok(v)
                }
                async fn mark_sent_many(&self, ids: &[i64], now_ms: i64) -> StorageResult<()> {
                    if !$mark_sent.is_empty() {
                        if !ids.is_empty() {
                            sqlx::query::<$db>($mark_sent)
                                .bind(now_ms).bind(serde_json::Value::from(ids.to_vec()).to_string())
                                .execute(&self.writer).await.map_err(db_err)?;
                        }
                        return Ok(());
                    }
                    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                        let mut q = QueryBuilder::<$db>::new("UPDATE relay_outbox SET status = 'sent', attempts = attempts + 1, reason = NULL, remote_token = CASE WHEN remote_token IS NULL THEN NULL ELSE '' END, updated_at_ms = ");
                        q.push_bind(now_ms).push(" WHERE id IN (");
                        let mut list = q.separated(", ");
                        for id in chunk { list.push_bind(*id); }
                        q.push(")");
                        q.build().execute(&self.writer).await.map_err(db_err)?;
                    }
                    Ok(())
                }
                async fn mark_failed(&self, id: i64, reason: &str, now_ms: i64) -> StorageResult<()> {
                    sqlx::query::<$db>("UPDATE relay_outbox SET status = 'failed', attempts = attempts + 1, reason = $1, remote_token = CASE WHEN remote_token IS NULL THEN NULL ELSE '' END, updated_at_ms = $2 WHERE id = $3")
                        .bind(reason).bind(now_ms).bind(id).execute(&self.writer).await.map_err(db_err)?;
                    Ok(())
                }
                async fn retry_at(&self, id: i64, next_ms: i64, reason: &str, now_ms: i64) -> StorageResult<()> {
                    sqlx::query::<$db>("UPDATE relay_outbox SET status = 'pending', attempts = attempts + 1, next_attempt_at_ms = $1, reason = $2, updated_at_ms = $3 WHERE id = $4")
                        .bind(next_ms).bind(reason).bind(now_ms).bind(id).execute(&self.writer).await.map_err(db_err)?;
                    Ok(())
                }
                async fn fail_device(&self, device_id: &str, reason: &str, now_ms: i64) -> StorageResult<u64> {
                    let r = sqlx::query::<$db>("UPDATE relay_outbox SET status = 'failed', reason = $1, updated_at_ms = $2 WHERE device_id = $3 AND status = 'pending'")
                        .bind(reason).bind(now_ms).bind(device_id).execute(&self.writer).await.map_err(db_err)?;
                    Ok(r.rows_affected())
                }
                async fn recover(&self) -> StorageResult<u64> {
                    let r = sqlx::query::<$db>("UPDATE relay_outbox SET status = 'pending' WHERE status = 'sending'")
                        .execute(&self.writer).await.map_err(db_err)?;
                    Ok(r.rows_affected())
                }
                async fn message(&self, id: &str) -> StorageResult<Option<PushMessage>> {
                    let r = sqlx::query_as::<$db, MessageRow>("SELECT id, account_id, token_id, sender, priority, created_at_ms FROM relay_messages WHERE id = $1")
                        .bind(id).fetch_optional(&self.pool).await.map_err(db_err)?;
                    Ok(r.map(Into::into))
                }
                async fn deliveries(&self, message_id: &str) -> StorageResult<Vec<OutboxEntry>> {
                    let rows = sqlx::query_as::<$db, OutboxRow>("SELECT o.id, o.device_id, o.remote_endpoint, o.remote_token, o.collapse_key, o.priority, o.data, o.status, o.attempts, o.next_attempt_at_ms, o.reason, o.created_at_ms FROM relay_outbox o JOIN relay_message_deliveries d ON d.outbox_id = o.id WHERE d.message_id = $1 ORDER BY o.id")
                        .bind(message_id).fetch_all(&self.pool).await.map_err(db_err)?;
                    rows.into_iter().map(OutboxEntry::try_from).collect()
                }
                async fn purge_finished(&self, before_ms: i64) -> StorageResult<u64> {
                    let r = sqlx::query::<$db>("DELETE FROM relay_outbox WHERE status IN ('sent', 'failed') AND updated_at_ms < $1")
                        .bind(before_ms).execute(&self.writer).await.map_err(db_err)?;
                    sqlx::query::<$db>("DELETE FROM relay_messages WHERE created_at_ms < $1 AND NOT EXISTS (SELECT 1 FROM relay_message_deliveries d WHERE d.message_id = relay_messages.id)")
                        .bind(before_ms).execute(&self.writer).await.map_err(db_err)?;
                    Ok(r.rows_affected())
                }
            }

            #[async_trait]
            impl PushAudit for $store {
                async fn record(&self, e: &AuditEntry) -> StorageResult<()> {
                    sqlx::query::<$db>("INSERT INTO relay_audit (account_id, at_ms, token_id, sender, message_id, outcome) VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(&e.account_id).bind(e.at_ms).bind(&e.token_id).bind(&e.sender)
                        .bind(&e.message_id).bind(&e.outcome)
                        .execute(&self.writer).await.map_err(db_err)?;
                    Ok(())
                }
                async fn list(&self, account_id: &str, before_id: Option<i64>, n: usize) -> StorageResult<Vec<AuditEntry>> {
                    let rows = sqlx::query_as::<$db, AuditRow>("SELECT id, account_id, at_ms, token_id, sender, message_id, outcome FROM relay_audit WHERE account_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3")
                        .bind(account_id).bind(before_id).bind(limit(n))
                        .fetch_all(&self.pool).await.map_err(db_err)?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }
                async fn purge(&self, before_ms: i64) -> StorageResult<u64> {
                    let r = sqlx::query::<$db>("DELETE FROM relay_audit WHERE at_ms < $1")
                        .bind(before_ms).execute(&self.writer).await.map_err(db_err)?;
                    Ok(r.rows_affected())
                }
            }
        }
    };
}
pub(crate) use relay_sql_impl;
