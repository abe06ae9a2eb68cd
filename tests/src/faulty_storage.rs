//! `FaultyStorage`: wraps a server's [`Storage`] so that every XMPP-area call about chosen accounts fails
//! with a database error, as during a database outage, while other accounts keep working. Tests use it
//! to check that a transient failure is answered as one (`wait`/`internal-server-error`), never as a
//! permanent "no such account" or "empty roster".

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use herald_storage::{
    Accounts, Archive, ArchiveAppend, ArchiveMark, ArchiveMetadata, ArchivePage, ArchivePrefs,
    ArchiveQuery, ArchivedMessage, BlockLists, Credentials, OfflineMessage, OfflineMessages,
    OfflineStore, RosterItem, Rosters, Storage, StorageError, StorageResult,
};

/// The switch a test holds: which bare JIDs' data is "unreachable" right now.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    failing: Arc<Mutex<HashSet<String>>>,
    failing_offline: Arc<Mutex<HashSet<String>>>,
    failing_archive: Arc<Mutex<HashSet<String>>>,
}

impl Faults {
    /// From now on every call about `jid` (a bare JID) fails.
    pub fn fail(&self, jid: &str) {
        self.failing.lock().unwrap().insert(jid.to_string());
    }

    /// From now on only offline-message calls about `jid` fail.
    pub fn fail_offline(&self, jid: &str) {
        self.failing_offline.lock().unwrap().insert(jid.to_string());
    }

    /// From now on only message-archive calls about `jid` (as the archive's owner) fail.
    pub fn fail_archive(&self, jid: &str) {
        self.failing_archive.lock().unwrap().insert(jid.to_string());
    }

    /// Calls about `jid` work again.
    pub fn heal(&self, jid: &str) {
        self.failing.lock().unwrap().remove(jid);
        self.failing_offline.lock().unwrap().remove(jid);
        self.failing_archive.lock().unwrap().remove(jid);
    }

    fn check_archive(&self, jid: &str) -> StorageResult<()> {
        self.check(jid)?;
        if self.failing_archive.lock().unwrap().contains(jid) {
            Err(StorageError::Database(format!(
                "injected failure for {jid}"
            )))
        } else {
            Ok(())
        }
    }

    fn check(&self, jid: &str) -> StorageResult<()> {
        if self.failing.lock().unwrap().contains(jid) {
            Err(StorageError::Database(format!(
                "injected failure for {jid}"
            )))
        } else {
            Ok(())
        }
    }

    fn check_offline(&self, jid: &str) -> StorageResult<()> {
        self.check(jid)?;
        if self.failing_offline.lock().unwrap().contains(jid) {
            Err(StorageError::Database(format!(
                "injected failure for {jid}"
            )))
        } else {
            Ok(())
        }
    }

    /// `storage` with its accounts, rosters, offline messages, block lists and archives behind this
    /// switch.
    pub fn wrap(&self, storage: Storage) -> Storage {
        let faulty = Arc::new(FaultyStorage {
            inner: storage.clone(),
            faults: self.clone(),
        });
        Storage {
            accounts: faulty.clone(),
            rosters: faulty.clone(),
            offline: faulty.clone(),
            archive: faulty.clone(),
            block_lists: faulty,
            ..storage
        }
    }
}

struct FaultyStorage {
    inner: Storage,
    faults: Faults,
}

#[async_trait]
impl Accounts for FaultyStorage {
    async fn create(&self, jid: &str, credentials: &Credentials) -> StorageResult<()> {
        self.faults.check(jid)?;
        self.inner.accounts.create(jid, credentials).await
    }
    async fn credentials(&self, jid: &str) -> StorageResult<Option<Credentials>> {
        self.faults.check(jid)?;
        self.inner.accounts.credentials(jid).await
    }
    async fn set_credentials(&self, jid: &str, credentials: &Credentials) -> StorageResult<bool> {
        self.faults.check(jid)?;
        self.inner.accounts.set_credentials(jid, credentials).await
    }
    async fn delete(&self, jid: &str) -> StorageResult<bool> {
        self.faults.check(jid)?;
        self.inner.accounts.delete(jid).await
    }
    async fn list(&self, domain: &str) -> StorageResult<Vec<String>> {
        self.inner.accounts.list(domain).await
    }
    async fn exists(&self, jid: &str) -> StorageResult<bool> {
        self.faults.check(jid)?;
        self.inner.accounts.exists(jid).await
    }
}

