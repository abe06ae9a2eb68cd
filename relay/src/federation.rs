//! Relay-to-relay authentication with RFC 9421 HTTP Message Signatures (Ed25519, section 3.3.6) and
//! RFC 9530 `Content-Digest`: this relay's key (created on first start, kept in a file), the
//! [`Signer`] its forwards go out with, and the [`Verifier`] that checks a peer's forward against the
//! keys pinned in `[relay.federation] peer_keys`, the validity window (RFC 9421 section 2.3
//! `created`/`expires`) and a bounded replay cache of nonces (section 7.2.2).
//!
//! Wire format of a forward (`POST <peer>/api/v1/federation/messages/`, body `{token, priority,
//! data}` as JSON):
//! `Content-Digest: sha-256=:<b64>:`, `Signature-Input: herald=("@method" "@target-uri"
//! "content-digest" "content-type");created=<s>;expires=<s>;keyid="<domain>";nonce="<b64url>";alg="ed25519"`,
//! `Signature: herald=:<b64>:`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use rand::RngCore;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::http_signature::{
    self, ParamValue, SignatureError, SignatureParams, SignedRequest, signature_base,
};

/// The label of the signature this relay adds (RFC 9421 section 4.1).
pub const SIGNATURE_LABEL: &str = "herald";
/// What a forward's signature covers: the request line, the body (through its digest) and its type.
pub const COVERED_COMPONENTS: [&str; 4] =
    ["@method", "@target-uri", "content-digest", "content-type"];
/// What a received signature must cover at least.
pub const REQUIRED_COMPONENTS: [&str; 3] = ["@method", "@target-uri", "content-digest"];
/// How far a peer's clock may be off, in seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 30;
/// Nonces remembered at once; a full cache refuses new forwards until nonces expire.
pub const MAX_REPLAY_NONCES: usize = 100_000;
/// The longest nonce and key id accepted.
const MAX_NONCE_CHARS: usize = 128;
const MAX_KEYID_CHARS: usize = 253;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 section 4): accepted in
/// `peer_keys` too, so a key exported by `openssl pkey -pubout` can be pinned as is.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Parses a pinned public key: base64 (standard or URL-safe, padded or not) of the 32 raw bytes,
/// or of the DER SubjectPublicKeyInfo. Errors: a description for the configuration check.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or("not base64")?;
    let raw = match bytes.len() {
        32 => bytes.as_slice(),
        44 if bytes.starts_with(&ED25519_SPKI_PREFIX) => &bytes[12..],
        _ => return Err("not a 32-byte Ed25519 public key".into()),
    };
    raw.try_into()
        .map_err(|_| "not a 32-byte Ed25519 public key".into())
}

/// This relay's Ed25519 key pair. Debug shows the public key only.
#[derive(Clone)]
pub struct FederationKey {
    pair: Arc<Ed25519KeyPair>,
}

impl FederationKey {
    /// A new random key, kept in memory only.
    pub fn generate() -> Result<FederationKey, String> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| "key generation failed")?;
        FederationKey::from_pkcs8(pkcs8.as_ref())
    }

    fn from_pkcs8(der: &[u8]) -> Result<FederationKey, String> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| "not an Ed25519 PKCS#8 key")?;
        Ok(FederationKey {
            pair: Arc::new(pair),
        })
    }

    /// Reads the key at `path` (PKCS#8 PEM, `-----BEGIN PRIVATE KEY-----`, as `openssl genpkey
    /// -algorithm ed25519` writes it). Errors: unreadable, or not such a key.
    pub fn load(path: &Path) -> Result<FederationKey, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let body: String = text
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END PRIVATE KEY-----")
            .collect();
        let der = STANDARD
            .decode(body)
            .map_err(|_| "not a PKCS#8 PEM private key")?;
        FederationKey::from_pkcs8(&der)
    }

    /// Reads the key at `path`, or creates one there (its folder too; the file readable by its owner
    /// only) when there is none. Errors: unreadable or invalid, or it cannot be written.
    pub fn load_or_create(path: &Path) -> Result<FederationKey, String> {
        if path.exists() {
            return FederationKey::load(path);
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| "key generation failed")?;
        let encoded = STANDARD.encode(pkcs8.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        write_private(path, pem.as_bytes()).map_err(|e| e.to_string())?;
        tracing::info!(path = %path.display(), "created the relay's federation key");
        FederationKey::load(path)
    }

    /// The public key as peers pin it: standard base64 of the 32 raw bytes.
    pub fn public_key(&self) -> String {
        STANDARD.encode(self.pair.public_key().as_ref())
    }
}

