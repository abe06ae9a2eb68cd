//! XMPP block lists (XEP-0191): the JIDs a user blocks, stored as given and deduplicated.
//! The SQL for both backends, stamped out by [`block_lists_sql`] (see [`crate::sql`]).

/// Implements [`crate::BlockLists`] for `$store` (a struct with `pool` (reads) and `writer` (writes) fields).
macro_rules! block_lists_sql {
    ($store:ident, write = $write:literal) => {
        mod block_lists_impl {
            use async_trait::async_trait;

            use super::$store;
            use $crate::rows::db_error;
            use $crate::{BlockLists, StorageResult};

            #[async_trait]
            impl BlockLists for $store {
                async fn list(&self, owner: &str) -> StorageResult<Vec<String>> {
                    sqlx::query_scalar("SELECT jid FROM block_list WHERE owner = $1 ORDER BY jid")
                        .bind(owner)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_error)
                }

                async fn list_of_account(&self, owner: &str) -> StorageResult<Option<Vec<String>>> {
                    // No row: no account. One row with NULL: an account that blocks nobody.
                    let rows: Vec<Option<String>> = sqlx::query_scalar(
                        "SELECT b.jid FROM accounts a LEFT JOIN block_list b ON b.owner = a.jid WHERE a.jid = $1 ORDER BY b.jid",
                    )
                    .bind(owner)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_error)?;
                    if rows.is_empty() {
                        return Ok(None);
                    }
                    Ok(Some(rows.into_iter().flatten().collect()))
                }

                async fn block(&self, owner: &str, jids: &[String]) -> StorageResult<()> {
                    // XEP-0191 section 3.3: one block request is all or nothing.
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    for jid in jids {
                        sqlx::query(
                            "INSERT INTO block_list (owner, jid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        )
                        .bind(owner)
                        .bind(jid)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    }
                    tx.commit().await.map_err(db_error)
                }

                async fn unblock(&self, owner: &str, jids: &[String]) -> StorageResult<()> {
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    for jid in jids {
                        sqlx::query("DELETE FROM block_list WHERE owner = $1 AND jid = $2")
                            .bind(owner)
                            .bind(jid)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    }
                    tx.commit().await.map_err(db_error)
                }

                async fn unblock_all(&self, owner: &str) -> StorageResult<()> {
                    sqlx::query("DELETE FROM block_list WHERE owner = $1")
                        .bind(owner)
                        .execute(&self.writer)
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }
            }
        }
    };
}
pub(crate) use block_lists_sql;
