//! The delivery rules of RFC 6121 section 8 as one pure function: what to do with a stanza addressed to a local
//! user, given which of their resources are online. No I/O here; [`super::Router`] carries the decision out.
//!
//! Choices where the RFC leaves one (each cited at its row):
//! - messages for an account that does not exist are bounced with `service-unavailable` (8.5.1), except
//!   `headline` and `error`, which are dropped;
//! - a `chat` or `normal` message to a bare JID goes to every available resource sharing the highest
//!   non-negative priority (8.5.2.1.1 option "most available", widened to ties);
//! - messages for a user with no available resource are stored offline (8.5.2.2.1, XEP-0160);
//! - a `normal` message to an unknown full JID is handled like `chat` (8.5.3.2.1 allows either; storing it
//!   offline loses nothing, which is what users expect).

use crate::xmpp::{DefinedCondition, MessageKind, PresenceKind, StanzaKind};

/// One online resource of the addressee, as the rules need to see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceView {
    /// Has sent initial presence (RFC 6121 section 4.2) and not gone unavailable.
    pub is_available: bool,
    pub priority: i8,
}

/// The addressee, as seen by the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressee<'a> {
    /// No account of that name on this server.
    NoAccount,
    /// `user@domain`, with every connected resource.
    Bare { resources: &'a [ResourceView] },
    /// `user@domain/resource`: `exact` is the index in `resources` of the matching connected resource.
    Full {
        exact: Option<usize>,
        resources: &'a [ResourceView],
    },
}

/// What to do with the stanza.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Hand it to these resources (indices into the `resources` slice).
    DeliverTo(Vec<usize>),
    /// Keep it for the user's next login (XEP-0160).
    StoreOffline,
    /// The server itself answers or processes it on the user's behalf (IQs to a bare JID, subscription
    /// presences, probes: RFC 6121 sections 3, 4.3 and 8.5.2.1.4 / 8.5.2.2.3).
    ServerHandles,
    /// Return an error of this condition to the sender (never for error stanzas).
    Bounce(DefinedCondition),
    /// Drop silently.
    Ignore,
}

/// Decides the delivery of a stanza of `kind` to `addressee` (RFC 6121 section 8.5).
pub fn decide(kind: StanzaKind, addressee: Addressee<'_>) -> Decision {
    use Decision::*;
    use MessageKind as M;
    use PresenceKind as P;
    use StanzaKind as K;

    match addressee {
        // RFC 6121 section 8.5.1 and 8.1.
        Addressee::NoAccount => match kind {
            K::Message(M::Normal | M::Chat | M::Groupchat) => {
                Bounce(DefinedCondition::ServiceUnavailable)
            }
            K::Message(M::Headline | M::Error) => Ignore,
            K::Presence(_) => Ignore,
            K::IqRequest => Bounce(DefinedCondition::ServiceUnavailable),
            K::IqResponse => Ignore,
        },
        // RFC 6121 section 8.5.2.
        Addressee::Bare { resources } => match kind {
            K::Message(M::Normal | M::Chat) => match highest_priority(resources) {
                Some(chosen) => DeliverTo(chosen),
                None => StoreOffline,
            },
            // 8.5.2.1.3 / 8.5.2.2.1: a groupchat message to a bare JID is an error.
            K::Message(M::Groupchat) => Bounce(DefinedCondition::ServiceUnavailable),
            K::Message(M::Headline) => {
                let all = non_negative(resources);
                if all.is_empty() {
                    Ignore
                } else {
                    DeliverTo(all)
                }
            }
            K::Message(M::Error) => Ignore,
            K::Presence(P::Availability) => {
                let all = available(resources);
                if all.is_empty() {
                    Ignore
                } else {
                    DeliverTo(all)
                }
            }
            K::Presence(P::Probe | P::Subscription) => ServerHandles,
            K::Presence(P::Error) => Ignore,
            // 8.5.2.1.4: an IQ to a bare JID is answered by the server on the user's behalf; an
            // answer to a bare JID answers a request the server sent on the user's behalf (a XEP-0357
            // publish), so the server takes it too.
            K::IqRequest | K::IqResponse => ServerHandles,
        },
        // RFC 6121 section 8.5.3.
        Addressee::Full { exact, resources } => match (kind, exact) {
            (K::Presence(P::Probe | P::Subscription), _) => ServerHandles,
            (_, Some(index)) if index < resources.len() => DeliverTo(vec![index]),
            // 8.5.3.2.1: no such resource.
            (K::Message(M::Chat | M::Normal), _) => decide(kind, Addressee::Bare { resources }),
            (K::Message(M::Groupchat | M::Headline), _) => {
                Bounce(DefinedCondition::ServiceUnavailable)
            }
            (K::Message(M::Error), _) => Ignore,
            (K::Presence(_), _) => Ignore,
            (K::IqRequest, _) => Bounce(DefinedCondition::ServiceUnavailable),
            (K::IqResponse, _) => Ignore,
        },
    }
}

