//! Runs the relay contract cases (`herald_storage::contract_relay`) on SQLite (file and memory) and on
//! PostgreSQL when `HERALD_TEST_POSTGRES_URL` is set (a scratch database per run, dropped afterwards).

use std::time::{SystemTime, UNIX_EPOCH};

use herald_storage::{Storage, contract_relay};
use sqlx::Connection;

#[tokio::test]
async fn relay_contract_on_sqlite_memory() {
    let storage = Storage::connect("sqlite::memory:").await.unwrap();
    contract_relay::run(&storage).await;
}

#[tokio::test]
async fn relay_contract_on_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("relay.db").display()
    );
    let storage = Storage::connect(&url).await.unwrap();
    contract_relay::run(&storage).await;
}

#[tokio::test]
async fn relay_contract_on_postgres() {
    let Some(admin_url) = herald_storage::testing::postgres_url_or_skip() else {
        return;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("herald_relay_contract_{}_{nanos}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let storage = Storage::connect(&format!("{base}/{name}")).await.unwrap();
    contract_relay::run(&storage).await;
    drop(storage);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}
