//! User-supplied push endpoints (UnifiedPush, Web Push, relay forwarding) must not reach the
//! relay's own network: endpoints on loopback, private or other non-public addresses are refused
//! unless the operator lists the network in `allowed_endpoint_networks`, redirects are not followed,
//! and the status a poster reads does not tell a closed port from a failing server (SSRF).

// Test helpers outside #[test] functions unwrap too: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Harness, Reply, StandIn, TestAccounts, sqlite_url};
use herald_relay::backends::ece;
use herald_relay::{Notification, Priority, RelayConfig};
use serde_json::{Value, json};

fn no_local() -> Arc<TestAccounts> {
    Arc::new(TestAccounts::default())
}

/// The production default: no network is excepted (the test harness allows 127.0.0.0/8).
fn strict(c: &mut RelayConfig) {
    c.allowed_endpoint_networks.clear();
}

/// The stand-in's URL with `localhost` as the host: a name the resolver must filter.
fn by_name(stand_in: &StandIn, path: &str) -> String {
    format!("{}{path}", stand_in.url.replace("127.0.0.1", "localhost"))
}

/// Asserts the reason a poster sees says nothing about ports, status codes or timeouts.
fn assert_coarse(status: &Value) {
    let reason = status["deliveries"][0]["reason"].as_str().unwrap();
    for leak in [
        "http",
        "connect",
        "timeout",
        "transport",
        "127.0.0.1",
        "localhost",
    ] {
        assert!(!reason.contains(leak), "reason {reason:?} reveals {leak:?}");
    }
}

#[tokio::test]
async fn unifiedpush_endpoint_on_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = StandIn::start(Reply::status(201)).await;
    let h = Harness::start(&sqlite_url(&dir), no_local(), true, strict).await;
    let key = h.account("ssrf-up").await;
    // An IP literal is refused when registered.
    let r = h
        .http
        .post(h.url("/api/v1/device/unifiedpush/"))
        .header("Authorization", format!("Token {key}"))
        .json(&json!({"endpoint": format!("{}/up/literal", up.url)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["endpoint"].is_array(), "{body}");
    // A host name is checked where it matters, at connect time, on the addresses it resolves to.
    h.device(
        &key,
        "unifiedpush",
        json!({"endpoint": by_name(&up, "/up/name")}),
    )
    .await;
    let token = h.token(&key, json!({})).await;
    let id = h.accepted(&token).await;
    let status = h.wait_status(&id, "failed").await;
    assert_eq!(
        status["deliveries"][0]["reason"],
        "rejected: endpoint address not allowed"
    );
    assert_coarse(&status);
    up.none_within(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn web_push_endpoint_on_loopback_is_refused() {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let dir = tempfile::tempdir().unwrap();
    let vapid_path = dir.path().join("vapid.pem");
    let vapid = ece::random_secret();
    std::fs::write(
        &vapid_path,
        vapid.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let mut wp = StandIn::start(Reply::status(201)).await;
    let h = Harness::start(&sqlite_url(&dir), no_local(), true, |c| {
        strict(c);
        c.webpush.vapid_private_key_file = vapid_path.display().to_string();
    })
    .await;
    let key = h.account("ssrf-wp").await;
    let ua = ece::random_secret();
    let keys = json!({
        "p256dh": URL_SAFE_NO_PAD.encode(ece::public_bytes(&ua.public_key())),
        "auth": URL_SAFE_NO_PAD.encode([7u8; 16])});
    let sub = json!({"subscription": {"endpoint": by_name(&wp, "/push/1"), "keys": keys}});
    h.device(&key, "webpush", sub).await;
    let token = h.token(&key, json!({})).await;
    let id = h.accepted(&token).await;
    let status = h.wait_status(&id, "failed").await;
    assert_eq!(
        status["deliveries"][0]["reason"],
        "rejected: endpoint address not allowed"
    );
    wp.none_within(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn forwarding_to_a_loopback_relay_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut peer = StandIn::start(Reply::status(202)).await;
    let h = Harness::start(&sqlite_url(&dir), no_local(), true, |c| {
        strict(c);
        c.federation.forward_to_any = true;
    })
    .await;
    let endpoint = by_name(&peer, "/api/v1/messages/");
    let ticket = h
        .relay
        .submit(Notification {
            token: "remote-token".into(),
            endpoint: Some(endpoint),
            priority: Priority::High,
            data: None,
            sender: Some("example.org".into()),
            origin: None,
        })
        .await
        .unwrap();
    let status = h.wait_status(&ticket.message_id, "failed").await;
    assert_coarse(&status);
    peer.none_within(Duration::from_millis(300)).await;
    assert!(!h.relay.check_peer(&by_name(&peer, "")).await.unwrap());
    peer.none_within(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let mut inside = StandIn::start(Reply::status(201)).await;
    let mut up =
        StandIn::start(Reply::status(307).header("location", &format!("{}/admin", inside.url)))
            .await;
    // The harness allows 127.0.0.0/8, so the first hop is reached; the redirect must not be.
    let h = Harness::start(&sqlite_url(&dir), no_local(), true, |_| {}).await;
    let key = h.account("redirected").await;
    h.device(
        &key,
        "unifiedpush",
        json!({"endpoint": format!("{}/up/r", up.url)}),
    )
    .await;
    let token = h.token(&key, json!({})).await;
    let id = h.accepted(&token).await;
    up.next().await;
    let status = h.wait_status(&id, "failed").await;
    assert_coarse(&status);
    inside.none_within(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn status_does_not_tell_a_closed_port_from_a_failing_server() {
    let dir = tempfile::tempdir().unwrap();
    let failing = StandIn::start(Reply::status(500)).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/up/closed", l.local_addr().unwrap())
    };
    let h = Harness::start(&sqlite_url(&dir), no_local(), true, |c| {
        c.max_attempts = 1;
    })
    .await;
    let mut reasons = Vec::new();
    for (name, endpoint) in [
        ("to-closed", closed),
        ("to-failing", format!("{}/up/failing", failing.url)),
    ] {
        let key = h.account(name).await;
        h.device(&key, "unifiedpush", json!({"endpoint": endpoint}))
            .await;
        let token = h.token(&key, json!({})).await;
        let id = h.accepted(&token).await;
        let status = h.wait_status(&id, "failed").await;
        assert_coarse(&status);
        reasons.push(status["deliveries"][0]["reason"].clone());
    }
    assert_eq!(reasons[0], reasons[1]);
    assert_eq!(reasons[0], "gave up: endpoint unavailable");
}
