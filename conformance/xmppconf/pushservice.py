"""A XEP-0357 app server stand-in: slixmpp's ComponentXMPP attached to the target over XEP-0114 as the push
service's domain. It records every IQ carrying a pubsub `<publish/>` (XEP-0357 section 7) and answers each with
an empty result, as an app server that accepted the notification does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from .client import Inbox, ScenarioFailure

PUBSUB_NS = "http://jabber.org/protocol/pubsub"
PUSH_NS = "urn:xmpp:push:0"
DATA_NS = "jabber:x:data"


@dataclass(frozen=True)
class ComponentSetup:
    """Where the target accepts the push service's component connection (XEP-0114), and its secret."""

    host: str
    port: int
    domain: str
    secret: str


@dataclass(frozen=True)
class Publish:
    """One XEP-0357 publish as the app server received it."""

    sender: str
    node: str
    publish_options: dict[str, str]


def _form_values(form) -> dict[str, str]:
    values = {}
    if form is None:
        return values
    for field in form.findall(f"{{{DATA_NS}}}field"):
        value = field.find(f"{{{DATA_NS}}}value")
        values[field.get("var", "")] = "" if value is None else (value.text or "")
    return values


class PushService:
    """The component: `start()` connects and waits for the handshake; `publishes` fills as they come."""

    def __init__(self, setup: ComponentSetup) -> None:
        self.setup = setup
        self.publishes = Inbox()
        self.xmpp = slixmpp.ComponentXMPP(setup.domain, setup.secret, setup.host, setup.port)
        self.xmpp.register_handler(
            Callback(
                "conf-push-publish",
                MatchXPath(f"{{{self.xmpp.default_ns}}}iq/{{{PUBSUB_NS}}}pubsub"),
                self._on_publish,
            )
        )

    def _on_publish(self, iq) -> None:
        pubsub = iq.xml.find(f"{{{PUBSUB_NS}}}pubsub")
        publish = None if pubsub is None else pubsub.find(f"{{{PUBSUB_NS}}}publish")
        if iq["type"] != "set" or publish is None:
            return
        options = pubsub.find(f"{{{PUBSUB_NS}}}publish-options")
        form = None if options is None else options.find(f"{{{DATA_NS}}}x")
        self.publishes.push(Publish(str(iq["from"]), publish.get("node", ""), _form_values(form)))
        iq.reply().send()

    async def start(self, timeout: float = 10.0) -> None:
        started: asyncio.Future = asyncio.get_running_loop().create_future()
        self.xmpp.add_event_handler("session_start", lambda _e: started.done() or started.set_result(True))
        self.xmpp.connect()
        try:
            await asyncio.wait_for(started, timeout)
        except TimeoutError as err:
            raise ScenarioFailure("the push service component was not accepted by the server") from err

    def stop(self) -> None:
        self.xmpp.abort()
