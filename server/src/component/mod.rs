//! XEP-0114: Jabber Component Protocol. Gateways and push app servers attach over TCP, prove the shared
//! secret with the handshake (section 3), and then exchange stanzas for their domain through the router.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::net::listener;
use crate::net::shutdown::Shutdown;
use crate::net::unauthenticated::{UnauthenticatedSlot, UnauthenticatedSlots};
use crate::net::write_deadline::WriteDeadline;
use crate::router::Router;
use crate::router::mailbox::mailbox;
use crate::xmpp::Envelope;
use crate::xmpp::error::{StreamError, StreamErrorCondition};
use crate::xmpp::ns;
use crate::xmpp::stream::{Frame, StreamHeader, XmlStream};
use crate::xmpp::{Element, to_client_namespace};

/// Stanzas queued for a component before it counts as stuck (and at most `[limits] component_queue_bytes`
/// of them).
const COMPONENT_QUEUE_LENGTH: usize = 8192;

/// Accepts component connections until shutdown. Until its handshake succeeds a connection counts in
/// `unauthenticated` like a client's; one over the caps gets `policy-violation` without being read.
pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    unauthenticated: Arc<UnauthenticatedSlots>,
    shutdown: Shutdown,
) {
    let mut stop = shutdown.clone();
    loop {
        let Some((socket, peer)) =
            listener::next_connection(&listener, &mut stop, "component").await
        else {
            return;
        };
        let slot = match unauthenticated.try_acquire(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                let reason = refusal.to_string();
                tokio::spawn(listener::refuse(
                    socket,
                    peer,
                    false,
                    ns::COMPONENT_ACCEPT,
                    reason,
                ));
                continue;
            }
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // A component that stops reading is cut off like a client (see `net::write_deadline`).
            let socket = WriteDeadline::new(socket, router.context.config.write_timeout);
            if let Err(e) = run(socket, peer.ip(), &router, slot, shutdown).await {
                tracing::info!(%peer, error = %e, "component stream ended");
            }
        });
    }
}

