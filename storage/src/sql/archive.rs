//! Message archives (XEP-0313) and archiving preferences (XEP-0441).
//! The SQL for both backends, stamped out by [`archive_sql`] (see [`crate::sql`]); the page query is
//! assembled by [`page_statement`] from the filters a query uses, so each combination is a plain
//! index range scan (one SQL text per combination, cached as a prepared statement per connection).
//!
//! Row ids order an archive and stanza ids name its messages (see `crate::archive`): a query first
//! maps the stanza ids it names to row ids ([`LOOKUP_PREFIX`]), then pages with row-id bounds on the
//! index `(owner, id)` or, with a contact, `(owner, contact, id)`. A `start`/`end` time becomes a
//! row-id bound through a seek on `(owner, at_ms)`, exact because an owner's timestamps never go back.

use std::collections::HashMap;

use crate::{ARCHIVE_MAX_IDS, ARCHIVE_MAX_PAGE, ArchivePaging, ArchiveQuery, StorageError};

/// The columns of an [`crate::rows::ArchivedMessageRow`].
pub(crate) const MESSAGE_COLUMNS: &str = "stanza_id, contact, at_ms, outgoing, stanza";

/// Maps stanza ids to row ids: followed by `$2, $3, ...` (one per id) and `)`; `$1` is the owner.
pub(crate) const LOOKUP_PREFIX: &str =
    "SELECT stanza_id, id, at_ms FROM archive_messages WHERE owner = $1 AND stanza_id IN (";

/// A value to bind to a statement built at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// A page query ready to run: `sql` with `binds` for `$1..`, and how to read what it returns.
#[derive(Debug)]
pub(crate) struct PageStatement<'a> {
    pub(crate) sql: String,
    pub(crate) binds: Vec<Bind<'a>>,
    /// Rows come newest first and must be reversed into chronological order.
    pub(crate) backward: bool,
    /// The page size; the statement asks for one row more, to learn whether the page is complete.
    pub(crate) page_size: usize,
}

impl<'a> PageStatement<'a> {
    /// Appends ` AND {condition}` where `condition` holds one `{}` for the placeholder of `value`.
    fn and(&mut self, condition: &str, value: Bind<'a>) {
        self.binds.push(value);
        let placeholder = format!("${}", self.binds.len());
        self.sql.push_str(" AND ");
        self.sql.push_str(&condition.replace("{}", &placeholder));
    }
}

/// The stanza ids `query` names (`after-id`, `before-id`, `ids`, the RSM cursor), each once, in the
/// order given. Errors: [`StorageError::OverLimit`] above [`ARCHIVE_MAX_IDS`].
pub(crate) fn named_ids(query: &ArchiveQuery) -> Result<Vec<&str>, StorageError> {
    let cursor = match &query.paging {
        ArchivePaging::Forward { after } => after.as_deref(),
        ArchivePaging::Backward { before } => before.as_deref(),
    };
    let mut named: Vec<&str> = Vec::new();
    let all = [
        query.after_id.as_deref(),
        query.before_id.as_deref(),
        cursor,
    ]
    .into_iter()
    .flatten()
    .chain(query.ids.iter().flatten().map(String::as_str));
    for id in all {
        if !named.contains(&id) {
            if named.len() == ARCHIVE_MAX_IDS {
                return Err(StorageError::OverLimit(format!(
                    "an archive query names more than {ARCHIVE_MAX_IDS} message ids"
                )));
            }
            named.push(id);
        }
    }
    Ok(named)
}

/// The statement that maps `count` stanza ids to row ids ([`LOOKUP_PREFIX`]).
pub(crate) fn lookup_statement(count: usize) -> String {
    let placeholders: Vec<String> = (2..count + 2).map(|n| format!("${n}")).collect();
    format!("{LOOKUP_PREFIX}{})", placeholders.join(", "))
}

