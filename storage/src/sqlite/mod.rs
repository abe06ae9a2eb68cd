//! SQLite backend (the embedded default): opening the database file, pragmas, migrations.
//!
//! `sqlite://path/to/file.db` creates the file and its parent folder if missing and runs in WAL mode with a
//! busy timeout, so concurrent writers wait instead of failing. `sqlite::memory:` is a private in-memory
//! database held on one connection that is never recycled (each SQLite connection to `:memory:` would
//! otherwise see its own empty database). Write transactions start with `BEGIN IMMEDIATE`: they take the
//! write lock up front, so a read-then-write (quota check, version bump) cannot lose a race.
//!
//! Writes go through a pool of its own with one connection, reads through the others. SQLite lets one
//! writer in at a time; with writers on several connections, the losers sleep in SQLite's busy
//! handler (1, 2, 5, 10 ms and longer) instead of queueing, which put tens of milliseconds on the
//! tail of every write under load (the offline-message and push path). One writer connection turns
//! that into a fair queue in the pool; readers, in WAL mode, never wait for it.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::rows::db_error;
use crate::{Storage, StorageError, StorageResult};

pub(crate) mod relay;

/// How long a writer waits for the write lock before giving up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Reader connections to a database file (the writer has its own).
const FILE_POOL_SIZE: u32 = 8;
/// Page cache of each reader connection, in KiB (SQLite's default is 2,000 KiB per connection). Every
/// connection keeps a private copy of the pages it read, so eight readers held up to eight copies of
/// the same hot pages, which the kernel's page cache already holds once (measured: 1.2 KiB less RSS
/// per idle session with 10,000 accounts; BENCHMARKS.md). A miss costs a `pread` from that cache.
/// The writer keeps the default.
const READER_CACHE_KIB: i64 = 512;

/// The pools every area shares: `pool` for reads, `writer` (one connection) for writes.
#[derive(Clone)]
pub(crate) struct Sqlite {
    pool: SqlitePool,
    writer: SqlitePool,
}

crate::sql::xmpp_sql_impl!(
    Sqlite,
    sqlx::Sqlite,
    // Takes the write lock up front (see the module comment): a read-then-write cannot lose a race,
    // and two writers never deadlock upgrading a read lock.
    write = "BEGIN IMMEDIATE",
    // A deferred transaction: in WAL mode its reads all come from the snapshot of its first read.
    snapshot = "BEGIN",
    // A write statement holds the database write lock from its start, so one conditional INSERT
    // counts and inserts atomically.
    offline_store = "INSERT INTO offline_messages (owner, stanza, stored_at_ms) SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM offline_messages WHERE owner = $1) < $4 RETURNING id",
    // Without statistics the planner may take (owner, id) for a contact's page (see archive_sql).
    archive_contact_hint = " INDEXED BY archive_messages_by_contact",
    // The one writer orders appends; the newest timestamp of the owner is one seek on
    // (owner, at_ms), and the two-argument MAX is SQLite's scalar max.
    archive_append = "INSERT INTO archive_messages (owner, stanza_id, contact, at_ms, outgoing, stanza) SELECT $1, $2, $3, MAX($4, COALESCE((SELECT MAX(at_ms) FROM archive_messages WHERE owner = $1), $4)), $5, $6 RETURNING at_ms",
    // The whole batch in one statement: one call on the connection's thread instead of one per
    // message (each a hand-over between threads and back, the larger part of an append's cost under
    // load). Rows are inserted in batch order, so their ids rise with the position, which is what
    // the caller matches them by. An owner's timestamp is raised to the newest before it: of the
    // owner's stored rows (read before the statement inserts anything) and of the owner's earlier
    // messages in the batch (the running MAX), as one append after another would.
    archive_append_all = "INSERT INTO archive_messages (owner, stanza_id, contact, at_ms, outgoing, stanza) SELECT b.owner, b.stanza_id, b.contact, MAX(b.running_ms, COALESCE((SELECT MAX(a.at_ms) FROM archive_messages AS a WHERE a.owner = b.owner), b.running_ms)), b.outgoing, b.stanza FROM (SELECT j.key AS position, json_extract(j.value, '$.owner') AS owner, json_extract(j.value, '$.id') AS stanza_id, json_extract(j.value, '$.contact') AS contact, MAX(json_extract(j.value, '$.at_ms')) OVER (PARTITION BY json_extract(j.value, '$.owner') ORDER BY j.key ROWS UNBOUNDED PRECEDING) AS running_ms, json_extract(j.value, '$.outgoing') AS outgoing, json_extract(j.value, '$.stanza') AS stanza FROM json_each($1) AS j) AS b ORDER BY b.position RETURNING id, at_ms",
    // BEGIN IMMEDIATE already holds the database write lock for the whole put.
    private_xml_lock = "",
    // The conditional INSERT alone is atomic: it holds the write lock from its start.
    s2s_queue_lock = "",
);

