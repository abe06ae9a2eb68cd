//! `/api/v1/tokens/`: whitelist tokens (ChatSecure-Push-Server's v1 API, `/api/v1/tokens/`). The secret (40 hex) is shown
//! once at creation and stored only hashed; tokens are named afterwards by their `id` (or by the secret
//! itself, ChatSecure's way). Scope: the given devices (ChatSecure's `apns_device` / `gcm_device`,
//! Herald's `webpush_device` / `unifiedpush_device` / `devices`), all devices when none is given; an
//! optional sender binding, expiry and own rate limit. DELETE revokes (204).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use herald_storage::relay::{DeviceKind, WhitelistToken};
use serde_json::{Map, Value, json};

use super::{ApiError, Caller, Fields, format_date};
use crate::secrets::{hash_secret, new_secret};
use crate::{Relay, now_ms};

const MAX_NAME: usize = 100;
const MAX_SENDER: usize = 1024;
const MAX_DEVICES: usize = 50;

/// The JSON of a token (null fields omitted, as ChatSecure's serializer did). `secret` only at creation.
fn token_json(
    relay: &Relay,
    t: &WhitelistToken,
    kinds: &[(String, DeviceKind)],
    secret: Option<&str>,
) -> Value {
    let mut m = Map::new();
    if let Some(s) = secret {
        m.insert("token".into(), json!(s));
    }
    m.insert("id".into(), json!(t.id));
    if let Some(n) = &t.name {
        m.insert("name".into(), json!(n));
    }
    if let [(id, kind)] = kinds {
        match kind {
            DeviceKind::Apns => m.insert("apns_device".into(), json!(id)),
            DeviceKind::Fcm => m.insert("gcm_device".into(), json!(id)),
            DeviceKind::WebPush => m.insert("webpush_device".into(), json!(id)),
            DeviceKind::UnifiedPush => m.insert("unifiedpush_device".into(), json!(id)),
        };
    }
    m.insert("devices".into(), json!(t.device_ids));
    if let Some(s) = &t.sender {
        m.insert("sender".into(), json!(s));
    }
    if let Some(r) = t.rate_per_minute {
        m.insert("rate_per_minute".into(), json!(r));
    }
    m.insert("date_created".into(), json!(format_date(t.created_at_ms)));
    if let Some(e) = t.expires_at_ms {
        m.insert("date_expires".into(), json!(format_date(e)));
    }
    if let Some(r) = t.revoked_at_ms {
        m.insert("date_revoked".into(), json!(format_date(r)));
    }
    m.insert(
        "endpoint".into(),
        json!(relay.inner.config.messages_endpoint()),
    );
    Value::Object(m)
}

async fn kinds_of(relay: &Relay, ids: &[String]) -> Result<Vec<(String, DeviceKind)>, ApiError> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(d) = relay.inner.storage.relay_devices.get(id).await? {
            out.push((d.id, d.kind));
        }
    }
    Ok(out)
}

/// The device ids named in the request, each checked to be the caller's and of the named kind.
async fn requested_devices(
    relay: &Relay,
    account_id: &str,
    fields: &Fields,
) -> Result<Vec<String>, ApiError> {
    let apns = fields.limited("apns_device", 64)?;
    let gcm = fields.limited("gcm_device", 64)?;
    if apns.is_some() && gcm.is_some() {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({"non_field_errors": ["Only one APNS or one GCM device may be specified"]}),
            retry_after_secs: None,
        });
    }
    let mut wanted: Vec<(String, Option<DeviceKind>)> = Vec::new();
    for (field, kind) in [
        ("apns_device", DeviceKind::Apns),
        ("gcm_device", DeviceKind::Fcm),
        ("webpush_device", DeviceKind::WebPush),
        ("unifiedpush_device", DeviceKind::UnifiedPush),
    ] {
        if let Some(id) = fields.limited(field, 64)? {
            wanted.push((id, Some(kind)));
        }
    }
    match fields.0.get("devices") {
        Some(Value::Array(ids)) => {
            for v in ids {
                let id = v.as_str().ok_or_else(|| {
                    ApiError::field("devices", "A list of device ids is required.")
                })?;
                wanted.push((id.to_string(), None));
            }
        }
        Some(Value::String(s)) => wanted.extend(
            s.split([',', ' '])
                .filter(|x| !x.is_empty())
                .map(|x| (x.to_string(), None)),
        ),
        Some(Value::Null) | None => {}
        Some(_) => {
            return Err(ApiError::field(
                "devices",
                "A list of device ids is required.",
            ));
        }
    }
    if wanted.len() > MAX_DEVICES {
        return Err(ApiError::field("devices", "Too many devices."));
    }
    let mut ids = Vec::new();
    for (id, kind) in wanted {
        let d = relay.inner.storage.relay_devices.get(&id).await?;
        match d {
            Some(d) if d.account_id == account_id && kind.is_none_or(|k| k == d.kind) => {
                if !ids.contains(&d.id) {
                    ids.push(d.id);
                }
            }
            _ => return Err(ApiError::field("devices", "Unknown device.")),
        }
    }
    Ok(ids)
}

