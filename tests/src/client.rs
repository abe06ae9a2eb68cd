//! `TestClient`: a small XMPP client over a real socket (RFC 6120 sections 4 to 7): TCP, STARTTLS or
//! XEP-0368 direct TLS (trusting the server's generated certificate), SASL PLAIN or SCRAM-SHA-256, resource
//! binding, then raw XML out and parsed elements in, always with a timeout. The server's stream is parsed
//! with Herald's own `XmlStream`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use herald::xmpp::stream::{Frame, StreamHeader, XmlStream};
use herald::xmpp::{Limits, StreamError, ns};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::server::TestServer;
use crate::xml;
use crate::{DOMAIN, Element, TIMEOUT};

/// Any byte transport: plain TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Stream = XmlStream<Box<dyn Io>>;

/// What the server sent next.
#[derive(Debug)]
pub enum Incoming {
    Element(Element),
    /// `</stream:stream>`.
    End,
    /// The connection ended (EOF) or the server's XML could not be parsed.
    Failed(StreamError),
}

/// One client connection.
pub struct TestClient {
    stream: Option<Stream>,
    certificate: std::path::PathBuf,
    /// The `<stream:features/>` of the last stream opened.
    pub features: Element,
    /// The `id` of the server's last stream header.
    pub stream_id: String,
    /// The full JID bound, once bound.
    pub jid: String,
    /// The ALPN protocol agreed in the TLS handshake, if any.
    pub alpn: Option<Vec<u8>>,
    /// The RFC 9266 tls-exporter channel binding of the TLS session, when it is TLS 1.3.
    pub tls_exporter: Option<Vec<u8>>,
    /// The server's domain: the stream's `to`, the TLS server name ([`DOMAIN`] unless the server hosts
    /// another).
    pub domain: String,
    next_id: u32,
}

impl TestClient {
    /// A TCP connection to the c2s port with nothing sent yet.
    pub async fn tcp(server: &TestServer) -> TestClient {
        let socket = within("TCP connect", TcpStream::connect(server.c2s_address()))
            .await
            .unwrap();
        TestClient::over(Box::new(socket), &server.certificate()).for_domain(server.domain())
    }

    /// A TCP connection to the c2s port at `address`, trusting `certificate`, with nothing sent yet (for
    /// a server that is not a [`TestServer`], such as a `herald` process).
    pub async fn tcp_to(address: std::net::SocketAddr, certificate: &Path) -> TestClient {
        let socket = within("TCP connect", TcpStream::connect(address))
            .await
            .unwrap();
        TestClient::over(Box::new(socket), certificate)
    }

    /// A TCP connection to the c2s port from the local address `source` (such as 127.0.0.2, so a test can
    /// stand for several peers), with nothing sent yet.
    pub async fn tcp_from(server: &TestServer, source: IpAddr) -> TestClient {
        let socket = connect_from(server.c2s_address(), source).await;
        TestClient::over(Box::new(socket), &server.certificate()).for_domain(server.domain())
    }

    /// [`TestClient::tcp_from`], then the first stream opened (its features are in `features`).
    pub async fn connect_plain_from(server: &TestServer, source: IpAddr) -> TestClient {
        let mut client = TestClient::tcp_from(server, source).await;
        client.open_stream().await;
        client
    }

    /// TCP, then the first stream opened (its features are in `features`).
    pub async fn connect_plain(server: &TestServer) -> TestClient {
        let mut client = TestClient::tcp(server).await;
        client.open_stream().await;
        client
    }

    /// TCP, stream, STARTTLS, and the stream opened again over TLS.
    pub async fn connect_starttls(server: &TestServer) -> TestClient {
        let mut client = TestClient::connect_plain(server).await;
        client.starttls().await;
        client
    }

    /// XEP-0368 direct TLS with ALPN `xmpp-client`, and the first stream opened.
    pub async fn connect_direct_tls(server: &TestServer) -> TestClient {
        let socket = within(
            "TCP connect",
            TcpStream::connect(server.direct_tls_address()),
        )
        .await
        .unwrap();
        let (tls, alpn, exporter) = tls_handshake(
            &server.certificate(),
            server.domain(),
            Box::new(socket),
            true,
        )
        .await;
        let mut client = TestClient::over(tls, &server.certificate()).for_domain(server.domain());
        client.alpn = alpn;
        client.tls_exporter = exporter;
        client.open_stream().await;
        client
    }

    fn over(io: Box<dyn Io>, certificate: &Path) -> TestClient {
        TestClient {
            stream: Some(XmlStream::new(io, client_limits())),
            certificate: certificate.to_path_buf(),
            features: Element::builder("features", ns::STREAMS).build(),
            stream_id: String::new(),
            jid: String::new(),
            alpn: None,
            tls_exporter: None,
            domain: DOMAIN.to_string(),
            next_id: 0,
        }
    }

