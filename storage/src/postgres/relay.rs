//! PostgreSQL implementation of the relay traits (storage/src/relay): the shared SQL from
//! [`crate::relay::sql`] stamped out for `PgPool`.

use sqlx::PgPool;

/// The relay tables on a PostgreSQL pool (`writer` is the same pool: PostgreSQL has no single
/// write lock to queue for).
#[derive(Clone)]
pub(crate) struct PgRelay {
    pub(crate) pool: PgPool,
    pub(crate) writer: PgPool,
}

crate::relay::sql::relay_sql_impl!(PgRelay, sqlx::Postgres, "BEGIN", " FOR UPDATE SKIP LOCKED");
