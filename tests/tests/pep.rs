//! PEP (XEP-0163 on XEP-0060) with entity capabilities (XEP-0115) over real sockets, on both
//! backends: an OMEMO device list published by alice reaches bob's resource whose caps ask for it
//! (after the server's one disco#info query, verified) and not his resource without caps; bob fetches
//! a bundle by id; a stranger is refused and learns nothing; max_items trims; publish-options are
//! preconditions; the last item arrives on presence; limits refuse instead of dropping; and every
//! node goes with the account.
#![allow(clippy::unwrap_used)]

use herald::xmpp::{Element, ns};
use herald_tests::caps::{CAPS_NODE, announce_caps, disco_info, ver_of};
use herald_tests::xml::{self, error_condition};
use herald_tests::{Backend, TestClient, TestServer, eventually, on_every_backend};

const DEVICES: &str = "urn:xmpp:omemo:2:devices";
const BUNDLES: &str = "urn:xmpp:omemo:2:bundles";
const AVATAR_METADATA: &str = "urn:xmpp:avatar:metadata";
const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";

/// A publish of `payload` as item `id` of `node`, with publish-options fields `options`.
fn publish(node: &str, id: &str, payload: &str, options: &[(&str, &str)]) -> String {
    let options = if options.is_empty() {
        String::new()
    } else {
        let fields: String = options
            .iter()
            .map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>"))
            .collect();
        format!(
            "<publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             {fields}</x></publish-options>"
        )
    };
    format!(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{node}'>\
         <item id='{id}'>{payload}</item></publish>{options}</pubsub>"
    )
}

fn devices(ids: &[u32]) -> String {
    let devices: String = ids
        .iter()
        .map(|id| format!("<device id='{id}'/>"))
        .collect();
    format!("<devices xmlns='urn:xmpp:omemo:2'>{devices}</devices>")
}

fn items_query(node: &str, extra: &str) -> String {
    format!(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{node}'{extra}</pubsub>"
    )
}

