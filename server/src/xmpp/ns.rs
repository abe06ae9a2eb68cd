//! XML namespace names used on the wire (RFC 6120, RFC 6121 and the XEPs Herald speaks).
//!
//! One constant per namespace so that no other module spells a namespace string itself.

/// The stream namespace, bound to the `stream:` prefix (RFC 6120 section 4.8.1).
pub const STREAMS: &str = "http://etherx.jabber.org/streams";
/// Content namespace of client-to-server streams (RFC 6120 section 4.8.2).
pub const CLIENT: &str = "jabber:client";
/// Content namespace of server-to-server streams (RFC 6120 section 4.8.2).
pub const SERVER: &str = "jabber:server";
/// Content namespace of external component streams (XEP-0114).
pub const COMPONENT_ACCEPT: &str = "jabber:component:accept";
/// Server dialback (XEP-0220), usually bound to the `db:` prefix on the s2s stream header.
pub const DIALBACK: &str = "jabber:server:dialback";
/// Dialback stream feature (XEP-0220 section 2.4).
pub const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";
/// The `xml:` prefix namespace (Namespaces in XML 1.0 section 3), used by `xml:lang`.
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";

/// Stream error conditions (RFC 6120 section 4.9.2).
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// STARTTLS (RFC 6120 section 5.4).
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL (RFC 6120 section 6.4).
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Resource binding (RFC 6120 section 7).
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Legacy session establishment (RFC 3921 section 3, kept for old clients).
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// Stanza error conditions (RFC 6120 section 8.3.2).
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// Roster management (RFC 6121 section 2).
pub const ROSTER: &str = "jabber:iq:roster";
/// Roster versioning stream feature (RFC 6121 section 2.6).
pub const ROSTER_VERSIONING: &str = "urn:xmpp:features:rosterver";
/// Subscription pre-approval stream feature (RFC 6121 section 3.4).
pub const PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";

/// XEP-0199: XMPP Ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0030: Service Discovery, info.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030: Service Discovery, items.
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0092: Software Version.
pub const VERSION: &str = "jabber:iq:version";
/// XEP-0054: vcard-temp.
pub const VCARD: &str = "vcard-temp";
/// XEP-0077: In-Band Registration, IQ payload.
pub const REGISTER: &str = "jabber:iq:register";
/// XEP-0077: In-Band Registration, stream feature.
pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
/// XEP-0191: Blocking Command.
pub const BLOCKING: &str = "urn:xmpp:blocking";
/// XEP-0191 section 3.5: blocked-stanza error application condition.
pub const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
/// XEP-0203: Delayed Delivery.
pub const DELAY: &str = "urn:xmpp:delay";
/// XEP-0198: Stream Management.
pub const SM: &str = "urn:xmpp:sm:3";
/// XEP-0280: Message Carbons.
pub const CARBONS: &str = "urn:xmpp:carbons:2";
/// XEP-0297: Stanza Forwarding (used inside carbons and MAM results).
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0352: Client State Indication.
pub const CSI: &str = "urn:xmpp:csi:0";
/// XEP-0478: Stream Limits Advertisement.
pub const STREAM_LIMITS: &str = "urn:xmpp:stream-limits:0";
/// XEP-0440: SASL Channel-Binding Type Capability.
pub const SASL_CHANNEL_BINDING: &str = "urn:xmpp:sasl-cb:0";
/// XEP-0357: Push Notifications.
pub const PUSH: &str = "urn:xmpp:push:0";
/// Herald relay-to-relay forwarding over s2s (`features/relay_forward.rs`, relay/README.md).
pub const RELAY_FORWARD: &str = "urn:herald:relay-forward:0";
/// XEP-0004: Data Forms (push publish-options, registration forms).
pub const DATA_FORMS: &str = "jabber:x:data";
/// XEP-0060: Publish-Subscribe (push notifications are pubsub publishes).
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 section 8: owner use cases.
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// XEP-0060 section 7.1.2.1: event notifications.
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0060 section 14.2: pubsub-specific error conditions.
pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0050: Ad-Hoc Commands (the push service's registration commands).
pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
/// XEP-0313: Message Archive Management.
pub const MAM: &str = "urn:xmpp:mam:2";
/// XEP-0313: the `#extended` feature (`before-id`, `after-id`, `ids`, archive metadata).
pub const MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
/// XEP-0059: Result Set Management.
pub const RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0359: Unique and Stable Stanza IDs.
pub const STANZA_ID: &str = "urn:xmpp:sid:0";
/// XEP-0115: Entity Capabilities.
pub const CAPS: &str = "http://jabber.org/protocol/caps";
/// XEP-0012: Last Activity.
pub const LAST: &str = "jabber:iq:last";
/// XEP-0202: Entity Time.
pub const TIME: &str = "urn:xmpp:time";
/// XEP-0049: Private XML Storage.
pub const PRIVATE: &str = "jabber:iq:private";
/// XEP-0160 / XEP-0013: flexible offline message retrieval discovery node.
pub const OFFLINE: &str = "msgoffline";
/// XEP-0334: Message Processing Hints.
pub const HINTS: &str = "urn:xmpp:hints";
/// XEP-0085: Chat State Notifications.
pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
