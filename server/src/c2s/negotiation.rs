//! Client stream negotiation (RFC 6120 sections 4 to 7): stream header, STARTTLS, SASL, resource binding,
//! or, in place of binding, XEP-0198 resumption (section 5): the connection is handed to the hibernated
//! session it resumes.
//!
//! Runs over any `AsyncRead + AsyncWrite` so it is tested over `tokio::io::duplex`. Everything before binding
//! shares one deadline (`auth_timeout`): a stream that never authenticates gets `<connection-timeout/>`.
//! Stanzas before authentication get `<not-authorized/>` (RFC 6120 section 4.9.3.12 / ejabberd's negative tests),
//! except XEP-0077 registration once the stream is secure.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use herald_relay::login_throttle::{Attempt, Refused};

use super::sasl::{ChannelBindings, Mechanism, SaslExchange, SaslFailure, Step};
use super::stream::ClientStream;
use super::stream_features::{Offer, StreamFeatures};
use crate::features::iq::IqAnswer;
use crate::features::stream_management::{self as sm, SmNonza};
use crate::net::channel_binding;
use crate::net::tls::TlsIdentity;
use crate::net::transport::Transport;
use crate::net::unauthenticated::UnauthenticatedSlot;
use crate::router::{Resumption, Router, SessionCommand, SessionHandle};
use crate::xmpp::error::{StreamError, StreamErrorCondition};
use crate::xmpp::ns;
use crate::xmpp::stream::{Frame, StreamHeader, XmlStream};
use crate::xmpp::{BareJid, Element, FullJid, set_attribute};

/// A stream that finished negotiation: authenticated, bound, registered with the router. What
/// [`Session::new`](super::session::Session::new) takes over.
pub struct Bound {
    /// The client's connection, whatever its kind.
    pub stream: Box<dyn ClientStream>,
    pub jid: FullJid,
    pub handle: SessionHandle,
    pub commands: crate::router::mailbox::Mailbox<SessionCommand>,
}

enum Stage {
    /// Before TLS.
    Plain,
    /// TLS is up (or not required): SASL and registration are possible.
    Secured,
    /// SASL succeeded: resource binding.
    Authenticated(BareJid),
}

/// Why negotiation stopped without a bound session.
enum Stop {
    /// Send this stream error and close.
    Error(StreamErrorCondition, Option<String>),
    /// The peer closed or the socket failed: nothing more to send.
    Gone,
}

impl From<StreamError> for Stop {
    fn from(e: StreamError) -> Stop {
        match e.condition() {
            Some(condition) => Stop::Error(condition, None),
            None => Stop::Gone,
        }
    }
}

impl From<std::io::Error> for Stop {
    fn from(_: std::io::Error) -> Stop {
        Stop::Gone
    }
}

type Step_<T> = Result<T, Stop>;

/// Negotiates a client stream. Returns `None` when the stream ended (after sending any stream error due).
pub async fn negotiate<S>(
    router: &Arc<Router>,
    tls: &TlsIdentity,
    features: &StreamFeatures,
    transport: Transport<S>,
    peer: IpAddr,
    unauthenticated: UnauthenticatedSlot,
) -> Option<Bound>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut negotiation = Negotiation {
        router,
        tls,
        features,
        peer,
        deadline: Instant::now() + router.context.config.auth_timeout,
        domain: None,
        unauthenticated: Some(unauthenticated),
    };
    // RFC 6120 section 13.12: much smaller limits until the peer has authenticated.
    let stream = XmlStream::new(
        transport,
        router.context.config.stream_limits().before_auth(),
    );
    let (stream, outcome) = negotiation.run(stream).await;
    let mut stream = stream?;
    match outcome {
        Ok(Some(Negotiated::Bound((jid, handle, commands)))) => Some(Bound {
            stream: Box::new(stream),
            jid,
            handle,
            commands,
        }),
        Ok(Some(Negotiated::Resume { handle, h })) => {
            // XEP-0198 section 5: the session answers `<resumed/>` and carries on over this connection.
            let resumption = Box::new(Resumption {
                stream: Box::new(stream),
                h,
            });
            if let Err(mut resumption) = handle.resume(resumption) {
                // It ended between the lookup and now.
                let _ = resumption
                    .stream
                    .write_element(&sm::failed("item-not-found", None))
                    .await;
                let _ = resumption.stream.close().await;
            }
            None
        }
        Ok(None) => None,
        Err(Stop::Error(condition, text)) => {
            let _ = stream
                .send_error(&StreamError::Condition { condition, text })
                .await;
            None
        }
        Err(Stop::Gone) => None,
    }
}

