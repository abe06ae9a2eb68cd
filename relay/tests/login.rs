//! The relay's password login (`POST /api/v1/accounts/`) and the failed-login throttle: failures are
//! limited per account as well as per address, the throttle is the relay's shared one, and behind a
//! trusted reverse proxy each client is counted by the address the proxy names.

// Test helpers outside #[test] functions unwrap too: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Harness, TestAccounts, sqlite_url};
use herald_relay::RelayConfig;
use serde_json::json;

async fn harness(edit: impl FnOnce(&mut RelayConfig)) -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let local = TestAccounts(HashMap::from([(
        "alice@example.org".to_string(),
        "xmpp-secret".to_string(),
    )]));
    let h = Harness::start(&sqlite_url(&dir), Arc::new(local), false, edit).await;
    (h, dir)
}

async fn login(h: &Harness, username: &str, password: &str, forwarded: Option<&str>) -> u16 {
    let mut request = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .json(&json!({"username": username, "password": password}));
    if let Some(address) = forwarded {
        request = request.header("X-Forwarded-For", address);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Finding 4: five wrong passwords lock the account (as on XMPP), even for the right password, both for a
/// local XMPP account and for a relay-only account.
#[tokio::test]
async fn wrong_passwords_lock_the_account() {
    let (h, _dir) = harness(|_| {}).await;
    h.account_with_password("bob", "relay-secret").await;
    for (user, right) in [
        ("alice@example.org", "xmpp-secret"),
        ("bob", "relay-secret"),
    ] {
        for attempt in 0..5 {
            assert_eq!(
                login(&h, user, "guess", None).await,
                401,
                "{user} {attempt}"
            );
        }
        assert_eq!(login(&h, user, right, None).await, 429, "{user} is locked");
    }
}

/// Finding 4: the relay's throttle is the process's one throttle: failures counted elsewhere (here
/// directly, as the server's SASL does) lock the relay login too.
#[tokio::test]
async fn the_login_throttle_is_shared() {
    let (h, _dir) = harness(|_| {}).await;
    let throttle = h.relay.login_throttle();
    let now = std::time::Instant::now();
    for i in 0..5 {
        let address = format!("192.0.2.{i}").parse().unwrap();
        throttle
            .reserve(address, Some("alice@example.org"), now)
            .unwrap()
            .failed(now);
    }
    assert_eq!(
        login(&h, "alice@example.org", "xmpp-secret", None).await,
        429
    );
}

/// Finding 4: behind a trusted reverse proxy every request comes from the proxy's address; the
/// client named in X-Forwarded-For is counted instead, so one guesser does not lock everyone out.
#[tokio::test]
async fn behind_a_trusted_proxy_clients_are_counted_apart() {
    let (h, _dir) = harness(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.limits.account_attempts = 3;
    })
    .await;
    // One client guesses against many accounts until its address is refused (20 failures).
    let mut refused_at = None;
    for i in 0..40 {
        let status = login(
            &h,
            &format!("user{i}@example.org"),
            "guess",
            Some("203.0.113.7"),
        )
        .await;
        if status == 429 {
            refused_at = Some(i);
            break;
        }
        assert_eq!(status, 401);
    }
    assert_eq!(
        refused_at,
        Some(20),
        "the guesser is refused after its 20 failures"
    );
    // Another client behind the same proxy still logs in.
    assert_eq!(
        login(&h, "alice@example.org", "xmpp-secret", Some("198.51.100.4")).await,
        200
    );
    // More clients behind the proxy than one address's creation budget (3 a minute here) may create
    // accounts: each has its own budget.
    for i in 0..5 {
        let status = login(
            &h,
            &format!("new{i}"),
            "pw",
            Some(&format!("198.51.100.{}", 100 + i)),
        )
        .await;
        assert_eq!(status, 200, "creation {i}");
    }
}

/// Without trusted proxies the header is ignored: a client cannot dodge the throttle by naming
/// another address.
#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_address() {
    let (h, _dir) = harness(|_| {}).await;
    for i in 0..20 {
        let forwarded = format!("198.51.100.{i}");
        let status = login(
            &h,
            &format!("user{i}@example.org"),
            "guess",
            Some(&forwarded),
        )
        .await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        login(
            &h,
            "alice@example.org",
            "xmpp-secret",
            Some("203.0.113.200")
        )
        .await,
        429
    );
}

/// Finding 10's class: with registration closed, a relay-only name that does not exist answers exactly
/// like an existing one with a wrong password (401, after the same argon2 work), not 403 at once.
#[tokio::test]
async fn a_missing_name_answers_like_a_wrong_password_when_registration_is_closed() {
    let (h, dir) = harness(|c| c.allow_registration = false).await;
    // Created directly in storage: registration over HTTP is closed.
    let storage = herald_storage::Storage::connect(&sqlite_url(&dir))
        .await
        .unwrap();
    let bob = herald_storage::relay::RelayAccount {
        id: "bob-id".into(),
        username: "bob".into(),
        email: None,
        password_hash: Some(herald_relay::secrets::hash_password("relay-secret").unwrap()),
        is_local: false,
        created_at_ms: 0,
    };
    storage.relay_accounts.create(&bob).await.unwrap();
    assert_eq!(login(&h, "bob", "guess", None).await, 401);
    assert_eq!(login(&h, "nobody", "guess", None).await, 401);
}
