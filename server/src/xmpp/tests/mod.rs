//! Tests of `herald::xmpp` as a peer sees it: framing, restricted XML and limits, restarts,
//! serialisation and stanzas (RFC 6120 sections 4, 5.4.3.3, 6.4.6, 8 and 11), over in-memory
//! transports (`tokio::io::duplex` and a scripted reader that controls how bytes are split).

mod budget;
mod framing;
mod parser_boundary;
mod restricted;
mod serialize;
mod stanza;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::fuzzing::ScriptedPeer;
use super::{Element, Frame, Limits, StreamError, StreamErrorCondition, StreamHeader, XmlStream};

pub(super) const STREAMS_DECL: &str = "xmlns:stream='http://etherx.jabber.org/streams'";

/// A client's opening, with the XML declaration.
pub(super) fn client_header() -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' {STREAMS_DECL} to='example.com' \
         version='1.0' xml:lang='en'>"
    )
}

/// Everything a stream yielded after its header: the elements, then how it stopped.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) header: StreamHeader,
    pub(super) elements: Vec<Element>,
    /// `Ok(())` for `</stream:stream>`, else the error.
    pub(super) end: Result<(), StreamError>,
}

impl Outcome {
    pub(super) fn condition(&self) -> Option<StreamErrorCondition> {
        self.end.as_ref().err().and_then(StreamError::condition)
    }
}

/// Read a header and then frames until the end or an error.
pub(super) async fn drain<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut XmlStream<S>,
) -> Result<Outcome, StreamError> {
    let header = stream.read_header().await?;
    let mut elements = Vec::new();
    loop {
        match stream.next().await {
            Ok(Frame::Element(e)) => elements.push(e),
            Ok(Frame::End) => {
                return Ok(Outcome {
                    header,
                    elements,
                    end: Ok(()),
                });
            }
            Err(e) => {
                return Ok(Outcome {
                    header,
                    elements,
                    end: Err(e),
                });
            }
        }
    }
}

/// Run `input` through a stream in reads of `chunk` bytes.
pub(super) fn run_chunked(
    input: &[u8],
    chunk: usize,
    limits: Limits,
) -> Result<Outcome, StreamError> {
    let mut stream = XmlStream::new(ScriptedPeer::chunked(input, chunk), limits);
    futures::executor::block_on(drain(&mut stream))
}

/// Run `input` through a stream in one read.
pub(super) fn run(input: &str) -> Result<Outcome, StreamError> {
    run_chunked(input.as_bytes(), usize::MAX, Limits::default())
}

/// The condition `input` fails with, whether in the header or later.
pub(super) fn failure(input: &[u8], limits: Limits) -> StreamErrorCondition {
    match run_chunked(input, usize::MAX, limits) {
        Ok(outcome) => outcome
            .condition()
            .unwrap_or_else(|| panic!("no stream error: {outcome:?}")),
        Err(e) => e
            .condition()
            .unwrap_or_else(|| panic!("not a condition: {e:?}")),
    }
}

/// The condition a stream body (after a client header) fails with.
pub(super) fn body_failure(body: &str) -> StreamErrorCondition {
    failure(
        format!("{}{body}", client_header()).as_bytes(),
        Limits::default(),
    )
}

/// A duplex pair: our stream and the peer's end, which has already sent `input`.
pub(super) async fn duplex_with(
    input: &[u8],
) -> (XmlStream<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
    let (ours, mut peer) = tokio::io::duplex(1 << 20);
    peer.write_all(input).await.unwrap();
    (XmlStream::new(ours, Limits::default()), peer)
}

/// Parse one element from a string, in a client stream.
pub(super) fn element(xml: &str) -> Element {
    let outcome = run(&format!("{}{xml}", client_header())).unwrap();
    assert_eq!(outcome.elements.len(), 1, "{outcome:?}");
    outcome.elements.into_iter().next().unwrap()
}
