//! Herald's relay as an XEP-0357 push service ("App Server"): a client registers a device with the
//! ad-hoc command `register-push-fcm` (XEP-0050, as Conversations does with p2), gets a node and a
//! secret, and publishes to the service domain (XEP-0357 section 7) as a server would; the device is
//! woken through a stand-in FCM (and its OAuth token endpoint), content-free. Wrong secrets, unknown
//! and unregistered nodes are refused with the errors publishing servers act on.
#![allow(clippy::unwrap_used)]

use herald_tests::app_server::{
    PUSH_SERVICE as SERVICE, command, enable, form, register, relay_toml,
};
use herald_tests::client::TestClient;
use herald_tests::fcm::StandInFcm;
use herald_tests::server::Backend;
use herald_tests::{TestServer, xml};
use xmpp_parsers::minidom::Element;

const DATA: &str = "jabber:x:data";
const COMMANDS: &str = "http://jabber.org/protocol/commands";

/// A server on `backend` hosting the relay with FCM pointed at `fcm`, its push service on
/// `push.localhost`, and the accounts alice and bob.
async fn server(backend: Backend, fcm: &StandInFcm) -> TestServer {
    let server = TestServer::builder()
        .backend(backend)
        .file("service-account.json", &fcm.service_account())
        .toml(&relay_toml(fcm))
        .start()
        .await;
    for user in ["alice", "bob"] {
        server.add_user(user).await;
    }
    server
}

/// Publishes to `node` as XEP-0357 section 7 shows, with `secret` as publish-option.
async fn publish(client: &mut TestClient, node: &str, secret: &str) -> Element {
    let payload = format!(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
           <publish node='{node}'><item><notification xmlns='urn:xmpp:push:0'>\
             <x xmlns='{DATA}'><field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>\
             <field var='message-count'><value>1</value></field>\
             <field var='last-message-body'><value>secret words</value></field></x>\
           </notification></item></publish>\
           <publish-options>{}</publish-options></pubsub>",
        form(&[
            (
                "FORM_TYPE",
                "http://jabber.org/protocol/pubsub#publish-options"
            ),
            ("secret", secret),
        ])
    );
    client.iq("set", Some(SERVICE), &payload).await
}

/// The error type and condition of an IQ error.
fn error_of(response: &Element) -> (String, String) {
    let kind = response
        .get_child("error", herald::xmpp::ns::CLIENT)
        .and_then(|e| e.attr("type"))
        .unwrap_or_default()
        .to_string();
    (kind, xml::error_condition(response).unwrap_or_default())
}

/// Pushes the relay accepted for `account`, from its audit trail. A publish is answered only once
/// its push is in the durable outbox with its audit line, so this counts every wake a publish made.
async fn accepted_pushes(server: &TestServer, account: &str) -> usize {
    server
        .storage
        .push_audit
        .list(account, None, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|entry| entry.outcome == "accepted")
        .count()
}

