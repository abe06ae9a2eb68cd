//! `[relay]` resolved: [`RelayConfig::resolve`] checks every value, parses what is parsed (the
//! listen address, address blocks, networks), and reads and parses every credential file the section
//! names (APNs key or certificate, FCM service account, VAPID key), reporting every problem at once.
//! The result, [`RelaySettings`], is the only thing a [`crate::Relay`] is built from, so a relay
//! cannot refuse at start what a configuration check accepted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::RelayConfig;
use crate::api::client_addr::{AddressBlock, parse_blocks};
use crate::backends::address_policy::AddressPolicy;
use crate::backends::apns::ApnsClients;
use crate::backends::fcm::FcmAccount;
use crate::backends::vapid::VapidKey;
use crate::federation::{FederationKey, parse_public_key};

/// A checked `[relay]` section with its credentials loaded. Made only by [`RelayConfig::resolve`].
#[derive(Clone)]
pub struct RelaySettings {
    config: RelayConfig,
    listen: SocketAddr,
    pub(crate) trusted_proxies: Vec<AddressBlock>,
    pub(crate) endpoint_policy: Arc<AddressPolicy>,
    pub(crate) credentials: Credentials,
    pub(crate) federation_key: KeySource,
    /// `federation.peer_keys`, parsed.
    pub(crate) peer_keys: HashMap<String, [u8; 32]>,
}

/// Where this relay's federation key comes from (see `federation.key_file`).
#[derive(Clone, Debug)]
pub(crate) enum KeySource {
    /// Read from `federation.key_file` while resolving.
    Loaded(FederationKey),
    /// `federation.key_file` does not exist yet: created there when the relay is built, so a
    /// configuration check writes nothing.
    CreateAt(PathBuf),
    /// No `federation.key_file`: a key for this process only.
    Ephemeral,
}

impl KeySource {
    /// The key, created (and, for [`KeySource::CreateAt`], written) if need be. Errors: the file
    /// cannot be written, or the system's random source failed.
    pub(crate) fn key(&self) -> Result<FederationKey, String> {
        match self {
            KeySource::Loaded(key) => Ok(key.clone()),
            KeySource::CreateAt(path) => FederationKey::load_or_create(path),
            KeySource::Ephemeral => FederationKey::generate(),
        }
    }
}

/// The vendor credentials, read from the files `[relay]` names; `None` for a vendor not configured.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    pub(crate) apns: Option<ApnsClients>,
    pub(crate) fcm: Option<FcmAccount>,
    pub(crate) vapid: Option<VapidKey>,
}

impl RelayConfig {
    /// Checks the section and loads what it names: the problems of [`RelayConfig::problems`], the
    /// `listen` address, and the credential files (read here, once: a file that changes afterwards
    /// is not read again until the next start). Errors: every problem found, each starting with its
    /// key (`apns.key_file: ...`), for the server to print with the rest of its configuration's.
    pub fn resolve(self) -> Result<RelaySettings, Vec<String>> {
        let mut problems = self.problems();
        let listen = self
            .listen
            .parse()
            .map_err(|_| {
                problems.push(format!(
                    "listen: {:?} is not an address like 127.0.0.1:5281",
                    self.listen
                ));
            })
            .ok();
        let apns = ApnsClients::load(&self).unwrap_or_else(|bad| {
            problems.extend(bad);
            None
        });
        let fcm = FcmAccount::load(&self).unwrap_or_else(|bad| {
            problems.push(bad);
            None
        });
        let vapid = VapidKey::load(&self).unwrap_or_else(|bad| {
            problems.push(bad);
            None
        });
        let key_file = &self.federation.key_file;
        let federation_key = if key_file.is_empty() {
            KeySource::Ephemeral
        } else if std::path::Path::new(key_file).exists() {
            match FederationKey::load(std::path::Path::new(key_file)) {
                Ok(key) => KeySource::Loaded(key),
                Err(e) => {
                    problems.push(format!("federation.key_file: {key_file}: {e}"));
                    KeySource::Ephemeral
                }
            }
        } else {
            KeySource::CreateAt(PathBuf::from(key_file))
        };
        // `problems()` has listed the entries that do not parse.
        let peer_keys = self
            .federation
            .peer_keys
            .iter()
            .filter_map(|(domain, key)| Some((domain.clone(), parse_public_key(key).ok()?)))
            .collect();
        let trusted_proxies = parse_blocks(&self.trusted_proxies).unwrap_or_default();
        let endpoint_policy = AddressPolicy::new(&self.allowed_endpoint_networks).ok();
        match (listen, endpoint_policy) {
            (Some(listen), Some(endpoint_policy)) if problems.is_empty() => Ok(RelaySettings {
                config: self,
                listen,
                trusted_proxies,
                endpoint_policy: Arc::new(endpoint_policy),
                credentials: Credentials { apns, fcm, vapid },
                federation_key,
                peer_keys,
            }),
            _ => Err(problems),
        }
    }
}

