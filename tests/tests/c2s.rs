//! Client stream negotiation over real sockets (RFC 6120 sections 4 to 7, XEP-0368 direct TLS, XEP-0478
//! limits, XEP-0199 server pings): what is offered at each stage, what is refused, and how streams end.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::xml::{self, mechanisms};
use herald_tests::{DOMAIN, Incoming, PASSWORD, TestClient, TestServer};

#[tokio::test]
async fn starttls_login_binds_the_requested_resource() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut client = TestClient::connect_starttls(&server).await;
    assert_eq!(client.alpn, None, "no ALPN on STARTTLS");
    client.auth_plain("alice", PASSWORD).await.unwrap();
    assert_eq!(client.bind(Some("desk")).await, "alice@localhost/desk");
    client.barrier().await;
}

#[tokio::test]
async fn direct_tls_login_negotiates_alpn_xmpp_client() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut client = TestClient::connect_direct_tls(&server).await;
    assert_eq!(client.alpn.as_deref(), Some(&b"xmpp-client"[..]));
    // XEP-0368: TLS is already up, so the first features offer SASL, not STARTTLS.
    assert!(client.features.get_child("starttls", ns::TLS).is_none());
    assert!(mechanisms(&client.features).contains(&"SCRAM-SHA-256-PLUS".to_string()));
    client.auth_plain("alice", PASSWORD).await.unwrap();
    assert_eq!(client.bind(Some("phone")).await, "alice@localhost/phone");
    client.barrier().await;
}

#[tokio::test]
async fn scram_sha_256_login_verifies_the_server_signature() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut client = TestClient::connect_starttls(&server).await;
    client.auth_scram_sha256("alice", PASSWORD).await.unwrap();
    assert_eq!(client.bind(Some("r")).await, "alice@localhost/r");
    let mut wrong = TestClient::connect_starttls(&server).await;
    assert_eq!(
        wrong.auth_scram_sha256("alice", "not the password").await,
        Err("not-authorized".to_string())
    );
}

/// RFC 9266 / RFC 5802 section 6: SCRAM-SHA-256-PLUS with the tls-exporter binding of this TLS 1.3
/// session succeeds; the same proof bound to other binding data is refused, so a man in the middle
/// relaying the exchange over its own TLS session cannot log in.
#[tokio::test]
async fn scram_sha_256_plus_binds_the_login_to_the_tls_session() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut client = TestClient::connect_starttls(&server).await;
    let exporter = client
        .tls_exporter
        .clone()
        .expect("TLS 1.3 gives a tls-exporter binding");
    client
        .auth_scram_sha256_bound("alice", PASSWORD, Some(("tls-exporter", exporter)))
        .await
        .unwrap();
    assert_eq!(client.bind(Some("plus")).await, "alice@localhost/plus");

    let mut relayed = TestClient::connect_direct_tls(&server).await;
    let foreign = vec![0x42; 32];
    assert_eq!(
        relayed
            .auth_scram_sha256_bound("alice", PASSWORD, Some(("tls-exporter", foreign)))
            .await,
        Err("not-authorized".to_string())
    );
}

fn limits(features: &herald_tests::Element) -> (String, String) {
    let limits = features
        .get_child("limits", ns::STREAM_LIMITS)
        .expect("XEP-0478 <limits/> in every features element");
    let text = |name| {
        limits
            .get_child(name, ns::STREAM_LIMITS)
            .map(herald_tests::Element::text)
            .unwrap_or_default()
    };
    (text("max-bytes"), text("idle-seconds"))
}

#[tokio::test]
async fn features_advertised_at_each_stage() {
    let server = TestServer::builder()
        .env("HERALD_LIMITS__MAX_STANZA_BYTES", "20000")
        .env("HERALD_C2S__PING_INTERVAL_SECONDS", "120")
        .start()
        .await;
    server.add_user("alice").await;
    // Before authentication the smaller pre-authentication stanza size is announced (8192 bytes).
    let expected_limits = ("20000".to_string(), "120".to_string());
    let expected_limits_before_auth = ("8192".to_string(), "120".to_string());

    // Before TLS: STARTTLS, required; no SASL at all, so no PLAIN in the clear.
    let mut client = TestClient::connect_plain(&server).await;
    let starttls = client
        .features
        .get_child("starttls", ns::TLS)
        .expect("starttls offered");
    assert!(starttls.has_child("required", ns::TLS));
    assert!(
        mechanisms(&client.features).is_empty(),
        "no mechanisms before TLS"
    );
    assert!(client.features.get_child("bind", ns::BIND).is_none());
    assert_eq!(limits(&client.features), expected_limits_before_auth);

    // After TLS: SASL mechanisms including channel binding and PLAIN; no STARTTLS again.
    client.starttls().await;
    let offered = mechanisms(&client.features);
    for mechanism in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"] {
        assert!(
            offered.contains(&mechanism.to_string()),
            "{mechanism} in {offered:?}"
        );
    }
    assert!(client.features.get_child("starttls", ns::TLS).is_none());
    assert!(client.features.get_child("bind", ns::BIND).is_none());
    assert_eq!(limits(&client.features), expected_limits_before_auth);

    // After SASL: bind, optional legacy session, roster versioning, pre-approval; no more SASL.
    client.auth_plain("alice", PASSWORD).await.unwrap();
    let features = &client.features;
    assert!(features.has_child("bind", ns::BIND));
    let session = features
        .get_child("session", ns::SESSION)
        .expect("legacy session advertised");
    assert!(session.has_child("optional", ns::SESSION));
    assert!(features.has_child("ver", ns::ROSTER_VERSIONING));
    assert!(features.has_child("sub", ns::PRE_APPROVAL));
    assert!(mechanisms(features).is_empty());
    assert_eq!(limits(features), expected_limits);
}

