//! `/api/v1/messages/`: anyone holding a whitelist token POSTs `{token, data?, priority?}` (ChatSecure-Push-Server's v1 API,
//! `POST /api/v1/messages/`). 202 echoes ChatSecure's fields plus the message `id`, once the deliveries are
//! persisted; 404 unknown/expired/revoked token; 429 with Retry-After; 400 bad input. A poster that
//! authenticates with `Authorization: Token` as a local XMPP account is the sender (its bare JID,
//! verified by the server) for token bindings; a relay-only account's name is no JID or domain
//! (it may look like one: `example.org` is a valid name), so it satisfies no binding.
//! `GET /api/v1/messages/{id}/` reports delivery status to whoever holds the id (the poster).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use herald_storage::relay::DeliveryStatus;
use serde_json::{Value, json};

use super::{ApiError, ClientAddr, Fields, MaybeCaller, format_date};
use crate::{Notification, Priority, Relay};

/// `POST /api/v1/messages/`.
pub async fn post(
    State(relay): State<Relay>,
    MaybeCaller(caller): MaybeCaller,
    ClientAddr(addr, _): ClientAddr,
    fields: Fields,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let token = fields.required("token", crate::accept::MAX_TOKEN_CHARS)?;
    let data = fields.limited("data", crate::accept::MAX_DATA_CHARS)?;
    let priority_text = fields.limited("priority", 10)?;
    let priority = match priority_text.as_deref() {
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
            token: token.clone(),
            endpoint: None,
            priority,
            data: data.clone(),
            sender: caller.filter(|a| a.is_local).map(|a| a.username),
            origin: addr,
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "token": token,
            "data": data,
            "priority": priority_text,
            "id": ticket.message_id,
            "devices": ticket.deliveries,
        })),
    ))
}

/// `GET /api/v1/messages/{id}/`: `accepted` while any delivery is pending, `sent` when at least one
/// went out and none is pending, `failed` otherwise (with the reasons). No device tokens.
pub async fn status(
    State(relay): State<Relay>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found());
    }
    let outbox = &relay.inner.storage.push_outbox;
    let Some(m) = outbox.message(&id).await? else {
        return Err(ApiError::not_found());
    };
    let deliveries = outbox.deliveries(&id).await?;
    let pending = deliveries
        .iter()
        .any(|d| matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Sending));
    let sent = deliveries.iter().any(|d| d.status == DeliveryStatus::Sent);
    let overall = if pending {
        "accepted"
    } else if sent {
        "sent"
    } else {
        "failed"
    };
    let list: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            json!({
                "status": match d.status { DeliveryStatus::Sending => "pending", s => s.as_str() },
                "attempts": d.attempts,
                "reason": d.reason,
            })
        })
        .collect();
    let reason = if overall == "failed" && deliveries.is_empty() {
        Some("no devices")
    } else {
        None
    };
    Ok(Json(json!({
        "id": m.id,
        "status": overall,
        "reason": reason,
        "priority": m.priority,
        "date_created": format_date(m.created_at_ms),
        "deliveries": list,
    })))
}
