"""Federation scenarios (`fed_*`): users on two servers of different domains talk over server-to-server streams
(RFC 6120 sections 3.2 and 13, RFC 6121): the subscription handshake ending in `both` both sides (RFC 6121
section 3.1), presence exchanged and probes answered across domains (section 4), messages each way (section 5),
XEP-0199 ping to the remote server and to a remote full JID, an error back for a remote user that does not exist
(RFC 6121 section 8.5.2.2.1 / 8.5.2.1.1), which method authenticated the s2s streams (XEP-0178 SASL EXTERNAL or
XEP-0220 dialback, read from the servers' logs), the outbound queue while the peer is down (delivered when it
comes back, bounced with an error when it stays away past queue_timeout_seconds), and XEP-0357 push through a
remote server: a Prosody user's mod_cloud_notify publishes over s2s to Herald's relay, which wakes the device.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..client import ScenarioFailure, Session, is_available, open_session
from ..fcm import SendRequest
from ..fedservers import CLOUD_NOTIFY, PEP, QUEUE_TIMEOUT_SECONDS, S2S_QUEUE, FedServer
from ..scenario import PUSH_RELAY, expect

# s2s connections are set up on first use (DNS, TCP, TLS, authentication, dialback's connection back).
WAIT = 20.0
PUSH_NS = "urn:xmpp:push:0"
DATA_NS = "jabber:x:data"


@dataclass(frozen=True)
class FedScenario:
    """A check across two servers. `roles` name each account and the side ("a" or "b") it lives on; `requires`
    lists (side, capability) pairs, and without them the scenario is not applicable."""

    name: str
    description: str
    run: Callable[[FedContext], Awaitable[str | None]]
    roles: dict[str, str]
    timeout: float = 45.0
    requires: tuple[tuple[str, str], ...] = ()


@dataclass
class FedContext:
    a: FedServer
    b: FedServer
    scenario: FedScenario
    password: str
    sessions: list[Session] = field(default_factory=list)

    def server(self, side: str) -> FedServer:
        return self.a if side == "a" else self.b

    def user(self, role: str) -> str:
        return f"{self.scenario.name}-{role}".lower().replace("_", "-")

    def jid(self, role: str) -> str:
        return f"{self.user(role)}@{self.server(self.scenario.roles[role]).domain}"

    async def login(self, role: str, **kwargs) -> Session:
        server = self.server(self.scenario.roles[role])
        return await open_session(
            server.endpoint, self.jid(role), self.password, on_created=self.sessions.append, **kwargs
        )

    async def close_all(self) -> None:
        for session in self.sessions:
            try:
                await session.close()
            except Exception:  # noqa: BLE001 - teardown must reach every session
                session.abort()


def _presence(bare: str, ptype: str):
    return lambda p: p["from"].bare == bare and p.xml.get("type") == ptype


def _body(text: str):
    return lambda m: m["body"] == text and m.xml.get("type") != "error"


def _error_condition(stanza) -> str:
    err = stanza.xml.find("{jabber:client}error")
    if err is None:
        return "?"
    names = [c.tag.split("}")[-1] for c in err if "xmpp-stanzas" in c.tag and not c.tag.endswith("}text")]
    return f"{err.get('type')}/{names[0] if names else '?'}"


async def subscribe(user: Session, contact: Session) -> None:
    """`user` subscribes to `contact` and `contact` approves (RFC 6121 sections 3.1.1-3.1.6), across domains."""
    user_jid, contact_jid = user.jid.bare, contact.jid.bare
    mark = contact.presences.mark()
    user.xmpp.send_presence(pto=contact_jid, ptype="subscribe")
    await contact.presences.wait_for(
        _presence(user_jid, "subscribe"), WAIT, f"subscribe from {user_jid} at {contact_jid}", after=mark
    )
    mark = user.presences.mark()
    contact.xmpp.send_presence(pto=user_jid, ptype="subscribed")
    await user.presences.wait_for(
        _presence(contact_jid, "subscribed"), WAIT, f"subscribed from {contact_jid} at {user_jid}", after=mark
    )


async def subscription_both(ctx: FedContext) -> str:
    alice = await ctx.login("alice")
    bob = await ctx.login("bob")
    await subscribe(alice, bob)
    await subscribe(bob, alice)
    for owner, contact in ((alice, bob), (bob, alice)):
        item = (await owner.roster()).get(contact.jid.bare)
        expect(item is not None, f"{contact.jid.bare} missing from {owner.jid.bare}'s roster")
        expect(
            item["subscription"] == "both",
            f"{owner.jid.bare}'s roster has {contact.jid.bare} with subscription={item['subscription']!r}",
        )
    return "both rosters show subscription=both"


async def presence_exchange(ctx: FedContext) -> str:
    alice = await ctx.login("alice")
    bob = await ctx.login("bob")
    await subscribe(alice, bob)
    await subscribe(bob, alice)
    seen = []
    for watcher_role, mover_role in (("alice", "bob"), ("bob", "alice")):
        watcher = alice if watcher_role == "alice" else bob
        mark = watcher.presences.mark()
        mover = await ctx.login(mover_role)
        await watcher.presences.wait_for(
            lambda p, j=mover.jid: p["from"] == j and is_available(p),
            WAIT,
            f"initial presence of {mover.jid} at {watcher.jid}",
            after=mark,
        )
        # The mover's server probes its contacts (RFC 6121 section 4.3); the remote server answers.
        await mover.presences.wait_for(
            lambda p, j=watcher.jid: p["from"] == j and is_available(p),
            WAIT,
            f"{watcher.jid}'s presence (probe answer) at {mover.jid}",
        )
        mark = watcher.presences.mark()
        gone = mover.jid
        await mover.close()
        await watcher.presences.wait_for(
            lambda p, j=gone: p["from"] == j and p.xml.get("type") == "unavailable",
            WAIT,
            f"unavailable from {gone} at {watcher.jid}",
            after=mark,
        )
        seen.append(f"{ctx.scenario.roles[mover_role]}->{ctx.scenario.roles[watcher_role]}")
    return f"available, probe answer and unavailable seen both ways ({', '.join(seen)})"


async def message_one_way(ctx: FedContext) -> str:
    sender = await ctx.login("sender")
    receiver = await ctx.login("receiver")
    text = f"over s2s {secrets.token_hex(4)}"
    sender.xmpp.send_message(mto=receiver.jid.bare, mbody=text, mtype="chat")
    got = await receiver.messages.wait_for(_body(text), WAIT, f"the chat message at {receiver.jid}")
    expect(got["from"] == sender.jid, f"message came from {got['from']}, not {sender.jid}")
    expect(got.xml.get("type") == "chat", f"message type changed to {got.xml.get('type')!r}")
    reply = f"reply {secrets.token_hex(4)}"
    receiver.xmpp.send_message(mto=got["from"], mbody=reply, mtype="chat")
    back = await sender.messages.wait_for(_body(reply), WAIT, f"the reply at {sender.jid}'s full JID")
    expect(back["from"] == receiver.jid, f"reply came from {back['from']}")
    return f"delivered {sender.jid.domain} -> {receiver.jid.domain}, reply to the full JID came back"


async def ping_server(ctx: FedContext) -> str:
    sender = await ctx.login("sender")
    remote = ctx.server(ctx.scenario.roles["receiver"]).domain
    started = time.monotonic()
    await sender.iq(sender.xmpp["xep_0199"].send_ping(remote, timeout=WAIT), f"ping to {remote}")
    return f"pong from {remote} in {time.monotonic() - started:.2f}s"


async def ping_full_jid(ctx: FedContext) -> str:
    sender = await ctx.login("sender")
    receiver = await ctx.login("receiver")
    await sender.iq(sender.xmpp["xep_0199"].send_ping(receiver.jid, timeout=WAIT), f"ping to {receiver.jid}")
    return f"pong from {receiver.jid}"


async def unknown_user(ctx: FedContext) -> str:
    sender = await ctx.login("sender")
    remote = ctx.server(ctx.scenario.roles["receiver"]).domain
    nobody = f"nobody-{secrets.token_hex(4)}@{remote}"
    sender.xmpp.send_message(mto=nobody, mbody="anyone there?", mtype="chat")
    err = await sender.messages.wait_for(
        lambda m: m.xml.get("type") == "error" and m["from"].bare == nobody, WAIT, f"an error back from {nobody}"
    )
    cond = _error_condition(err)
    # The remote server itself must answer (RFC 6121 section 8.5.2.2.1), not our server failing to reach it.
    expect("remote-server" not in cond, f"{cond}: the remote server was not reached")
    return f"error {cond} from {nobody}"


def _method_of(ctx: FedContext, src: FedServer, dst: FedServer) -> set[str]:
    """How `src` authenticated to `dst`: src's outbound evidence and dst's inbound evidence."""
    return src.auth_methods(dst.domain)["out"] | dst.auth_methods(src.domain)["in"]


async def auth_method(ctx: FedContext) -> str:
    # Traffic in both directions first, so both outbound streams exist whatever ran before.
    a_user = await ctx.login("alice")
    b_user = await ctx.login("bob")
    await a_user.iq(a_user.xmpp["xep_0199"].send_ping(ctx.b.domain, timeout=WAIT), f"ping to {ctx.b.domain}")
    await b_user.iq(b_user.xmpp["xep_0199"].send_ping(ctx.a.domain, timeout=WAIT), f"ping to {ctx.a.domain}")
    want = ctx.a.mode
    report, ok = [], True
    for src, dst in ((ctx.a, ctx.b), (ctx.b, ctx.a)):
        seen = _method_of(ctx, src, dst)
        report.append(f"{src.kind}->{dst.kind}: {'+'.join(sorted(seen)) or 'not found in the logs'}")
        ok = ok and seen == {want}
    summary = "; ".join(report)
    expect(ok, f"expected {want} both ways, logs show {summary}")
    return summary


async def queue_delivered_after_restart(ctx: FedContext) -> str:
    """The peer (side b) is stopped; a message waits in side a's queue and arrives once b is back."""
    sender = await ctx.login("sender")
    ctx.b.stop()
    try:
        text = f"queued {secrets.token_hex(4)}"
        sender.xmpp.send_message(mto=ctx.jid("receiver"), mbody=text, mtype="chat")
        await sender.sync()
        await asyncio.sleep(2)  # the one bounded wait: the message must sit in the queue while b is down
        bounced = sender.messages.matching(lambda m: m.xml.get("type") == "error")
        expect(not bounced, f"bounced while the peer was down: {bounced and _error_condition(bounced[0])}")
    finally:
        await asyncio.to_thread(ctx.b.start)
    started = time.monotonic()
    receiver = await ctx.login("receiver")
    try:
        got = await receiver.messages.wait_for(
            _body(text), QUEUE_TIMEOUT_SECONDS + 5, "the queued message at the receiver after the peer came back"
        )
    except ScenarioFailure as failure:
        errors = [_error_condition(m) for m in sender.messages.matching(lambda m: m.xml.get("type") == "error")]
        raise ScenarioFailure(f"{failure}; errors back at the sender: {errors or 'none'}") from failure
    expect(got["from"].bare == sender.jid.bare, f"queued message came from {got['from']}")
    return f"delivered {time.monotonic() - started:.1f}s after the peer came back"