    fn for_domain(mut self, domain: &str) -> TestClient {
        self.domain = domain.to_string();
        self
    }

    fn stream(&mut self) -> &mut Stream {
        self.stream.as_mut().expect("stream present")
    }

    /// Sends our header to the server's domain, reads the server's header and its features.
    pub async fn open_stream(&mut self) -> &Element {
        let domain = self.domain.clone();
        self.send_header(&domain).await;
        self.read_header().await;
        self.features = self
            .expect("stream features", |e| e.is("features", ns::STREAMS))
            .await;
        &self.features
    }

    /// Sends `<stream:stream to=... version='1.0' xmlns='jabber:client'>`.
    pub async fn send_header(&mut self, to: &str) {
        let header = StreamHeader {
            to: Some(to.to_string()),
            version: Some("1.0".into()),
            default_ns: ns::CLIENT.into(),
            ..StreamHeader::default()
        };
        self.stream().send_header(&header).await.unwrap();
    }

    /// Reads the server's stream header and remembers its id.
    pub async fn read_header(&mut self) -> StreamHeader {
        let header = within("server stream header", self.stream().read_header())
            .await
            .unwrap();
        self.stream_id = header.id.clone().unwrap_or_default();
        header
    }

    /// RFC 6120 section 5.4: `<starttls/>`, `<proceed/>`, the TLS handshake, and the stream opened again.
    pub async fn starttls(&mut self) {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        self.expect("<proceed/>", |e| e.is("proceed", ns::TLS))
            .await;
        let plain = self
            .stream
            .take()
            .expect("stream present")
            .into_inner()
            .unwrap();
        let (tls, alpn, exporter) =
            tls_handshake(&self.certificate, &self.domain, plain, false).await;
        self.alpn = alpn;
        self.tls_exporter = exporter;
        self.stream = Some(XmlStream::new(tls, client_limits()));
        self.open_stream().await;
    }

