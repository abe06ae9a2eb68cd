//! Relay-to-relay forwarding over s2s (`urn:herald:relay-forward:0`) between two Herald domains
//! that federate with Server Dialback (XEP-0220; the main case also with SASL EXTERNAL, XEP-0178):
//! `a.test` and `b.test` each host a relay with a
//! push service (`push.a.test`, `push.b.test`). A whitelist token issued by B's relay and bound to
//! `a.test` is forwarded by A's relay as an IQ from `a.test` to `push.b.test` (found from the `xmpp`
//! field of B's key answer, confirmed by disco#info); B checks the binding against the domain its
//! s2s layer authenticated and wakes the stand-in FCM once, with no content, and B's HTTP federation
//! endpoint is never posted to. A token bound to another sender is refused (A's delivery is
//! rejected), an unknown one is gone (A drops it), and when B does not offer forwarding over XMPP, A
//! falls back to a signed HTTP forward (RFC 9421).
//!
//! B's relay API is reached through a recording proxy, so the test sees every HTTP request A makes.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use herald_relay::federation::FederationKey;
use herald_relay::{NodeRegistration, Notification, Priority};
use herald_storage::relay::{DeliveryStatus, DeviceKind, OutboxEntry};
use herald_tests::TestServer;
use herald_tests::fcm::StandInFcm;
use herald_tests::federation::{Authentication, Listening, TestCa, free_port};
use herald_tests::server::TestServerBuilder;

const FEDERATION_MESSAGES: &str = "/api/v1/federation/messages/";

