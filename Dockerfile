# syntax=docker/dockerfile:1
# Herald's image, and the conformance runner built from the same compilation.
#
#   docker build -t herald .                                  the server (target `runtime`, the default)
#   docker build --target conformance-runner -t herald-conf . the scenarios' runner (docker-compose.yml, profile
#                                                             `conformance`)
#
# Stages: `chef` (cargo-chef on the Rust image), `planner` (the dependency recipe: manifests and Cargo.lock only),
# `builder` (dependencies compiled in a layer of their own, reused until Cargo.toml/Cargo.lock change, then the
# herald binary), `conformance-runner`, and `runtime` last so that a plain `docker build` gives the server.
#
# Configuration is Herald's own: herald.toml in the working directory /etc/herald (mount it there) and any key as
# HERALD_<SECTION>__<KEY> (README.md, "Configuration"). The image sets only where data lives and the listeners.
# Certificates: without configured ones Herald generates a self-signed certificate per domain under
# /var/lib/herald/certs; real ones go in the /etc/herald/certs volume, named with
#   HERALD_TLS__CERTIFICATES='[{domain="example.org", cert="/etc/herald/certs/example.org.pem", key="/etc/herald/certs/example.org.key"}]'

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
# Node.js for xmpp.js, the conformance runner's second client library (@xmpp/client 0.14 needs Node >= 20.10).
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION=0.1.77
RUN cargo install --locked cargo-chef --version "${CARGO_CHEF_VERSION}"
WORKDIR /build

FROM chef AS planner
COPY Cargo.toml Cargo.lock ./
COPY server server
COPY relay relay
COPY storage storage
COPY tests tests
COPY load load
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# The release profile keeps line tables for profiling (Cargo.toml); the image does not need them.
ENV CARGO_PROFILE_RELEASE_DEBUG=0
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --package herald --bin herald --recipe-path recipe.json
COPY Cargo.toml Cargo.lock ./
COPY server server
COPY relay relay
COPY storage storage
COPY tests tests
COPY load load
# herald_cb_client: our own SCRAM -PLUS client for the conformance runner's herald-cb/* scenarios.
RUN cargo build --release --locked --package herald --bin herald --package herald-tests --bin herald_cb_client \
    && install -D -m 0755 target/release/herald /out/herald \
    && install -D -m 0755 target/release/herald_cb_client /out/herald_cb_client

# xmpp.js for the conformance runner, installed from its lock file.
FROM ${NODE_IMAGE} AS xmppjs
WORKDIR /xmppjs
COPY conformance/clients/xmppjs/package.json conformance/clients/xmppjs/package-lock.json ./
RUN npm ci --no-audit --no-fund

# The conformance runner (docker-compose.yml, profile `conformance`): the same Debian packages and Python client
# as the no-Docker run (.ci/run), so both print the same table. Prosody (with prosody-modules: mod_cloud_notify)
# and ejabberd (mod_push) are here because conformance/run.py starts every server it tests itself, with generated
# configuration; PostgreSQL is the compose service `postgres` (CONFORMANCE_POSTGRES_URL). lua-unbound (a Recommends
# of prosody, so named here) is the resolver the federation runs point at their DNS stub; without it Prosody falls
# back to its old resolver, which reads only /etc/resolv.conf, and every federation pair with Prosody fails.
FROM ${RUNTIME_IMAGE} AS conformance-runner
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates ejabberd lua-unbound openssl postgresql-client procps prosody prosody-modules python3 \
        python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY conformance/requirements.txt /opt/conformance/requirements.txt
RUN python3 -m venv /opt/conformance/venv \
    && /opt/conformance/venv/bin/pip install --no-cache-dir -r /opt/conformance/requirements.txt
ENV PATH=/opt/conformance/venv/bin:$PATH
COPY --from=builder /out/herald /usr/local/bin/herald
COPY --from=builder /out/herald_cb_client /usr/local/bin/herald_cb_client
COPY --from=xmppjs /usr/local/bin/node /usr/local/bin/node
WORKDIR /herald
COPY conformance conformance
COPY --from=xmppjs /xmppjs/node_modules conformance/clients/xmppjs/node_modules
# Runs as root like CI does: the scenarios start Prosody (run_as_root in its generated config) and ejabberd.
CMD ["bash", "conformance/docker/run-all.sh"]

FROM ${RUNTIME_IMAGE} AS runtime
ARG C2S_PORT=5222
ARG C2S_DIRECT_TLS_PORT=5223
ARG S2S_PORT=5269
ARG S2S_DIRECT_TLS_PORT=5270
ARG RELAY_PORT=5281
ARG HERALD_UID=10001
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "${HERALD_UID}" herald \
    && useradd --system --uid "${HERALD_UID}" --gid herald --home-dir /var/lib/herald --shell /usr/sbin/nologin herald \
    && install -d -o herald -g herald -m 0750 /var/lib/herald /etc/herald/certs
COPY --from=builder /out/herald /usr/local/bin/herald
# Listeners on every IPv4 address of the container (Herald's own default, [::], fails where IPv6 is disabled).
# The relay listener applies once HERALD_RELAY__ENABLED=true; federation ([s2s] listen on S2S_PORT) is switched on
# the same way, with HERALD_S2S__LISTEN=0.0.0.0:5269.
ENV HERALD_SERVER__DATA_DIR=/var/lib/herald \
    HERALD_C2S__LISTEN=0.0.0.0:${C2S_PORT} \
    HERALD_C2S__DIRECT_TLS_LISTEN=0.0.0.0:${C2S_DIRECT_TLS_PORT} \
    HERALD_RELAY__LISTEN=0.0.0.0:${RELAY_PORT}
EXPOSE ${C2S_PORT} ${C2S_DIRECT_TLS_PORT} ${S2S_PORT} ${S2S_DIRECT_TLS_PORT} ${RELAY_PORT}
VOLUME ["/var/lib/herald", "/etc/herald/certs"]
# Numeric, so that runtimes checking runAsNonRoot can tell without reading /etc/passwd.
USER ${HERALD_UID}:${HERALD_UID}
WORKDIR /etc/herald
# Healthy once the client listener accepts connections (bash's /dev/tcp: no extra tool in the image). The port is
# read from HERALD_C2S__LISTEN at check time, so it follows a changed listener.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>\"/dev/tcp/127.0.0.1/${HERALD_C2S__LISTEN##*:}\""]
ENTRYPOINT ["herald"]
CMD ["serve"]
