//! Herald push relay: accounts, devices, whitelist tokens, a ChatSecure-compatible HTTP API, a
//! durable outbox and delivery backends (APNs, FCM HTTP v1, Web Push, UnifiedPush, relay-to-relay).
//!
//! The relay knows no XMPP: the server hands it a [`LocalAccounts`] to check XMPP passwords, serves
//! [`Relay::router`], runs [`Relay::spawn_workers`], and calls [`Relay::wake_account`] when a message
//! for an offline user is stored or [`Relay::submit`] for an XEP-0357 publish. See relay/README.md.
//!
//! Module map: `config` (the `[relay]` section), `settings` (that section resolved: checked, key
//! files read), `accept` (token checks, limits, enqueue), `api/` (axum handlers), `outbox` (workers,
//! retries, failure classes), `backends/` (vendors), `login_throttle` (the process's one
//! failed-login throttle), `ratelimit`, `secrets`, `push_node` (the nodes and secrets the server's
//! XEP-0357 push service registers and wakes), `http_signature` (RFC 9421/9530 mechanics) and
//! `federation` (this relay's key, signing forwards, verifying peers' against pinned keys) and
//! `xmpp_forward` (forwarding over the hosting server's s2s streams, preferred to signed HTTP).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_storage::{Storage, StorageError};
use tokio::sync::Notify;

mod accept;
pub mod api;
pub mod backends;
mod batch;
pub mod config;
pub mod federation;
mod handoff;
pub mod http_signature;
pub mod login_throttle;
pub mod outbox;
pub mod push_node;
pub mod ratelimit;
pub mod secrets;
pub mod settings;
mod wake;
pub mod xmpp_forward;

pub use accept::{MAX_DATA_CHARS, MAX_TOKEN_CHARS};
pub use config::RelayConfig;
pub use push_node::{
    NodeError, NodeRegistration, Publisher, PushNode, RegistrationError, remote_domain_account,
};
pub use settings::RelaySettings;
pub use xmpp_forward::{XmppForward, XmppForwarding};

/// Everything the relay can refuse or fail with. Each maps to one HTTP status in the API.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The whitelist token is unknown, expired or revoked (HTTP 404).
    #[error("unknown, expired or revoked token")]
    UnknownToken,
    /// The token is bound to another sender (HTTP 403).
    #[error("sender not allowed for this token")]
    SenderNotAllowed,
    /// A rate limit was hit (HTTP 429 with Retry-After).
    #[error("rate limited, retry after {0:?}")]
    RateLimited(Duration),
    /// The request is malformed or a field is too long (HTTP 400).
    #[error("bad input: {0}")]
    BadInput(String),
    /// Forwarding to this remote relay is not allowed by `[relay.federation]` (HTTP 403).
    #[error("forwarding to that relay is not allowed")]
    ForwardNotAllowed,
    /// The relay cannot be built: an HTTP client failed to initialise. (Configuration problems are
    /// found earlier, by [`RelayConfig::resolve`].)
    #[error("relay configuration: {0}")]
    Config(String),
    /// The database failed (HTTP 500; the message is for logs only).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The server's local XMPP accounts as the relay sees them: every local account is a relay account
/// that logs in with its XMPP password. The relay knows no SCRAM; the server verifies.
#[async_trait]
pub trait LocalAccounts: Send + Sync {
    /// Looks up what checking a password for `username` needs (the awaited part, e.g. the stored SCRAM
    /// keys), so that the shared login throttle's reservation covers only the check itself and honest
    /// logins waiting on the database do not count as checks in flight. Errors: storage failures.
    async fn password_check(&self, username: &str) -> Result<Box<dyn PasswordCheck>, RelayError>;

    /// The name failed logins for `username` are counted under in the shared login throttle: the
    /// server's normalised account id, so `Alice@Example.org` and `alice@example.org` share one count
    /// with XMPP SASL. By default the name as given.
    fn throttle_key(&self, username: &str) -> String {
        username.to_owned()
    }
}

/// A prepared password check: no I/O, so it runs entirely inside a throttle reservation.
pub trait PasswordCheck: Send {
    /// `Some(account id)` (the bare JID, e.g. `alice@example.org`) when `password` is the account's
    /// password; `None` otherwise (unknown user or wrong password), after the same work either way.
    fn verify(&self, password: &str) -> Option<String>;
}

/// A [`PasswordCheck`] that no password passes.
pub struct NoAccount;

impl PasswordCheck for NoAccount {
    fn verify(&self, _: &str) -> Option<String> {
        None
    }
}

/// A [`LocalAccounts`] with no accounts, for a relay that serves no XMPP domain.
pub struct NoLocalAccounts;

#[async_trait]
impl LocalAccounts for NoLocalAccounts {
    async fn password_check(&self, _: &str) -> Result<Box<dyn PasswordCheck>, RelayError> {
        Ok(Box::new(NoAccount))
    }
}