    /// SASL PLAIN (RFC 4616) then the stream restart. `Err` carries the `<failure/>` condition name.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<(), String> {
        let message = BASE64.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{message}</auth>"
        ))
        .await;
        let outcome = self
            .expect("<success/> or <failure/>", |e| {
                e.is("success", ns::SASL) || e.is("failure", ns::SASL)
            })
            .await;
        self.finish_sasl(outcome).await.map(|_| ())
    }

    /// Ends a SASL exchange on `<success/>` (stream restart) or `<failure/>` (its condition as `Err`).
    /// Returns the success's additional data.
    pub(crate) async fn finish_sasl(&mut self, outcome: Element) -> Result<Vec<u8>, String> {
        if outcome.is("failure", ns::SASL) {
            let condition = outcome
                .children()
                .find(|c| c.ns() == ns::SASL && c.name() != "text")
                .map(|c| c.name().to_string())
                .unwrap_or_default();
            return Err(condition);
        }
        let data = BASE64.decode(outcome.text().trim()).unwrap_or_default();
        // RFC 6120 section 6.4.6: a new stream over the same connection, parsed from scratch.
        self.stream().reset();
        self.open_stream().await;
        Ok(data)
    }

    /// Forgets the server's stream state after a SASL success without opening the new stream, for tests
    /// that write the restarted stream's header themselves (RFC 6120 section 6.4.6).
    pub fn reset_stream(&mut self) {
        self.stream().reset();
    }

    /// Enables XEP-0198 stream management with resumption (section 5) and returns the resumption id.
    pub async fn enable_resumption(&mut self) -> String {
        self.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
            .await;
        let enabled = self.expect("<enabled/>", |e| e.is("enabled", ns::SM)).await;
        enabled.attr("id").expect("a resumption id").to_string()
    }

    /// Resource binding (RFC 6120 section 7). `None` asks the server to generate the resource.
    pub async fn bind(&mut self, resource: Option<&str>) -> String {
        let payload = match resource {
            Some(r) => format!(
                "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{r}</resource></bind>"
            ),
            None => "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>".to_string(),
        };
        let result = self.iq_result("set", None, &payload).await;
        self.jid = result
            .get_child("bind", ns::BIND)
            .and_then(|b| b.get_child("jid", ns::BIND))
            .map(Element::text)
            .expect("bind result carries the jid");
        self.jid.clone()
    }

    /// The bare JID bound.
    pub fn bare(&self) -> &str {
        self.jid.split('/').next().unwrap_or_default()
    }

    /// Writes raw XML as is.
    pub async fn send(&mut self, xml: &str) {
        self.stream().send_raw(xml).await.unwrap();
    }

    /// Writes raw bytes as is (for invalid UTF-8).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let io = self.stream().get_mut();
        io.write_all(bytes).await.unwrap();
        io.flush().await.unwrap();
    }

    /// Writes raw bytes and reports how the write went instead of panicking: for peers the server may cut
    /// off in the middle of what they send.
    pub async fn try_send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let io = self.stream().get_mut();
        io.write_all(bytes).await?;
        io.flush().await
    }

    /// Sends a chat message with `body` to `to`.
    pub async fn chat(&mut self, to: &str, body: &str) {
        self.send(&format!(
            "<message to='{to}' type='chat'><body>{body}</body></message>"
        ))
        .await;
    }

    /// Sends available presence (initial presence the first time) with an optional priority and waits for
    /// the server to echo it back to this resource (RFC 6121 section 4.2.2).
    pub async fn available(&mut self, priority: Option<i8>) {
        match priority {
            Some(p) => {
                self.send(&format!("<presence><priority>{p}</priority></presence>"))
                    .await
            }
            None => self.send("<presence/>").await,
        }
        let me = self.jid.clone();
        self.expect("own presence echoed", |e| {
            e.is("presence", ns::CLIENT)
                && e.attr("from") == Some(me.as_str())
                && e.attr("type").is_none()
        })
        .await;
    }

    /// Roster get (RFC 6121 section 2.1.3); returns the result.
    pub async fn roster_get(&mut self) -> Element {
        self.iq_result("get", None, "<query xmlns='jabber:iq:roster'/>")
            .await
    }

    /// A fresh stanza id.
    pub fn id(&mut self) -> String {
        self.next_id += 1;
        format!("t{}", self.next_id)
    }

    /// Sends an IQ of `kind` with `payload` and returns the response with the same id (result or error).
    pub async fn iq(&mut self, kind: &str, to: Option<&str>, payload: &str) -> Element {
        let id = self.id();
        let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
        self.send(&format!("<iq type='{kind}' id='{id}'{to}>{payload}</iq>"))
            .await;
        self.expect(&format!("response to IQ {id}"), |e| {
            e.is("iq", ns::CLIENT)
                && e.attr("id") == Some(id.as_str())
                && matches!(e.attr("type"), Some("result" | "error"))
        })
        .await
    }

    /// Like [`Self::iq`] but the response must be a result.
    pub async fn iq_result(&mut self, kind: &str, to: Option<&str>, payload: &str) -> Element {
        let response = self.iq(kind, to, payload).await;
        assert_eq!(
            response.attr("type"),
            Some("result"),
            "IQ {payload} failed: {}",
            xml::show(&response)
        );
        response
    }

    /// Waits for a message with `body`, then checks with [`Self::barrier`] that no second copy follows
    /// (a stanza delivered exactly once, XEP-0198 section 5).
    pub async fn expect_body_once(&mut self, body: &str) {
        self.expect("the message", |e| {
            e.name() == "message" && xml::body(e).as_deref() == Some(body)
        })
        .await;
        let after = self.barrier().await;
        assert!(
            !after.iter().any(|e| xml::body(e).as_deref() == Some(body)),
            "delivered once: {after:?}"
        );
    }

    /// The vcard-temp of `to` (the own account when `None`) as the server answers it (XEP-0054).
    pub async fn vcard(&mut self, to: Option<&str>) -> Element {
        let result = self
            .iq_result("get", to, "<vCard xmlns='vcard-temp'/>")
            .await;
        result
            .get_child("vCard", ns::VCARD)
            .cloned()
            .unwrap_or_else(|| panic!("no vCard in {}", xml::show(&result)))
    }

    /// Publishes `payload` as item `id` of the own account's PEP `node` (XEP-0163 section 3) and
    /// waits for the result.
    pub async fn pep_publish(&mut self, node: &str, id: &str, payload: &str) {
        self.iq_result(
            "set",
            None,
            &format!(
                "<pubsub xmlns='{}'><publish node='{node}'><item id='{id}'>{payload}</item></publish></pubsub>",
                ns::PUBSUB
            ),
        )
        .await;
    }

    /// Pings the server and returns everything that arrived before the answer. Since the server handles one
    /// client's stanzas in order and session queues are FIFO, anything already routed to us is in the list.
    pub async fn barrier(&mut self) -> Vec<Element> {
        let id = self.id();
        let domain = self.domain.clone();
        self.send(&format!(
            "<iq type='get' id='{id}' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
        let mut before = Vec::new();
        loop {
            let element = self.recv().await;
            if element.is("iq", ns::CLIENT) && element.attr("id") == Some(id.as_str()) {
                assert_eq!(element.attr("type"), Some("result"), "ping answered");
                return before;
            }
            before.push(element);
        }
    }

    /// Asserts nothing matching `what` arrives before a barrier.
    pub async fn assert_none(&mut self, what: &str, matches: impl Fn(&Element) -> bool) {
        let early = self.barrier().await;
        if let Some(e) = early.iter().find(|e| matches(e)) {
            panic!("{} got unexpected {what}: {}", self.jid, xml::show(e));
        }
    }

    /// What the server sends next, or `None` after `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Incoming> {
        let next = tokio::time::timeout(timeout, self.stream().next())
            .await
            .ok()?;
        Some(match next {
            Ok(Frame::Element(e)) => Incoming::Element(e),
            Ok(Frame::End) => Incoming::End,
            Err(e) => Incoming::Failed(e),
        })
    }

    /// The next element; panics on timeout or end of stream.
    pub async fn recv(&mut self) -> Element {
        match self.next_within(TIMEOUT).await {
            Some(Incoming::Element(e)) => e,
            other => panic!("{}: expected an element, got {other:?}", self.jid),
        }
    }

    /// The first element matching `matches`, skipping others; panics (listing what was skipped) on
    /// timeout or end of stream.
    pub async fn expect(&mut self, what: &str, matches: impl Fn(&Element) -> bool) -> Element {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(Incoming::Element(e)) if matches(&e) => return e,
                Some(Incoming::Element(e)) => skipped.push(xml::show(&e)),
                other => panic!(
                    "{} waiting for {what}: got {other:?}; skipped {skipped:#?}",
                    self.jid
                ),
            }
        }
    }

    /// Waits for `<stream:error>` (skipping stanzas), asserts its condition, then the end of the stream.
    pub async fn expect_stream_error(&mut self, condition: &str) {
        assert_eq!(self.expect_any_stream_error().await, condition);
    }

    /// Waits for `<stream:error>` (skipping stanzas) and the end of the stream; returns the condition.
    pub async fn expect_any_stream_error(&mut self) -> String {
        let error = self
            .expect("a stream error", |e| e.is("error", ns::STREAMS))
            .await;
        let condition = xml::stream_error_condition(&error)
            .unwrap_or_else(|| panic!("no condition in {}", xml::show(&error)));
        self.expect_end().await;
        condition
    }

    /// Asserts the next thing from the server is `</stream:stream>` (or EOF right after it).
    pub async fn expect_end(&mut self) {
        match self.next_within(TIMEOUT).await {
            Some(Incoming::End) => {}
            other => panic!(
                "{}: expected the end of the stream, got {other:?}",
                self.jid
            ),
        }
    }

    /// Sends our closing tag and asserts the server answers with its own (RFC 6120 section 4.4),
    /// skipping whatever stanzas it still writes before it.
    pub async fn close_and_wait_for_end(mut self) {
        let _ = self.stream().send_raw("</stream:stream>").await;
        loop {
            match self.next_within(TIMEOUT).await {
                Some(Incoming::End) => return,
                Some(Incoming::Element(_)) => {}
                other => panic!(
                    "{}: expected the server's closing tag, got {other:?}",
                    self.jid
                ),
            }
        }
    }

    /// Closes our side of the stream politely (`</stream:stream>`).
    pub async fn close(mut self) {
        let _ = self.stream().send_raw("</stream:stream>").await;
        let _ = self.stream().get_mut().shutdown().await;
    }
}

