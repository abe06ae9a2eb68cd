//! XEP-0115: Entity Capabilities, for XEP-0163 filtered notifications (section 4.3.1): the `<c/>` a
//! client puts in its available presence (section 4), one disco#info query per unknown verification
//! string however many resources announce it at once (section 6.3), the answer verified by computing
//! the string again (section 5.1, checked as section 5.4 says) and cached only then
//! ([`crate::context::CapsCache`]). Once a resource's caps are known, it gets the last item of each
//! node it asks for (XEP-0163 section 6.2, through `features::pep`). The same holds for a contact's
//! resource on another server, known from the presence its server sends a local user
//! ([`remote_presence`], kept in [`crate::context::RemoteResources`]); its query goes across s2s.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use sha1::{Digest, Sha1};

use super::ClientSession;
use herald_storage::Subscription;

use crate::context::entity_caps::{Announced, Caps};
use crate::context::remote_resources::Recorded;
use crate::router::Router;
use crate::xmpp::{BareJid, Element, Envelope, ns, set_attribute};

/// How long the server waits for a client's answer to its disco#info query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `<c/>` of a presence (section 4), with the parts the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The client's software URI (`node`).
    pub node: String,
    /// The verification string (`ver`).
    pub ver: String,
}

/// The sha-1 caps of an available presence, if any (section 4). Other hash functions and the
/// legacy format without `hash` (section 1.2) are not used: PEP clients send sha-1.
pub fn announcement(presence: &Element) -> Option<Announcement> {
    let c = presence.get_child("c", ns::CAPS)?;
    if c.attr("hash") != Some("sha-1") {
        return None;
    }
    let (node, ver) = (c.attr("node")?, c.attr("ver")?);
    if node.is_empty() || ver.is_empty() || ver.len() > 64 {
        return None;
    }
    Some(Announcement {
        node: node.to_string(),
        ver: ver.to_string(),
    })
}

/// Why a disco#info answer does not give a verification string (section 5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    #[error("the same identity twice")]
    DuplicateIdentity,
    #[error("the same feature twice")]
    DuplicateFeature,
    #[error("two extended forms with the same FORM_TYPE")]
    DuplicateForm,
    #[error("an extended form with more than one FORM_TYPE value")]
    AmbiguousFormType,
}

/// The verification string of a disco#info `<query/>` (section 5.1, sha-1, base64 of the digest),
/// refusing the answers section 5.4 says to refuse.
pub fn verification_string(query: &Element) -> Result<String, CapsError> {
    let mut identities: Vec<String> = Vec::new();
    let mut features: Vec<String> = Vec::new();
    let mut forms: Vec<(String, String)> = Vec::new();
    for child in query.children() {
        if child.is("identity", ns::DISCO_INFO) {
            identities.push(format!(
                "{}/{}/{}/{}",
                child.attr("category").unwrap_or(""),
                child.attr("type").unwrap_or(""),
                child.attr_ns(ns::XML, "lang").unwrap_or(""),
                child.attr("name").unwrap_or("")
            ));
        } else if child.is("feature", ns::DISCO_INFO) {
            features.push(child.attr("var").unwrap_or("").to_string());
        } else if child.is("x", ns::DATA_FORMS)
            && let Some(form) = form_string(child)?
        {
            forms.push(form);
        }
    }
    // Sorted by octets (section 5.1, "i;octet" collation).
    identities.sort();
    features.sort();
    forms.sort();
    if identities.windows(2).any(|w| w[0] == w[1]) {
        return Err(CapsError::DuplicateIdentity);
    }
    if features.windows(2).any(|w| w[0] == w[1]) {
        return Err(CapsError::DuplicateFeature);
    }
    if forms.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(CapsError::DuplicateForm);
    }
    let mut s = String::new();
    for identity in &identities {
        s.push_str(identity);
        s.push('<');
    }
    for feature in &features {
        s.push_str(feature);
        s.push('<');
    }
    for (_, form) in &forms {
        s.push_str(form);
    }
    let digest = Sha1::digest(s.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// One extended form's part of the string (section 5.1 step 6), keyed by its FORM_TYPE; `None` for
/// a form without a hidden FORM_TYPE, which section 5.4 says to leave out.
fn form_string(form: &Element) -> Result<Option<(String, String)>, CapsError> {
    let mut form_type: Option<String> = None;
    let mut fields: Vec<(String, Vec<String>)> = Vec::new();
    for field in form.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
        let var = field.attr("var").unwrap_or("").to_string();
        let mut values: Vec<String> = field
            .children()
            .filter(|c| c.is("value", ns::DATA_FORMS))
            .map(|v| v.text())
            .collect();
        if var == "FORM_TYPE" {
            if field.attr("type") != Some("hidden") {
                return Ok(None);
            }
            if values.len() != 1 {
                return Err(CapsError::AmbiguousFormType);
            }
            form_type = values.pop();
            continue;
        }
        values.sort();
        fields.push((var, values));
    }
    let Some(form_type) = form_type else {
        return Ok(None);
    };
    fields.sort();
    let mut s = format!("{form_type}<");
    for (var, values) in fields {
        s.push_str(&var);
        s.push('<');
        for value in values {
            s.push_str(&value);
            s.push('<');
        }
    }
    Ok(Some((form_type, s)))
}

