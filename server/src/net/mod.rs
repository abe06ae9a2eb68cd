//! Listeners, TLS, transports and shutdown: everything between a TCP socket and a negotiated XML stream.

pub mod channel_binding;
pub mod shutdown;
pub mod tls;
pub mod transport;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::net::shutdown::Shutdown;
use crate::net::tls::TlsIdentity;
use crate::net::transport::Transport;
use crate::router::Router;

/// Accepts client connections until shutdown. `direct_tls` selects XEP-0368 (TLS first) over STARTTLS.
/// At most `max_connections` run at once; further ones wait in the kernel backlog.
pub async fn serve_c2s(
    listener: TcpListener,
    router: Arc<Router>,
    tls: TlsIdentity,
    direct_tls: bool,
    mut shutdown: Shutdown,
) {
    let slots = Arc::new(Semaphore::new(router.config.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (socket, peer) = tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let transport = if direct_tls {
                // Bounded like the rest of negotiation, so a silent peer cannot hold a slot forever.
                let handshake = Box::pin(tls.direct.accept(socket));
                match tokio::time::timeout(router.config.auth_timeout, handshake).await {
                    Ok(Ok(stream)) => Transport::Tls(Box::new(stream)),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "direct TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "direct TLS handshake timed out");
                        return;
                    }
                }
            } else {
                Transport::Plain(socket)
            };
            // Each phase is boxed: a task's allocation is sized for its largest state, and an idle
            // session must not keep paying for the negotiation's (TLS handshake, SASL) state.
            let negotiation = Box::pin(crate::c2s::negotiation::negotiate(
                &router,
                &tls,
                transport,
                peer.ip(),
            ));
            if let Some(bound) = negotiation.await {
                Box::pin(crate::c2s::session::run(router, bound, shutdown)).await;
            }
        });
    }
}
