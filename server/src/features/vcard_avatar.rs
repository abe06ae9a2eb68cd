//! XEP-0398: User Avatar to vCard-Based Avatars Conversion, both ways.
//! - From XEP-0084 to XEP-0153: a vcard-temp get answers the avatar the user published with
//!   XEP-0084 as `<PHOTO/>` (section 3.1, read-time: nothing is copied), and the user's available
//!   presence carries its hash in `<x xmlns='vcard-temp:x:update'><photo/></x>` (section 4,
//!   XEP-0153 section 3.1) unless the client put one there itself. A new avatar (any publish of
//!   avatar metadata) makes every available resource of the user send its presence again with the
//!   new hash ([`avatar_changed`], `SessionCommand::AvatarChanged`).
//! - From XEP-0054 to XEP-0084 (section 3.2): a vcard-temp set whose `<PHOTO/>` holds a `<BINVAL/>`
//!   publishes the image to `urn:xmpp:avatar:data` and its `<info/>` (SHA-1 id, type, bytes) to
//!   `urn:xmpp:avatar:metadata` through the PEP service, so its limits (`[pep] max_item_bytes`) and
//!   notifications apply ([`VcardPhoto`]). A vCard without a photo leaves the avatar alone (a client
//!   that never shows photos must not remove one); a photo that is the current avatar is not
//!   published again.

use std::sync::Arc;

use herald_storage::StorageError;

use base64::Engine;
use sha1::{Digest, Sha1};

use super::ClientSession;
use super::iq::IqError;
use super::pep::Payload;
use super::pep::access::{Requester, may_read_node};
use super::pep::wire::ConfigFields;
use crate::router::{Router, SessionCommand};
use crate::xmpp::{DefinedCondition, Element, Envelope, ns};

/// What the account's disco#info lists for this (XEP-0398 section 2).
pub const ACCOUNT_FEATURES: [&str; 1] = ["urn:xmpp:pep-vcard-conversion:0"];

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

/// XEP-0398 section 4: `owner` published avatar `metadata`; each of their sessions stamps the new
/// hash (empty for an avatar disabled, XEP-0084 section 4.6) and, if available, sends its presence
/// again ([`presence_with_new_avatar`]). Anything but a `<metadata/>` is not an avatar change.
pub fn avatar_changed(router: &Arc<Router>, owner: &str, metadata: &Element) {
    if !metadata.is("metadata", METADATA) {
        return;
    }
    let hash: Box<str> = avatar_info(metadata)
        .map(|info| info.id)
        .unwrap_or_default()
        .into();
    for (_, handle, _) in router.sessions.routes(owner) {
        handle.send(SessionCommand::AvatarChanged(hash.clone()));
    }
}

/// `owner` has no avatar any more (its XEP-0084 metadata retracted, purged or deleted): each session
/// stamps an empty hash, so presence is sent again with an empty `<photo/>` (XEP-0153 section 4.3).
pub fn avatar_removed(router: &Arc<Router>, owner: &str) {
    let hash: Box<str> = "".into();
    for (_, handle, _) in router.sessions.routes(owner) {
        handle.send(SessionCommand::AvatarChanged(hash.clone()));
    }
}

/// XEP-0398 section 4, in the session: the avatar hash is now `hash`. An available session whose
/// presence does not carry it yet broadcasts its last presence again (RFC 6121 section 4.4), with
/// the new `<photo/>` in place of the old.
pub async fn presence_with_new_avatar(
    router: &Arc<Router>,
    session: &mut ClientSession,
    hash: Box<str>,
) {
    let new = AvatarPhoto::Hash(hash);
    if session.avatar_photo == new {
        return;
    }
    session.avatar_photo = new;
    if !session.is_available {
        return;
    }
    let resource = session.jid.resource().to_string();
    let last = router
        .sessions
        .resources(&session.bare)
        .into_iter()
        .find(|r| r.resource == resource)
        .and_then(|r| r.presence?.unpack());
    let Some(mut presence) = last else {
        return;
    };
    if let Some(x) = presence.get_child_mut("x", VCARD_UPDATE) {
        while x.remove_child("photo", VCARD_UPDATE).is_some() {}
    }
    if let Ok(envelope) = Envelope::parse(presence) {
        super::presence::send_again(router, session, envelope).await;
    }
}

/// The image of a vCard's `<PHOTO/>` as XEP-0084 publishes it (section 4.1 data, 4.2 metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcardPhoto {
    /// The SHA-1 of the image, hex: the item id of both nodes and the XEP-0153 hash.
    pub id: String,
    pub media_type: String,
    pub bytes: usize,
    /// The image in base64, without whitespace.
    pub base64: String,
}

