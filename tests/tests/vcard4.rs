//! XEP-0292 vCard4 in PEP beside XEP-0054 vcard-temp over real sockets, on both backends: a user
//! with no vcard-temp who published a vCard4 is read through vcard-temp as that vCard4 converted,
//! by herself and by a contact the node's access model lets in; a stranger gets an empty vCard; and
//! a stored vcard-temp still wins.
#![allow(clippy::unwrap_used)]

use herald::xmpp::{Element, ns};
use herald_tests::xml;
use herald_tests::{Backend, TestServer, on_every_backend};

on_every_backend!(a_vcard4_is_read_through_vcard_temp);

const VCARD4: &str = "<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'>\
    <fn><text>Alice Liddell</text></fn><nickname><text>al</text></nickname>\
    <impp><uri>xmpp:alice@localhost</uri></impp></vcard>";

fn text_of(vcard: &Element, name: &str) -> Option<String> {
    vcard.get_child(name, ns::VCARD).map(Element::text)
}

async fn a_vcard4_is_read_through_vcard_temp(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    for user in ["alice", "bob", "stranger"] {
        server.add_user(user).await;
    }
    server.befriend("alice", "bob").await;
    let mut alice = server.login("alice", "r").await;
    alice
        .pep_publish("urn:xmpp:vcard4", "current", VCARD4)
        .await;
    let own = alice.vcard(None).await;
    assert_eq!(
        text_of(&own, "FN").as_deref(),
        Some("Alice Liddell"),
        "{}",
        xml::show(&own)
    );
    assert_eq!(text_of(&own, "NICKNAME").as_deref(), Some("al"));
    assert_eq!(
        text_of(&own, "JABBERID").as_deref(),
        Some("alice@localhost")
    );
    let mut bob = server.login("bob", "r").await;
    let seen = bob.vcard(Some("alice@localhost")).await;
    assert_eq!(
        text_of(&seen, "FN").as_deref(),
        Some("Alice Liddell"),
        "{}",
        xml::show(&seen)
    );
    // The node has the PEP default (presence) access model: a stranger learns nothing.
    let mut stranger = server.login("stranger", "r").await;
    let other = stranger.vcard(Some("alice@localhost")).await;
    assert_eq!(other.children().count(), 0, "{}", xml::show(&other));
    // A stored vcard-temp is what vcard-temp readers get.
    alice
        .iq_result(
            "set",
            None,
            "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>",
        )
        .await;
    let seen = bob.vcard(Some("alice@localhost")).await;
    assert_eq!(
        text_of(&seen, "FN").as_deref(),
        Some("Alice"),
        "{}",
        xml::show(&seen)
    );
}
