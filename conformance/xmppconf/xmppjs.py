"""Scenarios driven by xmpp.js (@xmpp/client from npm, pinned in clients/xmppjs/package-lock.json), the second
client library Herald did not write. Each scenario runs `node clients/xmppjs/driver.mjs NAME SPEC` once and
reads its one-line JSON verdict; the scenario logic is in driver.mjs. They are named `xmppjs/<scenario>` in
the results and the baseline, next to slixmpp's scenarios of the same meaning.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from functools import partial
from pathlib import Path

from .client import ScenarioFailure
from .scenario import Context, Scenario

CLIENT_DIR = Path(__file__).resolve().parent.parent / "clients" / "xmppjs"

# name -> (roles, description). xmpp.js 0.14 implements SCRAM-SHA-1 and PLAIN only (no SCRAM-SHA-256, no -PLUS).
SCENARIOS_SPEC = {
    "auth_scram_sha_1_starttls": (("user",), "log in with SCRAM-SHA-1 over STARTTLS"),
    "auth_scram_sha_1_directtls": (("user",), "log in with SCRAM-SHA-1 over direct TLS (XEP-0368)"),
    "auth_plain_starttls": (("user",), "log in with PLAIN over STARTTLS"),
    "auth_plain_directtls": (("user",), "log in with PLAIN over direct TLS"),
    "auth_wrong_password_rejected": (("user",), "a wrong password is refused with <not-authorized/>"),
    "roster_subscription_both": (("alice", "bob"), "mutual subscription, both rosters show 'both'"),
    "presence_initial_and_unavailable": (("alice", "bob"), "initial presence, probe, unavailable on close"),
    "chat_between_users": (("alice", "bob"), "chat to the bare JID and a reply to the full JID"),
    "offline_delivery_with_delay": (("alice", "bob"), "offline message delivered at login with <delay/>"),
    "ping_server": (("user",), "XEP-0199 ping to the server"),
    "disco_info_server": (("user",), "XEP-0030 disco#info: identity server/im, feature disco#info"),
    "mam_query_paging": (("alice", "bob"), "XEP-0313 query with RSM paging, ids equal to stanza-ids"),
    "carbons_two_resources": (("alice", "bob"), "XEP-0280 received/sent carbons, <private/> not copied"),
}


async def run_driver(name: str, ctx: Context) -> str:
    """Runs one driver.mjs scenario; its reason on a pass, ScenarioFailure otherwise."""
    node = shutil.which("node")
    if node is None:
        raise ScenarioFailure("node is not installed (xmpp.js needs Node.js 20.10 or later)")
    if not (CLIENT_DIR / "node_modules" / "@xmpp" / "client").is_dir():
        raise ScenarioFailure(f"xmpp.js is not installed: run `npm ci` in {CLIENT_DIR}")
    spec = {
        "domain": ctx.endpoint.domain,
        "host": ctx.endpoint.host,
        "c2s_port": ctx.endpoint.c2s_port,
        "direct_tls_port": ctx.endpoint.direct_tls_port,
        "password": ctx.password,
        "jids": {role: ctx.jid(role) for role in ctx.scenario.accounts},
    }
    # The servers' certificates are throwaway self-signed ones (slixmpp is told not to verify them either).
    env = {**os.environ, "NODE_TLS_REJECT_UNAUTHORIZED": "0", "NODE_NO_WARNINGS": "1"}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(CLIENT_DIR / "driver.mjs"),
        name,
        json.dumps(spec),
        cwd=CLIENT_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:  # cancelled by the scenario timeout
            proc.kill()
            await proc.wait()
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        verdict = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = err.decode(errors="replace").strip()[-300:]
        raise ScenarioFailure(f"xmpp.js driver exited {proc.returncode} without a verdict: {tail}") from None
    if verdict.get("result") != "pass":
        raise ScenarioFailure(verdict.get("reason", "no reason"))
    return verdict.get("reason", "ok")


async def _run(name: str, ctx: Context) -> str:
    return f"xmpp.js: {await run_driver(name, ctx)}"


def scenarios() -> list[Scenario]:
    return [
        Scenario(
            name=f"xmppjs/{name}",
            description=f"xmpp.js: {description}",
            run=partial(_run, name),
            accounts=roles,
            timeout=40,
        )
        for name, (roles, description) in SCENARIOS_SPEC.items()
    ]
