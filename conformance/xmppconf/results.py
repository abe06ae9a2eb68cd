"""conformance/RESULTS.md, generated (`run.py --results`) from the result files of real runs (out/*.json): the
scenarios by server, and the XMPP Compliance Suites 2023 (XEP-0479) levels Core, IM and Mobile for servers, each
requirement mapped to the scenarios that observe it. A requirement is met for a server when every mapped scenario
that ran there passed (at least one), not met when one failed, and not tested when none ran. Federation scenarios
count for each server of the pair (both modes). Nothing here is kept by hand except the mapping below.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

# Columns of the compliance table: the server, and the result files (target labels) that speak for it.
SERVERS = (
    ("Herald (SQLite)", ("herald/sqlite",), "herald"),
    ("Herald (PostgreSQL)", ("herald/postgres",), "herald"),
    ("Prosody", ("prosody",), "prosody"),
    ("ejabberd", ("ejabberd",), "ejabberd"),
)
SINGLE_TARGETS = tuple(label for _, labels, _ in SERVERS for label in labels)
FED_PAIRS = ("herald-prosody", "herald-ejabberd", "prosody-ejabberd")
FED_MODES = ("external", "dialback")
FED_TARGETS = tuple(f"fed/{pair}/{mode}" for pair in FED_PAIRS for mode in FED_MODES)

SERVER = "Server"
ADVANCED = "Advanced Server"


@dataclass(frozen=True)
class Requirement:
    """One feature row of XEP-0479 section 2 for servers: the levels requiring it, its providers, and the
    scenarios (fnmatch patterns) that observe it on the server side."""

    feature: str
    providers: str
    levels: tuple[str, ...]
    scenarios: tuple[str, ...]
    note: str = ""


BOTH = (SERVER, ADVANCED)
ADV = (ADVANCED,)

# XEP-0479 (Compliance Suites 2023, unchanged from 2022's XEP-0459), section 2: Core, IM and Mobile, server columns.
SUITES: dict[str, tuple[Requirement, ...]] = {
    "Core": (
        Requirement(
            "Core features: TLS, SASL, binding, routing",
            "RFC 6120",
            BOTH,
            (
                "auth_scram_sha_1_starttls",
                "auth_scram_sha_256_starttls",
                "auth_plain_starttls",
                "auth_wrong_password_rejected",
                "chat_between_users",
                "xmppjs/auth_*",
                "xmppjs/chat_between_users",
            ),
        ),
        Requirement(
            "Core features: SCRAM-SHA-1-PLUS (RFC 6120 section 13.8)",
            "RFC 6120",
            BOTH,
            ("auth_scram_sha_1_plus_*", "herald-cb/scram_sha_1_plus_*", "herald-cb/openssl_scram_sha_1_plus_*"),
            "slixmpp offers only tls-unique, which needs TLS 1.2; herald-cb/* is OUR OWN client (rustls and OpenSSL "
            "binding data), the only one here that can do tls-exporter and tls-server-end-point",
        ),
        Requirement(
            "Core features: server-to-server",
            "RFC 6120",
            BOTH,
            ("fed_message_*", "fed_unknown_user_*", "fed_auth_method"),
            "federation runs",
        ),
        Requirement("TLS", "RFC 7590", BOTH, ("auth_scram_sha_256_starttls", "auth_plain_starttls")),
        Requirement("Direct TLS", "XEP-0368", ADV, ("auth_scram_sha_1_directtls", "auth_scram_sha_256_directtls")),
        Requirement(
            "Feature discovery",
            "XEP-0030",
            BOTH,
            ("disco_info_server", "disco_items_server", "xmppjs/disco_info_server"),
        ),
        Requirement(
            "Feature broadcasts",
            "XEP-0115",
            ADV,
            ("pep_omemo_notify_and_fetch", "pep_avatar_metadata_notify"),
            "server side: +notify interest taken from caps",
        ),
        Requirement(
            "Server extensibility",
            "XEP-0114",
            BOTH,
            ("push_xep0357_component",),
            "the component is a XEP-0357 app server",
        ),
        Requirement("Event publishing", "XEP-0163", ADV, ("pep_omemo_notify_and_fetch", "pep_stranger_refused")),
    ),
    "IM": (
        Requirement(
            "Core features",
            "RFC 6121",
            BOTH,
            (
                "roster_subscription_both",
                "presence_initial_and_unavailable",
                "presence_unavailable_on_connection_loss",
                "chat_between_users",
                "offline_delivery_with_delay",
                "xmppjs/roster_subscription_both",
                "xmppjs/presence_initial_and_unavailable",
                "xmppjs/offline_delivery_with_delay",
                "fed_subscription_both",
                "fed_presence_exchange",
            ),
        ),
        Requirement("User avatar compatibility", "XEP-0398, XEP-0153", ADV, ("pep_vcard_photo_to_avatar",)),
        Requirement("vcard-temp", "XEP-0054", BOTH, ("vcard_set_get",)),
        Requirement(
            "Outbound message synchronization",
            "XEP-0280",
            BOTH,
            ("carbons_two_resources", "xmppjs/carbons_two_resources"),
        ),
        Requirement("User blocking", "XEP-0191", ADV, ("blocking_block_unblock",)),
        Requirement("Group chat", "XEP-0045, XEP-0249", BOTH, ("muc_*",)),
        Requirement(
            "Advanced group chat: bookmarks",
            "XEP-0048, XEP-0402 (#compat)",
            ADV,
            ("pep_bookmarks2", "pep_bookmarks2_private_compat"),
        ),
        Requirement("Advanced group chat: MUC archive, self-ping", "XEP-0313 (MUC), XEP-0410", ADV, ("muc_*",)),
        Requirement("Persistent storage of private data via PubSub", "XEP-0223", ADV, ("pep_bookmarks2",)),
        Requirement("Private XML storage", "XEP-0049", ADV, ("private_xml",)),
        Requirement("Stream management", "XEP-0198", ADV, ("sm_*",)),
        Requirement("History storage / retrieval", "XEP-0313", ADV, ("mam_*", "xmppjs/mam_*")),
        Requirement("File upload", "XEP-0363", BOTH, ("upload_*", "http_upload_*")),
    ),
    "Mobile": (
        Requirement("Stream management", "XEP-0198", BOTH, ("sm_*",)),
        Requirement("Client state indication", "XEP-0352", BOTH, ("csi_*",)),
        Requirement("Third party push notifications", "XEP-0357", ADV, ("push_xep0357_*",)),
    ),
}

MET, NOT_MET, NOT_TESTED = "met", "NOT MET", "not tested"
SHOWN = {"pass": "pass", "fail": "FAIL", "n/a": "n/a"}


def load(directory: Path) -> dict[str, dict]:
    """Target label -> the report run.py wrote (out/<target>.json), for every readable result file."""
    reports = {}
    for path in sorted(directory.glob("*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and "target" in report:
            reports[report["target"]] = report
    return reports


def _results(report: dict) -> dict[str, str]:
    return {name: o.get("result", "?") for name, o in report.get("scenarios", {}).items()}


def observations(reports: dict[str, dict], server: tuple[str, tuple[str, ...], str]) -> dict[str, list]:
    """Scenario -> [(target, result, reason)] for one compliance column: its own runs and every federation run
    whose pair includes its kind."""
    _, labels, kind = server
    fed = [t for t in reports if t.startswith("fed/") and kind in t.split("/")[1].split("-") and "+" not in t]
    seen: dict[str, list] = {}
    for target in (*labels, *sorted(fed)):
        if target not in reports:
            continue
        for name, outcome in reports[target].get("scenarios", {}).items():
            seen.setdefault(name, []).append((target, outcome.get("result", "?"), outcome.get("reason", "")))
    return seen


def status(req: Requirement, seen: dict[str, list]) -> tuple[str, list]:
    """(met | NOT MET | not tested, the failed observations)."""
    matched = [obs for name, lst in seen.items() if any(fnmatch.fnmatch(name, p) for p in req.scenarios) for obs in lst]
    ran = [o for o in matched if o[1] in ("pass", "fail")]
    failed = [o for o in ran if o[1] == "fail"]
    if failed:
        return NOT_MET, failed
    return (MET if ran else NOT_TESTED), []


def _scenario_table(reports: dict[str, dict], targets: tuple[str, ...]) -> list[str]:
    present = [t for t in targets if t in reports]
    if not present:
        return ["(no results)"]
    names = sorted({n for t in present for n in reports[t].get("scenarios", {})})
    lines = ["| scenario | " + " | ".join(present) + " |", "|---|" + "---|" * len(present)]
    for name in names:
        cells = [SHOWN.get(_results(reports[t]).get(name, "-"), "-") for t in present]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    totals = []
    for t in present:
        res = list(_results(reports[t]).values())
        totals.append(f"{res.count('pass')}/{len(res) - res.count('n/a')}")
    lines.append("| **passed / applicable** | " + " | ".join(totals) + " |")
    return lines


def render(reports: dict[str, dict]) -> str:
    out = [
        "# Conformance results",
        "",
        (
            "Generated by `python3 conformance/run.py --results` from the result files of the runs listed below "
            "(`conformance/out/*.json`); do not edit by hand. How to produce it: conformance/README.md."
        ),
        "",
        "| target | started (UTC) | seconds | setup error |",
        "|---|---|---|---|",
    ]
    for target in (*SINGLE_TARGETS, *FED_TARGETS, *sorted(set(reports) - set(SINGLE_TARGETS) - set(FED_TARGETS))):
        if target in reports:
            r = reports[target]
            out.append(
                f"| {target} | {r.get('started', '?')} | {r.get('seconds', '?')} | {r.get('setup_error') or ''} |"
            )
    missing = [t for t in (*SINGLE_TARGETS, *FED_TARGETS) if t not in reports]
    if missing:
        out += ["", f"Not run: {', '.join(missing)}."]
    out += ["", "## Scenarios by server", "", *_scenario_table(reports, SINGLE_TARGETS)]
    out += ["", "## Federation scenarios by pair and authentication mode", "", *_scenario_table(reports, FED_TARGETS)]
    out += [
        "",
        "## XMPP Compliance Suites 2023 (XEP-0479), server levels",
        "",
        (
            "XEP-0479 lists the same server requirements as the 2022 suites (XEP-0459). Each requirement maps to the "
            "scenarios (patterns) that observe it; met: every mapped scenario that ran for that server passed; NOT MET: "
            "one failed (listed below the tables); not tested: no scenario observes it. Federation scenarios count for "
            "both servers of a pair (Herald's federation runs use SQLite). IM and Mobile compliance also need the Core "
            "level (XEP-0479 section 2); their level rows count only their own requirements."
        ),
    ]
    failures: list[str] = []
    names = [name for name, _, _ in SERVERS]
    for suite, reqs in SUITES.items():
        out += ["", f"### {suite}", "", "| feature | providers | levels | scenarios | " + " | ".join(names) + " |"]
        out.append("|---|---|---|---|" + "---|" * len(names))
        per_level: dict[str, dict[str, list[str]]] = {lvl: {n: [] for n in names} for lvl in BOTH}
        for req in reqs:
            cells = []
            for server in SERVERS:
                verdict, failed = status(req, observations(reports, server))
                cells.append(verdict)
                for lvl in req.levels:
                    per_level[lvl][server[0]].append(verdict)
                for target, _, reason in failed:
                    failures.append(f"- {suite} / {req.feature} / {server[0]}: `{target}`: {reason}")
            levels = "S, A" if req.levels == BOTH else "A"
            patterns = ", ".join(f"`{p}`" for p in req.scenarios)
            if req.note:
                patterns += f" ({req.note})"
            out.append(f"| {req.feature} | {req.providers} | {levels} | {patterns} | " + " | ".join(cells) + " |")
        for lvl in BOTH:
            summary = []
            for name in names:
                verdicts = per_level[lvl][name]
                if NOT_MET in verdicts:
                    summary.append(f"{NOT_MET} ({verdicts.count(NOT_MET)} of {len(verdicts)} requirements)")
                elif NOT_TESTED in verdicts:
                    summary.append(f"met where tested, {verdicts.count(NOT_TESTED)} of {len(verdicts)} not tested")
                else:
                    summary.append(MET)
            out.append(f"| **{suite} {lvl} level** | | | | " + " | ".join(summary) + " |")
    out += [
        "",
        "Levels: S = Server, A = Advanced Server (XEP-0479 section 2).",
        "",
        "### Why a requirement is not met",
        "",
    ]
    out += sorted(set(failures)) or ["(none)"]
    return "\n".join(out) + "\n"


def main(directory: Path, destination: Path | None) -> int:
    """Renders RESULTS.md from `directory`/*.json, prints it, and writes it to `destination` (if given)."""
    reports = load(directory)
    if not reports:
        print(f"no result files in {directory} (run the targets first)")
        return 1
    text = render(reports)
    print(text, end="")
    if destination is not None:
        destination.write_text(text)
        print(f"written to {destination}")
    return 0
