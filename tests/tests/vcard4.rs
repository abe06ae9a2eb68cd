//! XEP-0292 vCard4 in PEP beside XEP-0054 vcard-temp over real sockets, on both backends: a user
//! with no vcard-temp who published a vCard4 is read through vcard-temp as that vCard4 converted,
//! by herself and by a contact the node's access model lets in; a stranger gets an empty vCard; and
//! a stored vcard-temp still wins. Written both ways: a vcard-temp set publishes the vCard4 (`open`,
//! like vcard-temp) keeping what only vCard4 holds, and a vCard4 published later is what vcard-temp
//! readers get, with what only vcard-temp holds kept.
#![allow(clippy::unwrap_used)]

use herald::xmpp::{Element, ns};
use herald_tests::xml;
use herald_tests::{Backend, TestServer, on_every_backend};

on_every_backend!(
    a_vcard4_is_read_through_vcard_temp,
    both_formats_show_the_newest_write,
);

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

/// The newest vCard4 item of alice, as `client` reads it.
async fn vcard4_of_alice(client: &mut herald_tests::TestClient) -> Element {
    let result = client
        .iq_result(
            "get",
            Some("alice@localhost"),
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:vcard4' max_items='1'/></pubsub>",
        )
        .await;
    result
        .get_child("pubsub", ns::PUBSUB)
        .and_then(|p| p.get_child("items", ns::PUBSUB))
        .and_then(|i| i.get_child("item", ns::PUBSUB))
        .and_then(|i| i.get_child("vcard", "urn:ietf:params:xml:ns:vcard-4.0"))
        .cloned()
        .unwrap_or_else(|| panic!("no vCard4 in {}", xml::show(&result)))
}

fn vcard4_text(vcard: &Element, property: &str) -> Option<String> {
    vcard
        .get_child(property, "urn:ietf:params:xml:ns:vcard-4.0")
        .and_then(|p| p.children().next())
        .map(Element::text)
}

async fn both_formats_show_the_newest_write(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    for user in ["alice", "carol", "stranger"] {
        server.add_user(user).await;
    }
    let mut alice = server.login("alice", "r").await;
    // A vCard4 first, with a property vcard-temp has no room for.
    alice
        .pep_publish(
            "urn:xmpp:vcard4",
            "current",
            "<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'><fn><text>Old</text></fn>\
             <gender><sex>F</sex></gender></vcard>",
        )
        .await;
    alice
        .iq_result(
            "set",
            None,
            "<vCard xmlns='vcard-temp'><FN>Alice</FN><NICKNAME>al</NICKNAME>\
             <N><FAMILY>Liddell</FAMILY><GIVEN>Alice</GIVEN></N>\
             <EMAIL><INTERNET/><USERID>alice@example.org</USERID></EMAIL>\
             <TEL><NUMBER>+44-1</NUMBER></TEL><URL>https://example.org/</URL>\
             <BDAY>1852-05-04</BDAY><DESC>Curious</DESC><ORG><ORGNAME>Wonderland</ORGNAME></ORG>\
             <TITLE>Dreamer</TITLE><ADR><LOCALITY>Oxford</LOCALITY></ADR></vCard>",
        )
        .await;
    let vcard4 = vcard4_of_alice(&mut alice).await;
    for (property, expected) in [
        ("fn", "Alice"),
        ("nickname", "al"),
        ("email", "alice@example.org"),
        ("tel", "tel:+44-1"),
        ("url", "https://example.org/"),
        ("bday", "1852-05-04"),
        ("note", "Curious"),
        ("org", "Wonderland"),
        ("title", "Dreamer"),
        ("gender", "F"),
    ] {
        assert_eq!(
            vcard4_text(&vcard4, property).as_deref(),
            Some(expected),
            "{property}: {}",
            xml::show(&vcard4)
        );
    }
    // alice's node existed with the PEP default (presence), and stays as she configured it.
    let mut stranger = server.login("stranger", "r").await;
    let items = "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:vcard4'/></pubsub>";
    let refused = stranger.iq("get", Some("alice@localhost"), items).await;
    assert_eq!(
        refused.attr("type"),
        Some("error"),
        "{}",
        xml::show(&refused)
    );
    // A node the conversion creates is open, as vcard-temp is.
    let mut carol = server.login("carol", "r").await;
    carol
        .iq_result(
            "set",
            None,
            "<vCard xmlns='vcard-temp'><FN>Carol</FN></vCard>",
        )
        .await;
    let open = stranger
        .iq_result("get", Some("carol@localhost"), items)
        .await;
    assert!(xml::show(&open).contains("Carol"), "{}", xml::show(&open));

    // A vCard4 written afterwards is what vcard-temp readers get; ADR, which it cannot hold, stays.
    alice
        .pep_publish(
            "urn:xmpp:vcard4",
            "current",
            "<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'><fn><text>Alice Liddell</text></fn>\
             <nickname><text>ally</text></nickname></vcard>",
        )
        .await;
    let temp = alice.vcard(None).await;
    assert_eq!(
        text_of(&temp, "FN").as_deref(),
        Some("Alice Liddell"),
        "{}",
        xml::show(&temp)
    );
    assert_eq!(text_of(&temp, "NICKNAME").as_deref(), Some("ally"));
    assert_eq!(text_of(&temp, "TITLE"), None, "the vCard4 has none now");
    assert!(
        temp.get_child("ADR", ns::VCARD).is_some(),
        "{}",
        xml::show(&temp)
    );
    let seen = stranger.vcard(Some("alice@localhost")).await;
    assert_eq!(text_of(&seen, "FN").as_deref(), Some("Alice Liddell"));
}
