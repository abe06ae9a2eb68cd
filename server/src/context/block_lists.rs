//! XEP-0191: Blocking Command, the cache in front of storage: every delivery to a local user reads the
//! recipient's block list (section 3.3), so lists are cached per account and invalidated on change, and
//! reading one also tells whether the account exists (see [`Recipient`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::xmpp::Jid;
use herald_storage::{Storage, StorageError};

/// Block lists of accounts, loaded on first use. Only accounts get an entry: a stanza to a JID that
/// is no account must not leave one behind, or anyone could grow the cache without bound.
#[derive(Debug, Default)]
pub struct BlockListCache {
    lists: RwLock<HashMap<String, Arc<Vec<String>>>>,
    /// Shared by every owner without blocked JIDs (nearly all of them), so caching their lists costs a
    /// map entry each and no allocation of its own.
    empty: Arc<Vec<String>>,
}

/// What the router knows about a local user before delivering to them.
#[derive(Debug)]
pub struct Recipient {
    /// Their block list.
    blocked: Arc<Vec<String>>,
    /// Whether the account exists, when storage said so just now (the list was not cached); `None`
    /// otherwise, and a caller that needs to know asks storage.
    pub account_exists: Option<bool>,
}

impl Recipient {
    /// Whether they blocked `other`. Items match as in XEP-0191 section 3.2 (via XEP-0016 section
    /// 2.1): the full JID, the bare JID, the domain with the resource, or the domain alone.
    pub fn blocks(&self, other: &Jid) -> bool {
        if self.blocked.is_empty() {
            return false;
        }
        let domain = other.domain().as_str();
        let mut candidates = vec![
            other.to_string(),
            other.to_bare().to_string(),
            domain.to_string(),
        ];
        if let Some(resource) = other.resource() {
            candidates.push(format!("{domain}/{resource}"));
        }
        candidates
            .iter()
            .any(|c| self.blocked.iter().any(|item| item == c))
    }
}

impl BlockListCache {
    /// Whether `owner` blocked `other` (see [`Recipient::blocks`]). Errors: the list could not be
    /// read; callers must not read that as "not blocked".
    pub async fn is_blocked(
        &self,
        storage: &Storage,
        owner: &str,
        other: &Jid,
    ) -> Result<bool, StorageError> {
        Ok(self.recipient(storage, owner).await?.blocks(other))
    }

    /// The block list of `owner`, from the cache or else read together with whether the account
    /// exists (one round trip: the path of every message to a user whose list is not cached yet).
    /// Errors: the storage error (logged here), so a failure is never taken for an empty list or a
    /// missing account.
    pub async fn recipient(
        &self,
        storage: &Storage,
        owner: &str,
    ) -> Result<Recipient, StorageError> {
        if let Some(blocked) = self.get(owner) {
            return Ok(Recipient {
                blocked,
                account_exists: None,
            });
        }
        let list = storage
            .block_lists
            .list_of_account(owner)
            .await
            .inspect_err(|e| tracing::error!(error = %e, "loading a block list failed"))?;
        Ok(match list {
            Some(list) => {
                let blocked = if list.is_empty() {
                    self.empty.clone()
                } else {
                    Arc::new(list)
                };
                self.write().insert(owner.to_string(), blocked.clone());
                Recipient {
                    blocked,
                    account_exists: Some(true),
                }
            }
            None => Recipient {
                blocked: self.empty.clone(),
                account_exists: Some(false),
            },
        })
    }

    /// Forgets the cached list of `owner` (after a change).
    pub fn invalidate(&self, owner: &str) {
        self.write().remove(owner);
    }

    fn get(&self, owner: &str) -> Option<Arc<Vec<String>>> {
        self.lists
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(owner)
            .cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Vec<String>>>> {
        self.lists.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(text: &str) -> Jid {
        Jid::new(text).expect("valid JID")
    }

    impl BlockListCache {
        fn cached(&self) -> usize {
            self.lists.read().unwrap_or_else(|e| e.into_inner()).len()
        }
    }

    #[test]
    fn items_match_the_full_jid_the_bare_jid_the_domain_and_the_domain_with_resource() {
        let recipient = Recipient {
            blocked: Arc::new(vec![
                "romeo@x.example".into(),
                "juliet@y.example/balcony".into(),
                "z.example".into(),
                "w.example/phone".into(),
            ]),
            account_exists: None,
        };
        assert!(recipient.blocks(&jid("romeo@x.example/orchard")));
        assert!(recipient.blocks(&jid("romeo@x.example")));
        assert!(recipient.blocks(&jid("juliet@y.example/balcony")));
        assert!(!recipient.blocks(&jid("juliet@y.example/garden")));
        assert!(!recipient.blocks(&jid("juliet@y.example")));
        assert!(recipient.blocks(&jid("anyone@z.example/res")));
        assert!(recipient.blocks(&jid("z.example")));
        assert!(recipient.blocks(&jid("w.example/phone")));
        // The <domain/resource> form is tried for any sender with that domain and resource, as
        // ejabberd's privacy lists do.
        assert!(recipient.blocks(&jid("someone@w.example/phone")));
        assert!(!recipient.blocks(&jid("someone@w.example/tablet")));
        assert!(!recipient.blocks(&jid("mercutio@x.example")));
    }

    #[tokio::test]
    async fn only_accounts_are_cached_and_reading_tells_whether_the_account_exists() {
        let storage = Storage::connect("sqlite::memory:").await.expect("storage");
        let cache = BlockListCache::default();
        for _ in 0..2 {
            let ghost = cache
                .recipient(&storage, "ghost@example.org")
                .await
                .expect("read");
            assert_eq!(ghost.account_exists, Some(false));
        }
        assert_eq!(cache.cached(), 0, "no entry for a JID that is no account");

        let alice = crate::accounts::parse_account("alice@example.org").expect("jid");
        crate::accounts::create(&storage, &alice, "secret")
            .await
            .expect("create");
        storage
            .block_lists
            .block("alice@example.org", &["x.example".to_string()])
            .await
            .expect("block");
        let read = cache
            .recipient(&storage, "alice@example.org")
            .await
            .expect("read");
        assert_eq!(read.account_exists, Some(true));
        assert!(read.blocks(&jid("romeo@x.example")));
        let cached = cache
            .recipient(&storage, "alice@example.org")
            .await
            .expect("read");
        assert_eq!(cached.account_exists, None, "from the cache: unknown");
        assert!(cached.blocks(&jid("romeo@x.example")));
        assert_eq!(cache.cached(), 1);
    }
}
