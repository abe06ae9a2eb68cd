//! PostgreSQL backend: connection pool and migrations.
//!
//! Transactions run at READ COMMITTED. Writes that must not race take a lock first: the roster version
//! bump is an `INSERT .. ON CONFLICT DO UPDATE` (row lock on the owner's version), and an offline store
//! (one call of the function `herald_store_offline`) takes a transaction-scoped advisory lock on the
//! owner before counting. Reads that must be consistent (version plus items) use a REPEATABLE READ
//! snapshot. Every text column is `COLLATE "C"`, so sorting is byte order as on SQLite.

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::rows::db_error;
use crate::{Storage, StorageError, StorageResult};

pub(crate) mod relay;
mod warm;

/// Pool sizes [`default_pool_size`] chooses between. PostgreSQL's default `max_connections` is 100 for
/// every client together.
const POOL_SIZE_BOUNDS: (u32, u32) = (6, 20);

/// Connections when the configuration names no number: twice the CPUs this process may run on, plus
/// four, from 6 to 20.
///
/// Why this size, measured with Herald and PostgreSQL sharing one core (BENCHMARKS.md, PostgreSQL push
/// p99, 2026-12-08): more connections than the CPUs can run only queue in the kernel's scheduler, and
/// there they take CPU time from the server itself (push p99 at 1,000/s: 31-50 ms with 10 connections,
/// 19-28 ms with 4, 27-43 ms with 6); but when commits wait for the disk, as behind a large archive
/// backlog, concurrent commits share one flush, and too few connections queue them instead (the same
/// push phase right after the chat benchmark: p99 629-758 ms with 4, 175 with 6, 100-160 with 10).
pub fn default_pool_size() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpus = u32::try_from(cpus).unwrap_or(u32::MAX);
    cpus.saturating_mul(2)
        .saturating_add(4)
        .clamp(POOL_SIZE_BOUNDS.0, POOL_SIZE_BOUNDS.1)
}

/// The offline store: one call of the function of migration 0003.
pub(crate) const OFFLINE_STORE: &str = "SELECT 1 WHERE herald_store_offline($1, $2, $3, $4)";
/// An archive batch: one call of the function of migration 0009.
pub(crate) const ARCHIVE_APPEND_ALL: &str =
    "SELECT o_index, o_at_ms FROM herald_archive_append_all($1::json)";

/// The pool every area shares.
#[derive(Clone)]
pub(crate) struct Postgres {
    pool: PgPool,
    /// The same pool: writers need no queue of their own on PostgreSQL (see the SQLite backend).
    writer: PgPool,
}

crate::sql::xmpp_sql_impl!(
    Postgres,
    sqlx::Postgres,
    // READ COMMITTED; callers lock what they read-then-write (the roster version bump locks its row
    // through `ON CONFLICT DO UPDATE`, the offline store an advisory lock on its owner).
    write = "BEGIN",
    // One snapshot for the whole transaction, so the roster version and items agree.
    snapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    // The function (migration 0003) takes a transaction-scoped advisory lock on the owner, counts and
    // inserts: one round trip instead of five for BEGIN, lock, count, INSERT and COMMIT.
    offline_store = crate::postgres::OFFLINE_STORE,
    // The planner has statistics (autovacuum analyses): no index hint.
    archive_contact_hint = "",
    // The function (migration 0004) locks the owner until the commit, so an owner's row ids are
    // in commit order and a page read between two appends can never skip the earlier one.
    archive_append = "SELECT herald_archive_append($1, $2, $3, $4, $5, $6)",
    // The function (migration 0009) runs that append for each message of a batch: one round trip
    // for the archive queue's batch instead of BEGIN, one per message and COMMIT.
    archive_append_all = crate::postgres::ARCHIVE_APPEND_ALL,
    // READ COMMITTED lets two puts each count before the other commits: a transaction-scoped advisory
    // lock on the owner (class 49, for XEP-0049; the offline store and the archive use their own)
    // makes the count and the writes of one owner's puts take turns.
    private_xml_lock = "SELECT pg_advisory_xact_lock(49, hashtext($1))",
    // The same for the outbound s2s queue, per remote domain (class 5269, the s2s port): the cap's
    // count cannot race, and a domain's ids commit in the order they are drawn, so a link reading
    // the oldest never skips one that commits later.
    s2s_queue_lock = "SELECT pg_advisory_xact_lock(5269, hashtext($1))",
);

