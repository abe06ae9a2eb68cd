//! The push relay's HTTP server under slow and greedy clients (over real sockets): a request whose
//! headers never finish, and an idle keep-alive connection, are closed within the header-read
//! timeout; a body that never finishes gets 408; connections beyond `max_connections` wait in the
//! backlog until a slot frees; one address beyond `max_connections_per_address` is turned away.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_tests::{DOMAIN, TIMEOUT, TestServer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEALTH: &[u8] = b"GET /api/v1/health/ HTTP/1.1\r\nHost: relay\r\n\r\n";

/// A server hosting the relay on port 0, with `http` as its `[relay.http]` section.
async fn relay_server(http: &str) -> TestServer {
    TestServer::builder()
        .toml(&format!(
            "[relay]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[relay.http]\n{http}\n"
        ))
        .start()
        .await
}

/// Reads until the peer closes the connection; how long that took. Fails after `limit`.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("connection still open after {limit:?}"));
    start.elapsed()
}

/// Reads one HTTP/1.1 answer's status line (the head, at least), within `limit`.
async fn status_line(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        while !got.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    let text = String::from_utf8_lossy(&got);
    text.lines().next().map(str::to_string)
}

#[tokio::test]
async fn unfinished_headers_are_closed_within_the_header_timeout() {
    let server = relay_server("header_read_timeout_ms = 500").await;
    let mut slow = TcpStream::connect(server.relay_address()).await.unwrap();
    slow.write_all(b"POST /api/v1/messages/ HTTP/1.1\r\nHost: relay\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut slow, TIMEOUT).await;
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    // Another client is served meanwhile and afterwards.
    let mut fine = TcpStream::connect(server.relay_address()).await.unwrap();
    fine.write_all(HEALTH).await.unwrap();
    let line = status_line(&mut fine, TIMEOUT).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let server = relay_server("header_read_timeout_ms = 500").await;
    let mut idle = TcpStream::connect(server.relay_address()).await.unwrap();
    idle.write_all(HEALTH).await.unwrap();
    let line = status_line(&mut idle, TIMEOUT).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    closed_within(&mut idle, TIMEOUT).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let server = relay_server("max_connections = 3").await;
    let addr = server.relay_address();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(HEALTH).await.unwrap();
        let line = status_line(&mut c, TIMEOUT).await.unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        held.push(c);
    }
    // The fourth connects (the kernel's backlog) but is not served while three are held...
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting.write_all(HEALTH).await.unwrap();
    assert_eq!(
        status_line(&mut waiting, Duration::from_millis(500)).await,
        None,
        "served beyond max_connections"
    );
    // ...and is served once one of them closes.
    drop(held.pop());
    let line = status_line(&mut waiting, TIMEOUT).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
}

#[tokio::test]
async fn one_address_beyond_its_share_is_turned_away() {
    let server = relay_server("max_connections_per_address = 2").await;
    let addr = server.relay_address();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(HEALTH).await.unwrap();
        assert!(status_line(&mut c, TIMEOUT).await.is_some());
        held.push(c);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(HEALTH).await;
    closed_within(&mut third, TIMEOUT).await;
    // Once one closes, the address may connect again.
    drop(held.pop());
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut again = TcpStream::connect(addr).await.unwrap();
        let _ = again.write_all(HEALTH).await;
        if let Some(line) = status_line(&mut again, TIMEOUT).await
            && line.starts_with("HTTP/1.1 200")
        {
            break;
        }
        // The server may not have seen the close yet: it arrives as an event, retried briefly.
        assert!(Instant::now() < deadline, "address never served again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_tls_listener_has_the_same_timeouts() {
    let server = TestServer::builder()
        .toml(
            "[relay]\nenabled = true\ntls = true\nlisten = \"127.0.0.1:0\"\n\
             [relay.http]\nheader_read_timeout_ms = 500\n",
        )
        .start()
        .await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server.certificate()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = TcpStream::connect(server.relay_address()).await.unwrap();
    let mut tls = tokio::time::timeout(
        TIMEOUT,
        connector.connect(ServerName::try_from(DOMAIN).unwrap(), socket),
    )
    .await
    .unwrap()
    .unwrap();
    tls.write_all(HEALTH).await.unwrap();
    let line = status_line(&mut tls, TIMEOUT).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    // Kept alive but silent: closed within the header-read timeout.
    closed_within(&mut tls, TIMEOUT).await;
}

#[tokio::test]
async fn a_body_trickled_slower_than_the_request_timeout_gets_408() {
    let server = relay_server("request_timeout_ms = 500").await;
    let mut slow = TcpStream::connect(server.relay_address()).await.unwrap();
    // Complete headers, then a tenth of the announced body, then silence (well within idle_timeout_ms).
    slow.write_all(
        b"POST /api/v1/messages/ HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"token\":",
    )
    .await
    .unwrap();
    let line = status_line(&mut slow, TIMEOUT).await;
    assert_eq!(line.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    closed_within(&mut slow, TIMEOUT).await;
}
