"""XEP-0357 push with Herald's own relay as the app server, in process (reference push.md sections 1 and 6): a
phone registers its FCM token with `register-push-fcm` (XEP-0050) at the relay's push service, enables push
at its own server with the node and secret it got (XEP-0357 section 5), and keeps a resumable XEP-0198 session.
A message while it is online wakes nothing; a message while the session hibernates (TCP gone, section 5 of
XEP-0198) wakes the device exactly once, with neither the text nor the sender in the FCM push; the client
resumes and gets the message exactly once, and a XEP-0313 query by contact then returns it under the
XEP-0359 stanza id it was delivered with. Needs PUSH_RELAY and the target's push service domain.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from ..client import ScenarioFailure
from ..scenario import PUSH_RELAY, Context, Scenario, expect
from .app_server import register_fcm
from .archive import SID, _query
from .push import NO_SECOND_PUSH_WINDOW, _fcm_activity, _for_device
from .push_notifications import HIBERNATION_SETTLE, enable_push
from .stream_management import open_resumable

WAIT = 15.0


def _body(text: str):
    return lambda m: m["body"] == text and m.xml.get("type") != "error"


async def relay_resume_mam(ctx: Context) -> str:
    push = ctx.push
    expect(push is not None and push.app_server_jid is not None, "target names no XEP-0357 push service")
    assert push is not None and push.app_server_jid is not None
    service, fcm = push.app_server_jid, push.fcm
    resumable = await open_resumable(ctx, "alice")
    alice = resumable.session
    alice.xmpp.register_plugin("xep_0004")
    alice.xmpp.register_plugin("xep_0050")
    alice_jid = alice.jid.bare
    bob = await ctx.login("bob")
    bob_jid = bob.jid.bare

    registration_id = f"conf{secrets.token_hex(8)}:APA91b{secrets.token_urlsafe(32)}"
    node, secret = await register_fcm(alice, service, registration_id, secrets.token_hex(8))
    await enable_push(alice, service, node, secret)

    online = f"online {secrets.token_hex(4)}"
    bob.xmpp.send_message(mto=alice_jid, mbody=online, mtype="chat")
    await alice.messages.wait_for(_body(online), WAIT, "a message while online")

    # Everything so far acknowledged (XEP-0198 section 4), as a phone does before it sleeps: a session that
    # hibernates with unacknowledged stanzas is rightly pushed for them. Then the TCP connection goes without
    # </stream:stream>: the session hibernates.
    await resumable.acknowledge_all()
    alice.xmpp.abort()
    await asyncio.sleep(HIBERNATION_SETTLE)
    private = secrets.token_hex(8)
    text = f"while asleep {private}"
    sent_at = asyncio.get_running_loop().time()
    sent_mono = time.monotonic()
    bob.xmpp.send_message(mto=alice_jid, mbody=text, mtype="chat")
    try:
        first = await fcm.sends.wait_for(_for_device(registration_id), WAIT, "an FCM push to alice's device")
    except ScenarioFailure as failure:
        raise ScenarioFailure(f"{failure}; {_fcm_activity(fcm)}") from failure
    latency = asyncio.get_running_loop().time() - sent_at
    expect(first.authorized, f"push carried no bearer token issued by the token endpoint: {_fcm_activity(fcm)}")
    for leaked, what in ((private, "the message text"), (bob_jid, "the sender's JID"), ("bob", "the sender")):
        expect(leaked not in first.raw, f"push contains {what}: {first.raw[:300]}")
    # Absence of a second wake-up (and of one for the message while online) needs a bounded wait.
    await asyncio.sleep(NO_SECOND_PUSH_WINDOW)
    pushes = fcm.sends.matching(_for_device(registration_id))
    expect(
        len(pushes) == 1,
        f"{len(pushes)} pushes to alice's device, expected exactly 1 (none while online): "
        + "; ".join(f"{p.at - sent_mono:+.2f}s {p.raw[:100]}" for p in pushes),
    )

    alice.xmpp.connect(ctx.endpoint.host, ctx.endpoint.c2s_port)
    await resumable.wait_resumed()
    got = await alice.messages.wait_for(_body(text), WAIT, "the message sent while hibernated")
    await alice.sync()
    delivered = len(alice.messages.matching(_body(text)))
    expect(delivered == 1, f"the message sent while hibernated arrived {delivered} times")
    ids = [e.get("id") for e in got.xml.findall(f"{{{SID}}}stanza-id") if e.get("by") == alice_jid]
    expect(len(ids) == 1, f"the resumed message carries {len(ids)} stanza-ids by {alice_jid}")

    results, _fin = await _query(alice, bob_jid, "<max>10</max>")
    archived = [i for i, body in results if body == text]
    expect(archived == ids, f"archive query with {bob_jid}: {archived} for the message, delivered as {ids}")
    return f"one content-free push {latency * 1000:.0f} ms after sending; resumed, delivered once, archived"


SCENARIOS = [
    Scenario(
        name="push_relay_resume_mam",
        description="XEP-0357 via Herald's in-process relay: one wake-up while hibernated, resume once, then in MAM",
        run=relay_resume_mam,
        accounts=("alice", "bob"),
        timeout=60.0,
        requires=(PUSH_RELAY,),
    ),
]