/// A TLS client handshake for `domain`, trusting only `certificate` (the server's generated one, or the
/// test CA).
async fn tls_handshake(
    certificate: &Path,
    domain: &str,
    io: Box<dyn Io>,
    offer_alpn: bool,
) -> (Box<dyn Io>, Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certificate).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if offer_alpn {
        config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(domain.to_string()).unwrap();
    let tls = within("TLS handshake", connector.connect(name, io))
        .await
        .unwrap();
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    // RFC 9266: the tls-exporter channel binding, defined for TLS 1.3 only.
    let exporter = (tls.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
        .then(|| {
            tls.get_ref()
                .1
                .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                .ok()
        })
        .flatten()
        .map(|bytes| bytes.to_vec());
    (Box::new(tls), alpn, exporter)
}

/// A TCP connection to `server` from the local address `source` (any of 127.0.0.0/8 works on Linux).
pub async fn connect_from(server: SocketAddr, source: IpAddr) -> TcpStream {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    within("TCP connect", socket.connect(server)).await.unwrap()
}

/// The client accepts more than the server so that the server's own limits are what is tested.
fn client_limits() -> Limits {
    Limits {
        max_stanza_bytes: 16 * 1024 * 1024,
        max_depth: 256,
        max_elements: usize::MAX,
        max_attributes: usize::MAX,
        max_parsed_bytes: usize::MAX,
    }
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
