//! Message carbons (XEP-0280) over real sockets, with two resources each for alice and bob: received
//! and sent carbons (sections 7 and 8), `<private/>` (section 9: not copied, and removed before the
//! recipient sees it), the XEP-0334 `<no-copy/>` hint, a resource that disabled carbons, groupchat
//! (section 6), and a message the sender's own block list refused (XEP-0191 section 3.4: never sent).
#![allow(clippy::unwrap_used)]

use herald::xmpp::{Element, ns};
use herald_tests::xml::{self, has_body};
use herald_tests::{TestClient, TestServer};

const ENABLE: &str = "<enable xmlns='urn:xmpp:carbons:2'/>";
const DISABLE: &str = "<disable xmlns='urn:xmpp:carbons:2'/>";

/// alice/phone, alice/laptop, bob/pc and bob/tablet online, each with carbons enabled.
async fn four_resources(server: &TestServer) -> [TestClient; 4] {
    for user in ["alice", "bob"] {
        server.add_user(user).await;
    }
    let mut clients = [
        server.login("alice", "phone").await,
        server.login("alice", "laptop").await,
        server.login("bob", "pc").await,
        server.login("bob", "tablet").await,
    ];
    for client in &mut clients {
        client.iq_result("set", None, ENABLE).await;
    }
    clients
}

/// The message a carbon of `direction` forwards, if `element` is such a carbon from `user`'s bare JID.
fn carbon<'a>(element: &'a Element, direction: &str, user: &str) -> Option<&'a Element> {
    if !element.is("message", ns::CLIENT) || element.attr("from") != Some(user) {
        return None;
    }
    element
        .get_child(direction, ns::CARBONS)?
        .get_child("forwarded", ns::FORWARD)?
        .get_child("message", ns::CLIENT)
}

fn is_carbon(element: &Element, direction: &str, user: &str, body: &str) -> bool {
    carbon(element, direction, user).is_some_and(|inner| has_body(inner, body))
}

fn is_any_carbon(element: &Element) -> bool {
    element.get_child("sent", ns::CARBONS).is_some()
        || element.get_child("received", ns::CARBONS).is_some()
}

#[tokio::test]
async fn carbons_are_advertised() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "phone").await;
    let info = alice
        .iq_result(
            "get",
            Some("localhost"),
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        )
        .await;
    assert!(xml::disco_features(&info).contains(&ns::CARBONS.to_string()));
}

#[tokio::test]
async fn a_message_to_one_resource_is_copied_to_the_others_as_received() {
    let server = TestServer::start().await;
    let [mut phone, mut laptop, mut pc, mut tablet] = four_resources(&server).await;
    pc.chat("alice@localhost/phone", "to the phone").await;
    pc.barrier().await;
    phone
        .expect("the message", |e| has_body(e, "to the phone"))
        .await;
    let copy = laptop
        .expect("a received carbon", |e| {
            is_carbon(e, "received", "alice@localhost", "to the phone")
        })
        .await;
    assert_eq!(copy.attr("to"), Some("alice@localhost/laptop"));
    let inner = carbon(&copy, "received", "alice@localhost").unwrap();
    assert_eq!(inner.attr("from"), Some("bob@localhost/pc"));
    assert_eq!(inner.attr("to"), Some("alice@localhost/phone"));
    // bob/tablet gets a sent carbon of what bob/pc wrote, and phone no copy of what it got itself.
    tablet
        .expect("a sent carbon", |e| {
            is_carbon(e, "sent", "bob@localhost", "to the phone")
        })
        .await;
    phone.assert_none("a carbon", is_any_carbon).await;
    pc.assert_none("a carbon", is_any_carbon).await;
}

#[tokio::test]
async fn a_message_sent_by_one_resource_is_copied_to_the_others_as_sent() {
    let server = TestServer::start().await;
    let [mut phone, mut laptop, mut pc, mut tablet] = four_resources(&server).await;
    phone.chat("bob@localhost/pc", "from the phone").await;
    phone.barrier().await;
    let copy = laptop
        .expect("a sent carbon", |e| {
            is_carbon(e, "sent", "alice@localhost", "from the phone")
        })
        .await;
    assert_eq!(copy.attr("to"), Some("alice@localhost/laptop"));
    let inner = carbon(&copy, "sent", "alice@localhost").unwrap();
    assert_eq!(inner.attr("from"), Some("alice@localhost/phone"));
    pc.expect("the message", |e| has_body(e, "from the phone"))
        .await;
    tablet
        .expect("a received carbon", |e| {
            is_carbon(e, "received", "bob@localhost", "from the phone")
        })
        .await;
    phone
        .assert_none("a carbon of its own message", is_any_carbon)
        .await;
}

