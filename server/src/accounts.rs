//! Local accounts: creation, password changes and removal, shared by the CLI (`herald user ...`), XEP-0077
//! and the relay's login check. Passwords are kept only as SCRAM keys (RFC 5802 section 3, RFC 7677).

use std::sync::Arc;

use crate::xmpp::BareJid;
use async_trait::async_trait;

use crate::c2s::sasl;
use herald_relay::PasswordCheck as _;
use herald_storage::{Storage, StorageError};

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0} is not a valid account address (user@domain)")]
    InvalidJid(String),
    #[error("the password is empty or cannot be prepared (RFC 4013 SASLprep)")]
    UnacceptablePassword,
    #[error("the account already exists")]
    AlreadyExists,
    #[error("no such account")]
    NotFound,
    #[error(transparent)]
    Storage(StorageError),
}

impl From<StorageError> for AccountError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::AlreadyExists => AccountError::AlreadyExists,
            other => AccountError::Storage(other),
        }
    }
}

/// Parses and normalises `user@domain` (RFC 7622 via the jid crate). Errors: not a bare JID with a local part.
pub fn parse_account(jid: &str) -> Result<BareJid, AccountError> {
    match BareJid::new(jid) {
        Ok(bare) if bare.node().is_some() => Ok(bare),
        _ => Err(AccountError::InvalidJid(jid.to_string())),
    }
}

/// Creates an account. Errors: invalid password, [`AccountError::AlreadyExists`], storage.
pub async fn create(storage: &Storage, jid: &BareJid, password: &str) -> Result<(), AccountError> {
    let credentials = derive(password)?;
    storage
        .accounts
        .create(&jid.to_string(), &credentials)
        .await?;
    Ok(())
}

/// Replaces an account's password. Errors: invalid password, [`AccountError::NotFound`], storage.
pub async fn set_password(
    storage: &Storage,
    jid: &BareJid,
    password: &str,
) -> Result<(), AccountError> {
    let credentials = derive(password)?;
    if storage
        .accounts
        .set_credentials(&jid.to_string(), &credentials)
        .await?
    {
        Ok(())
    } else {
        Err(AccountError::NotFound)
    }
}

/// Deletes an account and everything it owns. Errors: [`AccountError::NotFound`], storage.
pub async fn delete(storage: &Storage, jid: &BareJid) -> Result<(), AccountError> {
    if storage.accounts.delete(&jid.to_string()).await? {
        Ok(())
    } else {
        Err(AccountError::NotFound)
    }
}

fn derive(password: &str) -> Result<herald_storage::Credentials, AccountError> {
    if password.is_empty() {
        return Err(AccountError::UnacceptablePassword);
    }
    sasl::derive_credentials(password, sasl::DEFAULT_SCRAM_ITERATIONS)
        .map_err(|_| AccountError::UnacceptablePassword)
}

/// Verifies a plaintext password against the stored SCRAM keys (for the relay's HTTP login). Returns the
/// normalised bare JID on success. `username` may be a bare JID or a local part of the first domain. A
/// missing account costs the same key derivation as a wrong password (no enumeration by timing).
pub async fn verify_password(
    storage: &Storage,
    default_domain: &str,
    username: &str,
    password: &str,
) -> Result<Option<String>, AccountError> {
    Ok(password_check(storage, default_domain, username)
        .await?
        .verify(password))
}

/// Looks up what verifying a password for `username` needs: the stored SCRAM keys (or none, for a
/// missing account, which is then checked against a fake salt at the same cost). The check itself does no
/// I/O, so a throttle reservation can cover it alone.
pub async fn password_check(
    storage: &Storage,
    default_domain: &str,
    username: &str,
) -> Result<ScramCheck, AccountError> {
    let jid = account_for_login(default_domain, username)?;
    let key = jid.to_string();
    let credentials = storage.accounts.credentials(&key).await?;
    let node = jid.node().map(|n| n.to_string()).unwrap_or_default();
    Ok(ScramCheck {
        key,
        node,
        credentials,
    })
}

/// A password check against one account's stored SCRAM keys (see [`password_check`]).
pub struct ScramCheck {
    key: String,
    node: String,
    credentials: Option<herald_storage::Credentials>,
}

impl herald_relay::PasswordCheck for ScramCheck {
    fn verify(&self, password: &str) -> Option<String> {
        sasl::verify_plain(
            self.credentials.as_ref(),
            &self.node,
            password,
            UNKNOWN_USER_SALT_KEY,
        )
        .then(|| self.key.clone())
    }
}

/// Keys the fake salt of the relay login's missing accounts. Unlike SASL, the salt is never shown here,
/// so it need not be secret: only the work done matters.
const UNKNOWN_USER_SALT_KEY: &[u8] = b"herald relay login";

/// The account a login names: a bare JID, or a local part of `default_domain`.
fn account_for_login(default_domain: &str, username: &str) -> Result<BareJid, AccountError> {
    if username.contains('@') {
        parse_account(username)
    } else {
        parse_account(&format!("{username}@{default_domain}"))
    }
}

/// The server's side of the relay's login check: local accounts log in to the relay API with their XMPP
/// password, verified against the stored SCRAM keys.
pub struct RelayLogin {
    pub storage: Storage,
    pub default_domain: String,
}

#[async_trait]
impl herald_relay::LocalAccounts for RelayLogin {
    async fn password_check(
        &self,
        username: &str,
    ) -> Result<Box<dyn herald_relay::PasswordCheck>, herald_relay::RelayError> {
        match password_check(&self.storage, &self.default_domain, username).await {
            Ok(check) => Ok(Box::new(check)),
            Err(AccountError::Storage(e)) => Err(herald_relay::RelayError::Storage(e)),
            // Not an account address here: no password passes.
            Err(_) => Ok(Box::new(herald_relay::NoAccount)),
        }
    }

    /// The normalised bare JID, the key XMPP SASL counts failures under.
    fn throttle_key(&self, username: &str) -> String {
        account_for_login(&self.default_domain, username)
            .map(|jid| jid.to_string())
            .unwrap_or_else(|_| username.to_owned())
    }
}

/// The login checker handed to the relay.
pub fn relay_login(storage: &Storage, default_domain: &str) -> Arc<RelayLogin> {
    Arc::new(RelayLogin {
        storage: storage.clone(),
        default_domain: default_domain.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 10: a missing account must cost the same key derivation as a wrong password, or the
    /// relay's login tells which accounts exist by its answer time.
    #[tokio::test]
    async fn a_missing_account_costs_the_same_derivation_as_a_wrong_password() {
        let storage = Storage::connect("sqlite::memory:").await.expect("storage");
        let alice = parse_account("alice@localhost").expect("jid");
        create(&storage, &alice, "right").await.expect("create");
        let check = async |username: &str| {
            let before = sasl::derivations_on_this_thread();
            let verdict = verify_password(&storage, "localhost", username, "wrong")
                .await
                .expect("verify");
            (verdict, sasl::derivations_on_this_thread() - before)
        };
        let (verdict, wrong_password) = check("alice@localhost").await;
        assert_eq!(verdict, None);
        assert!(wrong_password > 0);
        assert_eq!(check("nobody@localhost").await, (None, wrong_password));
    }
}
