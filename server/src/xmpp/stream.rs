//! `XmlStream`: one XML stream over any byte transport (RFC 6120 section 4): the stream header,
//! framing of first-level elements, stream errors and closing, and restarts for STARTTLS and SASL.
//!
//! The transport is any `AsyncRead + AsyncWrite`; nothing is spawned. Reading is cancel-safe (see
//! [`XmlStream::next`]); writing serialises with `writer`, which escapes all character data.

use std::borrow::Cow;
use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::error::{StreamError, StreamErrorCondition};
use super::framer::Framer;
use super::markup::{Opened, Scope};
use super::packed::WireStanza;
use super::token::is_xml_whitespace;
use super::{Element, Limits, ns, writer};

/// Bytes requested from the transport per read. The chunk lives on the stack only while the read is
/// polled (see `fill`), so its size costs nothing per idle stream.
const READ_CHUNK_BYTES: usize = 4096;

/// A stream's namespace without an allocation when it is one of the usual three: every stream keeps two
/// (ours and the peer's) for its whole life.
fn known_or_owned(namespace: &str) -> Cow<'static, str> {
    match namespace {
        ns::CLIENT => Cow::Borrowed(ns::CLIENT),
        ns::SERVER => Cow::Borrowed(ns::SERVER),
        ns::COMPONENT_ACCEPT => Cow::Borrowed(ns::COMPONENT_ACCEPT),
        other => Cow::Owned(other.to_owned()),
    }
}

/// The attributes of a `<stream:stream>` open tag (RFC 6120 section 4.7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// `to`: the domain the initiator wants to reach.
    pub to: Option<String>,
    /// `from`: the sender's JID or domain.
    pub from: Option<String>,
    /// `id`: the stream id, set only by the receiving entity.
    pub id: Option<String>,
    /// `version`: `1.0` for RFC 6120 streams; absent means a pre-RFC 3920 peer.
    pub version: Option<String>,
    /// `xml:lang`: the default language of human-readable text in the stream.
    pub lang: Option<String>,
    /// The default namespace declared on the header (`jabber:client`, `jabber:server`, ...), or `""`
    /// if none was declared. The caller decides whether it is acceptable (RFC 6120 section 4.8.2).
    pub default_ns: String,
}

impl StreamHeader {
    /// Build from the decoded open tag. The stream namespace is checked here; the content namespace
    /// is the caller's (RFC 6120 sections 4.8.1 and 4.9.3.10).
    pub(crate) fn from_opened(opened: &Opened, scope: &Scope) -> Result<Self, StreamError> {
        let element = &opened.element;
        if element.ns() != ns::STREAMS {
            return Err(StreamError::new(
                StreamErrorCondition::InvalidNamespace,
                format!("stream namespace {:?}", element.ns()),
            ));
        }
        if element.name() != "stream" || opened.is_empty {
            return Err(StreamError::new(
                StreamErrorCondition::BadFormat,
                "expected <stream:stream>",
            ));
        }
        let attr = |name: &str| element.attr(name).map(str::to_owned);
        Ok(Self {
            to: attr("to"),
            from: attr("from"),
            id: attr("id"),
            version: attr("version"),
            lang: element.attr_ns(ns::XML, "lang").map(str::to_owned),
            default_ns: scope.resolve(None, false)?,
        })
    }
}

/// One unit read from the stream after the header.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A complete first-level element: a stanza or a nonza (`<starttls/>`, `<auth/>`, `<r/>`, ...).
    Element(Element),
    /// The peer sent `</stream:stream>`. Later calls keep returning `End`.
    End,
}