/// The page query for `owner` and `query`, given the row ids of the stanza ids it names (`rows`,
/// from [`lookup_statement`]). `contact_hint` follows the table name when the query has a contact
/// (see `archive_sql`). Errors: [`StorageError::UnknownArchiveId`] for a named id missing from `rows`
/// (XEP-0313 sections 4.1.3 and 4.3.2: `item-not-found`).
pub(crate) fn page_statement<'a>(
    owner: &'a str,
    query: &'a ArchiveQuery,
    rows: &HashMap<String, i64>,
    contact_hint: &str,
) -> Result<PageStatement<'a>, StorageError> {
    let row = |id: &str| {
        rows.get(id)
            .copied()
            .ok_or_else(|| StorageError::UnknownArchiveId(id.to_string()))
    };
    // Exclusive bounds on the row id: the later of `after-id` and RSM `<after>`, the earlier of
    // `before-id` and RSM `<before>` (XEP-0313 section 4.1.3 says when they coincide).
    let mut after = query.after_id.as_deref().map(row).transpose()?;
    let mut before = query.before_id.as_deref().map(row).transpose()?;
    let backward = match &query.paging {
        ArchivePaging::Forward { after: Some(id) } => {
            after = after.max(Some(row(id)?));
            false
        }
        ArchivePaging::Forward { after: None } => false,
        ArchivePaging::Backward { before: Some(id) } => {
            let cursor = row(id)?;
            before = Some(before.map_or(cursor, |b| b.min(cursor)));
            true
        }
        ArchivePaging::Backward { before: None } => true,
    };
    let page_size = query.max.min(ARCHIVE_MAX_PAGE);
    let hint = if query.with.is_some() {
        contact_hint
    } else {
        ""
    };
    let mut statement = PageStatement {
        sql: format!("SELECT {MESSAGE_COLUMNS} FROM archive_messages{hint} WHERE owner = $1"),
        binds: vec![Bind::Text(owner)],
        backward,
        page_size,
    };
    if let Some(contact) = &query.with {
        statement.and("contact = {}", Bind::Text(contact));
    }
    if let Some(after) = after {
        statement.and("id > {}", Bind::Int(after));
    }
    if let Some(before) = before {
        statement.and("id < {}", Bind::Int(before));
    }
    // XEP-0313 section 4.1.2: both ends inclusive. The first row at or after `start` (the last at or
    // before `end`) is one seek on (owner, at_ms); no such row makes the bound NULL, and the page
    // empty, as it should be.
    if let Some(start) = query.start_ms {
        statement.and(
            "id >= (SELECT id FROM archive_messages WHERE owner = $1 AND at_ms >= {} \
             ORDER BY at_ms, id LIMIT 1)",
            Bind::Int(start),
        );
    }
    if let Some(end) = query.end_ms {
        statement.and(
            "id <= (SELECT id FROM archive_messages WHERE owner = $1 AND at_ms <= {} \
             ORDER BY at_ms DESC, id DESC LIMIT 1)",
            Bind::Int(end),
        );
    }
    if let Some(ids) = &query.ids {
        if ids.is_empty() {
            // Matches nothing; `id IN ()` is not valid SQL everywhere.
            statement.sql.push_str(" AND 1 = 0");
        } else {
            let mut list = Vec::with_capacity(ids.len());
            for id in ids {
                statement.binds.push(Bind::Int(row(id)?));
                list.push(format!("${}", statement.binds.len()));
            }
            statement.sql.push_str(" AND id IN (");
            statement.sql.push_str(&list.join(", "));
            statement.sql.push(')');
        }
    }
    statement.sql.push_str(if backward {
        " ORDER BY id DESC"
    } else {
        " ORDER BY id"
    });
    statement
        .binds
        .push(Bind::Int(i64::try_from(page_size + 1).unwrap_or(i64::MAX)));
    statement
        .sql
        .push_str(&format!(" LIMIT ${}", statement.binds.len()));
    Ok(statement)
}

