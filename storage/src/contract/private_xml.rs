//! Contract: XEP-0049 private XML: a fragment per (namespace, element name) per account, replaced
//! by a new put, independent across namespaces, names and accounts; the per-account limit counts
//! only new keys and refuses a put whole, also when puts race; fragments go with their account.

use tokio::task::JoinSet;

use crate::{PrivateFragment, PrivatePut, Storage};

use super::credentials;

fn fragment(namespace: &str, name: &str, xml: &str) -> PrivateFragment {
    PrivateFragment {
        namespace: namespace.to_string(),
        name: name.to_string(),
        xml: xml.to_string(),
    }
}

async fn get(storage: &Storage, owner: &str, namespace: &str, name: &str) -> Option<String> {
    storage
        .private_xml
        .get(owner, namespace, name)
        .await
        .expect("get")
}

/// Put, get, replace, independence of keys and accounts, and the limit.
pub async fn private_xml(storage: &Storage) {
    let private = &storage.private_xml;
    let alice = "alice@private.example";
    let bob = "bob@private.example";
    assert_eq!(
        get(storage, alice, "storage:bookmarks", "storage").await,
        None
    );
    assert_eq!(private.count(alice).await.expect("count"), 0);

    let bookmarks = "<storage xmlns='storage:bookmarks'><conference jid='a@b'/></storage>";
    let prefs = "<prefs xmlns='urn:example:prefs'><x>1</x></prefs>";
    let stored = private
        .put(
            alice,
            &[
                fragment("storage:bookmarks", "storage", bookmarks),
                fragment("urn:example:prefs", "prefs", prefs),
            ],
            3,
        )
        .await
        .expect("put");
    assert_eq!(stored, PrivatePut::Stored);
    assert_eq!(
        get(storage, alice, "storage:bookmarks", "storage")
            .await
            .as_deref(),
        Some(bookmarks)
    );
    assert_eq!(
        get(storage, alice, "urn:example:prefs", "prefs")
            .await
            .as_deref(),
        Some(prefs)
    );
    // The key is the namespace and the element name together, and it is per account.
    assert_eq!(
        get(storage, alice, "urn:example:prefs", "other").await,
        None
    );
    assert_eq!(get(storage, alice, "storage:other", "storage").await, None);
    assert_eq!(
        get(storage, bob, "storage:bookmarks", "storage").await,
        None
    );

    // A put replaces the fragment of its key only.
    let replaced = "<storage xmlns='storage:bookmarks'/>";
    private
        .put(
            alice,
            &[fragment("storage:bookmarks", "storage", replaced)],
            3,
        )
        .await
        .expect("replace");
    assert_eq!(
        get(storage, alice, "storage:bookmarks", "storage")
            .await
            .as_deref(),
        Some(replaced)
    );
    assert_eq!(
        get(storage, alice, "urn:example:prefs", "prefs")
            .await
            .as_deref(),
        Some(prefs)
    );
    assert_eq!(private.count(alice).await.expect("count"), 2);

    // Limit 3: one new key fits; two more new keys in one put do not, and nothing of that put is
    // kept (not even the replacement that came with it).
    private
        .put(
            alice,
            &[fragment("urn:example:c", "c", "<c xmlns='urn:example:c'/>")],
            3,
        )
        .await
        .expect("third");
    let refused = private
        .put(
            alice,
            &[
                fragment(
                    "urn:example:prefs",
                    "prefs",
                    "<prefs xmlns='urn:example:prefs'/>",
                ),
                fragment("urn:example:d", "d", "<d xmlns='urn:example:d'/>"),
            ],
            3,
        )
        .await
        .expect("over the limit");
    assert_eq!(refused, PrivatePut::LimitReached);
    assert_eq!(private.count(alice).await.expect("count"), 3);
    assert_eq!(get(storage, alice, "urn:example:d", "d").await, None);
    assert_eq!(
        get(storage, alice, "urn:example:prefs", "prefs")
            .await
            .as_deref(),
        Some(prefs)
    );
    // At the limit, replacing is still allowed: it is no growth.
    let again = private
        .put(
            alice,
            &[fragment(
                "urn:example:c",
                "c",
                "<c xmlns='urn:example:c'>2</c>",
            )],
            3,
        )
        .await
        .expect("replace at the limit");
    assert_eq!(again, PrivatePut::Stored);
    // Another account has its own count.
    let bobs = private
        .put(
            bob,
            &[fragment("urn:example:d", "d", "<d xmlns='urn:example:d'/>")],
            3,
        )
        .await
        .expect("bob");
    assert_eq!(bobs, PrivatePut::Stored);
}

/// Deleting an account deletes its fragments and nobody else's.
pub async fn private_xml_deleted_with_account(storage: &Storage) {
    let carol = "carol@private-delete.example";
    let dave = "dave@private-delete.example";
    for (seed, jid) in [(41, carol), (42, dave)] {
        storage
            .accounts
            .create(jid, &credentials(seed))
            .await
            .expect("create");
        storage
            .private_xml
            .put(
                jid,
                &[fragment(
                    "storage:bookmarks",
                    "storage",
                    "<storage xmlns='storage:bookmarks'/>",
                )],
                10,
            )
            .await
            .expect("put");
    }
    assert!(storage.accounts.delete(carol).await.expect("delete"));
    assert_eq!(
        get(storage, carol, "storage:bookmarks", "storage").await,
        None
    );
    assert_eq!(storage.private_xml.count(carol).await.expect("count"), 0);
    assert!(
        get(storage, dave, "storage:bookmarks", "storage")
            .await
            .is_some()
    );
}

/// Puts of new fragments racing from many sessions never leave more than the limit stored.
pub async fn concurrent_private_xml_limit(storage: &Storage) {
    const LIMIT: usize = 3;
    const ATTEMPTS: usize = 16;
    let owner = "busy@private-concurrent.example";
    let mut tasks = JoinSet::new();
    for n in 0..ATTEMPTS {
        let storage = storage.clone();
        tasks.spawn(async move {
            let namespace = format!("urn:example:{n}");
            let xml = format!("<x xmlns='{namespace}'/>");
            storage
                .private_xml
                .put(owner, &[fragment(&namespace, "x", &xml)], LIMIT)
                .await
                .expect("put")
        });
    }
    let outcomes = tasks.join_all().await;
    let stored = outcomes
        .iter()
        .filter(|o| **o == PrivatePut::Stored)
        .count();
    assert_eq!(stored, LIMIT, "{outcomes:?}");
    assert_eq!(
        storage.private_xml.count(owner).await.expect("count"),
        LIMIT as u64
    );
}
