#!/usr/bin/env bash
# cpu.sh OUT: every 100 ms, CPU ticks (utime+stime) of herald and of the bench's postgres (port 19832),
# and cpu0's busy/total ticks, to OUT/cpu.tsv, until killed.
OUT=$1
while true; do
  pm=$(pgrep -f -- "-p 19832" | head -1)
  h=0; p=0
  for pid in $(pgrep -x herald); do set -- $(awk '{print $14, $15}' /proc/$pid/stat 2>/dev/null); h=$((h + ${1:-0} + ${2:-0})); done
  if [ -n "$pm" ]; then for pid in $pm $(pgrep -P "$pm"); do set -- $(awk '{print $14, $15}' /proc/$pid/stat 2>/dev/null); p=$((p + ${1:-0} + ${2:-0})); done; fi
  c0=$(awk '/^cpu0 /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
  echo "$(date +%H:%M:%S.%N | cut -c1-12) $h $p $c0"
  sleep 0.1
done > "$OUT/cpu.tsv"
