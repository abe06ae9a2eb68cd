//! XEP-0220: Server Dialback, the elements (sections 2.1 to 2.4, errors in section 2.6 and 4) and the
//! keys (XEP-0185 section 2: HMAC-SHA256 of a secret made at start). Bytes and types only: the streams
//! that send and answer them are `inbound.rs` and `outbound.rs`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::xmpp::{Element, ns, set_attribute};

/// The secret dialback keys are made from; generated at start, so only this process can vouch for the
/// keys it gave out (XEP-0185 section 2: a restart invalidates only keys still being verified).
#[derive(Clone)]
pub struct DialbackSecret(Vec<u8>);

impl std::fmt::Debug for DialbackSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DialbackSecret(..)")
    }
}

impl DialbackSecret {
    /// A fresh random secret.
    pub fn generate() -> DialbackSecret {
        DialbackSecret(rand::random::<[u8; 32]>().to_vec())
    }

    /// XEP-0185 section 2: the hex of HMAC-SHA256 keyed with the hex of SHA-256 of the secret, over
    /// `receiving ' ' originating ' ' stream_id`.
    pub fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        let hashed = hex::encode(Sha256::digest(&self.0));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(hashed.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("{receiving} {originating} {stream_id}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `key` is the one [`DialbackSecret::key`] gives, compared in constant time.
    pub fn verifies(&self, key: &str, receiving: &str, originating: &str, stream_id: &str) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.key(receiving, originating, stream_id);
        expected.len() == key.len() && bool::from(expected.as_bytes().ct_eq(key.as_bytes()))
    }
}

/// The outcome carried by a `type` attribute of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Valid,
    Invalid,
    /// `type='error'` with this stanza error condition (XEP-0220 section 2.6 and 4), e.g.
    /// `item-not-found` for a domain not hosted, `remote-connection-failed` when the authoritative
    /// server could not be reached, `not-authorized` when policy forbids dialback with that domain.
    Error(String),
}

/// A dialback element, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialback {
    /// `<db:result from=originating to=receiving>key</db:result>`: the originating server asks to be
    /// accepted as `from` on this stream (section 2.1.1).
    ResultRequest {
        from: String,
        to: String,
        key: String,
    },
    /// `<db:result type=…/>`: the receiving server's verdict (section 2.4).
    ResultAnswer {
        from: String,
        to: String,
        outcome: Outcome,
    },
    /// `<db:verify from=receiving to=originating id=stream>key</db:verify>`: the receiving server asks the
    /// authoritative server whether it gave out this key (section 2.2.1).
    VerifyRequest {
        from: String,
        to: String,
        id: String,
        key: String,
    },
    /// `<db:verify type=…/>`: the authoritative server's answer (section 2.3).
    VerifyAnswer {
        from: String,
        to: String,
        id: String,
        outcome: Outcome,
    },
}

impl Dialback {
    /// `None` for anything that is not a `result` or `verify` in the dialback namespace with `from` and
    /// `to`, or a `verify` without `id`.
    pub fn parse(element: &Element) -> Option<Dialback> {
        if element.ns() != ns::DIALBACK {
            return None;
        }
        let from = element.attr("from")?.to_ascii_lowercase();
        let to = element.attr("to")?.to_ascii_lowercase();
        let outcome = match element.attr("type") {
            None => None,
            Some("valid") => Some(Outcome::Valid),
            Some("invalid") => Some(Outcome::Invalid),
            Some(_) => Some(Outcome::Error(
                element
                    .get_child("error", ns::DIALBACK)
                    .or_else(|| element.children().find(|c| c.name() == "error"))
                    .and_then(|error| error.children().find(|c| c.ns() == ns::STANZAS))
                    .map(|condition| condition.name().to_string())
                    .unwrap_or_else(|| "undefined-condition".into()),
            )),
        };
        let key = element.text().trim().to_string();
        match (element.name(), outcome) {
            ("result", None) => Some(Dialback::ResultRequest { from, to, key }),
            ("result", Some(outcome)) => Some(Dialback::ResultAnswer { from, to, outcome }),
            ("verify", None) => Some(Dialback::VerifyRequest {
                from,
                to,
                id: element.attr("id")?.to_string(),
                key,
            }),
            ("verify", Some(outcome)) => Some(Dialback::VerifyAnswer {
                from,
                to,
                id: element.attr("id")?.to_string(),
                outcome,
            }),
            _ => None,
        }
    }

