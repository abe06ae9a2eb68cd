#!/usr/bin/env python3
"""Checks that each live federation peer of docker-compose.yml (profile `conformance`) answers as an XMPP server:
for every domain given, a client stream header on port 5222 and a server stream header on port 5269 (RFC 6120
section 4.7) must each be answered with a stream header from that domain. Prints one line per check; exit 1 if any
failed. The domains are the services' network aliases, resolved by Docker's DNS.

    python3 conformance/docker/live_peers.py herald.test prosody.test ejabberd.test
"""

from __future__ import annotations

import re
import socket
import sys
import time

CHECKS = (("c2s", 5222, "jabber:client"), ("s2s", 5269, "jabber:server"))
# Peers that were just started may take a few seconds (ejabberd's Erlang node, Herald's certificate generation);
# one budget for all the checks, so that unreachable peers fail within it.
READY_SECONDS = 60.0


def stream_header(domain: str, port: int, namespace: str) -> str:
    """Opens a stream to `domain` on `port`; the answer up to the end of the server's stream header."""
    opening = (
        "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' "
        f"xmlns='{namespace}' to='{domain}' version='1.0'>"
    )
    with socket.create_connection((domain, port), timeout=5) as sock:
        sock.sendall(opening.encode())
        received = b""
        while b"<stream:stream" not in received or not re.search(rb"<stream:stream[^>]*>", received):
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        return received.decode(errors="replace")


def check(domain: str, port: int, namespace: str, deadline: float) -> str | None:
    """None when `domain` answered with a stream header from itself, else why not (retrying connections until
    `deadline`, a time.monotonic() value)."""
    while True:
        try:
            answer = stream_header(domain, port, namespace)
        except OSError as err:
            if time.monotonic() > deadline:
                return f"no connection: {err}"
            time.sleep(1)
            continue
        header = re.search(r"<stream:stream[^>]*>", answer)
        if header is None:
            return f"no stream header in {answer[:200]!r}"
        sender = re.search(r"""\sfrom=['"]([^'"]+)['"]""", header.group(0))
        if sender is None or sender.group(1) != domain:
            return f"stream header not from {domain}: {header.group(0)[:200]}"
        return None


def main(domains: list[str]) -> int:
    failures = 0
    deadline = time.monotonic() + READY_SECONDS
    for domain in domains:
        for kind, port, namespace in CHECKS:
            problem = check(domain, port, namespace, deadline)
            failures += problem is not None
            print(f"  {'ok  ' if problem is None else 'FAIL'} {domain} {kind} {port}: {problem or 'stream header'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
