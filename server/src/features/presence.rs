//! RFC 6121 sections 3 and 4: subscriptions and presence.
//!
//! Initial presence is broadcast to contacts with a `from`/`both` subscription and to the user's own
//! resources, probes go to `to`/`both` contacts (4.2.2), pending subscription requests and offline messages
//! follow (3.1.3, XEP-0160). Directed presence is remembered so the entity gets `unavailable` when the
//! session ends (4.6.3). Subscription stanzas drive the pure state machine in [`super::subscription`].

use std::sync::Arc;

use super::ClientSession;
use super::subscription::{self, SubscriptionEvent, SubscriptionState};
use crate::router::events::DeliveryEvent;
use crate::router::{Bounce, Delivery, Router};
use crate::xmpp::{
    BareJid, DefinedCondition, Element, Envelope, Jid, PresenceKind, WireStanza, ns, set_attribute,
};
use herald_storage::{RosterItem, StorageError, Subscription};

/// A presence stanza from a bound client.
pub async fn from_client(
    router: &Arc<Router>,
    session: &mut ClientSession,
    envelope: Envelope,
    kind: PresenceKind,
) {
    match (kind, envelope.to.clone()) {
        (PresenceKind::Availability, None) => broadcast(router, session, envelope).await,
        (PresenceKind::Availability, Some(to)) => {
            // 4.6.2: directed presence; remembered unless the entity gets our broadcasts anyway.
            if envelope.presence_type.as_deref() == Some("unavailable") {
                session.directed_presence.remove(&to);
            } else if session.is_available {
                session.directed_presence.insert(to);
            }
            router.route(envelope).await;
        }
        (PresenceKind::Subscription, Some(to)) => {
            outbound_subscription(router, session, envelope, to.to_bare()).await
        }
        // 4.3: probes are the server's business; clients' probes are ignored.
        (PresenceKind::Probe, _) => {}
        (PresenceKind::Error, Some(_)) => {
            router.route(envelope).await;
        }
        _ => {}
    }
}

/// 4.2 (initial), 4.4 (update) and 4.5 (unavailable) presence broadcast.
async fn broadcast(router: &Arc<Router>, session: &mut ClientSession, mut envelope: Envelope) {
    let is_unavailable = envelope.presence_type.as_deref() == Some("unavailable");
    let is_initial = !session.is_available && !is_unavailable;
    if is_unavailable && !session.is_available {
        return;
    }
    // Read before changing any state. A storage failure is not an empty roster or an empty block list:
    // the client hears of it (a presence error of type `wait`, RFC 6120 section 8.3.3.6) and its next
    // presence is still initial, with probes and offline messages. Going unavailable goes ahead: the
    // session's own state and resources must follow, whatever contacts could not be told.
    let contacts_and_blocks = match (
        contacts(router, &session.bare).await,
        router
            .context
            .block_lists
            .recipient(&router.context.storage, &session.bare)
            .await,
    ) {
        (Ok(roster), Ok(blocks)) => Some((roster, blocks)),
        _ => None,
    };
    let Some((roster, blocks)) = contacts_and_blocks else {
        super::reply_storage_failure(router, session, &envelope).await;
        if is_unavailable {
            tracing::warn!(user = %session.bare, "contacts not told of unavailable presence");
            mark_unavailable(router, session);
        }
        return;
    };
    let resource = session.jid.resource().to_string();
    if is_unavailable {
        mark_unavailable(router, session);
    } else {
        // XEP-0398 section 4: the XEP-0084 avatar's hash, for XEP-0153 clients.
        super::vcard_avatar::stamp_presence(
            router,
            &session.bare,
            &mut session.avatar_photo,
            &mut envelope.element,
        )
        .await;
        session.is_available = true;
        // Initial presence waits for offline stores in flight for this user to commit, so the fetch
        // below sees them; stores after this see the resource available (`router/offline_gate.rs`).
        let _gate = if is_initial {
            Some(router.offline_gates.lock(&session.bare).await)
        } else {
            None
        };
        router.sessions.set_presence(
            &session.bare,
            &resource,
            Some((envelope.element.clone(), priority(&envelope.element))),
        );
    }
    let from = session.jid.to_string();
    for item in roster.iter().filter(|i| has_from(i.subscription)) {
        // XEP-0191 section 3.3: a contact the user blocked gets no presence from the user.
        if Jid::new(&item.contact).is_ok_and(|contact| blocks.blocks(&contact)) {
            continue;
        }
        send_copy(router, &envelope.element, &from, &item.contact).await;
    }
    // 4.2.2 / 4.4.2: the user's own available resources, including the sender.
    for other in router.sessions.resources(&session.bare) {
        if other.view.is_available || other.resource == resource {
            let to = format!("{}/{}", session.bare, other.resource);
            send_copy(router, &envelope.element, &from, &to).await;
        }
    }
    if is_unavailable {
        // 4.6.3: everyone who got directed presence learns we left.
        let subscribers: Vec<&str> = roster
            .iter()
            .filter(|i| has_from(i.subscription))
            .map(|i| i.contact.as_str())
            .collect();
        for target in std::mem::take(&mut session.directed_presence) {
            if subscribers.contains(&target.to_bare().to_string().as_str()) {
                continue;
            }
            send_copy(router, &envelope.element, &from, &target.to_string()).await;
        }
        return;
    }
    if is_initial {
        for item in roster.iter().filter(|i| has_to(i.subscription)) {
            let probe = presence("probe", &session.bare, &item.contact);
            tell_session_if_bounced(router, session, probe).await;
        }
        deliver_pending_requests(router, session, &roster).await;
    }
    if is_initial || session.has_undelivered_offline {
        // XEP-0160 section 3: a read failure is not "nothing waiting". The client hears of it (type
        // `wait`), the messages stay stored, and its next presence tries again.
        let failed = super::offline::deliver(router, session).await.is_err();
        session.has_undelivered_offline = failed;
        if failed {
            super::reply_storage_failure(router, session, &envelope).await;
        }
    }
    // XEP-0115 caps for XEP-0163: after the offline messages, so the last PEP items come after what
    // waited for the user.
    super::entity_caps::presence_sent(router, session, Some(&envelope.element), is_initial).await;
}

