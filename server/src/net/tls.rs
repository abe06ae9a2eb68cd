//! TLS for every listener (RFC 7590): one certificate per hosted domain, chosen by SNI, TLS 1.2 and 1.3 only;
//! and the client configuration for TLS we initiate ([`client_config`]).
//!
//! Without configured certificates a self-signed one is generated per domain with rcgen and kept in
//! `data_dir/certs/`, so the first `herald serve` works and restarts keep the same key. It is named
//! after the domain (CN, O=Herald, SANs), valid for two years, and replaced at start within 30 days of
//! its expiry.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{CertificateFiles, Config};
use crate::net::channel_binding;

/// ALPN protocol id for direct-TLS client connections (XEP-0368 section 3).
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

/// ALPN protocol id for direct-TLS server-to-server connections (XEP-0368 section 3).
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

/// Problems setting TLS up at start.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("generating a certificate for {domain}: {reason}")]
    Generate { domain: String, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificates of every hosted domain and the acceptors built from them.
#[derive(Clone)]
pub struct TlsIdentity {
    certificates: Arc<CertificateStore>,
    /// For STARTTLS on the c2s port: no ALPN.
    pub starttls: TlsAcceptor,
    /// For XEP-0368 direct TLS: ALPN `xmpp-client` offered (clients that send none are accepted too).
    pub direct: TlsAcceptor,
    /// For the relay's HTTP API: ALPN `h2` and `http/1.1`.
    pub https: TlsAcceptor,
    /// The stateless session-ticket key every acceptor shares (the s2s ones included).
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
}

#[derive(Debug)]
struct CertificateStore {
    by_domain: HashMap<String, Served>,
    default_domain: String,
}

/// One domain's certificate and what channel binding needs of it.
#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    /// RFC 5929 `tls-server-end-point` of the leaf, hashed once here rather than parsed and hashed on
    /// every login; `None` when the certificate's signature algorithm defines no hash for it.
    end_point: Option<Vec<u8>>,
}

impl CertificateStore {
    fn pick(&self, server_name: Option<&str>) -> Option<&Served> {
        let wanted = server_name.map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        wanted
            .and_then(|n| self.by_domain.get(&n))
            .or_else(|| self.by_domain.get(&self.default_domain))
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(client_hello.server_name())
            .map(|served| served.key.clone())
    }
}

impl TlsIdentity {
    /// Loads configured certificates and generates self-signed ones for domains without.
    /// Errors: unreadable or invalid PEM files, a key rustls cannot use, a failed generation.
    pub fn load(config: &Config) -> Result<TlsIdentity, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut by_domain = HashMap::new();
        for domain in &config.domains {
            let files = match config.certificates.iter().find(|c| &c.domain == domain) {
                Some(files) => files.clone(),
                None => self_signed_files(&config.data_dir, domain)?,
            };
            let key = load_certified_key(&files, &provider)?;
            let end_point = key
                .cert
                .first()
                .and_then(|leaf| channel_binding::tls_server_end_point(leaf.as_ref()));
            let key = Arc::new(key);
            by_domain.insert(domain.clone(), Served { key, end_point });
        }
        let store = Arc::new(CertificateStore {
            by_domain,
            default_domain: config.domains.first().cloned().unwrap_or_default(),
        });
        // Stateless tickets (RFC 5077, RFC 8446 section 4.6.1): any number of clients can resume without
        // the server keeping a cache of sessions, which at 256 entries by default would forget most of a
        // community's phones between their reconnections.
        let ticketer = rustls::crypto::ring::Ticketer::new()?;
        let build = |alpn: Vec<Vec<u8>>| -> Result<TlsAcceptor, TlsSetupError> {
            let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
                .with_no_client_auth()
                .with_cert_resolver(store.clone());
            server.alpn_protocols = alpn;
            server.ticketer = ticketer.clone();
            // One TLS 1.3 ticket per handshake, not rustls's two: an XMPP client holds one connection
            // and resumes the next one with it; the second ticket is only of use for parallel
            // connections (RFC 8446 section C.4), and costs every login an encryption and a record.
            server.send_tls13_tickets = 1;
            Ok(TlsAcceptor::from(Arc::new(server)))
        };
        Ok(TlsIdentity {
            starttls: build(Vec::new())?,
            direct: build(vec![ALPN_XMPP_CLIENT.to_vec()])?,
            https: build(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?,
            certificates: store,
            ticketer,
        })
    }