/// The ids of the items in an items result, in order.
fn item_ids(result: &Element) -> Vec<String> {
    result
        .get_child("pubsub", ns::PUBSUB)
        .and_then(|p| p.get_child("items", ns::PUBSUB))
        .map(|items| {
            items
                .children()
                .filter_map(|i| i.attr("id").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
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

/// The pubsub#errors condition of an error answer.
fn pubsub_condition(e: &Element) -> Option<String> {
    e.get_child("error", ns::CLIENT)?
        .children()
        .find(|c| c.ns() == ns::PUBSUB_ERRORS)
        .map(|c| c.name().to_string())
}

async fn server_with_friends(backend: Backend) -> TestServer {
    let server = TestServer::builder().backend(backend).start().await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user).await;
    }
    server.befriend("alice", "bob").await;
    server
}

async fn notifications_follow_caps(backend: Backend) {
    let server = server_with_friends(backend).await;
    let mut alice = server.online("alice", "phone").await;
    let mut bob = server.login("bob", "pc").await;
    bob.roster_get().await;
    announce_caps(&server, &mut bob, &[DEVICES]).await;
    let mut tablet = server.online("bob", "tablet").await;

    // The account advertises PEP the way Conversations checks for it.
    let info = alice
        .iq_result(
            "get",
            Some("alice@localhost"),
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        )
        .await;
    let features = xml::disco_features(&info);
    assert!(features.contains(&"http://jabber.org/protocol/pubsub#publish-options".to_string()));
    let identity = info
        .get_child("query", ns::DISCO_INFO)
        .unwrap()
        .children()
        .any(|i| i.attr("category") == Some("pubsub") && i.attr("type") == Some("pep"));
    assert!(identity, "{}", xml::show(&info));

    let open = [("pubsub#access_model", "open"), ("pubsub#max_items", "max")];
    let answer = alice
        .iq_result(
            "set",
            None,
            &publish(DEVICES, "current", &devices(&[1, 2]), &open),
        )
        .await;
    assert_eq!(
        answer
            .get_child("pubsub", ns::PUBSUB)
            .and_then(|p| p.get_child("publish", ns::PUBSUB))
            .and_then(|p| p.get_child("item", ns::PUBSUB))
            .and_then(|i| i.attr("id")),
        Some("current")
    );
    let event = bob
        .expect("the device list", |e| {
            is_event(e, "alice@localhost", DEVICES, "current")
        })
        .await;
    assert_eq!(event.attr("to"), Some("bob@localhost/pc"));
    assert!(
        xml::show(&event).contains("device id='2'"),
        "{}",
        xml::show(&event)
    );
    tablet
        .assert_none("a notification without +notify", is_any_event)
        .await;

    // A bundle by id, as OMEMO clients fetch it.
    alice
        .iq_result(
            "set",
            None,
            &publish(
                BUNDLES,
                "2",
                "<bundle xmlns='urn:xmpp:omemo:2'><spk id='1'>key</spk></bundle>",
                &open,
            ),
        )
        .await;
    let bundle = bob
        .iq_result(
            "get",
            Some("alice@localhost"),
            &items_query(BUNDLES, "><item id='2'/></items>"),
        )
        .await;
    assert_eq!(item_ids(&bundle), ["2"]);
    assert!(xml::show(&bundle).contains("<spk id='1'>key</spk>"));
    bob.assert_none("a bundle notification (not asked for)", |e| {
        is_event(e, "alice@localhost", BUNDLES, "2")
    })
    .await;

    // The owner's own resource hears of its own publishes when its caps ask.
    let mut laptop = server.login("alice", "laptop").await;
    laptop.roster_get().await;
    announce_caps(&server, &mut laptop, &[DEVICES]).await;
    laptop
        .expect("the last device list on presence", |e| {
            is_event(e, "alice@localhost", DEVICES, "current")
        })
        .await;
    alice
        .iq_result(
            "set",
            None,
            &publish(DEVICES, "current", &devices(&[1, 2, 3]), &open),
        )
        .await;
    laptop
        .expect("its own account's update", |e| {
            is_event(e, "alice@localhost", DEVICES, "current")
        })
        .await;
    bob.expect("the update", |e| {
        is_event(e, "alice@localhost", DEVICES, "current")
    })
    .await;

    // Retractions are notified (pubsub#notify_retract is on by default).
    alice
        .iq_result(
            "set",
            None,
            &format!(
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='{DEVICES}'><item id='current'/></retract></pubsub>"
            ),
        )
        .await;
    let retraction = bob
        .expect("the retraction", |e| {
            e.get_child("event", ns::PUBSUB_EVENT)
                .and_then(|ev| ev.get_child("items", ns::PUBSUB_EVENT))
                .and_then(|items| items.get_child("retract", ns::PUBSUB_EVENT))
                .is_some_and(|r| r.attr("id") == Some("current"))
        })
        .await;
    assert_eq!(retraction.attr("from"), Some("alice@localhost"));
    tablet.assert_none("any notification", is_any_event).await;
}

async fn strangers_are_refused(backend: Backend) {
    let server = server_with_friends(backend).await;
    let mut alice = server.online("alice", "phone").await;
    let mut bob = server.online("bob", "pc").await;
    let mut carol = server.online("carol", "pc").await;
    alice
        .pep_publish(
            AVATAR_METADATA,
            "abc",
            "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
        )
        .await;
    alice
        .iq_result(
            "set",
            None,
            &publish(
                BOOKMARKS,
                "room@muc.localhost",
                "<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/>",
                &[
                    ("pubsub#access_model", "whitelist"),
                    ("pubsub#max_items", "max"),
                ],
            ),
        )
        .await;
    // bob (presence subscriber) reads the presence node; the whitelist node is as missing to him.
    let read = bob
        .iq_result(
            "get",
            Some("alice@localhost"),
            &items_query(AVATAR_METADATA, "/>"),
        )
        .await;
    assert_eq!(item_ids(&read), ["abc"]);
    for node in [BOOKMARKS, "urn:example:none"] {
        let refused = bob
            .iq("get", Some("alice@localhost"), &items_query(node, "/>"))
            .await;
        assert_eq!(
            error_condition(&refused).as_deref(),
            Some("item-not-found"),
            "{node}"
        );
    }
    // carol is no contact: existing or not, every non-open node is forbidden alike.
    for node in [AVATAR_METADATA, BOOKMARKS, "urn:example:none"] {
        let refused = carol
            .iq("get", Some("alice@localhost"), &items_query(node, "/>"))
            .await;
        assert_eq!(
            error_condition(&refused).as_deref(),
            Some("forbidden"),
            "{node}"
        );
        assert!(item_ids(&refused).is_empty());
    }
    // Nobody but the owner publishes, retracts or deletes.
    let refused = carol
        .iq(
            "set",
            Some("alice@localhost"),
            &publish(
                AVATAR_METADATA,
                "x",
                "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
                &[],
            ),
        )
        .await;
    assert_eq!(error_condition(&refused).as_deref(), Some("forbidden"));
    let refused = bob
        .iq(
            "set",
            Some("alice@localhost"),
            &format!(
                "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='{AVATAR_METADATA}'/></pubsub>"
            ),
        )
        .await;
    assert_eq!(error_condition(&refused).as_deref(), Some("forbidden"));
    // disco#items lists only what each may read.
    let items = |e: &Element| -> Vec<String> {
        e.get_child("query", ns::DISCO_ITEMS)
            .unwrap()
            .children()
            .filter_map(|i| i.attr("node").map(str::to_string))
            .collect()
    };
    let disco = "<query xmlns='http://jabber.org/protocol/disco#items'/>";
    let own = alice.iq_result("get", Some("alice@localhost"), disco).await;
    assert_eq!(items(&own), [AVATAR_METADATA, BOOKMARKS]);
    let bobs = bob.iq_result("get", Some("alice@localhost"), disco).await;
    assert_eq!(items(&bobs), [AVATAR_METADATA]);
    let carols = carol.iq_result("get", Some("alice@localhost"), disco).await;
    assert!(items(&carols).is_empty());
    // disco#info on a node (XEP-0060 section 5.3) follows the same rules.
    let node_info = |node: &str| {
        format!("<query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/>")
    };
    let leaf = bob
        .iq_result("get", Some("alice@localhost"), &node_info(AVATAR_METADATA))
        .await;
    assert!(
        xml::show(&leaf).contains("type='leaf'"),
        "{}",
        xml::show(&leaf)
    );
    let own = alice
        .iq_result("get", Some("alice@localhost"), &node_info(BOOKMARKS))
        .await;
    assert!(xml::show(&own).contains("type='leaf'"));
    let hidden = bob
        .iq("get", Some("alice@localhost"), &node_info(BOOKMARKS))
        .await;
    assert_eq!(error_condition(&hidden).as_deref(), Some("item-not-found"));
    let hidden = carol
        .iq("get", Some("alice@localhost"), &node_info(AVATAR_METADATA))
        .await;
    assert_eq!(error_condition(&hidden).as_deref(), Some("forbidden"));
}

async fn max_items_and_preconditions(backend: Backend) {
    let server = server_with_friends(backend).await;
    let mut alice = server.online("alice", "phone").await;
    let two = [("pubsub#max_items", "2")];
    for id in ["a", "b", "c"] {
        alice
            .iq_result(
                "set",
                None,
                &publish("urn:example:log", id, "<x xmlns='urn:x'/>", &two),
            )
            .await;
    }
    let all = alice
        .iq_result("get", None, &items_query("urn:example:log", "/>"))
        .await;
    assert_eq!(item_ids(&all), ["b", "c"], "the oldest went; oldest first");
    let newest = alice
        .iq_result(
            "get",
            None,
            &items_query("urn:example:log", " max_items='1'/>"),
        )
        .await;
    assert_eq!(item_ids(&newest), ["c"]);

    // The node keeps max_items 2 and presence access: other preconditions are not met.
    for options in [
        vec![("pubsub#access_model", "open")],
        vec![("pubsub#max_items", "max")],
    ] {
        let refused = alice
            .iq(
                "set",
                None,
                &publish("urn:example:log", "d", "<x xmlns='urn:x'/>", &options),
            )
            .await;
        assert_eq!(error_condition(&refused).as_deref(), Some("conflict"));
        assert_eq!(
            pubsub_condition(&refused).as_deref(),
            Some("precondition-not-met")
        );
    }
    let kept = alice
        .iq_result("get", None, &items_query("urn:example:log", "/>"))
        .await;
    assert_eq!(
        item_ids(&kept),
        ["b", "c"],
        "a refused publish stores nothing"
    );

    // Configure the node as the precondition wants (Conversations' recovery), then publish.
    alice
        .iq_result(
            "set",
            None,
            "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:example:log'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
             <field var='pubsub#access_model'><value>open</value></field>\
             <field var='pubsub#max_items'><value>1</value></field></x></configure></pubsub>",
        )
        .await;
    let trimmed = alice
        .iq_result("get", None, &items_query("urn:example:log", "/>"))
        .await;
    assert_eq!(
        item_ids(&trimmed),
        ["c"],
        "a smaller max_items trims at once"
    );
    alice
        .iq_result(
            "set",
            None,
            &publish(
                "urn:example:log",
                "d",
                "<x xmlns='urn:x'/>",
                &[("pubsub#access_model", "open")],
            ),
        )
        .await;
    let config = alice
        .iq_result(
            "get",
            None,
            "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:example:log'/></pubsub>",
        )
        .await;
    assert!(
        xml::show(&config).contains("<value>open</value>"),
        "{}",
        xml::show(&config)
    );

    // Retract, purge and delete.
    alice
        .iq_result(
            "set",
            None,
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='urn:example:log'><item id='d'/></retract></pubsub>",
        )
        .await;
    let gone = alice
        .iq("set", None, "<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='urn:example:log'><item id='d'/></retract></pubsub>")
        .await;
    assert_eq!(error_condition(&gone).as_deref(), Some("item-not-found"));
    alice
        .iq_result(
            "set",
            None,
            "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:example:log'/></pubsub>",
        )
        .await;
    let missing = alice
        .iq("get", None, &items_query("urn:example:log", "/>"))
        .await;
    assert_eq!(error_condition(&missing).as_deref(), Some("item-not-found"));
}

async fn the_last_item_on_presence(backend: Backend) {
    let server = server_with_friends(backend).await;
    let mut alice = server.online("alice", "phone").await;
    alice
        .pep_publish(
            AVATAR_METADATA,
            "old",
            "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
        )
        .await;
    alice
        .pep_publish(
            AVATAR_METADATA,
            "new",
            "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
        )
        .await;
    alice
        .iq_result(
            "set",
            None,
            &publish(
                BOOKMARKS,
                "room@muc.localhost",
                "<conference xmlns='urn:xmpp:bookmarks:1'/>",
                &[("pubsub#access_model", "whitelist")],
            ),
        )
        .await;
    // carol asks for the same nodes but is no contact.
    let mut carol = server.login("carol", "pc").await;
    announce_caps(&server, &mut carol, &[AVATAR_METADATA, BOOKMARKS]).await;
    carol
        .assert_none("another account's items", is_any_event)
        .await;

    let mut bob = server.login("bob", "pc").await;
    bob.roster_get().await;
    announce_caps(&server, &mut bob, &[AVATAR_METADATA, BOOKMARKS]).await;
    let last = bob
        .expect("alice's last avatar on presence", |e| {
            is_event(e, "alice@localhost", AVATAR_METADATA, "new")
        })
        .await;
    assert_eq!(last.attr("to"), Some("bob@localhost/pc"));
    bob.assert_none("the old avatar or alice's bookmarks", is_any_event)
        .await;
    // A second resource with the same (now known) caps needs no query and gets the last item too.
    let mut phone = server.login("bob", "phone").await;
    phone.roster_get().await;
    announce_caps(&server, &mut phone, &[AVATAR_METADATA, BOOKMARKS]).await;
    phone
        .expect("alice's last avatar on presence", |e| {
            is_event(e, "alice@localhost", AVATAR_METADATA, "new")
        })
        .await;
    // alice's own second resource gets her bookmarks (whitelist: the owner).
    let mut laptop = server.login("alice", "laptop").await;
    announce_caps(&server, &mut laptop, &[AVATAR_METADATA, BOOKMARKS]).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let e = laptop.expect("own last items", is_any_event).await;
        got.push(
            e.get_child("event", ns::PUBSUB_EVENT)
                .and_then(|ev| ev.get_child("items", ns::PUBSUB_EVENT))
                .and_then(|i| i.attr("node"))
                .unwrap()
                .to_string(),
        );
    }
    got.sort();
    assert_eq!(got, [AVATAR_METADATA, BOOKMARKS]);
}

async fn limits_refuse_rather_than_drop(backend: Backend) {
    let server = TestServer::builder()
        .backend(backend)
        .toml("[pep]\nmax_nodes_per_account = 2\nmax_items_per_node = 3\nmax_item_bytes = 1024\n")
        .start()
        .await;
    server.add_user("alice").await;
    let mut alice = server.online("alice", "phone").await;
    for node in ["urn:example:one", "urn:example:two"] {
        alice.pep_publish(node, "1", "<x xmlns='urn:x'/>").await;
    }
    let third = alice
        .iq(
            "set",
            None,
            &publish("urn:example:three", "1", "<x xmlns='urn:x'/>", &[]),
        )
        .await;
    assert_eq!(error_condition(&third).as_deref(), Some("policy-violation"));
    let big = format!("<x xmlns='urn:x'>{}</x>", "a".repeat(2000));
    let refused = alice
        .iq("set", None, &publish("urn:example:one", "2", &big, &[]))
        .await;
    assert_eq!(error_condition(&refused).as_deref(), Some("not-acceptable"));
    assert_eq!(
        pubsub_condition(&refused).as_deref(),
        Some("payload-too-big")
    );
    let too_many = alice
        .iq(
            "set",
            None,
            &publish(
                "urn:example:one",
                "2",
                "<x xmlns='urn:x'/>",
                &[("pubsub#max_items", "4")],
            ),
        )
        .await;
    assert_eq!(
        error_condition(&too_many).as_deref(),
        Some("conflict"),
        "an existing node: a precondition"
    );
    let kept = alice
        .iq_result("get", None, &items_query("urn:example:one", "/>"))
        .await;
    assert_eq!(item_ids(&kept), ["1"], "nothing stored was dropped");
    // `max` is the limit.
    alice
        .iq(
            "set",
            None,
            "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:example:two'/></pubsub>",
        )
        .await;
    let over = alice
        .iq(
            "set",
            None,
            &publish(
                "urn:example:two",
                "1",
                "<x xmlns='urn:x'/>",
                &[("pubsub#max_items", "4")],
            ),
        )
        .await;
    assert_eq!(error_condition(&over).as_deref(), Some("not-acceptable"));
    alice
        .iq_result(
            "set",
            None,
            &publish(
                "urn:example:two",
                "1",
                "<x xmlns='urn:x'/>",
                &[("pubsub#max_items", "max")],
            ),
        )
        .await;
    let node = server
        .storage
        .pep
        .node("alice@localhost", "urn:example:two")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node.max_items, 3);
}

