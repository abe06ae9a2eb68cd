//! Delivery backends behind one trait, [`PushBackend`]: APNs (a2), FCM HTTP v1 (reqwest + OAuth2
//! service account), Web Push (RFC 8030/8291/8292), UnifiedPush, plus relay-to-relay forwarding.
//! Every backend reduces a vendor answer to one [`SendOutcome`] class; the outbox owns the action
//! for each class (the APNs, FCM HTTP v1 and RFC 8030 error documentation cited in each backend).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_storage::relay::{Device, DeviceKind};

use crate::{Priority, RelayConfig, RelayError, RelaySettings};
use address_policy::{AddressPolicy, EndpointRefused, PublicResolver};

pub mod address_policy;
pub mod apns;
pub mod ece;
pub mod fcm;
pub mod forward;
pub mod oauth;
pub mod unifiedpush;
pub mod vapid;
pub mod webpush;

/// What to send to one device. Content-free by default: no sender, no message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub priority: Priority,
    /// Opaque app data (ChatSecure `data`), `None` by default.
    pub data: Option<String>,
    /// Vendor collapse id (APNs `apns-collapse-id`, FCM `collapse_key`, Web Push `Topic`).
    pub collapse_id: String,
    /// How long the vendor may hold the push, in seconds.
    pub ttl_secs: u64,
}

/// The one failure class of a send attempt (DESIGN.md "each failure class has exactly one action").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted by the vendor or the peer relay.
    Sent,
    /// The device (or remote token) is gone for good: APNs 410/BadDeviceToken, FCM
    /// UNREGISTERED/SENDER_ID_MISMATCH, Web Push 404/410. The device is removed.
    Gone(String),
    /// Rate-limited or transient (429, 5xx, timeouts, connection errors): retried with backoff,
    /// never sooner than `after` (Retry-After).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Refused as malformed or unauthorised: recorded with its reason, not retried.
    Rejected(String),
}

/// A push network.
#[async_trait]
pub trait PushBackend: Send + Sync {
    /// Sends one push to one device and classifies the answer. Never logs the device token.
    async fn send(&self, device: &Device, push: &Push) -> SendOutcome;
}

/// The backends this relay has, one per device kind (`None` = not configured: deliveries to such
/// devices fail with "backend not configured").
#[derive(Clone)]
pub struct Backends {
    pub apns: Option<Arc<dyn PushBackend>>,
    pub fcm: Option<Arc<dyn PushBackend>>,
    pub webpush: Option<Arc<dyn PushBackend>>,
    pub unifiedpush: Option<Arc<dyn PushBackend>>,
    pub forward: forward::Forwarder,
    /// The addresses user-supplied endpoints (Web Push, UnifiedPush, forwarding) may reach.
    pub endpoint_policy: Arc<AddressPolicy>,
    /// The VAPID public key (base64url, uncompressed) browsers subscribe with
    /// (`applicationServerKey`); `None` without a VAPID key.
    pub vapid_public_key: Option<String>,
}