impl VcardPhoto {
    /// The photo of a XEP-0054 vCard (`<PHOTO><TYPE/><BINVAL/></PHOTO>`): `Ok(None)` if it has none
    /// held inline (no PHOTO, an empty one, or an `<EXTVAL/>` link). Errors: a BINVAL that is not
    /// base64 (`bad-request`).
    pub fn of(vcard: &Element) -> Result<Option<VcardPhoto>, IqError> {
        let Some(photo) = vcard.get_child("PHOTO", ns::VCARD) else {
            return Ok(None);
        };
        let Some(binval) = photo.get_child("BINVAL", ns::VCARD) else {
            return Ok(None);
        };
        let base64: String = binval
            .text()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if base64.is_empty() {
            return Ok(None);
        }
        let image = base64::engine::general_purpose::STANDARD
            .decode(&base64)
            .map_err(|_| {
                IqError::with_text(DefinedCondition::BadRequest, "PHOTO/BINVAL is not base64")
            })?;
        let media_type = photo
            .get_child("TYPE", ns::VCARD)
            .map(Element::text)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| sniff_media_type(&image).to_string());
        Ok(Some(VcardPhoto {
            id: hex::encode(Sha1::digest(&image)),
            media_type,
            bytes: image.len(),
            base64,
        }))
    }

    /// The `urn:xmpp:avatar:data` payload (XEP-0084 section 4.1).
    pub fn data(&self) -> Element {
        Element::builder("data", DATA)
            .append(self.base64.clone())
            .build()
    }

    /// The `urn:xmpp:avatar:metadata` payload with its one `<info/>` (XEP-0084 section 4.2).
    pub fn metadata(&self) -> Element {
        let mut info = Element::builder("info", METADATA).build();
        crate::xmpp::set_attribute(&mut info, "id", &self.id);
        crate::xmpp::set_attribute(&mut info, "type", &self.media_type);
        crate::xmpp::set_attribute(&mut info, "bytes", &self.bytes.to_string());
        Element::builder("metadata", METADATA).append(info).build()
    }
}

/// XEP-0084 requires a type; a vCard PHOTO may lack one, so it is told from the image's first bytes.
fn sniff_media_type(image: &[u8]) -> &'static str {
    match image {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xff, 0xd8, 0xff, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "image/webp",
        _ => "application/octet-stream",
    }
}

/// Section 3.2: publishes `photo` as `owner`'s XEP-0084 avatar, data first (section 4.1), then
/// metadata (4.2), unless it is the avatar already published. New nodes get the PEP default
/// configuration. Errors: what the PEP service answered.
pub async fn publish_vcard_photo(
    router: &Arc<Router>,
    owner: &str,
    photo: &VcardPhoto,
    data: Payload,
) -> Result<(), IqError> {
    let current = metadata(router, owner, &Requester::OWNER)
        .await
        .map_err(|error| {
            tracing::error!(%error, "reading avatar metadata failed");
            IqError::new(DefinedCondition::InternalServerError)
        })?;
    if current
        .as_ref()
        .and_then(avatar_info)
        .is_some_and(|info| info.id == photo.id)
    {
        return Ok(());
    }
    let defaults = ConfigFields::default();
    let pep = super::pep::publish_converted;
    pep(router, owner, DATA, &photo.id, data, &defaults).await?;
    let metadata = Payload::new(photo.metadata());
    pep(router, owner, METADATA, &photo.id, metadata, &defaults).await
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

#[cfg(test)]
mod photo_tests {
    use super::*;

    #[test]
    fn a_vcard_photo_becomes_data_and_metadata() {
        // "abc": SHA-1 a9993e364706816aba3e25717850c26c9cd0d89d (FIPS 180-1 appendix A).
        let vcard: Element = "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE>\
             <BINVAL>YW\n Jj</BINVAL></PHOTO></vCard>"
            .parse()
            .expect("test XML");
        let photo = VcardPhoto::of(&vcard).expect("valid").expect("a photo");
        assert_eq!(photo.id, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(photo.bytes, 3);
        assert_eq!(photo.base64, "YWJj");
        assert_eq!(
            photo.metadata(),
            "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='a9993e364706816aba3e25717850c26c9cd0d89d' \
             type='image/png' bytes='3'/></metadata>"
                .parse::<Element>()
                .expect("test XML")
        );
        assert!(Payload::new(photo.data()).check_size(100).is_ok());
        assert!(Payload::new(photo.data()).check_size(20).is_err());
    }

    #[test]
    fn no_inline_photo_is_none_and_bad_base64_is_refused() {
        for xml in [
            "<vCard xmlns='vcard-temp'><FN>A</FN></vCard>",
            "<vCard xmlns='vcard-temp'><PHOTO><EXTVAL>https://example.org/a.png</EXTVAL></PHOTO></vCard>",
            "<vCard xmlns='vcard-temp'><PHOTO><BINVAL/></PHOTO></vCard>",
        ] {
            let vcard: Element = xml.parse().expect("test XML");
            assert_eq!(VcardPhoto::of(&vcard).expect("valid"), None, "{xml}");
        }
        let bad: Element = "<vCard xmlns='vcard-temp'><PHOTO><BINVAL>!!</BINVAL></PHOTO></vCard>"
            .parse()
            .expect("test XML");
        assert!(VcardPhoto::of(&bad).is_err());
        assert_eq!(sniff_media_type(&[0x89, b'P', b'N', b'G', 0]), "image/png");
    }
}
