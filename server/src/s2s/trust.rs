//! Which certificates federation trusts (RFC 6120 section 13.7.2, RFC 6125 DNS-ID, XEP-0178 section 3):
//! the webpki roots plus `[s2s] ca_files`, or a certificate pinned for one domain.
//!
//! TLS itself never refuses a peer for its certificate: the handshake only checks that the peer holds the
//! key of the certificate it shows. Whether that certificate validates for a domain is decided afterwards,
//! per domain, by [`PeerTrust::validates`], because the answer only chooses the authentication method
//! (SASL EXTERNAL, dialback, or neither): a peer whose certificate does not validate may still use
//! dialback when its domain allows it. Validation uses the serverAuth purpose for both directions, so a
//! certificate without the clientAuth purpose (as Let's Encrypt issues them since 2026) authenticates an
//! inbound peer too.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::S2sSettings;
use crate::net::tls::TlsSetupError;

/// The trust anchors and pinned certificates of federation.
#[derive(Debug)]
pub struct PeerTrust {
    webpki: Arc<WebPkiServerVerifier>,
    /// Domain to the DER of the one certificate accepted for it.
    pinned: HashMap<String, Vec<u8>>,
}

impl PeerTrust {
    /// The webpki roots, `ca_files` and each peer's pinned `certificate`.
    ///
    /// Errors: [`TlsSetupError::File`] for an unreadable or empty PEM file, [`TlsSetupError::Rustls`]
    /// for a trust anchor rustls refuses.
    pub fn load(settings: &S2sSettings) -> Result<PeerTrust, TlsSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in &settings.ca_files {
            for certificate in read_pem(path)? {
                roots.add(certificate).map_err(|e| TlsSetupError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        let mut pinned = HashMap::new();
        for peer in &settings.peers {
            if let Some(path) = &peer.certificate
                && let Some(first) = read_pem(path)?.into_iter().next()
            {
                pinned.insert(peer.domain.clone(), first.as_ref().to_vec());
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsSetupError::File {
                path: "[s2s] trust anchors".into(),
                reason: e.to_string(),
            })?;
        Ok(PeerTrust { webpki, pinned })
    }

    /// Whether `chain` (leaf first, as the peer sent it) is a valid certificate for `domain`: the pinned
    /// certificate if the domain has one, else a chain to a trust anchor with `domain` as DNS-ID and
    /// the serverAuth purpose (or none), valid now.
    pub fn validates(&self, domain: &str, chain: &[CertificateDer<'_>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        if let Some(pinned) = self.pinned.get(domain) {
            return leaf.as_ref() == pinned.as_slice();
        }
        let Ok(name) = ServerName::try_from(domain) else {
            return false;
        };
        self.webpki
            .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
            .is_ok()
    }
}

fn read_pem(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let file_error = |reason: String| TlsSetupError::File {
        path: path.display().to_string(),
        reason,
    };
    let certificates: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(file_error("no certificate in file".into()));
    }
    Ok(certificates)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// Asks every inbound peer for a certificate, does not require one, and accepts whatever it shows once
/// the handshake proves it holds the key: [`PeerTrust::validates`] judges it afterwards for the domain
/// the stream claims.
#[derive(Debug)]
pub struct AnyPeerCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyPeerCertificate {
    pub fn new() -> Arc<AnyPeerCertificate> {
        Arc::new(AnyPeerCertificate {
            algorithms: algorithms(),
        })
    }
}

impl ClientCertVerifier for AnyPeerCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The outbound counterpart of [`AnyPeerCertificate`]: the handshake proves key possession, and the
/// dialer judges the certificate with [`PeerTrust::validates`] before it sends anything over the stream.
#[derive(Debug)]
pub struct AnyServerCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyServerCertificate {
    pub fn new() -> Arc<AnyServerCertificate> {
        Arc::new(AnyServerCertificate {
            algorithms: algorithms(),
        })
    }
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Presents one certificate (our domain's) as the client certificate of outbound TLS (XEP-0178 section 3).
#[derive(Debug)]
struct OurCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OurCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The client configuration of outbound federation from one of our domains: TLS 1.3 and 1.2, our
/// certificate for `local` as the client certificate, the peer's judged afterwards, and `alpn`
/// (`xmpp-server` for direct TLS, none for STARTTLS).
///
/// Errors: [`TlsSetupError::Rustls`] if the crypto provider supports none of the versions.
pub fn outbound_config(
    certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    alpn: Vec<Vec<u8>>,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(AnyServerCertificate::new());
    let mut config = match certificate {
        Some(key) => builder.with_client_cert_resolver(Arc::new(OurCertificate(key))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PeerSettings;

    /// A CA, and a leaf for `domain` signed by it with only the serverAuth purpose.
    fn ca_and_server_auth_leaf(domain: &str) -> (String, CertificateDer<'static>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut leaf = rcgen::CertificateParams::new(vec![domain.to_string()]).unwrap();
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
        (ca_cert.pem(), leaf.der().clone())
    }

    fn settings(dir: &std::path::Path, ca_pem: &str, peers: Vec<PeerSettings>) -> S2sSettings {
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        S2sSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            direct_tls_listen: None,
            require_encryption: true,
            ca_files: vec![ca],
            nameserver: None,
            queue_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            max_queue_stanzas: 1,
            max_queue_bytes: 1,
            max_connections: 1,
            max_connections_per_address: 1,
            max_connections_per_domain: 1,
            peers,
        }
    }

    #[test]
    fn a_server_auth_only_certificate_validates_for_its_domain_only() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, leaf) = ca_and_server_auth_leaf("b.test");
        let trust = PeerTrust::load(&settings(dir.path(), &ca, Vec::new())).unwrap();
        assert!(trust.validates("b.test", std::slice::from_ref(&leaf)));
        assert!(!trust.validates("c.test", std::slice::from_ref(&leaf)));
        assert!(!trust.validates("b.test", &[]));
    }

    #[test]
    fn a_pinned_certificate_is_the_only_one_accepted_for_its_domain() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, leaf) = ca_and_server_auth_leaf("b.test");
        let (_, other_ca_leaf) = ca_and_server_auth_leaf("b.test");
        let pinned = dir.path().join("b.pem");
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &other_ca_leaf)
        );
        std::fs::write(&pinned, pem).unwrap();
        let peer = PeerSettings {
            domain: "b.test".into(),
            address: None,
            direct_tls: false,
            certificate: Some(pinned),
            allow_dialback_without_certificate: false,
        };
        let trust = PeerTrust::load(&settings(dir.path(), &ca, vec![peer])).unwrap();
        assert!(trust.validates("b.test", std::slice::from_ref(&other_ca_leaf)));
        assert!(
            !trust.validates("b.test", std::slice::from_ref(&leaf)),
            "the pin replaces the CA for that domain"
        );
    }
}
