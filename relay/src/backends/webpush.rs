//! Web Push backend (RFC 8030 section 5): an RFC 8291-encrypted content-free body POSTed to the
//! subscription endpoint with TTL, Urgency, Topic and VAPID (RFC 8292) headers; 201 sent, 404/410
//! gone, 429/5xx retried, the rest rejected (RFC 8030 section 5 and 8, RFC 8291, RFC 8292).

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_storage::relay::Device;
use sha2::{Digest, Sha256};

use super::vapid::VapidKey;
use super::{
    Guarded, Push, PushBackend, SendOutcome, classify_status, classify_transport, retry_after,
    wake_body,
};
use crate::Priority;

/// Sends Web Push messages.
pub struct WebPushBackend {
    http: Guarded,
    vapid: VapidKey,
}

impl WebPushBackend {
    pub fn new(http: Guarded, vapid: VapidKey) -> WebPushBackend {
        WebPushBackend { http, vapid }
    }
}

/// A `Topic` header value (RFC 8030 section 5.4: at most 32 base64url characters) derived from the
/// collapse id, so pending pushes for one device replace each other at the push service.
pub fn topic(collapse_id: &str) -> String {
    let digest = Sha256::digest(collapse_id.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..24])
}

/// Decodes a base64url (padded or not) subscription key.
pub fn key_bytes(v: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok()
}

/// Encrypts the wake body for a device with Web Push keys, and builds the request. Errors: the
/// outcome for missing keys or an endpoint the address policy refuses.
pub(crate) fn encrypted_request(
    http: &Guarded,
    device: &Device,
    push: &Push,
    vapid: Option<&VapidKey>,
) -> Result<reqwest::RequestBuilder, SendOutcome> {
    let (Some(p256dh), Some(auth)) = (
        device.webpush_p256dh.as_deref().and_then(key_bytes),
        device.webpush_auth.as_deref().and_then(key_bytes),
    ) else {
        return Err(SendOutcome::Rejected(
            "subscription keys missing or invalid".into(),
        ));
    };
    let body = super::ece::encrypt(&p256dh, &auth, &wake_body(push))
        .map_err(|e| SendOutcome::Rejected(format!("encryption: {e}")))?;
    let mut req = http
        .post(&device.token)?
        .header("TTL", push.ttl_secs.to_string())
        .header("Content-Encoding", "aes128gcm")
        .header("Content-Type", "application/octet-stream")
        .header(
            "Urgency",
            if push.priority == Priority::High {
                "high"
            } else {
                "normal"
            },
        )
        .header("Topic", topic(&push.collapse_id))
        .body(body);
    if let Some(v) = vapid
        && let Some(auth) = v.authorization(&device.token, chrono::Utc::now().timestamp())
    {
        req = req.header("Authorization", auth);
    }
    Ok(req)
}

#[async_trait]
impl PushBackend for WebPushBackend {
    async fn send(&self, device: &Device, push: &Push) -> SendOutcome {
        let req = match encrypted_request(&self.http, device, push, Some(&self.vapid)) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        match req.send().await {
            Ok(resp) => classify_status(resp.status().as_u16(), retry_after(resp.headers())),
            Err(e) => classify_transport(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_is_short_base64url() {
        let t = topic("device:0b0f3c5e-1111-2222-3333-444455556666");
        assert_eq!(t.len(), 32);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(t, topic("device:0b0f3c5e-1111-2222-3333-444455556666"));
    }
}