/// Broadcasts `presence` as the session's presence update (RFC 6121 section 4.4), as if the client
/// had sent it again: what the server changes in a presence (XEP-0398's avatar hash) reaches contacts.
pub async fn send_again(router: &Arc<Router>, session: &mut ClientSession, presence: Envelope) {
    broadcast(router, session, presence).await;
}

/// Routes a stanza the server sends from the user's bare JID (a probe, a subscription stanza) and, if
/// it bounced, hands the error to the session that caused it: routed, an error to a bare JID is ignored
/// (RFC 6121 section 8.5.2), and the user would never learn that the contact could not be asked.
async fn tell_session_if_bounced(router: &Arc<Router>, session: &ClientSession, stanza: Element) {
    let Ok(envelope) = Envelope::parse(stanza.clone()) else {
        return;
    };
    if let Delivery::Bounced(condition) = router.send(stanza).await
        && let Some(mut reply) = envelope.error_reply(condition, None)
    {
        set_attribute(&mut reply, "to", &session.jid.to_string());
        super::reply_to_session(router, session, &reply).await;
    }
}

fn mark_unavailable(router: &Arc<Router>, session: &mut ClientSession) {
    session.is_available = false;
    // XEP-0115: what an unavailable resource announced no longer holds.
    router.context.caps.forget(&session.jid.to_string());
    router
        .sessions
        .set_presence(&session.bare, session.jid.resource().as_str(), None);
}

/// Ends a session's presence: unavailable to contacts, own resources and directed-presence targets
/// (4.5.2, 4.6.3). Called when the connection closes without an unavailable presence.
pub async fn session_ended(router: &Arc<Router>, session: &mut ClientSession) {
    if !session.is_available {
        return;
    }
    let mut unavailable = presence("unavailable", &session.jid.to_string(), &session.bare);
    crate::xmpp::remove_attribute(&mut unavailable, "to");
    if let Ok(envelope) = Envelope::parse(unavailable) {
        broadcast(router, session, envelope).await;
    }
}

