#!/usr/bin/env python3
"""Prints the results table of a conformance run: one row per scenario, one column per target, from the result
files conformance/run.py writes (conformance/out/<target>.json). Markdown, so it can be pasted as it is.

    python3 conformance/docker/table.py conformance/out/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SHOWN = {"pass": "pass", "fail": "FAIL", "n/a": "n/a"}


def main(paths: list[str]) -> int:
    columns: list[tuple[str, dict[str, str]]] = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            print(f"cannot read {path}: {err}", file=sys.stderr)
            return 1
        results = {name: outcome.get("result", "?") for name, outcome in report.get("scenarios", {}).items()}
        columns.append((report.get("target", Path(path).stem), results))
    if not columns:
        print("no results (conformance/out/*.json)", file=sys.stderr)
        return 1
    scenarios = sorted({name for _, results in columns for name in results})
    print("| scenario | " + " | ".join(target for target, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name in scenarios:
        cells = [SHOWN.get(results.get(name, "-"), results.get(name, "-")) for _, results in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
