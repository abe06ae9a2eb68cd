//! Password checks outside a SASL exchange (the relay's HTTP login): the same PLAIN verification against the
//! stored SCRAM-SHA-256 keys, so the plaintext is never compared with anything stored.

use herald_storage::Credentials;

use super::plain::PlainRequest;

/// Whether `password` matches the stored keys of `username`. `None` (no such account) runs the same key
/// derivation with a fake salt and answers `false`, so the answer time does not tell whether the account
/// exists (as SASL does). `unknown_user_secret` keys the fake salt (see `SaslExchange`). Unpreparable
/// passwords never match.
pub fn verify_plain(
    credentials: Option<&Credentials>,
    username: &str,
    password: &str,
    unknown_user_secret: &[u8],
) -> bool {
    let message = format!("\0{username}\0{password}");
    match PlainRequest::parse(message.as_bytes()) {
        Ok(request) => request
            .verify(credentials.map(|c| &c.sha256), unknown_user_secret)
            .is_ok(),
        Err(_) => false,
    }
}
