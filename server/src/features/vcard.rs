//! XEP-0054: vcard-temp. A user sets their own vCard (section 3.2); anyone may read it (section 3.1). The
//! vCard is stored as the XML the client sent; a user without one gets an empty `<vCard/>` (section 3.1).
//! Its photo is the XEP-0084 avatar when the user published one (XEP-0398 section 3.1, `vcard_avatar`);
//! a user with no vcard-temp but a XEP-0292 vCard4 in PEP is answered that, converted (`vcard4`). A set
//! also publishes the vCard4 and the photo's avatar (XEP-0292, XEP-0398 section 3.2).

use std::sync::Arc;

use super::ClientSession;
use super::iq::{IqAnswer, IqError, IqRequest};
use super::pep::Payload;
use super::pep::access::Requester;
use super::{vcard_avatar, vcard4};
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
        return set(router, &session.bare, request.payload).await;
    }
    let vcard = load(router, &session.bare, &Requester::OWNER).await?;
    with_avatar(router, &session.bare, &Requester::OWNER, vcard).await
}

/// Section 3.2: stores the user's vCard, and keeps the other forms of it in line: the vCard4 in PEP
/// (XEP-0292, `vcard4`) and the avatar of its `<PHOTO/>` (XEP-0398 section 3.2, `vcard_avatar`), both
/// through the PEP service. A PHOTO that is not base64 or a PEP item over `[pep] max_item_bytes` is
/// refused before anything is stored; a refusal of the PEP service itself (the node limit) comes after
/// the vcard-temp is stored and is answered as the error. Errors: those, and storage.
async fn set(router: &Arc<Router>, owner: &str, vcard: &Element) -> IqAnswer {
    let max_item_bytes = router.context.config.pep.max_item_bytes;
    // Serialised once: checked here, before anything is stored, then published as it is.
    let photo = vcard_avatar::VcardPhoto::of(vcard)?.map(|photo| {
        let data = Payload::new(photo.data());
        (photo, data)
    });
    if let Some((_, data)) = &photo {
        data.check_size(max_item_bytes)?;
    }
    let vcard4 = vcard4::vcard4_for_set(router, owner, vcard)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "loading a vCard4 failed");
            IqError::new(DefinedCondition::InternalServerError)
        })?;
    let vcard4 = vcard4.map(Payload::new);
    if let Some(vcard4) = &vcard4 {
        vcard4.check_size(max_item_bytes)?;
    }
    if let Err(e) = router
        .context
        .storage
        .vcards
        .set(owner, &String::from(vcard))
        .await
    {
        tracing::error!(error = %e, "storing a vCard failed");
        return Err(IqError::new(DefinedCondition::InternalServerError));
    }
    if let Some(vcard4) = vcard4 {
        let open = super::pep::wire::ConfigFields {
            access_model: Some(super::pep::wire::AccessModel::Open),
            ..Default::default()
        };
        super::pep::publish_converted(router, owner, vcard4::NODE, "current", vcard4, &open)
            .await?;
    }
    if let Some((photo, data)) = photo {
        vcard_avatar::publish_vcard_photo(router, owner, &photo, data).await?;
    }
    Ok(None)
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
    let owner = user.to_string();
    let item = router
        .context
        .storage
        .rosters
        .item(&owner, &request.from.to_bare().to_string())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "loading a roster item for a vCard failed");
            IqError::new(DefinedCondition::InternalServerError)
        })?;
    let requester = Requester::contact(item.as_ref());
    let vcard = load(router, &owner, &requester).await?;
    with_avatar(router, &owner, &requester, vcard).await
}

/// XEP-0398 section 3.1: the XEP-0084 avatar `requester` may see, as the vCard's photo.
async fn with_avatar(
    router: &Arc<Router>,
    owner: &str,
    requester: &Requester<'_>,
    vcard: Option<Element>,
) -> IqAnswer {
    let Some(vcard) = vcard else {
        return Ok(None);
    };
    vcard_avatar::vcard_with_avatar(router, owner, requester, vcard)
        .await
        .map(Some)
        .map_err(|e| {
            tracing::error!(error = %e, "loading the avatar for a vCard failed");
            IqError::new(DefinedCondition::InternalServerError)
        })
}

/// The stored vCard; without one, the user's XEP-0292 vCard4 as `requester` may read it, else an
/// empty `<vCard/>`.
async fn load(router: &Arc<Router>, owner: &str, requester: &Requester<'_>) -> IqAnswer {
    match router.context.storage.vcards.get(owner).await {
        Ok(Some(xml)) => match xml.parse::<Element>() {
            Ok(vcard) => Ok(Some(vcard)),
            Err(_) => Err(IqError::new(DefinedCondition::InternalServerError)),
        },
        Ok(None) => match vcard4::as_vcard_temp(router, owner, requester).await {
            Ok(from_vcard4) => {
                Ok(Some(from_vcard4.unwrap_or_else(|| {
                    Element::builder("vCard", ns::VCARD).build()
                })))
            }
            Err(e) => {
                tracing::error!(error = %e, "loading a vCard4 failed");
                Err(IqError::new(DefinedCondition::InternalServerError))
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "loading a vCard failed");
            Err(IqError::new(DefinedCondition::InternalServerError))
        }
    }
}