    /// The certificate chain and key served for `domain` (the first domain's for an unknown one): what
    /// outbound federation presents as its client certificate (XEP-0178 section 3).
    pub fn certified_key(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.certificates
            .pick(Some(domain))
            .map(|served| served.key.clone())
    }

    /// An acceptor serving the same certificates (chosen by SNI) that asks the peer for a certificate and
    /// leaves judging it to `verifier`, with `alpn` offered: the s2s listeners (RFC 6120 section 13.7.1,
    /// XEP-0178).
    ///
    /// Errors: [`TlsSetupError::Rustls`] if the crypto provider supports none of the versions.
    pub fn acceptor_with_client_auth(
        &self,
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
        alpn: Vec<Vec<u8>>,
    ) -> Result<TlsAcceptor, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.certificates.clone());
        server.alpn_protocols = alpn;
        // The same stateless tickets as the client listeners: a peer server reconnecting after an
        // idle close resumes instead of paying a full handshake (RFC 8446 section 2.2), with one
        // ticket per handshake for the same reason as there.
        server.ticketer = self.ticketer.clone();
        server.send_tls13_tickets = 1;
        Ok(TlsAcceptor::from(Arc::new(server)))
    }

    /// The DER of the leaf certificate served for `server_name`.
    pub fn leaf_certificate(&self, server_name: Option<&str>) -> Option<Vec<u8>> {
        self.certificates
            .pick(server_name)
            .and_then(|served| served.key.cert.first().map(|c| c.as_ref().to_vec()))
    }

    /// RFC 5929 `tls-server-end-point` channel-binding data of the certificate served for `server_name`.
    pub fn end_point_binding(&self, server_name: Option<&str>) -> Option<&[u8]> {
        self.certificates
            .pick(server_name)
            .and_then(|served| served.end_point.as_deref())
    }
}

