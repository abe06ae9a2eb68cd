//! XEP-0280: Message Carbons. Every resource of a user that asked for it sees both sides of the user's
//! conversations: what reaches the user's other resources (section 7, `<received/>`) and what they send
//! (section 8, `<sent/>`).
//!
//! - Sections 4 and 5: `<enable/>` and `<disable/>` are IQ sets to the user's own account; the flag
//!   lives on the resource's registry entry (`router::registry`), so a session costs nothing more
//!   and the router sees it where it looks up the user's resources.
//! - Section 6 leaves the eligible messages to the server; [`is_eligible`] follows its suggested rules
//!   and, like Prosody, also copies bodiless instant-messaging payloads and every message error.
//! - Sections 7 and 8: the copies are decided here as a delivery-event subscriber ([`Carbons`]) and
//!   handed over by the router through `Router::deliver`, so stream management counts them like any
//!   other stanza. Received copies are decided on `DeliveredToUser`, told once a routed message was
//!   handed to the resources the rules chose, because only then is it known which resources did not
//!   get it; sent copies on `SentByClient`, told once the server accepted a client's stanza.
//! - Section 9 (avoiding carbons): a message with `<private/>` is not copied, and the router removes
//!   the element before the recipient sees it. A XEP-0334 `<no-copy/>` hint is not copied either;
//!   `<no-permanent-store/>` and `<no-store/>` are about archives, not copies, and are left to the
//!   archive.
//!
//! A message a user sends to their own account gets no `<sent/>` copies: routing it delivers it to
//! the chosen resources of that same account and the others get `<received/>` copies, so each
//! resource sees it once (the sending resource, which knows it, gets nothing). Copies are never copied
//! again: they are handed to resources directly, which tells no `DeliveredToUser`, and a message that
//! already holds a carbon (a forged one from another entity) is not eligible.

use super::ClientSession;
use super::iq::{IqAnswer, IqError, IqRequest};
use crate::router::Router;
use crate::router::events::{CarbonCopies, CarbonCopy, DeliveryEvent};
use crate::router::registry::Registry;
use crate::xmpp::{
    DefinedCondition, Element, Envelope, Jid, MessageKind, StanzaKind, WireStanza, ns,
    set_attribute,
};

/// XEP-0334 message processing hints.
const NO_COPY: (&str, &str) = ("no-copy", ns::HINTS);
/// XEP-0045's user payload: what a multi-user chat room sends carries it, private messages included.
const MUC_USER: (&str, &str) = ("x", "http://jabber.org/protocol/muc#user");
/// Payloads of instant messaging that make a bodiless `normal` message worth copying (section 6):
/// chat states (XEP-0085), receipts (XEP-0184) and chat markers (XEP-0333).
const IM_PAYLOAD_NAMESPACES: [&str; 3] = [
    ns::CHATSTATES,
    "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0",
];

/// `<enable/>` and `<disable/>` for the sending resource (sections 4 and 5). Enabling or disabling twice
/// is not an error (section 10.1): the last request wins.
pub fn handle(router: &Router, session: &ClientSession, request: &IqRequest<'_>) -> IqAnswer {
    let enable = match (request.is_set, request.payload.name()) {
        (true, "enable") => true,
        (true, "disable") => false,
        _ => return Err(IqError::new(DefinedCondition::BadRequest)),
    };
    router
        .sessions
        .set_carbons(&session.bare, session.jid.resource().as_str(), enable);
    Ok(None)
}

