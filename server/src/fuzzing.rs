//! Entry points for the fuzz targets in `server/fuzz` and for the corpus replay test: the parser production
//! runs, with production's limits, and the envelope check production applies to every stanza. Kept in the
//! crate so that `cargo test` exercises exactly what the fuzzers call. Not a stable API.
//!
//! Both entry points panic only when an invariant breaks: a stream error is an expected outcome.

use crate::xmpp::fuzzing::{ScriptedPeer, check_error_reply, check_round_trip, reparse, serialise};
use crate::xmpp::stanza::error_reply;
use crate::xmpp::stream::{Frame, XmlStream};
use crate::xmpp::{Addressing, DefinedCondition, Envelope, EnvelopeError, Jid, error_type_for};
use crate::xmpp::{Element, Limits, StreamErrorCondition, ns};

/// At most this many frames are examined per input, to keep each fuzz run short.
const MAX_FRAMES: usize = 64;

/// The first byte's high bit: the first element counts as a successful authentication, after which the
/// stream restarts with the full limits, as `c2s::negotiation` does (RFC 6120 section 6.4.6).
const AUTHENTICATES: u8 = 0x80;

/// The limits of an authenticated client stream with the default configuration (`[limits]` defaults are
/// these constants).
fn authenticated_limits() -> Limits {
    Limits::default()
}

/// Fuzz target `framing`: what a client sends from the very first byte of a connection (header included),
/// framed under the pre-authentication limits production starts with. The first byte's low seven bits
/// pick the read size; its high bit ([`AUTHENTICATES`]) treats the first element as a successful SASL
/// exchange, so the rest is a restarted stream under the full limits.
pub fn framing(data: &[u8]) {
    framing_outcome(data);
}

/// [`framing`], returning the stream error condition the stream ended with, if any.
fn framing_outcome(data: &[u8]) -> Option<StreamErrorCondition> {
    let (&first, rest) = data.split_first()?;
    let chunk = usize::from(first & !AUTHENTICATES).max(1);
    let authenticates = first & AUTHENTICATES != 0;
    let peer = ScriptedPeer::chunked(rest, chunk);
    futures::executor::block_on(async move {
        let mut stream = XmlStream::new(peer, authenticated_limits().before_auth());
        let header = match stream.read_header().await {
            Ok(header) => header,
            Err(e) => return e.condition(),
        };
        if authenticates {
            match stream.next().await {
                Ok(Frame::Element(element)) => check_element(element, &header.default_ns),
                Ok(Frame::End) => return None,
                Err(e) => return e.condition(),
            }
            stream.reset();
            stream.set_limits(authenticated_limits());
            let header = match stream.read_header().await {
                Ok(header) => header,
                Err(e) => return e.condition(),
            };
            run_frames(&mut stream, &header.default_ns).await
        } else {
            run_frames(&mut stream, &header.default_ns).await
        }
    })
}

/// Fuzz target `stanza`: the bytes follow a fixed `jabber:client` stream header on an authenticated stream,
/// so the fuzzer spends its time inside stanzas, each through the envelope check a session applies.
pub fn stanza(data: &[u8]) {
    stanza_outcome(data);
}

/// [`stanza`], returning the stream error condition the stream ended with, if any.
fn stanza_outcome(data: &[u8]) -> Option<StreamErrorCondition> {
    let mut input = b"<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
        .to_vec();
    input.extend_from_slice(data);
    let peer = ScriptedPeer::chunked(&input, 4096);
    futures::executor::block_on(async move {
        let mut stream = XmlStream::new(peer, authenticated_limits());
        let header = match stream.read_header().await {
            Ok(header) => header,
            Err(e) => return e.condition(),
        };
        run_frames(&mut stream, &header.default_ns).await
    })
}

/// Frames until the end, an error (its condition is returned) or [`MAX_FRAMES`].
async fn run_frames(
    stream: &mut XmlStream<ScriptedPeer>,
    stream_ns: &str,
) -> Option<StreamErrorCondition> {
    for _ in 0..MAX_FRAMES {
        match stream.next().await {
            Ok(Frame::Element(element)) => check_element(element, stream_ns),
            Ok(Frame::End) => return None,
            Err(e) => return e.condition(),
        }
    }
    None
}

/// Invariants for every element: the XML layer's round trip, then what `c2s::session` does with it.
fn check_element(element: Element, stream_ns: &str) {
    check_round_trip(&element, stream_ns);
    match Addressing::read(&element) {
        Ok(addressing) => {
            let mut envelope = Envelope::from_parts(element, addressing);
            // The server stamps the sender (RFC 6120 section 8.1.2.1) and writes the stanza to the
            // recipient's stream: the result must parse back.
            let stamped: Jid = Jid::new("fuzz@localhost/r").expect("a valid JID");
            envelope.set_from(&stamped);
            let written = reparse(&envelope.element, ns::CLIENT);
            assert_eq!(written, envelope.element);
            let _ = serialise(&envelope.element, ns::SERVER);
            let condition = DefinedCondition::ServiceUnavailable;
            let reply = envelope.error_reply(condition, Some("fuzz <&>"));
            check_error_reply(&envelope.element, reply.as_ref());
        }
        // The session ends the stream (RFC 6120 section 4.9.3.24): nothing more to check.
        Err(EnvelopeError::NotAStanza(_)) => {}
        // The session answers with a stanza error built from the element as received.
        Err(EnvelopeError::MalformedJid { .. } | EnvelopeError::BadRequest(_)) => {
            let condition = DefinedCondition::BadRequest;
            let reply = error_reply(
                &element,
                error_type_for(&condition),
                condition,
                Some("fuzz <&>"),
            );
            check_error_reply(&element, reply.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    //! Replays the checked-in fuzz seed corpus (`server/fuzz/corpus`) through the entry points, so
    //! `cargo test` runs exactly what the fuzzers run, including every past crash turned regression.

    use std::path::Path;

    use crate::xmpp::StreamErrorCondition;

    /// Seeds named after the resource findings of issue 10: each is an input shape the limits must stop.
    const LIMIT_SHAPES: [&str; 6] = [
        "many_children",
        "many_attributes",
        "huge_header",
        "deep",
        "long_namespace",
        "header_inside_stream",
    ];

    /// Runs every seed of `target`; seeds named after a finding's shape must end in `policy-violation`.
    /// Returns how many seeds ran and how many of them were shapes.
    fn replay(target: &str, run: fn(&[u8]) -> Option<StreamErrorCondition>) -> (usize, usize) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let (mut count, mut shapes) = (0, 0);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = run(&data);
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if LIMIT_SHAPES.iter().any(|shape| name.contains(shape)) {
                // A second header inside the stream (`header_inside_stream`) would be
                // unsupported-stanza-type, but its hundred attributes are refused first.
                assert_eq!(
                    outcome,
                    Some(StreamErrorCondition::PolicyViolation),
                    "{name}"
                );
                shapes += 1;
            }
            count += 1;
        }
        (count, shapes)
    }

    #[test]
    fn framing_corpus_replays() {
        let (count, shapes) = replay("framing", super::framing_outcome);
        assert!(count >= 5 && shapes >= 9, "{count} seeds, {shapes} shapes");
    }

    #[test]
    fn stanza_corpus_replays() {
        let (count, shapes) = replay("stanza", super::stanza_outcome);
        assert!(count >= 5 && shapes >= 5, "{count} seeds, {shapes} shapes");
    }
}
