//! Accepting a push: token lookup (hash), expiry and revocation enforced at send time, sender
//! binding, rate limits per token / sender / account, then the message and its deliveries are
//! persisted in the outbox before the caller answers 202. Also forwarding of remote tokens (the
//! server's wake-ups are in `wake.rs`). Refusals of a known token are rate limited before anything
//! is written, and audited once a minute per token and outcome.

use std::time::Instant;

use herald_storage::relay::{
    AuditEntry, DeliveryTarget, Device, NewDelivery, PushMessage, WhitelistToken,
};

use reqwest::Url;

use crate::ratelimit::Refused;
use crate::secrets::hash_secret;
use crate::{Notification, Relay, RelayError, Ticket, now_ms};

/// ChatSecure limits: token ≤ 200 characters, data ≤ 100.
pub const MAX_TOKEN_CHARS: usize = 200;
pub const MAX_DATA_CHARS: usize = 100;
pub(crate) const MAX_SENDER_CHARS: usize = 1024;
/// A remote messages endpoint (UnifiedPush caps endpoints at 1000 bytes).
pub(crate) const MAX_ENDPOINT_BYTES: usize = 1000;

pub(crate) async fn submit(relay: &Relay, n: Notification) -> Result<Ticket, RelayError> {
    if n.token.is_empty() || n.token.chars().count() > MAX_TOKEN_CHARS {
        return Err(RelayError::BadInput("token: 1 to 200 characters".into()));
    }
    if n.data
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DATA_CHARS)
    {
        return Err(RelayError::BadInput("data: at most 100 characters".into()));
    }
    if n.sender
        .as_ref()
        .is_some_and(|s| s.len() > MAX_SENDER_CHARS)
    {
        return Err(RelayError::BadInput("sender too long".into()));
    }
    let own = relay.inner.config.messages_endpoint();
    match n.endpoint.as_deref() {
        Some(e) if !same_endpoint(e, &own) => forward(relay, &n, e).await,
        _ => local(relay, &n).await,
    }
}

