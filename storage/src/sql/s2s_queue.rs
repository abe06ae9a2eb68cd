//! The outbound server-to-server queue (see [`crate::S2sQueue`]).
//! The SQL for both backends, stamped out by [`s2s_queue_sql`] (see [`crate::sql`]).

/// Ids per `DELETE .. IN (..)` statement of [`crate::S2sQueue::remove`]: far below SQLite's and
/// PostgreSQL's limits on bound parameters (32,766 and 65,535).
pub(crate) const REMOVE_CHUNK: usize = 500;

/// The statement that inserts a stanza (`$1` domain, `$2` sender, `$3` stanza, `$4` its bytes, `$5`
/// enqueued_at_ms) unless the domain already has `$6` stanzas or would pass `$7` bytes with it, and
/// returns the new id only when it inserted.
pub(crate) const ENQUEUE: &str = "INSERT INTO s2s_queue (domain, sender, stanza, bytes, enqueued_at_ms) \
     SELECT $1, $2, $3, $4, $5 \
     WHERE (SELECT COUNT(*) FROM s2s_queue WHERE domain = $1) < $6 \
     AND (SELECT COALESCE(SUM(bytes), 0) FROM s2s_queue WHERE domain = $1) + $4 <= $7 \
     RETURNING id";

/// The unconditional insert of [`crate::S2sQueue::append`] (`$1` domain, `$2` sender, `$3` stanza,
/// `$4` its bytes, `$5` enqueued_at_ms).
pub(crate) const APPEND: &str = "INSERT INTO s2s_queue (domain, sender, stanza, bytes, enqueued_at_ms) \
     VALUES ($1, $2, $3, $4, $5) RETURNING id";

/// The oldest-N read after an id: a range scan of `s2s_queue_by_domain`.
pub(crate) const OLDEST: &str = "SELECT id, sender, stanza, enqueued_at_ms FROM s2s_queue \
     WHERE domain = $1 AND id > $2 ORDER BY id LIMIT $3";

/// `DELETE` of `count` ids of domain `$1` (`$2` ..).
pub(crate) fn remove_statement(count: usize) -> String {
    let placeholders: Vec<String> = (2..count + 2).map(|n| format!("${n}")).collect();
    format!(
        "DELETE FROM s2s_queue WHERE domain = $1 AND id IN ({})",
        placeholders.join(", ")
    )
}

/// A queued stanza as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct S2sQueuedRow {
    id: i64,
    sender: String,
    stanza: String,
    enqueued_at_ms: i64,
}

impl From<S2sQueuedRow> for crate::S2sQueued {
    fn from(row: S2sQueuedRow) -> Self {
        crate::S2sQueued {
            id: row.id,
            sender: row.sender,
            stanza: row.stanza,
            enqueued_at_ms: row.enqueued_at_ms,
        }
    }
}

