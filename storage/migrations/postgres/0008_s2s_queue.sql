-- The outbound server-to-server queue, PostgreSQL dialect. Keep in step with
-- migrations/sqlite/0007_s2s_queue.sql (the numbers differ: each dialect's sequence has its own gaps).
--
-- One row per stanza waiting for a remote domain (RFC 6120 section 10.4.3: sent once a stream to the
-- peer is up, bounced when it cannot be). An enqueue takes a transaction-scoped advisory lock on its
-- domain before it draws the id, so a domain's ids commit in order. `bytes` is the stanza's UTF-8
-- length, for the per-domain cap.
CREATE TABLE s2s_queue (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain         TEXT COLLATE "C" NOT NULL,
    sender         TEXT COLLATE "C" NOT NULL,
    stanza         TEXT COLLATE "C" NOT NULL,
    bytes          BIGINT NOT NULL,
    enqueued_at_ms BIGINT NOT NULL
);
-- The oldest N of a domain, and the cap's count, are range scans of this index.
CREATE INDEX s2s_queue_by_domain ON s2s_queue (domain, id);
