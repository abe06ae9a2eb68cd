"""slixmpp sessions for scenarios: TLS (RFC 6120 section 5 STARTTLS, XEP-0368 direct TLS), SASL mechanism
pinning (RFC 6120 section 6, RFC 5802/7677 SCRAM, RFC 5056 channel binding), resource binding, and inboxes
that record every inbound message and presence so a scenario can await a stanza that already arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

# Plugins every session loads: disco, vCard-temp, blocking, ping, delayed delivery.
PLUGINS = ("xep_0030", "xep_0054", "xep_0191", "xep_0199", "xep_0203")

# Transports a scenario can ask for.
STARTTLS = "starttls"
DIRECT_TLS = "directtls"


class ScenarioFailure(Exception):
    """A scenario's check did not hold; the message is the short reason reported."""


@dataclass(frozen=True)
class Endpoint:
    """Where the server under test listens."""

    domain: str
    host: str
    c2s_port: int
    direct_tls_port: int


def tls_context(*, tls12_only: bool, alpn: bool) -> ssl.SSLContext:
    """A client TLS context that accepts the server's self-signed certificate.

    tls12_only: Python's ssl module only offers the `tls-unique` channel binding, which RFC 9266 forbids on
    TLS 1.3, so the -PLUS scenarios pin TLS 1.2. alpn: XEP-0368 direct TLS offers ALPN `xmpp-client`.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls12_only:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(["xmpp-client"])
    return ctx


class Inbox:
    """Every stanza of one kind received by a session, in arrival order, awaitable by predicate."""

    def __init__(self) -> None:
        self.items: list = []
        self._changed = asyncio.Event()

    def push(self, stanza) -> None:
        self.items.append(stanza)
        self._changed.set()

    def mark(self) -> int:
        """Position to pass as `after` so only stanzas arriving from now on match."""
        return len(self.items)

    def matching(self, pred: Callable, after: int = 0) -> list:
        return [s for s in self.items[after:] if pred(s)]

    async def wait_for(self, pred: Callable, timeout: float, what: str, after: int = 0):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = self.matching(pred, after)
            if found:
                return found[0]
            # No await between the scan and clear(), so no push can be missed.
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ScenarioFailure(f"timed out after {timeout:g}s waiting for {what}")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass


def is_available(pres) -> bool:
    """RFC 6121 section 4.2: available presence has no type attribute."""
    return pres.xml.get("type") is None


class Session:
    """One slixmpp client stream plus its inboxes and what was negotiated."""

    def __init__(self, xmpp: slixmpp.ClientXMPP) -> None:
        self.xmpp = xmpp
        self.messages = Inbox()
        self.presences = Inbox()
        xmpp.register_handler(
            Callback("conf-messages", MatchXPath(f"{{{xmpp.default_ns}}}message"), self.messages.push)
        )
        xmpp.register_handler(
            Callback("conf-presences", MatchXPath(f"{{{xmpp.default_ns}}}presence"), self.presences.push)
        )

    @property
    def jid(self) -> slixmpp.JID:
        return self.xmpp.boundjid

    @property
    def mechanism(self) -> str | None:
        mech = self.xmpp["feature_mechanisms"].mech
        return None if mech is None else mech.name

    @property
    def tls_version(self) -> str | None:
        sock = self.xmpp.socket
        if isinstance(sock, (ssl.SSLObject, ssl.SSLSocket)):
            return sock.version()
        return None

    async def iq(self, awaitable, what: str):
        """Await an IQ result, turning IQ errors and timeouts into a scenario failure."""
        try:
            return await awaitable
        except IqError as err:
            raise ScenarioFailure(f"{what}: error {err.condition} ({err.etype}) {err.text or ''}".strip()) from err
        except IqTimeout as err:
            raise ScenarioFailure(f"{what}: no response") from err

    async def ping_server(self, domain: str) -> None:
        """XEP-0199 ping to the server."""
        await self.iq(self.xmpp["xep_0199"].send_ping(domain, timeout=10), "ping to server")

    async def sync(self) -> None:
        """A round trip to the server using only core IM (a roster get). RFC 6120 section 10.1 has the server
        process a stream's stanzas in order, so once this answers, everything sent before it has been routed."""
        await self.roster()

    async def roster(self) -> dict:
        """Full roster get (RFC 6121 section 2.1.3): bare JID -> item dict. Sent without `ver` so a server
        supporting roster versioning (section 2.6) must answer with every item, not a delta."""
        req = self.xmpp.Iq()
        req["type"] = "get"
        req.enable("roster")
        result = await self.iq(req.send(timeout=10), "roster get")
        return {str(jid): item for jid, item in result["roster"]["items"].items()}

    async def close(self) -> None:
        """Close the stream (RFC 6120 section 4.4), then make sure the socket is gone."""
        with contextlib.suppress(Exception):  # best effort: abort() below closes the socket regardless
            await asyncio.wait_for(self.xmpp.disconnect(wait=3.0), 5.0)
        self.abort()

    def abort(self) -> None:
        self.xmpp.cancel_connection_attempt()
        self.xmpp.abort()


