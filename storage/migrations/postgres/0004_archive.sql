-- Message archives (XEP-0313) and archiving preferences (XEP-0441), PostgreSQL dialect. Keep in step
-- with migrations/sqlite/0003_archive.sql (the number differs: 0003 here is the offline-store
-- function).
--
-- `id` orders an owner's archive (XEP-0313 section 3.1) and never leaves the storage crate; an
-- identity column, so it only grows. `stanza_id` is the XEP-0359 id on the wire: random, unique per
-- owner. An owner's `at_ms` never goes back (herald_archive_append raises it to the owner's newest),
-- so time order and id order agree.
CREATE TABLE archive_messages (
    id        BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner     TEXT COLLATE "C" NOT NULL,
    stanza_id TEXT COLLATE "C" NOT NULL,
    -- Bare JID of the other party: what the `with` filter matches (XEP-0313 section 4.1.1).
    contact   TEXT COLLATE "C" NOT NULL,
    -- Milliseconds since the Unix epoch.
    at_ms     BIGINT  NOT NULL,
    outgoing  BOOLEAN NOT NULL,
    stanza    TEXT COLLATE "C" NOT NULL
);
-- A stanza id to its row: cursors, before-id/after-id, ids, single-message lookups.
CREATE UNIQUE INDEX archive_messages_by_stanza_id ON archive_messages (owner, stanza_id);
-- A page of the whole archive: a range scan from a row-id bound, either way.
CREATE INDEX archive_messages_by_owner ON archive_messages (owner, id);
-- A page with one contact (`with`).
CREATE INDEX archive_messages_by_contact ON archive_messages (owner, contact, id);
-- `start`/`end` to a row-id bound, and the owner's newest timestamp at append: one seek each.
CREATE INDEX archive_messages_by_time ON archive_messages (owner, at_ms, id);
-- Retention purges the oldest messages of every owner in batches.
CREATE INDEX archive_messages_for_retention ON archive_messages (at_ms, id);

-- XEP-0441 section 2.1: the default, and the JIDs always (archive = TRUE) or never (FALSE) archived.
CREATE TABLE archive_prefs (
    owner        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    default_mode TEXT COLLATE "C" NOT NULL CHECK (default_mode IN ('always', 'never', 'roster'))
);
CREATE TABLE archive_pref_jids (
    owner   TEXT COLLATE "C" NOT NULL,
    jid     TEXT COLLATE "C" NOT NULL,
    archive BOOLEAN NOT NULL,
    PRIMARY KEY (owner, jid)
);

-- Archiving one message in one round trip. Under READ COMMITTED two appends for one owner could
-- draw row ids in one order and commit in the other, and a client paging with RSM <after> between
-- the two commits would never see the earlier id. So the append takes a transaction-scoped advisory
-- lock on the owner first (released at the commit of the autocommit statement that calls it, or of
-- the caller's transaction): an owner's ids are drawn and committed in one order. After the lock, a
-- fresh snapshot (VOLATILE function) sees the owner's newest timestamp, which the new one may not go
-- below. Returns the stored timestamp.
--
-- 19789 = 0x4d4d ("MM") is the class key, apart from the offline store's 20294 ("OF") and from the
-- one-key space sqlx's migrator uses.
CREATE FUNCTION herald_archive_append(
    p_owner TEXT,
    p_stanza_id TEXT,
    p_contact TEXT,
    p_at_ms BIGINT,
    p_outgoing BOOLEAN,
    p_stanza TEXT
) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_at_ms BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(19789, hashtext(p_owner));
    SELECT GREATEST(p_at_ms, MAX(at_ms)) INTO v_at_ms FROM archive_messages WHERE owner = p_owner;
    INSERT INTO archive_messages (owner, stanza_id, contact, at_ms, outgoing, stanza)
        VALUES (p_owner, p_stanza_id, p_contact, v_at_ms, p_outgoing, p_stanza);
    RETURN v_at_ms;
END;
$$;
