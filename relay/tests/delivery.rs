//! Delivery end to end against local stand-ins: FCM HTTP v1 with its OAuth2 exchange, UnifiedPush,
//! Web Push (decrypted and VAPID-verified on the stand-in side), relay-to-relay forwarding; failure
//! classes (gone removes the device, Retry-After honoured, giving up), collapse, and restarts that
//! lose nothing.

// Test helpers outside #[test] functions unwrap too: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Harness, Reply, StandIn, TestAccounts, sqlite_url};
use herald_relay::backends::ece;
use herald_relay::{Notification, Priority, RelayError};
use serde_json::{Value, json};

fn no_local() -> Arc<TestAccounts> {
    Arc::new(TestAccounts::default())
}

const FCM_KEY: &str = include_str!("fixtures/fcm-test-key.pem");

/// A service-account JSON pointing at the OAuth stand-in.
fn service_account(dir: &tempfile::TempDir, token_uri: &str) -> String {
    let path = dir.path().join("service-account.json");
    let json = json!({
        "type": "service_account",
        "project_id": "test-project",
        "client_email": "relay@test-project.iam.gserviceaccount.com",
        "private_key": FCM_KEY,
        "token_uri": token_uri,
    });
    std::fs::write(&path, json.to_string()).unwrap();
    path.display().to_string()
}

struct Fcm {
    h: Harness,
    oauth: StandIn,
    fcm: StandIn,
    _dir: tempfile::TempDir,
}

async fn fcm_relay() -> Fcm {
    fcm_relay_with_token_lifetime(3600).await
}

/// An FCM relay whose OAuth stand-in grants tokens for `expires_in` seconds.
async fn fcm_relay_with_token_lifetime(expires_in: u64) -> Fcm {
    let dir = tempfile::tempdir().unwrap();
    let oauth = StandIn::start(Reply::json(
        200,
        json!({"access_token": "at-123", "expires_in": expires_in, "token_type": "Bearer"}),
    ))
    .await;
    let fcm = StandIn::start(Reply::json(
        200,
        json!({"name": "projects/test-project/messages/1"}),
    ))
    .await;
    let sa = service_account(&dir, &format!("{}/token", oauth.url));
    let fcm_url = fcm.url.clone();
    let h = Harness::start(&sqlite_url(&dir), no_local(), true, |c| {
        c.fcm.service_account_file = sa;
        c.fcm.base_url = fcm_url;
    })
    .await;
    Fcm {
        h,
        oauth,
        fcm,
        _dir: dir,
    }
}

fn decode_part(jwt: &str, i: usize) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(i).unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn fcm_end_to_end_with_oauth_exchange() {
    let Fcm {
        h,
        mut oauth,
        mut fcm,
        _dir,
    } = fcm_relay().await;
    let key = h.account("qwz-owner").await;
    h.device(&key, "gcm", json!({"registration_id": "fcm-reg-1"}))
        .await;
    let token = h.token(&key, json!({})).await;
    let id = h.accepted(&token).await;

    // The OAuth2 JWT-bearer exchange, signature checked with the service account's public key.
    let req = oauth.next().await;
    assert_eq!(req.path, "/token");
    let form: HashMap<String, String> =
        reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(&req.body)))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let jwt = &form["assertion"];
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let der = herald_relay::backends::oauth::pem_to_der(FCM_KEY).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    use ring::signature::KeyPair;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public_key().as_ref(),
    )
    .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
    .expect("assertion signature");
    assert_eq!(decode_part(jwt, 0)["alg"], "RS256");
    let claims = decode_part(jwt, 1);
    assert_eq!(claims["iss"], "relay@test-project.iam.gserviceaccount.com");
    assert_eq!(claims["aud"], format!("{}/token", oauth.url));
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    // The send: bearer token, project path, content-free data message.
    let send = fcm.next().await;
    assert_eq!(send.path, "/v1/projects/test-project/messages:send");
    assert_eq!(send.headers["authorization"], "Bearer at-123");
    let body: Value = serde_json::from_slice(&send.body).unwrap();
    assert_eq!(body["message"]["token"], "fcm-reg-1");
    assert_eq!(body["message"]["data"], json!({"type": "wake"}));
    assert_eq!(body["message"]["android"]["priority"], "HIGH");
    assert!(!String::from_utf8_lossy(&send.body).contains("qwz-owner"));
    let status = h.wait_status(&id, "sent").await;
    assert_eq!(status["deliveries"][0]["attempts"], 1);

    // The access token is cached: a second push needs no second exchange.
    let id2 = h.accepted(&token).await;
    fcm.next().await;
    h.wait_status(&id2, "sent").await;
    oauth.none_within(Duration::from_millis(200)).await;
}

