//! Client state indication (XEP-0352) over real sockets: while alice's client says it is inactive, her
//! contact's presence changes are held back and only the latest is kept; `<active/>` or a message with a
//! body brings it, in order, before anything newer.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::xml::{self, has_body};
use herald_tests::{TestClient, TestServer};

const INACTIVE: &str = "<inactive xmlns='urn:xmpp:csi:0'/>";
const ACTIVE: &str = "<active xmlns='urn:xmpp:csi:0'/>";

/// Whether `element` is bob's available presence showing `show`.
fn is_bobs_presence(element: &herald::xmpp::Element, show: &str) -> bool {
    element.is("presence", ns::CLIENT)
        && element.attr("from") == Some("bob@localhost/r")
        && element
            .get_child("show", ns::CLIENT)
            .is_some_and(|s| s.text() == show)
}

/// alice (inactive from now on) and bob, contacts, both online; bob then shows away and dnd, and the
/// server has routed both to alice's session.
async fn alice_inactive_while_bob_changes_twice(server: &TestServer) -> (TestClient, TestClient) {
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.befriend("alice", "bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    alice
        .expect("bob's initial presence", |e| {
            xml::is_presence(e, "bob@localhost/r", None)
        })
        .await;
    alice.send(INACTIVE).await;
    // The session handles the nonza before the ping.
    alice.barrier().await;
    for show in ["away", "dnd"] {
        bob.send(&format!("<presence><show>{show}</show></presence>"))
            .await;
    }
    // bob's session routed both to alice before answering this.
    bob.barrier().await;
    (alice, bob)
}

#[tokio::test]
async fn becoming_active_brings_only_the_latest_presence_of_each_contact() {
    let server = TestServer::start().await;
    let (mut alice, _bob) = alice_inactive_while_bob_changes_twice(&server).await;
    alice.send(ACTIVE).await;
    let early = alice.barrier().await;
    assert_eq!(early.len(), 1, "{early:?}");
    assert!(is_bobs_presence(&early[0], "dnd"), "{early:?}");
}

#[tokio::test]
async fn a_message_with_a_body_arrives_at_once_after_what_was_held() {
    let server = TestServer::start().await;
    let (mut alice, mut bob) = alice_inactive_while_bob_changes_twice(&server).await;
    bob.chat("alice@localhost/r", "wake up").await;
    let first = alice.recv().await;
    assert!(is_bobs_presence(&first, "dnd"), "{}", xml::show(&first));
    let second = alice.recv().await;
    assert!(has_body(&second, "wake up"), "{}", xml::show(&second));
    // Still inactive: a later presence change is held again, and nothing else was written.
    bob.send("<presence><show>xa</show></presence>").await;
    bob.barrier().await;
    alice.send(ACTIVE).await;
    let early = alice.barrier().await;
    assert_eq!(early.len(), 1, "{early:?}");
    assert!(is_bobs_presence(&early[0], "xa"), "{early:?}");
}
