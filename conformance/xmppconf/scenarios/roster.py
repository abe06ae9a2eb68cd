"""Roster and presence scenarios: the subscription handshake in both directions ending in `both` (RFC 6121
sections 3.1 and 2.1.3), initial presence reaching a subscribed contact and probes answered (section 4.2),
and unavailable presence broadcast when a session ends, cleanly (RFC 6120 section 4.4) or by a dropped
connection (RFC 6121 section 4.5.2).
"""

from __future__ import annotations

from ..client import Session, is_available
from ..scenario import Context, Scenario, expect

WAIT = 10.0


def _from(bare: str, ptype: str):
    return lambda p: p["from"].bare == bare and p.xml.get("type") == ptype


async def subscribe(ctx: Context, user: Session, contact: Session) -> None:
    """`user` subscribes to `contact`'s presence and `contact` approves (RFC 6121 sections 3.1.1-3.1.6)."""
    user_jid, contact_jid = user.jid.bare, contact.jid.bare
    mark = contact.presences.mark()
    user.xmpp.send_presence(pto=contact_jid, ptype="subscribe")
    await contact.presences.wait_for(
        _from(user_jid, "subscribe"), WAIT, f"subscribe from {user_jid} at {contact_jid}", after=mark
    )
    mark = user.presences.mark()
    contact.xmpp.send_presence(pto=user_jid, ptype="subscribed")
    await user.presences.wait_for(
        _from(contact_jid, "subscribed"), WAIT, f"subscribed from {contact_jid} at {user_jid}", after=mark
    )


async def make_mutual(ctx: Context, a: Session, b: Session) -> None:
    await subscribe(ctx, a, b)
    await subscribe(ctx, b, a)


async def subscription_both(ctx: Context) -> str:
    alice = await ctx.login("alice")
    bob = await ctx.login("bob")
    await make_mutual(ctx, alice, bob)
    for owner, contact in ((alice, bob), (bob, alice)):
        items = await owner.roster()
        item = items.get(contact.jid.bare)
        expect(item is not None, f"{contact.jid.bare} missing from {owner.jid.bare}'s roster")
        expect(
            item["subscription"] == "both",
            f"{owner.jid.bare}'s roster has {contact.jid.bare} with subscription={item['subscription']!r}, not both",
        )
    return "both rosters show subscription=both"


async def presence_flow(ctx: Context) -> str:
    alice = await ctx.login("alice")
    bob = await ctx.login("bob")
    await make_mutual(ctx, alice, bob)
    bob_jid = bob.jid.bare

    mark = alice.presences.mark()
    bob2 = await ctx.login("bob")
    await alice.presences.wait_for(
        lambda p: p["from"] == bob2.jid and is_available(p),
        WAIT,
        f"initial presence of {bob2.jid} at the subscribed contact",
        after=mark,
    )
    # The server probes bob's contacts on his initial presence (RFC 6121 section 4.3) and answers for alice.
    await bob2.presences.wait_for(
        lambda p: p["from"] == alice.jid and is_available(p), WAIT, f"{alice.jid}'s presence (probe answer) at bob"
    )

    mark = alice.presences.mark()
    gone = bob2.jid
    await bob2.close()
    await alice.presences.wait_for(
        lambda p: p["from"] == gone and p.xml.get("type") == "unavailable",
        WAIT,
        f"unavailable from {gone} after its stream closed",
        after=mark,
    )
    expect(bob_jid == gone.bare, "second bob session bound another account")
    return "initial presence, probe answer and unavailable on disconnect all seen"


async def unavailable_on_connection_loss(ctx: Context) -> str:
    alice = await ctx.login("alice")
    bob = await ctx.login("bob")
    await make_mutual(ctx, alice, bob)
    gone = bob.jid
    mark = alice.presences.mark()
    # The socket closes without the closing stream tag of RFC 6120 section 4.4: a client that dropped off.
    bob.abort()
    await alice.presences.wait_for(
        lambda p: p["from"] == gone and p.xml.get("type") == "unavailable",
        WAIT,
        f"unavailable from {gone} after its connection dropped",
        after=mark,
    )
    return "unavailable broadcast after the TCP connection dropped"


SCENARIOS = [
    Scenario(
        name="roster_subscription_both",
        description="subscription handshake in both directions; both rosters end with subscription=both",
        run=subscription_both,
        accounts=("alice", "bob"),
    ),
    Scenario(
        name="presence_initial_and_unavailable",
        description="a contact's initial presence is seen, probes are answered, unavailable on disconnect",
        run=presence_flow,
        accounts=("alice", "bob"),
    ),
    Scenario(
        name="presence_unavailable_on_connection_loss",
        description="a contact whose connection drops without closing the stream is seen going unavailable",
        run=unavailable_on_connection_loss,
        accounts=("alice", "bob"),
    ),
]
