//! UnifiedPush backend (unifiedpush.org server spec): POST a 1-4096 byte body to the endpoint, no
//! redirects; 2xx sent, 404/410 gone, 429/5xx retried. When the app registered Web Push keys with
//! the endpoint (what UnifiedPush apps do in practice) the body is RFC 8291-encrypted and VAPID-signed.

use async_trait::async_trait;
use herald_storage::relay::Device;

use super::vapid::VapidKey;
use super::webpush::encrypted_request;
use super::{
    Guarded, Push, PushBackend, SendOutcome, classify_status, classify_transport, retry_after,
    wake_body,
};

/// Sends UnifiedPush messages.
pub struct UnifiedPushBackend {
    http: Guarded,
    vapid: Option<VapidKey>,
}

impl UnifiedPushBackend {
    pub fn new(http: Guarded, vapid: Option<VapidKey>) -> UnifiedPushBackend {
        UnifiedPushBackend { http, vapid }
    }
}

#[async_trait]
impl PushBackend for UnifiedPushBackend {
    async fn send(&self, device: &Device, push: &Push) -> SendOutcome {
        let req = if device.webpush_p256dh.is_some() || device.webpush_auth.is_some() {
            match encrypted_request(&self.http, device, push, self.vapid.as_ref()) {
                Ok(r) => r,
                Err(outcome) => return outcome,
            }
        } else {
            match self.http.post(&device.token) {
                Ok(r) => r
                    .header("TTL", push.ttl_secs.to_string())
                    .header("Content-Type", "application/json")
                    .body(wake_body(push)),
                Err(outcome) => return outcome,
            }
        };
        match req.send().await {
            Ok(resp) => classify_status(resp.status().as_u16(), retry_after(resp.headers())),
            Err(e) => classify_transport(&e),
        }
    }
}
