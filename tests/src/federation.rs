//! Two federating Herald servers, `a.test` and `b.test`, on 127.0.0.1 ([`federate`]), each listing the
//! other with a static address; a test CA made with rcgen ([`TestCa`]) for SASL EXTERNAL (XEP-0178), or
//! the servers' own self-signed certificates and `allow_dialback_without_certificate` for Server Dialback
//! (XEP-0220). [`S2sPeer`] is a hand-driven peer server for what a Herald would never send.

use std::sync::Arc;

use herald::net::transport::Transport;
use herald::xmpp::stream::{Frame, StreamHeader, XmlStream};
use herald::xmpp::{Element, Limits, ns};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::TIMEOUT;
use crate::server::TestServer;

/// A certificate authority for the tests: issues leaf certificates (PEM) for a domain.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Herald test CA");
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for `domain` with only the serverAuth purpose (as Let's Encrypt issues them since
    /// 2026) and its key, both PEM.
    pub fn issue(&self, domain: &str) -> (String, String) {
        self.issue_for(&[domain])
    }

    /// Like [`TestCa::issue`], for several DNS names (the first is the common name), as for a server
    /// whose services send as their own domains.
    pub fn issue_for(&self, names: &[&str]) -> (String, String) {
        let domain = names[0];
        let key = rcgen::KeyPair::generate().unwrap();
        let names = names
            .iter()
            .map(|name| name.to_string())
            .collect::<Vec<_>>();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, domain);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// How the two servers authenticate each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// Certificates from one test CA that both trust: SASL EXTERNAL both ways.
    External,
    /// Self-signed certificates neither trusts, each allowing dialback without a certificate for the
    /// other: Server Dialback both ways.
    Dialback,
}

/// A free port on 127.0.0.1 now (the probe listener is closed again; a server binds it a moment later,
/// so each side can name the other's port in its configuration before either starts).
///
/// The port comes from below the kernel's ephemeral range: a port the kernel hands out for `:0` or as
/// the local end of an outbound connection could be taken by another test between the probe and the
/// bind (CI saw `AddrInUse` exactly so). Ports below that range are only ever taken by an explicit
/// bind, and ports are handed out once per process from a counter, so tests of one binary never race
/// each other; the probe skips ports another process holds.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let Some((low, count)) = ports_below_ephemeral_range() else {
        return bound_port("127.0.0.1:0").expect("a port from the kernel");
    };
    // Processes started together begin at different places in the range.
    let start = std::process::id() % count;
    for _ in 0..count {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % count;
        let candidate = low + offset;
        if let Some(port) = bound_port(&format!("127.0.0.1:{candidate}")) {
            return port;
        }
    }
    panic!("no free port in {low}..{}", low + count)
}

/// The port `address` binds to, if it is free.
fn bound_port(address: &str) -> Option<u16> {
    let listener = std::net::TcpListener::bind(address).ok()?;
    listener.local_addr().ok().map(|bound| bound.port())
}

/// The first port and the number of ports of a block just below the ephemeral range (Linux:
/// `net.ipv4.ip_local_port_range`), or `None` where it cannot be read or leaves no room.
fn ports_below_ephemeral_range() -> Option<(u32, u32)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let first_ephemeral: u32 = range.split_whitespace().next()?.parse().ok()?;
    const BLOCK: u32 = 8192;
    // Stay clear of the well-known and registered ports most services use (XMPP's included).
    let low = first_ephemeral.checked_sub(BLOCK)?.max(10_000);
    (first_ephemeral > low).then(|| (low, first_ephemeral - low))
}

/// The test CA (for [`S2sPeer`]) and two started servers hosting `a.test` and `b.test` that federate
/// with `authentication` over STARTTLS.
pub async fn federate(authentication: Authentication) -> (TestCa, TestServer, TestServer) {
    federate_with(authentication, false).await
}

/// Like [`federate`]; with `direct_tls` each server also listens for XEP-0368 direct TLS and reaches
/// the other there.
pub async fn federate_with(
    authentication: Authentication,
    direct_tls: bool,
) -> (TestCa, TestServer, TestServer) {
    federate_tuned(authentication, direct_tls, &[]).await
}

/// Like [`federate_with`], with `HERALD_*` overrides for both servers (such as
/// `HERALD_S2S__QUEUE_TIMEOUT_SECONDS`).
pub async fn federate_tuned(
    authentication: Authentication,
    direct_tls: bool,
    env: &[(&str, &str)],
) -> (TestCa, TestServer, TestServer) {
    let ca = TestCa::new();
    let a = Listening::new("a.test", direct_tls);
    let b = Listening::new("b.test", direct_tls);
    let server_a = federated_server(&ca, authentication, &a, &b, env).await;
    let server_b = federated_server(&ca, authentication, &b, &a, env).await;
    (ca, server_a, server_b)
}

