//! FCM HTTP v1 backend (Firebase, "Migrate from legacy FCM APIs to HTTP v1"): `POST {base}/v1/projects/{id}/messages:send`
//! with a bearer token from the service account, a data-only content-free message, and the error
//! table mapped to failure classes (UNREGISTERED / SENDER_ID_MISMATCH gone, QUOTA_EXCEEDED and
//! UNAVAILABLE / INTERNAL retried, INVALID_ARGUMENT rejected, 401 refreshes the token).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_storage::relay::Device;
use serde_json::{Value, json};

use ring::signature::RsaKeyPair;

use super::oauth::{FCM_SCOPE, ServiceAccountKey, TokenSource, rsa_key};
use super::{Push, PushBackend, SendOutcome, classify_transport, retry_after};
use crate::{Priority, RelayConfig};

/// Sends to FCM.
pub struct FcmBackend {
    http: reqwest::Client,
    send_url: String,
    tokens: TokenSource,
}

/// A Google service account as FCM needs it: read from `fcm.service_account_file` when `[relay]`
/// is resolved, its RSA key parsed, its project and token URL settled.
#[derive(Clone)]
pub struct FcmAccount {
    email: String,
    key: Arc<RsaKeyPair>,
    project: String,
    token_url: String,
}

impl std::fmt::Debug for FcmAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is never printed.
        f.debug_struct("FcmAccount")
            .field("email", &self.email)
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

impl FcmAccount {
    /// Reads `[relay.fcm]`'s service account; `None` when none is configured. Errors: the problem
    /// (unreadable file, not a service-account JSON, no RSA PKCS#8 key, no project), starting with
    /// its key.
    pub fn load(config: &RelayConfig) -> Result<Option<FcmAccount>, String> {
        let fcm = &config.fcm;
        let path = &fcm.service_account_file;
        if path.is_empty() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("fcm.service_account_file: {path}: {e}"))?;
        let account: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
            format!("fcm.service_account_file: {path}: not a service account JSON: {e}")
        })?;
        let key = rsa_key(&account.private_key)
            .map_err(|e| format!("fcm.service_account_file: {path}: {e}"))?;
        let project = if fcm.project_id.is_empty() {
            account.project_id.clone()
        } else {
            fcm.project_id.clone()
        };
        if project.is_empty() {
            return Err("fcm.project_id: missing (not in the service account either)".into());
        }
        let token_url = [fcm.token_url.as_str(), account.token_uri.as_str()]
            .into_iter()
            .find(|u| !u.is_empty())
            .unwrap_or("https://oauth2.googleapis.com/token")
            .to_string();
        Ok(Some(FcmAccount {
            email: account.client_email,
            key: Arc::new(key),
            project,
            token_url,
        }))
    }
}

impl FcmBackend {
    /// Sends as `account` to the FCM API at `base_url`, over `http`.
    pub fn new(account: &FcmAccount, base_url: &str, http: reqwest::Client) -> FcmBackend {
        let tokens = TokenSource::new(
            account.email.clone(),
            account.key.clone(),
            account.token_url.clone(),
            FCM_SCOPE,
            http.clone(),
        );
        FcmBackend {
            http,
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                base_url.trim_end_matches('/'),
                account.project
            ),
            tokens,
        }
    }
}

/// The request body: data-only (the app fetches over XMPP), no sender, no text.
pub fn message_body(registration_token: &str, push: &Push) -> Value {
    let mut data = json!({"type": "wake"});
    if let Some(d) = &push.data {
        data["data"] = Value::String(d.clone());
    }
    json!({
        "message": {
            "token": registration_token,
            "data": data,
            "android": {
                "priority": if push.priority == Priority::High { "HIGH" } else { "NORMAL" },
                "ttl": format!("{}s", push.ttl_secs),
                "collapse_key": push.collapse_id,
            }
        }
    })
}

