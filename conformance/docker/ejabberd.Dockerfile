# ejabberd as a live federation peer for docker-compose.yml (profile `conformance`): Debian bookworm's ejabberd
# 23.01 with mod_push (XEP-0357), domain ejabberd.test, configuration in ejabberd.yml.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates ejabberd openssl procps \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o ejabberd -g ejabberd /run/ejabberd
COPY conformance/docker/ejabberd.yml /etc/ejabberd/ejabberd.yml
COPY conformance/docker/peer-certificate.sh /usr/local/bin/peer-certificate
EXPOSE 5222 5269
VOLUME ["/var/lib/ejabberd"]
# Debian's package creates the ejabberd system user with a UID chosen at install time, so it is named.
# hadolint ignore=DL3066
USER ejabberd
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=5 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5222"]
# A self-signed certificate (and key, in one PEM as ejabberd reads it) for ejabberd.test on first start, then
# ejabberd in the foreground.
CMD ["bash", "-c", "peer-certificate ejabberd.test /var/lib/ejabberd/ejabberd.test && cat /var/lib/ejabberd/ejabberd.test.crt /var/lib/ejabberd/ejabberd.test.key > /var/lib/ejabberd/ejabberd.test.pem && exec ejabberdctl foreground"]
