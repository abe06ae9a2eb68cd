"""XEP-0198 Stream Management with slixmpp's own xep_0198 plugin: enabled with resumption after binding
(section 3), and a TCP connection dropped without closing the stream is resumed on a new connection
(section 5), with a message sent meanwhile delivered exactly once.
"""

from __future__ import annotations

import asyncio
import secrets

from ..client import open_session
from ..scenario import Context, Scenario, expect

WAIT = 15.0


def _body(text: str):
    return lambda m: m["body"] == text and m.xml.get("type") != "error"


class Resumable:
    """A slixmpp session with its xep_0198 plugin: `enabled` is its `<enabled/>`, and `wait_resumed` waits for
    slixmpp to resume it after its connection was dropped."""

    def __init__(self, session, enabled, resumed: asyncio.Future) -> None:
        self.session = session
        self.enabled = enabled
        self._resumed = resumed

    async def wait_resumed(self) -> None:
        try:
            await asyncio.wait_for(self._resumed, WAIT)
        except TimeoutError:
            expect(False, "the stream was not resumed")


async def open_resumable(ctx: Context, user: str) -> Resumable:
    """Logs `user` in with stream management (slixmpp enables it with resumption after binding) and waits for
    `<enabled/>`."""
    loop = asyncio.get_running_loop()
    enabled: asyncio.Future = loop.create_future()
    resumed: asyncio.Future = loop.create_future()

    def with_stream_management(session) -> None:
        ctx.sessions.append(session)
        session.xmpp.register_plugin("xep_0198")
        session.xmpp.add_event_handler("sm_enabled", lambda e: enabled.done() or enabled.set_result(e))
        session.xmpp.add_event_handler("session_resumed", lambda e: resumed.done() or resumed.set_result(e))

    session = await open_session(ctx.endpoint, ctx.jid(user), ctx.password, on_created=with_stream_management)
    try:
        stanza = await asyncio.wait_for(enabled, WAIT)
    except TimeoutError:
        expect(False, "stream management was not enabled")
    return Resumable(session, stanza, resumed)


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


SCENARIOS = [
    Scenario(
        name="sm_resume_after_connection_loss",
        description="XEP-0198: enabled with resumption, TCP dropped, resumed, a message sent meanwhile arrives once",
        run=resume_after_connection_loss,
        accounts=("alice", "bob"),
    ),
]
