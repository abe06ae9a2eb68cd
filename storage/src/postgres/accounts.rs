//! PostgreSQL accounts: SCRAM credentials per bare JID (RFC 5802 section 3, RFC 7677).

use async_trait::async_trait;

use super::Postgres;
use crate::rows::{CredentialsRow, db_error, domain_of, now_ms};
use crate::{Accounts, Credentials, StorageResult};

#[async_trait]
impl Accounts for Postgres {
    async fn create(&self, jid: &str, credentials: &Credentials) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO accounts (jid, domain, \
               sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key, \
               sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(jid)
        .bind(domain_of(jid))
        .bind(&credentials.sha1.salt)
        .bind(i64::from(credentials.sha1.iterations))
        .bind(&credentials.sha1.stored_key)
        .bind(&credentials.sha1.server_key)
        .bind(&credentials.sha256.salt)
        .bind(i64::from(credentials.sha256.iterations))
        .bind(&credentials.sha256.stored_key)
        .bind(&credentials.sha256.server_key)
        .bind(now_ms())
        .execute(&self.pool)
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
        let done = sqlx::query(
            "UPDATE accounts SET \
               sha1_salt = $2, sha1_iterations = $3, sha1_stored_key = $4, sha1_server_key = $5, \
               sha256_salt = $6, sha256_iterations = $7, sha256_stored_key = $8, sha256_server_key = $9 \
             WHERE jid = $1",
        )
        .bind(jid)
        .bind(&credentials.sha1.salt)
        .bind(i64::from(credentials.sha1.iterations))
        .bind(&credentials.sha1.stored_key)
        .bind(&credentials.sha1.server_key)
        .bind(&credentials.sha256.salt)
        .bind(i64::from(credentials.sha256.iterations))
        .bind(&credentials.sha256.stored_key)
        .bind(&credentials.sha256.server_key)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete(&self, jid: &str) -> StorageResult<bool> {
        // One transaction, so a crash cannot leave a half-deleted account. Owned rows go even when the
        // account row is already gone: nothing may outlive the account.
        let mut tx = self.write().await?;
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
        ] {
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