/// 4.3.2: answers a probe for `user` if the prober is subscribed to the user's presence. Errors: the
/// roster could not be read, answered with `<internal-server-error/>` (type `wait`) rather than the
/// silence that would mean "not subscribed" or "offline".
pub async fn answer_probe(
    router: &Arc<Router>,
    user: &BareJid,
    probe: Envelope,
) -> Result<Delivery, Bounce> {
    let Some(prober) = &probe.from else {
        return Ok(Delivery::Dropped);
    };
    let prober_bare = prober.to_bare().to_string();
    let user_key = user.to_string();
    let subscribed = match router
        .context
        .storage
        .rosters
        .item(&user_key, &prober_bare)
        .await
    {
        Ok(item) => item.is_some_and(|item| has_from(item.subscription)),
        Err(e) => {
            tracing::error!(error = %e, "loading a roster item for a probe failed");
            return Err(Bounce::new(probe, DefinedCondition::InternalServerError));
        }
    };
    if !subscribed {
        return Ok(Delivery::Handled);
    }
    let available: Vec<_> = router
        .sessions
        .resources(&user_key)
        .into_iter()
        .filter_map(|r| Some((r.resource, r.presence?.unpack()?)))
        .collect();
    if available.is_empty() {
        router
            .send(presence("unavailable", &user_key, &prober.to_string()))
            .await;
        return Ok(Delivery::Handled);
    }
    for (resource, element) in available {
        let from = format!("{user_key}/{resource}");
        send_copy(router, &element, &from, &prober.to_string()).await;
    }
    Ok(Delivery::Handled)
}

/// A subscription stanza the user's client sent (3.1.2, 3.2.2, 3.3.2, 3.4).
async fn outbound_subscription(
    router: &Arc<Router>,
    session: &ClientSession,
    mut envelope: Envelope,
    contact: BareJid,
) {
    let Some(event) = outbound_event(envelope.presence_type.as_deref()) else {
        return;
    };
    // 3.1.2: the server stamps the user's bare JID and addresses the contact's bare JID.
    envelope.set_from(&Jid::from(session.bare_jid()));
    envelope.set_to(&Jid::from(contact.clone()));
    let owner = session.bare.clone();
    // Held until the change is stored: the contact's answer may be changing the same item.
    let roster_gate = router.roster_gates.lock(&owner).await;
    // A storage failure ends here with an error to the client (type `wait`): routing the stanza
    // without the state change stored would leave the two rosters disagreeing.
    let Ok((mut item, is_stored)) = load_item(router, &owner, &contact).await else {
        super::reply_storage_failure(router, session, &envelope).await;
        return;
    };
    let transition = subscription::apply(state_of(&item), event);
    // 3.1.2 and 3.4: asking or pre-approving puts the contact in the roster. Only a change is stored and
    // pushed: a request to a contact already subscribed to leaves the roster as it was, and a roster
    // push (2.1.6) with nothing changed is noise to every interested resource.
    let joins_roster = !item.in_roster
        && matches!(
            event,
            SubscriptionEvent::OutboundSubscribe | SubscriptionEvent::OutboundSubscribed
        );
    if transition.state_changed || joins_roster {
        // A new item beyond `[limits] max_roster_items` is refused like a roster set (RFC 6121 section
        // 2.3.3 via section 3.1.2: asking creates a roster item); nothing is routed.
        if !is_stored {
            match super::roster::has_room(router, &owner).await {
                Ok(true) => {}
                Ok(false) => {
                    let error = super::roster::roster_full(router);
                    if let Some(reply) =
                        envelope.error_reply(error.condition, error.text.as_deref())
                    {
                        super::reply_to_session(router, session, &reply).await;
                    }
                    return;
                }
                Err(_) => {
                    super::reply_storage_failure(router, session, &envelope).await;
                    return;
                }
            }
        }
        apply_state(&mut item, transition.state);
        if joins_roster {
            item.in_roster = true;
        }
        if save_and_push(router, &owner, &item).await.is_err() {
            super::reply_storage_failure(router, session, &envelope).await;
            return;
        }
    }
    drop(roster_gate);
    if transition.route_to_contact {
        tell_session_if_bounced(router, session, envelope.element).await;
        match event {
            // 3.1.5: after approving, the contact gets our current presence.
            SubscriptionEvent::OutboundSubscribed => {
                send_current_presence(router, &owner, &contact).await
            }
            // 3.2.2: after cancelling, the contact sees us go offline.
            SubscriptionEvent::OutboundUnsubscribed => {
                send_unavailable(router, &owner, &contact).await
            }
            _ => {}
        }
    }
}