#[async_trait]
impl Rosters for FaultyStorage {
    async fn items(&self, owner: &str) -> StorageResult<(u64, Vec<RosterItem>)> {
        self.faults.check(owner)?;
        self.inner.rosters.items(owner).await
    }
    async fn item(&self, owner: &str, contact: &str) -> StorageResult<Option<RosterItem>> {
        self.faults.check(owner)?;
        self.inner.rosters.item(owner, contact).await
    }
    async fn upsert(&self, owner: &str, item: &RosterItem) -> StorageResult<u64> {
        self.faults.check(owner)?;
        self.inner.rosters.upsert(owner, item).await
    }
    async fn remove(&self, owner: &str, contact: &str) -> StorageResult<Option<u64>> {
        self.faults.check(owner)?;
        self.inner.rosters.remove(owner, contact).await
    }
    async fn count(&self, owner: &str) -> StorageResult<u64> {
        self.faults.check(owner)?;
        self.inner.rosters.count(owner).await
    }
}

#[async_trait]
impl OfflineMessages for FaultyStorage {
    async fn store(
        &self,
        owner: &str,
        stanza: &str,
        stored_at_ms: i64,
        quota: usize,
    ) -> StorageResult<OfflineStore> {
        self.faults.check_offline(owner)?;
        self.inner
            .offline
            .store(owner, stanza, stored_at_ms, quota)
            .await
    }
    async fn fetch(&self, owner: &str) -> StorageResult<Vec<OfflineMessage>> {
        self.faults.check_offline(owner)?;
        self.inner.offline.fetch(owner).await
    }
    async fn remove_up_to(&self, owner: &str, last_id: i64) -> StorageResult<u64> {
        self.faults.check_offline(owner)?;
        self.inner.offline.remove_up_to(owner, last_id).await
    }
    async fn count(&self, owner: &str) -> StorageResult<u64> {
        self.faults.check_offline(owner)?;
        self.inner.offline.count(owner).await
    }
}

#[async_trait]
impl BlockLists for FaultyStorage {
    async fn list(&self, owner: &str) -> StorageResult<Vec<String>> {
        self.faults.check(owner)?;
        self.inner.block_lists.list(owner).await
    }
    async fn list_of_account(&self, owner: &str) -> StorageResult<Option<Vec<String>>> {
        self.faults.check(owner)?;
        self.inner.block_lists.list_of_account(owner).await
    }
    async fn block(&self, owner: &str, jids: &[String]) -> StorageResult<()> {
        self.faults.check(owner)?;
        self.inner.block_lists.block(owner, jids).await
    }
    async fn unblock(&self, owner: &str, jids: &[String]) -> StorageResult<()> {
        self.faults.check(owner)?;
        self.inner.block_lists.unblock(owner, jids).await
    }
    async fn unblock_all(&self, owner: &str) -> StorageResult<()> {
        self.faults.check(owner)?;
        self.inner.block_lists.unblock_all(owner).await
    }
}

#[async_trait]
impl Archive for FaultyStorage {
    async fn append(&self, message: &ArchiveAppend<'_>) -> StorageResult<ArchiveMark> {
        self.faults.check_archive(message.owner)?;
        self.inner.archive.append(message).await
    }
    async fn append_all(&self, messages: &[ArchiveAppend<'_>]) -> StorageResult<Vec<ArchiveMark>> {
        for message in messages {
            self.faults.check_archive(message.owner)?;
        }
        self.inner.archive.append_all(messages).await
    }
    async fn message(&self, owner: &str, id: &str) -> StorageResult<Option<ArchivedMessage>> {
        self.faults.check_archive(owner)?;
        self.inner.archive.message(owner, id).await
    }
    async fn query(&self, owner: &str, query: &ArchiveQuery) -> StorageResult<ArchivePage> {
        self.faults.check_archive(owner)?;
        self.inner.archive.query(owner, query).await
    }
    async fn metadata(&self, owner: &str) -> StorageResult<Option<ArchiveMetadata>> {
        self.faults.check_archive(owner)?;
        self.inner.archive.metadata(owner).await
    }
    async fn prefs(&self, owner: &str) -> StorageResult<Option<ArchivePrefs>> {
        self.faults.check_archive(owner)?;
        self.inner.archive.prefs(owner).await
    }
    async fn owners_with_prefs(&self) -> StorageResult<Vec<String>> {
        self.inner.archive.owners_with_prefs().await
    }
    async fn set_prefs(&self, owner: &str, prefs: &ArchivePrefs) -> StorageResult<()> {
        self.faults.check_archive(owner)?;
        self.inner.archive.set_prefs(owner, prefs).await
    }
    async fn purge_older_than(&self, cutoff_ms: i64, batch_rows: usize) -> StorageResult<u64> {
        self.inner
            .archive
            .purge_older_than(cutoff_ms, batch_rows)
            .await
    }
}
