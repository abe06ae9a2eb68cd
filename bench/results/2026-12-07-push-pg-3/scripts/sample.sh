#!/usr/bin/env bash
# Waits for the bench's PostgreSQL (port 19832), turns on WAL timing, samples pg_stat_activity every 50 ms
# to $1/activity.tsv, and pg_stat_wal / bgwriter snapshots every second to $1/wal.tsv, until killed.
OUT=$1; mkdir -p "$OUT"
URL=postgres://postgres@127.0.0.1:19832/herald
until psql "$URL" -Atc "select 1" >/dev/null 2>&1; do sleep 0.2; done
psql "$URL" -Atc "alter system set track_wal_io_timing = on" -c "alter system set track_io_timing = on" -c "select pg_reload_conf()" >/dev/null
( psql "$URL" -At -F $'\t' <<'SQL'
select to_char(clock_timestamp(),'HH24:MI:SS.MS'), pid, coalesce(wait_event_type,'-'), coalesce(wait_event,'-'), state, regexp_replace(left(query,70),'\s+',' ','g') from pg_stat_activity where datname='herald' and pid<>pg_backend_pid() and backend_type='client backend' union all select to_char(clock_timestamp(),'HH24:MI:SS.MS'), pid, coalesce(wait_event_type,'-'), coalesce(wait_event,'-'), backend_type, '' from pg_stat_activity where backend_type in ('walwriter','checkpointer','background writer') and wait_event_type is distinct from 'Activity' \watch 0.05
SQL
) > "$OUT/activity.tsv" 2>&1 &
A=$!
( psql "$URL" -At -F $'\t' <<'SQL'
select to_char(clock_timestamp(),'HH24:MI:SS.MS'), wal_records, wal_bytes, wal_write, wal_sync, wal_write_time, wal_sync_time, wal_buffers_full, (select xact_commit from pg_stat_database where datname='herald') from pg_stat_wal \watch 1
SQL
) > "$OUT/wal.tsv" 2>&1 &
W=$!
trap 'kill $A $W 2>/dev/null' EXIT TERM INT
wait