impl std::fmt::Debug for FederationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationKey")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)
}

/// Signs this relay's forwards.
#[derive(Clone, Debug)]
pub struct Signer {
    key: FederationKey,
    keyid: String,
    lifetime_secs: i64,
}

impl Signer {
    /// A signer naming itself `keyid` (this relay's federation domain), whose signatures last
    /// `lifetime_secs`.
    pub fn new(key: FederationKey, keyid: &str, lifetime_secs: u64) -> Signer {
        Signer {
            key,
            keyid: keyid.to_string(),
            lifetime_secs: i64::try_from(lifetime_secs).unwrap_or(i64::MAX),
        }
    }

    /// The key id (this relay's federation domain).
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The public key (see [`FederationKey::public_key`]).
    pub fn public_key(&self) -> String {
        self.key.public_key()
    }

    /// The headers that sign a request of `method` to `target_uri` carrying `body` of
    /// `content_type`, made at `now_secs` (Unix time): `Content-Type`, `Content-Digest`,
    /// `Signature-Input`, `Signature`. Errors: a URI or type that cannot be a header.
    pub fn sign(
        &self,
        method: &str,
        target_uri: &str,
        content_type: &str,
        body: &[u8],
        now_secs: i64,
    ) -> Result<HeaderMap, SignatureError> {
        let mut headers = HeaderMap::new();
        let value = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| SignatureError::Malformed("header value"))
        };
        headers.insert(reqwest::header::CONTENT_TYPE, value(content_type)?);
        headers.insert(
            HeaderName::from_static("content-digest"),
            value(&http_signature::content_digest(body))?,
        );
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let params = SignatureParams {
            components: COVERED_COMPONENTS.iter().map(|c| c.to_string()).collect(),
            params: vec![
                ("created".into(), ParamValue::Integer(now_secs)),
                (
                    "expires".into(),
                    ParamValue::Integer(now_secs.saturating_add(self.lifetime_secs)),
                ),
                ("keyid".into(), ParamValue::String(self.keyid.clone())),
                (
                    "nonce".into(),
                    ParamValue::String(URL_SAFE_NO_PAD.encode(nonce)),
                ),
                ("alg".into(), ParamValue::String("ed25519".into())),
            ],
        };
        let request = SignedRequest {
            method,
            target_uri,
            headers: &headers,
        };
        let base = signature_base(&request, &params)?;
        let signature = http_signature::sign(&self.key.pair, &base);
        let input = format!("{SIGNATURE_LABEL}={}", params.serialize());
        headers.insert(HeaderName::from_static("signature-input"), value(&input)?);
        headers.insert(
            HeaderName::from_static("signature"),
            value(&http_signature::serialize_signature(
                SIGNATURE_LABEL,
                &signature,
            ))?,
        );
        Ok(headers)
    }
}

/// Why a forward was refused. Every one but [`Refusal::Busy`] is a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("request is not signed")]
    Unsigned,
    #[error("signature: {0}")]
    Invalid(String),
    #[error("signature must cover @method, @target-uri and content-digest")]
    Uncovered,
    #[error("signature key is not pinned here")]
    UnknownKey,
    #[error("signature expired or not yet valid")]
    Expired,
    #[error("content digest does not match the body")]
    DigestMismatch,
    #[error("signature does not verify")]
    BadSignature,
    #[error("signature nonce already seen")]
    Replayed,
    /// The replay cache is full of unexpired nonces: try again shortly.
    #[error("too many signed requests, try again later")]
    Busy,
}

impl From<SignatureError> for Refusal {
    fn from(e: SignatureError) -> Refusal {
        match e {
            SignatureError::BadSignature => Refusal::BadSignature,
            other => Refusal::Invalid(other.to_string()),
        }
    }
}

