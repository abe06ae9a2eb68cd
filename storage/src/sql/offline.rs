//! XMPP offline message storage (XEP-0160): per-owner queue, ordered by id, with a quota.
//! The SQL for both backends, stamped out by [`offline_sql`] (see [`crate::sql`]).

/// Implements [`crate::OfflineMessages`] for `$store` (a struct with `pool` (reads) and `writer` (writes) fields).
macro_rules! offline_sql {
    ($store:ident, write = $write:literal, owner_lock = [$($owner_lock:literal)?]) => {
        mod offline_impl {
            use async_trait::async_trait;

            use super::$store;
            use $crate::rows::{OfflineMessageRow, db_error, quota_i64, to_u64};
            use $crate::{OfflineMessage, OfflineMessages, OfflineStore, StorageResult};

            #[async_trait]
            impl OfflineMessages for $store {
                async fn store(
                    &self,
                    owner: &str,
                    stanza: &str,
                    stored_at_ms: i64,
                    quota: usize,
                ) -> StorageResult<OfflineStore> {
                    // The count and the insert must not interleave with another store for the same
                    // owner, or both could see room for one more.
                    let owner_lock: &[&str] = &[$($owner_lock)?];
                    if owner_lock.is_empty() {
                        // SQLite: a write statement takes the database write lock when it starts, so
                        // one conditional INSERT counts and inserts atomically, in one round trip (the
                        // hot path of every message to an offline user).
                        let done = sqlx::query(
                            "INSERT INTO offline_messages (owner, stanza, stored_at_ms) SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM offline_messages WHERE owner = $1) < $4",
                        )
                        .bind(owner)
                        .bind(stanza)
                        .bind(stored_at_ms)
                        .bind(quota_i64(quota))
                        .execute(&self.writer)
                        .await
                        .map_err(db_error)?;
                        return Ok(if done.rows_affected() == 0 {
                            OfflineStore::QuotaExceeded
                        } else {
                            OfflineStore::Stored
                        });
                    }
                    // PostgreSQL: under READ COMMITTED a statement's subquery could miss a concurrent
                    // insert, so `$write` opens a transaction and the per-owner lock (released at
                    // commit) serialises stores for this owner only.
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    for lock in owner_lock {
                        sqlx::query(*lock)
                            .bind(owner)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    }
                    let waiting: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM offline_messages WHERE owner = $1")
                            .bind(owner)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    if waiting >= quota_i64(quota) {
                        tx.rollback().await.map_err(db_error)?;
                        return Ok(OfflineStore::QuotaExceeded);
                    }
                    sqlx::query(
                        "INSERT INTO offline_messages (owner, stanza, stored_at_ms) VALUES ($1, $2, $3)",
                    )
                    .bind(owner)
                    .bind(stanza)
                    .bind(stored_at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    tx.commit().await.map_err(db_error)?;
                    Ok(OfflineStore::Stored)
                }

                async fn fetch(&self, owner: &str) -> StorageResult<Vec<OfflineMessage>> {
                    let rows: Vec<OfflineMessageRow> = sqlx::query_as(
                        "SELECT id, stanza, stored_at_ms FROM offline_messages WHERE owner = $1 ORDER BY id",
                    )
                    .bind(owner)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_error)?;
                    Ok(rows.into_iter().map(OfflineMessage::from).collect())
                }

                async fn remove_up_to(&self, owner: &str, last_id: i64) -> StorageResult<u64> {
                    let done = sqlx::query("DELETE FROM offline_messages WHERE owner = $1 AND id <= $2")
                        .bind(owner)
                        .bind(last_id)
                        .execute(&self.writer)
                        .await
                        .map_err(db_error)?;
                    Ok(done.rows_affected())
                }

                async fn count(&self, owner: &str) -> StorageResult<u64> {
                    let waiting: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM offline_messages WHERE owner = $1")
                            .bind(owner)
                            .fetch_one(&self.pool)
                            .await
                            .map_err(db_error)?;
                    to_u64(waiting, "message count")
                }
            }
        }
    };
}
pub(crate) use offline_sql;
