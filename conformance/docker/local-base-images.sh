#!/usr/bin/env bash
# FOR MACHINES WITHOUT A CONTAINER REGISTRY ONLY. Users with Docker Hub need none of this: ./Dockerfile and
# docker-compose.yml default to the official images (rust, debian, node, postgres).
#
# Builds local stand-ins for the four base images, from Debian's mirror and this machine's own toolchains, so that
# ./Dockerfile and docker-compose.yml can be built and run where no registry is reachable (how they were verified
# with podman, conformance/README.md "With Docker"):
#
#   localhost/debian:bookworm-slim   debootstrap --variant=minbase bookworm, sources as in the official image, and
#                                    this machine's own CA certificates (those of $HOST_CA_BUNDLE that no Debian
#                                    package ships, e.g. a TLS-intercepting proxy's) in /usr/local/share/ca-certificates,
#                                    where update-ca-certificates (run when a stage installs ca-certificates) adds
#                                    them, so that cargo, pip and npm inside the builds reach crates.io, PyPI, npm
#   localhost/rust:1.95-bookworm     that, plus gcc/libc6-dev/make/pkg-config/git and this machine's rustup
#                                    toolchain ($RUSTUP_TOOLCHAIN_DIR), with the official image's RUSTUP_HOME,
#                                    CARGO_HOME and PATH
#   localhost/node:20-bookworm-slim  that, plus this machine's node (/usr/bin/node, >= 20.10) and npm, at the
#                                    official image's paths (/usr/local/bin/node, /usr/local/lib/node_modules/npm),
#                                    NODE_EXTRA_CA_CERTS naming the CA certificates above
#   localhost/postgres:15-bookworm   that, plus Debian's postgresql-15 and an entrypoint that honours the two
#                                    variables docker-compose.yml sets (POSTGRES_HOST_AUTH_METHOD=trust,
#                                    POSTGRES_DB) and listens on 5432 with the data in /var/lib/postgresql/data
#
# Then, with the engine's API (podman: `podman system service --time=0 unix:///run/podman/podman.sock &` and
# DOCKER_HOST=unix:///run/podman/podman.sock):
#   export RUST_IMAGE=localhost/rust:1.95-bookworm RUNTIME_IMAGE=localhost/debian:bookworm-slim \
#          NODE_IMAGE=localhost/node:20-bookworm-slim POSTGRES_IMAGE=localhost/postgres:15-bookworm
#   docker-compose --profile conformance up --build --exit-code-from runner
#
# Needs: root, debootstrap, podman (or ENGINE=docker), rustup's toolchain and node on this machine.
# Usage: conformance/docker/local-base-images.sh [debian|rust|node|postgres ...]   (default: all four)
set -euo pipefail

