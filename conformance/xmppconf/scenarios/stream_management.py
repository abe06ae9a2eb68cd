"""XEP-0198 Stream Management with slixmpp's own xep_0198 plugin: enabled with resumption after binding
(section 3), and a TCP connection dropped without closing the stream is resumed on a new connection
(section 5), with a message sent meanwhile delivered exactly once; the server's `<a h/>` and `<resumed h/>`
count exactly the stanzas the client sent (section 4), and on resumption the server resends exactly the
stanzas the client's `h` leaves unacknowledged.
"""

from __future__ import annotations

import asyncio
import secrets

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from ..client import Inbox, open_session
from ..scenario import Context, Scenario, expect

WAIT = 15.0
SM_NS = "urn:xmpp:sm:3"


def _body(text: str):
    return lambda m: m["body"] == text and m.xml.get("type") != "error"


class Resumable:
    """A slixmpp session with its xep_0198 plugin: `enabled` is its `<enabled/>`, and `wait_resumed` waits for
    slixmpp to resume it after its connection was dropped."""

    def __init__(self, session, enabled, resumed: asyncio.Future, acks: Inbox) -> None:
        self.session = session
        self.enabled = enabled
        self._resumed = resumed
        # Every `<a h/>` the server sent (section 4), in arrival order.
        self.acks = acks

    @property
    def plugin(self):
        return self.session.xmpp["xep_0198"]

    async def acknowledge_all(self) -> None:
        """Sends `<a h/>` for everything handled so far, then `<r/>`, and waits for the server's `<a/>`: the
        server processes them in order, so by then it knows the client has every stanza it was sent."""
        mark = self.acks.mark()
        self.plugin.send_ack()
        self.plugin.request_ack()
        await self.acks.wait_for(lambda _a: True, WAIT, "an <a/> answering <r/>", after=mark)

    async def wait_resumed(self):
        """The server's `<resumed/>`."""
        try:
            return await asyncio.wait_for(self._resumed, WAIT)
        except TimeoutError:
            expect(False, "the stream was not resumed")


async def open_resumable(ctx: Context, user: str, *, ack_window: int = 5, **kwargs) -> Resumable:
    """Logs `user` in with stream management (slixmpp enables it with resumption after binding) and waits for
    `<enabled/>`. slixmpp sends `<r/>` after every `ack_window` stanzas; 0 never (the scenario asks itself)."""
    loop = asyncio.get_running_loop()
    enabled: asyncio.Future = loop.create_future()
    resumed: asyncio.Future = loop.create_future()
    acks = Inbox()

    def with_stream_management(session) -> None:
        ctx.sessions.append(session)
        session.xmpp.register_plugin("xep_0198", pconfig={"window": ack_window})
        session.xmpp.add_event_handler("sm_enabled", lambda e: enabled.done() or enabled.set_result(e))
        session.xmpp.add_event_handler("session_resumed", lambda e: resumed.done() or resumed.set_result(e))
        session.xmpp.register_handler(Callback("conf-sm-acks", MatchXPath(f"{{{SM_NS}}}a"), acks.push, instream=True))

    session = await open_session(ctx.endpoint, ctx.jid(user), ctx.password, on_created=with_stream_management, **kwargs)
    try:
        stanza = await asyncio.wait_for(enabled, WAIT)
    except TimeoutError:
        expect(False, "stream management was not enabled")
    return Resumable(session, stanza, resumed, acks)


async def resume_after_connection_loss(ctx: Context) -> str:
    resumable = await open_resumable(ctx, "alice")
    alice = resumable.session
    bob = await ctx.login("bob")
    stanza = resumable.enabled
    expect(stanza["resume"] in (True, "true", "1"), f"resumption not offered: {stanza}")

    before = f"before {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=alice.jid, mbody=before, mtype="chat")
    await alice.messages.wait_for(_body(before), WAIT, "a message before the drop")

    # The TCP connection goes without </stream:stream>; slixmpp keeps its stream management state.
    alice.xmpp.abort()
    meanwhile = f"meanwhile {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=alice.jid, mbody=meanwhile, mtype="chat")
    await bob.sync()

    alice.xmpp.connect(ctx.endpoint.host, ctx.endpoint.c2s_port)
    await resumable.wait_resumed()
    await alice.messages.wait_for(_body(meanwhile), WAIT, "the message sent while disconnected")
    await alice.ping_server(ctx.domain)
    count = len(alice.messages.matching(_body(meanwhile)))
    expect(count == 1, f"the message sent while disconnected arrived {count} times")
    earlier = len(alice.messages.matching(_body(before)))
    expect(earlier == 1, f"the acknowledged message arrived {earlier} times")
    return "resumed; the message sent meanwhile arrived once"


