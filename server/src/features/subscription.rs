//! RFC 6121 presence subscriptions: the state machine of one roster item (Appendix A, sections 3.1-3.4,
//! including subscription pre-approval, section 3.4) as a pure function. The caller stores the new state,
//! routes or delivers the stanza, pushes the roster item and sends any automatic reply as told.

use herald_storage::Subscription;

/// The subscription state of one roster item (RFC 6121 Appendix A.1): the nine defined states are the
/// combinations of `subscription` with `pending_out`/`pending_in` that make sense, plus the pre-approval
/// flag (section 3.4), which only exists alongside "None", "None + Pending Out" and "To".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionState {
    pub subscription: Subscription,
    /// "Pending Out": the user asked the contact and has no answer (`ask='subscribe'`).
    pub pending_out: bool,
    /// "Pending In": the contact asked the user and the user has not answered.
    pub pending_in: bool,
    /// The user pre-approved a request from the contact (`approved='true'`).
    pub pre_approved: bool,
}

/// A subscription-related presence stanza, seen from the roster owner's ("user's") server: outbound ones
/// come from the user, inbound ones from the contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionEvent {
    OutboundSubscribe,
    OutboundSubscribed,
    OutboundUnsubscribe,
    OutboundUnsubscribed,
    InboundSubscribe,
    InboundSubscribed,
    InboundUnsubscribe,
    InboundUnsubscribed,
}

/// What to do after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state to store.
    pub state: SubscriptionState,
    /// Whether `state` differs from the old state in any field (including `pending_in`).
    pub state_changed: bool,
    /// Outbound: route the stanza to the contact. Inbound: deliver it to the user's interested resources.
    pub route_to_contact: bool,
    /// Send a roster push to the user's interested resources: a field a roster item shows (`subscription`,
    /// `ask`, `approved`) changed. "Pending In" alone is not shown (RFC 6121 section 3.1.3), so it pushes
    /// nothing.
    pub roster_push: bool,
    /// Inbound subscribe the server answers itself with `subscribed` from the user's bare JID: the contact
    /// already has a subscription (section 3.1.3 step 2) or was pre-approved (section 3.4).
    pub auto_subscribed_reply: bool,
}