impl RelaySettings {
    /// The section's values as written.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Where the server binds the relay's HTTP API (`listen`).
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }
}

impl std::fmt::Debug for RelaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which vendors have credentials, never the credentials.
        let credentials = &self.credentials;
        f.debug_struct("RelaySettings")
            .field("config", &self.config)
            .field("listen", &self.listen)
            .field("apns", &credentials.apns.is_some())
            .field("fcm", &credentials.fcm.is_some())
            .field("vapid", &credentials.vapid.is_some())
            .field("federation_key", &self.federation_key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(edit: impl FnOnce(&mut RelayConfig)) -> Result<RelaySettings, Vec<String>> {
        let mut config = RelayConfig::default();
        edit(&mut config);
        config.resolve()
    }

    #[test]
    fn defaults_resolve_without_credentials() {
        let settings = resolve(|_| {}).unwrap();
        assert_eq!(settings.listen(), "127.0.0.1:5281".parse().unwrap());
        assert!(settings.credentials.apns.is_none());
        assert!(settings.credentials.fcm.is_none());
        assert!(settings.credentials.vapid.is_none());
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a key").unwrap();
        let garbage = garbage.display().to_string();
        let problems = resolve(|c| {
            c.listen = "nowhere".into();
            c.http.max_connections = 0;
            c.apns.key_file = garbage.clone();
            c.fcm.service_account_file = "/nonexistent/sa.json".into();
            c.webpush.vapid_private_key_file = garbage.clone();
        })
        .unwrap_err();
        let all = problems.join("\n");
        for expected in [
            "http.max_connections:",
            "listen: \"nowhere\"",
            "apns.key_file: needs apns.key_id and apns.team_id",
            "fcm.service_account_file: /nonexistent/sa.json:",
            "webpush.vapid_private_key_file:",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn invalid_keys_in_readable_files_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a key").unwrap();
        let garbage = garbage.display().to_string();
        let problems = resolve(|c| {
            c.apns.key_file = garbage.clone();
            c.apns.key_id = "KEY".into();
            c.apns.team_id = "TEAM".into();
        })
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("apns.key_file:"), "{problems:?}");
        let sa = dir.path().join("sa.json");
        std::fs::write(&sa, r#"{"client_email": "a@b", "private_key": "x"}"#).unwrap();
        let problems =
            resolve(|c| c.fcm.service_account_file = sa.display().to_string()).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("fcm.service_account_file:"));
        let problems = resolve(|c| {
            c.apns.certificate_file = garbage.clone();
        })
        .unwrap_err();
        assert_eq!(
            problems,
            vec!["apns.certificate_key_file: required with apns.certificate_file".to_string()]
        );
    }

    /// A fresh P-256 key as PKCS#8 PEM: what a VAPID key is, and what an APNs `.p8` token key is.
    fn p256_pem(dir: &tempfile::TempDir) -> String {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let path = dir.path().join("p256.pem");
        let secret = crate::backends::ece::random_secret();
        std::fs::write(
            &path,
            secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        path.display().to_string()
    }

    #[test]
    fn federation_keys_are_checked_and_a_missing_key_file_is_created_only_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a key").unwrap();
        let problems = resolve(|c| {
            c.federation.key_file = garbage.display().to_string();
            c.federation
                .peer_keys
                .insert("push.other.example".into(), "short".into());
            c.federation.signature_lifetime_secs = 0;
        })
        .unwrap_err();
        let all = problems.join("\n");
        for expected in [
            "federation.key_file:",
            "federation.peer_keys: push.other.example:",
            "federation.signature_lifetime_secs:",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        let path = dir.path().join("federation.pem");
        let settings = resolve(|c| c.federation.key_file = path.display().to_string()).unwrap();
        assert!(!path.exists(), "resolving (check-config) writes nothing");
        let key = settings.federation_key.key().unwrap();
        assert!(path.exists());
        let loaded = resolve(|c| c.federation.key_file = path.display().to_string()).unwrap();
        assert_eq!(
            loaded.federation_key.key().unwrap().public_key(),
            key.public_key()
        );
    }

    #[test]
    fn a_vapid_key_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = p256_pem(&dir);
        let settings = resolve(|c| c.webpush.vapid_private_key_file = path).unwrap();
        assert!(settings.credentials.vapid.is_some());
    }

    #[test]
    fn an_apns_token_key_is_loaded_outside_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = p256_pem(&dir);
        let settings = resolve(|c| {
            c.apns.key_file = path;
            c.apns.key_id = "KEY123".into();
            c.apns.team_id = "TEAM123".into();
        })
        .unwrap();
        assert!(settings.credentials.apns.is_some());
    }
}
