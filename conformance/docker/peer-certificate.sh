#!/bin/sh
# peer-certificate DOMAIN PREFIX: writes PREFIX.key and PREFIX.crt, a self-signed certificate for DOMAIN valid for a
# year, unless PREFIX.crt already exists. Used by the live federation peers of docker-compose.yml (profile
# `conformance`), which authenticate each other with Server Dialback (XEP-0220), not with these certificates.
set -eu
domain=$1
prefix=$2
[ -f "$prefix.crt" ] && exit 0
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$domain" \
    -addext "subjectAltName=DNS:$domain" -keyout "$prefix.key" -out "$prefix.crt" 2>/dev/null
