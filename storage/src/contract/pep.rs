//! Contract: XEP-0163 PEP nodes and items: creation with the per-account limit, configuration,
//! publish as an upsert that makes the item the newest and trims to max_items, the newest N and items
//! by id, retract, purge, node deletion, and removal with the account.

use crate::{Pep, PepCreate, PepItem, PepNode, PepPublish, Storage};

use super::credentials;

fn node(name: &str, max_items: u32) -> PepNode {
    PepNode {
        node: name.to_string(),
        access_model: "presence".to_string(),
        max_items,
        persist_items: true,
        notify_retract: false,
        send_last_published_item: "on_sub_and_presence".to_string(),
        title: None,
        roster_groups: Vec::new(),
    }
}

fn item(id: &str, payload: &str) -> PepItem {
    PepItem {
        id: id.to_string(),
        payload: payload.to_string(),
        publisher: "alice@pep.example".to_string(),
        published_at_ms: 1_000,
    }
}

async fn ids(pep: &dyn Pep, owner: &str, node: &str, limit: Option<usize>) -> Vec<String> {
    pep.items(owner, node, limit)
        .await
        .expect("items")
        .into_iter()
        .map(|item| item.id)
        .collect()
}

fn stored(trimmed: &[&str]) -> PepPublish {
    PepPublish::Stored {
        trimmed: trimmed.iter().map(|s| s.to_string()).collect(),
    }
}

/// Nodes, configuration, publish, items, retract, purge and delete.
pub async fn pep(storage: &Storage) {
    let pep = storage.pep.as_ref();
    let alice = "alice@pep.example";
    let bob = "bob@pep.example";
    assert!(pep.nodes(alice).await.expect("nodes").is_empty());
    assert_eq!(
        pep.publish(alice, "n", &item("1", "<x/>"))
            .await
            .expect("publish"),
        PepPublish::NoNode
    );

    // Creation, the limit (an existing name never counts), and reading back the configuration.
    let mut bundles = node("bundles", 2);
    bundles.access_model = "open".into();
    bundles.title = Some("Bundles".into());
    bundles.roster_groups = vec!["Friends".into(), "Family".into()];
    assert_eq!(
        pep.create_node(alice, &bundles, 2).await.expect("create"),
        PepCreate::Created
    );
    assert_eq!(
        pep.create_node(alice, &bundles, 2).await.expect("create"),
        PepCreate::Exists
    );
    assert_eq!(
        pep.create_node(alice, &node("avatar", 1), 2)
            .await
            .expect("create"),
        PepCreate::Created
    );
    assert_eq!(
        pep.create_node(alice, &bundles, 2).await.expect("create"),
        PepCreate::Exists
    );
    assert_eq!(
        pep.create_node(alice, &node("third", 1), 2)
            .await
            .expect("create"),
        PepCreate::LimitReached
    );
    assert_eq!(
        pep.create_node(bob, &node("bundles", 5), 2)
            .await
            .expect("create"),
        PepCreate::Created
    );
    assert_eq!(
        pep.node(alice, "bundles").await.expect("node"),
        Some(bundles.clone())
    );
    assert_eq!(pep.node(alice, "third").await.expect("node"), None);
    let names: Vec<String> = pep
        .nodes(alice)
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| n.node)
        .collect();
    assert_eq!(names, ["avatar", "bundles"]);

    // Publish: newest first, trimmed to max_items (2), a republish becomes the newest.
    assert_eq!(
        pep.publish(alice, "bundles", &item("a", "<a/>"))
            .await
            .expect("publish"),
        stored(&[])
    );
    assert_eq!(
        pep.publish(alice, "bundles", &item("b", "<b/>"))
            .await
            .expect("publish"),
        stored(&[])
    );
    assert_eq!(ids(pep, alice, "bundles", None).await, ["b", "a"]);
    assert_eq!(
        pep.publish(alice, "bundles", &item("a", "<a2/>"))
            .await
            .expect("publish"),
        stored(&[])
    );
    assert_eq!(ids(pep, alice, "bundles", None).await, ["a", "b"]);
    assert_eq!(
        pep.publish(alice, "bundles", &item("c", "<c/>"))
            .await
            .expect("publish"),
        stored(&["b"])
    );
    assert_eq!(ids(pep, alice, "bundles", None).await, ["c", "a"]);
    assert_eq!(ids(pep, alice, "bundles", Some(1)).await, ["c"]);
    assert_eq!(
        ids(pep, alice, "bundles", Some(0)).await,
        Vec::<String>::new()
    );
    let newest = pep.items(alice, "bundles", Some(1)).await.expect("items");
    assert_eq!(newest, [item("c", "<c/>")]);
    assert!(
        ids(pep, bob, "bundles", None).await.is_empty(),
        "bob's node is his own"
    );
    assert!(ids(pep, alice, "avatar", None).await.is_empty());

    // Items by id: newest first, unknown and repeated ids left out.
    let by_id = pep
        .items_by_id(
            alice,
            "bundles",
            &["a".into(), "zzz".into(), "c".into(), "a".into()],
        )
        .await
        .expect("by id");
    assert_eq!(by_id, [item("c", "<c/>"), item("a", "<a2/>")]);
    assert!(
        pep.items_by_id(bob, "bundles", &["a".into()])
            .await
            .expect("by id")
            .is_empty()
    );

    // Configure: a smaller max_items trims at once; an unknown node is None.
    let mut smaller = bundles.clone();
    smaller.max_items = 1;
    smaller.access_model = "whitelist".into();
    smaller.notify_retract = true;
    smaller.send_last_published_item = "never".into();
    smaller.roster_groups.clear();
    assert_eq!(
        pep.configure_node(alice, &smaller)
            .await
            .expect("configure"),
        Some(vec!["a".to_string()])
    );
    assert_eq!(
        pep.node(alice, "bundles").await.expect("node"),
        Some(smaller.clone())
    );
    assert_eq!(
        pep.configure_node(alice, &node("none", 1))
            .await
            .expect("configure"),
        None
    );
    assert_eq!(ids(pep, alice, "bundles", None).await, ["c"]);

    // Retract and purge.
    assert!(pep.retract(alice, "bundles", "c").await.expect("retract"));
    assert!(!pep.retract(alice, "bundles", "c").await.expect("retract"));
    pep.publish(alice, "avatar", &item("x", "<x/>"))
        .await
        .expect("publish");
    pep.publish(bob, "bundles", &item("y", "<y/>"))
        .await
        .expect("publish");
    pep.publish(bob, "bundles", &item("z", "<z/>"))
        .await
        .expect("publish");
    assert_eq!(pep.purge(bob, "bundles").await.expect("purge"), 2);
    assert!(ids(pep, bob, "bundles", None).await.is_empty());
    assert_eq!(ids(pep, alice, "avatar", None).await, ["x"]);

    // Deleting a node takes its items; a node of that name starts empty.
    assert!(pep.delete_node(alice, "avatar").await.expect("delete"));
    assert!(!pep.delete_node(alice, "avatar").await.expect("delete"));
    assert_eq!(
        pep.create_node(alice, &node("avatar", 1), 2)
            .await
            .expect("create"),
        PepCreate::Created
    );
    assert!(ids(pep, alice, "avatar", None).await.is_empty());

    // delete_all: every node of one owner.
    assert_eq!(pep.delete_all(alice).await.expect("delete all"), 2);
    assert!(pep.nodes(alice).await.expect("nodes").is_empty());
    assert_eq!(pep.nodes(bob).await.expect("nodes").len(), 1);
}

