//! APNs backend through a2 (Apple, "Sending notification requests to APNs"): token (.p8 JWT) or certificate (PEM) auth,
//! one client per environment (a device carries its own sandbox flag), `apns-push-type` matching the
//! payload (alert + priority 10 for high, background + priority 5 + content-available for low),
//! absolute `apns-expiration`, `apns-collapse-id`, topic per device or the configured default.
//! a2 cannot target a local server, so payload building and error mapping are unit-tested here.

use std::time::Duration;

use a2::request::notification::{
    DefaultNotificationBuilder, NotificationBuilder, NotificationOptions,
};
use a2::request::payload::Payload;
use a2::{
    Client, ClientConfig, CollapseId, Endpoint, ErrorReason, Priority as ApnsPriority, PushType,
};
use async_trait::async_trait;
use herald_storage::relay::Device;

use super::{Push, PushBackend, SendOutcome};
use crate::{Priority, RelayConfig};

/// The visible text of a high-priority push: fixed, never the message (ChatSecure/Prosody default).
pub const ALERT_BODY: &str = "New Message!";

/// Sends to APNs.
pub struct ApnsBackend {
    clients: ApnsClients,
    default_topic: String,
}

/// One APNs client per environment, signing with the configured token key or presenting the
/// configured certificate. Built when `[relay]` is resolved, so an unreadable or invalid key is a
/// configuration problem, not a failure at start.
#[derive(Clone)]
pub struct ApnsClients {
    production: Client,
    sandbox: Client,
}

impl std::fmt::Debug for ApnsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The clients hold the signing key: never printed.
        f.debug_struct("ApnsClients").finish_non_exhaustive()
    }
}

impl ApnsClients {
    /// Reads `[relay.apns]`'s token key (`key_file` with `key_id` and `team_id`) or its certificate
    /// (`certificate_file` + `certificate_key_file`) and builds both clients; `None` when neither is
    /// configured. Errors: every problem found, each starting with its key.
    pub fn load(config: &RelayConfig) -> Result<Option<ApnsClients>, Vec<String>> {
        let apns = &config.apns;
        if apns.key_file.is_empty() && apns.certificate_file.is_empty() {
            return Ok(None);
        }
        let mut problems = Vec::new();
        let read = |key: &str, path: &str, problems: &mut Vec<String>| {
            if path.is_empty() {
                problems.push(format!("apns.{key}: required with apns.certificate_file"));
                return None;
            }
            std::fs::read(path)
                .map_err(|e| problems.push(format!("apns.{key}: {path}: {e}")))
                .ok()
        };
        let build = |endpoint: Endpoint| ClientConfig {
            endpoint,
            request_timeout_secs: Some(config.request_timeout_ms.div_ceil(1000)),
            pool_idle_timeout_secs: Some(600),
        };
        let clients = if !apns.key_file.is_empty() {
            if apns.key_id.is_empty() || apns.team_id.is_empty() {
                problems.push("apns.key_file: needs apns.key_id and apns.team_id".into());
            }
            let pem = read("key_file", &apns.key_file, &mut problems);
            match pem {
                Some(pem) if problems.is_empty() => {
                    let client = |endpoint| {
                        Client::token(
                            pem.as_slice(),
                            apns.key_id.clone(),
                            apns.team_id.clone(),
                            build(endpoint),
                        )
                        .map_err(|e| format!("apns.key_file: {}: {e}", apns.key_file))
                    };
                    Some((client(Endpoint::Production), client(Endpoint::Sandbox)))
                }
                _ => None,
            }
        } else {
            let cert = read("certificate_file", &apns.certificate_file, &mut problems);
            let key = read(
                "certificate_key_file",
                &apns.certificate_key_file,
                &mut problems,
            );
            match (cert, key) {
                (Some(cert), Some(key)) => {
                    let client = |endpoint| {
                        Client::certificate_parts(&cert, &key, build(endpoint)).map_err(|e| {
                            format!(
                                "apns.certificate_file: {} with {}: {e}",
                                apns.certificate_file, apns.certificate_key_file
                            )
                        })
                    };
                    Some((client(Endpoint::Production), client(Endpoint::Sandbox)))
                }
                _ => None,
            }
        };
        match clients {
            Some((production, sandbox)) if problems.is_empty() => match (production, sandbox) {
                (Ok(production), Ok(sandbox)) => Ok(Some(ApnsClients {
                    production,
                    sandbox,
                })),
                // Both environments use the same key: its problem once is enough.
                (Err(problem), _) | (_, Err(problem)) => Err(vec![problem]),
            },
            _ => Err(problems),
        }
    }
}