impl Backends {
    /// Builds every backend `settings` configure, with the credentials read when they were resolved.
    /// Errors: [`RelayError::Config`] when an HTTP client cannot be built (the TLS backend failed to
    /// initialise: the environment, not the configuration).
    pub fn new(settings: &RelaySettings) -> Result<Backends, RelayError> {
        let config = settings.config();
        // FCM, its token exchange and APNs go to hosts the operator configured (vendor hosts, or
        // local stand-ins in tests): not user input, so not filtered.
        let http = http_client(config)?;
        let endpoint_policy = settings.endpoint_policy.clone();
        let guarded = Guarded {
            http: endpoint_client(config, &endpoint_policy)?,
            policy: endpoint_policy.clone(),
        };
        let credentials = &settings.credentials;
        let key = settings
            .federation_key
            .key()
            .map_err(|e| RelayError::Config(format!("federation.key_file: {e}")))?;
        let signer = crate::federation::Signer::new(
            key,
            &config.federation_domain(),
            config.federation.signature_lifetime_secs,
        );
        let apns = credentials.apns.clone().map(|clients| {
            Arc::new(apns::ApnsBackend::new(clients, config.apns.topic.clone()))
                as Arc<dyn PushBackend>
        });
        let fcm = credentials.fcm.as_ref().map(|account| {
            Arc::new(fcm::FcmBackend::new(
                account,
                &config.fcm.base_url,
                http.clone(),
            )) as Arc<dyn PushBackend>
        });
        let vapid = credentials.vapid.clone();
        let webpush = vapid.clone().map(|v| {
            Arc::new(webpush::WebPushBackend::new(guarded.clone(), v)) as Arc<dyn PushBackend>
        });
        let unifiedpush = Some(Arc::new(unifiedpush::UnifiedPushBackend::new(
            guarded.clone(),
            vapid.clone(),
        )) as Arc<dyn PushBackend>);
        Ok(Backends {
            apns,
            fcm,
            webpush,
            unifiedpush,
            forward: forward::Forwarder::new(guarded, signer),
            endpoint_policy,
            vapid_public_key: vapid.map(|v| v.public_key_b64().to_string()),
        })
    }

    /// The backend for a device kind.
    pub fn for_kind(&self, kind: DeviceKind) -> Option<&Arc<dyn PushBackend>> {
        match kind {
            DeviceKind::Apns => self.apns.as_ref(),
            DeviceKind::Fcm => self.fcm.as_ref(),
            DeviceKind::WebPush => self.webpush.as_ref(),
            DeviceKind::UnifiedPush => self.unifiedpush.as_ref(),
        }
    }
}