async fn a_removed_account_leaves_no_nodes(backend: Backend) {
    let server = server_with_friends(backend).await;
    let mut alice = server.online("alice", "phone").await;
    alice
        .iq_result(
            "set",
            None,
            &publish(DEVICES, "current", &devices(&[7]), &[]),
        )
        .await;
    assert_eq!(
        server
            .storage
            .pep
            .nodes("alice@localhost")
            .await
            .unwrap()
            .len(),
        1
    );
    alice
        .send("<iq type='set' id='bye'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    alice
        .expect("removal result", |e| {
            e.attr("id") == Some("bye") && e.attr("type") == Some("result")
        })
        .await;
    alice.expect_any_stream_error().await;
    assert!(
        server
            .storage
            .pep
            .nodes("alice@localhost")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        server
            .storage
            .pep
            .items("alice@localhost", DEVICES, None)
            .await
            .unwrap()
            .is_empty()
    );
    // The next holder of the name starts without the old keys.
    server.add_user("alice").await;
    let mut again = server.online("alice", "phone").await;
    let missing = again.iq("get", None, &items_query(DEVICES, "/>")).await;
    assert_eq!(error_condition(&missing).as_deref(), Some("item-not-found"));
}

/// The server's disco#info query for `ver` to `client`, answered with `notify` as the features.
async fn answer_caps_query(client: &mut TestClient, ver: &str, notify: &[&str]) {
    let query_node = format!("{CAPS_NODE}#{ver}");
    let query = client
        .expect("the server's disco#info query", |e| {
            is_caps_query(e, &query_node)
        })
        .await;
    let id = query.attr("id").unwrap();
    client
        .send(&format!(
            "<iq type='result' id='{id}' to='localhost'>\
             <query xmlns='http://jabber.org/protocol/disco#info' node='{query_node}'>{}</query></iq>",
            disco_info(notify)
        ))
        .await;
}

fn is_caps_query(e: &Element, query_node: &str) -> bool {
    e.is("iq", ns::CLIENT)
        && e.attr("type") == Some("get")
        && e.get_child("query", ns::DISCO_INFO)
            .is_some_and(|q| q.attr("node") == Some(query_node))
}

fn caps_presence(ver: &str) -> String {
    format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{ver}'/></presence>"
    )
}

