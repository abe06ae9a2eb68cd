//! Herald: an XMPP server with a built-in push relay.
//!
//! A stanza's journey: `net` accepts a socket and wraps TLS; `c2s::negotiation` runs STARTTLS, SASL and
//! binding over `xmpp::stream::XmlStream` (bytes to elements, RFC 6120 section 11 restrictions); the
//! `c2s::session` task stamps `from` and hands each stanza to `features`, which answer what is addressed
//! to the user's own account and pass the rest to `router::Router::route`. The router looks the domain up
//! in its route table (`router::routes`): for local users it applies the RFC 6121 section 8 rules
//! (`router::rules`, a pure function) and delivers to a session's mailbox, or hands the server's own work
//! (IQs, subscriptions, offline storage) to `router::LocalHandling`, which `features` implements; other
//! domains go to a component (`component`), an in-process service, or bounce as remote. Every delivery
//! emits a typed event (`router::events`) to a closed set of subscribers; push is the first, waking the
//! devices of users whose messages were stored offline. Configuration, storage, caches and throttles are
//! the `context::ServerContext`; storage is `herald_storage`, behind small traits.

pub mod accounts;
pub mod c2s;
pub mod component;
pub mod config;
pub mod context;
pub mod features;
#[doc(hidden)]
pub mod fuzzing;
pub mod net;
pub mod relay_host;
pub mod router;
pub mod s2s;
pub mod xmpp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use config::Config;
use features::push::PushWaker;
use herald_storage::Storage;
pub use net::shutdown::{Shutdown, ShutdownTrigger};
use router::Router;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("TLS: {0}")]
    Tls(#[from] net::tls::TlsSetupError),
    #[error("relay: {0}")]
    Relay(#[from] herald_relay::RelayError),
    #[error("federation: {0}")]
    Federation(#[from] s2s::FederationSetupError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A started server: where it listens, its router (for tests and the CLI), and its tasks.
pub struct Running {
    pub c2s_address: SocketAddr,
    pub direct_tls_address: Option<SocketAddr>,
    pub component_address: Option<SocketAddr>,
    /// The s2s listeners, when `[s2s]` is configured.
    pub s2s: Option<s2s::S2sAddresses>,
    /// The relay's HTTP API, when `[relay] enabled`.
    pub relay_address: Option<SocketAddr>,
    /// The hosted relay, when enabled.
    pub relay: Option<herald_relay::Relay>,
    pub router: Arc<Router>,
    /// The XEP-0357 publisher (for tests: which sessions it knows to be hibernating).
    pub push_notifications: Arc<features::push_notifications::PushNotifications>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Waits until every listener stopped (after shutdown was triggered).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// How long after start the users with messages waiting and push enabled are woken
/// (`PushNotifications::wake_accounts_with_waiting_messages`): time for external components, such as a
/// XEP-0357 app server, to connect again after a restart.
pub const WAKE_AT_START_DELAY: std::time::Duration = std::time::Duration::from_secs(3);

/// Binds every listener and starts serving; returns once listening. Ports may be 0 (tests read the bound
/// addresses from [`Running`]). With `[relay] enabled` the push relay is hosted too (API listener, outbox
/// workers) and wakes devices when messages are stored offline; otherwise `push`, if given, does.
pub async fn start(
    config: Config,
    storage: Storage,
    push: Option<Arc<dyn PushWaker>>,
    shutdown: Shutdown,
) -> Result<Running, StartError> {
    let tls = net::tls::TlsIdentity::load(&config)?;
    let config = Arc::new(config);
    let mut tasks = JoinSet::new();

    let (relay, relay_address) = if let Some(settings) = &config.relay {
        let default_domain = config.domains.first().cloned().unwrap_or_default();
        let relay = herald_relay::Relay::new(
            storage.clone(),
            settings.clone(),
            accounts::relay_login(&storage, &default_domain),
        )?;
        let address = settings.listen();
        let listener = bind(address).await?;
        let bound = local_address(&listener, address);
        let api_tls = settings.config().tls.then(|| tls.clone());
        tasks.spawn(relay_host::serve_api(
            relay.clone(),
            listener,
            api_tls,
            shutdown.clone(),
        ));
        tasks.spawn(relay_host::run_workers(relay.clone(), shutdown.clone()));
        (Some(relay), Some(bound))
    } else {
        (None, None)
    };
    let push = match &relay {
        Some(relay) => Some(Arc::new(relay.clone()) as Arc<dyn PushWaker>),
        None => push,
    };
    let login_throttle = relay
        .as_ref()
        .map(herald_relay::Relay::login_throttle)
        .unwrap_or_default();
    let context = Arc::new(context::ServerContext::new(
        config.clone(),
        storage,
        login_throttle,
    ));
    // The closed set of delivery-event subscribers (router::events): push wakes devices on messages
    // stored offline; carbons copy messages to the user's other resources (XEP-0280).
    let push = push.map(|waker| {
        Arc::new(features::push::OfflineWaker::new(waker)) as Arc<dyn router::events::WakeUps>
    });
    // XEP-0357: publishes to the app servers users enabled, through the router it subscribes to.
    let push_notifications =
        features::push_notifications::PushNotifications::new(config.push_notifications.clone());
    // The archive (XEP-0313) archives outgoing messages on SentByClient and stamps incoming ones
    // before delivery.
    // With `[archive] enabled = false` nothing subscribes: no appends, no stanza ids.
    let mut subscribers = router::events::Subscribers::new(push);
    if config.archive_enabled {
        subscribers = subscribers.with_archive(Arc::new(features::archive::MessageArchiver::new(
            context.clone(),
        )));
    }
    let router = Router::new(
        context,
        Arc::new(features::Features),
        subscribers
            .with_carbons(Arc::new(features::carbons::Carbons))
            .with_push_notifications(push_notifications.clone()),
    );
    push_notifications.attach(&router);
    if let Err(error) = push_notifications
        .load_accounts(&router.context.storage)
        .await
    {
        tracing::warn!(%error, "push registrations will be read per account");
    }
    // Owners with archiving preferences are few: read once, so no delivery reads them (XEP-0441).
    if let Err(error) = router
        .context
        .archive_prefs
        .load_owners(&router.context.storage)
        .await
    {
        tracing::warn!(%error, "archive preferences will be read per owner");
    }
    // Messages stored for hibernated sessions may have been acknowledged just before a crash, with
    // their push not yet out: wake those users once components had a moment to connect again.
    tasks.spawn({
        let router = router.clone();
        let push_notifications = push_notifications.clone();
        let mut shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = shutdown.wait() => {}
                () = async {
                    tokio::time::sleep(WAKE_AT_START_DELAY).await;
                    push_notifications
                        .wake_accounts_with_waiting_messages(&router)
                        .await;
                } => {}
            }
        }
    });
    // At shutdown the archive rows still queued behind delivery are committed before `wait` returns.
    tasks.spawn({
        let context = router.context.clone();
        let mut shutdown = shutdown.clone();
        async move {
            shutdown.wait().await;
            context.archive.close().await;
        }
    });
    if let Some(retention) = config.archive_retention {
        // Hourly: a message lives at most an hour past its retention; each purge is in bounded batches.
        tasks.spawn(features::archive::run_retention(
            router.context.storage.clone(),
            retention,
            std::time::Duration::from_secs(3600),
            shutdown.clone(),
        ));
    }
    // The hosted relay answers as an XEP-0357 push service on `[relay] pubsub_jid` (checked by
    // `Config::resolve`: a free domain), so local apps register with it and servers publish to it.
    if let Some(relay) = relay.as_ref().filter(|r| !r.config().pubsub_jid.is_empty()) {
        let domain = relay.config().pubsub_jid.as_str();
        let service = features::app_server::AppServer::new(relay.clone(), domain);
        router.attach_service(domain, Arc::new(service));
        relay.serve_xmpp_forwards();
    }

    // With federation, the relay forwards to peer relays over s2s from its federation domain when
    // that is a domain this server hosts (so the peer's s2s layer authenticates it), and accepts
    // forwards at its push service (`features/relay_forward.rs`).
    if let Some(relay) = &relay
        && let Some(from) = relay_forward_domain(&config, relay.config())
    {
        let timeout = std::time::Duration::from_millis(relay.config().request_timeout_ms);
        relay.set_xmpp_forwarding(Arc::new(features::relay_forward::S2sForwarding::new(
            &router, &from, timeout,
        )));
    }

    // One count of unauthenticated connections for both client listeners (RFC 6120 section 13.12).
    let unauthenticated = net::unauthenticated::UnauthenticatedSlots::new(
        config.max_unauthenticated,
        config.max_unauthenticated_per_address,
    );
    let c2s = bind(config.c2s_listen).await?;
    let c2s_address = local_address(&c2s, config.c2s_listen);
    tasks.spawn(net::serve_c2s(
        c2s,
        router.clone(),
        tls.clone(),
        false,
        unauthenticated.clone(),
        shutdown.clone(),
    ));

    let direct_tls_address = match config.direct_tls_listen {
        Some(address) => {
            let listener = bind(address).await?;
            let bound = local_address(&listener, address);
            tasks.spawn(net::serve_c2s(
                listener,
                router.clone(),
                tls.clone(),
                true,
                unauthenticated.clone(),
                shutdown.clone(),
            ));
            Some(bound)
        }
        None => None,
    };
    let component_address = match config.component_listen {
        Some(address) => {
            let listener = bind(address).await?;
            let bound = local_address(&listener, address);
            tasks.spawn(component::serve(
                listener,
                router.clone(),
                unauthenticated.clone(),
                shutdown.clone(),
            ));
            Some(bound)
        }
        None => None,
    };
    // Federation (`[s2s]`): the inbound listeners, and the outbound sender behind Route::Remote.
    let s2s = match s2s::Federation::new(&config, &tls)? {
        Some(federation) => Some(
            s2s::start(
                federation,
                &router,
                unauthenticated.clone(),
                shutdown.clone(),
                &mut tasks,
            )
            .await
            .map_err(|(address, source)| StartError::Listen { address, source })?,
        ),
        None => None,
    };
    tracing::info!(
        domains = ?config.domains,
        s2s = ?s2s,
        c2s = %c2s_address,
        direct_tls = ?direct_tls_address,
        relay = ?relay_address,
        storage = router.context.storage.backend,
        "herald is serving"
    );
    Ok(Running {
        c2s_address,
        direct_tls_address,
        component_address,
        s2s,
        relay_address,
        relay,
        router,
        push_notifications,
        tasks,
    })
}

/// The domain the hosted relay forwards from over s2s: its federation domain, when `[s2s]` is
/// configured, `[relay.federation] xmpp` is on and that domain is one of ours (a user domain or the
/// push service's); `None` otherwise (forwards go over signed HTTP only).
fn relay_forward_domain(config: &Config, relay: &herald_relay::RelayConfig) -> Option<String> {
    let domain = relay.federation_domain();
    let ours = config
        .domains
        .iter()
        .any(|d| d.eq_ignore_ascii_case(&domain))
        || relay.pubsub_jid.eq_ignore_ascii_case(&domain);
    if config.s2s.is_none() || !relay.federation.xmpp {
        return None;
    }
    if !ours {
        tracing::info!(
            %domain,
            "relay forwards go over HTTP only: federation.domain is not one of this server's domains"
        );
        return None;
    }
    Some(domain)
}

/// Starts the server and runs it until `shutdown` fires.
pub async fn run(
    config: Config,
    storage: Storage,
    push: Option<Arc<dyn PushWaker>>,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    start(config, storage, push, shutdown).await?.wait().await;
    Ok(())
}

async fn bind(address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen { address, source })
}

fn local_address(listener: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}
