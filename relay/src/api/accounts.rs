//! `/api/v1/accounts/`: ChatSecure's create-or-login (ChatSecure-Push-Server's v1 API: 200 with an
//! all-string `{username, email, id, token}`), the caller's account, deletion (cascades to devices
//! and tokens), and API key rotation. Local XMPP accounts log in with their XMPP password through
//! [`crate::LocalAccounts`]; relay-only accounts use argon2 and names without `@`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use herald_storage::StorageError;
use herald_storage::relay::RelayAccount;
use serde_json::{Value, json};

use super::{ApiError, Caller, ClientAddr, Fields};
use crate::login_throttle::{Attempt, address_key};
use crate::secrets::{hash_password, hash_secret, new_secret, verify_password};
use crate::{Relay, now_ms};

/// API keys kept per account (each login adds one; the oldest are dropped).
const KEYS_PER_ACCOUNT: usize = 10;
/// ChatSecure's relay-only limits.
const MAX_USERNAME: usize = 30;
const MAX_PASSWORD: usize = 100;
const MAX_EMAIL: usize = 100;
/// Local accounts log in with a bare JID (RFC 7622: at most 3071 bytes) and their XMPP password.
const MAX_JID: usize = 3071;
const MAX_LOCAL_PASSWORD: usize = 1024;

fn public(a: &RelayAccount) -> Value {
    json!({"username": a.username, "email": a.email.clone().unwrap_or_default(), "id": a.id})
}

/// A name for a new relay-only account. No `@` and no `.`, so that no relay-only name can read as a JID or a
/// domain name and be taken for one (a token bound to `example.org` names that domain's server-verified
/// identity, never an account that happens to carry its name). Accounts created before this rule keep
/// their names and can still log in.
fn valid_relay_username(u: &str) -> bool {
    !u.is_empty()
        && u.chars().count() <= MAX_USERNAME
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_'))
}

async fn issue_key(relay: &Relay, a: &RelayAccount) -> Result<Json<Value>, ApiError> {
    let key = new_secret();
    relay
        .inner
        .storage
        .relay_accounts
        .add_api_key(&a.id, &hash_secret(&key), now_ms(), KEYS_PER_ACCOUNT)
        .await?;
    let mut body = public(a);
    body["token"] = Value::String(key);
    Ok(Json(body))
}

async fn check_password(password: String, phc: String) -> bool {
    // argon2 is deliberately slow: keep it off the async workers.
    tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .unwrap_or(false)
}

fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "Invalid credentials")
}

/// Reserves a password check in the shared failed-login throttle. Errors: 429 with Retry-After
/// (logged) while the address or the account is over its limit.
fn reserve(relay: &Relay, address: IpAddr, account: &str) -> Result<Attempt, ApiError> {
    relay
        .inner
        .login_throttle
        .reserve(address, Some(account), Instant::now())
        .map_err(|refused| {
            tracing::warn!(
                target: "herald::auth",
                client = %address,
                %account,
                limit = ?refused.key,
                retry_after_secs = refused.retry_after.as_secs(),
                "relay login refused: too many failed logins"
            );
            ApiError::from(crate::RelayError::RateLimited(refused.retry_after))
        })
}

impl Relay {
    /// An argon2 hash of a password nobody has, made on first use: a login to a missing relay-only
    /// name is checked against it so it costs what a wrong password costs.
    async fn unknown_account_hash(&self) -> Result<String, ApiError> {
        self.inner
            .unknown_account_hash
            .get_or_try_init(|| async {
                let secret = new_secret();
                tokio::task::spawn_blocking(move || hash_password(&secret))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or_else(|| {
                        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                    })
            })
            .await
            .cloned()
    }
}

/// One line per wrong password, shown by default, for the admin and fail2ban (never the password).
fn log_failed(address: IpAddr, account: &str) {
    tracing::info!(
        target: "herald::auth",
        client = %address,
        %account,
        "relay login failed: wrong password"
    );
}

