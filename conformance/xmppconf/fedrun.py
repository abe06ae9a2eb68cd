"""The federation runner (`run.py --federation`): for each pair of servers and each authentication mode, a fresh
run directory with its PKI, a DNS stub on loopback, both servers on their own loopback addresses, the `fed_*`
scenarios, and the results compared with the baseline under the target `fed/<a>-<b>/<mode>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import tempfile
import time
import traceback
from pathlib import Path

from . import baseline
from .client import ScenarioFailure
from .dnsstub import DnsStub, Zone
from .fedservers import (
    MODES,
    S2S_PORT,
    FedEjabberd,
    FedHerald,
    FedProsody,
    FedServer,
    RunPki,
)
from .pki import CertificateAuthority
from .scenario import FAIL, NOT_APPLICABLE, PASS, Outcome
from .scenarios.federation import SCENARIOS, FedContext, FedScenario
from .targets import TargetError

PAIRS = ("herald-prosody", "herald-ejabberd", "prosody-ejabberd")
DNS_ADDRESS = "127.0.6.50"
ADDRESSES = {"herald": "127.0.6.51", "prosody": "127.0.6.52", "ejabberd": "127.0.6.53"}
MARKS = {PASS: "PASS", FAIL: "FAIL", NOT_APPLICABLE: "N/A "}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pair", action="append", default=[], choices=PAIRS, help="federation: pairs to run (default: all)")
    p.add_argument(
        "--herald-static-peers",
        action="store_true",
        help="federation: give Herald each peer's address in [[s2s.peers]] (no DNS); target fed/<pair>/<mode>+static-peers",
    )
    p.add_argument(
        "--mode", action="append", default=[], choices=MODES, help="federation: auth modes to run (default: both)"
    )


def make_server(
    kind: str, run_dir: Path, mode: str, pki: RunPki, herald: str | None, static_peers: bool = False
) -> FedServer:
    address = ADDRESSES[kind]
    if kind == "herald":
        if not herald:
            raise TargetError("--herald BIN is required for pairs with herald")
        return FedHerald(run_dir, address, mode, pki, DNS_ADDRESS, herald, static_peers=static_peers)
    if kind == "prosody":
        return FedProsody(run_dir, address, mode, pki, DNS_ADDRESS)
    return FedEjabberd(run_dir, address, mode, pki, DNS_ADDRESS)


def missing(scenario: FedScenario, a: FedServer, b: FedServer) -> list[str]:
    sides = {"a": a, "b": b}
    return [f"{sides[s].kind} has no {c}" for s, c in scenario.requires if c not in sides[s].capabilities]


async def run_one(scenario: FedScenario, a: FedServer, b: FedServer, password: str) -> Outcome:
    ctx = FedContext(a=a, b=b, scenario=scenario, password=password)
    started = time.monotonic()
    try:
        note = await asyncio.wait_for(scenario.run(ctx), scenario.timeout)
        outcome = Outcome(PASS, note or "ok", 0.0)
    except TimeoutError:
        outcome = Outcome(FAIL, f"scenario timed out after {scenario.timeout:g}s", 0.0)
    except ScenarioFailure as failure:
        outcome = Outcome(FAIL, str(failure), 0.0)
    except Exception as err:  # noqa: BLE001 - a harness bug is reported as this scenario's failure
        last = traceback.extract_tb(err.__traceback__)[-1]
        outcome = Outcome(FAIL, f"harness error {type(err).__name__}: {err} at {last.filename}:{last.lineno}", 0.0)
    finally:
        await ctx.close_all()
    outcome.seconds = time.monotonic() - started
    return outcome


async def run_scenarios(scenarios, a: FedServer, b: FedServer, password: str) -> dict[str, Outcome]:
    accounts = {"a": [], "b": []}
    for s in scenarios:
        if not missing(s, a, b):
            for role, side in s.roles.items():
                accounts[side].append(FedContext(a, b, s, password).user(role))
    await a.create_accounts_inband(accounts["a"], password)
    await b.create_accounts_inband(accounts["b"], password)
    results = {}
    for scenario in scenarios:
        lacking = missing(scenario, a, b)
        if lacking:
            outcome = Outcome(NOT_APPLICABLE, f"not applicable: {', '.join(lacking)}", 0.0)
        else:
            outcome = await run_one(scenario, a, b, password)
        results[scenario.name] = outcome
        print(f"  {MARKS[outcome.result]} {scenario.name:<40} {outcome.seconds:5.1f}s  {outcome.reason}", flush=True)
    return results


def run_target(pair: str, mode: str, scenarios, args: argparse.Namespace) -> tuple[str, dict[str, Outcome], str | None]:
    label = f"fed/{pair}/{mode}" + ("+static-peers" if args.herald_static_peers and "herald" in pair else "")
    run_dir = Path(tempfile.mkdtemp(prefix=f"conf-fed-{pair}-{mode}-"))
    run_dir.chmod(0o755)  # ejabberd runs as its own user
    print(f"conformance: {label}, {len(scenarios)} scenarios, dir {run_dir}", flush=True)
    password = "pw-" + secrets.token_hex(8)
    servers: list[FedServer] = []
    dns = None
    setup_error = None
    outcomes: dict[str, Outcome] = {}
    try:
        try:
            pki = RunPki(CertificateAuthority(run_dir, "ca"), CertificateAuthority(run_dir, "untrusted-ca"))
            kind_a, kind_b = pair.split("-")
            a = make_server(kind_a, run_dir, mode, pki, args.herald, args.herald_static_peers)
            b = make_server(kind_b, run_dir, mode, pki, args.herald, args.herald_static_peers)
            servers = [a, b]
            zone = Zone()
            for server in servers:
                for domain in (server.domain, *server.extra_domains()):
                    zone.add_server(domain, server.address, S2S_PORT)
            try:
                dns = DnsStub(zone, DNS_ADDRESS)
            except OSError as err:
                raise TargetError(f"DNS stub on {DNS_ADDRESS}:53: {err}") from err
            needed = {"a": [], "b": []}
            for s in scenarios:
                if not missing(s, a, b):
                    for role, side in s.roles.items():
                        needed[side].append(FedContext(a, b, s, password).user(role))
            for server, side in ((a, "a"), (b, "b")):
                server.configure([s for s in servers if s is not server])
                server.create_accounts(needed[side], password)
            for server in servers:
                server.start()
            print(f"  up: {a.kind} {a.domain} at {a.address}, {b.kind} {b.domain} at {b.address}", flush=True)
            outcomes = asyncio.run(run_scenarios(scenarios, a, b, password))
        except TargetError as err:
            setup_error = str(err)
            print(f"  setup failed: {setup_error}", flush=True)
            outcomes = {s.name: Outcome(FAIL, f"setup failed: {setup_error.splitlines()[0]}", 0.0) for s in scenarios}
    finally:
        for server in servers:
            server.stop()
        if setup_error is not None:
            for server in servers:
                print(f"--- last lines of {server.kind}'s log ---\n{server.log_tail()}\n---", flush=True)
        for server in servers:
            server.cleanup()
        if dns is not None:
            dns.stop()
        if args.keep:
            print(f"  kept {run_dir}", flush=True)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    return label, outcomes, setup_error


def main(args: argparse.Namespace, here: Path) -> int:
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:<40} {s.description}")
        return 0
    unknown = set(args.only) - {s.name for s in SCENARIOS}
    if unknown:
        print(f"unknown federation scenarios: {sorted(unknown)}")
        return 2
    pairs = args.pair or list(PAIRS)
    if not args.herald:
        pairs = [p for p in pairs if "herald" not in p]
        print("no --herald: running only the pairs without Herald", flush=True)
    modes = args.mode or list(MODES)
    ok = True
    summary = []
    for pair in pairs:
        for mode in modes:
            started = time.time()
            label, outcomes, setup_error = run_target(pair, mode, scenarios, args)
            actual = {name: o.result for name, o in outcomes.items()}
            out = (args.out or here / "out") / f"{label.replace('/', '-')}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            report = {
                "target": label,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "seconds": round(time.time() - started, 1),
                "setup_error": setup_error,
                "scenarios": {name: o.as_json() for name, o in outcomes.items()},
            }
            out.write_text(json.dumps(report, indent=2) + "\n")
            ok = baseline.report(args, label, actual, outcomes) and ok
            passed = sum(1 for r in actual.values() if r == PASS)
            skipped = sum(1 for r in actual.values() if r == NOT_APPLICABLE)
            summary.append(f"{label}: {passed}/{len(actual) - skipped} passed ({skipped} n/a)")
    print("federation: " + "; ".join(summary))
    return 0 if ok or args.update_baseline else 1
