//! XEP-0352: Client State Indication. What an inactive client does not need at once is held back.
//!
//! A phone that reports `<inactive/>` (section 3) sleeps better when it is not woken for every
//! contact's presence change or typing notification. XEP-0352 section 5 leaves the policy to the
//! server; this one follows what Prosody's `mod_csi_simple` and ejabberd's `mod_client_state` do, so
//! clients behave the same on Herald:
//!
//! - presence updates (available or unavailable) and chat-state-only messages are held, and only the
//!   latest of each per sender is kept ([`Urgency::Latest`]): the client would only redraw it;
//! - receipts, markers and other bodiless messages are held, in order ([`Urgency::Deferrable`]);
//! - anything a person is waiting for flushes the queue at once, in order, followed by itself
//!   ([`Urgency::Urgent`]): messages with a body, a subject or an encrypted payload (also inside a
//!   carbon), subscription requests and answers, errors, and every IQ (the client may be waiting for a
//!   result);
//! - on `<active/>` everything held goes out (section 3).
//!
//! This module is pure: it classifies a stanza and keeps the queue; the session decides when to write.
//! The queue is bounded ([`MAX_HELD_STANZAS`], [`MAX_HELD_BYTES`]); reaching a bound flushes it, as
//! Prosody does, so an inactive client costs at most that much. What is held has left the session's
//! mailbox, whose byte bound no longer covers it, hence a byte bound of its own.

use crate::xmpp::{Element, Envelope, MessageKind, PresenceKind, StanzaKind, WireStanza, ns};

/// Most stanzas held for an inactive client before the queue is flushed anyway (Prosody's
/// `csi_queue_size` default is 256).
pub const MAX_HELD_STANZAS: usize = 256;

/// Most bytes of stanzas held for an inactive client before the queue is flushed anyway.
pub const MAX_HELD_BYTES: usize = 64 * 1024;

/// How soon an inactive client needs a stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urgency {
    /// Write it now, after everything held (order is kept: RFC 6120 section 10.1).
    Urgent,
    /// Hold it; a later stanza with the same key replaces it (the latest presence or chat state of
    /// one sender).
    Latest(String),
    /// Hold it, in order, until something urgent arrives or the client becomes active.
    Deferrable,
}

/// Classifies a stanza addressed to a client (see the module comment for the policy).
pub fn urgency(stanza: &Envelope) -> Urgency {
    let sender = || {
        stanza
            .from
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    match stanza.kind {
        StanzaKind::Presence(PresenceKind::Availability) => {
            Urgency::Latest(format!("presence {}", sender()))
        }
        StanzaKind::Presence(_) => Urgency::Urgent,
        StanzaKind::IqRequest | StanzaKind::IqResponse => Urgency::Urgent,
        StanzaKind::Message(MessageKind::Error) => Urgency::Urgent,
        StanzaKind::Message(_) => {
            if is_for_a_person(&stanza.element) {
                Urgency::Urgent
            } else if is_chat_state_only(&stanza.element) {
                Urgency::Latest(format!("chat state {}", sender()))
            } else {
                Urgency::Deferrable
            }
        }
    }
}

/// Classifies a stanza queued for the client, as serialised in the session's mailbox. One that cannot
/// be read back (not reached: the server serialised it) is written at once.
pub fn urgency_of_queued(stanza: &WireStanza) -> Urgency {
    match stanza.unpack().map(Envelope::parse) {
        Some(Ok(envelope)) => urgency(&envelope),
        _ => Urgency::Urgent,
    }
}

/// Whether a message carries something a person reads: a body, a subject, an encrypted payload
/// (XEP-0384 OMEMO, XEP-0373 OpenPGP), directly or in a forwarded carbon (XEP-0280 section 6).
fn is_for_a_person(message: &Element) -> bool {
    const ENCRYPTED: [(&str, &str); 3] = [
        ("encrypted", "eu.siacs.conversations.axolotl"),
        ("encrypted", "urn:xmpp:omemo:2"),
        ("openpgp", "urn:xmpp:openpgp:0"),
    ];
    let readable = |m: &Element| {
        m.children().any(|child| {
            (child.ns() == message.ns() && matches!(child.name(), "body" | "subject"))
                || ENCRYPTED
                    .iter()
                    .any(|(name, namespace)| child.is(*name, *namespace))
        })
    };
    if readable(message) {
        return true;
    }
    message
        .children()
        .filter(|carbon| carbon.ns() == ns::CARBONS)
        .filter_map(|carbon| carbon.get_child("forwarded", ns::FORWARD))
        .flat_map(|forwarded| forwarded.children().filter(|m| m.name() == "message"))
        .any(|inner| {
            inner.children().any(|child| {
                (matches!(child.name(), "body" | "subject") && child.ns() == inner.ns())
                    || ENCRYPTED
                        .iter()
                        .any(|(name, namespace)| child.is(*name, *namespace))
            })
        })
}

/// Whether a message holds nothing but XEP-0085 chat states (and a thread id).
fn is_chat_state_only(message: &Element) -> bool {
    let mut has_state = false;
    for child in message.children() {
        if child.ns() == ns::CHATSTATES {
            has_state = true;
        } else if !(child.name() == "thread" && child.ns() == message.ns()) {
            return false;
        }
    }
    has_state
}

/// Whether the client said it is active or inactive (XEP-0352 section 3); clients start active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientState {
    #[default]
    Active,
    Inactive,
}

