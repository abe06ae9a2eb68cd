//! Inbound server-to-server streams (RFC 6120 sections 4 to 6 with us as the receiving entity): STARTTLS
//! (section 5.4; required with `require_encryption`) or XEP-0368 direct TLS, then SASL EXTERNAL (XEP-0178,
//! offered only once the peer's certificate validated for the stream's `from`) or Server Dialback
//! (XEP-0220 section 2.1 as the receiving server, more domain pairs piggybacked on one stream as in
//! section 2.5), and db:verify answered as the authoritative server (section 2.3). Stanzas are accepted
//! only for authenticated domain pairs (RFC 6120 sections 4.9.3.6, 4.9.3.9 and 8.1.1.1) and routed like a
//! client's. Until a pair authenticates, the pre-authentication limits and `auth_timeout` bound the stream
//! (section 13.12); afterwards the stanza limits, a per-peer rate and `[s2s] idle_timeout_seconds`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::connections::PeerConnection;
use super::dialback::{self, Dialback, Outcome};
use super::outbound::FederationDialer;
use super::{AuthenticationCounts, Federation};
use crate::c2s::flood::FloodGuard;
use crate::net::listener;
use crate::net::shutdown::Shutdown;
use crate::net::transport::Transport;
use crate::net::unauthenticated::{UnauthenticatedSlot, UnauthenticatedSlots};
use crate::net::write_deadline::WriteDeadline;
use crate::router::Router;
use crate::xmpp::{
    Element, Envelope, Frame, StreamError, StreamErrorCondition, StreamHeader, XmlStream, ns,
};

/// How long an authenticated stream still routes what its peer sent after we closed it at shutdown.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How many times a client's `[limits] stanzas_per_second` one peer server may send.
const PEER_RATE_FACTOR: u32 = 50;

/// Accepts inbound s2s connections until shutdown. Every connection counts in the federation's
/// [`PeerConnections`] (shared by the s2s listeners) until it ends; until one of its domains
/// authenticates, it also counts in `unauthenticated` (shared with the client listeners) and is
/// bounded by the pre-authentication limits and `[c2s] auth_timeout_seconds`. One over a cap is
/// refused as a client's is ([`listener::refuse`]).
pub async fn serve(
    listener: TcpListener,
    federation: Arc<Federation>,
    router: Arc<Router>,
    direct_tls: bool,
    unauthenticated: Arc<UnauthenticatedSlots>,
    mut shutdown: Shutdown,
) {
    loop {
        let Some((socket, peer)) = listener::next_connection(&listener, &mut shutdown, "s2s").await
        else {
            return;
        };
        let counted = federation
            .connections
            .try_accept(peer.ip())
            .map_err(|refusal| refusal.to_string())
            .and_then(|connection| {
                let slot = unauthenticated
                    .try_acquire(peer.ip())
                    .map_err(|refusal| refusal.to_string())?;
                Ok((connection, slot))
            });
        let (connection, slot) = match counted {
            Ok(counted) => counted,
            Err(reason) => {
                tokio::spawn(listener::refuse(
                    socket,
                    peer,
                    direct_tls,
                    ns::SERVER,
                    reason,
                ));
                continue;
            }
        };
        let federation = federation.clone();
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = accept(
                socket,
                peer,
                federation,
                router,
                direct_tls,
                (slot, connection),
                shutdown,
            )
            .await
            {
                tracing::info!(%peer, error = %e, "s2s inbound stream ended");
            }
        });
    }
}

async fn accept(
    socket: TcpStream,
    peer: SocketAddr,
    federation: Arc<Federation>,
    router: Arc<Router>,
    direct_tls: bool,
    (slot, connection): (UnauthenticatedSlot, PeerConnection),
    shutdown: Shutdown,
) -> Result<(), StreamError> {
    let socket = WriteDeadline::new(socket, federation.write_timeout);
    let transport = if direct_tls {
        let handshake = federation.direct_acceptor.accept(socket);
        match tokio::time::timeout(federation.auth_timeout, handshake).await {
            Ok(Ok(tls)) => Transport::ServerTls(Box::new(tls)),
            Ok(Err(e)) => return Err(StreamError::Io(e)),
            Err(_) => return Err(StreamError::bare(StreamErrorCondition::ConnectionTimeout)),
        }
    } else {
        Transport::Plain(socket)
    };
    let dialer = FederationDialer::new(federation.clone());
    let inbound = Inbound {
        federation: &federation,
        router: &router,
        dialer: &dialer,
        peer: peer.ip(),
    };
    inbound.run(transport, slot, connection, shutdown).await
}