async def open_session(
    endpoint: Endpoint,
    jid: str,
    password: str,
    *,
    transport: str = STARTTLS,
    mechanism: str | None = None,
    tls12_only: bool = False,
    register: bool = False,
    initial_presence: bool = True,
    timeout: float = 15.0,
    on_created: Callable[[Session], None] | None = None,
) -> Session:
    """Connect, secure, authenticate (optionally registering first, XEP-0077 section 3) and bind.

    With initial_presence the session fetches its roster then sends initial presence (RFC 6121 sections 2.2
    and 4.2), which is when a server delivers offline messages and probes contacts.
    """
    xmpp = slixmpp.ClientXMPP(jid, password, sasl_mech=mechanism)
    for plugin in PLUGINS:
        xmpp.register_plugin(plugin)
    if register:
        xmpp.register_plugin("xep_0077", pconfig={"force_registration": False})
    xmpp.ssl_context = tls_context(tls12_only=tls12_only, alpn=transport == DIRECT_TLS)
    xmpp.enable_plaintext = False
    xmpp.enable_starttls = transport == STARTTLS
    xmpp.enable_direct_tls = transport == DIRECT_TLS
    # Subscription requests are answered by the scenarios themselves, never automatically.
    xmpp.auto_authorize = None
    xmpp.auto_subscribe = False
    session = Session(xmpp)
    if on_created is not None:
        on_created(session)

    loop = asyncio.get_running_loop()
    outcome: asyncio.Future = loop.create_future()
    notes: dict = {}

    def settle(reason: str | None) -> None:
        if not outcome.done():
            if reason is None:
                outcome.set_result(None)
            else:
                outcome.set_exception(ScenarioFailure(reason))

    def on_failed_auth(failure) -> None:
        try:
            notes["sasl_failure"] = failure["condition"]
        except Exception:  # noqa: BLE001 - the condition is informational only
            notes["sasl_failure"] = "unknown"

    def on_failed_all_auth(_event) -> None:
        offered = sorted(xmpp["feature_mechanisms"].mech_list)
        if register and not notes.get("registered"):
            settle("server did not advertise the XEP-0077 register stream feature (then SASL failed)")
        elif "sasl_failure" in notes:
            settle(f"SASL {mechanism or 'auth'} rejected: {notes['sasl_failure']} (offered {offered})")
        else:
            settle(f"no usable SASL mechanism {mechanism or ''} (server offered {offered})".replace("  ", " "))

    async def on_register(_form) -> None:
        req = xmpp.Iq()
        req["type"] = "set"
        req["register"]["username"] = xmpp.boundjid.user
        req["register"]["password"] = password
        try:
            await req.send(timeout=10)
            notes["registered"] = True
        except IqError as err:
            settle(f"registration refused: {err.condition} {err.text or ''}".strip())
            xmpp.abort()
        except IqTimeout:
            settle("registration: no response")
            xmpp.abort()

    xmpp.add_event_handler("session_start", lambda _e: settle(None))
    xmpp.add_event_handler("failed_auth", on_failed_auth)
    xmpp.add_event_handler("failed_all_auth", on_failed_all_auth)
    xmpp.add_event_handler("connection_failed", lambda e: settle(f"connection failed: {e}"))
    xmpp.add_event_handler("stream_error", lambda e: notes.setdefault("stream_error", e["condition"]))
    xmpp.add_event_handler(
        "disconnected",
        lambda r: settle(
            "stream closed before session started"
            + (f" (stream error {notes['stream_error']})" if "stream_error" in notes else "")
            + (f" ({r})" if r else "")
        ),
    )
    if register:
        xmpp.add_event_handler("register", on_register)

    port = endpoint.c2s_port if transport == STARTTLS else endpoint.direct_tls_port
    xmpp.connect(endpoint.host, port)
    try:
        await asyncio.wait_for(outcome, timeout)
    except TimeoutError:
        session.abort()
        raise ScenarioFailure(f"no session within {timeout:g}s ({transport}, {mechanism or 'any mechanism'})")
    except ScenarioFailure:
        session.abort()
        raise
    if register and not notes.get("registered"):
        session.abort()
        raise ScenarioFailure("server did not advertise the XEP-0077 register stream feature")
    if session.tls_version is None:
        session.abort()
        raise ScenarioFailure("session established without TLS")
    if initial_presence:
        await session.roster()
        xmpp.send_presence()
    return session
