-- Storing an offline message in one round trip (XEP-0160 quota).
--
-- Under READ COMMITTED a single INSERT .. SELECT .. WHERE count < quota could miss a concurrent
-- insert for the same owner, so the store takes a transaction-scoped advisory lock on the owner
-- first. Done from the server as BEGIN, lock, count, INSERT, COMMIT, that was five round trips for
-- every message to an offline user. A VOLATILE PL/pgSQL function takes a fresh snapshot for each
-- statement it runs (PostgreSQL manual, "Function Volatility Categories"), so the count after the
-- lock sees every store that held the lock before; called as one autocommit statement, the lock is
-- released at its commit. Returns whether the message was stored (false: the quota is reached).
--
-- The two-key lock, with 20294 = 0x4f46 ("OF") as the class key, keeps Herald's locks apart from the
-- one-key space sqlx's migrator uses.
CREATE FUNCTION herald_store_offline(
    p_owner TEXT,
    p_stanza TEXT,
    p_stored_at_ms BIGINT,
    p_quota BIGINT
) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(20294, hashtext(p_owner));
    IF (SELECT COUNT(*) FROM offline_messages WHERE owner = p_owner) >= p_quota THEN
        RETURN FALSE;
    END IF;
    INSERT INTO offline_messages (owner, stanza, stored_at_ms)
        VALUES (p_owner, p_stanza, p_stored_at_ms);
    RETURN TRUE;
END;
$$;
