//! PEP (XEP-0163) across the federation of two in-process Herald domains, `a.test` and `b.test`: a
//! remote contact whose presence announces caps (XEP-0115) with `urn:xmpp:omemo:2:devices+notify` is
//! asked once per verification string across s2s (however many of its resources announce it), then
//! gets the owner's last device list and every new publish; it fetches a bundle by id while a
//! stranger on its domain is refused; its unavailable presence ends its notifications, and a stranger's
//! directed presence with caps starts none.
#![allow(clippy::unwrap_used)]

use herald::xmpp::{Element, ns};
use herald_storage::{RosterItem, Subscription};
use herald_tests::caps::{CAPS_NODE, disco_info, ver_of};
use herald_tests::federation::{Authentication, federate};
use herald_tests::xml::{self, error_condition};
use herald_tests::{TestClient, TestServer, eventually};

const DEVICES: &str = "urn:xmpp:omemo:2:devices";
const BUNDLES: &str = "urn:xmpp:omemo:2:bundles";

fn devices(ids: &[u32]) -> String {
    let devices: String = ids
        .iter()
        .map(|id| format!("<device id='{id}'/>"))
        .collect();
    format!("<devices xmlns='urn:xmpp:omemo:2'>{devices}</devices>")
}

/// Whether `e` is a notification from `from` of item `id` of `node`.
fn is_event(e: &Element, from: &str, node: &str, id: &str) -> bool {
    e.is("message", ns::CLIENT)
        && e.attr("from") == Some(from)
        && e.attr("type") == Some("headline")
        && e.get_child("event", ns::PUBSUB_EVENT)
            .and_then(|event| event.get_child("items", ns::PUBSUB_EVENT))
            .is_some_and(|items| {
                items.attr("node") == Some(node)
                    && items
                        .children()
                        .any(|i| i.is("item", ns::PUBSUB_EVENT) && i.attr("id") == Some(id))
            })
}

fn is_any_event(e: &Element) -> bool {
    e.get_child("event", ns::PUBSUB_EVENT).is_some()
}

/// Whether `e` is a disco#info query from `from`.
fn is_caps_query(e: &Element, from: &str) -> bool {
    e.is("iq", ns::CLIENT)
        && e.attr("type") == Some("get")
        && e.attr("from") == Some(from)
        && e.get_child("query", ns::DISCO_INFO).is_some()
}

/// `owner` has `contact` with a `both` subscription, straight in `server`'s storage.
async fn link(server: &TestServer, owner: &str, contact: &str) {
    let item = RosterItem {
        contact: contact.to_string(),
        subscription: Subscription::Both,
        in_roster: true,
        ..RosterItem::default()
    };
    server
        .router()
        .context
        .storage
        .rosters
        .upsert(owner, &item)
        .await
        .unwrap();
}

/// A presence announcing caps for `notify` (XEP-0115 section 4), optionally directed `to`.
fn caps_presence(notify: &[&str], to: Option<&str>) -> String {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    format!(
        "<presence{to}><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{}'/></presence>",
        ver_of(notify)
    )
}

/// Receives until an element matching `until` arrives, answering every disco#info query on the
/// way with the caps for `notify`; returns that element and the number of queries from `counted`.
async fn answering_queries(
    client: &mut TestClient,
    notify: &[&str],
    counted: &str,
    what: &str,
    until: impl Fn(&Element) -> bool,
) -> (Element, usize) {
    let mut queries = 0;
    loop {
        let e = client
            .expect(what, |e| {
                until(e) || is_caps_query(e, e.attr("from").unwrap_or(""))
            })
            .await;
        if until(&e) {
            return (e, queries);
        }
        if e.attr("from") == Some(counted) {
            queries += 1;
        }
        answer_query(client, &e, notify).await;
    }
}

