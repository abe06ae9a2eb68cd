//! XMPP protocol layer (RFC 6120): bytes to typed stanzas and back, and nothing else.
//!
//! - [`stream::XmlStream`] frames an XML stream over any `AsyncRead + AsyncWrite`: it reads the stream
//!   header (RFC 6120 section 4.7), then yields one [`Element`] per first-level child, enforcing the
//!   restricted XML profile (RFC 6120 section 11) and the size and depth [`Limits`].
//! - [`Envelope`] is the one stanza model (RFC 6120 section 8), used by the router, the features and the
//!   fuzz targets alike: the element as received, untouched, plus its parsed addressing and [`StanzaKind`];
//!   [`stanza`] has the error replies (RFC 6120 section 8.3), the attribute helpers and the one
//!   namespace-renaming rule.
//! - [`error`] has the 25 stream error conditions (RFC 6120 section 4.9.3).
//! - [`limits`] advertises the limits to peers (XEP-0478).
//!
//! This module spawns nothing and touches no storage; it is tested over `tokio::io::duplex` and fuzzed
//! (see `server/fuzz`). Nothing outside it needs to know which XML tokenizer or parser crate is used: the
//! parser's types the rest of the server needs are re-exported here, and a test
//! (`tests::parser_boundary`) fails if any file outside `server/src/xmpp/` names the parser crate.

pub mod envelope;
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

pub use envelope::{
    Addressing, Envelope, EnvelopeError, MessageKind, PresenceKind, StanzaKind, is_stanza,
};
pub use error::{StreamError, StreamErrorCondition};
pub use limits::stream_limits_feature;
pub use packed::{PackedElement, WireStanza};
pub use stanza::{
    error_reply, error_type_for, remove_attribute, renamespace, set_attribute, to_client_namespace,
    to_component_namespace, without_child,
};
pub use stream::{Frame, StreamHeader, XmlStream};
// The parser's types the rest of the server uses; nothing outside this module names the parser crate.
pub use xmpp_parsers::jid::{BareJid, FullJid, Jid};
pub use xmpp_parsers::minidom::Element;
pub use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

/// Bounds on what a peer may send on one stream (RFC 6120 section 13.12 asks servers to limit resources).
///
/// Memory is bounded by what was received, not by what it parses into: besides the wire size, each
/// first-level element has a budget of elements and of parsed bytes (names, namespaces, attributes and text
/// as the tree holds them, with a fixed overhead per node), counted while it is parsed. Exceeding any bound
/// is a `policy-violation` stream error (RFC 6120 section 4.9.3.14) and the stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest first-level element (stanza or nonza), in bytes as received, including its markup.
    /// The stream header is bounded by the same number.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside the stream, counting the first-level element as depth 1.
    pub max_depth: usize,
    /// Most elements in one first-level element, itself included.
    pub max_elements: usize,
    /// Most attributes on one element, namespace declarations included (the stream header too); also the
    /// most namespace declarations in scope at once.
    pub max_attributes: usize,
    /// Largest estimated size of one first-level element's parsed tree, in bytes.
    pub max_parsed_bytes: usize,
}

impl Limits {
    /// Default largest stanza: 256 KiB, as Prosody and ejabberd allow.
    pub const DEFAULT_MAX_STANZA_BYTES: usize = 262_144;
    /// Default deepest nesting.
    pub const DEFAULT_MAX_DEPTH: usize = 32;
    /// Default most elements per stanza: a disco#items result or a XEP-0191 block list with a few thousand
    /// items, or an OMEMO bundle (about 100 to 200 pre-keys), fit with room to spare; 8192 empty elements
    /// are 32 KB of input.
    pub const DEFAULT_MAX_ELEMENTS: usize = 8192;
    /// Default most attributes per element: real elements carry fewer than 15 (a Jingle candidate has about
    /// ten); 64 keeps the duplicate-attribute check, which is quadratic, at a few thousand comparisons.
    pub const DEFAULT_MAX_ATTRIBUTES: usize = 64;
    /// Default parsed-size budget: 16 times the default stanza size. A 4,000-item XEP-0191 block list
    /// (170 KB of input) is estimated at about 2 MiB, and passes; 60,000 empty children made 12 MiB.
    pub const DEFAULT_MAX_PARSED_BYTES: usize = 4 << 20;

    /// Before authentication (RFC 6120 sections 5 and 6): the stream header, `<starttls/>`, SASL
    /// `<auth/>` and `<response/>` (a few hundred bytes of base64) and XEP-0077 registration forms are all a
    /// peer may send, and they are tiny. An unauthenticated peer costs nothing to create, so these bounds are
    /// what a thousand of them can make the server hold.
    pub const PRE_AUTH: Limits = Limits {
        // 8 KiB: a SCRAM exchange is under 1 KiB, a registration form under 2 KiB.
        max_stanza_bytes: 8192,
        max_depth: 8,
        // A registration form with a XEP-0004 data form has a few dozen elements.
        max_elements: 100,
        // The stream header has seven (xmlns, xmlns:stream, to, from, version, xml:lang, id).
        max_attributes: 16,
        max_parsed_bytes: 64 * 1024,
    };

    /// These limits for an unauthenticated stream: [`Limits::PRE_AUTH`], but never above `self`.
    pub fn before_auth(&self) -> Limits {
        let pre = Self::PRE_AUTH;
        Limits {
            max_stanza_bytes: pre.max_stanza_bytes.min(self.max_stanza_bytes),
            max_depth: pre.max_depth.min(self.max_depth),
            max_elements: pre.max_elements.min(self.max_elements),
            max_attributes: pre.max_attributes.min(self.max_attributes),
            max_parsed_bytes: pre.max_parsed_bytes.min(self.max_parsed_bytes),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_stanza_bytes: Self::DEFAULT_MAX_STANZA_BYTES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_elements: Self::DEFAULT_MAX_ELEMENTS,
            max_attributes: Self::DEFAULT_MAX_ATTRIBUTES,
            max_parsed_bytes: Self::DEFAULT_MAX_PARSED_BYTES,
        }
    }
}
