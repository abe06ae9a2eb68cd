//! XEP-0398: User Avatar to vCard-Based Avatars Conversion, the direction from XEP-0084 to XEP-0153
//! only: a vcard-temp get answers the avatar the user published with XEP-0084 as `<PHOTO/>`
//! (section 3.1, read-time: nothing is copied), and the user's available presence carries its hash in
//! `<x xmlns='vcard-temp:x:update'><photo/></x>` (section 4, XEP-0153 section 3.1) unless the client
//! put one there itself.
//!
//! Not done, so `urn:xmpp:pep-vcard-conversion:0` is not advertised: a vCard set with a `<PHOTO/>` is
//! not published to the XEP-0084 nodes (section 3.2), and publishing new avatar metadata does not
//! send a new presence (the hash shows from the next presence the client sends).

use std::sync::Arc;

use herald_storage::StorageError;

use super::pep::access::{Requester, may_read_node};
use crate::router::Router;
use crate::xmpp::{Element, ns};

/// XEP-0084 section 2: the metadata and data nodes.
pub const METADATA: &str = "urn:xmpp:avatar:metadata";
pub const DATA: &str = "urn:xmpp:avatar:data";
/// XEP-0153 section 3.1: the presence element that carries the hash.
pub const VCARD_UPDATE: &str = "vcard-temp:x:update";

/// The avatar a metadata item points at (XEP-0084 section 4.2: the `<info/>` without `url`, whose
/// `id` is the SHA-1 of the image and the data item's id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarInfo {
    pub id: String,
    pub media_type: Option<String>,
}

/// What the newest metadata item says: `None` for no `<info/>` held in the data node (which, for an
/// empty `<metadata/>`, is XEP-0084 section 4.6: the avatar is disabled).
pub fn avatar_info(metadata: &Element) -> Option<AvatarInfo> {
    if !metadata.is("metadata", METADATA) {
        return None;
    }
    metadata
        .children()
        .find(|info| info.is("info", METADATA) && info.attr("url").is_none())
        .and_then(|info| {
            Some(AvatarInfo {
                id: info.attr("id")?.to_string(),
                media_type: info.attr("type").map(str::to_string),
            })
        })
}

/// `vcard` with its `<PHOTO/>` replaced by the avatar (XEP-0054 `TYPE` and base64 `BINVAL`, which
/// is the XEP-0084 data as published), or removed when `avatar` is `None`.
pub fn with_photo(vcard: &Element, avatar: Option<(&AvatarInfo, &str)>) -> Element {
    let mut out = vcard.clone();
    while out.remove_child("PHOTO", ns::VCARD).is_some() {}
    if let Some((info, data)) = avatar {
        let mut photo = Element::builder("PHOTO", ns::VCARD).build();
        if let Some(media_type) = &info.media_type {
            photo.append_child(
                Element::builder("TYPE", ns::VCARD)
                    .append(media_type.clone())
                    .build(),
            );
        }
        photo.append_child(
            Element::builder("BINVAL", ns::VCARD)
                .append(data.trim().to_string())
                .build(),
        );
        out.append_child(photo);
    }
    out
}

/// The newest metadata item of `owner`, if `requester` may read the node. `Ok(None)`: no node, no
/// item, or not readable.
async fn metadata(
    router: &Arc<Router>,
    owner: &str,
    requester: &Requester<'_>,
) -> Result<Option<Element>, StorageError> {
    super::pep::newest_readable(router, owner, METADATA, requester).await
}

/// Section 3.1: the vCard `requester` reads, with the XEP-0084 avatar as its photo when `owner` has
/// published avatar metadata that `requester` may read; otherwise `vcard` unchanged. Errors: storage.
pub async fn vcard_with_avatar(
    router: &Arc<Router>,
    owner: &str,
    requester: &Requester<'_>,
    vcard: Element,
) -> Result<Element, StorageError> {
    let Some(metadata) = metadata(router, owner, requester).await? else {
        return Ok(vcard);
    };
    let Some(info) = avatar_info(&metadata) else {
        // XEP-0084 section 4.6: avatar disabled, so no photo either.
        return Ok(with_photo(&vcard, None));
    };
    let pep = &router.context.storage.pep;
    let data_node = pep.node(owner, DATA).await?;
    let readable = data_node.is_some_and(|node| may_read_node(&node, requester));
    if !readable {
        return Ok(vcard);
    }
    let data = pep
        .items_by_id(owner, DATA, std::slice::from_ref(&info.id))
        .await?
        .into_iter()
        .next()
        .and_then(|item| item.payload.parse::<Element>().ok())
        .filter(|data| data.is("data", DATA));
    Ok(match data {
        Some(data) => with_photo(&vcard, Some((&info, &data.text()))),
        None => vcard,
    })
}