/// How urgent a push is. `High` wakes the device now (APNs priority 10 alert, FCM HIGH, Web Push
/// urgency high); `Low` is power-aware. ChatSecure dropped low pushes; Herald sends both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    High,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Low => "low",
        }
    }

    /// `high` is high; anything else (ChatSecure: missing means low) is low.
    pub fn parse(s: &str) -> Priority {
        if s.eq_ignore_ascii_case("high") {
            Priority::High
        } else {
            Priority::Low
        }
    }
}

/// A push to deliver: a whitelist token (issued here, or by the relay at `endpoint`) and what to
/// wake its owner with.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The whitelist token secret.
    pub token: String,
    /// The messages endpoint of the relay that issued the token; `None` (or this relay's own
    /// endpoint) means a token of this relay. Another relay's endpoint forwards through the outbox.
    pub endpoint: Option<String>,
    pub priority: Priority,
    /// Opaque data for the app (ChatSecure `data`, at most 100 characters); `None` by default.
    pub data: Option<String>,
    /// The authenticated sender (an XMPP server domain or a JID), checked against the token binding.
    pub sender: Option<String>,
    /// Where the request came from (client address), for rate limits and the audit trail when there
    /// is no authenticated sender.
    pub origin: Option<String>,
}

/// What [`Relay::submit`] accepted: the message id to query its delivery status with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub message_id: String,
    /// Deliveries queued (devices, or 1 for a forward).
    pub deliveries: usize,
    /// Of those, how many joined a pending push for the same device.
    pub collapsed: usize,
}

/// The push relay. Cheap to clone; every clone shares state.
#[derive(Clone)]
pub struct Relay {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) storage: Storage,
    pub(crate) config: RelayConfig,
    pub(crate) local: Arc<dyn LocalAccounts>,
    pub(crate) limits: ratelimit::RateLimiters,
    /// See `api/accounts.rs`: the argon2 hash missing relay-only names are checked against.
    pub(crate) unknown_account_hash: tokio::sync::OnceCell<String>,
    /// `config.trusted_proxies`, parsed.
    pub(crate) trusted_proxies: Vec<api::client_addr::AddressBlock>,
    /// Failed password checks, shared with the hosting server's SASL (see `login_throttle.rs`).
    pub(crate) login_throttle: login_throttle::LoginThrottle,
    /// Signalled when work is queued, so idle workers wake at once.
    pub(crate) queued: Notify,
    pub(crate) backends: backends::Backends,
    /// Wake-ups the wake-up path claimed itself, on their way to the senders (see `handoff.rs`).
    pub(crate) handoff: handoff::Handoff,
    /// Wake-ups waiting to be written together (see `wake.rs`).
    pub(crate) wakes: Arc<batch::Batcher<String, wake::WakeResult>>,
    /// Sent deliveries waiting to be marked together (see `outbox.rs`).
    pub(crate) sent: Arc<batch::Batcher<i64, Result<(), String>>>,
    /// Checks peer relays' signed forwards (`federation.peer_keys`).
    pub(crate) federation: federation::Verifier,
    /// The hosting server's s2s transport for forwards, once it supplied one.
    pub(crate) xmpp: std::sync::OnceLock<Arc<dyn XmppForwarding>>,
    /// Whether the hosting server serves the push service at `pubsub_jid`, where peers' forwards
    /// over XMPP arrive.
    pub(crate) xmpp_service: std::sync::atomic::AtomicBool,
    /// Held while a remote domain's node is counted against the caps and written (`push_node.rs`).
    pub(crate) remote_node_changes: tokio::sync::Mutex<()>,
    /// Which peers forward over XMPP, remembered (`xmpp_forward.rs`).
    pub(crate) peer_routes: xmpp_forward::PeerRoutes,
}

impl Relay {
    /// Builds the relay from resolved settings (see [`RelayConfig::resolve`]: the key files were read
    /// and checked there) and builds the vendor clients. Errors: [`RelayError::Config`] only when an
    /// HTTP client cannot be built (see [`backends::Backends::new`]); nothing in the settings can be
    /// refused here.
    pub fn new(
        storage: Storage,
        settings: RelaySettings,
        local_accounts: Arc<dyn LocalAccounts>,
    ) -> Result<Relay, RelayError> {
        let backends = backends::Backends::new(&settings)?;
        Ok(Relay::with_backends(
            storage,
            settings,
            local_accounts,
            backends,
        ))
    }

