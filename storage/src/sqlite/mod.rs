//! SQLite backend (the embedded default): opening the database file, pragmas, migrations.
//!
//! `sqlite://path/to/file.db` creates the file and its parent folder if missing and runs in WAL mode with a
//! busy timeout, so concurrent writers wait instead of failing. `sqlite::memory:` is a private in-memory
//! database held on one connection that is never recycled (each SQLite connection to `:memory:` would
//! otherwise see its own empty database). Write transactions start with `BEGIN IMMEDIATE`: they take the
//! write lock up front, so a read-then-write (quota check, version bump) cannot lose a race.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlitePool, SqliteTransaction};

use crate::rows::db_error;
use crate::{Storage, StorageError, StorageResult};

mod accounts;
mod block_lists;
mod offline;
pub(crate) mod relay;
mod rosters;
mod vcards;

/// How long a writer waits for the write lock before giving up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections to a database file; SQLite serialises writers anyway, more only helps readers.
const FILE_POOL_SIZE: u32 = 8;

/// The pool every area shares.
#[derive(Clone)]
pub(crate) struct Sqlite {
    pool: SqlitePool,
}

impl Sqlite {
    /// A transaction that holds the write lock from its first statement (see the module comment).
    async fn write(&self) -> StorageResult<SqliteTransaction<'static>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)
    }
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
    let pool = pool_options.connect_with(options).await.map_err(db_error)?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .map_err(|e| StorageError::Migration(e.to_string()))?;
    tracing::info!(
        backend = "sqlite",
        in_memory,
        "storage ready, migrations applied"
    );
    let db = Sqlite { pool };
    let relay = Arc::new(relay::SqliteRelay {
        pool: db.pool.clone(),
    });
    Ok(Storage {
        accounts: Arc::new(db.clone()),
        rosters: Arc::new(db.clone()),
        offline: Arc::new(db.clone()),
        vcards: Arc::new(db.clone()),
        block_lists: Arc::new(db.clone()),
        relay_accounts: relay.clone(),
        relay_devices: relay.clone(),
        whitelist_tokens: relay.clone(),
        push_outbox: relay.clone(),
        push_audit: relay,
        backend: "sqlite",
    })
}
