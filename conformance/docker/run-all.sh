#!/usr/bin/env bash
# What the compose `runner` service runs (docker-compose.yml, profile `conformance`; also runnable on a machine
# with the packages of the `conformance-runner` stage of ./Dockerfile): every conformance scenario against every
# server, each run compared with conformance/baseline.json, then one results table.
#   1. conformance/run.py against Herald on SQLite and on PostgreSQL (CONFORMANCE_POSTGRES_URL), Prosody and ejabberd;
#   2. conformance/run.py --federation: Herald, Prosody and ejabberd federating on loopback addresses;
#   3. live_peers.py: the compose peers (herald.test, prosody.test, ejabberd.test) answer on 5222 and 5269;
#   4. run.py --results: the same RESULTS.md as without Docker (scenarios by server, XEP-0479 levels) from
#      conformance/out/*.json, printed and written to conformance/out/RESULTS.md (mounted from the host).
# Every step runs even if an earlier one failed; the exit status is 1 if any failed (a regression against the
# baseline, a peer that does not answer, a run that could not start).
set -uo pipefail
cd "$(dirname "$0")/../.."
HERALD=${HERALD_BIN:-/usr/local/bin/herald}
CB_CLIENT=${CB_CLIENT_BIN:-/usr/local/bin/herald_cb_client} # our channel-binding client (herald-cb/* scenarios)
PYTHON=${PYTHON:-python3}
LIVE_PEERS=${LIVE_PEERS-herald.test prosody.test ejabberd.test} # LIVE_PEERS= skips the check

declare -a failed=()
step() { # step NAME COMMAND...
    local name=$1
    shift
    echo "==> $name"
    "$@" || failed+=("$name")
}

rm -f conformance/out/*.json
step "herald/sqlite" "$PYTHON" conformance/run.py --herald "$HERALD" --db sqlite --cb-client "$CB_CLIENT"
step "herald/postgres" "$PYTHON" conformance/run.py --herald "$HERALD" --db postgres --cb-client "$CB_CLIENT"
step "prosody" "$PYTHON" conformance/run.py --server prosody --cb-client "$CB_CLIENT"
step "ejabberd" "$PYTHON" conformance/run.py --server ejabberd --cb-client "$CB_CLIENT"
step "federation" "$PYTHON" conformance/run.py --federation --herald "$HERALD"
if [ -n "$LIVE_PEERS" ]; then
    # shellcheck disable=SC2086 # a list of domains
    step "live peers" "$PYTHON" conformance/docker/live_peers.py $LIVE_PEERS
fi
echo
"$PYTHON" conformance/run.py --results --results-file conformance/out/RESULTS.md || failed+=("results")
echo
if [ ${#failed[@]} -eq 0 ]; then
    echo "conformance: every run matches the baseline"
else
    echo "conformance: FAILED: ${failed[*]}"
    exit 1
fi