/// An HTTP proxy in front of B's relay API that records the path of every request.
struct RecordingProxy {
    url: String,
    target: Arc<OnceLock<String>>,
    paths: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct ProxyState {
    target: Arc<OnceLock<String>>,
    paths: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

async fn relay_through(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Bytes) {
    state.paths.lock().unwrap().push(uri.path().to_string());
    let target = state.target.get().expect("proxy target set");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forwarded = headers.clone();
    forwarded.remove(axum::http::header::HOST);
    let answer = state
        .http
        .request(method, format!("{target}{path}"))
        .headers(forwarded)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    (status, answer.bytes().await.unwrap())
}

impl RecordingProxy {
    async fn start() -> RecordingProxy {
        let target = Arc::new(OnceLock::new());
        let paths = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            target: target.clone(),
            paths: paths.clone(),
            http: reqwest::Client::new(),
        };
        let app = axum::Router::new()
            .fallback(relay_through)
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        RecordingProxy { url, target, paths }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }

    /// The messages endpoint tokens of B's relay are handed out with.
    fn messages_endpoint(&self) -> String {
        format!("{}/api/v1/messages/", self.url)
    }
}

/// The `[[s2s.peers]]` entries reaching `domains` at `port`; with dialback, allowed without a
/// certificate.
fn peers(authentication: Authentication, domains: &[&str], port: u16) -> String {
    let dialback = match authentication {
        Authentication::Dialback => "allow_dialback_without_certificate = true\n",
        Authentication::External => "",
    };
    domains
        .iter()
        .map(|domain| {
            format!(
                "[[s2s.peers]]\ndomain = \"{domain}\"\naddress = \"127.0.0.1:{port}\"\n{dialback}"
            )
        })
        .collect()
}

/// With EXTERNAL: a certificate from `ca` naming `names` (the server's domain and its push service)
/// and trust in `ca`. Returns the builder, the TOML to prepend and the `[s2s]` trust line.
fn certificates(
    builder: TestServerBuilder,
    authentication: Authentication,
    ca: &TestCa,
    names: &[&str],
) -> (TestServerBuilder, String, &'static str) {
    if authentication == Authentication::Dialback {
        return (builder, String::new(), "");
    }
    let (cert, key) = ca.issue_for(names);
    let builder = builder
        .file("ca.pem", &ca.pem)
        .file("server.crt", &cert)
        .file("server.key", &key);
    let toml = format!(
        "[[tls.certificates]]\ndomain = \"{}\"\ncert = \"{{dir}}/server.crt\"\n\
         key = \"{{dir}}/server.key\"\n",
        names[0]
    );
    (builder, toml, "ca_files = [\"{dir}/ca.pem\"]\n")
}

/// Two federating domains, each hosting a relay; B's relay API behind `proxy`.
struct Pair {
    a: TestServer,
    b: TestServer,
    fcm: StandInFcm,
    proxy: RecordingProxy,
}

/// Starts the pair federating with Server Dialback. `b_federation` is added to B's
/// `[relay.federation]`, given A's public key.
async fn pair(b_federation: impl FnOnce(&str) -> String) -> Pair {
    pair_with(Authentication::Dialback, b_federation).await
}

/// Like [`pair`], federating with `authentication`.
async fn pair_with(
    authentication: Authentication,
    b_federation: impl FnOnce(&str) -> String,
) -> Pair {
    let ca = TestCa::new();
    let fcm = StandInFcm::start().await;
    let proxy = RecordingProxy::start().await;
    let a_ports = Listening::new("a.test", false);
    let b_ports = Listening::new("b.test", false);
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("a.pem");
    let a_key = FederationKey::load_or_create(&key_path).unwrap();
    let (builder, a_tls, a_trust) = certificates(
        TestServer::builder(),
        authentication,
        &ca,
        &["a.test", "push.a.test"],
    );
    let a = builder
        .env("HERALD_SERVER__DOMAINS", "[\"a.test\"]")
        .file("federation.pem", &std::fs::read_to_string(&key_path).unwrap())
        .toml(&format!(
            "{a_tls}[relay]\nenabled = true\nlisten = \"127.0.0.1:0\"\npubsub_jid = \"push.a.test\"\n\
             allow_plain_http = true\nallowed_endpoint_networks = [\"127.0.0.0/8\"]\n\
             retry_base_ms = 50\nretry_max_ms = 200\n\
             [relay.federation]\ndomain = \"a.test\"\nkey_file = \"{{dir}}/federation.pem\"\n\
             peers = [\"{}\"]\n\
             [s2s]\nlisten = \"127.0.0.1:{}\"\n{a_trust}{}",
            proxy.url,
            a_ports.port,
            peers(authentication, &["b.test", "push.b.test"], b_ports.port),
        ))
        .start()
        .await;
    let b_relay_port = free_port();
    let (builder, b_tls, b_trust) = certificates(
        TestServer::builder(),
        authentication,
        &ca,
        &["b.test", "push.b.test"],
    );
    let b = builder
        .env("HERALD_SERVER__DOMAINS", "[\"b.test\"]")
        .file("service-account.json", &fcm.service_account())
        .toml(&format!(
            "{b_tls}[relay]\nenabled = true\nlisten = \"127.0.0.1:{b_relay_port}\"\npublic_url = \"{}\"\n\
             pubsub_jid = \"push.b.test\"\ncollapse_window_ms = 0\n\
             [relay.fcm]\nservice_account_file = \"{{dir}}/service-account.json\"\nbase_url = \"{}\"\n\
             [relay.federation]\n{}\n\
             [s2s]\nlisten = \"127.0.0.1:{}\"\n{b_trust}{}",
            proxy.url,
            fcm.url,
            b_federation(&a_key.public_key()),
            b_ports.port,
            peers(authentication, &["a.test", "push.a.test"], a_ports.port),
        ))
        .start()
        .await;
    proxy
        .target
        .set(format!("http://127.0.0.1:{b_relay_port}"))
        .unwrap();
    Pair { a, b, fcm, proxy }
}

/// Registers an FCM device of `user` at B's relay as a push node only `publisher` may push to;
/// returns the node's whitelist token.
async fn token_at_b(pair: &Pair, user: &str, publisher: &str, fcm_token: &str) -> String {
    pair.b
        .relay()
        .register_node(
            &format!("{user}@b.test"),
            publisher,
            NodeRegistration {
                kind: DeviceKind::Fcm,
                device_key: format!("{user}-phone"),
                token: fcm_token.into(),
                apns_topic: None,
                apns_sandbox: None,
                p256dh: None,
                auth: None,
            },
        )
        .await
        .unwrap()
        .secret
}

/// A's relay forwards `token` to B's messages endpoint; returns A's message id.
async fn forward_at_a(pair: &Pair, token: &str) -> String {
    pair.a
        .relay()
        .submit(Notification {
            token: token.into(),
            endpoint: Some(pair.proxy.messages_endpoint()),
            priority: Priority::High,
            data: None,
            sender: Some("a.test".into()),
            origin: None,
        })
        .await
        .unwrap()
        .message_id
}

/// A's delivery for `message_id` once it is finished (sent or failed).
async fn finished_at_a(pair: &Pair, message_id: &str) -> OutboxEntry {
    let outbox = &pair.a.storage.push_outbox;
    herald_tests::eventually("A's forward finished", async || {
        outbox
            .deliveries(message_id)
            .await
            .unwrap()
            .iter()
            .all(|d| matches!(d.status, DeliveryStatus::Sent | DeliveryStatus::Failed))
    })
    .await;
    outbox.deliveries(message_id).await.unwrap().remove(0)
}

fn accepted_at_b(entries: &[herald_storage::relay::AuditEntry]) -> usize {
    entries.iter().filter(|e| e.outcome == "accepted").count()
}

#[tokio::test]
async fn a_token_bound_to_the_forwarding_domain_is_forwarded_over_dialback_and_wakes_once() {
    forwarded_over_s2s_and_wakes_once(Authentication::Dialback).await;
}

#[tokio::test]
async fn a_token_bound_to_the_forwarding_domain_is_forwarded_over_sasl_external_and_wakes_once() {
    forwarded_over_s2s_and_wakes_once(Authentication::External).await;
}

async fn forwarded_over_s2s_and_wakes_once(authentication: Authentication) {
    let mut pair = pair_with(authentication, |_| String::new()).await;
    let token = token_at_b(&pair, "bob", "a.test", "fcm-token-bob").await;

    let message = forward_at_a(&pair, &token).await;
    let wake = pair.fcm.next_send().await;
    assert!(wake.contains("fcm-token-bob"), "to bob's phone: {wake}");
    assert!(!wake.contains(&token), "no whitelist token to FCM: {wake}");
    let delivery = finished_at_a(&pair, &message).await;
    assert_eq!(delivery.status, DeliveryStatus::Sent, "{delivery:?}");
    // Exactly one push was accepted at B, from a.test as its s2s layer authenticated it.
    let audit = pair
        .b
        .storage
        .push_audit
        .list("bob@b.test", None, 100)
        .await
        .unwrap();
    assert_eq!(accepted_at_b(&audit), 1, "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|e| e.outcome == "accepted" && e.sender.as_deref() == Some("a.test")),
        "{audit:?}"
    );
    assert!(pair.fcm.sends.try_recv().is_err(), "a second wake-up");
    // A learned B's push service from B's key answer; nothing was posted to B over HTTP.
    let paths = pair.proxy.paths();
    assert!(
        !paths.iter().any(|p| p == FEDERATION_MESSAGES),
        "B's HTTP federation endpoint was hit: {paths:?}"
    );
    assert!(
        paths.iter().any(|p| p == "/api/v1/federation/key/"),
        "{paths:?}"
    );

    // A second forward uses the remembered route: no further HTTP request at all.
    let asked = paths.len();
    let message = forward_at_a(&pair, &token).await;
    pair.fcm.next_send().await;
    assert_eq!(
        finished_at_a(&pair, &message).await.status,
        DeliveryStatus::Sent
    );
    assert_eq!(pair.proxy.paths().len(), asked, "{:?}", pair.proxy.paths());
    // A's stream to B authenticated with the pair's method only.
    let (_, _, external, dialback) = pair.a.s2s_authentications();
    match authentication {
        Authentication::External => assert!(external > 0 && dialback == 0, "{external} {dialback}"),
        Authentication::Dialback => assert!(dialback > 0 && external == 0, "{external} {dialback}"),
    }
}

#[tokio::test]
async fn over_s2s_a_token_of_another_sender_is_refused_and_an_unknown_one_is_gone() {
    let mut pair = pair(|_| String::new()).await;
    // Bound to z.test: a.test, as B's s2s layer authenticated it, may not use it.
    let token = token_at_b(&pair, "carol", "z.test", "fcm-token-carol").await;
    let message = forward_at_a(&pair, &token).await;
    let delivery = finished_at_a(&pair, &message).await;
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    let reason = delivery.reason.unwrap_or_default();
    assert!(reason.starts_with("rejected:"), "{reason}");
    assert!(reason.contains("forbidden"), "{reason}");

    // A token B does not know (or no longer): gone, and A's outbox drops it (no retry).
    let message = forward_at_a(&pair, "no-such-token").await;
    let delivery = finished_at_a(&pair, &message).await;
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts, 1, "not retried: {delivery:?}");
    let reason = delivery.reason.unwrap_or_default();
    assert!(reason.starts_with("gone:"), "{reason}");

