//! XEP-0357 Push Notifications, the user's server side, over real sockets: a fake app server attached
//! as an external component (XEP-0114) at `push.localhost`; enable and disable (sections 5 and 6),
//! a publish (section 7) when a message is stored offline or queued for a session hibernating under
//! XEP-0198 and none while the user is online, and what the app server's answers do (section 7.1):
//! `wait` is retried, `item-not-found` disables at once, repeated errors disable. ChatSecure's
//! `token` + `endpoint` publish-options go over HTTP to a local stand-in.
#![allow(clippy::unwrap_used)]

use herald::xmpp::ns;
use herald_tests::component::ComponentClient;
use herald_tests::xml::{self, has_body};
use herald_tests::{Backend, Element, TIMEOUT, TestServer, eventually, on_every_backend};

const SERVICE: &str = "push.localhost";
const SECRET: &str = "component secret of the app server";
const ALICE: &str = "alice@localhost";

/// A server with the app server's component route, the summary's count and body allowed (so each
/// publish says which message it is for), and `extra` configuration.
async fn server(backend: Backend, extra: &str) -> TestServer {
    TestServer::builder()
        .backend(backend)
        .file("push.secret", SECRET)
        .toml(&format!(
            "[component]\nlisten = \"127.0.0.1:0\"\n\n[[component.components]]\n\
             domain = \"{SERVICE}\"\nsecret_file = \"{{dir}}/push.secret\"\n\n\
             [push_notifications]\ninclude_message_count = true\ninclude_body = true\n{extra}"
        ))
        .start()
        .await
}

/// The fake app server: a component connection.
struct AppServer {
    component: ComponentClient,
}

impl AppServer {
    async fn attach(server: &TestServer) -> AppServer {
        AppServer {
            component: ComponentClient::attach(server, SERVICE, SECRET).await,
        }
    }

    async fn next(&mut self) -> Element {
        self.component.expect_element().await
    }

    /// The next publish, read into its parts.
    async fn publish(&mut self) -> Publish {
        let iq = self.next().await;
        Publish::read(iq)
    }

    async fn answer(&mut self, publish: &Publish, answer: &str) {
        let xml = match answer {
            "result" => format!(
                "<iq type='result' id='{}' from='{SERVICE}' to='{}'/>",
                publish.id, publish.from
            ),
            error => {
                let (kind, condition) = error.split_once('/').unwrap();
                format!(
                    "<iq type='error' id='{}' from='{SERVICE}' to='{}'><error type='{kind}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
                    publish.id, publish.from
                )
            }
        };
        self.component.send(&xml).await;
    }
}

/// A XEP-0357 section 7 publish as the app server received it.
#[derive(Debug)]
struct Publish {
    id: String,
    from: String,
    node: String,
    secret: Option<String>,
    count: Option<String>,
    body: Option<String>,
}

fn form_value(form: &Element, var: &str) -> Option<String> {
    form.children()
        .find(|f| f.attr("var") == Some(var))
        .and_then(|f| f.get_child("value", ns::DATA_FORMS))
        .map(Element::text)
}

impl Publish {
    fn read(iq: Element) -> Publish {
        let shown = xml::show(&iq);
        assert!(iq.is("iq", ns::COMPONENT_ACCEPT), "{shown}");
        assert_eq!(iq.attr("type"), Some("set"), "{shown}");
        assert_eq!(iq.attr("to"), Some(SERVICE), "{shown}");
        let pubsub = iq.get_child("pubsub", ns::PUBSUB).expect(&shown);
        let publish = pubsub.get_child("publish", ns::PUBSUB).expect(&shown);
        let summary = publish
            .get_child("item", ns::PUBSUB)
            .and_then(|i| i.get_child("notification", ns::PUSH))
            .and_then(|n| n.get_child("x", ns::DATA_FORMS))
            .expect(&shown);
        assert_eq!(
            form_value(summary, "FORM_TYPE").as_deref(),
            Some("urn:xmpp:push:summary")
        );
        let secret = pubsub
            .get_child("publish-options", ns::PUBSUB)
            .and_then(|o| o.get_child("x", ns::DATA_FORMS))
            .and_then(|x| form_value(x, "secret"));
        Publish {
            id: iq.attr("id").unwrap().to_string(),
            from: iq.attr("from").unwrap().to_string(),
            node: publish.attr("node").unwrap().to_string(),
            secret,
            count: form_value(summary, "message-count"),
            body: form_value(summary, "last-message-body"),
        }
    }
}

