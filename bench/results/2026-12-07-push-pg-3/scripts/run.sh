#!/usr/bin/env bash
# run.sh NAME SERVERS [EXTRA_SQL]: one push run with the pg_stat sampler; output in /tmp/pgpush/NAME
NAME=$1; SERVERS=$2; EXTRA_SQL=${3:-}
OUT=/tmp/pgpush/$NAME; mkdir -p "$OUT"
cd /work/wt-pg-push
uptime > "$OUT/uptime-before.txt"
S=""
if [ "$SERVERS" = herald-postgres ]; then
  ( if [ -n "$EXTRA_SQL" ]; then
      until psql postgres://postgres@127.0.0.1:19832/herald -Atc "select 1" >/dev/null 2>&1; do sleep 0.2; done
      psql postgres://postgres@127.0.0.1:19832/herald -Atc "$EXTRA_SQL" -c "select pg_reload_conf()" > "$OUT/extra-sql.txt" 2>&1
    fi ) &
  /tmp/pgpush/sample.sh "$OUT" & S=$!
fi
HERALD_BIN=${HERALD_BIN:-target/release/herald} HERALD_LOAD_BIN=${HERALD_LOAD_BIN:-target/release/herald-load} \
  bash bench/compare.sh ${COMPARE_FLAGS:-} --servers "$SERVERS" -- --phases accounts,push --sessions 1100 --push-users 1000 > "$OUT/compare.txt" 2> "$OUT/compare.err"
echo "rc=$?" >> "$OUT/compare.txt"
uptime > "$OUT/uptime-after.txt"
if [ -n "$S" ]; then kill $S 2>/dev/null; sleep 0.5; pkill -P $S 2>/dev/null; fi
