//! The message archive (XEP-0313 Message Archive Management, `urn:xmpp:mam:2` and `#extended`): the
//! types and the [`Archive`] trait; the SQL is in `sql/archive.rs`.
//!
//! Each owner (a bare JID) has one archive. A message gets two identities when it is appended:
//!
//! - an internal row id, an integer from the table's identity column, which orders the archive. It only
//!   grows, per owner in the order appends commit (SQLite has one writer; on PostgreSQL the append
//!   takes an advisory lock on the owner), so it is the order XEP-0313 section 3.1 asks for ("the
//!   order that the client originally received them"), and keyset paging on it never skips a message
//!   committed late. It never leaves this crate.
//! - the XEP-0359 stanza id, 128 random bits in base64url (22 characters), unique per owner
//!   (XEP-0313 section 3: "unpredictable and unique within the archive"). This is the id on the wire
//!   (`<stanza-id/>`, `<result id=…>`, RSM `<first>`/`<last>`, `before-id`/`after-id`/`ids`), and
//!   the cursor of [`ArchivePaging`]: a query first maps the ids it names to row ids through the
//!   `(owner, stanza_id)` index, then pages on row ids.
//!
//! An archived timestamp never goes back within an owner's archive: an append older than the owner's
//! newest message is stamped with the newest message's time (only a clock stepping back does that). So
//! time order and row order agree, a `start`/`end` filter is an index seek that becomes a row-id bound,
//! and a retention purge by time removes the oldest messages, leaving no holes (XEP-0313 section 3.2).

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use crate::StorageResult;

/// The largest page [`Archive::query`] returns: a larger `max` is lowered to this (XEP-0313 section
/// 4.3.1 lets the server limit a page; the page is then not complete).
pub const ARCHIVE_MAX_PAGE: usize = 250;

/// The most message ids one query may name in `ids`, `before-id`, `after-id` and the RSM cursor
/// together; more is [`crate::StorageError::OverLimit`].
pub const ARCHIVE_MAX_IDS: usize = ARCHIVE_MAX_PAGE;

/// A batch size for [`Archive::purge_older_than`]: small enough that one batch holds the write lock
/// for milliseconds, large enough that a purge of millions of messages is quick.
pub const ARCHIVE_PURGE_BATCH: usize = 1_000;

/// Which way a message went, seen from the archive's owner (XEP-0313 section 3: "incoming" and
/// "outgoing" are relative to the archived JID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received by the owner.
    Incoming,
    /// Sent by the owner.
    Outgoing,
}

/// A message to archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveAppend<'a> {
    /// Bare JID of the archive's owner.
    pub owner: &'a str,
    /// The message's XEP-0359 stanza id, made by the caller with [`new_stanza_id`] before the append
    /// so that the message can be delivered with it while the append is still queued (the server
    /// archives behind delivery). Unique within the owner's archive.
    pub id: &'a str,
    /// Bare JID of the other party (the owner's own JID for a message to themselves), what the `with`
    /// filter matches (XEP-0313 section 4.1.1).
    pub contact: &'a str,
    /// When the server received (incoming) or sent (outgoing) it, in ms since the Unix epoch.
    pub at_ms: i64,
    pub direction: Direction,
    /// The whole stanza as serialised XML (XEP-0313 section 3: the entire original stanza SHOULD be
    /// stored).
    pub stanza: &'a str,
}

/// Where a message sits in an archive: its XEP-0359 stanza id and its archived timestamp. Returned by
/// an append and used for the archive's ends in [`ArchiveMetadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveMark {
    /// The stanza id (opaque, 22 characters of base64url).
    pub id: String,
    /// The archived timestamp in ms since the Unix epoch: the appended one, or the owner's newest if
    /// that was later (see the module documentation).
    pub at_ms: i64,
}

/// One archived message, as a query returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// The XEP-0359 stanza id: `<result id=…>` and the RSM cursor.
    pub id: String,
    pub contact: String,
    /// For the XEP-0203 `<delay stamp=…>` of the result (XEP-0313 section 4.2).
    pub at_ms: i64,
    pub direction: Direction,
    pub stanza: String,
}