/// A domain of [`federate_with`] and the ports it will listen on.
pub struct Listening {
    pub domain: String,
    pub port: u16,
    pub direct_tls_port: Option<u16>,
}

impl Listening {
    pub fn new(domain: &str, direct_tls: bool) -> Listening {
        Listening {
            domain: domain.to_string(),
            port: free_port(),
            direct_tls_port: direct_tls.then(free_port),
        }
    }
}

/// One server of [`federate_with`]: `me`, listing `peer` with its static address.
pub async fn federated_server(
    ca: &TestCa,
    authentication: Authentication,
    me: &Listening,
    peer: &Listening,
    env: &[(&str, &str)],
) -> TestServer {
    let domain = &me.domain;
    let mut builder =
        TestServer::builder().env("HERALD_SERVER__DOMAINS", &format!("[\"{domain}\"]"));
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    let mut toml = format!("[s2s]\nlisten = \"127.0.0.1:{}\"\n", me.port);
    if let Some(port) = me.direct_tls_port {
        toml.push_str(&format!("direct_tls_listen = \"127.0.0.1:{port}\"\n"));
    }
    let mut peer_entry = format!(
        "[[s2s.peers]]\ndomain = \"{}\"\naddress = \"127.0.0.1:{}\"\n",
        peer.domain,
        peer.direct_tls_port.unwrap_or(peer.port)
    );
    if peer.direct_tls_port.is_some() {
        peer_entry.push_str("direct_tls = true\n");
    }
    match authentication {
        Authentication::External => {
            let (cert, key) = ca.issue(domain);
            builder = builder
                .file("ca.pem", &ca.pem)
                .file("server.crt", &cert)
                .file("server.key", &key)
                .client_trust("ca.pem");
            toml = format!(
                "[[tls.certificates]]\ndomain = \"{domain}\"\ncert = \"{{dir}}/server.crt\"\n\
                 key = \"{{dir}}/server.key\"\n{toml}ca_files = [\"{{dir}}/ca.pem\"]\n{peer_entry}"
            );
        }
        Authentication::Dialback => {
            toml = format!("{toml}{peer_entry}allow_dialback_without_certificate = true\n");
        }
    }
    builder.toml(&toml).start().await
}

/// A DNS server on 127.0.0.1 (UDP) that answers every question with NXDOMAIN (RFC 1035 section
/// 4.1.1, RCODE 3): every domain looked up through it does not exist. Runs until the test ends.
pub async fn nxdomain_nameserver() -> std::net::SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = [0u8; 1500];
        while let Ok((length, from)) = socket.recv_from(&mut buffer).await {
            if let Some(answer) = nxdomain_answer(&buffer[..length]) {
                let _ = socket.send_to(&answer, from).await;
            }
        }
    });
    address
}

/// The NXDOMAIN answer to `query`: its id and question, no records.
fn nxdomain_answer(query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    // The question: labels up to the root label, then QTYPE and QCLASS.
    let mut end = 12;
    loop {
        let label = usize::from(*query.get(end)?);
        end += 1 + label;
        if label == 0 {
            break;
        }
    }
    let question = query.get(12..end + 4)?;
    let recursion_desired = header[2] & 0x01;
    // QR, AA and RD as asked; RA and RCODE 3 (name error); one question, no records.
    let mut answer = vec![header[0], header[1], 0x84 | recursion_desired, 0x83];
    answer.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    answer.extend_from_slice(question);
    Some(answer)
}

/// One record the [`dns_stub`] answers with.
#[derive(Debug, Clone)]
pub enum DnsRecord {
    /// An SRV record (RFC 2782): priority, weight, port, target (without the trailing dot).
    Srv(u16, u16, u16, String),
    /// An A record.
    A(std::net::Ipv4Addr),
}

impl DnsRecord {
    fn kind(&self) -> u16 {
        match self {
            DnsRecord::Srv(..) => 33,
            DnsRecord::A(_) => 1,
        }
    }

    fn rdata(&self) -> Vec<u8> {
        match self {
            DnsRecord::Srv(priority, weight, port, target) => {
                let mut data = Vec::new();
                data.extend_from_slice(&priority.to_be_bytes());
                data.extend_from_slice(&weight.to_be_bytes());
                data.extend_from_slice(&port.to_be_bytes());
                data.extend_from_slice(&dns_name(target));
                data
            }
            DnsRecord::A(ip) => ip.octets().to_vec(),
        }
    }
}

