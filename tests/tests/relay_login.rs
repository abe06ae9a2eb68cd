//! The hosted relay's HTTP login and XMPP SASL share one failed-login throttle (finding 4): guesses on
//! either path lock the account on both, so the relay is no side door around RFC 6120 section 13.5.
#![allow(clippy::unwrap_used)]

use herald_tests::{PASSWORD, TestClient, TestServer};
use serde_json::json;

async fn server_with_relay() -> TestServer {
    let server = TestServer::builder()
        .env("HERALD_RELAY__ENABLED", "true")
        .env("HERALD_RELAY__LISTEN", "127.0.0.1:0")
        .start()
        .await;
    server.add_user("alice").await;
    server.add_user("bob").await;
    server
}

async fn relay_login(server: &TestServer, username: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/accounts/",
            server.relay_address()
        ))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn xmpp_failures_lock_the_relay_login() {
    let server = server_with_relay().await;
    assert_eq!(relay_login(&server, "bob@localhost", PASSWORD).await, 200);
    let mut client = TestClient::connect_starttls(&server).await;
    for _ in 0..5 {
        assert_eq!(
            client.auth_plain("alice", "guess").await,
            Err("not-authorized".into())
        );
    }
    assert_eq!(relay_login(&server, "alice@localhost", PASSWORD).await, 429);
}

#[tokio::test]
async fn relay_failures_lock_the_xmpp_login() {
    let server = server_with_relay().await;
    for _ in 0..5 {
        // A differently written name is the same account.
        assert_eq!(relay_login(&server, "Alice@LOCALHOST", "guess").await, 401);
    }
    let mut client = TestClient::connect_starttls(&server).await;
    assert_eq!(
        client.auth_plain("alice", PASSWORD).await,
        Err("temporary-auth-failure".into())
    );
}

/// Honest relay logins from one address at once (a NAT, a provisioning script, the push benchmark) are not
/// checks the throttle should refuse: the reservation covers only the password check itself, not the
/// account lookup before it, so 60 right-password logins in flight all succeed although the address may
/// have only 20 checks in flight or failed.
#[tokio::test]
async fn many_honest_relay_logins_at_once_are_not_throttled() {
    let server = server_with_relay().await;
    let url = format!("http://{}/api/v1/accounts/", server.relay_address());
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let url = url.clone();
        logins.spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({"username": "bob@localhost", "password": PASSWORD}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = logins.join_next().await {
        statuses.push(status.unwrap());
    }
    let refused = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(refused, 0, "statuses: {statuses:?}");
}
