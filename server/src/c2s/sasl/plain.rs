//! The PLAIN mechanism (RFC 4616), checked against the stored SCRAM-SHA-256 keys: the password is salted
//! and hashed as a SCRAM client would, and `H(ClientKey)` is compared with `StoredKey` in constant time.

use herald_storage::ScramKeys;
use subtle::ConstantTimeEq;

use super::SaslFailure;
use super::credentials::prepare_password;
use super::scram::{ScramHash, fake_salt};

/// A parsed PLAIN message, waiting for the user's credentials.
pub(super) struct PlainRequest {
    authzid: Option<String>,
    username: String,
    password: String,
}

impl PlainRequest {
    /// Parses `[authzid] NUL authcid NUL passwd` (RFC 4616 section 2) and SASLprep's authcid and password.
    /// Errors: `malformed-request` for a wrong field count, invalid UTF-8, or empty/unpreparable fields.
    pub(super) fn parse(data: &[u8]) -> Result<PlainRequest, SaslFailure> {
        let text = std::str::from_utf8(data).map_err(|_| SaslFailure::MalformedRequest)?;
        let fields: Vec<&str> = text.split('\0').collect();
        let [authzid, authcid, password] = fields[..] else {
            return Err(SaslFailure::MalformedRequest);
        };
        let username = stringprep::saslprep(authcid)
            .map_err(|_| SaslFailure::MalformedRequest)?
            .into_owned();
        let password = prepare_password(password).ok_or(SaslFailure::MalformedRequest)?;
        if username.is_empty() {
            return Err(SaslFailure::MalformedRequest);
        }
        let authzid = (!authzid.is_empty()).then(|| authzid.to_owned());
        Ok(PlainRequest {
            authzid,
            username,
            password,
        })
    }

    pub(super) fn username(&self) -> &str {
        &self.username
    }

    pub(super) fn authzid(&self) -> Option<&str> {
        self.authzid.as_deref()
    }

    /// Checks the password against `keys` (the SHA-256 set). For an unknown user (`None`) the same work is
    /// done with a fake salt so the answer takes as long, then `not-authorized`.
    /// Errors: `not-authorized`; `temporary-auth-failure` for stored keys that do not fit SHA-256.
    pub(super) fn verify(
        self,
        keys: Option<&ScramKeys>,
        unknown_user_secret: &[u8],
    ) -> Result<String, SaslFailure> {
        let hash = ScramHash::Sha256;
        let Some(keys) = keys else {
            let salt = fake_salt(hash, &self.username, unknown_user_secret);
            // black_box: the work must not be optimised away, it is what hides the missing account.
            std::hint::black_box(hash.salted_password(
                self.password.as_bytes(),
                &salt,
                super::DEFAULT_SCRAM_ITERATIONS,
            ));
            return Err(SaslFailure::NotAuthorized);
        };
        if keys.iterations == 0 || keys.stored_key.len() != hash.output_len() {
            return Err(SaslFailure::TemporaryAuthFailure);
        }
        let salted = hash.salted_password(self.password.as_bytes(), &keys.salt, keys.iterations);
        let matches: bool = hash.stored_key(&salted).ct_eq(&keys.stored_key).into();
        if matches {
            Ok(self.username)
        } else {
            Err(SaslFailure::NotAuthorized)
        }
    }
}
