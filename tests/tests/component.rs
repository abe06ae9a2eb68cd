//! XEP-0114 external components over a real socket: the handshake (section 3: lowercase hex SHA-1 of the
//! stream id and the shared secret), stanzas in both directions through the router, and refusals.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::component::ComponentClient;
use herald_tests::xml::{self, is_error};
use herald_tests::{DOMAIN, Element, TIMEOUT, TestServer};
use tokio::net::TcpStream;

const COMPONENT: &str = "bot.localhost";
const SECRET: &str = "s3cret shared with the bot";

async fn server_with_component() -> TestServer {
    TestServer::builder()
        .file("component.secret", &format!("{SECRET}\n"))
        .toml(
            "[component]\nlisten = \"127.0.0.1:0\"\n\n[[component.components]]\n\
             domain = \"bot.localhost\"\nsecret_file = \"{dir}/component.secret\"\n",
        )
        .start()
        .await
}

#[tokio::test]
async fn component_handshake_then_messages_both_ways() {
    let server = server_with_component().await;
    server.add_user("alice").await;
    let mut component = ComponentClient::open(&server, COMPONENT).await;
    component.handshake(SECRET).await;
    let ack = component.expect_element().await;
    assert!(
        ack.is("handshake", ns::COMPONENT_ACCEPT),
        "{}",
        xml::show(&ack)
    );

    let mut alice = server.online("alice", "r").await;
    // XEP-0030: the attached component is listed among the server's items.
    let items = alice
        .iq_result(
            "get",
            Some(DOMAIN),
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        )
        .await;
    let listed = items
        .get_child("query", ns::DISCO_ITEMS)
        .is_some_and(|q| q.children().any(|i| i.attr("jid") == Some(COMPONENT)));
    assert!(listed, "{}", xml::show(&items));

    alice.chat("echo@bot.localhost", "hello bot").await;
    let message = component.expect_element().await;
    assert!(
        message.is("message", ns::COMPONENT_ACCEPT),
        "{}",
        xml::show(&message)
    );
    assert_eq!(message.attr("from"), Some("alice@localhost/r"));
    assert_eq!(message.attr("to"), Some("echo@bot.localhost"));
    let body = message
        .get_child("body", ns::COMPONENT_ACCEPT)
        .map(Element::text);
    assert_eq!(body.as_deref(), Some("hello bot"));

    component
        .stream
        .send_raw("<message from='echo@bot.localhost' to='alice@localhost/r' type='chat'><body>hello alice</body></message>")
        .await
        .unwrap();
    alice
        .expect("the component's reply", |e| {
            xml::is_message(e, "echo@bot.localhost", "hello alice")
        })
        .await;
}

#[tokio::test]
async fn wrong_component_secret_is_not_authorized() {
    let server = server_with_component().await;
    server.add_user("alice").await;
    let mut impostor = ComponentClient::open(&server, COMPONENT).await;
    impostor.handshake("a guess").await;
    impostor.expect_stream_error("not-authorized").await;
    // Nothing was attached: the domain is still unreachable, and the right secret still works.
    let mut alice = server.online("alice", "r").await;
    alice
        .send("<message to='echo@bot.localhost' type='chat' id='c1'><body>anyone?</body></message>")
        .await;
    let error = alice.expect("bounce", |e| e.attr("id") == Some("c1")).await;
    assert!(
        is_error(&error, "message", "remote-server-not-found"),
        "{}",
        xml::show(&error)
    );
    let mut component = ComponentClient::open(&server, COMPONENT).await;
    component.handshake(SECRET).await;
    assert!(
        component
            .expect_element()
            .await
            .is("handshake", ns::COMPONENT_ACCEPT)
    );
}

