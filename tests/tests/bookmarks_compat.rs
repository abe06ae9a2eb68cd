//! XEP-0402 compatibility with XEP-0048 in XEP-0049 private XML (`urn:xmpp:bookmarks:1#compat`) over
//! real sockets, on both backends: the account advertises it; a bookmark published or retracted on
//! the XEP-0402 node is what a private XML get of `storage:bookmarks` answers; a `storage:bookmarks`
//! set publishes and retracts XEP-0402 items (notified to the owner's interested resources) on a node
//! configured as XEP-0402 asks, and keeps in private XML only what the node cannot hold. The XEP-0048
//! PEP node (`#compat-pep`): a publish to `storage:bookmarks` publishes and retracts XEP-0402 items,
//! its items request answers the XEP-0402 list, and a change of the XEP-0402 node is notified on it
//! to the owner's resources that ask for it and to nobody else.
#![allow(clippy::unwrap_used)]

use herald::xmpp::{Element, ns};
use herald_tests::caps::announce_caps;
use herald_tests::xml::{self};
use herald_tests::{Backend, TestClient, TestServer, on_every_backend};

on_every_backend!(
    the_account_advertises_compat,
    a_bookmarks2_publish_and_retract_show_in_private_xml,
    a_private_xml_set_publishes_and_retracts_bookmarks2_items,
    the_xep0048_pep_node_mirrors_bookmarks2,
    a_private_xml_set_of_many_bookmarks_notifies_once_per_change,
);

const BOOKMARKS2: &str = "urn:xmpp:bookmarks:1";
const LEGACY: &str = "storage:bookmarks";

fn private(inner: &str) -> String {
    format!("<query xmlns='jabber:iq:private'>{inner}</query>")
}

/// The `<storage xmlns='storage:bookmarks'/>` a private XML get answers.
async fn legacy_storage(client: &mut TestClient) -> Element {
    let result = client
        .iq_result(
            "get",
            None,
            &private("<storage xmlns='storage:bookmarks'/>"),
        )
        .await;
    result
        .get_child("query", ns::PRIVATE)
        .and_then(|q| q.get_child("storage", LEGACY))
        .cloned()
        .unwrap_or_else(|| panic!("no storage in {}", xml::show(&result)))
}

fn legacy_conference<'a>(storage: &'a Element, jid: &str) -> Option<&'a Element> {
    storage
        .children()
        .find(|c| c.is("conference", LEGACY) && c.attr("jid") == Some(jid))
}

