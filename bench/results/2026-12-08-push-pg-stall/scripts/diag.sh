#!/usr/bin/env bash
# diag.sh NAME BINDIR [SETTING...]: like run.sh, but PostgreSQL logs every statement with its duration
# and a millisecond timestamp (log_min_duration_statement = 0), and the run's directory is kept; the
# statement log is copied to NAME.pg.log. Not a timed run (the logging costs time). Each SETTING
# ("name = value") is set with ALTER SYSTEM once the run's cluster is up, e.g.
# "synchronous_commit = off" to take the WAL flushes out of the picture (a diagnosis, never a fix).
# LOGALL=0: no statement log (the sampler only); CMP_OPTS: more compare.sh options; PUSH_USERS
# (default 1000): push users, and so the rate (100/s per 100).
set -u
NAME=$1; BIN=$2; shift 2
SQL=(-c "alter system set log_min_duration_statement = 0" -c "alter system set log_line_prefix = '%m [%p] '")
[ "${LOGALL:-1}" = 1 ] || SQL=(-c "alter system set log_line_prefix = '%m [%p] '")  # LOGALL=0: no statement log
for s in "$@"; do SQL+=(-c "alter system set $s"); done
DIR=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(cd "$DIR/../../.." && pwd)
URL=postgres://postgres@127.0.0.1:19832/herald
exec 9>/work/bench.lock; flock 9
cat /proc/loadavg > "$DIR/$NAME.uptime"
( until psql "$URL" -Atc "select 1" >/dev/null 2>&1; do sleep 0.1; done
  psql "$URL" -At "${SQL[@]}" -c "select pg_reload_conf()" > "$DIR/$NAME.settings" 2>&1
  # Every 20 ms: time, WAL position, WAL segment files, and what the active backends wait for.
  psql "$URL" -At -F $'\t' > "$DIR/$NAME.wal.tsv" 2>/dev/null <<'SQL'
select to_char(clock_timestamp(),'HH24:MI:SS.MS'), pg_current_wal_lsn(), (select count(*) from pg_ls_waldir()), (select string_agg(coalesce(wait_event_type||'/'||wait_event,'cpu'), ',') from pg_stat_activity where state = 'active' and backend_type = 'client backend' and pid <> pg_backend_pid()) \watch 0.02
SQL
  ) &
S=$!
cd "$ROOT"
HERALD_BIN=$BIN/herald HERALD_LOAD_BIN=$BIN/herald-load \
  bash bench/compare.sh --keep ${CMP_OPTS:-} --servers herald-postgres -- --phases accounts,push --sessions 1100 \
  --push-users ${PUSH_USERS:-1000} --push-trace "$DIR/$NAME.trace.tsv" > "$DIR/$NAME.txt" 2> "$DIR/$NAME.err"
echo "rc=$?" >> "$DIR/$NAME.txt"
flock -u 9
pkill -P $S 2>/dev/null; kill $S 2>/dev/null; wait $S 2>/dev/null
W=$(grep -o '/tmp/herald-bench\.[A-Za-z0-9]*' "$DIR/$NAME.err" | head -1)
cp "$W/pg/pg.log" "$DIR/$NAME.pg.log"
cp "$W"/herald-*/herald.log "$DIR/$NAME.herald.log" 2>/dev/null
rm -rf "$W"
echo "$NAME done"
