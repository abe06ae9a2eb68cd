#!/usr/bin/env bash
# quiet.sh [MAX_SECONDS]: waits (at most MAX_SECONDS, default 600) until the machine has been at least
# 90 % idle over two consecutive 2-second windows; prints how long it waited and the idle figures.
MAX=${1:-600}
idle() { # percent idle over 2 s, from /proc/stat
    read -r _ u n s i w q sq st _ < /proc/stat; t1=$((u+n+s+i+w+q+sq+st)); i1=$i
    sleep 2
    read -r _ u n s i w q sq st _ < /proc/stat; t2=$((u+n+s+i+w+q+sq+st)); i2=$i
    echo $(( 100 * (i2 - i1) / (t2 - t1) ))
}
start=$SECONDS
while [ $((SECONDS - start)) -lt "$MAX" ]; do
    a=$(idle); b=$(idle)
    if [ "$a" -ge 90 ] && [ "$b" -ge 90 ]; then echo "quiet after $((SECONDS - start)) s (idle $a %, $b %)"; exit 0; fi
done
echo "not quiet after $MAX s (idle $a %, $b %)"; exit 1
