-- Archiving a batch of messages in one round trip (XEP-0313; the archive queue's batches).
--
-- Done from the server as BEGIN, one `herald_archive_append` per message and COMMIT, a batch took
-- two round trips more than it has messages, and each push to an offline user archives two (the
-- sender's copy and the recipient's). This function calls `herald_archive_append` for each element
-- of `p_rows`, in order, inside the one transaction of the autocommit statement that calls it, so
-- the per-owner advisory locks and the timestamp rule are those of single appends. The caller sorts
-- the rows by owner (a fixed lock order, so two batches cannot deadlock).
--
-- `p_rows`: a JSON array of objects with `owner`, `id` (the XEP-0359 stanza id), `contact`, `at_ms`,
-- `outgoing` and `stanza`. Returns one row per element: its 0-based index and its stored `at_ms`.
CREATE FUNCTION herald_archive_append_all(p_rows JSON)
RETURNS TABLE (o_index BIGINT, o_at_ms BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_row RECORD;
BEGIN
    FOR v_row IN
        SELECT e.ordinality - 1 AS n, e.value AS v
        FROM json_array_elements(p_rows) WITH ORDINALITY AS e(value, ordinality)
        ORDER BY e.ordinality
    LOOP
        o_index := v_row.n;
        o_at_ms := herald_archive_append(
            v_row.v->>'owner',
            v_row.v->>'id',
            v_row.v->>'contact',
            (v_row.v->>'at_ms')::BIGINT,
            (v_row.v->>'outgoing')::BOOLEAN,
            v_row.v->>'stanza'
        );
        RETURN NEXT;
    END LOOP;
END;
$$;