/// Which page of the matching messages to return (XEP-0059 sections 2.2-2.5, XEP-0313 section 4.3).
/// Cursors are stanza ids; an id the archive does not hold is [`crate::StorageError::UnknownArchiveId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchivePaging {
    /// The oldest matching messages after `after` (RSM `<after>`), or from the first (no `<after>`).
    Forward { after: Option<String> },
    /// The newest matching messages before `before` (RSM `<before>id</before>`), or the last page
    /// (an empty `<before/>`, XEP-0313 section 4.3.3).
    Backward { before: Option<String> },
}

impl Default for ArchivePaging {
    fn default() -> Self {
        ArchivePaging::Forward { after: None }
    }
}

/// An archive query: the XEP-0313 section 4.1 filters (all optional, combined with AND) and a page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Only messages with this contact (bare JID, as appended; XEP-0313 section 4.1.1).
    pub with: Option<String>,
    /// Only messages stamped at or after this time, in ms (XEP-0313 section 4.1.2).
    pub start_ms: Option<i64>,
    /// Only messages stamped at or before this time, in ms (XEP-0313 section 4.1.2).
    pub end_ms: Option<i64>,
    /// Only messages after this one (`after-id`, `#extended`, XEP-0313 section 4.1.3).
    pub after_id: Option<String>,
    /// Only messages before this one (`before-id`, `#extended`, XEP-0313 section 4.1.3).
    pub before_id: Option<String>,
    /// Only these messages (`ids`, `#extended`, XEP-0313 section 4.1.3); `Some(vec![])` matches none.
    pub ids: Option<Vec<String>>,
    pub paging: ArchivePaging,
    /// Page size (RSM `<max>`), lowered to [`ARCHIVE_MAX_PAGE`]. 0 returns no message, and says
    /// whether any matched through [`ArchivePage::complete`].
    pub max: usize,
}

/// One page of a query, in chronological order whichever way it was paged (XEP-0313 section 4.3.3:
/// the last page is in chronological order too). There is no RSM `<count>`: counting the matches of a
/// query is a scan of every matching index entry (a million for a large archive), which XEP-0313
/// section 4.3.2 and XEP-0059 let a server leave out, and clients do not rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePage {
    pub messages: Vec<ArchivedMessage>,
    /// No matching message lies beyond this page in the direction of paging: after it when paging
    /// forward, before it when paging backward (XEP-0313 section 4.3.2, `<fin complete='true'>`).
    pub complete: bool,
}

impl ArchivePage {
    /// The id of the page's first (oldest) message: RSM `<first>`.
    pub fn first_id(&self) -> Option<&str> {
        self.messages.first().map(|m| m.id.as_str())
    }

    /// The id of the page's last (newest) message: RSM `<last>`.
    pub fn last_id(&self) -> Option<&str> {
        self.messages.last().map(|m| m.id.as_str())
    }
}

/// The ends of an archive (XEP-0313 section 5, archive metadata, `#extended`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveMetadata {
    /// The oldest message still archived.
    pub start: ArchiveMark,
    /// The newest message.
    pub end: ArchiveMark,
}

/// What to archive for a JID on neither list (XEP-0441 section 2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveDefault {
    Always,
    Never,
    /// Only contacts in the owner's roster.
    Roster,
}

impl ArchiveDefault {
    /// The wire name (`always`, `never`, `roster`).
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveDefault::Always => "always",
            ArchiveDefault::Never => "never",
            ArchiveDefault::Roster => "roster",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<ArchiveDefault> {
        Some(match s {
            "always" => ArchiveDefault::Always,
            "never" => ArchiveDefault::Never,
            "roster" => ArchiveDefault::Roster,
            _ => return None,
        })
    }
}

