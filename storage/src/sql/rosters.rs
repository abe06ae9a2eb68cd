//! XMPP rosters with versioning (RFC 6121 sections 2.6 and 3, appendix A).
//! The SQL for both backends, stamped out by [`rosters_sql`] (see [`crate::sql`]).

/// Implements [`crate::Rosters`] for `$store` (a struct with `pool` (reads) and `writer` (writes) fields of database `$db`).
macro_rules! rosters_sql {
    ($store:ident, $db:ty, write = $write:literal, snapshot = $snapshot:literal) => {
        mod rosters_impl {
            use async_trait::async_trait;

            use super::$store;
            use $crate::rows::{
                RosterGroupRow, RosterItemRow, assemble_roster, db_error, distinct_groups, to_u64,
            };
            use $crate::{RosterItem, Rosters, StorageResult};

            /// Bumps `owner`'s roster version inside `tx` and returns the new value.
            async fn bump_version(
                tx: &mut <$db as sqlx::Database>::Connection,
                owner: &str,
            ) -> StorageResult<u64> {
                let version: i64 = sqlx::query_scalar(
                    "INSERT INTO roster_versions (owner, version) VALUES ($1, 1) \
                     ON CONFLICT (owner) DO UPDATE SET version = roster_versions.version + 1 \
                     RETURNING version",
                )
                .bind(owner)
                .fetch_one(tx)
                .await
                .map_err(db_error)?;
                to_u64(version, "roster version")
            }

            #[async_trait]
            impl Rosters for $store {
                async fn items(&self, owner: &str) -> StorageResult<(u64, Vec<RosterItem>)> {
                    // One read transaction: the version and the items come from the same snapshot.
                    let mut tx = self.pool.begin_with($snapshot).await.map_err(db_error)?;
                    let version: Option<i64> =
                        sqlx::query_scalar("SELECT version FROM roster_versions WHERE owner = $1")
                            .bind(owner)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    let items: Vec<RosterItemRow> = sqlx::query_as(
                        "SELECT contact, name, subscription, pending_out, pending_in, pre_approved, in_roster \
                         FROM roster_items WHERE owner = $1 ORDER BY contact",
                    )
                    .bind(owner)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    let groups: Vec<RosterGroupRow> = sqlx::query_as(
                        "SELECT contact, name FROM roster_groups WHERE owner = $1 ORDER BY contact, position",
                    )
                    .bind(owner)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    tx.commit().await.map_err(db_error)?;
                    Ok((
                        to_u64(version.unwrap_or(0), "roster version")?,
                        assemble_roster(items, groups)?,
                    ))
                }

                async fn item(&self, owner: &str, contact: &str) -> StorageResult<Option<RosterItem>> {
                    let mut tx = self.pool.begin_with($snapshot).await.map_err(db_error)?;
                    let row: Option<RosterItemRow> = sqlx::query_as(
                        "SELECT contact, name, subscription, pending_out, pending_in, pre_approved, in_roster \
                         FROM roster_items WHERE owner = $1 AND contact = $2",
                    )
                    .bind(owner)
                    .bind(contact)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    let Some(row) = row else {
                        return Ok(None);
                    };
                    let groups: Vec<String> = sqlx::query_scalar(
                        "SELECT name FROM roster_groups WHERE owner = $1 AND contact = $2 ORDER BY position",
                    )
                    .bind(owner)
                    .bind(contact)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    tx.commit().await.map_err(db_error)?;
                    row.into_item(groups).map(Some)
                }

                async fn upsert(&self, owner: &str, item: &RosterItem) -> StorageResult<u64> {
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    sqlx::query(
                        "INSERT INTO roster_items \
                           (owner, contact, name, subscription, pending_out, pending_in, pre_approved, in_roster) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (owner, contact) DO UPDATE SET \
                           name = excluded.name, subscription = excluded.subscription, \
                           pending_out = excluded.pending_out, pending_in = excluded.pending_in, \
                           pre_approved = excluded.pre_approved, in_roster = excluded.in_roster",
                    )
                    .bind(owner)
                    .bind(&item.contact)
                    .bind(&item.name)
                    .bind(item.subscription.as_str())
                    .bind(item.pending_out)
                    .bind(item.pending_in)
                    .bind(item.pre_approved)
                    .bind(item.in_roster)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    sqlx::query("DELETE FROM roster_groups WHERE owner = $1 AND contact = $2")
                        .bind(owner)
                        .bind(&item.contact)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    for (position, group) in (0_i64..).zip(distinct_groups(&item.groups)) {
                        sqlx::query(
                            "INSERT INTO roster_groups (owner, contact, position, name) VALUES ($1, $2, $3, $4)",
                        )
                        .bind(owner)
                        .bind(&item.contact)
                        .bind(position)
                        .bind(group)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    }
                    let version = bump_version(&mut tx, owner).await?;
                    tx.commit().await.map_err(db_error)?;
                    Ok(version)
                }

                async fn remove(&self, owner: &str, contact: &str) -> StorageResult<Option<u64>> {
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    // roster_groups follow by ON DELETE CASCADE.
                    let removed = sqlx::query("DELETE FROM roster_items WHERE owner = $1 AND contact = $2")
                        .bind(owner)
                        .bind(contact)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?
                        .rows_affected();
                    if removed == 0 {
                        // Nothing changed, so the version must not move (RFC 6121 section 2.6.3).
                        tx.rollback().await.map_err(db_error)?;
                        return Ok(None);
                    }
                    let version = bump_version(&mut tx, owner).await?;
                    tx.commit().await.map_err(db_error)?;
                    Ok(Some(version))
                }

                async fn count(&self, owner: &str) -> StorageResult<u64> {
                    let items: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM roster_items WHERE owner = $1")
                            .bind(owner)
                            .fetch_one(&self.pool)
                            .await
                            .map_err(db_error)?;
                    to_u64(items, "roster item count")
                }
            }
        }
    };
}
pub(crate) use rosters_sql;
