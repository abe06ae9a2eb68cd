//! XEP-0441 archiving preferences, the cache in front of storage: every archived message reads the
//! owner's preferences (XEP-0313 section 3: the server archives by them), which are rarely set, so
//! they are cached per account and replaced when the owner sets them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use herald_storage::{ArchivePrefs, Storage, StorageError};

/// Preferences of accounts, loaded on first use; `None` for an owner who never set any (nearly all,
/// and those entries allocate nothing but the key). Keys are only archive owners, which are local
/// accounts a message was just delivered to or sent by, so no stranger can grow the map.
#[derive(Debug, Default)]
pub struct ArchivePrefsCache {
    prefs: RwLock<HashMap<String, Option<Arc<ArchivePrefs>>>>,
    /// Every owner with preferences, once [`Self::load_owners`] read them: anyone else has none, and
    /// their first message costs no read (on PostgreSQL that read on the delivery path of every new
    /// recipient took the push phase's p99 from about 280 ms to about 1.1 s, BENCHMARKS.md).
    owners_with_prefs: RwLock<Option<HashSet<String>>>,
}

impl ArchivePrefsCache {
    /// Reads which owners have preferences (at start). Until it succeeds, each owner's preferences are
    /// read on first use.
    pub async fn load_owners(&self, storage: &Storage) -> Result<(), StorageError> {
        let owners = storage.archive.owners_with_prefs().await?;
        *self
            .owners_with_prefs
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(owners.into_iter().collect());
        Ok(())
    }

    /// The preferences of `owner`, from the cache or else from storage (then cached).
    pub async fn get(
        &self,
        storage: &Storage,
        owner: &str,
    ) -> Result<Option<Arc<ArchivePrefs>>, StorageError> {
        if let Some(prefs) = self.read().get(owner) {
            return Ok(prefs.clone());
        }
        let known_without = self
            .owners_with_prefs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|owners| !owners.contains(owner));
        if known_without {
            return Ok(None);
        }
        let prefs = storage.archive.prefs(owner).await?.map(Arc::new);
        self.write().insert(owner.to_string(), prefs.clone());
        Ok(prefs)
    }

    /// Stores `prefs` for `owner` and caches what storage kept (a JID on both lists stays on `never`
    /// only, so the cache holds the stored form, not the request).
    pub async fn set(
        &self,
        storage: &Storage,
        owner: &str,
        prefs: &ArchivePrefs,
    ) -> Result<Option<Arc<ArchivePrefs>>, StorageError> {
        // Forgotten first: if the write fails halfway, the next read goes to storage.
        self.forget(owner);
        if let Some(owners) = self
            .owners_with_prefs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            owners.insert(owner.to_string());
        }
        storage.archive.set_prefs(owner, prefs).await?;
        let stored = storage.archive.prefs(owner).await?.map(Arc::new);
        self.write().insert(owner.to_string(), stored.clone());
        Ok(stored)
    }

    /// Forgets `owner` (their account was removed).
    pub fn forget(&self, owner: &str) {
        self.write().remove(owner);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Option<Arc<ArchivePrefs>>>> {
        self.prefs.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Option<Arc<ArchivePrefs>>>> {
        self.prefs.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_storage::ArchiveDefault;

    #[tokio::test]
    async fn a_set_is_seen_by_the_next_get_and_both_lists_keep_never() {
        let storage = Storage::connect("sqlite::memory:").await.expect("storage");
        let cache = ArchivePrefsCache::default();
        cache.load_owners(&storage).await.expect("owners");
        let owner = "alice@example.org";
        assert_eq!(cache.get(&storage, owner).await.expect("get"), None);
        let prefs = ArchivePrefs {
            default: ArchiveDefault::Roster,
            always: vec!["romeo@example.net".into()],
            never: vec!["romeo@example.net".into()],
        };
        let stored = cache.set(&storage, owner, &prefs).await.expect("set");
        let expected = ArchivePrefs {
            always: Vec::new(),
            ..prefs
        };
        assert_eq!(stored.as_deref(), Some(&expected));
        assert_eq!(
            cache.get(&storage, owner).await.expect("get").as_deref(),
            Some(&expected)
        );
    }

    #[tokio::test]
    async fn owners_with_prefs_are_read_at_start_and_others_cost_no_read() {
        let storage = Storage::connect("sqlite::memory:").await.expect("storage");
        let stored = ArchivePrefs {
            default: ArchiveDefault::Never,
            always: Vec::new(),
            never: Vec::new(),
        };
        storage
            .archive
            .set_prefs("bob@example.org", &stored)
            .await
            .expect("set");
        let cache = ArchivePrefsCache::default();
        cache.load_owners(&storage).await.expect("owners");
        assert_eq!(
            cache
                .get(&storage, "bob@example.org")
                .await
                .expect("get")
                .as_deref(),
            Some(&stored)
        );
        // Set behind the cache's back: an owner not among those read at start is taken to have none.
        storage
            .archive
            .set_prefs("carol@example.org", &stored)
            .await
            .expect("set");
        assert_eq!(
            cache.get(&storage, "carol@example.org").await.expect("get"),
            None
        );
    }
}