/// Applies `event` to `state` following RFC 6121 Appendix A.2 (outbound) and A.3 (inbound), and section
/// 3.4 for pre-approvals.
pub fn apply(state: SubscriptionState, event: SubscriptionEvent) -> Transition {
    let mut to = matches!(state.subscription, Subscription::To | Subscription::Both);
    let mut from = matches!(state.subscription, Subscription::From | Subscription::Both);
    let mut next = state;
    let mut route = false;
    let mut auto_reply = false;
    match event {
        // A.2.1 and section 3.1.2: the request is always routed (RFC 6121 made this unconditional so a
        // contact whose server lost state can resynchronise); Pending Out unless already subscribed.
        SubscriptionEvent::OutboundSubscribe => {
            route = true;
            if !to {
                next.pending_out = true;
            }
        }
        // A.2.2 and section 3.3.2: always routed; ends "To" and withdraws a pending request.
        SubscriptionEvent::OutboundUnsubscribe => {
            route = true;
            to = false;
            next.pending_out = false;
        }
        // A.2.3 and section 3.1.5: approves a pending request (routed); without one it is a pre-approval
        // (section 3.4, not routed); with "From" already it is ignored.
        SubscriptionEvent::OutboundSubscribed => {
            if from {
                // No state change, not routed.
            } else if state.pending_in {
                route = true;
                from = true;
                next.pending_in = false;
                next.pre_approved = false;
            } else {
                next.pre_approved = true;
            }
        }
        // A.2.4 and section 3.2.2: denies a pending request or cancels "From" (routed). A pre-approval is
        // withdrawn without routing anything (section 3.2.2 step 2).
        SubscriptionEvent::OutboundUnsubscribed => {
            route = from || state.pending_in;
            from = false;
            next.pending_in = false;
            next.pre_approved = false;
        }
        // A.3.1, sections 3.1.3 and 3.4.
        SubscriptionEvent::InboundSubscribe => {
            if from {
                // Step 2: already subscribed; answer for the user, deliver nothing.
                auto_reply = true;
            } else if state.pending_in {
                // Already recorded; deliver only one request (step 4).
            } else if state.pre_approved {
                // Section 3.4: approve on the user's behalf, deliver nothing, push the new item.
                auto_reply = true;
                from = true;
                next.pre_approved = false;
            } else {
                route = true;
                next.pending_in = true;
            }
        }
        // A.3.2 and section 3.3.3: delivered when it ends "From" or withdraws a pending request.
        SubscriptionEvent::InboundUnsubscribe => {
            route = from || state.pending_in;
            from = false;
            next.pending_in = false;
        }
        // A.3.3 and section 3.1.6: delivered only if the user asked and is not yet subscribed.
        SubscriptionEvent::InboundSubscribed => {
            if !to && state.pending_out {
                route = true;
                to = true;
                next.pending_out = false;
            }
        }
        // A.3.4 and section 3.2.3: delivered when it ends "To" or denies the user's request.
        SubscriptionEvent::InboundUnsubscribed => {
            route = to || state.pending_out;
            to = false;
            next.pending_out = false;
        }
    }
    next.subscription = match (to, from) {
        (false, false) => Subscription::None,
        (true, false) => Subscription::To,
        (false, true) => Subscription::From,
        (true, true) => Subscription::Both,
    };
    let roster_push = next.subscription != state.subscription
        || next.pending_out != state.pending_out
        || next.pre_approved != state.pre_approved;
    Transition {
        state: next,
        state_changed: next != state,
        route_to_contact: route,
        roster_push,
        auto_subscribed_reply: auto_reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriptionEvent::*;

    const Y: bool = true;
    const N: bool = false;

    /// The state names of RFC 6121 Appendix A.1, plus "+Pre" for a pre-approval (section 3.4).
    fn state(name: &str) -> SubscriptionState {
        let (subscription, pending_out, pending_in, pre_approved) = match name {
            "None" => (Subscription::None, N, N, N),
            "None+Out" => (Subscription::None, Y, N, N),
            "None+In" => (Subscription::None, N, Y, N),
            "None+OutIn" => (Subscription::None, Y, Y, N),
            "To" => (Subscription::To, N, N, N),
            "To+In" => (Subscription::To, N, Y, N),
            "From" => (Subscription::From, N, N, N),
            "From+Out" => (Subscription::From, Y, N, N),
            "Both" => (Subscription::Both, N, N, N),
            "None+Pre" => (Subscription::None, N, N, Y),
            "None+Out+Pre" => (Subscription::None, Y, N, Y),
            "To+Pre" => (Subscription::To, N, N, Y),
            other => panic!("unknown state {other}"),
        };
        SubscriptionState {
            subscription,
            pending_out,
            pending_in,
            pre_approved,
        }
    }

    /// (event, existing state, new state, route/deliver, roster push, auto-reply `subscribed`).
    /// The first nine rows of each block are the RFC 6121 Appendix A table for that event, in its order;
    /// the last three are the pre-approved states of section 3.4.
    #[rustfmt::skip]
    const TABLE: &[(SubscriptionEvent, &str, &str, bool, bool, bool)] = &[
        // A.2.1 outbound subscribe: always routed.
        (OutboundSubscribe, "None", "None+Out", Y, Y, N),
        (OutboundSubscribe, "None+Out", "None+Out", Y, N, N),
        (OutboundSubscribe, "None+In", "None+OutIn", Y, Y, N),
        (OutboundSubscribe, "None+OutIn", "None+OutIn", Y, N, N),
        (OutboundSubscribe, "To", "To", Y, N, N),
        (OutboundSubscribe, "To+In", "To+In", Y, N, N),
        (OutboundSubscribe, "From", "From+Out", Y, Y, N),
        (OutboundSubscribe, "From+Out", "From+Out", Y, N, N),
        (OutboundSubscribe, "Both", "Both", Y, N, N),
        (OutboundSubscribe, "None+Pre", "None+Out+Pre", Y, Y, N),
        (OutboundSubscribe, "None+Out+Pre", "None+Out+Pre", Y, N, N),
        (OutboundSubscribe, "To+Pre", "To+Pre", Y, N, N),
        // A.2.2 outbound unsubscribe: always routed.
        (OutboundUnsubscribe, "None", "None", Y, N, N),
        (OutboundUnsubscribe, "None+Out", "None", Y, Y, N),
        (OutboundUnsubscribe, "None+In", "None+In", Y, N, N),
        (OutboundUnsubscribe, "None+OutIn", "None+In", Y, Y, N),
        (OutboundUnsubscribe, "To", "None", Y, Y, N),
        (OutboundUnsubscribe, "To+In", "None+In", Y, Y, N),
        (OutboundUnsubscribe, "From", "From", Y, N, N),
        (OutboundUnsubscribe, "From+Out", "From", Y, Y, N),
        (OutboundUnsubscribe, "Both", "From", Y, Y, N),
        (OutboundUnsubscribe, "None+Pre", "None+Pre", Y, N, N),
        (OutboundUnsubscribe, "None+Out+Pre", "None+Pre", Y, Y, N),
        (OutboundUnsubscribe, "To+Pre", "None+Pre", Y, Y, N),
        // A.2.3 outbound subscribed: "pre-approval" rows per section 3.4 (not routed, pushed).
        (OutboundSubscribed, "None", "None+Pre", N, Y, N),
        (OutboundSubscribed, "None+Out", "None+Out+Pre", N, Y, N),
        (OutboundSubscribed, "None+In", "From", Y, Y, N),
        (OutboundSubscribed, "None+OutIn", "From+Out", Y, Y, N),
        (OutboundSubscribed, "To", "To+Pre", N, Y, N),
        (OutboundSubscribed, "To+In", "Both", Y, Y, N),
        (OutboundSubscribed, "From", "From", N, N, N),
        (OutboundSubscribed, "From+Out", "From+Out", N, N, N),
        (OutboundSubscribed, "Both", "Both", N, N, N),
        (OutboundSubscribed, "None+Pre", "None+Pre", N, N, N),
        (OutboundSubscribed, "None+Out+Pre", "None+Out+Pre", N, N, N),
        (OutboundSubscribed, "To+Pre", "To+Pre", N, N, N),
        // A.2.4 outbound unsubscribed; section 3.2.2 step 2 withdraws a pre-approval without routing.
        (OutboundUnsubscribed, "None", "None", N, N, N),
        (OutboundUnsubscribed, "None+Out", "None+Out", N, N, N),
        (OutboundUnsubscribed, "None+In", "None", Y, N, N),
        (OutboundUnsubscribed, "None+OutIn", "None+Out", Y, N, N),
        (OutboundUnsubscribed, "To", "To", N, N, N),
        (OutboundUnsubscribed, "To+In", "To", Y, N, N),
        (OutboundUnsubscribed, "From", "None", Y, Y, N),
        (OutboundUnsubscribed, "From+Out", "None+Out", Y, Y, N),
        (OutboundUnsubscribed, "Both", "To", Y, Y, N),
        (OutboundUnsubscribed, "None+Pre", "None", N, Y, N),
        (OutboundUnsubscribed, "None+Out+Pre", "None+Out", N, Y, N),
        (OutboundUnsubscribed, "To+Pre", "To", N, Y, N),
        // A.3.1 inbound subscribe: "no *" rows are answered by the server (section 3.1.3 step 2);
        // pre-approved requests are approved on the user's behalf (section 3.4).
        (InboundSubscribe, "None", "None+In", Y, N, N),
        (InboundSubscribe, "None+Out", "None+OutIn", Y, N, N),
        (InboundSubscribe, "None+In", "None+In", N, N, N),
        (InboundSubscribe, "None+OutIn", "None+OutIn", N, N, N),
        (InboundSubscribe, "To", "To+In", Y, N, N),
        (InboundSubscribe, "To+In", "To+In", N, N, N),
        (InboundSubscribe, "From", "From", N, N, Y),
        (InboundSubscribe, "From+Out", "From+Out", N, N, Y),
        (InboundSubscribe, "Both", "Both", N, N, Y),
        (InboundSubscribe, "None+Pre", "From", N, Y, Y),
        (InboundSubscribe, "None+Out+Pre", "From+Out", N, Y, Y),
        (InboundSubscribe, "To+Pre", "Both", N, Y, Y),
        // A.3.2 inbound unsubscribe.
        (InboundUnsubscribe, "None", "None", N, N, N),
        (InboundUnsubscribe, "None+Out", "None+Out", N, N, N),
        (InboundUnsubscribe, "None+In", "None", Y, N, N),
        (InboundUnsubscribe, "None+OutIn", "None+Out", Y, N, N),
        (InboundUnsubscribe, "To", "To", N, N, N),
        (InboundUnsubscribe, "To+In", "To", Y, N, N),
        (InboundUnsubscribe, "From", "None", Y, Y, N),
        (InboundUnsubscribe, "From+Out", "None+Out", Y, Y, N),
        (InboundUnsubscribe, "Both", "To", Y, Y, N),
        (InboundUnsubscribe, "None+Pre", "None+Pre", N, N, N),
        (InboundUnsubscribe, "None+Out+Pre", "None+Out+Pre", N, N, N),
        (InboundUnsubscribe, "To+Pre", "To+Pre", N, N, N),
        // A.3.3 inbound subscribed.
        (InboundSubscribed, "None", "None", N, N, N),
        (InboundSubscribed, "None+Out", "To", Y, Y, N),
        (InboundSubscribed, "None+In", "None+In", N, N, N),
        (InboundSubscribed, "None+OutIn", "To+In", Y, Y, N),
        (InboundSubscribed, "To", "To", N, N, N),
        (InboundSubscribed, "To+In", "To+In", N, N, N),
        (InboundSubscribed, "From", "From", N, N, N),
        (InboundSubscribed, "From+Out", "Both", Y, Y, N),
        (InboundSubscribed, "Both", "Both", N, N, N),
        (InboundSubscribed, "None+Pre", "None+Pre", N, N, N),
        (InboundSubscribed, "None+Out+Pre", "To+Pre", Y, Y, N),
        (InboundSubscribed, "To+Pre", "To+Pre", N, N, N),
        // A.3.4 inbound unsubscribed.
        (InboundUnsubscribed, "None", "None", N, N, N),
        (InboundUnsubscribed, "None+Out", "None", Y, Y, N),
        (InboundUnsubscribed, "None+In", "None+In", N, N, N),
        (InboundUnsubscribed, "None+OutIn", "None+In", Y, Y, N),
        (InboundUnsubscribed, "To", "None", Y, Y, N),
        (InboundUnsubscribed, "To+In", "None+In", Y, Y, N),
        (InboundUnsubscribed, "From", "From", N, N, N),
        (InboundUnsubscribed, "From+Out", "From", Y, Y, N),
        (InboundUnsubscribed, "Both", "From", Y, Y, N),
        (InboundUnsubscribed, "None+Pre", "None+Pre", N, N, N),
        (InboundUnsubscribed, "None+Out+Pre", "None+Pre", Y, Y, N),
        (InboundUnsubscribed, "To+Pre", "None+Pre", Y, Y, N),
    ];

    #[test]
    fn every_state_and_event_follows_rfc6121_appendix_a() {
        for &(event, before, after, route, push, auto) in TABLE {
            let transition = apply(state(before), event);
            let expected = Transition {
                state: state(after),
                state_changed: before != after,
                route_to_contact: route,
                roster_push: push,
                auto_subscribed_reply: auto,
            };
            assert_eq!(transition, expected, "{event:?} in {before}");
        }
    }

    #[test]
    fn the_table_covers_every_state_and_event() {
        let states = [
            "None",
            "None+Out",
            "None+In",
            "None+OutIn",
            "To",
            "To+In",
            "From",
            "From+Out",
            "Both",
            "None+Pre",
            "None+Out+Pre",
            "To+Pre",
        ];
        let events = [
            OutboundSubscribe,
            OutboundSubscribed,
            OutboundUnsubscribe,
            OutboundUnsubscribed,
            InboundSubscribe,
            InboundSubscribed,
            InboundUnsubscribe,
            InboundUnsubscribed,
        ];
        assert_eq!(TABLE.len(), states.len() * events.len());
        for event in events {
            for name in states {
                let rows = TABLE
                    .iter()
                    .filter(|row| row.0 == event && row.1 == name)
                    .count();
                assert_eq!(rows, 1, "{event:?} in {name}");
            }
        }
    }

    #[test]
    fn a_full_handshake_ends_in_both_on_each_side() {
        // Section 3.1: the user subscribes, the contact approves and subscribes back; both rosters end
        // in "Both".
        let mut user = SubscriptionState::default();
        let mut contact = SubscriptionState::default();
        user = apply(user, OutboundSubscribe).state;
        contact = apply(contact, InboundSubscribe).state;
        contact = apply(contact, OutboundSubscribed).state;
        user = apply(user, InboundSubscribed).state;
        contact = apply(contact, OutboundSubscribe).state;
        user = apply(user, InboundSubscribe).state;
        user = apply(user, OutboundSubscribed).state;
        contact = apply(contact, InboundSubscribed).state;
        assert_eq!(user, state("Both"));
        assert_eq!(contact, state("Both"));
    }
}