async fn the_push_service_registers_and_wakes(backend: Backend) {
    let mut fcm = StandInFcm::start().await;
    let server = server(backend, &fcm).await;
    let mut alice = server.login("alice", "phone").await;

    let (node, secret) = register(&mut alice, "fcm-token-alice", "a1b2c3").await;
    // The same installation again: the same node (p2 does the same), and a fresh secret.
    let (again, new_secret) = register(&mut alice, "fcm-token-alice-2", "a1b2c3").await;
    assert_eq!(again, node);
    let old_secret = secret;
    assert_ne!(old_secret, new_secret);

    let response = publish(&mut alice, &node, &new_secret).await;
    assert_eq!(
        response.attr("type"),
        Some("result"),
        "{}",
        xml::show(&response)
    );
    let sent = fcm.next_send().await;
    assert!(
        sent.contains("fcm-token-alice-2"),
        "the re-registered token: {sent}"
    );
    assert!(
        !sent.contains("secret words"),
        "no message text reaches FCM: {sent}"
    );
    assert_eq!(accepted_pushes(&server, "alice@localhost").await, 1);

    // A wrong secret (and the one replaced by the re-registration) is refused and wakes nothing.
    for wrong in ["not-the-secret", old_secret.as_str()] {
        let response = publish(&mut alice, &node, wrong).await;
        assert_eq!(error_of(&response), ("auth".into(), "forbidden".into()));
    }
    assert_eq!(accepted_pushes(&server, "alice@localhost").await, 1);

    // A node nobody registered: cancel/item-not-found, so the publishing server disables it.
    let response = publish(&mut alice, "no-such-node", &new_secret).await;
    assert_eq!(
        error_of(&response),
        ("cancel".into(), "item-not-found".into())
    );

    // Unregistered: the node is gone.
    let response = command(&mut alice, "unregister-push", &[("android-id", "a1b2c3")]).await;
    assert_eq!(
        response.attr("type"),
        Some("result"),
        "{}",
        xml::show(&response)
    );
    let response = publish(&mut alice, &node, &new_secret).await;
    assert_eq!(
        error_of(&response),
        ("cancel".into(), "item-not-found".into())
    );
    assert_eq!(accepted_pushes(&server, "alice@localhost").await, 1);
    alice.close().await;
}

