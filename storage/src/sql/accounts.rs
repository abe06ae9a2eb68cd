//! XMPP SCRAM credentials per bare JID (RFC 5802 section 3, RFC 7677).
//! The SQL for both backends, stamped out by [`accounts_sql`] (see [`crate::sql`]).

/// Implements [`crate::Accounts`] for `$store` (a struct with `pool` (reads) and `writer` (writes) fields of database `$db`).
macro_rules! accounts_sql {
    ($store:ident, $db:ty, write = $write:literal) => {
        mod accounts_impl {
            use async_trait::async_trait;

            use super::$store;
            use $crate::rows::{CredentialsRow, db_error, domain_of, now_ms};
            use $crate::{Accounts, Credentials, StorageResult};

            type Query<'q> = sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>;

            /// Binds the eight SCRAM key columns, in the order the statements list them: salt,
            /// iterations, stored key, server key, for SHA-1 and then SHA-256.
            fn bind_keys<'q>(query: Query<'q>, credentials: &'q Credentials) -> Query<'q> {
                [&credentials.sha1, &credentials.sha256]
                    .into_iter()
                    .fold(query, |query, keys| {
                        query
                            .bind(&keys.salt)
                            .bind(i64::from(keys.iterations))
                            .bind(&keys.stored_key)
                            .bind(&keys.server_key)
                    })
            }

            #[async_trait]
            impl Accounts for $store {
                async fn create(&self, jid: &str, credentials: &Credentials) -> StorageResult<()> {
                    let query = sqlx::query(
                        "INSERT INTO accounts (jid, domain, created_at, \
                           sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key, \
                           sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .bind(jid)
                    .bind(domain_of(jid))
                    .bind(now_ms());
                    bind_keys(query, credentials)
                        .execute(&self.writer)
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }

                async fn credentials(&self, jid: &str) -> StorageResult<Option<Credentials>> {
                    let row: Option<CredentialsRow> = sqlx::query_as(
                        "SELECT sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key, \
                           sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key \
                         FROM accounts WHERE jid = $1",
                    )
                    .bind(jid)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error)?;
                    row.map(Credentials::try_from).transpose()
                }

                async fn set_credentials(&self, jid: &str, credentials: &Credentials) -> StorageResult<bool> {
                    let query = sqlx::query(
                        "UPDATE accounts SET \
                           sha1_salt = $2, sha1_iterations = $3, sha1_stored_key = $4, sha1_server_key = $5, \
                           sha256_salt = $6, sha256_iterations = $7, sha256_stored_key = $8, sha256_server_key = $9 \
                         WHERE jid = $1",
                    )
                    .bind(jid);
                    let done = bind_keys(query, credentials)
                        .execute(&self.writer)
                        .await
                        .map_err(db_error)?;
                    Ok(done.rows_affected() > 0)
                }

                async fn delete(&self, jid: &str) -> StorageResult<bool> {
                    // One transaction, so a crash cannot leave a half-deleted account. Owned rows go even
                    // when the account row is already gone: nothing may outlive the account, in the
                    // push relay's tables neither.
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    let existed = sqlx::query("DELETE FROM accounts WHERE jid = $1")
                        .bind(jid)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?
                        .rows_affected()
                        > 0;
                    for statement in [
                        // roster_groups follow by ON DELETE CASCADE.
                        "DELETE FROM roster_items WHERE owner = $1",
                        "DELETE FROM roster_versions WHERE owner = $1",
                        "DELETE FROM offline_messages WHERE owner = $1",
                        "DELETE FROM vcards WHERE owner = $1",
                        "DELETE FROM block_list WHERE owner = $1",
                        // XEP-0313 archive and XEP-0441 preferences.
                        "DELETE FROM archive_messages WHERE owner = $1",
                        "DELETE FROM archive_pref_jids WHERE owner = $1",
                        "DELETE FROM archive_prefs WHERE owner = $1",
                        // XEP-0357: no app server is notified for whoever registers the JID next.
                        "DELETE FROM push_registrations WHERE owner = $1",
                        // XEP-0049: bookmarks and preferences are not inherited by the next owner.
                        "DELETE FROM private_xml WHERE owner = $1",
                        // XEP-0163: the next holder of the JID inherits no node (OMEMO keys!).
                        "DELETE FROM pep_items WHERE owner = $1",
                        "DELETE FROM pep_nodes WHERE owner = $1",
                    ]
                    .into_iter()
                    // A local account's relay account has the bare JID as its id: its API keys,
                    // devices and tokens must not pass to whoever registers the JID next.
                    .chain($crate::relay::sql::RELAY_ACCOUNT_DELETES)
                    {
                        sqlx::query(statement)
                            .bind(jid)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    }
                    tx.commit().await.map_err(db_error)?;
                    Ok(existed)
                }

                async fn list(&self, domain: &str) -> StorageResult<Vec<String>> {
                    sqlx::query_scalar("SELECT jid FROM accounts WHERE domain = $1 ORDER BY jid")
                        .bind(domain)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_error)
                }

                async fn exists(&self, jid: &str) -> StorageResult<bool> {
                    let found = sqlx::query("SELECT 1 FROM accounts WHERE jid = $1")
                        .bind(jid)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_error)?;
                    Ok(found.is_some())
                }
            }
        }
    };
}
pub(crate) use accounts_sql;