/// Checks peers' signed forwards. One per relay: its replay cache is shared by every request.
pub struct Verifier {
    peers: HashMap<String, [u8; 32]>,
    max_lifetime_secs: i64,
    replay: Mutex<ReplayCache>,
}

impl Verifier {
    /// A verifier trusting `peers` (domain -> public key), accepting signatures valid at most
    /// `max_lifetime_secs`, remembering at most `capacity` nonces.
    pub fn new(
        peers: HashMap<String, [u8; 32]>,
        max_lifetime_secs: u64,
        capacity: usize,
    ) -> Verifier {
        Verifier {
            peers: peers
                .into_iter()
                .map(|(domain, key)| (domain.to_ascii_lowercase(), key))
                .collect(),
            max_lifetime_secs: i64::try_from(max_lifetime_secs).unwrap_or(i64::MAX),
            replay: Mutex::new(ReplayCache::new(capacity)),
        }
    }

    /// Verifies the first signature of `request` (with `body`) at `now_secs`: it must cover
    /// [`REQUIRED_COMPONENTS`], carry `created`, `expires`, `keyid` and `nonce` (and `alg`, if
    /// given, `ed25519`), be made by the key pinned for `keyid`, be within its validity window (give
    /// or take [`MAX_CLOCK_SKEW_SECS`]), match the body's sha-256 `Content-Digest`, and use a nonce
    /// not seen before. Returns the peer's domain. Errors: the [`Refusal`].
    pub fn verify(
        &self,
        request: &SignedRequest<'_>,
        body: &[u8],
        now_secs: i64,
    ) -> Result<String, Refusal> {
        let field = |name: &str| {
            request
                .headers
                .get(name)
                .map(|v| v.to_str().map_err(|_| Refusal::Invalid("header".into())))
        };
        let (Some(input), Some(signature)) = (field("signature-input"), field("signature")) else {
            return Err(Refusal::Unsigned);
        };
        let (input, signature) = (input?, signature?);
        let label = http_signature::signature_labels(input)?
            .into_iter()
            .next()
            .ok_or(Refusal::Unsigned)?;
        let params = http_signature::parse_signature_input(input, &label)?;
        let signature = http_signature::parse_signature(signature, &label)?;
        if !REQUIRED_COMPONENTS
            .iter()
            .all(|c| params.components.iter().any(|have| have == c))
        {
            return Err(Refusal::Uncovered);
        }
        let missing = |what: &str| Refusal::Invalid(format!("{what} parameter required"));
        let created = params
            .integer("created")
            .ok_or_else(|| missing("created"))?;
        let expires = params
            .integer("expires")
            .ok_or_else(|| missing("expires"))?;
        let keyid = params.string("keyid").ok_or_else(|| missing("keyid"))?;
        let nonce = params.string("nonce").ok_or_else(|| missing("nonce"))?;
        if keyid.len() > MAX_KEYID_CHARS || nonce.is_empty() || nonce.len() > MAX_NONCE_CHARS {
            return Err(Refusal::Invalid("keyid or nonce too long".into()));
        }
        if params.string("alg").is_some_and(|alg| alg != "ed25519") {
            return Err(Refusal::Invalid("alg must be ed25519".into()));
        }
        let keyid = keyid.to_ascii_lowercase();
        let public_key = self.peers.get(&keyid).ok_or(Refusal::UnknownKey)?;
        let lifetime = expires.saturating_sub(created);
        if lifetime <= 0
            || lifetime > self.max_lifetime_secs
            || created > now_secs.saturating_add(MAX_CLOCK_SKEW_SECS)
            || now_secs >= expires.saturating_add(MAX_CLOCK_SKEW_SECS)
        {
            return Err(Refusal::Expired);
        }
        let digest = field("content-digest")
            .ok_or(Refusal::DigestMismatch)??
            .to_string();
        if !http_signature::digest_matches(&digest, body)? {
            return Err(Refusal::DigestMismatch);
        }
        let base = signature_base(request, &params)?;
        http_signature::verify(public_key, &base, &signature)?;
        // Only a verified request reaches the cache, so only a pinned peer can fill it.
        self.replay.lock().map_err(|_| Refusal::Busy)?.insert(
            &keyid,
            nonce,
            expires.saturating_add(MAX_CLOCK_SKEW_SECS),
            now_secs,
        )?;
        Ok(keyid)
    }
}

