//! XEP-0441 archiving preferences, the cache in front of storage: every archived message reads the
//! owner's preferences (XEP-0313 section 3: the server archives by them), which are rarely set, so
//! they are cached per account and replaced when the owner sets them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use herald_storage::{ArchivePrefs, Storage, StorageError};

/// Preferences of accounts, loaded on first use; `None` for an owner who never set any (nearly all,
/// and those entries allocate nothing but the key). Keys are only archive owners, which are local
/// accounts a message was just delivered to or sent by, so no stranger can grow the map.
#[derive(Debug, Default)]
pub struct ArchivePrefsCache {
    prefs: RwLock<HashMap<String, Option<Arc<ArchivePrefs>>>>,
}

impl ArchivePrefsCache {
    /// The preferences of `owner`, from the cache or else from storage (then cached).
    pub async fn get(
        &self,
        storage: &Storage,
        owner: &str,
    ) -> Result<Option<Arc<ArchivePrefs>>, StorageError> {
        if let Some(prefs) = self.read().get(owner) {
            return Ok(prefs.clone());
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
}
