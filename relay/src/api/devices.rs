//! `/api/v1/device/{kind}/`: devices of the caller. `apns` and `gcm` are ChatSecure's (ChatSecure-Push-Server's v1 API,
//! `/api/v1/device/apns/` and `/gcm/`: `{name, id, active, registration_id, device_id, date_created}`, 201 on
//! create); `gcm` is served by FCM and `fcm` is an alias; `webpush` (endpoint + p256dh + auth, or a
//! browser `subscription` object) and `unifiedpush` (endpoint, optional keys) are Herald's.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use herald_storage::relay::{Device, DeviceKind};
use serde_json::{Value, json};

use super::{ApiError, Caller, Fields, format_date};
use crate::backends::webpush::key_bytes;
use crate::{Relay, now_ms};

const MAX_NAME: usize = 255;
const MAX_DEVICE_ID: usize = 255;
const MAX_APNS_TOKEN: usize = 200;
const MAX_FCM_TOKEN: usize = 4096;
/// UnifiedPush caps endpoints at 1000 bytes; Web Push endpoints are shorter in practice.
const MAX_ENDPOINT: usize = 1000;
const MAX_TOPIC: usize = 255;

fn kind_of(path_kind: &str) -> Result<DeviceKind, ApiError> {
    Ok(match path_kind {
        "apns" => DeviceKind::Apns,
        "gcm" | "fcm" => DeviceKind::Fcm,
        "webpush" => DeviceKind::WebPush,
        "unifiedpush" => DeviceKind::UnifiedPush,
        _ => return Err(ApiError::new(StatusCode::NOT_FOUND, "no such route")),
    })
}

/// The JSON of a device (ChatSecure's fields first).
pub fn device_json(d: &Device) -> Value {
    let mut v = json!({
        "name": d.name,
        "id": d.id,
        "active": d.active,
        "registration_id": d.token,
        "device_id": d.device_id,
        "date_created": format_date(d.created_at_ms),
        "kind": d.kind.as_str(),
    });
    match d.kind {
        DeviceKind::Apns => {
            v["topic"] = json!(d.apns_topic);
            v["sandbox"] = json!(d.apns_sandbox);
        }
        DeviceKind::WebPush | DeviceKind::UnifiedPush => {
            v["endpoint"] = json!(d.token);
            v["p256dh"] = json!(d.webpush_p256dh);
            v["auth"] = json!(d.webpush_auth);
        }
        DeviceKind::Fcm => {}
    }
    v
}

/// A browser `PushSubscription` JSON (`{endpoint, keys: {p256dh, auth}}`) flattened into the fields.
fn flatten_subscription(fields: &mut Fields) {
    if let Some(Value::Object(sub)) = fields.0.remove("subscription") {
        if let Some(e) = sub.get("endpoint") {
            fields.0.insert("endpoint".into(), e.clone());
        }
        if let Some(Value::Object(keys)) = sub.get("keys") {
            for k in ["p256dh", "auth"] {
                if let Some(v) = keys.get(k) {
                    fields.0.insert(k.into(), v.clone());
                }
            }
        }
    }
}

/// Applies the request fields to `d`. `partial` (PATCH) keeps absent fields.
fn apply(relay: &Relay, d: &mut Device, fields: &Fields, partial: bool) -> Result<(), ApiError> {
    if let Some(name) = fields.limited("name", MAX_NAME)? {
        d.name = name;
    }
    if let Some(device_id) = fields.limited("device_id", MAX_DEVICE_ID)? {
        d.device_id = device_id;
    }
    if let Some(active) = fields.flag("active")? {
        d.active = active;
    }
    let config = &relay.inner.config;
    match d.kind {
        DeviceKind::Apns => {
            if let Some(raw) = fields.limited("registration_id", MAX_APNS_TOKEN + 64)? {
                // ChatSecure strips spaces (and the `<...>` of NSData descriptions).
                let token: String = raw
                    .chars()
                    .filter(|c| !matches!(c, ' ' | '<' | '>'))
                    .collect();
                if token.is_empty()
                    || token.len() > MAX_APNS_TOKEN
                    || !token.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(ApiError::field(
                        "registration_id",
                        "An APNs device token is hexadecimal.",
                    ));
                }
                d.token = token.to_ascii_lowercase();
            } else if !partial {
                return Err(ApiError::field(
                    "registration_id",
                    "This field is required.",
                ));
            }
            if let Some(topic) = fields.limited("topic", MAX_TOPIC)? {
                d.apns_topic = Some(topic);
            }
            if let Some(sandbox) = fields.flag("sandbox")? {
                d.apns_sandbox = sandbox;
            }
        }
        DeviceKind::Fcm => {
            if let Some(token) = fields.limited("registration_id", MAX_FCM_TOKEN)? {
                d.token = token;
            } else if !partial {
                return Err(ApiError::field(
                    "registration_id",
                    "This field is required.",
                ));
            }
        }
        DeviceKind::WebPush | DeviceKind::UnifiedPush => {
            let endpoint = fields
                .limited("endpoint", MAX_ENDPOINT)?
                .or(fields.limited("registration_id", MAX_ENDPOINT)?);
            if let Some(endpoint) = endpoint {
                let https = endpoint.starts_with("https://");
                let http_ok = config.allow_plain_http && endpoint.starts_with("http://");
                if !(https || http_ok) || reqwest::Url::parse(&endpoint).is_err() {
                    return Err(ApiError::field("endpoint", "An https URL is required."));
                }
                // An address literal is judged now; a host name when it is resolved, at delivery.
                if relay
                    .inner
                    .backends
                    .endpoint_policy
                    .check_url(&endpoint)
                    .is_err()
                {
                    return Err(ApiError::field(
                        "endpoint",
                        "The endpoint's address is not a public one.",
                    ));
                }
                d.token = endpoint;
            } else if !partial {
                return Err(ApiError::field("endpoint", "This field is required."));
            }
            if let Some(p) = fields.limited("p256dh", 200)? {
                if key_bytes(&p).is_none_or(|k| k.len() != 65 || k[0] != 4) {
                    return Err(ApiError::field(
                        "p256dh",
                        "An uncompressed P-256 public key (base64url) is required.",
                    ));
                }
                d.webpush_p256dh = Some(p);
            }
            if let Some(a) = fields.limited("auth", 100)? {
                if key_bytes(&a).is_none_or(|k| k.len() != 16) {
                    return Err(ApiError::field(
                        "auth",
                        "A 16-byte auth secret (base64url) is required.",
                    ));
                }
                d.webpush_auth = Some(a);
            }
            let keys = (d.webpush_p256dh.is_some(), d.webpush_auth.is_some());
            if d.kind == DeviceKind::WebPush && keys != (true, true) {
                return Err(ApiError::field("keys", "Web Push needs p256dh and auth."));
            }
            if keys.0 != keys.1 {
                return Err(ApiError::field("keys", "p256dh and auth go together."));
            }
        }
    }
    Ok(())
}

