//! Hostile and broken input over real sockets (RFC 6120 section 4.9.3 stream errors, section 11 restricted
//! XML, section 13.12 resource limits). Each test checks the stream error the bad connection gets and that
//! two clients already connected to the same server keep chatting afterwards: only the bad stream ends.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::xml;
use herald_tests::{TestClient, TestServer};

/// A server with `env` overrides, accounts bob, carol, dave and mallory, and bob and carol online.
async fn setup(env: &[(&str, &str)]) -> (TestServer, TestClient, TestClient) {
    let mut builder = TestServer::builder();
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    let server = builder.start().await;
    for user in ["bob", "carol", "dave", "mallory"] {
        server.add_user(user).await;
    }
    let bob = server.online("bob", "r").await;
    let carol = server.online("carol", "r").await;
    (server, bob, carol)
}

async fn still_chatting(bob: &mut TestClient, carol: &mut TestClient) {
    bob.chat("carol@localhost/r", "still here?").await;
    carol
        .expect("bob's message after the attack", |e| {
            xml::is_message(e, "bob@localhost/r", "still here?")
        })
        .await;
    carol.chat("bob@localhost/r", "yes").await;
    bob.expect("carol's reply after the attack", |e| {
        xml::is_message(e, "carol@localhost/r", "yes")
    })
    .await;
}

const STREAM_HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