    assert!(pair.fcm.sends.try_recv().is_err(), "nothing reached FCM");
    let paths = pair.proxy.paths();
    assert!(
        !paths.iter().any(|p| p == FEDERATION_MESSAGES),
        "no HTTP fallback for an answered forward: {paths:?}"
    );
}

#[tokio::test]
async fn without_xmpp_forwarding_at_the_peer_the_forward_goes_over_signed_http() {
    // B does not offer forwarding over XMPP (no `xmpp` in its key answer, no disco feature), and
    // pins A's key for signed HTTP forwards.
    let mut pair =
        pair(|a_key| format!("xmpp = false\npeer_keys = {{ \"a.test\" = \"{a_key}\" }}")).await;
    let token = token_at_b(&pair, "bob", "a.test", "fcm-token-bob").await;
    let message = forward_at_a(&pair, &token).await;
    let wake = pair.fcm.next_send().await;
    assert!(wake.contains("fcm-token-bob"), "{wake}");
    assert_eq!(
        finished_at_a(&pair, &message).await.status,
        DeliveryStatus::Sent
    );
    let paths = pair.proxy.paths();
    assert_eq!(
        paths.iter().filter(|p| *p == FEDERATION_MESSAGES).count(),
        1,
        "{paths:?}"
    );
    assert!(pair.fcm.sends.try_recv().is_err(), "a second wake-up");
}