/// A `policy-violation` stream error (RFC 6120 section 4.9.3.14) after a header of ours, written without
/// reading anything from the peer.
/// Runs one component stream from `peer`. `slot` counts it as unauthenticated until the handshake
/// succeeds.
pub async fn run<S>(
    io: S,
    peer: IpAddr,
    router: &Arc<Router>,
    slot: UnauthenticatedSlot,
    mut shutdown: Shutdown,
) -> Result<(), StreamError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // RFC 6120 section 13.12: the small pre-authentication limits until the handshake proves the secret.
    let mut stream = XmlStream::new(io, router.context.config.stream_limits().before_auth());
    // The handshake is bounded like client negotiation, so a silent peer cannot hold a task forever.
    let deadline = tokio::time::Instant::now() + router.context.config.auth_timeout;
    let timed_out = StreamError::Condition {
        condition: StreamErrorCondition::ConnectionTimeout,
        text: None,
    };
    let header = match tokio::time::timeout_at(deadline, stream.read_header()).await {
        Ok(Ok(header)) => header,
        // Bad input gets its stream error (RFC 6120 section 4.9.1.2: after a header of ours).
        Ok(Err(error)) => {
            let _ = stream.send_error(&error).await;
            return Err(error);
        }
        Err(_) => {
            stream.send_error(&timed_out).await?;
            return Err(timed_out);
        }
    };
    let domain = header.to.clone().unwrap_or_default().to_ascii_lowercase();
    let stream_id = crate::c2s::negotiation::random_id();
    stream
        .send_header(&StreamHeader {
            to: None,
            from: Some(domain.clone()),
            id: Some(stream_id.clone()),
            version: None,
            lang: None,
            default_ns: ns::COMPONENT_ACCEPT.into(),
        })
        .await?;
    let fail = |condition| StreamError::Condition {
        condition,
        text: None,
    };
    if header.default_ns != ns::COMPONENT_ACCEPT {
        let error = fail(StreamErrorCondition::InvalidNamespace);
        stream.send_error(&error).await?;
        return Err(error);
    }
    let Some(secret) = router
        .context
        .config
        .components
        .iter()
        .find(|c| c.domain == domain)
        .map(|c| c.secret.clone())
    else {
        let error = fail(StreamErrorCondition::HostUnknown);
        stream.send_error(&error).await?;
        return Err(error);
    };
    let Ok(frame) = tokio::time::timeout_at(deadline, stream.next()).await else {
        stream.send_error(&timed_out).await?;
        return Err(timed_out);
    };
    let handshake = match frame {
        Ok(Frame::Element(element)) if element.is("handshake", ns::COMPONENT_ACCEPT) => {
            element.text()
        }
        Err(error) => {
            let _ = stream.send_error(&error).await;
            return Err(error);
        }
        _ => {
            let error = fail(StreamErrorCondition::NotAuthorized);
            stream.send_error(&error).await?;
            return Err(error);
        }
    };
    // The shared secret is a password: its guesses go through the process's failed-login throttle,
    // counted per client address (RFC 6120 section 13.5). Not per component domain, so a guesser cannot
    // lock the real component out.
    let attempt = match router
        .context
        .login_throttle
        .reserve(peer, None, Instant::now())
    {
        Ok(attempt) => attempt,
        Err(refused) => {
            tracing::warn!(
                target: "herald::auth",
                client = %peer,
                component = %domain,
                retry_after_secs = refused.retry_after.as_secs(),
                "component handshake refused: too many failed logins"
            );
            let error = fail(StreamErrorCondition::PolicyViolation);
            stream.send_error(&error).await?;
            return Err(error);
        }
    };
    if !constant_time_eq(
        handshake.trim().as_bytes(),
        expected_handshake(&stream_id, &secret).as_bytes(),
    ) {
        attempt.failed(Instant::now());
        tracing::info!(
            target: "herald::auth",
            client = %peer,
            component = %domain,
            "component handshake failed: wrong secret"
        );
        let error = fail(StreamErrorCondition::NotAuthorized);
        stream.send_error(&error).await?;
        return Err(error);
    }
    attempt.succeeded();
    let (tx, mut rx) = mailbox(
        COMPONENT_QUEUE_LENGTH,
        router.context.config.component_queue_bytes,
    );
    if !router.attach_component(&domain, tx) {
        let error = fail(StreamErrorCondition::Conflict);
        stream.send_error(&error).await?;
        return Err(error);
    }
    let acknowledged = stream
        .send(&Element::builder("handshake", ns::COMPONENT_ACCEPT).build())
        .await;
    if let Err(e) = acknowledged {
        // Attached a moment ago: detach before leaving, or the domain would stay bound to a dead queue.
        router.detach_component(&domain);
        return Err(StreamError::from(e));
    }
    stream.set_limits(router.context.config.stream_limits());
    drop(slot);
    tracing::info!(%domain, "component attached");
    let outcome = loop {
        tokio::select! {
            _ = shutdown.wait() => break Err(fail(StreamErrorCondition::SystemShutdown)),
            outgoing = rx.recv() => match outgoing {
                Some(stanza) => {
                    // A failed write (or one past the write deadline) ends the stream, but through the
                    // detach below: returning early left the domain attached to a dead queue, bouncing
                    // everything with remote-server-timeout and refusing the component's reconnection.
                    if let Err(e) = stream.send_wire(std::slice::from_ref(&stanza)).await {
                        break Err(StreamError::from(e));
                    }
                }
                None => break Ok(()),
            },
            frame = stream.next() => match frame {
                Ok(Frame::Element(element)) => {
                    if let Err(condition) = accept_stanza(router, &domain, element).await {
                        break Err(fail(condition));
                    }
                }
                Ok(Frame::End) => break Ok(()),
                Err(e) => break Err(e),
            },
        }
    };
    router.detach_component(&domain);
    tracing::info!(%domain, "component detached");
    if let Err(error) = &outcome
        && error.condition().is_some()
    {
        let _ = stream.send_error(error).await;
    }
    outcome
}

/// Routes a stanza from the component; its `from` must be the component's domain or an address under it.
async fn accept_stanza(
    router: &Arc<Router>,
    domain: &str,
    element: Element,
) -> Result<(), StreamErrorCondition> {
    let element = to_client_namespace(element);
    let envelope =
        Envelope::parse(element).map_err(|_| StreamErrorCondition::UnsupportedStanzaType)?;
    match &envelope.from {
        Some(from) if from.domain().as_str() == domain => {}
        _ => return Err(StreamErrorCondition::InvalidFrom),
    }
    if envelope.to.is_none() {
        return Err(StreamErrorCondition::ImproperAddressing);
    }
    router.route(envelope).await;
    Ok(())
}

/// XEP-0114 section 3: lowercase hex SHA-1 of the stream id followed by the secret.
pub fn expected_handshake(stream_id: &str, secret: &str) -> String {
    let digest = Sha1::digest(format!("{stream_id}{secret}").as_bytes());
    hex::encode(digest)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn handshake_is_hex_sha1_of_id_and_secret() {
        // sha1("3BF96D32secret"), computed independently.
        assert_eq!(
            super::expected_handshake("3BF96D32", "secret"),
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        );
    }
}