/// `POST /api/v1/tokens/` (201 with the secret, shown once).
pub async fn create(
    State(relay): State<Relay>,
    Caller(a): Caller,
    fields: Fields,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = fields.limited("name", MAX_NAME)?;
    let sender = fields.limited("sender", MAX_SENDER)?;
    let rate = fields
        .number("rate_per_minute")?
        .map(|r| u32::try_from(r).unwrap_or(u32::MAX));
    let device_ids = requested_devices(&relay, &a.id, &fields).await?;
    let config = &relay.inner.config;
    let now = now_ms();
    let ttl_secs = match fields.number("expires_in")? {
        Some(secs) => Some(secs),
        None if config.token_ttl_secs > 0 => Some(config.token_ttl_secs),
        None => None,
    };
    let store = &relay.inner.storage.whitelist_tokens;
    // Only live tokens count against the limit, so without this a create-and-revoke loop would
    // add a row per round for ever; the newest dead ones stay listed as history.
    store
        .delete_dead(&a.id, now, config.limits.max_tokens_per_account)
        .await?;
    let live = store
        .list(&a.id)
        .await?
        .iter()
        .filter(|t| t.revoked_at_ms.is_none() && t.expires_at_ms.is_none_or(|e| e > now))
        .count();
    if live >= config.limits.max_tokens_per_account {
        return Err(ApiError::bad_request(
            "too many live tokens on this account",
        ));
    }
    let secret = new_secret();
    let t = WhitelistToken {
        id: uuid::Uuid::new_v4().to_string(),
        token_hash: hash_secret(&secret),
        account_id: a.id.clone(),
        name,
        device_ids,
        sender,
        rate_per_minute: rate,
        created_at_ms: now,
        expires_at_ms: ttl_secs
            .map(|s| now.saturating_add(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))),
        revoked_at_ms: None,
    };
    store.create(&t).await?;
    let kinds = kinds_of(&relay, &t.device_ids).await?;
    Ok((
        StatusCode::CREATED,
        Json(token_json(&relay, &t, &kinds, Some(&secret))),
    ))
}

/// `GET /api/v1/tokens/`: the caller's tokens (never their secrets), revoked and expired included.
pub async fn list(State(relay): State<Relay>, Caller(a): Caller) -> Result<Json<Value>, ApiError> {
    let tokens = relay.inner.storage.whitelist_tokens.list(&a.id).await?;
    let mut out = Vec::with_capacity(tokens.len());
    for t in &tokens {
        let kinds = kinds_of(&relay, &t.device_ids).await?;
        out.push(token_json(&relay, t, &kinds, None));
    }
    Ok(Json(Value::Array(out)))
}

/// A token of the caller named by id or by its secret.
async fn owned(relay: &Relay, account_id: &str, key: &str) -> Result<WhitelistToken, ApiError> {
    let store = &relay.inner.storage.whitelist_tokens;
    if key.len() > 200 {
        return Err(ApiError::not_found());
    }
    let t = match store.get(key).await? {
        Some(t) => Some(t),
        None => store.by_hash(&hash_secret(key)).await?,
    };
    match t {
        Some(t) if t.account_id == account_id => Ok(t),
        _ => Err(ApiError::not_found()),
    }
}

/// `GET /api/v1/tokens/{token}/`.
pub async fn get_one(
    State(relay): State<Relay>,
    Caller(a): Caller,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = owned(&relay, &a.id, &key).await?;
    let kinds = kinds_of(&relay, &t.device_ids).await?;
    Ok(Json(token_json(&relay, &t, &kinds, None)))
}

/// `DELETE /api/v1/tokens/{token}/`: revokes (204). Holders get 404 from then on.
pub async fn revoke(
    State(relay): State<Relay>,
    Caller(a): Caller,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    let t = owned(&relay, &a.id, &key).await?;
    relay
        .inner
        .storage
        .whitelist_tokens
        .revoke(&t.id, now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
