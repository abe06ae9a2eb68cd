//! Relay-to-relay forwarding: a whitelist token issued by another relay is posted to that relay's
//! ChatSecure-compatible messages endpoint (`{token, priority, data}`); the answer maps to the same
//! failure classes (404 = the remote token is gone). Only the whitelist token travels, never a device
//! token. Also the peer health check (`GET /api/v1/health/`).

use serde_json::json;

use super::{Guarded, SendOutcome, classify_status, classify_transport, retry_after};
use crate::{Priority, RelayError};

/// Posts to peer relays.
#[derive(Clone)]
pub struct Forwarder {
    http: Guarded,
}

impl Forwarder {
    pub fn new(http: Guarded) -> Forwarder {
        Forwarder { http }
    }

    /// Forwards one message to `endpoint` (a peer's `/api/v1/messages/`).
    pub async fn forward(
        &self,
        endpoint: &str,
        token: &str,
        priority: Priority,
        data: Option<&str>,
    ) -> SendOutcome {
        let body = json!({"token": token, "priority": priority.as_str(), "data": data});
        let req = match self.http.post(endpoint) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        match req.json(&body).send().await {
            Ok(resp) => classify_status(resp.status().as_u16(), retry_after(resp.headers())),
            Err(e) => classify_transport(&e),
        }
    }

    /// `GET <base>/api/v1/health/`: `Ok(true)` on 2xx with `{"status":"ok"}`, `Ok(false)` on any other
    /// answer or no answer (also when the address policy refuses the peer's address). Errors:
    /// [`RelayError::BadInput`] for a base URL that is not http(s).
    pub async fn check_health(&self, base_url: &str) -> Result<bool, RelayError> {
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(RelayError::BadInput("peer URL must be http(s)".into()));
        }
        let url = format!("{}/api/v1/health/", base_url.trim_end_matches('/'));
        let Ok(req) = self.http.get(&url) else {
            return Ok(false);
        };
        let Ok(resp) = req.send().await else {
            return Ok(false);
        };
        if !resp.status().is_success() {
            return Ok(false);
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        Ok(body["status"] == "ok")
    }
}
