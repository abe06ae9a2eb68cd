//! XEP-0398 from XEP-0084 to XEP-0153 over real sockets, on both backends: once alice publishes an
//! avatar with XEP-0084, her vCard (read by her and by a contact the node's access model lets in)
//! carries it as `<PHOTO/>`, a stranger's read of a presence-access avatar does not, and her next
//! available presence carries the hash in `vcard-temp:x:update`. The other way (section 3.2): a
//! vCard set with a PHOTO publishes the XEP-0084 data and metadata, contacts are notified and get
//! alice's presence again with the new hash, and a photo over the PEP item limit is refused whole.
#![allow(clippy::unwrap_used)]

use base64::Engine;
use herald::xmpp::{Element, ns};
use herald_tests::caps::announce_caps;
use herald_tests::xml::{self, error_condition};
use herald_tests::{Backend, TestServer, on_every_backend};
use sha1::{Digest, Sha1};

on_every_backend!(
    a_published_avatar_shows_in_the_vcard_and_presence,
    a_vcard_photo_becomes_the_avatar_and_the_presence_hash,
    a_vcard_photo_over_the_item_limit_is_refused_whole,
    removing_the_avatar_metadata_empties_the_presence_hash,
);

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

fn photo_hash(presence: &Element) -> Option<String> {
    presence
        .get_child("x", "vcard-temp:x:update")
        .and_then(|x| x.get_child("photo", "vcard-temp:x:update"))
        .map(Element::text)
}

fn is_presence_of_alice(e: &Element) -> bool {
    e.is("presence", ns::CLIENT)
        && e.attr("from")
            .is_some_and(|from| from.starts_with("alice@localhost/"))
}

async fn a_vcard_photo_becomes_the_avatar_and_the_presence_hash(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    for user in ["alice", "bob"] {
        server.add_user(user).await;
    }
    server.befriend("alice", "bob").await;
    let mut alice = server.online("alice", "r").await;
    let mut bob = server.login("bob", "r").await;
    bob.roster_get().await;
    // (alice's presence in answer to bob's probe is skipped while the caps are exchanged.)
    announce_caps(&server, &mut bob, &["urn:xmpp:avatar:metadata"]).await;
    bob.barrier().await;

    let info = alice
        .iq_result(
            "get",
            Some("alice@localhost"),
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        )
        .await;
    assert!(
        xml::disco_features(&info).contains(&"urn:xmpp:pep-vcard-conversion:0".to_string()),
        "{}",
        xml::show(&info)
    );

    let image = base64::engine::general_purpose::STANDARD
        .decode(IMAGE_BASE64)
        .unwrap();
    let sha1: String = Sha1::digest(&image)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // A client folds BINVAL into lines (XEP-0153 examples); the avatar data is the base64 alone.
    let (head, tail) = IMAGE_BASE64.split_at(40);
    alice
        .iq_result(
            "set",
            None,
            &format!(
                "<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE>\
                 <BINVAL>{head}\n{tail}</BINVAL></PHOTO></vCard>"
            ),
        )
        .await;
    let event = bob
        .expect("alice's new avatar metadata", |e| {
            e.get_child("event", ns::PUBSUB_EVENT).is_some()
        })
        .await;
    let items = event
        .get_child("event", ns::PUBSUB_EVENT)
        .and_then(|ev| ev.get_child("items", ns::PUBSUB_EVENT))
        .unwrap();
    assert_eq!(items.attr("node"), Some("urn:xmpp:avatar:metadata"));
    let info = items
        .get_child("item", ns::PUBSUB_EVENT)
        .and_then(|i| i.get_child("metadata", "urn:xmpp:avatar:metadata"))
        .and_then(|m| m.get_child("info", "urn:xmpp:avatar:metadata"))
        .unwrap_or_else(|| panic!("{}", xml::show(&event)));
    assert_eq!(info.attr("id"), Some(sha1.as_str()));
    assert_eq!(info.attr("type"), Some("image/png"));
    assert_eq!(info.attr("bytes"), Some(image.len().to_string().as_str()));
    // XEP-0398 section 4: alice's presence again, with the new hash, without her sending any.
    let again = bob
        .expect("alice's presence again", is_presence_of_alice)
        .await;
    assert_eq!(
        photo_hash(&again).as_deref(),
        Some(sha1.as_str()),
        "{}",
        xml::show(&again)
    );

    let data = bob
        .iq_result(
            "get",
            Some("alice@localhost"),
            &format!(
                "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:data'>\
                 <item id='{sha1}'/></items></pubsub>"
            ),
        )
        .await;
    let text = data
        .get_child("pubsub", ns::PUBSUB)
        .and_then(|p| p.get_child("items", ns::PUBSUB))
        .and_then(|i| i.get_child("item", ns::PUBSUB))
        .and_then(|i| i.get_child("data", "urn:xmpp:avatar:data"))
        .map(Element::text);
    assert_eq!(text.as_deref(), Some(IMAGE_BASE64), "{}", xml::show(&data));

    // The same photo again publishes nothing and sends no presence.
    alice
        .iq_result(
            "set",
            None,
            &format!(
                "<vCard xmlns='vcard-temp'><FN>Alice L.</FN><PHOTO><TYPE>image/png</TYPE>\
                 <BINVAL>{IMAGE_BASE64}</BINVAL></PHOTO></vCard>"
            ),
        )
        .await;
    alice.barrier().await;
    bob.assert_none("a second avatar event or presence", |e| {
        e.get_child("event", ns::PUBSUB_EVENT)
            .and_then(|ev| ev.get_child("items", ns::PUBSUB_EVENT))
            .is_some_and(|i| i.attr("node") == Some("urn:xmpp:avatar:metadata"))
            || is_presence_of_alice(e)
    })
    .await;
}

