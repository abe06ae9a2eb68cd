#!/usr/bin/env bash
# run-disk-busy.sh NAME BINDIR: run.sh while another process keeps the disk busy with direct,
# fsynced 256 MB writes (dd on CPU 1, beside the load generator, not on the server's CPU 0), so that
# PostgreSQL's WAL flushes are slow throughout (pg_test_fsync here: fdatasync 68 us alone, 6 ms with
# it). A stand-in for the occasional 60-250 ms flush of this VM's disk, to compare binaries under it.
set -u
NAME=$1; BIN=$2
DIR=$(cd "$(dirname "$0")/.." && pwd)
SCRATCH=$(mktemp /work/disk-busy.XXXXXX)
( while true; do sleep "${BUSY_PAUSE:-0}"; taskset -c 1 dd if=/dev/zero of="$SCRATCH" bs=4M count="${BUSY_BLOCKS:-64}" oflag=direct conv=fsync 2>/dev/null; done ) &
BUSY=$!
bash "$DIR/scripts/run.sh" "$NAME" "$BIN"
kill $BUSY; wait $BUSY 2>/dev/null; pkill -f "of=$SCRATCH"
rm -f "$SCRATCH"
