#!/usr/bin/env bash
# run.sh NAME SERVERS BINDIR [count]: one push run (accounts,push; 1100 sessions, 1000 push users) of
# bench/compare.sh with the binaries in BINDIR, under the machine-wide bench lock; output in /tmp/pgpush/NAME.
# For herald-postgres, a sampler records pg_stat_database commits and pg_stat_wal every 100 ms (wal.tsv).
# "count": also logs every statement (log_min_duration_statement = 0) and keeps the run's directory,
# for counting statements per push (the logging costs time: not a timed run).
NAME=$1; SERVERS=$2; BIN=$3; MODE=${4:-}
OUT=/tmp/pgpush/$NAME; mkdir -p "$OUT"
cd /work/wt-pg-push
URL=postgres://postgres@127.0.0.1:19832/herald
exec 9>/work/bench.lock; flock 9
uptime > "$OUT/uptime-before.txt"
S=""
if [ "$SERVERS" = herald-postgres ]; then
  ( until psql "$URL" -Atc "select 1" >/dev/null 2>&1; do sleep 0.2; done
    if [ "$MODE" = count ]; then
      psql "$URL" -Atc "alter system set log_min_duration_statement = 0" -c "select pg_reload_conf()" > "$OUT/extra-sql.txt" 2>&1
    fi
    psql "$URL" -At -F $'\t' > "$OUT/wal.tsv" 2>&1 <<'SQL'
select to_char(clock_timestamp(),'HH24:MI:SS.MS'), wal_records, wal_bytes, wal_write, wal_sync, (select xact_commit from pg_stat_database where datname='herald') from pg_stat_wal \watch 0.1
SQL
  ) &
  S=$!
fi
KEEP=""; [ "$MODE" = count ] && KEEP=--keep
HERALD_BIN=$BIN/herald HERALD_LOAD_BIN=$BIN/herald-load \
  bash bench/compare.sh $KEEP --servers "$SERVERS" -- --phases accounts,push --sessions 1100 --push-users 1000 > "$OUT/compare.txt" 2> "$OUT/compare.err"
echo "rc=$?" >> "$OUT/compare.txt"
uptime > "$OUT/uptime-after.txt"
flock -u 9
if [ -n "$S" ]; then kill $S 2>/dev/null; pkill -P $S 2>/dev/null; fi
echo "$NAME $(grep -o 'p50 (ms) ↓ | [0-9.]*' "$OUT/compare.txt" | head -1) $(grep -o 'p99 (ms) ↓ | [0-9.]*' "$OUT/compare.txt" | head -1) load $(awk -F'load average: ' '{print $2}' "$OUT/uptime-before.txt")"
