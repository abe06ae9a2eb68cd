"""Messaging scenarios: chat between two online users (RFC 6121 section 5, delivery rules of section 8.5),
offline storage and delivery at next login stamped with XEP-0203 delayed delivery (XEP-0160 best practice),
and XEP-0191 blocking (section 3.3 block, 3.4 unblock, 3.1 blocklist retrieval, 3.5 blocked stanzas dropped).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from ..scenario import Context, Scenario, expect

WAIT = 10.0
DELAY_NS = "urn:xmpp:delay"


def _body(text: str):
    return lambda m: m["body"] == text and m.xml.get("type") != "error"


def _errors_from(bare: str):
    return lambda m: m.xml.get("type") == "error" and m["from"].bare == bare


def _is_datetime(stamp: str) -> bool:
    # XEP-0082 DateTime; fromisoformat accepts the Z suffix and fractions on Python >= 3.11.
    try:
        datetime.fromisoformat(stamp)
    except ValueError:
        return False
    return True


async def chat(ctx: Context) -> str:
    alice = await ctx.login("alice")
    bob = await ctx.login("bob")
    hello = f"hello {secrets.token_hex(4)}"
    alice.xmpp.send_message(mto=bob.jid.bare, mbody=hello, mtype="chat")
    got = await bob.messages.wait_for(_body(hello), WAIT, "alice's chat message at bob")
    expect(got["from"].bare == alice.jid.bare, f"message came from {got['from']}, not alice")
    expect(got.xml.get("type") == "chat", f"message type changed to {got.xml.get('type')!r}")
    reply = f"reply {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=got["from"], mbody=reply, mtype="chat")
    back = await alice.messages.wait_for(_body(reply), WAIT, "bob's reply at alice's full JID")
    expect(back["from"] == bob.jid, f"reply came from {back['from']}, expected {bob.jid}")
    return "chat delivered both ways"


async def offline_delivery(ctx: Context) -> str:
    alice = await ctx.login("alice")
    bob_jid = ctx.jid("bob")
    text = f"while you were away {secrets.token_hex(4)}"
    alice.xmpp.send_message(mto=bob_jid, mbody=text, mtype="chat")
    await alice.sync()
    bounced = alice.messages.matching(_errors_from(bob_jid))
    expect(not bounced, f"message to offline {bob_jid} bounced: {bounced[0]['error']['condition'] if bounced else ''}")
    await alice.close()

    bob = await ctx.login("bob")
    got = await bob.messages.wait_for(_body(text), WAIT, "offline message delivered at login")
    expect(got["from"].bare == ctx.jid("alice"), f"offline message came from {got['from']}, not alice")
    delay = got.xml.find(f"{{{DELAY_NS}}}delay")
    expect(delay is not None, "offline message has no XEP-0203 <delay/>")
    stamp = delay.get("stamp", "")
    expect(_is_datetime(stamp), f"delay stamp {stamp!r} is not an XEP-0082 DateTime")
    return f"delivered with delay stamp {stamp}"


async def blocking(ctx: Context) -> str:
    alice = await ctx.login("alice")
    bob = await ctx.login("bob")
    alice_jid, bob_jid = alice.jid.bare, bob.jid.bare
    blocklist = alice.xmpp["xep_0191"]

    before = f"before block {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=alice_jid, mbody=before, mtype="chat")
    await alice.messages.wait_for(_body(before), WAIT, "a message before blocking (delivery works)")

    await alice.iq(blocklist.block(bob_jid, timeout=10), "block")
    blocked = await alice.iq(blocklist.get_blocked_jids(timeout=10), "blocklist get")
    expect(bob_jid in {j.bare for j in blocked}, f"{bob_jid} not in blocklist after block: {sorted(map(str, blocked))}")

    hidden = f"while blocked {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=alice_jid, mbody=hidden, mtype="chat")
    # In-order processing (RFC 6120 section 10.1): once bob's round trip is answered his message was routed.
    await bob.sync()
    await alice.iq(blocklist.unblock(bob_jid, timeout=10), "unblock")
    blocked = await alice.iq(blocklist.get_blocked_jids(timeout=10), "blocklist get")
    expect(bob_jid not in {j.bare for j in blocked}, f"{bob_jid} still blocked after unblock")

    after = f"after unblock {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=alice_jid, mbody=after, mtype="chat")
    await alice.messages.wait_for(_body(after), WAIT, "a message after unblocking")
    expect(not alice.messages.matching(_body(hidden)), "a message from a blocked contact was delivered")
    bounce = bob.messages.matching(_errors_from(alice_jid))
    note = f"; bob got error {bounce[0]['error']['condition']}" if bounce else ""
    return "blocked message dropped, delivery resumes after unblock" + note


SCENARIOS = [
    Scenario(
        name="chat_between_users",
        description="alice sends bob a chat message, bob replies to her full JID",
        run=chat,
        accounts=("alice", "bob"),
    ),
    Scenario(
        name="offline_delivery_with_delay",
        description="a message to an offline user arrives at next login with a XEP-0203 delay",
        run=offline_delivery,
        accounts=("alice", "bob"),
    ),
    Scenario(
        name="blocking_block_unblock",
        description="XEP-0191: block bob, bob's message is not delivered, unblock, delivery resumes",
        run=blocking,
        accounts=("alice", "bob"),
    ),
]
