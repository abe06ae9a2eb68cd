//! Issue 10, finding 2: a session that stops reading must not let another session grow the server's memory
//! through its mailbox. Its writes stall, so after `[c2s] write_timeout_seconds` it is ended, and what was
//! queued for it follows the offline rules (RFC 6121 section 8.5.3.2.1 for messages to a full JID that is
//! no longer available, XEP-0160 offline storage); meanwhile its mailbox is bounded in bytes
//! (`[limits] session_queue_bytes`).
//!
//! A binary of its own: the resident set size measured here is this one test's process.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use herald::xmpp::ns;
use herald_tests::process::rss_bytes;
use herald_tests::{DOMAIN, Element, Incoming, TIMEOUT, TestClient, TestServer, xml};

/// The write deadline the server is given for this test.
const WRITE_TIMEOUT_SECONDS: u64 = 2;
/// The per-session mailbox bound the server is given for this test.
const SESSION_QUEUE_BYTES: usize = 1 << 20;
/// Large messages sent to the session that does not read.
const FLOOD_MESSAGES: usize = 150;
/// Empty child elements per flood message: 64 KB on the wire, tens of times that once parsed.
const CHILDREN_PER_MESSAGE: usize = 16_000;
/// Every this many flood messages, one small message that must not be lost is sent as well.
const MARKER_EVERY: usize = 10;
/// How much the whole process may grow while the flood is sent and routed.
const RSS_GROWTH_BOUND_BYTES: u64 = 64 << 20;

fn assert_rss_within_bound(baseline: u64, after: &str) {
    let grown = rss_bytes().saturating_sub(baseline);
    assert!(
        grown <= RSS_GROWTH_BOUND_BYTES,
        "RSS grew by {} MiB {after} (bound {} MiB)",
        grown >> 20,
        RSS_GROWTH_BOUND_BYTES >> 20
    );
}

/// The id a marker message carries in its body.
fn marker_body(n: usize) -> String {
    format!("marker {n}")
}

fn marker_of(element: &Element) -> Option<String> {
    if !element.is("message", ns::CLIENT) || element.attr("type") == Some("error") {
        return None;
    }
    xml::body(element).filter(|b| b.starts_with("marker "))
}

