//! Offline storage over real sockets (XEP-0160 with XEP-0203 delay stamps, RFC 6121 section 3.1.3 for
//! subscription requests), on SQLite and, when `HERALD_TEST_POSTGRES_URL` is set, on PostgreSQL.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::xml::{self, any, is_error, is_presence};
use herald_tests::{Backend, Element, TestServer, on_every_backend};

on_every_backend!(
    offline_messages_arrive_in_order_with_delay_after_initial_presence,
    offline_quota_bounces_with_resource_constraint,
    subscription_request_to_an_offline_user_arrives_at_next_login,
    a_message_sent_once_the_close_is_answered_is_stored,
);

fn bodies(elements: &[Element]) -> Vec<String> {
    elements
        .iter()
        .filter(|e| e.is("message", ns::CLIENT) && e.attr("type") != Some("error"))
        .filter_map(xml::body)
        .collect()
}

/// `YYYY-MM-DDThh:mm:ss[.fff]Z` (XEP-0082 DateTime in UTC).
fn is_xep_0082_utc(stamp: &str) -> bool {
    let b = stamp.as_bytes();
    b.len() >= 20
        && stamp.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

async fn offline_messages_arrive_in_order_with_delay_after_initial_presence(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut bob = server.online("bob", "r").await;
    let sent = ["first", "second", "third"];
    for body in sent {
        bob.chat("alice@localhost", body).await;
    }
    let at_bob = bob.barrier().await;
    assert!(
        !any(&at_bob, |e| e.attr("type") == Some("error")),
        "stored, not bounced"
    );

    // Logged in but not yet available: nothing is handed over (XEP-0160 section 3).
    let mut alice = server.login("alice", "r").await;
    let early = alice.barrier().await;
    assert!(
        bodies(&early).is_empty(),
        "delivered before presence: {early:?}"
    );

    alice.available(None).await;
    let got = alice.barrier().await;
    assert_eq!(bodies(&got), sent, "in the order sent");
    let mut last_stamp = String::new();
    for message in got.iter().filter(|e| e.is("message", ns::CLIENT)) {
        assert_eq!(message.attr("from"), Some("bob@localhost/r"));
        let delay = message
            .get_child("delay", ns::DELAY)
            .unwrap_or_else(|| panic!("XEP-0203 delay on {}", xml::show(message)));
        let stamp = delay.attr("stamp").unwrap_or_default().to_string();
        assert!(is_xep_0082_utc(&stamp), "stamp {stamp:?}");
        assert!(stamp >= last_stamp, "stamps in order");
        last_stamp = stamp;
    }
    alice.close().await;

    // Delivered once: the next login finds nothing.
    let mut again = server.login("alice", "r2").await;
    again.available(None).await;
    let got = again.barrier().await;
    assert!(bodies(&got).is_empty(), "delivered twice: {got:?}");
}

async fn offline_quota_bounces_with_resource_constraint(backend: Backend) {
    let server = TestServer::builder()
        .backend(backend)
        .env("HERALD_LIMITS__OFFLINE_QUOTA", "2")
        .start()
        .await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut bob = server.online("bob", "r").await;
    for (id, body) in [("q1", "one"), ("q2", "two"), ("q3", "three")] {
        bob.send(&format!(
            "<message to='alice@localhost' type='chat' id='{id}'><body>{body}</body></message>"
        ))
        .await;
    }
    let error = bob
        .expect("the third message bounced", |e| e.attr("id") == Some("q3"))
        .await;
    assert!(
        is_error(&error, "message", "resource-constraint"),
        "{}",
        xml::show(&error)
    );
    let mut alice = server.login("alice", "r").await;
    alice.available(None).await;
    assert_eq!(bodies(&alice.barrier().await), ["one", "two"]);
}

async fn subscription_request_to_an_offline_user_arrives_at_next_login(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut bob = server.online("bob", "r").await;
    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    bob.barrier().await;
    let mut alice = server.login("alice", "r").await;
    alice.available(None).await;
    let got = alice.barrier().await;
    assert!(
        any(&got, |e| is_presence(e, "bob@localhost", Some("subscribe"))),
        "pending request delivered: {:?}",
        got.iter().map(xml::show).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn headline_and_error_messages_are_not_stored() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut bob = server.online("bob", "r").await;
    // RFC 6121 8.5.2.2.1 and XEP-0160 section 3: headlines (and errors) for an offline user are dropped.
    bob.send("<message to='alice@localhost' type='headline'><body>news</body></message>")
        .await;
    bob.send("<message to='alice@localhost' type='error'><body>oops</body></message>")
        .await;
    bob.chat("alice@localhost", "kept").await;
    let at_bob = bob.barrier().await;
    assert!(
        !any(&at_bob, |e| e.attr("type") == Some("error")),
        "dropped silently"
    );
    let mut alice = server.login("alice", "r").await;
    alice.available(None).await;
    assert_eq!(bodies(&alice.barrier().await), ["kept"]);
}

#[tokio::test]
async fn messages_stored_while_unavailable_come_with_the_next_available_presence() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    // RFC 6121 4.5: after unavailable presence the session is no longer available for messages.
    alice.send("<presence type='unavailable'/>").await;
    alice.barrier().await;
    bob.chat("alice@localhost", "while away").await;
    bob.barrier().await;
    assert!(bodies(&alice.barrier().await).is_empty());
    alice.available(None).await;
    assert_eq!(bodies(&alice.barrier().await), ["while away"]);
}

/// The server answers a client's closing tag only once the session is unbound (RFC 6120 section 4.4),
/// so a message sent to the user after that is stored offline rather than written to the closing stream.
async fn a_message_sent_once_the_close_is_answered_is_stored(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut bob = server.online("bob", "r").await;
    for round in 0..5 {
        let alice = server.online("alice", "r").await;
        alice.close_and_wait_for_end().await;
        bob.chat("alice@localhost/r", &format!("after close {round}"))
            .await;
        let at_bob = bob.barrier().await;
        assert!(
            !any(&at_bob, |e| e.attr("type") == Some("error")),
            "stored, not bounced: {at_bob:?}"
        );
        let mut again = server.login("alice", "r").await;
        again.available(None).await;
        let got = again.barrier().await;
        assert_eq!(
            bodies(&got),
            [format!("after close {round}")],
            "round {round}"
        );
        again.close_and_wait_for_end().await;
    }
}
