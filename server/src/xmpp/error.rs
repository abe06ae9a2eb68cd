//! Stream-level errors (RFC 6120 section 4.9): the 25 defined conditions and the error type of `XmlStream`.

use std::fmt;

/// A defined stream error condition (RFC 6120 section 4.9.3), qualified by
/// `urn:ietf:params:xml:ns:xmpp-streams` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamErrorCondition {
    /// 4.9.3.1: XML that cannot be processed.
    BadFormat,
    /// 4.9.3.2: unsupported or unbound namespace prefix.
    BadNamespacePrefix,
    /// 4.9.3.3: a new stream conflicts with this one.
    Conflict,
    /// 4.9.3.4: the peer was idle too long.
    ConnectionTimeout,
    /// 4.9.3.5: the host is no longer served.
    HostGone,
    /// 4.9.3.6: the host is not served here.
    HostUnknown,
    /// 4.9.3.7: missing or bad addressing.
    ImproperAddressing,
    /// 4.9.3.8: a fault on the server side.
    InternalServerError,
    /// 4.9.3.9: the `from` address does not match the authenticated identity.
    InvalidFrom,
    /// 4.9.3.10: wrong stream or content namespace.
    InvalidNamespace,
    /// 4.9.3.11: XML that fails validation.
    InvalidXml,
    /// 4.9.3.12: data sent before authentication.
    NotAuthorized,
    /// 4.9.3.13: XML that is not well-formed.
    NotWellFormed,
    /// 4.9.3.14: a local policy (size, rate, ...) was violated.
    PolicyViolation,
    /// 4.9.3.15: a remote server could not be reached.
    RemoteConnectionFailed,
    /// 4.9.3.16: the stream must be renegotiated.
    Reset,
    /// 4.9.3.17: the server lacks resources for the stream.
    ResourceConstraint,
    /// 4.9.3.18: XML features forbidden by RFC 6120 section 11 (comments, PIs, DTDs, entities).
    RestrictedXml,
    /// 4.9.3.19: the peer should reconnect to another host.
    SeeOtherHost,
    /// 4.9.3.20: the server is shutting down.
    SystemShutdown,
    /// 4.9.3.21: none of the other conditions.
    UndefinedCondition,
    /// 4.9.3.22: an encoding other than UTF-8.
    UnsupportedEncoding,
    /// 4.9.3.23: a mandatory feature is not supported.
    UnsupportedFeature,
    /// 4.9.3.24: an unsupported first-level child of the stream.
    UnsupportedStanzaType,
    /// 4.9.3.25: an unsupported stream version.
    UnsupportedVersion,
}

impl StreamErrorCondition {
    /// Every condition, in RFC order.
    pub const ALL: [StreamErrorCondition; 25] = [
        Self::BadFormat,
        Self::BadNamespacePrefix,
        Self::Conflict,
        Self::ConnectionTimeout,
        Self::HostGone,
        Self::HostUnknown,
        Self::ImproperAddressing,
        Self::InternalServerError,
        Self::InvalidFrom,
        Self::InvalidNamespace,
        Self::InvalidXml,
        Self::NotAuthorized,
        Self::NotWellFormed,
        Self::PolicyViolation,
        Self::RemoteConnectionFailed,
        Self::Reset,
        Self::ResourceConstraint,
        Self::RestrictedXml,
        Self::SeeOtherHost,
        Self::SystemShutdown,
        Self::UndefinedCondition,
        Self::UnsupportedEncoding,
        Self::UnsupportedFeature,
        Self::UnsupportedStanzaType,
        Self::UnsupportedVersion,
    ];

    /// The element name of the condition on the wire, e.g. `not-well-formed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFormat => "bad-format",
            Self::BadNamespacePrefix => "bad-namespace-prefix",
            Self::Conflict => "conflict",
            Self::ConnectionTimeout => "connection-timeout",
            Self::HostGone => "host-gone",
            Self::HostUnknown => "host-unknown",
            Self::ImproperAddressing => "improper-addressing",
            Self::InternalServerError => "internal-server-error",
            Self::InvalidFrom => "invalid-from",
            Self::InvalidNamespace => "invalid-namespace",
            Self::InvalidXml => "invalid-xml",
            Self::NotAuthorized => "not-authorized",
            Self::NotWellFormed => "not-well-formed",
            Self::PolicyViolation => "policy-violation",
            Self::RemoteConnectionFailed => "remote-connection-failed",
            Self::Reset => "reset",
            Self::ResourceConstraint => "resource-constraint",
            Self::RestrictedXml => "restricted-xml",
            Self::SeeOtherHost => "see-other-host",
            Self::SystemShutdown => "system-shutdown",
            Self::UndefinedCondition => "undefined-condition",
            Self::UnsupportedEncoding => "unsupported-encoding",
            Self::UnsupportedFeature => "unsupported-feature",
            Self::UnsupportedStanzaType => "unsupported-stanza-type",
            Self::UnsupportedVersion => "unsupported-version",
        }
    }

    /// The condition named `name` (the wire element name), if it is one of the 25.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for StreamErrorCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a stream cannot go on.
///
/// `Condition` is what the peer did wrong (or what we decided), and is answered with
/// `XmlStream::send_error`; `Io` and `Closed` mean the transport is gone and nothing more can be sent.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A stream error condition, with optional human-readable text for `<text/>`.
    #[error("stream error <{condition}/>{}", text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
    Condition {
        /// The defined condition.
        condition: StreamErrorCondition,
        /// Optional descriptive text (never shown to users, RFC 6120 section 4.9.2).
        text: Option<String>,
    },
    /// The transport failed.
    #[error("stream i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the transport without sending `</stream:stream>`.
    #[error("transport closed without </stream:stream>")]
    Closed,
}

impl StreamError {
    /// A condition error with descriptive text.
    pub fn new(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        Self::Condition {
            condition,
            text: Some(text.into()),
        }
    }

    /// A condition error without text.
    pub fn bare(condition: StreamErrorCondition) -> Self {
        Self::Condition {
            condition,
            text: None,
        }
    }

    /// The condition, if this error is one that should be sent to the peer.
    pub fn condition(&self) -> Option<StreamErrorCondition> {
        match self {
            Self::Condition { condition, .. } => Some(*condition),
            Self::Io(_) | Self::Closed => None,
        }
    }

    /// The descriptive text of a condition error.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Condition { text, .. } => text.as_deref(),
            Self::Io(_) | Self::Closed => None,
        }
    }
}

impl From<StreamErrorCondition> for StreamError {
    fn from(condition: StreamErrorCondition) -> Self {
        Self::bare(condition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_25_conditions_have_distinct_names_that_parse_back() {
        let names: std::collections::HashSet<_> = StreamErrorCondition::ALL
            .iter()
            .map(|c| c.as_str())
            .collect();
        assert_eq!(names.len(), 25);
        for c in StreamErrorCondition::ALL {
            assert_eq!(StreamErrorCondition::from_name(c.as_str()), Some(c));
        }
        assert_eq!(StreamErrorCondition::from_name("nope"), None);
    }

    #[test]
    fn condition_accessor() {
        let e = StreamError::new(StreamErrorCondition::PolicyViolation, "too big");
        assert_eq!(e.condition(), Some(StreamErrorCondition::PolicyViolation));
        assert_eq!(e.text(), Some("too big"));
        assert_eq!(e.to_string(), "stream error <policy-violation/>: too big");
        assert_eq!(StreamError::Closed.condition(), None);
    }
}
