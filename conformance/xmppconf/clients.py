"""Which clients drive a single-server run (`run.py --client`, repeatable, default all): slixmpp's scenarios
(xmppconf/scenarios), xmpp.js's (`xmppjs/*`, xmppconf/xmppjs.py) and our own channel-binding client's
(`herald-cb/*`, xmppconf/cbclient.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import cbclient, xmppjs
from .scenario import Scenario
from .scenarios import ALL

CLIENTS = ("slixmpp", "xmppjs", "herald-cb")
REPO = Path(__file__).resolve().parent.parent.parent


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--client",
        action="append",
        choices=CLIENTS,
        default=[],
        help="run only this client's scenarios (repeatable; default: all three)",
    )
    p.add_argument(
        "--cb-client",
        type=Path,
        metavar="BIN",
        help="our channel-binding client (default target/debug/herald_cb_client; "
        "cargo build -p herald-tests --bin herald_cb_client)",
    )


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    chosen = args.client or CLIENTS
    found: list[Scenario] = []
    if "slixmpp" in chosen:
        found += ALL
    if "xmppjs" in chosen:
        found += xmppjs.scenarios()
    if "herald-cb" in chosen:
        target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
        found += cbclient.scenarios(args.cb_client or target_dir / "debug" / "herald_cb_client")
    return found
