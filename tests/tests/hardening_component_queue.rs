//! Issue 10, finding 2 (the same class, for components): a component that reads slowly or not at all must
//! not let users grow the server's memory through its queue. The queue is bounded in bytes of serialised
//! stanzas (`[limits] component_queue_bytes`); beyond it stanzas bounce with `remote-server-timeout`.
//!
//! A binary of its own: the resident set size measured here is this one test's process.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use herald::xmpp::stream::{Frame, XmlStream};
use herald::xmpp::{Limits, ns};
use herald_tests::process::rss_bytes;
use herald_tests::{Incoming, TIMEOUT, TestServer};
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;

const COMPONENT: &str = "bot.localhost";
const SECRET: &str = "s3cret shared with the bot";
/// Large messages sent to the component that does not read.
const FLOOD_MESSAGES: usize = 150;
/// Empty child elements per message: 64 KB on the wire, tens of times that once parsed.
const CHILDREN_PER_MESSAGE: usize = 16_000;
/// How much the whole process may grow while the flood is sent and routed.
const RSS_GROWTH_BOUND_BYTES: u64 = 64 << 20;

/// Attaches `bot.localhost` (XEP-0114 section 3) and returns its stream, which the caller then never reads.
async fn attach_component(server: &TestServer) -> XmlStream<TcpStream> {
    let socket = TcpStream::connect(server.component_address())
        .await
        .unwrap();
    let mut stream = XmlStream::new(socket, Limits::default());
    stream
        .send_raw(&format!(
            "<stream:stream xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{COMPONENT}'>"
        ))
        .await
        .unwrap();
    let header = tokio::time::timeout(TIMEOUT, stream.read_header())
        .await
        .unwrap()
        .unwrap();
    let digest = Sha1::digest(format!("{}{SECRET}", header.id.unwrap()).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    stream
        .send_raw(&format!("<handshake>{hex}</handshake>"))
        .await
        .unwrap();
    match tokio::time::timeout(TIMEOUT, stream.next()).await {
        Ok(Ok(Frame::Element(e))) if e.is("handshake", ns::COMPONENT_ACCEPT) => stream,
        other => panic!("no handshake acknowledgement: {other:?}"),
    }
}

#[tokio::test]
async fn a_component_that_does_not_read_cannot_grow_memory_through_its_queue() {
    let server = TestServer::builder()
        // The component stays attached for the whole test: the queue bound is what is tested.
        .env("HERALD_C2S__WRITE_TIMEOUT_SECONDS", "600")
        .env("HERALD_LIMITS__STANZAS_PER_SECOND", "1000000")
        // Stanzas of 16,000 children (64 KB on the wire, the most parse amplification a client can buy)
        // need more than the default per-stanza element budget; the queue bound is what is tested here.
        .env("HERALD_LIMITS__MAX_ELEMENTS", "20000")
        .env("HERALD_LIMITS__MAX_PARSED_BYTES", "16777216")
        .env("HERALD_LIMITS__COMPONENT_QUEUE_BYTES", "1048576")
        .file("component.secret", SECRET)
        .toml(
            "[component]\nlisten = \"127.0.0.1:0\"\n\n[[component.components]]\n\
             domain = \"bot.localhost\"\nsecret_file = \"{dir}/component.secret\"\n",
        )
        .start()
        .await;
    server.add_user("alice").await;
    let component = attach_component(&server).await;
    let mut alice = server.login("alice", "r").await;
    let children = "<x/>".repeat(CHILDREN_PER_MESSAGE);
    let baseline = rss_bytes();
    for n in 0..FLOOD_MESSAGES {
        alice
            .send(&format!(
                "<message to='echo@{COMPONENT}' type='chat'>{children}</message>"
            ))
            .await;
        let grown = rss_bytes().saturating_sub(baseline);
        assert!(
            grown <= RSS_GROWTH_BOUND_BYTES,
            "RSS grew by {} MiB after sending {} messages (bound {} MiB)",
            grown >> 20,
            n + 1,
            RSS_GROWTH_BOUND_BYTES >> 20
        );
    }
    // Routed once the ping is answered; what did not fit bounced (the component is still attached).
    let id = alice.id();
    alice
        .send(&format!(
            "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut bounced = 0;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match alice.next_within(left).await {
            Some(Incoming::Element(e)) if e.attr("id") == Some(id.as_str()) => break,
            Some(Incoming::Element(e)) => {
                assert_eq!(
                    herald_tests::xml::error_condition(&e).as_deref(),
                    Some("remote-server-timeout"),
                    "{}",
                    herald_tests::xml::show(&e)
                );
                bounced += 1;
            }
            other => panic!("waiting for the ping answer: got {other:?}"),
        }
    }
    let grown = rss_bytes().saturating_sub(baseline);
    assert!(
        grown <= RSS_GROWTH_BOUND_BYTES,
        "RSS grew by {} MiB once the flood was routed",
        grown >> 20
    );
    assert!(bounced > 0, "the queue bound was never reached");
    eprintln!(
        "RSS grew {} KiB; {bounced} of {FLOOD_MESSAGES} bounced",
        grown >> 10
    );
    drop(component);
}