fn same_endpoint(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Whether `sender` may use a token bound to `binding`: the same JID, or a JID or domain under the
/// bound domain (a binding without `@` is a domain).
pub(crate) fn sender_matches(binding: &str, sender: Option<&str>) -> bool {
    let Some(sender) = sender else { return false };
    let sender = sender.to_ascii_lowercase();
    let binding = binding.to_ascii_lowercase();
    if binding.contains('@') {
        // A bare JID binding also admits its full JIDs.
        sender == binding || sender.split('/').next() == Some(binding.as_str())
    } else {
        let domain = sender
            .split('/')
            .next()
            .map(|bare| bare.rsplit('@').next().unwrap_or(bare))
            .unwrap_or("");
        domain == binding
    }
}

fn refused(r: Refused) -> RelayError {
    RelayError::RateLimited(r.retry_after)
}

/// Audit lines per minute for the refusals of one token with one outcome.
const REFUSAL_AUDITS_PER_MINUTE: u32 = 1;

/// The key a notification's sender is rate limited by: the verified sender, else the client
/// address, else one bucket for every anonymous caller.
fn sender_key(n: &Notification) -> &str {
    n.sender
        .as_deref()
        .or(n.origin.as_deref())
        .unwrap_or("anonymous")
}

async fn audit(
    relay: &Relay,
    t: &WhitelistToken,
    n: &Notification,
    outcome: &str,
    msg: Option<&str>,
) {
    let entry = AuditEntry {
        id: 0,
        account_id: t.account_id.clone(),
        at_ms: now_ms(),
        token_id: Some(t.id.clone()),
        sender: n.sender.clone().or_else(|| n.origin.clone()),
        message_id: msg.map(str::to_string),
        outcome: outcome.to_string(),
    };
    // The audit trail must not turn a refusal into a 500: a failed write is logged, not returned.
    if let Err(e) = relay.inner.storage.push_audit.record(&entry).await {
        tracing::warn!(error = %e, "audit write failed");
    }
}

/// Audits a refusal unless the same token was refused with the same outcome within the last
/// minute: a flood of refusals writes one line a minute, not one a request.
async fn audit_refusal(relay: &Relay, t: &WhitelistToken, n: &Notification, outcome: &str) {
    let key = format!("{}:{outcome}", t.id);
    let coalesced = relay
        .inner
        .limits
        .refusal_audits
        .check(&key, REFUSAL_AUDITS_PER_MINUTE, Instant::now())
        .is_err();
    if !coalesced {
        audit(relay, t, n, outcome, None).await;
    }
}

/// Why a known token cannot be used now, if it cannot.
fn refusal(t: &WhitelistToken, n: &Notification, now: i64) -> Option<(&'static str, RelayError)> {
    if t.revoked_at_ms.is_some() {
        return Some(("revoked", RelayError::UnknownToken));
    }
    if t.expires_at_ms.is_some_and(|e| e <= now) {
        return Some(("expired", RelayError::UnknownToken));
    }
    if let Some(binding) = &t.sender
        && !sender_matches(binding, n.sender.as_deref())
    {
        return Some(("sender-mismatch", RelayError::SenderNotAllowed));
    }
    None
}

/// Refuses a post of a known token. Refusals are rate limited (per token in a budget of their own,
/// and per sender) before anything is written, and their audit lines are coalesced, so whoever
/// holds a dead token (anyone can make and revoke one) cannot turn requests into database writes.
async fn refuse(
    relay: &Relay,
    t: &WhitelistToken,
    n: &Notification,
    outcome: &str,
    error: RelayError,
) -> RelayError {
    let inner = &relay.inner;
    let limits = &inner.config.limits;
    let clock = Instant::now();
    let metered = inner
        .limits
        .refusals
        .check(&t.id, limits.per_token, clock)
        .and_then(|()| {
            inner
                .limits
                .sender
                .check(sender_key(n), limits.per_sender, clock)
        });
    match metered {
        Ok(()) => {
            audit_refusal(relay, t, n, outcome).await;
            error
        }
        Err(r) => {
            audit_refusal(relay, t, n, "rate-limited").await;
            refused(r)
        }
    }
}

async fn local(relay: &Relay, n: &Notification) -> Result<Ticket, RelayError> {
    let Some(t) = relay
        .inner
        .storage
        .whitelist_tokens
        .by_hash(&hash_secret(&n.token))
        .await?
    else {
        return Err(RelayError::UnknownToken);
    };
    deliver(relay, &t, n, SenderMetering::Metered).await
}

/// Whether a push counts against its sender's rate limit (`limits.per_sender`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SenderMetering {
    Metered,
    /// The hosting server itself: it can wake its users' devices without a token anyway
    /// ([`Relay::wake_account`]), so one bucket for all of its pushes would only throttle a busy
    /// domain's users against each other.
    Exempt,
}

