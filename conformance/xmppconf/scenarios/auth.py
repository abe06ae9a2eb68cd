"""Authentication scenarios: RFC 6120 section 5 (STARTTLS) and XEP-0368 (direct TLS) crossed with SASL
mechanisms (RFC 6120 section 6): SCRAM-SHA-1 (RFC 5802), SCRAM-SHA-256 (RFC 7677), their -PLUS variants with
`tls-unique` channel binding (RFC 5929; over TLS 1.2 because Python's ssl offers no `tls-exporter`, RFC 9266),
PLAIN (RFC 4616) inside TLS; plus a wrong password that must be refused with <not-authorized/>.
"""

from __future__ import annotations

from functools import partial

from ..client import DIRECT_TLS, STARTTLS, ScenarioFailure
from ..scenario import TLS_UNIQUE, Context, Scenario, expect

MECHANISMS = ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "PLAIN")


async def login_with(mechanism: str, transport: str, ctx: Context) -> str:
    plus = mechanism.endswith("-PLUS")
    session = await ctx.login("user", transport=transport, mechanism=mechanism, tls12_only=plus, initial_presence=False)
    expect(session.mechanism == mechanism, f"authenticated with {session.mechanism}, not {mechanism}")
    expect(session.jid.bare == ctx.jid("user"), f"bound {session.jid}, expected a resource of {ctx.jid('user')}")
    expect(bool(session.jid.resource), f"bound JID {session.jid} has no resource")
    await session.sync()
    return f"{mechanism} over {session.tls_version} ({transport})"


async def wrong_password(ctx: Context) -> str:
    try:
        await ctx.login_as(ctx.jid("user"), ctx.password + "-wrong", initial_presence=False)
    except ScenarioFailure as failure:
        reason = str(failure)
        # RFC 6120 section 6.5.10: bad credentials are <not-authorized/>.
        expect("not-authorized" in reason, f"refused, but not with not-authorized: {reason}")
        return "refused with not-authorized"
    raise ScenarioFailure("login with a wrong password succeeded")


def _slug(mechanism: str) -> str:
    return mechanism.lower().replace("-", "_")


SCENARIOS = [
    Scenario(
        name=f"auth_{_slug(mech)}_{transport}",
        description=f"log in with {mech} over {'STARTTLS on the c2s port' if transport == STARTTLS else 'direct TLS'}",
        run=partial(login_with, mech, transport),
        accounts=("user",),
        timeout=30,
        # slixmpp's -PLUS is tls-unique only (see client.tls_context): n/a where the target has no tls-unique.
        requires=(TLS_UNIQUE,) if mech.endswith("-PLUS") else (),
        why_not_applicable="slixmpp offers only tls-unique, which TLS 1.3 does not define (RFC 9266), and {target} "
        "offers SCRAM -PLUS only on TLS 1.3 (its channel binding is checked by the herald-cb/* scenarios)",
    )
    for transport in (STARTTLS, DIRECT_TLS)
    for mech in MECHANISMS
] + [
    Scenario(
        name="auth_wrong_password_rejected",
        description="a wrong password is refused with <not-authorized/>",
        run=wrong_password,
        accounts=("user",),
        timeout=30,
    )
]
