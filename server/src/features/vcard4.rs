//! XEP-0292: vCard4 Over XMPP, beside XEP-0054 vcard-temp. vCard4 lives in the PEP node
//! `urn:xmpp:vcard4` (XEP-0292 section 3, through XEP-0222), whose payload is an RFC 6351
//! `<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'/>`, and the PEP service handles it like any
//! other node. The two are kept one card, for the properties both formats have (FN, N, NICKNAME,
//! BDAY, URL, TITLE, ROLE, NOTE as `DESC`, ORG, EMAIL, TEL, and `impp` `xmpp:` URIs as `JABBERID`,
//! the XEP-0292 section 5 mapping):
//! - a vcard-temp set is published as the vCard4 item `current` ([`vcard4_from_vcard_temp`]);
//! - a vCard4 a client publishes is written into the stored vcard-temp ([`merge_into_vcard_temp`]);
//! - a user with no vcard-temp but a vCard4 is answered a vcard-temp built from it.
//!
//! Which wins when both are written: the newest write, property by property of the shared set;
//! what only one format holds (a vcard-temp `PHOTO` or `ADR`, a vCard4 `gender` or `sip:` impp) is
//! kept as it was, since the other format could not have changed it. A vCard4 node created by the
//! conversion is `open`, as vcard-temp is readable by anyone (XEP-0054 section 3.1).

use std::sync::Arc;

use herald_storage::StorageError;

use super::pep::access::Requester;
use crate::router::Router;
use crate::xmpp::{Element, ns};

/// XEP-0292: the PEP node and the RFC 6351 namespace of its `<vcard/>` payload.
pub const NODE: &str = "urn:xmpp:vcard4";
pub const VCARD4: &str = "urn:ietf:params:xml:ns:vcard-4.0";

/// The text of `property/value` (RFC 6351: each property holds its value in a typed child).
fn value(vcard: &Element, property: &str, value: &str) -> Option<String> {
    vcard
        .get_child(property, VCARD4)
        .and_then(|p| p.get_child(value, VCARD4))
        .map(Element::text)
        .filter(|text| !text.is_empty())
}

fn leaf(name: &str, text: &str) -> Element {
    let mut leaf = Element::builder(name, ns::VCARD).build();
    if !text.is_empty() {
        leaf.append_text_node(text);
    }
    leaf
}

/// The vcard-temp form of an RFC 6351 `<vcard/>`: FN, N, NICKNAME, BDAY, URL, TITLE, ROLE, DESC,
/// ORG, EMAIL, TEL and JABBERID. `None` if `vcard4` is not a vCard4.
pub fn to_vcard_temp(vcard4: &Element) -> Option<Element> {
    if !vcard4.is("vcard", VCARD4) {
        return None;
    }
    let mut temp = Element::builder("vCard", ns::VCARD).build();
    if let Some(name) = value(vcard4, "fn", "text") {
        temp.append_child(leaf("FN", &name));
    }
    if let Some(n) = vcard4.get_child("n", VCARD4) {
        let mut out = Element::builder("N", ns::VCARD).build();
        for (from, to) in [
            ("surname", "FAMILY"),
            ("given", "GIVEN"),
            ("additional", "MIDDLE"),
            ("prefix", "PREFIX"),
            ("suffix", "SUFFIX"),
        ] {
            if let Some(part) = n.get_child(from, VCARD4).map(Element::text) {
                out.append_child(leaf(to, &part));
            }
        }
        temp.append_child(out);
    }
    for (property, kind, to) in [
        ("nickname", "text", "NICKNAME"),
        ("bday", "date", "BDAY"),
        ("url", "uri", "URL"),
        ("title", "text", "TITLE"),
        ("role", "text", "ROLE"),
        ("note", "text", "DESC"),
    ] {
        if let Some(text) = value(vcard4, property, kind) {
            temp.append_child(leaf(to, &text));
        }
    }
    if let Some(org) = value(vcard4, "org", "text") {
        temp.append_child(
            Element::builder("ORG", ns::VCARD)
                .append(leaf("ORGNAME", &org))
                .build(),
        );
    }
    for property in vcard4.children() {
        let uri = || property.get_child("uri", VCARD4).map(Element::text);
        if property.is("email", VCARD4)
            && let Some(address) = property.get_child("text", VCARD4).map(Element::text)
        {
            temp.append_child(
                Element::builder("EMAIL", ns::VCARD)
                    .append(Element::builder("INTERNET", ns::VCARD).build())
                    .append(leaf("USERID", &address))
                    .build(),
            );
        } else if property.is("tel", VCARD4)
            && let Some(uri) = uri()
        {
            let number = uri.strip_prefix("tel:").unwrap_or(&uri);
            temp.append_child(
                Element::builder("TEL", ns::VCARD)
                    .append(leaf("NUMBER", number))
                    .build(),
            );
        } else if property.is("impp", VCARD4)
            && let Some(uri) = uri()
            && let Some(jid) = uri.strip_prefix("xmpp:")
        {
            temp.append_child(leaf("JABBERID", jid));
        }
    }
    Some(temp)
}

