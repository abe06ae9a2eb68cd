//! The relay's HTTP API (axum), ChatSecure-compatible (ChatSecure-Push-Server's v1 API):
//! `/api/v1/{accounts,device/apns,device/gcm,tokens,messages,pubsub}/` with and without the trailing
//! slash (no redirect that drops a POST body), JSON / form / multipart bodies, `Authorization: Token
//! <key>`, ChatSecure's date format, and errors that are never 200. Herald additions: Web Push and
//! UnifiedPush devices, token listing/revocation, API key rotation, message status, audit trail,
//! health, the OpenAPI document (relay/openapi.json), and the relay-to-relay endpoints (`federation/`,
//! RFC 9421 signed forwards and the key peers pin).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use herald_storage::relay::RelayAccount;
use serde_json::{Value, json};

pub use fields::Fields;

use crate::secrets::hash_secret;
use crate::{Relay, RelayError};

mod accounts;
pub mod client_addr;
mod devices;
mod federation;
mod fields;
mod info;
mod messages;
mod tokens;

/// The OpenAPI document served at `/api/v1/openapi.json` and kept in the repository.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// An API error: a status and a JSON body. Never 200.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: &str) -> ApiError {
        ApiError {
            status,
            body: json!({"error": message}),
            retry_after_secs: None,
        }
    }
    pub fn bad_request(message: &str) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    /// DRF-style validation error: `{field: [message]}`.
    pub fn field(field: &str, message: &str) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({field: [message]}),
            retry_after_secs: None,
        }
    }
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Not found.")
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Authentication credentials were not provided.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        if let Some(secs) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<RelayError> for ApiError {
    fn from(e: RelayError) -> ApiError {
        match e {
            RelayError::UnknownToken => ApiError::not_found(),
            RelayError::SenderNotAllowed => {
                ApiError::new(StatusCode::FORBIDDEN, "sender not allowed for this token")
            }
            RelayError::ForwardNotAllowed => ApiError::new(
                StatusCode::FORBIDDEN,
                "forwarding to that relay is not allowed",
            ),
            RelayError::RateLimited(d) => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                body: json!({"error": "rate limited"}),
                retry_after_secs: Some(d.as_secs_f64().ceil().max(1.0) as u64),
            },
            RelayError::BadInput(m) => ApiError::bad_request(&m),
            RelayError::Config(m) => {
                tracing::error!(error = %m, "relay configuration error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
            RelayError::Storage(e) => {
                tracing::error!(error = %e, "relay storage error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl From<herald_storage::StorageError> for ApiError {
    fn from(e: herald_storage::StorageError) -> ApiError {
        RelayError::Storage(e).into()
    }
}

/// The caller, authenticated by `Authorization: Token <key>` (DRF TokenAuthentication).
pub struct Caller(pub RelayAccount);

/// The caller if the request carries a valid key, `None` without an Authorization header.
pub struct MaybeCaller(pub Option<RelayAccount>);

async fn authenticate(parts: &Parts, relay: &Relay) -> Result<Option<RelayAccount>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "Invalid token header."))?;
    let key = value
        .strip_prefix("Token ")
        .or_else(|| value.strip_prefix("token "))
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Invalid token header."))?;
    match relay
        .inner
        .storage
        .relay_accounts
        .by_api_key(&hash_secret(key))
        .await?
    {
        Some(a) => Ok(Some(a)),
        None => {
            // Keys are random 160-bit secrets, so guessing is hopeless; still, one line per refusal
            // lets an admin (or fail2ban) see a client trying. Never the key itself.
            let client = ClientAddr::from_parts(parts, relay)
                .ip()
                .map(|ip| ip.to_string())
                .unwrap_or_default();
            tracing::info!(target: "herald::auth", %client, "relay API key refused: unknown key");
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "Invalid token."))
        }
    }
}

impl FromRequestParts<Relay> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, relay: &Relay) -> Result<Self, ApiError> {
        authenticate(parts, relay)
            .await?
            .map(Caller)
            .ok_or_else(ApiError::unauthorized)
    }
}

impl FromRequestParts<Relay> for MaybeCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, relay: &Relay) -> Result<Self, ApiError> {
        Ok(MaybeCaller(authenticate(parts, relay).await?))
    }
}