/// Whether a message is copied to the user's other resources (section 6): `chat`; `normal` with a
/// body, or with an instant-messaging payload (a receipt, a marker, a chat state); `error` (section 6
/// copies errors answering eligible messages, which the server cannot tell without tracking messages;
/// like Prosody, it copies every message error). Never `groupchat` or `headline`, never with
/// `<private/>` (section 9) or a XEP-0334 `<no-copy/>` hint, never from a multi-user chat room (section
/// 6, private messages included), and never a message that already holds a carbon.
pub fn is_eligible(kind: MessageKind, message: &Element) -> bool {
    let has_child = |name: &str, namespace: &str| message.get_child(name, namespace).is_some();
    if has_child("private", ns::CARBONS)
        || has_child(NO_COPY.0, NO_COPY.1)
        || has_child(MUC_USER.0, MUC_USER.1)
        || has_child("sent", ns::CARBONS)
        || has_child("received", ns::CARBONS)
    {
        return false;
    }
    match kind {
        MessageKind::Chat | MessageKind::Error => true,
        MessageKind::Normal => message.children().any(|child| {
            (child.name() == "body" && child.ns() == message.ns())
                || IM_PAYLOAD_NAMESPACES.contains(&child.ns().as_str())
        }),
        MessageKind::Groupchat | MessageKind::Headline => false,
    }
}

/// The delivery-event subscriber: decides the copies; the router hands them over.
#[derive(Debug, Default)]
pub struct Carbons;

impl CarbonCopies for Carbons {
    fn copies(&self, sessions: &Registry, event: &DeliveryEvent<'_>) -> Vec<CarbonCopy> {
        match *event {
            DeliveryEvent::SentByClient { from, envelope } => {
                if eligible_message(envelope).is_none() {
                    return Vec::new();
                }
                let user = from.to_bare().to_string();
                // To the user's own account: its delivery makes the received copies (module comment).
                if envelope
                    .to
                    .as_ref()
                    .is_some_and(|to| is_of_account(to, &user))
                {
                    return Vec::new();
                }
                let sender = from.resource().as_str();
                wrap_for_others(sessions, &user, "sent", &envelope.element, |resource| {
                    resource == sender
                })
            }
            DeliveryEvent::DeliveredToUser {
                user,
                envelope,
                online,
                delivered,
            } => {
                if eligible_message(envelope).is_none() {
                    return Vec::new();
                }
                // The sending resource, when the user wrote to their own account.
                let own_sender = envelope
                    .from
                    .as_ref()
                    .filter(|from| is_of_account(from, user))
                    .and_then(Jid::resource);
                let got_it = |resource: &str| {
                    delivered.iter().any(|&index| {
                        online
                            .get(index)
                            .is_some_and(|(name, _, _)| name == resource)
                    }) || own_sender.is_some_and(|sender| sender.as_str() == resource)
                };
                wrap_for_others(sessions, user, "received", &envelope.element, got_it)
            }
            _ => Vec::new(),
        }
    }
}

