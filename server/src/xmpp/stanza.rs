//! Typed stanzas (RFC 6120 section 8): `<message/>`, `<presence/>` and `<iq/>` parsed with
//! `xmpp-parsers`, and stanza error replies (RFC 6120 section 8.3).
//!
//! Stanzas are held in `jabber:client` whatever stream they came from: `jabber:server` and
//! `jabber:component:accept` stanzas are renamed on parse, and `XmlStream::send` renames them back
//! onto the stream's namespace (RFC 6120 section 4.8.3).

use std::collections::BTreeMap;

use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Node;
use xmpp_parsers::presence::Presence;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use xmpp_parsers::{Error as ParserError, FromElementError};

use super::{Element, Jid, ns};

/// A parsed stanza.
#[derive(Debug, Clone, PartialEq)]
pub enum Stanza {
    /// `<message/>` (RFC 6120 section 8.2.1).
    Message(Message),
    /// `<presence/>` (RFC 6120 section 8.2.2).
    Presence(Presence),
    /// `<iq/>` (RFC 6120 section 8.2.3).
    Iq(Iq),
}

/// Why an element is not a usable [`Stanza`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum StanzaParseError {
    /// Not `message`, `presence` or `iq` in a content namespace: a nonza such as `<r/>`,
    /// `<enable/>` or `<auth/>`. The element is handed back untouched for the caller to dispatch.
    #[error("not a stanza: <{}/> in {:?}", .0.name(), .0.ns())]
    NotAStanza(Element),
    /// A stanza that breaks its schema (missing IQ id, unknown type, malformed JID, several IQ
    /// payloads...). `element` is the original, from which [`error_reply`] builds the answer.
    #[error("invalid <{}/> stanza: {reason}", element.name())]
    Invalid {
        /// The stanza as received.
        element: Element,
        /// What is wrong, for logs.
        reason: String,
    },
}

impl StanzaParseError {
    /// The stanza error condition to answer an `Invalid` stanza with: `jid-malformed` when its `to`
    /// or `from` is not a valid JID (RFC 6120 section 8.3.3.8), else `bad-request` (section 8.3.3.1).
    /// `None` for a nonza.
    pub fn condition(&self) -> Option<DefinedCondition> {
        let Self::Invalid { element, .. } = self else {
            return None;
        };
        let bad_jid = ["to", "from"]
            .into_iter()
            .any(|a| element.attr(a).is_some_and(|v| Jid::new(v).is_err()));
        Some(if bad_jid {
            DefinedCondition::JidMalformed
        } else {
            DefinedCondition::BadRequest
        })
    }
}

fn is_content_ns(namespace: &str) -> bool {
    matches!(namespace, ns::CLIENT | ns::SERVER | ns::COMPONENT_ACCEPT)
}

impl Stanza {
    /// Parse a first-level element. Elements that are not stanzas come back as `NotAStanza`.
    // The error hands the element back by value (every nonza takes this path), which is the point of
    // the API; boxing it would only add an allocation.
    #[allow(clippy::result_large_err)]
    pub fn parse(element: Element) -> Result<Stanza, StanzaParseError> {
        let namespace = element.ns();
        if !is_content_ns(&namespace) || !matches!(element.name(), "message" | "presence" | "iq") {
            return Err(StanzaParseError::NotAStanza(element));
        }
        let normalized = renamespace(element.clone(), &namespace, ns::CLIENT);
        let parsed = match element.name() {
            "message" => Message::try_from(normalized).map(Stanza::Message),
            "presence" => Presence::try_from(normalized).map(Stanza::Presence),
            _ => Iq::try_from(normalized).map(Stanza::Iq),
        };
        parsed.map_err(|e| match e {
            FromElementError::Mismatch(_) => StanzaParseError::NotAStanza(element),
            FromElementError::Invalid(reason) => invalid(element, &reason),
        })
    }

    /// The stanza as an element in `jabber:client`.
    pub fn to_element(&self) -> Element {
        match self {
            Stanza::Message(m) => m.into(),
            Stanza::Presence(p) => p.into(),
            Stanza::Iq(iq) => iq.into(),
        }
    }

