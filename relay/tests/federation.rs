//! Relay-to-relay forwarding authenticated with RFC 9421 HTTP Message Signatures, two relays in
//! process over real HTTP: a forward from a pinned peer is accepted and bound to the peer's domain
//! (a token bound to that relay works, one bound to another does not); a tampered body, an unsigned
//! request, a replay and an unpinned key are refused with 401 and a JSON error; the key is published
//! at `GET /api/v1/federation/key`.

// Test helpers outside #[test] functions unwrap too: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{Harness, Reply, StandIn, TestAccounts, federation_key, sqlite_url};
use herald_relay::backends::SendOutcome;
use herald_relay::federation::{FederationKey, Signer};
use herald_relay::{Notification, Priority, XmppForward, XmppForwarding};
use serde_json::{Value, json};

const A_DOMAIN: &str = "relay-a.example";
const B_PUSH_SERVICE: &str = "push.relay-b.example";

/// Relay B holds the device and the tokens and pins A's key; A forwards to B with its key file.
struct Pair {
    a: Harness,
    b: Harness,
    /// B's API key for the account owning the device.
    key: String,
    up: StandIn,
    a_key_file: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn pair() -> Pair {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (a_key_file, a_public) = federation_key(&dir_a, "federation.pem");
    let up = StandIn::start(Reply::status(201)).await;
    let b = Harness::start(
        &sqlite_url(&dir_b),
        Arc::new(TestAccounts::default()),
        true,
        |c| {
            c.federation.peer_keys.insert(A_DOMAIN.into(), a_public);
            c.pubsub_jid = B_PUSH_SERVICE.into();
        },
    )
    .await;
    let key = b.account("remote").await;
    b.device(
        &key,
        "unifiedpush",
        json!({"endpoint": format!("{}/up/remote", up.url), "name": "phone"}),
    )
    .await;
    let peer = b.url("/api/v1/messages/");
    let file = a_key_file.clone();
    let a = Harness::start(
        &sqlite_url(&dir_a),
        Arc::new(TestAccounts::default()),
        true,
        |c| {
            c.federation.peers = vec![peer];
            c.federation.domain = A_DOMAIN.into();
            c.federation.key_file = file;
        },
    )
    .await;
    Pair {
        a,
        b,
        key,
        up,
        a_key_file,
        _dirs: (dir_a, dir_b),
    }
}

fn forward(token: &str, endpoint: &str) -> Notification {
    Notification {
        token: token.to_string(),
        endpoint: Some(endpoint.to_string()),
        priority: Priority::High,
        data: None,
        sender: Some("example.org".into()),
        origin: None,
    }
}

/// POSTs `body` to B's federation endpoint with `headers`; returns the status and the JSON body.
async fn post(b: &Harness, headers: reqwest::header::HeaderMap, body: &[u8]) -> (u16, Value) {
    let r = b
        .http
        .post(b.url("/api/v1/federation/messages/"))
        .headers(headers)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn signed(signer: &Signer, b: &Harness, body: &[u8]) -> reqwest::header::HeaderMap {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    signer
        .sign(
            "POST",
            &b.url("/api/v1/federation/messages/"),
            "application/json",
            body,
            now,
        )
        .unwrap()
}

#[tokio::test]
async fn a_pinned_peers_forward_is_accepted_and_bound_to_its_domain() {
    let mut p = pair().await;
    let b_endpoint = p.b.url("/api/v1/messages/");
    // A token only relay A may use: the signature is what names A.
    let bound = p.b.token(&p.key, json!({"sender": A_DOMAIN})).await;
    let ticket =
        p.a.relay
            .submit(forward(&bound, &b_endpoint))
            .await
            .unwrap();
    assert_eq!(p.up.next().await.path, "/up/remote");
    p.a.wait_status(&ticket.message_id, "sent").await;
    // Posted to B directly without a signature, the same token is no use to anyone else.
    assert_eq!(p.b.post_message(&bound, "high").await.status(), 403);

    // A token bound to another relay: B refuses A's forward (403), so A's delivery fails.
    let other =
        p.b.token(&p.key, json!({"sender": "relay-z.example"}))
            .await;
    let ticket =
        p.a.relay
            .submit(forward(&other, &b_endpoint))
            .await
            .unwrap();
    p.a.wait_status(&ticket.message_id, "failed").await;

    // The key A signs with is the one it publishes.
    let published: Value =
        p.a.http
            .get(p.a.url("/api/v1/federation/key"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let file_key = FederationKey::load(std::path::Path::new(&p.a_key_file)).unwrap();
    assert_eq!(
        published,
        json!({"domain": A_DOMAIN, "keyid": A_DOMAIN, "alg": "ed25519", "public_key": file_key.public_key()})
    );
}

#[tokio::test]
async fn tampered_unsigned_replayed_and_unpinned_requests_are_refused() {
    let p = pair().await;
    let token = p.b.token(&p.key, json!({})).await;
    let a_key = FederationKey::load(std::path::Path::new(&p.a_key_file)).unwrap();
    let signer = Signer::new(a_key, A_DOMAIN, 60);
    let body = json!({"token": token, "priority": "high"}).to_string();

    // Tampered: signed for one body, another sent (the digest no longer matches).
    let headers = signed(&signer, &p.b, body.as_bytes());
    let tampered = json!({"token": token, "priority": "low"}).to_string();
    let (status, error) = post(&p.b, headers.clone(), tampered.as_bytes()).await;
    assert_eq!(status, 401, "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("digest"),
        "{error}"
    );

    // The genuine request is accepted once, then refused as a replay.
    let (status, accepted) = post(&p.b, headers.clone(), body.as_bytes()).await;
    assert_eq!(status, 202, "{accepted}");
    let (status, error) = post(&p.b, headers, body.as_bytes()).await;
    assert_eq!(status, 401);
    assert!(
        error["error"].as_str().unwrap().contains("nonce"),
        "{error}"
    );

    // Unsigned.
    let mut plain = reqwest::header::HeaderMap::new();
    plain.insert("content-type", "application/json".parse().unwrap());
    let (status, error) = post(&p.b, plain, body.as_bytes()).await;
    assert_eq!(status, 401);
    assert_eq!(error["error"], "request is not signed");

    // Signed by a key B has not pinned, under A's name and under a name of its own.
    for name in [A_DOMAIN, "relay-c.example"] {
        let stranger = Signer::new(FederationKey::generate().unwrap(), name, 60);
        let (status, error) = post(
            &p.b,
            signed(&stranger, &p.b, body.as_bytes()),
            body.as_bytes(),
        )
        .await;
        assert_eq!(status, 401, "{name}: {error}");
        assert!(error["error"].is_string());
    }
}

#[tokio::test]
async fn an_unpinned_relays_forwards_fail() {
    let p = pair().await;
    let token = p.b.token(&p.key, json!({})).await;
    // Relay C forwards to B too, but B never pinned C's key.
    let dir_c = tempfile::tempdir().unwrap();
    let peer = p.b.url("/api/v1/messages/");
    let c = Harness::start(
        &sqlite_url(&dir_c),
        Arc::new(TestAccounts::default()),
        true,
        |c| {
            c.federation.peers = vec![peer];
            c.federation.domain = "relay-c.example".into();
        },
    )
    .await;
    let ticket = c
        .relay
        .submit(forward(&token, &p.b.url("/api/v1/messages/")))
        .await
        .unwrap();
    let status = c.wait_status(&ticket.message_id, "failed").await;
    assert_eq!(
        status["deliveries"][0]["reason"],
        "rejected: endpoint refused the push"
    );
}

/// A stand-in for the hosting server's s2s transport: offers forwarding at every JID, answers every
/// forward with `answer`, and records what it was asked.
struct FakeS2s {
    answer: XmppForward,
    asked: std::sync::Mutex<Vec<String>>,
}

impl FakeS2s {
    fn new(answer: XmppForward) -> Arc<FakeS2s> {
        Arc::new(FakeS2s {
            answer,
            asked: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl XmppForwarding for FakeS2s {
    async fn offers_forwarding(&self, peer_jid: &str) -> bool {
        self.asked.lock().unwrap().push(format!("disco {peer_jid}"));
        true
    }

    async fn forward(
        &self,
        peer_jid: &str,
        _token: &str,
        _priority: Priority,
        _data: Option<&str>,
    ) -> XmppForward {
        self.asked
            .lock()
            .unwrap()
            .push(format!("forward {peer_jid}"));
        self.answer.clone()
    }
}

/// B's key answer names its push service once it serves forwards over XMPP; A then forwards there
/// first, and when the s2s layer cannot deliver (remote-server-not-found), over signed HTTP, and
/// remembers B as HTTP-only.
#[tokio::test]
async fn a_forward_s2s_cannot_deliver_goes_over_signed_http() {
    let mut p = pair().await;
    let key = |h: &common::Harness| h.http.get(h.url("/api/v1/federation/key/")).send();
    let answer: Value = key(&p.b).await.unwrap().json().await.unwrap();
    assert!(answer.get("xmpp").is_none(), "{answer}");
    p.b.relay.serve_xmpp_forwards();
    let answer: Value = key(&p.b).await.unwrap().json().await.unwrap();
    assert_eq!(answer["xmpp"], B_PUSH_SERVICE);

    let s2s = FakeS2s::new(XmppForward::Unavailable("remote-server-not-found".into()));
    p.a.relay.set_xmpp_forwarding(s2s.clone());
    let b_endpoint = p.b.url("/api/v1/messages/");
    let bound = p.b.token(&p.key, json!({"sender": A_DOMAIN})).await;
    let ticket =
        p.a.relay
            .submit(forward(&bound, &b_endpoint))
            .await
            .unwrap();
    assert_eq!(p.up.next().await.path, "/up/remote");
    p.a.wait_status(&ticket.message_id, "sent").await;
    assert_eq!(
        s2s.asked(),
        [
            format!("disco {B_PUSH_SERVICE}"),
            format!("forward {B_PUSH_SERVICE}")
        ]
    );
    // The next forward goes straight over HTTP.
    let ticket =
        p.a.relay
            .submit(forward(&bound, &b_endpoint))
            .await
            .unwrap();
    assert_eq!(p.up.next().await.path, "/up/remote");
    p.a.wait_status(&ticket.message_id, "sent").await;
    assert_eq!(s2s.asked().len(), 2, "{:?}", s2s.asked());
}

/// An answered forward over s2s is final: a gone token is dropped, not sent again over HTTP.
#[tokio::test]
async fn an_answered_s2s_forward_is_not_repeated_over_http() {
    let p = pair().await;
    p.b.relay.serve_xmpp_forwards();
    let s2s = FakeS2s::new(XmppForward::Answered(SendOutcome::Gone(
        "peer answered item-not-found".into(),
    )));
    p.a.relay.set_xmpp_forwarding(s2s.clone());
    let bound = p.b.token(&p.key, json!({"sender": A_DOMAIN})).await;
    let ticket =
        p.a.relay
            .submit(forward(&bound, &p.b.url("/api/v1/messages/")))
            .await
            .unwrap();
    let status = p.a.wait_status(&ticket.message_id, "failed").await;
    assert_eq!(
        status["deliveries"][0]["reason"],
        "gone: peer answered item-not-found"
    );
    assert_eq!(s2s.asked().len(), 2, "{:?}", s2s.asked());
}

/// Any federating server can send forwards over s2s, so each sending domain has a budget that is
/// spent before a token is looked up: a flood of made-up tokens from one domain is refused with
/// a rate limit, not turned into one database read each. Without the push service served (or with
/// `xmpp = false`) nothing is accepted that way.
#[tokio::test]
async fn forwards_over_s2s_are_budgeted_per_sending_domain() {
    // A small budget: it refills one forward every 20 s, so the loop below cannot outlast it even on
    // a slow machine (with the default 600 a minute, CI saw a refill inside the loop).
    let dir = tempfile::tempdir().unwrap();
    let b = Harness::start(
        &sqlite_url(&dir),
        Arc::new(TestAccounts::default()),
        true,
        |c| {
            c.pubsub_jid = B_PUSH_SERVICE.into();
            c.limits.per_sender = 3;
        },
    )
    .await;
    let refused = b
        .relay
        .accept_xmpp_forward("flood.example", "t".into(), Priority::High, None)
        .await;
    assert!(
        matches!(refused, Err(herald_relay::RelayError::ForwardNotAllowed)),
        "{refused:?}"
    );
    b.relay.serve_xmpp_forwards();
    let budget = b.relay.config().limits.per_sender;
    for i in 0..budget {
        let answer = b
            .relay
            .accept_xmpp_forward(
                "flood.example",
                format!("made-up-{i}"),
                Priority::High,
                None,
            )
            .await;
        assert!(
            matches!(answer, Err(herald_relay::RelayError::UnknownToken)),
            "{i}: {answer:?}"
        );
    }
    let answer = b
        .relay
        .accept_xmpp_forward("FLOOD.example", "made-up".into(), Priority::High, None)
        .await;
    assert!(
        matches!(answer, Err(herald_relay::RelayError::RateLimited(_))),
        "{answer:?}"
    );
    // Another domain has its own budget.
    let other = b
        .relay
        .accept_xmpp_forward("other.example", "made-up".into(), Priority::High, None)
        .await;
    assert!(
        matches!(other, Err(herald_relay::RelayError::UnknownToken)),
        "{other:?}"
    );
}
