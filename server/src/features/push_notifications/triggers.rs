//! Which stanzas warrant a push (XEP-0357 section 5 leaves "an event warranting a push notification"
//! to the server). As Prosody's mod_cloud_notify and ejabberd's mod_push decide it: a message someone
//! would want to read (a non-empty body, an end-to-end encrypted payload, a call proposal), and a
//! subscription request (RFC 6121 section 3.1). Chat states, receipts, markers and other bodiless
//! stanzas alone do not wake a phone; neither do headlines, errors, groupchat subjects nor copies of
//! the user's own outgoing messages (XEP-0280 `<sent/>`).

use crate::xmpp::{Element, ns};

/// What a stanza that warrants a push is, for the summary form (XEP-0357 section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A message; `sender` is the bare JID of who sent it, `body` its text (empty when only an
    /// encrypted payload or a call proposal).
    Message { sender: String, body: String },
    /// A subscription request from `sender` (a bare JID).
    SubscriptionRequest { sender: String },
}

/// XEP-0384 OMEMO (both versions) and XEP-0027 / XEP-0373 OpenPGP: an encrypted message whose text
/// the server cannot see is still one to read.
const ENCRYPTED_PAYLOADS: [(&str, &str); 4] = [
    ("encrypted", "eu.siacs.conversations.axolotl"),
    ("encrypted", "urn:xmpp:omemo:2"),
    ("x", "jabber:x:encrypted"),
    ("openpgp", "urn:xmpp:openpgp:0"),
];
/// XEP-0353 Jingle Message Initiation: an incoming call.
const CALL_PROPOSAL: (&str, &str) = ("propose", "urn:xmpp:jingle-message:0");

/// Whether `stanza` (a message or presence in `jabber:client`, as delivered to the user) warrants a
/// push, and what it is.
pub fn warrants_push(stanza: &Element) -> Option<Trigger> {
    let sender = stanza
        .attr("from")
        .map(|from| from.split('/').next().unwrap_or(from).to_string())
        .unwrap_or_default();
    match stanza.name() {
        "presence" => (stanza.attr("type") == Some("subscribe"))
            .then_some(Trigger::SubscriptionRequest { sender }),
        "message" => {
            if matches!(stanza.attr("type"), Some("headline" | "error")) {
                return None;
            }
            // XEP-0280: a copy of a message the user received elsewhere is judged by that message;
            // a copy of one they sent is never news to them.
            if stanza.has_child("sent", ns::CARBONS) {
                return None;
            }
            if let Some(forwarded) = stanza
                .get_child("received", ns::CARBONS)
                .and_then(|received| received.get_child("forwarded", ns::FORWARD))
                .and_then(|forwarded| forwarded.children().find(|child| child.name() == "message"))
            {
                return warrants_push(forwarded);
            }
            let body = stanza
                .children()
                .find(|child| child.name() == "body" && is_content_namespace(child.ns().as_str()))
                .map(Element::text)
                .filter(|text| !text.trim().is_empty());
            let has_payload = ENCRYPTED_PAYLOADS
                .iter()
                .chain([&CALL_PROPOSAL])
                .any(|(name, namespace)| stanza.has_child(*name, *namespace));
            match body {
                Some(body) => Some(Trigger::Message { sender, body }),
                None if has_payload => Some(Trigger::Message {
                    sender,
                    body: String::new(),
                }),
                None => None,
            }
        }
        _ => None,
    }
}

/// A `<body/>` is in the stanza's own namespace: the client one, or the server and component ones a
/// stanza is read in before it is renamed (RFC 6120 section 4.8.3).
fn is_content_namespace(namespace: &str) -> bool {
    matches!(namespace, ns::CLIENT | ns::SERVER | ns::COMPONENT_ACCEPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().expect("xml")
    }

    fn message(sender: &str, body: &str) -> Option<Trigger> {
        Some(Trigger::Message {
            sender: sender.into(),
            body: body.into(),
        })
    }

    #[test]
    fn what_warrants_a_push() {
        let juliet = "juliet@capulet.example";
        let table: [(&str, Option<Trigger>); 17] = [
            (
                "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' type='chat'><body>Wherefore?</body></message>",
                message(juliet, "Wherefore?"),
            ),
            (
                "<message xmlns='jabber:client' from='juliet@capulet.example'><body>normal</body></message>",
                message(juliet, "normal"),
            ),
            // Chat states, receipts, markers alone: no.
            (
                "<message xmlns='jabber:client' from='juliet@capulet.example/b' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
                None,
            ),
            (
                "<message xmlns='jabber:client' from='juliet@capulet.example/b'><received xmlns='urn:xmpp:receipts' id='m1'/></message>",
                None,
            ),
            (
                "<message xmlns='jabber:client' from='juliet@capulet.example/b'><displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>",
                None,
            ),
            // A body of whitespace only is no body.
            (
                "<message xmlns='jabber:client' from='juliet@capulet.example/b'><body>  </body></message>",
                None,
            ),
            // A chat state beside a body: the body counts.
            (
                "<message xmlns='jabber:client' from='juliet@capulet.example/b' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/><body>hi</body></message>",
                message(juliet, "hi"),
            ),
            (
                "<message xmlns='jabber:client' from='news.example' type='headline'><body>news</body></message>",
                None,
            ),
            (
                "<message xmlns='jabber:client' from='juliet@capulet.example' type='error'><body>bounced</body></message>",
                None,
            ),
            // End-to-end encrypted, no fallback body: a push with no text.
            (
                "<message xmlns='jabber:client' from='juliet@capulet.example/b' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>",
                message(juliet, ""),
            ),
            // A call.
            (
                "<message xmlns='jabber:client' from='juliet@capulet.example/b'><propose xmlns='urn:xmpp:jingle-message:0' id='c1'/></message>",
                message(juliet, ""),
            ),
            // XEP-0280 copies: received judged by the inner message, sent never.
            (
                "<message xmlns='jabber:client' from='romeo@montague.example' type='chat'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='juliet@capulet.example/b' type='chat'><body>copy</body></message></forwarded></received></message>",
                message(juliet, "copy"),
            ),
            (
                "<message xmlns='jabber:client' from='romeo@montague.example' type='chat'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='juliet@capulet.example/b'><composing xmlns='http://jabber.org/protocol/chatstates'/></message></forwarded></received></message>",
                None,
            ),
            (
                "<message xmlns='jabber:client' from='romeo@montague.example' type='chat'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' to='juliet@capulet.example'><body>mine</body></message></forwarded></sent></message>",
                None,
            ),
            // Subscription requests push; other presences do not.
            (
                "<presence xmlns='jabber:client' from='juliet@capulet.example' type='subscribe'/>",
                Some(Trigger::SubscriptionRequest {
                    sender: juliet.into(),
                }),
            ),
            (
                "<presence xmlns='jabber:client' from='juliet@capulet.example/b'/>",
                None,
            ),
            (
                "<iq xmlns='jabber:client' from='juliet@capulet.example/b' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
                None,
            ),
        ];
        for (xml, expected) in table {
            assert_eq!(warrants_push(&parse(xml)), expected, "{xml}");
        }
    }
}