#[tokio::test]
async fn a_bulky_handshake_is_refused_under_the_pre_authentication_limits() {
    // RFC 6120 section 13.12 (issue 10, finding 1): before the secret is proven, a component is as
    // anonymous as any client, so the small pre-authentication limits apply: a handshake element with
    // 200 children is a policy violation, not a tree held in memory and checked.
    let server = server_with_component().await;
    let mut bulky = ComponentClient::open(&server, COMPONENT).await;
    bulky
        .stream
        .send_raw(&format!("<handshake>{}</handshake>", "<a/>".repeat(200)))
        .await
        .unwrap();
    bulky.expect_stream_error("policy-violation").await;
    // After the handshake the full limits apply: a 200-child stanza is read and answered.
    let mut component = ComponentClient::open(&server, COMPONENT).await;
    component.handshake(SECRET).await;
    assert!(
        component
            .expect_element()
            .await
            .is("handshake", ns::COMPONENT_ACCEPT)
    );
    component
        .stream
        .send_raw(&format!(
            "<iq type='get' from='echo@bot.localhost' to='localhost' id='m1'><query xmlns='urn:x:unknown'>{}</query></iq>",
            "<a/>".repeat(200)
        ))
        .await
        .unwrap();
    // RFC 6120 section 8.4: an IQ for an unknown namespace is answered with an error.
    let answer = component.expect_element().await;
    assert_eq!(answer.attr("id"), Some("m1"), "{}", xml::show(&answer));
}

#[tokio::test]
async fn unauthenticated_component_connections_are_capped_per_address() {
    // RFC 6120 section 13.12 (issue 10, finding 1): a component before its handshake is as anonymous as a
    // client before SASL, so it counts among the unauthenticated connections.
    let server = TestServer::builder()
        .env("HERALD_LIMITS__MAX_UNAUTHENTICATED_PER_ADDRESS", "2")
        .file("component.secret", &format!("{SECRET}\n"))
        .toml(
            "[component]\nlisten = \"127.0.0.1:0\"\n\n[[component.components]]\n\
             domain = \"bot.localhost\"\nsecret_file = \"{dir}/component.secret\"\n",
        )
        .start()
        .await;
    // A component whose handshake succeeded no longer holds a slot.
    let mut attached = ComponentClient::open(&server, COMPONENT).await;
    attached.handshake(SECRET).await;
    assert!(
        attached
            .expect_element()
            .await
            .is("handshake", ns::COMPONENT_ACCEPT)
    );
    let _first = ComponentClient::open(&server, COMPONENT).await;
    let _second = ComponentClient::open(&server, COMPONENT).await;
    let mut third = ComponentClient::open(&server, COMPONENT).await;
    third.expect_stream_error("policy-violation").await;
}

#[tokio::test]
async fn unknown_component_domain_is_host_unknown() {
    let server = server_with_component().await;
    let mut stranger = ComponentClient::open(&server, "other.localhost").await;
    stranger.expect_stream_error("host-unknown").await;
}

#[tokio::test]
async fn component_that_never_completes_the_handshake_is_timed_out() {
    let server = TestServer::builder()
        .env("HERALD_C2S__AUTH_TIMEOUT_SECONDS", "1")
        .file("component.secret", SECRET)
        .toml(
            "[component]\nlisten = \"127.0.0.1:0\"\n\n[[component.components]]\n\
             domain = \"bot.localhost\"\nsecret_file = \"{dir}/component.secret\"\n",
        )
        .start()
        .await;
    let mut slow = ComponentClient::open(&server, COMPONENT).await;
    slow.expect_stream_error("connection-timeout").await;
    // A connection that sends nothing at all is closed too.
    let mut silent = TcpStream::connect(server.component_address())
        .await
        .unwrap();
    let mut everything = Vec::new();
    let read = tokio::time::timeout(
        TIMEOUT,
        tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut everything),
    )
    .await
    .expect("the server closes a silent component connection");
    assert!(read.is_ok());
    assert!(String::from_utf8_lossy(&everything).contains("connection-timeout"));
}

