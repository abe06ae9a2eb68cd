"""In-band registration scenario: XEP-0077 section 3 (registration before authentication, advertised by the
`http://jabber.org/features/iq-register` stream feature), then logging in with the new account on a fresh stream.
"""

from __future__ import annotations

import secrets

from ..scenario import Context, Scenario, expect


async def register_inband(ctx: Context) -> str:
    jid = f"reg{secrets.token_hex(4)}@{ctx.domain}"
    first = await ctx.login_as(jid, ctx.password, register=True, initial_presence=False)
    expect(first.jid.bare == jid, f"registered session bound {first.jid}, expected {jid}")
    await first.close()
    # The account must outlive the registering stream.
    again = await ctx.login_as(jid, ctx.password, initial_presence=False)
    await again.sync()
    return f"registered {jid} and logged in again"


SCENARIOS = [
    Scenario(
        name="register_inband",
        description="XEP-0077 in-band registration of a new account, then a fresh login with it",
        run=register_inband,
        timeout=40,
    )
]