/// `GET /api/v1/device/{kind}/`: the caller's devices of that kind.
pub async fn list(
    State(relay): State<Relay>,
    Caller(a): Caller,
    Path(kind): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let kind = kind_of(&kind)?;
    let devices = relay
        .inner
        .storage
        .relay_devices
        .list(&a.id, Some(kind))
        .await?;
    Ok(Json(Value::Array(
        devices.iter().map(device_json).collect(),
    )))
}

/// `POST /api/v1/device/{kind}/`: registers a device (201).
pub async fn create(
    State(relay): State<Relay>,
    Caller(a): Caller,
    Path(kind): Path<String>,
    mut fields: Fields,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let kind = kind_of(&kind)?;
    // A Web Push subscription is made for this relay's VAPID key; without one it can never work.
    // (APNs and FCM devices are accepted and fail visibly in the message status instead, so a relay
    // can collect registrations before its vendor credentials are in place.)
    if kind == DeviceKind::WebPush && relay.inner.backends.webpush.is_none() {
        return Err(ApiError::bad_request(
            "web push is not configured on this relay",
        ));
    }
    flatten_subscription(&mut fields);
    let store = &relay.inner.storage.relay_devices;
    if store.list(&a.id, None).await?.len() >= relay.inner.config.limits.max_devices_per_account {
        return Err(ApiError::bad_request("too many devices on this account"));
    }
    let mut d = Device {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: a.id.clone(),
        kind,
        name: String::new(),
        device_id: String::new(),
        active: true,
        token: String::new(),
        apns_topic: None,
        apns_sandbox: relay.inner.config.apns.sandbox,
        webpush_p256dh: None,
        webpush_auth: None,
        created_at_ms: now_ms(),
    };
    apply(&relay, &mut d, &fields, false)?;
    store.create(&d).await?;
    Ok((StatusCode::CREATED, Json(device_json(&d))))
}

async fn owned(relay: &Relay, account_id: &str, kind: &str, id: &str) -> Result<Device, ApiError> {
    let kind = kind_of(kind)?;
    match relay.inner.storage.relay_devices.get(id).await? {
        Some(d) if d.account_id == account_id && d.kind == kind => Ok(d),
        _ => Err(ApiError::not_found()),
    }
}

/// `GET /api/v1/device/{kind}/{id}/`.
pub async fn get_one(
    State(relay): State<Relay>,
    Caller(a): Caller,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(device_json(&owned(&relay, &a.id, &kind, &id).await?)))
}

async fn update(
    relay: Relay,
    a: &str,
    kind: &str,
    id: &str,
    mut fields: Fields,
    partial: bool,
) -> Result<Json<Value>, ApiError> {
    let mut d = owned(&relay, a, kind, id).await?;
    flatten_subscription(&mut fields);
    apply(&relay, &mut d, &fields, partial)?;
    relay.inner.storage.relay_devices.update(&d).await?;
    Ok(Json(device_json(&d)))
}

/// `PUT /api/v1/device/{kind}/{id}/`: the ChatSecure app PUTs every new APNs token here.
pub async fn replace(
    State(relay): State<Relay>,
    Caller(a): Caller,
    Path((kind, id)): Path<(String, String)>,
    fields: Fields,
) -> Result<Json<Value>, ApiError> {
    update(relay, &a.id, &kind, &id, fields, false).await
}

/// `PATCH /api/v1/device/{kind}/{id}/`.
pub async fn patch(
    State(relay): State<Relay>,
    Caller(a): Caller,
    Path((kind, id)): Path<(String, String)>,
    fields: Fields,
) -> Result<Json<Value>, ApiError> {
    update(relay, &a.id, &kind, &id, fields, true).await
}

/// `DELETE /api/v1/device/{kind}/{id}/` (204); its pending deliveries fail.
pub async fn remove(
    State(relay): State<Relay>,
    Caller(a): Caller,
    Path((kind, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let d = owned(&relay, &a.id, &kind, &id).await?;
    relay.inner.storage.relay_devices.delete(&d.id).await?;
    relay
        .inner
        .storage
        .push_outbox
        .fail_device(&d.id, "device removed", now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