/// `POST /api/v1/accounts/`: log in (existing account, right password) or create a relay-only account.
/// Every password check goes through the process's one failed-login throttle (shared with XMPP SASL):
/// 429 with Retry-After while the client address or the account is over its limit.
pub async fn create_or_login(
    State(relay): State<Relay>,
    client: ClientAddr,
    fields: Fields,
) -> Result<Json<Value>, ApiError> {
    let username = fields.required("username", MAX_JID)?;
    let password = fields.required("password", MAX_LOCAL_PASSWORD)?;
    let email = fields.limited("email", MAX_EMAIL)?;
    let inner = &relay.inner;
    let address = client.ip().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let accounts = &inner.storage.relay_accounts;

    // Local accounts are bare JIDs; names without `@` never reach the server's password check.
    if username.contains('@') {
        let check = inner
            .local
            .password_check(&username)
            .await
            .map_err(ApiError::from)?;
        // Reserved only around the check itself, which does no I/O (see `LocalAccounts`).
        let attempt = reserve(&relay, address, &inner.local.throttle_key(&username))?;
        let local = check.verify(&password);
        let Some(id) = local else {
            attempt.failed(Instant::now());
            log_failed(address, &username);
            // Names with `@` belong to local XMPP accounts.
            return Err(invalid_credentials());
        };
        attempt.succeeded();
        let account = match accounts.by_id(&id).await? {
            Some(a) => a,
            None => {
                let a = RelayAccount {
                    id: id.clone(),
                    username: id.clone(),
                    email: None,
                    password_hash: None,
                    is_local: true,
                    created_at_ms: now_ms(),
                };
                match accounts.create(&a).await {
                    Ok(()) => a,
                    // Two first logins at once: the other created it.
                    Err(StorageError::AlreadyExists) => {
                        accounts.by_id(&id).await?.ok_or_else(invalid_credentials)?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        return issue_key(&relay, &account).await;
    }
    if let Some(existing) = accounts.by_username(&username).await? {
        let attempt = reserve(&relay, address, &username)?;
        let ok = match existing.password_hash.clone() {
            Some(phc) => check_password(password, phc).await,
            None => false,
        };
        return if ok {
            attempt.succeeded();
            issue_key(&relay, &existing).await
        } else {
            attempt.failed(Instant::now());
            log_failed(address, &username);
            Err(invalid_credentials())
        };
    }
    if !inner.config.allow_registration {
        // Registration is closed, so this is a login to a name that does not exist: answer exactly as
        // a wrong password does, after the same argon2 work and counted the same way, so neither the
        // status nor the time tells which relay-only names exist.
        let attempt = reserve(&relay, address, &username)?;
        let phc = relay.unknown_account_hash().await?;
        let _ = check_password(password, phc).await;
        attempt.failed(Instant::now());
        log_failed(address, &username);
        return Err(invalid_credentials());
    }
    // Creating accounts has its own budget per client address (IPv6: per /64).
    let key = format!("accounts:{}", address_key(address));
    inner
        .limits
        .attempts
        .check(&key, inner.config.limits.account_attempts, Instant::now())
        .map_err(|r| ApiError::from(crate::RelayError::RateLimited(r.retry_after)))?;
    if !valid_relay_username(&username) {
        return Err(ApiError::field(
            "username",
            "Enter a valid username: at most 30 letters, digits and + - _ characters.",
        ));
    }
    if password.chars().count() > MAX_PASSWORD {
        return Err(ApiError::field(
            "password",
            "Ensure this field has no more than 100 characters.",
        ));
    }
    if let Some(e) = &email
        && accounts.by_email(e).await?.is_some()
    {
        return Err(ApiError::bad_request(
            "An account with that email address already exists.",
        ));
    }
    let phc = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        })?;
    let account = RelayAccount {
        id: uuid::Uuid::new_v4().to_string(),
        username,
        email,
        password_hash: Some(phc),
        is_local: false,
        created_at_ms: now_ms(),
    };
    match accounts.create(&account).await {
        Ok(()) => issue_key(&relay, &account).await,
        Err(StorageError::AlreadyExists) => Err(ApiError::field(
            "username",
            "A user with that username already exists.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/v1/accounts/`: the caller's account.
pub async fn me(Caller(a): Caller) -> Json<Value> {
    Json(public(&a))
}

fn own(a: &RelayAccount, username: &str) -> Result<(), ApiError> {
    // Someone else's account looks like no account at all.
    if a.username == username {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

/// `GET /api/v1/accounts/{username}/`: own account only.
pub async fn get_one(
    Caller(a): Caller,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    own(&a, &username)?;
    Ok(Json(public(&a)))
}

/// `DELETE /api/v1/accounts/{username}/`: deletes the account with its keys, devices and tokens (204).
pub async fn delete_one(
    State(relay): State<Relay>,
    Caller(a): Caller,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    own(&a, &username)?;
    relay.inner.storage.relay_accounts.delete(&a.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/accounts/{username}/rotate_key/`: a new API key replaces every existing one.
pub async fn rotate_key(
    State(relay): State<Relay>,
    Caller(a): Caller,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    own(&a, &username)?;
    let key = new_secret();
    relay
        .inner
        .storage
        .relay_accounts
        .replace_api_keys(&a.id, &hash_secret(&key), now_ms())
        .await?;
    Ok(Json(json!({"token": key})))
}