#[tokio::test]
async fn a_private_message_is_not_copied_and_the_recipient_does_not_see_the_marker() {
    let server = TestServer::start().await;
    let [mut phone, mut laptop, mut pc, mut tablet] = four_resources(&server).await;
    phone
        .send(
            "<message to='bob@localhost/pc' type='chat'><body>just here</body>\
             <private xmlns='urn:xmpp:carbons:2'/></message>",
        )
        .await;
    phone.barrier().await;
    let message = pc.expect("the message", |e| has_body(e, "just here")).await;
    assert!(
        message.get_child("private", ns::CARBONS).is_none(),
        "{}",
        xml::show(&message)
    );
    laptop.assert_none("a sent carbon", is_any_carbon).await;
    tablet.assert_none("a received carbon", is_any_carbon).await;
}

#[tokio::test]
async fn a_no_copy_hint_is_honoured() {
    let server = TestServer::start().await;
    let [mut phone, mut laptop, mut pc, mut tablet] = four_resources(&server).await;
    phone
        .send(
            "<message to='bob@localhost/pc' type='chat'><body>no copies</body>\
             <no-copy xmlns='urn:xmpp:hints'/></message>",
        )
        .await;
    phone.barrier().await;
    pc.expect("the message", |e| has_body(e, "no copies")).await;
    laptop.assert_none("a sent carbon", is_any_carbon).await;
    tablet.assert_none("a received carbon", is_any_carbon).await;
}

#[tokio::test]
async fn a_resource_that_disabled_carbons_gets_none() {
    let server = TestServer::start().await;
    let [mut phone, mut laptop, mut pc, _tablet] = four_resources(&server).await;
    laptop.iq_result("set", None, DISABLE).await;
    pc.chat("alice@localhost/phone", "one").await;
    phone.chat("bob@localhost/pc", "two").await;
    pc.barrier().await;
    phone.barrier().await;
    laptop.assert_none("a carbon", is_any_carbon).await;
}

#[tokio::test]
async fn a_groupchat_message_is_not_copied() {
    let server = TestServer::start().await;
    let [mut phone, mut laptop, mut pc, mut tablet] = four_resources(&server).await;
    pc.send("<message to='alice@localhost/phone' type='groupchat'><body>room</body></message>")
        .await;
    pc.barrier().await;
    phone.expect("the message", |e| has_body(e, "room")).await;
    laptop.assert_none("a received carbon", is_any_carbon).await;
    tablet.assert_none("a sent carbon", is_any_carbon).await;
}

#[tokio::test]
async fn a_message_to_ones_own_account_reaches_each_resource_once() {
    let server = TestServer::start().await;
    let [mut phone, mut laptop, _pc, _tablet] = four_resources(&server).await;
    phone.chat("alice@localhost/laptop", "note to self").await;
    phone.barrier().await;
    let early = laptop.barrier().await;
    let copies = early
        .iter()
        .filter(|e| {
            has_body(e, "note to self") || is_carbon(e, "sent", "alice@localhost", "note to self")
        })
        .count();
    assert_eq!(copies, 1, "{early:?}");
    phone
        .assert_none("a carbon of its own message", is_any_carbon)
        .await;
}

#[tokio::test]
async fn a_message_refused_by_the_senders_own_block_list_is_not_copied() {
    let server = TestServer::start().await;
    let [mut phone, mut laptop, mut pc, _tablet] = four_resources(&server).await;
    phone
        .iq_result(
            "set",
            None,
            "<block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block>",
        )
        .await;
    phone.chat("bob@localhost/pc", "never sent").await;
    phone
        .expect("the refusal", |e| {
            xml::is_error(e, "message", "not-acceptable")
        })
        .await;
    laptop.assert_none("a sent carbon", is_any_carbon).await;
    pc.assert_none("the message", |e| has_body(e, "never sent"))
        .await;
}
