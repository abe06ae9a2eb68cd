//! Contract: rosters and roster versioning (RFC 6121 sections 2.6 and 3, appendix A).

use tokio::task::JoinSet;

use super::strings;
use crate::{RosterItem, Storage, Subscription};

/// A typical in-roster item for `contact` (also used by the cascade check).
pub(super) fn item(contact: &str) -> RosterItem {
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

/// The item count covers every item of one owner, hidden pending-in ones too, and follows removals.
pub async fn roster_count(storage: &Storage) {
    let rosters = &storage.rosters;
    let owner = "counted@count.example";
    assert_eq!(rosters.count(owner).await.expect("count"), 0);
    rosters
        .upsert(owner, &item("a@count.example"))
        .await
        .expect("upsert");
    let pending_only = RosterItem {
        contact: "b@count.example".to_string(),
        pending_in: true,
        ..RosterItem::default()
    };
    rosters.upsert(owner, &pending_only).await.expect("upsert");
    rosters
        .upsert(owner, &item("a@count.example"))
        .await
        .expect("replace");
    rosters
        .upsert("other@count.example", &item("a@count.example"))
        .await
        .expect("other owner");
    assert_eq!(rosters.count(owner).await.expect("count"), 2);
    rosters
        .remove(owner, "a@count.example")
        .await
        .expect("remove");
    assert_eq!(rosters.count(owner).await.expect("count"), 1);
}