/// A user of `a.test` sending the forward IQ herself (over her server's s2s stream, so from
/// `alice@a.test/pc`) is refused: only a relay's server domain forwards, or any user of a domain
/// could use tokens bound to that domain.
#[tokio::test]
async fn a_user_of_the_bound_domain_cannot_forward_herself() {
    let mut pair = pair(|_| String::new()).await;
    let token = token_at_b(&pair, "bob", "a.test", "fcm-token-bob").await;
    pair.a.add_user("alice").await;
    let mut alice = pair.a.online("alice", "pc").await;
    let answer = alice
        .iq(
            "set",
            Some("push.b.test"),
            &format!(
                "<forward xmlns='urn:herald:relay-forward:0' priority='high'><token>{token}</token></forward>"
            ),
        )
        .await;
    let shown = herald_tests::xml::show(&answer);
    assert_eq!(answer.attr("type"), Some("error"), "{shown}");
    assert!(shown.contains("forbidden"), "{shown}");
    assert!(pair.fcm.sends.try_recv().is_err(), "nothing reached FCM");
    let audit = pair
        .b
        .storage
        .push_audit
        .list("bob@b.test", None, 100)
        .await
        .unwrap();
    assert_eq!(accepted_at_b(&audit), 0, "{audit:?}");
}
