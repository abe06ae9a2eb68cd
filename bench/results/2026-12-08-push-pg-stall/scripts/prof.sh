#!/usr/bin/env bash
# prof.sh NAME BINDIR: one run.sh run with `perf record -k CLOCK_REALTIME -F 999 -C 0` (CPU 0: Herald and
# its PostgreSQL) around it; writes NAME.perf.txt, the samples of the push window only (the trace's
# first send to +1.2 s): by process and kernel/user, then the top symbols.
set -u
NAME=$1; BIN=$2
DIR=$(cd "$(dirname "$0")/.." && pwd)
perf record -q -k CLOCK_REALTIME -F 999 -C 0 -o /tmp/$NAME.perf.data 2>/dev/null &
P=$!
sleep 1
bash "$DIR/scripts/run.sh" "$NAME" "$BIN"
kill -INT $P; wait $P
FIRST=$(awk '/first send at/{print $5}' "$DIR/$NAME.trace.tsv")
S=$(python3 -c "print(f'{$FIRST/1e6:.6f}')"); E=$(python3 -c "print(f'{$FIRST/1e6+1.2:.6f}')")
{
  echo "# window $S-$E (realtime s), CPU 0"
  perf report -i /tmp/$NAME.perf.data --time "$S,$E" --sort comm --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
  echo "# by comm, dso"
  perf report -i /tmp/$NAME.perf.data --time "$S,$E" --sort comm,dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20
  echo "# top symbols"
  perf report -i /tmp/$NAME.perf.data --time "$S,$E" --sort comm,sym --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -70
} > "$DIR/$NAME.perf.txt"
# kept for slicing: /tmp/$NAME.perf.data
