//! XEP-0478: Stream Limits Advertisement, the `<limits/>` stream feature telling the peer our bounds.

use super::{Element, Limits, ns};

/// The `<limits xmlns='urn:xmpp:stream-limits:0'/>` element to put inside `<stream:features/>`
/// (XEP-0478 section 3): the largest stanza we accept and how long we let a connection sit idle.
pub fn stream_limits_feature(limits: &Limits, idle_seconds: u32) -> Element {
    Element::builder("limits", ns::STREAM_LIMITS)
        .append(
            Element::builder("max-bytes", ns::STREAM_LIMITS)
                .append(limits.max_stanza_bytes.to_string())
                .build(),
        )
        .append(
            Element::builder("idle-seconds", ns::STREAM_LIMITS)
                .append(idle_seconds.to_string())
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_carries_both_limits() {
        let el = stream_limits_feature(&Limits::default(), 600);
        assert!(el.is("limits", ns::STREAM_LIMITS));
        let max = el
            .get_child("max-bytes", ns::STREAM_LIMITS)
            .map(Element::text);
        let idle = el
            .get_child("idle-seconds", ns::STREAM_LIMITS)
            .map(Element::text);
        assert_eq!(max.as_deref(), Some("262144"));
        assert_eq!(idle.as_deref(), Some("600"));
        // Cross-check with the xmpp-parsers model of XEP-0478.
        let parsed = xmpp_parsers::stream_limits::Limits::try_from(el).expect("valid XEP-0478");
        assert_eq!(parsed.max_bytes.map(|n| n.get()), Some(262_144));
    }
}
