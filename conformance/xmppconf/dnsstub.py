"""A DNS stub on loopback for the federation runs (RFC 1035 messages over UDP and TCP, RFC 2782 SRV): it answers
`_xmpp-server._tcp.<domain>` SRV and `<domain>` A queries for the run's domains, NXDOMAIN for any other name, and
an empty answer (NOERROR) for other types of a known name (AAAA, say), so every server finds its peers here.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field

TYPE_A = 1
TYPE_SRV = 33
CLASS_IN = 1
TTL = 5


@dataclass
class Zone:
    """name -> IPv4 address (A), and name -> [(priority, weight, port, target)] (SRV)."""

    a: dict[str, str] = field(default_factory=dict)
    srv: dict[str, list[tuple[int, int, int, str]]] = field(default_factory=dict)

    def add_server(self, domain: str, address: str, s2s_port: int) -> None:
        """A record for the domain, and `_xmpp-server._tcp` SRV (RFC 6120 section 3.2.1) pointing at it."""
        self.a[domain.lower()] = address
        self.srv[f"_xmpp-server._tcp.{domain}".lower()] = [(0, 5, s2s_port, domain.lower())]

    def knows(self, name: str) -> bool:
        return name in self.a or name in self.srv


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def _decode_question(packet: bytes) -> tuple[str, int, int, int]:
    """(qname, qtype, qclass, end offset) of the first question; names in questions are not compressed."""
    pos, labels = 12, []
    while True:
        length = packet[pos]
        pos += 1
        if length == 0:
            break
        labels.append(packet[pos : pos + length].decode(errors="replace"))
        pos += length
    qtype, qclass = struct.unpack("!HH", packet[pos : pos + 4])
    return ".".join(labels).lower(), qtype, qclass, pos + 4


def answer(zone: Zone, query: bytes) -> bytes | None:
    """The response to one query message, or None for something that is not a query."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    try:
        qname, qtype, qclass, end = _decode_question(query)
    except (IndexError, struct.error):
        return None
    question = query[12:end]
    records = []
    if qclass == CLASS_IN and qtype == TYPE_A and qname in zone.a:
        rdata = socket.inet_aton(zone.a[qname])
        records.append(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, len(rdata)) + rdata)
    if qclass == CLASS_IN and qtype == TYPE_SRV and qname in zone.srv:
        for prio, weight, port, target in zone.srv[qname]:
            rdata = struct.pack("!HHH", prio, weight, port) + _encode_name(target)
            records.append(struct.pack("!HHHIH", 0xC00C, TYPE_SRV, CLASS_IN, TTL, len(rdata)) + rdata)
    rcode = 0 if zone.knows(qname) else 3  # NXDOMAIN
    # QR, opcode 0, AA, RD copied, RA.
    flags_out = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
    header = struct.pack("!HHHHHH", ident, flags_out, 1, len(records), 0, 0)
    return header + question + b"".join(records)


class DnsStub:
    """Serves `zone` on `address`:`port` over UDP and TCP from two daemon threads until `stop()`."""

    def __init__(self, zone: Zone, address: str, port: int = 53) -> None:
        self.zone = zone
        self.address = address
        self.port = port
        self.queries: list[tuple[str, int]] = []
        stub = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                stub._note(data)
                reply = answer(stub.zone, data)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    head = self.rfile.read(2)
                    if len(head) < 2:
                        return
                    data = self.rfile.read(struct.unpack("!H", head)[0])
                    stub._note(data)
                    reply = answer(stub.zone, data)
                    if reply is None:
                        return
                    self.wfile.write(struct.pack("!H", len(reply)) + reply)
                    self.wfile.flush()

        socketserver.ThreadingUDPServer.allow_reuse_address = True
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._udp = socketserver.ThreadingUDPServer((address, port), Udp)
        self._tcp = socketserver.ThreadingTCPServer((address, port), Tcp)
        for server in (self._udp, self._tcp):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, name=f"dns-stub-{server}", daemon=True).start()

    def _note(self, data: bytes) -> None:
        try:
            qname, qtype, _, _ = _decode_question(data)
        except (IndexError, struct.error):
            return
        self.queries.append((qname, qtype))

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            server.shutdown()
            server.server_close()
