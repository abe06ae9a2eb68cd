//! `[limits] max_roster_items` and `max_block_list_items`: a roster or block list cannot grow without
//! bound, neither by the user (roster set, subscribe, block) nor by others (subscription requests are
//! stored as pending items, RFC 6121 section 3.1.3). Each server here allows two of each.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::xml::{self, any, is_roster_push};
use herald_tests::{Element, TestServer};

async fn server() -> TestServer {
    TestServer::builder()
        .env("HERALD_LIMITS__MAX_ROSTER_ITEMS", "2")
        .env("HERALD_LIMITS__MAX_BLOCK_LIST_ITEMS", "2")
        .start()
        .await
}

fn roster_set(jid: &str, name: &str) -> String {
    format!("<query xmlns='jabber:iq:roster'><item jid='{jid}' name='{name}'/></query>")
}

fn condition(element: &Element) -> Option<String> {
    xml::error_condition(element)
}

#[tokio::test]
async fn a_roster_set_beyond_the_limit_is_not_allowed_and_changes_nothing() {
    let server = server().await;
    server.add_user("alice").await;
    let mut alice = server.online("alice", "r").await;
    for contact in ["carol@localhost", "dave@localhost"] {
        alice
            .iq_result("set", None, &roster_set(contact, "x"))
            .await;
    }
    let refused = alice
        .iq("set", None, &roster_set("erin@localhost", "Erin"))
        .await;
    assert_eq!(
        condition(&refused).as_deref(),
        Some("not-allowed"),
        "{}",
        xml::show(&refused)
    );
    let at_alice = alice.barrier().await;
    assert!(!any(&at_alice, |e| is_roster_push(e, "erin@localhost")));
    assert_eq!(xml::roster_items(&alice.roster_get().await).len(), 2);
    // Changing an item already there is no growth.
    alice
        .iq_result("set", None, &roster_set("carol@localhost", "Carol"))
        .await;
}

#[tokio::test]
async fn subscription_requests_from_many_jids_cannot_grow_a_roster_beyond_the_limit() {
    let server = server().await;
    server.add_user("bob").await;
    for name in ["s1", "s2", "s3"] {
        server.add_user(name).await;
    }
    // Bob is offline: each request is kept as a hidden pending-in item (RFC 6121 section 3.1.3).
    for name in ["s1", "s2"] {
        let mut asker = server.online(name, "r").await;
        asker
            .send("<presence to='bob@localhost' type='subscribe'/>")
            .await;
        asker.barrier().await;
    }
    let mut third = server.online("s3", "r").await;
    third
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    let at_third = third.barrier().await;
    assert!(
        any(&at_third, |e| e.is("presence", ns::CLIENT)
            && e.attr("from") == Some("bob@localhost")
            && condition(e).as_deref() == Some("resource-constraint")),
        "{at_third:#?}"
    );
    assert_eq!(
        server.storage.rosters.count("bob@localhost").await.unwrap(),
        2
    );
    // Bob still gets the two requests that fit (RFC 6121 section 3.1.3: delivered at login).
    let mut bob = server.login("bob", "r").await;
    bob.roster_get().await;
    bob.send("<presence/>").await;
    let at_bob = bob.barrier().await;
    let requests = at_bob
        .iter()
        .filter(|e| e.is("presence", ns::CLIENT) && e.attr("type") == Some("subscribe"))
        .count();
    assert_eq!(requests, 2, "{at_bob:#?}");
}

#[tokio::test]
async fn asking_a_new_contact_with_a_full_roster_is_refused_and_not_routed() {
    let server = server().await;
    for name in ["alice", "bob"] {
        server.add_user(name).await;
    }
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    for contact in ["carol@localhost", "dave@localhost"] {
        alice
            .iq_result("set", None, &roster_set(contact, "x"))
            .await;
    }
    alice
        .send("<presence id='ask' to='bob@localhost' type='subscribe'/>")
        .await;
    let at_alice = alice.barrier().await;
    assert!(
        any(&at_alice, |e| e.is("presence", ns::CLIENT)
            && condition(e).as_deref() == Some("not-allowed")),
        "{at_alice:#?}"
    );
    bob.assert_none("a subscription request", |e| {
        e.is("presence", ns::CLIENT) && e.attr("type") == Some("subscribe")
    })
    .await;
}

#[tokio::test]
async fn a_block_beyond_the_limit_is_refused_whole() {
    let server = server().await;
    server.add_user("alice").await;
    let mut alice = server.online("alice", "r").await;
    let block = |jids: &[&str]| {
        let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
        format!("<block xmlns='urn:xmpp:blocking'>{items}</block>")
    };
    alice
        .iq_result("set", None, &block(&["x@spam.example", "y@spam.example"]))
        .await;
    let refused = alice
        .iq("set", None, &block(&["y@spam.example", "z@spam.example"]))
        .await;
    assert_eq!(
        condition(&refused).as_deref(),
        Some("not-acceptable"),
        "{}",
        xml::show(&refused)
    );
    // Blocking what is already blocked is no growth.
    alice
        .iq_result("set", None, &block(&["x@spam.example"]))
        .await;
    let list = alice
        .iq_result("get", None, "<blocklist xmlns='urn:xmpp:blocking'/>")
        .await;
    let items = list
        .get_child("blocklist", ns::BLOCKING)
        .unwrap()
        .children()
        .count();
    assert_eq!(items, 2);
}