/// Implements [`crate::S2sQueue`] for `$store` (a struct with `pool` (reads) and `writer` (writes)
/// fields). `write` begins a read-then-write transaction; `lock` (run first in an enqueue's
/// transaction, `$1` the domain) makes enqueues of one domain take turns, so the cap holds and ids
/// commit in order, or is `""` when the conditional insert alone is atomic (SQLite: a write statement
/// holds the write lock from its start), and then the enqueue is that one statement.
macro_rules! s2s_queue_sql {
    ($store:ident, write = $write:literal, lock = $lock:literal) => {
        mod s2s_queue_impl {
            use async_trait::async_trait;

            use super::$store;
            use $crate::rows::{db_error, quota_i64, to_u64};
            use $crate::sql::s2s_queue::{
                APPEND, ENQUEUE, OLDEST, REMOVE_CHUNK, S2sQueuedRow, remove_statement,
            };
            use $crate::{
                S2sEnqueue, S2sQueue, S2sQueueLimits, S2sQueueUsage, S2sQueued, StorageResult,
            };

            #[async_trait]
            impl S2sQueue for $store {
                async fn enqueue(
                    &self,
                    domain: &str,
                    sender: &str,
                    stanza: &str,
                    enqueued_at_ms: i64,
                    limits: S2sQueueLimits,
                ) -> StorageResult<S2sEnqueue> {
                    let insert = sqlx::query_scalar::<_, i64>(ENQUEUE)
                        .bind(domain)
                        .bind(sender)
                        .bind(stanza)
                        .bind(quota_i64(stanza.len()))
                        .bind(enqueued_at_ms)
                        .bind(quota_i64(limits.max_stanzas))
                        .bind(quota_i64(limits.max_bytes));
                    let id = if $lock.is_empty() {
                        insert
                            .fetch_optional(&self.writer)
                            .await
                            .map_err(db_error)?
                    } else {
                        let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                        sqlx::query($lock)
                            .bind(domain)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                        let id = insert.fetch_optional(&mut *tx).await.map_err(db_error)?;
                        tx.commit().await.map_err(db_error)?;
                        id
                    };
                    Ok(id.map_or(S2sEnqueue::Full, S2sEnqueue::Queued))
                }

                async fn append(
                    &self,
                    domain: &str,
                    sender: &str,
                    stanza: &str,
                    enqueued_at_ms: i64,
                ) -> StorageResult<i64> {
                    let insert = sqlx::query_scalar::<_, i64>(APPEND)
                        .bind(domain)
                        .bind(sender)
                        .bind(stanza)
                        .bind(quota_i64(stanza.len()))
                        .bind(enqueued_at_ms);
                    if $lock.is_empty() {
                        return insert.fetch_one(&self.writer).await.map_err(db_error);
                    }
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    sqlx::query($lock)
                        .bind(domain)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    let id = insert.fetch_one(&mut *tx).await.map_err(db_error)?;
                    tx.commit().await.map_err(db_error)?;
                    Ok(id)
                }

                async fn oldest(
                    &self,
                    domain: &str,
                    after_id: Option<i64>,
                    limit: usize,
                ) -> StorageResult<Vec<S2sQueued>> {
                    let rows: Vec<S2sQueuedRow> = sqlx::query_as(OLDEST)
                        .bind(domain)
                        .bind(after_id.unwrap_or(i64::MIN))
                        .bind(quota_i64(limit))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_error)?;
                    Ok(rows.into_iter().map(S2sQueued::from).collect())
                }

                async fn remove(&self, domain: &str, ids: &[i64]) -> StorageResult<u64> {
                    if ids.is_empty() {
                        return Ok(0);
                    }
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    let mut removed = 0;
                    for chunk in ids.chunks(REMOVE_CHUNK) {
                        let mut delete =
                            sqlx::query(sqlx::AssertSqlSafe(remove_statement(chunk.len())))
                                .bind(domain);
                        for id in chunk {
                            delete = delete.bind(*id);
                        }
                        removed += delete
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?
                            .rows_affected();
                    }
                    tx.commit().await.map_err(db_error)?;
                    Ok(removed)
                }

                async fn take_enqueued_before(
                    &self,
                    domain: &str,
                    cutoff_ms: i64,
                ) -> StorageResult<Vec<S2sQueued>> {
                    let rows: Vec<S2sQueuedRow> = sqlx::query_as(
                        "DELETE FROM s2s_queue WHERE domain = $1 AND enqueued_at_ms < $2 \
                         RETURNING id, sender, stanza, enqueued_at_ms",
                    )
                    .bind(domain)
                    .bind(cutoff_ms)
                    .fetch_all(&self.writer)
                    .await
                    .map_err(db_error)?;
                    // RETURNING gives no order; bounces go back in the order they were sent.
                    let mut taken: Vec<S2sQueued> = rows.into_iter().map(S2sQueued::from).collect();
                    taken.sort_by_key(|queued| queued.id);
                    Ok(taken)
                }

                async fn domains(&self) -> StorageResult<Vec<String>> {
                    sqlx::query_scalar("SELECT DISTINCT domain FROM s2s_queue ORDER BY domain")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_error)
                }

                async fn usage(&self, domain: &str) -> StorageResult<S2sQueueUsage> {
                    // SUM of a BIGINT is a NUMERIC on PostgreSQL: cast it back.
                    let (stanzas, bytes): (i64, i64) = sqlx::query_as(
                        "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) \
                         FROM s2s_queue WHERE domain = $1",
                    )
                    .bind(domain)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_error)?;
                    Ok(S2sQueueUsage {
                        stanzas: to_u64(stanzas, "queued stanza count")?,
                        bytes: to_u64(bytes, "queued bytes")?,
                    })
                }
            }
        }
    };
}
pub(crate) use s2s_queue_sql;
