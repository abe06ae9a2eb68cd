//! XEP-0199: XMPP Ping. Pings to the server or to an account are answered with an empty result
//! (section 4.1, handled in [`super::iq`]); the server pings idle sessions to find dead connections (4.2).

use crate::xmpp::ns;
use crate::xmpp::{Element, set_attribute};

/// A server-to-client ping (XEP-0199 section 4.2), from `domain` to the session `to`.
pub fn request(id: &str, domain: &str, to: &str) -> Element {
    let mut iq = Element::builder("iq", ns::CLIENT)
        .append(Element::builder("ping", ns::PING).build())
        .build();
    for (name, value) in [("type", "get"), ("id", id), ("from", domain), ("to", to)] {
        set_attribute(&mut iq, name, value);
    }
    iq
}

#[cfg(test)]
mod tests {
    #[test]
    fn ping_request_shape() {
        let xml = String::from(&super::request("p1", "example.org", "a@example.org/r"));
        assert!(xml.contains("<ping xmlns='urn:xmpp:ping'/>"), "{xml}");
        assert!(
            xml.contains("type='get'") && xml.contains("id='p1'"),
            "{xml}"
        );
    }
}
