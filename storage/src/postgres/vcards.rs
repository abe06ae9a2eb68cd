//! PostgreSQL vcard-temp storage (XEP-0054): one opaque XML document per account.

use async_trait::async_trait;

use super::Postgres;
use crate::rows::db_error;
use crate::{StorageResult, VCards};

#[async_trait]
impl VCards for Postgres {
    async fn get(&self, owner: &str) -> StorageResult<Option<String>> {
        sqlx::query_scalar("SELECT vcard FROM vcards WHERE owner = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn set(&self, owner: &str, vcard_xml: &str) -> StorageResult<()> {
        // XEP-0054 section 3.2: a publish replaces the whole vCard.
        sqlx::query(
            "INSERT INTO vcards (owner, vcard) VALUES ($1, $2) \
             ON CONFLICT (owner) DO UPDATE SET vcard = excluded.vcard",
        )
        .bind(owner)
        .bind(vcard_xml)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
