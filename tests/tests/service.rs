//! The server's own services over real sockets: XEP-0030 disco, XEP-0092 version, XEP-0199 ping,
//! XEP-0054 vCards, XEP-0191 blocking, XEP-0077 in-band registration.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::xml::{self, any, find, is_error};
use herald_tests::{DOMAIN, Element, PASSWORD, TestClient, TestServer};

const DISCO_INFO: &str = "<query xmlns='http://jabber.org/protocol/disco#info'/>";
const DISCO_ITEMS: &str = "<query xmlns='http://jabber.org/protocol/disco#items'/>";

#[tokio::test]
async fn disco_info_lists_exactly_the_advertised_features() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    let info = alice.iq_result("get", Some(DOMAIN), DISCO_INFO).await;
    let mut features = xml::disco_features(&info);
    features.sort();
    let expected: Vec<String> = herald::features::disco::server_features()
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(features, expected);
    for feature in [
        ns::DISCO_INFO,
        ns::PING,
        ns::BLOCKING,
        ns::VCARD,
        "msgoffline",
    ] {
        assert!(features.iter().any(|f| f == feature), "{feature}");
    }
    let identity = info
        .get_child("query", ns::DISCO_INFO)
        .and_then(|q| q.get_child("identity", ns::DISCO_INFO))
        .expect("an identity");
    assert_eq!(identity.attr("category"), Some("server"));
    assert_eq!(identity.attr("type"), Some("im"));
}

#[tokio::test]
async fn disco_items_of_a_server_without_components_is_empty() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    let items = alice.iq_result("get", Some(DOMAIN), DISCO_ITEMS).await;
    let query = items
        .get_child("query", ns::DISCO_ITEMS)
        .expect("a disco#items query");
    assert_eq!(query.children().count(), 0, "{}", xml::show(&items));
}

#[tokio::test]
async fn software_version_names_herald() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    let result = alice
        .iq_result("get", Some(DOMAIN), "<query xmlns='jabber:iq:version'/>")
        .await;
    let query = result
        .get_child("query", ns::VERSION)
        .expect("a version query");
    let text = |name| query.get_child(name, ns::VERSION).map(Element::text);
    assert_eq!(text("name").as_deref(), Some("Herald"));
    assert!(!text("version").unwrap_or_default().is_empty());
    assert!(text("os").is_none(), "the OS is not disclosed");
}

#[tokio::test]
async fn ping_to_the_server_is_answered() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    let pong = alice
        .iq_result("get", Some(DOMAIN), "<ping xmlns='urn:xmpp:ping'/>")
        .await;
    assert_eq!(pong.attr("from"), Some(DOMAIN));
    assert_eq!(pong.children().count(), 0);
}

fn vcard_fn(iq: &Element) -> Option<String> {
    iq.get_child("vCard", ns::VCARD)?
        .get_child("FN", ns::VCARD)
        .map(Element::text)
}

#[tokio::test]
async fn vcard_set_then_read_by_self_and_by_others() {
    let server = TestServer::start().await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user).await;
    }
    let mut alice = server.login("alice", "r").await;
    let mut bob = server.login("bob", "r").await;
    alice
        .iq_result(
            "set",
            None,
            "<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>ali</NICKNAME></vCard>",
        )
        .await;
    let own = alice
        .iq_result("get", None, "<vCard xmlns='vcard-temp'/>")
        .await;
    assert_eq!(vcard_fn(&own).as_deref(), Some("Alice Liddell"));
    let seen = bob
        .iq_result(
            "get",
            Some("alice@localhost"),
            "<vCard xmlns='vcard-temp'/>",
        )
        .await;
    assert_eq!(vcard_fn(&seen).as_deref(), Some("Alice Liddell"));
    assert_eq!(seen.attr("from"), Some("alice@localhost"));
    // XEP-0054 section 3.1: no vCard yet is an empty <vCard/>, not an error.
    let none = bob
        .iq_result(
            "get",
            Some("carol@localhost"),
            "<vCard xmlns='vcard-temp'/>",
        )
        .await;
    let empty = none.get_child("vCard", ns::VCARD).expect("an empty vCard");
    assert_eq!(empty.children().count(), 0);
    // Nobody writes someone else's vCard.
    let refused = bob
        .iq(
            "set",
            Some("alice@localhost"),
            "<vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard>",
        )
        .await;
    assert!(
        is_error(&refused, "iq", "forbidden"),
        "{}",
        xml::show(&refused)
    );
    let own = alice
        .iq_result("get", None, "<vCard xmlns='vcard-temp'/>")
        .await;
    assert_eq!(vcard_fn(&own).as_deref(), Some("Alice Liddell"));
}

