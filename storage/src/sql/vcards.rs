//! XMPP vcard-temp storage (XEP-0054): one opaque XML document per account.
//! The SQL for both backends, stamped out by [`vcards_sql`] (see [`crate::sql`]).

/// Implements [`crate::VCards`] for `$store` (a struct with `pool` (reads) and `writer` (writes) fields).
macro_rules! vcards_sql {
    ($store:ident) => {
        mod vcards_impl {
            use async_trait::async_trait;

            use super::$store;
            use $crate::rows::db_error;
            use $crate::{StorageResult, VCards};

            #[async_trait]
            impl VCards for $store {
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
                    .execute(&self.writer)
                    .await
                    .map_err(db_error)?;
                    Ok(())
                }
            }
        }
    };
}
pub(crate) use vcards_sql;
