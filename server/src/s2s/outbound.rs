//! Outbound server-to-server streams (RFC 6120 sections 4 to 6 with us as the initiating entity): TCP to
//! the peer's address, STARTTLS (section 5.4) or XEP-0368 direct TLS with our certificate as the client
//! certificate and SNI set to the peer's domain, then SASL EXTERNAL (XEP-0178 section 3) if the peer
//! offers it, else Server Dialback (XEP-0220 section 2.1, as the originating server). The same code asks
//! an authoritative server to verify a dialback key (section 2.2, as the receiving server).

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use futures::FutureExt;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::dialback::{Dialback, Outcome};
use super::queue::{DialError, Dialer, Link, LinkError};
use super::{AuthenticationCounts, Federation};
use crate::net::transport::Transport;
use crate::net::write_deadline::WriteDeadline;
use crate::xmpp::{Element, Frame, StreamHeader, XmlStream, ns, set_attribute};

/// What an outbound negotiation is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// An authenticated stream to send stanzas over.
    Authenticate,
    /// Asking the authoritative server whether it gave out `key` for stream `id` (XEP-0220 section 2.2).
    Verify { id: String, key: String },
}

/// What a negotiation ended with.
pub(crate) enum Negotiated<S> {
    Authenticated(Box<XmlStream<Transport<S>>>, AuthMethod),
    Verified(Outcome),
}

/// How an outbound stream authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthMethod {
    /// SASL EXTERNAL (XEP-0178).
    External,
    /// Server Dialback (XEP-0220).
    Dialback,
}

impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthMethod::External => "external",
            AuthMethod::Dialback => "dialback",
        })
    }
}

/// Dials with the [`Federation`]'s settings, trust and secret.
#[derive(Debug, Clone)]
pub struct FederationDialer {
    federation: Arc<Federation>,
}

impl FederationDialer {
    pub fn new(federation: Arc<Federation>) -> FederationDialer {
        FederationDialer { federation }
    }

    /// Asks `authoritative`'s server whether it gave out `key` for our stream `stream_id`, where it
    /// claimed to be `authoritative` talking to our `receiving` domain (XEP-0220 section 2.2).
    ///
    /// Errors: as [`Dialer::dial`].
    pub async fn verify(
        &self,
        receiving: &str,
        authoritative: &str,
        stream_id: &str,
        key: &str,
    ) -> Result<Outcome, DialError> {
        let purpose = Purpose::Verify {
            id: stream_id.to_string(),
            key: key.to_string(),
        };
        match self.open(receiving, authoritative, purpose).await? {
            Negotiated::Verified(outcome) => Ok(outcome),
            Negotiated::Authenticated(mut stream, _) => {
                let _ = stream.close().await;
                Err(DialError::Rejected("no verification answer".into()))
            }
        }
    }

    async fn open(
        &self,
        local: &str,
        remote: &str,
        purpose: Purpose,
    ) -> Result<Negotiated<WriteDeadline<TcpStream>>, DialError> {
        let federation = &self.federation;
        let deadline = federation.auth_timeout;
        let peers = tokio::time::timeout(deadline, federation.resolver.resolve(remote))
            .await
            .map_err(|_| DialError::Unreachable(format!("{remote}: resolution timed out")))??;
        // RFC 6120 section 3.2.1 and XEP-0368 section 3: the static address, else SRV, else the
        // domain on 5269; each address in turn until one gives an authenticated stream. An address
        // that accepts TCP but fails TLS or stream negotiation (not an XMPP server, a broken
        // certificate, a stream error) is no better than one that refuses TCP (RFC 6120 section
        // 3.2.1 step 6: "cycle through the remaining SRV records"). Each address gets its own
        // `auth_timeout`, so one that accepts and then stays silent does not use up the others' time.
        let mut failure = DialError::NotFound;
        for peer in peers {
            let attempt = self.open_at(&peer, local, remote, purpose.clone());
            let error = match tokio::time::timeout(deadline, attempt).await {
                Ok(Ok(negotiated)) => return Ok(negotiated),
                Ok(Err(error)) => error,
                Err(_) => DialError::Unreachable(format!("{}: timed out", peer.address)),
            };
            tracing::info!(%remote, address = %peer.address, %error, "s2s peer address failed; trying the next");
            failure = error;
        }
        Err(failure)
    }

