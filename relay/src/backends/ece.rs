//! Web Push message encryption: RFC 8291 key derivation over RFC 8188 `aes128gcm` content coding
//! (one record, no padding beyond the delimiter). [`decrypt`] is the user agent's side, used by the
//! tests' stand-in push service to check what the relay sends.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use rand::RngCore;
use sha2::Sha256;

/// Record size written in the header (RFC 8188 section 2.1); one record always fits.
const RECORD_SIZE: u32 = 4096;
/// Padding delimiter of the last record (RFC 8188 section 2).
const LAST_RECORD: u8 = 0x02;

/// Encryption failures (bad subscription keys, or a message too long for one record).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EceError {
    #[error("invalid p256dh key")]
    BadPublicKey,
    #[error("invalid auth secret")]
    BadAuth,
    #[error("message too long")]
    TooLong,
    #[error("malformed or undecryptable message")]
    Malformed,
}

/// A fresh random P-256 secret key.
pub fn random_secret() -> SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        // Fails only for zero or values ≥ the group order: vanishingly rare, try again.
        if let Ok(k) = SecretKey::from_slice(&bytes) {
            return k;
        }
    }
}

/// The uncompressed SEC1 encoding (65 bytes) of a public key.
pub fn public_bytes(key: &PublicKey) -> Vec<u8> {
    key.to_encoded_point(false).as_bytes().to_vec()
}

/// CEK and nonce for one message (RFC 8291 section 3.4, RFC 8188 section 2.2-2.3).
fn derive(
    ecdh_secret: &[u8],
    auth: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8],
) -> Result<([u8; 16], [u8; 12]), EceError> {
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), ecdh_secret)
        .expand(&key_info, &mut ikm)
        .map_err(|_| EceError::Malformed)?;
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|_| EceError::Malformed)?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|_| EceError::Malformed)?;
    Ok((cek, nonce))
}

/// Encrypts `plaintext` for a subscription (`p256dh` = the UA's uncompressed public key, `auth` = its
/// 16-byte secret). Returns the `aes128gcm` body: salt, record size, key id (our ephemeral public key),
/// ciphertext.
pub fn encrypt(ua_public: &[u8], auth: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, EceError> {
    if auth.len() != 16 {
        return Err(EceError::BadAuth);
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    encrypt_with(&random_secret(), &salt, ua_public, auth, plaintext)
}

/// [`encrypt`] with a given ephemeral key and salt (fixed only in known-answer tests).
fn encrypt_with(
    ephemeral: &SecretKey,
    salt: &[u8; 16],
    ua_public: &[u8],
    auth: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, EceError> {
    if auth.len() != 16 {
        return Err(EceError::BadAuth);
    }
    let ua = PublicKey::from_sec1_bytes(ua_public).map_err(|_| EceError::BadPublicKey)?;
    let ua_bytes = public_bytes(&ua);
    let as_bytes = public_bytes(&ephemeral.public_key());
    let shared = p256::ecdh::diffie_hellman(ephemeral.to_nonzero_scalar(), ua.as_affine());
    let (cek, nonce) = derive(shared.raw_secret_bytes(), auth, &ua_bytes, &as_bytes, salt)?;
    let mut padded = plaintext.to_vec();
    padded.push(LAST_RECORD);
    // 16-byte tag; the record (ciphertext + tag) must fit the record size.
    if padded.len() + 16 > RECORD_SIZE as usize {
        return Err(EceError::TooLong);
    }
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| EceError::Malformed)?;
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), padded.as_slice())
        .map_err(|_| EceError::Malformed)?;
    let mut out = Vec::with_capacity(16 + 4 + 1 + as_bytes.len() + ciphertext.len());
    out.extend_from_slice(salt);
    out.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    out.push(as_bytes.len() as u8);
    out.extend_from_slice(&as_bytes);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Decrypts an `aes128gcm` body as the user agent holding `ua_secret` and `auth` (single record).
pub fn decrypt(ua_secret: &SecretKey, auth: &[u8], body: &[u8]) -> Result<Vec<u8>, EceError> {
    let header_len = 16 + 4 + 1;
    if body.len() < header_len {
        return Err(EceError::Malformed);
    }
    let salt = &body[..16];
    let id_len = body[20] as usize;
    let key_end = header_len + id_len;
    if body.len() < key_end {
        return Err(EceError::Malformed);
    }
    let as_bytes = &body[header_len..key_end];
    let as_public = PublicKey::from_sec1_bytes(as_bytes).map_err(|_| EceError::BadPublicKey)?;
    let ua_bytes = public_bytes(&ua_secret.public_key());
    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_public.as_affine());
    let (cek, nonce) = derive(shared.raw_secret_bytes(), auth, &ua_bytes, as_bytes, salt)?;
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| EceError::Malformed)?;
    let mut plain = cipher
        .decrypt(Nonce::from_slice(&nonce), &body[key_end..])
        .map_err(|_| EceError::Malformed)?;
    // Strip padding: trailing zeros then the delimiter.
    while plain.last() == Some(&0) {
        plain.pop();
    }
    if plain.pop() != Some(LAST_RECORD) {
        return Err(EceError::Malformed);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ua = random_secret();
        let auth = [7u8; 16];
        let body = encrypt(&public_bytes(&ua.public_key()), &auth, b"hello").unwrap();
        assert_eq!(&body[16..20], &4096u32.to_be_bytes());
        assert_eq!(body[20], 65);
        assert_eq!(decrypt(&ua, &auth, &body).unwrap(), b"hello");
        // Wrong auth secret fails authentication.
        assert_eq!(decrypt(&ua, &[8u8; 16], &body), Err(EceError::Malformed));
    }

    #[test]
    fn bad_keys() {
        assert_eq!(
            encrypt(&[4u8; 65], &[0u8; 16], b"x"),
            Err(EceError::BadPublicKey)
        );
        let ua = random_secret();
        assert_eq!(
            encrypt(&public_bytes(&ua.public_key()), &[0u8; 3], b"x"),
            Err(EceError::BadAuth)
        );
    }

    /// RFC 8291 section 5: the published example encrypts to exactly the published body, and the
    /// user agent's side decrypts it.
    #[test]
    fn rfc8291_example() {
        use base64::Engine;
        let b64 = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let ua =
            SecretKey::from_slice(&b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")).unwrap();
        let ua_public = b64(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        );
        assert_eq!(public_bytes(&ua.public_key()), ua_public);
        let as_secret =
            SecretKey::from_slice(&b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")).unwrap();
        let auth = b64("BTBZMqHH6r4Tts7J_aSIgg");
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let expected = b64(concat!(
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6Tlz",
            "AC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        ));
        let plaintext = b"When I grow up, I want to be a watermelon";
        let body = encrypt_with(&as_secret, &salt, &ua_public, &auth, plaintext).unwrap();
        assert_eq!(body, expected);
        assert_eq!(decrypt(&ua, &auth, &expected).unwrap(), plaintext);
    }
}
