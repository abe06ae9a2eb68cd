//! XEP-0049 private XML storage over real sockets, on every backend: set then get, overwrite, two
//! namespaces kept apart, another user refused (section 2.3), reserved namespaces refused (section 3),
//! the `[limits] max_private_xml_fragments` and `max_private_xml_bytes` bounds (a refused set loses
//! nothing stored), and fragments removed with the account (XEP-0077 section 3.2).
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::xml::{self, is_error};
use herald_tests::{Backend, Element, TestClient, TestServer, on_every_backend};

on_every_backend!(
    set_then_get_returns_the_fragment,
    a_set_replaces_the_fragment_and_namespaces_stay_apart,
    another_user_is_forbidden,
    reserved_namespaces_and_an_empty_query_are_not_acceptable,
    the_limits_refuse_a_set_and_keep_what_was_stored,
    fragments_are_removed_with_the_account,
);

const BOOKMARKS: &str = "<storage xmlns='storage:bookmarks'>\
    <conference jid='room@conference.localhost' autojoin='true' name='Room'><nick>al</nick></conference>\
    </storage>";

fn query(inner: &str) -> String {
    format!("<query xmlns='jabber:iq:private'>{inner}</query>")
}

/// The one fragment `(name, namespace)` a get returned.
fn fragment<'a>(result: &'a Element, name: &str, namespace: &str) -> &'a Element {
    result
        .get_child("query", ns::PRIVATE)
        .and_then(|q| q.get_child(name, namespace))
        .unwrap_or_else(|| panic!("no {name} in {}", xml::show(result)))
}

async fn get(client: &mut TestClient, name: &str, namespace: &str) -> Element {
    client
        .iq_result(
            "get",
            None,
            &query(&format!("<{name} xmlns='{namespace}'/>")),
        )
        .await
}

fn condition(response: &Element) -> Option<String> {
    xml::error_condition(response)
}

async fn set_then_get_returns_the_fragment(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    // Nothing stored yet: the element comes back as asked for, empty.
    let empty = get(&mut alice, "storage", "storage:bookmarks").await;
    assert_eq!(
        fragment(&empty, "storage", "storage:bookmarks")
            .children()
            .count(),
        0
    );
    alice.iq_result("set", None, &query(BOOKMARKS)).await;
    // Another resource of the same account reads it (storage is per account, not per session).
    let mut other = server.login("alice", "other").await;
    let got = get(&mut other, "storage", "storage:bookmarks").await;
    let conference = fragment(&got, "storage", "storage:bookmarks")
        .get_child("conference", "storage:bookmarks")
        .expect("the conference");
    assert_eq!(conference.attr("jid"), Some("room@conference.localhost"));
    assert_eq!(conference.attr("autojoin"), Some("true"));
    assert_eq!(
        conference
            .get_child("nick", "storage:bookmarks")
            .map(Element::text)
            .as_deref(),
        Some("al")
    );
}

async fn a_set_replaces_the_fragment_and_namespaces_stay_apart(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    alice.iq_result("set", None, &query(BOOKMARKS)).await;
    alice
        .iq_result(
            "set",
            None,
            &query("<prefs xmlns='urn:example:prefs'><color>blue</color></prefs>"),
        )
        .await;
    alice
        .iq_result(
            "set",
            None,
            &query("<storage xmlns='storage:bookmarks'><url url='https://example.org/' name='x'/></storage>"),
        )
        .await;
    let got = get(&mut alice, "storage", "storage:bookmarks").await;
    let bookmarks = fragment(&got, "storage", "storage:bookmarks");
    assert!(
        bookmarks
            .get_child("conference", "storage:bookmarks")
            .is_none(),
        "not replaced: {}",
        xml::show(&got)
    );
    assert!(bookmarks.get_child("url", "storage:bookmarks").is_some());
    let got = get(&mut alice, "prefs", "urn:example:prefs").await;
    let color = fragment(&got, "prefs", "urn:example:prefs")
        .get_child("color", "urn:example:prefs")
        .map(Element::text);
    assert_eq!(color.as_deref(), Some("blue"), "{}", xml::show(&got));
}