/// XEP-0115 sections 5.4 and 6.3: an answer that does not hash to the announced string is not
/// believed (the next announcement is asked again), and resources announcing one string at once
/// cause one query, whose verified answer serves them all.
async fn caps_are_verified_and_asked_once(backend: Backend) {
    let server = server_with_friends(backend).await;
    let mut alice = server.online("alice", "phone").await;
    alice
        .pep_publish(
            AVATAR_METADATA,
            "a1",
            "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
        )
        .await;
    let ver = ver_of(&[AVATAR_METADATA]);
    let query_node = format!("{CAPS_NODE}#{ver}");
    let mut pc = server.login("bob", "pc").await;
    let mut phone = server.login("bob", "phone").await;
    pc.send(&caps_presence(&ver)).await;
    // A lie: the features do not hash to `ver`.
    answer_caps_query(&mut pc, &ver, &[AVATAR_METADATA, BUNDLES]).await;
    let caps = &server.router().context.caps;
    eventually("the answer handled", async || !caps.is_querying(&ver)).await;
    assert!(!caps.is_verified(&ver));
    pc.send(&caps_presence(&ver)).await;
    // Asked again: the lie was not cached. Now both resources announce it; only pc is asked.
    let query = pc
        .expect("a second query", |e| is_caps_query(e, &query_node))
        .await;
    phone.send(&caps_presence(&ver)).await;
    phone
        .assert_none("a query of its own", |e| is_caps_query(e, &query_node))
        .await;
    let id = query.attr("id").unwrap();
    pc.send(&format!(
        "<iq type='result' id='{id}' to='localhost'>\
         <query xmlns='http://jabber.org/protocol/disco#info' node='{query_node}'>{}</query></iq>",
        disco_info(&[AVATAR_METADATA])
    ))
    .await;
    for client in [&mut pc, &mut phone] {
        client
            .expect("alice's last avatar once the caps are verified", |e| {
                is_event(e, "alice@localhost", AVATAR_METADATA, "a1")
            })
            .await;
    }
}

