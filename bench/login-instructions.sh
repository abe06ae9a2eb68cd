#!/usr/bin/env bash
# Counts the user-space instructions Herald executes per login (STARTTLS, full TLS handshake,
# SCRAM-SHA-1, bind, close) with valgrind's callgrind. Instruction counts do not drift with what else
# the machine is doing, so this shows small changes to the login path that CPU-time figures from a
# shared machine cannot. Kernel work (TCP) is not counted, and under valgrind ring takes its generic
# code paths, so the cryptography's share is larger than in a native run.
#
# Usage: bench/login-instructions.sh [logins (default 300)] [herald binary] [herald-load binary]
# Needs: valgrind, openssl; release builds of herald and herald-load (built here if not given).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOGINS=${1:-300}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
HERALD=${2:-}
LOAD=${3:-}
if [ -z "$HERALD" ] || [ -z "$LOAD" ]; then
    (cd "$ROOT" && cargo build --release -p herald -p herald-load >&2)
    HERALD=${HERALD:-$CARGO_TARGET_DIR/release/herald}
    LOAD=${LOAD:-$CARGO_TARGET_DIR/release/herald-load}
fi
PORT=27822
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "port $PORT is already in use" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/herald-callgrind.XXXXXX)
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat > "$WORK/herald.toml" <<EOF
[server]
domains = ["localhost"]
data_dir = "$WORK/data"
[c2s]
listen = "127.0.0.1:$PORT"
direct_tls_listen = "127.0.0.1:$((PORT + 1))"
[registration]
allow_in_band = true
[[tls.certificates]]
domain = "localhost"
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"
EOF

# Counting starts switched off and is switched on only for the measured logins.
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out" \
    "$HERALD" --config "$WORK/herald.toml" serve >"$WORK/herald.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.5
done
run_load() {
    "$LOAD" run --name herald --port "$PORT" --mechanism scram-sha-1 --sessions 50 --timeout-secs 120 "$@" \
        >/dev/null 2>"$WORK/load.log"
}
run_load --phases accounts
# Warm-up: the first logins fill caches and pools that a running server already has.
run_load --phases login --logins 50 --login-concurrency 5
callgrind_control -i on "$SERVER_PID" >/dev/null
run_load --phases login --logins "$LOGINS" --login-concurrency 5
callgrind_control -i off "$SERVER_PID" >/dev/null
kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

callgrind_annotate "$WORK/callgrind.out" >"$WORK/annotated.txt" 2>/dev/null
TOTAL=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$WORK/annotated.txt")
echo "$HERALD: $((TOTAL / LOGINS)) user-space instructions per login ($LOGINS logins)"
