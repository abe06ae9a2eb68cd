-- Message archives (XEP-0313) and archiving preferences (XEP-0441), SQLite dialect. Keep in step with
-- migrations/postgres/0004_archive.sql.
--
-- `id` orders an owner's archive (XEP-0313 section 3.1) and never leaves the storage crate;
-- AUTOINCREMENT so it only grows, even after the newest rows were deleted. `stanza_id` is the
-- XEP-0359 id on the wire: random, unique per owner. An owner's `at_ms` never goes back (the append
-- statement raises it to the owner's newest), so time order and id order agree.
CREATE TABLE archive_messages (
    id        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    owner     TEXT    NOT NULL,
    stanza_id TEXT    NOT NULL,
    -- Bare JID of the other party: what the `with` filter matches (XEP-0313 section 4.1.1).
    contact   TEXT    NOT NULL,
    -- Milliseconds since the Unix epoch.
    at_ms     INTEGER NOT NULL,
    outgoing  BOOLEAN NOT NULL,
    stanza    TEXT    NOT NULL
);
-- A stanza id to its row: cursors, before-id/after-id, ids, single-message lookups.
CREATE UNIQUE INDEX archive_messages_by_stanza_id ON archive_messages (owner, stanza_id);
-- A page of the whole archive: a range scan from a row-id bound, either way.
CREATE INDEX archive_messages_by_owner ON archive_messages (owner, id);
-- A page with one contact (`with`).
CREATE INDEX archive_messages_by_contact ON archive_messages (owner, contact, id);
-- `start`/`end` to a row-id bound, and the owner's newest timestamp at append: one seek each.
-- (SQLite appends the row id to every index, so this is (owner, at_ms, id).)
CREATE INDEX archive_messages_by_time ON archive_messages (owner, at_ms);
-- Retention purges the oldest messages of every owner in batches.
CREATE INDEX archive_messages_for_retention ON archive_messages (at_ms);

-- XEP-0441 section 2.1: the default, and the JIDs always (archive = 1) or never (0) archived.
CREATE TABLE archive_prefs (
    owner        TEXT NOT NULL PRIMARY KEY,
    default_mode TEXT NOT NULL CHECK (default_mode IN ('always', 'never', 'roster'))
);
CREATE TABLE archive_pref_jids (
    owner   TEXT    NOT NULL,
    jid     TEXT    NOT NULL,
    archive BOOLEAN NOT NULL,
    PRIMARY KEY (owner, jid)
);
