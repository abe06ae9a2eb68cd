-- Storing a batch of push messages with their deliveries in one round trip (the relay's outbox,
-- `PushOutbox::enqueue_batch`).
--
-- Done from the server as BEGIN, an INSERT of the messages, a SELECT of what the outbox holds for
-- the batch's collapse keys, INSERTs of the outbox entries, the delivery links and the audit lines,
-- and COMMIT, a batch of wake-ups took seven round trips, each statement a text of its own for each
-- batch size (prepared again and again). Called as one autocommit statement, this function is one
-- transaction and one prepared statement.
--
-- The collapse rules are those of the SQL the SQLite backend runs (storage/src/relay/sql.rs),
-- delivery by delivery in order: a delivery whose collapse key has a pending entry joins it (its
-- priority raised to `high` if the delivery's is); otherwise a new pending entry is due at
-- `p_now_ms`, or `p_window_ms` after the newest entry with that key created within the window. An
-- entry made for an earlier delivery of the batch is pending, so a later one with its key joins it,
-- as on SQLite. A VOLATILE function's statements each see the function's earlier writes.
--
-- `p_requests`: a JSON array of objects `{message, deliveries, audit}`: `message` with `id`,
-- `account_id`, `token_id`, `sender`, `priority`, `created_at_ms`; `deliveries` an array of
-- `{device_id, remote_endpoint, remote_token, collapse_key, priority, data}`; `audit` null or
-- `{account_id, at_ms, token_id, sender, message_id, outcome}`. Returns one row per delivery, in
-- order: the 0-based index of its request, the outbox entry serving it, and whether it joined an
-- entry already pending.
CREATE FUNCTION herald_relay_enqueue(p_requests JSON, p_window_ms BIGINT, p_now_ms BIGINT)
RETURNS TABLE (o_request BIGINT, o_outbox_id BIGINT, o_collapsed BOOLEAN)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_request RECORD;
    v_delivery JSON;
    v_key TEXT;
    v_id BIGINT;
    v_newest BIGINT;
BEGIN
    INSERT INTO relay_messages (id, account_id, token_id, sender, priority, created_at_ms)
        SELECT r->'message'->>'id', r->'message'->>'account_id', r->'message'->>'token_id',
               r->'message'->>'sender', r->'message'->>'priority',
               (r->'message'->>'created_at_ms')::BIGINT
        FROM json_array_elements(p_requests) AS r;
    FOR v_request IN
        SELECT e.ordinality - 1 AS n, e.value AS r
        FROM json_array_elements(p_requests) WITH ORDINALITY AS e(value, ordinality)
        ORDER BY e.ordinality
    LOOP
        FOR v_delivery IN
            SELECT d.value
            FROM json_array_elements(v_request.r->'deliveries') WITH ORDINALITY AS d(value, ordinality)
            ORDER BY d.ordinality
        LOOP
            v_key := v_delivery->>'collapse_key';
            SELECT MAX(o.id) INTO v_id
                FROM relay_outbox o WHERE o.collapse_key = v_key AND o.status = 'pending';
            o_collapsed := v_id IS NOT NULL;
            IF v_id IS NOT NULL THEN
                IF v_delivery->>'priority' = 'high' THEN
                    UPDATE relay_outbox SET priority = 'high' WHERE id = v_id AND priority <> 'high';
                END IF;
            ELSE
                SELECT MAX(o.created_at_ms) INTO v_newest
                    FROM relay_outbox o
                    WHERE o.collapse_key = v_key AND o.created_at_ms > p_now_ms - p_window_ms;
                INSERT INTO relay_outbox (device_id, remote_endpoint, remote_token, collapse_key,
                        priority, data, status, attempts, next_attempt_at_ms, reason, created_at_ms,
                        updated_at_ms)
                    VALUES (v_delivery->>'device_id', v_delivery->>'remote_endpoint',
                        v_delivery->>'remote_token', v_key, v_delivery->>'priority',
                        v_delivery->>'data', 'pending', 0,
                        CASE WHEN v_newest IS NULL THEN p_now_ms
                             ELSE GREATEST(v_newest + p_window_ms, p_now_ms) END,
                        NULL, p_now_ms, p_now_ms)
                    RETURNING id INTO v_id;
            END IF;
            INSERT INTO relay_message_deliveries (message_id, outbox_id)
                VALUES (v_request.r->'message'->>'id', v_id)
                ON CONFLICT DO NOTHING;
            o_request := v_request.n;
            o_outbox_id := v_id;
            RETURN NEXT;
        END LOOP;
    END LOOP;
    INSERT INTO relay_audit (account_id, at_ms, token_id, sender, message_id, outcome)
        SELECT r->'audit'->>'account_id', (r->'audit'->>'at_ms')::BIGINT, r->'audit'->>'token_id',
               r->'audit'->>'sender', r->'audit'->>'message_id', r->'audit'->>'outcome'
        FROM json_array_elements(p_requests) AS r
        WHERE json_typeof(r->'audit') = 'object';
END;
$$;
