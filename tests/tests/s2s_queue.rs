//! The durable outbound s2s queue between two in-process servers, `a.test` and `b.test` (RFC 6120
//! section 10.4.3; sections 8.3.3.15 `remote-server-not-found` and 8.3.3.16 `remote-server-timeout`
//! for what cannot be delivered): a stanza for a peer that is down waits and is delivered once the
//! peer is up, bounces when the peer stays down past `queue_timeout_seconds`, bounces at once when the
//! domain has no address, and survives a restart of the sending server.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use herald_tests::federation::{federate_with_keys, nxdomain_nameserver};
use herald_tests::{TIMEOUT, TestClient, TestServer, xml};

/// Waits until `server` holds `count` stanzas queued for `domain` (the queue's state is in storage).
async fn queued_for(server: &TestServer, domain: &str, count: usize) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let queued = server
            .storage
            .s2s_queue
            .oldest(domain, None, 100)
            .await
            .unwrap();
        if queued.len() == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} stanzas queued for {domain}, not {count}",
            queued.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The error condition of the bounce of alice's message.
async fn bounce_condition(alice: &mut TestClient) -> String {
    let error = alice
        .expect("the bounce", |e| {
            e.name() == "message" && e.attr("type") == Some("error")
        })
        .await;
    assert_eq!(
        error.attr("from"),
        Some("bob@b.test/r"),
        "{}",
        xml::show(&error)
    );
    xml::error_condition(&error).unwrap_or_default()
}

#[tokio::test]
async fn a_message_for_a_peer_that_is_down_waits_and_arrives_once_the_peer_is_up() {
    let (_ca, a, mut b) = federate_with_keys("queue_timeout_seconds = 60").await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.login("alice", "r").await;
    b.stop().await;
    alice.chat("bob@b.test/r", "wait for me").await;
    queued_for(&a, "b.test", 1).await;

    // Same data, same s2s port: the queue's next attempt gets through.
    b.restart().await;
    let mut bob = b.online("bob", "r").await;
    bob.expect_body_once("wait for me").await;
    queued_for(&a, "b.test", 0).await;
    alice
        .assert_none("a bounce", |e| e.attr("type") == Some("error"))
        .await;
}

#[tokio::test]
async fn a_message_for_a_peer_that_stays_down_bounces_with_remote_server_timeout() {
    let (_ca, a, mut b) = federate_with_keys("queue_timeout_seconds = 1").await;
    a.add_user("alice").await;
    let mut alice = a.login("alice", "r").await;
    b.stop().await;
    let sent = Instant::now();
    alice.chat("bob@b.test/r", "anyone there?").await;
    assert_eq!(bounce_condition(&mut alice).await, "remote-server-timeout");
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "bounced before the queue timeout"
    );
    queued_for(&a, "b.test", 0).await;
}

#[tokio::test]
async fn a_message_for_a_domain_without_an_address_bounces_with_remote_server_not_found() {
    let nameserver = nxdomain_nameserver().await;
    let keys = format!("queue_timeout_seconds = 60\nnameserver = \"{nameserver}\"");
    let (_ca, a, _b) = federate_with_keys(&keys).await;
    a.add_user("alice").await;
    let mut alice = a.login("alice", "r").await;
    alice.chat("carol@c.test/r", "hello?").await;
    let error = alice
        .expect("the bounce", |e| {
            e.name() == "message" && e.attr("type") == Some("error")
        })
        .await;
    assert_eq!(error.attr("from"), Some("carol@c.test/r"));
    assert_eq!(
        xml::error_condition(&error).as_deref(),
        Some("remote-server-not-found"),
        "{}",
        xml::show(&error)
    );
    queued_for(&a, "c.test", 0).await;
}

#[tokio::test]
async fn a_restart_of_the_sending_server_loses_nothing_queued() {
    let (_ca, mut a, mut b) = federate_with_keys("queue_timeout_seconds = 60").await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.login("alice", "r").await;
    b.stop().await;
    alice.chat("bob@b.test/r", "kept across a restart").await;
    queued_for(&a, "b.test", 1).await;
    drop(alice);

    a.restart().await;
    queued_for(&a, "b.test", 1).await;
    b.restart().await;
    let mut bob = b.online("bob", "r").await;
    bob.expect_body_once("kept across a restart").await;
    queued_for(&a, "b.test", 0).await;
}