/// Answers the disco#info `query` with the caps for `notify`.
async fn answer_query(client: &mut TestClient, query: &Element, notify: &[&str]) {
    let from = query.attr("from").unwrap();
    let node = query
        .get_child("query", ns::DISCO_INFO)
        .and_then(|q| q.attr("node"))
        .unwrap_or("");
    client
        .send(&format!(
            "<iq type='result' id='{}' to='{from}'><query xmlns='{}' node='{node}'>{}</query></iq>",
            query.attr("id").unwrap(),
            ns::DISCO_INFO,
            disco_info(notify)
        ))
        .await;
}

#[tokio::test]
async fn omemo_device_lists_reach_a_remote_contact() {
    let (_ca, a, b) = federate(Authentication::External).await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    b.add_user("carol").await;
    link(&a, "alice@a.test", "bob@b.test").await;
    link(&b, "bob@b.test", "alice@a.test").await;
    let mut alice = a.online("alice", "phone").await;
    alice.pep_publish(DEVICES, "current", &devices(&[1])).await;
    alice
        .pep_publish(BUNDLES, "1", "<bundle xmlns='urn:xmpp:omemo:2'/>")
        .await;

    // Two resources of bob announce the same new verification string; a.test asks once.
    let mut pc = b.login("bob", "pc").await;
    pc.roster_get().await;
    let mut tablet = b.login("bob", "tablet").await;
    tablet.roster_get().await;
    let ver = ver_of(&[DEVICES]);
    let tracked = &a.router().context.remote_resources;
    pc.send(&caps_presence(&[DEVICES], None)).await;
    eventually("a.test tracks bob/pc", async || {
        tracked.announces("alice@a.test", "bob@b.test/pc", &ver)
    })
    .await;
    tablet.send(&caps_presence(&[DEVICES], None)).await;
    eventually("a.test tracks bob/tablet", async || {
        tracked.announces("alice@a.test", "bob@b.test/tablet", &ver)
    })
    .await;
    assert!(a.router().context.caps.is_querying(&ver));
    let last = |e: &Element| is_event(e, "alice@a.test", DEVICES, "current");
    let (_, from_a) =
        answering_queries(&mut pc, &[DEVICES], "a.test", "the last device list", last).await;
    assert_eq!(from_a, 1, "one disco#info query from a.test");
    let (_, from_a) = answering_queries(
        &mut tablet,
        &[DEVICES],
        "a.test",
        "the last device list",
        last,
    )
    .await;
    assert_eq!(
        from_a, 0,
        "the tablet is not asked: the pc's answer serves it"
    );
    for client in [&mut pc, &mut tablet] {
        let early = client.barrier().await;
        assert!(
            !early
                .iter()
                .any(|e| is_caps_query(e, "a.test") || is_any_event(e)),
            "no second query, no second copy: {early:?}"
        );
    }

    // A new publish reaches both of bob's resources across the federation.
    alice
        .pep_publish(DEVICES, "current", &devices(&[1, 2]))
        .await;
    for client in [&mut pc, &mut tablet] {
        client
            .expect("the new device list", |e| {
                is_event(e, "alice@a.test", DEVICES, "current") && xml::show(e).contains("id='2'")
            })
            .await;
    }

    // Items by id across the federation: bob (subscribed) gets the bundle; carol, a stranger on
    // b.test, is refused (XEP-0060 section 6.5.9 and the presence access model).
    let fetch = format!(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{BUNDLES}'><item id='1'/></items></pubsub>"
    );
    let bundle = pc.iq_result("get", Some("alice@a.test"), &fetch).await;
    assert!(
        xml::show(&bundle).contains("urn:xmpp:omemo:2"),
        "{}",
        xml::show(&bundle)
    );
    let missing = pc
        .iq(
            "get",
            Some("alice@a.test"),
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='nothing-here'/></pubsub>",
        )
        .await;
    assert_eq!(error_condition(&missing).as_deref(), Some("item-not-found"));
    let mut carol = b.online("carol", "r").await;
    let refused = carol.iq("get", Some("alice@a.test"), &fetch).await;
    assert_eq!(error_condition(&refused).as_deref(), Some("forbidden"));

    // A stranger's directed presence with caps is not tracked: no query, no notification.
    carol
        .send(&caps_presence(&[DEVICES, "urn:x"], Some("alice@a.test")))
        .await;
    // Unavailable presence ends bob/pc's notifications; the tablet still gets them.
    pc.send("<presence type='unavailable'/>").await;
    eventually("a.test forgets bob/pc", async || {
        !tracked.announces("alice@a.test", "bob@b.test/pc", &ver)
    })
    .await;
    alice
        .pep_publish(DEVICES, "current", &devices(&[1, 2, 3]))
        .await;
    tablet
        .expect("the third device list", |e| {
            is_event(e, "alice@a.test", DEVICES, "current") && xml::show(e).contains("id='3'")
        })
        .await;
    // A marker after the publish on the same a.test -> b.test stream: what the publish sent is ahead.
    alice.chat("bob@b.test/pc", "marker").await;
    alice.chat("carol@b.test/r", "marker").await;
    for client in [&mut pc, &mut carol] {
        loop {
            let e = client.recv().await;
            if e.name() == "message" && xml::body(&e).as_deref() == Some("marker") {
                break;
            }
            assert!(
                !is_any_event(&e) && !is_caps_query(&e, "a.test"),
                "{} got {}",
                client.jid,
                xml::show(&e)
            );
        }
    }
    assert!(
        !tracked.announces(
            "alice@a.test",
            "carol@b.test/r",
            &ver_of(&[DEVICES, "urn:x"])
        ),
        "a stranger is not tracked"
    );
}

