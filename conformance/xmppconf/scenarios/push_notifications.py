"""XEP-0357 Push Notifications, the user's server side, with an app server attached as a XEP-0114 component
(slixmpp's ComponentXMPP, xmppconf/pushservice.py): a slixmpp client enables the push service with
publish-options (section 5), is not pushed while online, is pushed once for a message sent while its XEP-0198
session hibernates (section 7, from the user's bare JID or server, publish-options replayed), resumes and gets the
message exactly once, disables (section 6) and is not pushed after. slixmpp 1.17 has no xep_0357 plugin: the
enable and disable IQs are built here. Needs the PUSH_COMPONENT capability (the target attaches the component's
domain).
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET

from ..pushservice import PushService
from ..scenario import PUSH_COMPONENT, Context, Scenario, expect
from .stream_management import open_resumable

WAIT = 15.0
# Asserting that no publish comes needs a bounded wait: the server publishes off the delivery path, so no
# client-side event marks "would have published by now". Generous against a loaded machine.
NO_PUBLISH_WINDOW = 3.0
# The server notices the dropped TCP connection asynchronously and no stanza tells the client when it has;
# a message routed before that is written to the dead socket instead of waking the device.
HIBERNATION_SETTLE = 1.0
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"


def _body(text: str):
    return lambda m: m["body"] == text and m.xml.get("type") != "error"


async def _push_iq(session, payload: str, what: str) -> None:
    iq = session.xmpp.Iq()
    iq["type"] = "set"
    iq.xml.append(ET.fromstring(payload))
    await session.iq(iq.send(timeout=10), what)


async def enable_push(session, service: str, node: str, secret: str) -> None:
    """XEP-0357 section 5: enable push to `service`/`node`, with the secret as publish-option."""
    await _push_iq(
        session,
        f"<enable xmlns='urn:xmpp:push:0' jid='{service}' node='{node}'>"
        f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>{PUBLISH_OPTIONS}</value></field>"
        f"<field var='secret'><value>{secret}</value></field></x></enable>",
        "enable",
    )


async def enable_hibernate_disable(ctx: Context) -> str:
    expect(ctx.push is not None and ctx.push.component is not None, "target gave no push component setup")
    assert ctx.push is not None and ctx.push.component is not None
    setup = ctx.push.component
    service = PushService(setup)
    await service.start()
    try:
        return await _scenario(ctx, service)
    finally:
        service.stop()


async def _scenario(ctx: Context, service: PushService) -> str:
    alice_jid = ctx.jid("alice")
    resumable = await open_resumable(ctx, "alice")
    alice = resumable.session
    bob = await ctx.login("bob")

    domain, node, secret = service.setup.domain, f"node-{secrets.token_hex(4)}", secrets.token_hex(8)
    await enable_push(alice, domain, node, secret)

    online = f"online {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=alice_jid, mbody=online, mtype="chat")
    await alice.messages.wait_for(_body(online), WAIT, "a message while online")
    await asyncio.sleep(NO_PUBLISH_WINDOW)
    expect(not service.publishes.items, f"published while the user was online: {service.publishes.items}")

    # Everything so far acknowledged (XEP-0198 section 4), as a phone does before it sleeps: a session that
    # hibernates with unacknowledged messages is rightly pushed for them, which would be a second publish.
    # Then the TCP connection goes without </stream:stream>: the session hibernates (section 5).
    await resumable.acknowledge_all()
    alice.xmpp.abort()
    await asyncio.sleep(HIBERNATION_SETTLE)
    hibernated = f"hibernated {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=alice_jid, mbody=hibernated, mtype="chat")
    publish = await service.publishes.wait_for(lambda _p: True, WAIT, "a publish for the hibernated session")
    expect(publish.node == node, f"published to node {publish.node!r}, not {node!r}")
    # XEP-0357 section 7 names no sender; its example publishes from the user's server (as Prosody's
    # mod_cloud_notify does), Herald publishes from the user's bare JID. Either is a bare JID an app server
    # such as p2 can look the node up under.
    expect(
        publish.sender in (alice_jid, ctx.domain),
        f"published from {publish.sender!r}, not the user's bare JID or server",
    )
    expect(publish.publish_options.get("secret") == secret, f"publish-options not replayed: {publish}")

    alice.xmpp.connect(ctx.endpoint.host, ctx.endpoint.c2s_port)
    await resumable.wait_resumed()
    await alice.messages.wait_for(_body(hibernated), WAIT, "the message sent while hibernated")
    await alice.sync()
    delivered = len(alice.messages.matching(_body(hibernated)))
    expect(delivered == 1, f"the message sent while hibernated arrived {delivered} times")
    await _push_iq(alice, f"<disable xmlns='urn:xmpp:push:0' jid='{domain}' node='{node}'/>", "disable")
    await alice.close()

    mark = service.publishes.mark()
    after = f"after disable {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=alice_jid, mbody=after, mtype="chat")
    await bob.sync()
    await asyncio.sleep(NO_PUBLISH_WINDOW)
    later = service.publishes.matching(lambda _p: True, mark)
    expect(not later, f"published after disable: {later}")
    count = len(service.publishes.items)
    expect(count == 1, f"{count} publishes in all, expected the one for the hibernated session")
    return "no publish while online, one while hibernated, none after disable"


SCENARIOS = [
    Scenario(
        name="push_xep0357_component",
        description="XEP-0357: enable with a component app server, publish only while hibernated, none after disable",
        run=enable_hibernate_disable,
        accounts=("alice", "bob"),
        timeout=60.0,
        requires=(PUSH_COMPONENT,),
    ),
]
