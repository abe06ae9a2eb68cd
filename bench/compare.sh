#!/usr/bin/env bash
# Starts Herald (SQLite, PostgreSQL), Prosody and ejabberd one after another, each from scratch in a
# temporary directory on non-default loopback ports, runs the same herald-load phases against each,
# and prints one table with Herald's figures as ratios to each peer's.
#
# Usage: bench/compare.sh [--servers "herald-sqlite herald-postgres prosody ejabberd"]
#                         [--write BENCHMARKS.md] [--keep] [--shared-cpus] [--federation [--peer-archive | --no-archive]]
#                         [--pg-fresh-wal]
#                         [-- extra herald-load run arguments]
# --federation starts each server twice, as domains a.fed.test (127.0.6.1) and b.fed.test (127.0.6.2)
# federating with each other (server-to-server on port 5269 of each address), and runs the load with
# the second one as --peer-*: the federation phase chats across them, e.g.
#   bench/compare.sh --federation --servers "herald-sqlite prosody ejabberd" -- --phases federation
# Prosody finds the other domain through a hosts file of the run's own (its unbound `hoststxt`), ejabberd
# through a DNS stub of the run, Herald through `[[s2s.peers]] address`; both domains' certificates
# are signed by one CA of the run, which Herald trusts (`[s2s] ca_files`), so Herald pairs authenticate
# with SASL EXTERNAL; Prosody and ejabberd, which do not trust it, with dialback.
# Herald archives every chat message (XEP-0313) on both sides; the federated Prosody and ejabberd pairs
# archive nothing unless --peer-archive is given, which loads Prosody's mod_mam (default policy: archive
# everything, internal storage) and ejabberd's mod_mam with `default: always` (its default store, Mnesia),
# so that all three do the same work per message; --no-archive turns Herald's archive off instead
# (`[archive] enabled = false`), so that none archives.
# e.g. the PEP phase alone (XEP-0163 notifications and the XEP-0115 caps burst; ejabberd as configured
# here has no mod_pubsub, so it reports the phase unavailable):
#   bench/compare.sh --servers "herald-sqlite herald-postgres prosody" -- --phases pep --pep-contacts 100
# By default each server (with its database) runs on CPU 0 and the load generator on CPU 1, so every
# server is measured on one core of its own and the generator never takes CPU time from it; with
# --shared-cpus both float over every CPU, as before.
# herald-postgres runs on a PostgreSQL cluster made for the run, which is first given the recycled WAL
# segment files that a cluster that has been running keeps ahead of its WAL (see start_postgres);
# --pg-fresh-wal leaves it as initdb made it, with one segment, so that every next one is created
# (zero-filled, 16 MB, fsynced) during the run while every commit waits.
# Env:   HERALD_BIN, HERALD_LOAD_BIN: prebuilt binaries (default: release builds made here).
#        HERALD_BENCH_PG_OPTIONS: extra `postgres` options for the run's cluster, for diagnosis only, e.g.
#        "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all".
# Needs: prosody and ejabberd from Debian (apt-get install -y prosody ejabberd), PostgreSQL binaries
#        (initdb, pg_ctl) for herald-postgres, openssl. Run as root (ejabberd and PostgreSQL are started
#        as their own system users).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVERS="herald-sqlite herald-postgres prosody ejabberd"
WRITE=""
KEEP=0
FEDERATION=0
PEER_ARCHIVE=0
HERALD_ARCHIVE=true
PIN=1
PG_FRESH_WAL=0
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --servers) SERVERS=$2; shift 2 ;;
        --write) WRITE=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --shared-cpus) PIN=0; shift ;;
        --pg-fresh-wal) PG_FRESH_WAL=1; shift ;;
        --federation) FEDERATION=1; shift ;;
        --peer-archive) PEER_ARCHIVE=1; shift ;;
        --no-archive) HERALD_ARCHIVE=false; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

# CPU placement: the server under test on CPU 0, the load generator on CPU 1 (see the usage).
SERVER_CPU=()
LOAD_CPU=()
if [ "$PIN" = 1 ]; then
    if [ "$(nproc)" -lt 2 ]; then
        echo "pinning needs 2 CPUs; use --shared-cpus" >&2
        exit 2
    fi
    SERVER_CPU=(taskset -c 0)
    LOAD_CPU=(taskset -c 1)
