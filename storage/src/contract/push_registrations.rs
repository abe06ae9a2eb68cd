//! Contract: XEP-0357 push registrations: enable replaces per (service, node), the per-account limit,
//! disable by node or by service, failure counts in a row, and removal with the account.

use crate::{PushRegistration, PushUpsert, Storage};

use super::credentials;

fn registration(account: &str, service: &str, node: &str, options: &str) -> PushRegistration {
    PushRegistration {
        account: account.to_string(),
        service: service.to_string(),
        node: node.to_string(),
        publish_options: Some(options.to_string()),
        failures: 0,
        enabled_at_ms: 1_000,
    }
}

/// (service, node, options) of each registration of `account`, in the order listed.
async fn listed(storage: &Storage, account: &str) -> Vec<(String, String, Option<String>)> {
    storage
        .push_registrations
        .list(account)
        .await
        .expect("list")
        .into_iter()
        .map(|r| (r.service, r.node, r.publish_options))
        .collect()
}

fn row(service: &str, node: &str, options: &str) -> (String, String, Option<String>) {
    (service.into(), node.into(), Some(options.into()))
}

/// Enable, re-enable, the limit, failure counts, and disable by node, by service and all at once.
pub async fn push_registrations(storage: &Storage) {
    let push = &storage.push_registrations;
    let alice = "alice@push.example";
    let bob = "bob@push.example";
    assert!(listed(storage, alice).await.is_empty());

    for (service, node, options) in [
        ("push.b.example", "n1", "<x/>"),
        ("push.a.example", "n2", "<x a='1'/>"),
        ("push.a.example", "n1", "<x a='2'/>"),
    ] {
        let stored = push
            .upsert(&registration(alice, service, node, options), 3)
            .await
            .expect("upsert");
        assert_eq!(stored, PushUpsert::Stored, "{service} {node}");
    }
    push.upsert(&registration(bob, "push.a.example", "n1", "<bob/>"), 3)
        .await
        .expect("upsert bob");
    let accounts = push.accounts_with_registrations().await.expect("accounts");
    assert!(
        accounts.contains(&alice.to_string()) && accounts.contains(&bob.to_string()),
        "{accounts:?}"
    );
    assert!(!accounts.contains(&"carol@push.example".to_string()));
    // Sorted by service, then node, in byte order; other accounts apart.
    assert_eq!(
        listed(storage, alice).await,
        [
            row("push.a.example", "n1", "<x a='2'/>"),
            row("push.a.example", "n2", "<x a='1'/>"),
            row("push.b.example", "n1", "<x/>"),
        ]
    );

    // At the limit: a new (service, node) is refused, the same one replaced.
    let over = push
        .upsert(&registration(alice, "push.c.example", "n1", "<x/>"), 3)
        .await
        .expect("upsert over");
    assert_eq!(over, PushUpsert::LimitReached);
    assert_eq!(listed(storage, alice).await.len(), 3);

    // Failures count in a row; re-enabling or a success starts again from zero.
    for expected in 1..=2 {
        let count = push
            .record_failure(alice, "push.a.example", "n1")
            .await
            .expect("failure");
        assert_eq!(count, Some(expected));
    }
    let failures = |registrations: Vec<PushRegistration>| {
        registrations.iter().map(|r| r.failures).collect::<Vec<_>>()
    };
    assert_eq!(
        failures(push.list(alice).await.expect("list")),
        [2, 0, 0],
        "counted for that (service, node) only"
    );
    push.clear_failures(alice, "push.a.example", "n1")
        .await
        .expect("clear");
    assert_eq!(failures(push.list(alice).await.expect("list")), [0, 0, 0]);
    push.record_failure(alice, "push.a.example", "n1")
        .await
        .expect("failure");
    let replaced = push
        .upsert(&registration(alice, "push.a.example", "n1", "<new/>"), 3)
        .await
        .expect("replace at the limit");
    assert_eq!(replaced, PushUpsert::Stored);
    let registrations = push.list(alice).await.expect("list");
    assert_eq!(registrations[0].publish_options.as_deref(), Some("<new/>"));
    assert_eq!(registrations[0].failures, 0);
    assert_eq!(
        push.record_failure(alice, "push.z.example", "n1")
            .await
            .expect("failure of nothing"),
        None
    );

    // Without options.
    push.delete(alice, "push.b.example", Some("n1"))
        .await
        .expect("delete");
    let bare = PushRegistration {
        publish_options: None,
        ..registration(alice, "push.b.example", "n9", "")
    };
    push.upsert(&bare, 3).await.expect("upsert without options");
    assert!(
        push.list(alice)
            .await
            .expect("list")
            .contains(&PushRegistration {
                enabled_at_ms: 1_000,
                ..bare
            })
    );

    // Disable one node, then every node of a service.
    assert_eq!(
        push.delete(alice, "push.a.example", Some("n2"))
            .await
            .expect("delete node"),
        1
    );
    assert_eq!(
        push.delete(alice, "push.a.example", Some("n2"))
            .await
            .expect("delete again"),
        0
    );
    push.upsert(&registration(alice, "push.a.example", "n3", "<x/>"), 3)
        .await
        .expect("upsert");
    assert_eq!(
        push.delete(alice, "push.a.example", None)
            .await
            .expect("delete service"),
        2
    );
    assert_eq!(
        listed(storage, alice).await,
        [(String::from("push.b.example"), String::from("n9"), None)]
    );
    assert_eq!(push.delete_all(alice).await.expect("delete all"), 1);
    assert!(listed(storage, alice).await.is_empty());
    assert_eq!(
        listed(storage, bob).await,
        [row("push.a.example", "n1", "<bob/>")],
        "bob's untouched"
    );
}

/// Deleting an account deletes its push registrations, and no one else's.
pub async fn push_registrations_deleted_with_account(storage: &Storage) {
    let carol = "carol@push-removal.example";
    let dave = "dave@push-removal.example";
    for (seed, jid) in [(31, carol), (32, dave)] {
        storage
            .accounts
            .create(jid, &credentials(seed))
            .await
            .expect("create");
        storage
            .push_registrations
            .upsert(&registration(jid, "push.example", "node", "<x/>"), 10)
            .await
            .expect("upsert");
    }
    assert!(storage.accounts.delete(carol).await.expect("delete"));
    assert!(listed(storage, carol).await.is_empty());
    assert_eq!(listed(storage, dave).await.len(), 1);
}