/// What a verified disco#info answer says for PEP: the `+notify` features (XEP-0163 section 4.3.1).
pub fn caps_of(query: &Element) -> Caps {
    let notify: BTreeSet<String> = query
        .children()
        .filter(|c| c.is("feature", ns::DISCO_INFO))
        .filter_map(|c| c.attr("var")?.strip_suffix("+notify").map(str::to_string))
        .filter(|node| !node.is_empty())
        .collect();
    Caps { notify }
}

/// A bound client's available presence (initial or an update), or its end (`presence` `None`):
/// keeps what it announces, asks about an unknown `ver`, and sends the last items the resource
/// newly asks for.
pub async fn presence_sent(
    router: &Arc<Router>,
    session: &ClientSession,
    presence: Option<&Element>,
    is_initial: bool,
) {
    let full = session.jid.to_string();
    let caps = &router.context.caps;
    let Some(presence) = presence else {
        caps.forget(&full);
        return;
    };
    let Some(announcement) = announcement(presence) else {
        // Section 4: a presence without caps may be an update that leaves them as they were
        // (XEP-0115 section 8.4 optimisation); an initial one announces none.
        if is_initial {
            caps.forget(&full);
        }
        return;
    };
    match caps.announce(&full, &announcement.ver) {
        Announced::Known { now, before } => {
            let new: BTreeSet<String> = match &before {
                Some(before) if !is_initial => {
                    now.notify.difference(&before.notify).cloned().collect()
                }
                _ => now.notify.clone(),
            };
            if !new.is_empty() {
                super::pep::send_last_items(router, &full, &new).await;
            }
        }
        Announced::Query => {
            let router = router.clone();
            let domain = session.jid.domain().to_string();
            tokio::spawn(async move { query(&router, &domain, &full, &announcement).await });
        }
        Announced::Waiting => {}
    }
}

