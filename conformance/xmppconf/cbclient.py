"""Channel binding (SCRAM -PLUS, RFC 5802 section 6) proven with OUR OWN client, `herald_cb_client`
(tests/src/bin/herald_cb_client.rs, written by this project over rustls), because neither third-party library
can do it against a TLS 1.3 server: slixmpp (Python's ssl) offers only `tls-unique`, undefined on TLS 1.3
(RFC 9266), and xmpp.js has no -PLUS mechanism. The scenarios are named `herald-cb/...` and say "ours" in
their reasons, so nobody mistakes them for third-party evidence.

Each scenario runs the binary once: it logs in with SCRAM-SHA-1-PLUS or SCRAM-SHA-256-PLUS and the
`tls-exporter` (RFC 9266) or `tls-server-end-point` (RFC 5929 section 4) binding and reports what the server
offered (mechanisms, XEP-0440 `sasl-channel-binding` types) and how the exchange ended. A positive scenario
needs success, the server signature verified and a resource bound; a `wrong_binding_refused` one flips one
byte of the binding data and needs the server to answer `<failure/>`. A binding type the server's XEP-0440
feature does not list makes the scenario `n/a` (the type is optional); a mechanism not offered at all fails.
On a target without the TLS13_CHANNEL_BINDING capability (Prosody 0.12: -PLUS with tls-unique on TLS 1.2
only, which rustls cannot compute) every herald-cb scenario is `n/a` with that reason.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from pathlib import Path

from . import xmppjs
from .client import DIRECT_TLS, STARTTLS, ScenarioFailure
from .scenario import TLS13_CHANNEL_BINDING, TLS_UNIQUE, Context, NotApplicable, Scenario, expect

MECHANISMS = ("SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS")
BINDINGS = ("tls-exporter", "tls-server-end-point")
CLIENT = "herald-cb"
NO_TLS13_BINDING = (
    "{target} offers SCRAM -PLUS only with tls-unique on TLS 1.2; it offers neither tls-exporter nor "
    "tls-server-end-point, and tls-unique is checked by the openssl_*_tls_unique scenarios"
)
NO_TLS_UNIQUE = (
    "{target} offers SCRAM -PLUS only on TLS 1.3, where tls-unique is not defined (RFC 9266); its tls-exporter and "
    "tls-server-end-point are checked by the other herald-cb/* scenarios"
)


async def _client(binary: Path | None, ctx: Context, transport: str, mechanism: str, binding: str, corrupt: bool):
    if binary is None or not binary.is_file():
        raise ScenarioFailure(
            f"our channel-binding client is not built ({binary}): cargo build -p herald-tests --bin herald_cb_client, "
            "then run.py --cb-client target/debug/herald_cb_client"
        )
    port = ctx.endpoint.c2s_port if transport == STARTTLS else ctx.endpoint.direct_tls_port
    user = ctx.jid("user").split("@")[0]
    args = [
        str(binary),
        *("--host", ctx.endpoint.host, "--port", str(port), "--domain", ctx.domain, "--transport", transport),
        *("--user", user, "--password", ctx.password, "--mechanism", mechanism, "--binding", binding),
    ]
    if corrupt:
        args.append("--corrupt")
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:  # cancelled by the scenario timeout
            proc.kill()
            await proc.wait()
    try:
        report = json.loads(out.decode(errors="replace").strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise ScenarioFailure(
            f"herald_cb_client exited {proc.returncode}: {err.decode(errors='replace')[-300:]}"
        ) from None
    if report.get("error"):
        raise ScenarioFailure(f"ours (herald-cb): {report['error']}")
    offered = report.get("channel_bindings") or []
    if report.get("outcome") == "not-offered":
        raise ScenarioFailure(
            f"{mechanism} not offered over {report.get('tls')} (mechanisms {report.get('mechanisms')}, "
            f"XEP-0440 types {offered})"
        )
    if offered and binding not in offered:
        raise NotApplicable(f"the server's XEP-0440 feature lists {offered}, not {binding}")
    return report


def _offered(report: dict) -> str:
    types = report.get("channel_bindings")
    return f"XEP-0440 types {types}" if types else "no XEP-0440 sasl-channel-binding feature"


async def login(binary, transport: str, mechanism: str, binding: str, ctx: Context) -> str:
    report = await _client(binary, ctx, transport, mechanism, binding, corrupt=False)
    outcome = report.get("outcome")
    expect(outcome == "success", f"{mechanism} with {binding} refused: {report.get('condition')} ({_offered(report)})")
    expect(report.get("server_signature") == "verified", "the server's v= does not prove it knows the password")
    jid = report.get("jid") or ""
    expect(
        jid.split("/")[0] == ctx.jid("user") and "/" in jid, f"bound {jid!r}, expected a resource of {ctx.jid('user')}"
    )
    return f"ours (herald-cb): {mechanism} {binding} over {report.get('tls')} ({transport}), {_offered(report)}"


async def wrong_binding(binary, mechanism: str, binding: str, ctx: Context) -> str:
    report = await _client(binary, ctx, STARTTLS, mechanism, binding, corrupt=True)
    expect(report.get("outcome") == "failure", f"{mechanism} with a corrupted {binding} was ACCEPTED")
    return f"ours (herald-cb): corrupted {binding} refused with {report.get('condition') or '<failure/>'}"


def _slug(text: str) -> str:
    return text.lower().replace("-", "_")


def scenarios(binary: Path | None) -> list[Scenario]:
    found = [
        Scenario(
            name=f"{CLIENT}/{_slug(mech)}_{_slug(binding)}_{transport}",
            description=f"ours: {mech} with {binding} over {transport}",
            run=partial(login, binary, transport, mech, binding),
            accounts=("user",),
            timeout=30,
            requires=(TLS13_CHANNEL_BINDING,),
            why_not_applicable=NO_TLS13_BINDING,
        )
        for mech in MECHANISMS
        for binding in BINDINGS
        for transport in (STARTTLS, DIRECT_TLS)
    ]
    found += [
        Scenario(
            name=f"{CLIENT}/{_slug(mech)}_{_slug(binding)}_wrong_binding_refused",
            description=f"ours: {mech} with one byte of {binding} flipped is refused",
            run=partial(wrong_binding, binary, mech, binding),
            accounts=("user",),
            timeout=30,
            requires=(TLS13_CHANNEL_BINDING,),
            why_not_applicable=NO_TLS13_BINDING,
        )
        for mech in MECHANISMS
        for binding in BINDINGS
    ]
    # The same SCRAM -PLUS logins with binding data from another TLS stack: our mechanism in driver.mjs over
    # Node's OpenSSL (xmpp.js carries the stream), so a mistake shared by rustls on both ends would show. With
    # tls-unique over TLS 1.2 (OpenSSL's Finished message) the same code logs in to Prosody, which shows our
    # SCRAM -PLUS code right against a server we did not write.
    found += [
        Scenario(
            name=f"{CLIENT}/openssl_{_slug(mech)}_{_slug(binding)}{suffix}",
            description=f"ours over Node/OpenSSL: {mech} with {binding}" + (" corrupted, refused" if suffix else ""),
            run=partial(_openssl, f"ours_{_slug(mech)}_{_slug(binding)}{suffix}"),
            accounts=("user",),
            timeout=40,
            requires=(TLS_UNIQUE,) if binding == "tls-unique" else (TLS13_CHANNEL_BINDING,),
            why_not_applicable=NO_TLS_UNIQUE if binding == "tls-unique" else NO_TLS13_BINDING,
        )
        for mech in MECHANISMS
        for binding in (*BINDINGS, "tls-unique")
        for suffix in ("", "_wrong_binding_refused")
    ]
    return found


async def _openssl(name: str, ctx: Context) -> str:
    reason = await xmppjs.run_driver(name, ctx)
    return f"ours (herald-cb over Node/OpenSSL): {reason}"
