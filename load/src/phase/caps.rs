//! Entity capabilities (XEP-0115) for the load clients: the verification string, the `<c/>` element
//! carried in presence, and the disco#info reply (XEP-0030 section 3.1) that a server querying
//! `node#ver` expects.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha1::{Digest, Sha1};

use crate::client::escape;

/// The caps namespace (XEP-0115 section 1.2).
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// The disco#info namespace (XEP-0030).
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// A service discovery identity (XEP-0030 section 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// E.g. `client`.
    pub category: String,
    /// E.g. `pc`.
    pub kind: String,
    /// `xml:lang`, empty when absent.
    pub lang: String,
    /// Human-readable name, empty when absent.
    pub name: String,
}

/// What a client announces: its identities and features, and the node naming its software.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// The `node` attribute of `<c/>` (XEP-0115 section 4), a URI naming the software.
    pub node: String,
    /// Identities answered in disco#info.
    pub identities: Vec<Identity>,
    /// Features answered in disco#info.
    pub features: Vec<String>,
}

/// The verification string (XEP-0115 section 5.1) over identities and features, hashed with
/// SHA-1 and encoded in Base64 (no extended service discovery forms: the load clients send none).
pub fn verification_string(identities: &[Identity], features: &[String]) -> String {
    let mut ids: Vec<&Identity> = identities.iter().collect();
    // Section 5.1 step 2: sort by category, then type, then xml:lang, then name.
    ids.sort_by(|a, b| {
        (&a.category, &a.kind, &a.lang, &a.name).cmp(&(&b.category, &b.kind, &b.lang, &b.name))
    });
    let mut s = String::new();
    for id in ids {
        // Step 3: category/type/lang/name<
        s.push_str(&format!(
            "{}/{}/{}/{}<",
            id.category, id.kind, id.lang, id.name
        ));
    }
    // Steps 4 and 5: features sorted (byte order, i;octet), each followed by '<'.
    let mut feats: Vec<&String> = features.iter().collect();
    feats.sort();
    feats.dedup();
    for f in feats {
        s.push_str(f);
        s.push('<');
    }
    // Steps 7 and 8: hash and Base64-encode.
    B64.encode(Sha1::digest(s.as_bytes()))
}

impl Caps {
    /// The `ver` attribute: [`verification_string`] over this client's identities and features.
    pub fn ver(&self) -> String {
        verification_string(&self.identities, &self.features)
    }

    /// `node#ver`, the node a server queries with disco#info (XEP-0115 section 6.2).
    pub fn query_node(&self) -> String {
        format!("{}#{}", self.node, self.ver())
    }

    /// The `<c/>` element for presence (XEP-0115 section 4).
    pub fn element(&self) -> String {
        format!(
            "<c xmlns='{NS_CAPS}' hash='sha-1' node='{}' ver='{}'/>",
            escape(&self.node),
            escape(&self.ver())
        )
    }

    /// The disco#info `<query/>` answering `node` (XEP-0030 section 3.1): identities and features
    /// (a server checks that they hash to the announced `ver`, XEP-0115 section 5.4).
    pub fn disco_query(&self, node: Option<&str>) -> String {
        let node = node
            .map(|n| format!(" node='{}'", escape(n)))
            .unwrap_or_default();
        let mut out = format!("<query xmlns='{NS_DISCO_INFO}'{node}>");
        for id in &self.identities {
            out.push_str(&format!(
                "<identity category='{}' type='{}'",
                escape(&id.category),
                escape(&id.kind)
            ));
            if !id.lang.is_empty() {
                out.push_str(&format!(" xml:lang='{}'", escape(&id.lang)));
            }
            if !id.name.is_empty() {
                out.push_str(&format!(" name='{}'", escape(&id.name)));
            }
            out.push_str("/>");
        }
        for f in &self.features {
            out.push_str(&format!("<feature var='{}'/>", escape(f)));
        }
        out.push_str("</query>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exodus() -> Caps {
        Caps {
            node: "http://code.google.com/p/exodus".into(),
            identities: vec![Identity {
                category: "client".into(),
                kind: "pc".into(),
                lang: String::new(),
                name: "Exodus 0.9.1".into(),
            }],
            features: [
                "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items",
                "http://jabber.org/protocol/muc",
                "http://jabber.org/protocol/caps",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    #[test]
    fn simple_generation_example_of_xep_0115_section_5_2() {
        // Features given out of order: the algorithm sorts them.
        assert_eq!(exodus().ver(), "QgayPKawpkPSDYmwT/WM94uAlu0=");
        assert!(
            exodus()
                .element()
                .contains("ver='QgayPKawpkPSDYmwT/WM94uAlu0='")
        );
        assert_eq!(
            exodus().query_node(),
            "http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0="
        );
    }

    #[test]
    fn identities_are_sorted_and_lang_takes_its_slot() {
        // XEP-0115 section 5.3's identities (its form left out): two names differing by language.
        let ids = vec![
            Identity {
                category: "client".into(),
                kind: "pc".into(),
                lang: "el".into(),
                name: "Ψ 0.11".into(),
            },
            Identity {
                category: "client".into(),
                kind: "pc".into(),
                lang: "en".into(),
                name: "Psi 0.11".into(),
            },
        ];
        let mut reversed = ids.clone();
        reversed.reverse();
        let features = vec!["urn:xmpp:dataforms:softwareinfo".to_string()];
        assert_eq!(
            verification_string(&ids, &features),
            verification_string(&reversed, &features)
        );
        let s = "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<urn:xmpp:dataforms:softwareinfo<";
        assert_eq!(
            verification_string(&ids, &features),
            B64.encode(Sha1::digest(s.as_bytes()))
        );
    }

    #[test]
    fn disco_reply_lists_what_the_ver_covers() {
        let q = exodus().disco_query(Some("n#v"));
        assert!(q.starts_with(&format!("<query xmlns='{NS_DISCO_INFO}' node='n#v'>")));
        assert!(q.contains("<identity category='client' type='pc' name='Exodus 0.9.1'/>"));
        assert_eq!(q.matches("<feature ").count(), 4);
    }
}