/// RFC 6121 section 3 across domains, then XEP-0163 section 6.2: bob's caps are known to a.test as
/// soon as alice is subscribed to his presence, but alice's device list (presence access) reaches
/// him only once she approves his subscription to hers.
#[tokio::test]
async fn the_last_device_list_follows_the_subscription_handshake() {
    let (_ca, a, b) = federate(Authentication::Dialback).await;
    a.add_user("alice").await;
    b.add_user("bob").await;
    let mut alice = a.online("alice", "phone").await;
    alice.pep_publish(DEVICES, "current", &devices(&[7])).await;
    let mut bob = b.login("bob", "pc").await;
    bob.roster_get().await;
    bob.send(&caps_presence(&[DEVICES], None)).await;

    // alice subscribes to bob: a.test then gets bob's presence and asks him about his caps.
    alice
        .send("<presence to='bob@b.test' type='subscribe'/>")
        .await;
    answering_queries(&mut bob, &[DEVICES], "a.test", "alice's request", |e| {
        xml::is_presence(e, "alice@a.test", Some("subscribe"))
    })
    .await;
    bob.send("<presence to='alice@a.test' type='subscribed'/>")
        .await;
    let ver = ver_of(&[DEVICES]);
    let tracked = &a.router().context.remote_resources;
    let (query, _) = answering_queries(&mut bob, &[DEVICES], "a.test", "a.test's query", |e| {
        is_caps_query(e, "a.test")
    })
    .await;
    assert!(tracked.announces("alice@a.test", "bob@b.test/pc", &ver));
    answer_query(&mut bob, &query, &[DEVICES]).await;
    eventually("a.test verified bob's caps", async || {
        a.router().context.caps.is_verified(&ver)
    })
    .await;
    // bob is not subscribed to alice's presence yet: the presence access model keeps her list.
    alice.chat("bob@b.test/pc", "marker").await;
    loop {
        let e = bob.recv().await;
        if e.name() == "message" && xml::body(&e).as_deref() == Some("marker") {
            break;
        }
        assert!(!is_any_event(&e), "{}", xml::show(&e));
    }

    // bob subscribes to alice; her approval sends her presence and her last device list.
    bob.send("<presence to='alice@a.test' type='subscribe'/>")
        .await;
    alice
        .expect("bob's request", |e| {
            xml::is_presence(e, "bob@b.test", Some("subscribe"))
        })
        .await;
    alice
        .send("<presence to='bob@b.test' type='subscribed'/>")
        .await;
    answering_queries(
        &mut bob,
        &[DEVICES],
        "a.test",
        "alice's last device list",
        |e| is_event(e, "alice@a.test", DEVICES, "current"),
    )
    .await;
}