/// An XML stream over the transport `S`.
#[derive(Debug)]
pub struct XmlStream<S> {
    io: S,
    framer: Framer,
    /// The default namespace of the header we sent, so stanzas in it are written without `xmlns`.
    out_ns: Option<Cow<'static, str>>,
    /// The default namespace the peer declared, used if we must open a stream only to send an error.
    peer_ns: Option<Cow<'static, str>>,
    header_sent: bool,
    /// A header queued by [`XmlStream::queue_header`], written with the next element.
    unsent_header: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> XmlStream<S> {
    /// Wrap a transport. Nothing is read or written until asked.
    pub fn new(io: S, limits: Limits) -> Self {
        Self {
            io,
            framer: Framer::new(limits),
            out_ns: None,
            peer_ns: None,
            header_sent: false,
            unsent_header: None,
        }
    }

    /// Read the peer's stream header, skipping an optional `<?xml ...?>` declaration and whitespace.
    ///
    /// Errors: `invalid-namespace` if the element is not in `http://etherx.jabber.org/streams`,
    /// `bad-namespace-prefix` for an unbound prefix, `unsupported-encoding` for a non-UTF-8 declaration,
    /// `restricted-xml` for a DOCTYPE, comment or processing instruction, `not-well-formed` for broken
    /// XML, `policy-violation` for a header over `max_stanza_bytes`, `Closed` on EOF. The version and
    /// content namespace are returned for the caller to judge. Bytes after the header stay buffered.
    pub async fn read_header(&mut self) -> Result<StreamHeader, StreamError> {
        loop {
            if let Some(header) = self.framer.poll_header()? {
                self.peer_ns = Some(known_or_owned(&header.default_ns));
                return Ok(header);
            }
            self.fill().await?;
        }
    }

    /// The next first-level element, or [`Frame::End`] when the peer closed the stream.
    ///
    /// Cancel-safe: the only `.await` is one read into the internal buffer, and all parsing state lives
    /// in `self`, so dropping this future (e.g. in `tokio::select!`) loses no data.
    ///
    /// Errors are sticky: after a stream error every call returns it again. `Closed` means EOF before
    /// `</stream:stream>`.
    pub async fn next(&mut self) -> Result<Frame, StreamError> {
        loop {
            if let Some(frame) = self.framer.poll_frame()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), StreamError> {
        self.framer.check_room()?;
        self.framer.release_if_drained();
        let (io, framer) = (&mut self.io, &mut self.framer);
        let read = poll_fn(|cx| {
            // The chunk is a local of the poll, not of the future: a waiting read (an idle session waits
            // forever) holds no buffer, and the chunk can be large enough for whole TLS records.
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK_BYTES];
            let mut buf = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
            framer.push(buf.filled());
            Poll::Ready(Ok::<_, std::io::Error>(buf.filled().len()))
        })
        .await?;
        if read == 0 {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    /// Send our stream header: `<?xml version='1.0'?><stream:stream xmlns='{default_ns}'
    /// xmlns:stream='http://etherx.jabber.org/streams' ...>` with the attributes that are set;
    /// `version` defaults to `1.0`. On `jabber:server` streams `xmlns:db` is declared too, which
    /// advertises dialback (XEP-0220 section 2.1).
    pub async fn send_header(&mut self, header: &StreamHeader) -> std::io::Result<()> {
        let xml = writer::stream_header(header);
        self.out_ns = Some(known_or_owned(&header.default_ns));
        self.header_sent = true;
        self.send_raw(&xml).await
    }

    /// Like [`XmlStream::send_header`], but the header goes out with the next write (the features or
    /// the stream error that always follow it): one TLS record and one system call per stream
    /// (re)start instead of two. Until then it counts as sent, so an error is written after it.
    pub fn queue_header(&mut self, header: &StreamHeader) {
        self.unsent_header = Some(writer::stream_header(header));
        self.out_ns = Some(known_or_owned(&header.default_ns));
        self.header_sent = true;
    }

    /// Serialise one element and flush. Elements in the stream's default namespace are written
    /// without `xmlns`, elements in the stream namespace with the `stream:` prefix; on `jabber:server`
    /// and `jabber:component:accept` streams, `jabber:client` stanzas are written in the stream's
    /// namespace (RFC 6120 section 4.8.3). All text and attribute values are escaped.
    pub async fn send(&mut self, element: &Element) -> std::io::Result<()> {
        let xml = writer::element(element, self.out_ns.as_deref().unwrap_or(""));
        self.send_raw(&xml).await
    }

    /// Serialise several elements into one write and one flush: on TLS that is one record and one system
    /// call instead of one per stanza, which is what a busy session's queue needs.
    pub async fn send_batch(&mut self, elements: &[Element]) -> std::io::Result<()> {
        let out_ns = self.out_ns.as_deref().unwrap_or("");
        let mut xml = String::new();
        for element in elements {
            xml.push_str(&writer::element(element, out_ns));
        }
        self.send_raw(&xml).await
    }

    /// Write serialised stanzas in one write and one flush. One serialised for a stream of another default
    /// namespace than this one's is serialised again for it.
    pub async fn send_wire(&mut self, stanzas: &[WireStanza]) -> std::io::Result<()> {
        let out_ns = self.out_ns.as_deref().unwrap_or("");
        let mut xml = String::with_capacity(stanzas.iter().map(WireStanza::wire_bytes).sum());
        for stanza in stanzas {
            if out_ns == stanza.stream_ns() {
                xml.push_str(stanza.as_str());
            } else if let Some(element) = stanza.unpack() {
                xml.push_str(&writer::element(&element, out_ns));
            }
        }
        self.send_raw(&xml).await
    }

    /// Write pre-serialised XML as is and flush. The caller vouches for it.
    pub async fn send_raw(&mut self, xml: &str) -> std::io::Result<()> {
        match self.unsent_header.take() {
            Some(mut header) => {
                header.push_str(xml);
                self.io.write_all(header.as_bytes()).await?;
            }
            None => self.io.write_all(xml.as_bytes()).await?,
        }
        self.io.flush().await
    }

    /// Send `<stream:error>` with the condition and optional text, close the stream and shut down
    /// the write side (RFC 6120 section 4.9.1.1). If no header was sent yet, one is sent first, as
    /// RFC 6120 section 4.9.1.2 requires. `Io` and `Closed` errors have nothing to send: the write
    /// side is only shut down.
    pub async fn send_error(&mut self, error: &StreamError) -> std::io::Result<()> {
        let Some(condition) = error.condition() else {
            return self.io.shutdown().await;
        };
        if !self.header_sent {
            let header = StreamHeader {
                version: Some("1.0".to_owned()),
                default_ns: self.peer_ns.as_deref().unwrap_or(ns::CLIENT).to_owned(),
                ..StreamHeader::default()
            };
            self.send_header(&header).await?;
        }
        let mut xml = writer::stream_error(condition, error.text());
        xml.push_str("</stream:stream>");
        self.send_raw(&xml).await?;
        self.io.shutdown().await
    }

    /// Send `</stream:stream>` and shut down the write side (RFC 6120 section 4.4).
    pub async fn close(&mut self) -> std::io::Result<()> {
        if self.header_sent {
            self.send_raw("</stream:stream>").await?;
        }
        self.io.shutdown().await
    }

    /// Stream restart after SASL success (RFC 6120 section 6.4.6) or on a new stream after TLS: a
    /// new header must be read and sent; buffered bytes are kept, since the peer may already have
    /// sent its new header.
    pub fn reset(&mut self) {
        self.framer.reset();
        self.header_sent = false;
    }

    /// Whether `</stream:stream>` has been read.
    pub fn has_ended(&self) -> bool {
        self.framer.has_ended()
    }

    /// Applies `limits` from the next construct read on. Negotiation starts a stream with
    /// [`Limits::before_auth`] and raises them once the peer has authenticated (RFC 6120 section 13.12).
    pub fn set_limits(&mut self, limits: Limits) {
        self.framer.set_limits(limits);
    }

    /// Bytes received and not yet parsed.
    pub fn buffered(&self) -> &[u8] {
        self.framer.buffered()
    }

    /// Give back the transport for the TLS handshake after `<proceed/>` (RFC 6120 section 5.4.3.3).
    ///
    /// Errors with `policy-violation` if anything but whitespace was received after `<starttls/>`:
    /// those bytes were sent in plaintext and must not be treated as part of the TLS session
    /// (the STARTTLS command-injection class of attacks). Buffered whitespace is dropped.
    pub fn into_inner(self) -> Result<S, StreamError> {
        if self.framer.buffered().iter().all(|b| is_xml_whitespace(*b)) {
            Ok(self.io)
        } else {
            Err(StreamError::new(
                StreamErrorCondition::PolicyViolation,
                "data pipelined after <starttls/>",
            ))
        }
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The transport, mutably. Reading from it directly bypasses the framer's buffer.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }
}
