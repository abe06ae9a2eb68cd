//! Quadratic CPU before login (finding 8 of the hardening issue; RFC 6120 section 13.12): a stream header
//! with 26,000 attributes (249 KB) cost about 0.9 s of CPU in the duplicate-attribute check. The attribute
//! count per element is now capped (much lower before authentication), so the server ends such a stream
//! with `policy-violation` after reading a few attributes.
//!
//! A test binary of its own: the figure is the CPU time of the whole process, which other tests would
//! disturb.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use herald_tests::process::cpu_time;
use herald_tests::{Incoming, PASSWORD, TestClient, TestServer, xml};

const ATTRIBUTES: usize = 26_000;
/// CPU the whole process (server and client) may spend on the header. The unfixed server spent about
/// 0.9 s; refusing it after a handful of attributes takes milliseconds.
const MAX_CPU: Duration = Duration::from_millis(250);

fn header_with_attributes(count: usize) -> String {
    let mut header = String::from(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
         to='localhost' version='1.0'",
    );
    for i in 0..count {
        header.push_str(&format!(" a{i}=''"));
    }
    header.push('>');
    header
}

/// Sends `header` on `client` and returns the CPU time the process spent until the server answered (its
/// own header, then the features or a stream error), and that answer.
async fn send_and_measure(client: &mut TestClient, header: &str) -> (Duration, Option<Incoming>) {
    let before = cpu_time();
    let _ = client.try_send_bytes(header.as_bytes()).await;
    client.read_header().await;
    let answer = client.next_within(Duration::from_secs(10)).await;
    let spent = cpu_time().saturating_sub(before);
    eprintln!("CPU time until the answer: {spent:?}");
    (spent, answer)
}

fn assert_policy_violation(answer: Option<Incoming>) {
    match answer {
        Some(Incoming::Element(error)) => assert_eq!(
            xml::stream_error_condition(&error).as_deref(),
            Some("policy-violation"),
            "{}",
            xml::show(&error)
        ),
        other => panic!("expected a policy-violation stream error, got {other:?}"),
    }
}

/// One test running both cases one after the other: tests in one binary run in parallel, and each case
/// measures the CPU time of the whole process.
#[tokio::test]
async fn a_header_with_26000_attributes_costs_little_cpu() {
    let server = TestServer::start().await;
    server.add_user("mallory").await;
    let header = header_with_attributes(ATTRIBUTES);
    before_login(&server, &header).await;
    after_sasl(&server, &header).await;
}

async fn before_login(server: &TestServer, header: &str) {
    let mut client = TestClient::tcp(server).await;
    let (spent, answer) = send_and_measure(&mut client, header).await;
    assert!(
        spent < MAX_CPU,
        "{ATTRIBUTES} attributes in the first header cost {spent:?} of CPU (bound {MAX_CPU:?})"
    );
    assert_policy_violation(answer);
}

async fn after_sasl(server: &TestServer, header: &str) {
    let mut client = TestClient::connect_starttls(server).await;
    // SASL by hand, so that the restarted stream's header is ours (RFC 6120 section 6.4.6).
    let message = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("\0mallory\0{PASSWORD}"))
    };
    client
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{message}</auth>"
        ))
        .await;
    client
        .expect("<success/>", |e| e.is("success", herald::xmpp::ns::SASL))
        .await;
    client.reset_stream();
    let (spent, answer) = send_and_measure(&mut client, header).await;
    assert!(
        spent < MAX_CPU,
        "{ATTRIBUTES} attributes in the restarted header cost {spent:?} of CPU (bound {MAX_CPU:?})"
    );
    assert_policy_violation(answer);
}
