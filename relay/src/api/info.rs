//! Small read-only endpoints: the API root and `pubsub/` (ChatSecure), `health/` (peer relays check
//! it), `openapi.json`, and the caller's audit trail (who pushed to them, when, with what outcome).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Caller, OPENAPI_JSON, format_date};
use crate::Relay;

/// `GET /api/v1/`: ChatSecure's root listing.
pub async fn root(State(relay): State<Relay>) -> Json<Value> {
    let base = format!(
        "{}/api/v1",
        relay.inner.config.public_url.trim_end_matches('/')
    );
    Json(json!({
        "device/apns": format!("{base}/device/apns/"),
        "device/gcm": format!("{base}/device/gcm/"),
        "tokens": format!("{base}/tokens/"),
        "messages": format!("{base}/messages/"),
        "accounts": format!("{base}/accounts/"),
        "pubsub": format!("{base}/pubsub/"),
    }))
}

/// `GET /api/v1/pubsub/`: the XMPP push service JID.
pub async fn pubsub(State(relay): State<Relay>) -> Json<Value> {
    Json(json!({"jid": relay.inner.config.pubsub_jid}))
}

/// `GET /api/v1/health/`: `{"status":"ok"}` when the database answers.
pub async fn health(State(relay): State<Relay>) -> Result<Json<Value>, ApiError> {
    relay.inner.storage.push_outbox.next_due_at().await?;
    Ok(Json(
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}),
    ))
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
    limit: Option<usize>,
}

/// `GET /api/v1/audit/?before=<id>&limit=<n>`: the caller's audit trail, newest first.
pub async fn audit(
    State(relay): State<Relay>,
    Caller(a): Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let entries = relay
        .inner
        .storage
        .push_audit
        .list(&a.id, q.before, limit)
        .await?;
    Ok(Json(Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "date": format_date(e.at_ms),
                    "token_id": e.token_id,
                    "sender": e.sender,
                    "message_id": e.message_id,
                    "outcome": e.outcome,
                })
            })
            .collect(),
    )))
}

/// `GET /api/v1/webpush/vapid/`: the key browsers pass as `applicationServerKey` when they subscribe
/// (RFC 8292 section 3.2); 404 when this relay has no VAPID key (Web Push is then off).
pub async fn vapid(State(relay): State<Relay>) -> Result<Json<Value>, ApiError> {
    match &relay.inner.backends.vapid_public_key {
        Some(k) => Ok(Json(json!({"public_key": k}))),
        None => Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "web push is not configured",
        )),
    }
}