impl ApnsBackend {
    /// Sends with `clients`; `default_topic` for devices registered without a topic.
    pub fn new(clients: ApnsClients, default_topic: String) -> ApnsBackend {
        ApnsBackend {
            clients,
            default_topic,
        }
    }
}

/// Builds the APNs request for one device. Content-free: a fixed alert for high priority (iOS 13+
/// drops silent pushes that claim to be alerts), a background push for low; the app data, if any, in
/// a top-level `message.data`.
pub fn build_payload<'a>(
    device_token: &'a str,
    topic: &'a str,
    push: &'a Push,
    now_secs: u64,
) -> Result<Payload<'a>, SendOutcome> {
    let options = NotificationOptions {
        apns_push_type: Some(if push.priority == Priority::High {
            PushType::Alert
        } else {
            PushType::Background
        }),
        apns_priority: Some(if push.priority == Priority::High {
            ApnsPriority::High
        } else {
            ApnsPriority::Normal
        }),
        // Absolute epoch seconds (Apple, "Sending notification requests to APNs": `apns-expiration` is a UNIX epoch date, not a duration).
        apns_expiration: Some(now_secs.saturating_add(push.ttl_secs)),
        apns_topic: Some(topic),
        apns_collapse_id: Some(
            CollapseId::new(&push.collapse_id)
                .map_err(|e| SendOutcome::Rejected(format!("collapse id: {e}")))?,
        ),
        apns_id: None,
    };
    let builder = DefaultNotificationBuilder::new();
    let builder = if push.priority == Priority::High {
        builder
            .set_body(ALERT_BODY)
            .set_sound("default")
            .set_mutable_content()
    } else {
        builder.set_content_available()
    };
    let mut payload = builder.build(device_token, options);
    payload
        .add_custom_data("message", &serde_json::json!({"data": push.data}))
        .map_err(|e| SendOutcome::Rejected(format!("payload: {e}")))?;
    Ok(payload)
}

/// Maps an APNs answer (status and reason) to its class (Apple, "Handling notification responses from APNs", its status and reason tables).
pub fn classify(status: u16, reason: Option<&ErrorReason>) -> SendOutcome {
    use ErrorReason::*;
    let text = format!(
        "apns {status} {}",
        reason
            .map(|r| format!("{r:?}"))
            .unwrap_or_else(|| "-".into())
    );
    match (status, reason) {
        (200, _) => SendOutcome::Sent,
        (410, _) | (_, Some(Unregistered | BadDeviceToken | DeviceTokenNotForTopic)) => {
            SendOutcome::Gone(text)
        }
        (_, Some(IdleTimeout)) => SendOutcome::Retry {
            after: Some(Duration::from_secs(1)),
            reason: text,
        },
        // a2 re-signs its JWT; the next attempt carries a fresh one.
        (_, Some(ExpiredProviderToken)) => SendOutcome::Retry {
            after: Some(Duration::from_secs(1)),
            reason: text,
        },
        (
            _,
            Some(
                TooManyRequests
                | TooManyProviderTokenUpdates
                | InternalServerError
                | ServiceUnavailable
                | Shutdown,
            ),
        )
        | (429 | 500..=599, _) => SendOutcome::Retry {
            after: None,
            reason: text,
        },
        _ => SendOutcome::Rejected(text),
    }
}

/// Maps an a2 error to its class.
pub fn classify_error(e: &a2::Error) -> SendOutcome {
    match e {
        a2::Error::ResponseError(r) => classify(r.code, r.error.as_ref().map(|b| &b.reason)),
        a2::Error::ConnectionError(_)
        | a2::Error::ClientError(_)
        | a2::Error::RequestTimeout(_) => SendOutcome::Retry {
            after: None,
            reason: "apns connection".into(),
        },
        other => SendOutcome::Rejected(format!("apns: {other}")),
    }
}