/// The reader connections' options: a smaller page cache (see [`READER_CACHE_KIB`]).
fn reader_options(options: SqliteConnectOptions) -> SqliteConnectOptions {
    // A negative cache_size is in KiB (https://sqlite.org/pragma.html#pragma_cache_size).
    options.pragma("cache_size", format!("-{READER_CACHE_KIB}"))
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

pub(crate) async fn connect(url: &str) -> StorageResult<Storage> {
    let mut options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StorageError::Database(format!("invalid sqlite url: {e}")))?
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let in_memory = is_in_memory(url);
    let pool_options = if in_memory {
        // One connection, kept forever: the database lives exactly as long as it.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        if !url.contains("mode=") {
            options = options.create_if_missing(true);
        }
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent).await.map_err(|e| {
                StorageError::Database(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        // WAL lets readers run beside the writer; NORMAL sync is durable across process crashes in WAL mode.
        options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        SqlitePoolOptions::new().max_connections(FILE_POOL_SIZE)
    };
    let readers = if in_memory {
        options.clone()
    } else {
        reader_options(options.clone())
    };
    let pool = pool_options.connect_with(readers).await.map_err(db_error)?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .map_err(|e| StorageError::Migration(e.to_string()))?;
    let writer = if in_memory {
        // The one connection holds the database; it is the writer too.
        pool.clone()
    } else {
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(db_error)?
    };
    tracing::info!(
        backend = "sqlite",
        in_memory,
        "storage ready, migrations applied"
    );
    let relay = relay::SqliteRelay {
        pool: pool.clone(),
        writer: writer.clone(),
    };
    Ok(Storage::from_backend(
        Sqlite { pool, writer },
        relay,
        "sqlite",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{ConnectOptions, Row};

    #[tokio::test]
    async fn readers_keep_a_smaller_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("cache.db"))
            .create_if_missing(true);
        let mut reader = reader_options(options.clone()).connect().await.unwrap();
        let size: i64 = sqlx::query("PRAGMA cache_size")
            .fetch_one(&mut reader)
            .await
            .unwrap()
            .get(0);
        assert_eq!(size, -READER_CACHE_KIB);
        let mut writer = options.connect().await.unwrap();
        let size: i64 = sqlx::query("PRAGMA cache_size")
            .fetch_one(&mut writer)
            .await
            .unwrap()
            .get(0);
        assert_eq!(size, -2000, "the writer keeps SQLite's default");
    }

    /// PEP reads and trims are index seeks on an empty, unanalysed database, so a busy node (an OMEMO
    /// bundle node with many items, a device list republished often) stays fast: the newest N and
    /// the trim walk `pep_items_by_node` from the end, an item by id is one `pep_items_by_item_id` seek.
    #[tokio::test]
    async fn pep_reads_are_index_seeks() {
        use crate::sql::pep::TRIM;

        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .unwrap();
        let newest = "SELECT item_id, payload, publisher, published_at_ms FROM pep_items \
                      WHERE owner = $1 AND node = $2 ORDER BY id DESC LIMIT $3";
        let by_id = "SELECT id FROM pep_items WHERE owner = $1 AND node = $2 AND item_id = $3";
        for (statement, index) in [
            (newest, "pep_items_by_node"),
            (TRIM, "pep_items_by_node"),
            (by_id, "pep_items_by_item_id"),
        ] {
            let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {statement}"
            )))
            .bind("o")
            .bind("n")
            .bind(if statement == by_id { "i" } else { "1" })
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{statement}: {plan:?}"
            );
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN pep_items")),
                "{statement}: {plan:?}"
            );
        }
    }

    /// The outbound s2s queue's reads and the cap's counts are range scans of `s2s_queue_by_domain`
    /// on an empty, unanalysed database: a link task reads the oldest N of a busy domain without
    /// walking the others' stanzas.
    #[tokio::test]
    async fn s2s_queue_reads_are_index_range_scans() {
        use crate::sql::s2s_queue::{ENQUEUE, OLDEST, remove_statement};

        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .unwrap();
        let remove = remove_statement(2);
        for statement in [OLDEST, ENQUEUE, remove.as_str()] {
            let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {statement}"
            )))
            .bind("remote.example")
            .bind(1_i64)
            .bind(2_i64)
            .bind(3_i64)
            .bind(4_i64)
            .bind(5_i64)
            .bind(6_i64)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN s2s_queue")),
                "{statement}: {plan:?}"
            );
            if statement == OLDEST {
                assert!(
                    plan.iter()
                        .any(|step| step.contains("s2s_queue_by_domain (domain=? AND id>?)")),
                    "{plan:?}"
                );
            }
        }
    }

    /// The archive's page statements are index range scans on an empty, unanalysed database, which is
    /// what SQLite's planner sees in production (nothing runs ANALYZE): no plan may scan the table,
    /// and a contact's page keeps to the contact index even with two row-id bounds (where, unhinted,
    /// the planner took (owner, id) and filtered by contact).
    #[tokio::test]
    async fn archive_pages_are_index_range_scans() {
        use crate::sql::archive::{Bind, lookup_statement, page_statement};
        use crate::{ArchivePaging, ArchiveQuery};

        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .unwrap();
        let rows = [("a".to_string(), 1_i64), ("b".to_string(), 9)]
            .into_iter()
            .collect();
        let cases = [
            (
                ArchiveQuery::default(),
                "archive_messages_by_owner (owner=?)",
            ),
            (
                ArchiveQuery {
                    paging: ArchivePaging::Forward {
                        after: Some("a".into()),
                    },
                    ..ArchiveQuery::default()
                },
                "archive_messages_by_owner (owner=? AND id>?)",
            ),
            (
                ArchiveQuery {
                    with: Some("c".into()),
                    start_ms: Some(5),
                    paging: ArchivePaging::Backward {
                        before: Some("b".into()),
                    },
                    ..ArchiveQuery::default()
                },
                "archive_messages_by_contact (owner=? AND contact=? AND id>? AND id<?)",
            ),
        ];
        for (query, expected) in cases {
            let statement = page_statement(
                "o",
                &query,
                &rows,
                " INDEXED BY archive_messages_by_contact",
            )
            .unwrap();
            let mut explain = sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {}",
                statement.sql
            )));
            for bind in statement.binds {
                explain = match bind {
                    Bind::Text(text) => explain.bind(text),
                    Bind::Int(int) => explain.bind(int),
                };
            }
            let plan: Vec<String> = explain
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>("detail"))
                .collect();
            assert!(
                plan.iter().any(|step| step.contains(expected)),
                "{query:?}: {plan:?}"
            );
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN")),
                "{query:?}: {plan:?}"
            );
        }
        let lookup: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            lookup_statement(2)
        )))
        .bind("o")
        .bind("a")
        .bind("b")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect();
        assert!(
            lookup.iter().any(
                |step| step.contains("archive_messages_by_stanza_id (owner=? AND stanza_id=?)")
            ),
            "{lookup:?}"
        );
    }
}
