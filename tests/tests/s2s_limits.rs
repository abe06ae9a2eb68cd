//! What one inbound peer server may use (RFC 6120 section 13.12): connections in all, per address and per
//! authenticated domain, stanza size, and a stanza rate that slows the peer down rather than losing what
//! it sent.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use herald_tests::federation::{Authentication, S2sPeer, federate_tuned};
use herald_tests::{TIMEOUT, TestServer, eventually};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `server`'s s2s port from `source` (any 127.0.0.0/8 address on Linux).
async fn connect_from(server: &TestServer, source: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(server.s2s_address()).await.unwrap()
}

/// Everything the server writes on `socket` until it closes it.
async fn read_to_close(socket: &mut TcpStream) -> String {
    let mut text = Vec::new();
    tokio::time::timeout(TIMEOUT, socket.read_to_end(&mut text))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test]
async fn connections_over_the_total_and_per_address_caps_get_policy_violation() {
    let (_ca, a, _b) = federate_tuned(
        Authentication::External,
        false,
        &[
            ("HERALD_S2S__MAX_CONNECTIONS", "3"),
            ("HERALD_S2S__MAX_CONNECTIONS_PER_ADDRESS", "2"),
        ],
    )
    .await;
    let first = Ipv4Addr::new(127, 0, 0, 1);
    let one = connect_from(&a, first).await;
    let _two = connect_from(&a, first).await;
    let mut three = connect_from(&a, first).await;
    let refused = read_to_close(&mut three).await;
    assert!(refused.contains("policy-violation"), "{refused}");
    assert!(refused.contains("from this address"), "{refused}");
    assert!(refused.contains("jabber:server"), "{refused}");
    let _four = connect_from(&a, Ipv4Addr::new(127, 0, 0, 2)).await;
    let mut five = connect_from(&a, Ipv4Addr::new(127, 0, 0, 3)).await;
    let refused = read_to_close(&mut five).await;
    assert!(refused.contains("policy-violation"), "{refused}");
    assert!(
        refused.contains("too many server-to-server connections<"),
        "{refused}"
    );
    // A closed connection gives its place back.
    drop(one);
    eventually("the closed connection is no longer counted", async || {
        a.s2s().federation.connections.count() == 2
    })
    .await;
}

#[tokio::test]
async fn one_domain_may_authenticate_on_only_so_many_streams() {
    let (ca, a, _b) = federate_tuned(
        Authentication::External,
        false,
        &[("HERALD_S2S__MAX_CONNECTIONS_PER_DOMAIN", "1")],
    )
    .await;
    let _first = S2sPeer::external(&a, "b.test", &ca, ca.issue("b.test")).await;
    let (mut second, _) = S2sPeer::starttls(&a, "b.test", &ca, ca.issue("b.test")).await;
    second
        .send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .await;
    assert_eq!(second.expect_stream_error().await, "policy-violation");
    // Another domain is not held back by b.test's streams.
    let _other = S2sPeer::external(&a, "c.test", &ca, ca.issue("c.test")).await;
}

#[tokio::test]
async fn a_stanza_over_the_size_limit_ends_the_peers_stream_with_policy_violation() {
    let (ca, a, _b) = federate_tuned(
        Authentication::External,
        false,
        &[("HERALD_LIMITS__MAX_STANZA_BYTES", "10000")],
    )
    .await;
    a.add_user("alice").await;
    let mut peer = S2sPeer::external(&a, "b.test", &ca, ca.issue("b.test")).await;
    let body = "x".repeat(20_000);
    peer.send(&format!(
        "<message from='bob@b.test' to='alice@a.test'><body>{body}</body></message>"
    ))
    .await;
    assert_eq!(peer.expect_stream_error().await, "policy-violation");
    assert_eq!(a.storage.offline.count("alice@a.test").await.unwrap(), 0);
}

#[tokio::test]
async fn a_peer_over_the_stanza_rate_is_read_more_slowly_and_loses_nothing() {
    // A peer may send 50 times a client's rate: 50 a second here, in bursts of 100.
    let (ca, a, _b) = federate_tuned(
        Authentication::External,
        false,
        &[("HERALD_LIMITS__STANZAS_PER_SECOND", "1")],
    )
    .await;
    a.add_user("alice").await;
    let mut peer = S2sPeer::external(&a, "b.test", &ca, ca.issue("b.test")).await;
    let started = Instant::now();
    for n in 0..150 {
        peer.send(&format!(
            "<message from='bob@b.test' to='alice@a.test' id='m{n}'><body>{n}</body></message>"
        ))
        .await;
    }
    eventually("all 150 messages are stored for alice", async || {
        a.storage.offline.count("alice@a.test").await.unwrap() == 150
    })
    .await;
    // The 50 past the burst took at least about a second to be read.
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}