/// An available or unavailable presence (`envelope`) from a resource on another server to the local
/// user `owner`'s bare JID (RFC 6121 section 4.2.2 broadcast, or directed): keeps or forgets the caps
/// it announces for `owner`'s PEP service ([`crate::context::RemoteResources`]), as for a local
/// resource: one disco#info query per unknown `ver` (sent from `owner`'s domain across the
/// federation), and the last items of the nodes it newly asks for (XEP-0163 section 6.2). Only a
/// contact in `owner`'s roster is tracked (a stranger's presence would take room for nothing: the
/// access models give strangers nothing but open nodes, which they can ask for).
pub async fn remote_presence(router: &Arc<Router>, owner: &BareJid, envelope: &Envelope) {
    let Some(from) = envelope.from.as_ref().filter(|f| f.resource().is_some()) else {
        return;
    };
    let full = from.to_string();
    let owner_key = owner.to_string();
    let tracker = &router.context.remote_resources;
    let announced = (envelope.presence_type.is_none())
        .then(|| announcement(&envelope.element))
        .flatten();
    let Some(announcement) = announced else {
        // Unavailable, or an available presence without (sha-1) caps: the resource is no longer
        // notified, as Prosody's mod_pep does (section 4 asks clients to put caps in every presence).
        tracker.forget(&owner_key, &full);
        return;
    };
    let contact = from.to_bare().to_string();
    let item = match router
        .context
        .storage
        .rosters
        .item(&owner_key, &contact)
        .await
    {
        Ok(item) => item,
        Err(e) => {
            tracing::error!(error = %e, "loading a roster item for remote caps failed");
            return;
        }
    };
    if !item.is_some_and(|i| i.in_roster && i.subscription != Subscription::None) {
        return;
    }
    let before = match tracker.record(&owner_key, &full, &announcement.ver) {
        Recorded::Tracked { before } => before,
        Recorded::Refused => {
            tracing::debug!(owner = %owner_key, "remote caps not tracked: limit reached");
            return;
        }
    };
    let caps = &router.context.caps;
    match caps.announce_remote(&contact, &announcement.ver) {
        Announced::Known { now, .. } => {
            let before = before.and_then(|ver| caps.of_ver(&ver));
            let new: BTreeSet<String> = match &before {
                Some(before) => now.notify.difference(&before.notify).cloned().collect(),
                None => now.notify.clone(),
            };
            if !new.is_empty() {
                super::pep::notify::send_last_items_to_remote(router, &owner_key, &full, &new)
                    .await;
            }
        }
        Announced::Query => {
            let router = router.clone();
            let domain = owner.domain().to_string();
            tokio::spawn(async move { query(&router, &domain, &full, &announcement).await });
        }
        Announced::Waiting => {}
    }
}

