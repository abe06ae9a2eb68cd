//! TLS for the test client: a rustls client configuration that accepts any server certificate
//! (self-signed test servers), with optional ALPN `xmpp-client` for direct TLS (XEP-0368 section 3).
//!
//! The handshake signature is checked unless the caller turns that off. A client that trusts any
//! certificate learns nothing from the check (anyone can sign with a key of their own), so the load
//! generator skips it: an ECDSA verification is the largest single cost of its side of a login, and
//! every millisecond it spends is taken from the server it measures on the same machine.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::error::ClientError;

/// Accepts every certificate chain: for loopback testing against self-signed servers only.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
    check_signatures: bool,
}

impl ServerCertVerifier for AnyCertificate {
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
        if !self.check_signatures {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.check_signatures {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client configuration trusting any certificate; `alpn` is set for direct TLS (XEP-0368);
/// `check_signatures` verifies the server's handshake signature against its certificate.
///
/// Errors: [`ClientError::Tls`] if the ring provider rejects the default protocol versions.
pub fn insecure_client_config(
    alpn: bool,
    check_signatures: bool,
) -> Result<Arc<ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate {
            algorithms,
            check_signatures,
        }))
        .with_no_client_auth();
    if alpn {
        config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    }
    Ok(Arc::new(config))
}