/// Pushes with a known token `t` (its secret already checked by the caller): refusals (revoked,
/// expired, sender binding), rate limits, the devices it reaches, then the outbox.
pub(crate) async fn deliver(
    relay: &Relay,
    t: &WhitelistToken,
    n: &Notification,
    metering: SenderMetering,
) -> Result<Ticket, RelayError> {
    let inner = &relay.inner;
    let now = now_ms();
    if let Some((outcome, error)) = refusal(t, n, now) {
        return Err(refuse(relay, t, n, outcome, error).await);
    }
    let limits = &inner.config.limits;
    let clock = Instant::now();
    let checks = inner
        .limits
        .token
        .check(&t.id, t.rate_per_minute.unwrap_or(limits.per_token), clock)
        .and_then(|()| match metering {
            SenderMetering::Metered => {
                inner
                    .limits
                    .sender
                    .check(sender_key(n), limits.per_sender, clock)
            }
            SenderMetering::Exempt => Ok(()),
        })
        .and_then(|()| {
            inner
                .limits
                .account
                .check(&t.account_id, limits.per_account, clock)
        });
    if let Err(r) = checks {
        audit_refusal(relay, t, n, "rate-limited").await;
        return Err(refused(r));
    }
    let devices: Vec<Device> = inner
        .storage
        .relay_devices
        .list(&t.account_id, None)
        .await?
        .into_iter()
        .filter(|d| d.active && (t.device_ids.is_empty() || t.device_ids.contains(&d.id)))
        .collect();
    if devices.is_empty() && !t.device_ids.is_empty() {
        // Every device this token was scoped to is gone (removed, or reported dead by its push
        // network): the token is dead, and 404 tells the sender's server to drop the registration.
        audit_refusal(relay, t, n, "devices-gone").await;
        return Err(RelayError::UnknownToken);
    }
    let message = PushMessage {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: Some(t.account_id.clone()),
        token_id: Some(t.id.clone()),
        sender: n.sender.clone(),
        priority: n.priority.as_str().to_string(),
        created_at_ms: now,
    };
    let ticket = enqueue_devices(relay, &message, &devices, n.data.clone()).await?;
    audit(relay, t, n, "accepted", Some(&message.id)).await;
    Ok(ticket)
}

async fn enqueue_devices(
    relay: &Relay,
    message: &PushMessage,
    devices: &[Device],
    data: Option<String>,
) -> Result<Ticket, RelayError> {
    let deliveries: Vec<NewDelivery> = devices
        .iter()
        .map(|d| device_delivery(d, &message.priority, data.clone()))
        .collect();
    let window = i64::try_from(relay.inner.config.collapse_window_ms).unwrap_or(i64::MAX);
    let done = relay
        .inner
        .storage
        .push_outbox
        .enqueue(message, &deliveries, window, message.created_at_ms)
        .await?;
    relay.inner.queued.notify_one();
    Ok(Ticket {
        message_id: message.id.clone(),
        deliveries: deliveries.len(),
        collapsed: done.collapsed,
    })
}

/// The delivery of a message to one device; one collapse key per device, so a device gets at most
/// one pending push however many messages want to wake it.
pub(crate) fn device_delivery(
    device: &Device,
    priority: &str,
    data: Option<String>,
) -> NewDelivery {
    NewDelivery {
        target: DeliveryTarget::Device(device.id.clone()),
        collapse_key: format!("device:{}", device.id),
        priority: priority.to_string(),
        data,
    }
}

/// Whether this relay may forward to `endpoint` (`[relay.federation]`).
pub(crate) fn forward_allowed(relay: &Relay, endpoint: &str) -> bool {
    let config = &relay.inner.config;
    let Ok(url) = Url::parse(endpoint) else {
        return false;
    };
    let scheme_ok = url.scheme() == "https" || (config.allow_plain_http && url.scheme() == "http");
    scheme_ok
        && (config.federation.forward_to_any
            || config
                .federation
                .peers
                .iter()
                .any(|p| under_peer(p, endpoint)))
}

