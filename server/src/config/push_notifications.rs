//! `[push_notifications]`: the server side of XEP-0357 (what `features::push_notifications` publishes
//! and to where). Privacy first (XEP-0357 section 9: "servers SHOULD allow users to limit the
//! information sent"): by default a notification carries no summary at all, and an HTTP endpoint
//! given in publish-options must be https on a public address.

use std::time::Duration;

use serde::Deserialize;

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPushNotifications {
    /// Most registrations (push service and node) one account may enable.
    pub max_registrations_per_account: usize,
    /// Put `message-count` in the summary form.
    pub include_message_count: bool,
    /// Put `last-message-sender` (the sender's bare JID) in the summary form.
    pub include_sender: bool,
    /// Put `last-message-body` in the summary form: the message text leaves the server.
    pub include_body: bool,
    /// Seconds to wait for a push service's answer to a publish before counting it as failed.
    pub publish_timeout_seconds: u64,
    /// Seconds an HTTP notification (ChatSecure `endpoint` publish-options) may take in all.
    pub http_timeout_seconds: u64,
    /// Allow `http:` endpoints (default: https only).
    pub allow_plain_http: bool,
    /// Allow endpoints on loopback, private, link-local and other non-public addresses (default: no,
    /// so a user cannot make the server post into its own network).
    pub allow_private_addresses: bool,
}

impl Default for RawPushNotifications {
    fn default() -> Self {
        RawPushNotifications {
            max_registrations_per_account: 10,
            include_message_count: false,
            include_sender: false,
            include_body: false,
            publish_timeout_seconds: 30,
            http_timeout_seconds: 10,
            allow_plain_http: false,
            allow_private_addresses: false,
        }
    }
}

/// The checked section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushNotificationSettings {
    pub max_registrations_per_account: usize,
    pub include_message_count: bool,
    pub include_sender: bool,
    pub include_body: bool,
    pub publish_timeout: Duration,
    pub http_timeout: Duration,
    pub allow_plain_http: bool,
    pub allow_private_addresses: bool,
}

impl Default for PushNotificationSettings {
    /// What `RawPushNotifications::default()` resolves to (a unit test checks they agree).
    fn default() -> Self {
        PushNotificationSettings {
            max_registrations_per_account: 10,
            include_message_count: false,
            include_sender: false,
            include_body: false,
            publish_timeout: Duration::from_secs(30),
            http_timeout: Duration::from_secs(10),
            allow_plain_http: false,
            allow_private_addresses: false,
        }
    }
}

/// Most registrations per account a configuration may allow.
const MAX_REGISTRATIONS_LIMIT: usize = 100;
/// Longest timeout a key may name.
const MAX_TIMEOUT_SECONDS: u64 = 300;

impl RawPushNotifications {
    /// Checks the section; problems go to `problems` (prefixed with the section name).
    pub fn resolve(&self, problems: &mut Vec<String>) -> Option<PushNotificationSettings> {
        let before = problems.len();
        if self.max_registrations_per_account > MAX_REGISTRATIONS_LIMIT {
            problems.push(format!(
                "push_notifications.max_registrations_per_account: must be at most {MAX_REGISTRATIONS_LIMIT}"
            ));
        }
        for (key, seconds) in [
            ("publish_timeout_seconds", self.publish_timeout_seconds),
            ("http_timeout_seconds", self.http_timeout_seconds),
        ] {
            if seconds == 0 || seconds > MAX_TIMEOUT_SECONDS {
                problems.push(format!(
                    "push_notifications.{key}: must be between 1 and {MAX_TIMEOUT_SECONDS}"
                ));
            }
        }
        (problems.len() == before).then(|| PushNotificationSettings {
            max_registrations_per_account: self.max_registrations_per_account,
            include_message_count: self.include_message_count,
            include_sender: self.include_sender,
            include_body: self.include_body,
            publish_timeout: Duration::from_secs(self.publish_timeout_seconds),
            http_timeout: Duration::from_secs(self.http_timeout_seconds),
            allow_plain_http: self.allow_plain_http,
            allow_private_addresses: self.allow_private_addresses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_content_free() {
        let mut problems = Vec::new();
        let settings = RawPushNotifications::default()
            .resolve(&mut problems)
            .expect("valid defaults");
        assert!(problems.is_empty());
        assert!(!settings.include_body && !settings.include_sender);
        assert!(!settings.include_message_count);
        assert!(!settings.allow_plain_http && !settings.allow_private_addresses);
        assert_eq!(settings, PushNotificationSettings::default());
    }

    #[test]
    fn out_of_range_values_are_reported() {
        let raw = RawPushNotifications {
            max_registrations_per_account: 1_000,
            publish_timeout_seconds: 0,
            http_timeout_seconds: 100_000,
            ..RawPushNotifications::default()
        };
        let mut problems = Vec::new();
        assert!(raw.resolve(&mut problems).is_none());
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
