//! XEP-0049: Private XML Storage (`jabber:iq:private`), which older clients (profanity, mcabber) still
//! use for their bookmarks. A user stores XML fragments on their own account and reads them back
//! (section 2.3); each fragment is kept per (namespace, element name) and a set replaces it. Nobody
//! else may read or write them (section 2.3 and section 3: `<forbidden/>`), and the namespaces of
//! the stream and of this protocol itself are refused as reserved (section 2.3 and section 3:
//! `<not-acceptable/>`).
//!
//! Bounded per account by `[limits] max_private_xml_fragments` and `max_private_xml_bytes`: a set
//! beyond either is refused whole with a stanza error, and nothing stored before is lost.

use std::sync::Arc;

use herald_storage::{PrivateFragment, PrivatePut};

use super::ClientSession;
use super::bookmarks_compat;
use super::iq::{IqAnswer, IqError, IqRequest};
use crate::router::Router;
use crate::xmpp::ns;
use crate::xmpp::{DefinedCondition, Element};

/// Namespaces a fragment may not have (section 2.3: "certain namespaces are reserved"; section 3:
/// Not Acceptable). These three are what a fragment could be confused with: stanzas of either
/// stream and this protocol's own query.
const RESERVED_NAMESPACES: [&str; 3] = [ns::CLIENT, ns::SERVER, ns::PRIVATE];

/// A get or set of the user's own private XML (section 2.3).
pub async fn handle_own(
    router: &Arc<Router>,
    session: &ClientSession,
    request: &IqRequest<'_>,
) -> IqAnswer {
    if !request.payload.is("query", ns::PRIVATE) {
        return Err(IqError::new(DefinedCondition::BadRequest));
    }
    let fragments: Vec<&Element> = request.payload.children().collect();
    // Section 2.3: "At least one child element with a proper namespace MUST be included; otherwise
    // the server MUST respond with a Not Acceptable error".
    if fragments.is_empty() {
        return Err(IqError::with_text(
            DefinedCondition::NotAcceptable,
            "The query must hold one element of its own namespace",
        ));
    }
    if fragments
        .iter()
        .any(|f| RESERVED_NAMESPACES.contains(&f.ns().as_str()))
    {
        return Err(IqError::with_text(
            DefinedCondition::NotAcceptable,
            "That namespace is reserved",
        ));
    }
    if request.is_set {
        // XEP-0402 compatibility: bookmarks go to the PEP node, private XML keeps the rest.
        let kept = bookmarks_compat::kept_fragments(&fragments);
        store(router, &session.bare, &kept.iter().collect::<Vec<_>>()).await?;
        bookmarks_compat::publish_legacy(router, &session.bare, &fragments).await?;
        Ok(None)
    } else {
        let query = load(router, &session.bare, &fragments)
            .await?
            .unwrap_or_else(|| Element::builder("query", ns::PRIVATE).build());
        bookmarks_compat::fill_legacy(router, &session.bare, query)
            .await
            .map(Some)
    }
}

/// Section 2.3: another entity's get or set is refused with Forbidden ("the former is preferable"
/// to Service Unavailable); so is a query addressed to the server itself, which is not the sender.
pub fn refuse_other() -> IqAnswer {
    Err(IqError::new(DefinedCondition::Forbidden))
}

/// Stores every fragment of a set, or none (section 2.3: a set MAY hold several elements).
pub(super) async fn store(router: &Arc<Router>, owner: &str, fragments: &[&Element]) -> IqAnswer {
    let config = &router.context.config;
    let mut stored = Vec::with_capacity(fragments.len());
    for fragment in fragments {
        let xml = String::from(*fragment);
        if xml.len() > config.max_private_xml_bytes {
            // RFC 6120 section 8.3.3.12: a local policy on size, which a smaller fragment may meet.
            return Err(IqError::with_text(
                DefinedCondition::PolicyViolation,
                &format!(
                    "A private XML fragment may be at most {} bytes",
                    config.max_private_xml_bytes
                ),
            ));
        }
        stored.push(PrivateFragment {
            namespace: fragment.ns(),
            name: fragment.name().to_string(),
            xml,
        });
    }
    match router
        .context
        .storage
        .private_xml
        .put(owner, &stored, config.max_private_xml_fragments)
        .await
    {
        Ok(PrivatePut::Stored) => Ok(None),
        // RFC 6120 section 8.3.3.18: the account's share of storage is used up; what is stored stays.
        Ok(PrivatePut::LimitReached) => Err(IqError::with_text(
            DefinedCondition::ResourceConstraint,
            &format!(
                "At most {} private XML fragments may be stored",
                config.max_private_xml_fragments
            ),
        )),
        Err(e) => {
            tracing::error!(error = %e, "storing private XML failed");
            Err(IqError::new(DefinedCondition::InternalServerError))
        }
    }
}

/// Answers a get with the stored fragment of each requested element, or the element as asked for
/// (empty) when nothing is stored under it, as the spec's examples and existing servers do.
async fn load(router: &Arc<Router>, owner: &str, requested: &[&Element]) -> IqAnswer {
    let mut query = Element::builder("query", ns::PRIVATE).build();
    for element in requested {
        let stored = router
            .context
            .storage
            .private_xml
            .get(owner, &element.ns(), element.name())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "loading private XML failed");
                IqError::new(DefinedCondition::InternalServerError)
            })?;
        let fragment = match stored {
            Some(xml) => xml
                .parse::<Element>()
                .map_err(|_| IqError::new(DefinedCondition::InternalServerError))?,
            None => Element::builder(element.name(), element.ns()).build(),
        };
        query.append_child(fragment);
    }
    Ok(Some(query))
}
