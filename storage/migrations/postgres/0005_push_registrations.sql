-- XEP-0357 push registrations, PostgreSQL dialect. Keep in step with
-- migrations/sqlite/0004_push_registrations.sql (the number differs: 0003 here is the offline-store
-- function).
--
-- One row per (account, push service JID, node) the account enabled (XEP-0357 section 5), with the
-- publish-options form as the client sent it (replayed with every publish) and the publishes that
-- failed in a row since the last success.
CREATE TABLE push_registrations (
    owner           TEXT COLLATE "C" NOT NULL,
    service         TEXT COLLATE "C" NOT NULL,
    node            TEXT COLLATE "C" NOT NULL,
    publish_options TEXT COLLATE "C",
    failures        BIGINT NOT NULL DEFAULT 0,
    -- Milliseconds since the Unix epoch.
    enabled_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (owner, service, node)
);