#[tokio::test]
async fn malformed_xml_is_not_well_formed() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    let mut mallory = server.login("mallory", "r").await;
    mallory
        .send("<message to='bob@localhost'><body>unbalanced</message>")
        .await;
    mallory.expect_stream_error("not-well-formed").await;
    bob.assert_none("part of a broken stanza", |e| {
        xml::has_body(e, "unbalanced")
    })
    .await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn billion_laughs_doctype_is_restricted_xml() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    let mut entities = String::from("<!ENTITY lol0 'lol'>");
    for level in 1..10 {
        let previous = format!("&lol{};", level - 1).repeat(10);
        entities.push_str(&format!("<!ENTITY lol{level} '{previous}'>"));
    }
    let mut mallory = TestClient::tcp(&server).await;
    mallory
        .send(&format!(
            "<?xml version='1.0'?><!DOCTYPE stream:stream [{entities}]>{STREAM_HEADER}<message to='bob@localhost'><body>&lol9;</body></message>"
        ))
        .await;
    mallory.read_header().await;
    mallory.expect_stream_error("restricted-xml").await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn processing_instruction_is_restricted_xml() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    let mut mallory = server.login("mallory", "r").await;
    mallory.send("<?evil instruction?>").await;
    mallory.expect_stream_error("restricted-xml").await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn oversized_stanza_is_a_policy_violation() {
    let (server, mut bob, mut carol) = setup(&[("HERALD_LIMITS__MAX_STANZA_BYTES", "10000")]).await;
    let mut mallory = server.login("mallory", "r").await;
    // Just under the limit passes...
    let fits = "a".repeat(9_000);
    mallory.chat("bob@localhost/r", &fits).await;
    bob.expect("a stanza under the limit", |e| xml::has_body(e, &fits))
        .await;
    // ...over it ends the stream.
    let body = "a".repeat(20_000);
    mallory.chat("bob@localhost/r", &body).await;
    mallory.expect_stream_error("policy-violation").await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn deep_nesting_is_a_policy_violation() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    let mut mallory = server.login("mallory", "r").await;
    let depth = 100;
    let open = "<x xmlns='urn:example:deep'>".repeat(depth);
    let close = "</x>".repeat(depth);
    mallory
        .send(&format!(
            "<message to='bob@localhost/r'>{open}{close}</message>"
        ))
        .await;
    mallory.expect_stream_error("policy-violation").await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn wrong_stream_namespace_is_invalid_namespace() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    let mut mallory = TestClient::tcp(&server).await;
    mallory
        .send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='urn:example:not-streams' to='localhost' version='1.0'>")
        .await;
    mallory.read_header().await;
    mallory.expect_stream_error("invalid-namespace").await;
    // The content namespace must be jabber:client on the c2s port (RFC 6120 section 4.9.3.10).
    let mut server_ns = TestClient::tcp(&server).await;
    server_ns
        .send("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
        .await;
    server_ns.read_header().await;
    server_ns.expect_stream_error("invalid-namespace").await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn stanzas_before_authentication_are_not_authorized() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    let stanza = "<message to='bob@localhost/r' type='chat'><body>unauthenticated</body></message>";
    let mut before_tls = TestClient::connect_plain(&server).await;
    before_tls.send(stanza).await;
    before_tls.expect_stream_error("not-authorized").await;
    let mut after_tls = TestClient::connect_starttls(&server).await;
    after_tls.send(stanza).await;
    after_tls.expect_stream_error("not-authorized").await;
    bob.assert_none("an unauthenticated stanza", |e| {
        xml::has_body(e, "unauthenticated")
    })
    .await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn flood_of_stanzas_is_a_policy_violation() {
    let (server, mut bob, mut carol) = setup(&[("HERALD_LIMITS__STANZAS_PER_SECOND", "10")]).await;
    let mut mallory = server.login("mallory", "r").await;
    let flood: String = (0..200)
        .map(|n| {
            format!("<message to='dave@localhost' type='chat'><body>flood {n}</body></message>")
        })
        .collect();
    mallory.send(&flood).await;
    mallory.expect_stream_error("policy-violation").await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn invalid_utf8_is_not_well_formed() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    let mut mallory = server.login("mallory", "r").await;
    mallory
        .send_bytes(
            b"<message to='bob@localhost/r' type='chat'><body>\xC3\x28\xFF</body></message>",
        )
        .await;
    mallory.expect_stream_error("not-well-formed").await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn offline_messages_survive_bad_connections() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    bob.chat("dave@localhost", "kept one").await;
    bob.chat("dave@localhost", "kept two").await;
    bob.barrier().await;
    // A stranger's broken stream, then dave's own session breaking before it ever became available.
    let mut mallory = server.login("mallory", "r").await;
    mallory
        .send("<message to='dave@localhost'><body>a & b</body></message>")
        .await;
    mallory.expect_stream_error("not-well-formed").await;
    let mut broken_dave = server.login("dave", "broken").await;
    broken_dave.send("<presence></wrong>").await;
    broken_dave.expect_stream_error("not-well-formed").await;

    let mut dave = server.login("dave", "r").await;
    dave.available(None).await;
    let got = dave.barrier().await;
    let bodies: Vec<String> = got
        .iter()
        .filter(|e| e.is("message", ns::CLIENT))
        .filter_map(xml::body)
        .collect();
    assert_eq!(bodies, ["kept one", "kept two"]);
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn xml_comment_is_restricted_xml() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    let mut mallory = server.login("mallory", "r").await;
    mallory.send("<!-- hidden -->").await;
    mallory.expect_stream_error("restricted-xml").await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn unknown_first_level_element_is_unsupported_stanza_type() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    let mut mallory = server.login("mallory", "r").await;
    mallory.send("<gift xmlns='urn:example:gift'/>").await;
    mallory.expect_stream_error("unsupported-stanza-type").await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn data_pipelined_after_starttls_is_never_processed() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    let mut mallory = TestClient::connect_plain(&server).await;
    // The STARTTLS command-injection attack: plaintext after <starttls/> must not reach the TLS session.
    mallory
        .send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message to='bob@localhost/r' type='chat'><body>injected</body></message>")
        .await;
    let proceed = mallory.recv().await;
    assert!(proceed.is("proceed", ns::TLS), "{}", xml::show(&proceed));
    match mallory.next_within(herald_tests::TIMEOUT).await {
        Some(herald_tests::Incoming::Failed(_) | herald_tests::Incoming::End) => {}
        other => panic!("expected the connection to be closed, got {other:?}"),
    }
    bob.assert_none("injected plaintext", |e| xml::has_body(e, "injected"))
        .await;
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn silent_connection_on_the_direct_tls_port_is_closed() {
    let (server, mut bob, mut carol) = setup(&[("HERALD_C2S__AUTH_TIMEOUT_SECONDS", "1")]).await;
    // Connects and never starts the TLS handshake: it must not hold a connection slot forever.
    let mut idle = tokio::net::TcpStream::connect(server.direct_tls_address())
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(
        herald_tests::TIMEOUT,
        tokio::io::AsyncReadExt::read(&mut idle, &mut buffer),
    )
    .await
    .expect("the server closes a silent connection before the timeout");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
    still_chatting(&mut bob, &mut carol).await;
}

#[tokio::test]
async fn plaintext_on_the_direct_tls_port_is_dropped() {
    let (server, mut bob, mut carol) = setup(&[]).await;
    let mut plain = tokio::net::TcpStream::connect(server.direct_tls_address())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, STREAM_HEADER.as_bytes())
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let mut answer = Vec::new();
    // Whatever the TLS stack answers (an alert at most), the connection ends without any XMPP.
    loop {
        let read = tokio::time::timeout(
            herald_tests::TIMEOUT,
            tokio::io::AsyncReadExt::read(&mut plain, &mut buffer),
        )
        .await
        .expect("the server closes the connection");
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    assert!(
        !String::from_utf8_lossy(&answer).contains("stream"),
        "no XMPP in the clear"
    );
    still_chatting(&mut bob, &mut carol).await;
}