/// The vcard-temp elements the shared properties are written as ([`to_vcard_temp`]).
const SHARED_TEMP: [&str; 12] = [
    "FN", "N", "NICKNAME", "BDAY", "URL", "TITLE", "ROLE", "DESC", "ORG", "EMAIL", "TEL",
    "JABBERID",
];
/// The vCard4 properties the shared properties are written as, besides `impp` with an `xmpp:` URI.
const SHARED_VCARD4: [&str; 11] = [
    "fn", "n", "nickname", "bday", "url", "title", "role", "note", "org", "email", "tel",
];

fn is_shared_vcard4(property: &Element) -> bool {
    if property.ns() != VCARD4 {
        return false;
    }
    SHARED_VCARD4.contains(&property.name())
        || (property.name() == "impp"
            && property
                .get_child("uri", VCARD4)
                .is_some_and(|uri| uri.text().starts_with("xmpp:")))
}

fn text_of(element: &Element, name: &str) -> Option<String> {
    element
        .get_child(name, ns::VCARD)
        .map(|e| e.text().trim().to_string())
        .filter(|text| !text.is_empty())
}

/// `<name><kind>text</kind></name>` in vCard4.
fn property(name: &str, kind: &str, text: &str) -> Element {
    Element::builder(name, VCARD4)
        .append(
            Element::builder(kind, VCARD4)
                .append(text.to_string())
                .build(),
        )
        .build()
}

/// The vCard4 for a vcard-temp `temp` (XEP-0292 section 5, forwards): the shared properties of
/// `temp`, after the properties of `existing` (the vCard4 published before) that vcard-temp cannot
/// express.
pub fn vcard4_from_vcard_temp(temp: &Element, existing: Option<&Element>) -> Element {
    let mut vcard = Element::builder("vcard", VCARD4).build();
    if let Some(existing) = existing.filter(|e| e.is("vcard", VCARD4)) {
        for kept in existing.children().filter(|p| !is_shared_vcard4(p)) {
            vcard.append_child(kept.clone());
        }
    }
    for child in temp.children().filter(|c| c.ns() == ns::VCARD) {
        let converted = match child.name() {
            "FN" => text_of(temp, "FN").map(|t| property("fn", "text", &t)),
            "N" => {
                let mut n = Element::builder("n", VCARD4).build();
                for (from, to) in [
                    ("FAMILY", "surname"),
                    ("GIVEN", "given"),
                    ("MIDDLE", "additional"),
                    ("PREFIX", "prefix"),
                    ("SUFFIX", "suffix"),
                ] {
                    if let Some(part) = child.get_child(from, ns::VCARD) {
                        n.append_child(Element::builder(to, VCARD4).append(part.text()).build());
                    }
                }
                Some(n)
            }
            "NICKNAME" => Some(property("nickname", "text", &child.text())),
            "BDAY" => Some(property("bday", "date", &child.text())),
            "URL" => Some(property("url", "uri", &child.text())),
            "TITLE" => Some(property("title", "text", &child.text())),
            "ROLE" => Some(property("role", "text", &child.text())),
            "DESC" => Some(property("note", "text", &child.text())),
            "ORG" => text_of(child, "ORGNAME").map(|t| property("org", "text", &t)),
            "EMAIL" => text_of(child, "USERID").map(|t| property("email", "text", &t)),
            "TEL" => text_of(child, "NUMBER").map(|t| property("tel", "uri", &format!("tel:{t}"))),
            "JABBERID" => Some(property("impp", "uri", &format!("xmpp:{}", child.text()))),
            _ => None,
        };
        if let Some(converted) = converted {
            vcard.append_child(converted);
        }
    }
    vcard
}

