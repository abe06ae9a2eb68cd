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

// An outbox batch is one call of `herald_relay_enqueue` (migration 0010): one round trip and one
// prepared statement, instead of BEGIN, five statements whose text changes with the batch size,
// and COMMIT.
crate::relay::sql::relay_sql_impl!(
    PgRelay,
    sqlx::Postgres,
    "BEGIN",
    " FOR UPDATE SKIP LOCKED",
    "SELECT o_request, o_outbox_id, o_collapsed FROM herald_relay_enqueue($1::json, $2, $3)"
);