/// Publishing 200 items to a node that keeps 50 keeps exactly the newest 50, and the newest one is
/// found at once (an OMEMO bundle node of a busy account).
pub async fn pep_many_items(storage: &Storage) {
    let pep = storage.pep.as_ref();
    let carol = "carol@pep-many.example";
    pep.create_node(carol, &node("devices", 50), 10)
        .await
        .expect("create");
    for n in 0..200 {
        pep.publish(carol, "devices", &item(&n.to_string(), "<d/>"))
            .await
            .expect("publish");
    }
    let all = ids(pep, carol, "devices", None).await;
    let expected: Vec<String> = (150..200).rev().map(|n| n.to_string()).collect();
    assert_eq!(all, expected);
    assert_eq!(ids(pep, carol, "devices", Some(1)).await, ["199"]);
}

/// Deleting an account deletes its nodes and items, and no one else's.
pub async fn pep_deleted_with_account(storage: &Storage) {
    let erin = "erin@pep-removal.example";
    let frank = "frank@pep-removal.example";
    for (seed, jid) in [(41, erin), (42, frank)] {
        storage
            .accounts
            .create(jid, &credentials(seed))
            .await
            .expect("create");
        storage
            .pep
            .create_node(jid, &node("urn:xmpp:avatar:data", 1), 10)
            .await
            .expect("node");
        storage
            .pep
            .publish(jid, "urn:xmpp:avatar:data", &item("1", "<data/>"))
            .await
            .expect("publish");
    }
    assert!(storage.accounts.delete(erin).await.expect("delete"));
    assert!(storage.pep.nodes(erin).await.expect("nodes").is_empty());
    assert!(
        ids(storage.pep.as_ref(), erin, "urn:xmpp:avatar:data", None)
            .await
            .is_empty()
    );
    assert_eq!(storage.pep.nodes(frank).await.expect("nodes").len(), 1);
    assert_eq!(
        ids(storage.pep.as_ref(), frank, "urn:xmpp:avatar:data", None).await,
        ["1"]
    );
}
