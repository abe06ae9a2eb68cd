//! Contract: offline message storage (XEP-0160): order, quota, removal up to an id.

use tokio::task::JoinSet;

use crate::{OfflineStore, Storage};

/// Offline messages keep their order, respect the quota and are removed only up to an id.
pub async fn offline_messages(storage: &Storage) {
    let offline = &storage.offline;
    let alice = "alice@offline.example";
    let bob = "bob@offline.example";
    assert_eq!(offline.count(alice).await.expect("count"), 0);
    assert!(offline.fetch(alice).await.expect("fetch").is_empty());

    let stanzas = [
        "<message id='1'/>",
        "<message id='2'>ü</message>",
        "<message id='3'/>",
    ];
    for (at, stanza) in (1_000..).zip(stanzas) {
        assert_eq!(
            offline.store(alice, stanza, at, 3).await.expect("store"),
            OfflineStore::Stored
        );
    }
    offline
        .store(bob, "<message id='b'/>", 5, 10)
        .await
        .expect("store bob");
    let fetched = offline.fetch(alice).await.expect("fetch");
    assert_eq!(
        fetched
            .iter()
            .map(|m| m.stanza.as_str())
            .collect::<Vec<_>>(),
        stanzas
    );
    assert_eq!(
        fetched.iter().map(|m| m.stored_at_ms).collect::<Vec<_>>(),
        [1_000, 1_001, 1_002]
    );
    assert!(
        fetched.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase: {fetched:?}"
    );
    assert_eq!(
        offline
            .fetch(alice)
            .await
            .expect("fetch is not destructive"),
        fetched
    );

    // Full: nothing is stored. A zero quota stores nothing at all.
    assert_eq!(
        offline
            .store(alice, "<message id='4'/>", 9, 3)
            .await
            .expect("store"),
        OfflineStore::QuotaExceeded
    );
    assert_eq!(offline.fetch(alice).await.expect("fetch"), fetched);
    assert_eq!(
        offline
            .store("carol@offline.example", "<m/>", 9, 0)
            .await
            .expect("store"),
        OfflineStore::QuotaExceeded
    );
    assert_eq!(
        offline.count("carol@offline.example").await.expect("count"),
        0
    );

    assert_eq!(
        offline
            .remove_up_to(alice, fetched[1].id)
            .await
            .expect("remove"),
        2
    );
    assert_eq!(
        offline.fetch(alice).await.expect("fetch"),
        fetched[2..].to_vec()
    );
    assert_eq!(
        offline
            .remove_up_to(alice, fetched[1].id)
            .await
            .expect("remove again"),
        0
    );
    assert_eq!(offline.count(alice).await.expect("count"), 1);
    assert_eq!(
        offline.count(bob).await.expect("count"),
        1,
        "other owners untouched"
    );

    // Ids keep growing even after the newest message was deleted.
    assert_eq!(
        offline
            .remove_up_to(alice, i64::MAX)
            .await
            .expect("remove all"),
        1
    );
    assert_eq!(offline.count(alice).await.expect("count"), 0);
    offline
        .store(alice, "<message id='5'/>", 2_000, 3)
        .await
        .expect("store");
    let after = offline.fetch(alice).await.expect("fetch");
    assert_eq!(after.len(), 1);
    assert!(
        after[0].id > fetched[2].id,
        "{} > {}",
        after[0].id,
        fetched[2].id
    );
}

/// Concurrent stores never exceed the quota (the check and the insert are one atomic step).
pub async fn concurrent_offline_quota(storage: &Storage) {
    const QUOTA: usize = 5;
    const ATTEMPTS: usize = 24;
    let owner = "busy@concurrent.example";
    let mut tasks = JoinSet::new();
    for n in 0..ATTEMPTS {
        let storage = storage.clone();
        tasks.spawn(async move {
            let stanza = format!("<message id='{n}'/>");
            storage
                .offline
                .store(owner, &stanza, 0, QUOTA)
                .await
                .expect("store")
        });
    }
    let outcomes = tasks.join_all().await;
    let stored = outcomes
        .iter()
        .filter(|o| **o == OfflineStore::Stored)
        .count();
    assert_eq!(stored, QUOTA, "{outcomes:?}");
    assert_eq!(
        storage.offline.count(owner).await.expect("count"),
        QUOTA as u64
    );
}
