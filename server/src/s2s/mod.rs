//! Server-to-server federation (RFC 6120; XEP-0178 SASL EXTERNAL, XEP-0220 Server Dialback with
//! XEP-0185 keys, XEP-0368 direct TLS).
//!
//! - [`Federation`]: what every s2s stream shares (settings, trust, our certificates, the dialback
//!   secret, the TLS acceptors that ask peers for certificates).
//! - `inbound.rs`: the listeners and the receiving side: TLS, EXTERNAL or dialback, db:verify answered,
//!   stanzas checked against the authenticated domains and handed to the router.
//! - `outbound.rs`: the [`Dialer`] the queue uses: resolution, TCP, TLS with our certificate, EXTERNAL
//!   or dialback; also the receiving server's db:verify connection.
//! - `trust.rs`: which certificates validate for a domain; `dialback.rs`: keys and elements.
//! - `resolve.rs` finds peers (SRV, XEP-0368, A/AAAA, static addresses), `retry.rs` is the backoff
//!   between attempts, and `queue.rs` the durable per-domain outbound queue, which reaches the streams
//!   only through its [`Dialer`], [`Link`] and [`BounceSink`] traits. Router's `Route::Remote` submits
//!   to it ([`QueueRoute`]); its bounces go back through the router ([`RouterBounces`]).

pub mod connections;
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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use async_trait::async_trait;
use herald_storage::S2sQueueLimits;

use crate::config::{Config, S2sSettings};
use crate::net::shutdown::Shutdown;
use crate::net::tls::{ALPN_XMPP_SERVER, TlsIdentity, TlsSetupError};
use crate::net::unauthenticated::UnauthenticatedSlots;
use crate::router::Router;
use crate::router::routes::RemoteDelivery;
use crate::xmpp::{DefinedCondition, Envelope, Limits, WireStanza, ns};
use connections::PeerConnections;
use dialback::DialbackSecret;
use trust::{AnyPeerCertificate, PeerTrust};

/// What every s2s stream of this server shares. Which domains are ours to serve is the router's to
/// say ([`Router::serves_domain`]: our domains, attached components, the in-process services such
/// as the push service), for inbound streams, db:verify and the local side of outbound streams alike.
pub struct Federation {
    pub settings: S2sSettings,
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
    /// Where peers are found (`[s2s] nameserver`, static `address`es).
    pub resolver: PeerResolver,
    /// The inbound connections counted against `[s2s] max_connections*`.
    pub connections: Arc<PeerConnections>,
    /// The outbound TLS client configurations, built once per (local domain, direct TLS) and
    /// shared by every dial after (they also carry rustls's session cache, so redials resume).
    pub outbound_tls: OutboundTlsConfigs,
}

/// See [`Federation::outbound_tls`].
#[derive(Default)]
pub struct OutboundTlsConfigs(std::sync::Mutex<HashMap<(String, bool), Arc<rustls::ClientConfig>>>);

impl OutboundTlsConfigs {
    /// The client configuration for outbound streams from `local` (ALPN `xmpp-server` when `direct`,
    /// XEP-0368 section 3), built on first use.
    ///
    /// Errors: as [`trust::outbound_config`].
    pub fn get(
        &self,
        tls: &TlsIdentity,
        local: &str,
        direct: bool,
    ) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
        let key = (local.to_ascii_lowercase(), direct);
        let mut configs = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(config) = configs.get(&key) {
            return Ok(config.clone());
        }
        let alpn = if direct {
            vec![ALPN_XMPP_SERVER.to_vec()]
        } else {
            Vec::new()
        };
        let config = Arc::new(trust::outbound_config(tls.certified_key(local), alpn)?);
        configs.insert(key, config.clone());
        Ok(config)
    }
}

