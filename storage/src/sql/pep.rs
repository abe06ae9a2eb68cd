//! XEP-0163 PEP nodes and items per account (see [`crate::Pep`]).
//! The SQL for both backends, stamped out by [`pep_sql`] (see [`crate::sql`]).

use crate::StorageError;
use crate::pep::{PepItem, PepNode};

/// One row of `pep_nodes`.
#[derive(sqlx::FromRow)]
pub(crate) struct PepNodeRow {
    node: String,
    access_model: String,
    max_items: i64,
    persist_items: bool,
    notify_retract: bool,
    send_last: String,
    title: Option<String>,
    roster_groups: String,
}

impl TryFrom<PepNodeRow> for PepNode {
    type Error = StorageError;

    fn try_from(row: PepNodeRow) -> Result<PepNode, StorageError> {
        Ok(PepNode {
            node: row.node,
            access_model: row.access_model,
            max_items: u32::try_from(row.max_items).map_err(|_| {
                StorageError::Database(format!("pep max_items out of range: {}", row.max_items))
            })?,
            persist_items: row.persist_items,
            notify_retract: row.notify_retract,
            send_last_published_item: row.send_last,
            title: row.title,
            roster_groups: row
                .roster_groups
                .split('\n')
                .filter(|group| !group.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

/// The stored form of `pubsub#roster_groups_allowed`: one group per line.
pub(crate) fn roster_groups(node: &PepNode) -> String {
    node.roster_groups.join("\n")
}

/// One row of `pep_items`.
#[derive(sqlx::FromRow)]
pub(crate) struct PepItemRow {
    item_id: String,
    payload: String,
    publisher: String,
    published_at_ms: i64,
}

impl From<PepItemRow> for PepItem {
    fn from(row: PepItemRow) -> PepItem {
        PepItem {
            id: row.item_id,
            payload: row.payload,
            publisher: row.publisher,
            published_at_ms: row.published_at_ms,
        }
    }
}

/// Removes the oldest items of node (`$1` owner, `$2` node) beyond the newest `$3`: everything up to
/// the row `$3` places below the newest, found with one backward step through `pep_items_by_node`.
pub(crate) const TRIM: &str = "DELETE FROM pep_items WHERE owner = $1 AND node = $2 AND id <= \
     (SELECT id FROM pep_items WHERE owner = $1 AND node = $2 ORDER BY id DESC LIMIT 1 OFFSET $3) \
     RETURNING item_id";

/// Implements [`crate::Pep`] for `$store` (a struct with `pool` (reads) and `writer` (writes)
/// fields); `write` begins a read-then-write transaction (see [`crate::sql::xmpp_sql_impl`]).
macro_rules! pep_sql {
    ($store:ident, write = $write:literal) => {
        mod pep_impl {
            use async_trait::async_trait;

            use super::$store;
            use $crate::rows::{db_error, now_ms, quota_i64};
            use $crate::sql::pep::{PepItemRow, PepNodeRow, TRIM, roster_groups};
            use $crate::{Pep, PepCreate, PepItem, PepNode, PepPublish, StorageResult};

            #[async_trait]
            impl Pep for $store {
                async fn nodes(&self, owner: &str) -> StorageResult<Vec<PepNode>> {
                    let rows: Vec<PepNodeRow> = sqlx::query_as(
                        "SELECT node, access_model, max_items, persist_items, notify_retract, \
                           send_last, title, roster_groups \
                         FROM pep_nodes WHERE owner = $1 ORDER BY node",
                    )
                    .bind(owner)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_error)?;
                    rows.into_iter().map(PepNode::try_from).collect()
                }

                async fn node(&self, owner: &str, node: &str) -> StorageResult<Option<PepNode>> {
                    let row: Option<PepNodeRow> = sqlx::query_as(
                        "SELECT node, access_model, max_items, persist_items, notify_retract, \
                           send_last, title, roster_groups \
                         FROM pep_nodes WHERE owner = $1 AND node = $2",
                    )
                    .bind(owner)
                    .bind(node)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error)?;
                    row.map(PepNode::try_from).transpose()
                }

                async fn create_node(
                    &self,
                    owner: &str,
                    node: &PepNode,
                    limit: usize,
                ) -> StorageResult<PepCreate> {
                    // One statement counts and writes, so two first publishes at once cannot pass
                    // the limit (on SQLite; on PostgreSQL by one each at most).
                    let created = sqlx::query(
                        "INSERT INTO pep_nodes (owner, node, access_model, max_items, \
                           persist_items, notify_retract, send_last, title, roster_groups, created_at_ms) \
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
                         WHERE (SELECT COUNT(*) FROM pep_nodes WHERE owner = $1) < $11 \
                         ON CONFLICT (owner, node) DO NOTHING \
                         RETURNING 1",
                    )
                    .bind(owner)
                    .bind(&node.node)
                    .bind(&node.access_model)
                    .bind(i64::from(node.max_items))
                    .bind(node.persist_items)
                    .bind(node.notify_retract)
                    .bind(&node.send_last_published_item)
                    .bind(&node.title)
                    .bind(roster_groups(node))
                    .bind(now_ms())
                    .bind(quota_i64(limit))
                    .fetch_optional(&self.writer)
                    .await
                    .map_err(db_error)?;
                    if created.is_some() {
                        return Ok(PepCreate::Created);
                    }
                    Ok(if self.node(owner, &node.node).await?.is_some() {
                        PepCreate::Exists
                    } else {
                        PepCreate::LimitReached
                    })
                }

                async fn configure_node(
                    &self,
                    owner: &str,
                    node: &PepNode,
                ) -> StorageResult<Option<Vec<String>>> {
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    let updated = sqlx::query(
                        "UPDATE pep_nodes SET access_model = $3, max_items = $4, \
                           persist_items = $5, notify_retract = $6, send_last = $7, title = $8, \
                           roster_groups = $9 \
                         WHERE owner = $1 AND node = $2",
                    )
                    .bind(owner)
                    .bind(&node.node)
                    .bind(&node.access_model)
                    .bind(i64::from(node.max_items))
                    .bind(node.persist_items)
                    .bind(node.notify_retract)
                    .bind(&node.send_last_published_item)
                    .bind(&node.title)
                    .bind(roster_groups(node))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?
                    .rows_affected();
                    if updated == 0 {
                        return Ok(None);
                    }
                    let trimmed: Vec<String> = sqlx::query_scalar(TRIM)
                        .bind(owner)
                        .bind(&node.node)
                        .bind(i64::from(node.max_items))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    tx.commit().await.map_err(db_error)?;
                    Ok(Some(trimmed))
                }

                async fn delete_node(&self, owner: &str, node: &str) -> StorageResult<bool> {
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    sqlx::query("DELETE FROM pep_items WHERE owner = $1 AND node = $2")
                        .bind(owner)
                        .bind(node)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    let deleted = sqlx::query("DELETE FROM pep_nodes WHERE owner = $1 AND node = $2")
                        .bind(owner)
                        .bind(node)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?
                        .rows_affected();
                    tx.commit().await.map_err(db_error)?;
                    Ok(deleted > 0)
                }

                async fn publish(
                    &self,
                    owner: &str,
                    node: &str,
                    item: &PepItem,
                ) -> StorageResult<PepPublish> {
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    // A no-op update that reads max_items and, on PostgreSQL, locks the node's row
                    // until the commit: publishes to one node are serialised.
                    let max_items: Option<i64> = sqlx::query_scalar(
                        "UPDATE pep_nodes SET max_items = max_items \
                         WHERE owner = $1 AND node = $2 RETURNING max_items",
                    )
                    .bind(owner)
                    .bind(node)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    let Some(max_items) = max_items else {
                        return Ok(PepPublish::NoNode);
                    };
                    // XEP-0060 section 7.1.2: an item with an existing id replaces it; deleted and
                    // inserted, so it becomes the newest.
                    sqlx::query(
                        "DELETE FROM pep_items WHERE owner = $1 AND node = $2 AND item_id = $3",
                    )
                    .bind(owner)
                    .bind(node)
                    .bind(&item.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    sqlx::query(
                        "INSERT INTO pep_items \
                           (owner, node, item_id, payload, publisher, published_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(owner)
                    .bind(node)
                    .bind(&item.id)
                    .bind(&item.payload)
                    .bind(&item.publisher)
                    .bind(item.published_at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    let trimmed: Vec<String> = sqlx::query_scalar(TRIM)
                        .bind(owner)
                        .bind(node)
                        .bind(max_items)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    tx.commit().await.map_err(db_error)?;
                    Ok(PepPublish::Stored { trimmed })
                }

                async fn items(
                    &self,
                    owner: &str,
                    node: &str,
                    limit: Option<usize>,
                ) -> StorageResult<Vec<PepItem>> {
                    let limit = limit.map_or(i64::MAX, quota_i64);
                    let rows: Vec<PepItemRow> = sqlx::query_as(
                        "SELECT item_id, payload, publisher, published_at_ms \
                         FROM pep_items WHERE owner = $1 AND node = $2 \
                         ORDER BY id DESC LIMIT $3",
                    )
                    .bind(owner)
                    .bind(node)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_error)?;
                    Ok(rows.into_iter().map(PepItem::from).collect())
                }

                async fn items_by_id(
                    &self,
                    owner: &str,
                    node: &str,
                    ids: &[String],
                ) -> StorageResult<Vec<PepItem>> {
                    // One seek of `pep_items_by_item_id` per id (clients ask for one or a few).
                    let mut found: Vec<(i64, PepItem)> = Vec::with_capacity(ids.len());
                    for id in ids {
                        let row: Option<(i64, String, String, String, i64)> = sqlx::query_as(
                            "SELECT id, item_id, payload, publisher, published_at_ms \
                             FROM pep_items WHERE owner = $1 AND node = $2 AND item_id = $3",
                        )
                        .bind(owner)
                        .bind(node)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_error)?;
                        if let Some((seq, id, payload, publisher, published_at_ms)) = row
                            && !found.iter().any(|(other, _)| *other == seq)
                        {
                            found.push((
                                seq,
                                PepItem {
                                    id,
                                    payload,
                                    publisher,
                                    published_at_ms,
                                },
                            ));
                        }
                    }
                    found.sort_by(|a, b| b.0.cmp(&a.0));
                    Ok(found.into_iter().map(|(_, item)| item).collect())
                }

                async fn retract(
                    &self,
                    owner: &str,
                    node: &str,
                    item_id: &str,
                ) -> StorageResult<bool> {
                    let done = sqlx::query(
                        "DELETE FROM pep_items WHERE owner = $1 AND node = $2 AND item_id = $3",
                    )
                    .bind(owner)
                    .bind(node)
                    .bind(item_id)
                    .execute(&self.writer)
                    .await
                    .map_err(db_error)?;
                    Ok(done.rows_affected() > 0)
                }

                async fn purge(&self, owner: &str, node: &str) -> StorageResult<u64> {
                    let done = sqlx::query("DELETE FROM pep_items WHERE owner = $1 AND node = $2")
                        .bind(owner)
                        .bind(node)
                        .execute(&self.writer)
                        .await
                        .map_err(db_error)?;
                    Ok(done.rows_affected())
                }

                async fn delete_all(&self, owner: &str) -> StorageResult<u64> {
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    sqlx::query("DELETE FROM pep_items WHERE owner = $1")
                        .bind(owner)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    let nodes = sqlx::query("DELETE FROM pep_nodes WHERE owner = $1")
                        .bind(owner)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?
                        .rows_affected();
                    tx.commit().await.map_err(db_error)?;
                    Ok(nodes)
                }
            }
        }
    };
}
pub(crate) use pep_sql;
