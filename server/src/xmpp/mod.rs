//! XMPP protocol layer (RFC 6120): bytes to typed stanzas and back, and nothing else.
//!
//! - [`stream::XmlStream`] frames an XML stream over any `AsyncRead + AsyncWrite`: it reads the stream
//!   header (RFC 6120 section 4.7), then yields one [`Element`] per first-level child, enforcing the
//!   restricted XML profile (RFC 6120 section 11) and the size and depth [`Limits`].
//! - [`stanza::Stanza`] is the typed form of `<message/>`, `<presence/>` and `<iq/>` (RFC 6120 section 8),
//!   built on `xmpp-parsers`; [`stanza::error_reply`] builds RFC 6120 section 8.3 error replies.
//! - [`error`] has the 25 stream error conditions (RFC 6120 section 4.9.3).
//! - [`limits`] advertises the limits to peers (XEP-0478).
//!
//! This module spawns nothing and touches no storage; it is tested over `tokio::io::duplex` and fuzzed
//! (see `server/fuzz`). Nothing outside it needs to know which XML tokenizer is used.

pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod ns;
pub mod packed;
pub mod stanza;
pub mod stream;

mod framer;
mod markup;
mod token;
pub(crate) mod writer;

#[cfg(test)]
mod tests;

pub use error::{StreamError, StreamErrorCondition};
pub use limits::stream_limits_feature;
pub use packed::{PackedElement, WireStanza};
pub use stanza::{Stanza, StanzaParseError, error_reply};
pub use stream::{Frame, StreamHeader, XmlStream};
pub use xmpp_parsers::jid::{BareJid, FullJid, Jid};
pub use xmpp_parsers::minidom::Element;

/// Bounds on what a peer may send on one stream (RFC 6120 section 13.12 asks servers to limit resources).
///
/// Exceeding either bound is a `policy-violation` stream error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest first-level element (stanza or nonza), in bytes as received, including its markup.
    /// The stream header is bounded by the same number.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside the stream, counting the first-level element as depth 1.
    pub max_depth: usize,
}

impl Limits {
    /// Default largest stanza: 256 KiB, as Prosody and ejabberd allow.
    pub const DEFAULT_MAX_STANZA_BYTES: usize = 262_144;
    /// Default deepest nesting.
    pub const DEFAULT_MAX_DEPTH: usize = 32;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_stanza_bytes: Self::DEFAULT_MAX_STANZA_BYTES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
        }
    }
}