fi

# 10,000 idle sessions need far more descriptors than the usual 1024: take the hard limit.
ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/herald-bench.XXXXXX)
chmod 755 "$WORK"
STARTED_PID=""
STOP_CMD=""
PG_STOP=""
DNS_PID=""
cleanup() {
    if [ -n "$DNS_PID" ]; then kill "$DNS_PID" 2>/dev/null || true; fi
    if [ -n "$STOP_CMD" ]; then eval "$STOP_CMD" >/dev/null 2>&1 || true; fi
    # shellcheck disable=SC2086 # one or two pids (--federation)
    if [ -n "$STARTED_PID" ]; then kill $STARTED_PID 2>/dev/null || true; fi
    if [ -n "$PG_STOP" ]; then eval "$PG_STOP" >/dev/null 2>&1 || true; fi
    if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap cleanup EXIT

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${HERALD_LOAD_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -p herald-load >&2)
    HERALD_LOAD_BIN=$CARGO_TARGET_DIR/release/herald-load
fi
cp "$HERALD_LOAD_BIN" "$WORK/herald-load"
LOAD=$WORK/herald-load
case " $SERVERS " in *" herald-"*)
    if [ -z "${HERALD_BIN:-}" ]; then
        (cd "$ROOT" && cargo build --release -p herald >&2)
        HERALD_BIN=$CARGO_TARGET_DIR/release/herald
    fi
    cp "$HERALD_BIN" "$WORK/herald" ;;
esac