/// A user's archiving preferences (XEP-0441 section 2.1, formerly XEP-0313 section 6). JIDs are kept
/// as given (bare or full; XEP-0441 section 2.3 says how they match), sorted, each on one list only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePrefs {
    pub default: ArchiveDefault,
    /// JIDs whose messages are always archived (XEP-0441 section 2.1.2).
    pub always: Vec<String>,
    /// JIDs whose messages are never archived (XEP-0441 section 2.1.3).
    pub never: Vec<String>,
}

/// Per-owner message archives (XEP-0313), keyed by the owner's bare JID.
#[async_trait]
pub trait Archive: Send + Sync {
    /// Archives one message under its stanza id and returns the id with the archived timestamp (see the
    /// module documentation for both). The caller adds the id to the delivered stanza as
    /// `<stanza-id by=owner id=…/>` (XEP-0313 section 3.5).
    async fn append(&self, message: &ArchiveAppend<'_>) -> StorageResult<ArchiveMark>;

    /// Archives several messages in one transaction, all or none (for imports and for filling a
    /// benchmark): the same as [`Self::append`] on each in turn, in order per owner. Returns their
    /// marks in the order given.
    async fn append_all(&self, messages: &[ArchiveAppend<'_>]) -> StorageResult<Vec<ArchiveMark>>;

    /// The message `id` of `owner`'s archive, or `None`.
    async fn message(&self, owner: &str, id: &str) -> StorageResult<Option<ArchivedMessage>>;

    /// One page of the messages of `owner` that match `query`, in chronological order.
    ///
    /// Errors: [`crate::StorageError::UnknownArchiveId`] when an id in `after_id`, `before_id`, `ids`
    /// or the paging cursor is not in this owner's archive (XEP-0313 sections 4.1.3 and 4.3.2 answer
    /// that with `item-not-found`); [`crate::StorageError::OverLimit`] when they name more than
    /// [`ARCHIVE_MAX_IDS`] ids.
    async fn query(&self, owner: &str, query: &ArchiveQuery) -> StorageResult<ArchivePage>;

    /// The first and last message of `owner`'s archive, or `None` when it is empty.
    async fn metadata(&self, owner: &str) -> StorageResult<Option<ArchiveMetadata>>;

    /// The owner's preferences, or `None` if they never set any (the server's default applies).
    async fn prefs(&self, owner: &str) -> StorageResult<Option<ArchivePrefs>>;

    /// Every owner who has preferences (in order), so that a cache can answer "none" for everyone else
    /// without a read per owner.
    async fn owners_with_prefs(&self) -> StorageResult<Vec<String>>;

    /// Replaces the owner's preferences. A JID on both lists is stored on `never` only (the
    /// cautious reading; XEP-0441 leaves the case open). Repeated JIDs are stored once.
    async fn set_prefs(&self, owner: &str, prefs: &ArchivePrefs) -> StorageResult<()>;

    /// Retention: deletes the messages of every archive stamped before `cutoff_ms`, oldest first, in
    /// transactions of at most `batch_rows` messages (at least 1; see [`ARCHIVE_PURGE_BATCH`]) so that
    /// no other write waits long behind it. Returns how many were deleted. Since an owner's
    /// timestamps never go back, what remains of each archive has no holes (XEP-0313 section 3.2).
    async fn purge_older_than(&self, cutoff_ms: i64, batch_rows: usize) -> StorageResult<u64>;
}

/// A new XEP-0359 stanza id: 128 random bits from the thread's CSPRNG, base64url without padding, so
/// unpredictable and, in practice, unique (XEP-0313 section 3).
pub fn new_stanza_id() -> String {
    let mut bytes = [0_u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanza_ids_are_22_url_safe_characters_and_differ() {
        let one = new_stanza_id();
        let two = new_stanza_id();
        assert_eq!(one.len(), 22);
        assert!(
            one.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{one}"
        );
        assert_ne!(one, two);
    }

    #[test]
    fn default_names_round_trip() {
        for default in [
            ArchiveDefault::Always,
            ArchiveDefault::Never,
            ArchiveDefault::Roster,
        ] {
            assert_eq!(ArchiveDefault::parse(default.as_str()), Some(default));
        }
        assert_eq!(ArchiveDefault::parse("sometimes"), None);
    }
}
