-- The outbound server-to-server queue, SQLite dialect. Keep in step with
-- migrations/postgres/0008_s2s_queue.sql.
--
-- One row per stanza waiting for a remote domain (RFC 6120 section 10.4.3: sent once a stream to the
-- peer is up, bounced when it cannot be). AUTOINCREMENT so ids never repeat: a link task that has
-- read up to an id must never see a new stanza under it. `bytes` is the stanza's UTF-8 length, for
-- the per-domain cap.
CREATE TABLE s2s_queue (
    id             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    domain         TEXT    NOT NULL,
    sender         TEXT    NOT NULL,
    stanza         TEXT    NOT NULL,
    bytes          INTEGER NOT NULL,
    enqueued_at_ms INTEGER NOT NULL
);
-- The oldest N of a domain, and the cap's count, are range scans of this index.
CREATE INDEX s2s_queue_by_domain ON s2s_queue (domain, id);