async def queue_bounce_after_timeout(ctx: FedContext) -> str:
    """The peer stays down past queue_timeout_seconds: the sender gets the message back as an error."""
    sender = await ctx.login("sender")
    ctx.b.stop()
    try:
        started = time.monotonic()
        sender.xmpp.send_message(mto=ctx.jid("receiver"), mbody=f"lost {secrets.token_hex(4)}", mtype="chat")
        err = await sender.messages.wait_for(
            lambda m: m.xml.get("type") == "error" and m["from"].bare == ctx.jid("receiver"),
            QUEUE_TIMEOUT_SECONDS + 20,
            "the bounce after queue_timeout_seconds",
        )
        waited = time.monotonic() - started
    finally:
        await asyncio.to_thread(ctx.b.start)
    cond = _error_condition(err)
    expect(waited >= QUEUE_TIMEOUT_SECONDS - 2, f"bounced after {waited:.1f}s ({cond}), before the queue timeout")
    return f"bounced with {cond} after {waited:.1f}s (queue_timeout_seconds {QUEUE_TIMEOUT_SECONDS})"


async def push_through_remote_server(ctx: FedContext) -> str:
    """bob (on b, a Prosody with mod_cloud_notify) registers with the relay on a (Herald) as his XEP-0357 push
    service over s2s, enables push (XEP-0357 section 5), goes offline; alice's message makes Prosody publish over
    s2s and the relay wakes the stand-in device exactly once, with no content."""
    relay = ctx.a.push
    expect(relay is not None and relay.app_server_jid is not None, f"{ctx.a.kind} names no push service")
    assert relay is not None and relay.app_server_jid is not None
    service, fcm = relay.app_server_jid, relay.fcm
    bob = await ctx.login("bob")
    xmpp = bob.xmpp
    xmpp.register_plugin("xep_0004")
    xmpp.register_plugin("xep_0050")
    token = f"conf{secrets.token_hex(8)}:APA91b{secrets.token_urlsafe(32)}"
    form = xmpp["xep_0004"].make_form(ftype="submit")
    form.add_field(var="token", value=token)
    form.add_field(var="android-id", value=secrets.token_hex(8))
    answer = await bob.iq(
        xmpp["xep_0050"].send_command(service, "register-push-fcm", payload=form, timeout=WAIT),
        f"register-push-fcm at {service} over s2s",
    )
    values = answer["command"]["form"].get_values()
    node, secret = values.get("node"), values.get("secret")
    expect(bool(node) and bool(secret), f"no node and secret in the answer: {values}")

    enable = xmpp.Iq()
    enable["type"] = "set"
    enable.xml.append(
        ET.fromstring(
            f"<enable xmlns='{PUSH_NS}' jid='{service}' node='{node}'><x xmlns='{DATA_NS}' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
            f"<field var='secret'><value>{secret}</value></field></x></enable>"
        )
    )
    await bob.iq(enable.send(timeout=WAIT), "enabling push at bob's server")
    await bob.close()

    alice = await ctx.login("alice")
    text = f"secret words {secrets.token_hex(6)}"
    alice.xmpp.send_message(mto=ctx.jid("bob"), mbody=text, mtype="chat")
    await alice.sync()
    sent = await fcm.sends.wait_for(
        lambda r: isinstance(r, SendRequest) and r.message.get("token") == token,
        WAIT,
        f"an FCM push for bob's device (stand-in saw {len(fcm.sends.matching(lambda r: True))} requests)",
    )
    expect(sent.authorized, "push carried no bearer token issued by the token endpoint")
    await asyncio.sleep(3)  # the one bounded wait, to show absence: no second push for the same message
    pushes = fcm.sends.matching(lambda r: isinstance(r, SendRequest) and r.message.get("token") == token)
    expect(len(pushes) == 1, f"{len(pushes)} pushes for one message")
    for leak in (text.split()[-1], ctx.jid("alice"), "alice"):
        expect(leak not in sent.raw, f"the push payload carries {leak!r}: {sent.raw[:300]}")
    return f"one content-free push via {service} for node {node}"