# One self-signed ECDSA P-256 certificate for every server, so TLS costs the same everywhere.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/combined.pem"
chmod 644 "$WORK"/*.pem

# Waits (bounded) until something listens on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 1 120); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    echo "nothing listening on port $1 after 60s" >&2
    return 1
}

start_prosody() { # port -> sets PID
    local dir=$WORK/prosody port=$1
    mkdir -p "$dir/data"
    cat > "$dir/prosody.cfg.lua" <<EOF
pidfile = "$dir/prosody.pid"
daemonize = false
data_path = "$dir/data"
plugin_paths = {}
admins = {}
log = { warn = "$dir/prosody.log" }
-- "pep": XEP-0163 with its XEP-0115 caps handling (Debian's own prosody.cfg.lua enables it too); the pep
-- phase publishes to it, and a server without it answers the publish with an error.
modules_enabled = { "roster", "saslauth", "tls", "disco", "register", "offline", "smacks", "ping", "presence", "message", "iq", "mam", "pep" }
modules_disabled = { "s2s" }
c2s_ports = { $port }
c2s_direct_tls_ports = { $((port + 1)) }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = {}
http_ports = {}
https_ports = {}
c2s_require_encryption = true
-- Same accept backlog as the others (Herald: tokio default 1024; ejabberd: set below).
network_settings = { tcp_backlog = 1024 }
allow_registration = true
-- Registration throttles off: the benchmark registers thousands of accounts from loopback.
min_seconds_between_registrations = 0
registration_throttle_max = 100000000
authentication = "internal_hashed"
-- Same SCRAM iteration count as Herald and ejabberd (Prosody 0.12 defaults to 10000).
default_iteration_count = 4096
-- Prosody's default storage (Debian's prosody.cfg.lua leaves storage = "sql" commented out): flat files,
-- archives included (mod_mam over the internal archive store).
storage = "internal"
-- XEP-0313 like Herald, which archives every chat message: mod_mam archives by default
-- (default_archive_policy = true); the default expiry (1 week) would run mod_mam's cleanup.
archive_expires_after = "never"
-- The internal store keeps at most 10,000 messages per archive by default and truncates the oldest
-- beyond: raised so the archive phase queries the same archive on every server.
storage_archive_item_limit = 1000000
certificates = "$dir/certs"
ssl = { certificate = "$WORK/cert.pem", key = "$WORK/key.pem" }
VirtualHost "localhost"
EOF
    chown -R prosody "$dir"
    # setpriv, not runuser/su: PAM would reset the descriptor limit to 1024. It execs, so $! is Prosody.
    "${SERVER_CPU[@]}" setpriv --reuid=prosody --regid=prosody --init-groups \
        prosody --config "$dir/prosody.cfg.lua" >"$dir/stdout.log" 2>&1 &
    PID=$!
    STARTED_PID=$PID
    wait_port "$port"
}

start_ejabberd() { # port -> sets PID
    local dir=$WORK/ejabberd port=$1
    mkdir -p "$dir/db" "$dir/log"
    cat > "$dir/ejabberd.yml" <<EOF
hosts: [localhost]
loglevel: warning
certfiles: ["$WORK/combined.pem"]
listen:
  - {port: $port, ip: "127.0.0.1", module: ejabberd_c2s, starttls_required: true, max_stanza_size: 262144, shaper: none, access: all, backlog: 1024}
  - {port: $((port + 1)), ip: "127.0.0.1", module: ejabberd_c2s, tls: true, max_stanza_size: 262144, shaper: none, access: all, backlog: 1024}
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
registration_timeout: infinity
s2s_access: none
acl:
  local: {user_regexp: ""}
access_rules:
  register: {allow: all}
modules:
  mod_disco: {}
  mod_offline: {}
  mod_ping: {}
  mod_register: {access: register, ip_access: all}
  mod_roster: {}
  mod_stream_mgmt: {}
EOF
    chown -R ejabberd "$dir"
    # As the ejabberd user via setpriv: ejabberdctl run by root would `su`, and PAM would reset the
    # descriptor limit to 1024.
    EJ="${SERVER_CPU[*]} setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME=/var/lib/ejabberd ejabberdctl --config-dir $dir --config $dir/ejabberd.yml --spool $dir/db --logs $dir/log --node herald_bench@localhost"
    STOP_CMD="$EJ stop"
    $EJ start
    for _ in $(seq 1 120); do
        if $EJ status >/dev/null 2>&1; then break; fi
        sleep 0.5
    done
    wait_port "$port"
    PID=$(pgrep -f -- "herald_bench@localhost" | while read -r p; do
        if [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "beam.smp" ]; then echo "$p"; fi; done | head -1)
    STARTED_PID=$PID # killed after `ejabberdctl stop` too (see start_ejabberd_pair)
}

start_postgres() { # -> sets PG_URL
    local dir=$WORK/pg port=19832
    mkdir -p "$dir"
    chown postgres "$dir"
    runuser -u postgres -- initdb -D "$dir/data" -A trust -U postgres >/dev/null
    "${SERVER_CPU[@]}" runuser -u postgres -- pg_ctl -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 ${HERALD_BENCH_PG_OPTIONS:-}" -l "$dir/pg.log" -w start >/dev/null
    runuser -u postgres -- createdb -h 127.0.0.1 -p $port -U postgres herald
    PG_STOP="runuser -u postgres -- pg_ctl -D $dir/data -m fast stop"
    if [ "$PG_FRESH_WAL" = 0 ]; then
        # A cluster from initdb has one WAL segment file, and each next one is created when the WAL
        # reaches it: zero-filled (16 MB) and fsynced while every commit waits (wait events
        # IO/WALInitWrite, IO/WALInitSync). In the push phase that held every push up by 30-50 ms at
        # the same point of every run. A cluster that has been running does not do that: each
        # checkpoint renames the segments it no longer needs into the next ones (wal_recycle, up to
        # min_wal_size, 80 MB by default). So: five segment switches, then a checkpoint, which
        # leaves the recycled segments ahead of the WAL, as on a server that has run for a while.
        local switches=() i
        for i in 1 2 3 4 5; do
            switches+=(-c "INSERT INTO herald_bench_wal VALUES ($i)" -c "SELECT pg_switch_wal()")
        done
        runuser -u postgres -- psql -h 127.0.0.1 -p $port -U postgres -qAt herald \
            -c "CREATE TABLE herald_bench_wal (x INT)" "${switches[@]}" \
            -c "DROP TABLE herald_bench_wal" -c "CHECKPOINT" >/dev/null
    fi
    PG_URL="postgres://postgres@127.0.0.1:$port/herald"
}

start_herald() { # port storage-url -> sets PID
    local dir=$WORK/herald-$RANDOM port=$1 url=$2
    mkdir -p "$dir"
    cat > "$dir/herald.toml" <<EOF
[server]
domains = ["localhost"]
data_dir = "$dir/data"
[storage]
url = "$url"
[c2s]
listen = "127.0.0.1:$port"
direct_tls_listen = "127.0.0.1:$((port + 1))"
[registration]
allow_in_band = true
# The accounts phase registers thousands of accounts in-band from 16 loopback addresses.
per_address_per_hour = 0
[limits]
max_connections = 100000
[relay]
enabled = true
listen = "127.0.0.1:$((port + 59))"
public_url = "http://127.0.0.1:$((port + 59))"
# The push phase's stand-in provider is a plain-http loopback endpoint (loopback is refused by default).
allow_plain_http = true
allowed_endpoint_networks = ["127.0.0.0/8"]
[relay.limits]
# 1,000 device registrations from a few loopback addresses within seconds.
account_attempts = 1000000
per_account = 100000
[[tls.certificates]]
domain = "localhost"
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"
EOF
    "${SERVER_CPU[@]}" "$WORK/herald" --config "$dir/herald.toml" serve >"$dir/herald.log" 2>&1 &
    PID=$!
    STARTED_PID=$PID
    wait_port "$port"
}

# --federation: two domains on two loopback addresses, certificates from one CA of the run, and a hosts
# file of the run's own naming both (see the usage).
FED_A=a.fed.test FED_A_IP=127.0.6.1 FED_B=b.fed.test FED_B_IP=127.0.6.2
if [ "$FEDERATION" = 1 ]; then
    printf '%s %s\n%s %s\n' "$FED_A_IP" "$FED_A" "$FED_B_IP" "$FED_B" > "$WORK/hosts"
    # A DNS stub of the run (the conformance suite's, conformance/xmppconf/dnsstub.py) answers SRV
    # `_xmpp-server._tcp` and A for both domains (RFC 6120 section 3.2.1). Prosody reads the hosts file
    # through its unbound resolver; ejabberd resolves SRV with Erlang's resolver (inetrc) and addresses
    # with libc's getaddrinfo, which reads only /etc/resolv.conf: so ejabberd starts in a mount
    # namespace of its own where /etc/resolv.conf names the stub (nothing outside changes).
    FED_DNS_IP=127.0.6.50
    PYTHONPATH="$ROOT/conformance" python3 -c '
import signal, sys
from xmppconf.dnsstub import DnsStub, Zone
zone = Zone()
for domain, address in zip(sys.argv[1::2], sys.argv[2::2]):
    zone.add_server(domain, address, 5269)
stub = DnsStub(zone, "'"$FED_DNS_IP"'", 53)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.pause()
' "$FED_A" "$FED_A_IP" "$FED_B" "$FED_B_IP" &
    DNS_PID=$!
    echo "nameserver $FED_DNS_IP" > "$WORK/resolv.conf"
    # resolv_conf "" clears the name servers, so it comes before the stub's.
    printf '{resolv_conf, ""}.\n{hosts_file, ""}.\n{nameserver, {%s}, 53}.\n{lookup, [dns]}.\n' \
        "${FED_DNS_IP//./,}" > "$WORK/inetrc"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
        -subj "/CN=Herald bench CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
    for d in "$FED_A" "$FED_B"; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$d" \
            -keyout "$WORK/$d.key" -out "$WORK/$d.csr" 2>/dev/null
        printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$d" > "$WORK/$d.ext"
        openssl x509 -req -in "$WORK/$d.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
            -CAcreateserial -days 7 -extfile "$WORK/$d.ext" -out "$WORK/$d.pem" 2>/dev/null
        cat "$WORK/$d.pem" "$WORK/$d.key" > "$WORK/$d.combined.pem"
    done
    chmod 644 "$WORK"/*.pem "$WORK"/*.key
fi

# Waits (bounded) until something listens on $1:$2.
wait_addr() {
    for _ in $(seq 1 120); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    echo "nothing listening on $1:$2 after 60s" >&2
    return 1
}

start_prosody_pair() { # port -> sets PID (domain a) and PEER_PID (domain b)
    local port=$1 pids=() d ip dir mam="" mam_settings=""
    if [ "$PEER_ARCHIVE" = 1 ]; then
        # As in start_prosody: archive every chat message, keep it, and do not truncate the archive.
        mam=', "mam"'
        mam_settings=$'archive_expires_after = "never"\nstorage_archive_item_limit = 1000000'
    fi
    for d in "$FED_A" "$FED_B"; do
        ip=$FED_A_IP; [ "$d" = "$FED_B" ] && ip=$FED_B_IP
        dir=$WORK/prosody-$d
        mkdir -p "$dir/data"
        cat > "$dir/prosody.cfg.lua" <<PROSODY
pidfile = "$dir/prosody.pid"
daemonize = false
data_path = "$dir/data"
plugin_paths = {}
admins = {}
log = { warn = "$dir/prosody.log" }
modules_enabled = { "roster", "saslauth", "tls", "disco", "register", "offline", "ping", "presence", "message", "iq", "dialback"$mam }
$mam_settings
c2s_ports = { $port }
c2s_interfaces = { "$ip" }
s2s_ports = { 5269 }
s2s_interfaces = { "$ip" }
http_ports = {}
https_ports = {}
c2s_require_encryption = true
s2s_require_encryption = true
-- The run's CA is not in the system store: dialback over TLS authenticates the peer domain.
s2s_secure_auth = false
unbound = { hoststxt = "$WORK/hosts", resolvconf = "$WORK/resolv.conf" }
network_settings = { tcp_backlog = 1024 }
allow_registration = true
min_seconds_between_registrations = 0
registration_throttle_max = 100000000
authentication = "internal_hashed"
default_iteration_count = 4096
storage = "internal"
certificates = "$dir/certs"
ssl = { certificate = "$WORK/$d.pem", key = "$WORK/$d.key" }
VirtualHost "$d"
PROSODY
        chown -R prosody "$dir"
        "${SERVER_CPU[@]}" setpriv --reuid=prosody --regid=prosody --init-groups \
            prosody --config "$dir/prosody.cfg.lua" >"$dir/stdout.log" 2>&1 &
        pids+=($!)
        STARTED_PID="${pids[*]}" # so that cleanup stops the first one if the second fails to start
        wait_addr "$ip" "$port"
    done
    PID=${pids[0]} PEER_PID=${pids[1]}
    STARTED_PID="${pids[*]}"
}

start_ejabberd_pair() { # port -> sets PID and PEER_PID
    local port=$1 d ip dir ej stops=() pids=() mam=""
    # mod_mam's `default: never` would archive nothing for users without preferences.
    if [ "$PEER_ARCHIVE" = 1 ]; then mam="  mod_mam: {default: always}"; fi
    for d in "$FED_A" "$FED_B"; do
        ip=$FED_A_IP; [ "$d" = "$FED_B" ] && ip=$FED_B_IP
        dir=$WORK/ejabberd-$d
        mkdir -p "$dir/db" "$dir/log"
        cat > "$dir/ejabberd.yml" <<EJABBERD
hosts: [$d]
loglevel: warning
certfiles: ["$WORK/$d.combined.pem"]
listen:
  - {port: $port, ip: "$ip", module: ejabberd_c2s, starttls_required: true, max_stanza_size: 262144, shaper: none, access: all, backlog: 1024}
  - {port: 5269, ip: "$ip", module: ejabberd_s2s_in, max_stanza_size: 262144, shaper: none}
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
registration_timeout: infinity
s2s_use_starttls: required
s2s_access: all
acl:
  local: {user_regexp: ""}
access_rules:
  register: {allow: all}
modules:
  mod_disco: {}
  mod_offline: {}
  mod_ping: {}
  mod_register: {access: register, ip_access: all}
  mod_roster: {}
  mod_s2s_dialback: {}
$mam
EJABBERD
        # ejabberdctl sets ERL_INETRC to the config dir's inetrc: the run's hosts file, then DNS.
        cp "$WORK/inetrc" "$dir/inetrc"
        chown -R ejabberd "$dir"
        ej="${SERVER_CPU[*]} setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME=/var/lib/ejabberd ejabberdctl --config-dir $dir --config $dir/ejabberd.yml --spool $dir/db --logs $dir/log --node herald_fed_${d%%.*}@localhost"
        stops+=("$ej stop")
        STOP_CMD=$(IFS=";"; echo "${stops[*]}") # so that cleanup stops the first one if the second fails
        # shellcheck disable=SC2016 # "$@" is expanded by the inner shell
        unshare --mount --propagation private sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"' \
            "$WORK/resolv.conf" $ej start
        for _ in $(seq 1 120); do
            if $ej status >/dev/null 2>&1; then break; fi
            sleep 0.5
        done
        wait_addr "$ip" "$port"
        pids+=("$(pgrep -f -- "herald_fed_${d%%.*}@localhost" | while read -r p; do
            if [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "beam.smp" ]; then echo "$p"; fi; done | head -1)")
    done
    STOP_CMD="${stops[0]}; ${stops[1]}"
    PID=${pids[0]} PEER_PID=${pids[1]}
    # `ejabberdctl stop` has been seen to leave a node running (its beam outlived the run): the pids
    # are killed after it as well (stop_current); epmd, shared by every Erlang node here, stays.
    STARTED_PID="${pids[*]}"
}

start_herald_pair() { # port storage-url-a storage-url-b -> sets PID and PEER_PID
    local port=$1 d ip other other_ip dir url pids=()
    for d in "$FED_A" "$FED_B"; do
        if [ "$d" = "$FED_A" ]; then ip=$FED_A_IP other=$FED_B other_ip=$FED_B_IP url=$2
        else ip=$FED_B_IP other=$FED_A other_ip=$FED_A_IP url=$3; fi
        dir=$WORK/herald-$d
        mkdir -p "$dir"
        cat > "$dir/herald.toml" <<HERALD
[server]
domains = ["$d"]
data_dir = "$dir/data"
[storage]
url = "$url"
[c2s]
listen = "$ip:$port"
direct_tls_listen = "$ip:$((port + 1))"
[registration]
allow_in_band = true
per_address_per_hour = 0
[limits]
max_connections = 100000
[archive]
enabled = $HERALD_ARCHIVE
[s2s]
listen = "$ip:5269"
ca_files = ["$WORK/ca.pem"]
[[s2s.peers]]
domain = "$other"
address = "$other_ip:5269"
[[tls.certificates]]
domain = "$d"
cert = "$WORK/$d.pem"
key = "$WORK/$d.key"
HERALD
        "${SERVER_CPU[@]}" "$WORK/herald" --config "$dir/herald.toml" serve >"$dir/herald.log" 2>&1 &
        pids+=($!)
        STARTED_PID="${pids[*]}" # so that cleanup stops the first one if the second fails to start
        wait_addr "$ip" "$port"
    done
    PID=${pids[0]} PEER_PID=${pids[1]}
    STARTED_PID="${pids[*]}"
}

stop_current() {
    if [ -n "$STOP_CMD" ]; then eval "$STOP_CMD" >/dev/null 2>&1 || true; STOP_CMD=""; fi
    if [ -n "$STARTED_PID" ]; then
        # shellcheck disable=SC2086 # one or two pids (--federation)
        kill $STARTED_PID 2>/dev/null || true
        # shellcheck disable=SC2086
        wait $STARTED_PID 2>/dev/null || true
        STARTED_PID=""
    fi
}

# Refuses to start a server on a port someone else already uses (other tests may run here).
ensure_free() {
    for p in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "port $p is already in use; stop whatever listens there or edit the ports" >&2
            exit 1
        fi
    done
}
ensure_free 15822 15823 16822 16823 17822 17823 17881 18822 18823 18881 19832

REPORTS=()
for server in $SERVERS; do
    echo "== $server" >&2
    if [ "$FEDERATION" = 1 ]; then
        case $server in
            prosody) port=15822; start_prosody_pair $port ;;
            ejabberd) port=16822; start_ejabberd_pair $port ;;
            herald-sqlite) port=17822; start_herald_pair $port "" "" ;;
            herald-postgres)
                port=18822; start_postgres
                runuser -u postgres -- createdb -h 127.0.0.1 -p 19832 -U postgres herald_b
                start_herald_pair $port "$PG_URL" "${PG_URL%/*}/herald_b" ;;
            *) echo "unknown server $server" >&2; exit 2 ;;
        esac
        "${LOAD_CPU[@]}" "$LOAD" run --name "$server" --host "$FED_A_IP" --port "$port" \
            --domain "$FED_A" --pid "$PID" --peer-host "$FED_B_IP" --peer-port "$port" \
            --peer-domain "$FED_B" --peer-pid "$PEER_PID" --mechanism scram-sha-1 \
            --json "$WORK/$server.json" "${EXTRA[@]}" >/dev/null
        REPORTS+=("$WORK/$server.json")
        stop_current
        if [ -n "$PG_STOP" ]; then eval "$PG_STOP" || true; PG_STOP=""; fi
        continue
    fi
    case $server in
        prosody) port=15822; start_prosody $port ;;
        ejabberd) port=16822; start_ejabberd $port ;;
        herald-sqlite) port=17822; start_herald $port "" ;;
        herald-postgres) port=18822; start_postgres; start_herald $port "$PG_URL" ;;
        *) echo "unknown server $server" >&2; exit 2 ;;
    esac
    RELAY=()
    case $server in herald-*) RELAY=(--relay-url "http://127.0.0.1:$((port + 59))") ;; esac
    "${LOAD_CPU[@]}" "$LOAD" run --name "$server" --port "$port" --pid "$PID" --mechanism scram-sha-1 \
        --json "$WORK/$server.json" "${RELAY[@]}" "${EXTRA[@]}" >/dev/null
    REPORTS+=("$WORK/$server.json")
    stop_current
    if [ -n "$PG_STOP" ]; then eval "$PG_STOP" || true; PG_STOP=""; fi
done

TABLE=$("$LOAD" table "${REPORTS[@]}")
echo "$TABLE"
if [ "$KEEP" = 1 ]; then echo "JSON reports in $WORK" >&2; fi

if [ -n "$WRITE" ]; then
    {
        echo "<!-- compare:begin (generated by bench/compare.sh; do not edit by hand) -->"
        echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
        echo "$(free -h | awk '/Mem:/ {print $2}') RAM. Servers: prosody $(dpkg-query -W -f '${Version}' prosody 2>/dev/null),"
        echo "ejabberd $(dpkg-query -W -f '${Version}' ejabberd 2>/dev/null), Herald $(cd "$ROOT" && git rev-parse --short HEAD)."
        echo
        if [ "$PIN" = 1 ]; then
            echo "CPUs: each server (and its database) pinned to CPU 0, the load generator to CPU 1."
            SHARED_FLAG=""
        else
            echo "CPUs: servers and the load generator share every CPU."
            SHARED_FLAG=" --shared-cpus"
        fi
        echo
        echo "Command: \`bench/compare.sh --servers \"$SERVERS\" --write $WRITE$SHARED_FLAG${EXTRA:+ -- ${EXTRA[*]}}\`"
        echo
        echo "$TABLE"
        echo "<!-- compare:end -->"
    } > "$WORK/section.md"
    if [ -f "$WRITE" ] && grep -q "<!-- compare:begin" "$WRITE"; then
        python3 - "$WRITE" "$WORK/section.md" <<'PY'
import re, sys
doc, section = open(sys.argv[1]).read(), open(sys.argv[2]).read().rstrip("\n")
doc = re.sub(r"<!-- compare:begin.*?<!-- compare:end -->", lambda _: section, doc, flags=re.S)
open(sys.argv[1], "w").write(doc)
PY
    else
        cat "$WORK/section.md" >> "$WRITE"
    fi
    echo "wrote the table into $WRITE" >&2
fi