async fn a_vcard_photo_over_the_item_limit_is_refused_whole(backend: Backend) {
    let server = TestServer::builder()
        .backend(backend)
        .toml("[pep]\nmax_item_bytes = 1024\n")
        .start()
        .await;
    server.add_user("alice").await;
    let mut alice = server.online("alice", "r").await;
    let refused = alice
        .iq(
            "set",
            None,
            &format!(
                "<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE>\
                 <BINVAL>{}</BINVAL></PHOTO></vCard>",
                "AAAA".repeat(300)
            ),
        )
        .await;
    assert_eq!(
        error_condition(&refused).as_deref(),
        Some("not-acceptable"),
        "{}",
        xml::show(&refused)
    );
    let vcard = alice.vcard(None).await;
    assert!(
        vcard.get_child("FN", ns::VCARD).is_none(),
        "nothing stored: {}",
        xml::show(&vcard)
    );
    let metadata = alice
        .iq(
            "get",
            None,
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub>",
        )
        .await;
    assert_eq!(
        error_condition(&metadata).as_deref(),
        Some("item-not-found")
    );
}

/// XEP-0153 section 4.3 via XEP-0398 section 4: once the avatar metadata is gone (its item
/// retracted, the node purged or deleted), alice's presence is sent again with an empty `<photo/>`.
async fn removing_the_avatar_metadata_empties_the_presence_hash(backend: Backend) {
    let server = TestServer::builder().backend(backend).start().await;
    for user in ["alice", "bob"] {
        server.add_user(user).await;
    }
    server.befriend("alice", "bob").await;
    let mut bob = server.online("bob", "r").await;
    let mut alice = server.online("alice", "r").await;
    let metadata = format!(
        "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='{AVATAR_ID}' type='image/png' bytes='70'/></metadata>"
    );
    let retract = format!(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='urn:xmpp:avatar:metadata'><item id='{AVATAR_ID}'/></retract></pubsub>"
    );
    let purge = "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='urn:xmpp:avatar:metadata'/></pubsub>";
    let delete = "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:xmpp:avatar:metadata'/></pubsub>";
    for removal in [retract.as_str(), purge, delete] {
        alice
            .pep_publish("urn:xmpp:avatar:metadata", AVATAR_ID, &metadata)
            .await;
        bob.expect("alice's presence with the hash", |e| {
            is_presence_of_alice(e) && photo_hash(e).as_deref() == Some(AVATAR_ID)
        })
        .await;
        alice.iq_result("set", None, removal).await;
        let again = bob
            .expect("alice's presence again", is_presence_of_alice)
            .await;
        assert_eq!(
            photo_hash(&again).as_deref(),
            Some(""),
            "an empty <photo/> after {removal}: {}",
            xml::show(&again)
        );
    }
}
