"""XEP-0352 Client State Indication with slixmpp's own xep_0352 plugin: the server advertises the `csi` stream
feature (section 2); while alice's client is `<inactive/>` (section 3) her contact's presence updates are held
back, a message with a body is delivered at once and flushes what was held before it, and on `<active/>` the
held presence goes out, the latest last. Section 5 leaves which stanzas are held to the server; this scenario
asserts the common policy (Prosody's mod_csi_simple, ejabberd's mod_client_state): presence updates wait,
messages with a body do not. Coalescing (only the latest presence per contact) is allowed, not required.
"""

from __future__ import annotations

import asyncio
import secrets

from ..client import Session, is_available, open_session
from ..scenario import Context, Scenario, expect
from .roster import make_mutual

WAIT = 10.0
# Asserting that a held presence does not arrive needs a bounded wait: every IQ round trip alice could use
# to mark "routed by now" is urgent and would flush the queue.
HELD_WINDOW = 1.5
# A server may stay pseudo-active for a moment after it flushed, even for the urgent IQ result alice uses to know
# her <inactive/> was processed (section 5 leaves it open): Prosody's mod_csi_simple goes back to holding only on a
# timer after its write buffer drains, and nothing on the wire tells when. The scenario lets that moment pass.
SETTLE = 0.5


def _body(text: str):
    return lambda m: m["body"] == text and m.xml.get("type") != "error"


def _update_from(full_jid: str):
    return lambda p: str(p["from"]) == full_jid and is_available(p)


def _show(presence) -> str:
    return presence["show"] or "available"


async def _csi(ctx: Context, role: str) -> Session:
    def with_csi(session: Session) -> None:
        ctx.sessions.append(session)
        session.xmpp.register_plugin("xep_0352")

    return await open_session(ctx.endpoint, ctx.jid(role), ctx.password, on_created=with_csi)


async def inactive_holds_presence(ctx: Context) -> str:
    alice = await _csi(ctx, "alice")
    expect(alice.xmpp["xep_0352"].enabled, "the server does not advertise the XEP-0352 csi stream feature")
    bob = await ctx.login("bob")
    await make_mutual(ctx, alice, bob)
    # bob's phone: a second resource whose presence changes while alice is inactive.
    phone = await ctx.login_as(f"{ctx.jid('bob')}/phone", ctx.password)
    phone_jid = str(phone.jid)
    await alice.presences.wait_for(_update_from(phone_jid), WAIT, "the phone's initial presence at alice")
    await alice.sync()

    alice.xmpp["xep_0352"].send_inactive()
    # The nonza and this IQ are processed in order (RFC 6120 section 10.1): alice is inactive once it answers.
    await alice.sync()
    await asyncio.sleep(SETTLE)
    mark = alice.presences.mark()
    phone.xmpp.send_presence(pshow="away")
    await phone.sync()
    await asyncio.sleep(HELD_WINDOW)
    early = alice.presences.matching(_update_from(phone_jid), mark)
    expect(not early, f"an inactive client got a presence update at once ({_show(early[0]) if early else ''})")

    text = f"urgent {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=alice.jid.bare, mbody=text, mtype="chat")
    await alice.messages.wait_for(_body(text), WAIT, "a message with a body while inactive")
    flushed = alice.presences.matching(_update_from(phone_jid), mark)
    expect(
        [_show(p) for p in flushed] == ["away"],
        f"held presence flushed before the message: {[_show(p) for p in flushed]}, expected ['away']",
    )

    # After a flush a server may stay pseudo-active for a moment (see SETTLE), so alice says again that she is
    # inactive, as a client going back to sleep does, before the second hold.
    alice.xmpp["xep_0352"].send_inactive()
    await alice.sync()
    await asyncio.sleep(SETTLE)
    mark = alice.presences.mark()
    phone.xmpp.send_presence(pshow="xa")
    phone.xmpp.send_presence(pshow="dnd")
    await phone.sync()
    await asyncio.sleep(HELD_WINDOW)
    early = alice.presences.matching(_update_from(phone_jid), mark)
    expect(not early, f"an inactive client got a presence update at once ({_show(early[0]) if early else ''})")
    alice.xmpp["xep_0352"].send_active()
    await alice.presences.wait_for(
        lambda p: _update_from(phone_jid)(p) and _show(p) == "dnd", WAIT, "the latest held presence on active"
    )
    await alice.sync()
    shows = [_show(p) for p in alice.presences.matching(_update_from(phone_jid), mark)]
    expect(shows[-1] == "dnd", f"presence updates after active {shows}: the latest is not last")
    return f"held while inactive, flushed by a message; on active got {shows}"


SCENARIOS = [
    Scenario(
        name="csi_inactive_holds_presence",
        description="XEP-0352: inactive holds presence updates, a message flushes them, active delivers the latest",
        run=inactive_holds_presence,
        accounts=("alice", "bob"),
    ),
]
