//! Row shapes and error mapping shared by the SQLite and PostgreSQL backends.
//!
//! The `FromRow` derives are generic over the database, so both backends decode the same structs; the
//! conversions here are where a stored value that breaks an invariant (a negative count, an unknown
//! subscription name) becomes a [`StorageError::Database`] instead of a panic.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{
    ArchiveDefault, ArchiveMark, ArchivePrefs, ArchivedMessage, Credentials, Direction,
    OfflineMessage, RosterItem, ScramKeys, StorageError, Subscription,
};

/// Maps a sqlx error: unique violations become [`StorageError::AlreadyExists`], the rest a message.
pub(crate) fn db_error(error: sqlx::Error) -> StorageError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StorageError::AlreadyExists,
        _ => StorageError::Database(error.to_string()),
    }
}

/// The domain an account is listed under: what follows the `@` of a bare JID (RFC 7622 section 3.2),
/// or the whole string when there is no `@`.
pub(crate) fn domain_of(jid: &str) -> &str {
    jid.rsplit_once('@').map_or(jid, |(_, domain)| domain)
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A counter or version read back from the database; they are never negative.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, StorageError> {
    u64::try_from(value).map_err(|_| StorageError::Database(format!("negative {what}: {value}")))
}

/// A quota as the database compares it.
pub(crate) fn quota_i64(quota: usize) -> i64 {
    i64::try_from(quota).unwrap_or(i64::MAX)
}

/// Group names in the order given, without repeats (RFC 6121 section 2.1.2.4 treats them as a set).
pub(crate) fn distinct_groups(groups: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(groups.len());
    for group in groups {
        if !out.contains(&group.as_str()) {
            out.push(group);
        }
    }
    out
}

#[derive(sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    sha1_salt: Vec<u8>,
    sha1_iterations: i64,
    sha1_stored_key: Vec<u8>,
    sha1_server_key: Vec<u8>,
    sha256_salt: Vec<u8>,
    sha256_iterations: i64,
    sha256_stored_key: Vec<u8>,
    sha256_server_key: Vec<u8>,
}

fn iterations(value: i64) -> Result<u32, StorageError> {
    u32::try_from(value)
        .map_err(|_| StorageError::Database(format!("SCRAM iteration count out of range: {value}")))
}

impl TryFrom<CredentialsRow> for Credentials {
    type Error = StorageError;

    fn try_from(row: CredentialsRow) -> Result<Self, StorageError> {
        Ok(Credentials {
            sha1: ScramKeys {
                salt: row.sha1_salt,
                iterations: iterations(row.sha1_iterations)?,
                stored_key: row.sha1_stored_key,
                server_key: row.sha1_server_key,
            },
            sha256: ScramKeys {
                salt: row.sha256_salt,
                iterations: iterations(row.sha256_iterations)?,
                stored_key: row.sha256_stored_key,
                server_key: row.sha256_server_key,
            },
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RosterItemRow {
    pub(crate) contact: String,
    name: Option<String>,
    subscription: String,
    pending_out: bool,
    pending_in: bool,
    pre_approved: bool,
    in_roster: bool,
}

impl RosterItemRow {
    /// The item, with its groups (loaded separately from `roster_groups`).
    pub(crate) fn into_item(self, groups: Vec<String>) -> Result<RosterItem, StorageError> {
        let subscription = Subscription::parse(&self.subscription).ok_or_else(|| {
            StorageError::Database(format!("unknown subscription {:?}", self.subscription))
        })?;
        Ok(RosterItem {
            contact: self.contact,
            name: self.name,
            subscription,
            pending_out: self.pending_out,
            pending_in: self.pending_in,
            pre_approved: self.pre_approved,
            in_roster: self.in_roster,
            groups,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RosterGroupRow {
    pub(crate) contact: String,
    pub(crate) name: String,
}

/// Attaches groups (ordered by contact, then position) to items (ordered by contact).
pub(crate) fn assemble_roster(
    items: Vec<RosterItemRow>,
    groups: Vec<RosterGroupRow>,
) -> Result<Vec<RosterItem>, StorageError> {
    let mut by_contact: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    for group in groups {
        by_contact
            .entry(group.contact)
            .or_default()
            .push(group.name);
    }
    items
        .into_iter()
        .map(|row| {
            let groups = by_contact.remove(&row.contact).unwrap_or_default();
            row.into_item(groups)
        })
        .collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct OfflineMessageRow {
    id: i64,
    stanza: String,
    stored_at_ms: i64,
}

impl From<OfflineMessageRow> for OfflineMessage {
    fn from(row: OfflineMessageRow) -> Self {
        OfflineMessage {
            id: row.id,
            stanza: row.stanza,
            stored_at_ms: row.stored_at_ms,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ArchivedMessageRow {
    stanza_id: String,
    contact: String,
    at_ms: i64,
    outgoing: bool,
    stanza: String,
}

impl From<ArchivedMessageRow> for ArchivedMessage {
    fn from(row: ArchivedMessageRow) -> Self {
        ArchivedMessage {
            id: row.stanza_id,
            contact: row.contact,
            at_ms: row.at_ms,
            direction: if row.outgoing {
                Direction::Outgoing
            } else {
                Direction::Incoming
            },
            stanza: row.stanza,
        }
    }
}

/// A stanza id with its row id (the archive's internal order) and timestamp.
#[derive(sqlx::FromRow)]
pub(crate) struct ArchiveRowId {
    pub(crate) stanza_id: String,
    pub(crate) id: i64,
    pub(crate) at_ms: i64,
}

impl From<ArchiveRowId> for ArchiveMark {
    fn from(row: ArchiveRowId) -> Self {
        ArchiveMark {
            id: row.stanza_id,
            at_ms: row.at_ms,
        }
    }
}

/// One row of the preferences joined with their JIDs: `jid` and `archive` are NULL when both lists
/// are empty.
#[derive(sqlx::FromRow)]
pub(crate) struct ArchivePrefsRow {
    default_mode: String,
    jid: Option<String>,
    /// `true`: the `always` list; `false`: `never`.
    archive: Option<bool>,
}

/// Assembles preferences from their rows (ordered by JID); `None` for no rows.
pub(crate) fn assemble_prefs(
    rows: Vec<ArchivePrefsRow>,
) -> Result<Option<ArchivePrefs>, StorageError> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let default = ArchiveDefault::parse(&first.default_mode).ok_or_else(|| {
        StorageError::Database(format!("unknown archive default {:?}", first.default_mode))
    })?;
    let mut prefs = ArchivePrefs {
        default,
        always: Vec::new(),
        never: Vec::new(),
    };
    for row in rows {
        match (row.jid, row.archive) {
            (Some(jid), Some(true)) => prefs.always.push(jid),
            (Some(jid), Some(false)) => prefs.never.push(jid),
            _ => {}
        }
    }
    Ok(Some(prefs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_is_after_the_at_sign() {
        assert_eq!(domain_of("alice@example.org"), "example.org");
        assert_eq!(domain_of("example.org"), "example.org");
    }

    #[test]
    fn groups_keep_first_occurrence_order() {
        let groups = vec!["b".to_string(), "a".to_string(), "b".to_string()];
        assert_eq!(distinct_groups(&groups), vec!["b", "a"]);
    }
}
