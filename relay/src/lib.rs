//! Herald push relay (placeholder until the relay branch lands).

/// The `[relay]` section of herald.toml.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    pub enabled: bool,
}