/// A token endpoint answering `expires_in: 18446744073709551615` once overflowed `Instant + Duration`
/// and panicked the delivery task, leaving the delivery pending until restart.
#[tokio::test]
async fn fcm_huge_token_lifetime_still_delivers() {
    let Fcm {
        h,
        oauth: _o,
        mut fcm,
        _dir,
    } = fcm_relay_with_token_lifetime(u64::MAX).await;
    let key = h.account("forever").await;
    h.device(&key, "gcm", json!({"registration_id": "fcm-reg-2"}))
        .await;
    let token = h.token(&key, json!({})).await;
    let id = h.accepted(&token).await;
    fcm.next().await;
    h.wait_status(&id, "sent").await;
}

#[tokio::test]
async fn fcm_unregistered_removes_the_device() {
    let Fcm {
        h,
        oauth: _o,
        fcm,
        _dir,
    } = fcm_relay().await;
    fcm.set_default(Reply::json(
        404,
        json!({"error": {"code": 404, "status": "NOT_FOUND", "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}),
    ));
    let key = h.account("gone").await;
    let device = h
        .device(&key, "gcm", json!({"registration_id": "dead"}))
        .await;
    let token = h.token(&key, json!({})).await;
    let scoped = h.token(&key, json!({"gcm_device": device})).await;
    let id = h.accepted(&token).await;
    let status = h.wait_status(&id, "failed").await;
    let reason = status["deliveries"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("gone:") && reason.contains("UNREGISTERED"),
        "{reason}"
    );
    let r = h
        .http
        .get(h.url(&format!("/api/v1/device/gcm/{device}/")))
        .header("Authorization", format!("Token {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A token scoped to that device alone is now dead: 404, so the sender's server drops it.
    assert_eq!(h.post_message(&scoped, "high").await.status(), 404);
    // The unscoped token still works (202) but reaches nothing.
    let id = h.accepted(&token).await;
    assert_eq!(h.status(&id).await["reason"], "no devices");
}

async fn up_device(h: &Harness, key: &str, up: &StandIn, path: &str) -> String {
    h.device(
        key,
        "unifiedpush",
        json!({"endpoint": format!("{}{path}", up.url), "name": "phone"}),
    )
    .await
}

#[tokio::test]
async fn retry_after_is_honoured_then_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = StandIn::start(Reply::status(201)).await;
    up.script([
        Reply::status(429).header("retry-after", "1"),
        Reply::status(503),
    ]);
    let h = Harness::start(&sqlite_url(&dir), no_local(), true, |_| {}).await;
    let key = h.account("up").await;
    up_device(&h, &key, &up, "/up/abc").await;
    let token = h.token(&key, json!({})).await;
    let id = h.accepted(&token).await;
    let first = up.next().await;
    let second = up.next().await;
    let third = up.next().await;
    assert!(
        second.at - first.at >= Duration::from_secs(1),
        "Retry-After: 1 not honoured: {:?}",
        second.at - first.at
    );
    // No Retry-After on the 503: the backoff (base 200 ms, second attempt 400-480 ms) applies.
    assert!(
        third.at - second.at >= Duration::from_millis(400),
        "{:?}",
        third.at - second.at
    );
    assert_eq!(first.path, "/up/abc");
    let body: Value = serde_json::from_slice(&third.body).unwrap();
    assert_eq!(body, json!({"type": "wake", "priority": "high"}));
    let status = h.wait_status(&id, "sent").await;
    assert_eq!(status["deliveries"][0]["attempts"], 3);
}

#[tokio::test]
async fn transient_failures_give_up_after_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let up = StandIn::start(Reply::status(500)).await;
    let h = Harness::start(&sqlite_url(&dir), no_local(), true, |c| {
        c.max_attempts = 2;
        c.retry_base_ms = 10;
    })
    .await;
    let key = h.account("giveup").await;
    up_device(&h, &key, &up, "/up/x").await;
    let token = h.token(&key, json!({})).await;
    let id = h.accepted(&token).await;
    let status = h.wait_status(&id, "failed").await;
    assert_eq!(
        status["deliveries"][0]["reason"],
        "gave up: endpoint unavailable"
    );
    assert_eq!(status["deliveries"][0]["attempts"], 2);
}

#[tokio::test]
async fn nothing_accepted_is_lost_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let mut up = StandIn::start(Reply::status(201).delayed(Duration::from_secs(30))).await;

    // 1. Accepted while no worker runs, then the relay stops.
    let a = Harness::start(&url, no_local(), false, |_| {}).await;
    let key = a.account("durable").await;
    up_device(&a, &key, &up, "/up/one").await;
    up_device(&a, &key, &up, "/up/two").await;
    let token = a.token(&key, json!({})).await;
    let id = a.accepted(&token).await;
    a.stop().await;

    // 2. A new process starts sending; the push service hangs; the process crashes mid-send.
    let b = Harness::start(&url, no_local(), true, |_| {}).await;
    let mut paths = vec![up.next().await.path, up.next().await.path];
    paths.sort();
    assert_eq!(paths, ["/up/one", "/up/two"]);
    assert_eq!(b.status(&id).await["status"], "accepted");
    b.crash();

    // 3. The next start delivers both.
    up.set_default(Reply::status(201));
    let c = Harness::start(&url, no_local(), true, |_| {}).await;
    let mut paths = vec![up.next().await.path, up.next().await.path];
    paths.sort();
    assert_eq!(paths, ["/up/one", "/up/two"]);
    let status = c.wait_status(&id, "sent").await;
    assert_eq!(status["deliveries"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn notifications_for_one_device_collapse() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = StandIn::start(Reply::status(201)).await;
    let mut h = Harness::start(&sqlite_url(&dir), no_local(), false, |c| {
        c.collapse_window_ms = 1_000
    })
    .await;
    let key = h.account("collapse").await;
    up_device(&h, &key, &up, "/up/c").await;
    let token = h.token(&key, json!({})).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(h.accepted(&token).await);
    }
    h.workers = Some(h.relay.spawn_workers(h.shutdown.clone()));
    let first = up.next().await;
    for id in &ids {
        h.wait_status(id, "sent").await;
    }
    up.none_within(Duration::from_millis(300)).await;
    // One more inside the window waits for the window's end.
    let late = h.accepted(&token).await;
    let second = up.next().await;
    assert!(
        second.at - first.at >= Duration::from_millis(800),
        "{:?}",
        second.at - first.at
    );
    h.wait_status(&late, "sent").await;
}

#[tokio::test]
async fn web_push_is_encrypted_and_vapid_signed() {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let dir = tempfile::tempdir().unwrap();
    let vapid = ece::random_secret();
    let vapid_path = dir.path().join("vapid.pem");
    std::fs::write(
        &vapid_path,
        vapid.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let mut wp = StandIn::start(Reply::status(201)).await;
    let h = Harness::start(&sqlite_url(&dir), no_local(), true, |c| {
        c.webpush.vapid_private_key_file = vapid_path.display().to_string();
        c.webpush.vapid_subject = "mailto:ops@example.org".into();
    })
    .await;
    let key = h.account("browser").await;
    let ua = ece::random_secret();
    let auth = [9u8; 16];
    let sub = json!({"subscription": {"endpoint": format!("{}/push/sub1", wp.url), "keys": {
        "p256dh": URL_SAFE_NO_PAD.encode(ece::public_bytes(&ua.public_key())),
        "auth": URL_SAFE_NO_PAD.encode(auth)}}});
    let device = h.device(&key, "webpush", sub).await;
    let vapid_json: Value = h
        .http
        .get(h.url("/api/v1/webpush/vapid/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(vapid_json["public_key"].as_str().unwrap())
            .unwrap(),
        ece::public_bytes(&vapid.public_key())
    );
    let token = h.token(&key, json!({})).await;
    let id = h.accepted(&token).await;

    let req = wp.next().await;
    assert_eq!(req.path, "/push/sub1");
    assert_eq!(req.headers["content-encoding"], "aes128gcm");
    assert_eq!(req.headers["urgency"], "high");
    assert!(req.headers["ttl"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    assert!(req.headers["topic"].len() <= 32);
    // VAPID: the JWT verifies with k, which is the relay's key, for the push service's origin.
    let auth_header = req.headers["authorization"].to_str().unwrap();
    let (jwt, k) = auth_header
        .strip_prefix("vapid t=")
        .unwrap()
        .split_once(", k=")
        .unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.decode(k).unwrap(),
        ece::public_bytes(&vapid.public_key())
    );
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    use p256::ecdsa::signature::Verifier;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(k).unwrap())
        .unwrap()
        .verify(
            input.as_bytes(),
            &p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap(),
        )
        .expect("VAPID signature");
    let claims = decode_part(jwt, 1);
    assert_eq!(claims["aud"], wp.url);
    assert_eq!(claims["sub"], "mailto:ops@example.org");
    // The user agent decrypts a content-free wake-up.
    let plain = ece::decrypt(&ua, &auth, &req.body).expect("decrypts as the user agent");
    assert_eq!(
        serde_json::from_slice::<Value>(&plain).unwrap(),
        json!({"type": "wake", "priority": "high"})
    );
    h.wait_status(&id, "sent").await;

    // 410 Gone removes the subscription.
    wp.set_default(Reply::status(410));
    let id = h.accepted(&token).await;
    h.wait_status(&id, "failed").await;
    let r = h
        .http
        .get(h.url(&format!("/api/v1/device/webpush/{device}/")))
        .header("Authorization", format!("Token {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn remote_tokens_are_forwarded_to_their_relay() {
    let dir_b = tempfile::tempdir().unwrap();
    let dir_a = tempfile::tempdir().unwrap();
    let mut up = StandIn::start(Reply::status(201)).await;
    // A's forwards are signed; B accepts them only with A's key pinned (tests/federation.rs).
    let (a_key_file, a_public) = common::federation_key(&dir_a, "federation.pem");
    let b = Harness::start(&sqlite_url(&dir_b), no_local(), true, |c| {
        c.federation
            .peer_keys
            .insert("relay-a.example".into(), a_public);
    })
    .await;
    let key = b.account("remote").await;
    up_device(&b, &key, &up, "/up/remote").await;
    let token = b.token(&key, json!({})).await;
    let b_endpoint = b.url("/api/v1/messages/");
    let peer = b_endpoint.clone();
    let a = Harness::start(&sqlite_url(&dir_a), no_local(), true, |c| {
        c.federation.peers = vec![peer];
        c.federation.domain = "relay-a.example".into();
        c.federation.key_file = a_key_file;
    })
    .await;

    let note = |token: &str, endpoint: &str| Notification {
        token: token.to_string(),
        endpoint: Some(endpoint.to_string()),
        priority: Priority::High,
        data: None,
        sender: Some("example.org".into()),
        origin: None,
    };
    let ticket = a.relay.submit(note(&token, &b_endpoint)).await.unwrap();
    assert_eq!(ticket.deliveries, 1);
    let got = up.next().await;
    assert_eq!(got.path, "/up/remote");
    let status = a.wait_status(&ticket.message_id, "sent").await;
    assert!(
        !status.to_string().contains("/up/remote"),
        "no device endpoint leaks to the forwarder"
    );

    // Revoked at B: the forward is "gone" at A.
    let r = b
        .http
        .delete(b.url(&format!("/api/v1/tokens/{token}/")))
        .header("Authorization", format!("Token {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let ticket = a.relay.submit(note(&token, &b_endpoint)).await.unwrap();
    let status = a.wait_status(&ticket.message_id, "failed").await;
    assert!(
        status["deliveries"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("gone:")
    );

    // Not a configured peer: refused, nothing queued.
    let refused = a
        .relay
        .submit(note(&token, "http://127.0.0.1:9/api/v1/messages/"))
        .await;
    assert!(matches!(refused, Err(RelayError::ForwardNotAllowed)));
    // Health checks.
    assert!(a.relay.check_peer(&b.base).await.unwrap());
    assert!(!a.relay.check_peer("http://127.0.0.1:9").await.unwrap());
}

#[tokio::test]
async fn wake_account_wakes_a_local_users_devices_without_content() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = StandIn::start(Reply::status(201)).await;
    let local = TestAccounts(HashMap::from([(
        "alice@example.org".to_string(),
        "pw".to_string(),
    )]));
    let h = Harness::start(&sqlite_url(&dir), Arc::new(local), true, |_| {}).await;
    let key = h.account_with_password("alice@example.org", "pw").await;
    up_device(&h, &key, &up, "/up/alice").await;
    assert_eq!(h.relay.wake_account("alice@example.org").await.unwrap(), 1);
    let got = up.next().await;
    assert_eq!(
        serde_json::from_slice::<Value>(&got.body).unwrap(),
        json!({"type": "wake", "priority": "high"})
    );
    assert_eq!(h.relay.wake_account("nobody@example.org").await.unwrap(), 0);
    let audit = h.audit(&key).await;
    assert_eq!(audit[0]["sender"], "server");
}

/// The server's wake-ups are claimed by the wake-up batch itself and handed to the senders
/// (`relay/src/handoff.rs`), beside the workers' own claims: each is still sent once, and recorded
/// sent after one attempt, on both backends' SQL (SQLite here; PostgreSQL shares the statements'
/// contract, `claim_ids`).
#[tokio::test]
async fn handed_over_wake_ups_are_sent_once_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = StandIn::start(Reply::status(201)).await;
    let (h, users) = harness_with_users(&dir, 12).await;
    let mut keys = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let key = h.account_with_password(user, "pw").await;
        up_device(&h, &key, &up, &format!("/up/{i}")).await;
        keys.push(key);
    }
    let mut waking = Vec::new();
    for user in users.clone() {
        let h = Arc::clone(&h);
        waking.push(tokio::spawn(async move {
            h.relay.wake_account(&user).await.unwrap()
        }));
    }
    for handle in waking {
        assert_eq!(handle.await.unwrap(), 1);
    }
    let mut paths = Vec::new();
    for _ in 0..users.len() {
        paths.push(up.next().await.path);
    }
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), users.len(), "a device woken twice: {paths:?}");
    // Each user's one message, as its audit line names it: sent, after a single attempt.
    for key in &keys {
        let audit = h.audit(key).await;
        let id = audit[0]["message_id"].as_str().unwrap().to_string();
        let status = h.wait_status(&id, "sent").await;
        assert_eq!(status["deliveries"][0]["attempts"], 1, "{status}");
    }
}

/// A stand-in for APNs at the `PushBackend` boundary (a2 cannot reach a local server).
struct MockApns {
    sent: tokio::sync::mpsc::UnboundedSender<(String, bool, herald_relay::backends::Push)>,
    outcome: std::sync::Mutex<herald_relay::backends::SendOutcome>,
}

#[async_trait::async_trait]
impl herald_relay::backends::PushBackend for MockApns {
    async fn send(
        &self,
        device: &herald_storage::relay::Device,
        push: &herald_relay::backends::Push,
    ) -> herald_relay::backends::SendOutcome {
        let _ = self
            .sent
            .send((device.token.clone(), device.apns_sandbox, push.clone()));
        self.outcome.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn apns_devices_go_through_the_outbox_and_410_removes_them() {
    use herald_relay::backends::SendOutcome;
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mock = Arc::new(MockApns {
        sent: tx,
        outcome: std::sync::Mutex::new(SendOutcome::Sent),
    });
    let backend = mock.clone();
    let h = Harness::start_with(
        &sqlite_url(&dir),
        no_local(),
        true,
        |_| {},
        |b| b.apns = Some(backend),
    )
    .await;
    let key = h.account("iphone").await;
    let device = h
        .device(
            &key,
            "apns",
            json!({"registration_id": "<0a0b 0c0d>", "sandbox": true, "topic": "org.example.chat"}),
        )
        .await;
    let token = h.token(&key, json!({"apns_device": device})).await;
    let r = h
        .http
        .post(h.url("/api/v1/messages/"))
        .json(&json!({"token": token, "priority": "low", "data": "opaque"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (apns_token, sandbox, push) = rx.recv().await.unwrap();
    assert_eq!(apns_token, "0a0b0c0d");
    assert!(sandbox);
    assert_eq!(push.priority, Priority::Low);
    assert_eq!(push.data.as_deref(), Some("opaque"));
    h.wait_status(&id, "sent").await;

    *mock.outcome.lock().unwrap() = SendOutcome::Gone("apns 410 Unregistered".into());
    let id = h.accepted(&token).await;
    rx.recv().await.unwrap();
    let status = h.wait_status(&id, "failed").await;
    assert_eq!(
        status["deliveries"][0]["reason"],
        "gone: apns 410 Unregistered"
    );
    assert_eq!(
        h.post_message(&token, "high").await.status(),
        404,
        "its only device is gone"
    );
}

/// A `MakeWriter` into a shared buffer, to read what the relay logged.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("herald_relay=trace")
        .with_writer(logs.clone())
        .finish();
    // Current-thread test runtime: the relay's tasks run on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let mut up = StandIn::start(Reply::status(410)).await;
    let h = Harness::start(&sqlite_url(&dir), no_local(), true, |_| {}).await;
    let key = h.account("quiet").await;
    let device = up_device(&h, &key, &up, "/up/secret-endpoint-path").await;
    let token = h.token(&key, json!({})).await;
    let id = h.accepted(&token).await;
    up.next().await;
    h.wait_status(&id, "failed").await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The gone device was logged (by id), and nothing secret was.
    assert!(
        text.contains(&device),
        "expected a log line about the removed device: {text}"
    );
    for secret in [token.as_str(), key.as_str(), "secret-endpoint-path"] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the logs: {text}"
        );
    }
}

/// Wake-ups arriving together are written in batches (`wake.rs`): each caller still gets its own
/// count, and every device of every account is woken exactly once.
#[tokio::test]
async fn concurrent_wake_ups_each_get_their_own_answer_and_every_device_is_woken() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = StandIn::start(Reply::status(201)).await;
    let (h, users) = harness_with_users(&dir, 40).await;
    for (i, user) in users.iter().enumerate() {
        let key = h.account_with_password(user, "pw").await;
        // Even users have two devices, odd users one.
        up_device(&h, &key, &up, &format!("/up/{i}/a")).await;
        if i % 2 == 0 {
            up_device(&h, &key, &up, &format!("/up/{i}/b")).await;
        }
    }
    let mut waking = Vec::new();
    for user in users
        .iter()
        .cloned()
        .chain(["nobody@example.org".to_string()])
    {
        let h = Arc::clone(&h);
        waking.push(tokio::spawn(async move {
            (user.clone(), h.relay.wake_account(&user).await.unwrap())
        }));
    }
    for handle in waking {
        let (user, devices) = handle.await.unwrap();
        let want = match user
            .strip_prefix("user")
            .and_then(|rest| rest.split('@').next())
        {
            Some(n) if n.parse::<usize>().unwrap() % 2 == 0 => 2,
            Some(_) => 1,
            None => 0,
        };
        assert_eq!(devices, want, "{user}");
    }
    let mut paths = Vec::new();
    for _ in 0..60 {
        paths.push(up.next().await.path);
    }
    paths.sort();
    let mut want: Vec<String> = (0..40)
        .flat_map(|i| {
            let mut p = vec![format!("/up/{i}/a")];
            if i % 2 == 0 {
                p.push(format!("/up/{i}/b"));
            }
            p
        })
        .collect();
    want.sort();
    assert_eq!(paths, want);
}

/// A relay on SQLite in `dir` whose server knows `count` users, `user{i}@example.org` with password
/// `pw`, all of which may create a relay account from one address within a second.
async fn harness_with_users(dir: &tempfile::TempDir, count: usize) -> (Arc<Harness>, Vec<String>) {
    let users: Vec<String> = (0..count).map(|i| format!("user{i}@example.org")).collect();
    let local = TestAccounts(
        users
            .iter()
            .map(|u| (u.clone(), "pw".to_string()))
            .collect(),
    );
    let h = Harness::start(&sqlite_url(dir), Arc::new(local), true, |c| {
        c.limits.account_attempts = 1000;
    })
    .await;
    (Arc::new(h), users)
}