/// The user's avatar hash for presence (XEP-0398 section 4), read once per session at its first
/// available presence: a presence update then costs no storage read. An avatar published during the
/// session shows in presence from the next login (the client that published it stamps its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AvatarPhoto {
    /// Not read yet.
    #[default]
    Unread,
    /// The user never published avatar metadata (or it could not be read): presence is left alone.
    Unpublished,
    /// The published avatar's id; empty when the avatar is disabled.
    Hash(Box<str>),
}

/// Section 4 (XEP-0153 section 3.1): adds `<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>`
/// to the user's available presence, the hash being the published avatar's id (empty `<photo/>` when
/// the avatar is disabled). A presence whose client already says something about its photo is left
/// alone, and so is one of a user who never published avatar metadata. A storage failure leaves
/// the presence as the client sent it (logged). Reads storage only while `photo` is unread.
pub async fn stamp_presence(
    router: &Arc<Router>,
    owner: &str,
    photo: &mut AvatarPhoto,
    presence: &mut Element,
) {
    if presence
        .get_child("x", VCARD_UPDATE)
        .is_some_and(|x| x.get_child("photo", VCARD_UPDATE).is_some())
    {
        return;
    }
    if *photo == AvatarPhoto::Unread {
        *photo = match metadata(router, owner, &Requester::OWNER).await {
            Ok(Some(metadata)) => AvatarPhoto::Hash(
                avatar_info(&metadata)
                    .map(|info| info.id)
                    .unwrap_or_default()
                    .into(),
            ),
            Ok(None) => AvatarPhoto::Unpublished,
            Err(error) => {
                tracing::warn!(%error, "reading avatar metadata for presence failed");
                AvatarPhoto::Unpublished
            }
        };
    }
    let AvatarPhoto::Hash(hash) = photo else {
        return;
    };
    let mut photo = Element::builder("photo", VCARD_UPDATE).build();
    if !hash.is_empty() {
        photo.append_text_node(hash.to_string());
    }
    if let Some(x) = presence.get_child_mut("x", VCARD_UPDATE) {
        x.append_child(photo);
    } else {
        presence.append_child(Element::builder("x", VCARD_UPDATE).append(photo).build());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().expect("test XML")
    }

    #[test]
    fn the_info_without_url_is_the_avatar() {
        let metadata = parse(
            "<metadata xmlns='urn:xmpp:avatar:metadata'>\
             <info id='aaa' type='image/gif' bytes='10' url='https://example.org/a.gif'/>\
             <info id='bbb' type='image/png' bytes='12'/></metadata>",
        );
        assert_eq!(
            avatar_info(&metadata),
            Some(AvatarInfo {
                id: "bbb".into(),
                media_type: Some("image/png".into())
            })
        );
        assert_eq!(
            avatar_info(&parse("<metadata xmlns='urn:xmpp:avatar:metadata'/>")),
            None
        );
    }

    #[test]
    fn the_photo_is_replaced_and_the_rest_kept() {
        let vcard = parse(
            "<vCard xmlns='vcard-temp'><FN>Alice</FN>\
             <PHOTO><TYPE>image/jpeg</TYPE><BINVAL>b2xk</BINVAL></PHOTO></vCard>",
        );
        let info = AvatarInfo {
            id: "bbb".into(),
            media_type: Some("image/png".into()),
        };
        assert_eq!(
            with_photo(&vcard, Some((&info, "bmV3\n"))),
            parse(
                "<vCard xmlns='vcard-temp'><FN>Alice</FN>\
                 <PHOTO><TYPE>image/png</TYPE><BINVAL>bmV3</BINVAL></PHOTO></vCard>"
            )
        );
        assert_eq!(
            with_photo(&vcard, None),
            parse("<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>")
        );
    }
}