/// One inbound stream's fixed context.
pub(crate) struct Inbound<'a> {
    pub(crate) federation: &'a Arc<Federation>,
    pub(crate) router: &'a Arc<Router>,
    pub(crate) dialer: &'a FederationDialer,
    pub(crate) peer: IpAddr,
}

/// What one stream has established so far.
#[derive(Debug, Default)]
struct Authenticated {
    /// (our domain, their domain) pairs the peer may send stanzas for.
    pairs: Vec<(String, String)>,
}

impl Authenticated {
    fn allows(&self, local: &str, remote: &str) -> bool {
        self.pairs.iter().any(|(l, r)| l == local && r == remote)
    }

    fn has_remote(&self, remote: &str) -> bool {
        self.pairs.iter().any(|(_, r)| r == remote)
    }

    fn add(&mut self, local: String, remote: String) {
        if !self.allows(&local, &remote) {
            self.pairs.push((local, remote));
        }
    }

    /// Whether another pair may be authenticated on this stream ([`MAX_PAIRS_PER_STREAM`]).
    fn has_room(&self) -> bool {
        self.pairs.len() < MAX_PAIRS_PER_STREAM
    }
}

/// Domain pairs one inbound stream may carry (XEP-0220 section 2.5 piggybacking): a peer whose
/// certificate covers any number of names (a wildcard) could otherwise grow the list, and the scan
/// every stanza makes of it, for as long as the stream lives.
const MAX_PAIRS_PER_STREAM: usize = 64;

/// How a stream (re)start ends.
enum Next<S> {
    /// A new stream header is due on this transport (after TLS or SASL success).
    Restart(Transport<S>),
    Done,
}