async def pep_device_list(ctx: FedContext) -> str:
    """XEP-0163 across domains: the receiver's caps (XEP-0115) ask for the OMEMO device list (`+notify`); after
    a mutual subscription the sender's server learns them from the presence the receiver's server sends, and a
    device list the sender publishes reaches the receiver over s2s (section 4.3), then a second one too."""
    from .pep import DEVICELIST_NODE, PEP_PLUGINS, _lists_device, device_list, notification, publish

    def setup(session: Session) -> None:
        ctx.sessions.append(session)
        for plugin in PEP_PLUGINS:
            session.xmpp.register_plugin(plugin)

    async def login_pep(role: str, interests: tuple[str, ...]) -> Session:
        server = ctx.server(ctx.scenario.roles[role])
        session = await open_session(server.endpoint, ctx.jid(role), ctx.password, on_created=setup)
        for namespace in interests:
            session.xmpp["xep_0163"].add_interest(namespace)
        await session.xmpp["xep_0115"].update_caps(broadcast=False)
        session.xmpp.send_presence()
        await session.sync()
        return session

    sender = await login_pep("sender", ())
    receiver = await login_pep("receiver", (DEVICELIST_NODE,))
    await subscribe(sender, receiver)
    await subscribe(receiver, sender)
    # The receiver's presence (with caps) reaches the sender's server now that both are subscribed.
    mark = sender.presences.mark()
    receiver.xmpp.send_presence()
    await sender.presences.wait_for(
        lambda p: p["from"] == receiver.jid and is_available(p),
        WAIT,
        "the receiver's presence at the sender",
        after=mark,
    )
    found = []
    for n in range(2):
        device_id = secrets.randbelow(2**31 - 1) + 1
        await publish(sender, DEVICELIST_NODE, "current", device_list(device_id), f"publishing device list {n}")
        await receiver.messages.wait_for(
            notification(sender.jid.bare, DEVICELIST_NODE, _lists_device(device_id)),
            WAIT,
            f"a {DEVICELIST_NODE} notification listing device {device_id} at {receiver.jid}",
        )
        found.append(device_id)
    return f"both device lists ({len(found)}) reached {receiver.jid.domain} over s2s"


