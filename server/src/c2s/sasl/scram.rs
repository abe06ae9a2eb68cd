//! The server side of SCRAM (RFC 5802 sections 3 and 5, RFC 7677): key derivation, server-first,
//! proof verification, server-final, channel-binding checks (RFC 5802 section 6).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use herald_storage::ScramKeys;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::scram_message::{CbindFlag, ClientFinal, ClientFirst};
use super::{ChannelBindings, SaslFailure};

/// Length of the random part of a server nonce, in bytes before base64.
const SERVER_NONCE_BYTES: usize = 18;
/// Salt length for fake (unknown-user) salts; matches what `derive_credentials` stores.
pub(super) const SALT_BYTES: usize = 16;

/// The hash function of a SCRAM variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    pub(super) fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// `H(str)`.
    pub(super) fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// `HMAC(key, str)`.
    pub(super) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut mac = match <M as Mac>::new_from_slice(key) {
                Ok(mac) => mac,
                Err(_) => unreachable!("HMAC accepts keys of any length"),
            };
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramHash::Sha1 => run::<Hmac<Sha1>>(key, data),
            ScramHash::Sha256 => run::<Hmac<Sha256>>(key, data),
        }
    }

    /// `SaltedPassword := Hi(Normalize(password), salt, i)`; `password` is already SASLprep'd.
    pub(super) fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        #[cfg(test)]
        DERIVATIONS.with(|d| d.set(d.get() + 1));
        let mut out = vec![0u8; self.output_len()];
        match self {
            ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
        }
        out
    }

    /// `StoredKey := H(HMAC(SaltedPassword, "Client Key"))`.
    pub(super) fn stored_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.hash(&self.hmac(salted_password, b"Client Key"))
    }

    /// The keys the server stores for a password (RFC 5802 section 3).
    pub(super) fn keys(self, password: &[u8], salt: &[u8], iterations: u32) -> ScramKeys {
        let salted = self.salted_password(password, salt, iterations);
        ScramKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key: self.stored_key(&salted),
            server_key: self.hmac(&salted, b"Server Key"),
        }
    }

    fn name(self) -> &'static [u8] {
        match self {
            ScramHash::Sha1 => b"SHA-1",
            ScramHash::Sha256 => b"SHA-256",
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Key derivations run on this thread, so tests can check that two paths do the same work.
    static DERIVATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many key derivations (`Hi()`) ran on this thread so far.
#[cfg(test)]
pub(crate) fn derivations_on_this_thread() -> u64 {
    DERIVATIONS.with(std::cell::Cell::get)
}

/// A fresh server nonce: printable, without `,` (base64 has neither `,` nor control characters).
pub(super) fn random_nonce() -> String {
    let mut bytes = [0u8; SERVER_NONCE_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    BASE64.encode(bytes)
}

/// The salt shown for a user that does not exist: stable per (secret, hash, username), so that asking twice
/// gives the same answer, as it would for a real account.
pub(super) fn fake_salt(hash: ScramHash, username: &str, secret: &[u8]) -> Vec<u8> {
    let mut input = b"herald unknown-user salt\0".to_vec();
    input.extend_from_slice(hash.name());
    input.push(0);
    input.extend_from_slice(username.as_bytes());
    let mut salt = ScramHash::Sha256.hmac(secret, &input);
    salt.truncate(SALT_BYTES);
    salt
}

/// Why client-final was not accepted. Only a checked proof says anything about the password, so only
/// [`Rejection::WrongProof`] counts as a failed guess (RFC 6120 section 13.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    /// A protocol fault; no proof was checked.
    Refused(SaslFailure),
    /// The proof was checked and does not match (or the user does not exist): `not-authorized`.
    WrongProof,
}

/// The server after sending server-first, waiting for client-final.
pub(super) struct ScramServer {
    hash: ScramHash,
    username: String,
    /// What `c=` must decode to: the GS2 header, then the binding data for `p=`.
    expected_channel_binding: Vec<u8>,
    combined_nonce: String,
    /// `client-first-message-bare "," server-first-message`: the AuthMessage up to client-final.
    auth_message_prefix: String,
    server_first: String,
    /// For an unknown user, random keys that no proof matches; the exchange runs to the end and fails.
    keys: ScramKeys,
    is_known_user: bool,
}

impl ScramServer {
    /// Builds server-first for `client_first`. `keys` is `None` for an unknown user.
    /// Errors: `not-authorized` for a `p=` binding type we do not have (RFC 5802 section 6: the server
    /// must fail); `temporary-auth-failure` for stored keys that do not fit the hash.
    pub(super) fn new(
        hash: ScramHash,
        client_first: ClientFirst,
        keys: Option<&ScramKeys>,
        server_nonce: &str,
        bindings: &ChannelBindings,
        unknown_user_secret: &[u8],
    ) -> Result<ScramServer, SaslFailure> {
        let keys_given = keys.is_some();
        let mut expected_channel_binding = client_first.gs2_header.as_bytes().to_vec();
        if let CbindFlag::Used(cb_name) = &client_first.cbind_flag {
            let data = bindings.get(cb_name).ok_or(SaslFailure::NotAuthorized)?;
            expected_channel_binding.extend_from_slice(data);
        }
        let keys = match keys {
            Some(keys) => {
                let fits = keys.iterations > 0
                    && !keys.salt.is_empty()
                    && keys.stored_key.len() == hash.output_len()
                    && keys.server_key.len() == hash.output_len();
                if !fits {
                    return Err(SaslFailure::TemporaryAuthFailure);
                }
                keys.clone()
            }
            None => {
                let mut stored_key = vec![0u8; hash.output_len()];
                let mut server_key = vec![0u8; hash.output_len()];
                rand::rng().fill_bytes(&mut stored_key);
                rand::rng().fill_bytes(&mut server_key);
                ScramKeys {
                    salt: fake_salt(hash, &client_first.username, unknown_user_secret),
                    iterations: super::DEFAULT_SCRAM_ITERATIONS,
                    stored_key,
                    server_key,
                }
            }
        };
        let (salt, iterations) = (&keys.salt, keys.iterations);
        let combined_nonce = format!("{}{}", client_first.client_nonce, server_nonce);
        let server_first = format!(
            "r={combined_nonce},s={},i={iterations}",
            BASE64.encode(salt)
        );
        Ok(ScramServer {
            hash,
            username: client_first.username,
            expected_channel_binding,
            combined_nonce,
            auth_message_prefix: format!("{},{server_first}", client_first.bare),
            server_first,
            is_known_user: keys_given,
            keys,
        })
    }

    pub(super) fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Checks client-final; returns the username and server-final (`v=...`).
    /// Errors: [`Rejection::Refused`] with `malformed-request` for bad syntax or `not-authorized` for a
    /// channel-binding, nonce or proof-length mismatch (no proof was checked); [`Rejection::WrongProof`]
    /// for a proof that was checked and is wrong, or an unknown user.
    pub(super) fn finish(&self, client_data: &[u8]) -> Result<(String, Vec<u8>), Rejection> {
        let client_final = ClientFinal::parse(client_data).map_err(Rejection::Refused)?;
        let binding_ok: bool = client_final
            .channel_binding
            .ct_eq(&self.expected_channel_binding)
            .into();
        if !binding_ok || client_final.nonce != self.combined_nonce {
            return Err(Rejection::Refused(SaslFailure::NotAuthorized));
        }
        let keys = &self.keys;
        if client_final.proof.len() != self.hash.output_len() {
            return Err(Rejection::Refused(SaslFailure::NotAuthorized));
        }
        let auth_message = format!(
            "{},{}",
            self.auth_message_prefix, client_final.without_proof
        );
        // ClientKey := ClientProof XOR HMAC(StoredKey, AuthMessage); accept iff H(ClientKey) == StoredKey.
        let client_signature = self.hash.hmac(&keys.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = client_final
            .proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let proof_ok: bool = self.hash.hash(&client_key).ct_eq(&keys.stored_key).into();
        // An unknown user goes through the same computation, so the failure takes as long.
        if !proof_ok || !self.is_known_user {
            return Err(Rejection::WrongProof);
        }
        let server_signature = self.hash.hmac(&keys.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", BASE64.encode(server_signature)).into_bytes();
        Ok((self.username.clone(), server_final))
    }
}

/// `ClientProof` for a salted password: the client side, for the in-test SCRAM client.
#[cfg(test)]
pub(super) fn client_proof(
    hash: ScramHash,
    salted_password: &[u8],
    auth_message: &[u8],
) -> Vec<u8> {
    let client_key = hash.hmac(salted_password, b"Client Key");
    let stored_key = hash.hash(&client_key);
    let signature = hash.hmac(&stored_key, auth_message);
    client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect()
}