/// The HTTP client every reqwest backend shares: pooled, timeouts, no redirects (UnifiedPush server
/// spec: a push server never redirects, and following one would reflect requests elsewhere).
pub fn http_client(config: &RelayConfig) -> Result<reqwest::Client, RelayError> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(config.request_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("herald-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RelayError::Config(format!("http client: {e}")))
}

/// The client for user-supplied endpoints: like [`http_client`], but host names resolve only to
/// addresses `policy` permits, checked when connecting (so DNS rebinding gets no further).
pub fn endpoint_client(
    config: &RelayConfig,
    policy: &Arc<AddressPolicy>,
) -> Result<reqwest::Client, RelayError> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(config.request_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(PublicResolver::new(policy.clone())))
        // Through an HTTP(S)_PROXY from the environment the proxy would resolve the endpoint's name,
        // not this resolver, and the check would see only the proxy's address.
        .no_proxy()
        .user_agent(concat!("herald-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RelayError::Config(format!("http client: {e}")))
}

/// A client for user-supplied endpoints with the policy it enforces. Every request starts with
/// [`Guarded::post`] or [`Guarded::get`], which refuse IP-literal hosts the policy does not permit
/// (a resolver is never asked about those); host names are filtered by the client's resolver.
#[derive(Clone)]
pub struct Guarded {
    http: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl Guarded {
    /// A POST to `url`. Errors: the [`SendOutcome`] for a refused or invalid URL.
    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, SendOutcome> {
        self.check(url)?;
        Ok(self.http.post(url))
    }

    /// A GET to `url`. Errors: as for [`Guarded::post`].
    pub fn get(&self, url: &str) -> Result<reqwest::RequestBuilder, SendOutcome> {
        self.check(url)?;
        Ok(self.http.get(url))
    }

    fn check(&self, url: &str) -> Result<(), SendOutcome> {
        self.policy.check_url(url).map_err(|e| {
            tracing::info!(error = %e, "push endpoint refused by address policy");
            refused_outcome(&e)
        })
    }
}

fn refused_outcome(e: &EndpointRefused) -> SendOutcome {
    SendOutcome::Rejected(match e {
        EndpointRefused::NotPublic => ENDPOINT_NOT_ALLOWED.into(),
        EndpointRefused::BadUrl => "endpoint URL invalid".into(),
    })
}

/// The reasons a poster reads in the message status (`GET /api/v1/messages/{id}/`) for plain HTTP
/// endpoints. Deliberately coarse: the status codes, connection errors and timeouts behind them
/// would let a poster map a network through the relay; the operator's log has the detail.
pub const ENDPOINT_GONE: &str = "endpoint gone";
pub const ENDPOINT_UNAVAILABLE: &str = "endpoint unavailable";
pub const ENDPOINT_REFUSED: &str = "endpoint refused the push";
pub const ENDPOINT_NOT_ALLOWED: &str = "endpoint address not allowed";

/// Parses `Retry-After`: delta seconds or an HTTP-date (RFC 9110 section 10.2.3).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = when.timestamp() - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// The class of a plain HTTP push answer (Web Push RFC 8030 section 5, UnifiedPush server spec,
/// relay forwarding): 2xx sent; 404/410 gone; 429 and 5xx retried; everything else rejected.
/// The reason recorded is coarse (see [`ENDPOINT_UNAVAILABLE`]); the status goes to the log.
pub fn classify_status(status: u16, retry: Option<Duration>) -> SendOutcome {
    if !(200..=299).contains(&status) {
        tracing::info!(status, "push endpoint answered with an error");
    }
    match status {
        200..=299 => SendOutcome::Sent,
        404 | 410 => SendOutcome::Gone(ENDPOINT_GONE.into()),
        408 | 425 | 429 | 500..=599 => SendOutcome::Retry {
            after: retry,
            reason: ENDPOINT_UNAVAILABLE.into(),
        },
        _ => SendOutcome::Rejected(ENDPOINT_REFUSED.into()),
    }
}

/// The class of a transport error: an address the policy refused is rejected; timeouts, connection
/// failures and the rest are transient. The reason recorded is coarse: a closed port, a refused
/// connection and a timeout all read "endpoint unavailable"; which one it was goes to the log.
pub fn classify_transport(e: &reqwest::Error) -> SendOutcome {
    if address_policy::is_refusal(e) {
        tracing::info!("push endpoint refused by address policy");
        return refused_outcome(&EndpointRefused::NotPublic);
    }
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect"
    } else {
        "transport error"
    };
    // The innermost cause (e.g. "Connection refused"), without the URL: it is the device token.
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    tracing::info!(what, cause = %cause, "push endpoint unreachable");
    SendOutcome::Retry {
        after: None,
        reason: ENDPOINT_UNAVAILABLE.into(),
    }
}

/// The content-free body sent to Web Push and UnifiedPush endpoints: a wake-up marker, the priority,
/// and the opaque app data if the poster gave any. Never a sender or message text.
pub fn wake_body(push: &Push) -> Vec<u8> {
    let mut v = serde_json::json!({"type": "wake", "priority": push.priority.as_str()});
    if let Some(d) = &push.data {
        v["data"] = serde_json::Value::String(d.clone());
    }
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(classify_status(201, None), SendOutcome::Sent);
        assert!(matches!(classify_status(410, None), SendOutcome::Gone(_)));
        assert!(matches!(classify_status(404, None), SendOutcome::Gone(_)));
        assert!(matches!(
            classify_status(429, Some(Duration::from_secs(3))),
            SendOutcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify_status(503, None),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify_status(413, None),
            SendOutcome::Rejected(_)
        ));
        assert!(matches!(
            classify_status(400, None),
            SendOutcome::Rejected(_)
        ));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn wake_body_has_no_content() {
        let p = Push {
            priority: Priority::High,
            data: None,
            collapse_id: "x".into(),
            ttl_secs: 60,
        };
        let v: serde_json::Value = serde_json::from_slice(&wake_body(&p)).unwrap();
        assert_eq!(v, serde_json::json!({"type": "wake", "priority": "high"}));
    }
}