impl ClientState {
    /// The state a `<active/>` or `<inactive/>` nonza sets, or `None` for any other element.
    pub fn from_nonza(element: &Element) -> Option<ClientState> {
        if element.ns() != ns::CSI {
            return None;
        }
        match element.name() {
            "active" => Some(ClientState::Active),
            "inactive" => Some(ClientState::Inactive),
            _ => None,
        }
    }
}

/// What to write after offering a stanza to the queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Release {
    /// Nothing now: the stanza was held.
    Held,
    /// Write these, in this order (what was held, then the stanza that released them).
    Write(Vec<WireStanza>),
}

/// The stanzas held for one inactive client, in arrival order; a coalesced stanza takes the place of
/// the one it replaces at the end of the queue.
#[derive(Debug, Default)]
pub struct HeldBack {
    held: Vec<(Option<String>, WireStanza)>,
    /// The wire bytes of what is held.
    bytes: usize,
}

impl HeldBack {
    /// Offers a stanza for a client in `state`. An active client gets everything at once (and the
    /// queue, which is then empty, costs nothing).
    pub fn offer(&mut self, state: ClientState, urgency: Urgency, stanza: WireStanza) -> Release {
        if state == ClientState::Active || urgency == Urgency::Urgent {
            let mut out = self.drain();
            out.push(stanza);
            return Release::Write(out);
        }
        let key = match urgency {
            Urgency::Latest(key) => {
                let bytes = &mut self.bytes;
                self.held.retain(|(held_key, held)| {
                    let keep = held_key.as_deref() != Some(key.as_str());
                    if !keep {
                        *bytes -= held.wire_bytes();
                    }
                    keep
                });
                Some(key)
            }
            _ => None,
        };
        self.bytes += stanza.wire_bytes();
        self.held.push((key, stanza));
        if self.held.len() >= MAX_HELD_STANZAS || self.bytes >= MAX_HELD_BYTES {
            return Release::Write(self.drain());
        }
        Release::Held
    }

    /// Everything held, oldest first (when the client becomes active, or the session ends and what was
    /// held must be routed again).
    pub fn drain(&mut self) -> Vec<WireStanza> {
        self.bytes = 0;
        let held = std::mem::take(&mut self.held);
        held.into_iter().map(|(_, stanza)| stanza).collect()
    }