    /// The element to send.
    pub fn to_element(&self) -> Element {
        let (name, from, to, id, key, outcome) = match self {
            Dialback::ResultRequest { from, to, key } => {
                ("result", from, to, None, Some(key), None)
            }
            Dialback::ResultAnswer { from, to, outcome } => {
                ("result", from, to, None, None, Some(outcome))
            }
            Dialback::VerifyRequest { from, to, id, key } => {
                ("verify", from, to, Some(id), Some(key), None)
            }
            Dialback::VerifyAnswer {
                from,
                to,
                id,
                outcome,
            } => ("verify", from, to, Some(id), None, Some(outcome)),
        };
        let mut element = Element::builder(name, ns::DIALBACK).build();
        set_attribute(&mut element, "from", from);
        set_attribute(&mut element, "to", to);
        if let Some(id) = id {
            set_attribute(&mut element, "id", id);
        }
        if let Some(key) = key {
            element.append_text_node(key.as_str());
        }
        match outcome {
            None => {}
            Some(Outcome::Valid) => set_attribute(&mut element, "type", "valid"),
            Some(Outcome::Invalid) => set_attribute(&mut element, "type", "invalid"),
            Some(Outcome::Error(condition)) => {
                set_attribute(&mut element, "type", "error");
                let kind = if condition == "remote-connection-failed"
                    || condition == "remote-server-timeout"
                {
                    "wait"
                } else {
                    "cancel"
                };
                let mut error = Element::builder("error", ns::DIALBACK)
                    .append(Element::builder(condition.as_str(), ns::STANZAS).build())
                    .build();
                set_attribute(&mut error, "type", kind);
                element.append_child(error);
            }
        }
        element
    }
}

/// `<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>`: the stream feature saying dialback
/// is offered and its errors understood (XEP-0220 section 2.1, 4).
pub fn feature() -> Element {
    Element::builder("dialback", ns::DIALBACK_FEATURE)
        .append(Element::builder("errors", ns::DIALBACK_FEATURE).build())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_input_and_on_the_secret() {
        let secret = DialbackSecret::generate();
        let key = secret.key("b.test", "a.test", "D60000229F");
        assert_eq!(key.len(), 64, "hex of SHA-256");
        assert!(secret.verifies(&key, "b.test", "a.test", "D60000229F"));
        assert!(!secret.verifies(&key, "a.test", "b.test", "D60000229F"));
        assert!(!secret.verifies(&key, "b.test", "a.test", "other"));
        assert!(!DialbackSecret::generate().verifies(&key, "b.test", "a.test", "D60000229F"));
    }

    #[test]
    fn the_xep_0185_algorithm_is_followed() {
        // The inputs of XEP-0185's main example; the key as the script on the XEP's wiki page computes it
        // (hashlib.sha256(secret).hexdigest() as the HMAC key).
        let secret = DialbackSecret(b"s3cr3tf0rd14lb4ck".to_vec());
        assert_eq!(
            secret.key("domain2.tld", "domain1.tld", "D60000229F"),
            "5e598fae34b90be084fb6a4a8a543ceb33549140bac9d829ef8d734d900616e4"
        );
    }

    #[test]
    fn every_element_round_trips() {
        for dialback in [
            Dialback::ResultRequest {
                from: "a.test".into(),
                to: "b.test".into(),
                key: "k".into(),
            },
            Dialback::ResultAnswer {
                from: "b.test".into(),
                to: "a.test".into(),
                outcome: Outcome::Valid,
            },
            Dialback::ResultAnswer {
                from: "b.test".into(),
                to: "a.test".into(),
                outcome: Outcome::Error("item-not-found".into()),
            },
            Dialback::VerifyRequest {
                from: "b.test".into(),
                to: "a.test".into(),
                id: "s1".into(),
                key: "k".into(),
            },
            Dialback::VerifyAnswer {
                from: "a.test".into(),
                to: "b.test".into(),
                id: "s1".into(),
                outcome: Outcome::Invalid,
            },
        ] {
            assert_eq!(Dialback::parse(&dialback.to_element()), Some(dialback));
        }
    }

    #[test]
    fn what_is_not_dialback_is_not_parsed() {
        let element: Element = "<result xmlns='jabber:client' from='a' to='b'/>"
            .parse()
            .unwrap();
        assert_eq!(Dialback::parse(&element), None);
        let element: Element = "<verify xmlns='jabber:server:dialback' from='a' to='b'>k</verify>"
            .parse()
            .unwrap();
        assert_eq!(Dialback::parse(&element), None, "verify needs an id");
    }
}
