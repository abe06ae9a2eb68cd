"""Push scenarios (Herald's built-in relay, reference push.md sections 2, 5.1 and 8): a phone app registers an
FCM device through the ChatSecure-compatible API with its XMPP credentials; a message stored offline for it
(XEP-0160) wakes the device with exactly one content-free FCM HTTP v1 push (no body, no sender), sent with an
OAuth2 token from the RFC 7523 JWT-bearer exchange; the message itself is delivered over XMPP at next login
with a XEP-0203 delay. Needs the PUSH_RELAY capability (Prosody has no built-in relay: not applicable there).
"""

from __future__ import annotations

import asyncio
import secrets

from ..client import ScenarioFailure
from ..fcm import FcmStandIn, SendRequest
from ..relayapi import RelayApi
from ..scenario import PUSH_RELAY, Context, Scenario, expect
from .messaging import DELAY_NS, _body, _errors_from, _is_datetime

PUSH_WAIT = 15.0
# After the first push, how long a second one (a duplicate wake-up) is given to show up. Asserting absence
# needs a bounded wait; it is longer than the relay's default collapse window (2 s) plus a send.
NO_SECOND_PUSH_WINDOW = 3.0
LOGIN_WAIT = 10.0


def _for_device(registration_id: str):
    return lambda r: isinstance(r, SendRequest) and r.message.get("token") == registration_id


def _fcm_activity(fcm: FcmStandIn) -> str:
    """What the stand-in saw, for a failure reason: token grants (refusal reasons) and send requests."""
    grants = fcm.tokens.matching(lambda _r: True)
    refused = [g.error for g in grants if g.error]
    sends = fcm.sends.matching(lambda _r: True)
    seen = "; ".join(f"{s.method} {s.path} auth={'ok' if s.authorized else 'bad'}" for s in sends[:3])
    return (
        f"FCM stand-in saw {len(grants)} token request(s)"
        + (f" (refused: {refused[0]})" if refused else "")
        + f" and {len(sends)} send request(s)"
        + (f": {seen}" if seen else "")
    )


async def fcm_offline_message(ctx: Context) -> str:
    push = ctx.push
    expect(push is not None, "target claims a push relay but gave no relay URL / FCM stand-in")
    assert push is not None
    fcm = push.fcm
    api = RelayApi(push.relay_url)
    alice_jid, bob_jid = ctx.jid("alice"), ctx.jid("bob")

    # bob's phone: log in to the relay with his XMPP credentials and register its FCM token. bob is not
    # connected over XMPP at any point before the message is sent.
    key = await asyncio.to_thread(api.login, bob_jid, ctx.password)
    registration_id = f"conf{secrets.token_hex(8)}:APA91b{secrets.token_urlsafe(48)}"
    device = await asyncio.to_thread(api.add_fcm_device, key, registration_id, "conformance phone")
    expect(
        device.get("registration_id") == registration_id,
        f"device registered with registration_id {device.get('registration_id')!r}, not the one sent",
    )

    alice = await ctx.login("alice")
    secret = secrets.token_hex(8)
    text = f"for your eyes only {secret}"
    sent_at = asyncio.get_running_loop().time()
    alice.xmpp.send_message(mto=bob_jid, mbody=text, mtype="chat")
    await alice.sync()
    bounced = alice.messages.matching(_errors_from(bob_jid))
    expect(not bounced, f"message to offline {bob_jid} bounced: {bounced[0]['error']['condition'] if bounced else ''}")

    try:
        first = await fcm.sends.wait_for(_for_device(registration_id), PUSH_WAIT, "an FCM push to bob's device")
    except ScenarioFailure as failure:
        raise ScenarioFailure(f"{failure}; {_fcm_activity(fcm)}") from failure
    latency = asyncio.get_running_loop().time() - sent_at
    expect(first.path == fcm.send_path, f"push sent to {first.method} {first.path}, not POST {fcm.send_path}")
    expect(first.authorized, f"push carried no bearer token issued by the token endpoint: {_fcm_activity(fcm)}")
    expect(first.body is not None, "push body is not a JSON object")
    # No text and no sender (push.md section 2): neither the body (nor any part of it) nor alice's address.
    for leaked, what in ((secret, "the message text"), (alice_jid, "the sender's JID"), ("alice", "the sender")):
        expect(leaked not in first.raw, f"push contains {what}: {first.raw[:300]}")

    # Absence of a second push can only be shown by waiting a bounded time.
    await asyncio.sleep(NO_SECOND_PUSH_WINDOW)
    pushes = fcm.sends.matching(_for_device(registration_id))
    expect(len(pushes) == 1, f"{len(pushes)} pushes to bob's device for one message, expected exactly 1")
    await alice.close()

    bob = await ctx.login("bob")
    got = await bob.messages.wait_for(_body(text), LOGIN_WAIT, "the offline message at bob's login")
    expect(got["from"].bare == alice_jid, f"offline message came from {got['from']}, not alice")
    delay = got.xml.find(f"{{{DELAY_NS}}}delay")
    expect(delay is not None, "offline message has no XEP-0203 <delay/>")
    stamp = delay.get("stamp", "")
    expect(_is_datetime(stamp), f"delay stamp {stamp!r} is not an XEP-0082 DateTime")
    data = first.message.get("data")
    return f"1 content-free push {latency * 1000:.0f} ms after sending (data {data}); delivered at login, delay {stamp}"


SCENARIOS = [
    Scenario(
        name="push_fcm_offline_message",
        description="an offline user's FCM device gets exactly one push without text or sender; message at login",
        run=fcm_offline_message,
        accounts=("alice", "bob"),
        timeout=45.0,
        requires=(PUSH_RELAY,),
    ),
]