#[tokio::test]
async fn the_push_service_registers_and_wakes_on_sqlite() {
    the_push_service_registers_and_wakes(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_push_service_registers_and_wakes_on_postgres() {
    if let Some(backend) = Backend::postgres_from_env() {
        the_push_service_registers_and_wakes(backend).await;
    }
}

#[tokio::test]
async fn one_user_s_secret_and_device_id_reach_nothing_of_another_s() {
    let fcm = StandInFcm::start().await;
    let server = server(Backend::Sqlite, &fcm).await;
    let mut alice = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "phone").await;
    let (alice_node, alice_secret) = register(&mut alice, "fcm-a", "same-id").await;
    // Bob's installation id is the same string: his node is still his own.
    let (bob_node, _) = register(&mut bob, "fcm-b", "same-id").await;
    assert_ne!(alice_node, bob_node);
    // Alice's secret does not open Bob's node.
    let response = publish(&mut alice, &bob_node, &alice_secret).await;
    assert_eq!(error_of(&response), ("auth".into(), "forbidden".into()));
    // Bob cannot unregister Alice's device: the device id is looked up among his own.
    let response = command(&mut bob, "unregister-push", &[("android-id", "other")]).await;
    assert_eq!(
        error_of(&response),
        ("cancel".into(), "item-not-found".into())
    );
    assert_eq!(accepted_pushes(&server, "bob@localhost").await, 0);
}

#[tokio::test]
async fn the_service_is_discoverable_and_its_commands_listed() {
    let fcm = StandInFcm::start().await;
    let server = server(Backend::Sqlite, &fcm).await;
    let mut alice = server.login("alice", "phone").await;
    let info = alice
        .iq_result(
            "get",
            Some(SERVICE),
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        )
        .await;
    let shown = xml::show(&info);
    for expected in [
        "category='pubsub'",
        "type='push'",
        "urn:xmpp:push:0",
        COMMANDS,
    ] {
        assert!(shown.contains(expected), "{expected} in {shown}");
    }
    let items = alice
        .iq_result(
            "get",
            Some(SERVICE),
            &format!("<query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/>"),
        )
        .await;
    let shown = xml::show(&items);
    for node in [
        "register-push-fcm",
        "register-push-apns",
        "register-push-webpush",
        "register-push-unifiedpush",
        "unregister-push",
    ] {
        assert!(shown.contains(node), "{node} in {shown}");
    }
    // The server lists the service among what it hosts (XEP-0030 section 4.1).
    let hosted = alice
        .iq_result(
            "get",
            Some("localhost"),
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
        )
        .await;
    assert!(
        xml::show(&hosted).contains(&format!("jid='{SERVICE}'")),
        "{}",
        xml::show(&hosted)
    );
    // Executed without a form: the form to fill (XEP-0050 section 3.4).
    let response = alice
        .iq_result(
            "set",
            Some(SERVICE),
            &format!("<command xmlns='{COMMANDS}' node='register-push-fcm' action='execute'/>"),
        )
        .await;
    let executing = response.get_child("command", COMMANDS).unwrap();
    assert_eq!(executing.attr("status"), Some("executing"));
    let fields = xml::show(executing);
    assert!(
        fields.contains("var='token'") && fields.contains("var='device-id'"),
        "{fields}"
    );
    // A form missing its token is a bad request, and unknown commands are not found.
    let response = command_missing_token(&mut alice).await;
    assert_eq!(error_of(&response), ("modify".into(), "bad-request".into()));
    let response = command(&mut alice, "register-push-pager", &[("token", "t")]).await;
    assert_eq!(
        error_of(&response),
        ("cancel".into(), "item-not-found".into())
    );
    // A publish without a secret is refused.
    let response = alice
        .iq(
            "set",
            Some(SERVICE),
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/></pubsub>",
        )
        .await;
    assert_eq!(error_of(&response), ("auth".into(), "forbidden".into()));
}

async fn command_missing_token(client: &mut TestClient) -> Element {
    command(client, "register-push-fcm", &[("android-id", "x")]).await
}

/// The whole phone flow with Herald's own relay as the push service, in process (XEP-0357 with
/// XEP-0198 and XEP-0313): alice registers her phone with the relay's app server and enables push
/// with the node and secret it gave; her connection drops (stream management resumption on); a
/// message from bob then wakes the phone exactly once, through the stand-in FCM, with none of the
/// message's text; alice resumes and gets the message once; her archive has it too.
async fn a_message_to_a_hibernated_phone_wakes_it_once_and_arrives_once(backend: Backend) {
    use herald::xmpp::ns;
    let mut fcm = StandInFcm::start().await;
    let server = server(backend, &fcm).await;
    let mut bob = server.online("bob", "pc").await;
    let mut alice = server.online("alice", "phone").await;
    let (node, secret) = register(&mut alice, "fcm-token-phone", "phone-1").await;
    enable(&mut alice, &node, &secret).await;
    let previd = alice.enable_resumption().await;
    drop(alice);
    let push = server.push_notifications().clone();
    herald_tests::eventually("the session hibernates", async || {
        push.is_hibernating("alice@localhost", "phone")
    })
    .await;

    bob.chat("alice@localhost", "meet at noon").await;
    let wake = fcm.next_send().await;
    assert!(wake.contains("fcm-token-phone"), "to the phone: {wake}");
    assert!(!wake.contains("meet at noon"), "content-free: {wake}");

    let mut alice = server.resume("alice", "phone", &previd, 0).await;
    alice.expect_body_once("meet at noon").await;
    // Exactly one wake-up: the relay accepted one push for alice (its audit trail), none queued after.
    assert_eq!(accepted_pushes(&server, "alice@localhost").await, 1);
    assert!(fcm.sends.try_recv().is_err(), "a second wake-up");

    alice
        .send("<iq type='set' id='mam'><query xmlns='urn:xmpp:mam:2'/></iq>")
        .await;
    let result = alice
        .expect("the archived message", |e| e.has_child("result", ns::MAM))
        .await;
    assert!(
        xml::show(&result).contains("meet at noon"),
        "{}",
        xml::show(&result)
    );
    alice
        .expect("the query's end", |e| e.attr("id") == Some("mam"))
        .await;
}

#[tokio::test]
async fn a_message_to_a_hibernated_phone_wakes_it_once_and_arrives_once_on_sqlite() {
    a_message_to_a_hibernated_phone_wakes_it_once_and_arrives_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_message_to_a_hibernated_phone_wakes_it_once_and_arrives_once_on_postgres() {
    if let Some(backend) = Backend::postgres_from_env() {
        a_message_to_a_hibernated_phone_wakes_it_once_and_arrives_once(backend).await;
    }
}
