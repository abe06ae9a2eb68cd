"""Herald's relay as an XEP-0357 push service ("app server", reference push.md sections 1 and 6): a phone
app discovers the service (identity pubsub/push), registers its FCM token with the ad-hoc command
`register-push-fcm` (XEP-0050, run with slixmpp's xep_0050 client, fields as Conversations sends them to p2),
gets a node and a secret, and a publish with that secret (XEP-0357 section 7) wakes the device with one
content-free FCM push. A wrong secret is refused with auth/forbidden, and after `unregister-push` the node
is cancel/item-not-found, the errors a publishing server disables a registration on. Needs PUSH_RELAY and a
target that names its push service domain.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET

from slixmpp.exceptions import IqError

from ..client import Session
from ..fcm import SendRequest
from ..scenario import PUSH_RELAY, Context, Scenario, expect

PUSH_WAIT = 15.0
PUSH_NS = "urn:xmpp:push:0"
PUBSUB_NS = "http://jabber.org/protocol/pubsub"
DATA_NS = "jabber:x:data"


def _publish(session: Session, service: str, node: str, secret: str):
    """The publish a user's server sends (XEP-0357 section 7), summary form included."""
    iq = session.xmpp.Iq()
    iq["type"] = "set"
    iq["to"] = service
    iq.xml.append(
        ET.fromstring(
            f"<pubsub xmlns='{PUBSUB_NS}'><publish node='{node}'><item>"
            f"<notification xmlns='{PUSH_NS}'><x xmlns='{DATA_NS}' type='submit'>"
            f"<field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>"
            f"<field var='message-count'><value>1</value></field></x></notification></item></publish>"
            f"<publish-options><x xmlns='{DATA_NS}' type='submit'>"
            f"<field var='FORM_TYPE'><value>{PUBSUB_NS}#publish-options</value></field>"
            f"<field var='secret'><value>{secret}</value></field></x></publish-options></pubsub>"
        )
    )
    return iq.send(timeout=10)


async def _error_of(awaitable, what: str) -> tuple[str, str]:
    try:
        await awaitable
    except IqError as err:
        return err.etype, err.condition
    expect(False, f"{what} succeeded, expected an error")
    return "", ""


async def register_fcm(session: Session, service: str, registration_id: str, android_id: str) -> tuple[str, str]:
    """Runs `register-push-fcm` at `service` (fields as Conversations sends them to p2); the node and secret to
    `enable` with. The session needs slixmpp's xep_0004 and xep_0050."""
    xmpp = session.xmpp
    form = xmpp["xep_0004"].make_form(ftype="submit")
    form.add_field(var="token", value=registration_id)
    form.add_field(var="android-id", value=android_id)
    answer = await session.iq(
        xmpp["xep_0050"].send_command(service, "register-push-fcm", payload=form, timeout=10),
        "register-push-fcm",
    )
    expect(answer["command"]["status"] == "completed", f"command status {answer['command']['status']!r}")
    values = answer["command"]["form"].get_values()
    node, secret = values.get("node"), values.get("secret")
    expect(bool(node) and bool(secret), f"no node and secret in the answer: {values}")
    expect(values.get("jid") == service, f"answer names jid {values.get('jid')!r}, not {service}")
    return str(node), str(secret)


async def register_and_publish(ctx: Context) -> str:
    push = ctx.push
    expect(push is not None and push.app_server_jid is not None, "target names no XEP-0357 push service")
    assert push is not None and push.app_server_jid is not None
    service, fcm = push.app_server_jid, push.fcm
    bob = await ctx.login("bob")
    xmpp = bob.xmpp
    xmpp.register_plugin("xep_0004")
    xmpp.register_plugin("xep_0050")

    info = await bob.iq(xmpp["xep_0030"].get_info(jid=service, timeout=10), "disco#info on the push service")
    identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
    expect(("pubsub", "push") in identities, f"push service identities {identities}, no pubsub/push")
    expect(PUSH_NS in info["disco_info"]["features"], f"push service features lack {PUSH_NS}")
    listed = await bob.iq(xmpp["xep_0050"].get_commands(service, timeout=10), "the command list")
    nodes = {item[1] for item in listed["disco_items"]["items"]}
    expect("register-push-fcm" in nodes, f"commands listed: {sorted(nodes)}")

    registration_id = f"conf{secrets.token_hex(8)}:APA91b{secrets.token_urlsafe(32)}"
    android_id = secrets.token_hex(8)
    node, secret = await register_fcm(bob, service, registration_id, android_id)

    await bob.iq(_publish(bob, service, node, secret), "publish with the node's secret")
    sent = await fcm.sends.wait_for(
        lambda r: isinstance(r, SendRequest) and r.message.get("token") == registration_id,
        PUSH_WAIT,
        "an FCM push to the registered device",
    )
    expect(sent.authorized, "push carried no bearer token issued by the token endpoint")

    wrong = await _error_of(_publish(bob, service, node, secrets.token_hex(20)), "publish with a wrong secret")
    expect(wrong == ("auth", "forbidden"), f"wrong secret answered {wrong}, not auth/forbidden")

    form = xmpp["xep_0004"].make_form(ftype="submit")
    form.add_field(var="android-id", value=android_id)
    await bob.iq(xmpp["xep_0050"].send_command(service, "unregister-push", payload=form, timeout=10), "unregister-push")
    gone = await _error_of(_publish(bob, service, node, secret), "publish after unregister")
    expect(gone == ("cancel", "item-not-found"), f"unregistered node answered {gone}, not cancel/item-not-found")
    pushes = fcm.sends.matching(lambda r: isinstance(r, SendRequest) and r.message.get("token") == registration_id)
    return f"node {node}: {len(pushes)} push(es); wrong secret {wrong[1]}; after unregister {gone[1]}"


SCENARIOS = [
    Scenario(
        name="push_app_server_register_and_publish",
        description="register-push-fcm over XEP-0050, publish with the secret wakes the device, refusals after",
        run=register_and_publish,
        accounts=("bob",),
        timeout=45.0,
        requires=(PUSH_RELAY,),
    ),
]
