//! The behaviour every storage backend must show; run on SQLite always and on PostgreSQL when
//! `HERALD_TEST_POSTGRES_URL` is set.
//!
//! Each `pub async fn` checks one area and panics (like `assert!`) on the first difference, so it can be
//! called from any crate's tests. They expect a fresh, empty [`Storage`]: each uses its own domain and JIDs,
//! so they may share one storage and run in any order, but not twice on the same one. [`run_all`] runs
//! them all. Covers RFC 6121 section 2.6 (roster versions), XEP-0160 (offline order and quota), XEP-0054
//! (vCard replace) and XEP-0191 (block list semantics) as far as storage is concerned.

use tokio::task::JoinSet;

use crate::{
    Credentials, OfflineStore, RosterItem, ScramKeys, Storage, StorageError, Subscription,
};

/// Runs every check below on `storage`, which must be fresh.
pub async fn run_all(storage: &Storage) {
    accounts(storage).await;
    rosters(storage).await;
    offline_messages(storage).await;
    vcards(storage).await;
    block_lists(storage).await;
    account_delete_cascades(storage).await;
    concurrent_offline_quota(storage).await;
    concurrent_roster_versions(storage).await;
}

/// Distinct credentials for each `seed`, with iteration counts spanning the `u32` range.
fn credentials(seed: u8) -> Credentials {
    let keys = |tag: u8, iterations: u32| ScramKeys {
        salt: vec![seed, tag, 0, 255],
        iterations,
        stored_key: vec![seed ^ tag; 20],
        server_key: vec![tag; 32],
    };
    Credentials {
        sha1: keys(1, 4096),
        sha256: keys(2, u32::MAX),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut out = strings(items);
    out.sort();
    out
}

/// Create, read, replace, delete and list accounts.
pub async fn accounts(storage: &Storage) {
    let accounts = &storage.accounts;
    let alice = "alice@accounts.example";
    assert!(!accounts.exists(alice).await.expect("exists"));
    assert_eq!(
        accounts.credentials(alice).await.expect("credentials"),
        None
    );
    assert!(
        !accounts
            .set_credentials(alice, &credentials(1))
            .await
            .expect("set missing")
    );
    assert!(!accounts.delete(alice).await.expect("delete missing"));

    accounts
        .create(alice, &credentials(1))
        .await
        .expect("create");
    assert!(accounts.exists(alice).await.expect("exists"));
    assert_eq!(
        accounts.credentials(alice).await.expect("read"),
        Some(credentials(1))
    );
    let duplicate = accounts.create(alice, &credentials(2)).await;
    assert!(
        matches!(duplicate, Err(StorageError::AlreadyExists)),
        "duplicate: {duplicate:?}"
    );
    assert_eq!(
        accounts.credentials(alice).await.expect("read"),
        Some(credentials(1))
    );

    assert!(
        accounts
            .set_credentials(alice, &credentials(3))
            .await
            .expect("set")
    );
    assert_eq!(
        accounts.credentials(alice).await.expect("read"),
        Some(credentials(3))
    );

    // Sorted by byte order, whatever the database's locale; other domains (even subdomains) excluded.
    let on_domain = [
        "Bob@accounts.example",
        "a.b@accounts.example",
        "a-b@accounts.example",
        "zed@accounts.example",
    ];
    for (seed, jid) in (10..).zip(on_domain) {
        accounts
            .create(jid, &credentials(seed))
            .await
            .expect("create");
    }
    accounts
        .create("carol@sub.accounts.example", &credentials(20))
        .await
        .expect("create");
    accounts
        .create("dave@other.example", &credentials(21))
        .await
        .expect("create");
    let mut expected = on_domain.to_vec();
    expected.push(alice);
    assert_eq!(
        accounts.list("accounts.example").await.expect("list"),
        sorted(&expected)
    );
    assert_eq!(
        accounts.list("other.example").await.expect("list"),
        strings(&["dave@other.example"])
    );
    assert!(
        accounts
            .list("nobody.example")
            .await
            .expect("list")
            .is_empty()
    );

    assert!(accounts.delete(alice).await.expect("delete"));
    assert!(!accounts.exists(alice).await.expect("exists"));
    assert_eq!(accounts.credentials(alice).await.expect("read"), None);
    assert!(!accounts.delete(alice).await.expect("delete again"));
    assert_eq!(
        accounts.list("accounts.example").await.expect("list"),
        sorted(&on_domain)
    );
    // The JID is free again.
    accounts
        .create(alice, &credentials(4))
        .await
        .expect("re-create");
    assert_eq!(
        accounts.credentials(alice).await.expect("read"),
        Some(credentials(4))
    );
}

fn item(contact: &str) -> RosterItem {
    RosterItem {
        contact: contact.to_string(),
        name: Some(format!("Name of {contact}")),
        subscription: Subscription::Both,
        in_roster: true,
        groups: strings(&["Friends"]),
        ..RosterItem::default()
    }
}

/// Roster items round-trip every field, and every change (only a change) bumps the version.
pub async fn rosters(storage: &Storage) {
    let rosters = &storage.rosters;
    let romeo = "romeo@rosters.example";
    let juliet = "juliet@rosters.example";
    assert_eq!(rosters.items(romeo).await.expect("items"), (0, vec![]));
    assert_eq!(rosters.item(romeo, juliet).await.expect("item"), None);
    assert_eq!(
        rosters.remove(romeo, juliet).await.expect("remove missing"),
        None
    );
    assert_eq!(
        rosters.items(romeo).await.expect("items").0,
        0,
        "removing nothing is no change"
    );

    let first = item(juliet);
    let v1 = rosters.upsert(romeo, &first).await.expect("upsert");
    assert!(v1 > 0);
    assert_eq!(
        rosters.item(romeo, juliet).await.expect("item"),
        Some(first.clone())
    );
    assert_eq!(
        rosters.items(romeo).await.expect("items"),
        (v1, vec![first])
    );

    // Every flag flipped, no name, groups in a given order with a repeat (stored once, order kept).
    let pending = RosterItem {
        contact: juliet.to_string(),
        name: None,
        subscription: Subscription::None,
        pending_out: true,
        pending_in: true,
        pre_approved: true,
        in_roster: false,
        groups: strings(&["Zeta", "Alpha", "Zeta", "Mu ü"]),
    };
    let v2 = rosters.upsert(romeo, &pending).await.expect("upsert");
    assert!(v2 > v1, "{v2} > {v1}");
    let stored = rosters
        .item(romeo, juliet)
        .await
        .expect("item")
        .expect("present");
    assert_eq!(
        stored,
        RosterItem {
            groups: strings(&["Zeta", "Alpha", "Mu ü"]),
            ..pending
        }
    );

    // Every subscription state survives; items come sorted by contact.
    let mut version = v2;
    let mut expected = vec![stored];
    for (contact, subscription) in [
        ("benvolio@rosters.example", Subscription::To),
        ("Tybalt@rosters.example", Subscription::From),
        ("nurse@rosters.example", Subscription::Both),
        ("friar@rosters.example", Subscription::None),
    ] {
        let next = RosterItem {
            subscription,
            groups: vec![],
            ..item(contact)
        };
        let bumped = rosters.upsert(romeo, &next).await.expect("upsert");
        assert!(bumped > version, "{bumped} > {version}");
        version = bumped;
        expected.push(next);
    }
    expected.sort_by(|a, b| a.contact.cmp(&b.contact));
    assert_eq!(
        rosters.items(romeo).await.expect("items"),
        (version, expected.clone())
    );

    // Another owner's roster is separate, and changing it leaves romeo's version alone.
    let mercutio = "mercutio@rosters.example";
    assert_eq!(rosters.items(mercutio).await.expect("items"), (0, vec![]));
    rosters
        .upsert(mercutio, &item(juliet))
        .await
        .expect("upsert other");
    assert_eq!(rosters.items(romeo).await.expect("items").0, version);

    let removed = rosters
        .remove(romeo, juliet)
        .await
        .expect("remove")
        .expect("was present");
    assert!(removed > version, "{removed} > {version}");
    assert_eq!(rosters.item(romeo, juliet).await.expect("item"), None);
    expected.retain(|i| i.contact != juliet);
    assert_eq!(
        rosters.items(romeo).await.expect("items"),
        (removed, expected)
    );
    assert_eq!(
        rosters.remove(romeo, juliet).await.expect("remove again"),
        None
    );
    assert_eq!(rosters.items(romeo).await.expect("items").0, removed);
    assert_eq!(
        rosters.item(mercutio, juliet).await.expect("item"),
        Some(item(juliet))
    );

    // Re-adding after removal starts without the old groups.
    let again = RosterItem {
        groups: vec![],
        ..item(juliet)
    };
    assert!(rosters.upsert(romeo, &again).await.expect("re-add") > removed);
    assert_eq!(
        rosters.item(romeo, juliet).await.expect("item"),
        Some(again)
    );
}

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

/// A vCard is replaced whole, per owner.
pub async fn vcards(storage: &Storage) {
    let vcards = &storage.vcards;
    let alice = "alice@vcards.example";
    assert_eq!(vcards.get(alice).await.expect("get"), None);
    let first = "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>";
    vcards.set(alice, first).await.expect("set");
    assert_eq!(
        vcards.get(alice).await.expect("get").as_deref(),
        Some(first)
    );
    let second = "<vCard xmlns='vcard-temp'><NICKNAME>ä</NICKNAME></vCard>";
    vcards.set(alice, second).await.expect("replace");
    assert_eq!(
        vcards.get(alice).await.expect("get").as_deref(),
        Some(second)
    );
    assert_eq!(vcards.get("bob@vcards.example").await.expect("get"), None);
}

/// Block and unblock are idempotent; the list is deduplicated and sorted.
pub async fn block_lists(storage: &Storage) {
    let blocks = &storage.block_lists;
    let alice = "alice@blocks.example";
    let bob = "bob@blocks.example";
    assert!(blocks.list(alice).await.expect("list").is_empty());
    blocks.block(alice, &[]).await.expect("block nothing");
    let jids = [
        "romeo@x.example",
        "Romeo@x.example",
        "x.example",
        "romeo@x.example/orchard",
        "romeo@x.example",
    ];
    blocks.block(alice, &strings(&jids)).await.expect("block");
    let all = sorted(&jids[..4]);
    assert_eq!(blocks.list(alice).await.expect("list"), all);
    blocks
        .block(alice, &strings(&["x.example"]))
        .await
        .expect("block again");
    assert_eq!(blocks.list(alice).await.expect("list"), all);
    blocks
        .block(bob, &strings(&["x.example"]))
        .await
        .expect("block bob");

    blocks
        .unblock(alice, &strings(&["x.example", "nobody@x.example"]))
        .await
        .expect("unblock");
    assert_eq!(
        blocks.list(alice).await.expect("list"),
        sorted(&[
            "romeo@x.example",
            "Romeo@x.example",
            "romeo@x.example/orchard"
        ])
    );
    blocks
        .unblock(alice, &strings(&["x.example"]))
        .await
        .expect("unblock again");
    blocks.unblock_all(alice).await.expect("unblock all");
    assert!(blocks.list(alice).await.expect("list").is_empty());
    blocks.unblock_all(alice).await.expect("unblock all again");
    assert_eq!(
        blocks.list(bob).await.expect("list"),
        strings(&["x.example"]),
        "other owners untouched"
    );
}

/// Deleting an account deletes everything it owns, and nothing of anyone else.
pub async fn account_delete_cascades(storage: &Storage) {
    let gone = "gone@cascade.example";
    let stay = "stay@cascade.example";
    for (seed, jid) in [(1, gone), (2, stay)] {
        storage
            .accounts
            .create(jid, &credentials(seed))
            .await
            .expect("create");
        storage
            .rosters
            .upsert(jid, &item("friend@cascade.example"))
            .await
            .expect("roster");
        storage
            .offline
            .store(jid, "<message/>", 1, 10)
            .await
            .expect("offline");
        storage
            .vcards
            .set(jid, "<vCard xmlns='vcard-temp'/>")
            .await
            .expect("vcard");
        storage
            .block_lists
            .block(jid, &strings(&["spam.example"]))
            .await
            .expect("block");
    }
    assert!(storage.accounts.delete(gone).await.expect("delete"));
    assert!(!storage.accounts.exists(gone).await.expect("exists"));
    assert_eq!(
        storage.rosters.items(gone).await.expect("items"),
        (0, vec![])
    );
    assert_eq!(storage.offline.count(gone).await.expect("count"), 0);
    assert_eq!(storage.vcards.get(gone).await.expect("vcard"), None);
    assert!(
        storage
            .block_lists
            .list(gone)
            .await
            .expect("blocks")
            .is_empty()
    );

    assert!(storage.accounts.exists(stay).await.expect("exists"));
    assert_eq!(
        storage.rosters.items(stay).await.expect("items").1,
        vec![item("friend@cascade.example")]
    );
    assert_eq!(storage.offline.count(stay).await.expect("count"), 1);
    assert!(storage.vcards.get(stay).await.expect("vcard").is_some());
    assert_eq!(
        storage.block_lists.list(stay).await.expect("blocks"),
        strings(&["spam.example"])
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

/// Concurrent roster changes each get their own version, and the last one is the roster's version.
pub async fn concurrent_roster_versions(storage: &Storage) {
    const CHANGES: usize = 12;
    let owner = "busy@concurrent.example";
    let mut tasks = JoinSet::new();
    for n in 0..CHANGES {
        let storage = storage.clone();
        tasks.spawn(async move {
            let contact = format!("contact{n:02}@concurrent.example");
            storage
                .rosters
                .upsert(owner, &item(&contact))
                .await
                .expect("upsert")
        });
    }
    let mut versions = tasks.join_all().await;
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        CHANGES,
        "every change its own version: {versions:?}"
    );
    let (version, items) = storage.rosters.items(owner).await.expect("items");
    assert_eq!(Some(&version), versions.last());
    assert_eq!(items.len(), CHANGES);
}