/// Why federation could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum FederationSetupError {
    #[error("{0}")]
    Tls(#[from] TlsSetupError),
    #[error("DNS resolver: {0}")]
    Resolver(#[from] resolve::ResolverSetupError),
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
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// Builds the shared state from the configuration (`None` when `[s2s]` is absent).
    ///
    /// Errors: unreadable trust anchors or pinned certificates, a TLS setup rustls refuses, a resolver
    /// configuration that cannot be read.
    pub fn new(
        config: &Config,
        tls: &TlsIdentity,
    ) -> Result<Option<Arc<Federation>>, FederationSetupError> {
        let Some(settings) = config.s2s.clone() else {
            return Ok(None);
        };
        let trust = PeerTrust::load(&settings)?;
        let resolver = PeerResolver::new(&ResolverSettings {
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
        })?;
        let starttls_acceptor =
            tls.acceptor_with_client_auth(AnyPeerCertificate::new(), Vec::new())?;
        let direct_acceptor = tls.acceptor_with_client_auth(
            AnyPeerCertificate::new(),
            vec![ALPN_XMPP_SERVER.to_vec()],
        )?;
        Ok(Some(Arc::new(Federation {
            tls: tls.clone(),
            trust,
            secret: DialbackSecret::generate(),
            starttls_acceptor,
            direct_acceptor,
            limits: config.stream_limits(),
            auth_timeout: config.auth_timeout,
            write_timeout: config.write_timeout,
            authentications: AuthenticationCounts::default(),
            resolver,
            connections: PeerConnections::new(&settings),
            settings,
            outbound_tls: OutboundTlsConfigs::default(),
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
    let shutdown_for_queue = shutdown.clone();
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
    let limits = S2sQueueLimits {
        max_stanzas: settings.max_queue_stanzas,
        max_bytes: settings.max_queue_bytes,
    };
    let queue = OutboundQueue::new(
        router.context.storage.s2s_queue.clone(),
        dialer,
        Arc::new(RouterBounces(Arc::downgrade(router))),
        QueueSettings::new(settings.queue_timeout, settings.idle_timeout, limits),
        shutdown_for_queue.clone(),
    );
    // A restart loses nothing queued: every domain with stanzas waiting gets its task again.
    if let Err(error) = queue.resume().await {
        tracing::warn!(%error, "s2s queue: the domains with stanzas waiting could not be read");
    }
    // At shutdown the server's tasks end only once the queue's streams are closed, so a restart on the
    // same storage does not overlap with the old queue.
    tasks.spawn({
        let queue = queue.clone();
        let mut shutdown = shutdown_for_queue;
        async move {
            shutdown.wait().await;
            queue.stopped().await;
        }
    });
    router.attach_remote(Arc::new(QueueRoute { queue }));
    Ok(S2sAddresses {
        starttls,
        direct_tls,
        federation,
    })
}

/// Router's `Route::Remote` when federation is on: the stanza is serialised for a `jabber:server` stream
/// and queued for its domain (RFC 6120 section 10.4.3).
struct QueueRoute {
    queue: OutboundQueue,
}

#[async_trait]
impl RemoteDelivery for QueueRoute {
    async fn submit(&self, envelope: &Envelope) -> Result<(), DefinedCondition> {
        let (Some(from), Some(to)) = (&envelope.from, &envelope.to) else {
            return Err(DefinedCondition::BadRequest);
        };
        let stanza = WireStanza::for_stream(&envelope.element, ns::SERVER);
        self.queue
            .submit(
                from.domain().as_str(),
                to.domain().as_str(),
                &from.to_string(),
                stanza.as_str(),
            )
            .await
            .map_err(|error| {
                tracing::warn!(%error, "s2s queue refused a stanza");
                error.condition()
            })
    }
}

/// The queue's bounces, answered to their senders through the router (never for an error stanza,
/// RFC 6120 section 8.3.1: `Router::bounce` makes no reply to one). Weak: the router owns the queue.
struct RouterBounces(std::sync::Weak<Router>);

impl BounceSink for RouterBounces {
    fn bounce(&self, stanza: &str, condition: DefinedCondition) {
        let Some(router) = self.0.upgrade() else {
            return;
        };
        let Some(element) = crate::xmpp::packed::parse_on_stream(stanza, ns::SERVER) else {
            tracing::warn!("s2s queue: a queued stanza does not parse; not bounced");
            return;
        };
        let element = crate::xmpp::renamespace(element, ns::SERVER, ns::CLIENT);
        if let Ok(envelope) = Envelope::parse(element) {
            router.bounce(&envelope, condition);
        }
    }
}