    /// TCP, then TLS (direct or STARTTLS) and negotiation with one address of `remote`.
    async fn open_at(
        &self,
        peer: &super::resolve::PeerAddress,
        local: &str,
        remote: &str,
        purpose: Purpose,
    ) -> Result<Negotiated<WriteDeadline<TcpStream>>, DialError> {
        let federation = &self.federation;
        let socket = TcpStream::connect(peer.address)
            .await
            .map_err(|e| DialError::Unreachable(format!("{}: {e}", peer.address)))?;
        let _ = socket.set_nodelay(true);
        let socket = WriteDeadline::new(socket, federation.write_timeout);
        let mut transport = Transport::Plain(socket);
        if peer.direct_tls {
            transport = start_tls(federation, transport, local, remote, true).await?;
        }
        negotiate(federation, transport, local, remote, purpose).await
    }
}

#[async_trait]
impl Dialer for FederationDialer {
    async fn dial(
        &self,
        local_domain: &str,
        remote_domain: &str,
    ) -> Result<Box<dyn Link>, DialError> {
        match self
            .open(local_domain, remote_domain, Purpose::Authenticate)
            .await?
        {
            Negotiated::Authenticated(stream, method) => {
                let stream = *stream;
                tracing::info!(
                    local = local_domain,
                    remote = remote_domain,
                    %method,
                    "s2s outbound stream ready"
                );
                Ok(Box::new(OutboundLink { stream }))
            }
            Negotiated::Verified(_) => Err(DialError::Rejected("unexpected verification".into())),
        }
    }
}

async fn start_tls<S>(
    federation: &Federation,
    transport: Transport<S>,
    local: &str,
    remote: &str,
    direct: bool,
) -> Result<Transport<S>, DialError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = federation
        .outbound_tls
        .get(&federation.tls, local, direct)
        .map_err(|e| DialError::Rejected(e.to_string()))?;
    let name = ServerName::try_from(remote.to_string())
        .map_err(|_| DialError::Rejected(format!("{remote} is not a DNS name")))?;
    transport
        .connect_tls(config, name)
        .await
        .map_err(|e| DialError::Unreachable(e.to_string()))
}

/// Runs the initiating side's negotiation on a connected transport: stream headers, STARTTLS when the
/// connection is plain, the certificate judged for `remote`, then EXTERNAL or dialback (or the
/// verification `purpose` asks for). Unit-tested over in-memory streams.
pub(crate) async fn negotiate<S>(
    federation: &Federation,
    mut transport: Transport<S>,
    local: &str,
    remote: &str,
    purpose: Purpose,
) -> Result<Negotiated<S>, DialError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let rejected = |why: &str| DialError::Rejected(format!("{remote}: {why}"));
    let limits = federation.limits.before_auth();
    loop {
        let mut stream = XmlStream::new(transport, limits);
        let (stream_id, features) = open_stream(&mut stream, local, remote).await?;
        let is_tls = stream.get_ref().is_tls();
        if !is_tls && features.get_child("starttls", ns::TLS).is_some() {
            stream
                .send(&Element::builder("starttls", ns::TLS).build())
                .await
                .map_err(io_failed)?;
            let answer = next_element(&mut stream).await?;
            if !answer.is("proceed", ns::TLS) {
                return Err(rejected("STARTTLS refused"));
            }
            let plain = stream
                .into_inner()
                .map_err(|_| rejected("data after <proceed/>"))?;
            transport = start_tls(federation, plain, local, remote, false).await?;
            continue;
        }
        if !is_tls && federation.settings.require_encryption {
            return Err(rejected("TLS is required and the peer does not offer it"));
        }
        let certificate_valid = stream
            .get_ref()
            .tls_state()
            .and_then(|tls| tls.peer_certificates())
            .is_some_and(|chain| federation.trust.validates(remote, chain));
        if !certificate_valid && !federation.allows_dialback_without_certificate(remote) {
            return Err(rejected("its certificate does not validate"));
        }
        if let Purpose::Verify { id, key } = &purpose {
            let request = Dialback::VerifyRequest {
                from: local.to_string(),
                to: remote.to_string(),
                id: id.clone(),
                key: key.clone(),
            };
            stream
                .send(&request.to_element())
                .await
                .map_err(io_failed)?;
            loop {
                let element = next_element(&mut stream).await?;
                if let Some(Dialback::VerifyAnswer {
                    id: answered,
                    outcome,
                    ..
                }) = Dialback::parse(&element)
                    && &answered == id
                {
                    let _ = stream.close().await;
                    return Ok(Negotiated::Verified(outcome));
                }
            }
        }
        let offers_external = features.get_child("mechanisms", ns::SASL).is_some_and(|m| {
            m.children()
                .any(|c| c.name() == "mechanism" && c.text() == "EXTERNAL")
        });
        if is_tls && offers_external {
            let mut auth = Element::builder("auth", ns::SASL)
                .append(base64::engine::general_purpose::STANDARD.encode(local))
                .build();
            set_attribute(&mut auth, "mechanism", "EXTERNAL");
            stream.send(&auth).await.map_err(io_failed)?;
            let answer = next_element(&mut stream).await?;
            if answer.is("success", ns::SASL) {
                stream.reset();
                open_stream(&mut stream, local, remote).await?;
                stream.set_limits(federation.limits);
                AuthenticationCounts::count(&federation.authentications.outbound_external);
                return Ok(Negotiated::Authenticated(
                    Box::new(stream),
                    AuthMethod::External,
                ));
            }
            tracing::info!(local, remote, "SASL EXTERNAL refused; trying dialback");
        }
        // XEP-0220 section 2.1.1: the key for the stream id the receiving server gave us.
        let request = Dialback::ResultRequest {
            from: local.to_string(),
            to: remote.to_string(),
            key: federation.secret.key(remote, local, &stream_id),
        };
        stream
            .send(&request.to_element())
            .await
            .map_err(io_failed)?;
        loop {
            let element = next_element(&mut stream).await?;
            match Dialback::parse(&element) {
                Some(Dialback::ResultAnswer { from, to, outcome })
                    if from == remote && to == local =>
                {
                    return match outcome {
                        Outcome::Valid => {
                            stream.set_limits(federation.limits);
                            AuthenticationCounts::count(
                                &federation.authentications.outbound_dialback,
                            );
                            Ok(Negotiated::Authenticated(
                                Box::new(stream),
                                AuthMethod::Dialback,
                            ))
                        }
                        Outcome::Invalid => Err(rejected("dialback key refused")),
                        Outcome::Error(condition) => {
                            Err(rejected(&format!("dialback error {condition}")))
                        }
                    };
                }
                _ => continue,
            }
        }
    }
}