/// A contact whose subscription is approved while online gets the last items at once (XEP-0163
/// section 6.2, on_sub_and_presence), not at its next presence; before that, nothing.
async fn the_last_item_on_subscription(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    for user in ["alice", "bob"] {
        server.add_user(user).await;
    }
    let mut alice = server.online("alice", "phone").await;
    let mut bob = server.login("bob", "pc").await;
    bob.roster_get().await;
    announce_caps(&server, &mut bob, &[AVATAR_METADATA]).await;
    alice
        .pep_publish(
            AVATAR_METADATA,
            "av",
            "<metadata xmlns='urn:xmpp:avatar:metadata'/>",
        )
        .await;
    bob.assert_none("an avatar before subscribing", is_any_event)
        .await;
    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    alice
        .expect("bob's request", |e| {
            e.is("presence", ns::CLIENT) && e.attr("type") == Some("subscribe")
        })
        .await;
    alice
        .send("<presence to='bob@localhost' type='subscribed'/>")
        .await;
    bob.expect("alice's last avatar once subscribed", |e| {
        is_event(e, "alice@localhost", AVATAR_METADATA, "av")
    })
    .await;
}

/// XEP-0060 section 4.3 (`pubsub#persist_items` false): a transient node notifies its items and
/// keeps none, so an items request and the last item on presence find nothing; a node configured
/// transient later loses what it kept.
async fn a_transient_node_keeps_no_items(backend: Backend) {
    const TRANSIENT: &str = "urn:example:transient";
    let server = server_with_friends(backend).await;
    let mut alice = server.online("alice", "phone").await;
    let mut bob = server.login("bob", "pc").await;
    bob.roster_get().await;
    announce_caps(&server, &mut bob, &[TRANSIENT]).await;
    let transient = [
        ("pubsub#persist_items", "false"),
        ("pubsub#access_model", "open"),
    ];
    alice
        .iq_result(
            "set",
            None,
            &publish(TRANSIENT, "now", "<state xmlns='urn:example'/>", &transient),
        )
        .await;
    let event = bob
        .expect("the transient item", |e| {
            is_event(e, "alice@localhost", TRANSIENT, "now")
        })
        .await;
    assert!(
        xml::show(&event).contains("urn:example"),
        "{}",
        xml::show(&event)
    );
    let own = alice
        .iq_result("get", None, &items_query(TRANSIENT, "/>"))
        .await;
    assert_eq!(item_ids(&own), Vec::<String>::new(), "{}", xml::show(&own));
    let theirs = bob
        .iq_result(
            "get",
            Some("alice@localhost"),
            &items_query(TRANSIENT, "/>"),
        )
        .await;
    assert_eq!(item_ids(&theirs), Vec::<String>::new());
    // The publish-options still describe the node.
    alice
        .iq_result(
            "set",
            None,
            &publish(
                TRANSIENT,
                "later",
                "<state xmlns='urn:example'/>",
                &transient,
            ),
        )
        .await;
    // No last item for a new resource.
    let mut tablet = server.login("bob", "tablet").await;
    tablet.roster_get().await;
    announce_caps(&server, &mut tablet, &[TRANSIENT]).await;
    tablet
        .assert_none("a last item of a transient node", is_any_event)
        .await;

    // A persistent node configured transient keeps nothing from before.
    alice.pep_publish(DEVICES, "current", &devices(&[1])).await;
    alice
        .iq_result(
            "set",
            None,
            &format!(
                "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='{DEVICES}'>\
                 <x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
                 <field var='pubsub#persist_items'><value>0</value></field></x></configure></pubsub>"
            ),
        )
        .await;
    let after = alice
        .iq_result("get", None, &items_query(DEVICES, "/>"))
        .await;
    assert_eq!(
        item_ids(&after),
        Vec::<String>::new(),
        "{}",
        xml::show(&after)
    );
}

