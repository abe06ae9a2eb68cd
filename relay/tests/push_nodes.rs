//! Push nodes (`src/push_node.rs`), the relay side of the server's XEP-0357 push service: a node wakes
//! its one device through the outbox and stand-in push service, only with its current secret, only for
//! a publisher of the account's domain; registrations are bounded per account, idempotent per device
//! key, and gone once unregistered. The XMPP side is tested in tests/tests/app_server.rs.

// Test helpers outside #[test] functions unwrap too: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Harness, Reply, StandIn, TestAccounts, sqlite_url};
use herald_relay::{NodeError, NodeRegistration, Publisher, PushNode, RelayError};
use herald_storage::relay::DeviceKind;

const ALICE: &str = "alice@example.org";
const DOMAIN: &str = "example.org";

/// A relay with workers and a UnifiedPush stand-in its devices point at.
async fn relay() -> (Harness, StandIn, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = StandIn::start(Reply::status(201)).await;
    let h = Harness::start(
        &sqlite_url(&dir),
        Arc::new(TestAccounts::default()),
        true,
        |c| c.limits.max_devices_per_account = 3,
    )
    .await;
    (h, endpoint, dir)
}

fn unifiedpush(stand_in: &StandIn, key: &str) -> NodeRegistration {
    NodeRegistration {
        kind: DeviceKind::UnifiedPush,
        device_key: key.to_string(),
        token: format!("{}/up/{key}", stand_in.url),
        apns_topic: None,
        apns_sandbox: None,
        p256dh: None,
        auth: None,
    }
}