/// Sends our header, reads the peer's and its features. Returns the stream id the peer gave and the
/// features element.
async fn open_stream<S>(
    stream: &mut XmlStream<S>,
    local: &str,
    remote: &str,
) -> Result<(String, Element), DialError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let header = StreamHeader {
        to: Some(remote.to_string()),
        from: Some(local.to_string()),
        id: None,
        version: Some("1.0".into()),
        lang: None,
        default_ns: ns::SERVER.into(),
    };
    stream.send_header(&header).await.map_err(io_failed)?;
    let theirs = stream
        .read_header()
        .await
        .map_err(|e| DialError::Rejected(format!("{remote}: stream header: {e}")))?;
    if theirs.default_ns != ns::SERVER {
        return Err(DialError::Rejected(format!(
            "{remote}: not a jabber:server stream"
        )));
    }
    let features = next_element(stream).await?;
    if !features.is("features", ns::STREAMS) {
        return Err(DialError::Rejected(format!("{remote}: no stream features")));
    }
    Ok((theirs.id.unwrap_or_default(), features))
}

/// The next element; a stream error or the end of the stream is a rejection.
async fn next_element<S>(stream: &mut XmlStream<S>) -> Result<Element, DialError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match stream.next().await {
        Ok(Frame::Element(element)) if element.is("error", ns::STREAMS) => {
            let condition = element
                .children()
                .find(|c| c.ns() == ns::STREAM_ERRORS)
                .map(|c| c.name().to_string())
                .unwrap_or_default();
            Err(DialError::Rejected(format!("stream error {condition}")))
        }
        Ok(Frame::Element(element)) => Ok(element),
        Ok(Frame::End) => Err(DialError::Rejected("the peer closed the stream".into())),
        Err(e) => Err(DialError::Unreachable(e.to_string())),
    }
}

fn io_failed(error: std::io::Error) -> DialError {
    DialError::Unreachable(error.to_string())
}

/// An authenticated outbound stream.
struct OutboundLink<S> {
    stream: XmlStream<Transport<S>>,
}

#[async_trait]
impl<S> Link for OutboundLink<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn send(&mut self, stanza: &str) -> Result<(), LinkError> {
        // The peer may have closed the stream since the last write (idle, shutting down, a stream
        // error): what it sent is read without waiting, so the stanza goes over a fresh stream instead
        // of into a socket nobody reads. `next` is cancel-safe, so nothing is lost by not waiting.
        while let Some(frame) = self.stream.next().now_or_never() {
            match frame {
                Ok(Frame::Element(element)) if !element.is("error", ns::STREAMS) => continue,
                _ => {
                    return Err(LinkError("the peer closed the stream".into()));
                }
            }
        }
        self.stream
            .send_raw(stanza)
            .await
            .map_err(|e| LinkError(e.to_string()))
    }

    async fn close(mut self: Box<Self>) {
        let _ = self.stream.close().await;
    }
}
