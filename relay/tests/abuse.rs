//! What a misbehaving or former user cannot do to the relay, over real HTTP: keep using the relay
//! account of a deleted XMPP account, satisfy a domain binding with a relay-only account named like
//! the domain, or turn refused posts into unlimited database writes.

// Test helpers outside #[test] functions unwrap too: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Harness, TestAccounts, sqlite_url};
use herald_storage::Storage;
use serde_json::{Value, json};

const ALICE: &str = "alice@example.org";
const ALICE_PASSWORD: &str = "xmpp-secret";

async fn harness() -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let local = TestAccounts(HashMap::from([(
        ALICE.to_string(),
        ALICE_PASSWORD.to_string(),
    )]));
    let h = Harness::start(&sqlite_url(&dir), Arc::new(local), false, |_| {}).await;
    (h, dir)
}

async fn get(h: &Harness, key: &str, path: &str) -> reqwest::Response {
    h.http
        .get(h.url(path))
        .header("Authorization", format!("Token {key}"))
        .send()
        .await
        .unwrap()
}

/// The caller's audit trail as (token id, outcome) pairs, newest first.
async fn audit_lines(h: &Harness, key: &str) -> Vec<(String, String)> {
    let audit: Value = get(h, key, "/api/v1/audit/?limit=500")
        .await
        .json()
        .await
        .unwrap();
    audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["token_id"].as_str().unwrap_or_default().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Finding: deleting an XMPP account left its relay account, API keys, devices and tokens behind,
/// and whoever registered the same JID next inherited them.
#[tokio::test]
async fn deleting_the_xmpp_account_deletes_its_relay_account() {
    let (h, dir) = harness().await;
    let old_key = h.account_with_password(ALICE, ALICE_PASSWORD).await;
    h.device(&old_key, "gcm", json!({"registration_id": "old-phone"}))
        .await;
    let old_token = h.token(&old_key, json!({})).await;
    assert_eq!(h.post_message(&old_token, "high").await.status(), 202);

    // `herald user del` and in-band removal both end in this call.
    let storage = Storage::connect(&sqlite_url(&dir)).await.unwrap();
    storage.accounts.delete(ALICE).await.unwrap();

    assert_eq!(
        get(&h, &old_key, "/api/v1/accounts/").await.status(),
        401,
        "the deleted account's API key still works"
    );
    assert_eq!(
        h.post_message(&old_token, "high").await.status(),
        404,
        "the deleted account's whitelist token still wakes its devices"
    );
    // The next owner of the JID starts empty.
    let new_key = h.account_with_password(ALICE, ALICE_PASSWORD).await;
    let devices: Value = get(&h, &new_key, "/api/v1/device/gcm/")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        devices,
        json!([]),
        "the previous owner's devices were inherited"
    );
    let tokens: Value = get(&h, &new_key, "/api/v1/tokens/")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        tokens,
        json!([]),
        "the previous owner's tokens were inherited"
    );
    assert!(audit_lines(&h, &new_key).await.is_empty());
}

