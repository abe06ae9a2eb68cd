//! XEP-0398 from XEP-0084 to XEP-0153 over real sockets, on both backends: once alice publishes an
//! avatar with XEP-0084, her vCard (read by her and by a contact the node's access model lets in)
//! carries it as `<PHOTO/>`, a stranger's read of a presence-access avatar does not, and her next
//! available presence carries the hash in `vcard-temp:x:update`.
#![allow(clippy::unwrap_used)]

use herald::xmpp::{Element, ns};
use herald_tests::xml;
use herald_tests::{Backend, TestServer, on_every_backend};

on_every_backend!(a_published_avatar_shows_in_the_vcard_and_presence);

const IMAGE_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
/// Stands in for the SHA-1 of the image (XEP-0084 section 4.2); the server does not check it.
const AVATAR_ID: &str = "111f4b3c50d7b0df729d299bc6f8e9ef9066971f";

fn binval(vcard: &Element) -> Option<String> {
    vcard
        .get_child("PHOTO", ns::VCARD)
        .and_then(|p| p.get_child("BINVAL", ns::VCARD))
        .map(Element::text)
}

async fn a_published_avatar_shows_in_the_vcard_and_presence(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    for user in ["alice", "bob", "stranger"] {
        server.add_user(user).await;
    }
    server.befriend("alice", "bob").await;
    let mut alice = server.login("alice", "r").await;
    alice
        .iq_result(
            "set",
            None,
            "<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/jpeg</TYPE><BINVAL>b2xk</BINVAL></PHOTO></vCard>",
        )
        .await;
    // XEP-0084 section 4.1 then 4.2, on nodes with the PEP default (presence) access model.
    alice
        .pep_publish(
            "urn:xmpp:avatar:data",
            AVATAR_ID,
            &format!("<data xmlns='urn:xmpp:avatar:data'>{IMAGE_BASE64}</data>"),
        )
        .await;
    alice.pep_publish("urn:xmpp:avatar:metadata",
        AVATAR_ID,
        &format!(
            "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='{AVATAR_ID}' type='image/png' bytes='70'/></metadata>"
        ),
    )
    .await;

    let own = alice.vcard(None).await;
    assert_eq!(
        binval(&own).as_deref(),
        Some(IMAGE_BASE64),
        "{}",
        xml::show(&own)
    );
    assert_eq!(
        own.get_child("FN", ns::VCARD).map(Element::text).as_deref(),
        Some("Alice")
    );
    let mut bob = server.online("bob", "r").await;
    let seen = bob.vcard(Some("alice@localhost")).await;
    assert_eq!(
        binval(&seen).as_deref(),
        Some(IMAGE_BASE64),
        "{}",
        xml::show(&seen)
    );
    assert_eq!(
        seen.get_child("PHOTO", ns::VCARD)
            .and_then(|p| p.get_child("TYPE", ns::VCARD))
            .map(Element::text)
            .as_deref(),
        Some("image/png")
    );
    // Not a contact: the avatar nodes are not readable, so the stored vCard is answered as it is.
    let mut stranger = server.login("stranger", "r").await;
    let other = stranger.vcard(Some("alice@localhost")).await;
    assert_eq!(
        binval(&other).as_deref(),
        Some("b2xk"),
        "{}",
        xml::show(&other)
    );

    alice.send("<presence/>").await;
    let presence = bob
        .expect("alice's presence", |e| {
            e.is("presence", ns::CLIENT)
                && e.attr("from")
                    .is_some_and(|from| from.starts_with("alice@localhost/"))
        })
        .await;
    let hash = presence
        .get_child("x", "vcard-temp:x:update")
        .and_then(|x| x.get_child("photo", "vcard-temp:x:update"))
        .map(Element::text);
    assert_eq!(hash.as_deref(), Some(AVATAR_ID), "{}", xml::show(&presence));
}
