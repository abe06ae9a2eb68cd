//! SQLite implementation of the relay traits (storage/src/relay): the shared SQL from
//! [`crate::relay::sql`] stamped out for `SqlitePool`.

use sqlx::SqlitePool;

/// The relay tables on a SQLite database: reads on `pool`, writes on `writer` (see the module comment
/// of the SQLite backend).
#[derive(Clone)]
pub(crate) struct SqliteRelay {
    pub(crate) pool: SqlitePool,
    pub(crate) writer: SqlitePool,
}

// Each statement is a call on the connection's thread, not a network round trip: the outbox batch
// runs as statements in one transaction, and a worker's claim as three statements.
crate::relay::sql::relay_sql_impl!(
    SqliteRelay,
    sqlx::Sqlite,
    "BEGIN IMMEDIATE",
    "",
    "",
    "",
    "",
    "",
    ""
);
