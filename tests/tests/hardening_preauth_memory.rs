//! Pre-authentication memory amplification (finding 1 of the hardening issue; RFC 6120 section 13.12): an
//! unfinished stanza sent in plaintext before STARTTLS used to be held as a parsed tree about 50 times its
//! wire size until the authentication timeout. Memory per connection is now bounded by what was received:
//! the server ends such streams with `policy-violation` and the process barely grows.
//!
//! A test binary of its own: the figure is the RSS of the whole process, which other tests would disturb.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use herald_tests::process::rss_bytes;
use herald_tests::{Incoming, TestClient, TestServer, xml};

/// Connections sending the shape at once. On the unfixed server each cost about 12 MiB.
const CONNECTIONS: usize = 20;
/// `<iq>` followed by this many empty children is 240 KB on the wire, under the 256 KiB stanza limit.
const CHILDREN: usize = 60_000;
/// How much the process may grow while all those connections are open: the unfixed server grew by about
/// 20 x 12 MiB = 240 MiB; bounded buffers and parse budgets keep it to a few MiB.
const MAX_GROWTH_BYTES: u64 = 32 << 20;

#[tokio::test]
async fn unfinished_stanzas_with_many_children_cost_what_was_received() {
    let server = TestServer::start().await;
    server.add_user("bob").await;
    // One whole login first, so that what the first connection allocates once is in the baseline.
    let mut bob = server.online("bob", "r").await;
    bob.barrier().await;
    let baseline = rss_bytes();

    let shape = format!("<iq type='get' id='x'>{}", "<a/>".repeat(CHILDREN));
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        // Plaintext, before STARTTLS and before authentication; the stanza is never finished.
        let mut client = TestClient::connect_plain(&server).await;
        let shape = shape.clone();
        connections.spawn(async move {
            // The server may end the stream before it has read everything: a failed write is expected.
            let _ = client.try_send_bytes(shape.as_bytes()).await;
            let answer = client.next_within(Duration::from_secs(10)).await;
            (client, answer)
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = connections.join_next().await {
        answers.push(joined.unwrap());
    }
    // Every connection is still open on our side here, so whatever the server holds for them is counted.
    let growth = rss_bytes().saturating_sub(baseline);
    eprintln!("RSS grew by {} KiB", growth >> 10);
    assert!(
        growth < MAX_GROWTH_BYTES,
        "RSS grew by {} MiB with {CONNECTIONS} connections holding {CHILDREN} children each (bound {} MiB)",
        growth >> 20,
        MAX_GROWTH_BYTES >> 20
    );
    for (_client, answer) in &answers {
        match answer {
            Some(Incoming::Element(error)) => assert_eq!(
                xml::stream_error_condition(error).as_deref(),
                Some("policy-violation"),
                "{}",
                xml::show(error)
            ),
            other => panic!("expected a policy-violation stream error, got {other:?}"),
        }
    }
    // The server is still serving its users.
    bob.barrier().await;
    drop(answers);
}