/// Finding: a relay-only account named like a domain (dots are allowed in its name) satisfied a
/// token bound to that domain by posting with its own API key.
#[tokio::test]
async fn a_relay_only_account_named_like_a_domain_is_not_that_domain() {
    let (h, _dir) = harness().await;
    let owner = h.account("owner").await;
    h.device(&owner, "gcm", json!({"registration_id": "g"}))
        .await;
    // A relay-only account cannot take a domain's name at all.
    let r = h
        .http
        .post(h.url("/api/v1/accounts/"))
        .json(&json!({"username": "example.org", "password": "pw-123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "a relay-only account was named like a domain"
    );
    // Nor does one named like a dotless domain satisfy a binding to it.
    let dotless = h.token(&owner, json!({"sender": "example"})).await;
    let impostor = h.account("example").await;
    let r = h
        .http
        .post(h.url("/api/v1/messages/"))
        .header("Authorization", format!("Token {impostor}"))
        .json(&json!({"token": dotless}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "a relay-only account satisfied a domain binding"
    );
    let token = h.token(&owner, json!({"sender": "example.org"})).await;
    let r = h
        .http
        .post(h.url("/api/v1/messages/"))
        .header("Authorization", format!("Token {impostor}"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "a relay-only account satisfied a domain binding"
    );
    // A JID binding cannot be claimed either (relay-only names have no `@`, but a JID-shaped
    // binding must need the server-verified JID).
    let jid_token = h.token(&owner, json!({"sender": ALICE})).await;
    let r = h
        .http
        .post(h.url("/api/v1/messages/"))
        .header("Authorization", format!("Token {impostor}"))
        .json(&json!({"token": jid_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The domain's own verified identity still gets through: a local account of example.org.
    let alice = h.account_with_password(ALICE, ALICE_PASSWORD).await;
    let r = h
        .http
        .post(h.url("/api/v1/messages/"))
        .header("Authorization", format!("Token {alice}"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// Posts `token` `n` times anonymously; returns how many answers had each status.
async fn flood(h: &Harness, token: &str, n: usize) -> HashMap<u16, usize> {
    let mut statuses = HashMap::new();
    for _ in 0..n {
        let status = h.post_message(token, "high").await.status().as_u16();
        *statuses.entry(status).or_insert(0) += 1;
    }
    statuses
}

/// Finding: refusals of revoked, expired or sender-mismatched tokens came before any rate limit,
/// and each wrote an audit row, so anyone could force unlimited database writes with a token of
/// their own.
#[tokio::test]
async fn refused_posts_are_rate_limited_and_audited_once() {
    let (h, _dir) = harness().await;
    let key = h.account("writer").await;
    h.device(&key, "gcm", json!({"registration_id": "g"})).await;

    let revoked = h.token(&key, json!({})).await;
    let r = h
        .http
        .delete(h.url(&format!("/api/v1/tokens/{revoked}/")))
        .header("Authorization", format!("Token {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let started = std::time::Instant::now();
    let statuses = flood(&h, &revoked, 1_000).await;
    // The burst, plus what the bucket refilled (per_token a minute) while the flood ran.
    let per_token = u64::from(h.relay.config().limits.per_token);
    let refilled = started.elapsed().as_secs() * per_token / 60 + 1;
    let allowed = usize::try_from(per_token + refilled).unwrap();
    assert!(
        statuses.get(&404).copied().unwrap_or(0) <= allowed,
        "refusals are not rate limited: {statuses:?}"
    );
    assert!(
        statuses.get(&429).copied().unwrap_or(0) >= 1_000 - allowed,
        "{statuses:?}"
    );

    let bound = h.token(&key, json!({"sender": "example.org"})).await;
    let statuses = flood(&h, &bound, 200).await;
    assert!(statuses.contains_key(&429), "{statuses:?}");

    let lines = audit_lines(&h, &key).await;
    // One line per token and outcome, however many requests were refused.
    let mut distinct = lines.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        lines.len(),
        distinct.len(),
        "repeated refusals each wrote an audit row ({} rows)",
        lines.len()
    );
    let outcomes: Vec<&str> = lines.iter().map(|(_, o)| o.as_str()).collect();
    assert!(outcomes.contains(&"revoked"), "{outcomes:?}");
    assert!(outcomes.contains(&"sender-mismatch"), "{outcomes:?}");
}

/// Same class as the audit finding: creating and revoking tokens in a loop left a row per token
/// forever (only live tokens were capped), so an account could grow the database without end.
#[tokio::test]
async fn revoked_tokens_do_not_pile_up() {
    let max = 5;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(
        &sqlite_url(&dir),
        Arc::new(TestAccounts::default()),
        false,
        |c| c.limits.max_tokens_per_account = max,
    )
    .await;
    let key = h.account("churn").await;
    for _ in 0..(4 * max) {
        let secret = h.token(&key, json!({})).await;
        let r = h
            .http
            .delete(h.url(&format!("/api/v1/tokens/{secret}/")))
            .header("Authorization", format!("Token {key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let tokens: Value = get(&h, &key, "/api/v1/tokens/").await.json().await.unwrap();
    let kept = tokens.as_array().unwrap().len();
    // At most `max` revoked ones kept as history, plus the one revoked last.
    assert!(
        kept <= max + 1,
        "{kept} tokens kept for an account allowed {max} live ones"
    );
}
