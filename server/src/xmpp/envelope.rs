//! A stanza as the router sees it: the element itself, untouched, plus its parsed addressing and kind.
//!
//! Routing never re-serialises payloads it does not understand (RFC 6120 section 8.4: a server must route
//! stanzas with unknown children unchanged), so the envelope keeps the original element and only reads and
//! stamps the `to`, `from`, `type` and `id` attributes.

use super::stanza::{error_reply, error_type_for, set_attribute};
use super::{DefinedCondition, Element, Jid, ns};

/// What kind of stanza it is, as far as delivery is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaKind {
    Message(MessageKind),
    Presence(PresenceKind),
    /// `get` or `set`: someone expects an answer.
    IqRequest,
    /// `result` or `error`.
    IqResponse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Normal,
    Chat,
    Groupchat,
    Headline,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceKind {
    /// Available or unavailable presence (broadcast or directed).
    Availability,
    Probe,
    /// subscribe, subscribed, unsubscribe, unsubscribed: always processed by the server (RFC 6121 section 3).
    Subscription,
    Error,
}

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

/// Whether a first-level element is a stanza: one of the three kinds of RFC 6120 section 8 in a stanza
/// namespace (`jabber:client`, or `jabber:server`/`jabber:component:accept` as section 4.8.3 lets them
/// be read); everything else is a nonza. [`Addressing::read`] answers `NotAStanza` for exactly these.
pub fn is_stanza(element: &Element) -> bool {
    matches!(element.name(), "message" | "presence" | "iq")
        && (element.has_ns(ns::CLIENT)
            || element.has_ns(ns::SERVER)
            || element.has_ns(ns::COMPONENT_ACCEPT))
}

impl Addressing {
    /// Reads the kind and addresses of a stanza in `jabber:client`, `jabber:server` or
    /// `jabber:component:accept`.
    pub fn read(element: &Element) -> Result<Addressing, EnvelopeError> {
        if !is_stanza(element) {
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
        error_reply(&self.element, error_type_for(&condition), condition, text)
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
