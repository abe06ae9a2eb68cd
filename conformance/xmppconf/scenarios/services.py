"""Server service scenarios: XEP-0030 disco#info and disco#items on the server JID, XEP-0199 ping to the
server, XEP-0054 vCard-temp set, then get by the owner and by another user.
"""

from __future__ import annotations

import secrets

from ..scenario import Context, Scenario, expect

DISCO_INFO = "http://jabber.org/protocol/disco#info"


async def disco_info(ctx: Context) -> str:
    alice = await ctx.login("alice", initial_presence=False)
    result = await alice.iq(alice.xmpp["xep_0030"].get_info(jid=ctx.domain, timeout=10), "disco#info")
    info = result["disco_info"]
    identities = {(cat, typ) for cat, typ, _lang, _name in info["identities"]}
    features = set(info["features"])
    # XEP-0030 section 3.1: every entity has an identity and supports disco#info; a server is server/im.
    expect(("server", "im") in identities, f"no server/im identity: {sorted(identities)}")
    expect(DISCO_INFO in features, f"{DISCO_INFO} not among features {sorted(features)}")
    return f"{len(features)} features"


async def disco_items(ctx: Context) -> str:
    alice = await ctx.login("alice", initial_presence=False)
    result = await alice.iq(alice.xmpp["xep_0030"].get_items(jid=ctx.domain, timeout=10), "disco#items")
    items = result["disco_items"]["items"]
    return f"{len(items)} items"


async def ping(ctx: Context) -> str:
    alice = await ctx.login("alice", initial_presence=False)
    await alice.ping_server(ctx.domain)
    return "pong"


async def vcard(ctx: Context) -> str:
    alice = await ctx.login("alice", initial_presence=False)
    vcards = alice.xmpp["xep_0054"]
    card = vcards.make_vcard()
    full_name = f"Alice Conformance {secrets.token_hex(3)}"
    card["FN"] = full_name
    card["NICKNAME"] = "alice"
    await alice.iq(vcards.publish_vcard(card, timeout=10), "vCard set")

    # XEP-0054 section 3.1: the owner retrieves it by sending to their bare JID... (not the local cache).
    own = await alice.iq(vcards.get_vcard(alice.jid.bare, local=False, timeout=10), "own vCard get")
    expect(own["vcard_temp"]["FN"] == full_name, f"own vCard FN is {own['vcard_temp']['FN']!r}")
    # ... and section 3.2: another user retrieves it at the owner's bare JID.
    bob = await ctx.login("bob", initial_presence=False)
    other = await bob.iq(bob.xmpp["xep_0054"].get_vcard(alice.jid.bare, local=False, timeout=10), "vCard get by bob")
    expect(other["vcard_temp"]["FN"] == full_name, f"bob sees FN {other['vcard_temp']['FN']!r}")
    return "set, read back by owner and by another user"


SCENARIOS = [
    Scenario(
        "disco_info_server", "disco#info on the server: server/im identity, disco#info feature", disco_info, ("alice",)
    ),
    Scenario("disco_items_server", "disco#items on the server answers a result", disco_items, ("alice",)),
    Scenario("ping_server", "XEP-0199 ping to the server", ping, ("alice",)),
    Scenario("vcard_set_get", "XEP-0054 vCard set, get by owner and by another user", vcard, ("alice", "bob")),
]
