//! Relay-to-relay forwarding: a whitelist token issued by another relay is posted to that relay's
//! federation endpoint (`/api/v1/federation/messages/` beside the token's messages endpoint), as
//! `{token, priority, data}` signed with RFC 9421 HTTP Message Signatures (see `federation.rs`), so
//! the peer knows which relay forwards and checks its tokens' sender bindings against it. The answer
//! maps to the same failure classes (404 = the remote token is gone; 401 = the peer does not trust
//! this relay's key: rejected). Only the whitelist token travels, never a device token. Also the peer
//! health check (`GET /api/v1/health/`).

use serde_json::json;

use super::{Guarded, SendOutcome, classify_status, classify_transport, retry_after};
use crate::federation::{Signer, now_secs};
use crate::{Priority, RelayError};

/// The largest key answer read from a peer.
const MAX_KEY_ANSWER_BYTES: usize = 8192;

/// Posts to peer relays, signed.
#[derive(Clone)]
pub struct Forwarder {
    http: Guarded,
    signer: Signer,
}

/// Where a token's messages endpoint (`<base>/api/v1/messages/`) receives signed forwards:
/// `<base>/api/v1/federation/messages/`. An endpoint of another shape is posted to as it is.
pub fn federation_endpoint(messages_endpoint: &str) -> String {
    let trimmed = messages_endpoint.trim_end_matches('/');
    match trimmed.strip_suffix("/messages") {
        Some(base) if !messages_endpoint.contains('?') => format!("{base}/federation/messages/"),
        _ => messages_endpoint.to_string(),
    }
}

impl Forwarder {
    pub fn new(http: Guarded, signer: Signer) -> Forwarder {
        Forwarder { http, signer }
    }

    /// The signer of this relay's forwards (its key id and public key).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Forwards one message for a token whose messages endpoint is `endpoint`, signed, to the
    /// peer's federation endpoint ([`federation_endpoint`]).
    pub async fn forward(
        &self,
        endpoint: &str,
        token: &str,
        priority: Priority,
        data: Option<&str>,
    ) -> SendOutcome {
        let body = json!({"token": token, "priority": priority.as_str(), "data": data})
            .to_string()
            .into_bytes();
        // Signed as sent: the URL as the HTTP client will serialise it.
        let target = federation_endpoint(endpoint);
        let target = reqwest::Url::parse(&target)
            .map(String::from)
            .unwrap_or(target);
        let req = match self.http.post(&target) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        let headers = match self
            .signer
            .sign("POST", &target, "application/json", &body, now_secs())
        {
            Ok(h) => h,
            Err(e) => {
                tracing::info!(error = %e, "forward could not be signed");
                return SendOutcome::Rejected(super::ENDPOINT_REFUSED.into());
            }
        };
        match req.headers(headers).body(body).send().await {
            Ok(resp) => classify_status(resp.status().as_u16(), retry_after(resp.headers())),
            Err(e) => classify_transport(&e),
        }
    }

    /// The push service JID the peer relay whose messages endpoint is `endpoint` advertises: the
    /// `xmpp` field of its `GET .../federation/key/` answer (beside its federation endpoint). `None`
    /// when it has none, or does not answer with one.
    pub async fn peer_service_jid(&self, endpoint: &str) -> Option<String> {
        let federation = federation_endpoint(endpoint);
        let base = federation.strip_suffix("/messages/")?;
        let req = self.http.get(&format!("{base}/key/")).ok()?;
        let mut resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        // A key answer is a few hundred bytes; a peer cannot make this read (or hold) more.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.ok()? {
            if body.len() + chunk.len() > MAX_KEY_ANSWER_BYTES {
                return None;
            }
            body.extend_from_slice(&chunk);
        }
        let answer: serde_json::Value = serde_json::from_slice(&body).ok()?;
        answer["xmpp"].as_str().map(str::to_string)
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

#[cfg(test)]
mod tests {
    use super::federation_endpoint;

    #[test]
    fn the_federation_endpoint_sits_beside_the_messages_endpoint() {
        for (messages, federation) in [
            (
                "https://push.example/api/v1/messages/",
                "https://push.example/api/v1/federation/messages/",
            ),
            (
                "https://push.example/prefix/api/v1/messages",
                "https://push.example/prefix/api/v1/federation/messages/",
            ),
            ("https://push.example/other/", "https://push.example/other/"),
        ] {
            assert_eq!(federation_endpoint(messages), federation);
        }
    }
}
