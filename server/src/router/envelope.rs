//! A stanza as the router sees it: the element itself, untouched, plus its parsed addressing and kind.
//!
//! Routing never re-serialises payloads it does not understand (RFC 6120 section 8.4: a server must route
//! stanzas with unknown children unchanged), so the envelope keeps the original element and only reads and
//! stamps the `to`, `from`, `type` and `id` attributes.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::minidom::rxml::{Namespace, NcName};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::rules::{MessageKind, PresenceKind, StanzaKind};
use crate::xmpp::ns;

/// Why an element could not become an envelope; the caller answers with a stanza error or a stream error.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not `message`, `presence` or `iq` in the stream's content namespace: a nonza.
    #[error("not a stanza: {0}")]
    NotAStanza(String),
    /// `to` or `from` is not a valid JID (RFC 6120 section 8.3.3.8 jid-malformed).
    #[error("malformed {attribute} address")]
    MalformedJid { attribute: &'static str },
    /// A `type` value the RFC does not define, or an IQ without an id (RFC 6120 section 8.2.3).
    #[error("bad stanza: {0}")]
    BadRequest(&'static str),
}

/// A routable stanza.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub element: Element,
    pub kind: StanzaKind,
    pub from: Option<Jid>,
    pub to: Option<Jid>,
    /// For presence: the exact `type` (`None` means available).
    pub presence_type: Option<String>,
}

/// The parsed addressing of a stanza, read without taking the element (so a caller can still answer the
/// original with an error when reading fails).
#[derive(Debug, Clone)]
pub struct Addressing {
    pub kind: StanzaKind,
    pub from: Option<Jid>,
    pub to: Option<Jid>,
    pub presence_type: Option<String>,
}

impl Addressing {
    /// Reads the kind and addresses of a stanza in `jabber:client`, `jabber:server` or
    /// `jabber:component:accept`.
    pub fn read(element: &Element) -> Result<Addressing, EnvelopeError> {
        if !(element.has_ns(ns::CLIENT)
            || element.has_ns(ns::SERVER)
            || element.has_ns(ns::COMPONENT_ACCEPT))
        {
            return Err(EnvelopeError::NotAStanza(element.name().to_string()));
        }
        let stanza_type = element.attr("type");
        let (kind, presence_type) = match element.name() {
            "message" => (StanzaKind::Message(message_kind(stanza_type)), None),
            "presence" => {
                let kind = match stanza_type {
                    None | Some("unavailable") => PresenceKind::Availability,
                    Some("probe") => PresenceKind::Probe,
                    Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
                        PresenceKind::Subscription
                    }
                    Some("error") => PresenceKind::Error,
                    Some(_) => return Err(EnvelopeError::BadRequest("unknown presence type")),
                };
                (StanzaKind::Presence(kind), stanza_type.map(str::to_string))
            }
            "iq" => {
                if element.attr("id").is_none() {
                    return Err(EnvelopeError::BadRequest("iq without id"));
                }
                let kind = match stanza_type {
                    Some("get" | "set") => StanzaKind::IqRequest,
                    Some("result" | "error") => StanzaKind::IqResponse,
                    _ => {
                        return Err(EnvelopeError::BadRequest(
                            "iq type must be get, set, result or error",
                        ));
                    }
                };
                (kind, None)
            }
            other => return Err(EnvelopeError::NotAStanza(other.to_string())),
        };
        Ok(Addressing {
            kind,
            from: parse_jid(element, "from")?,
            to: parse_jid(element, "to")?,
            presence_type,
        })
    }
}

impl Envelope {
    /// Parses the addressing of a stanza in `content_ns` (`jabber:client`, `jabber:server` or
    /// `jabber:component:accept`).
    pub fn parse(element: Element) -> Result<Envelope, EnvelopeError> {
        let addressing = Addressing::read(&element)?;
        Ok(Envelope::from_parts(element, addressing))
    }

    /// Builds an envelope from an element and the addressing [`Addressing::read`] found in it.
    pub fn from_parts(element: Element, addressing: Addressing) -> Envelope {
        Envelope {
            element,
            kind: addressing.kind,
            from: addressing.from,
            to: addressing.to,
            presence_type: addressing.presence_type,
        }
    }

    /// Sets `from` (RFC 6120 section 8.1.2.1: the server stamps the full JID of the sending session).
    pub fn set_from(&mut self, from: &Jid) {
        set_attribute(&mut self.element, "from", &from.to_string());
        self.from = Some(from.clone());
    }

    /// Sets `to`.
    pub fn set_to(&mut self, to: &Jid) {
        set_attribute(&mut self.element, "to", &to.to_string());
        self.to = Some(to.clone());
    }

    pub fn id(&self) -> Option<&str> {
        self.element.attr("id")
    }

    pub fn is_error(&self) -> bool {
        self.element.attr("type") == Some("error")
    }

    /// The error reply to this stanza (RFC 6120 section 8.3.1), or `None` for an error stanza, which is never
    /// answered with another error.
    pub fn error_reply(&self, condition: DefinedCondition, text: Option<&str>) -> Option<Element> {
        crate::xmpp::stanza::error_reply(&self.element, error_type_for(&condition), condition, text)
    }
}

/// The error type RFC 6120 section 8.3.3 pairs with each condition we send.
pub fn error_type_for(condition: &DefinedCondition) -> ErrorType {
    match condition {
        DefinedCondition::BadRequest
        | DefinedCondition::JidMalformed
        | DefinedCondition::NotAcceptable
        | DefinedCondition::PolicyViolation => ErrorType::Modify,
        DefinedCondition::NotAuthorized
        | DefinedCondition::Forbidden
        | DefinedCondition::RegistrationRequired
        | DefinedCondition::SubscriptionRequired => ErrorType::Auth,
        DefinedCondition::ResourceConstraint
        | DefinedCondition::RemoteServerTimeout
        | DefinedCondition::InternalServerError => ErrorType::Wait,
        _ => ErrorType::Cancel,
    }
}