/// Asks `full` what `announcement` stands for (section 6.2), verifies the answer and, if it holds,
/// caches it and serves every resource that announced it meanwhile.
async fn query(router: &Arc<Router>, domain: &str, full: &str, announcement: &Announcement) {
    let mut disco = Element::builder("query", ns::DISCO_INFO).build();
    set_attribute(
        &mut disco,
        "node",
        &format!("{}#{}", announcement.node, announcement.ver),
    );
    let mut iq = Element::builder("iq", ns::CLIENT).append(disco).build();
    for (name, value) in [("type", "get"), ("from", domain), ("to", full)] {
        set_attribute(&mut iq, name, value);
    }
    let caps = &router.context.caps;
    let answer = match router.pending_iqs.request(router, iq, QUERY_TIMEOUT).await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::debug!(%error, "caps query unanswered");
            caps.query_failed(&announcement.ver);
            return;
        }
    };
    let verified = answer
        .element
        .get_child("query", ns::DISCO_INFO)
        .filter(|_| answer.element.attr("type") == Some("result"))
        .filter(|query| verification_string(query).as_deref() == Ok(announcement.ver.as_str()));
    let Some(query) = verified else {
        // Section 5.4: an answer that does not hash to the announced string is not cached.
        tracing::debug!(ver = %announcement.ver, "caps answer did not verify");
        caps.query_failed(&announcement.ver);
        return;
    };
    let (now, waiting) = caps.verified(&announcement.ver, caps_of(query));
    if now.notify.is_empty() {
        return;
    }
    for resource in waiting {
        super::pep::send_last_items(router, &resource, &now.notify).await;
    }
    let remote = router
        .context
        .remote_resources
        .announcing(&announcement.ver);
    for (owner, resource) in remote {
        super::pep::notify::send_last_items_to_remote(router, &owner, &resource, &now.notify).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 section 5.2, the simple example.
    const SIMPLE: &str = "<query xmlns='http://jabber.org/protocol/disco#info' \
        node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>\
        <identity category='client' name='Exodus 0.9.1' type='pc'/>\
        <feature var='http://jabber.org/protocol/caps'/>\
        <feature var='http://jabber.org/protocol/disco#info'/>\
        <feature var='http://jabber.org/protocol/disco#items'/>\
        <feature var='http://jabber.org/protocol/muc'/>\
        </query>";

    /// XEP-0115 section 5.3, the complex example.
    const COMPLEX: &str = "<query xmlns='http://jabber.org/protocol/disco#info' \
        node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>\
        <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
        <identity xml:lang='el' category='client' name='\u{3a8} 0.11' type='pc'/>\
        <feature var='http://jabber.org/protocol/caps'/>\
        <feature var='http://jabber.org/protocol/disco#info'/>\
        <feature var='http://jabber.org/protocol/disco#items'/>\
        <feature var='http://jabber.org/protocol/muc'/>\
        <x xmlns='jabber:x:data' type='result'>\
        <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
        <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
        <field var='os'><value>Mac</value></field>\
        <field var='os_version'><value>10.5.1</value></field>\
        <field var='software'><value>Psi</value></field>\
        <field var='software_version'><value>0.11</value></field>\
        </x></query>";

    fn ver(xml: &str) -> Result<String, CapsError> {
        verification_string(&xml.parse::<Element>().expect("xml"))
    }

    #[test]
    fn the_examples_of_section_5() {
        assert_eq!(ver(SIMPLE).as_deref(), Ok("QgayPKawpkPSDYmwT/WM94uAlu0="));
        assert_eq!(ver(COMPLEX).as_deref(), Ok("q07IKJEyjvHSyhy//CH0CxmKi8w="));
    }

    #[test]
    fn answers_section_5_4_refuses() {
        let twice = SIMPLE.replace(
            "</query>",
            "<feature var='http://jabber.org/protocol/muc'/></query>",
        );
        assert_eq!(ver(&twice), Err(CapsError::DuplicateFeature));
        let twice = SIMPLE.replace(
            "</query>",
            "<identity category='client' name='Exodus 0.9.1' type='pc'/></query>",
        );
        assert_eq!(ver(&twice), Err(CapsError::DuplicateIdentity));
        let form = "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>\
            <value>urn:x</value></field></x>";
        let two_forms = SIMPLE.replace("</query>", &format!("{form}{form}</query>"));
        assert_eq!(ver(&two_forms), Err(CapsError::DuplicateForm));
        // A form whose FORM_TYPE is not hidden is left out of the string.
        let not_hidden = SIMPLE.replace(
            "</query>",
            "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>urn:x</value>\
             </field></x></query>",
        );
        assert_eq!(
            ver(&not_hidden).as_deref(),
            Ok("QgayPKawpkPSDYmwT/WM94uAlu0=")
        );
    }

    #[test]
    fn notify_features_name_the_nodes() {
        let query: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <feature var='urn:xmpp:omemo:2:devices+notify'/>\
            <feature var='urn:xmpp:avatar:metadata+notify'/>\
            <feature var='urn:xmpp:omemo:2:devices'/><feature var='+notify'/></query>"
            .parse()
            .expect("xml");
        let nodes: Vec<String> = caps_of(&query).notify.into_iter().collect();
        assert_eq!(
            nodes,
            ["urn:xmpp:avatar:metadata", "urn:xmpp:omemo:2:devices"]
        );
    }

    #[test]
    fn announcements_are_sha1_only() {
        let presence = |c: &str| -> Element {
            format!("<presence xmlns='jabber:client'>{c}</presence>")
                .parse()
                .expect("xml")
        };
        let c = "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v='/>";
        assert_eq!(
            announcement(&presence(c)),
            Some(Announcement {
                node: "n".into(),
                ver: "v=".into()
            })
        );
        let legacy = "<c xmlns='http://jabber.org/protocol/caps' node='n' ver='1.0'/>";
        assert_eq!(announcement(&presence(legacy)), None);
        assert_eq!(announcement(&presence("")), None);
    }
}
