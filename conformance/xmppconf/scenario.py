"""The Scenario type, the per-scenario context (its own accounts and sessions), and the runner that gives each
scenario a timeout and turns its outcome into pass/fail with a short reason.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .client import Endpoint, ScenarioFailure, Session, open_session
from .fcm import PushSetup

PASS = "pass"
FAIL = "fail"
# The scenario needs something the target does not have (see Scenario.requires); it was not run.
NOT_APPLICABLE = "n/a"

# Capabilities a scenario may require beyond XMPP (Target.capabilities).
PUSH_RELAY = "push-relay"
# An external component (XEP-0114) the scenario attaches as a XEP-0357 app server (PushSetup.component).
PUSH_COMPONENT = "push-component"
# SCRAM -PLUS with the `tls-unique` channel binding (RFC 5929), the only one Python's ssl (so slixmpp) offers. It
# exists only up to TLS 1.2; a server that offers -PLUS only on TLS 1.3 (Herald: tls-exporter, RFC 9266, and
# tls-server-end-point) cannot be reached this way, and its -PLUS logins are proven by the herald-cb client.
TLS_UNIQUE = "tls-unique"
# SCRAM -PLUS over TLS 1.3 with `tls-exporter` (RFC 9266) or `tls-server-end-point` (RFC 5929), the bindings our
# own rustls client (herald-cb, xmppconf/cbclient.py) can compute; rustls has no tls-unique.
TLS13_CHANNEL_BINDING = "tls13-channel-binding"
# XEP-0402 section 5 compatibility: bookmarks 2 and XEP-0049 storage:bookmarks kept in step (`#compat`), which
# a server may leave out (ejabberd 23.01 does).
BOOKMARKS_COMPAT = "bookmarks-compat"


@dataclass(frozen=True)
class Scenario:
    """One independent check. `accounts` are roles; each gets its own pre-created account per scenario so
    no state (roster, blocklist, offline queue) leaks between scenarios."""

    name: str
    description: str
    run: Callable[[Context], Awaitable[str | None]]
    accounts: tuple[str, ...] = ()
    timeout: float = 30.0
    # Target capabilities beyond XMPP (e.g. PUSH_RELAY); on a target without them the result is NOT_APPLICABLE.
    requires: tuple[str, ...] = ()
    # The reason reported when the target lacks a required capability ("{target}" is its label); by default
    # "<target> has no <capability>".
    why_not_applicable: str = ""


def account_user(scenario: Scenario, role: str) -> str:
    """Localpart of a role's account: readable in server logs, unique per scenario."""
    # Scenarios of other clients are named `<client>/<scenario>`; a `/` cannot be in a localpart (RFC 7622).
    return f"{scenario.name}-{role}".lower().replace("/", "-")


@dataclass
class Context:
    """What a scenario gets: the endpoint, its accounts, and sessions that are torn down after it."""

    endpoint: Endpoint
    scenario: Scenario
    password: str
    # Set when the target hosts a push relay (capability PUSH_RELAY).
    push: PushSetup | None = None
    sessions: list[Session] = field(default_factory=list)

    @property
    def domain(self) -> str:
        return self.endpoint.domain

    def jid(self, role: str) -> str:
        return f"{account_user(self.scenario, role)}@{self.domain}"

    async def login(self, role: str, **kwargs) -> Session:
        return await self.login_as(self.jid(role), self.password, **kwargs)

    async def login_as(self, jid: str, password: str, **kwargs) -> Session:
        return await open_session(self.endpoint, jid, password, on_created=self.sessions.append, **kwargs)

    async def close_all(self) -> None:
        for session in self.sessions:
            try:
                await session.close()
            except Exception:  # noqa: BLE001 - teardown must reach every session
                session.abort()


@dataclass
class Outcome:
    result: str
    reason: str
    seconds: float

    def as_json(self) -> dict:
        return {"result": self.result, "reason": self.reason, "seconds": round(self.seconds, 2)}


def missing_capabilities(scenario: Scenario, capabilities: frozenset[str]) -> list[str]:
    return [c for c in scenario.requires if c not in capabilities]


def not_applicable(scenario: Scenario, target_label: str, missing: list[str]) -> Outcome:
    if scenario.why_not_applicable:
        return Outcome(
            NOT_APPLICABLE, "not applicable: " + scenario.why_not_applicable.format(target=target_label), 0.0
        )
    return Outcome(NOT_APPLICABLE, f"not applicable: {target_label} has no {', '.join(missing)}", 0.0)


class NotApplicable(ScenarioFailure):
    """Raised by a scenario that finds, while running, that the target does not offer what it checks (an
    optional feature, such as one channel-binding type); reported as `n/a` with this reason."""


async def run_one(scenario: Scenario, endpoint: Endpoint, password: str, push: PushSetup | None = None) -> Outcome:
    ctx = Context(endpoint=endpoint, scenario=scenario, password=password, push=push)
    started = time.monotonic()
    try:
        note = await asyncio.wait_for(scenario.run(ctx), scenario.timeout)
        outcome = Outcome(PASS, note or "ok", 0.0)
    except TimeoutError:
        outcome = Outcome(FAIL, f"scenario timed out after {scenario.timeout:g}s", 0.0)
    except NotApplicable as why:
        outcome = Outcome(NOT_APPLICABLE, f"not applicable: {why}", 0.0)
    except ScenarioFailure as failure:
        outcome = Outcome(FAIL, str(failure), 0.0)
    except Exception as err:  # noqa: BLE001 - a harness bug is reported as this scenario's failure
        last = traceback.extract_tb(err.__traceback__)[-1]
        outcome = Outcome(FAIL, f"harness error {type(err).__name__}: {err} at {last.filename}:{last.lineno}", 0.0)
    finally:
        await ctx.close_all()
    outcome.seconds = time.monotonic() - started
    return outcome


def expect(condition: bool, reason: str) -> None:
    """Fail the scenario with `reason` unless `condition` holds."""
    if not condition:
        raise ScenarioFailure(reason)