fn available(resources: &[ResourceView]) -> Vec<usize> {
    (0..resources.len())
        .filter(|&i| resources[i].is_available)
        .collect()
}

/// RFC 6121 section 8.5.2.1: resources with a negative priority never receive messages sent to the bare JID.
fn non_negative(resources: &[ResourceView]) -> Vec<usize> {
    (0..resources.len())
        .filter(|&i| resources[i].is_available && resources[i].priority >= 0)
        .collect()
}

fn highest_priority(resources: &[ResourceView]) -> Option<Vec<usize>> {
    let candidates = non_negative(resources);
    let top = candidates.iter().map(|&i| resources[i].priority).max()?;
    Some(
        candidates
            .into_iter()
            .filter(|&i| resources[i].priority == top)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;
    use MessageKind as M;
    use PresenceKind as P;
    use StanzaKind as K;

    const UNAVAILABLE: DefinedCondition = DefinedCondition::ServiceUnavailable;

    fn online(priority: i8) -> ResourceView {
        ResourceView {
            is_available: true,
            priority,
        }
    }
    const CONNECTED_NOT_AVAILABLE: ResourceView = ResourceView {
        is_available: false,
        priority: 0,
    };

    /// RFC 6121 section 8.5.1: no such account.
    #[test]
    fn account_does_not_exist() {
        let table = [
            (K::Message(M::Normal), Bounce(UNAVAILABLE)),
            (K::Message(M::Chat), Bounce(UNAVAILABLE)),
            (K::Message(M::Groupchat), Bounce(UNAVAILABLE)),
            (K::Message(M::Headline), Ignore),
            (K::Message(M::Error), Ignore),
            (K::Presence(P::Availability), Ignore),
            (K::Presence(P::Subscription), Ignore),
            (K::Presence(P::Probe), Ignore),
            (K::IqRequest, Bounce(UNAVAILABLE)),
            (K::IqResponse, Ignore),
        ];
        for (kind, expected) in table {
            assert_eq!(decide(kind, Addressee::NoAccount), expected, "{kind:?}");
        }
    }

    /// RFC 6121 section 8.5.2.1: bare JID with available resources (priorities 5, 5, 1, -1).
    #[test]
    fn bare_jid_with_available_resources() {
        let resources = [
            online(5),
            online(5),
            online(1),
            online(-1),
            CONNECTED_NOT_AVAILABLE,
        ];
        let addressee = Addressee::Bare {
            resources: &resources,
        };
        let table = [
            (K::Message(M::Normal), DeliverTo(vec![0, 1])),
            (K::Message(M::Chat), DeliverTo(vec![0, 1])),
            (K::Message(M::Groupchat), Bounce(UNAVAILABLE)),
            (K::Message(M::Headline), DeliverTo(vec![0, 1, 2])),
            (K::Message(M::Error), Ignore),
            (K::Presence(P::Availability), DeliverTo(vec![0, 1, 2, 3])),
            (K::Presence(P::Subscription), ServerHandles),
            (K::Presence(P::Probe), ServerHandles),
            (K::Presence(P::Error), Ignore),
            (K::IqRequest, ServerHandles),
            (K::IqResponse, ServerHandles),
        ];
        for (kind, expected) in table {
            assert_eq!(decide(kind, addressee), expected, "{kind:?}");
        }
    }

    /// RFC 6121 section 8.5.2.2: bare JID with no available resource (none at all, or only negative ones,
    /// or connected but not yet available).
    #[test]
    fn bare_jid_without_available_resources() {
        for resources in [vec![], vec![online(-5)], vec![CONNECTED_NOT_AVAILABLE]] {
            let addressee = Addressee::Bare {
                resources: &resources,
            };
            let table = [
                (K::Message(M::Normal), StoreOffline),
                (K::Message(M::Chat), StoreOffline),
                (K::Message(M::Groupchat), Bounce(UNAVAILABLE)),
                (K::Message(M::Headline), Ignore),
                (K::Message(M::Error), Ignore),
                (K::Presence(P::Subscription), ServerHandles),
                (K::Presence(P::Probe), ServerHandles),
                (K::IqRequest, ServerHandles),
                (K::IqResponse, ServerHandles),
            ];
            for (kind, expected) in table {
                assert_eq!(decide(kind, addressee), expected, "{kind:?} {resources:?}");
            }
        }
    }

    /// RFC 6121 section 8.5.3.1: a connected resource matches the full JID exactly, even one with negative
    /// priority or no initial presence yet.
    #[test]
    fn full_jid_that_matches() {
        let resources = [online(0), online(-3), CONNECTED_NOT_AVAILABLE];
        for exact in 0..resources.len() {
            let addressee = Addressee::Full {
                exact: Some(exact),
                resources: &resources,
            };
            for kind in [
                K::Message(M::Normal),
                K::Message(M::Chat),
                K::Message(M::Groupchat),
                K::Message(M::Headline),
                K::Message(M::Error),
                K::Presence(P::Availability),
                K::Presence(P::Error),
                K::IqRequest,
                K::IqResponse,
            ] {
                assert_eq!(decide(kind, addressee), DeliverTo(vec![exact]), "{kind:?}");
            }
            assert_eq!(
                decide(K::Presence(P::Subscription), addressee),
                ServerHandles
            );
            assert_eq!(decide(K::Presence(P::Probe), addressee), ServerHandles);
        }
    }

    /// RFC 6121 section 8.5.3.2: no resource matches the full JID.
    #[test]
    fn full_jid_without_match() {
        let resources = [online(2), online(-1)];
        let addressee = Addressee::Full {
            exact: None,
            resources: &resources,
        };
        let table = [
            (K::Message(M::Normal), DeliverTo(vec![0])),
            (K::Message(M::Chat), DeliverTo(vec![0])),
            (K::Message(M::Groupchat), Bounce(UNAVAILABLE)),
            (K::Message(M::Headline), Bounce(UNAVAILABLE)),
            (K::Message(M::Error), Ignore),
            (K::Presence(P::Availability), Ignore),
            (K::Presence(P::Subscription), ServerHandles),
            (K::Presence(P::Probe), ServerHandles),
            (K::IqRequest, Bounce(UNAVAILABLE)),
            (K::IqResponse, Ignore),
        ];
        for (kind, expected) in table {
            assert_eq!(decide(kind, addressee), expected, "{kind:?}");
        }
        let offline = Addressee::Full {
            exact: None,
            resources: &[],
        };
        assert_eq!(decide(K::Message(M::Chat), offline), StoreOffline);
        assert_eq!(decide(K::Message(M::Normal), offline), StoreOffline);
    }
}