async fn another_user_is_forbidden(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    server.add_user("mallory").await;
    let mut alice = server.login("alice", "r").await;
    alice.iq_result("set", None, &query(BOOKMARKS)).await;
    let mut mallory = server.login("mallory", "r").await;
    let bookmarks_get = query("<storage xmlns='storage:bookmarks'/>");
    for (kind, to, payload) in [
        ("get", "alice@localhost", bookmarks_get.as_str()),
        (
            "set",
            "alice@localhost",
            &query("<storage xmlns='storage:bookmarks'/>"),
        ),
        ("get", "localhost", bookmarks_get.as_str()),
    ] {
        let refused = mallory.iq(kind, Some(to), payload).await;
        assert!(
            is_error(&refused, "iq", "forbidden"),
            "{kind} to {to}: {}",
            xml::show(&refused)
        );
        assert!(
            !xml::show(&refused).contains("room@conference.localhost"),
            "leaked: {}",
            xml::show(&refused)
        );
    }
    // Alice's bookmarks are untouched by the refused set.
    let got = get(&mut alice, "storage", "storage:bookmarks").await;
    assert!(
        fragment(&got, "storage", "storage:bookmarks")
            .get_child("conference", "storage:bookmarks")
            .is_some()
    );
}

async fn reserved_namespaces_and_an_empty_query_are_not_acceptable(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    for (kind, inner) in [
        (
            "set",
            "<message xmlns='jabber:client'><body>x</body></message>",
        ),
        ("get", "<message xmlns='jabber:client'/>"),
        ("set", "<db xmlns='jabber:server'/>"),
        ("set", "<query xmlns='jabber:iq:private'/>"),
        // No namespace of its own: it inherits jabber:iq:private.
        ("set", "<plain/>"),
        ("get", ""),
        ("set", ""),
    ] {
        let refused = alice.iq(kind, None, &query(inner)).await;
        assert_eq!(
            condition(&refused).as_deref(),
            Some("not-acceptable"),
            "{kind} {inner}: {}",
            xml::show(&refused)
        );
    }
}

async fn the_limits_refuse_a_set_and_keep_what_was_stored(backend: Backend) {
    let server = TestServer::builder()
        .backend(backend)
        .env("HERALD_LIMITS__MAX_PRIVATE_XML_FRAGMENTS", "2")
        .env("HERALD_LIMITS__MAX_PRIVATE_XML_BYTES", "200")
        .start()
        .await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    alice
        .iq_result("set", None, &query("<a xmlns='urn:example:a'>1</a>"))
        .await;
    alice
        .iq_result("set", None, &query("<b xmlns='urn:example:b'>1</b>"))
        .await;
    // A third fragment is refused, with a second new one in the same set stored neither.
    let refused = alice
        .iq(
            "set",
            None,
            &query("<a xmlns='urn:example:a'>2</a><c xmlns='urn:example:c'/>"),
        )
        .await;
    assert_eq!(
        condition(&refused).as_deref(),
        Some("resource-constraint"),
        "{}",
        xml::show(&refused)
    );
    let c = get(&mut alice, "c", "urn:example:c").await;
    assert_eq!(fragment(&c, "c", "urn:example:c").text(), "");
    let a = get(&mut alice, "a", "urn:example:a").await;
    assert_eq!(fragment(&a, "a", "urn:example:a").text(), "1");
    // Replacing one at the limit is no growth.
    alice
        .iq_result("set", None, &query("<b xmlns='urn:example:b'>2</b>"))
        .await;
    // Too big a fragment is refused, and what was stored under it stays.
    let big = format!("<a xmlns='urn:example:a'>{}</a>", "x".repeat(300));
    let refused = alice.iq("set", None, &query(&big)).await;
    assert_eq!(
        condition(&refused).as_deref(),
        Some("policy-violation"),
        "{}",
        xml::show(&refused)
    );
    let a = get(&mut alice, "a", "urn:example:a").await;
    assert_eq!(fragment(&a, "a", "urn:example:a").text(), "1");
    let b = get(&mut alice, "b", "urn:example:b").await;
    assert_eq!(fragment(&b, "b", "urn:example:b").text(), "2");
}

async fn fragments_are_removed_with_the_account(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("bob").await;
    let mut bob = server.login("bob", "r").await;
    bob.iq_result("set", None, &query(BOOKMARKS)).await;
    bob.send("<iq type='set' id='bye'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    bob.expect("removal result", |e| {
        e.attr("id") == Some("bye") && e.attr("type") == Some("result")
    })
    .await;
    bob.expect_any_stream_error().await;
    // The same name again is a new account without the old bookmarks.
    server.add_user("bob").await;
    let mut again = server.login("bob", "r").await;
    let got = get(&mut again, "storage", "storage:bookmarks").await;
    assert_eq!(
        fragment(&got, "storage", "storage:bookmarks")
            .children()
            .count(),
        0,
        "{}",
        xml::show(&got)
    );
}
