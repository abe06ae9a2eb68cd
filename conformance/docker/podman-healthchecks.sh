#!/bin/sh
# FOR PODMAN WITHOUT SYSTEMD ONLY (Docker Engine runs HEALTHCHECKs itself). Podman schedules a container's
# HEALTHCHECK with a systemd timer; where there is no systemd none runs, the container stays "starting", and
# docker-compose.yml's `depends_on: condition: service_healthy` (herald-postgres and the runner wait for postgres)
# waits for ever. This runs every running container's health check every INTERVAL seconds (default 2) until killed:
#   conformance/docker/podman-healthchecks.sh &
set -u
interval=${1:-2}
while :; do
    for id in $(podman ps -q); do
        podman healthcheck run "$id" >/dev/null 2>&1
    done
    sleep "$interval"
done
