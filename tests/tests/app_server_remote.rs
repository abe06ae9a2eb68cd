//! Herald's relay as an XEP-0357 push service for remote servers: a publish whose `from` is a remote
//! domain, as the s2s layer delivers it once the domain is authenticated, is routed to the push
//! service the way an s2s stream hands it to the router. A stand-in for the remote server is attached
//! as the route of its domain and records what the service answers. A whitelist token (ChatSecure's
//! `token` publish-option) bound to `remote.example` wakes the device when that domain publishes and
//! is refused (`auth/forbidden`) from any other; an unknown token is `cancel/item-not-found`; a node
//! registered by a local account (bound to its domain) refuses a remote publisher with its secret
//! (`cancel/item-not-found`, as for any publisher that is not the account's server).
#![allow(clippy::unwrap_used)]

use herald::xmpp::Envelope;
use herald_tests::app_server::{PUSH_SERVICE, form, register, relay_toml, remote};
use herald_tests::fcm::StandInFcm;
use herald_tests::{Element, TestServer, xml};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const REMOTE: &str = "remote.example";
const OTHER: &str = "other.example";

/// `from` (a remote server's domain, verified by s2s) publishes to the push service with
/// `options`; returns the answer that comes back to `from`.
async fn publish_from(
    server: &TestServer,
    answers: &mut mpsc::UnboundedReceiver<Element>,
    from: &str,
    node: &str,
    options: &[(&str, &str)],
) -> Element {
    let mut fields = vec![(
        "FORM_TYPE",
        "http://jabber.org/protocol/pubsub#publish-options",
    )];
    fields.extend_from_slice(options);
    let iq: Element = format!(
        "<iq xmlns='jabber:client' type='set' id='pub-1' from='{from}' to='{PUSH_SERVICE}'>\
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='{node}'><item><notification xmlns='urn:xmpp:push:0'>\
               <x xmlns='jabber:x:data'><field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>\
               <field var='message-count'><value>1</value></field></x>\
             </notification></item></publish>\
             <publish-options>{}</publish-options></pubsub></iq>",
        form(&fields)
    )
    .parse()
    .unwrap();
    server.router().route(Envelope::parse(iq).unwrap()).await;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), answers.recv())
        .await
        .expect("the push service answered")
        .unwrap();
    assert_eq!(answer.attr("id"), Some("pub-1"));
    assert_eq!(answer.attr("to"), Some(from));
    answer
}

fn condition(answer: &Element) -> (String, String) {
    let kind = answer
        .get_child("error", herald::xmpp::ns::CLIENT)
        .and_then(|e| e.attr("type"))
        .unwrap_or_default()
        .to_string();
    (kind, xml::error_condition(answer).unwrap_or_default())
}

/// Over the relay's HTTP API as alice: an FCM device and a token bound to `sender`.
async fn bound_token(server: &TestServer, fcm_token: &str, sender: &str) -> String {
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/v1", server.relay_address());
    let account: Value = http
        .post(format!("{base}/accounts/"))
        .json(&json!({"username": "alice@localhost", "password": herald_tests::PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = format!("Token {}", account["token"].as_str().unwrap());
    let r = http
        .post(format!("{base}/device/fcm/"))
        .header("Authorization", &key)
        .json(&json!({"registration_id": fcm_token, "name": "phone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token: Value = http
        .post(format!("{base}/tokens/"))
        .header("Authorization", &key)
        .json(&json!({"sender": sender}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["token"].as_str().unwrap().to_string()
}

async fn accepted_pushes(server: &TestServer) -> usize {
    server
        .storage
        .push_audit
        .list("alice@localhost", None, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|entry| entry.outcome == "accepted")
        .count()
}

#[tokio::test]
async fn a_remote_servers_publish_is_checked_against_its_domain() {
    let mut fcm = StandInFcm::start().await;
    let server = TestServer::builder()
        .file("service-account.json", &fcm.service_account())
        .toml(&relay_toml(&fcm))
        .start()
        .await;
    server.add_user("alice").await;
    let mut remote_answers = remote(&server, REMOTE);
    let mut other_answers = remote(&server, OTHER);
    let token = bound_token(&server, "fcm-token-remote", REMOTE).await;

    // The domain the token is bound to: accepted, and the device is woken.
    let answer = publish_from(
        &server,
        &mut remote_answers,
        REMOTE,
        "n",
        &[("token", &token)],
    )
    .await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "{}",
        xml::show(&answer)
    );
    assert!(fcm.next_send().await.contains("fcm-token-remote"));
    assert_eq!(accepted_pushes(&server).await, 1);

    // Any other domain holding the same token: forbidden, nothing woken.
    let answer = publish_from(
        &server,
        &mut other_answers,
        OTHER,
        "n",
        &[("token", &token)],
    )
    .await;
    assert_eq!(condition(&answer), ("auth".into(), "forbidden".into()));

    // A token nobody issued: the publisher disables the registration.
    let answer = publish_from(
        &server,
        &mut remote_answers,
        REMOTE,
        "n",
        &[("token", "no-such-token")],
    )
    .await;
    assert_eq!(
        condition(&answer),
        ("cancel".into(), "item-not-found".into())
    );

    // A node registered by a local account is bound to its domain: a remote server with the right
    // secret is not the account's server, and is told the node is gone (push_node.rs: NodeError).
    let mut alice = server.login("alice", "phone").await;
    let (node, secret) = register(&mut alice, "fcm-token-node", "a1b2c3").await;
    let answer = publish_from(
        &server,
        &mut remote_answers,
        REMOTE,
        &node,
        &[("secret", &secret)],
    )
    .await;
    assert_eq!(
        condition(&answer),
        ("cancel".into(), "item-not-found".into())
    );
    assert_eq!(accepted_pushes(&server).await, 1);
    alice.close().await;
}
