//! TLS channel-binding data for SCRAM -PLUS: `tls-exporter` (RFC 9266) and `tls-server-end-point`
//! (RFC 5929 section 4).

use rustls::ProtocolVersion;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The exporter label of RFC 9266 section 2.
const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// RFC 9266 section 2: 32 bytes of keying material.
const TLS_EXPORTER_BYTES: usize = 32;

/// RFC 9266 `tls-exporter` for an established connection: 32 bytes exported with the label
/// `EXPORTER-Channel-Binding` and no context. `None` before the handshake completes and for TLS 1.2, where
/// the exporter is only safe with the extended master secret (RFC 9266 section 3), which rustls does not
/// let us confirm.
pub fn tls_exporter(conn: &rustls::ServerConnection) -> Option<Vec<u8>> {
    if conn.is_handshaking() || conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        return None;
    }
    conn.export_keying_material(vec![0u8; TLS_EXPORTER_BYTES], TLS_EXPORTER_LABEL, None)
        .ok()
}

/// The hash function RFC 5929 section 4.1 prescribes for a certificate's signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndPointHash {
    Sha256,
    Sha384,
    Sha512,
}

/// RFC 5929 section 4.1 `tls-server-end-point`: the hash of our certificate (DER) with the hash function
/// of its signature algorithm, SHA-256 where that is MD5 or SHA-1. `None` when the certificate does not
/// parse or its signature algorithm names no single hash (Ed25519, Ed448), for which the binding is
/// undefined; then -PLUS is simply not offered for this binding.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    Some(match end_point_hash(cert_der)? {
        EndPointHash::Sha256 => Sha256::digest(cert_der).to_vec(),
        EndPointHash::Sha384 => Sha384::digest(cert_der).to_vec(),
        EndPointHash::Sha512 => Sha512::digest(cert_der).to_vec(),
    })
}

fn end_point_hash(cert_der: &[u8]) -> Option<EndPointHash> {
    use x509_parser::signature_algorithm::SignatureAlgorithm;

    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let algorithm = &cert.signature_algorithm;
    // RSASSA-PSS names its hash in the parameters (RFC 4055 section 3.1).
    if let Ok(SignatureAlgorithm::RSASSA_PSS(params)) = SignatureAlgorithm::try_from(algorithm) {
        return hash_for_oid(&params.hash_algorithm_oid().to_id_string());
    }
    hash_for_oid(&algorithm.algorithm.to_id_string())
}

fn hash_for_oid(oid: &str) -> Option<EndPointHash> {
    Some(match oid {
        // md5WithRSAEncryption, sha1WithRSAEncryption, ecdsa-with-SHA1, dsa-with-sha1, id-md5, id-sha1:
        // RFC 5929 section 4.1 upgrades MD5 and SHA-1 to SHA-256.
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.10045.4.1"
        | "1.2.840.10040.4.3"
        | "1.2.840.113549.2.5"
        | "1.3.14.3.2.26" => EndPointHash::Sha256,
        // sha256WithRSAEncryption, ecdsa-with-SHA256, dsa-with-sha256, id-sha256.
        "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.3.2"
        | "2.16.840.1.101.3.4.3.2"
        | "2.16.840.1.101.3.4.2.1" => EndPointHash::Sha256,
        // sha384WithRSAEncryption, ecdsa-with-SHA384, id-sha384.
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" | "2.16.840.1.101.3.4.2.2" => {
            EndPointHash::Sha384
        }
        // sha512WithRSAEncryption, ecdsa-with-SHA512, id-sha512.
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" | "2.16.840.1.101.3.4.2.3" => {
            EndPointHash::Sha512
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

    use super::*;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A self-signed certificate and a client/server pair that completed the handshake in memory.
    fn handshake(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (CertificateDer<'static>, ClientConnection, ServerConnection) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_der = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let server_config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert_der.clone()).unwrap();
        let client_config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client =
            ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap())
                .unwrap();
        let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
        assert_eq!(
            tls_exporter(&server),
            None,
            "no exporter before the handshake"
        );
        while client.is_handshaking() || server.is_handshaking() {
            crate::net::memory_tls::transfer(&mut client, &mut server);
        }
        (cert_der, client, server)
    }

    #[test]
    fn tls_exporter_matches_the_clients_export_on_tls13() {
        let (_, client, server) = handshake(&rustls::version::TLS13);
        let server_binding = tls_exporter(&server).unwrap();
        assert_eq!(server_binding.len(), 32);
        let client_binding = client
            .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
            .unwrap();
        assert_eq!(server_binding, client_binding);
        // A second handshake yields a different binding.
        let (_, _, other) = handshake(&rustls::version::TLS13);
        assert_ne!(tls_exporter(&other).unwrap(), server_binding);
    }

    #[test]
    fn tls_exporter_is_not_offered_on_tls12() {
        let (_, _, server) = handshake(&rustls::version::TLS12);
        assert_eq!(tls_exporter(&server), None);
    }

    #[test]
    fn tls_server_end_point_hashes_the_certificate() {
        // rcgen's default key is ECDSA P-256 signed with SHA-256.
        let (cert_der, _, _) = handshake(&rustls::version::TLS13);
        assert_eq!(
            tls_server_end_point(&cert_der),
            Some(Sha256::digest(&cert_der).to_vec())
        );
    }

    #[test]
    fn tls_server_end_point_follows_the_signature_hash() {
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&p384)
            .unwrap();
        let der = cert.der().to_vec();
        assert_eq!(
            tls_server_end_point(&der),
            Some(Sha384::digest(&der).to_vec())
        );

        let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&ed25519)
            .unwrap();
        assert_eq!(
            tls_server_end_point(cert.der()),
            None,
            "Ed25519 has no RFC 5929 hash"
        );
        assert_eq!(tls_server_end_point(b"not a certificate"), None);
    }

    #[test]
    fn md5_and_sha1_signatures_use_sha256() {
        assert_eq!(
            hash_for_oid("1.2.840.113549.1.1.5"),
            Some(EndPointHash::Sha256)
        );
        assert_eq!(
            hash_for_oid("1.2.840.113549.1.1.4"),
            Some(EndPointHash::Sha256)
        );
        assert_eq!(
            hash_for_oid("1.2.840.10045.4.3.4"),
            Some(EndPointHash::Sha512)
        );
        assert_eq!(hash_for_oid("1.3.101.112"), None);
    }
}
