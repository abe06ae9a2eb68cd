//! XEP-0049 private XML storage per account (see [`crate::PrivateXml`]).
//! The SQL for both backends, stamped out by [`private_xml_sql`] (see [`crate::sql`]).

/// Implements [`crate::PrivateXml`] for `$store` (a struct with `pool` (reads) and `writer` (writes)
/// fields); `write` begins a read-then-write transaction, and `lock` (run first in it with `$1` the
/// owner, unless empty) serialises puts of one owner where `write` alone does not.
macro_rules! private_xml_sql {
    ($store:ident, write = $write:literal, lock = $lock:literal) => {
        mod private_xml_impl {
            use async_trait::async_trait;

            use super::$store;
            use $crate::rows::{db_error, quota_i64, to_u64};
            use $crate::{PrivateFragment, PrivatePut, PrivateXml, StorageResult};

            #[async_trait]
            impl PrivateXml for $store {
                async fn get(
                    &self,
                    owner: &str,
                    namespace: &str,
                    name: &str,
                ) -> StorageResult<Option<String>> {
                    sqlx::query_scalar(
                        "SELECT xml FROM private_xml \
                         WHERE owner = $1 AND namespace = $2 AND name = $3",
                    )
                    .bind(owner)
                    .bind(namespace)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error)
                }

                async fn put(
                    &self,
                    owner: &str,
                    fragments: &[PrivateFragment],
                    limit: usize,
                ) -> StorageResult<PrivatePut> {
                    // Write first, count after, and roll back if over: one transaction, so a set
                    // of several fragments is stored whole or not at all.
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    if !$lock.is_empty() {
                        sqlx::query($lock)
                            .bind(owner)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    }
                    for fragment in fragments {
                        sqlx::query(
                            "INSERT INTO private_xml (owner, namespace, name, xml) \
                             VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (owner, namespace, name) DO UPDATE SET xml = excluded.xml",
                        )
                        .bind(owner)
                        .bind(&fragment.namespace)
                        .bind(&fragment.name)
                        .bind(&fragment.xml)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    }
                    let count: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM private_xml WHERE owner = $1")
                            .bind(owner)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    if count > quota_i64(limit) {
                        tx.rollback().await.map_err(db_error)?;
                        return Ok(PrivatePut::LimitReached);
                    }
                    tx.commit().await.map_err(db_error)?;
                    Ok(PrivatePut::Stored)
                }

                async fn count(&self, owner: &str) -> StorageResult<u64> {
                    let count: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM private_xml WHERE owner = $1")
                            .bind(owner)
                            .fetch_one(&self.pool)
                            .await
                            .map_err(db_error)?;
                    to_u64(count, "private XML fragment count")
                }
            }
        }
    };
}
pub(crate) use private_xml_sql;
