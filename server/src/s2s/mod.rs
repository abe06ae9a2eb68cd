//! Server-to-server federation (RFC 6120; XEP-0178 SASL EXTERNAL, XEP-0220 Server Dialback with
//! XEP-0185 keys, XEP-0368 direct TLS).
//!
//! - [`Federation`]: what every s2s stream shares (settings, trust, our certificates, the dialback
//!   secret, the TLS acceptors that ask peers for certificates).
//! - `inbound.rs`: the listeners and the receiving side: TLS, EXTERNAL or dialback, db:verify answered,
//!   stanzas checked against the authenticated domains and handed to the router.
//! - `outbound.rs`: the [`link::Dialer`] the queue uses: TCP, TLS with our certificate, EXTERNAL or
//!   dialback; also the receiving server's db:verify connection.
//! - `trust.rs`: which certificates validate for a domain; `dialback.rs`: keys and elements.
//! - `link.rs`: the `Dialer`/`Link` interface to the outbound queue; `sender.rs` is the in-memory
//!   stepping stone in place of the durable queue.

pub mod dialback;
pub mod inbound;
pub mod link;
pub mod outbound;
pub mod sender;
pub mod trust;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, S2sSettings};
use crate::net::shutdown::Shutdown;
use crate::net::tls::{ALPN_XMPP_SERVER, TlsIdentity, TlsSetupError};
use crate::net::unauthenticated::UnauthenticatedSlots;
use crate::router::Router;
use crate::xmpp::Limits;
use dialback::DialbackSecret;
use trust::{AnyPeerCertificate, PeerTrust};

/// What every s2s stream of this server shares.
pub struct Federation {
    pub settings: S2sSettings,
    /// Our domains (`[server] domains`).
    pub local_domains: Vec<String>,
    pub tls: TlsIdentity,
    pub trust: PeerTrust,
    pub secret: DialbackSecret,
    /// For STARTTLS on `listen`: asks for the peer's certificate, no ALPN.
    pub starttls_acceptor: TlsAcceptor,
    /// For `direct_tls_listen`: the same, with ALPN `xmpp-server` (XEP-0368 section 3).
    pub direct_acceptor: TlsAcceptor,
    /// What an authenticated peer may send; [`Limits::before_auth`] before.
    pub limits: Limits,
    /// How long TLS and authentication may take, in each direction.
    pub auth_timeout: Duration,
    /// How long a write may make no progress.
    pub write_timeout: Duration,
    /// How streams authenticated since start (diagnostics, and what tests check).
    pub authentications: AuthenticationCounts,
}

/// Streams authenticated since start, by direction and method.
#[derive(Debug, Default)]
pub struct AuthenticationCounts {
    /// Peers that authenticated to us with SASL EXTERNAL (XEP-0178).
    pub inbound_external: AtomicU64,
    /// Domains a peer authenticated with dialback (XEP-0220), piggybacked ones included.
    pub inbound_dialback: AtomicU64,
    /// Our outbound streams authenticated with SASL EXTERNAL.
    pub outbound_external: AtomicU64,
    /// Our outbound streams authenticated with dialback.
    pub outbound_dialback: AtomicU64,
}

impl AuthenticationCounts {
    /// (inbound EXTERNAL, inbound dialback, outbound EXTERNAL, outbound dialback).
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        (
            get(&self.inbound_external),
            get(&self.inbound_dialback),
            get(&self.outbound_external),
            get(&self.outbound_dialback),
        )
    }

    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("local_domains", &self.local_domains)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// Builds the shared state from the configuration (`None` when `[s2s]` is absent).
    ///
    /// Errors: unreadable trust anchors or pinned certificates, a TLS setup rustls refuses.
    pub fn new(
        config: &Config,
        tls: &TlsIdentity,
    ) -> Result<Option<Arc<Federation>>, TlsSetupError> {
        let Some(settings) = config.s2s.clone() else {
            return Ok(None);
        };
        let trust = PeerTrust::load(&settings)?;
        let starttls_acceptor =
            tls.acceptor_with_client_auth(AnyPeerCertificate::new(), Vec::new())?;
        let direct_acceptor = tls.acceptor_with_client_auth(
            AnyPeerCertificate::new(),
            vec![ALPN_XMPP_SERVER.to_vec()],
        )?;
        Ok(Some(Arc::new(Federation {
            settings,
            local_domains: config.domains.clone(),
            tls: tls.clone(),
            trust,
            secret: DialbackSecret::generate(),
            starttls_acceptor,
            direct_acceptor,
            limits: config.stream_limits(),
            auth_timeout: config.auth_timeout,
            write_timeout: config.write_timeout,
            authentications: AuthenticationCounts::default(),
        })))
    }

    /// Whether `domain` is listed with `allow_dialback_without_certificate`.
    pub fn allows_dialback_without_certificate(&self, domain: &str) -> bool {
        self.settings
            .peer(domain)
            .is_some_and(|p| p.allow_dialback_without_certificate)
    }
}

/// Where the s2s listeners listen, and the federation state they share.
#[derive(Debug, Clone)]
pub struct S2sAddresses {
    pub starttls: SocketAddr,
    pub direct_tls: Option<SocketAddr>,
    pub federation: Arc<Federation>,
}

/// Binds the s2s listeners, spawns them into `tasks`, and attaches the outbound sender to `router`.
///
/// Errors: a listener cannot bind (its address and the I/O error).
pub async fn start(
    federation: Arc<Federation>,
    router: &Arc<Router>,
    unauthenticated: Arc<UnauthenticatedSlots>,
    shutdown: Shutdown,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<S2sAddresses, (SocketAddr, std::io::Error)> {
    let settings = &federation.settings;
    let bind = |address: SocketAddr| async move {
        TcpListener::bind(address)
            .await
            .map_err(|error| (address, error))
    };
    let listener = bind(settings.listen).await?;
    let starttls = listener.local_addr().unwrap_or(settings.listen);
    tasks.spawn(inbound::serve(
        listener,
        federation.clone(),
        router.clone(),
        false,
        unauthenticated.clone(),
        shutdown.clone(),
    ));
    let direct_tls = match settings.direct_tls_listen {
        Some(address) => {
            let listener = bind(address).await?;
            let bound = listener.local_addr().unwrap_or(address);
            tasks.spawn(inbound::serve(
                listener,
                federation.clone(),
                router.clone(),
                true,
                unauthenticated,
                shutdown,
            ));
            Some(bound)
        }
        None => None,
    };
    let dialer = Arc::new(outbound::FederationDialer::new(federation.clone()));
    router.attach_remote(sender::MemorySender::new(
        dialer,
        settings.idle_timeout,
        settings.max_queue_stanzas,
    ));
    Ok(S2sAddresses {
        starttls,
        direct_tls,
        federation,
    })
}
