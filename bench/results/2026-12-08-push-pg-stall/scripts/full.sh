#!/usr/bin/env bash
# full.sh NAME BINDIR: compare.sh's default phases (accounts, idle, login, chat, push with 10,000
# sessions) on PostgreSQL alone, under the bench lock: the other figures, to see that a change for the
# push phase costs nothing elsewhere.
set -u
NAME=$1; BIN=$2
DIR=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(cd "$DIR/../../.." && pwd)
exec 9>/work/bench.lock; flock 9
cat /proc/loadavg > "$DIR/$NAME.uptime"
cd "$ROOT"
HERALD_BIN=$BIN/herald HERALD_LOAD_BIN=$BIN/herald-load \
  bash bench/compare.sh --servers herald-postgres > "$DIR/$NAME.txt" 2> "$DIR/$NAME.err"
echo "rc=$?" >> "$DIR/$NAME.txt"
[ -s "$DIR/$NAME.err" ] || rm -f "$DIR/$NAME.err"
