//! The `<stream:features/>` a client stream is offered at each stage (RFC 6120 section 4.3.2), serialised
//! once per listener: they depend only on configuration and on a few facts about the connection, and
//! building and serialising them for every stream opening was a measurable part of a login's CPU time.

use super::sasl::{self, Mechanism};
use crate::config::Config;
use crate::xmpp::{Element, set_attribute};
use crate::xmpp::{ns, writer};

/// What decides the features of one stream opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Before TLS: only STARTTLS.
    Plain,
    /// TLS is up (or not required): SASL and registration. `tls_exporter` and `tls_server_end_point` say
    /// which channel bindings the -PLUS mechanisms can use on this connection (XEP-0440).
    Secured {
        is_tls: bool,
        tls_exporter: bool,
        tls_server_end_point: bool,
    },
    /// After SASL: resource binding.
    Authenticated,
}

impl Offer {
    /// Position in [`StreamFeatures::texts`].
    fn index(self) -> usize {
        match self {
            Offer::Plain => 0,
            Offer::Authenticated => 1,
            Offer::Secured {
                is_tls,
                tls_exporter,
                tls_server_end_point,
            } => {
                2 + usize::from(is_tls) * 4
                    + usize::from(tls_exporter) * 2
                    + usize::from(tls_server_end_point)
            }
        }
    }

    fn all() -> impl Iterator<Item = Offer> {
        let secured = (0..8).map(|bits| Offer::Secured {
            is_tls: bits & 4 != 0,
            tls_exporter: bits & 2 != 0,
            tls_server_end_point: bits & 1 != 0,
        });
        [Offer::Plain, Offer::Authenticated]
            .into_iter()
            .chain(secured)
    }
}

/// Every possible features element of a listener, serialised as it is written on a `jabber:client` stream.
#[derive(Debug)]
pub struct StreamFeatures {
    texts: Vec<String>,
}

impl StreamFeatures {
    pub fn new(config: &Config) -> StreamFeatures {
        let mut texts = vec![String::new(); 10];
        for offer in Offer::all() {
            texts[offer.index()] = writer::element(&build(config, offer), ns::CLIENT);
        }
        StreamFeatures { texts }
    }

    /// The serialised features for `offer`.
    pub fn text(&self, offer: Offer) -> &str {
        self.texts.get(offer.index()).map_or("", String::as_str)
    }
}

fn build(config: &Config, offer: Offer) -> Element {
    let mut features = Element::builder("features", ns::STREAMS).build();
    match offer {
        Offer::Plain => {
            let mut starttls = Element::builder("starttls", ns::TLS).build();
            if config.require_tls {
                starttls.append_child(Element::builder("required", ns::TLS).build());
            }
            features.append_child(starttls);
        }
        Offer::Secured {
            is_tls,
            tls_exporter,
            tls_server_end_point,
        } => {
            let plus_possible = tls_exporter || tls_server_end_point;
            let mut mechanisms = Element::builder("mechanisms", ns::SASL).build();
            for mechanism in sasl::offered_mechanisms(is_tls, plus_possible, true) {
                mechanisms.append_child(
                    Element::builder("mechanism", ns::SASL)
                        .append(Mechanism::name(mechanism))
                        .build(),
                );
            }
            features.append_child(mechanisms);
            // XEP-0440: which channel bindings the -PLUS mechanisms can use here.
            let mut cb = Element::builder("sasl-channel-binding", ns::SASL_CHANNEL_BINDING).build();
            for (kind, present) in [
                ("tls-exporter", tls_exporter),
                ("tls-server-end-point", tls_server_end_point),
            ] {
                if present {
                    let mut element =
                        Element::builder("channel-binding", ns::SASL_CHANNEL_BINDING).build();
                    set_attribute(&mut element, "type", kind);
                    cb.append_child(element);
                }
            }
            features.append_child(cb);
            if config.allow_in_band_registration {
                features.append_child(Element::builder("register", ns::REGISTER_FEATURE).build());
            }
        }
        Offer::Authenticated => {
            features.append_child(Element::builder("bind", ns::BIND).build());
            // RFC 6121 appendix E: advertise the legacy session as optional for old clients.
            features.append_child(
                Element::builder("session", ns::SESSION)
                    .append(Element::builder("optional", ns::SESSION).build())
                    .build(),
            );
            features.append_child(Element::builder("ver", ns::ROSTER_VERSIONING).build());
            features.append_child(Element::builder("sub", ns::PRE_APPROVAL).build());
            // XEP-0198 section 3: stream management, enabled once bound or resumed in place of binding.
            features.append_child(Element::builder("sm", ns::SM).build());
            // XEP-0352 section 2: client state indication, usable once bound.
            features.append_child(Element::builder("csi", ns::CSI).build());
        }
    }
    // XEP-0478: tell the client the limits it must respect on this stream. Limits are announced per stream,
    // so the smaller ones before authentication are announced until the restart after SASL.
    let limits = match offer {
        Offer::Authenticated => config.stream_limits(),
        Offer::Plain | Offer::Secured { .. } => config.stream_limits().before_auth(),
    };
    let idle = config.ping_interval.as_secs().min(u64::from(u32::MAX)) as u32;
    features.append_child(crate::xmpp::stream_limits_feature(&limits, idle));
    features
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn config() -> Config {
        Config::resolve(RawConfig::load(None, Vec::new()).unwrap()).unwrap()
    }

    #[test]
    fn every_offer_has_its_own_text() {
        let features = StreamFeatures::new(&config());
        let texts: Vec<&str> = Offer::all().map(|offer| features.text(offer)).collect();
        assert_eq!(texts.len(), 10);
        for (i, text) in texts.iter().enumerate() {
            assert!(text.starts_with("<stream:features>"), "{text}");
            assert!(!texts[..i].contains(text), "duplicate features text {text}");
        }
    }

    #[test]
    fn plus_mechanisms_and_bindings_follow_the_connection() {
        let features = StreamFeatures::new(&config());
        let tls13 = features.text(Offer::Secured {
            is_tls: true,
            tls_exporter: true,
            tls_server_end_point: true,
        });
        assert!(tls13.contains("<mechanism>SCRAM-SHA-256-PLUS</mechanism>"));
        assert!(tls13.contains("<channel-binding type='tls-exporter'/>"));
        assert!(tls13.contains("<mechanism>PLAIN</mechanism>"));
        let tls12 = features.text(Offer::Secured {
            is_tls: true,
            tls_exporter: false,
            tls_server_end_point: false,
        });
        assert!(!tls12.contains("-PLUS"));
        assert!(!tls12.contains("<channel-binding "));
        let plain = features.text(Offer::Secured {
            is_tls: false,
            tls_exporter: false,
            tls_server_end_point: false,
        });
        assert!(!plain.contains("PLAIN"), "PLAIN only inside TLS: {plain}");
        assert!(features.text(Offer::Plain).contains("<starttls"));
        assert!(features.text(Offer::Authenticated).contains("<bind "));
        assert!(
            features
                .text(Offer::Authenticated)
                .contains("<sm xmlns='urn:xmpp:sm:3'/>")
        );
        assert!(
            features
                .text(Offer::Authenticated)
                .contains("<csi xmlns='urn:xmpp:csi:0'/>")
        );
        assert!(!features.text(Offer::Plain).contains("<csi "));
    }
}