on_every_backend!(
    the_last_item_on_subscription,
    a_transient_node_keeps_no_items,
    caps_are_verified_and_asked_once,
    notifications_follow_caps,
    strangers_are_refused,
    max_items_and_preconditions,
    the_last_item_on_presence,
    limits_refuse_rather_than_drop,
    a_removed_account_leaves_no_nodes,
);

/// Not a check: the load a measurement of the publish path runs (under callgrind, counting the
/// instructions inside `herald::features::pep::publish`): alice publishes 20 items of about 48 KiB
/// of structured XML, each notified to bob's resource that asks for the node.
#[tokio::test]
#[ignore = "measurement driver"]
async fn publish_cost_driver() {
    const NODE: &str = "urn:xmpp:omemo:2:bundles";
    let server = server_with_friends(Backend::Sqlite).await;
    let mut alice = server.online("alice", "phone").await;
    let mut bob = server.login("bob", "pc").await;
    bob.roster_get().await;
    announce_caps(&server, &mut bob, &[NODE]).await;
    let keys: String = (0..400)
        .map(|n| format!("<pk id='{n}'>{}</pk>", "A".repeat(100)))
        .collect();
    let payload = format!("<bundle xmlns='urn:xmpp:omemo:2'><prekeys>{keys}</prekeys></bundle>");
    for n in 0..20 {
        let id = format!("item{n}");
        alice
            .iq_result("set", None, &publish(NODE, &id, &payload, &[]))
            .await;
        bob.expect("the notification", |e| {
            is_event(e, "alice@localhost", NODE, &id)
        })
        .await;
    }
}