/// The stored vcard-temp `temp` with its shared properties replaced by those of `vcard4`; what
/// vCard4 cannot express (PHOTO, ADR, ...) stays.
pub fn vcard_temp_with(temp: &Element, vcard4: &Element) -> Option<Element> {
    let converted = to_vcard_temp(vcard4)?;
    let mut merged = Element::builder("vCard", ns::VCARD).build();
    for kept in temp
        .children()
        .filter(|c| !(c.ns() == ns::VCARD && SHARED_TEMP.contains(&c.name())))
    {
        merged.append_child(kept.clone());
    }
    for shared in converted.children() {
        merged.append_child(shared.clone());
    }
    Some(merged)
}

/// A vCard4 `owner` published: if they also keep a vcard-temp, its shared properties become the
/// vCard4's. A storage failure is logged; the publish stands.
pub async fn merge_into_vcard_temp(router: &Arc<Router>, owner: &str, vcard4: &Element) {
    let vcards = &router.context.storage.vcards;
    let stored = match vcards.get(owner).await {
        Ok(Some(xml)) => xml.parse::<Element>().ok(),
        Ok(None) => None,
        Err(error) => {
            tracing::error!(%error, "loading a vCard to merge a vCard4 failed");
            None
        }
    };
    let Some(merged) = stored.and_then(|temp| vcard_temp_with(&temp, vcard4)) else {
        return;
    };
    if let Err(error) = vcards.set(owner, &String::from(&merged)).await {
        tracing::error!(%error, "storing a vCard merged from a vCard4 failed");
    }
}

/// The vCard4 to publish for a vcard-temp set by `owner`: built from it and the vCard4 published
/// before (the owner's view), or `None` when that is what is published already. Errors: storage.
pub async fn vcard4_for_set(
    router: &Arc<Router>,
    owner: &str,
    temp: &Element,
) -> Result<Option<Element>, StorageError> {
    let existing = super::pep::newest_readable(router, owner, NODE, &Requester::OWNER).await?;
    let vcard4 = vcard4_from_vcard_temp(temp, existing.as_ref());
    Ok((existing.as_ref() != Some(&vcard4)).then_some(vcard4))
}