fn enable(node: &str, secret: &str) -> String {
    format!(
        "<enable xmlns='urn:xmpp:push:0' jid='{SERVICE}' node='{node}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='secret'><value>{secret}</value></field></x></enable>"
    )
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

/// Both publishes of one round (one per registration), sorted by node.
async fn round(app: &mut AppServer) -> Vec<Publish> {
    let mut publishes = vec![app.publish().await, app.publish().await];
    publishes.sort_by(|a, b| a.node.cmp(&b.node));
    publishes
}

/// Enable two nodes; no publish while alice is online; a publish per node when a message is stored
/// offline and when one is queued for her hibernated session; after disabling one node, none to it.
async fn publishes_when_offline_or_hibernated_and_not_after_disable(backend: Backend) {
    let server = server(backend, "").await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut app = AppServer::attach(&server).await;
    let mut bob = server.online("bob", "pc").await;

    let mut alice = server.online("alice", "phone").await;
    let info = alice
        .iq_result(
            "get",
            Some(ALICE),
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        )
        .await;
    assert!(
        xml::disco_features(&info).contains(&ns::PUSH.to_string()),
        "section 4: {}",
        xml::show(&info)
    );
    alice.iq_result("set", None, &enable("node-1", "one")).await;
    alice
        .iq_result("set", Some(ALICE), &enable("node-2", "two"))
        .await;
    assert_eq!(
        registrations(&server).await,
        [("node-1".into(), 0), ("node-2".into(), 0)]
    );

    // Online: delivered, nothing published.
    bob.chat(ALICE, "while online").await;
    alice
        .expect("the message", |e| has_body(e, "while online"))
        .await;
    alice.close_and_wait_for_end().await;

    // Offline: one publish per registration, for this message alone (a publish for the message
    // above would have come first, or been counted in this one).
    bob.chat(ALICE, "offline one").await;
    let publishes = round(&mut app).await;
    for (publish, (node, secret)) in publishes.iter().zip([("node-1", "one"), ("node-2", "two")]) {
        assert_eq!(publish.from, ALICE, "from the user's bare JID");
        assert_eq!(publish.node, node);
        assert_eq!(
            publish.secret.as_deref(),
            Some(secret),
            "publish-options replayed"
        );
        assert_eq!(publish.body.as_deref(), Some("offline one"));
        assert_eq!(publish.count.as_deref(), Some("1"));
        app.answer(publish, "result").await;
    }

    // Hibernated: back online with resumable stream management, then the connection drops.
    let mut alice = server.online("alice", "phone").await;
    alice
        .expect("the offline message", |e| has_body(e, "offline one"))
        .await;
    let previd = alice.enable_resumption().await;
    drop(alice);
    let push = server.push_notifications().clone();
    eventually("the session hibernates", async || {
        push.is_hibernating(ALICE, "phone")
    })
    .await;
    bob.chat(ALICE, "while hibernated").await;
    for publish in round(&mut app).await {
        assert_eq!(publish.body.as_deref(), Some("while hibernated"));
        app.answer(&publish, "result").await;
    }

    // Resumed: gets the message; disables node-1; leaves.
    let mut alice = server.resume("alice", "phone", &previd, 0).await;
    alice
        .expect("the message", |e| has_body(e, "while hibernated"))
        .await;
    alice
        .iq_result(
            "set",
            None,
            &format!("<disable xmlns='urn:xmpp:push:0' jid='{SERVICE}' node='node-1'/>"),
        )
        .await;
    assert_eq!(registrations(&server).await, [("node-2".into(), 0)]);
    alice.close_and_wait_for_end().await;

    // Two rounds to node-2 only: a publish to node-1 would have come before the second.
    for body in ["after disable", "after disable again"] {
        bob.chat(ALICE, body).await;
        let publish = app.publish().await;
        assert_eq!(publish.node, "node-2", "{publish:?}");
        assert_eq!(publish.body.as_deref(), Some(body));
        app.answer(&publish, "result").await;
    }
}

/// A connection can die unnoticed: a message written to it and never acknowledged (XEP-0198) is
/// pushed once the loss is noticed and the session hibernates, and written again on resumption.
async fn a_message_written_to_a_dying_connection_is_pushed_at_hibernation(backend: Backend) {
    let server = server(backend, "").await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut app = AppServer::attach(&server).await;
    let mut bob = server.online("bob", "pc").await;
    let mut alice = server.online("alice", "phone").await;
    alice.iq_result("set", None, &enable("node-1", "one")).await;
    let previd = alice.enable_resumption().await;

    // Written to alice's connection while it was live, so nothing is published then...
    bob.chat(ALICE, "never acknowledged").await;
    alice
        .expect("the message", |e| has_body(e, "never acknowledged"))
        .await;
    // ...and her phone never acknowledges it: the connection is gone.
    drop(alice);
    let publish = app.publish().await;
    assert_eq!(publish.node, "node-1");
    assert_eq!(publish.body.as_deref(), Some("never acknowledged"));
    app.answer(&publish, "result").await;

    let mut alice = server.resume("alice", "phone", &previd, 0).await;
    alice
        .expect("the message again", |e| has_body(e, "never acknowledged"))
        .await;
}

/// `wait` is retried and then succeeds; `item-not-found` removes the registration at once; other
/// errors remove it after three in a row.
async fn answers_decide_what_becomes_of_a_registration(backend: Backend) {
    let server = server(backend, "").await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut app = AppServer::attach(&server).await;
    let mut bob = server.online("bob", "pc").await;
    let mut alice = server.login("alice", "phone").await;
    alice.iq_result("set", None, &enable("node-1", "one")).await;
    alice.close_and_wait_for_end().await;

    // wait: the same notification again, then the registration stays.
    bob.chat(ALICE, "try again").await;
    let first = app.publish().await;
    app.answer(&first, "wait/internal-server-error").await;
    let again = app.publish().await;
    assert_eq!(again.body.as_deref(), Some("try again"));
    assert_ne!(again.id, first.id, "a new request");
    app.answer(&again, "result").await;

    // Other errors: counted, and the third in a row disables.
    for (round, body) in ["one", "two", "three"].into_iter().enumerate() {
        bob.chat(ALICE, body).await;
        let publish = app.publish().await;
        assert_eq!(publish.body.as_deref(), Some(body));
        app.answer(&publish, "cancel/service-unavailable").await;
        let expected = if round < 2 {
            vec![("node-1".to_string(), u32::try_from(round).unwrap() + 1)]
        } else {
            vec![]
        };
        let server = &server;
        eventually("the failure is counted", async || {
            registrations(server).await == expected
        })
        .await;
    }

    // item-not-found: gone after one.
    let mut alice = server.login("alice", "phone").await;
    alice.iq_result("set", None, &enable("node-2", "two")).await;
    alice.close_and_wait_for_end().await;
    bob.chat(ALICE, "gone").await;
    let publish = app.publish().await;
    assert_eq!(publish.node, "node-2");
    app.answer(&publish, "cancel/item-not-found").await;
    let server = &server;
    eventually("the registration is removed", async || {
        registrations(server).await.is_empty()
    })
    .await;
}

on_every_backend!(
    a_message_written_to_a_dying_connection_is_pushed_at_hibernation,
    publishes_when_offline_or_hibernated_and_not_after_disable,
    answers_decide_what_becomes_of_a_registration,
);

/// Bad enables are refused, the number per account is bounded, chat states do not push, and
/// registrations survive a restart.
#[tokio::test]
async fn enable_is_checked_bounded_and_persistent() {
    let mut server = server(Backend::Sqlite, "max_registrations_per_account = 2\n").await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut alice = server.login("alice", "phone").await;
    for (payload, condition) in [
        (
            format!("<enable xmlns='urn:xmpp:push:0' jid='{SERVICE}'/>"),
            "bad-request",
        ),
        (
            "<enable xmlns='urn:xmpp:push:0' node='n'/>".to_string(),
            "bad-request",
        ),
        (
            format!(
                "<enable xmlns='urn:xmpp:push:0' jid='{SERVICE}' node='{}'/>",
                "n".repeat(2000)
            ),
            "not-acceptable",
        ),
    ] {
        let answer = alice.iq("set", None, &payload).await;
        assert!(
            xml::is_error(&answer, "iq", condition),
            "{}",
            xml::show(&answer)
        );
    }
    let get = alice.iq("get", None, &enable("n", "s")).await;
    assert!(
        xml::is_error(&get, "iq", "bad-request"),
        "{}",
        xml::show(&get)
    );
    alice.iq_result("set", None, &enable("node-1", "one")).await;
    alice.iq_result("set", None, &enable("node-2", "two")).await;
    let over = alice.iq("set", None, &enable("node-3", "three")).await;
    assert!(
        xml::is_error(&over, "iq", "policy-violation"),
        "{}",
        xml::show(&over)
    );
    // Enabling an existing node again replaces it, within the limit.
    alice.iq_result("set", None, &enable("node-2", "new")).await;
    alice.close_and_wait_for_end().await;

    server.restart().await;
    let mut app = AppServer::attach(&server).await;
    let mut bob = server.online("bob", "pc").await;
    // A chat state alone does not push; the message after it does, alone.
    bob.send(&format!(
        "<message to='{ALICE}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/><store xmlns='urn:xmpp:hints'/></message>"
    ))
    .await;
    bob.chat(ALICE, "after restart").await;
    let publishes = round(&mut app).await;
    assert_eq!(publishes[1].secret.as_deref(), Some("new"));
    for publish in publishes {
        assert_eq!(publish.body.as_deref(), Some("after restart"));
        assert_eq!(publish.count.as_deref(), Some("1"), "{publish:?}");
        app.answer(&publish, "result").await;
    }
}

/// ChatSecure's publish-options: a POST to the endpoint, form-encoded token and priority, no
/// message content; a 404 removes the registration. Endpoints must be https on public addresses
/// unless configured.
#[tokio::test]
async fn chatsecure_endpoints_get_an_http_post() {
    use axum::extract::State;
    use axum::http::StatusCode;
    use tokio::sync::mpsc;

    let strict = server(Backend::Sqlite, "").await;
    strict.add_user("alice").await;
    let mut alice = strict.login("alice", "phone").await;
    for endpoint in [
        "http://push.example/api/v1/messages/",
        "https://127.0.0.1/api/v1/messages/",
        "https://[::1]/",
        "file:///etc/passwd",
    ] {
        let answer = alice.iq("set", None, &chatsecure_enable(endpoint)).await;
        assert!(
            xml::is_error(&answer, "iq", "not-acceptable"),
            "{endpoint}: {}",
            xml::show(&answer)
        );
    }

    // The stand-in relay: 202 for a known token, 404 for a revoked one.
    let (posts, mut posted) = mpsc::unbounded_channel::<String>();
    let app = axum::Router::new()
        .route(
            "/api/v1/messages/",
            axum::routing::post(
                |State(posts): State<mpsc::UnboundedSender<String>>, body: String| async move {
                    let _ = posts.send(body);
                    StatusCode::ACCEPTED
                },
            ),
        )
        .route(
            "/api/v1/revoked/",
            axum::routing::post(|| async { StatusCode::NOT_FOUND }),
        )
        .with_state(posts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let server = server(
        Backend::Sqlite,
        "allow_plain_http = true\nallow_private_addresses = true\n",
    )
    .await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut bob = server.online("bob", "pc").await;
    let mut alice = server.login("alice", "phone").await;
    alice
        .iq_result(
            "set",
            None,
            &chatsecure_enable(&format!("http://{address}/api/v1/messages/")),
        )
        .await;
    alice.close_and_wait_for_end().await;
    bob.chat(ALICE, "secret words").await;
    let body = tokio::time::timeout(TIMEOUT, posted.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, "token=0123abcd&priority=high");

    // A revoked token: the registration goes.
    let mut alice = server.login("alice", "phone").await;
    alice
        .iq_result(
            "set",
            None,
            "<disable xmlns='urn:xmpp:push:0' jid='pubsub.chatsecure.org'/>",
        )
        .await;
    alice
        .iq_result(
            "set",
            None,
            &chatsecure_enable(&format!("http://{address}/api/v1/revoked/")),
        )
        .await;
    alice.close_and_wait_for_end().await;
    bob.chat(ALICE, "to a revoked token").await;
    let server = &server;
    eventually("the registration is removed", async || {
        registrations(server).await.is_empty()
    })
    .await;
}

fn chatsecure_enable(endpoint: &str) -> String {
    format!(
        "<enable xmlns='urn:xmpp:push:0' jid='pubsub.chatsecure.org' node='F0F1'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='token'><value>0123abcd</value></field>\
         <field var='endpoint'><value>{endpoint}</value></field></x></enable>"
    )
}

/// Messages that arrive while a publish is in flight become one more publish, counting them all;
/// a subscription request to an offline user pushes too.
#[tokio::test]
async fn a_burst_during_a_publish_is_one_more_publish() {
    let server = server(Backend::Sqlite, "").await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut app = AppServer::attach(&server).await;
    let mut bob = server.online("bob", "pc").await;
    let mut alice = server.login("alice", "phone").await;
    alice.iq_result("set", None, &enable("node-1", "one")).await;
    alice.close_and_wait_for_end().await;

    bob.chat(ALICE, "first").await;
    let first = app.publish().await;
    assert_eq!(first.body.as_deref(), Some("first"));
    // While the first publish waits for its answer, five more messages are stored offline.
    for n in 1..=5 {
        bob.chat(ALICE, &format!("burst {n}")).await;
    }
    bob.barrier().await;
    app.answer(&first, "result").await;
    let burst = app.publish().await;
    assert_eq!(burst.count.as_deref(), Some("5"), "{burst:?}");
    assert_eq!(burst.body.as_deref(), Some("burst 5"));
    app.answer(&burst, "result").await;

    // The next publish is for the next stanza alone: a subscription request (RFC 6121 section 3.1.3).
    bob.send(&format!("<presence to='{ALICE}' type='subscribe'/>"))
        .await;
    let request = app.publish().await;
    assert_eq!(request.count.as_deref(), Some("1"), "{request:?}");
    assert_eq!(request.body, None, "no body for a subscription request");
    app.answer(&request, "result").await;
}

/// The wake at start is for messages stored before the server stopped: a user pushed since the start
/// was woken after those were stored, so a message stored and pushed in the first seconds after the
/// start is published exactly once, not again by the wake at start.
#[tokio::test]
async fn the_wake_at_start_skips_users_pushed_since_the_start() {
    let server = server(Backend::Sqlite, "").await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let mut app = AppServer::attach(&server).await;
    let mut bob = server.online("bob", "pc").await;
    let mut alice = server.login("alice", "phone").await;
    alice.iq_result("set", None, &enable("node-1", "one")).await;
    alice.close_and_wait_for_end().await;

    bob.chat(ALICE, "soon after the start").await;
    let publish = app.publish().await;
    assert_eq!(publish.body.as_deref(), Some("soon after the start"));
    app.answer(&publish, "result").await;
    // The wake at start runs WAKE_AT_START_DELAY after the start, which was before this; showing
    // that it publishes nothing needs a wait that bounded.
    let quiet = herald::WAKE_AT_START_DELAY + std::time::Duration::from_secs(1);
    if let Ok(element) = tokio::time::timeout(quiet, app.next()).await {
        panic!("a second publish for one message: {}", xml::show(&element));
    }
}

/// The publish is routed like any stanza: to an in-process service (as Herald's own app server will
/// be), whose answer comes back through the router; to a remote domain, which bounces until
/// federation exists, counted as a failure.
#[tokio::test]
async fn in_process_and_remote_services_are_routes_like_any_other() {
    use herald::router::routes::InProcessService;
    use herald::router::{Bounce, Delivery, Router};
    use herald::xmpp::Envelope;
    use std::sync::Arc;
    use tokio::sync::mpsc;

    /// Answers every publish with a result, and tells the test the node.
    struct InProcess(mpsc::UnboundedSender<String>);

    #[async_trait::async_trait]
    impl InProcessService for InProcess {
        async fn receive(
            &self,
            router: &Arc<Router>,
            envelope: Envelope,
        ) -> Result<Delivery, Bounce> {
            let node = envelope
                .element
                .get_child("pubsub", ns::PUBSUB)
                .and_then(|p| p.get_child("publish", ns::PUBSUB))
                .and_then(|p| p.attr("node"))
                .unwrap_or_default()
                .to_string();
            let result: Element = format!(
                "<iq xmlns='jabber:client' type='result' id='{}' from='relay.localhost' to='{}'/>",
                envelope.id().unwrap_or_default(),
                envelope.from.as_ref().unwrap()
            )
            .parse()
            .unwrap();
            router.send(result).await;
            let _ = self.0.send(node);
            Ok(Delivery::Handled)
        }
    }

    let server = server(Backend::Sqlite, "").await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    let (nodes, mut published) = mpsc::unbounded_channel();
    assert!(
        server
            .router()
            .attach_service("relay.localhost", Arc::new(InProcess(nodes)))
    );
    let mut bob = server.online("bob", "pc").await;
    let mut alice = server.login("alice", "phone").await;
    for (service, node) in [
        ("relay.localhost", "in-process"),
        ("push.remote.example", "remote"),
    ] {
        alice
            .iq_result(
                "set",
                None,
                &format!("<enable xmlns='urn:xmpp:push:0' jid='{service}' node='{node}'/>"),
            )
            .await;
    }
    alice.close_and_wait_for_end().await;
    bob.chat(ALICE, "hello").await;
    let node = tokio::time::timeout(TIMEOUT, published.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node, "in-process");
    let server = &server;
    eventually(
        "the remote bounce is counted, the in-process result is not",
        async || {
            // Listed by service: push.remote.example, then relay.localhost.
            registrations(server).await
                == [("remote".to_string(), 1), ("in-process".to_string(), 0)]
        },
    )
    .await;
}