#[tokio::test]
async fn wrong_password_fails_with_not_authorized() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut client = TestClient::connect_starttls(&server).await;
    assert_eq!(
        client.auth_plain("alice", "guess").await,
        Err("not-authorized".to_string())
    );
    // RFC 6120 section 6.4.5: the client may try again on the same stream.
    client.auth_plain("alice", PASSWORD).await.unwrap();
    client.bind(Some("r")).await;
}

#[tokio::test]
async fn unknown_user_fails_like_a_wrong_password() {
    let server = TestServer::start().await;
    let mut client = TestClient::connect_starttls(&server).await;
    assert_eq!(
        client.auth_plain("nobody", PASSWORD).await,
        Err("not-authorized".to_string())
    );
}

#[tokio::test]
async fn auth_before_starttls_is_refused_with_encryption_required() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut client = TestClient::connect_plain(&server).await;
    assert_eq!(
        client.auth_plain("alice", PASSWORD).await,
        Err("encryption-required".to_string())
    );
    // The stream stays usable: STARTTLS then login still work.
    client.starttls().await;
    client.auth_plain("alice", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn server_generates_a_resource_when_none_is_requested() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut client = TestClient::connect_starttls(&server).await;
    client.auth_plain("alice", PASSWORD).await.unwrap();
    let jid = client.bind(None).await;
    let resource = jid
        .strip_prefix("alice@localhost/")
        .expect("bound to the account");
    assert!(!resource.is_empty(), "a resource was generated: {jid}");
    let mut other = TestClient::connect_starttls(&server).await;
    other.auth_plain("alice", PASSWORD).await.unwrap();
    assert_ne!(other.bind(None).await, jid, "generated resources differ");
}

#[tokio::test]
async fn second_login_with_the_same_resource_replaces_the_first() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut first = server.online("alice", "same").await;
    let mut second = server.online("alice", "same").await;
    // RFC 6120 section 7.7.2.2: the older session ends with <conflict/>.
    first.expect_stream_error("conflict").await;
    second.barrier().await;
    let mut bob = server.online("bob", "r").await;
    bob.chat("alice@localhost/same", "to the new one").await;
    second
        .expect("message on the new session", |e| {
            xml::has_body(e, "to the new one")
        })
        .await;
}

#[tokio::test]
async fn legacy_session_iq_is_answered() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut client = server.login("alice", "r").await;
    client
        .iq_result(
            "set",
            None,
            "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>",
        )
        .await;
}

#[tokio::test]
async fn unknown_host_gets_host_unknown() {
    let server = TestServer::start().await;
    let mut client = TestClient::tcp(&server).await;
    client.send_header("elsewhere.example").await;
    client.read_header().await;
    client.expect_stream_error("host-unknown").await;
}

#[tokio::test]
async fn stream_that_never_authenticates_gets_connection_timeout() {
    let server = TestServer::builder()
        .env("HERALD_C2S__AUTH_TIMEOUT_SECONDS", "1")
        .start()
        .await;
    let mut client = TestClient::connect_starttls(&server).await;
    client.expect_stream_error("connection-timeout").await;
}

#[tokio::test]
async fn idle_session_is_pinged_and_stays_when_it_answers() {
    let server = TestServer::builder()
        .env("HERALD_C2S__PING_INTERVAL_SECONDS", "1")
        .start()
        .await;
    server.add_user("alice").await;
    let mut client = server.login("alice", "r").await;
    for _ in 0..2 {
        let ping = client
            .expect("server ping", |e| {
                e.is("iq", ns::CLIENT)
                    && e.attr("type") == Some("get")
                    && e.has_child("ping", ns::PING)
            })
            .await;
        assert_eq!(ping.attr("from"), Some(DOMAIN));
        let id = ping.attr("id").unwrap();
        client
            .send(&format!("<iq type='result' id='{id}' to='{DOMAIN}'/>"))
            .await;
    }
    // Answering kept the session: it still works.
    client.barrier().await;
}

