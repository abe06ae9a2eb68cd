//! A small async XMPP client for tests and load: TCP or direct TLS connect (RFC 6120 section 5,
//! XEP-0368), STARTTLS, SASL SCRAM-SHA-1/SCRAM-SHA-256/PLAIN, resource binding, raw XML out and
//! parsed top-level elements in. It trusts any certificate: loopback testing only.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herald_load::client::ClientError> {
//! use herald_load::client::{Connector, Mechanism, TlsMode};
//! let connector = Connector::new("127.0.0.1:5222".parse().unwrap(), "localhost", TlsMode::StartTls)?;
//! let mut session = connector.login("alice", "secret", "phone", Mechanism::Best, None, None).await?;
//! session.send("<presence/>").await?;
//! let next = session.recv().await?;
//! println!("{}", next.raw);
//! # Ok(()) }
//! ```

mod element;
mod error;
mod scram;
mod session;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

pub use element::{Element, ElementReader, Incoming, escape};
pub use error::ClientError;
pub use scram::{ScramCache, ScramClient, ScramHash, plain_response};
pub use session::{Mechanism, Session, SessionReader, SessionWriter, error_condition};
pub use tls::insecure_client_config;

/// The socket type of an established session.
pub type TlsSocket = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS-protected, not yet authenticated or authenticated session.
pub type TlsSession = Session<TlsSocket>;

/// How TLS is negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP then `<starttls/>` (RFC 6120 section 5), usually port 5222.
    StartTls,
    /// TLS from the first byte with ALPN `xmpp-client` (XEP-0368), usually port 5223.
    Direct,
}

/// Where and how to connect; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Connector {
    addr: SocketAddr,
    domain: String,
    mode: TlsMode,
    tls: TlsConnector,
    /// Deadline for each step waiting on the server.
    pub timeout: Duration,
    /// Largest top-level element accepted from the server.
    pub max_element_bytes: usize,
    /// TLS handshakes done, and how many of them resumed an earlier session (RFC 8446 section
    /// 2.2): rustls clients resume by default, so a server issuing tickets does less work per
    /// login; the report says how often that happened.
    handshakes: Arc<(AtomicU64, AtomicU64)>,
    /// Whether the server's handshake signature is verified (see [`Connector::with_tls`]).
    pub checks_signatures: bool,
}

impl Connector {
    /// A connector to `addr` for XMPP domain `domain`, trusting any certificate.
    ///
    /// Errors: [`ClientError::Tls`] if the TLS configuration cannot be built.
    pub fn new(addr: SocketAddr, domain: &str, mode: TlsMode) -> Result<Self, ClientError> {
        let config: Arc<ClientConfig> = insecure_client_config(mode == TlsMode::Direct, true)?;
        Ok(Connector {
            addr,
            domain: domain.to_owned(),
            mode,
            tls: TlsConnector::from(config),
            timeout: Duration::from_secs(30),
            max_element_bytes: 1 << 20,
            handshakes: Arc::default(),
            checks_signatures: true,
        })
    }

    /// The same connector with the given TLS settings: `resumption` off makes every connection a
    /// full handshake; `check_signatures` off skips verifying the server's handshake signature,
    /// which proves nothing when any certificate is trusted (see the `tls` module).
    ///
    /// Errors: [`ClientError::Tls`] if the TLS configuration cannot be built.
    pub fn with_tls(
        mut self,
        resumption: bool,
        check_signatures: bool,
    ) -> Result<Self, ClientError> {
        let mut config = insecure_client_config(self.mode == TlsMode::Direct, check_signatures)?;
        if !resumption {
            Arc::make_mut(&mut config).resumption = rustls::client::Resumption::disabled();
        }
        self.tls = TlsConnector::from(config);
        self.checks_signatures = check_signatures;
        Ok(self)
    }

    /// TLS handshakes completed so far, and how many of those resumed a session.
    pub fn handshake_counts(&self) -> (u64, u64) {
        (
            self.handshakes.0.load(Ordering::Relaxed),
            self.handshakes.1.load(Ordering::Relaxed),
        )
    }

    /// The XMPP domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Connects, negotiates TLS and returns the session with the post-TLS stream features.
    /// `source_ip` binds the local end (e.g. 127.0.0.2) to spread connections over more
    /// ephemeral port ranges.
    ///
    /// Errors: transport and TLS errors, [`ClientError::NotOffered`] without STARTTLS.
    pub async fn connect(&self, source_ip: Option<IpAddr>) -> Result<TlsSession, ClientError> {
        let tcp = tokio::time::timeout(self.timeout, self.tcp(source_ip))
            .await
            .map_err(|_| ClientError::Timeout("tcp connect"))??;
        let tcp = match self.mode {
            TlsMode::Direct => tcp,
            TlsMode::StartTls => {
                let mut plain =
                    Session::open(tcp, &self.domain, self.timeout, self.max_element_bytes).await?;
                if plain
                    .features()
                    .child_ns("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
                    .is_none()
                {
                    return Err(ClientError::NotOffered("STARTTLS".into()));
                }
                plain
                    .send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                    .await?;
                let reply = plain.recv().await?;
                if reply.name != "proceed" {
                    return Err(ClientError::Protocol(format!(
                        "STARTTLS answered with <{}>",
                        reply.name
                    )));
                }
                plain.into_socket()?
            }
        };
        let name = ServerName::try_from(self.domain.clone())
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let tls = tokio::time::timeout(self.timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| ClientError::Timeout("tls handshake"))??;
        self.handshakes.0.fetch_add(1, Ordering::Relaxed);
        if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            self.handshakes.1.fetch_add(1, Ordering::Relaxed);
        }
        Session::open(tls, &self.domain, self.timeout, self.max_element_bytes).await
    }

    async fn tcp(&self, source_ip: Option<IpAddr>) -> Result<TcpStream, ClientError> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = source_ip {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Connects, authenticates `username` (the localpart) and binds `resource`.
    ///
    /// Errors: as [`Connector::connect`], [`Session::authenticate`] and [`Session::bind`].
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        resource: &str,
        mechanism: Mechanism,
        cache: Option<&ScramCache>,
        source_ip: Option<IpAddr>,
    ) -> Result<TlsSession, ClientError> {
        let mut session = self.connect(source_ip).await?;
        session
            .authenticate(username, password, mechanism, cache)
            .await?;
        session.bind(resource).await?;
        Ok(session)
    }

    /// Creates `username` by XEP-0077 in-band registration on a fresh connection. An existing
    /// account (`conflict`) counts as success so runs can be repeated.
    ///
    /// Errors: [`ClientError::IqError`] (e.g. `not-allowed`, `service-unavailable` when the server
    /// does not allow registration: create accounts with the server's CLI instead).
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        source_ip: Option<IpAddr>,
    ) -> Result<(), ClientError> {
        let mut session = self.connect(source_ip).await?;
        let outcome = match session.register(username, password).await {
            Err(ClientError::IqError(c)) if c == "conflict" => Ok(()),
            other => other,
        };
        // Closing is best effort: the account exists or not regardless of how the stream ends.
        let _ = session.close().await;
        outcome
    }
}