    /// Like [`Relay::new`] with explicit backends (tests and embedders with their own clients).
    pub fn with_backends(
        storage: Storage,
        settings: RelaySettings,
        local_accounts: Arc<dyn LocalAccounts>,
        backends: backends::Backends,
    ) -> Relay {
        let trusted_proxies = settings.trusted_proxies.clone();
        let federation = federation::Verifier::new(
            settings.peer_keys.clone(),
            settings.config().federation.signature_lifetime_secs,
            federation::MAX_REPLAY_NONCES,
        );
        Relay {
            inner: Arc::new(Inner {
                unknown_account_hash: tokio::sync::OnceCell::new(),
                trusted_proxies,
                storage,
                config: settings.config().clone(),
                local: local_accounts,
                limits: ratelimit::RateLimiters::default(),
                login_throttle: login_throttle::LoginThrottle::default(),
                queued: Notify::new(),
                backends,
                handoff: handoff::Handoff::new(),
                wakes: Arc::new(batch::Batcher::new(wake::MAX_WAKE_BATCH)),
                sent: Arc::new(batch::Batcher::new(outbox::MAX_SENT_BATCH)),
                federation,
                xmpp: std::sync::OnceLock::new(),
                xmpp_service: std::sync::atomic::AtomicBool::new(false),
                peer_routes: xmpp_forward::PeerRoutes::default(),
                remote_node_changes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &RelayConfig {
        &self.inner.config
    }

    /// The failed-login throttle of this relay. A server hosting the relay uses this same throttle for its
    /// own password checks, so failures on either path count against both (one throttle per process).
    pub fn login_throttle(&self) -> login_throttle::LoginThrottle {
        self.inner.login_throttle.clone()
    }

    /// The HTTP API (see relay/openapi.json). The caller binds and serves it, with TLS if it likes;
    /// serve it with `into_make_service_with_connect_info::<SocketAddr>()` so per-address limits see
    /// the client address.
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// Starts the outbox workers: pending deliveries left by a previous run are picked up first.
    /// They stop when `shutdown` is cancelled; the handle finishes once in-flight sends are done.
    pub fn spawn_workers(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(outbox::run(self.clone(), shutdown))
    }

    /// Accepts a notification: checks the token (expiry, revocation, sender binding), the rate
    /// limits, and persists the deliveries before returning. Errors: [`RelayError::UnknownToken`],
    /// [`RelayError::SenderNotAllowed`], [`RelayError::RateLimited`], [`RelayError::BadInput`],
    /// [`RelayError::ForwardNotAllowed`], [`RelayError::Storage`].
    pub async fn submit(&self, notification: Notification) -> Result<Ticket, RelayError> {
        accept::submit(self, notification).await
    }

    /// Wakes every active device of a local account (no sender, no text): the server calls this when
    /// it stores a message for an offline user. Returns how many deliveries were queued (0 when the
    /// account has no devices).
    pub async fn wake_account(&self, account_id: &str) -> Result<usize, RelayError> {
        wake::wake_account(self, account_id).await
    }

    /// Supplies the hosting server's XMPP transport for forwards (see `xmpp_forward.rs`). Only the
    /// first call counts; without `[relay.federation] xmpp` it is not used.
    pub fn set_xmpp_forwarding(&self, transport: Arc<dyn XmppForwarding>) {
        if self.inner.xmpp.set(transport).is_err() {
            tracing::warn!("the relay's XMPP forwarding transport was already set");
        }
    }

    /// Tells the relay that the hosting server serves its push service at `pubsub_jid`, where
    /// peers' forwards over XMPP arrive ([`Relay::accept_xmpp_forward`]).
    pub fn serve_xmpp_forwards(&self) {
        self.inner
            .xmpp_service
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this relay accepts forwards over XMPP (and says so in its key answer and its push
    /// service's disco#info): `[relay.federation] xmpp`, and the push service is served.
    pub fn accepts_xmpp_forwards(&self) -> bool {
        self.inner.config.federation.xmpp
            && !self.inner.config.pubsub_jid.is_empty()
            && self
                .inner
                .xmpp_service
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn xmpp_transport(&self) -> Option<&Arc<dyn XmppForwarding>> {
        self.inner
            .xmpp
            .get()
            .filter(|_| self.inner.config.federation.xmpp)
    }

    /// Accepts a forward that arrived over XMPP s2s from `sender_domain` (authenticated by the s2s
    /// layer): a per-domain budget, then the same checks as a signed HTTP forward, with that domain
    /// as the sender. Errors: as [`Relay::submit`]; [`RelayError::ForwardNotAllowed`] when
    /// `[relay.federation] xmpp` is off.
    pub async fn accept_xmpp_forward(
        &self,
        sender_domain: &str,
        token: String,
        priority: Priority,
        data: Option<String>,
    ) -> Result<Ticket, RelayError> {
        xmpp_forward::accept(self, sender_domain, token, priority, data).await
    }

    /// Asks a peer relay whether it is up (`GET <base>/api/v1/health/`). `Ok(true)` when it answers
    /// 2xx with `{"status":"ok"}`.
    pub async fn check_peer(&self, base_url: &str) -> Result<bool, RelayError> {
        self.inner.backends.forward.check_health(base_url).await
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("listen", &self.inner.config.listen)
            .finish()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