def _one_way(name: str, what: str, run, sender: str, timeout: float = 45.0, requires=()) -> FedScenario:
    other = "b" if sender == "a" else "a"
    return FedScenario(
        name=f"{name}_{sender}_to_{other}",
        description=f"{what} ({sender} to {other})",
        run=run,
        roles={"sender": sender, "receiver": other},
        timeout=timeout,
        requires=requires,
    )


SCENARIOS = [
    FedScenario(
        name="fed_subscription_both",
        description="subscription handshake across domains both ways; both rosters end with subscription=both",
        run=subscription_both,
        roles={"alice": "a", "bob": "b"},
    ),
    FedScenario(
        name="fed_presence_exchange",
        description="initial presence, probe answers and unavailable cross the s2s link both ways",
        run=presence_exchange,
        roles={"alice": "a", "bob": "b"},
        timeout=90.0,
    ),
    *(_one_way("fed_message", "chat message and a reply to the full JID", message_one_way, s) for s in "ab"),
    *(_one_way("fed_ping_server", "XEP-0199 ping to the remote server", ping_server, s) for s in "ab"),
    *(_one_way("fed_ping_full_jid", "XEP-0199 ping to a remote full JID", ping_full_jid, s) for s in "ab"),
    *(
        _one_way("fed_unknown_user", "message to a remote user that does not exist errors back", unknown_user, s)
        for s in "ab"
    ),
    *(
        _one_way(
            "fed_pep_device_list",
            "XEP-0163 OMEMO device list notifications over s2s",
            pep_device_list,
            s,
            60.0,
            requires=(("a", PEP), ("b", PEP)),
        )
        for s in "ab"
    ),
    FedScenario(
        name="fed_auth_method",
        description="the s2s streams both ways authenticated with the mode's method (read from the logs)",
        run=auth_method,
        roles={"alice": "a", "bob": "b"},
    ),
    FedScenario(
        name="fed_queue_delivered_after_restart",
        description="peer b stopped: a message waits in a's queue and is delivered when b is back",
        run=queue_delivered_after_restart,
        roles={"sender": "a", "receiver": "b"},
        timeout=QUEUE_TIMEOUT_SECONDS + 60.0,
        requires=(("a", S2S_QUEUE),),
    ),
    FedScenario(
        name="fed_queue_bounce_after_timeout",
        description="peer b stays down past queue_timeout_seconds: the message bounces back with an error",
        run=queue_bounce_after_timeout,
        roles={"sender": "a", "receiver": "b"},
        timeout=QUEUE_TIMEOUT_SECONDS + 60.0,
        requires=(("a", S2S_QUEUE),),
    ),
    FedScenario(
        name="fed_push_remote_server_to_relay",
        description="a mod_cloud_notify user on b pushes through a's relay over s2s: one content-free push",
        run=push_through_remote_server,
        roles={"alice": "b", "bob": "b"},
        timeout=60.0,
        requires=(("a", PUSH_RELAY), ("b", CLOUD_NOTIFY)),
    ),
]