/// The `errorCode` of an FCM error body (`error.details[].errorCode`, else `error.status`).
pub fn error_code(body: &Value) -> Option<String> {
    let error = body.get("error")?;
    let from_details = error
        .get("details")
        .and_then(Value::as_array)
        .and_then(|ds| {
            ds.iter()
                .find_map(|d| d.get("errorCode").and_then(Value::as_str))
        });
    from_details
        .or_else(|| error.get("status").and_then(Value::as_str))
        .map(str::to_string)
}

/// Maps an FCM answer to its class (Firebase, FCM HTTP v1 `ErrorCode` reference).
pub fn classify(status: u16, code: Option<&str>, retry: Option<Duration>) -> SendOutcome {
    let reason = format!("fcm {status} {}", code.unwrap_or("-"));
    match (status, code) {
        (200..=299, _) => SendOutcome::Sent,
        (_, Some("UNREGISTERED" | "SENDER_ID_MISMATCH")) | (404, _) => SendOutcome::Gone(reason),
        (_, Some("QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL")) | (429 | 500..=599, _) => {
            SendOutcome::Retry {
                after: retry,
                reason,
            }
        }
        // 401: our access token expired or was revoked; the caller refreshes it and retries.
        (401, _) => SendOutcome::Retry {
            after: Some(Duration::ZERO),
            reason,
        },
        _ => SendOutcome::Rejected(reason),
    }
}

#[async_trait]
impl PushBackend for FcmBackend {
    async fn send(&self, device: &Device, push: &Push) -> SendOutcome {
        let bearer = match self.tokens.token().await {
            Ok(t) => t,
            Err(e) => {
                return SendOutcome::Retry {
                    after: None,
                    reason: format!("oauth: {e}"),
                };
            }
        };
        let resp = match self
            .http
            .post(&self.send_url)
            .bearer_auth(bearer)
            .json(&message_body(&device.token, push))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return classify_transport(&e),
        };
        let status = resp.status().as_u16();
        let retry = retry_after(resp.headers());
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let outcome = classify(status, error_code(&body).as_deref(), retry);
        if status == 401 {
            self.tokens.invalidate().await;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_table() {
        let body = json!({"error": {"code": 404, "status": "NOT_FOUND", "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}});
        assert_eq!(error_code(&body).as_deref(), Some("UNREGISTERED"));
        assert!(matches!(
            classify(404, Some("UNREGISTERED"), None),
            SendOutcome::Gone(_)
        ));
        assert!(matches!(
            classify(403, Some("SENDER_ID_MISMATCH"), None),
            SendOutcome::Gone(_)
        ));
        assert!(
            matches!(classify(429, Some("QUOTA_EXCEEDED"), Some(Duration::from_secs(5))),
            SendOutcome::Retry { after: Some(d), .. } if d.as_secs() == 5)
        );
        assert!(matches!(
            classify(503, Some("UNAVAILABLE"), None),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify(500, None, None),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify(400, Some("INVALID_ARGUMENT"), None),
            SendOutcome::Rejected(_)
        ));
        assert!(matches!(
            classify(401, Some("THIRD_PARTY_AUTH_ERROR"), None),
            SendOutcome::Retry { .. }
        ));
        assert_eq!(classify(200, None, None), SendOutcome::Sent);
        let only_status = json!({"error": {"status": "INVALID_ARGUMENT"}});
        assert_eq!(
            error_code(&only_status).as_deref(),
            Some("INVALID_ARGUMENT")
        );
    }

    #[test]
    fn body_is_content_free() {
        let p = Push {
            priority: Priority::Low,
            data: None,
            collapse_id: "c".into(),
            ttl_secs: 60,
        };
        let b = message_body("regtoken", &p);
        assert_eq!(b["message"]["token"], "regtoken");
        assert_eq!(b["message"]["data"], json!({"type": "wake"}));
        assert_eq!(b["message"]["android"]["priority"], "NORMAL");
        assert_eq!(b["message"]["android"]["ttl"], "60s");
    }
}
