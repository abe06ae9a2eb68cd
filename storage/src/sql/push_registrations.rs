//! XEP-0357 push registrations per account (see [`crate::PushRegistrations`]).
//! The SQL for both backends, stamped out by [`push_registrations_sql`] (see [`crate::sql`]).

use crate::StorageError;
use crate::push_registrations::PushRegistration;

/// One row of `push_registrations`.
#[derive(sqlx::FromRow)]
pub(crate) struct PushRegistrationRow {
    owner: String,
    service: String,
    node: String,
    publish_options: Option<String>,
    failures: i64,
    enabled_at_ms: i64,
}

impl TryFrom<PushRegistrationRow> for PushRegistration {
    type Error = StorageError;

    fn try_from(row: PushRegistrationRow) -> Result<PushRegistration, StorageError> {
        Ok(PushRegistration {
            account: row.owner,
            service: row.service,
            node: row.node,
            publish_options: row.publish_options,
            failures: failures(row.failures)?,
            enabled_at_ms: row.enabled_at_ms,
        })
    }
}

/// A failure count read back; never negative, and far below `u32::MAX` in practice.
pub(crate) fn failures(value: i64) -> Result<u32, StorageError> {
    u32::try_from(value)
        .map_err(|_| StorageError::Database(format!("push failure count out of range: {value}")))
}

/// Implements [`crate::PushRegistrations`] for `$store` (a struct with `pool` (reads) and `writer`
/// (writes) fields).
macro_rules! push_registrations_sql {
    ($store:ident) => {
        mod push_registrations_impl {
            use async_trait::async_trait;

            use super::$store;
            use $crate::rows::{db_error, quota_i64};
            use $crate::sql::push_registrations::{PushRegistrationRow, failures};
            use $crate::{PushRegistration, PushRegistrations, PushUpsert, StorageResult};

            #[async_trait]
            impl PushRegistrations for $store {
                async fn list(&self, account: &str) -> StorageResult<Vec<PushRegistration>> {
                    let rows: Vec<PushRegistrationRow> = sqlx::query_as(
                        "SELECT owner, service, node, publish_options, failures, enabled_at_ms \
                         FROM push_registrations WHERE owner = $1 ORDER BY service, node",
                    )
                    .bind(account)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_error)?;
                    rows.into_iter().map(PushRegistration::try_from).collect()
                }

                async fn accounts_with_registrations(&self) -> StorageResult<Vec<String>> {
                    sqlx::query_scalar("SELECT DISTINCT owner FROM push_registrations ORDER BY owner")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_error)
                }

                async fn upsert(
                    &self,
                    registration: &PushRegistration,
                    limit: usize,
                ) -> StorageResult<PushUpsert> {
                    // One statement counts and writes, so a client cannot pass the limit by
                    // enabling from two resources at once (on SQLite; see the trait on PostgreSQL).
                    // Replacing an existing (service, node) never counts against the limit.
                    let stored = sqlx::query(
                        "INSERT INTO push_registrations \
                           (owner, service, node, publish_options, failures, enabled_at_ms) \
                         SELECT $1, $2, $3, $4, 0, $5 \
                         WHERE (SELECT COUNT(*) FROM push_registrations WHERE owner = $1) < $6 \
                            OR EXISTS (SELECT 1 FROM push_registrations \
                                       WHERE owner = $1 AND service = $2 AND node = $3) \
                         ON CONFLICT (owner, service, node) DO UPDATE SET \
                           publish_options = excluded.publish_options, failures = 0, \
                           enabled_at_ms = excluded.enabled_at_ms \
                         RETURNING 1",
                    )
                    .bind(&registration.account)
                    .bind(&registration.service)
                    .bind(&registration.node)
                    .bind(&registration.publish_options)
                    .bind(registration.enabled_at_ms)
                    .bind(quota_i64(limit))
                    .fetch_optional(&self.writer)
                    .await
                    .map_err(db_error)?;
                    Ok(if stored.is_some() {
                        PushUpsert::Stored
                    } else {
                        PushUpsert::LimitReached
                    })
                }

                async fn delete(
                    &self,
                    account: &str,
                    service: &str,
                    node: Option<&str>,
                ) -> StorageResult<u64> {
                    let done = match node {
                        Some(node) => sqlx::query(
                            "DELETE FROM push_registrations \
                             WHERE owner = $1 AND service = $2 AND node = $3",
                        )
                        .bind(account)
                        .bind(service)
                        .bind(node),
                        None => sqlx::query(
                            "DELETE FROM push_registrations WHERE owner = $1 AND service = $2",
                        )
                        .bind(account)
                        .bind(service),
                    }
                    .execute(&self.writer)
                    .await
                    .map_err(db_error)?;
                    Ok(done.rows_affected())
                }

                async fn delete_all(&self, account: &str) -> StorageResult<u64> {
                    let done = sqlx::query("DELETE FROM push_registrations WHERE owner = $1")
                        .bind(account)
                        .execute(&self.writer)
                        .await
                        .map_err(db_error)?;
                    Ok(done.rows_affected())
                }

                async fn record_failure(
                    &self,
                    account: &str,
                    service: &str,
                    node: &str,
                ) -> StorageResult<Option<u32>> {
                    let count: Option<i64> = sqlx::query_scalar(
                        "UPDATE push_registrations SET failures = failures + 1 \
                         WHERE owner = $1 AND service = $2 AND node = $3 RETURNING failures",
                    )
                    .bind(account)
                    .bind(service)
                    .bind(node)
                    .fetch_optional(&self.writer)
                    .await
                    .map_err(db_error)?;
                    count.map(failures).transpose()
                }

                async fn clear_failures(
                    &self,
                    account: &str,
                    service: &str,
                    node: &str,
                ) -> StorageResult<()> {
                    sqlx::query(
                        "UPDATE push_registrations SET failures = 0 \
                         WHERE owner = $1 AND service = $2 AND node = $3 AND failures <> 0",
                    )
                    .bind(account)
                    .bind(service)
                    .bind(node)
                    .execute(&self.writer)
                    .await
                    .map_err(db_error)?;
                    Ok(())
                }
            }
        }
    };
}
pub(crate) use push_registrations_sql;