struct Negotiation<'a> {
    router: &'a Arc<Router>,
    tls: &'a TlsIdentity,
    features: &'a StreamFeatures,
    peer: IpAddr,
    deadline: Instant,
    /// The domain named in the first stream header; restarts must name the same one.
    domain: Option<String>,
    /// Counts this connection as unauthenticated until SASL succeeds.
    unauthenticated: Option<UnauthenticatedSlot>,
}

type Binding = (
    FullJid,
    SessionHandle,
    crate::router::mailbox::Mailbox<SessionCommand>,
);

/// How an authenticated stream goes on.
enum Negotiated {
    /// A resource was bound: a new session.
    Bound(Binding),
    /// The client resumes the hibernated session `handle`, having handled `h` of its stanzas
    /// (XEP-0198 section 5).
    Resume { handle: SessionHandle, h: u32 },
}

impl Negotiation<'_> {
    /// Drives the stages. Returns the stream (unless STARTTLS consumed it and failed) and the outcome.
    async fn run<S>(
        &mut self,
        mut stream: XmlStream<Transport<S>>,
    ) -> (Option<XmlStream<Transport<S>>>, Step_<Option<Negotiated>>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut stage = if stream.get_ref().is_tls() || !self.router.context.config.require_tls {
            Stage::Secured
        } else {
            Stage::Plain
        };
        loop {
            if let Err(stop) = self.open_stream(&mut stream, &stage).await {
                return (Some(stream), Err(stop));
            }
            stage = match stage {
                Stage::Plain => {
                    if let Err(stop) = self.await_starttls(&mut stream).await {
                        return (Some(stream), Err(stop));
                    }
                    match self.start_tls(stream).await {
                        Ok(secured) => stream = secured,
                        Err(stop) => return (None, Err(stop)),
                    }
                    Stage::Secured
                }
                Stage::Secured => match self.authenticate(&mut stream).await {
                    Ok(Some(account)) => {
                        // Authenticated: the full limits from the restarted stream's header on, and the
                        // slot among unauthenticated connections is free for the next peer.
                        stream.set_limits(self.router.context.config.stream_limits());
                        self.unauthenticated = None;
                        Stage::Authenticated(account)
                    }
                    Ok(None) => return (Some(stream), Ok(None)),
                    Err(stop) => return (Some(stream), Err(stop)),
                },
                Stage::Authenticated(account) => {
                    let outcome = self.bind(&mut stream, &account).await.map(Some);
                    return (Some(stream), outcome);
                }
            };
        }
    }

    async fn next<S>(&self, stream: &mut XmlStream<Transport<S>>) -> Step_<Element>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        match tokio::time::timeout_at(self.deadline, stream.next()).await {
            Err(_) => Err(Stop::Error(StreamErrorCondition::ConnectionTimeout, None)),
            Ok(Ok(Frame::Element(element))) => Ok(element),
            Ok(Ok(Frame::End)) => {
                let _ = stream.close().await;
                Err(Stop::Gone)
            }
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// Reads the client's stream header and answers with ours and the features of `stage` (RFC 6120 4.3).
    async fn open_stream<S>(
        &mut self,
        stream: &mut XmlStream<Transport<S>>,
        stage: &Stage,
    ) -> Step_<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let header = match tokio::time::timeout_at(self.deadline, stream.read_header()).await {
            Err(_) => return Err(Stop::Error(StreamErrorCondition::ConnectionTimeout, None)),
            Ok(result) => result?,
        };
        let domain = match header.to.as_deref() {
            Some(to) => to.to_ascii_lowercase(),
            None => self
                .router
                .context
                .config
                .domains
                .first()
                .cloned()
                .unwrap_or_default(),
        };
        // Answer with a header first, so that any stream error is well-formed (RFC 6120 section 4.9.1.2);
        // it is written together with the features or the error that follows.
        let reply = StreamHeader {
            to: None,
            from: Some(domain.clone()),
            id: Some(random_id()),
            version: Some("1.0".into()),
            lang: Some(header.lang.clone().unwrap_or_else(|| "en".into())),
            default_ns: ns::CLIENT.into(),
        };
        stream.queue_header(&reply);
        if header.default_ns != ns::CLIENT {
            return Err(Stop::Error(StreamErrorCondition::InvalidNamespace, None));
        }
        if !self.router.context.config.is_local_domain(&domain) {
            return Err(Stop::Error(StreamErrorCondition::HostUnknown, None));
        }
        if let Some(previous) = &self.domain
            && previous != &domain
        {
            return Err(Stop::Error(StreamErrorCondition::HostUnknown, None));
        }
        self.domain = Some(domain);
        // RFC 6120 section 4.7.5: without version 1.0 there are no stream features.
        let major = header
            .version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major != Some(1) {
            return Err(Stop::Error(StreamErrorCondition::UnsupportedVersion, None));
        }
        let offer = self.offer(stream, stage);
        stream.send_raw(self.features.text(offer)).await?;
        Ok(())
    }

    /// Which features to offer at `stage` on this connection.
    fn offer<S>(&self, stream: &XmlStream<Transport<S>>, stage: &Stage) -> Offer
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        match stage {
            Stage::Plain => Offer::Plain,
            Stage::Authenticated(_) => Offer::Authenticated,
            Stage::Secured => {
                let (tls_exporter, tls_server_end_point) = self.binding_kinds(stream);
                Offer::Secured {
                    is_tls: stream.get_ref().is_tls(),
                    tls_exporter,
                    tls_server_end_point,
                }
            }
        }
    }

    /// Which channel bindings this connection has: (`tls-exporter`, `tls-server-end-point`).
    fn binding_kinds<S>(&self, stream: &XmlStream<Transport<S>>) -> (bool, bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        match binding_connection(stream) {
            Some(connection) => (
                true,
                self.tls
                    .end_point_binding(connection.server_name())
                    .is_some(),
            ),
            None => (false, false),
        }
    }

    /// The channel-binding data a -PLUS exchange checks the client's against (see [`Self::binding_kinds`]).
    fn bindings<S>(&self, stream: &XmlStream<Transport<S>>) -> ChannelBindings
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        match binding_connection(stream) {
            Some(connection) => ChannelBindings {
                tls_exporter: channel_binding::tls_exporter(connection),
                tls_server_end_point: self
                    .tls
                    .end_point_binding(connection.server_name())
                    .map(<[u8]>::to_vec),
            },
            None => ChannelBindings {
                tls_exporter: None,
                tls_server_end_point: None,
            },
        }
    }

    /// RFC 6120 section 5.4.2: wait for `<starttls/>`, answer `<proceed/>`, and wrap the socket.
    async fn await_starttls<S>(&mut self, stream: &mut XmlStream<Transport<S>>) -> Step_<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        loop {
            let element = self.next(stream).await?;
            if element.is("starttls", ns::TLS) {
                break;
            }
            if element.is("auth", ns::SASL) {
                // RFC 6120 section 5.3.1: TLS is mandatory-to-negotiate here.
                stream
                    .send(&sasl_failure(SaslFailure::EncryptionRequired))
                    .await?;
                continue;
            }
            return Err(Stop::Error(StreamErrorCondition::NotAuthorized, None));
        }
        stream
            .send(&Element::builder("proceed", ns::TLS).build())
            .await?;
        Ok(())
    }

    /// Wraps the socket in TLS after `<proceed/>` (RFC 6120 section 5.4.3.3).
    async fn start_tls<S>(&self, stream: XmlStream<Transport<S>>) -> Step_<XmlStream<Transport<S>>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let limits = self.router.context.config.stream_limits().before_auth();
        // Bytes pipelined after <starttls/> would be plaintext injected into the TLS session: refuse.
        let Ok(Transport::Plain(socket)) = stream.into_inner() else {
            return Err(Stop::Gone);
        };
        match tokio::time::timeout_at(self.deadline, self.tls.starttls.accept(socket)).await {
            Ok(Ok(tls)) => Ok(XmlStream::new(Transport::ServerTls(Box::new(tls)), limits)),
            // RFC 6120 section 5.4.3.2: a failed handshake ends the TCP connection, no stream error.
            _ => Err(Stop::Gone),
        }
    }

    /// SASL (RFC 6120 section 6.4). Returns the authenticated account, or `None` if the peer left.
    async fn authenticate<S>(
        &mut self,
        stream: &mut XmlStream<Transport<S>>,
    ) -> Step_<Option<BareJid>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let domain = self.domain.clone().unwrap_or_default();
        loop {
            let element = self.next(stream).await?;
            if element.is("iq", ns::CLIENT)
                && let Some(query) = element.get_child("query", ns::REGISTER)
            {
                let is_set = element.attr("type") == Some("set");
                let answer = crate::features::register::handle_unauthenticated(
                    self.router,
                    &domain,
                    self.peer,
                    is_set,
                    query,
                )
                .await;
                stream.send(&unbound_iq_reply(&element, answer)).await?;
                continue;
            }
            if !element.is("auth", ns::SASL) {
                return Err(Stop::Error(StreamErrorCondition::NotAuthorized, None));
            }
            if let Some(account) = self.sasl_exchange(stream, &element, &domain).await? {
                stream.reset();
                return Ok(Some(account));
            }
        }
    }

    /// One SASL attempt, started by `auth`. `Ok(None)` means it failed and the client may try again.
    async fn sasl_exchange<S>(
        &mut self,
        stream: &mut XmlStream<Transport<S>>,
        auth: &Element,
        domain: &str,
    ) -> Step_<Option<BareJid>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let is_tls = stream.get_ref().is_tls();
        let bindings = self.bindings(stream);
        let offered = super::sasl::offered_mechanisms(is_tls, bindings.any(), true);
        let Some(mechanism) = auth
            .attr("mechanism")
            .and_then(Mechanism::parse)
            .filter(|m| offered.contains(m))
        else {
            stream
                .send(&sasl_failure(SaslFailure::InvalidMechanism))
                .await?;
            return Ok(None);
        };
        // An address already at its limit is refused before any work (RFC 6120 section 13.5).
        if let Err(refused) = self.throttle_check(None) {
            self.log_throttled(None, mechanism, &refused);
            stream
                .send(&sasl_failure(SaslFailure::TemporaryAuthFailure))
                .await?;
            return Ok(None);
        }
        let mut exchange = SaslExchange::start(mechanism, is_tls, bindings)
            .with_domain(domain)
            .with_unknown_user_secret(&self.router.context.unknown_user_secret);
        let mut data = match decode(&auth.text()) {
            Some(data) => data,
            None => {
                stream
                    .send(&sasl_failure(SaslFailure::IncorrectEncoding))
                    .await?;
                return Ok(None);
            }
        };
        let mut account: Option<BareJid> = None;
        // The reservation for the one password or proof check of this exchange (see `reserve`).
        let mut attempt: Option<Attempt> = None;
        let mut step = exchange.step(&data);
        loop {
            match step {
                Step::NeedCredentials { username } => {
                    let jid = crate::accounts::parse_account(&format!("{username}@{domain}")).ok();
                    let key = jid.as_ref().map(|j| j.to_string());
                    if let Err(refused) = self.throttle_check(key.as_deref()) {
                        self.log_throttled(key.as_deref(), mechanism, &refused);
                        stream
                            .send(&sasl_failure(SaslFailure::TemporaryAuthFailure))
                            .await?;
                        return Ok(None);
                    }
                    let credentials = match &key {
                        Some(key) => {
                            match self.router.context.storage.accounts.credentials(key).await {
                                Ok(credentials) => credentials,
                                Err(e) => {
                                    tracing::error!(error = %e, "credential lookup failed");
                                    stream
                                        .send(&sasl_failure(SaslFailure::TemporaryAuthFailure))
                                        .await?;
                                    return Ok(None);
                                }
                            }
                        }
                        None => None,
                    };
                    account = jid;
                    if exchange.checks_credentials_next() {
                        // PLAIN: the password is checked right now.
                        match self.reserve(account.as_ref(), mechanism) {
                            Ok(reserved) => attempt = Some(reserved),
                            Err(()) => {
                                stream
                                    .send(&sasl_failure(SaslFailure::TemporaryAuthFailure))
                                    .await?;
                                return Ok(None);
                            }
                        }
                    }
                    step = exchange.provide_credentials(credentials.as_ref());
                }
                Step::Challenge(challenge) => {
                    let mut element = Element::builder("challenge", ns::SASL).build();
                    element.append_text_node(encode(&challenge));
                    stream.send(&element).await?;
                    let response = self.next(stream).await?;
                    if response.is("abort", ns::SASL) {
                        stream.send(&sasl_failure(SaslFailure::Aborted)).await?;
                        return Ok(None);
                    }
                    if !response.is("response", ns::SASL) {
                        return Err(Stop::Error(StreamErrorCondition::NotAuthorized, None));
                    }
                    data = match decode(&response.text()) {
                        Some(data) => data,
                        None => {
                            stream
                                .send(&sasl_failure(SaslFailure::IncorrectEncoding))
                                .await?;
                            return Ok(None);
                        }
                    };
                    if exchange.checks_credentials_next() {
                        // SCRAM client-final: the proof is checked now. Reserving here, not at the
                        // first challenge, means exchanges held open cannot all verify a guess before
                        // the first failure is counted, while honest clients behind one address are not
                        // limited in how many log in at once.
                        match self.reserve(account.as_ref(), mechanism) {
                            Ok(reserved) => attempt = Some(reserved),
                            Err(()) => {
                                stream
                                    .send(&sasl_failure(SaslFailure::TemporaryAuthFailure))
                                    .await?;
                                return Ok(None);
                            }
                        }
                    }
                    step = exchange.step(&data);
                }
                Step::Success {
                    authenticated,
                    additional_data,
                } => {
                    let jid = account.take().or_else(|| {
                        crate::accounts::parse_account(&format!(
                            "{}@{domain}",
                            authenticated.username
                        ))
                        .ok()
                    });
                    let Some(jid) = jid else {
                        stream
                            .send(&sasl_failure(SaslFailure::NotAuthorized))
                            .await?;
                        return Ok(None);
                    };
                    if let Some(attempt) = attempt.take() {
                        attempt.succeeded();
                    }
                    let mut success = Element::builder("success", ns::SASL).build();
                    if let Some(extra) = additional_data {
                        success.append_text_node(encode(&extra));
                    }
                    stream.send(&success).await?;
                    tracing::debug!(account = %jid, mechanism = mechanism.name(), "authenticated");
                    return Ok(Some(jid));
                }
                Step::Failure(failure) => {
                    // Only a checked, wrong password or proof counts as a guess; any other failure
                    // releases the reservation uncounted (RFC 6120 section 13.5).
                    if let Some(attempt) = attempt.take()
                        && exchange.rejected_credentials()
                    {
                        attempt.failed(std::time::Instant::now());
                        self.log_rejected(account.as_ref(), mechanism);
                    }
                    stream.send(&sasl_failure(failure)).await?;
                    return Ok(None);
                }
            }
        }
    }

    /// Resource binding (RFC 6120 section 7), or resumption in its place (XEP-0198 section 5).
    async fn bind<S>(
        &mut self,
        stream: &mut XmlStream<Transport<S>>,
        account: &BareJid,
    ) -> Step_<Negotiated>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        loop {
            let element = self.next(stream).await?;
            match SmNonza::parse(&element) {
                Some(SmNonza::Resume { previd, h }) => {
                    // Only the account that enabled it may resume a session; an unknown, expired or
                    // someone else's id is `item-not-found`, and the client may still bind.
                    let bare = account.to_string();
                    match self
                        .router
                        .sessions
                        .resumable(&previd)
                        .filter(|resumable| resumable.bare == bare)
                    {
                        Some(resumable) => {
                            return Ok(Negotiated::Resume {
                                handle: resumable.handle,
                                h,
                            });
                        }
                        None => {
                            stream.send(&sm::failed("item-not-found", None)).await?;
                            continue;
                        }
                    }
                }
                Some(SmNonza::Enable { .. }) => {
                    // XEP-0198 section 3: stream management is enabled after binding.
                    stream.send(&sm::failed("unexpected-request", None)).await?;
                    continue;
                }
                _ => {}
            }
            let Some(bind) = element
                .get_child("bind", ns::BIND)
                .filter(|_| element.is("iq", ns::CLIENT) && element.attr("type") == Some("set"))
            else {
                if element.is("iq", ns::CLIENT) && element.attr("type") == Some("get") {
                    // RFC 6120 section 7.1: only binding is possible before a resource is bound.
                    let reply = unbound_iq_reply(
                        &element,
                        Err(crate::features::iq::IqError::new(
                            crate::xmpp::DefinedCondition::NotAllowed,
                        )),
                    );
                    stream.send(&reply).await?;
                    continue;
                }
                return Err(Stop::Error(StreamErrorCondition::NotAuthorized, None));
            };
            let requested = bind
                .get_child("resource", ns::BIND)
                .map(|r| r.text())
                .filter(|r| !r.trim().is_empty());
            let resource = requested.unwrap_or_else(random_id);
            let Ok(jid) = FullJid::new(&format!("{account}/{resource}")) else {
                // RFC 6120 section 7.7.2.1: a resource that cannot be prepared is a bad request.
                let reply = unbound_iq_reply(
                    &element,
                    Err(crate::features::iq::IqError::new(
                        crate::xmpp::DefinedCondition::BadRequest,
                    )),
                );
                stream.send(&reply).await?;
                continue;
            };
            let (handle, commands) = self.router.sessions.new_session();
            let bare = account.to_string();
            if let Some(previous) =
                self.router
                    .sessions
                    .bind(&bare, jid.resource().as_str(), handle.clone())
            {
                // RFC 6120 section 7.7.2.2: the newer session wins; the older one ends with <conflict/>.
                previous.send(SessionCommand::Replaced);
            }
            let jid_element = Element::builder("jid", ns::BIND)
                .append(jid.to_string())
                .build();
            let result = unbound_iq_reply(
                &element,
                Ok(Some(
                    Element::builder("bind", ns::BIND)
                        .append(jid_element)
                        .build(),
                )),
            );
            stream.send(&result).await?;
            return Ok(Negotiated::Bound((jid, handle, commands)));
        }
    }

    /// Whether the throttle would refuse this address (and account) now; refuses early, reserves nothing.
    fn throttle_check(&self, account: Option<&str>) -> Result<(), Refused> {
        self.router
            .context
            .login_throttle
            .check(self.peer, account, std::time::Instant::now())
    }

    /// Reserves the throttle attempt for the password or proof check about to run. `Err` (already
    /// logged) when the address or account is at its limit.
    fn reserve(&self, account: Option<&BareJid>, mechanism: Mechanism) -> Result<Attempt, ()> {
        let key = account.map(ToString::to_string);
        self.router
            .context
            .login_throttle
            .reserve(self.peer, key.as_deref(), std::time::Instant::now())
            .map_err(|refused| self.log_throttled(key.as_deref(), mechanism, &refused))
    }

    /// One line per refused guess, shown by default, for the admin and fail2ban (never the password).
    fn log_rejected(&self, account: Option<&BareJid>, mechanism: Mechanism) {
        let account = account.map(ToString::to_string).unwrap_or_default();
        tracing::info!(
            target: "herald::auth",
            client = %self.peer,
            %account,
            mechanism = mechanism.name(),
            "XMPP login failed: wrong password"
        );
    }

    /// One line per attempt the throttle refused.
    fn log_throttled(&self, account: Option<&str>, mechanism: Mechanism, refused: &Refused) {
        tracing::warn!(
            target: "herald::auth",
            client = %self.peer,
            account = account.unwrap_or_default(),
            mechanism = mechanism.name(),
            limit = ?refused.key,
            retry_after_secs = refused.retry_after.as_secs(),
            "XMPP login refused: too many failed logins"
        );
    }
}

