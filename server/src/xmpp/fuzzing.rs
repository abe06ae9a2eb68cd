//! Entry points for the fuzz targets in `server/fuzz` and for the corpus replay test, kept here so that
//! `cargo test` exercises exactly what the fuzzers call. Not a stable API.
//!
//! Both entry points panic only when an invariant breaks: a stream error is an expected outcome.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::framer::Framer;
use super::stanza::{Stanza, error_reply};
use super::stream::{Frame, StreamHeader, XmlStream};
use super::{Element, Limits, ns, writer};

/// At most this many frames are examined per input, to keep each fuzz run short.
const MAX_FRAMES: usize = 64;

/// An in-memory peer: serves its data in the given chunks, one chunk per read (so the framer sees
/// every kind of split), and swallows writes. Never returns `Pending`, so it runs under `block_on`.
#[derive(Debug)]
pub struct ScriptedPeer {
    chunks: std::collections::VecDeque<Vec<u8>>,
    consumed: usize,
}

impl ScriptedPeer {
    /// `data` in reads of `chunk` bytes.
    pub fn chunked(data: &[u8], chunk: usize) -> Self {
        Self {
            chunks: data.chunks(chunk.max(1)).map(<[u8]>::to_vec).collect(),
            consumed: 0,
        }
    }

    /// `data` in two reads, split after `at` bytes.
    pub fn split(data: &[u8], at: usize) -> Self {
        let (a, b) = data.split_at(at.min(data.len()));
        Self {
            chunks: [a.to_vec(), b.to_vec()].into_iter().collect(),
            consumed: 0,
        }
    }

    /// Bytes handed to the reader so far.
    pub fn consumed(&self) -> usize {
        self.consumed
    }
}

impl AsyncRead for ScriptedPeer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while let Some(chunk) = self.chunks.front_mut() {
            if chunk.is_empty() {
                self.chunks.pop_front();
                continue;
            }
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.drain(..n);
            self.consumed += n;
            break;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ScriptedPeer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Small limits so the fuzzer reaches the size and depth checks.
fn fuzz_limits() -> Limits {
    Limits {
        max_stanza_bytes: 4096,
        max_depth: 8,
    }
}

/// Fuzz target `framing`: the first byte picks the read size, the rest is what a peer sends from the
/// very first byte of the connection (header included).
pub fn framing(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    run_stream(rest.to_vec(), usize::from(chunk).max(1));
}

/// Fuzz target `stanza`: the bytes follow a fixed `jabber:client` stream header, so the fuzzer spends
/// its time inside stanzas. Every element is run through `Stanza::parse` and `error_reply`.
pub fn stanza(data: &[u8]) {
    let mut input = writer::stream_header(&StreamHeader {
        default_ns: ns::CLIENT.to_owned(),
        ..StreamHeader::default()
    })
    .into_bytes();
    input.extend_from_slice(data);
    run_stream(input, 4096);
}

fn run_stream(data: Vec<u8>, chunk: usize) {
    let peer = ScriptedPeer::chunked(&data, chunk);
    futures::executor::block_on(async move {
        let mut stream = XmlStream::new(peer, fuzz_limits());
        let Ok(header) = stream.read_header().await else {
            return;
        };
        for _ in 0..MAX_FRAMES {
            match stream.next().await {
                Ok(Frame::Element(element)) => check_element(element, &header.default_ns),
                Ok(Frame::End) | Err(_) => return,
            }
        }
    });
}

/// Invariants for every element the framer produces.
fn check_element(element: Element, stream_ns: &str) {
    // Serialising and parsing again yields the same element, with and without a stream context.
    let aliased = matches!(stream_ns, ns::SERVER | ns::COMPONENT_ACCEPT);
    for context in [stream_ns, ""] {
        if !(aliased && context == stream_ns) {
            assert_eq!(
                reparse(&element, context),
                element,
                "round trip in {context:?}"
            );
        }
    }
    // Stanza parsing, serialisation and error replies never panic, and replies are never errors answered.
    let reply = error_reply(
        &element,
        xmpp_parsers::stanza_error::ErrorType::Cancel,
        xmpp_parsers::stanza_error::DefinedCondition::BadRequest,
        Some("fuzz <&>"),
    );
    if let Some(reply) = &reply {
        assert_ne!(element.attr("type"), Some("error"));
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reparse(reply, ""), *reply);
    }
    match Stanza::parse(element) {
        Ok(stanza) => {
            let out = stanza.to_element();
            let _ = writer::element(&out, ns::SERVER);
        }
        Err(e) => {
            let _ = e.condition();
        }
    }
}

/// Serialise `element` for a stream in `stream_ns` and parse it back with a fresh framer.
pub(crate) fn reparse(element: &Element, stream_ns: &str) -> Element {
    let header = StreamHeader {
        default_ns: stream_ns.to_owned(),
        ..StreamHeader::default()
    };
    let mut framer = Framer::new(Limits {
        max_stanza_bytes: usize::MAX,
        max_depth: usize::MAX,
    });
    framer.push(writer::stream_header(&header).as_bytes());
    framer.push(writer::element(element, stream_ns).as_bytes());
    match framer.poll_header() {
        Ok(Some(_)) => {}
        other => panic!("our own header does not parse: {other:?}"),
    }
    match framer.poll_frame() {
        Ok(Some(Frame::Element(parsed))) => parsed,
        other => panic!(
            "our own serialisation does not parse: {other:?}\n{}",
            writer::element(element, stream_ns)
        ),
    }
}
