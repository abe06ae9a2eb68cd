//! The durable outbound s2s queue between two in-process servers, `a.test` and `b.test` (RFC 6120
//! section 10.4.3; section 8.3.3.15 `remote-server-not-found` for a domain without a server): a
//! stanza for a domain that has no address bounces at once, and what waits for a peer that is down
//! survives a restart of the sending server. (The queue timeout and a peer coming back are in
//! `s2s.rs`.)
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use herald_tests::federation::{Authentication, federate_tuned, nxdomain_nameserver};
use herald_tests::{TIMEOUT, TestServer, xml};

/// Waits until `server` holds `count` stanzas queued for `domain` (the queue's state is in storage,
/// and nothing else announces it).
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

#[tokio::test]
async fn a_message_for_a_domain_without_an_address_bounces_with_remote_server_not_found() {
    let nameserver = nxdomain_nameserver().await.to_string();
    let (_ca, a, _b) = federate_tuned(
        Authentication::External,
        false,
        &[
            ("HERALD_S2S__NAMESERVER", nameserver.as_str()),
            ("HERALD_S2S__QUEUE_TIMEOUT_SECONDS", "60"),
        ],
    )
    .await;
    a.add_user("alice").await;
    let mut alice = a.login("alice", "r").await;
    // c.test is not listed, and the nameserver says it does not exist.
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
    let (_ca, mut a, mut b) = federate_tuned(
        Authentication::External,
        false,
        &[("HERALD_S2S__QUEUE_TIMEOUT_SECONDS", "60")],
    )
    .await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.login("alice", "r").await;
    b.stop().await;
    alice.chat("bob@b.test/r", "kept across a restart").await;
    queued_for(&a, "b.test", 1).await;
    drop(alice);

    // a.test stops with the stanza queued and starts again on the same storage, b.test still down.
    a.restart().await;
    queued_for(&a, "b.test", 1).await;
    b.restart().await;
    let mut bob = b.online("bob", "r").await;
    bob.expect_body_once("kept across a restart").await;
    queued_for(&a, "b.test", 0).await;
}
