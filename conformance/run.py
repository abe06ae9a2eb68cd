#!/usr/bin/env python3
"""Conformance runner: start a fresh server (Herald on SQLite or PostgreSQL, or Prosody as a reference), run
every slixmpp scenario against it with a timeout each, write the results as JSON, and compare them with
conformance/baseline.json (exit 1 on a regression; --update-baseline rewrites the target's expectations).

    python3 conformance/run.py --herald target/debug/herald --db sqlite
    python3 conformance/run.py --herald target/debug/herald --db postgres
    python3 conformance/run.py --server prosody
    python3 conformance/run.py --server ejabberd
    python3 conformance/run.py --federation --herald target/debug/herald   # fed_* with Prosody and ejabberd
    python3 conformance/run.py --results     # conformance/RESULTS.md from conformance/out/*.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from xmppconf import baseline, clients, fedrun, results
from xmppconf.scenario import (
    FAIL,
    NOT_APPLICABLE,
    PASS,
    Outcome,
    account_user,
    missing_capabilities,
    not_applicable,
    run_one,
)
from xmppconf.targets import Ejabberd, Herald, Prosody, Target, TargetError

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=("herald", "prosody", "ejabberd"), default="herald")
    p.add_argument("--herald", metavar="BIN", help="path of the herald binary (--server herald)")
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite", help="herald storage backend")
    p.add_argument(
        "--out",
        type=Path,
        help="results JSON (default conformance/out/<target>.json; with --federation a directory)",
    )
    p.add_argument("--baseline", type=Path, default=HERE / "baseline.json")
    p.add_argument("--update-baseline", action="store_true", help="write this run's results as the expectation")
    p.add_argument("--only", action="append", default=[], metavar="SCENARIO", help="run only these (repeatable)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument(
        "--prosody-without",
        action="append",
        default=[],
        metavar="MODULE",
        help="leave a module out of the generated Prosody config (checks scenarios fail without it)",
    )
    p.add_argument(
        "--federation",
        action="store_true",
        help="run the fed_* scenarios on pairs of servers (Herald, Prosody, ejabberd) instead",
    )
    fedrun.add_arguments(p)
    clients.add_arguments(p)
    p.add_argument(
        "--results",
        action="store_true",
        help="run nothing: print RESULTS.md from the result files (--out DIR, default conformance/out) and write it",
    )
    p.add_argument(
        "--results-file", type=Path, default=HERE / "RESULTS.md", help="where --results writes (default %(default)s)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs, data)")
    p.add_argument("-v", "--verbose", action="store_true", help="slixmpp debug logging on stderr")
    args = p.parse_args(argv)
    if args.server == "herald" and not (args.herald or args.list or args.federation or args.results):
        p.error("--herald BIN is required with --server herald")
    return args


def make_target(args: argparse.Namespace) -> Target:
    if args.server == "prosody":
        return Prosody(keep=args.keep, without=tuple(args.prosody_without))
    if args.server == "ejabberd":
        return Ejabberd(keep=args.keep)
    return Herald(args.herald, args.db, keep=args.keep)


MARKS = {PASS: "PASS", FAIL: "FAIL", NOT_APPLICABLE: "N/A "}


async def run_all(scenarios, target: Target, password: str) -> dict[str, Outcome]:
    results = {}
    for scenario in scenarios:
        missing = missing_capabilities(scenario, target.capabilities)
        if missing:
            outcome = not_applicable(scenario, target.label, missing)
        else:
            outcome = await run_one(scenario, target.endpoint, password, push=target.push)
        results[scenario.name] = outcome
        mark = MARKS[outcome.result]
        print(f"  {mark} {scenario.name:<40} {outcome.seconds:5.1f}s  {outcome.reason}", flush=True)
    return results


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL, stream=sys.stderr)
    if args.results:
        return results.main(args.out or HERE / "out", args.results_file)
    if args.federation:
        return fedrun.main(args, HERE)
    every = clients.scenarios(args)
    scenarios = [s for s in every if not args.only or s.name in args.only]
    if args.list:
        for s in every:
            print(f"{s.name:<40} {s.description}")
        return 0
    unknown = set(args.only) - {s.name for s in every}
    if unknown:
        print(f"unknown scenarios: {sorted(unknown)}", file=sys.stderr)
        return 2

    target = make_target(args)
    password = "pw-" + secrets.token_hex(8)
    applicable = [s for s in scenarios if not missing_capabilities(s, target.capabilities)]
    accounts = [account_user(s, role) for s in applicable for role in s.accounts]
    print(f"conformance: {target.label}, {len(scenarios)} scenarios, dir {target.dir}", flush=True)
    started = time.time()
    setup_error = None
    outcomes: dict[str, Outcome] = {}
    try:
        try:
            target.start(accounts, password)
            print(f"  {target.label} up: c2s {target.c2s_port}, direct TLS {target.direct_tls_port}", flush=True)
            outcomes = asyncio.run(run_all(scenarios, target, password))
        except TargetError as err:
            setup_error = str(err)
            print(f"  server setup failed: {setup_error}", flush=True)
            reason = f"server setup failed: {setup_error.splitlines()[0]}"
            outcomes = {s.name: Outcome(FAIL, reason, 0.0) for s in scenarios}
    finally:
        target.stop()
        if setup_error is not None:
            print(f"--- last lines of {target.label}'s log ---\n{target.log_tail()}\n---", flush=True)
        elif args.keep:
            print(f"  server log kept in {target.log}", flush=True)
        target.cleanup()

    actual = {name: o.result for name, o in outcomes.items()}
    out = args.out or HERE / "out" / f"{target.label.replace('/', '-')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "target": target.label,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "setup_error": setup_error,
        "scenarios": {name: o.as_json() for name, o in outcomes.items()},
    }
    out.write_text(json.dumps(report, indent=2) + "\n")

    passed = sum(1 for r in actual.values() if r == PASS)
    skipped = sum(1 for r in actual.values() if r == NOT_APPLICABLE)
    ok = baseline.report(args, target.label, actual, outcomes)
    print(
        f"conformance {target.label}: {passed}/{len(actual) - skipped} passed ({skipped} not applicable); "
        f"results in {out}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
