//! XMPP offline message storage (XEP-0160): per-owner queue, ordered by id, with a quota.
//! The SQL for both backends, stamped out by [`offline_sql`] (see [`crate::sql`]).

/// Implements [`crate::OfflineMessages`] for `$store` (a struct with `pool` (reads) and `writer` (writes) fields).
macro_rules! offline_sql {
    ($store:ident, store_statement = $store_statement:expr) => {
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
                    // owner, or both could see room for one more: `$store_statement` does both
                    // atomically, in one round trip (the hot path of every message to an offline
                    // user), and returns a row only when it stored.
                    let stored = sqlx::query($store_statement)
                        .bind(owner)
                        .bind(stanza)
                        .bind(stored_at_ms)
                        .bind(quota_i64(quota))
                        .fetch_optional(&self.writer)
                        .await
                        .map_err(db_error)?;
                    Ok(if stored.is_some() {
                        OfflineStore::Stored
                    } else {
                        OfflineStore::QuotaExceeded
                    })
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
