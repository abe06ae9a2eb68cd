//! Herald's relay as an XEP-0357 push service for users of other servers: a user of a remote domain
//! that `[relay.push_service] remote_domains` allows registers a device with the ad-hoc command
//! `register-push-fcm` (XEP-0050), as a Prosody user with mod_cloud_notify does with Herald as their
//! push service, and their server then publishes to the node (XEP-0357 section 7). Commands and
//! publishes are routed from the remote domain the way the s2s layer hands them to the router once
//! the domain is authenticated; a stand-in for each remote server is attached as the route of its
//! domain and records what the service answers. Checked: the node wakes the stand-in FCM exactly
//! once and content-free when its own domain publishes, and is refused to any other domain; domains
//! not allowed cannot register; the per-domain cap holds (`policy-violation`); users of one domain
//! cannot remove each other's nodes; unregistering ends a node and frees its place; without
//! `remote_domains` nobody remote registers; deleting a local account leaves remote nodes alone.
#![allow(clippy::unwrap_used)]

use herald::xmpp::Envelope;
use herald_relay::remote_domain_account;
use herald_tests::app_server::{PUSH_SERVICE, form, relay_toml, remote, value};
use herald_tests::fcm::StandInFcm;
use herald_tests::{Element, TestServer, xml};
use tokio::sync::mpsc;

const FRIENDS: &str = "friends.example";
const OTHER: &str = "other.example";
const COMMANDS: &str = "http://jabber.org/protocol/commands";

/// Routes `iq` (from a remote domain, as s2s delivers it) and returns the service's answer, which
/// goes back to the remote domain's route.
async fn exchange(
    server: &TestServer,
    answers: &mut mpsc::UnboundedReceiver<Element>,
    iq: String,
) -> Element {
    let iq: Element = iq.parse().unwrap();
    let (id, from) = (
        iq.attr("id").unwrap().to_string(),
        iq.attr("from").unwrap().to_string(),
    );
    server.router().route(Envelope::parse(iq).unwrap()).await;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), answers.recv())
        .await
        .expect("the push service answered")
        .unwrap();
    assert_eq!(answer.attr("id"), Some(id.as_str()));
    assert_eq!(answer.attr("to"), Some(from.as_str()));
    answer
}

/// `from` (a remote user's full JID) runs the ad-hoc command `node` with `fields`.
async fn command_from(
    server: &TestServer,
    answers: &mut mpsc::UnboundedReceiver<Element>,
    from: &str,
    node: &str,
    fields: &[(&str, &str)],
) -> Element {
    let iq = format!(
        "<iq xmlns='jabber:client' type='set' id='cmd-1' from='{from}' to='{PUSH_SERVICE}'>\
           <command xmlns='{COMMANDS}' node='{node}' action='execute'>{}</command></iq>",
        form(fields)
    );
    exchange(server, answers, iq).await
}

/// `from` registers an FCM device; returns (node, secret).
async fn register_from(
    server: &TestServer,
    answers: &mut mpsc::UnboundedReceiver<Element>,
    from: &str,
    token: &str,
    device: &str,
) -> (String, String) {
    let answer = command_from(
        server,
        answers,
        from,
        "register-push-fcm",
        &[("token", token), ("android-id", device)],
    )
    .await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        xml::show(&answer)
    );
    assert_eq!(value(&answer, "jid"), PUSH_SERVICE);
    (value(&answer, "node"), value(&answer, "secret"))
}

/// `from` (a server's domain) publishes to `node` with `secret`, a summary with a body included.
async fn publish_from(
    server: &TestServer,
    answers: &mut mpsc::UnboundedReceiver<Element>,
    from: &str,
    node: &str,
    secret: &str,
) -> Element {
    let options = form(&[
        (
            "FORM_TYPE",
            "http://jabber.org/protocol/pubsub#publish-options",
        ),
        ("secret", secret),
    ]);
    let iq = format!(
        "<iq xmlns='jabber:client' type='set' id='pub-1' from='{from}' to='{PUSH_SERVICE}'>\
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='{node}'><item><notification xmlns='urn:xmpp:push:0'>\
               <x xmlns='jabber:x:data'><field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>\
               <field var='message-count'><value>1</value></field>\
               <field var='last-message-body'><value>secret words</value></field></x>\
             </notification></item></publish>\
             <publish-options>{options}</publish-options></pubsub></iq>"
    );
    exchange(server, answers, iq).await
}

