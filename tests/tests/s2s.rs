//! Federation between two in-process Herald domains, `a.test` and `b.test` (RFC 6120 sections 4 to 6 and
//! 10.4; RFC 6121 across domains): messages and IQs both ways over SASL EXTERNAL (XEP-0178, with
//! serverAuth-only certificates) and over Server Dialback (XEP-0220); spoofed addresses and garbage from
//! a peer end only that peer's stream.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::federation::{Authentication, S2sPeer, federate, federate_tuned, federate_with};
use herald_tests::xml;
use herald_tests::{TestClient, TestServer};

/// alice@a.test and bob@b.test online.
async fn alice_and_bob(a: &TestServer, b: &TestServer) -> (TestClient, TestClient) {
    a.add_user("alice").await;
    b.add_user("bob").await;
    let alice = a.login("alice", "r").await;
    let bob = b.login("bob", "r").await;
    (alice, bob)
}

async fn messages_and_pings_both_ways(authentication: Authentication) {
    let (_ca, a, b) = federate(authentication).await;
    let (mut alice, mut bob) = alice_and_bob(&a, &b).await;

    alice.chat("bob@b.test/r", "hello from a").await;
    let message = bob
        .expect("alice's message", |e| {
            e.name() == "message" && xml::body(e).as_deref() == Some("hello from a")
        })
        .await;
    assert_eq!(message.attr("from"), Some("alice@a.test/r"));
    bob.chat("alice@a.test/r", "hello from b").await;
    let message = alice
        .expect("bob's message", |e| {
            e.name() == "message" && xml::body(e).as_deref() == Some("hello from b")
        })
        .await;
    assert_eq!(message.attr("from"), Some("bob@b.test/r"));

    // XEP-0199: the remote server answers for its domain, and a remote client for itself.
    let pong = alice
        .iq("get", Some("b.test"), "<ping xmlns='urn:xmpp:ping'/>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"), "{}", xml::show(&pong));
    assert_eq!(pong.attr("from"), Some("b.test"));
    let pong = bob
        .iq("get", Some("a.test"), "<ping xmlns='urn:xmpp:ping'/>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"), "{}", xml::show(&pong));
    // A ping to a client is delivered to it; its answer goes back across.
    let id = alice.id();
    alice
        .send(&format!(
            "<iq type='get' id='{id}' to='bob@b.test/r'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    let ping = bob
        .expect("the ping", |e| {
            e.name() == "iq" && e.get_child("ping", ns::PING).is_some()
        })
        .await;
    assert_eq!(ping.attr("from"), Some("alice@a.test/r"));
    bob.send(&format!(
        "<iq type='result' id='{}' to='alice@a.test/r'/>",
        ping.attr("id").unwrap()
    ))
    .await;
    alice
        .expect("bob's answer", |e| {
            e.name() == "iq"
                && e.attr("id") == Some(id.as_str())
                && e.attr("type") == Some("result")
        })
        .await;
}

#[tokio::test]
async fn messages_and_pings_go_both_ways_over_sasl_external() {
    messages_and_pings_both_ways(Authentication::External).await;
}

#[tokio::test]
async fn messages_and_pings_go_both_ways_over_dialback() {
    messages_and_pings_both_ways(Authentication::Dialback).await;
}

#[tokio::test]
async fn a_message_for_an_unknown_remote_user_bounces_back() {
    let (_ca, a, b) = federate(Authentication::External).await;
    let (mut alice, _bob) = alice_and_bob(&a, &b).await;
    let id = alice.id();
    alice
        .send(&format!(
            "<iq type='get' id='{id}' to='nobody@b.test'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await;
    let error = alice
        .expect("the error", |e| e.attr("id") == Some(id.as_str()))
        .await;
    assert_eq!(error.attr("type"), Some("error"), "{}", xml::show(&error));
    assert_eq!(error.attr("from"), Some("nobody@b.test"));
}

#[tokio::test]
async fn a_spoofed_from_ends_the_peers_stream_with_invalid_from() {
    let (ca, a, _b) = federate(Authentication::External).await;
    a.add_user("alice").await;
    let mut alice = a.login("alice", "r").await;
    let mut peer = S2sPeer::external(&a, "b.test", &ca, ca.issue("b.test")).await;
    // Authenticated as b.test, it claims a stanza from c.test (RFC 6120 section 4.9.3.9).
    peer.send(
        "<message from='mallory@c.test' to='alice@a.test' type='chat'><body>spoof</body></message>",
    )
    .await;
    assert_eq!(peer.expect_stream_error().await, "invalid-from");
    alice
        .assert_none("the spoofed message", |e| {
            xml::body(e).as_deref() == Some("spoof")
        })
        .await;
    // And a stanza for a domain a.test does not serve: host-unknown (section 4.9.3.6).
    let mut peer = S2sPeer::external(&a, "b.test", &ca, ca.issue("b.test")).await;
    peer.send("<message from='mallory@b.test' to='x@elsewhere.test'><body>x</body></message>")
        .await;
    assert_eq!(peer.expect_stream_error().await, "host-unknown");
}

#[tokio::test]
async fn garbage_from_a_peer_ends_only_its_stream() {
    let (ca, a, b) = federate(Authentication::External).await;
    let (mut alice, mut bob) = alice_and_bob(&a, &b).await;
    // The real b.test link is up.
    bob.chat("alice@a.test/r", "before").await;
    alice.expect_body_once("before").await;

    let mut peer = S2sPeer::external(&a, "b.test", &ca, ca.issue("b.test")).await;
    peer.send("<message><body>unbalanced</message>").await;
    assert_eq!(peer.expect_stream_error().await, "not-well-formed");

    bob.chat("alice@a.test/r", "after").await;
    alice.expect_body_once("after").await;
    alice.chat("bob@b.test/r", "still").await;
    bob.expect_body_once("still").await;
}

async fn subscription_handshake_and_presence(authentication: Authentication) {
    let (_ca, a, b) = federate(authentication).await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.online("alice", "r").await;
    let mut bob = b.online("bob", "r").await;

    // RFC 6121 section 3.1: alice asks, bob's server delivers the request, bob approves.
    alice
        .send("<presence to='bob@b.test' type='subscribe'/>")
        .await;
    let pushed = alice
        .expect("the pending-out roster push", |e| {
            xml::is_roster_push(e, "bob@b.test")
        })
        .await;
    assert_eq!(xml::pushed_item(&pushed).ask.as_deref(), Some("subscribe"));
    bob.expect("alice's request", |e| {
        xml::is_presence(e, "alice@a.test", Some("subscribe"))
    })
    .await;
    bob.send("<presence to='alice@a.test' type='subscribed'/>")
        .await;
    let pushed = alice
        .expect("the subscription roster push", |e| {
            xml::is_roster_push(e, "bob@b.test") && xml::pushed_item(e).subscription == "to"
        })
        .await;
    assert_eq!(xml::pushed_item(&pushed).ask, None);
    // Section 3.1.5: bob's server sends bob's current presence once subscribed.
    alice
        .expect("bob's presence", |e| {
            xml::is_presence(e, "bob@b.test/r", None)
        })
        .await;

    // Section 4.2: alice's next initial presence probes bob across the federation, and bob's server
    // answers with his presence.
    alice.send("<presence type='unavailable'/>").await;
    alice.barrier().await;
    alice.available(None).await;
    alice
        .expect("bob's presence answering the probe", |e| {
            xml::is_presence(e, "bob@b.test/r", None)
        })
        .await;
    // Section 4.4: bob's presence changes reach alice, his subscriber.
    bob.send("<presence><show>away</show></presence>").await;
    let away = alice
        .expect("bob's new presence", |e| {
            xml::is_presence(e, "bob@b.test/r", None)
        })
        .await;
    assert!(
        away.get_child("show", ns::CLIENT).is_some(),
        "{}",
        xml::show(&away)
    );
}

#[tokio::test]
async fn subscription_handshake_probe_and_presence_over_sasl_external() {
    subscription_handshake_and_presence(Authentication::External).await;
}

#[tokio::test]
async fn subscription_handshake_probe_and_presence_over_dialback() {
    subscription_handshake_and_presence(Authentication::Dialback).await;
}

#[tokio::test]
async fn a_message_to_an_offline_remote_user_is_stored_and_delivered_at_login() {
    let (_ca, a, b) = federate(Authentication::External).await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.login("alice", "r").await;
    alice.chat("bob@b.test", "while you were out").await;
    // Answered by b.test's server (stored offline): a ping after it through the same link proves it was
    // routed there before the check.
    let pong = alice
        .iq("get", Some("b.test"), "<ping xmlns='urn:xmpp:ping'/>")
        .await;
    assert_eq!(pong.attr("type"), Some("result"));
    let mut bob = b.online("bob", "r").await;
    bob.expect_body_once("while you were out").await;
}

#[tokio::test]
async fn direct_tls_federation_carries_messages_both_ways() {
    let (_ca, a, b) = federate_with(Authentication::External, true).await;
    let (mut alice, mut bob) = alice_and_bob(&a, &b).await;
    alice.chat("bob@b.test/r", "over direct TLS").await;
    bob.expect_body_once("over direct TLS").await;
    bob.chat("alice@a.test/r", "and back").await;
    alice.expect_body_once("and back").await;
    assert_eq!(a.s2s_authentications(), (1, 0, 1, 0));
}

#[tokio::test]
async fn a_stanza_for_a_peer_that_stays_down_bounces_at_the_queue_timeout() {
    let (_ca, a, mut b) = federate_tuned(
        Authentication::External,
        false,
        &[("HERALD_S2S__QUEUE_TIMEOUT_SECONDS", "1")],
    )
    .await;
    a.add_user("alice").await;
    let mut alice = a.login("alice", "r").await;
    b.stop().await;
    alice.chat("bob@b.test/r", "anyone there?").await;
    let error = alice
        .expect("the bounce", |e| {
            e.name() == "message" && e.attr("type") == Some("error")
        })
        .await;
    assert_eq!(error.attr("from"), Some("bob@b.test/r"));
    assert_eq!(
        xml::error_condition(&error).as_deref(),
        Some("remote-server-timeout"),
        "{}",
        xml::show(&error)
    );
}

#[tokio::test]
async fn stanzas_wait_for_a_peer_that_comes_back_within_the_queue_timeout() {
    let (_ca, a, mut b) = federate(Authentication::External).await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.login("alice", "r").await;
    b.stop().await;
    alice.chat("bob@b.test", "queued while you were down").await;
    alice.barrier().await;
    // The same s2s port (configured), new client ports: the queue's next attempt gets through.
    b.restart().await;
    let mut bob = b.online("bob", "r").await;
    bob.expect_body_once("queued while you were down").await;
}

#[tokio::test]
async fn a_certificate_for_another_domain_gets_neither_external_nor_dialback() {
    let (ca, a, _b) = federate(Authentication::External).await;
    // A valid certificate, but for c.test, on a stream that claims to be b.test (RFC 6125 section 6).
    let (mut peer, features) = S2sPeer::starttls(&a, "b.test", &ca, ca.issue("c.test")).await;
    assert!(
        features.get_child("mechanisms", ns::SASL).is_none(),
        "{}",
        xml::show(&features)
    );
    peer.send(
        "<db:result xmlns:db='jabber:server:dialback' from='b.test' to='a.test'>k</db:result>",
    )
    .await;
    let answer = peer.recv().await;
    assert_eq!(answer.attr("type"), Some("error"), "{}", xml::show(&answer));
    assert!(xml::show(&answer).contains("not-authorized"));
    peer.send("<message from='x@b.test' to='y@a.test'/>").await;
    assert_eq!(peer.expect_stream_error().await, "not-authorized");
}

#[tokio::test]
async fn dialback_piggybacks_another_domain_pair_on_an_authenticated_stream() {
    use herald_tests::federation::{Listening, TestCa, federated_server};
    let ca = TestCa::new();
    let (a_ports, b_ports) = (
        Listening::new("a.test", false),
        Listening::new("b.test", false),
    );
    // a.test's server also hosts a2.test.
    let a = federated_server(
        &ca,
        Authentication::External,
        &a_ports,
        &b_ports,
        &[("HERALD_SERVER__DOMAINS", "[\"a.test\", \"a2.test\"]")],
    )
    .await;
    let b = federated_server(&ca, Authentication::External, &b_ports, &a_ports, &[]).await;
    let alice = herald::accounts::parse_account("alice@a2.test").unwrap();
    herald::accounts::create(&a.storage, &alice, herald_tests::PASSWORD)
        .await
        .unwrap();

    // EXTERNAL authenticated (a.test, b.test) only: a stanza for a2.test is refused.
    let mut peer = S2sPeer::external(&a, "b.test", &ca, ca.issue("b.test")).await;
    peer.send("<message from='bob@b.test' to='alice@a2.test'><body>early</body></message>")
        .await;
    assert_eq!(peer.expect_stream_error().await, "invalid-from");

    // A dialback for (a2.test, b.test) on the same stream, with the key b.test's server gives: a.test's
    // server asks b.test's (authoritative) server, which vouches for it.
    let mut peer = S2sPeer::external(&a, "b.test", &ca, ca.issue("b.test")).await;
    let key = b
        .s2s()
        .federation
        .secret
        .key("a2.test", "b.test", &peer.stream_id);
    peer.send(&format!(
        "<db:result xmlns:db='jabber:server:dialback' from='b.test' to='a2.test'>{key}</db:result>"
    ))
    .await;
    let answer = peer.recv().await;
    assert_eq!(answer.attr("type"), Some("valid"), "{}", xml::show(&answer));
    assert_eq!(answer.attr("from"), Some("a2.test"));
    assert_eq!(a.s2s_authentications().1, 1, "one dialback inbound");
    // A wrong key for another pair is refused, and the stream goes on.
    peer.send(
        "<db:result xmlns:db='jabber:server:dialback' from='b.test' to='a.test'>0000</db:result>",
    )
    .await;
    let answer = peer.recv().await;
    assert_eq!(
        answer.attr("type"),
        Some("invalid"),
        "{}",
        xml::show(&answer)
    );
    peer.send("<message from='bob@b.test' to='alice@a2.test'><body>piggybacked</body></message>")
        .await;
    peer.send("<message from='mallory@c.test' to='alice@a2.test'/>")
        .await;
    assert_eq!(peer.expect_stream_error().await, "invalid-from");
    let stored = a.storage.offline.count("alice@a2.test").await.unwrap();
    assert_eq!(stored, 1, "the piggybacked message was accepted and stored");
}

/// RFC 6120 section 3.2.1 and XEP-0368 section 3: an SRV target that accepts TCP but is not an XMPP
/// server is skipped like one that refuses TCP, and the next target is tried.
#[tokio::test]
async fn a_target_that_is_not_an_xmpp_server_is_skipped_for_the_next_srv_record() {
    use herald_tests::federation::{
        DnsRecord, Listening, TestCa, dns_stub, federated_server, federated_server_resolving,
    };
    use std::net::Ipv4Addr;
    use tokio::io::AsyncWriteExt;

    // The first target answers every connection with an HTTP error and closes it.
    let impostor = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let impostor_port = impostor.local_addr().unwrap().port();
    let (tried, mut tried_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = impostor.accept().await {
            let _ = tried.send(());
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    let ca = TestCa::new();
    let (a_ports, b_ports) = (
        Listening::new("a.test", false),
        Listening::new("b.test", false),
    );
    let localhost = Ipv4Addr::LOCALHOST;
    let nameserver = dns_stub(vec![
        (
            "_xmpp-server._tcp.b.test",
            DnsRecord::Srv(10, 0, impostor_port, "first.b.test".into()),
        ),
        (
            "_xmpp-server._tcp.b.test",
            DnsRecord::Srv(20, 0, b_ports.port, "second.b.test".into()),
        ),
        ("first.b.test", DnsRecord::A(localhost)),
        ("second.b.test", DnsRecord::A(localhost)),
    ])
    .await;
    let a = federated_server_resolving(&ca, &a_ports, nameserver).await;
    let b = federated_server(&ca, Authentication::External, &b_ports, &a_ports, &[]).await;
    let (mut alice, mut bob) = alice_and_bob(&a, &b).await;
    alice.chat("bob@b.test/r", "past the impostor").await;
    bob.expect_body_once("past the impostor").await;
    assert!(
        tried_rx.try_recv().is_ok(),
        "the first SRV target was tried first"
    );
}
