-- Herald XMPP data, PostgreSQL dialect. Keep in step with migrations/sqlite/0001_xmpp.sql: the contract suite
-- (src/contract.rs) is what proves both behave the same.
-- Every text column is COLLATE "C" so ORDER BY is byte order, as on SQLite (BINARY) and in Rust.
--
-- Nothing references `accounts` by foreign key: each area works on its own (the server may store a roster
-- or offline message keyed by a bare JID before or without an account row), and `Accounts::delete` removes
-- everything an account owns in one transaction.

-- SCRAM credentials (RFC 5802 section 3, RFC 7677): salted keys only, never a password.
CREATE TABLE accounts (
    jid               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    -- The part after '@', so `Accounts::list(domain)` is an index lookup.
    domain            TEXT COLLATE "C" NOT NULL,
    sha1_salt         BYTEA   NOT NULL,
    sha1_iterations   BIGINT  NOT NULL,
    sha1_stored_key   BYTEA   NOT NULL,
    sha1_server_key   BYTEA   NOT NULL,
    sha256_salt       BYTEA   NOT NULL,
    sha256_iterations BIGINT  NOT NULL,
    sha256_stored_key BYTEA   NOT NULL,
    sha256_server_key BYTEA   NOT NULL,
    -- Milliseconds since the Unix epoch.
    created_at        BIGINT  NOT NULL
);
CREATE INDEX accounts_by_domain ON accounts (domain, jid);

-- Roster items with the full subscription state (RFC 6121 section 3, appendix A).
CREATE TABLE roster_items (
    owner        TEXT COLLATE "C" NOT NULL,
    contact      TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C",
    subscription TEXT COLLATE "C" NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
    pending_out  BOOLEAN NOT NULL DEFAULT FALSE,
    pending_in   BOOLEAN NOT NULL DEFAULT FALSE,
    pre_approved BOOLEAN NOT NULL DEFAULT FALSE,
    in_roster    BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (owner, contact)
);

-- Groups of a roster item, in the order the client gave them.
CREATE TABLE roster_groups (
    owner    TEXT COLLATE "C" NOT NULL,
    contact  TEXT COLLATE "C" NOT NULL,
    position BIGINT  NOT NULL,
    name     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (owner, contact, name),
    FOREIGN KEY (owner, contact) REFERENCES roster_items (owner, contact) ON DELETE CASCADE
);

-- Roster versioning (RFC 6121 section 2.6): bumped in the same transaction as every item change.
CREATE TABLE roster_versions (
    owner   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    version BIGINT  NOT NULL
);

-- Offline messages (XEP-0160). An identity column, so ids only grow.
CREATE TABLE offline_messages (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner        TEXT COLLATE "C" NOT NULL,
    stanza       TEXT COLLATE "C" NOT NULL,
    stored_at_ms BIGINT  NOT NULL
);
CREATE INDEX offline_messages_by_owner ON offline_messages (owner, id);

-- vcard-temp (XEP-0054): one opaque document per account.
CREATE TABLE vcards (
    owner TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    vcard TEXT COLLATE "C" NOT NULL
);

-- Block lists (XEP-0191).
CREATE TABLE block_list (
    owner TEXT COLLATE "C" NOT NULL,
    jid   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (owner, jid)
);