/// Pings the server and waits up to `limit` for the answer, collecting what came before it (a longer
/// bound than [`TestClient::barrier`]: the server first routes the whole flood queued before the ping).
async fn barrier_within(client: &mut TestClient, limit: Duration) -> Vec<Element> {
    let id = client.id();
    client
        .send(&format!(
            "<iq type='get' id='{id}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    let deadline = tokio::time::Instant::now() + limit;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.next_within(left).await {
            Some(Incoming::Element(e)) if e.attr("id") == Some(id.as_str()) => return before,
            Some(Incoming::Element(e)) => before.push(e),
            other => panic!("waiting for the ping answer: got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_session_that_stops_reading_is_ended_in_time_and_bounded_and_nothing_is_lost() {
    let server = TestServer::builder()
        .env(
            "HERALD_C2S__WRITE_TIMEOUT_SECONDS",
            &WRITE_TIMEOUT_SECONDS.to_string(),
        )
        .env(
            "HERALD_LIMITS__SESSION_QUEUE_BYTES",
            &SESSION_QUEUE_BYTES.to_string(),
        )
        // The flood is sent as fast as the socket takes it; the rate limit is not what is tested here.
        .env("HERALD_LIMITS__STANZAS_PER_SECOND", "1000000")
        // Stanzas of 16,000 children (64 KB on the wire, the most parse amplification a client can buy)
        // need more than the default per-stanza element budget; the queue bound is what is tested here.
        .env("HERALD_LIMITS__MAX_ELEMENTS", "20000")
        .env("HERALD_LIMITS__MAX_PARSED_BYTES", "16777216")
        .start()
        .await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.befriend("alice", "bob").await;

    // The session that stops reading: available, so bare-JID messages go to it too.
    let mut stalled = server.online("alice", "stalled").await;
    let stalled_jid = stalled.jid.clone();
    // Bob watches alice's presence, to see the stalled session end.
    let mut bob = server.online("bob", "watch").await;
    bob.expect("alice's stalled resource available", |e| {
        xml::is_presence(e, &stalled_jid, None)
    })
    .await;
    // Alice's second session sends; it never becomes available, so nothing is routed to it.
    let mut sender = server.login("alice", "sender").await;

    let children = "<x/>".repeat(CHILDREN_PER_MESSAGE);
    let baseline = rss_bytes();
    let mut markers_sent = 0;
    for n in 0..FLOOD_MESSAGES {
        // XEP-0334 no-store: the flood itself may be dropped once the session is gone; the markers may not.
        sender
            .send(&format!(
                "<message to='{stalled_jid}' type='chat'>\
                 <no-store xmlns='urn:xmpp:hints'/>{children}</message>"
            ))
            .await;
        if n % MARKER_EVERY == 0 {
            // Alternately to the stalled resource and to alice's bare JID (which it is the only target of).
            let to = if markers_sent % 2 == 0 {
                stalled_jid.as_str()
            } else {
                "alice@localhost"
            };
            sender.chat(to, &marker_body(markers_sent)).await;
            markers_sent += 1;
        }
        assert_rss_within_bound(baseline, &format!("after sending {} messages", n + 1));
    }
    let at_sender = barrier_within(&mut sender, Duration::from_secs(120)).await;
    assert_rss_within_bound(baseline, "once the flood was routed");
    let grown = rss_bytes().saturating_sub(baseline);
    assert!(
        !xml::any(&at_sender, |e| e.attr("type") == Some("error")),
        "nothing bounced: {:?}",
        at_sender.iter().map(xml::show).collect::<Vec<_>>()
    );

    // (2) The stalled session is ended: its write has been stuck since the flood filled its socket, so by
    // now it must be gone within the write deadline (plus slack for a slow, shared machine).
    let flood_routed = tokio::time::Instant::now();
    bob.expect("alice's stalled resource unavailable", |e| {
        xml::is_presence(e, &stalled_jid, Some("unavailable"))
    })
    .await;
    let ended_after = flood_routed.elapsed();
    assert!(
        ended_after <= Duration::from_secs(WRITE_TIMEOUT_SECONDS) + Duration::from_secs(6),
        "ended {ended_after:?} after the flood was routed"
    );

    // Messages sent from now on find no such resource: they are stored offline (RFC 6121 8.5.3.2.1).
    for _ in 0..3 {
        sender.chat(&stalled_jid, &marker_body(markers_sent)).await;
        markers_sent += 1;
    }
    barrier_within(&mut sender, TIMEOUT).await;

    // The server closed the stalled socket: what it managed to write there is all still readable, then
    // the connection ends.
    let mut seen = BTreeSet::new();
    loop {
        match stalled.next_within(TIMEOUT).await {
            Some(Incoming::Element(e)) => {
                if let Some(marker) = marker_of(&e) {
                    seen.insert(marker);
                }
            }
            Some(Incoming::End | Incoming::Failed(_)) => break,
            None => panic!("the server did not close the stalled session's connection"),
        }
    }
    let written = seen.len();

    // (3) Everything else is offline for alice, with XEP-0203 delay stamps.
    let mut back = server.login("alice", "back").await;
    back.send("<presence/>").await;
    let delivered = barrier_within(&mut back, TIMEOUT).await;
    let mut offline = 0;
    for message in &delivered {
        if let Some(marker) = marker_of(message) {
            assert!(
                message.get_child("delay", ns::DELAY).is_some(),
                "offline message without a delay stamp: {}",
                xml::show(message)
            );
            seen.insert(marker);
            offline += 1;
        }
    }
    let expected: BTreeSet<String> = (0..markers_sent).map(marker_body).collect();
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "lost {missing:?} ({written} written to the stalled socket, {offline} offline)"
    );
    assert!(offline >= 3, "the messages sent after the end are offline");
    eprintln!(
        "RSS grew {} KiB; stalled session ended {ended_after:?} after the flood was routed; \
         {written} markers written to it, {offline} delivered offline, of {markers_sent}",
        grown >> 10
    );
}