fn condition(answer: &Element) -> (String, String) {
    let kind = answer
        .get_child("error", herald::xmpp::ns::CLIENT)
        .and_then(|e| e.attr("type"))
        .unwrap_or_default()
        .to_string();
    (kind, xml::error_condition(answer).unwrap_or_default())
}

/// Pushes the relay accepted for the nodes of `domain`'s users (its audit trail: a publish is
/// answered only once its push is in the durable outbox with its audit line).
async fn accepted_pushes(server: &TestServer, domain: &str) -> usize {
    server
        .storage
        .push_audit
        .list(&remote_domain_account(domain), None, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|entry| entry.outcome == "accepted")
        .count()
}

#[tokio::test]
async fn users_of_an_allowed_domain_register_and_only_their_server_publishes() {
    let mut fcm = StandInFcm::start().await;
    let toml = format!(
        "{}[relay.push_service]\nremote_domains = [\"{FRIENDS}\"]\nmax_nodes_per_remote_domain = 2\n",
        relay_toml(&fcm)
    );
    let server = TestServer::builder()
        .file("service-account.json", &fcm.service_account())
        .toml(&toml)
        .start()
        .await;
    let mut friends = remote(&server, FRIENDS);
    let mut other = remote(&server, OTHER);
    let bob = "bob@friends.example/phone";
    let carol = "carol@friends.example/phone";

    let (node, secret) = register_from(&server, &mut friends, bob, "fcm-token-bob", "b1").await;

    // Bob's server publishes (from its domain, as Prosody does): one wake-up, no message text.
    let answer = publish_from(&server, &mut friends, FRIENDS, &node, &secret).await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        xml::show(&answer)
    );
    let sent = fcm.next_send().await;
    assert!(sent.contains("fcm-token-bob"), "{sent}");
    assert!(
        !sent.contains("secret words"),
        "no message text reaches FCM: {sent}"
    );
    assert_eq!(accepted_pushes(&server, FRIENDS).await, 1);

    // Another server holding the right node and secret: the node is not its to publish to.
    let answer = publish_from(&server, &mut other, OTHER, &node, &secret).await;
    assert_eq!(
        condition(&answer),
        ("cancel".into(), "item-not-found".into())
    );
    assert_eq!(accepted_pushes(&server, FRIENDS).await, 1);

    // A user of a domain not allowed cannot register.
    let answer = command_from(
        &server,
        &mut other,
        "mallory@other.example/x",
        "register-push-fcm",
        &[("token", "fcm-token-mallory"), ("android-id", "m1")],
    )
    .await;
    assert_eq!(condition(&answer), ("auth".into(), "forbidden".into()));

    // The cap is per domain, whichever of its users registers; registering a known device again
    // is not a new node.
    let (second, _) = register_from(&server, &mut friends, carol, "fcm-token-carol", "c1").await;
    assert_ne!(second, node);
    let answer = command_from(
        &server,
        &mut friends,
        carol,
        "register-push-fcm",
        &[("token", "fcm-token-carol-2"), ("android-id", "c2")],
    )
    .await;
    assert_eq!(
        condition(&answer),
        ("modify".into(), "policy-violation".into()),
        "{}",
        xml::show(&answer)
    );
    let (again, _) = register_from(&server, &mut friends, carol, "fcm-token-carol-3", "c1").await;
    assert_eq!(again, second);

    // Carol cannot remove Bob's node, though she names his device id.
    let answer = command_from(
        &server,
        &mut friends,
        carol,
        "unregister-push",
        &[("android-id", "b1")],
    )
    .await;
    assert_eq!(
        condition(&answer),
        ("cancel".into(), "item-not-found".into())
    );

    // Bob removes it: publishes to it end, and its place is free.
    let answer = command_from(
        &server,
        &mut friends,
        bob,
        "unregister-push",
        &[("android-id", "b1")],
    )
    .await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        xml::show(&answer)
    );
    let answer = publish_from(&server, &mut friends, FRIENDS, &node, &secret).await;
    assert_eq!(
        condition(&answer),
        ("cancel".into(), "item-not-found".into())
    );
    register_from(&server, &mut friends, carol, "fcm-token-carol-2", "c2").await;

    assert_eq!(accepted_pushes(&server, FRIENDS).await, 1);
    assert!(fcm.sends.try_recv().is_err(), "no other push reached FCM");
}