/// The nonces of verified signatures, each kept until its signature can no longer be accepted.
struct ReplayCache {
    seen: HashSet<(String, String)>,
    by_expiry: BinaryHeap<Reverse<(i64, String, String)>>,
    capacity: usize,
}

impl ReplayCache {
    fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            seen: HashSet::new(),
            by_expiry: BinaryHeap::new(),
            capacity,
        }
    }

    fn insert(&mut self, keyid: &str, nonce: &str, until: i64, now: i64) -> Result<(), Refusal> {
        while let Some(Reverse((at, _, _))) = self.by_expiry.peek()
            && *at <= now
        {
            if let Some(Reverse((_, k, n))) = self.by_expiry.pop() {
                self.seen.remove(&(k, n));
            }
        }
        let key = (keyid.to_string(), nonce.to_string());
        if self.seen.contains(&key) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::Busy);
        }
        self.by_expiry
            .push(Reverse((until, key.0.clone(), key.1.clone())));
        self.seen.insert(key);
        Ok(())
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    crate::now_ms() / 1000
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const URI: &str = "https://relay-b.example/api/v1/federation/messages/";
    const BODY: &[u8] = br#"{"token":"t","priority":"high"}"#;
    const NOW: i64 = 1_700_000_000;

    fn peer(domain: &str) -> (Signer, Verifier) {
        let key = FederationKey::generate().unwrap();
        let public = parse_public_key(&key.public_key()).unwrap();
        let signer = Signer::new(key, domain, 60);
        let verifier = Verifier::new(HashMap::from([(domain.to_string(), public)]), 60, 4);
        (signer, verifier)
    }

    fn check(v: &Verifier, headers: &HeaderMap, body: &[u8], now: i64) -> Result<String, Refusal> {
        v.verify(
            &SignedRequest {
                method: "POST",
                target_uri: URI,
                headers,
            },
            body,
            now,
        )
    }

    #[test]
    fn a_signed_forward_verifies_once() {
        let (signer, verifier) = peer("relay-a.example");
        let headers = signer
            .sign("POST", URI, "application/json", BODY, NOW)
            .unwrap();
        let input = headers["signature-input"].to_str().unwrap();
        assert!(input.starts_with(
            "herald=(\"@method\" \"@target-uri\" \"content-digest\" \"content-type\");created=1700000000;expires=1700000060;keyid=\"relay-a.example\";nonce=\""
        ), "{input}");
        assert!(input.ends_with(";alg=\"ed25519\""));
        assert_eq!(
            check(&verifier, &headers, BODY, NOW + 5),
            Ok("relay-a.example".into())
        );
        assert_eq!(
            check(&verifier, &headers, BODY, NOW + 6),
            Err(Refusal::Replayed)
        );
    }

    #[test]
    fn expired_future_and_overlong_signatures_are_refused() {
        let (signer, verifier) = peer("relay-a.example");
        let sign = |at| {
            signer
                .sign("POST", URI, "application/json", BODY, at)
                .unwrap()
        };
        assert_eq!(
            check(&verifier, &sign(NOW), BODY, NOW + 60 + MAX_CLOCK_SKEW_SECS),
            Err(Refusal::Expired)
        );
        assert_eq!(
            check(&verifier, &sign(NOW + MAX_CLOCK_SKEW_SECS + 1), BODY, NOW),
            Err(Refusal::Expired)
        );
        // Within the skew: accepted.
        assert!(check(&verifier, &sign(NOW + 10), BODY, NOW).is_ok());
        let long = Signer::new(signer.key.clone(), "relay-a.example", 600);
        let headers = long
            .sign("POST", URI, "application/json", BODY, NOW)
            .unwrap();
        assert_eq!(check(&verifier, &headers, BODY, NOW), Err(Refusal::Expired));
    }

    #[test]
    fn wrong_key_unknown_key_tampering_and_unsigned_are_refused() {
        let (signer, verifier) = peer("relay-a.example");
        // Signed by another key under the pinned name.
        let impostor = Signer::new(FederationKey::generate().unwrap(), "relay-a.example", 60);
        let headers = impostor
            .sign("POST", URI, "application/json", BODY, NOW)
            .unwrap();
        assert_eq!(
            check(&verifier, &headers, BODY, NOW),
            Err(Refusal::BadSignature)
        );
        // A name not pinned here.
        let stranger = Signer::new(FederationKey::generate().unwrap(), "relay-c.example", 60);
        let headers = stranger
            .sign("POST", URI, "application/json", BODY, NOW)
            .unwrap();
        assert_eq!(
            check(&verifier, &headers, BODY, NOW),
            Err(Refusal::UnknownKey)
        );
        // Another body under the signed digest.
        let headers = signer
            .sign("POST", URI, "application/json", BODY, NOW)
            .unwrap();
        assert_eq!(
            check(&verifier, &headers, br#"{"token":"u"}"#, NOW),
            Err(Refusal::DigestMismatch)
        );
        // A digest rewritten to match another body: the signature no longer verifies.
        let mut rewritten = headers.clone();
        let other = br#"{"token":"u"}"#;
        rewritten.insert(
            "content-digest",
            HeaderValue::from_str(&http_signature::content_digest(other)).unwrap(),
        );
        assert_eq!(
            check(&verifier, &rewritten, other, NOW),
            Err(Refusal::BadSignature)
        );
        // Another target.
        let elsewhere = verifier.verify(
            &SignedRequest {
                method: "POST",
                target_uri: "https://relay-x.example/api/v1/federation/messages/",
                headers: &headers,
            },
            BODY,
            NOW,
        );
        assert_eq!(elsewhere, Err(Refusal::BadSignature));
        assert_eq!(
            check(&verifier, &HeaderMap::new(), BODY, NOW),
            Err(Refusal::Unsigned)
        );
    }

    #[test]
    fn a_signature_must_cover_the_body_digest() {
        let (signer, verifier) = peer("relay-a.example");
        let mut headers = signer
            .sign("POST", URI, "application/json", BODY, NOW)
            .unwrap();
        let input = headers["signature-input"]
            .to_str()
            .unwrap()
            .replace(" \"content-digest\"", "");
        headers.insert("signature-input", HeaderValue::from_str(&input).unwrap());
        assert_eq!(
            check(&verifier, &headers, BODY, NOW),
            Err(Refusal::Uncovered)
        );
    }

    #[test]
    fn the_replay_cache_is_bounded_and_forgets_expired_nonces() {
        let mut cache = ReplayCache::new(2);
        cache.insert("a", "1", NOW + 10, NOW).unwrap();
        cache.insert("a", "2", NOW + 20, NOW).unwrap();
        assert_eq!(cache.insert("b", "1", NOW + 20, NOW), Err(Refusal::Busy));
        assert_eq!(
            cache.insert("a", "1", NOW + 10, NOW),
            Err(Refusal::Replayed)
        );
        // Once the first nonce's signature can no longer be accepted, it is forgotten.
        cache.insert("b", "1", NOW + 30, NOW + 10).unwrap();
        assert_eq!(cache.seen.len(), 2);
    }

    #[test]
    fn keys_are_created_once_and_public_keys_parse_in_every_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/federation.pem");
        let created = FederationKey::load_or_create(&path).unwrap();
        let again = FederationKey::load_or_create(&path).unwrap();
        assert_eq!(created.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{created:?}").contains("PRIVATE"));
        let raw = parse_public_key(&created.public_key()).unwrap();
        assert_eq!(parse_public_key(&URL_SAFE_NO_PAD.encode(raw)).unwrap(), raw);
        // RFC 9421 appendix B.1.4's public key as a SubjectPublicKeyInfo.
        assert!(
            parse_public_key("MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=")
                .is_ok()
        );
        assert!(parse_public_key("not a key").is_err());
        assert!(parse_public_key(&STANDARD.encode([0u8; 31])).is_err());
        std::fs::write(dir.path().join("bad.pem"), "garbage").unwrap();
        assert!(FederationKey::load(&dir.path().join("bad.pem")).is_err());
    }
}