/// The client address when the server serves with connect info: the TCP peer, or what a trusted proxy
/// says (see `client_addr.rs`), as the per-address limits key it ([`crate::ratelimit::address_key`]: an
/// IPv6 client is its /64), so every limit and audit line that names the client sees the same key.
pub struct ClientAddr(pub Option<String>, Option<std::net::IpAddr>);

impl ClientAddr {
    /// The client's own address (not grouped), if there is one.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.1
    }

    /// The client address of the request in `parts` (see `client_addr.rs`).
    fn from_parts(parts: &Parts, relay: &Relay) -> ClientAddr {
        let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| {
            client_addr::client_address(
                c.0.ip(),
                &parts.headers,
                &relay.inner.config.client_address_header,
                &relay.inner.trusted_proxies,
            )
        });
        ClientAddr(ip.map(crate::ratelimit::address_key), ip)
    }
}

impl FromRequestParts<Relay> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, relay: &Relay) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr::from_parts(parts, relay))
    }
}

/// ChatSecure's `DATETIME_FORMAT` (`%Y-%m-%dT%H:%M:%S.%fZ`, 6 fractional digits, literal Z), which
/// the iOS SDK parses exactly.
pub fn format_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The routes, recorded as they are added so the OpenAPI test can compare them with the document.
pub struct RouteTable {
    router: Router<Relay>,
    pub routes: Vec<(String, BTreeSet<String>)>,
}

impl RouteTable {
    fn new() -> RouteTable {
        RouteTable {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    /// Adds `path` (with its trailing slash) and the same path without it.
    fn add(mut self, path: &str, methods: &[&str], handler: MethodRouter<Relay>) -> RouteTable {
        self.routes.push((
            path.to_string(),
            methods.iter().map(|m| m.to_string()).collect(),
        ));
        let bare = path.trim_end_matches('/');
        self.router = self.router.route(path, handler.clone());
        if !bare.is_empty() && bare != path {
            self.router = self.router.route(bare, handler);
        }
        self
    }
}

/// Every route of the API. `routes()` is the documented table; the handlers live in the submodules.
pub fn route_table() -> RouteTable {
    use axum::routing::{delete, get, post};
    let (g, p, d, pu, pa) = ("GET", "POST", "DELETE", "PUT", "PATCH");
    RouteTable::new()
        .add("/api/v1/", &[g], get(info::root))
        .add("/api/v1/pubsub/", &[g], get(info::pubsub))
        .add("/api/v1/health/", &[g], get(info::health))
        .add("/api/v1/openapi.json", &[g], get(info::openapi))
        .add(
            "/api/v1/accounts/",
            &[g, p],
            get(accounts::me).post(accounts::create_or_login),
        )
        .add(
            "/api/v1/accounts/{username}/",
            &[g, d],
            get(accounts::get_one).delete(accounts::delete_one),
        )
        .add(
            "/api/v1/accounts/{username}/rotate_key/",
            &[p],
            post(accounts::rotate_key),
        )
        .add("/api/v1/audit/", &[g], get(info::audit))
        .add(
            "/api/v1/device/{kind}/",
            &[g, p],
            get(devices::list).post(devices::create),
        )
        .add(
            "/api/v1/device/{kind}/{id}/",
            &[g, pu, pa, d],
            get(devices::get_one)
                .put(devices::replace)
                .patch(devices::patch)
                .delete(devices::remove),
        )
        .add("/api/v1/webpush/vapid/", &[g], get(info::vapid))
        .add("/api/v1/federation/key/", &[g], get(federation::key))
        .add(
            "/api/v1/federation/messages/",
            &[p],
            post(federation::post_message),
        )
        .add(
            "/api/v1/tokens/",
            &[g, p],
            get(tokens::list).post(tokens::create),
        )
        .add(
            "/api/v1/tokens/{token}/",
            &[g, d],
            get(tokens::get_one).merge(delete(tokens::revoke)),
        )
        .add("/api/v1/messages/", &[p], post(messages::post))
        .add("/api/v1/messages/{id}/", &[g], get(messages::status))
}

async fn fallback() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// The API router (state: the relay).
pub fn router(relay: Relay) -> Router {
    let max = relay.inner.config.limits.max_body_bytes;
    route_table()
        .router
        .fallback(fallback)
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(DefaultBodyLimit::max(max))
        .with_state(relay)
}
