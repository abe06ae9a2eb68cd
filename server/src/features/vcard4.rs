//! XEP-0292: vCard4 Over XMPP, beside XEP-0054 vcard-temp. vCard4 lives in the PEP node
//! `urn:xmpp:vcard4` (XEP-0292 section 3, through XEP-0222), which the PEP service handles like any
//! other node. What this file adds is the reading direction older clients need: a user who never
//! stored a vcard-temp but published a vCard4 is answered a vcard-temp built from it, with the
//! XEP-0292 section 5 mapping read backwards (`note` as `DESC`, `impp` `xmpp:` URIs as `JABBERID`).
//! Only the properties both formats share are carried; the vCard4 item itself is never changed.

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
    fn other_payloads_are_not_vcards() {
        let other: Element = "<vCard xmlns='vcard-temp'/>".parse().expect("test XML");
        assert_eq!(to_vcard_temp(&other), None);
    }
}
