#!/usr/bin/env bash
# count.sh NAME: statements and commits of the push phase of a "count" run (run.sh NAME herald-postgres BIN count):
# every statement PostgreSQL logged, by kind, and the commits the sampler saw, divided by 1000 pushes.
OUT=/tmp/pgpush/$1
DIR=$(grep -o 'kept /tmp/herald-bench[^ ]*' "$OUT/compare.err" | awk '{print $2}')
LOG=$(ls "$DIR"/pg/pg.log* 2>/dev/null | head -1)
grep -o 'statement: .*\|execute [^:]*: .*' "$LOG" | sed -E 's/^(statement|execute [^:]*): //' | cut -c1-60 | sort | uniq -c | sort -rn > "$OUT/statements.txt"
echo "log: $LOG"; head -30 "$OUT/statements.txt"
echo "total statements: $(awk '{s+=$1} END{print s}' "$OUT/statements.txt")"
echo "commits (xact_commit, first and last sample):"; sed -n '2p;$p' "$OUT/wal.tsv"
