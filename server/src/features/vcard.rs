//! XEP-0054: vcard-temp. A user sets their own vCard (section 3.2); anyone may read it (section 3.1). The
//! vCard is stored as the XML the client sent; a user without one gets an empty `<vCard/>` (section 3.1).

use std::sync::Arc;

use super::ClientSession;
use super::iq::{IqAnswer, IqError, IqRequest};
use crate::router::Router;
use crate::xmpp::ns;
use crate::xmpp::{BareJid, DefinedCondition, Element};

/// The user's own vCard: get or set.
pub async fn handle_own(
    router: &Arc<Router>,
    session: &ClientSession,
    request: &IqRequest<'_>,
) -> IqAnswer {
    if !request.payload.is("vCard", ns::VCARD) {
        return Err(IqError::new(DefinedCondition::BadRequest));
    }
    if request.is_set {
        let xml = String::from(request.payload);
        return match router.context.storage.vcards.set(&session.bare, &xml).await {
            Ok(()) => Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "storing a vCard failed");
                Err(IqError::new(DefinedCondition::InternalServerError))
            }
        };
    }
    load(router, &session.bare).await
}

/// Someone else's request for a user's vCard: reading is allowed, writing is not (section 3.2).
pub async fn handle_other(
    router: &Arc<Router>,
    user: &BareJid,
    request: &IqRequest<'_>,
) -> IqAnswer {
    if request.is_set {
        return Err(IqError::new(DefinedCondition::Forbidden));
    }
    if !request.payload.is("vCard", ns::VCARD) {
        return Err(IqError::new(DefinedCondition::BadRequest));
    }
    load(router, &user.to_string()).await
}

async fn load(router: &Arc<Router>, owner: &str) -> IqAnswer {
    match router.context.storage.vcards.get(owner).await {
        Ok(Some(xml)) => match xml.parse::<Element>() {
            Ok(vcard) => Ok(Some(vcard)),
            Err(_) => Err(IqError::new(DefinedCondition::InternalServerError)),
        },
        Ok(None) => Ok(Some(Element::builder("vCard", ns::VCARD).build())),
        Err(e) => {
            tracing::error!(error = %e, "loading a vCard failed");
            Err(IqError::new(DefinedCondition::InternalServerError))
        }
    }
}
