//! Password checks outside a SASL exchange (the relay's HTTP login): the same PLAIN verification against the
//! stored SCRAM-SHA-256 keys, so the plaintext is never compared with anything stored.

use herald_storage::Credentials;

use super::plain::PlainRequest;

/// Whether `password` matches the stored keys. Unpreparable passwords never match.
pub fn verify_plain(credentials: &Credentials, password: &str) -> bool {
    let message = format!("\0user\0{password}");
    match PlainRequest::parse(message.as_bytes()) {
        Ok(request) => request.verify(Some(&credentials.sha256), b"").is_ok(),
        Err(_) => false,
    }
}