fn block_items(iq: &Element, name: &str) -> Vec<String> {
    iq.get_child(name, ns::BLOCKING)
        .map(|b| {
            b.children()
                .filter(|c| c.is("item", ns::BLOCKING))
                .filter_map(|c| c.attr("jid").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn is_block_push(e: &Element, name: &str, jid: &str) -> bool {
    e.is("iq", ns::CLIENT)
        && e.attr("type") == Some("set")
        && block_items(e, name).iter().any(|j| j == jid)
}

#[tokio::test]
async fn blocking_command_blocks_both_ways_and_unblock_restores_delivery() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut r1 = server.online("alice", "r1").await;
    let mut r2 = server.login("alice", "r2").await;
    let mut bob = server.online("bob", "r").await;
    let blocklist = "<blocklist xmlns='urn:xmpp:blocking'/>";
    assert!(block_items(&r1.iq_result("get", None, blocklist).await, "blocklist").is_empty());

    // XEP-0191 section 3.3: the block is pushed to every resource.
    r1.send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>").await;
    let at_r1 = r1.barrier().await;
    find(&at_r1, "block result", |e| {
        e.attr("id") == Some("b1") && e.attr("type") == Some("result")
    });
    find(&at_r1, "block push", |e| {
        is_block_push(e, "block", "bob@localhost")
    });
    let at_r2 = r2.barrier().await;
    find(&at_r2, "block push to the other resource", |e| {
        is_block_push(e, "block", "bob@localhost")
    });
    let list = r2.iq_result("get", None, blocklist).await;
    assert_eq!(block_items(&list, "blocklist"), ["bob@localhost"]);

    // Section 3.3: nothing from bob arrives; he gets service-unavailable.
    bob.send("<message to='alice@localhost' type='chat' id='x1'><body>let me in</body></message>")
        .await;
    let error = bob.expect("bounce", |e| e.attr("id") == Some("x1")).await;
    assert!(
        is_error(&error, "message", "service-unavailable"),
        "{}",
        xml::show(&error)
    );
    r1.assert_none("message from a blocked JID", |e| {
        xml::has_body(e, "let me in")
    })
    .await;

    // Section 3.4: alice cannot write to bob: not-acceptable with <blocked/>.
    r1.send("<message to='bob@localhost' type='chat' id='y1'><body>psst</body></message>")
        .await;
    let error = r1.expect("refusal", |e| e.attr("id") == Some("y1")).await;
    assert!(
        is_error(&error, "message", "not-acceptable"),
        "{}",
        xml::show(&error)
    );
    let blocked = error
        .get_child("error", ns::CLIENT)
        .is_some_and(|e| e.has_child("blocked", ns::BLOCKING_ERRORS));
    assert!(blocked, "<blocked/> in {}", xml::show(&error));
    bob.assert_none("message to a blocked JID", |e| xml::has_body(e, "psst"))
        .await;

    // Section 3.5: unblock is pushed too, and delivery works again.
    r2.send("<iq type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></unblock></iq>").await;
    let at_r2 = r2.barrier().await;
    find(&at_r2, "unblock result", |e| {
        e.attr("id") == Some("u1") && e.attr("type") == Some("result")
    });
    let at_r1 = r1.barrier().await;
    find(&at_r1, "unblock push", |e| {
        is_block_push(e, "unblock", "bob@localhost")
    });
    bob.chat("alice@localhost", "hello again").await;
    r1.expect("delivery after unblocking", |e| {
        xml::is_message(e, "bob@localhost/r", "hello again")
    })
    .await;
}

const REGISTER_QUERY: &str = "<query xmlns='jabber:iq:register'/>";

fn register_form(user: &str, password: &str) -> String {
    format!(
        "<query xmlns='jabber:iq:register'><username>{user}</username><password>{password}</password></query>"
    )
}

#[tokio::test]
async fn in_band_registration_is_refused_by_default() {
    let server = TestServer::start().await;
    let mut client = TestClient::connect_starttls(&server).await;
    assert!(!client.features.has_child("register", ns::REGISTER_FEATURE));
    let form = client.iq("get", None, REGISTER_QUERY).await;
    assert!(is_error(&form, "iq", "not-allowed"), "{}", xml::show(&form));
    let created = client
        .iq("set", None, &register_form("newcomer", "pw-newcomer"))
        .await;
    assert!(
        is_error(&created, "iq", "not-allowed"),
        "{}",
        xml::show(&created)
    );
    assert_eq!(
        client.auth_plain("newcomer", "pw-newcomer").await,
        Err("not-authorized".into())
    );
}

#[tokio::test]
async fn in_band_registration_when_enabled_creates_a_working_account() {
    let server = TestServer::builder()
        .env("HERALD_REGISTRATION__ALLOW_IN_BAND", "true")
        .start()
        .await;
    let mut client = TestClient::connect_starttls(&server).await;
    assert!(client.features.has_child("register", ns::REGISTER_FEATURE));
    let form = client.iq_result("get", None, REGISTER_QUERY).await;
    let query = form.get_child("query", ns::REGISTER).expect("a form");
    assert!(query.has_child("username", ns::REGISTER) && query.has_child("password", ns::REGISTER));
    client
        .iq_result("set", None, &register_form("newcomer", "pw-newcomer"))
        .await;
    let again = client
        .iq("set", None, &register_form("newcomer", "other"))
        .await;
    assert!(is_error(&again, "iq", "conflict"), "{}", xml::show(&again));
    client.auth_plain("newcomer", "pw-newcomer").await.unwrap();
    assert_eq!(client.bind(Some("r")).await, "newcomer@localhost/r");
}

#[tokio::test]
async fn password_change_replaces_the_old_password() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut alice = server.login("alice", "r").await;
    alice
        .iq_result(
            "set",
            Some(DOMAIN),
            &register_form("alice", "brand new password"),
        )
        .await;
    let mut old = TestClient::connect_starttls(&server).await;
    assert_eq!(
        old.auth_plain("alice", PASSWORD).await,
        Err("not-authorized".into())
    );
    let mut new = TestClient::connect_starttls(&server).await;
    new.auth_plain("alice", "brand new password").await.unwrap();
    new.bind(Some("r2")).await;
}

#[tokio::test]
async fn account_removal_ends_every_session_and_the_account_is_gone() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut r1 = server.online("alice", "r1").await;
    let mut r2 = server.online("alice", "r2").await;
    r1.send("<iq type='set' id='bye'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    r1.expect("removal result", |e| {
        e.attr("id") == Some("bye") && e.attr("type") == Some("result")
    })
    .await;
    // XEP-0077 section 3.2: the sessions end (the condition is the server's choice).
    r1.expect_any_stream_error().await;
    r2.expect_any_stream_error().await;
    let mut retry = TestClient::connect_starttls(&server).await;
    assert_eq!(
        retry.auth_plain("alice", PASSWORD).await,
        Err("not-authorized".into())
    );
    let mut bob = server.online("bob", "r").await;
    bob.send("<message to='alice@localhost' type='chat' id='gone'><body>hello?</body></message>")
        .await;
    let error = bob.expect("bounce", |e| e.attr("id") == Some("gone")).await;
    assert!(
        is_error(&error, "message", "service-unavailable"),
        "{}",
        xml::show(&error)
    );
    assert!(!any(&bob.barrier().await, |e| xml::has_body(e, "hello?")));
}

