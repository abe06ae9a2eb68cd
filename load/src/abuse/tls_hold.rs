//! Connections to the direct-TLS port (XEP-0368) that start a handshake and never finish it: some
//! send a real ClientHello (RFC 8446 section 4.1.2), so the server computes its key share and
//! answers, and then never send another byte; others connect and send nothing at all. Each is
//! held until the server ends it or the run stops, and how it ended is counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConnection;
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::unauth::{connect_from, source_for};
use super::{AbusePlan, Outcomes, stopped, summarise};
use crate::client::insecure_client_config;
use crate::stats::Latency;

/// What the held handshakes send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsHoldMode {
    /// A ClientHello, then silence.
    Hello,
    /// Nothing at all.
    Silent,
    /// Even-numbered connections send a ClientHello, odd ones nothing.
    Mixed,
}

/// What the held handshakes did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TlsHoldReport {
    /// Connections started and accepted (TCP).
    pub attempted: u64,
    pub connected: u64,
    /// ClientHellos sent.
    pub hellos_sent: u64,
    /// How each ended: `closed@<hello|silent>` (the server closed it), `reset@...`,
    /// `open@...` (still open at the stop), `refused:<kind>`.
    pub outcomes: Outcomes,
    /// Lifetime of the connections the server ended.
    pub ended_after: Option<Latency>,
    pub note: String,
}

impl TlsHoldReport {
    pub(crate) fn panicked() -> Self {
        TlsHoldReport {
            note: "the task running the held handshakes panicked".into(),
            ..TlsHoldReport::default()
        }
    }
}

/// The first flight of a TLS 1.3 client (ALPN `xmpp-client`) for `domain`.
///
/// Errors: the rustls error text, when the client configuration or name is unusable.
pub fn client_hello(domain: &str) -> Result<Vec<u8>, String> {
    let config = insecure_client_config(true, false).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(domain.to_owned()).map_err(|e| e.to_string())?;
    let mut connection = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut hello = Vec::new();
    connection
        .write_tls(&mut hello)
        .map_err(|e| e.to_string())?;
    Ok(hello)
}

/// Opens `plan.tls_holds` connections to the direct-TLS port and holds them until `stop`.
pub async fn run(plan: AbusePlan, stop: watch::Receiver<bool>) -> TlsHoldReport {
    let mut report = TlsHoldReport::default();
    let Some(address) = plan.direct_tls_address else {
        report.note = "not run: no direct-TLS port given".into();
        return report;
    };
    if plan.tls_holds == 0 {
        report.note = "not run: no connections asked for".into();
        return report;
    }
    let hello: Arc<[u8]> = match client_hello(plan.target.connector.domain()) {
        Ok(h) => h.into(),
        Err(e) => {
            report.note = format!("not run: cannot build a ClientHello: {e}");
            return report;
        }
    };
    report.note = format!(
        "direct TLS; mode {:?}; ClientHello {} bytes",
        plan.tls_hold_mode,
        hello.len()
    );
    let ramp = Arc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut ramp_stop = stop.clone();
    // After the unauthenticated connections' sources, so a per-address cap counts them apart.
    let offset = plan.unauth_connections;
    for n in 0..plan.tls_holds {
        let permit = tokio::select! {
            _ = stopped(&mut ramp_stop) => break,
            permit = ramp.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let sends_hello = match plan.tls_hold_mode {
            TlsHoldMode::Hello => true,
            TlsHoldMode::Silent => false,
            TlsHoldMode::Mixed => n % 2 == 0,
        };
        let hello = sends_hello.then(|| hello.clone());
        let source = source_for(&plan.abuse_sources, offset + n);
        let stop = stop.clone();
        report.attempted += 1;
        tasks.spawn(async move {
            let stream = connect_from(address, source).await;
            drop(permit);
            hold_one(stream, hello, stop).await
        });
    }
    let mut lifetimes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((label, connected, hello_sent, ended_after)) = joined else {
            report.outcomes.add("task-panicked");
            continue;
        };
        report.connected += u64::from(connected);
        report.hellos_sent += u64::from(hello_sent);
        lifetimes.extend(ended_after);
        report.outcomes.add(&label);
    }
    report.ended_after = summarise(lifetimes);
    report
}

/// (label, connected, hello sent, lifetime if the server ended it)
type HoldEnding = (String, bool, bool, Option<Duration>);

async fn hold_one(
    stream: Result<tokio::net::TcpStream, String>,
    hello: Option<Arc<[u8]>>,
    mut stop: watch::Receiver<bool>,
) -> HoldEnding {
    let mut stream = match stream {
        Ok(s) => s,
        Err(kind) => return (format!("refused:{kind}"), false, false, None),
    };
    let connected_at = Instant::now();
    let kind = if hello.is_some() { "hello" } else { "silent" };
    let mut hello_sent = false;
    if let Some(hello) = hello {
        match stream.write_all(&hello).await {
            Ok(()) => hello_sent = true,
            Err(e) => {
                let label = format!("write:{:?}@{kind}", e.kind());
                return (label, true, false, Some(connected_at.elapsed()));
            }
        }
    }
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return (format!("open@{kind}"), true, hello_sent, None),
            read = stream.read(&mut buf) => {
                let label = match read {
                    // The server's flight (ServerHello ...) is read and ignored: never answered.
                    Ok(n) if n > 0 => continue,
                    Ok(_) => "closed",
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset",
                    Err(_) => "read-error",
                };
                return (format!("{label}@{kind}"), true, hello_sent, Some(connected_at.elapsed()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_hello_is_a_tls_handshake_record() {
        let hello = client_hello("localhost").expect("hello");
        // RFC 8446 section 5.1: content type 22 (handshake); section 4: msg type 1 (client_hello).
        assert_eq!(hello[0], 22);
        assert_eq!(hello[5], 1);
        assert!(hello.len() > 100);
    }
}
