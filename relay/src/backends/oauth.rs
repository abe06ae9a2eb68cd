//! OAuth2 access tokens for a Google service account (RFC 7523 JWT bearer grant): a JWT signed
//! RS256 with the account's key is exchanged at the token URL for a bearer token, cached until a
//! minute before it expires (Google, "Using OAuth 2.0 for Server to Server Applications": the JWT grant, tokens valid an hour).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::RelayError;

/// The FCM scope.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Lifetime asked for in the assertion (Google's maximum).
const ASSERTION_LIFETIME_SECS: i64 = 3600;
/// An access token is cached at most this long, whatever `expires_in` says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(ASSERTION_LIFETIME_SECS as u64);
/// Refresh this long before the token expires.
const EARLY_REFRESH: Duration = Duration::from_secs(60);

/// The fields of a service-account JSON file that matter here.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub token_uri: String,
    #[serde(default)]
    pub project_id: String,
}

/// Errors getting a token; all of them are transient for the caller (retry later).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("signing failed")]
    Sign,
    #[error("token request failed: {0}")]
    Http(String),
    #[error("token endpoint answered {0}")]
    Status(u16),
}

/// A cached token source for one service account.
pub struct TokenSource {
    email: String,
    key: Arc<RsaKeyPair>,
    token_url: String,
    scope: String,
    http: reqwest::Client,
    cached: Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "default_expiry")]
    expires_in: u64,
}

fn default_expiry() -> u64 {
    3600
}

/// Decodes the DER inside a PEM block (`-----BEGIN PRIVATE KEY-----`).
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, RelayError> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| RelayError::Config("private key is not valid PEM".into()))
}

/// Parses a service account's `private_key` (an RSA PKCS#8 PEM key). Errors: what is wrong with it.
pub fn rsa_key(private_key_pem: &str) -> Result<RsaKeyPair, String> {
    let der =
        pem_to_der(private_key_pem).map_err(|_| "private key is not valid PEM".to_string())?;
    RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("private key is not an RSA PKCS#8 key: {e}"))
}

impl TokenSource {
    /// A token source for the account `email` signing with `key` (see [`rsa_key`]).
    pub fn new(
        email: String,
        key: Arc<RsaKeyPair>,
        token_url: String,
        scope: &str,
        http: reqwest::Client,
    ) -> TokenSource {
        TokenSource {
            email,
            key,
            token_url,
            scope: scope.to_string(),
            http,
            cached: Mutex::new(None),
        }
    }

    /// The signed assertion (RFC 7523 section 3).
    pub fn assertion(&self, now_secs: i64) -> Result<String, TokenError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.email,
            "scope": self.scope,
            "aud": self.token_url,
            "iat": now_secs,
            "exp": now_secs + ASSERTION_LIFETIME_SECS,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| TokenError::Sign)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// A valid access token, from the cache or a fresh exchange.
    pub async fn token(&self) -> Result<String, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let now = chrono::Utc::now().timestamp();
        let assertion = self.assertion(now)?;
        let resp = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| TokenError::Http(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(TokenError::Status(resp.status().as_u16()));
        }
        let answer: TokenAnswer = resp
            .json()
            .await
            .map_err(|e| TokenError::Http(e.without_url().to_string()))?;
        // `expires_in` is the token endpoint's (RFC 6749 section 5.1, unbounded): cap it at the lifetime
        // asked for, so a huge value neither overflows the Instant nor pins a token forever.
        let lifetime = Duration::from_secs(answer.expires_in)
            .min(MAX_TOKEN_LIFETIME)
            .saturating_sub(EARLY_REFRESH);
        *cached = Some((answer.access_token.clone(), Instant::now() + lifetime));
        Ok(answer.access_token)
    }

    /// Drops the cached token (after the API answered 401).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}
