#!/usr/bin/env bash
# queue-ab.sh FROM TO: quiet-machine pairs of the same base binary, the run's cluster as initdb left it
# (--pg-fresh-wal, q-fresh-N) then with recycled WAL segments ready (q-warm-N); each run waits for
# quiet.sh first (its result goes to queue.log). Needs not-applied-compare-wal-segments.patch applied
# (compare.sh's --pg-fresh-wal).
cd "$(dirname "$0")/.."
for i in $(seq "$1" "$2"); do
    for kind in fresh warm; do
        echo "q-$kind-$i: $(scripts/quiet.sh 300)" >> queue.log
        if [ $kind = fresh ]; then opt=--pg-fresh-wal; else opt=; fi
        scripts/run.sh q-$kind-$i /work/wt-pg/base-bin $opt | tr '\n' ' ' | sed 's/| push: send-to-provider//g' >> queue.log
        echo >> queue.log
    done
done