fn message_kind(stanza_type: Option<&str>) -> MessageKind {
    match stanza_type {
        None | Some("normal") => MessageKind::Normal,
        Some("chat") => MessageKind::Chat,
        Some("groupchat") => MessageKind::Groupchat,
        Some("headline") => MessageKind::Headline,
        Some("error") => MessageKind::Error,
        // RFC 6121 section 5.2.2: an unknown type must be treated as normal.
        Some(_) => MessageKind::Normal,
    }
}

fn parse_jid(element: &Element, attribute: &'static str) -> Result<Option<Jid>, EnvelopeError> {
    match element.attr(attribute) {
        None => Ok(None),
        Some(value) => Jid::new(value)
            .map(Some)
            .map_err(|_| EnvelopeError::MalformedJid { attribute }),
    }
}

/// Sets an attribute with no namespace on `element`.
pub fn set_attribute(element: &mut Element, name: &str, value: &str) {
    if let Ok(name) = NcName::try_from(name) {
        element
            .attrs_mut()
            .insert(Namespace::NONE, name, value.to_string());
    }
}

/// Removes an attribute with no namespace from `element`.
pub fn remove_attribute(element: &mut Element, name: &str) {
    element.attrs_mut().remove(&Namespace::NONE, name);
}

/// Moves a stanza from `jabber:client` into `jabber:component:accept` (XEP-0114 section 3), children included
/// where they inherited the stream namespace.
pub fn to_component_namespace(element: Element) -> Element {
    rename_namespace(&element, ns::CLIENT, ns::COMPONENT_ACCEPT)
}

/// Moves a stanza received from a component into `jabber:client`, the namespace routing works in.
pub fn to_client_namespace(element: Element) -> Element {
    rename_namespace(&element, ns::COMPONENT_ACCEPT, ns::CLIENT)
}

fn rename_namespace(element: &Element, from: &str, to: &str) -> Element {
    let namespace = if element.has_ns(from) {
        to.to_string()
    } else {
        element.ns()
    };
    let mut renamed = Element::builder(element.name(), namespace).build();
    for ((attr_ns, name), value) in element.attrs().iter() {
        renamed
            .attrs_mut()
            .insert(attr_ns.clone(), name.clone(), value.clone());
    }
    for node in element.nodes() {
        match node {
            xmpp_parsers::minidom::Node::Element(child) => {
                renamed.append_child(rename_namespace(child, from, to));
            }
            xmpp_parsers::minidom::Node::Text(text) => renamed.append_text_node(text.clone()),
        }
    }
    renamed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<Envelope, EnvelopeError> {
        Envelope::parse(xml.parse().unwrap())
    }

    #[test]
    fn classifies_stanzas() {
        let m = parse("<message xmlns='jabber:client' to='a@b' type='chat'/>").unwrap();
        assert_eq!(m.kind, StanzaKind::Message(MessageKind::Chat));
        let m = parse("<message xmlns='jabber:client' to='a@b' type='fancy'/>").unwrap();
        assert_eq!(
            m.kind,
            StanzaKind::Message(MessageKind::Normal),
            "RFC 6121 5.2.2"
        );
        let p = parse("<presence xmlns='jabber:client' type='subscribe' to='a@b'/>").unwrap();
        assert_eq!(p.kind, StanzaKind::Presence(PresenceKind::Subscription));
        let i = parse("<iq xmlns='jabber:client' type='get' id='1'/>").unwrap();
        assert_eq!(i.kind, StanzaKind::IqRequest);
    }

    #[test]
    fn rejects_what_cannot_be_routed() {
        assert!(matches!(
            parse("<iq xmlns='jabber:client' type='get'/>"),
            Err(EnvelopeError::BadRequest(_))
        ));
        assert!(matches!(
            parse("<iq xmlns='jabber:client' type='poke' id='1'/>"),
            Err(EnvelopeError::BadRequest(_))
        ));
        assert!(matches!(
            parse("<message xmlns='jabber:client' to='@@'/>"),
            Err(EnvelopeError::MalformedJid { attribute: "to" })
        ));
        assert!(matches!(
            parse("<r xmlns='urn:xmpp:sm:3'/>"),
            Err(EnvelopeError::NotAStanza(_))
        ));
    }

    #[test]
    fn component_namespace_round_trip() {
        let original: Element =
            "<message xmlns='jabber:client' to='a@b'><body>x</body><x xmlns='urn:y'/></message>"
                .parse()
                .unwrap();
        let component = to_component_namespace(original.clone());
        assert!(component.has_ns(ns::COMPONENT_ACCEPT));
        assert!(component.get_child("body", ns::COMPONENT_ACCEPT).is_some());
        assert!(component.get_child("x", "urn:y").is_some());
        assert_eq!(to_client_namespace(component), original);
    }

    #[test]
    fn stamping_from_keeps_the_payload() {
        let mut m = parse(
            "<message xmlns='jabber:client' to='a@b' from='evil@x'><body>x</body><foo xmlns='urn:x'/></message>",
        )
        .unwrap();
        m.set_from(&Jid::new("me@here/res").unwrap());
        let xml = String::from(&m.element);
        assert!(xml.contains("from='me@here/res'"), "{xml}");
        assert!(xml.contains("<foo xmlns='urn:x'/>"), "{xml}");
    }
}
