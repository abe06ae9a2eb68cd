//! PostgreSQL offline message storage (XEP-0160): per-owner queue, ordered by id, with a quota.

use async_trait::async_trait;

use super::Postgres;
use crate::rows::{OfflineMessageRow, db_error, quota_i64, to_u64};
use crate::{OfflineMessage, OfflineMessages, OfflineStore, StorageResult};

/// First key of the advisory locks that guard offline quotas.
const OFFLINE_LOCK_CLASS: i32 = 0x4f46; // "OF"

#[async_trait]
impl OfflineMessages for Postgres {
    async fn store(
        &self,
        owner: &str,
        stanza: &str,
        stored_at_ms: i64,
        quota: usize,
    ) -> StorageResult<OfflineStore> {
        // The advisory lock (per owner, released at commit) serialises stores for one owner across the
        // count and the insert, so concurrent stores cannot both see room for one more. The two-key form
        // keeps Herald's locks apart from the one-key space the migrator uses.
        let mut tx = self.write().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(OFFLINE_LOCK_CLASS)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
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
            .execute(&self.pool)
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
