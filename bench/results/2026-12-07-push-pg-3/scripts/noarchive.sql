CREATE OR REPLACE FUNCTION herald_archive_append_all(p_rows JSON) RETURNS TABLE (o_index BIGINT, o_at_ms BIGINT)
LANGUAGE sql AS $$ SELECT e.ordinality - 1, (e.value->>'at_ms')::BIGINT FROM json_array_elements(p_rows) WITH ORDINALITY AS e(value, ordinality) $$;