/// Connects with a pool of `pool_size` connections (at least 1).
pub(crate) async fn connect(url: &str, pool_size: u32) -> StorageResult<Storage> {
    let pool_size = pool_size.max(1);
    // Migrations first, on a connection of their own, so that every connection of the pool below
    // finds the functions its warm-up calls.
    let migrating = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .map_err(db_error)?;
    // The migrator takes an advisory lock, so servers starting together migrate once.
    sqlx::migrate!("./migrations/postgres")
        .run(&migrating)
        .await
        .map_err(|e| StorageError::Migration(e.to_string()))?;
    migrating.close().await;
    // Every connection is opened (and warmed) at start rather than during the first burst of
    // traffic, and is warmed whenever the pool replaces one (`warm`).
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .min_connections(pool_size)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                if let Err(error) = warm::warm(conn).await {
                    tracing::warn!(%error, "warming a new database connection failed; it serves cold");
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(db_error)?;
    tracing::info!(
        backend = "postgres",
        connections = pool_size,
        "storage ready, migrations applied"
    );
    let relay = relay::PgRelay {
        pool: pool.clone(),
        writer: pool.clone(),
    };
    let writer = pool.clone();
    let mut storage = Storage::from_backend(Postgres { pool, writer }, relay, "postgres");
    storage.pool_size = Some(pool_size);
    Ok(storage)
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use crate::testing::{ScratchDatabase, postgres_url_or_skip};
    use crate::{ConnectOptions, Storage};

    /// Backends connected to `database`, other than the one asking.
    async fn backends_on(url: &str, database: &str) -> i64 {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("conn");
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(database)
        .fetch_one(&mut conn)
        .await
        .expect("count");
        n
    }

    /// The configured size is the pool's: every connection is open once `connect_with` returns, and no
    /// more than that; without a size, the automatic one.
    #[tokio::test]
    async fn the_pool_opens_the_configured_number_of_connections() {
        let Some(admin) = postgres_url_or_skip() else {
            return;
        };
        let db = ScratchDatabase::create(&admin, "pool")
            .await
            .expect("scratch");
        let options = ConnectOptions {
            postgres_pool_size: Some(3),
        };
        let storage = Storage::connect_with(&db.url, options)
            .await
            .expect("connect");
        assert_eq!(storage.pool_size, Some(3));
        assert_eq!(backends_on(&db.url, db.name()).await, 3);
        drop(storage);
        let automatic = Storage::connect(&db.url).await.expect("connect");
        let expected = super::default_pool_size();
        assert_eq!(automatic.pool_size, Some(expected));
        assert!((6..=20).contains(&expected), "{expected}");
        drop(automatic);
        db.drop_database().await.expect("drop");
    }

    /// Migration 0012: the push path's functions plan generically from their first call.
    #[tokio::test]
    async fn the_push_path_functions_use_generic_plans() {
        let Some(admin) = postgres_url_or_skip() else {
            return;
        };
        let db = ScratchDatabase::create(&admin, "generic")
            .await
            .expect("scratch");
        let storage = Storage::connect(&db.url).await.expect("migrate");
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("conn");
        for function in [
            "herald_store_offline",
            "herald_archive_append",
            "herald_archive_append_all",
            "herald_relay_enqueue",
        ] {
            let (config,): (Option<Vec<String>>,) =
                sqlx::query_as("SELECT proconfig FROM pg_proc WHERE proname = $1")
                    .bind(function)
                    .fetch_one(&mut conn)
                    .await
                    .expect("function");
            assert_eq!(
                config,
                Some(vec!["plan_cache_mode=force_generic_plan".to_string()]),
                "{function}"
            );
        }
        drop(conn);
        drop(storage);
        db.drop_database().await.expect("drop");
    }
}
