//! Hosting the push relay in the server's process: its HTTP API on its own listener (plain HTTP or TLS with
//! the domains' certificates), its outbox workers, and the [`PushWaker`] the router's offline path uses.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::features::push::PushWaker;
use crate::net::shutdown::Shutdown;
use crate::net::tls::TlsIdentity;

/// How long a relay client may take to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[async_trait]
impl PushWaker for herald_relay::Relay {
    async fn wake(&self, account: &str) -> Result<usize, String> {
        self.wake_account(account).await.map_err(|e| e.to_string())
    }
}

/// Serves the relay API on `listener` until shutdown, with TLS when `tls` is given.
pub async fn serve_api(
    relay: herald_relay::Relay,
    listener: TcpListener,
    tls: Option<TlsIdentity>,
    mut shutdown: Shutdown,
) {
    let app = relay.router();
    let Some(tls) = tls else {
        let stop = async move { shutdown.wait().await };
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "relay API stopped");
        }
        return;
    };
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = tls.https.clone();
        // Each connection sees its peer address as axum's ConnectInfo, as with plain serving.
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await
            else {
                return;
            };
            let service = TowerToHyperService::new(app);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "relay HTTPS connection ended");
            }
        });
    }
}

/// Runs the outbox workers until shutdown.
pub async fn run_workers(relay: herald_relay::Relay, mut shutdown: Shutdown) {
    let cancel = tokio_util::sync::CancellationToken::new();
    let workers = relay.spawn_workers(cancel.clone());
    shutdown.wait().await;
    cancel.cancel();
    let _ = workers.await;
}
