-- Herald XMPP data, SQLite dialect. Keep in step with migrations/postgres/0001_xmpp.sql: the contract suite
-- (src/contract.rs) is what proves both behave the same.
--
-- Nothing references `accounts` by foreign key: each area works on its own (the server may store a roster
-- or offline message keyed by a bare JID before or without an account row), and `Accounts::delete` removes
-- everything an account owns in one transaction.

-- SCRAM credentials (RFC 5802 section 3, RFC 7677): salted keys only, never a password.
CREATE TABLE accounts (
    jid               TEXT    NOT NULL PRIMARY KEY,
    -- The part after '@', so `Accounts::list(domain)` is an index lookup.
    domain            TEXT    NOT NULL,
    sha1_salt         BLOB    NOT NULL,
    sha1_iterations   INTEGER NOT NULL,
    sha1_stored_key   BLOB    NOT NULL,
    sha1_server_key   BLOB    NOT NULL,
    sha256_salt       BLOB    NOT NULL,
    sha256_iterations INTEGER NOT NULL,
    sha256_stored_key BLOB    NOT NULL,
    sha256_server_key BLOB    NOT NULL,
    -- Milliseconds since the Unix epoch.
    created_at        INTEGER NOT NULL
);
CREATE INDEX accounts_by_domain ON accounts (domain, jid);

-- Roster items with the full subscription state (RFC 6121 section 3, appendix A).
CREATE TABLE roster_items (
    owner        TEXT    NOT NULL,
    contact      TEXT    NOT NULL,
    name         TEXT,
    subscription TEXT    NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
    pending_out  BOOLEAN NOT NULL DEFAULT 0,
    pending_in   BOOLEAN NOT NULL DEFAULT 0,
    pre_approved BOOLEAN NOT NULL DEFAULT 0,
    in_roster    BOOLEAN NOT NULL DEFAULT 1,
    PRIMARY KEY (owner, contact)
);

-- Groups of a roster item, in the order the client gave them.
CREATE TABLE roster_groups (
    owner    TEXT    NOT NULL,
    contact  TEXT    NOT NULL,
    position INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    PRIMARY KEY (owner, contact, name),
    FOREIGN KEY (owner, contact) REFERENCES roster_items (owner, contact) ON DELETE CASCADE
);

-- Roster versioning (RFC 6121 section 2.6): bumped in the same transaction as every item change.
CREATE TABLE roster_versions (
    owner   TEXT    NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL
);

-- Offline messages (XEP-0160). AUTOINCREMENT so ids never repeat, even after the newest row is deleted.
CREATE TABLE offline_messages (
    id           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    owner        TEXT    NOT NULL,
    stanza       TEXT    NOT NULL,
    stored_at_ms INTEGER NOT NULL
);
CREATE INDEX offline_messages_by_owner ON offline_messages (owner, id);

-- vcard-temp (XEP-0054): one opaque document per account.
CREATE TABLE vcards (
    owner TEXT NOT NULL PRIMARY KEY,
    vcard TEXT NOT NULL
);

-- Block lists (XEP-0191).
CREATE TABLE block_list (
    owner TEXT NOT NULL,
    jid   TEXT NOT NULL,
    PRIMARY KEY (owner, jid)
);
