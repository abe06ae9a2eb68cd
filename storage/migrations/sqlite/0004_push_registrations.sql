-- XEP-0357 push registrations, SQLite dialect. Keep in step with
-- migrations/postgres/0005_push_registrations.sql.
--
-- One row per (account, push service JID, node) the account enabled (XEP-0357 section 5), with the
-- publish-options form as the client sent it (replayed with every publish) and the publishes that
-- failed in a row since the last success.
CREATE TABLE push_registrations (
    owner           TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    node            TEXT    NOT NULL,
    publish_options TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    -- Milliseconds since the Unix epoch.
    enabled_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (owner, service, node)
);
