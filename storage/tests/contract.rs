//! Runs the storage contract suite (`herald_storage::contract`) on every backend available here:
//! a fresh SQLite file, `sqlite::memory:`, and PostgreSQL when `HERALD_TEST_POSTGRES_URL` is set
//! (each run gets its own database, created and dropped by the test).
// Tests may unwrap (working rules); a failure here is a test failure.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use herald_storage::{OfflineStore, RosterItem, Storage, StorageError, Subscription, contract};
use sqlx::Connection;

fn sqlite_file_url(dir: &tempfile::TempDir, name: &str) -> String {
    format!("sqlite://{}?mode=rwc", dir.path().join(name).display())
}

#[tokio::test]
async fn contract_on_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::connect(&sqlite_file_url(&dir, "herald.db"))
        .await
        .unwrap();
    assert_eq!(storage.backend, "sqlite");
    contract::run_all(&storage).await;
}

#[tokio::test]
async fn contract_on_sqlite_memory() {
    let storage = Storage::connect("sqlite::memory:").await.unwrap();
    contract::run_all(&storage).await;
}

#[tokio::test]
async fn sqlite_memory_databases_are_separate() {
    let one = Storage::connect("sqlite::memory:").await.unwrap();
    let two = Storage::connect("sqlite::memory:").await.unwrap();
    one.vcards.set("a@example.org", "<vCard/>").await.unwrap();
    assert_eq!(two.vcards.get("a@example.org").await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_creates_missing_parent_folders_without_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/nested/herald.db");
    let storage = Storage::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    storage
        .vcards
        .set("a@example.org", "<vCard/>")
        .await
        .unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_file_url(&dir, "restart.db");
    let owner = "alice@restart.example";
    let juliet = RosterItem {
        contact: "juliet@restart.example".into(),
        subscription: Subscription::Both,
        in_roster: true,
        groups: vec!["Friends".into()],
        ..RosterItem::default()
    };
    let (version, id) = {
        let storage = Storage::connect(&url).await.unwrap();
        let credentials = herald_storage::Credentials {
            sha1: herald_storage::ScramKeys {
                salt: vec![1],
                iterations: 4096,
                stored_key: vec![2],
                server_key: vec![3],
            },
            sha256: herald_storage::ScramKeys {
                salt: vec![4],
                iterations: 4096,
                stored_key: vec![5],
                server_key: vec![6],
            },
        };
        storage.accounts.create(owner, &credentials).await.unwrap();
        let version = storage.rosters.upsert(owner, &juliet).await.unwrap();
        let stored = storage
            .offline
            .store(owner, "<message/>", 7, 10)
            .await
            .unwrap();
        assert_eq!(stored, OfflineStore::Stored);
        (version, storage.offline.fetch(owner).await.unwrap()[0].id)
    };
    // A second open applies no migration twice and sees everything committed by the first.
    let storage = Storage::connect(&url).await.unwrap();
    assert!(storage.accounts.exists(owner).await.unwrap());
    assert_eq!(
        storage.rosters.items(owner).await.unwrap(),
        (version, vec![juliet])
    );
    let messages = storage.offline.fetch(owner).await.unwrap();
    assert_eq!(messages.iter().map(|m| m.id).collect::<Vec<_>>(), [id]);
    let again = storage
        .accounts
        .create(
            owner,
            &storage.accounts.credentials(owner).await.unwrap().unwrap(),
        )
        .await;
    assert!(matches!(again, Err(StorageError::AlreadyExists)));
}

#[tokio::test]
async fn unknown_url_is_rejected() {
    let err = Storage::connect("mysql://localhost/herald")
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::UnsupportedUrl(_)), "{err:?}");
}

/// A database of its own on the server named by `HERALD_TEST_POSTGRES_URL`, dropped on `drop_it`.
struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(admin_url: &str) -> ScratchDatabase {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "herald_contract_{}_{}_{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        ScratchDatabase {
            admin_url: admin_url.to_string(),
            url: with_database(admin_url, &name),
            name,
        }
    }

    async fn drop_it(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        // FORCE: the pool under test may still hold connections.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
    }
}

/// `url` with its database (the path) replaced by `name`, keeping any `?query`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[test]
fn database_is_replaced_in_postgres_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1/test", "x"),
        "postgres://postgres@127.0.0.1/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h:5432/db?sslmode=disable", "x"),
        "postgres://u:p@h:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
}

#[tokio::test]
async fn contract_on_postgres() {
    let Ok(admin_url) = std::env::var("HERALD_TEST_POSTGRES_URL") else {
        eprintln!("HERALD_TEST_POSTGRES_URL not set: PostgreSQL contract skipped");
        return;
    };
    let scratch = ScratchDatabase::create(&admin_url).await;
    let url = scratch.url.clone();
    // In a task of its own, so the scratch database is dropped even when the suite fails.
    let outcome = tokio::spawn(async move {
        let storage = Storage::connect(&url).await.unwrap();
        assert_eq!(storage.backend, "postgres");
        contract::run_all(&storage).await;
        // Connecting again to a migrated database applies nothing twice.
        let again = Storage::connect(&url).await.unwrap();
        assert!(again.accounts.exists("stay@cascade.example").await.unwrap());
    })
    .await;
    scratch.drop_it().await;
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}