TO_SERVER = 5
TO_CLIENT = 4


async def ack_counts(ctx: Context) -> str:
    # slixmpp asks for acks only when told to, so every `<a/>` answers this scenario's own `<r/>`.
    resumable = await open_resumable(ctx, "alice", ack_window=0)
    alice, sm = resumable.session, resumable.plugin
    bob = await ctx.login("bob")
    tag = secrets.token_hex(4)
    # Client to server: section 4, `h` is the count of stanzas the server handled since `<enable/>`.
    outgoing = [f"to bob {i} {tag}" for i in range(TO_SERVER)]
    for text in outgoing:
        alice.xmpp.send_message(mto=bob.jid.bare, mbody=text, mtype="chat")
    # slixmpp counts a stanza when its send queue writes it, but writes `<r/>` at once: once bob has every
    # message, all were written, and the `<r/>` follows them.
    for text in outgoing:
        await bob.messages.wait_for(_body(text), WAIT, f"{text!r} at bob")
    sent = sm.seq
    mark = resumable.acks.mark()
    sm.request_ack()
    ack = await resumable.acks.wait_for(lambda _a: True, WAIT, "an <a/> answering <r/>", after=mark)
    expect(ack["h"] == sent, f"<a h='{ack['h']}'/> after the client sent {sent} stanzas since <enable/>")

    # Server to client: the client counts what it handled; its `h` on resumption tells the server what to resend.
    incoming = [f"to alice {i} {tag}" for i in range(TO_CLIENT)]
    # From here alice's acks are lost with the connection: the server's `<r/>` (Prosody's mod_smacks asks
    # after every stanza) goes unanswered, so the `h` she resumes with is the only ack the server gets.
    withheld: list[int] = []
    sm.send_ack = lambda: withheld.append(sm.handled)
    for text in incoming:
        bob.xmpp.send_message(mto=alice.jid, mbody=text, mtype="chat")
    for text in incoming:
        await alice.messages.wait_for(_body(text), WAIT, f"{text!r} at alice")
    handled = sm.handled

    # TCP gone without </stream:stream>; the client then claims it never handled bob's last message, so the
    # server must resend exactly that one (section 5: stanzas after `h` are resent) plus the one sent meanwhile.
    alice.xmpp.abort()
    meanwhile = f"meanwhile {tag}"
    bob.xmpp.send_message(mto=alice.jid, mbody=meanwhile, mtype="chat")
    await bob.sync()
    sm.handled = handled - 1
    del sm.send_ack
    alice.xmpp.connect(ctx.endpoint.host, ctx.endpoint.c2s_port)
    resumed = await resumable.wait_resumed()
    expect(resumed["h"] == sent, f"<resumed h='{resumed['h']}'/>, the client sent {sent} stanzas")
    await alice.messages.wait_for(_body(meanwhile), WAIT, "the message sent while disconnected")
    await alice.sync()
    counts = {text: len(alice.messages.matching(_body(text))) for text in [*incoming, meanwhile]}
    expected = {text: 1 for text in [*incoming[:-1], meanwhile]} | {incoming[-1]: 2}
    expect(counts == expected, f"deliveries {list(counts.values())}, expected {list(expected.values())}")
    return (
        f"<a h='{ack['h']}'/> and <resumed h='{resumed['h']}'/> match the client's count; resumed with h one short, "
        "the server resent exactly the last message and the one sent meanwhile"
    )


SCENARIOS = [
    Scenario(
        name="sm_resume_after_connection_loss",
        description="XEP-0198: enabled with resumption, TCP dropped, resumed, a message sent meanwhile arrives once",
        run=resume_after_connection_loss,
        accounts=("alice", "bob"),
    ),
    Scenario(
        name="sm_ack_counts",
        description="XEP-0198: <a h/> and <resumed h/> count the client's stanzas; a resume resends what h leaves",
        run=ack_counts,
        accounts=("alice", "bob"),
    ),
]
