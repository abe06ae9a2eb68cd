//! VAPID (RFC 8292): the application server's P-256 key signs an ES256 JWT per push-service
//! origin; `Authorization: vapid t=<jwt>, k=<public key>` (section 3).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::SecretKey;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;

use super::ece::public_bytes;
use crate::RelayConfig;

/// JWT lifetime (RFC 8292 section 2: at most 24 hours).
const JWT_LIFETIME_SECS: i64 = 12 * 3600;

/// The relay's VAPID key and contact.
#[derive(Clone)]
pub struct VapidKey {
    key: Arc<SigningKey>,
    /// base64url uncompressed public key, the `k` parameter.
    public_b64: String,
    subject: String,
}

impl VapidKey {
    /// Reads `webpush.vapid_private_key_file`; `None` when none is configured. Errors: the problem
    /// (unreadable file, not a P-256 PEM key), starting with its key.
    pub fn load(config: &RelayConfig) -> Result<Option<VapidKey>, String> {
        let path = &config.webpush.vapid_private_key_file;
        if path.is_empty() {
            return Ok(None);
        }
        let pem = std::fs::read_to_string(path)
            .map_err(|e| format!("webpush.vapid_private_key_file: {path}: {e}"))?;
        let secret = SecretKey::from_pkcs8_pem(&pem)
            .or_else(|_| SecretKey::from_sec1_pem(&pem))
            .map_err(|_| {
                format!(
                    "webpush.vapid_private_key_file: {path}: not a P-256 PKCS#8 or SEC1 PEM key"
                )
            })?;
        Ok(Some(VapidKey::new(&secret, &config.webpush.vapid_subject)))
    }

    pub fn new(secret: &SecretKey, subject: &str) -> VapidKey {
        VapidKey {
            key: Arc::new(SigningKey::from(secret)),
            public_b64: URL_SAFE_NO_PAD.encode(public_bytes(&secret.public_key())),
            subject: subject.to_string(),
        }
    }

    /// The `k` parameter (also what clients pass as `applicationServerKey`).
    pub fn public_key_b64(&self) -> &str {
        &self.public_b64
    }

    /// The `Authorization` header value for a push to `endpoint` (audience = its origin).
    pub fn authorization(&self, endpoint: &str, now_secs: i64) -> Option<String> {
        let url = reqwest::Url::parse(endpoint).ok()?;
        let origin = url.origin().ascii_serialization();
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": origin,
            "exp": now_secs + JWT_LIFETIME_SECS,
            "sub": self.subject,
        });
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig: Signature = self.key.sign(input.as_bytes());
        Some(format!(
            "vapid t={input}.{}, k={}",
            URL_SAFE_NO_PAD.encode(sig.to_bytes()),
            self.public_b64
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn jwt_verifies_with_k() {
        let secret = super::super::ece::random_secret();
        let v = VapidKey::new(&secret, "mailto:admin@example.org");
        let h = v
            .authorization("https://push.example.net:8443/wpush/abc", 1000)
            .unwrap();
        let rest = h.strip_prefix("vapid t=").unwrap();
        let (jwt, k) = rest.split_once(", k=").unwrap();
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let key = VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(k).unwrap()).unwrap();
        let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
        key.verify(input.as_bytes(), &sig).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(input.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["aud"], "https://push.example.net:8443");
        assert_eq!(claims["exp"], 1000 + 12 * 3600);
        assert_eq!(claims["sub"], "mailto:admin@example.org");
    }
}
