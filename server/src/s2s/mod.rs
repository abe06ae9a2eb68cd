//! Server-to-server federation (RFC 6120; XEP-0178 SASL EXTERNAL, XEP-0220 Server Dialback with
//! XEP-0185 keys, XEP-0368 direct TLS).
//!
//! - [`Federation`]: what every s2s stream shares (settings, trust, our certificates, the dialback
//!   secret, the TLS acceptors that ask peers for certificates).
//! - `inbound.rs`: the listeners and the receiving side: TLS, EXTERNAL or dialback, db:verify answered,
//!   stanzas checked against the authenticated domains and handed to the router.
//! - `outbound.rs`: the [`Dialer`] the queue uses: the peer's addresses from [`PeerResolver`], TCP,
//!   TLS with our certificate, EXTERNAL or dialback; also the receiving server's db:verify connection.
//! - `trust.rs`: which certificates validate for a domain; `dialback.rs`: keys and elements.
//! - `resolve.rs`: where a peer is (static address, XEP-0368 and RFC 6120 section 3.2 SRV, A/AAAA);
//!   `retry.rs`: the backoff between attempts.
//! - `queue.rs`: the durable per-domain [`OutboundQueue`] and the [`Dialer`]/[`Link`]/[`BounceSink`]
//!   interface it reaches the streams and the router through; `delivery.rs`: the router's side of it.

pub mod delivery;
pub mod dialback;
pub mod inbound;
pub mod outbound;
pub mod queue;
pub mod resolve;
pub mod retry;
pub mod trust;

pub use queue::{
    BounceSink, DialError, Dialer, Link, LinkError, OutboundQueue, QueueSettings, SubmitError,
};
pub use resolve::{PeerResolver, ResolveError, ResolverSettings, StaticPeer};
pub use retry::RetryPolicy;

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
use herald_storage::S2sQueueLimits;
use resolve::ResolverSetupError;
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
    /// Where peers are: static `[[s2s.peers]] address`es, else DNS (`[s2s] nameserver` or the system's).
    pub resolver: PeerResolver,
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
    /// Errors: unreadable trust anchors or pinned certificates, a TLS setup rustls refuses, no
    /// `nameserver` configured and the system's DNS configuration unreadable.
    pub fn new(
        config: &Config,
        tls: &TlsIdentity,
    ) -> Result<Option<Arc<Federation>>, FederationSetupError> {
        let Some(settings) = config.s2s.clone() else {
            return Ok(None);
        };
        let trust = PeerTrust::load(&settings)?;
        let resolver = PeerResolver::new(&resolver_settings(&settings))?;
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
            resolver,
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

/// Why federation could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FederationSetupError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("s2s resolver: {0}")]
    Resolver(#[from] ResolverSetupError),
}

/// What the resolver is told by `[s2s]`: the nameserver, and the peers with a static address.
pub fn resolver_settings(settings: &S2sSettings) -> ResolverSettings {
    ResolverSettings {
        nameserver: settings.nameserver,
        static_peers: settings
            .peers
            .iter()
            .filter_map(|peer| {
                let address = peer.address?;
                let direct_tls = peer.direct_tls;
                Some((
                    peer.domain.clone(),
                    StaticPeer {
                        address,
                        direct_tls,
                    },
                ))
            })
            .collect(),
    }
}

/// What the outbound queue is told by `[s2s]`.
pub fn queue_settings(settings: &S2sSettings) -> QueueSettings {
    let limits = S2sQueueLimits {
        max_stanzas: settings.max_queue_stanzas,
        max_bytes: settings.max_queue_bytes,
    };
    QueueSettings::new(settings.queue_timeout, settings.idle_timeout, limits)
}

/// Where the s2s listeners listen, and the federation state they share.
#[derive(Debug, Clone)]
pub struct S2sAddresses {
    pub starttls: SocketAddr,
    pub direct_tls: Option<SocketAddr>,
    pub federation: Arc<Federation>,
    /// The outbound queue behind the router's remote route.
    pub queue: OutboundQueue,
}

/// Binds the s2s listeners, spawns them into `tasks`, attaches the outbound queue to `router` and
/// resumes what the queue held at the last stop. At shutdown `tasks` also waits for the queue's
/// streams to close.
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
                shutdown.clone(),
            ));
            Some(bound)
        }
        None => None,
    };
    let queue = OutboundQueue::new(
        router.context.storage.s2s_queue.clone(),
        Arc::new(outbound::FederationDialer::new(federation.clone())),
        Arc::new(delivery::RouterBounces::new(router)),
        queue_settings(settings),
        shutdown.clone(),
    );
    router.attach_remote(Arc::new(delivery::QueueDelivery::new(queue.clone())));
    if let Err(error) = queue.resume().await {
        tracing::error!(%error, "s2s queue: stanzas waiting since the last stop not resumed");
    }
    tasks.spawn({
        let queue = queue.clone();
        let mut shutdown = shutdown;
        async move {
            shutdown.wait().await;
            queue.stopped().await;
        }
    });
    Ok(S2sAddresses {
        starttls,
        direct_tls,
        federation,
        queue,
    })
}
