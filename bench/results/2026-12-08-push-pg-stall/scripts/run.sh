#!/usr/bin/env bash
# run.sh NAME BINDIR [compare.sh option...]: one push run on PostgreSQL (accounts,push; 1100 sessions, 1000 push users) of
# bench/compare.sh with BINDIR/herald and BINDIR/herald-load, under the machine-wide bench lock.
# Writes NAME.txt (the table), NAME.uptime (load average before the run) and NAME.trace.tsv (one line
# per push: herald-load --push-trace) next to this script's folder, and NAME.others (compiler
# processes running on the machine, sampled every 0.5 s during the run) and NAME.steal (the CPU time
# the hypervisor gave to others, from /proc/stat, over the whole run: per CPU, in 1/100 s).
set -u
NAME=$1; BIN=$2; shift 2
DIR=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(cd "$DIR/../../.." && pwd)
exec 9>/work/bench.lock; flock 9
cat /proc/loadavg > "$DIR/$NAME.uptime"
STEAL_BEFORE=$(awk '/^cpu[01] /{print $1, $9}' /proc/stat)
# Other work on the machine during the run: compiler processes (rustc, cc1, ld) seen, sampled every 0.5 s.
( while sleep 0.5; do ps -e -o comm= | grep -cxE 'rustc|cc1|ld|rust-lld|cargo'; done > "$DIR/$NAME.others" ) &
MON=$!
cd "$ROOT"
HERALD_BIN=$BIN/herald HERALD_LOAD_BIN=$BIN/herald-load \
  bash bench/compare.sh "$@" --servers "${SERVERS:-herald-postgres}" -- --phases accounts,push --sessions 1100 \
  --push-users ${PUSH_USERS:-1000} --push-trace "$DIR/$NAME.trace.tsv" > "$DIR/$NAME.txt" 2> "$DIR/$NAME.err"
echo "rc=$?" >> "$DIR/$NAME.txt"
kill $MON
STEAL_AFTER=$(awk '/^cpu[01] /{print $1, $9}' /proc/stat)
paste <(echo "$STEAL_BEFORE") <(echo "$STEAL_AFTER") | awk '{print $1, $4 - $2}' > "$DIR/$NAME.steal"
flock -u 9
[ -s "$DIR/$NAME.err" ] || rm -f "$DIR/$NAME.err"
echo "$NAME $(grep -E '^\| *push' "$DIR/$NAME.txt" | head -3 | tr -s ' ') load $(cut -d' ' -f1-3 "$DIR/$NAME.uptime") compilers-seen $(sort -n "$DIR/$NAME.others" | tail -1) steal $(tr '\n' ' ' < "$DIR/$NAME.steal")"