/// A client configuration for TLS we initiate (outbound federation, RFC 7590): the protocol versions our
/// listeners accept, TLS 1.3 and 1.2, and peer certificates verified against `roots` (RFC 6120 section
/// 13.7.2). No client certificate: SASL EXTERNAL for s2s will add one.
///
/// Errors: [`TlsSetupError::Rustls`] if the crypto provider supports none of the versions.
pub fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn load_certified_key(
    files: &CertificateFiles,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, TlsSetupError> {
    let file_error = |path: &Path, reason: String| TlsSetupError::File {
        path: path.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_error(&files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(&files.cert, "no certificate in file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_error(&files.key, e.to_string()))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_error(&files.key, e.to_string()))?;
    Ok(CertifiedKey::new(chain, signing_key))
}

/// How long a generated certificate is valid: two years, long enough that a small server's users are
/// not asked to trust a new one often, short enough that a lost key does not stay usable for ever.
const SELF_SIGNED_VALIDITY_DAYS: i64 = 730;

/// A generated certificate this close to its end (or past it) is replaced at start, so a server that
/// runs on is not caught by expiry; clients then ask their users to trust the new one.
const SELF_SIGNED_RENEW_BEFORE_DAYS: i64 = 30;

/// Returns the paths of a self-signed certificate for `domain` under `data_dir/certs`, creating it if
/// missing and replacing it when it expires within [`SELF_SIGNED_RENEW_BEFORE_DAYS`].
fn self_signed_files(data_dir: &Path, domain: &str) -> Result<CertificateFiles, TlsSetupError> {
    let dir = data_dir.join("certs");
    let files = CertificateFiles {
        domain: domain.to_string(),
        cert: dir.join(format!("{domain}.crt")),
        key: dir.join(format!("{domain}.key")),
    };
    let now = chrono::Utc::now();
    if files.cert.is_file() && files.key.is_file() {
        match expires_at(&files.cert) {
            Some(end) if end - now > chrono::Duration::days(SELF_SIGNED_RENEW_BEFORE_DAYS) => {
                return Ok(files);
            }
            Some(end) => {
                tracing::warn!(domain, expires = %end, "the self-signed certificate expires soon; generating a new one");
            }
            // Not ours to judge (not a certificate we can read): loading it reports the problem.
            None => return Ok(files),
        }
    }
    let generate_error = |reason: String| TlsSetupError::Generate {
        domain: domain.to_string(),
        reason,
    };
    std::fs::create_dir_all(&dir).map_err(|e| generate_error(e.to_string()))?;
    let (cert_pem, key_pem) =
        generate_self_signed(domain, now).map_err(|e| generate_error(e.to_string()))?;
    write_private(&files.key, key_pem.as_bytes()).map_err(|e| generate_error(e.to_string()))?;
    std::fs::write(&files.cert, cert_pem).map_err(|e| generate_error(e.to_string()))?;
    tracing::info!(domain, path = %files.cert.display(), "generated a self-signed certificate");
    Ok(files)
}

/// A self-signed certificate and its key (PEM) for `domain`, named after it: this is what a client
/// shows its user when asking whether to trust the server.
fn generate_self_signed(
    domain: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(String, String), rcgen::Error> {
    use chrono::Datelike;
    // RFC 6120 section 13.7.1.2: the domain itself as a DNS SAN; the wildcard covers conference./upload. hosts.
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_string(), format!("*.{domain}")])?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, domain);
    name.push(rcgen::DnType::OrganizationName, "Herald");
    params.distinguished_name = name;
    let day = |at: chrono::DateTime<chrono::Utc>| {
        // Month and day always fit in u8; the fallback is never taken.
        let month = u8::try_from(at.month()).unwrap_or(1);
        let day = u8::try_from(at.day()).unwrap_or(1);
        rcgen::date_time_ymd(at.year(), month, day)
    };
    // From the day before, so a client whose clock is a little behind does not see it "not yet valid".
    params.not_before = day(now - chrono::Duration::days(1));
    params.not_after = day(now + chrono::Duration::days(SELF_SIGNED_VALIDITY_DAYS));
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// When the first certificate in a PEM file stops being valid; `None` if it cannot be read.
fn expires_at(path: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
    let der = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    #[test]
    fn generates_once_and_reuses_self_signed_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![
            (
                "HERALD_SERVER__DATA_DIR".to_string(),
                dir.path().display().to_string(),
            ),
            (
                "HERALD_SERVER__DOMAINS".to_string(),
                "[\"a.test\", \"b.test\"]".to_string(),
            ),
        ];
        let config = Config::resolve(RawConfig::load(None, env).unwrap()).unwrap();
        let first = TlsIdentity::load(&config).unwrap();
        let a = first.leaf_certificate(Some("a.test")).unwrap();
        let b = first.leaf_certificate(Some("B.TEST.")).unwrap();
        assert_ne!(a, b, "each domain has its own certificate");
        let again = TlsIdentity::load(&config).unwrap();
        assert_eq!(again.leaf_certificate(Some("a.test")).unwrap(), a);
        assert_eq!(
            again.leaf_certificate(Some("unknown.test")).unwrap(),
            a,
            "unknown names fall back to the first domain"
        );
        assert_eq!(
            first.end_point_binding(Some("a.test")),
            Some(
                <sha2::Sha256 as sha2::Digest>::digest(&a)
                    .as_slice()
                    .to_vec()
            )
            .as_deref(),
            "rcgen signs with ECDSA P-256 and SHA-256 (RFC 5929 section 4.1)"
        );
    }

    fn parse(pem: &[u8]) -> (String, String, Vec<String>, i64, i64) {
        let der = CertificateDer::pem_slice_iter(pem).next().unwrap().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let first = |attributes: Vec<&x509_parser::x509::AttributeTypeAndValue>| {
            attributes
                .first()
                .and_then(|a| a.as_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let cn = first(cert.subject().iter_common_name().collect());
        let org = first(cert.subject().iter_organization().collect());
        let sans = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|name| format!("{name:?}"))
            .collect();
        let validity = cert.validity();
        (
            cn,
            org,
            sans,
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        )
    }

    #[test]
    fn the_generated_certificate_is_named_after_the_domain_and_valid_for_two_years() {
        let dir = tempfile::tempdir().unwrap();
        let files = self_signed_files(dir.path(), "chat.example").unwrap();
        let (cn, org, sans, not_before, not_after) = parse(&std::fs::read(&files.cert).unwrap());
        assert_eq!((cn.as_str(), org.as_str()), ("chat.example", "Herald"));
        assert!(
            sans.iter().any(|n| n.contains("\"chat.example\"")),
            "{sans:?}"
        );
        let now = chrono::Utc::now().timestamp();
        let day = 86_400;
        assert!(
            not_before <= now - day / 2 && not_before >= now - 2 * day,
            "valid from the day before"
        );
        let years = (not_after - now) as f64 / (365.0 * day as f64);
        assert!(
            (1.9..=2.1).contains(&years),
            "valid for two years, not {years}"
        );
    }

    #[test]
    fn a_generated_certificate_near_its_expiry_is_replaced_at_start_and_a_valid_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let files = self_signed_files(dir.path(), "a.test").unwrap();
        let fresh = std::fs::read(&files.cert).unwrap();
        self_signed_files(dir.path(), "a.test").unwrap();
        assert_eq!(
            std::fs::read(&files.cert).unwrap(),
            fresh,
            "kept while valid"
        );

        // One made two years minus ten days ago expires in ten days: replaced.
        let long_ago = chrono::Utc::now() - chrono::Duration::days(SELF_SIGNED_VALIDITY_DAYS - 10);
        let (old_cert, old_key) = generate_self_signed("a.test", long_ago).unwrap();
        std::fs::write(&files.cert, &old_cert).unwrap();
        std::fs::write(&files.key, &old_key).unwrap();
        self_signed_files(dir.path(), "a.test").unwrap();
        let renewed = std::fs::read(&files.cert).unwrap();
        assert_ne!(renewed, old_cert.as_bytes());
        let (_, _, _, _, not_after) = parse(&renewed);
        assert!(not_after - chrono::Utc::now().timestamp() > 700 * 86_400);
    }

    fn identity(dir: &Path) -> TlsIdentity {
        let env = vec![
            (
                "HERALD_SERVER__DATA_DIR".to_string(),
                dir.display().to_string(),
            ),
            (
                "HERALD_SERVER__DOMAINS".to_string(),
                "[\"a.test\"]".to_string(),
            ),
        ];
        TlsIdentity::load(&Config::resolve(RawConfig::load(None, env).unwrap()).unwrap()).unwrap()
    }

    /// Runs one in-memory TLS 1.3 handshake and the client's first read, which takes the tickets.
    /// Returns how it went and how many tickets the client received.
    fn connect(
        server_config: &Arc<rustls::ServerConfig>,
        client_config: &Arc<rustls::ClientConfig>,
    ) -> (rustls::HandshakeKind, usize) {
        let mut client =
            rustls::ClientConnection::new(client_config.clone(), "a.test".try_into().unwrap())
                .unwrap();
        let mut server = rustls::ServerConnection::new(server_config.clone()).unwrap();
        // Until the client has read everything the server sends after its Finished (the tickets).
        for _ in 0..4 {
            crate::net::memory_tls::transfer(&mut client, &mut server);
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        (
            client.handshake_kind().unwrap(),
            client.tls13_tickets_received() as usize,
        )
    }

    /// A TLS 1.3-only client that trusts `tls`'s certificate for `domain`.
    fn tls13_client_trusting(tls: &TlsIdentity, domain: &str) -> Arc<rustls::ClientConfig> {
        let leaf = tls.leaf_certificate(Some(domain)).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(leaf)).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }

    #[test]
    fn one_stateless_ticket_per_handshake_resumes_the_next_connection() {
        let dir = tempfile::tempdir().unwrap();
        let tls = identity(dir.path());
        let client_config = tls13_client_trusting(&tls, "a.test");
        let server_config = tls.starttls.config().clone();
        // rustls's default ticketer makes none and falls back to its 256-entry session cache.
        assert!(server_config.ticketer.enabled(), "tickets are stateless");
        assert_eq!(
            connect(&server_config, &client_config),
            (rustls::HandshakeKind::Full, 1)
        );
        let (kind, _) = connect(&server_config, &client_config);
        assert_eq!(kind, rustls::HandshakeKind::Resumed);
        // The ticket key lives in the process: after a restart (a new identity) the client falls
        // back to a full handshake instead of failing.
        let other = identity(dir.path()).starttls.config().clone();
        let (kind, _) = connect(&other, &client_config);
        assert_eq!(kind, rustls::HandshakeKind::Full);
    }

    #[test]
    fn the_s2s_acceptors_resume_with_the_same_stateless_tickets() {
        let dir = tempfile::tempdir().unwrap();
        let tls = identity(dir.path());
        let client_config = tls13_client_trusting(&tls, "a.test");
        let acceptor = tls
            .acceptor_with_client_auth(crate::s2s::trust::AnyPeerCertificate::new(), Vec::new())
            .unwrap();
        let server_config = acceptor.config().clone();
        assert!(server_config.ticketer.enabled(), "tickets are stateless");
        assert_eq!(
            connect(&server_config, &client_config),
            (rustls::HandshakeKind::Full, 1)
        );
        let (kind, _) = connect(&server_config, &client_config);
        assert_eq!(kind, rustls::HandshakeKind::Resumed);
    }
}
