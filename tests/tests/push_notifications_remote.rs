//! XEP-0357 publishes to a remote app server (such as Conversations' p2.siacs.eu), the user's server
//! side: the publish IQ goes through the router to the remote domain's route (the s2s queue once
//! federation carries it), and the answer the remote domain sends back, routed to the user's bare
//! JID as the s2s layer hands it over, is matched to the pending publish and drives section 7.1:
//! `wait` is retried, errors in a row disable, `item-not-found` disables at once, and an answer
//! from any other domain is not taken for it. A stand-in for the remote app server is attached as
//! the route of its domain, as the s2s layer's route would be.
#![allow(clippy::unwrap_used)]

use herald::xmpp::{Envelope, ns};
use herald_tests::app_server::remote;
use herald_tests::xml::{self};
use herald_tests::{Element, TIMEOUT, TestServer, eventually};
use tokio::sync::mpsc;

const SERVICE: &str = "push.remote.example";
const ALICE: &str = "alice@localhost";
const NODE: &str = "yxs32uqsflafdk3iuqo";
const SECRET: &str = "eruio234vzxc2kla-91";

/// The next stanza the remote app server receives: a publish to `NODE`, replaying the
/// publish-options alice enabled with; returns (id, from, last-message-body).
async fn next_publish(received: &mut mpsc::UnboundedReceiver<Element>) -> (String, String, String) {
    let iq = tokio::time::timeout(TIMEOUT, received.recv())
        .await
        .expect("a publish reached the remote app server")
        .unwrap();
    let shown = xml::show(&iq);
    assert_eq!(iq.attr("type"), Some("set"), "{shown}");
    assert_eq!(iq.attr("to"), Some(SERVICE), "{shown}");
    let pubsub = iq.get_child("pubsub", ns::PUBSUB).expect(&shown);
    let publish = pubsub.get_child("publish", ns::PUBSUB).expect(&shown);
    assert_eq!(publish.attr("node"), Some(NODE), "{shown}");
    let options = pubsub
        .get_child("publish-options", ns::PUBSUB)
        .and_then(|o| o.get_child("x", ns::DATA_FORMS))
        .expect(&shown);
    assert_eq!(
        value(options, "FORM_TYPE").as_deref(),
        Some("http://jabber.org/protocol/pubsub#publish-options"),
        "{shown}"
    );
    assert_eq!(value(options, "secret").as_deref(), Some(SECRET), "{shown}");
    let body = publish
        .get_child("item", ns::PUBSUB)
        .and_then(|i| i.get_child("notification", ns::PUSH))
        .and_then(|n| n.get_child("x", ns::DATA_FORMS))
        .and_then(|x| value(x, "last-message-body"))
        .unwrap_or_default();
    (
        iq.attr("id").unwrap().to_string(),
        iq.attr("from").unwrap().to_string(),
        body,
    )
}

fn value(form: &Element, var: &str) -> Option<String> {
    form.children()
        .find(|f| f.attr("var") == Some(var))
        .and_then(|f| f.get_child("value", ns::DATA_FORMS))
        .map(Element::text)
}

/// `from` answers the publish `id` sent by `to`: `result`, or `type/condition`; routed as the s2s
/// layer delivers a stanza from a verified remote domain.
async fn answer(server: &TestServer, from: &str, (id, to): (&str, &str), answer: &str) {
    let xml = match answer {
        "result" => {
            format!("<iq xmlns='jabber:client' type='result' id='{id}' from='{from}' to='{to}'/>")
        }
        error => {
            let (kind, condition) = error.split_once('/').unwrap();
            format!(
                "<iq xmlns='jabber:client' type='error' id='{id}' from='{from}' to='{to}'>\
                 <error type='{kind}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            )
        }
    };
    let iq: Element = xml.parse().unwrap();
    server.router().route(Envelope::parse(iq).unwrap()).await;
}

async fn registrations(server: &TestServer) -> Vec<(String, u32)> {
    server
        .storage
        .push_registrations
        .list(ALICE)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.node, r.failures))
        .collect()
}

#[tokio::test]
async fn a_remote_app_server_is_published_to_and_its_answers_are_acted_on() {
    let server = TestServer::builder()
        .toml("[push_notifications]\ninclude_body = true\n")
        .start()
        .await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut received = remote(&server, SERVICE);
    let mut other_received = remote(&server, "other.example");
    let mut bob = server.online("bob", "pc").await;
    let mut alice = server.login("alice", "phone").await;
    alice
        .iq_result(
            "set",
            None,
            &format!(
                "<enable xmlns='urn:xmpp:push:0' jid='{SERVICE}' node='{NODE}'>\
                 <x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
                 <field var='secret'><value>{SECRET}</value></field></x></enable>"
            ),
        )
        .await;
    alice.close_and_wait_for_end().await;

    // A message to alice while offline: a publish reaches the remote domain's route.
    bob.chat(ALICE, "first").await;
    let (id, from, body) = next_publish(&mut received).await;
    assert_eq!(body, "first");
    assert_eq!(from, ALICE, "published from the account's bare JID");
    // An answer from a domain the publish did not go to is not taken for it (nor answered).
    answer(
        &server,
        "other.example",
        (&id, &from),
        "cancel/item-not-found",
    )
    .await;
    // `wait` from the app server: the same notification again, in a new request.
    answer(&server, SERVICE, (&id, &from), "wait/internal-server-error").await;
    let (again, _, body) = next_publish(&mut received).await;
    assert_ne!(again, id);
    assert_eq!(body, "first");
    answer(&server, SERVICE, (&again, &from), "result").await;
    assert!(
        other_received.try_recv().is_err(),
        "nothing answered other.example"
    );

    // Other errors are counted, in storage.
    bob.chat(ALICE, "second").await;
    let (id, from, _) = next_publish(&mut received).await;
    answer(&server, SERVICE, (&id, &from), "cancel/service-unavailable").await;
    let server = &server;
    eventually("the failure is counted", async || {
        registrations(server).await == [(NODE.to_string(), 1)]
    })
    .await;

    // item-not-found: the registration is gone at once, and nothing more is published.
    bob.chat(ALICE, "third").await;
    let (id, from, body) = next_publish(&mut received).await;
    assert_eq!(body, "third");
    answer(server, SERVICE, (&id, &from), "cancel/item-not-found").await;
    eventually("the registration is removed", async || {
        registrations(server).await.is_empty()
    })
    .await;
    bob.chat(ALICE, "fourth").await;
    // The message is stored offline before anything would be published; a publish is sent off the
    // delivery path, so a round trip through bob's session is not enough: ask the offline store.
    eventually("the fourth message is stored offline", async || {
        server.storage.offline.count(ALICE).await.unwrap() >= 4
    })
    .await;
    assert!(
        received.try_recv().is_err(),
        "no publish after item-not-found"
    );
}