/// A batch of appends as the JSON array the `append_all` statement takes, in `order` (indices into
/// `messages`): objects with `owner`, `id`, `contact`, `at_ms`, `outgoing` and `stanza`.
pub(crate) fn batch_json(messages: &[crate::ArchiveAppend<'_>], order: &[usize]) -> String {
    let rows: Vec<serde_json::Value> = order
        .iter()
        .filter_map(|&i| messages.get(i))
        .map(|m| {
            serde_json::json!({
                "owner": m.owner,
                "id": m.id,
                "contact": m.contact,
                "at_ms": m.at_ms,
                "outgoing": m.direction == crate::Direction::Outgoing,
                "stanza": m.stanza,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// Implements [`crate::Archive`] for `$store` (a struct with `pool` (reads) and `writer` (writes)
/// fields of database `$db`).
///
/// - `write`: the statement that begins a write transaction.
/// - `contact_hint`: what follows the table name in a page query with a contact. SQLite's planner,
///   without statistics (nothing runs ANALYZE on a server's database), rates `(owner, id)` as good as
///   `(owner, contact, id)` once a query has two row-id bounds, and would then walk all of an owner's
///   messages between them looking for one contact's: ` INDEXED BY archive_messages_by_contact`
///   there, which also fails loudly should the index ever not fit. Empty on PostgreSQL, whose planner
///   has statistics.
/// - `append`: one statement that archives a message (`$1` owner, `$2` stanza id, `$3` contact, `$4`
///   at_ms, `$5` outgoing, `$6` stanza) with its timestamp raised to the owner's newest, so that an
///   owner's timestamps never go back, and returns the stored `at_ms`. On PostgreSQL it also orders
///   concurrent appends of one owner (see `crate::archive`).
/// - `append_all`: one statement that archives a whole batch (`$1` the JSON of [`batch_json`]) and
///   returns `(key, at_ms)` rows, the keys rising with the position in the batch (the index, or the
///   new row's id), or `""` to run `append` for each message in one transaction. On PostgreSQL that
///   transaction took two round trips more than the batch has messages; on SQLite one hand-over to
///   the connection's thread and back per message.
macro_rules! archive_sql {
    (
        $store:ident,
        $db:ty,
        write = $write:literal,
        contact_hint = $contact_hint:literal,
        append = $append:literal,
        append_all = $append_all:expr $(,)?
    ) => {
        mod archive_impl {
            use std::collections::HashMap;

            use async_trait::async_trait;

            use super::$store;
            use $crate::rows::{
                ArchivePrefsRow, ArchiveRowId, ArchivedMessageRow, assemble_prefs, db_error,
                to_u64,
            };
            use $crate::sql::archive::{
                Bind, batch_json, lookup_statement, named_ids, page_statement,
            };
            use $crate::{
                Archive, ArchiveAppend, ArchiveMark, ArchiveMetadata, ArchivePage, ArchivePrefs,
                ArchiveQuery, ArchivedMessage, Direction, StorageResult,
            };

            /// Runs the append statement on `executor` and returns the new message's mark.
            async fn append_on<'e, E>(
                executor: E,
                message: &ArchiveAppend<'_>,
            ) -> StorageResult<ArchiveMark>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                let at_ms: i64 = sqlx::query_scalar($append)
                    .bind(message.owner)
                    .bind(message.id)
                    .bind(message.contact)
                    .bind(message.at_ms)
                    .bind(message.direction == Direction::Outgoing)
                    .bind(message.stanza)
                    .fetch_one(executor)
                    .await
                    .map_err(db_error)?;
                Ok(ArchiveMark {
                    id: message.id.to_string(),
                    at_ms,
                })
            }

            #[async_trait]
            impl Archive for $store {
                async fn append(&self, message: &ArchiveAppend<'_>) -> StorageResult<ArchiveMark> {
                    append_on(&self.writer, message).await
                }

                async fn append_all(
                    &self,
                    messages: &[ArchiveAppend<'_>],
                ) -> StorageResult<Vec<ArchiveMark>> {
                    // One owner after another, in a fixed (sorted) order: on PostgreSQL each append
                    // locks its owner until the commit, and two batches locking owners in different
                    // orders could deadlock. The sort is stable, so each owner's messages keep
                    // their order.
                    let mut order: Vec<usize> = (0..messages.len()).collect();
                    order.sort_by_key(|&i| messages[i].owner);
                    let mut marks: Vec<Option<ArchiveMark>> = vec![None; messages.len()];
                    if !$append_all.is_empty() {
                        if messages.is_empty() {
                            return Ok(Vec::new());
                        }
                        let mut stored: Vec<(i64, i64)> = sqlx::query_as($append_all)
                            .bind(batch_json(messages, &order))
                            .fetch_all(&self.writer)
                            .await
                            .map_err(db_error)?;
                        // Keyed by something that rises with the batch position (the position
                        // itself, or the new row's id), in any order: the k-th smallest key is
                        // position k.
                        stored.sort_unstable_by_key(|&(key, _)| key);
                        if stored.len() == messages.len() {
                            for (&i, (_, at_ms)) in order.iter().zip(stored) {
                                marks[i] = Some(ArchiveMark {
                                    id: messages[i].id.to_string(),
                                    at_ms,
                                });
                            }
                        }
                        return marks.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
                            $crate::StorageError::Database("the batch append left out a message".into())
                        });
                    }
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    for i in order {
                        marks[i] = Some(append_on(&mut *tx, &messages[i]).await?);
                    }
                    tx.commit().await.map_err(db_error)?;
                    Ok(marks.into_iter().flatten().collect())
                }

                async fn message(
                    &self,
                    owner: &str,
                    id: &str,
                ) -> StorageResult<Option<ArchivedMessage>> {
                    let row: Option<ArchivedMessageRow> = sqlx::query_as(
                        "SELECT stanza_id, contact, at_ms, outgoing, stanza FROM archive_messages \
                         WHERE owner = $1 AND stanza_id = $2",
                    )
                    .bind(owner)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error)?;
                    Ok(row.map(ArchivedMessage::from))
                }

                async fn query(
                    &self,
                    owner: &str,
                    query: &ArchiveQuery,
                ) -> StorageResult<ArchivePage> {
                    let named = named_ids(query)?;
                    let mut rows = HashMap::with_capacity(named.len());
                    if !named.is_empty() {
                        // The ids are resolved before the page is read, in another statement: a
                        // cursor message purged in between still bounds the page by its row id.
                        let mut lookup = sqlx::query_as::<$db, ArchiveRowId>(sqlx::AssertSqlSafe(
                            lookup_statement(named.len()),
                        ))
                        .bind(owner);
                        for id in &named {
                            lookup = lookup.bind(*id);
                        }
                        for found in lookup.fetch_all(&self.pool).await.map_err(db_error)? {
                            rows.insert(found.stanza_id, found.id);
                        }
                    }
                    let statement = page_statement(owner, query, &rows, $contact_hint)?;
                    let mut page =
                        sqlx::query_as::<$db, ArchivedMessageRow>(sqlx::AssertSqlSafe(statement.sql));
                    for bind in statement.binds {
                        page = match bind {
                            Bind::Text(text) => page.bind(text),
                            Bind::Int(int) => page.bind(int),
                        };
                    }
                    let mut messages: Vec<ArchivedMessage> = page
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_error)?
                        .into_iter()
                        .map(ArchivedMessage::from)
                        .collect();
                    // One row more than the page was asked for: there is more beyond the page.
                    let complete = messages.len() <= statement.page_size;
                    messages.truncate(statement.page_size);
                    if statement.backward {
                        messages.reverse();
                    }
                    Ok(ArchivePage { messages, complete })
                }

                async fn metadata(&self, owner: &str) -> StorageResult<Option<ArchiveMetadata>> {
                    // Both ends in one statement, so from one snapshot.
                    let ends: Vec<ArchiveRowId> = sqlx::query_as(
                        "SELECT stanza_id, id, at_ms FROM (SELECT stanza_id, id, at_ms \
                           FROM archive_messages WHERE owner = $1 ORDER BY id LIMIT 1) AS oldest \
                         UNION ALL \
                         SELECT stanza_id, id, at_ms FROM (SELECT stanza_id, id, at_ms \
                           FROM archive_messages WHERE owner = $1 ORDER BY id DESC LIMIT 1) AS newest",
                    )
                    .bind(owner)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_error)?;
                    let mut ends = ends;
                    ends.sort_by_key(|row| row.id);
                    let mut ends = ends.into_iter();
                    Ok(match (ends.next(), ends.next_back()) {
                        (Some(start), end) => {
                            let start = ArchiveMark::from(start);
                            Some(ArchiveMetadata {
                                end: end.map_or_else(|| start.clone(), ArchiveMark::from),
                                start,
                            })
                        }
                        (None, _) => None,
                    })
                }

                async fn prefs(&self, owner: &str) -> StorageResult<Option<ArchivePrefs>> {
                    let rows: Vec<ArchivePrefsRow> = sqlx::query_as(
                        "SELECT p.default_mode, j.jid, j.archive FROM archive_prefs p \
                         LEFT JOIN archive_pref_jids j ON j.owner = p.owner \
                         WHERE p.owner = $1 ORDER BY j.jid",
                    )
                    .bind(owner)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_error)?;
                    assemble_prefs(rows)
                }

                async fn owners_with_prefs(&self) -> StorageResult<Vec<String>> {
                    sqlx::query_scalar("SELECT owner FROM archive_prefs ORDER BY owner")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_error)
                }

                async fn set_prefs(&self, owner: &str, prefs: &ArchivePrefs) -> StorageResult<()> {
                    let mut tx = self.writer.begin_with($write).await.map_err(db_error)?;
                    sqlx::query(
                        "INSERT INTO archive_prefs (owner, default_mode) VALUES ($1, $2) \
                         ON CONFLICT (owner) DO UPDATE SET default_mode = excluded.default_mode",
                    )
                    .bind(owner)
                    .bind(prefs.default.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    sqlx::query("DELETE FROM archive_pref_jids WHERE owner = $1")
                        .bind(owner)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    // `never` first and conflicts ignored: a JID on both lists stays on `never`.
                    let lists = [(false, &prefs.never), (true, &prefs.always)];
                    for (archive, jids) in lists {
                        for jid in jids {
                            sqlx::query(
                                "INSERT INTO archive_pref_jids (owner, jid, archive) \
                                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                            )
                            .bind(owner)
                            .bind(jid)
                            .bind(archive)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                        }
                    }
                    tx.commit().await.map_err(db_error)
                }

                async fn purge_older_than(
                    &self,
                    cutoff_ms: i64,
                    batch_rows: usize,
                ) -> StorageResult<u64> {
                    let batch = i64::try_from(batch_rows.max(1)).unwrap_or(i64::MAX);
                    let mut purged = 0_u64;
                    loop {
                        // One statement per batch, each its own transaction: the write lock (SQLite)
                        // or the row locks (PostgreSQL) are held for one batch only, and the
                        // oldest go first, so an interrupted purge leaves no holes either.
                        let deleted = sqlx::query(
                            "DELETE FROM archive_messages WHERE id IN (SELECT id FROM archive_messages \
                             WHERE at_ms < $1 ORDER BY at_ms, id LIMIT $2)",
                        )
                        .bind(cutoff_ms)
                        .bind(batch)
                        .execute(&self.writer)
                        .await
                        .map_err(db_error)?
                        .rows_affected();
                        purged += deleted;
                        if deleted < to_u64(batch, "purge batch")? {
                            return Ok(purged);
                        }
                        // Let the writers queued behind this batch go first.
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    };
}
pub(crate) use archive_sql;

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_plain_first_page_is_one_range_scan() {
        let query = ArchiveQuery {
            max: 10,
            ..ArchiveQuery::default()
        };
        let statement = page_statement("a@x", &query, &rows(&[]), " HINT").expect("statement");
        assert_eq!(
            statement.sql,
            format!(
                "SELECT {MESSAGE_COLUMNS} FROM archive_messages WHERE owner = $1 ORDER BY id LIMIT $2"
            )
        );
        assert_eq!(statement.binds, vec![Bind::Text("a@x"), Bind::Int(11)]);
        assert!(!statement.backward);
    }

    #[test]
    fn bounds_take_the_tighter_of_the_form_and_the_cursor() {
        let query = ArchiveQuery {
            with: Some("c@x".into()),
            after_id: Some("a".into()),
            before_id: Some("b".into()),
            paging: ArchivePaging::Backward {
                before: Some("c".into()),
            },
            max: 1_000,
            ..ArchiveQuery::default()
        };
        let statement = page_statement(
            "o@x",
            &query,
            &rows(&[("a", 5), ("b", 50), ("c", 40)]),
            " HINT",
        )
        .expect("ok");
        assert!(statement.sql.ends_with(
            "archive_messages HINT WHERE owner = $1 AND contact = $2 AND id > $3 AND id < $4 ORDER BY id DESC LIMIT $5"
        ));
        assert_eq!(
            statement.binds[1..],
            [
                Bind::Text("c@x"),
                Bind::Int(5),
                Bind::Int(40),
                Bind::Int(i64::try_from(ARCHIVE_MAX_PAGE).expect("small") + 1)
            ]
        );
        assert!(statement.backward);
    }

    #[test]
    fn an_unknown_id_is_named() {
        let query = ArchiveQuery {
            ids: Some(vec!["known".into(), "gone".into()]),
            ..ArchiveQuery::default()
        };
        let err = page_statement("o@x", &query, &rows(&[("known", 1)]), "").expect_err("unknown");
        assert!(
            matches!(&err, StorageError::UnknownArchiveId(id) if id == "gone"),
            "{err:?}"
        );
    }

    #[test]
    fn too_many_ids_are_refused_and_repeats_count_once() {
        let many: Vec<String> = (0..=ARCHIVE_MAX_IDS).map(|n| n.to_string()).collect();
        let query = ArchiveQuery {
            ids: Some(many),
            ..ArchiveQuery::default()
        };
        assert!(matches!(named_ids(&query), Err(StorageError::OverLimit(_))));
        let query = ArchiveQuery {
            after_id: Some("x".into()),
            ids: Some(vec!["x".into(); ARCHIVE_MAX_IDS + 5]),
            ..ArchiveQuery::default()
        };
        assert_eq!(named_ids(&query).expect("one id"), vec!["x"]);
        assert_eq!(
            lookup_statement(2),
            format!("{LOOKUP_PREFIX}$2, $3)"),
            "placeholders after the owner"
        );
    }
}
