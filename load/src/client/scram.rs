//! SASL client mechanisms: SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677) without channel
//! binding (gs2 header `n,,`, RFC 5802 section 6), and PLAIN (RFC 4616), as used by XMPP
//! (RFC 6120 section 6). Usernames are expected to be ASCII; only `=` and `,` are escaped
//! (RFC 5802 section 5.1), full SASLprep is not applied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::error::ClientError;

/// The SCRAM hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    /// SCRAM-SHA-1 (RFC 5802).
    Sha1,
    /// SCRAM-SHA-256 (RFC 7677).
    Sha256,
}

impl ScramHash {
    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so new_from_slice cannot fail; map the impossible
        // error to an empty tag rather than panic.
        match self {
            ScramHash::Sha1 => Hmac::<Sha1>::new_from_slice(key)
                .map(|mut m| {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
            ScramHash::Sha256 => Hmac::<Sha256>::new_from_slice(key)
                .map(|mut m| {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// Hi() of RFC 5802 section 2.2, i.e. PBKDF2 with HMAC of this hash.
    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut out = vec![0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out);
                out
            }
            ScramHash::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
                out
            }
        }
    }
}

type CacheKey = (ScramHash, String, Vec<u8>, u32);

/// Client-side cache of SaltedPassword keyed by (hash, password, salt, iterations), which RFC 5802
/// section 5.1 explicitly allows. It moves the PBKDF2 cost off the client so that repeated logins
/// measure the server, as real clients that cache the key do. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct ScramCache {
    inner: Arc<Mutex<HashMap<CacheKey, Vec<u8>>>>,
}

impl ScramCache {
    fn get_or_compute(
        &self,
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Vec<u8> {
        let key = (hash, password.to_owned(), salt.to_vec(), iterations);
        // A poisoned lock only means another task panicked mid-insert; the map is still usable.
        if let Some(v) = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return v.clone();
        }
        let value = hash.salted_password(password, salt, iterations);
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, value.clone());
        value
    }

    /// Number of cached keys.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One SCRAM exchange from the client side.
#[derive(Debug)]
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts an exchange with a random 24-byte client nonce.
    pub fn new(hash: ScramHash, username: &str, password: &str) -> Self {
        let mut bytes = [0u8; 24];
        rand::rng().fill(&mut bytes);
        Self::with_nonce(hash, username, password, &B64.encode(bytes))
    }

    /// Starts an exchange with a given nonce (for test vectors).
    pub fn with_nonce(hash: ScramHash, username: &str, password: &str, nonce: &str) -> Self {
        let escaped = username.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            password: password.to_owned(),
            client_nonce: nonce.to_owned(),
            client_first_bare: format!("n={escaped},r={nonce}"),
            expected_server_signature: None,
        }
    }

    /// client-first-message (RFC 5802 section 7), unencoded.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Answers server-first-message with client-final-message, unencoded.
    ///
    /// Errors: [`ClientError::AuthFailed`] if the message is malformed, the nonce does not extend
    /// ours, or the iteration count is zero.
    pub fn client_final(
        &mut self,
        server_first: &str,
        cache: Option<&ScramCache>,
    ) -> Result<String, ClientError> {
        let bad = |why: &str| ClientError::AuthFailed(format!("bad server-first-message: {why}"));
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = part.strip_prefix("s=") {
                salt = Some(B64.decode(v).map_err(|_| bad("salt"))?);
            } else if let Some(v) = part.strip_prefix("i=") {
                iterations = Some(v.parse::<u32>().map_err(|_| bad("iterations"))?);
            } else if part.starts_with("m=") {
                // RFC 5802 section 5.1: unknown mandatory extension must fail authentication.
                return Err(bad("mandatory extension"));
            }
        }
        let nonce = nonce.ok_or_else(|| bad("no nonce"))?;
        let salt = salt.ok_or_else(|| bad("no salt"))?;
        let iterations = iterations
            .filter(|i| *i > 0)
            .ok_or_else(|| bad("no iterations"))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(bad("nonce does not extend the client nonce"));
        }
        let salted = match cache {
            Some(c) => c.get_or_compute(self.hash, &self.password, &salt, iterations),
            None => self.hash.salted_password(&self.password, &salt, iterations),
        };
        let client_key = self.hash.hmac(&salted, b"Client Key");
        let stored_key = self.hash.hash(&client_key);
        // c=biws is base64("n,,"), the gs2 header without channel binding.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, server_first, without_proof
        );
        let signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.hash.hmac(&salted, b"Server Key");
        self.expected_server_signature = Some(self.hash.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks server-final-message (`v=...`), proving the server knew the password.
    ///
    /// Errors: [`ClientError::AuthFailed`] on `e=...`, a wrong signature, or if called before
    /// [`ScramClient::client_final`].
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), ClientError> {
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(ClientError::AuthFailed(e.to_owned()));
        }
        let v = server_final
            .strip_prefix("v=")
            .ok_or_else(|| ClientError::AuthFailed("bad server-final-message".into()))?;
        let got = B64
            .decode(v.trim())
            .map_err(|_| ClientError::AuthFailed("bad server signature encoding".into()))?;
        match &self.expected_server_signature {
            Some(expected) if *expected == got => Ok(()),
            _ => Err(ClientError::AuthFailed("server signature mismatch".into())),
        }
    }
}

/// PLAIN initial response (RFC 4616): `\0username\0password`, unencoded.
pub fn plain_response(username: &str, password: &str) -> String {
    format!("\0{username}\0{password}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5802_sha1_vector() {
        let mut c = ScramClient::with_nonce(
            ScramHash::Sha1,
            "user",
            "pencil",
            "fyko+d2lbbFgONRv9qkxdawL",
        );
        assert_eq!(c.client_first(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let fin = c
            .client_final(
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                None,
            )
            .unwrap();
        assert_eq!(
            fin,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        c.verify_server_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
            .unwrap();
        assert!(
            c.verify_server_final("v=AAAApqV8S7suAoZWja4dJRkFsKQ=")
                .is_err()
        );
    }

    #[test]
    fn rfc7677_sha256_vector_with_cache() {
        let cache = ScramCache::default();
        for _ in 0..2 {
            let mut c = ScramClient::with_nonce(
                ScramHash::Sha256,
                "user",
                "pencil",
                "rOprNGfwEbeRWgbNEkqO",
            );
            let fin = c
                .client_final(
                    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                    Some(&cache),
                )
                .unwrap();
            assert_eq!(
                fin,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
            );
            c.verify_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .unwrap();
        }
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn rejects_nonce_not_extending_ours_and_server_errors() {
        let mut c = ScramClient::with_nonce(ScramHash::Sha1, "u", "p", "abc");
        assert!(
            c.client_final("r=xyz123,s=QSXCR+Q6sek8bf92,i=4096", None)
                .is_err()
        );
        assert!(
            c.client_final("r=abc,s=QSXCR+Q6sek8bf92,i=4096", None)
                .is_err()
        );
        assert!(
            c.client_final("r=abcd,s=QSXCR+Q6sek8bf92,i=0", None)
                .is_err()
        );
        assert!(matches!(
            c.verify_server_final("e=invalid-proof"),
            Err(ClientError::AuthFailed(_))
        ));
    }

    #[test]
    fn username_is_escaped() {
        let c = ScramClient::with_nonce(ScramHash::Sha1, "a=b,c", "p", "n");
        assert_eq!(c.client_first(), "n,,n=a=3Db=2Cc,r=n");
    }
}