/// Without `remote_domains`, only this server's accounts register, as before.
#[tokio::test]
async fn remote_users_cannot_register_by_default() {
    let fcm = StandInFcm::start().await;
    let server = TestServer::builder()
        .file("service-account.json", &fcm.service_account())
        .toml(&relay_toml(&fcm))
        .start()
        .await;
    let mut friends = remote(&server, FRIENDS);
    let answer = command_from(
        &server,
        &mut friends,
        "bob@friends.example/phone",
        "register-push-fcm",
        &[("token", "fcm-token-bob"), ("android-id", "b1")],
    )
    .await;
    assert_eq!(condition(&answer), ("auth".into(), "forbidden".into()));
}

/// Remote users' nodes are no local account's: deleting local accounts (with their relay data)
/// leaves them working.
#[tokio::test]
async fn deleting_local_accounts_leaves_remote_nodes_alone() {
    let mut fcm = StandInFcm::start().await;
    let toml = format!(
        "{}[relay.push_service]\nremote_domains = [\"*\"]\n",
        relay_toml(&fcm)
    );
    let server = TestServer::builder()
        .file("service-account.json", &fcm.service_account())
        .toml(&toml)
        .start()
        .await;
    server.add_user("alice").await;
    let mut friends = remote(&server, FRIENDS);
    let mut alice = server.login("alice", "phone").await;
    herald_tests::app_server::register(&mut alice, "fcm-token-alice", "a1").await;
    alice.close().await;
    let (node, secret) = register_from(
        &server,
        &mut friends,
        "bob@friends.example/phone",
        "fcm-token-bob",
        "b1",
    )
    .await;
    assert!(
        server
            .storage
            .accounts
            .delete("alice@localhost")
            .await
            .unwrap()
    );

    let answer = publish_from(&server, &mut friends, FRIENDS, &node, &secret).await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        xml::show(&answer)
    );
    assert!(fcm.next_send().await.contains("fcm-token-bob"));
    assert_eq!(accepted_pushes(&server, FRIENDS).await, 1);
}

/// With `remote_domains = ["*"]` anyone can make new domains: `max_remote_nodes` caps every remote
/// domain's nodes together (`resource-constraint`), while registering an existing node again and a
/// local user's registration still work.
#[tokio::test]
async fn remote_domains_together_hold_at_most_max_remote_nodes() {
    let fcm = StandInFcm::start().await;
    let toml = format!(
        "{}[relay.push_service]\nremote_domains = [\"*\"]\nmax_nodes_per_remote_domain = 2\n\
         max_remote_nodes = 2\n",
        relay_toml(&fcm)
    );
    let server = TestServer::builder()
        .file("service-account.json", &fcm.service_account())
        .toml(&toml)
        .start()
        .await;
    let mut friends = remote(&server, FRIENDS);
    let mut other = remote(&server, OTHER);
    let bob = "bob@friends.example/phone";
    register_from(&server, &mut friends, bob, "fcm-token-bob", "b1").await;
    register_from(
        &server,
        &mut other,
        "dave@other.example/phone",
        "fcm-dave",
        "d1",
    )
    .await;
    // A third domain, within its own cap, finds the service full.
    let mut third = remote(&server, "third.example");
    let answer = command_from(
        &server,
        &mut third,
        "erin@third.example/phone",
        "register-push-fcm",
        &[("token", "fcm-erin"), ("android-id", "e1")],
    )
    .await;
    assert_eq!(
        condition(&answer),
        ("wait".into(), "resource-constraint".into()),
        "{}",
        xml::show(&answer)
    );
    // Registering an existing node again does not grow the count.
    register_from(&server, &mut friends, bob, "fcm-token-bob-2", "b1").await;
    // Local users are not remote nodes.
    server.add_user("alice").await;
    let mut alice = server.login("alice", "phone").await;
    herald_tests::app_server::register(&mut alice, "fcm-token-alice", "a1").await;
}
