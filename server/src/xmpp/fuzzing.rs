//! Pieces of the XML layer for the fuzz entry points (`crate::fuzzing`) and for tests: an in-memory peer
//! that controls how bytes are split, and the serialise-and-parse-again invariants. Not a stable API.
//!
//! The checks panic only when an invariant breaks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::framer::Framer;
use super::stream::{Frame, StreamHeader};
use super::{Element, Limits, ns, writer};

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

/// Invariants of the XML layer for every element the framer produces: serialising and parsing again yields
/// the same element, with and without a stream context.
pub fn check_round_trip(element: &Element, stream_ns: &str) {
    let aliased = matches!(stream_ns, ns::SERVER | ns::COMPONENT_ACCEPT);
    for context in [stream_ns, ""] {
        if !(aliased && context == stream_ns) {
            assert_eq!(
                reparse(element, context),
                *element,
                "round trip in {context:?}"
            );
        }
    }
}

/// Invariants of an error reply (RFC 6120 section 8.3.1): errors are never answered, a reply is an error,
/// and it round-trips.
pub fn check_error_reply(original: &Element, reply: Option<&Element>) {
    if let Some(reply) = reply {
        assert_ne!(original.attr("type"), Some("error"));
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reparse(reply, ""), *reply);
    }
}

/// Our own serialisation of `element` on a stream in `stream_ns`, as a session writes it.
pub fn serialise(element: &Element, stream_ns: &str) -> String {
    writer::element(element, stream_ns)
}

/// Serialise `element` for a stream in `stream_ns` and parse it back with a fresh framer.
pub fn reparse(element: &Element, stream_ns: &str) -> Element {
    let header = StreamHeader {
        default_ns: stream_ns.to_owned(),
        ..StreamHeader::default()
    };
    let mut framer = Framer::new(Limits {
        max_stanza_bytes: usize::MAX,
        max_depth: usize::MAX,
        max_elements: usize::MAX,
        max_attributes: usize::MAX,
        max_parsed_bytes: usize::MAX,
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