/// The node's items as (id, conference payload), as the owner reads them.
async fn bookmarks2_items(client: &mut TestClient) -> Vec<(String, Element)> {
    let result = client
        .iq_result(
            "get",
            None,
            &format!(
                "<pubsub xmlns='{}'><items node='{BOOKMARKS2}'/></pubsub>",
                ns::PUBSUB
            ),
        )
        .await;
    result
        .get_child("pubsub", ns::PUBSUB)
        .and_then(|p| p.get_child("items", ns::PUBSUB))
        .map(|items| {
            items
                .children()
                .filter_map(|i| {
                    Some((
                        i.attr("id")?.to_string(),
                        i.get_child("conference", BOOKMARKS2)?.clone(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn child_text(element: &Element, name: &str, namespace: &str) -> Option<String> {
    element.get_child(name, namespace).map(Element::text)
}

/// Announces caps with `urn:xmpp:bookmarks:1+notify` and answers the server's disco#info query.
async fn want_bookmark_notifications(server: &TestServer, client: &mut TestClient) {
    announce_caps(server, client, &[BOOKMARKS2]).await;
}

/// Whether `e` is a bookmarks notification carrying `child` (`item` or `retract`) with `id`.
fn is_bookmark_event(e: &Element, child: &str, id: &str) -> bool {
    e.is("message", ns::CLIENT)
        && e.get_child("event", ns::PUBSUB_EVENT)
            .and_then(|event| event.get_child("items", ns::PUBSUB_EVENT))
            .is_some_and(|items| {
                items.attr("node") == Some(BOOKMARKS2)
                    && items
                        .children()
                        .any(|i| i.is(child, ns::PUBSUB_EVENT) && i.attr("id") == Some(id))
            })
}

async fn the_account_advertises_compat(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    let info = alice
        .iq_result(
            "get",
            Some("alice@localhost"),
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        )
        .await;
    for feature in [
        "urn:xmpp:bookmarks:1#compat",
        "urn:xmpp:bookmarks:1#compat-pep",
    ] {
        assert!(
            xml::disco_features(&info).contains(&feature.to_string()),
            "{feature}: {}",
            xml::show(&info)
        );
    }
}

async fn a_bookmarks2_publish_and_retract_show_in_private_xml(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    alice
        .iq_result(
            "set",
            None,
            &format!(
                "<pubsub xmlns='{}'><publish node='{BOOKMARKS2}'>\
                 <item id='council@conference.localhost'>\
                 <conference xmlns='{BOOKMARKS2}' name='Council of Oberon' autojoin='true'>\
                 <nick>Puck</nick><password>secret</password></conference></item></publish>\
                 <publish-options><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
                 <field var='pubsub#persist_items'><value>true</value></field>\
                 <field var='pubsub#max_items'><value>max</value></field>\
                 <field var='pubsub#access_model'><value>whitelist</value></field>\
                 </x></publish-options></pubsub>",
                ns::PUBSUB
            ),
        )
        .await;
    // A legacy client on another resource reads it as XEP-0048.
    let mut legacy = server.login("alice", "legacy").await;
    let storage = legacy_storage(&mut legacy).await;
    let conference = legacy_conference(&storage, "council@conference.localhost")
        .unwrap_or_else(|| panic!("not in private XML: {}", xml::show(&storage)));
    assert_eq!(conference.attr("name"), Some("Council of Oberon"));
    assert_eq!(conference.attr("autojoin"), Some("true"));
    assert_eq!(
        child_text(conference, "nick", LEGACY).as_deref(),
        Some("Puck")
    );
    assert_eq!(
        child_text(conference, "password", LEGACY).as_deref(),
        Some("secret")
    );

    alice
        .iq_result(
            "set",
            None,
            &format!(
                "<pubsub xmlns='{}'><retract node='{BOOKMARKS2}' notify='true'>\
                 <item id='council@conference.localhost'/></retract></pubsub>",
                ns::PUBSUB
            ),
        )
        .await;
    let storage = legacy_storage(&mut legacy).await;
    assert!(
        legacy_conference(&storage, "council@conference.localhost").is_none(),
        "still in private XML after the retract: {}",
        xml::show(&storage)
    );
}

async fn a_private_xml_set_publishes_and_retracts_bookmarks2_items(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    let mut legacy = server.login("alice", "legacy").await;
    let mut modern = server.login("alice", "modern").await;
    want_bookmark_notifications(&server, &mut modern).await;

    legacy
        .iq_result(
            "set",
            None,
            &private(
                "<storage xmlns='storage:bookmarks'>\
                 <conference jid='one@conference.localhost' name='One' autojoin='1'><nick>al</nick></conference>\
                 <conference jid='two@conference.localhost' name='Two'><password>pw</password></conference>\
                 <url name='Site' url='https://example.org/'/>\
                 </storage>",
            ),
        )
        .await;
    for id in ["one@conference.localhost", "two@conference.localhost"] {
        modern
            .expect(&format!("a notification of {id}"), |e| {
                is_bookmark_event(e, "item", id)
            })
            .await;
    }
    let items = bookmarks2_items(&mut modern).await;
    let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["one@conference.localhost", "two@conference.localhost"],
        "in the order of the list"
    );
    let one = &items[0].1;
    assert_eq!(one.attr("name"), Some("One"));
    assert_eq!(one.attr("autojoin"), Some("true"));
    assert_eq!(child_text(one, "nick", BOOKMARKS2).as_deref(), Some("al"));
    let two = &items[1].1;
    assert_eq!(
        child_text(two, "password", BOOKMARKS2).as_deref(),
        Some("pw")
    );
    // The node is configured as XEP-0402 asks: only the owner may read it.
    let config = modern
        .iq_result(
            "get",
            None,
            &format!(
                "<pubsub xmlns='{}'><configure node='{BOOKMARKS2}'/></pubsub>",
                ns::PUBSUB_OWNER
            ),
        )
        .await;
    let access = config
        .get_child("pubsub", ns::PUBSUB_OWNER)
        .and_then(|p| p.get_child("configure", ns::PUBSUB_OWNER))
        .and_then(|c| c.get_child("x", ns::DATA_FORMS))
        .and_then(|x| {
            x.children()
                .find(|f| f.attr("var") == Some("pubsub#access_model"))
        })
        .and_then(|f| f.get_child("value", ns::DATA_FORMS))
        .map(Element::text);
    assert_eq!(
        access.as_deref(),
        Some("whitelist"),
        "{}",
        xml::show(&config)
    );

    // Dropping a room from the list retracts its item; an unchanged room is not published again.
    legacy
        .iq_result(
            "set",
            None,
            &private(
                "<storage xmlns='storage:bookmarks'>\
                 <conference jid='one@conference.localhost' name='One' autojoin='1'><nick>al</nick></conference>\
                 <url name='Site' url='https://example.org/'/>\
                 </storage>",
            ),
        )
        .await;
    let event = modern
        .expect("a notification for the private XML set", |e| {
            e.is("message", ns::CLIENT) && e.get_child("event", ns::PUBSUB_EVENT).is_some()
        })
        .await;
    assert!(
        is_bookmark_event(&event, "retract", "two@conference.localhost"),
        "{}",
        xml::show(&event)
    );
    let items = bookmarks2_items(&mut modern).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].0, "one@conference.localhost");

    // The legacy client reads back its list, the URL bookmark included.
    let storage = legacy_storage(&mut legacy).await;
    assert!(legacy_conference(&storage, "one@conference.localhost").is_some());
    assert!(legacy_conference(&storage, "two@conference.localhost").is_none());
    assert!(
        storage.get_child("url", LEGACY).is_some(),
        "{}",
        xml::show(&storage)
    );
}

/// The `<storage/>` of item `current` of the XEP-0048 PEP node, as the owner reads it.
async fn legacy_pep_storage(client: &mut TestClient) -> Element {
    let result = client
        .iq_result(
            "get",
            None,
            &format!(
                "<pubsub xmlns='{}'><items node='{LEGACY}'/></pubsub>",
                ns::PUBSUB
            ),
        )
        .await;
    let item = result
        .get_child("pubsub", ns::PUBSUB)
        .and_then(|p| p.get_child("items", ns::PUBSUB))
        .and_then(|i| i.get_child("item", ns::PUBSUB))
        .unwrap_or_else(|| panic!("no item in {}", xml::show(&result)));
    assert_eq!(item.attr("id"), Some("current"));
    item.get_child("storage", LEGACY).cloned().unwrap()
}

/// Whether `e` is a XEP-0048 PEP notification whose list holds a conference for `jid`.
fn is_legacy_event_with(e: &Element, jid: &str) -> bool {
    e.get_child("event", ns::PUBSUB_EVENT)
        .and_then(|event| event.get_child("items", ns::PUBSUB_EVENT))
        .filter(|items| items.attr("node") == Some(LEGACY))
        .and_then(|items| items.get_child("item", ns::PUBSUB_EVENT))
        .and_then(|item| item.get_child("storage", LEGACY))
        .is_some_and(|storage| legacy_conference(storage, jid).is_some())
}

async fn the_xep0048_pep_node_mirrors_bookmarks2(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    for user in ["alice", "bob"] {
        server.add_user(user).await;
    }
    server.befriend("alice", "bob").await;
    let mut alice = server.login("alice", "r").await;
    let mut old = server.login("alice", "old").await;
    announce_caps(&server, &mut old, &[LEGACY]).await;
    let mut bob = server.login("bob", "r").await;
    bob.roster_get().await;
    announce_caps(&server, &mut bob, &[LEGACY, BOOKMARKS2]).await;

    // An old client publishes its whole list to the XEP-0048 PEP node.
    let answer = alice
        .iq_result(
            "set",
            None,
            &format!(
                "<pubsub xmlns='{}'><publish node='{LEGACY}'><item id='current'>\
                 <storage xmlns='storage:bookmarks'>\
                 <conference jid='council@muc.localhost' name='Council' autojoin='true'><nick>Puck</nick></conference>\
                 <conference jid='tea@muc.localhost'/>\
                 <url name='Site' url='https://example.org/'/></storage></item></publish></pubsub>",
                ns::PUBSUB
            ),
        )
        .await;
    assert!(
        xml::show(&answer).contains("current"),
        "{}",
        xml::show(&answer)
    );
    let items = bookmarks2_items(&mut alice).await;
    let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["council@muc.localhost", "tea@muc.localhost"]);
    assert_eq!(
        child_text(&items[0].1, "nick", BOOKMARKS2).as_deref(),
        Some("Puck")
    );
    let storage = legacy_pep_storage(&mut alice).await;
    assert!(legacy_conference(&storage, "tea@muc.localhost").is_some());
    assert!(
        storage.children().any(|c| c.is("url", LEGACY)),
        "what the node cannot hold is kept: {}",
        xml::show(&storage)
    );
    old.expect("the list on the XEP-0048 node", |e| {
        is_legacy_event_with(e, "council@muc.localhost")
    })
    .await;

    // A XEP-0402 publish shows on the XEP-0048 node, notified to the resource that asks for it.
    alice
        .pep_publish(
            BOOKMARKS2,
            "dance@muc.localhost",
            "<conference xmlns='urn:xmpp:bookmarks:1' name='Dance'/>",
        )
        .await;
    old.expect("the new bookmark on the XEP-0048 node", |e| {
        is_legacy_event_with(e, "dance@muc.localhost")
    })
    .await;
    let storage = legacy_pep_storage(&mut alice).await;
    assert!(legacy_conference(&storage, "dance@muc.localhost").is_some());

    // Dropping a room from the old list retracts its item.
    alice
        .iq_result(
            "set",
            None,
            &format!(
                "<pubsub xmlns='{}'><publish node='{LEGACY}'><item id='current'>\
                 <storage xmlns='storage:bookmarks'><conference jid='dance@muc.localhost' name='Dance'/>\
                 </storage></item></publish></pubsub>",
                ns::PUBSUB
            ),
        )
        .await;
    let ids: Vec<String> = bookmarks2_items(&mut alice)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["dance@muc.localhost"]);

    // Only the owner: a contact neither reads the node nor hears of it.
    let refused = bob
        .iq(
            "get",
            Some("alice@localhost"),
            &format!(
                "<pubsub xmlns='{}'><items node='{LEGACY}'/></pubsub>",
                ns::PUBSUB
            ),
        )
        .await;
    assert_eq!(
        refused.attr("type"),
        Some("error"),
        "{}",
        xml::show(&refused)
    );
    bob.assert_none("alice's bookmarks", |e| {
        e.get_child("event", ns::PUBSUB_EVENT).is_some()
    })
    .await;
    // A payload that is not a XEP-0048 list is refused.
    let bad = alice
        .iq(
            "set",
            None,
            &format!(
                "<pubsub xmlns='{}'><publish node='{LEGACY}'><item id='current'><x xmlns='urn:x'/></item></publish></pubsub>",
                ns::PUBSUB
            ),
        )
        .await;
    assert_eq!(xml::error_condition(&bad).as_deref(), Some("bad-request"));
}

/// A private XML set of N bookmarks is N XEP-0402 publishes, each notified once on the XEP-0402
/// node, and one notification of the whole list on the XEP-0048 PEP view (not one per publish,
/// which made N lists of up to N conferences).
async fn a_private_xml_set_of_many_bookmarks_notifies_once_per_change(backend: Backend) {
    const N: usize = 8;
    let server = TestServer::builder().backend(backend).start().await;
    server.add_user("alice").await;
    let mut legacy = server.login("alice", "legacy").await;
    let mut watcher = server.login("alice", "watcher").await;
    announce_caps(&server, &mut watcher, &[BOOKMARKS2, LEGACY]).await;
    let conferences: String = (0..N)
        .map(|n| format!("<conference jid='room{n}@muc.example' autojoin='true' name='Room {n}'/>"))
        .collect();
    legacy
        .iq_result(
            "set",
            None,
            &private(&format!(
                "<storage xmlns='storage:bookmarks'>{conferences}</storage>"
            )),
        )
        .await;
    let events = watcher.barrier().await;
    let on = |node: &str| {
        events
            .iter()
            .filter(|e| {
                e.get_child("event", ns::PUBSUB_EVENT)
                    .and_then(|ev| ev.get_child("items", ns::PUBSUB_EVENT))
                    .is_some_and(|items| items.attr("node") == Some(node))
            })
            .count()
    };
    assert_eq!(
        on(BOOKMARKS2),
        N,
        "one XEP-0402 notification per new bookmark"
    );
    assert_eq!(on(LEGACY), 1, "one notification of the XEP-0048 view");
    // One changed and one removed: two XEP-0402 notifications, one XEP-0048 list.
    let conferences: String = (1..N)
        .map(|n| {
            let name = if n == 1 {
                "Renamed".to_string()
            } else {
                format!("Room {n}")
            };
            format!("<conference jid='room{n}@muc.example' autojoin='true' name='{name}'/>")
        })
        .collect();
    legacy
        .iq_result(
            "set",
            None,
            &private(&format!(
                "<storage xmlns='storage:bookmarks'>{conferences}</storage>"
            )),
        )
        .await;
    let events = watcher.barrier().await;
    let count = |node: &str| {
        events
            .iter()
            .filter(|e| {
                e.get_child("event", ns::PUBSUB_EVENT)
                    .and_then(|ev| ev.get_child("items", ns::PUBSUB_EVENT))
                    .is_some_and(|items| items.attr("node") == Some(node))
            })
            .count()
    };
    assert_eq!(count(BOOKMARKS2), 2, "{events:?}");
    assert_eq!(count(LEGACY), 1, "{events:?}");
}
