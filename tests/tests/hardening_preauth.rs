//! Caps on unauthenticated connections (finding 1 of the hardening issue; RFC 6120 section 13.12): per
//! source address (IPv6 grouped by /64) and overall, counting direct-TLS handshakes in progress. The next
//! connection over a cap gets a `policy-violation` stream error written without reading (or, on the
//! direct-TLS port, is closed at once), while users from other addresses still log in, and a slot is
//! released the moment its stream authenticates or ends.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use herald_tests::client::connect_from;
use herald_tests::{TIMEOUT, TestClient, TestServer};
use tokio::io::AsyncReadExt;

/// The default `limits.max_unauthenticated_per_address`.
const DEFAULT_PER_ADDRESS: usize = 32;

fn source(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Opens `count` plaintext streams from `from`, each past its stream features (so the server holds them as
/// unauthenticated connections).
async fn hold(server: &TestServer, from: IpAddr, count: usize) -> Vec<TestClient> {
    let mut held = Vec::new();
    for _ in 0..count {
        held.push(TestClient::connect_plain_from(server, from).await);
    }
    held
}

/// A connection from `from` is refused: without sending anything, it reads the server's header and a
/// `policy-violation` stream error.
async fn assert_refused(server: &TestServer, from: IpAddr) {
    let mut client = TestClient::tcp_from(server, from).await;
    client.read_header().await;
    client.expect_stream_error("policy-violation").await;
}

/// Connects from `from` until a connection is accepted (its stream features arrive), for at most
/// `TIMEOUT`: the server releases a slot right after the stream that held it ends, which a peer cannot
/// observe exactly. Each refused attempt is answered at once, so this does not spin on a timer.
async fn connect_once_a_slot_is_free(server: &TestServer, from: IpAddr) -> TestClient {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let mut client = TestClient::tcp_from(server, from).await;
        client.send_header(herald_tests::DOMAIN).await;
        client.read_header().await;
        let first = client.recv().await;
        if first.is("features", herald::xmpp::ns::STREAMS) {
            client.features = first;
            return client;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slot was released"
        );
    }
}

#[tokio::test]
async fn the_per_address_cap_refuses_the_next_connection_from_that_address() {
    let server = TestServer::start().await;
    server.add_user("bob").await;
    let mut held = hold(&server, source(2), DEFAULT_PER_ADDRESS).await;
    assert_refused(&server, source(2)).await;
    // Another address is not affected: a user logs in from 127.0.0.1.
    let mut bob = server.online("bob", "r").await;
    bob.barrier().await;
    // A stream that ends gives its slot back.
    held.pop().unwrap().close_and_wait_for_end().await;
    let again = connect_once_a_slot_is_free(&server, source(2)).await;
    drop(again);
    drop(held);
}

#[tokio::test]
async fn the_overall_cap_refuses_the_next_connection_from_any_address() {
    let server = TestServer::builder()
        .env("HERALD_LIMITS__MAX_UNAUTHENTICATED", "4")
        .start()
        .await;
    server.add_user("bob").await;
    let mut held = hold(&server, source(3), 2).await;
    held.extend(hold(&server, source(4), 2).await);
    assert_refused(&server, source(5)).await;
    assert_refused(&server, source(1)).await;
    // Once one of them ends, a user logs in again.
    held.pop().unwrap().close_and_wait_for_end().await;
    let mut bob = connect_once_a_slot_is_free(&server, source(1)).await;
    bob.starttls().await;
    bob.auth_plain("bob", herald_tests::PASSWORD).await.unwrap();
    bob.bind(Some("r")).await;
    bob.barrier().await;
}

#[tokio::test]
async fn authenticated_streams_give_their_slot_back() {
    let server = TestServer::builder()
        .env("HERALD_LIMITS__MAX_UNAUTHENTICATED", "2")
        .env("HERALD_LIMITS__MAX_UNAUTHENTICATED_PER_ADDRESS", "1")
        .start()
        .await;
    let mut online = Vec::new();
    for user in ["bob", "carol", "dave"] {
        server.add_user(user).await;
        // Each login happens from the same address, one after another, and stays online.
        online.push(server.login(user, "r").await);
    }
    for client in &mut online {
        client.barrier().await;
    }
}

#[tokio::test]
async fn direct_tls_handshakes_in_progress_count_as_unauthenticated() {
    let server = TestServer::start().await;
    let mut silent = Vec::new();
    for _ in 0..DEFAULT_PER_ADDRESS {
        // TCP only: no ClientHello is ever sent.
        silent.push(connect_from(server.direct_tls_address(), source(6)).await);
    }
    let mut refused = connect_from(server.direct_tls_address(), source(6)).await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(TIMEOUT, refused.read(&mut byte))
        .await
        .expect("the connection over the cap is closed at once");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without data: {read:?}"
    );
    // Another address still gets a TLS session and a stream.
    let client = TestClient::connect_direct_tls(&server).await;
    drop(client);
    drop(silent);
}
