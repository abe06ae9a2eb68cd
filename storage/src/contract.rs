//! The behaviour every storage backend must show; run on SQLite always and on PostgreSQL when
//! `HERALD_TEST_POSTGRES_URL` is set.
//!
//! Each `pub async fn` checks one area and panics (like `assert!`) on the first difference, so it can be
//! called from any crate's tests. They expect a fresh, empty [`Storage`]: each uses its own domain and JIDs,
//! so they may share one storage and run in any order, but not twice on the same one. [`run_all`] runs
//! them all. Covers RFC 6121 section 2.6 (roster versions), XEP-0160 (offline order and quota), XEP-0054
//! (vCard replace), XEP-0191 (block list semantics) and XEP-0313/XEP-0441 (archive paging, filters,
//! metadata, preferences, retention), XEP-0357 (push registrations), XEP-0049 (private XML), XEP-0163
//! (PEP nodes and items) and RFC 6120 section 10.4.3 (the outbound s2s queue) as far as storage is
//! concerned.

mod account_removal;
mod archive;
mod offline;
mod pep;
mod private_xml;
mod push_registrations;
mod rosters;
mod s2s_queue;

pub use account_removal::account_delete_takes_relay_data;
pub use archive::{
    archive_deleted_with_account, archive_order_and_limits, archive_prefs, archive_queries,
    archive_retention, concurrent_archive_appends,
};
pub use offline::{concurrent_offline_quota, offline_messages};
pub use pep::{pep, pep_deleted_with_account, pep_many_items};
pub use private_xml::{
    concurrent_private_xml_limit, private_xml, private_xml_deleted_with_account,
};
pub use push_registrations::{push_registrations, push_registrations_deleted_with_account};
pub use rosters::{concurrent_roster_versions, roster_count, rosters};
pub use s2s_queue::{concurrent_s2s_enqueue, s2s_queue, s2s_queue_limits};

use crate::{Credentials, ScramKeys, Storage, StorageError};
use rosters::item;

/// Runs every check below on `storage`, which must be fresh.
pub async fn run_all(storage: &Storage) {
    accounts(storage).await;
    rosters(storage).await;
    roster_count(storage).await;
    offline_messages(storage).await;
    vcards(storage).await;
    block_lists(storage).await;
    account_delete_cascades(storage).await;
    account_delete_takes_relay_data(storage).await;
    concurrent_offline_quota(storage).await;
    concurrent_roster_versions(storage).await;
    archive_queries(storage).await;
    archive_order_and_limits(storage).await;
    archive_prefs(storage).await;
    archive_retention(storage).await;
    archive_deleted_with_account(storage).await;
    concurrent_archive_appends(storage).await;
    push_registrations(storage).await;
    push_registrations_deleted_with_account(storage).await;
    private_xml(storage).await;
    private_xml_deleted_with_account(storage).await;
    concurrent_private_xml_limit(storage).await;
    pep(storage).await;
    pep_many_items(storage).await;
    pep_deleted_with_account(storage).await;
    s2s_queue(storage).await;
    s2s_queue_limits(storage).await;
    concurrent_s2s_enqueue(storage).await;
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
    block_lists_of_accounts(storage).await;
}

/// `list_of_account`: `None` without an account (even when block rows exist for the JID), the list
/// (possibly empty) with one.
async fn block_lists_of_accounts(storage: &Storage) {
    let blocks = &storage.block_lists;
    let carol = "carol@blocks.example";
    let nobody = "nobody@blocks.example";
    blocks
        .block(nobody, &strings(&["x.example"]))
        .await
        .expect("block without an account");
    assert_eq!(blocks.list_of_account(nobody).await.expect("list"), None);
    storage
        .accounts
        .create(carol, &credentials(7))
        .await
        .expect("create");
    assert_eq!(
        blocks.list_of_account(carol).await.expect("list"),
        Some(Vec::new())
    );
    let jids = ["z.example", "romeo@x.example", "a.example"];
    blocks.block(carol, &strings(&jids)).await.expect("block");
    assert_eq!(
        blocks.list_of_account(carol).await.expect("list"),
        Some(sorted(&jids))
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