/// A subscription stanza from a contact to a local user (3.1.3, 3.1.6, 3.2.3, 3.3.3).
pub async fn inbound_subscription(
    router: &Arc<Router>,
    user: &BareJid,
    mut envelope: Envelope,
) -> Result<Delivery, Bounce> {
    let Some(from) = envelope.from.clone() else {
        return Ok(Delivery::Dropped);
    };
    let Some(event) = inbound_event(envelope.presence_type.as_deref()) else {
        return Ok(Delivery::Dropped);
    };
    let contact = from.to_bare();
    envelope.set_from(&Jid::from(contact.clone()));
    envelope.set_to(&Jid::from(user.clone()));
    let owner = user.to_string();
    // Held until the change is stored: the user's own client may be changing the same item.
    let roster_gate = router.roster_gates.lock(&owner).await;
    // A storage failure is answered (type `wait`) so the contact's server or client can try again;
    // dropping the stanza would lose a subscription request for good.
    let Ok((mut item, is_stored)) = load_item(router, &owner, &contact).await else {
        return Err(Bounce::new(envelope, DefinedCondition::InternalServerError));
    };
    let transition = subscription::apply(state_of(&item), event);
    if transition.state_changed {
        // Pending-in requests are stored (3.1.3), so anyone could grow a roster by asking from many
        // JIDs: a new item beyond `[limits] max_roster_items` is refused with `<resource-constraint/>`
        // (RFC 6120 section 8.3.3.18), as a full offline store refuses messages.
        if !is_stored {
            match super::roster::has_room(router, &owner).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Bounce::new(envelope, DefinedCondition::ResourceConstraint)
                        .with_text("The user's roster is full"));
                }
                Err(_) => {
                    return Err(Bounce::new(envelope, DefinedCondition::InternalServerError));
                }
            }
        }
        apply_state(&mut item, transition.state);
        if item.in_roster || item.pending_in || item.subscription != Subscription::None {
            if save_and_push(router, &owner, &item).await.is_err() {
                return Err(Bounce::new(envelope, DefinedCondition::InternalServerError));
            }
        } else {
            router
                .context
                .remote_resources
                .forget_contact(&owner, &item.contact);
            if let Err(e) = router
                .context
                .storage
                .rosters
                .remove(&owner, &item.contact)
                .await
            {
                tracing::error!(error = %e, "dropping an empty roster entry failed");
            }
        }
    }
    drop(roster_gate);
    if transition.auto_subscribed_reply {
        router
            .send(presence("subscribed", &owner, &contact.to_string()))
            .await;
        send_current_presence(router, &owner, &contact).await;
    }
    if matches!(event, SubscriptionEvent::InboundUnsubscribe) && transition.state_changed {
        send_unavailable(router, &owner, &contact).await;
    }
    if !transition.route_to_contact {
        return Ok(Delivery::Handled);
    }
    let mut delivered = false;
    let stanza = WireStanza::for_client_stream(&envelope.element);
    for resource in router.sessions.resources(&owner) {
        if resource.view.is_available {
            delivered |= router
                .deliver(&owner, &resource.resource, &resource.handle, &stanza)
                .await;
        }
    }
    // An undelivered subscribe stays pending-in and is redelivered at the next login (3.1.3).
    if !delivered
        && transition.state_changed
        && matches!(event, SubscriptionEvent::InboundSubscribe)
    {
        router
            .emit(DeliveryEvent::SubscriptionRequestKept {
                user,
                envelope: &envelope,
            })
            .await;
    }
    Ok(if delivered {
        Delivery::Delivered
    } else {
        Delivery::Handled
    })
}

async fn deliver_pending_requests(
    router: &Arc<Router>,
    session: &ClientSession,
    roster: &[RosterItem],
) {
    for item in roster.iter().filter(|i| i.pending_in) {
        let request = presence("subscribe", &item.contact, &session.bare);
        super::reply_to_session(router, session, &request).await;
    }
}

/// 3.1.5: a contact newly subscribed to `owner`'s presence gets its current presence, and (XEP-0163
/// section 6.2, "on_sub_and_presence") the last item of each PEP node it asks for and may read.
async fn send_current_presence(router: &Arc<Router>, owner: &str, contact: &BareJid) {
    for resource in router.sessions.resources(owner) {
        if let Some(element) = resource.presence.and_then(|p| p.unpack()) {
            let from = format!("{owner}/{}", resource.resource);
            send_copy(router, &element, &from, &contact.to_string()).await;
        }
    }
    super::pep::notify::send_last_items_to_contact(router, owner, contact).await;
}

/// Unavailable presence from each of `owner`'s available resources to `contact` (RFC 6121 section 3.2.2).
pub(crate) async fn send_unavailable(router: &Arc<Router>, owner: &str, contact: &BareJid) {
    for resource in router.sessions.resources(owner) {
        if resource.view.is_available {
            let from = format!("{owner}/{}", resource.resource);
            router
                .send(presence("unavailable", &from, &contact.to_string()))
                .await;
        }
    }
}

