//! XEP-0030: Service Discovery. The server's features are derived from [`IQ_HANDLERS`] plus the
//! behaviours that have no IQ of their own, so what is advertised is exactly what is handled.

use std::sync::Arc;

use super::iq::{IQ_HANDLERS, IqAnswer, IqError, IqRequest};
use crate::router::Router;
use crate::xmpp::ns;
use crate::xmpp::{BareJid, DefinedCondition, Element, Jid, set_attribute};

/// Features that are behaviours rather than IQ payloads: XEP-0160 offline storage.
const BEHAVIOUR_FEATURES: [&str; 1] = ["msgoffline"];

/// Every feature the server's disco#info lists, sorted: the table's, the behaviours', and the PEP
/// service's `pubsub#...` features, which clients look for on the server as well (as ejabberd lists
/// them there).
pub fn server_features() -> Vec<&'static str> {
    let mut features: Vec<&'static str> = IQ_HANDLERS
        .iter()
        .filter(|h| h.is_advertised)
        .map(|h| h.namespace)
        .chain(BEHAVIOUR_FEATURES)
        .chain(super::pep::FEATURES)
        .collect();
    features.sort_unstable();
    features.dedup();
    features
}

/// Every feature an account's disco#info lists, sorted: disco#info itself, the payloads marked
/// for accounts in [`IQ_HANDLERS`], the PEP service's features (XEP-0163 section 5) and XEP-0402
/// bookmarks compatibility.
pub fn account_features() -> Vec<&'static str> {
    let mut features: Vec<&'static str> = IQ_HANDLERS
        .iter()
        .filter(|h| h.is_advertised_on_account)
        .map(|h| h.namespace)
        .chain([ns::DISCO_INFO])
        .chain(super::pep::FEATURES)
        .chain(super::bookmarks_compat::ACCOUNT_FEATURES)
        .chain(super::vcard_avatar::ACCOUNT_FEATURES)
        .collect();
    features.sort_unstable();
    features.dedup();
    features
}

/// disco#info on a hosted domain: identity server/im (XEP-0030 section 3.1, registry category "server").
pub fn server_info(router: &Arc<Router>, request: &IqRequest<'_>) -> IqAnswer {
    let _ = router;
    reject_nodes(request)?;
    Ok(Some(info(
        &[("server", "im", Some("Herald"))],
        &server_features(),
    )))
}

/// disco#items on a hosted domain: the attached components and in-process services (section 4.1),
/// e.g. the relay's push service.
pub fn server_items(router: &Arc<Router>, request: &IqRequest<'_>) -> IqAnswer {
    reject_nodes(request)?;
    let mut query = Element::builder("query", ns::DISCO_ITEMS).build();
    for domain in router.hosted_service_domains() {
        let mut item = Element::builder("item", ns::DISCO_ITEMS).build();
        set_attribute(&mut item, "jid", &domain);
        query.append_child(item);
    }
    Ok(Some(query))
}

/// The identities of an account: account/registered (section 3.1) and its PEP service, pubsub/pep
/// (XEP-0163 section 5), which Conversations looks for before using PEP.
const ACCOUNT_IDENTITIES: [(&str, &str, Option<&str>); 2] =
    [("account", "registered", None), ("pubsub", "pep", None)];

/// disco#info on an account's bare JID (section 3.1).
pub fn account_info(request: &IqRequest<'_>) -> IqAnswer {
    reject_nodes(request)?;
    Ok(Some(info(&ACCOUNT_IDENTITIES, &account_features())))
}

/// disco#info on the user's own account, from their client: also what the account offers its owner,
/// the message archive when it is on (XEP-0313 says a client discovers it on its own bare JID).
pub fn own_account_info(request: &IqRequest<'_>, archive_enabled: bool) -> IqAnswer {
    reject_nodes(request)?;
    let mut features = account_features();
    if archive_enabled {
        features.extend([ns::MAM, ns::MAM_EXTENDED]);
    }
    features.sort_unstable();
    Ok(Some(info(&ACCOUNT_IDENTITIES, &features)))
}

/// disco#items on an account's bare JID: its PEP nodes that `requester` (`None`: the owner) may
/// read (XEP-0163 section 5, XEP-0060 section 5.2).
pub async fn account_items(
    router: &Arc<Router>,
    owner: &BareJid,
    requester: Option<&Jid>,
    request: &IqRequest<'_>,
) -> IqAnswer {
    reject_nodes(request)?;
    let owner_key = owner.to_string();
    let requester = requester.map(Jid::to_bare).filter(|bare| bare != owner);
    let nodes = super::pep::readable_nodes(router, &owner_key, requester.as_ref())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "listing PEP nodes failed");
            IqError::new(DefinedCondition::InternalServerError)
        })?;
    let mut query = Element::builder("query", ns::DISCO_ITEMS).build();
    for node in nodes {
        let mut item = Element::builder("item", ns::DISCO_ITEMS).build();
        set_attribute(&mut item, "jid", &owner_key);
        set_attribute(&mut item, "node", &node.node);
        if let Some(title) = &node.title {
            set_attribute(&mut item, "name", title);
        }
        query.append_child(item);
    }
    Ok(Some(query))
}

fn reject_nodes(request: &IqRequest<'_>) -> Result<(), IqError> {
    if request.is_set {
        return Err(IqError::new(DefinedCondition::BadRequest));
    }
    if request.payload.attr("node").is_some() {
        return Err(IqError::new(DefinedCondition::ItemNotFound));
    }
    Ok(())
}

fn info(identities: &[(&str, &str, Option<&str>)], features: &[&str]) -> Element {
    let mut query = Element::builder("query", ns::DISCO_INFO).build();
    for (category, kind, name) in identities {
        let mut identity = Element::builder("identity", ns::DISCO_INFO).build();
        set_attribute(&mut identity, "category", category);
        set_attribute(&mut identity, "type", kind);
        if let Some(name) = name {
            set_attribute(&mut identity, "name", name);
        }
        query.append_child(identity);
    }
    for feature in features {
        let mut element = Element::builder("feature", ns::DISCO_INFO).build();
        set_attribute(&mut element, "var", feature);
        query.append_child(element);
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_features_come_from_the_dispatch_table() {
        let features = server_features();
        for handlers in IQ_HANDLERS.iter().filter(|h| h.is_advertised) {
            assert!(
                features.contains(&handlers.namespace),
                "{}",
                handlers.namespace
            );
        }
        assert!(features.contains(&"msgoffline"));
        assert!(!features.contains(&ns::ROSTER));
    }

    #[test]
    fn an_account_lists_push_disco_info_and_pep() {
        let features = account_features();
        assert!(
            features.starts_with(&[ns::DISCO_INFO, ns::PUBSUB]),
            "{features:?}"
        );
        assert!(features.contains(&ns::PUSH));
        assert!(features.contains(&"http://jabber.org/protocol/pubsub#publish-options"));
        assert!(features.contains(&"urn:xmpp:bookmarks:1#compat"));
        assert_eq!(
            features.len(),
            3 + super::super::pep::FEATURES.len()
                + super::super::bookmarks_compat::ACCOUNT_FEATURES.len()
                + super::super::vcard_avatar::ACCOUNT_FEATURES.len()
        );
        for handlers in IQ_HANDLERS.iter().filter(|h| h.is_advertised_on_account) {
            assert!(handlers.for_own_account.is_some(), "{}", handlers.namespace);
        }
    }
}