/// The TLS connection when channel binding is offered on it: TLS 1.3 once the handshake is done.
///
/// On TLS 1.2 clients expect `tls-unique` (RFC 5929), which rustls cannot provide; advertising -PLUS
/// there makes such clients (slixmpp, for one) pick a binding we must refuse, so they could not log
/// in at all. -PLUS is offered on TLS 1.3 only, where tls-exporter is defined (RFC 9266).
fn binding_connection<S>(stream: &XmlStream<Transport<S>>) -> Option<&rustls::ServerConnection>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    stream.get_ref().tls_connection().filter(|connection| {
        connection.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
            && !connection.is_handshaking()
    })
}

/// An IQ answer on a stream with no bound JID yet: no `to`/`from`, only the id (RFC 6120 section 7.6.1).
fn unbound_iq_reply(request: &Element, answer: IqAnswer) -> Element {
    let mut reply = match answer {
        Ok(payload) => {
            let mut iq = Element::builder("iq", ns::CLIENT).build();
            set_attribute(&mut iq, "type", "result");
            if let Some(payload) = payload {
                iq.append_child(payload);
            }
            iq
        }
        Err(error) => crate::xmpp::stanza::error_reply(
            request,
            crate::xmpp::error_type_for(&error.condition),
            error.condition,
            error.text.as_deref(),
        )
        .unwrap_or_else(|| Element::builder("iq", ns::CLIENT).build()),
    };
    crate::xmpp::remove_attribute(&mut reply, "to");
    crate::xmpp::remove_attribute(&mut reply, "from");
    if let Some(id) = request.attr("id") {
        set_attribute(&mut reply, "id", id);
    }
    reply
}

fn sasl_failure(failure: SaslFailure) -> Element {
    Element::builder("failure", ns::SASL)
        .append(Element::builder(failure.as_str(), ns::SASL).build())
        .build()
}

/// RFC 6120 section 6.4.2: "=" is an empty response; anything not base64 is incorrect-encoding.
fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Some(Vec::new());
    }
    BASE64.decode(text).ok()
}

fn encode(data: &[u8]) -> String {
    if data.is_empty() {
        "=".into()
    } else {
        BASE64.encode(data)
    }
}

/// A random identifier for stream ids and generated resources (RFC 6120 section 4.7.3: unpredictable).
pub fn random_id() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