/// The stored item for `contact`, or a fresh one; the flag tells whether it was stored (a fresh one
/// takes room in the roster when saved).
async fn load_item(
    router: &Arc<Router>,
    owner: &str,
    contact: &BareJid,
) -> Result<(RosterItem, bool), StorageError> {
    match router
        .context
        .storage
        .rosters
        .item(owner, &contact.to_string())
        .await
    {
        Ok(Some(item)) => Ok((item, true)),
        Ok(None) => Ok((
            RosterItem {
                contact: contact.to_string(),
                ..RosterItem::default()
            },
            false,
        )),
        Err(e) => {
            tracing::error!(error = %e, "loading a roster item failed");
            Err(e)
        }
    }
}

async fn save_and_push(
    router: &Arc<Router>,
    owner: &str,
    item: &RosterItem,
) -> Result<(), StorageError> {
    match router.context.storage.rosters.upsert(owner, item).await {
        Ok(version) => {
            if !item.in_roster || item.subscription == Subscription::None {
                // XEP-0163: a contact no longer linked is not notified; its tracked resources go.
                router
                    .context
                    .remote_resources
                    .forget_contact(owner, &item.contact);
            }
            if item.in_roster {
                super::roster::push(router, owner, super::roster::item_element(item), version)
                    .await;
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "saving a roster item failed");
            Err(e)
        }
    }
}

async fn contacts(router: &Arc<Router>, owner: &str) -> Result<Vec<RosterItem>, StorageError> {
    match router.context.storage.rosters.items(owner).await {
        Ok((_, items)) => Ok(items),
        Err(e) => {
            tracing::error!(error = %e, "loading a roster failed");
            Err(e)
        }
    }
}

async fn send_copy(router: &Arc<Router>, original: &Element, from: &str, to: &str) {
    let mut copy = original.clone();
    set_attribute(&mut copy, "from", from);
    set_attribute(&mut copy, "to", to);
    router.send(copy).await;
}

fn presence(kind: &str, from: &str, to: &str) -> Element {
    let mut element = Element::builder("presence", ns::CLIENT).build();
    for (name, value) in [("type", kind), ("from", from), ("to", to)] {
        set_attribute(&mut element, name, value);
    }
    element
}

/// RFC 6121 section 4.7.2.3: priority is -128..127, default 0.
fn priority(presence: &Element) -> i8 {
    presence
        .get_child("priority", ns::CLIENT)
        .and_then(|p| p.text().trim().parse().ok())
        .unwrap_or(0)
}

fn has_from(subscription: Subscription) -> bool {
    matches!(subscription, Subscription::From | Subscription::Both)
}

fn has_to(subscription: Subscription) -> bool {
    matches!(subscription, Subscription::To | Subscription::Both)
}

fn state_of(item: &RosterItem) -> SubscriptionState {
    SubscriptionState {
        subscription: item.subscription,
        pending_out: item.pending_out,
        pending_in: item.pending_in,
        pre_approved: item.pre_approved,
    }
}

fn apply_state(item: &mut RosterItem, state: SubscriptionState) {
    item.subscription = state.subscription;
    item.pending_out = state.pending_out;
    item.pending_in = state.pending_in;
    item.pre_approved = state.pre_approved;
}

fn outbound_event(kind: Option<&str>) -> Option<SubscriptionEvent> {
    Some(match kind? {
        "subscribe" => SubscriptionEvent::OutboundSubscribe,
        "subscribed" => SubscriptionEvent::OutboundSubscribed,
        "unsubscribe" => SubscriptionEvent::OutboundUnsubscribe,
        "unsubscribed" => SubscriptionEvent::OutboundUnsubscribed,
        _ => return None,
    })
}

fn inbound_event(kind: Option<&str>) -> Option<SubscriptionEvent> {
    Some(match kind? {
        "subscribe" => SubscriptionEvent::InboundSubscribe,
        "subscribed" => SubscriptionEvent::InboundSubscribed,
        "unsubscribe" => SubscriptionEvent::InboundUnsubscribe,
        "unsubscribed" => SubscriptionEvent::InboundUnsubscribed,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_defaults_and_clamps_to_the_wire_range() {
        let p = |xml: &str| priority(&xml.parse::<Element>().unwrap());
        assert_eq!(p("<presence xmlns='jabber:client'/>"), 0);
        assert_eq!(
            p("<presence xmlns='jabber:client'><priority>-5</priority></presence>"),
            -5
        );
        assert_eq!(
            p("<presence xmlns='jabber:client'><priority>900</priority></presence>"),
            0
        );
    }
}