ENGINE=${ENGINE:-podman}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
RUSTUP_HOME_DIR=${RUSTUP_HOME_DIR:-${RUSTUP_HOME:-$HOME/.rustup}}
RUSTUP_TOOLCHAIN_DIR=${RUSTUP_TOOLCHAIN_DIR:-$RUSTUP_HOME_DIR/toolchains/stable-x86_64-unknown-linux-gnu}
RUSTUP_BIN=${RUSTUP_BIN:-$(command -v rustup || echo "$HOME/.cargo/bin/rustup")}
NODE_BIN=${NODE_BIN:-$(command -v node)}
NPM_DIR=${NPM_DIR:-$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")}
HOST_CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
DEBIAN=localhost/debian:bookworm-slim

work=$(mktemp -d /var/tmp/herald-base-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

image_debian() {
    local root=$work/rootfs
    debootstrap --variant=minbase bookworm "$root" "$MIRROR"
    # The official image's sources (bookworm, bookworm-updates, bookworm-security) and an empty package cache.
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    # This machine's extra CAs, one file each (update-ca-certificates wants one certificate per .crt), and all of
    # them in one PEM for NODE_EXTRA_CA_CERTS.
    mkdir -p "$root/usr/local/share/ca-certificates"
    python3 - "$HOST_CA_BUNDLE" "$root/usr/local/share/ca-certificates" <<'PY'
import glob, re, sys
pem = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
packaged = {c.replace("\n", "") for f in glob.glob("/usr/share/ca-certificates/**/*.crt", recursive=True)
            for c in pem.findall(open(f).read())}
extra = [c for c in pem.findall(open(sys.argv[1]).read()) if c.replace("\n", "") not in packaged]
for i, cert in enumerate(extra):
    open(f"{sys.argv[2]}/local-extra-{i}.crt", "w").write(cert + "\n")
open(f"{sys.argv[2]}/local-extra.pem", "w").write("".join(c + "\n" for c in extra))
print(f"{len(extra)} CA certificate(s) of {sys.argv[1]} not from Debian's packages added", file=sys.stderr)
PY
    tar -C "$root" -c . | "$ENGINE" import --change 'CMD ["bash"]' - "$DEBIAN"
    rm -rf "$root"
}

image_rust() {
    local ctx=$work/rust
    mkdir -p "$ctx/rustup/toolchains" "$ctx/cargo/bin"
    cp -a "$RUSTUP_TOOLCHAIN_DIR" "$ctx/rustup/toolchains/stable-x86_64-unknown-linux-gnu"
    printf 'version = "12"\ndefault_toolchain = "stable-x86_64-unknown-linux-gnu"\nprofile = "minimal"\n' \
        >"$ctx/rustup/settings.toml"
    cp "$RUSTUP_BIN" "$ctx/cargo/bin/rustup"
    for proxy in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
        ln -s rustup "$ctx/cargo/bin/$proxy"
    done
    cat >"$ctx/Containerfile" <<EOF
FROM $DEBIAN
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
        ca-certificates gcc git libc6-dev make pkg-config \\
    && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
RUN rustc --version && cargo --version
EOF
    "$ENGINE" build -t localhost/rust:1.95-bookworm "$ctx"
}

image_node() {
    local ctx=$work/node
    mkdir -p "$ctx"
    cp "$NODE_BIN" "$ctx/node"
    cp -a "$NPM_DIR" "$ctx/npm"
    cat >"$ctx/Containerfile" <<EOF
FROM $DEBIAN
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/local-extra.pem
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
    && node --version && npm --version
CMD ["node"]
EOF
    "$ENGINE" build -t localhost/node:20-bookworm-slim "$ctx"
}

image_postgres() {
    local ctx=$work/postgres
    mkdir -p "$ctx"
    # The subset of the official image's entrypoint that docker-compose.yml relies on.
    cat >"$ctx/entrypoint.sh" <<'EOF'
#!/bin/sh
set -eu
export PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ "$(id -u)" = 0 ]; then
    install -d -o postgres -g postgres -m 0700 "$PGDATA"
    install -d -o postgres -g postgres /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb -U postgres --encoding=UTF8 --locale=C.UTF-8 --auth="${POSTGRES_HOST_AUTH_METHOD:-trust}" -D "$PGDATA"
    echo "host all all all ${POSTGRES_HOST_AUTH_METHOD:-trust}" >>"$PGDATA/pg_hba.conf"
    if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
        postgres --single -D "$PGDATA" postgres <<SQL
CREATE DATABASE "$POSTGRES_DB";
SQL
    fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
EOF
    cat >"$ctx/Containerfile" <<EOF
FROM $DEBIAN
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \\
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY entrypoint.sh /usr/local/bin/postgres-entrypoint
EXPOSE 5432
VOLUME ["/var/lib/postgresql/data"]
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
EOF
    chmod 0755 "$ctx/entrypoint.sh"
    "$ENGINE" build -t localhost/postgres:15-bookworm "$ctx"
}

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(debian rust node postgres)
for image in "${images[@]}"; do
    case $image in
    debian | rust | node | postgres) "image_$image" ;;
    *)
        echo "unknown image $image (debian, rust, node, postgres)" >&2
        exit 2
        ;;
    esac
done