#[tokio::test]
async fn component_cannot_send_from_another_domain() {
    let server = server_with_component().await;
    server.add_user("alice").await;
    let mut alice = server.online("alice", "r").await;
    let mut component = ComponentClient::open(&server, COMPONENT).await;
    component.handshake(SECRET).await;
    assert!(
        component
            .expect_element()
            .await
            .is("handshake", ns::COMPONENT_ACCEPT)
    );
    component
        .stream
        .send_raw("<message from='admin@localhost' to='alice@localhost/r' type='chat'><body>forged</body></message>")
        .await
        .unwrap();
    component.expect_stream_error("invalid-from").await;
    alice
        .assert_none("a forged message", |e| xml::has_body(e, "forged"))
        .await;
}

/// Issue 10, finding 2 (the same class): a component that stops reading held its task in a write forever,
/// attached, while its queue grew. Now its writes have the same deadline as a client's, after which it is
/// detached and its domain is unreachable again (RFC 6120 section 8.3.3.15 remote-server-not-found).
#[tokio::test]
async fn component_that_stops_reading_is_detached_after_the_write_deadline() {
    let server = TestServer::builder()
        .env("HERALD_C2S__WRITE_TIMEOUT_SECONDS", "1")
        .env("HERALD_LIMITS__STANZAS_PER_SECOND", "1000000")
        .file("component.secret", SECRET)
        .toml(
            "[component]\nlisten = \"127.0.0.1:0\"\n\n[[component.components]]\n\
             domain = \"bot.localhost\"\nsecret_file = \"{dir}/component.secret\"\n",
        )
        .start()
        .await;
    server.add_user("alice").await;
    let mut component = ComponentClient::open(&server, COMPONENT).await;
    component.handshake(SECRET).await;
    assert!(
        component
            .expect_element()
            .await
            .is("handshake", ns::COMPONENT_ACCEPT)
    );
    // From here on the component reads nothing. 9.6 MB is more than the socket buffers hold.
    let mut alice = server.login("alice", "r").await;
    let text = "z".repeat(32 * 1024);
    for _ in 0..300 {
        alice
            .send(&format!(
                "<message to='echo@bot.localhost' type='chat'><body>{text}</body></message>"
            ))
            .await;
    }
    // Each probe is routed before the barrier answers, so every round trip tells whether the component is
    // still attached (the probe is forwarded) or was detached (the probe bounces). Bounded in time.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut probes = 0;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still attached after {probes} probes"
        );
        probes += 1;
        let id = format!("probe{probes}");
        alice
            .send(&format!(
                "<message to='echo@bot.localhost' type='chat' id='{id}'><body>there?</body></message>"
            ))
            .await;
        let before = alice.barrier().await;
        if let Some(bounce) = before.iter().find(|e| e.attr("id") == Some(id.as_str())) {
            assert!(
                is_error(bounce, "message", "remote-server-not-found"),
                "{}",
                xml::show(bounce)
            );
            break;
        }
    }
    drop(component);
    // Detached, not left behind: the component can attach again.
    let mut again = ComponentClient::open(&server, COMPONENT).await;
    again.handshake(SECRET).await;
    assert!(
        again
            .expect_element()
            .await
            .is("handshake", ns::COMPONENT_ACCEPT)
    );
}

/// XEP-0114 handshakes are password checks too: after 20 wrong ones from an address (the failed-login
/// throttle's address limit), even the right secret is refused for a while (RFC 6120 section 13.5).
#[tokio::test]
async fn repeated_wrong_handshakes_are_throttled() {
    let server = server_with_component().await;
    for _ in 0..20 {
        let mut guesser = ComponentClient::open(&server, COMPONENT).await;
        guesser.handshake("wrong secret").await;
        guesser.expect_stream_error("not-authorized").await;
    }
    let mut late = ComponentClient::open(&server, COMPONENT).await;
    late.handshake(SECRET).await;
    late.expect_stream_error("policy-violation").await;
}
