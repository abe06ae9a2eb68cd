//! Hosting the push relay in the server's process: its HTTP API on its own listener (plain HTTP or TLS with
//! the domains' certificates), its outbox workers, and the [`PushWaker`] the router's offline path uses.
//! The API's listener bounds what a client can hold: connections at once (overall and per address), the
//! time to send a request's headers, to finish a request, and idle time (`[relay.http]`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_relay::api::ApiError;
use herald_relay::config::HttpServerConfig;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::features::push::PushWaker;
use crate::net::idle::IdleTimeout;
use crate::net::shutdown::Shutdown;
use crate::net::tls::TlsIdentity;

/// How long a relay client may take to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 connections are pinged this often, and closed when a ping is not answered in time
/// (RFC 9113 section 6.7), so a vanished peer does not hold a slot.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

#[async_trait]
impl PushWaker for herald_relay::Relay {
    async fn wake(&self, account: &str) -> Result<usize, String> {
        self.wake_account(account).await.map_err(|e| e.to_string())
    }
}

/// Serves the relay API on `listener` until shutdown, with TLS when `tls` is given. At most
/// `max_connections` are served at once (further ones wait in the kernel backlog) and at most
/// `max_connections_per_address` from one address (further ones are closed at once). At shutdown every
/// connection finishes its request in progress and closes; this returns once they all did.
pub async fn serve_api(
    relay: herald_relay::Relay,
    listener: TcpListener,
    tls: Option<TlsIdentity>,
    mut shutdown: Shutdown,
) {
    let settings = relay.config().http.clone();
    let app = relay.router().layer(axum::middleware::from_fn_with_state(
        Duration::from_millis(settings.request_timeout_ms),
        request_deadline,
    ));
    let builder = connection_builder(&settings);
    let idle = Duration::from_millis(settings.idle_timeout_ms);
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let addresses = Arc::new(AddressSlots::new(settings.max_connections_per_address));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (socket, peer) = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "relay API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let Some(address_slot) = addresses.take(peer.ip()) else {
            tracing::debug!(%peer, "relay API: too many connections from this address");
            continue;
        };
        // Each connection sees its peer address as axum's ConnectInfo (per-address rate limits).
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        let builder = builder.clone();
        let tls = tls.clone();
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _held = (permit, address_slot);
            let Some(tls) = tls else {
                let io = IdleTimeout::new(socket, idle);
                return serve_connection(&builder, io, app, peer, stop).await;
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.https.accept(socket)).await {
                Ok(Ok(stream)) => {
                    let io = IdleTimeout::new(stream, idle);
                    serve_connection(&builder, io, app, peer, stop).await;
                }
                _ => tracing::debug!(%peer, "relay HTTPS handshake failed or timed out"),
            }
        });
    }
    while connections.join_next().await.is_some() {}
}

/// HTTP/1.1 with a header-read timeout (which also closes a keep-alive connection that sends no next
/// request), and HTTP/2 with pings.
fn connection_builder(settings: &HttpServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    builder
}

/// Answers 408 when a request (its body included: extractors read it inside the handler) is not
/// read and answered within `limit` (RFC 9110 section 15.5.9); the connection then closes.
async fn request_deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response =
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "request not completed in time")
                    .into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

/// Serves one connection until it ends, or until shutdown lets its request in progress finish.
async fn serve_connection<IO>(
    builder: &auto::Builder<TokioExecutor>,
    io: IO,
    app: axum::Router,
    peer: SocketAddr,
    mut shutdown: Shutdown,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "relay API connection ended");
    }
}

/// Connections per client address, capped.
struct AddressSlots {
    per_address: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's share of its address; given back when dropped.
struct AddressSlot {
    slots: Arc<AddressSlots>,
    ip: IpAddr,
}

impl AddressSlots {
    fn new(per_address: usize) -> AddressSlots {
        AddressSlots {
            per_address: per_address.max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `ip`, or `None` when the address already holds `per_address` connections.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.per_address {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_slots_cap_each_address_and_come_back() {
        let slots = Arc::new(AddressSlots::new(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert!(slots.take(a).is_none());
        let _other = slots.take(b).unwrap();
        drop(first);
        assert!(slots.take(a).is_some());
    }
}