    /// The element name: `message`, `presence` or `iq`.
    pub fn name(&self) -> &'static str {
        match self {
            Stanza::Message(_) => "message",
            Stanza::Presence(_) => "presence",
            Stanza::Iq(_) => "iq",
        }
    }

    /// The `from` address.
    pub fn from(&self) -> Option<&Jid> {
        match self {
            Stanza::Message(m) => m.from.as_ref(),
            Stanza::Presence(p) => p.from.as_ref(),
            Stanza::Iq(iq) => iq.from(),
        }
    }

    /// The `to` address.
    pub fn to(&self) -> Option<&Jid> {
        match self {
            Stanza::Message(m) => m.to.as_ref(),
            Stanza::Presence(p) => p.to.as_ref(),
            Stanza::Iq(iq) => iq.to(),
        }
    }

    /// The `id` attribute (always present on IQs).
    pub fn id(&self) -> Option<&str> {
        match self {
            Stanza::Message(m) => m.id.as_ref().map(|id| id.0.as_str()),
            Stanza::Presence(p) => p.id.as_deref(),
            Stanza::Iq(iq) => Some(iq.id()),
        }
    }

    /// Set or remove `from` (the server stamps it, RFC 6120 section 8.1.2.1).
    pub fn set_from(&mut self, from: Option<Jid>) {
        match self {
            Stanza::Message(m) => m.from = from,
            Stanza::Presence(p) => p.from = from,
            Stanza::Iq(iq) => *iq.from_mut() = from,
        }
    }

    /// Set or remove `to`.
    pub fn set_to(&mut self, to: Option<Jid>) {
        match self {
            Stanza::Message(m) => m.to = to,
            Stanza::Presence(p) => p.to = to,
            Stanza::Iq(iq) => *iq.to_mut() = to,
        }
    }

    /// Whether this is a `type='error'` stanza, which must never be answered with an error.
    pub fn is_error(&self) -> bool {
        match self {
            Stanza::Message(m) => m.type_ == xmpp_parsers::message::MessageType::Error,
            Stanza::Presence(p) => p.type_ == xmpp_parsers::presence::Type::Error,
            Stanza::Iq(iq) => matches!(iq, Iq::Error { .. }),
        }
    }
}

impl From<Stanza> for Element {
    fn from(stanza: Stanza) -> Element {
        stanza.to_element()
    }
}

impl From<&Stanza> for Element {
    fn from(stanza: &Stanza) -> Element {
        stanza.to_element()
    }
}

fn invalid(element: Element, reason: &ParserError) -> StanzaParseError {
    StanzaParseError::Invalid {
        element,
        reason: reason.to_string(),
    }
}

/// Move `element` and its descendants that are in `from` (an unbroken chain from the top) to `to`.
/// Descendants in other namespaces, and anything below them, are left alone: a forwarded
/// `<message xmlns='jabber:client'/>` inside `<forwarded/>` keeps its own namespace.
pub(crate) fn renamespace(mut element: Element, from: &str, to: &str) -> Element {
    if from == to || element.ns() != from {
        return element;
    }
    let mut out = Element::bare(element.name(), to);
    for ((attr_ns, name), value) in element.attrs() {
        out.set_attr(attr_ns.clone(), name.clone(), value.clone());
    }
    for node in element.take_nodes() {
        match node {
            Node::Element(child) => {
                out.append_child(renamespace(child, from, to));
            }
            Node::Text(text) => out.append_text_node(text),
        }
    }
    out
}

/// The error reply to a stanza (RFC 6120 section 8.3.1): same name and id, `to` and `from` swapped,
/// `type='error'`, and an `<error/>` child with the condition and optional text. The original
/// payload is not echoed back (the RFC allows either).
///
/// `None` if `original` is itself an error (RFC 6120 section 8.3.1: an error is never answered with
/// an error) or is not a stanza. Whether to answer IQ results is the caller's rule.
pub fn error_reply(
    original: &Element,
    error_type: ErrorType,
    condition: DefinedCondition,
    text: Option<&str>,
) -> Option<Element> {
    let namespace = original.ns();
    if !is_content_ns(&namespace)
        || !matches!(original.name(), "message" | "presence" | "iq")
        || original.attr("type") == Some("error")
    {
        return None;
    }
    let mut reply = Element::bare(original.name(), namespace.as_str());
    let mut set = |name: &str, value: &str| {
        if let Ok(name) = xmpp_parsers::minidom::rxml::NcName::try_from(name) {
            reply.set_attr(
                xmpp_parsers::minidom::rxml::Namespace::NONE,
                name,
                value.to_owned(),
            );
        }
    };
    if let Some(id) = original.attr("id") {
        set("id", id);
    }
    if let Some(from) = original.attr("from") {
        set("to", from);
    }
    if let Some(to) = original.attr("to") {
        set("from", to);
    }
    set("type", "error");
    let mut texts = BTreeMap::new();
    if let Some(text) = text {
        texts.insert("en".to_owned(), text.to_owned());
    }
    let error = StanzaError {
        type_: error_type,
        by: None,
        defined_condition: condition,
        texts,
        other: None,
    };
    reply.append_child(renamespace(Element::from(error), ns::CLIENT, &namespace));
    Some(reply)
}
