"""XEP-0280 Message Carbons with slixmpp's own xep_0280 plugin, alice on two resources: a message to one
resource reaches the other as a `<received/>` carbon (section 7), a message one sends reaches the other as a
`<sent/>` carbon (section 8), and a message marked `<private/>` is not copied and reaches its recipient
without the marker (section 9, "Avoiding Carbons for a single message").
"""

from __future__ import annotations

import secrets

from slixmpp.xmlstream import ET

from ..client import open_session
from ..scenario import Context, Scenario, expect

WAIT = 10.0
CARBONS_NS = "urn:xmpp:carbons:2"
FORWARD_NS = "urn:xmpp:forward:0"
CLIENT_NS = "jabber:client"


def _body(text: str):
    return lambda m: m["body"] == text and m.xml.get("type") != "error"


def _forwarded(message, direction: str):
    """The message a carbon of `direction` forwards, or None."""
    return message.xml.find(f"{{{CARBONS_NS}}}{direction}/{{{FORWARD_NS}}}forwarded/{{{CLIENT_NS}}}message")


def _carbon(direction: str, text: str):
    def match(message) -> bool:
        inner = _forwarded(message, direction)
        body = None if inner is None else inner.find(f"{{{CLIENT_NS}}}body")
        return body is not None and body.text == text

    return match


def _any_carbon(message) -> bool:
    return _forwarded(message, "sent") is not None or _forwarded(message, "received") is not None


async def two_resources(ctx: Context) -> str:
    def with_carbons(session) -> None:
        ctx.sessions.append(session)
        session.xmpp.register_plugin("xep_0280")

    alice = ctx.jid("alice")
    phone = await open_session(ctx.endpoint, f"{alice}/phone", ctx.password, on_created=with_carbons)
    laptop = await open_session(ctx.endpoint, f"{alice}/laptop", ctx.password, on_created=with_carbons)
    bob = await ctx.login("bob")
    for session in (phone, laptop):
        await session.iq(session.xmpp["xep_0280"].enable(timeout=10), "carbons enable")

    received = f"to the phone {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=phone.jid, mbody=received, mtype="chat")
    await phone.messages.wait_for(_body(received), WAIT, "bob's message at alice's phone")
    copy = await laptop.messages.wait_for(_carbon("received", received), WAIT, "a received carbon at the laptop")
    expect(copy["from"] == alice, f"received carbon came from {copy['from']}, not alice's bare JID")

    sent = f"from the phone {secrets.token_hex(4)}"
    phone.xmpp.send_message(mto=bob.jid, mbody=sent, mtype="chat")
    await bob.messages.wait_for(_body(sent), WAIT, "alice's message at bob")
    copy = await laptop.messages.wait_for(_carbon("sent", sent), WAIT, "a sent carbon at the laptop")
    expect(copy["from"] == alice, f"sent carbon came from {copy['from']}, not alice's bare JID")

    private = f"private {secrets.token_hex(4)}"
    message = phone.xmpp.make_message(mto=bob.jid, mbody=private, mtype="chat")
    message.xml.append(ET.Element(f"{{{CARBONS_NS}}}private"))
    message.send()
    got = await bob.messages.wait_for(_body(private), WAIT, "alice's private message at bob")
    expect(got.xml.find(f"{{{CARBONS_NS}}}private") is None, "the recipient still sees <private/>")
    # In-order processing (RFC 6120 section 10.1): once the phone's round trip is answered its message was
    # routed, and once the laptop's is, any carbon queued for it before has arrived.
    await phone.sync()
    await laptop.sync()
    leaked = [m for m in laptop.messages.matching(_any_carbon) if _carbon("sent", private)(m)]
    expect(not leaked, "a private message was copied to the laptop")
    own = phone.messages.matching(_any_carbon)
    expect(not own, f"the phone got {len(own)} carbon(s) of its own traffic")
    return "received and sent carbons at the other resource; private not copied and stripped"


SCENARIOS = [
    Scenario(
        name="carbons_two_resources",
        description="XEP-0280: received and sent carbons on alice's second resource, <private/> not copied",
        run=two_resources,
        accounts=("alice", "bob"),
    ),
]
