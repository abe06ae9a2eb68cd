# Prosody as a live federation peer for docker-compose.yml (profile `conformance`): Debian bookworm's prosody
# 0.12 and prosody-modules (mod_cloud_notify, XEP-0357), domain prosody.test, configuration in prosody.cfg.lua;
# lua-unbound (a Recommends of prosody) is its DNS resolver, reading /etc/resolv.conf and /etc/hosts.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates lua-unbound openssl prosody prosody-modules \
    && rm -rf /var/lib/apt/lists/*
COPY conformance/docker/prosody.cfg.lua /etc/prosody/prosody.cfg.lua
COPY conformance/docker/peer-certificate.sh /usr/local/bin/peer-certificate
EXPOSE 5222 5269
VOLUME ["/var/lib/prosody"]
# Debian's package creates the prosody system user with a UID chosen at install time, so it is named.
# hadolint ignore=DL3066
USER prosody
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5222"]
# A self-signed certificate for prosody.test on first start (peers authenticate it with dialback), then Prosody in
# the foreground.
CMD ["bash", "-c", "peer-certificate prosody.test /var/lib/prosody/prosody.test && exec prosody -F"]
