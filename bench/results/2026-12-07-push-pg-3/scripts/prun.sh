#!/usr/bin/env bash
# prun.sh NAME HOOK(none|noarchive|async): a pinned PostgreSQL push run with perf on CPU 0; prints figures.
NAME=$1; HOOK=$2; OUT=/tmp/pgpush/$NAME; mkdir -p $OUT
U=postgres://postgres@127.0.0.1:19832/herald
case $HOOK in
 noarchive) ( until [ "$(psql $U -Atc "select count(*) from pg_proc where proname='herald_archive_append_all'" 2>/dev/null)" = 1 ]; do sleep 0.1; done; psql $U -f /tmp/pgpush/noarchive.sql > $OUT/hook.txt 2>&1 ) & ;;
delay) ( until psql $U -Atc "select 1" >/dev/null 2>&1; do sleep 0.2; done; psql $U -Atc "alter system set commit_delay = 1000" -c "alter system set commit_siblings = 2" -c "select pg_reload_conf()" > $OUT/hook.txt 2>&1 ) & ;;
 async) ( until psql $U -Atc "select 1" >/dev/null 2>&1; do sleep 0.2; done; psql $U -Atc "alter system set synchronous_commit = off" -c "select pg_reload_conf()" > $OUT/hook.txt 2>&1 ) & ;;
esac
perf record -F 499 -C 0 -g -o $OUT/perf.data > $OUT/perf.log 2>&1 & P=$!
HERALD_BIN=${BIN:-/tmp/pgpush/base}/herald HERALD_LOAD_BIN=${BIN:-/tmp/pgpush/base}/herald-load /tmp/pgpush/run.sh $NAME herald-postgres
kill -INT $P; wait $P
read up _ < /proc/uptime; now=$(date +%s.%N); boot=$(echo "$now - $up" | bc)
w=$(for t in $(awk -F'\t' '$6 ~ /herald_store_offline/ {print $1}' $OUT/activity.tsv | sed -n '1p;$p'); do echo "$(date -d "2026-12-07 $t UTC" +%s.%N) - $boot" | bc; done | tr '\n' ' ')
set -- $w; a=$1; b=${2:-$1}
perf script -i $OUT/perf.data -F time,comm 2>/dev/null | awk -v a=$a -v b=$b '{t=$2+0; if (t>=a-0.1 && t<=b+0.2){n[$1]++; tot++}} END{printf "window %.2fs samples %d pg %d herald %d other %d\n", b-a+0.3, tot, n["postgres"], n["tokio-rt-worker"], tot-n["postgres"]-n["tokio-rt-worker"]}' > $OUT/cpu-window.txt
echo "$NAME $(grep -o 'p50 (ms) ↓ | [0-9.]*' $OUT/compare.txt) $(grep -o 'p99 (ms) ↓ | [0-9.]*' $OUT/compare.txt) load $(awk '{print $(NF-2)}' $OUT/uptime-before.txt) $(cat $OUT/cpu-window.txt)"
