//! Peers that go away in the middle of things: an inbound peer whose connection drops halfway through a
//! stanza (the partial stanza is discarded, nothing before it lost, other streams and client sessions
//! unaffected), and a receiving Herald stopped while stanzas are on their way to it (what was queued
//! for it arrives once it is back).
#![allow(clippy::unwrap_used)]

use herald_tests::federation::{Authentication, S2sPeer, federate};
use herald_tests::{eventually, xml};

#[tokio::test]
async fn a_peer_cut_off_halfway_through_a_stanza_loses_only_that_stanza() {
    let (ca, a, b) = federate(Authentication::External).await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.login("alice", "r").await;
    let mut bob = b.login("bob", "r").await;
    // The real b.test link is up before the impostor stream comes and goes.
    bob.chat("alice@a.test/r", "before").await;
    alice.expect_body_once("before").await;

    let mut peer = S2sPeer::external(&a, "b.test", &ca, ca.issue("b.test")).await;
    peer.send(
        "<message from='carol@b.test' to='alice@a.test/r' type='chat'><body>whole</body></message>\
         <message from='carol@b.test' to='alice@a.test/r' type='chat'><body>half of it",
    )
    .await;
    // The TCP connection ends without </stream:stream> or a TLS close_notify.
    drop(peer);
    alice.expect_body_once("whole").await;
    alice
        .assert_none("the partial stanza", |e| {
            xml::body(e).is_some_and(|body| body.starts_with("half"))
        })
        .await;
    eventually("the cut-off stream no longer counts", async || {
        a.s2s().federation.connections.count() <= 1
    })
    .await;

    // The other stream and both client sessions go on.
    bob.chat("alice@a.test/r", "after").await;
    alice.expect_body_once("after").await;
    alice.chat("bob@b.test/r", "and back").await;
    bob.expect_body_once("and back").await;
}

#[tokio::test]
async fn stanzas_in_flight_when_the_peer_stops_arrive_once_it_is_back() {
    let (_ca, a, mut b) = federate(Authentication::External).await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.login("alice", "r").await;
    // The link is up: the first message was delivered (stored offline for bob).
    alice.chat("bob@b.test", "0").await;
    eventually("the first message is stored for bob", async || {
        b.storage.offline.count("bob@b.test").await.unwrap() == 1
    })
    .await;
    // Bob's server stops while alice's messages stream out to it.
    let sending = async {
        for n in 1..=200 {
            alice.chat("bob@b.test", &n.to_string()).await;
        }
        alice.barrier().await;
    };
    let stopping = async {
        tokio::task::yield_now().await;
        b.stop().await;
    };
    tokio::join!(sending, stopping);
    b.restart().await;
    let deadline = tokio::time::Instant::now() + herald_tests::TIMEOUT;
    loop {
        let stored = b.storage.offline.count("bob@b.test").await.unwrap();
        if stored >= 201 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stored} of 201 messages stored for bob"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut bob = b.online("bob", "r").await;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 201 {
        let message = bob
            .expect("a message from alice", |e| e.name() == "message")
            .await;
        let body = xml::body(&message).unwrap();
        assert!(seen.insert(body.clone()), "{body} delivered twice");
    }
}