/// A DNS server on 127.0.0.1 (UDP) answering from `records` (name without trailing dot, record):
/// a question whose name and type match gets those records, any other NOERROR without answers
/// (NODATA). Runs until the test ends.
pub async fn dns_stub(records: Vec<(&str, DnsRecord)>) -> std::net::SocketAddr {
    let records: Vec<(String, DnsRecord)> = records
        .into_iter()
        .map(|(name, record)| (name.to_ascii_lowercase(), record))
        .collect();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = [0u8; 1500];
        while let Ok((length, from)) = socket.recv_from(&mut buffer).await {
            if let Some(answer) = stub_answer(&records, &buffer[..length]) {
                let _ = socket.send_to(&answer, from).await;
            }
        }
    });
    address
}

/// `name` as DNS labels (RFC 1035 section 3.1), root label included.
fn dns_name(name: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        bytes.push(label.len() as u8);
        bytes.extend_from_slice(label.as_bytes());
    }
    bytes.push(0);
    bytes
}

/// The answer of [`dns_stub`] to `query` (RFC 1035 section 4.1).
fn stub_answer(records: &[(String, DnsRecord)], query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let mut labels = Vec::new();
    let mut end = 12;
    loop {
        let length = usize::from(*query.get(end)?);
        end += 1;
        if length == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(end..end + length)?).to_ascii_lowercase());
        end += length;
    }
    let name = labels.join(".");
    let kind = u16::from_be_bytes([*query.get(end)?, *query.get(end + 1)?]);
    let question = query.get(12..end + 4)?;
    let found: Vec<&DnsRecord> = records
        .iter()
        .filter(|(n, r)| *n == name && r.kind() == kind)
        .map(|(_, r)| r)
        .collect();
    let recursion_desired = header[2] & 0x01;
    // QR, AA and RD as asked; RA, NOERROR; one question and the records found.
    let mut answer = vec![header[0], header[1], 0x84 | recursion_desired, 0x80];
    answer.extend_from_slice(&[0, 1]);
    answer.extend_from_slice(&(found.len() as u16).to_be_bytes());
    answer.extend_from_slice(&[0, 0, 0, 0]);
    answer.extend_from_slice(question);
    for record in found {
        let data = record.rdata();
        // The owner name points at the question's (offset 12), class IN, TTL 60.
        answer.extend_from_slice(&[0xC0, 0x0C]);
        answer.extend_from_slice(&kind.to_be_bytes());
        answer.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        answer.extend_from_slice(&(data.len() as u16).to_be_bytes());
        answer.extend_from_slice(&data);
    }
    Some(answer)
}

/// A server hosting `me` that finds its peers through DNS at `nameserver` (no static addresses),
/// with a certificate from `ca` and trusting it: SASL EXTERNAL with any peer `ca` certified.
pub async fn federated_server_resolving(
    ca: &TestCa,
    me: &Listening,
    nameserver: std::net::SocketAddr,
) -> TestServer {
    let domain = &me.domain;
    let (cert, key) = ca.issue(domain);
    let toml = format!(
        "[[tls.certificates]]\ndomain = \"{domain}\"\ncert = \"{{dir}}/server.crt\"\n\
         key = \"{{dir}}/server.key\"\n[s2s]\nlisten = \"127.0.0.1:{}\"\n\
         nameserver = \"{nameserver}\"\nca_files = [\"{{dir}}/ca.pem\"]\n",
        me.port
    );
    TestServer::builder()
        .env("HERALD_SERVER__DOMAINS", &format!("[\"{domain}\"]"))
        .file("ca.pem", &ca.pem)
        .file("server.crt", &cert)
        .file("server.key", &key)
        .client_trust("ca.pem")
        .toml(&toml)
        .start()
        .await
}

/// A peer server driven by hand over a real socket: STARTTLS with a client certificate, SASL EXTERNAL,
/// then raw XML out and elements in.
pub struct S2sPeer {
    stream: XmlStream<Transport<TcpStream>>,
    /// The id the server gave the current stream (what dialback keys are made for).
    pub stream_id: String,
}

