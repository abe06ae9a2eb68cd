//! Listeners, TLS, transports and shutdown: everything between a TCP socket and a negotiated XML stream.

pub mod channel_binding;
pub mod idle;
pub mod listener;
pub mod shutdown;
pub mod tls;
pub mod transport;
pub mod unauthenticated;
pub mod write_deadline;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::c2s::negotiation::Bound;
use crate::c2s::stream_features::StreamFeatures;
use crate::net::shutdown::Shutdown;
use crate::net::tls::TlsIdentity;
use crate::net::transport::Transport;
use crate::net::unauthenticated::{UnauthenticatedSlot, UnauthenticatedSlots};
use crate::net::write_deadline::WriteDeadline;
use crate::router::Router;
use crate::xmpp::ns;

/// Accepts client connections until shutdown. `direct_tls` selects XEP-0368 (TLS first) over STARTTLS.
/// At most `max_connections` run at once; further ones wait in the kernel backlog. A connection counts
/// in `unauthenticated` (shared by every client listener) from `accept` until it authenticates; one over
/// its caps is refused at once. At shutdown every bound session is told to end through its mailbox
/// (sessions do not each wait on `shutdown`, which would cost every idle session a waiting future).
pub async fn serve_c2s(
    listener: TcpListener,
    router: Arc<Router>,
    tls: TlsIdentity,
    direct_tls: bool,
    unauthenticated: Arc<UnauthenticatedSlots>,
    mut shutdown: Shutdown,
) {
    let slots = Arc::new(Semaphore::new(router.context.config.max_connections.max(1)));
    let features = Arc::new(StreamFeatures::new(&router.context.config));
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => return router.sessions.shut_down(),
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let Some((socket, peer)) = listener::next_connection(&listener, &mut shutdown, "c2s").await
        else {
            return router.sessions.shut_down();
        };
        let slot = match unauthenticated.try_acquire(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                let reason = refusal.to_string();
                tokio::spawn(listener::refuse(
                    socket,
                    peer,
                    direct_tls,
                    ns::CLIENT,
                    reason,
                ));
                continue;
            }
        };
        let router = router.clone();
        // The task holds only what the session needs for its whole life: the handshake and negotiation run
        // in their own box, made here so that their arguments are not captured by the task, and freed once
        // the session is bound. A task's allocation is sized for its largest state and kept until it ends.
        let negotiation = Box::pin(accept(
            router.clone(),
            tls.clone(),
            features.clone(),
            socket,
            peer,
            direct_tls,
            slot,
        ));
        let task = async move {
            let _permit = permit;
            let Some(bound) = negotiation.await else {
                return;
            };
            let session = crate::c2s::session::Session::new(&router.context.config, bound);
            Box::pin(crate::c2s::session::run(router, session)).await;
        };
        tokio::spawn(task);
    }
}

/// TLS first for XEP-0368 direct TLS, then stream negotiation. `None` when the connection ended before a
/// session was bound. `slot` counts the connection as unauthenticated until negotiation gives it back.
async fn accept(
    router: Arc<Router>,
    tls: TlsIdentity,
    features: Arc<StreamFeatures>,
    socket: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
    slot: UnauthenticatedSlot,
) -> Option<Bound> {
    // Every write on this connection, from the TLS handshake to the last stream error, must make progress
    // within the deadline: a client that stops reading cannot park its task in a write.
    let socket = WriteDeadline::new(socket, router.context.config.write_timeout);
    let transport = if direct_tls {
        // Bounded like the rest of negotiation, so a silent peer cannot hold a slot forever.
        let handshake = Box::pin(tls.direct.accept(socket));
        match tokio::time::timeout(router.context.config.auth_timeout, handshake).await {
            Ok(Ok(stream)) => Transport::ServerTls(Box::new(stream)),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "direct TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "direct TLS handshake timed out");
                return None;
            }
        }
    } else {
        Transport::Plain(socket)
    };
    crate::c2s::negotiation::negotiate(&router, &tls, &features, transport, peer.ip(), slot).await
}

/// Test support: TLS connections driven in memory.
#[cfg(test)]
pub(crate) mod memory_tls {
    /// One round trip of TLS records: everything the client has to send goes to the server, then
    /// everything the server has to send goes to the client.
    pub(crate) fn transfer(
        client: &mut rustls::ClientConnection,
        server: &mut rustls::ServerConnection,
    ) {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets().unwrap();
    }
}
