-- The PL/pgSQL functions on the path of a message to an offline user use generic plans from their
-- first call on a connection.
--
-- PostgreSQL plans a statement with parameters (in PL/pgSQL, every statement that reads a variable)
-- with the values of each call for its first five executions on a connection, and only then considers
-- one generic plan (the manual, PREPARE, "Notes"; plan_cache_mode). Every statement in these functions
-- is a lookup, a lock or an insert by key, whose plan does not depend on the values, so those plannings
-- were pure cost, and on a server just started they all fell in the first burst: in the push benchmark
-- on PostgreSQL the first 100 ms of pushes had a median of 17-30 ms against 9 ms for the rest, and 10-12
-- ms with generic plans forced on the whole cluster (BENCHMARKS.md). A function's SET applies while it
-- runs, to the functions it calls too (herald_archive_append under herald_archive_append_all), and to
-- nothing else the connection does. A later CREATE OR REPLACE of one of them drops its SET unless it
-- repeats it (test `postgres::tests::the_push_path_functions_use_generic_plans`).

ALTER FUNCTION herald_store_offline(TEXT, TEXT, BIGINT, BIGINT) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION herald_archive_append(TEXT, TEXT, TEXT, BIGINT, BOOLEAN, TEXT) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION herald_archive_append_all(JSON) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION herald_relay_enqueue(JSON, BIGINT, BIGINT) SET plan_cache_mode = force_generic_plan;
