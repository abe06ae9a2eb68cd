//! Relay-to-relay endpoints: `GET /api/v1/federation/key` publishes this relay's Ed25519 public key
//! for peers to pin, and `POST /api/v1/federation/messages/` takes a peer's signed forward (RFC 9421
//! HTTP Message Signatures, checked by `federation.rs`): unsigned, wrongly signed, expired, replayed
//! or unpinned requests get 401 with a JSON error; a verified one is a `messages/` post whose sender
//! is the peer's domain, so tokens bound to that relay accept it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ClientAddr};
use crate::federation::{Refusal, now_secs};
use crate::http_signature::SignedRequest;
use crate::{Notification, Priority, Relay};

/// `GET /api/v1/federation/key`: `{domain, keyid, alg, public_key}`, plus `xmpp` (the push service
/// JID peers forward to over s2s) when this relay accepts forwards over XMPP.
pub async fn key(State(relay): State<Relay>) -> Json<Value> {
    let signer = relay.inner.backends.forward.signer();
    let mut answer = json!({
        "domain": signer.keyid(),
        "keyid": signer.keyid(),
        "alg": "ed25519",
        "public_key": signer.public_key(),
    });
    if relay.accepts_xmpp_forwards() {
        answer["xmpp"] = Value::String(relay.inner.config.pubsub_jid.clone());
    }
    Json(answer)
}

/// A forward's body.
#[derive(Deserialize)]
struct Forwarded {
    token: String,
    priority: Option<String>,
    data: Option<String>,
}

/// `POST /api/v1/federation/messages/`: 202 as `messages/` does once the signature is verified;
/// 401 for every signature problem; 503 while the replay cache is full.
pub async fn post_message(
    State(relay): State<Relay>,
    ClientAddr(addr, _): ClientAddr,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // The URI the peer addressed: this relay's public URL with the path it was served at.
    let public = relay.inner.config.public_url.trim_end_matches('/');
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = format!("{public}{path}");
    let target = reqwest::Url::parse(&target)
        .map(String::from)
        .unwrap_or(target);
    let request = SignedRequest {
        method: method.as_str(),
        target_uri: &target,
        headers: &headers,
    };
    let peer = relay
        .inner
        .federation
        .verify(&request, &body, now_secs())
        .map_err(|refusal| {
            let client = addr.as_deref().unwrap_or("");
            tracing::info!(target: "herald::auth", %client, %refusal, "relay forward refused");
            match refusal {
                Refusal::Busy => ApiError {
                    retry_after_secs: Some(1),
                    ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, &refusal.to_string())
                },
                other => ApiError::new(StatusCode::UNAUTHORIZED, &other.to_string()),
            }
        })?;
    let forwarded: Forwarded = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("body must be JSON {token, priority, data}"))?;
    let priority = match forwarded.priority.as_deref() {
        None | Some("low") => Priority::Low,
        Some("high") => Priority::High,
        Some(_) => {
            return Err(ApiError::field(
                "priority",
                "\"high\" or \"low\" is required.",
            ));
        }
    };
    let ticket = relay
        .submit(Notification {
            token: forwarded.token,
            endpoint: None,
            priority,
            data: forwarded.data,
            sender: Some(peer),
            origin: addr,
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": ticket.message_id,
            "devices": ticket.deliveries,
        })),
    ))
}