impl S2sPeer {
    /// Connects to `server`'s s2s port as `from` (presenting `certificate` and `key`, PEM, and trusting
    /// `ca`), and authenticates with SASL EXTERNAL. Panics if any step fails.
    pub async fn external(
        server: &TestServer,
        from: &str,
        ca: &TestCa,
        certificate: (String, String),
    ) -> S2sPeer {
        let (mut peer, features) = S2sPeer::starttls(server, from, ca, certificate).await;
        let mechanisms = features
            .get_child("mechanisms", ns::SASL)
            .expect("EXTERNAL offered");
        assert!(mechanisms.children().any(|m| m.text() == "EXTERNAL"));
        peer.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
            .await;
        let success = peer.recv().await;
        assert!(success.is("success", ns::SASL), "{success:?}");
        peer.stream.reset();
        let to = server.domain().to_string();
        peer.stream_id = open(&mut peer.stream, from, &to).await.0;
        peer
    }

    /// Connects to `server`'s s2s port as `from`, STARTTLS presenting `certificate` (PEM certificate and
    /// key) and trusting `ca`; returns the peer and the features of the stream over TLS.
    pub async fn starttls(
        server: &TestServer,
        from: &str,
        ca: &TestCa,
        certificate: (String, String),
    ) -> (S2sPeer, Element) {
        let to = server.domain().to_string();
        let socket = within(TcpStream::connect(server.s2s_address()))
            .await
            .unwrap();
        let mut stream = XmlStream::new(Transport::Plain(socket), limits());
        open(&mut stream, from, &to).await;
        stream
            .send_raw("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await
            .unwrap();
        let proceed = next(&mut stream).await;
        assert!(proceed.is("proceed", ns::TLS), "{proceed:?}");
        let plain = stream.into_inner().unwrap();
        let config = client_config(ca, certificate);
        let tls =
            within(plain.connect_tls(Arc::new(config), ServerName::try_from(to.clone()).unwrap()))
                .await
                .unwrap();
        let mut stream = XmlStream::new(tls, limits());
        let (stream_id, features) = open(&mut stream, from, &to).await;
        (S2sPeer { stream, stream_id }, features)
    }

    /// Writes raw XML (or garbage) as is.
    pub async fn send(&mut self, xml: &str) {
        self.stream.send_raw(xml).await.unwrap();
    }

    /// The next element; panics on timeout or end of stream.
    pub async fn recv(&mut self) -> Element {
        next(&mut self.stream).await
    }

    /// Waits for a stream error and returns its condition.
    pub async fn expect_stream_error(&mut self) -> String {
        loop {
            match within(self.stream.next()).await {
                Ok(Frame::Element(e)) if e.is("error", ns::STREAMS) => {
                    return e
                        .children()
                        .find(|c| c.ns() == ns::STREAM_ERRORS)
                        .map(|c| c.name().to_string())
                        .unwrap_or_default();
                }
                Ok(Frame::Element(_)) => continue,
                other => panic!("expected a stream error, got {other:?}"),
            }
        }
    }
}

/// Sends our header, reads the server's; returns its stream id and the features.
async fn open(
    stream: &mut XmlStream<Transport<TcpStream>>,
    from: &str,
    to: &str,
) -> (String, Element) {
    let header = StreamHeader {
        to: Some(to.to_string()),
        from: Some(from.to_string()),
        version: Some("1.0".into()),
        default_ns: ns::SERVER.into(),
        ..StreamHeader::default()
    };
    stream.send_header(&header).await.unwrap();
    let theirs = within(stream.read_header()).await.unwrap();
    let features = next(stream).await;
    assert!(features.is("features", ns::STREAMS), "{features:?}");
    (theirs.id.unwrap_or_default(), features)
}

async fn next(stream: &mut XmlStream<Transport<TcpStream>>) -> Element {
    match within(stream.next()).await {
        Ok(Frame::Element(element)) => element,
        other => panic!("expected an element, got {other:?}"),
    }
}

fn client_config(ca: &TestCa, (cert, key): (String, String)) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap()
}

fn limits() -> Limits {
    Limits::default()
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .expect("timed out")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel hands out ephemeral ports for `:0` binds and outbound connections, so a port from
    /// that range can be taken by another test before the server binds it.
    #[test]
    fn free_ports_come_from_below_the_ephemeral_range_and_differ() {
        let Some((low, count)) = ports_below_ephemeral_range() else {
            return; // not Linux: the kernel's ports are all there is
        };
        let ports: Vec<u16> = (0..16).map(|_| free_port()).collect();
        for port in &ports {
            assert!(
                (low..low + count).contains(&u32::from(*port)),
                "{port} outside {low}..{}",
                low + count
            );
        }
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }
}
