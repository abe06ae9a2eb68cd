//! Turning a password into stored SCRAM credentials (RFC 5802 section 3, RFC 7677 section 4): used by
//! `user add`, in-band registration (XEP-0077) and password changes.

use herald_storage::Credentials;
use rand::RngCore;

use super::scram::{SALT_BYTES, ScramHash};

/// The iteration count for new credentials (RFC 7677 section 4: at least 4096).
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;
/// The lowest iteration count [`derive_credentials`] accepts (RFC 7677 section 4).
pub const MIN_SCRAM_ITERATIONS: u32 = 4096;

/// Why a password cannot be turned into credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The password is empty or SASLprep (RFC 4013) rejects it (prohibited or unassigned characters,
    /// bidirectional rule).
    #[error("the password is empty or contains characters SASLprep prohibits")]
    InvalidPassword,
    /// The iteration count is below [`MIN_SCRAM_ITERATIONS`].
    #[error("at least {MIN_SCRAM_ITERATIONS} SCRAM iterations are required, got {0}")]
    TooFewIterations(u32),
}

/// SCRAM-SHA-1 and SCRAM-SHA-256 keys for `password`, each with its own random salt.
/// Errors: [`CredentialError`].
pub fn derive_credentials(password: &str, iterations: u32) -> Result<Credentials, CredentialError> {
    if iterations < MIN_SCRAM_ITERATIONS {
        return Err(CredentialError::TooFewIterations(iterations));
    }
    let prepared = prepare_password(password).ok_or(CredentialError::InvalidPassword)?;
    let mut rng = rand::rng();
    let mut salt_sha1 = [0u8; SALT_BYTES];
    let mut salt_sha256 = [0u8; SALT_BYTES];
    rng.fill_bytes(&mut salt_sha1);
    rng.fill_bytes(&mut salt_sha256);
    Ok(Credentials {
        sha1: ScramHash::Sha1.keys(prepared.as_bytes(), &salt_sha1, iterations),
        sha256: ScramHash::Sha256.keys(prepared.as_bytes(), &salt_sha256, iterations),
    })
}

/// `Normalize(password)` of RFC 5802 section 2.2: SASLprep as a stored string; `None` if it fails or is empty.
pub(super) fn prepare_password(password: &str) -> Option<String> {
    let prepared = stringprep::saslprep(password).ok()?;
    (!prepared.is_empty()).then(|| prepared.into_owned())
}