#[tokio::test]
async fn idle_session_that_never_answers_the_ping_gets_connection_timeout() {
    let server = TestServer::builder()
        .env("HERALD_C2S__PING_INTERVAL_SECONDS", "1")
        .start()
        .await;
    server.add_user("alice").await;
    let mut client = server.login("alice", "r").await;
    client
        .expect("server ping", |e| e.has_child("ping", ns::PING))
        .await;
    client.expect_stream_error("connection-timeout").await;
}

#[tokio::test]
async fn closing_the_stream_is_answered_with_a_closing_tag() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut client = server.login("alice", "r").await;
    client.send("</stream:stream>").await;
    match client.next_within(herald_tests::TIMEOUT).await {
        Some(Incoming::End) => {}
        other => panic!("expected </stream:stream>, got {other:?}"),
    }
}

#[tokio::test]
async fn unsupported_stream_version_is_refused() {
    let server = TestServer::start().await;
    let mut client = TestClient::tcp(&server).await;
    client
        .send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='2.0'>")
        .await;
    client.read_header().await;
    client.expect_stream_error("unsupported-version").await;
}

#[tokio::test]
async fn server_shutdown_ends_sessions_with_system_shutdown() {
    let mut server = TestServer::start().await;
    server.add_user("alice").await;
    let mut client = server.online("alice", "r").await;
    server.stop().await;
    client.expect_stream_error("system-shutdown").await;
}

/// Sends an `<auth/>` and returns the condition of the `<failure/>` it must get.
async fn sasl_failure(client: &mut TestClient, auth: &str) -> String {
    client.send(auth).await;
    let outcome = client
        .expect("<failure/>", |e| {
            e.is("failure", ns::SASL) || e.is("success", ns::SASL)
        })
        .await;
    assert!(outcome.is("failure", ns::SASL), "{}", xml::show(&outcome));
    xml::first_child_name(&outcome)
}

#[tokio::test]
async fn sasl_refuses_unknown_mechanisms_bad_base64_and_foreign_authzid() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut client = TestClient::connect_starttls(&server).await;
    assert_eq!(
        sasl_failure(
            &mut client,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-UNKNOWN'>=</auth>"
        )
        .await,
        "invalid-mechanism"
    );
    assert_eq!(
        sasl_failure(
            &mut client,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>not*base64!</auth>"
        )
        .await,
        "incorrect-encoding"
    );
    // PLAIN with alice's password but authorizing as bob (RFC 4616 authzid).
    use base64::Engine;
    let message = base64::engine::general_purpose::STANDARD
        .encode(format!("bob@localhost\0alice\0{PASSWORD}"));
    client
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{message}</auth>"
        ))
        .await;
    let outcome = client
        .expect("<failure/>", |e| {
            e.is("failure", ns::SASL) || e.is("success", ns::SASL)
        })
        .await;
    assert!(outcome.is("failure", ns::SASL), "{}", xml::show(&outcome));
    // Still usable afterwards.
    client.auth_plain("alice", PASSWORD).await.unwrap();
}

#[tokio::test]
async fn repeated_failures_throttle_the_account() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut client = TestClient::connect_starttls(&server).await;
    for _ in 0..5 {
        assert_eq!(
            client.auth_plain("alice", "guess").await,
            Err("not-authorized".into())
        );
    }
    // RFC 6120 section 13.5: further attempts, even with the right password, are refused for a while.
    let mut later = TestClient::connect_starttls(&server).await;
    assert_eq!(
        later.auth_plain("alice", PASSWORD).await,
        Err("temporary-auth-failure".into())
    );
}

#[tokio::test]
async fn replacing_a_session_leaves_the_new_one_available() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.befriend("alice", "bob").await;
    let mut bob = server.online("bob", "r").await;
    let mut first = server.online("alice", "same").await;
    bob.expect("first session's presence", |e| {
        xml::is_presence(e, "alice@localhost/same", None)
    })
    .await;
    // A phone reconnecting with the same resource: bind, then presence at once.
    let mut second = server.login("alice", "same").await;
    second.send("<presence/>").await;
    first.expect_stream_error("conflict").await;
    second.barrier().await;
    bob.barrier().await;
    // Whatever order the old session's cleanup and the new presence took, the new session is available:
    // a message to the bare JID reaches it.
    bob.chat("alice@localhost", "are you there?").await;
    second
        .expect("message to the bare JID", |e| {
            xml::has_body(e, "are you there?")
        })
        .await;
}