impl Inbound<'_> {
    /// Runs the stream until it ends; `slot` is given back once a domain has authenticated, and each
    /// remote domain that authenticates is counted on `connection` (refused over its cap).
    pub(crate) async fn run<S>(
        &self,
        mut transport: Transport<S>,
        slot: UnauthenticatedSlot,
        mut connection: PeerConnection,
        mut shutdown: Shutdown,
    ) -> Result<(), StreamError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut slot = Some(slot);
        let mut authenticated = Authenticated::default();
        let deadline = Instant::now() + self.federation.auth_timeout;
        loop {
            let limits = if authenticated.pairs.is_empty() {
                self.federation.limits.before_auth()
            } else {
                self.federation.limits
            };
            let stream = XmlStream::new(transport, limits);
            match self
                .run_stream(
                    stream,
                    &mut authenticated,
                    &mut slot,
                    &mut connection,
                    deadline,
                    &mut shutdown,
                )
                .await?
            {
                Next::Restart(next) => transport = next,
                Next::Done => return Ok(()),
            }
        }
    }

    async fn run_stream<S>(
        &self,
        mut stream: XmlStream<Transport<S>>,
        authenticated: &mut Authenticated,
        slot: &mut Option<UnauthenticatedSlot>,
        connection: &mut PeerConnection,
        deadline: Instant,
        shutdown: &mut Shutdown,
    ) -> Result<Next<S>, StreamError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let header = match tokio::time::timeout_at(deadline, stream.read_header()).await {
            Ok(Ok(header)) => header,
            Ok(Err(error)) => return fail(stream, error).await,
            Err(_) => {
                return fail(
                    stream,
                    StreamError::bare(StreamErrorCondition::ConnectionTimeout),
                )
                .await;
            }
        };
        let local = header
            .to
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let remote = header.from.as_deref().map(str::to_ascii_lowercase);
        let stream_id = crate::c2s::negotiation::random_id();
        stream.queue_header(&StreamHeader {
            to: remote.clone(),
            from: Some(local.clone()),
            id: Some(stream_id.clone()),
            version: Some("1.0".into()),
            lang: None,
            default_ns: ns::SERVER.into(),
        });
        if header.default_ns != ns::SERVER {
            return fail(
                stream,
                StreamError::bare(StreamErrorCondition::InvalidNamespace),
            )
            .await;
        }
        if !self.router.serves_domain(&local) {
            return fail(stream, StreamError::bare(StreamErrorCondition::HostUnknown)).await;
        }
        let is_tls = stream.get_ref().is_tls();
        let chain: Vec<_> = stream
            .get_ref()
            .tls_state()
            .and_then(|tls| tls.peer_certificates())
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let validates = |domain: &str| self.federation.trust.validates(domain, &chain);
        let certificate_valid = remote.as_deref().is_some_and(validates);
        // The contract of `[s2s]`: dialback with a domain whose certificate validates, or one listed with
        // `allow_dialback_without_certificate`; never over plaintext when encryption is required.
        let may_dialback = |domain: &str| {
            (is_tls || !self.federation.settings.require_encryption)
                && (validates(domain)
                    || self.federation.allows_dialback_without_certificate(domain))
        };
        // RFC 6120 section 4.3.2: the features for this stage.
        let mut features = Element::builder("features", ns::STREAMS).build();
        if !is_tls {
            let mut starttls = Element::builder("starttls", ns::TLS).build();
            if self.federation.settings.require_encryption {
                starttls.append_child(Element::builder("required", ns::TLS).build());
            }
            features.append_child(starttls);
        }
        let remote_authenticated = remote
            .as_deref()
            .is_some_and(|r| authenticated.allows(&local, r));
        if is_tls && certificate_valid && !remote_authenticated {
            // XEP-0178 section 3 step 6: EXTERNAL only once the certificate validated for `from`.
            features.append_child(
                Element::builder("mechanisms", ns::SASL)
                    .append(
                        Element::builder("mechanism", ns::SASL)
                            .append("EXTERNAL")
                            .build(),
                    )
                    .build(),
            );
        }
        if is_tls || !self.federation.settings.require_encryption {
            features.append_child(dialback::feature());
        }
        stream.send(&features).await?;

        // A per-peer rate: a server carries many users' traffic, so well above one client's.
        let mut flood = FloodGuard::new(
            self.router
                .context
                .config
                .stanzas_per_second
                .saturating_mul(PEER_RATE_FACTOR),
        );
        loop {
            let frame = if authenticated.pairs.is_empty() {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(frame) => frame,
                    Err(_) => {
                        return fail(
                            stream,
                            StreamError::bare(StreamErrorCondition::ConnectionTimeout),
                        )
                        .await;
                    }
                }
            } else {
                tokio::select! {
                    _ = shutdown.wait() => return self.drain(stream, authenticated).await,
                    idle = tokio::time::timeout(self.federation.settings.idle_timeout, stream.next()) => match idle {
                        Ok(frame) => frame,
                        Err(_) => {
                            // Idle: closed politely (RFC 6120 section 4.4); the peer reconnects when it needs to.
                            let _ = stream.close().await;
                            return Ok(Next::Done);
                        }
                    },
                }
            };
            let element = match frame {
                Ok(Frame::Element(element)) => element,
                Ok(Frame::End) => {
                    let _ = stream.close().await;
                    return Ok(Next::Done);
                }
                Err(error) => return fail(stream, error).await,
            };
            // Over the rate, reading pauses instead of the stream ending: a peer server carries
            // stanzas it already took responsibility for, and ending its stream would lose those
            // in flight. Not reading lets TCP slow it down (RFC 6120 section 13.12).
            if let Some(wait) = flood.debt(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            if element.is("starttls", ns::TLS) && !is_tls {
                stream
                    .send(&Element::builder("proceed", ns::TLS).build())
                    .await?;
                let plain = match stream.into_inner() {
                    Ok(plain) => plain,
                    Err(error) => return Err(error),
                };
                let Transport::Plain(plain) = plain else {
                    return Err(StreamError::bare(StreamErrorCondition::UnsupportedFeature));
                };
                let handshake = self.federation.starttls_acceptor.accept(plain);
                return match tokio::time::timeout_at(deadline, handshake).await {
                    Ok(Ok(tls)) => Ok(Next::Restart(Transport::ServerTls(Box::new(tls)))),
                    Ok(Err(e)) => Err(StreamError::Io(e)),
                    Err(_) => Err(StreamError::bare(StreamErrorCondition::ConnectionTimeout)),
                };
            }
            if !is_tls && self.federation.settings.require_encryption {
                // RFC 6120 section 5.3.1: nothing but STARTTLS until TLS is up.
                return fail(
                    stream,
                    StreamError::new(StreamErrorCondition::PolicyViolation, "TLS is required"),
                )
                .await;
            }
            if element.is("auth", ns::SASL) {
                // RFC 6120 section 6.4.6: SASL is done once per stream; a peer that authenticated
                // is not offered it again, and asking again would restart the stream for free.
                let accepted = element.attr("mechanism") == Some("EXTERNAL")
                    && !remote_authenticated
                    && is_tls
                    && certificate_valid
                    && remote
                        .as_deref()
                        .is_some_and(|r| external_authzid_matches(&element.text(), r));
                let Some(remote) = remote.clone().filter(|_| accepted) else {
                    // RFC 6120 section 6.4.5; XEP-0178 section 3 step 8.
                    let failure = Element::builder("failure", ns::SASL)
                        .append(Element::builder("not-authorized", ns::SASL).build())
                        .build();
                    stream.send(&failure).await?;
                    continue;
                };
                if let Err(refusal) = connection.add_domain(&remote) {
                    return fail(
                        stream,
                        StreamError::new(
                            StreamErrorCondition::PolicyViolation,
                            refusal.to_string(),
                        ),
                    )
                    .await;
                }
                stream
                    .send(&Element::builder("success", ns::SASL).build())
                    .await?;
                tracing::info!(peer = %self.peer, %local, %remote, "s2s inbound authenticated with SASL EXTERNAL");
                authenticated.add(local.clone(), remote);
                AuthenticationCounts::count(&self.federation.authentications.inbound_external);
                slot.take();
                stream.reset();
                let transport = stream.into_inner()?;
                return Ok(Next::Restart(transport));
            }
            if let Some(dialback) = Dialback::parse(&element) {
                let allowed = match &dialback {
                    Dialback::ResultRequest { from, .. } => may_dialback(from),
                    _ => false,
                };
                let answer = self
                    .dialback(dialback, &stream_id, authenticated, connection, allowed)
                    .await;
                if let Some(answer) = answer {
                    stream.send(&answer.to_element()).await?;
                }
                if !authenticated.pairs.is_empty() && slot.take().is_some() {
                    stream.set_limits(self.federation.limits);
                }
                continue;
            }
            if authenticated.pairs.is_empty() {
                return fail(
                    stream,
                    StreamError::bare(StreamErrorCondition::NotAuthorized),
                )
                .await;
            }
            if let Err(condition) = self.accept_stanza(element, authenticated).await {
                return fail(stream, StreamError::bare(condition)).await;
            }
        }
    }

    /// Ends an authenticated stream at shutdown without losing what the peer already sent: the
    /// `system-shutdown` stream error and our closing tag go out first, then, as RFC 6120 section 4.4
    /// lets the side that closed keep receiving, the stanzas the peer wrote before it saw them are
    /// still routed until it closes its side too or [`SHUTDOWN_DRAIN`] passes. A peer's stanza queue
    /// forgets a stanza once written, so ending at once would lose those in flight.
    async fn drain<S, T>(
        &self,
        mut stream: XmlStream<Transport<S>>,
        authenticated: &Authenticated,
    ) -> Result<T, StreamError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let error = StreamError::bare(StreamErrorCondition::SystemShutdown);
        let _ = stream.send_error(&error).await;
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        while let Ok(Ok(Frame::Element(element))) =
            tokio::time::timeout_at(deadline, stream.next()).await
        {
            if self.accept_stanza(element, authenticated).await.is_err() {
                break;
            }
        }
        Err(error)
    }

    /// Answers one dialback element on this stream: as the receiving server for `db:result` (verifying
    /// the key with the authoritative server), as the authoritative server for
    /// `db:verify`. Answers to our own requests are not expected here.
    async fn dialback(
        &self,
        dialback: Dialback,
        stream_id: &str,
        authenticated: &mut Authenticated,
        connection: &mut PeerConnection,
        may_dialback: bool,
    ) -> Option<Dialback> {
        match dialback {
            Dialback::ResultRequest { from, to, key } => {
                let answer = |outcome| Dialback::ResultAnswer {
                    from: to.clone(),
                    to: from.clone(),
                    outcome,
                };
                if !self.router.serves_domain(&to) {
                    // XEP-0220 section 2.6.2: not a domain we host.
                    return Some(answer(Outcome::Error("item-not-found".into())));
                }
                if !may_dialback {
                    return Some(answer(Outcome::Error("not-authorized".into())));
                }
                if !authenticated.has_room() {
                    return Some(answer(Outcome::Error("policy-violation".into())));
                }
                let outcome = match self.dialer.verify(&to, &from, stream_id, &key).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        tracing::info!(%from, error = %e, "dialback verification failed");
                        Outcome::Error("remote-connection-failed".into())
                    }
                };
                if outcome == Outcome::Valid
                    && let Err(refusal) = connection.add_domain(&from)
                {
                    // XEP-0220 section 2.6.2: an error answer leaves the stream (and its other
                    // domain pairs) as they were.
                    tracing::info!(peer = %self.peer, remote = %from, %refusal, "s2s dialback refused");
                    return Some(answer(Outcome::Error("policy-violation".into())));
                }
                if outcome == Outcome::Valid {
                    tracing::info!(peer = %self.peer, local = %to, remote = %from, "s2s inbound authenticated with dialback");
                    authenticated.add(to.clone(), from.clone());
                    AuthenticationCounts::count(&self.federation.authentications.inbound_dialback);
                }
                Some(answer(outcome))
            }
            Dialback::VerifyRequest { from, to, id, key } => {
                // XEP-0220 section 2.3: we are `to`, the authoritative server of the key.
                // Any domain we serve may have originated the key: our users' domains, and the
                // in-process services (the push service) that send as themselves.
                let outcome = if !self.router.serves_domain(&to) {
                    Outcome::Error("item-not-found".into())
                } else if self.federation.secret.verifies(&key, &from, &to, &id) {
                    Outcome::Valid
                } else {
                    Outcome::Invalid
                };
                Some(Dialback::VerifyAnswer {
                    from: to,
                    to: from,
                    id,
                    outcome,
                })
            }
            Dialback::ResultAnswer { .. } | Dialback::VerifyAnswer { .. } => None,
        }
    }

    /// Routes one stanza if its addresses fit the authenticated pairs: `from` must be an authenticated
    /// domain of this stream (else `invalid-from`, RFC 6120 section 4.9.3.9), `to` one we serve (else
    /// `host-unknown`, section 4.9.3.6), and that pair authenticated (else `invalid-from`).
    async fn accept_stanza(
        &self,
        element: Element,
        authenticated: &Authenticated,
    ) -> Result<(), StreamErrorCondition> {
        if !crate::xmpp::is_stanza(&element) {
            // Nonzas after authentication (a stray dialback answer, XEP-0198 not offered): ignored.
            return Ok(());
        }
        let element = crate::xmpp::renamespace(element, ns::SERVER, ns::CLIENT);
        let envelope =
            Envelope::parse(element).map_err(|_| StreamErrorCondition::ImproperAddressing)?;
        let (Some(from), Some(to)) = (&envelope.from, &envelope.to) else {
            return Err(StreamErrorCondition::ImproperAddressing);
        };
        let from_domain = from.domain().as_str();
        let to_domain = to.domain().as_str();
        if !authenticated.has_remote(from_domain) {
            return Err(StreamErrorCondition::InvalidFrom);
        }
        if !self.router.serves_domain(to_domain) {
            return Err(StreamErrorCondition::HostUnknown);
        }
        // XEP-0220 section 2.5: each (receiving, originating) pair is authenticated on its own, by
        // the stream's EXTERNAL or by a dialback for that pair (piggybacked on this stream).
        if !authenticated.allows(to_domain, from_domain) {
            return Err(StreamErrorCondition::InvalidFrom);
        }
        self.router.route(envelope).await;
        Ok(())
    }
}

/// XEP-0178 section 3 step 7 and RFC 6120 section 6.4.6: an empty authzid (`=` or nothing) means the
/// stream's `from`; otherwise it must be that domain.
pub(crate) fn external_authzid_matches(text: &str, remote: &str) -> bool {
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return true;
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .is_some_and(|authzid| authzid.eq_ignore_ascii_case(remote))
}

/// Sends the stream error (after our header if none went out yet) and ends the stream with it.
async fn fail<S, T>(mut stream: XmlStream<S>, error: StreamError) -> Result<T, StreamError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = stream.send_error(&error).await;
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_authzid_is_empty_or_the_stream_domain() {
        assert!(external_authzid_matches("=", "a.test"));
        assert!(external_authzid_matches("", "a.test"));
        assert!(
            external_authzid_matches("YS50ZXN0", "a.test"),
            "base64 of a.test"
        );
        assert!(
            !external_authzid_matches("Yi50ZXN0", "a.test"),
            "base64 of b.test"
        );
        assert!(!external_authzid_matches("!!", "a.test"));
    }
}