#[tokio::test]
async fn blocked_contact_stops_seeing_presence() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server.befriend("alice", "bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    alice.barrier().await;
    alice
        .iq_result(
            "set",
            None,
            "<block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block>",
        )
        .await;
    // XEP-0191 section 3.3: the blocked contact gets unavailable presence...
    bob.expect("alice's unavailable", |e| {
        xml::is_presence(e, "alice@localhost/r", Some("unavailable"))
    })
    .await;
    // ...and no presence after that (XEP-0191 blocks are XEP-0016 deny-all lists: no outbound presence).
    alice.send("<presence><show>away</show></presence>").await;
    alice.barrier().await;
    bob.assert_none("presence from a user who blocked him", |e| {
        xml::is_presence(e, "alice@localhost/r", None)
    })
    .await;
    // Nor does a probe bring it: bob logs in again (his initial presence probes alice).
    drop(bob);
    let mut bob = server.online("bob", "again").await;
    bob.assert_none("presence answering a probe", |e| {
        e.is("presence", ns::CLIENT) && e.attr("from") == Some("alice@localhost/r")
    })
    .await;
}

#[tokio::test]
async fn directed_presence_to_a_blocked_jid_is_not_delivered() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.online("bob", "r").await;
    alice
        .iq_result(
            "set",
            None,
            "<block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block>",
        )
        .await;
    // XEP-0191 section 3.4: the user's server does not route outbound stanzas to a blocked JID.
    alice.send("<presence to='bob@localhost/r'/>").await;
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    alice.barrier().await;
    bob.assert_none("presence from a user who blocked him", |e| {
        e.is("presence", ns::CLIENT) && e.attr("type") != Some("unavailable")
    })
    .await;
}

#[tokio::test]
async fn message_to_the_server_itself_is_service_unavailable() {
    let server = TestServer::start().await;
    server.add_user("alice").await;
    let mut alice = server.online("alice", "r").await;
    alice
        .send("<message to='localhost' type='chat' id='srv'><body>hello server</body></message>")
        .await;
    let error = alice
        .expect("error reply", |e| e.attr("id") == Some("srv"))
        .await;
    assert!(
        is_error(&error, "message", "service-unavailable"),
        "{}",
        xml::show(&error)
    );
}

/// In-band registration is limited per client address (5 attempts an hour by default), so an open
/// server cannot be filled with accounts from one place (XEP-0077 section 9 leaves this to the server).
#[tokio::test]
async fn in_band_registration_is_limited_per_address() {
    let server = TestServer::builder()
        .env("HERALD_REGISTRATION__ALLOW_IN_BAND", "true")
        .start()
        .await;
    let mut client = TestClient::connect_starttls(&server).await;
    for i in 0..5 {
        client
            .iq_result("set", None, &register_form(&format!("user{i}"), "pw"))
            .await;
    }
    let refused = client.iq("set", None, &register_form("user5", "pw")).await;
    assert!(
        is_error(&refused, "iq", "policy-violation"),
        "{}",
        xml::show(&refused)
    );
    // Another connection from the same address is refused too.
    let mut other = TestClient::connect_starttls(&server).await;
    let refused = other.iq("set", None, &register_form("user6", "pw")).await;
    assert!(is_error(&refused, "iq", "policy-violation"));
}
