//! PostgreSQL backend: connection pool and migrations.
//!
//! Transactions run at READ COMMITTED. Writes that must not race take a lock first: the roster version
//! bump is an `INSERT .. ON CONFLICT DO UPDATE` (row lock on the owner's version), and an offline store
//! takes a transaction-scoped advisory lock on the owner before counting. Reads that must be consistent
//! (version plus items) use a REPEATABLE READ snapshot. Every text column is `COLLATE "C"`, so sorting is
//! byte order as on SQLite.

use std::sync::Arc;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, PgTransaction};

use crate::rows::db_error;
use crate::{Storage, StorageError, StorageResult};

mod accounts;
mod block_lists;
mod offline;
pub(crate) mod relay;
mod rosters;
mod vcards;

/// Connections per process; PostgreSQL's default `max_connections` is 100 for every client together.
const POOL_SIZE: u32 = 10;

/// The pool every area shares.
#[derive(Clone)]
pub(crate) struct Postgres {
    pool: PgPool,
}

impl Postgres {
    /// A read-write transaction (READ COMMITTED; callers lock what they read-then-write).
    async fn write(&self) -> StorageResult<PgTransaction<'static>> {
        self.pool.begin().await.map_err(db_error)
    }

    /// A read-only transaction on one snapshot.
    async fn snapshot(&self) -> StorageResult<PgTransaction<'static>> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(db_error)
    }
}

pub(crate) async fn connect(url: &str) -> StorageResult<Storage> {
    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .connect(url)
        .await
        .map_err(db_error)?;
    // The migrator takes an advisory lock, so servers starting together migrate once.
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .map_err(|e| StorageError::Migration(e.to_string()))?;
    tracing::info!(backend = "postgres", "storage ready, migrations applied");
    let db = Postgres { pool };
    let relay = Arc::new(relay::PgRelay {
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
        backend: "postgres",
    })
}
