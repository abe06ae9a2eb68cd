//! Warming a new pool connection before it serves: the statements of the message-to-offline-user path
//! (offline store, archive batch, the relay's wake-up enqueue, claim, device read and sent mark) run once
//! on it inside a transaction that is rolled back, so nothing is left behind.
//!
//! Why: a PostgreSQL backend compiles a PL/pgSQL function on its first call and plans each statement in
//! it on first execution, and loads the catalog entries of every table and index it touches; sqlx
//! prepares each statement once per connection. On a new connection the first wake-up enqueue took
//! 6.1 ms against 0.65 ms later (statement log of a push run, BENCHMARKS.md). The relay writes one
//! batch at a time, so the first batches of a burst paid that on each of the pool's connections in
//! turn: the slow pushes of a run were the first 100 ms of the burst. Warmed when it is opened, a
//! connection pays it before any message waits on it.

use sqlx::{Connection, PgConnection};

use crate::relay::{DeliveryTarget, EnqueueRequest, NewDelivery, PushMessage};
use crate::{ArchiveAppend, Direction};

/// An owner no account can have (`.invalid`, RFC 6761 section 6.4): the rows are rolled back anyway,
/// and the advisory locks the functions take on it contend with no real owner's.
const OWNER: &str = "warm-up@warm-up.invalid";

/// Runs the hot statements once on `conn` and rolls them back. Returns how many ran. An error leaves
/// the connection usable (the transaction is rolled back when it is dropped): the caller logs it and
/// keeps the connection, which is then merely cold.
pub(crate) async fn warm(conn: &mut PgConnection) -> Result<usize, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let now_ms = 0;
    sqlx::query(super::OFFLINE_STORE)
        .bind(OWNER)
        .bind("<message/>")
        .bind(now_ms)
        .bind(1_i64)
        .fetch_optional(&mut *tx)
        .await?;
    // Two appends with ids of their own: (owner, stanza id) is unique.
    let appends = [
        ("warm-up-in", Direction::Incoming),
        ("warm-up-out", Direction::Outgoing),
    ]
    .map(|(id, direction)| ArchiveAppend {
        owner: OWNER,
        id,
        contact: OWNER,
        at_ms: now_ms,
        direction,
        stanza: "<message/>",
    });
    sqlx::query_as::<_, (i64, i64)>(super::ARCHIVE_APPEND_ALL)
        .bind(crate::sql::archive::batch_json(&appends, &[0, 1]))
        .fetch_all(&mut *tx)
        .await?;
    let wake_up = EnqueueRequest {
        message: PushMessage {
            id: "warm-up".into(),
            account_id: None,
            token_id: None,
            sender: None,
            priority: "high".into(),
            created_at_ms: now_ms,
        },
        deliveries: vec![NewDelivery {
            // Not a foreign key: a device id nothing has.
            target: DeliveryTarget::Device("warm-up".into()),
            collapse_key: "warm-up".into(),
            priority: "high".into(),
            data: None,
        }],
        // The audit table's account is a foreign key; its insert is still planned, for no row.
        audit: None,
    };
    sqlx::query_as::<_, (i64, i64, bool)>(super::relay::ENQUEUE)
        .bind(crate::relay::sql::enqueue_json(std::slice::from_ref(
            &wake_up,
        )))
        .bind(2_000_i64)
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
    sqlx::query(super::relay::DEVICES_OF_ACCOUNTS)
        .bind(serde_json::json!([OWNER]).to_string())
        .fetch_all(&mut *tx)
        .await?;
    // Due at `now_ms`: the entry just enqueued is claimed, so the claim's device join runs too.
    sqlx::query(super::relay::CLAIM)
        .bind(now_ms)
        .bind(1_i64)
        .fetch_all(&mut *tx)
        .await?;
    sqlx::query(super::relay::MARK_SENT)
        .bind(now_ms)
        .bind("[]")
        .execute(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(6)
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use crate::testing::{ScratchDatabase, postgres_url_or_skip};

    /// Every statement runs on a migrated database (a typo or a changed function signature would
    /// make the warm-up fail and the connections stay cold), and nothing it wrote is left.
    #[tokio::test]
    async fn warming_runs_every_hot_statement_and_leaves_nothing() {
        let Some(admin) = postgres_url_or_skip() else {
            return;
        };
        let db = ScratchDatabase::create(&admin, "warm")
            .await
            .expect("scratch");
        let storage = crate::Storage::connect(&db.url).await.expect("connect");
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("conn");
        assert_eq!(super::warm(&mut conn).await.expect("warm"), 6);
        for table in [
            "offline_messages",
            "archive_messages",
            "relay_messages",
            "relay_outbox",
            "relay_message_deliveries",
        ] {
            let (rows,): (i64,) =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&mut conn)
                    .await
                    .expect("count");
            assert_eq!(rows, 0, "{table}");
        }
        // The warm-up's transaction is over: a savepoint, allowed only inside a transaction block,
        // is refused.
        let savepoint = sqlx::query("SAVEPOINT still_open").execute(&mut conn).await;
        assert!(savepoint.is_err(), "still inside the warm-up's transaction");
        drop(conn);
        drop(storage);
        db.drop_database().await.expect("drop");
    }
}
