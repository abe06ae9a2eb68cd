#!/usr/bin/env bash
# full-sampled.sh NAME BINDIR: full.sh with the run's PostgreSQL sampled every 50 ms: for each sample, the
# time and, per backend of the herald database that is not idle, its state, wait event and the first 50
# characters of its statement (NAME.activity.tsv).
set -u
NAME=$1; BIN=$2
DIR=$(cd "$(dirname "$0")/.." && pwd)
URL=postgres://postgres@127.0.0.1:19832/herald
( until psql "$URL" -Atc "select 1" >/dev/null 2>&1; do sleep 0.1; done
  psql "$URL" -At -F $'\t' > "$DIR/$NAME.activity.tsv" 2>/dev/null <<'SQL'
select to_char(clock_timestamp(),'HH24:MI:SS.MS'), (select string_agg(state || '/' || coalesce(wait_event,'cpu') || '/' || regexp_replace(left(query,50),'\s+',' ','g'), ' | ') from pg_stat_activity where datname = 'herald' and state <> 'idle' and pid <> pg_backend_pid()) \watch 0.05
SQL
) &
S=$!
bash "$DIR/scripts/full.sh" "$NAME" "$BIN"
pkill -P $S 2>/dev/null; kill $S 2>/dev/null; wait $S 2>/dev/null
