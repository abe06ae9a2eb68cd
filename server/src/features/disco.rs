//! XEP-0030: Service Discovery. The server's features are derived from [`IQ_HANDLERS`] plus the
//! behaviours that have no IQ of their own, so what is advertised is exactly what is handled.

use std::sync::Arc;

use super::iq::{IQ_HANDLERS, IqAnswer, IqError, IqRequest};
use crate::router::Router;
use crate::xmpp::ns;
use crate::xmpp::{DefinedCondition, Element, set_attribute};

/// Features that are behaviours rather than IQ payloads: XEP-0160 offline storage.
const BEHAVIOUR_FEATURES: [&str; 1] = ["msgoffline"];

/// Every feature the server's disco#info lists, sorted.
pub fn server_features() -> Vec<&'static str> {
    let mut features: Vec<&'static str> = IQ_HANDLERS
        .iter()
        .filter(|h| h.is_advertised)
        .map(|h| h.namespace)
        .chain(BEHAVIOUR_FEATURES)
        .collect();
    features.sort_unstable();
    features.dedup();
    features
}

/// Every feature an account's disco#info lists, sorted: disco#info itself and the payloads marked
/// for accounts in [`IQ_HANDLERS`].
pub fn account_features() -> Vec<&'static str> {
    let mut features: Vec<&'static str> = IQ_HANDLERS
        .iter()
        .filter(|h| h.is_advertised_on_account)
        .map(|h| h.namespace)
        .chain([ns::DISCO_INFO])
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
        "server",
        "im",
        Some("Herald"),
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

/// disco#info on an account's bare JID: identity account/registered (section 3.1).
pub fn account_info(request: &IqRequest<'_>) -> IqAnswer {
    reject_nodes(request)?;
    Ok(Some(info(
        "account",
        "registered",
        None,
        &account_features(),
    )))
}

/// disco#info on the user's own account, from their client: also what the account offers its owner,
/// the message archive (XEP-0313 says a client discovers it on its own bare JID).
pub fn own_account_info(request: &IqRequest<'_>) -> IqAnswer {
    reject_nodes(request)?;
    let mut features = account_features();
    features.extend([ns::MAM, ns::MAM_EXTENDED]);
    features.sort_unstable();
    Ok(Some(info("account", "registered", None, &features)))
}

/// disco#items on an account's bare JID: none yet (no PEP nodes).
pub fn account_items(request: &IqRequest<'_>) -> IqAnswer {
    reject_nodes(request)?;
    Ok(Some(Element::builder("query", ns::DISCO_ITEMS).build()))
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

fn info(category: &str, kind: &str, name: Option<&str>, features: &[&str]) -> Element {
    let mut identity = Element::builder("identity", ns::DISCO_INFO).build();
    set_attribute(&mut identity, "category", category);
    set_attribute(&mut identity, "type", kind);
    if let Some(name) = name {
        set_attribute(&mut identity, "name", name);
    }
    let mut query = Element::builder("query", ns::DISCO_INFO)
        .append(identity)
        .build();
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
    fn an_account_lists_push_and_disco_info() {
        let features = account_features();
        assert_eq!(features, [ns::DISCO_INFO, ns::PUSH]);
        for handlers in IQ_HANDLERS.iter().filter(|h| h.is_advertised_on_account) {
            assert!(handlers.for_own_account.is_some(), "{}", handlers.namespace);
        }
    }
}