    /// How many stanzas are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(xml: &str) -> Envelope {
        Envelope::parse(xml.parse().expect("xml")).expect("stanza")
    }

    fn wire(xml: &str) -> WireStanza {
        WireStanza::for_client_stream(&xml.parse().expect("xml"))
    }

    /// The policy as a table: each stanza and how urgent it is for an inactive client.
    #[test]
    fn urgency_table() {
        let latest = |key: &str| Urgency::Latest(key.to_string());
        let rows: [(&str, Urgency); 14] = [
            (
                "<presence xmlns='jabber:client' from='a@x/r'/>",
                latest("presence a@x/r"),
            ),
            (
                "<presence xmlns='jabber:client' from='a@x/r' type='unavailable'/>",
                latest("presence a@x/r"),
            ),
            (
                "<presence xmlns='jabber:client' from='a@x' type='subscribe'/>",
                Urgency::Urgent,
            ),
            (
                "<message xmlns='jabber:client' from='a@x/r' type='chat'><body>hi</body></message>",
                Urgency::Urgent,
            ),
            (
                "<message xmlns='jabber:client' from='a@x/r'><subject>topic</subject></message>",
                Urgency::Urgent,
            ),
            (
                "<message xmlns='jabber:client' from='a@x/r' type='chat'>\
                 <encrypted xmlns='eu.siacs.conversations.axolotl'/></message>",
                Urgency::Urgent,
            ),
            (
                "<message xmlns='jabber:client' from='a@x/r' type='chat'>\
                 <composing xmlns='http://jabber.org/protocol/chatstates'/><thread>t</thread></message>",
                latest("chat state a@x/r"),
            ),
            (
                "<message xmlns='jabber:client' from='a@x/r' type='chat'>\
                 <received xmlns='urn:xmpp:receipts' id='m1'/></message>",
                Urgency::Deferrable,
            ),
            (
                "<message xmlns='jabber:client' from='me@x' type='chat'>\
                 <sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
                 <message xmlns='jabber:client' to='a@x'><body>hi</body></message></forwarded></sent></message>",
                Urgency::Urgent,
            ),
            (
                "<message xmlns='jabber:client' from='me@x' type='chat'>\
                 <received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
                 <message xmlns='jabber:client' from='a@x/r'><active xmlns='http://jabber.org/protocol/chatstates'/>\
                 </message></forwarded></received></message>",
                Urgency::Deferrable,
            ),
            (
                "<message xmlns='jabber:client' from='a@x/r' type='error'><error type='cancel'/></message>",
                Urgency::Urgent,
            ),
            (
                "<iq xmlns='jabber:client' from='a@x/r' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
                Urgency::Urgent,
            ),
            (
                "<iq xmlns='jabber:client' from='x' type='result' id='2'/>",
                Urgency::Urgent,
            ),
            // A body in another namespace is a payload, not the message's body.
            (
                "<message xmlns='jabber:client' from='a@x/r'><body xmlns='urn:other'>x</body></message>",
                Urgency::Deferrable,
            ),
        ];
        for (xml, expected) in rows {
            assert_eq!(urgency(&envelope(xml)), expected, "{xml}");
        }
    }

    #[test]
    fn an_active_client_gets_everything_at_once() {
        let mut queue = HeldBack::default();
        let presence = wire("<presence xmlns='jabber:client' from='a@x/r'/>");
        let release = queue.offer(
            ClientState::Active,
            Urgency::Latest("presence a@x/r".into()),
            presence.clone(),
        );
        assert_eq!(release, Release::Write(vec![presence]));
        assert!(queue.is_empty());
    }

    #[test]
    fn inactive_coalesces_per_key_and_an_urgent_stanza_flushes_in_order() {
        let mut queue = HeldBack::default();
        let away =
            wire("<presence xmlns='jabber:client' from='a@x/r'><show>away</show></presence>");
        let receipt = wire(
            "<message xmlns='jabber:client' from='b@x/r'><received xmlns='urn:xmpp:receipts' id='1'/></message>",
        );
        let online = wire("<presence xmlns='jabber:client' from='a@x/r'/>");
        let body = wire("<message xmlns='jabber:client' from='c@x/r'><body>hi</body></message>");
        let inactive = ClientState::Inactive;
        let a = || Urgency::Latest("presence a@x/r".into());
        assert_eq!(queue.offer(inactive, a(), away), Release::Held);
        assert_eq!(
            queue.offer(inactive, Urgency::Deferrable, receipt.clone()),
            Release::Held
        );
        // The newer presence of the same sender replaces the older one and goes to the end.
        assert_eq!(queue.offer(inactive, a(), online.clone()), Release::Held);
        assert_eq!(queue.len(), 2);
        assert_eq!(
            queue.offer(inactive, Urgency::Urgent, body.clone()),
            Release::Write(vec![receipt, online, body])
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut queue = HeldBack::default();
        let receipt = wire(
            "<message xmlns='jabber:client' from='b@x/r'><received xmlns='urn:xmpp:receipts' id='1'/></message>",
        );
        for _ in 1..MAX_HELD_STANZAS {
            let release = queue.offer(ClientState::Inactive, Urgency::Deferrable, receipt.clone());
            assert_eq!(release, Release::Held);
        }
        match queue.offer(ClientState::Inactive, Urgency::Deferrable, receipt) {
            Release::Write(all) => assert_eq!(all.len(), MAX_HELD_STANZAS),
            Release::Held => panic!("the bound did not flush"),
        }
        assert!(queue.is_empty());
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let mut queue = HeldBack::default();
        let big = wire(&format!(
            "<message xmlns='jabber:client' from='b@x/r'><x xmlns='urn:example'>{}</x></message>",
            "y".repeat(MAX_HELD_BYTES / 4)
        ));
        let mut held = 0;
        loop {
            match queue.offer(ClientState::Inactive, Urgency::Deferrable, big.clone()) {
                Release::Held => held += 1,
                Release::Write(all) => {
                    assert_eq!(all.len(), held + 1);
                    break;
                }
            }
            assert!(held < 4, "the byte bound did not flush");
        }
        assert!(queue.is_empty());
        // Coalescing gives back the bytes of what it replaces.
        let presence = wire("<presence xmlns='jabber:client' from='a@x/r'/>");
        let key = || Urgency::Latest("presence a@x/r".into());
        for _ in 0..MAX_HELD_BYTES {
            let release = queue.offer(ClientState::Inactive, key(), presence.clone());
            assert_eq!(release, Release::Held);
        }
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn csi_nonzas() {
        let active: Element = "<active xmlns='urn:xmpp:csi:0'/>".parse().unwrap();
        let inactive: Element = "<inactive xmlns='urn:xmpp:csi:0'/>".parse().unwrap();
        let other: Element = "<r xmlns='urn:xmpp:sm:3'/>".parse().unwrap();
        assert_eq!(ClientState::from_nonza(&active), Some(ClientState::Active));
        assert_eq!(
            ClientState::from_nonza(&inactive),
            Some(ClientState::Inactive)
        );
        assert_eq!(ClientState::from_nonza(&other), None);
    }
}