#[async_trait]
impl PushBackend for ApnsBackend {
    async fn send(&self, device: &Device, push: &Push) -> SendOutcome {
        let topic = device.apns_topic.as_deref().unwrap_or(&self.default_topic);
        if topic.is_empty() {
            return SendOutcome::Rejected("no APNs topic for this device".into());
        }
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        let payload = match build_payload(&device.token, topic, push, now) {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let client = if device.apns_sandbox {
            &self.clients.sandbox
        } else {
            &self.clients.production
        };
        match client.send(payload).await {
            Ok(r) if r.code == 200 => SendOutcome::Sent,
            Ok(r) => classify(r.code, r.error.as_ref().map(|b| &b.reason)),
            Err(e) => classify_error(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use a2::request::payload::PayloadLike;

    fn push(priority: Priority) -> Push {
        Push {
            priority,
            data: None,
            collapse_id: "herald-wake".into(),
            ttl_secs: 3600,
        }
    }

    #[test]
    fn high_is_a_fixed_alert() {
        let p = push(Priority::High);
        let payload = build_payload("abcd", "org.example.app", &p, 1_700_000_000).unwrap();
        assert!(matches!(
            payload.options.apns_push_type,
            Some(PushType::Alert)
        ));
        assert!(matches!(
            payload.options.apns_priority,
            Some(ApnsPriority::High)
        ));
        assert_eq!(payload.options.apns_expiration, Some(1_700_003_600));
        assert_eq!(payload.options.apns_topic, Some("org.example.app"));
        let json: serde_json::Value =
            serde_json::from_str(&payload.to_json_string().unwrap()).unwrap();
        // a2 writes a body-only alert as a plain string.
        assert_eq!(json["aps"]["alert"], ALERT_BODY);
        assert_eq!(json["aps"]["sound"], "default");
        assert_eq!(json["aps"]["mutable-content"], 1);
        assert_eq!(json["message"], serde_json::json!({"data": null}));
        // No sender, no text beyond the fixed alert.
        assert!(!json.to_string().contains("@"));
    }

    /// A huge `push_ttl_secs` once overflowed the expiration sum (a panic in debug builds, a wrapped
    /// expiration in the past in release builds).
    #[test]
    fn huge_ttl_saturates_the_expiration() {
        let p = Push {
            ttl_secs: u64::MAX,
            ..push(Priority::High)
        };
        let payload = build_payload("abcd", "org.example.app", &p, 1_700_000_000).unwrap();
        assert_eq!(payload.options.apns_expiration, Some(u64::MAX));
    }

    #[test]
    fn low_is_background_priority_5() {
        let p = push(Priority::Low);
        let payload = build_payload("abcd", "org.example.app", &p, 10).unwrap();
        assert!(matches!(
            payload.options.apns_push_type,
            Some(PushType::Background)
        ));
        assert!(matches!(
            payload.options.apns_priority,
            Some(ApnsPriority::Normal)
        ));
        let json: serde_json::Value =
            serde_json::from_str(&payload.to_json_string().unwrap()).unwrap();
        assert_eq!(json["aps"]["content-available"], 1);
        assert!(json["aps"].get("alert").is_none());
    }

    #[test]
    fn collapse_id_over_64_bytes_is_rejected() {
        let mut p = push(Priority::High);
        p.collapse_id = "x".repeat(65);
        assert!(matches!(
            build_payload("abcd", "t", &p, 0),
            Err(SendOutcome::Rejected(_))
        ));
    }

    #[test]
    fn error_table() {
        assert_eq!(classify(200, None), SendOutcome::Sent);
        assert!(matches!(
            classify(410, Some(&ErrorReason::Unregistered)),
            SendOutcome::Gone(_)
        ));
        assert!(matches!(
            classify(400, Some(&ErrorReason::BadDeviceToken)),
            SendOutcome::Gone(_)
        ));
        assert!(matches!(
            classify(400, Some(&ErrorReason::DeviceTokenNotForTopic)),
            SendOutcome::Gone(_)
        ));
        assert!(matches!(
            classify(429, Some(&ErrorReason::TooManyRequests)),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify(503, Some(&ErrorReason::ServiceUnavailable)),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(classify(500, None), SendOutcome::Retry { .. }));
        assert!(matches!(
            classify(400, Some(&ErrorReason::IdleTimeout)),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            classify(400, Some(&ErrorReason::BadTopic)),
            SendOutcome::Rejected(_)
        ));
        assert!(matches!(
            classify(413, Some(&ErrorReason::PayloadTooLarge)),
            SendOutcome::Rejected(_)
        ));
        assert!(matches!(
            classify(403, Some(&ErrorReason::Forbidden)),
            SendOutcome::Rejected(_)
        ));
        assert!(matches!(
            classify_error(&a2::Error::RequestTimeout(20)),
            SendOutcome::Retry { .. }
        ));
    }
}