/// The vcard-temp built from `owner`'s newest vCard4 item, if there is one and `requester` may
/// read the node (its access model, as for a pubsub items request). Errors: storage.
pub async fn as_vcard_temp(
    router: &Arc<Router>,
    owner: &str,
    requester: &Requester<'_>,
) -> Result<Option<Element>, StorageError> {
    Ok(super::pep::newest_readable(router, owner, NODE, requester)
        .await?
        .and_then(|vcard4| to_vcard_temp(&vcard4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_properties_map_to_vcard_temp() {
        let vcard4: Element = "<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'>\
             <fn><text>Peter Saint-Andre</text></fn>\
             <n><surname>Saint-Andre</surname><given>Peter</given><additional/></n>\
             <nickname><text>stpeter</text></nickname>\
             <bday><date>1966-08-06</date></bday>\
             <note><text>More info</text></note>\
             <org><text>XMPP Standards Foundation</text></org>\
             <email><text>peter@example.org</text></email>\
             <tel><uri>tel:+1-303-308-3282</uri></tel>\
             <impp><uri>xmpp:stpeter@jabber.org</uri></impp>\
             <impp><uri>sip:stpeter@example.org</uri></impp>\
             <geo><uri>geo:39.59,-105.01</uri></geo>\
             </vcard>"
            .parse()
            .expect("test XML");
        let expected: Element = "<vCard xmlns='vcard-temp'>\
             <FN>Peter Saint-Andre</FN>\
             <N><FAMILY>Saint-Andre</FAMILY><GIVEN>Peter</GIVEN><MIDDLE/></N>\
             <NICKNAME>stpeter</NICKNAME><BDAY>1966-08-06</BDAY><DESC>More info</DESC>\
             <ORG><ORGNAME>XMPP Standards Foundation</ORGNAME></ORG>\
             <EMAIL><INTERNET/><USERID>peter@example.org</USERID></EMAIL>\
             <TEL><NUMBER>+1-303-308-3282</NUMBER></TEL>\
             <JABBERID>stpeter@jabber.org</JABBERID>\
             </vCard>"
            .parse()
            .expect("test XML");
        assert_eq!(to_vcard_temp(&vcard4), Some(expected));
    }

    #[test]
    fn vcard_temp_round_trips_through_vcard4_and_keeps_what_only_one_holds() {
        let temp: Element = "<vCard xmlns='vcard-temp'><FN>Alice</FN>\
             <N><FAMILY>Liddell</FAMILY><GIVEN>Alice</GIVEN></N><NICKNAME>al</NICKNAME>\
             <BDAY>1852-05-04</BDAY><URL>https://example.org/</URL><TITLE>Dreamer</TITLE>\
             <DESC>Down the hole</DESC><ORG><ORGNAME>Wonderland</ORGNAME></ORG>\
             <EMAIL><INTERNET/><USERID>alice@example.org</USERID></EMAIL>\
             <TEL><NUMBER>+44-1</NUMBER></TEL><JABBERID>alice@localhost</JABBERID>\
             <ADR><LOCALITY>Oxford</LOCALITY></ADR></vCard>"
            .parse()
            .expect("test XML");
        let existing: Element = "<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'>\
             <fn><text>Old</text></fn><gender><sex>F</sex></gender>\
             <impp><uri>sip:alice@example.org</uri></impp></vcard>"
            .parse()
            .expect("test XML");
        let vcard4 = vcard4_from_vcard_temp(&temp, Some(&existing));
        assert_eq!(value(&vcard4, "fn", "text").as_deref(), Some("Alice"));
        assert!(vcard4.get_child("gender", VCARD4).is_some(), "kept");
        assert_eq!(vcard4.children().filter(|p| p.is("fn", VCARD4)).count(), 1);
        assert_eq!(
            value(&vcard4, "note", "text").as_deref(),
            Some("Down the hole")
        );
        assert_eq!(value(&vcard4, "tel", "uri").as_deref(), Some("tel:+44-1"));
        // Back again: the shared properties are what was set, ADR stays from the stored one.
        let back = vcard_temp_with(&temp, &vcard4).expect("a vCard4");
        for name in SHARED_TEMP {
            assert_eq!(
                back.get_child(name, ns::VCARD).map(String::from),
                temp.get_child(name, ns::VCARD).map(String::from),
                "{name}"
            );
        }
        assert!(back.get_child("ADR", ns::VCARD).is_some());
    }

    #[test]
    fn other_payloads_are_not_vcards() {
        let other: Element = "<vCard xmlns='vcard-temp'/>".parse().expect("test XML");
        assert_eq!(to_vcard_temp(&other), None);
    }
}
