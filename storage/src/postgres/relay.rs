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
pub(crate) const ENQUEUE: &str =
    "SELECT o_request, o_outbox_id, o_collapsed FROM herald_relay_enqueue($1::json, $2, $3)";

// A worker's round in one statement: the claim, the devices of what it claimed, and when the
// earliest entry left pending is due. The sibling sub-query sees the table as it was before the
// claim (one snapshot for the whole statement), hence `NOT IN claimed`.
pub(crate) const CLAIM: &str = "WITH claimed AS (UPDATE relay_outbox SET status = 'sending', updated_at_ms = $1 WHERE id IN (SELECT id FROM relay_outbox WHERE status = 'pending' AND next_attempt_at_ms <= $1 ORDER BY next_attempt_at_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, device_id, remote_endpoint, remote_token, collapse_key, priority, data, status, attempts, next_attempt_at_ms, reason, created_at_ms) \
     SELECT c.id, c.device_id, c.remote_endpoint, c.remote_token, c.collapse_key, c.priority, c.data, c.status, c.attempts, c.next_attempt_at_ms, c.reason, c.created_at_ms, \
     d.id AS d_id, d.account_id AS d_account_id, d.kind AS d_kind, d.name AS d_name, d.device_id AS d_device_id, d.active AS d_active, d.token AS d_token, d.apns_topic AS d_apns_topic, d.apns_sandbox AS d_apns_sandbox, d.webpush_p256dh AS d_webpush_p256dh, d.webpush_auth AS d_webpush_auth, d.created_at_ms AS d_created_at_ms, \
     (SELECT MIN(p.next_attempt_at_ms) FROM relay_outbox p WHERE p.status = 'pending' AND p.id NOT IN (SELECT id FROM claimed)) AS next_due_at_ms \
     FROM claimed c LEFT JOIN relay_devices d ON d.id = c.device_id";

// The ids as one JSON array: one statement text whatever their number.
pub(crate) const DEVICES_OF_ACCOUNTS: &str = "SELECT * FROM relay_devices WHERE account_id IN (SELECT value FROM json_array_elements_text($1::json)) ORDER BY account_id, created_at_ms, id";

pub(crate) const MARK_SENT: &str = "UPDATE relay_outbox SET status = 'sent', attempts = attempts + 1, reason = NULL, remote_token = CASE WHEN remote_token IS NULL THEN NULL ELSE '' END, updated_at_ms = $1 WHERE id IN (SELECT value::BIGINT FROM json_array_elements_text($2::json))";

// Claiming the entries a wake-up batch just made: the ids as one JSON array, as above.
pub(crate) const CLAIM_IDS: &str = "UPDATE relay_outbox SET status = 'sending', updated_at_ms = $1 WHERE status = 'pending' AND next_attempt_at_ms <= $1 AND id IN (SELECT value::BIGINT FROM json_array_elements_text($2::json)) RETURNING id, device_id, remote_endpoint, remote_token, collapse_key, priority, data, status, attempts, next_attempt_at_ms, reason, created_at_ms";

crate::relay::sql::relay_sql_impl!(
    PgRelay,
    sqlx::Postgres,
    "BEGIN",
    " FOR UPDATE SKIP LOCKED",
    crate::postgres::relay::ENQUEUE,
    crate::postgres::relay::CLAIM,
    crate::postgres::relay::DEVICES_OF_ACCOUNTS,
    crate::postgres::relay::MARK_SENT,
    crate::postgres::relay::CLAIM_IDS,
);
