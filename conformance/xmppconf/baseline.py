"""The checked-in baseline: per target ("herald/sqlite", "herald/postgres", "prosody"), scenario -> expected
result ("pass", "fail", or "n/a" for a scenario the target cannot run). A regression (expected pass, now
anything else) fails the run; an improvement (expected fail or n/a, now pass), another change (fail <-> n/a)
and a scenario missing from the baseline are reported so the baseline can be refreshed with --update-baseline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .scenario import PASS


@dataclass
class Comparison:
    regressions: list[str] = field(default_factory=list)
    improvements: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.regressions


def load(path: Path) -> dict:
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def compare(expected: dict[str, str], actual: dict[str, str]) -> Comparison:
    cmp = Comparison()
    for name, result in actual.items():
        want = expected.get(name)
        if want is None:
            cmp.unlisted.append(name)
        elif want == result:
            continue
        elif want == PASS:
            cmp.regressions.append(name)
        elif result == PASS:
            cmp.improvements.append(name)
        else:
            cmp.changed.append(name)
    cmp.stale = sorted(set(expected) - set(actual))
    return cmp


def update(path: Path, target: str, actual: dict[str, str]) -> None:
    """Replace one target's section, keeping the others, with stable key order for readable diffs."""
    data = load(path)
    data[target] = dict(sorted(actual.items()))
    path.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n")


def report(args, label: str, actual: dict[str, str], outcomes: dict) -> bool:
    """Compare one target's results with the baseline file (`args.baseline`), print what changed, and with
    `args.update_baseline` rewrite that target's section (merged when `args.only` selected scenarios).
    False on a regression."""
    expected = load(args.baseline).get(label, {})
    cmp = compare(expected, actual)
    if args.update_baseline:
        update(args.baseline, label, {**expected, **actual} if args.only else actual)
        print(f"baseline for {label} updated in {args.baseline}")
    for name in cmp.regressions:
        print(f"REGRESSION {name}: expected pass, got {actual[name]}: {outcomes[name].reason}")
    for name in cmp.improvements:
        print(f"IMPROVEMENT {name}: expected {expected[name]}, now passes (refresh with --update-baseline)")
    for name in cmp.changed:
        print(f"CHANGED {name}: expected {expected[name]}, got {actual[name]}: {outcomes[name].reason}")
    for name in cmp.unlisted:
        print(f"NEW {name}: not in the baseline for {label} ({actual[name]})")
    print(f"{label}: {len(cmp.regressions)} regressions, {len(cmp.improvements)} improvements")
    return cmp.ok