/// Whether `endpoint` belongs to the configured `peer`: the same origin (scheme, host and port
/// after parsing, RFC 6454 section 4), and a path equal to or under the peer's, segment by
/// segment. A string prefix would let `https://peer.example` admit `https://peer.example.evil/`
/// and `https://peer.example@evil.example/`. A peer that does not parse admits nothing.
pub(crate) fn under_peer(peer: &str, endpoint: &str) -> bool {
    let (Ok(peer), Ok(endpoint)) = (Url::parse(peer), Url::parse(endpoint)) else {
        return false;
    };
    let same_origin = peer.scheme() == endpoint.scheme()
        && peer.host_str().is_some()
        && peer.host_str() == endpoint.host_str()
        && peer.port_or_known_default() == endpoint.port_or_known_default();
    if !same_origin {
        return false;
    }
    let base = peer.path().trim_end_matches('/');
    let path = endpoint.path();
    base.is_empty()
        || path.trim_end_matches('/') == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

async fn forward(relay: &Relay, n: &Notification, endpoint: &str) -> Result<Ticket, RelayError> {
    if endpoint.len() > MAX_ENDPOINT_BYTES {
        return Err(RelayError::BadInput("endpoint too long".into()));
    }
    if !forward_allowed(relay, endpoint) {
        return Err(RelayError::ForwardNotAllowed);
    }
    let inner = &relay.inner;
    let limits = &inner.config.limits;
    let clock = Instant::now();
    let remote_key = format!(
        "remote:{}",
        hash_secret(&format!("{endpoint}\n{}", n.token))
    );
    inner
        .limits
        .token
        .check(&remote_key, limits.per_token, clock)
        .and_then(|()| {
            inner
                .limits
                .sender
                .check(sender_key(n), limits.per_sender, clock)
        })
        .map_err(refused)?;
    let now = now_ms();
    let message = PushMessage {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: None,
        token_id: None,
        sender: n.sender.clone(),
        priority: n.priority.as_str().to_string(),
        created_at_ms: now,
    };
    let delivery = NewDelivery {
        target: DeliveryTarget::Remote {
            endpoint: endpoint.to_string(),
            token: n.token.clone(),
        },
        collapse_key: remote_key,
        priority: message.priority.clone(),
        data: n.data.clone(),
    };
    let window = i64::try_from(inner.config.collapse_window_ms).unwrap_or(i64::MAX);
    let done = inner
        .storage
        .push_outbox
        .enqueue(&message, &[delivery], window, now)
        .await?;
    inner.queued.notify_one();
    Ok(Ticket {
        message_id: message.id,
        deliveries: 1,
        collapsed: done.collapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::{sender_matches, under_peer};

    /// Finding: the peer check was a string prefix, so `https://peer.example` admitted
    /// `https://peer.example.evil/` and `https://peer.example@evil.example/`.
    #[test]
    fn a_peer_is_matched_by_origin_not_by_prefix() {
        let peer = "https://peer.example";
        assert!(!under_peer(
            peer,
            "https://peer.example.evil/api/v1/messages/"
        ));
        assert!(!under_peer(
            peer,
            "https://peer.example@evil.example/api/v1/messages/"
        ));
        assert!(under_peer(peer, "https://peer.example/api/v1/messages/"));
        assert!(under_peer(
            peer,
            "https://PEER.example:443/api/v1/messages/"
        ));
        assert!(!under_peer(
            peer,
            "https://peer.example:8443/api/v1/messages/"
        ));
        assert!(!under_peer(peer, "http://peer.example/api/v1/messages/"));
        // A peer given with a path admits that path and what is under it, segment by segment.
        let peer = "https://relay.example/push/api/v1/messages/";
        assert!(under_peer(
            peer,
            "https://relay.example/push/api/v1/messages/"
        ));
        assert!(under_peer(
            peer,
            "https://relay.example/push/api/v1/messages"
        ));
        assert!(!under_peer(
            peer,
            "https://relay.example/push/api/v1/messages-evil/"
        ));
        assert!(!under_peer(peer, "https://relay.example/other/"));
        assert!(!under_peer("not a url", "https://relay.example/"));
    }

    #[test]
    fn sender_binding() {
        assert!(sender_matches("example.org", Some("example.org")));
        assert!(sender_matches(
            "example.org",
            Some("alice@example.org/phone")
        ));
        assert!(sender_matches("Example.ORG", Some("example.org")));
        assert!(!sender_matches("example.org", Some("evil.example")));
        assert!(!sender_matches("example.org", Some("example.org.evil")));
        assert!(!sender_matches("example.org", None));
        assert!(sender_matches(
            "alice@example.org",
            Some("alice@example.org")
        ));
        assert!(sender_matches(
            "alice@example.org",
            Some("alice@example.org/res")
        ));
        assert!(!sender_matches(
            "alice@example.org",
            Some("bob@example.org")
        ));
        assert!(!sender_matches("alice@example.org", Some("example.org")));
    }
}
