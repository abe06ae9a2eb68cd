#!/usr/bin/env python3
"""Memory per idle server-to-server connection: opens N inbound s2s streams to one server, each
authenticated with SASL EXTERNAL (XEP-0178: STARTTLS with a client certificate the server trusts,
then `<auth mechanism='EXTERNAL'>`, then the restarted stream), leaves them idle, and prints the
server's RSS before and after and the difference per stream.

Usage: bench/idle_s2s.py --pid PID --host 127.0.6.1 --to a.fed.test --from idle.fed.test \
           --cert idle.pem --key idle.key [--count 500] [--settle 5]
The certificate must name --from (subjectAltName, serverAuth purpose) and chain to a CA the server
trusts for s2s (`[s2s] ca_files` for Herald). Servers that offer only dialback to this peer (Prosody
and ejabberd as bench/compare.sh configures them) cannot be measured this way.
"""

import argparse
import socket
import ssl
import sys
import time

STREAM = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
          "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
          "to='{to}' from='{frm}' version='1.0'>")


def read_until(sock, marker, limit=65536):
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}: {data[-300:]!r}")
        data += chunk
        if len(data) > limit:
            raise ConnectionError("too much data")
    return data


def open_stream(args, context):
    plain = socket.create_connection((args.host, args.port), timeout=30)
    header = STREAM.format(to=args.to, frm=args.frm).encode()
    plain.sendall(header)
    read_until(plain, b"</stream:features>")
    plain.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    read_until(plain, b"proceed")
    tls = context.wrap_socket(plain, server_hostname=args.to)
    tls.sendall(header)
    features = read_until(tls, b"</stream:features>")
    if b"EXTERNAL" not in features:
        raise ConnectionError(f"no SASL EXTERNAL offered: {features[-300:]!r}")
    tls.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
    read_until(tls, b"success")
    tls.sendall(header)
    read_until(tls, b"</stream:features>")
    return tls


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=5269)
    parser.add_argument("--to", required=True)
    parser.add_argument("--from", dest="frm", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(args.cert, args.key)
    # One stream first, so one-off costs (TLS setup, the first peer's state) are not counted.
    streams = [open_stream(args, context)]
    time.sleep(args.settle)
    before = rss_kib(args.pid)
    for _ in range(args.count):
        streams.append(open_stream(args, context))
    time.sleep(args.settle)
    after = rss_kib(args.pid)
    per_stream = (after - before) / args.count
    print(f"streams={args.count} rss_before_kib={before} rss_after_kib={after} "
          f"per_stream_kib={per_stream:.1f}")
    for stream in streams:
        stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