/// Whether `jid` is the bare JID `account` or one of its full JIDs, compared as text without allocating
/// (both are normalised when parsed).
fn is_of_account(jid: &Jid, account: &str) -> bool {
    jid.as_str()
        .strip_prefix(account)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The message's kind if it is an eligible message (section 6).
fn eligible_message(envelope: &Envelope) -> Option<MessageKind> {
    match envelope.kind {
        StanzaKind::Message(kind) if is_eligible(kind, &envelope.element) => Some(kind),
        _ => None,
    }
}

/// `<message from=user to=user/resource><{direction}><forwarded>original</forwarded></…></message>`
/// (sections 7 and 8) for each resource of `user` that enabled carbons and is not `excluded`.
fn wrap_for_others(
    sessions: &Registry,
    user: &str,
    direction: &str,
    original: &Element,
    excluded: impl Fn(&str) -> bool,
) -> Vec<CarbonCopy> {
    sessions
        .carbons_enabled(user)
        .into_iter()
        .filter(|(resource, _)| !excluded(resource))
        .map(|(resource, handle)| {
            let wrapped = wrap(direction, user, &resource, original);
            CarbonCopy {
                user: user.to_string(),
                stanza: WireStanza::for_client_stream(&wrapped),
                resource,
                handle,
            }
        })
        .collect()
}

/// One carbon: from the user's bare JID to one of its full JIDs (section 11: clients trust only
/// carbons from their own bare JID), of the original's type.
fn wrap(direction: &str, user: &str, resource: &str, original: &Element) -> Element {
    let forwarded = Element::builder("forwarded", ns::FORWARD)
        .append(original.clone())
        .build();
    let carbon = Element::builder(direction, ns::CARBONS)
        .append(forwarded)
        .build();
    let mut message = Element::builder("message", ns::CLIENT).build();
    set_attribute(&mut message, "from", user);
    set_attribute(&mut message, "to", &format!("{user}/{resource}"));
    if let Some(kind) = original.attr("type") {
        set_attribute(&mut message, "type", kind);
    }
    message.append_child(carbon);
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::SessionHandle;
    use crate::router::rules::ResourceView;

    fn message(xml: &str) -> Envelope {
        Envelope::parse(xml.parse().expect("xml")).expect("stanza")
    }

    /// Section 6 as a table: each message and whether it is copied.
    #[test]
    fn eligibility_table() {
        let rows: [(&str, bool); 15] = [
            (
                "<message xmlns='jabber:client' type='chat'><body>hi</body></message>",
                true,
            ),
            // A chat message without a body (a chat state) is still `chat`.
            (
                "<message xmlns='jabber:client' type='chat'>\
                 <composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
                true,
            ),
            (
                "<message xmlns='jabber:client'><body>hi</body></message>",
                true,
            ),
            (
                "<message xmlns='jabber:client' type='normal'><body>hi</body></message>",
                true,
            ),
            (
                "<message xmlns='jabber:client'><received xmlns='urn:xmpp:receipts' id='1'/></message>",
                true,
            ),
            (
                "<message xmlns='jabber:client'><x xmlns='urn:example'/></message>",
                false,
            ),
            (
                "<message xmlns='jabber:client'><body xmlns='urn:other'>x</body></message>",
                false,
            ),
            (
                "<message xmlns='jabber:client' type='error'><error type='cancel'/></message>",
                true,
            ),
            (
                "<message xmlns='jabber:client' type='groupchat'><body>hi</body></message>",
                false,
            ),
            (
                "<message xmlns='jabber:client' type='headline'><body>hi</body></message>",
                false,
            ),
            (
                "<message xmlns='jabber:client' type='chat'><body>hi</body>\
                 <private xmlns='urn:xmpp:carbons:2'/></message>",
                false,
            ),
            (
                "<message xmlns='jabber:client' type='chat'><body>hi</body>\
                 <no-copy xmlns='urn:xmpp:hints'/></message>",
                false,
            ),
            // A private message through a room (section 6).
            (
                "<message xmlns='jabber:client' type='chat'><body>psst</body>\
                 <x xmlns='http://jabber.org/protocol/muc#user'/></message>",
                false,
            ),
            // XEP-0334's other hints are not about copies.
            (
                "<message xmlns='jabber:client' type='chat'><body>hi</body>\
                 <no-permanent-store xmlns='urn:xmpp:hints'/></message>",
                true,
            ),
            // A carbon (or a forged one) is never copied again.
            (
                "<message xmlns='jabber:client' type='chat'><sent xmlns='urn:xmpp:carbons:2'>\
                 <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'>\
                 <body>hi</body></message></forwarded></sent></message>",
                false,
            ),
        ];
        for (xml, expected) in rows {
            let envelope = message(xml);
            assert_eq!(eligible_message(&envelope).is_some(), expected, "{xml}");
        }
    }

    /// alice's phone, laptop and tablet bound, carbons enabled on the phone and the laptop only.
    fn alice_on_three_resources() -> (Registry, Vec<(String, SessionHandle, ResourceView)>) {
        let registry = Registry::default();
        for resource in ["phone", "laptop", "tablet"] {
            let (handle, _commands) = registry.new_session();
            registry.bind("alice@x", resource, handle);
        }
        registry.set_carbons("alice@x", "phone", true);
        registry.set_carbons("alice@x", "laptop", true);
        let online = registry.routes("alice@x");
        (registry, online)
    }

    fn copied_to(copies: &[CarbonCopy]) -> Vec<&str> {
        copies.iter().map(|copy| copy.resource.as_str()).collect()
    }

    #[test]
    fn received_copies_go_to_enabled_resources_that_did_not_get_it() {
        let (registry, online) = alice_on_three_resources();
        let chat = message(
            "<message xmlns='jabber:client' type='chat' from='bob@x/pc' to='alice@x/phone'><body>hi</body></message>",
        );
        let phone = online
            .iter()
            .position(|(name, _, _)| name == "phone")
            .expect("phone");
        let event = DeliveryEvent::DeliveredToUser {
            user: "alice@x",
            envelope: &chat,
            online: &online,
            delivered: &[phone],
        };
        let copies = Carbons.copies(&registry, &event);
        assert_eq!(
            copied_to(&copies),
            ["laptop"],
            "not the phone, which got it; not the tablet"
        );
        assert!(
            copies[0]
                .stanza
                .as_str()
                .contains("<received xmlns='urn:xmpp:carbons:2'>")
        );
        // A message alice wrote to her own phone: the laptop gets it once, the sender nothing.
        let own = message(
            "<message xmlns='jabber:client' type='chat' from='alice@x/laptop' to='alice@x/phone'><body>hi</body></message>",
        );
        let event = DeliveryEvent::DeliveredToUser {
            user: "alice@x",
            envelope: &own,
            online: &online,
            delivered: &[phone],
        };
        assert!(Carbons.copies(&registry, &event).is_empty());
    }

    #[test]
    fn sent_copies_go_to_the_other_enabled_resources_but_not_for_messages_to_oneself() {
        let (registry, _online) = alice_on_three_resources();
        let from: crate::xmpp::FullJid = "alice@x/phone".parse().expect("jid");
        let to_bob = message(
            "<message xmlns='jabber:client' type='chat' from='alice@x/phone' to='bob@x'><body>hi</body></message>",
        );
        let event = DeliveryEvent::SentByClient {
            from: &from,
            envelope: &to_bob,
        };
        let copies = Carbons.copies(&registry, &event);
        assert_eq!(copied_to(&copies), ["laptop"]);
        assert!(
            copies[0]
                .stanza
                .as_str()
                .contains("<sent xmlns='urn:xmpp:carbons:2'>")
        );
        let to_self = message(
            "<message xmlns='jabber:client' type='chat' from='alice@x/phone' to='alice@x'><body>hi</body></message>",
        );
        let event = DeliveryEvent::SentByClient {
            from: &from,
            envelope: &to_self,
        };
        assert!(Carbons.copies(&registry, &event).is_empty());
    }

    #[test]
    fn a_jid_of_an_account() {
        let jid = |text: &str| -> Jid { text.parse().expect("jid") };
        assert!(is_of_account(&jid("alice@x"), "alice@x"));
        assert!(is_of_account(&jid("alice@x/phone"), "alice@x"));
        assert!(!is_of_account(&jid("alice@xy/phone"), "alice@x"));
        assert!(!is_of_account(&jid("alice@x.y"), "alice@x"));
        assert!(!is_of_account(&jid("bob@x/alice@x"), "alice@x"));
    }

    #[test]
    fn a_carbon_comes_from_the_bare_jid_and_keeps_the_original_whole() {
        let original: Element =
            "<message xmlns='jabber:client' from='bob@x/pc' to='alice@x/phone' type='chat' id='m1'>\
             <body>hi</body></message>"
                .parse()
                .expect("xml");
        let carbon = wrap("received", "alice@x", "laptop", &original);
        assert_eq!(carbon.attr("from"), Some("alice@x"));
        assert_eq!(carbon.attr("to"), Some("alice@x/laptop"));
        assert_eq!(carbon.attr("type"), Some("chat"));
        let inner = carbon
            .get_child("received", ns::CARBONS)
            .and_then(|received| received.get_child("forwarded", ns::FORWARD))
            .and_then(|forwarded| forwarded.get_child("message", ns::CLIENT))
            .expect("forwarded message");
        assert_eq!(inner, &original);
    }
}