async fn register(h: &Harness, stand_in: &StandIn, key: &str) -> PushNode {
    h.relay
        .register_node(ALICE, DOMAIN, unifiedpush(stand_in, key))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_node_wakes_its_device_with_its_current_secret_only() {
    let (h, mut endpoint, _dir) = relay().await;
    let first = register(&h, &endpoint, "phone").await;
    let again = register(&h, &endpoint, "phone").await;
    assert_eq!(again.node, first.node, "one node per device key");
    assert_ne!(again.secret, first.secret);

    let server = Publisher::HostingServer(DOMAIN);
    let ticket = h
        .relay
        .publish_to_node(&again.node, &again.secret, server)
        .await
        .unwrap();
    assert_eq!(ticket.deliveries, 1);
    let sent = endpoint.next().await;
    assert_eq!(sent.path, "/up/phone");

    // The replaced secret and a guess are wrong secrets; a node nobody has is unknown.
    for wrong in [first.secret.as_str(), "guess", ""] {
        let refused = h.relay.publish_to_node(&again.node, wrong, server).await;
        assert!(
            matches!(refused, Err(NodeError::WrongSecret)),
            "{refused:?}"
        );
    }
    let unknown = h
        .relay
        .publish_to_node("no-such-node", &again.secret, server)
        .await;
    assert!(
        matches!(unknown, Err(NodeError::UnknownNode)),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn only_the_account_s_domain_may_publish() {
    let (h, endpoint, _dir) = relay().await;
    let node = register(&h, &endpoint, "phone").await;
    for stranger in [
        Publisher::HostingServer("evil.example"),
        Publisher::Other("mallory@evil.example/x"),
        Publisher::Other("example.org.evil"),
    ] {
        let refused = h
            .relay
            .publish_to_node(&node.node, &node.secret, stranger)
            .await;
        assert!(
            matches!(refused, Err(NodeError::UnknownNode)),
            "{stranger:?}: {refused:?}"
        );
    }
    // A user of the domain holding the secret may (the secret is the capability, XEP-0357 section 3.2).
    h.relay
        .publish_to_node(
            &node.node,
            &node.secret,
            Publisher::Other("alice@example.org/phone"),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unregistered_node_is_gone_and_registrations_are_bounded() {
    let (h, endpoint, _dir) = relay().await;
    let nodes = [
        register(&h, &endpoint, "a").await,
        register(&h, &endpoint, "b").await,
        register(&h, &endpoint, "c").await,
    ];
    let fourth = h
        .relay
        .register_node(ALICE, DOMAIN, unifiedpush(&endpoint, "d"))
        .await;
    assert!(matches!(fourth, Err(RelayError::BadInput(_))), "{fourth:?}");
    // Registering a known device again is not a new one.
    register(&h, &endpoint, "a").await;

    assert!(h.relay.unregister_node(ALICE, "b").await.unwrap());
    assert!(!h.relay.unregister_node(ALICE, "b").await.unwrap());
    let gone = h
        .relay
        .publish_to_node(
            &nodes[1].node,
            &nodes[1].secret,
            Publisher::HostingServer(DOMAIN),
        )
        .await;
    assert!(matches!(gone, Err(NodeError::UnknownNode)), "{gone:?}");
    // Its place is free again.
    register(&h, &endpoint, "d").await;
}

#[tokio::test]
async fn bad_registrations_are_refused() {
    let (h, endpoint, _dir) = relay().await;
    let mut bad = Vec::new();
    let mut r = unifiedpush(&endpoint, "k");
    r.token = "ftp://example.org/x".into();
    bad.push(r);
    let mut r = unifiedpush(&endpoint, "k");
    r.device_key = " ".into();
    bad.push(r);
    let mut r = unifiedpush(&endpoint, "k");
    r.p256dh = Some("not-a-key".into());
    bad.push(r);
    let mut r = unifiedpush(&endpoint, "k");
    r.kind = DeviceKind::Apns;
    r.token = "not hex".into();
    bad.push(r);
    let mut r = unifiedpush(&endpoint, "k");
    r.kind = DeviceKind::Fcm;
    r.token = "x".repeat(5000);
    bad.push(r);
    for registration in bad {
        let refused = h
            .relay
            .register_node(ALICE, DOMAIN, registration.clone())
            .await;
        assert!(
            matches!(refused, Err(RelayError::BadInput(_))),
            "{registration:?}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn registrations_per_account_are_rate_limited() {
    let (h, endpoint, _dir) = relay().await;
    for _ in 0..herald_relay::push_node::NODE_CHANGES_PER_MINUTE {
        register(&h, &endpoint, "phone").await;
    }
    let looping = h
        .relay
        .register_node(ALICE, DOMAIN, unifiedpush(&endpoint, "phone"))
        .await;
    assert!(
        matches!(looping, Err(RelayError::RateLimited(_))),
        "{looping:?}"
    );
    // Another account has its own budget.
    h.relay
        .register_node("bob@example.org", DOMAIN, unifiedpush(&endpoint, "phone"))
        .await
        .unwrap();
}

/// A device its push network reports gone is removed by the outbox; its node is then unknown, which
/// tells the publishing server to disable it (XEP-0357 section 7.1).
#[tokio::test]
async fn a_node_whose_device_is_gone_is_unknown() {
    let (h, mut endpoint, _dir) = relay().await;
    endpoint.set_default(Reply::status(410));
    let node = register(&h, &endpoint, "phone").await;
    let server = Publisher::HostingServer(DOMAIN);
    let ticket = h
        .relay
        .publish_to_node(&node.node, &node.secret, server)
        .await
        .unwrap();
    endpoint.next().await;
    h.wait_status(&ticket.message_id, "failed").await;
    let gone = h
        .relay
        .publish_to_node(&node.node, &node.secret, server)
        .await;
    assert!(matches!(gone, Err(NodeError::UnknownNode)), "{gone:?}");
}

/// `[relay.push_service] max_remote_nodes` holds under concurrent registrations from many remote
/// domains: the count and the insert are one step, so simultaneous new nodes cannot all pass a
/// count taken before any of them was written (they once could, by a few).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_remote_registrations_do_not_pass_max_remote_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = StandIn::start(Reply::status(201)).await;
    let h = Harness::start(
        &sqlite_url(&dir),
        Arc::new(TestAccounts::default()),
        false,
        |c| {
            c.push_service.remote_domains = vec!["*".into()];
            c.push_service.max_nodes_per_remote_domain = 1;
            c.push_service.max_remote_nodes = 3;
        },
    )
    .await;
    let relay = h.relay.clone();
    let registrations: Vec<_> = (0..24)
        .map(|i| {
            let relay = relay.clone();
            let registration = unifiedpush(&endpoint, &format!("device-{i}"));
            tokio::spawn(async move {
                let domain = format!("d{i}.example");
                relay
                    .register_remote_node(&format!("u@{domain}"), &domain, registration)
                    .await
            })
        })
        .collect();
    let mut registered = 0;
    for registration in registrations {
        match registration.await.unwrap() {
            Ok(_) => registered += 1,
            Err(herald_relay::RegistrationError::ServiceFull) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(registered, 3);
}
