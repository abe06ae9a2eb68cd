//! Runs the storage contract suite (`herald_storage::contract`) on every backend available here:
//! a fresh SQLite file, `sqlite::memory:`, and PostgreSQL when `HERALD_TEST_POSTGRES_URL` is set
//! (each run gets its own database, created and dropped by the test).
// Tests may unwrap (working rules); a failure here is a test failure.
#![allow(clippy::unwrap_used)]

use herald_storage::testing::ScratchDatabase;
use herald_storage::{
    OfflineStore, RosterItem, S2sEnqueue, S2sQueueLimits, Storage, StorageError, Subscription,
    contract,
};

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
        let limits = S2sQueueLimits {
            max_stanzas: 10,
            max_bytes: 10_000,
        };
        let queued = storage
            .s2s_queue
            .enqueue(
                "remote.example",
                owner,
                "<message to='x@remote.example'/>",
                8,
                limits,
            )
            .await
            .unwrap();
        assert!(matches!(queued, S2sEnqueue::Queued(_)), "{queued:?}");
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
    // The outbound s2s queue too (issue: a restart loses nothing that was queued).
    assert_eq!(
        storage.s2s_queue.domains().await.unwrap(),
        ["remote.example"]
    );
    let queued = storage
        .s2s_queue
        .oldest("remote.example", None, 10)
        .await
        .unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|q| (q.sender.as_str(), q.stanza.as_str(), q.enqueued_at_ms))
            .collect::<Vec<_>>(),
        [(owner, "<message to='x@remote.example'/>", 8)]
    );
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

#[tokio::test]
async fn contract_on_postgres() {
    let Some(admin_url) = herald_storage::testing::postgres_url_or_skip() else {
        return;
    };
    let scratch = ScratchDatabase::create(&admin_url, "herald_contract")
        .await
        .unwrap();
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
    scratch.drop_database().await.unwrap();
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}
