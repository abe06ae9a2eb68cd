"""The checked-in baseline: per target ("herald/sqlite", "herald/postgres", "prosody", "ejabberd",
"fed/<pair>/<mode>"), scenario -> expected result ("pass", "fail", or "n/a" for a scenario the target cannot run).

A run is red (the runner exits 1) when, against its target's section:
- a scenario expected to pass did not (regression);
- a scenario expected to be not applicable now runs and fails (newly failing);
- a scenario of the baseline is missing from a full run (vanished: renamed, dropped, or no longer collected);
- a scenario not in the baseline fails on its first run (new failure).
It stays green, and says "raise the baseline", when a scenario passes that was expected to fail or be n/a, or a new
scenario passes or is n/a; a scenario expected to fail that is now n/a is reported and green. `--update-baseline`
rewrites the target's section from the run (merging when `--only` selected scenarios).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .scenario import FAIL, NOT_APPLICABLE, PASS


@dataclass
class Comparison:
    """One target's run against its baseline section; each list holds scenario names, sorted."""

    regressions: list[str] = field(default_factory=list)  # expected pass, got fail or n/a
    newly_failing: list[str] = field(default_factory=list)  # expected n/a, got fail
    vanished: list[str] = field(default_factory=list)  # in the baseline, not in the (full) run
    new_failures: list[str] = field(default_factory=list)  # not in the baseline, fail
    improvements: list[str] = field(default_factory=list)  # expected fail or n/a, got pass
    new_passes: list[str] = field(default_factory=list)  # not in the baseline, pass or n/a
    changed: list[str] = field(default_factory=list)  # expected fail, got n/a

    @property
    def ok(self) -> bool:
        return not (self.regressions or self.newly_failing or self.vanished or self.new_failures)

    @property
    def raise_baseline(self) -> bool:
        """The run is better than (or adds to) the baseline, which should be updated."""
        return bool(self.improvements or self.new_passes or self.changed)


def load(path: Path) -> dict:
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def compare(expected: dict[str, str], actual: dict[str, str], partial: bool = False) -> Comparison:
    """`partial`: the run was restricted (--only), so baseline scenarios it did not select are not vanished."""
    cmp = Comparison()
    for name, result in sorted(actual.items()):
        want = expected.get(name)
        if want == result:
            continue
        if want is None:
            (cmp.new_failures if result == FAIL else cmp.new_passes).append(name)
        elif want == PASS:
            cmp.regressions.append(name)
        elif result == PASS:
            cmp.improvements.append(name)
        elif want == NOT_APPLICABLE and result == FAIL:
            cmp.newly_failing.append(name)
        else:
            cmp.changed.append(name)
    if not partial:
        cmp.vanished = sorted(set(expected) - set(actual))
    return cmp


def update(path: Path, target: str, actual: dict[str, str]) -> None:
    """Replace one target's section, keeping the others, with stable key order for readable diffs."""
    data = load(path)
    data[target] = dict(sorted(actual.items()))
    path.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n")


def messages(label: str, expected: dict[str, str], actual: dict[str, str], reasons: dict[str, str], cmp: Comparison):
    """The lines that explain `cmp`, red ones first."""
    for name in cmp.regressions:
        yield f"REGRESSION {label} {name}: expected pass, got {actual[name]}: {reasons.get(name, '')}"
    for name in cmp.newly_failing:
        yield f"NEWLY FAILING {label} {name}: expected n/a, now runs and fails: {reasons.get(name, '')}"
    for name in cmp.vanished:
        yield (
            f"VANISHED {label} {name}: in the baseline ({expected[name]}) but not in this run "
            "(renamed or removed? update the baseline with the change)"
        )
    for name in cmp.new_failures:
        yield f"NEW FAILURE {label} {name}: not in the baseline and fails on its first run: {reasons.get(name, '')}"
    for name in cmp.improvements:
        yield f"IMPROVEMENT {label} {name}: expected {expected[name]}, now passes: raise the baseline"
    for name in cmp.new_passes:
        yield f"NEW {label} {name}: not in the baseline, {actual[name]}: raise the baseline"
    for name in cmp.changed:
        yield f"CHANGED {label} {name}: expected {expected[name]}, got {actual[name]}: {reasons.get(name, '')}"


def report(args, label: str, actual: dict[str, str], outcomes: dict) -> bool:
    """Compare one target's results with the baseline file (`args.baseline`), print what changed, and with
    `args.update_baseline` rewrite that target's section (merged when `--only` or `--client` selected scenarios).
    False when the run is red (see the module doc); always True with `args.update_baseline`."""
    expected = load(args.baseline).get(label, {})
    # --only or --client (run.py) select part of the scenarios: the others are not vanished, and an update merges.
    partial = bool(args.only or getattr(args, "client", None))
    cmp = compare(expected, actual, partial=partial)
    reasons = {name: outcome.reason for name, outcome in outcomes.items()}
    for line in messages(label, expected, actual, reasons, cmp):
        print(line)
    if args.update_baseline:
        update(args.baseline, label, {**expected, **actual} if partial else actual)
        print(f"baseline for {label} updated in {args.baseline}")
        return True
    red = len(cmp.regressions) + len(cmp.newly_failing) + len(cmp.vanished) + len(cmp.new_failures)
    verdict = "matches the baseline" if cmp.ok else f"{red} against the baseline (RED)"
    if cmp.ok and cmp.raise_baseline:
        verdict += "; better than the baseline: raise it with --update-baseline"
    print(f"baseline {label}: {verdict}")
    return cmp.ok
