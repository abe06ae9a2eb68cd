//! What every XMPP listener (c2s, s2s, components) does between `accept` and a connection's own task:
//! taking the next connection (backing off when `accept` fails) and refusing one over a cap the same way
//! everywhere (RFC 6120 section 13.12: a server limits the resources a peer can use).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::net::shutdown::Shutdown;
use crate::xmpp::{Limits, StreamError, StreamErrorCondition, StreamHeader, XmlStream};

/// How long writing the refusal to a connection over a cap may take: a few hundred bytes, which fit the
/// socket's send buffer unless the peer stopped reading long ago.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait after `accept` failed (EMFILE and friends) before trying again, instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The next connection on `listener`, with Nagle off (stanzas are small and latency-bound); `None` once
/// `shutdown` is triggered. `kind` names the listener in logs.
pub async fn next_connection(
    listener: &TcpListener,
    shutdown: &mut Shutdown,
    kind: &'static str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                return Some((socket, peer));
            }
            Err(error) => {
                tracing::warn!(%error, listener = kind, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Ends a connection over a cap without reading from it, and logs why: on a port where the stream
/// starts in the clear with a `policy-violation` stream error (RFC 6120 section 4.9.3.14, after a
/// stream header of ours in `namespace` as section 4.9.1.2 requires), on a direct-TLS port, where
/// nothing can be said before a handshake, by closing it. Meant to be spawned: the write is bounded by
/// [`REFUSAL_WRITE_TIMEOUT`].
pub async fn refuse(
    socket: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
    namespace: &'static str,
    reason: String,
) {
    // At debug: a peer hammering a cap would otherwise write the log for us.
    tracing::debug!(%peer, %reason, "connection refused");
    if direct_tls {
        return;
    }
    let mut stream = XmlStream::new(socket, Limits::PRE_AUTH);
    stream.queue_header(&StreamHeader {
        id: Some(crate::c2s::negotiation::random_id()),
        version: Some("1.0".into()),
        default_ns: namespace.into(),
        ..StreamHeader::default()
    });
    let error = StreamError::new(StreamErrorCondition::PolicyViolation, reason);
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, stream.send_error(&error)).await;
}
