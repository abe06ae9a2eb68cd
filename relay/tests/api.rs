//! The HTTP API over real HTTP: ChatSecure compatibility (paths with and without trailing slash,
//! JSON / form / multipart bodies, status codes, field shapes, date format) and Herald's additions
//! (token scope, revocation, sender binding, rate limits, key rotation, audit trail, local accounts).

// Test helpers outside #[test] functions unwrap too: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Harness, TestAccounts, sqlite_url};
use serde_json::{Value, json};

async fn harness() -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let local = TestAccounts(HashMap::from([(
        "alice@example.org".to_string(),
        "xmpp-secret".to_string(),
    )]));
    let h = Harness::start(&sqlite_url(&dir), Arc::new(local), false, |_| {}).await;
    (h, dir)
}

fn is_hex40(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `%Y-%m-%dT%H:%M:%S.%6fZ`, which the ChatSecure iOS SDK parses exactly.
fn is_chatsecure_date(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[26] == b'Z'
        && b[20..26].iter().all(u8::is_ascii_digit)
}

#[tokio::test]
async fn account_create_and_login_in_every_body_format() {
    let (h, _dir) = harness().await;
    // JSON create: 200 (not 201), every value a string, email "" when absent.
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .json(&json!({"username": "A1B2C3", "password": "p".repeat(100)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let obj = v.as_object().unwrap();
    assert!(obj.values().all(Value::is_string), "{v}");
    assert_eq!(v["username"], "A1B2C3");
    assert_eq!(v["email"], "");
    assert!(is_hex40(v["token"].as_str().unwrap()));
    let key1 = v["token"].as_str().unwrap().to_string();

    // Login with the right password (form body, no trailing slash): 200, a working key.
    let r = h
        .http
        .post(h.url("/api/v1/accounts"))
        .form(&[("username", "A1B2C3"), ("password", &"p".repeat(100))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let key2 = v["token"].as_str().unwrap().to_string();
    assert_ne!(key1, key2);
    for key in [&key1, &key2] {
        let r = h
            .http
            .get(h.url("/api/v1/accounts/"))
            .header("Authorization", format!("Token {key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let me: Value = r.json().await.unwrap();
        assert_eq!(me["username"], "A1B2C3");
        assert!(me.get("token").is_none());
    }

    // Wrong password: 401 with ChatSecure's message.
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .json(&json!({"username": "A1B2C3", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Invalid credentials"})
    );

    // Multipart create (RubDub's format) with an email; a second account with that email is refused.
    let form = reqwest::multipart::Form::new()
        .text("username", "multi")
        .text("password", "secret-1")
        .text("email", "m@example.net");
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["email"], "m@example.net");
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .json(&json!({"username": "other", "password": "x", "email": "m@example.net"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "An account with that email address already exists."
    );

    // Validation: missing password, over-long username, a relay-only name with `@`.
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .json(&json!({"username": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["password"].is_array());
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .json(&json!({"username": "u".repeat(31), "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .json(&json!({"username": "bob@example.org", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Malformed JSON is a 400 with a JSON error body.
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn local_xmpp_accounts_log_in_with_their_xmpp_password() {
    let (h, _dir) = harness().await;
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .json(&json!({"username": "alice@example.org", "password": "xmpp-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "alice@example.org");
    assert_eq!(v["username"], "alice@example.org");
    assert!(is_hex40(v["token"].as_str().unwrap()));
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .json(&json!({"username": "alice@example.org", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn devices_chatsecure_shape_and_ownership() {
    let (h, _dir) = harness().await;
    let key = h.account("owner").await;
    let other = h.account("other").await;
    let auth = format!("Token {key}");
    // Form body as the Android SDK sends; spaces stripped from the APNs token.
    let r = h
        .http
        .post(h.url("/api/v1/device/apns/"))
        .header("Authorization", &auth)
        .form(&[
            ("registration_id", "ABCD ef01 2345"),
            ("name", "iPhone"),
            ("device_id", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let d: Value = r.json().await.unwrap();
    for field in [
        "name",
        "id",
        "active",
        "registration_id",
        "device_id",
        "date_created",
    ] {
        assert!(d.get(field).is_some(), "missing {field} in {d}");
    }
    assert_eq!(d["registration_id"], "abcdef012345");
    assert_eq!(d["active"], true);
    assert!(
        is_chatsecure_date(d["date_created"].as_str().unwrap()),
        "{d}"
    );
    let id = d["id"].as_str().unwrap().to_string();

    // PUT with a new token (what the app does on every new APNs token).
    let r = h
        .http
        .put(h.url(&format!("/api/v1/device/apns/{id}/")))
        .header("Authorization", &auth)
        .json(&json!({"registration_id": "ffff"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["registration_id"], "ffff");
    let list: Value = h
        .http
        .get(h.url("/api/v1/device/apns/"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    // FCM under ChatSecure's gcm path.
    h.device(&key, "gcm", json!({"registration_id": "fcm-token-1"}))
        .await;
    let gcm: Value = h
        .http
        .get(h.url("/api/v1/device/gcm"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(gcm[0]["registration_id"], "fcm-token-1");

    // Someone else's device does not exist for them; anonymous is 401; bad tokens 400.
    let r = h
        .http
        .get(h.url(&format!("/api/v1/device/apns/{id}/")))
        .header("Authorization", format!("Token {other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = h
        .http
        .post(h.url("/api/v1/device/apns/"))
        .json(&json!({"registration_id": "ab"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .http
        .post(h.url("/api/v1/device/apns/"))
        .header("Authorization", &auth)
        .json(&json!({"registration_id": "not-hex"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .http
        .post(h.url("/api/v1/device/webpush/"))
        .header("Authorization", &auth)
        .json(&json!({"endpoint": "http://x/", "p256dh": "AAAA", "auth": "AAAA"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .http
        .post(h.url("/api/v1/device/nosuch/"))
        .header("Authorization", &auth)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let r = h
        .http
        .delete(h.url(&format!("/api/v1/device/apns/{id}/")))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = h
        .http
        .get(h.url(&format!("/api/v1/device/apns/{id}/")))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn tokens_are_shown_once_scoped_listed_and_revoked() {
    let (h, _dir) = harness().await;
    let key = h.account("tok").await;
    let auth = format!("Token {key}");
    let apns = h
        .device(&key, "apns", json!({"registration_id": "aa"}))
        .await;
    let gcm = h.device(&key, "gcm", json!({"registration_id": "g"})).await;
    let r = h
        .http
        .post(h.url("/api/v1/tokens/"))
        .header("Authorization", &auth)
        .json(&json!({"apns_device": apns, "name": "srv"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    let secret = t["token"].as_str().unwrap().to_string();
    assert!(is_hex40(&secret));
    assert_eq!(t["apns_device"], apns.as_str());
    assert!(
        t.get("gcm_device").is_none(),
        "null fields are omitted: {t}"
    );
    assert!(is_chatsecure_date(t["date_expires"].as_str().unwrap()));
    assert_eq!(t["endpoint"], h.url("/api/v1/messages/"));

    // Both devices: ChatSecure's error.
    let r = h
        .http
        .post(h.url("/api/v1/tokens/"))
        .header("Authorization", &auth)
        .json(&json!({"apns_device": apns, "gcm_device": gcm}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"non_field_errors": ["Only one APNS or one GCM device may be specified"]})
    );
    // A device of another kind under apns_device is unknown.
    let r = h
        .http
        .post(h.url("/api/v1/tokens/"))
        .header("Authorization", &auth)
        .json(&json!({"apns_device": gcm}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The list never shows secrets.
    let list: Value = h
        .http
        .get(h.url("/api/v1/tokens/"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("token").is_none());
    assert!(!list.to_string().contains(&secret));
    let id = list[0]["id"].as_str().unwrap().to_string();

    // Messages go through until the token is revoked (by its secret, ChatSecure's way), then 404.
    assert_eq!(h.post_message(&secret, "high").await.status(), 202);
    let r = h
        .http
        .delete(h.url(&format!("/api/v1/tokens/{secret}/")))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(h.post_message(&secret, "high").await.status(), 404);
    let one: Value = h
        .http
        .get(h.url(&format!("/api/v1/tokens/{id}/")))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(one.get("date_revoked").is_some());

    // An expired token is refused at send time.
    let expired = h.token(&key, json!({"expires_in": 0})).await;
    assert_eq!(h.post_message(&expired, "high").await.status(), 404);
}

#[tokio::test]
async fn messages_echo_validate_and_reject() {
    let (h, _dir) = harness().await;
    let key = h.account("msg").await;
    h.device(&key, "gcm", json!({"registration_id": "g"})).await;
    let token = h.token(&key, json!({})).await;
    // ChatSecure echo with nulls for absent optionals, plus the message id.
    let r = h
        .http
        .post(h.url("/api/v1/messages/"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token"], token.as_str());
    assert_eq!(v["data"], Value::Null);
    assert_eq!(v["priority"], Value::Null);
    let id = v["id"].as_str().unwrap();
    // Queued (no workers run here): accepted.
    assert_eq!(h.status(id).await["status"], "accepted");

    // Multipart, as RubDub posts.
    let form = reqwest::multipart::Form::new()
        .text("token", token.clone())
        .text("priority", "high");
    let r = h
        .http
        .post(h.url("/api/v1/messages"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["priority"], "high");

    let bad = [
        json!({}),
        json!({"token": token, "data": "d".repeat(101)}),
        json!({"token": token, "priority": "urgent"}),
        json!({"token": "t".repeat(201)}),
    ];
    for body in bad {
        let r = h
            .http
            .post(h.url("/api/v1/messages/"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert!(r.json::<Value>().await.unwrap().is_object());
    }
    assert_eq!(
        h.post_message("0123456789abcdef0123456789abcdef01234567", "high")
            .await
            .status(),
        404
    );
    // Oversized bodies are refused before parsing.
    let r = h
        .http
        .post(h.url("/api/v1/messages/"))
        .json(&json!({"token": "x".repeat(20_000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Unknown message ids.
    let r = h
        .http
        .get(h.url("/api/v1/messages/nope/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn flood_gets_429_with_retry_after_and_is_audited() {
    let (h, _dir) = harness().await;
    let key = h.account("flood").await;
    h.device(&key, "gcm", json!({"registration_id": "g"})).await;
    let token = h.token(&key, json!({"rate_per_minute": 3})).await;
    for _ in 0..3 {
        assert_eq!(h.post_message(&token, "high").await.status(), 202);
    }
    for _ in 0..3 {
        let r = h.post_message(&token, "high").await;
        assert_eq!(r.status(), 429);
        let secs: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&secs), "retry-after {secs}");
    }
    let audit = h.audit(&key).await;
    let outcomes: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    // One audit line for the flood, not one per refused request; newest first.
    assert_eq!(
        outcomes,
        ["rate-limited", "accepted", "accepted", "accepted"]
    );
    assert!(
        !audit.to_string().contains(&token),
        "the audit trail never shows the token"
    );
    // Another account cannot read it.
    let other = h.account("reader").await;
    let theirs = h.audit(&other).await;
    assert_eq!(theirs, json!([]));
}

#[tokio::test]
async fn sender_binding_is_enforced() {
    let (h, _dir) = harness().await;
    let key = h.account("bound").await;
    h.device(&key, "gcm", json!({"registration_id": "g"})).await;
    let token = h.token(&key, json!({"sender": "example.org"})).await;
    // Anonymous: forbidden.
    assert_eq!(h.post_message(&token, "high").await.status(), 403);
    // A local account of example.org posting with its key is the bound sender.
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .json(&json!({"username": "alice@example.org", "password": "xmpp-secret"}))
        .send()
        .await
        .unwrap();
    let alice: Value = r.json().await.unwrap();
    let r = h
        .http
        .post(h.url("/api/v1/messages/"))
        .header(
            "Authorization",
            format!("Token {}", alice["token"].as_str().unwrap()),
        )
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Through the library API, the server passes the s2s-verified domain.
    let t = h
        .relay
        .submit(herald_relay::Notification {
            token: token.clone(),
            endpoint: None,
            priority: herald_relay::Priority::High,
            data: None,
            sender: Some("evil.example".into()),
            origin: None,
        })
        .await;
    assert!(matches!(t, Err(herald_relay::RelayError::SenderNotAllowed)));
}

#[tokio::test]
async fn key_rotation_and_account_deletion() {
    let (h, _dir) = harness().await;
    let key = h.account("rot").await;
    let r = h
        .http
        .post(h.url("/api/v1/accounts/rot/rotate_key/"))
        .header("Authorization", format!("Token {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let new_key = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = h
        .http
        .get(h.url("/api/v1/accounts/"))
        .header("Authorization", format!("Token {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let auth = format!("Token {new_key}");
    let r = h
        .http
        .get(h.url("/api/v1/accounts/rot/"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Someone else's account is not found; deleting one's own is 204 and cascades.
    h.account("someone").await;
    let r = h
        .http
        .get(h.url("/api/v1/accounts/someone/"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    h.device(&new_key, "gcm", json!({"registration_id": "g"}))
        .await;
    let token = h.token(&new_key, json!({})).await;
    let r = h
        .http
        .delete(h.url("/api/v1/accounts/rot/"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = h
        .http
        .get(h.url("/api/v1/accounts/"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(h.post_message(&token, "high").await.status(), 404);
}

#[tokio::test]
async fn info_endpoints_and_errors_are_never_200() {
    let (h, _dir) = harness().await;
    let v: Value = h
        .http
        .get(h.url("/api/v1/pubsub/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"jid": "push.example.org"}));
    let root: Value = h
        .http
        .get(h.url("/api/v1/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["messages"], h.url("/api/v1/messages/"));
    // No VAPID key here: no Web Push.
    let r = h
        .http
        .get(h.url("/api/v1/webpush/vapid/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let health: Value = h
        .http
        .get(h.url("/api/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let r = h.http.get(h.url("/api/v2/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = h
        .http
        .delete(h.url("/api/v1/messages/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = h.http.get(h.url("/api/v1/accounts/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .http
        .get(h.url("/api/v1/accounts/"))
        .header("Authorization", "Token 0000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
