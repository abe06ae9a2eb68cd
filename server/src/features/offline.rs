//! XEP-0160: Best Practices for Handling Offline Messages, with XEP-0203 delay stamps.
//!
//! Messages of type `normal` and `chat` for a user with no available resource are stored (up to a per-user
//! quota; beyond it the sender gets `<resource-constraint/>`), and handed over in order when the user sends
//! initial presence (section 3). Rows are deleted only after the session accepted them, so a crash in
//! between delivers twice rather than never.

use std::sync::Arc;

use super::ClientSession;
use crate::router::{Bounce, Router, Stored};
use crate::xmpp::Envelope;
use crate::xmpp::ns;
use crate::xmpp::{BareJid, DefinedCondition, Element, set_attribute};
use herald_storage::{OfflineStore, StorageError};

/// Stores a message for an offline user. Waking their devices is not done here: the router tells its
/// subscribers that the message was stored (`router::events`), and push is one of them.
pub async fn store(
    router: &Arc<Router>,
    user: &BareJid,
    envelope: &Envelope,
) -> Result<Stored, Bounce> {
    if !is_worth_storing(&envelope.element) {
        return Ok(Stored::NotKept);
    }
    let owner = user.to_string();
    let stanza = String::from(&envelope.element);
    let outcome = router
        .context
        .storage
        .offline
        .store(
            &owner,
            &stanza,
            now_ms(),
            router.context.config.offline_quota,
        )
        .await;
    match outcome {
        Ok(OfflineStore::Stored) => Ok(Stored::Kept),
        Ok(OfflineStore::QuotaExceeded) => Err(Bounce::new(
            envelope.clone(),
            DefinedCondition::ResourceConstraint,
        )
        .with_text("The recipient's offline storage is full")),
        Err(e) => {
            tracing::error!(error = %e, "storing an offline message failed");
            Err(Bounce::new(
                envelope.clone(),
                DefinedCondition::InternalServerError,
            ))
        }
    }
}

/// Hands every stored message to the session that just became available, oldest first, each with a
/// XEP-0203 `<delay/>` saying when the server received it. Errors: the messages could not be read
/// (they stay stored); the caller must not treat that as "none waiting".
pub async fn deliver(router: &Arc<Router>, session: &ClientSession) -> Result<(), StorageError> {
    let messages = router
        .context
        .storage
        .offline
        .fetch(&session.bare)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "fetching offline messages failed"))?;
    let resource = session.jid.resource().to_string();
    let domain = session.jid.domain().to_string();
    let mut last_delivered = None;
    for message in messages {
        let Ok(mut element) = message.stanza.parse::<Element>() else {
            tracing::error!(id = message.id, "unparsable offline message skipped");
            last_delivered = Some(message.id);
            continue;
        };
        element.append_child(delay(&domain, message.stored_at_ms));
        if !router
            .deliver_to_resource(&session.bare, &resource, &element)
            .await
        {
            break;
        }
        last_delivered = Some(message.id);
    }
    if let Some(last) = last_delivered
        && let Err(e) = router
            .context
            .storage
            .offline
            .remove_up_to(&session.bare, last)
            .await
    {
        // Delivered already; they come again at the next login (at least once, never lost).
        tracing::error!(error = %e, "removing delivered offline messages failed");
    }
    Ok(())
}

/// XEP-0160 section 3 and XEP-0334: chat-state-only messages and `<no-store/>` hints are not kept.
fn is_worth_storing(message: &Element) -> bool {
    if message.has_child("no-store", ns::HINTS)
        || message.has_child("no-permanent-store", ns::HINTS)
    {
        return false;
    }
    if message.has_child("body", ns::CLIENT) || message.has_child("store", ns::HINTS) {
        return true;
    }
    message
        .children()
        .any(|child| child.ns() != ns::CHATSTATES && child.name() != "thread")
}

/// `<delay xmlns='urn:xmpp:delay' from='domain' stamp='...'/>` (XEP-0203 section 3, XEP-0082 format).
pub fn delay(domain: &str, at_ms: i64) -> Element {
    let stamp = chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let mut element = Element::builder("delay", ns::DELAY).build();
    set_attribute(&mut element, "from", domain);
    set_attribute(&mut element, "stamp", &stamp);
    element.append_text_node("Offline Storage");
    element
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_states_alone_are_not_stored() {
        let composing: Element = "<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>".parse().unwrap();
        assert!(!is_worth_storing(&composing));
        let body: Element = "<message xmlns='jabber:client' type='chat'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>".parse().unwrap();
        assert!(is_worth_storing(&body));
        let hinted: Element = "<message xmlns='jabber:client'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>".parse().unwrap();
        assert!(!is_worth_storing(&hinted));
    }

    #[test]
    fn delay_stamp_is_xep_0082() {
        let xml = String::from(&delay("example.org", 1_700_000_000_123));
        assert!(xml.contains("stamp='2023-11-14T22:13:20.123Z'"), "{xml}");
        assert!(xml.contains("from='example.org'"), "{xml}");
    }
}
