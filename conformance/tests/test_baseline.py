"""Unit tests of the baseline comparison (xmppconf/baseline.py): which differences turn a run red.

python3 -m unittest discover -s conformance/tests -t conformance
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import unittest
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmppconf import baseline
from xmppconf.scenario import Outcome


class Compare(unittest.TestCase):
    def test_identical_run_is_green_with_nothing_to_raise(self):
        cmp = baseline.compare({"a": "pass", "b": "fail", "c": "n/a"}, {"a": "pass", "b": "fail", "c": "n/a"})
        self.assertTrue(cmp.ok)
        self.assertFalse(cmp.raise_baseline)

    def test_pass_to_fail_or_na_is_a_regression(self):
        cmp = baseline.compare({"a": "pass", "b": "pass"}, {"a": "fail", "b": "n/a"})
        self.assertEqual(cmp.regressions, ["a", "b"])
        self.assertFalse(cmp.ok)

    def test_scenario_missing_from_a_full_run_is_red(self):
        cmp = baseline.compare({"a": "pass", "gone": "fail"}, {"a": "pass"})
        self.assertEqual(cmp.vanished, ["gone"])
        self.assertFalse(cmp.ok)

    def test_scenario_not_selected_by_only_has_not_vanished(self):
        cmp = baseline.compare({"a": "pass", "b": "pass"}, {"a": "pass"}, partial=True)
        self.assertEqual(cmp.vanished, [])
        self.assertTrue(cmp.ok)

    def test_new_scenario_failing_on_its_first_run_is_red(self):
        cmp = baseline.compare({"a": "pass"}, {"a": "pass", "new": "fail"})
        self.assertEqual(cmp.new_failures, ["new"])
        self.assertFalse(cmp.ok)

    def test_empty_section_makes_every_failure_new_and_red(self):
        cmp = baseline.compare({}, {"a": "pass", "b": "fail"})
        self.assertEqual(cmp.new_failures, ["b"])
        self.assertFalse(cmp.ok)

    def test_new_pass_and_new_na_are_green_and_ask_to_raise(self):
        cmp = baseline.compare({"a": "pass"}, {"a": "pass", "new": "pass", "other": "n/a"})
        self.assertEqual(cmp.new_passes, ["new", "other"])
        self.assertTrue(cmp.ok)
        self.assertTrue(cmp.raise_baseline)

    def test_fail_or_na_to_pass_is_green_and_asks_to_raise(self):
        cmp = baseline.compare({"a": "fail", "b": "n/a"}, {"a": "pass", "b": "pass"})
        self.assertEqual(cmp.improvements, ["a", "b"])
        self.assertTrue(cmp.ok)
        self.assertTrue(cmp.raise_baseline)

    def test_na_to_fail_is_red_and_fail_to_na_is_green(self):
        cmp = baseline.compare({"a": "n/a", "b": "fail"}, {"a": "fail", "b": "n/a"})
        self.assertEqual(cmp.newly_failing, ["a"])
        self.assertEqual(cmp.changed, ["b"])
        self.assertFalse(cmp.ok)


class Report(unittest.TestCase):
    """baseline.report as run.py and fedrun.py call it: its verdict and what it prints and writes."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "baseline.json"
        self.path.write_text(json.dumps({"t": {"a": "pass", "b": "fail"}, "other": {"x": "pass"}}))

    def tearDown(self):
        self.dir.cleanup()

    def run_report(self, actual, only=(), update=False):
        args = SimpleNamespace(baseline=self.path, only=list(only), update_baseline=update)
        outcomes = {name: Outcome(result, f"why {name}", 0.0) for name, result in actual.items()}
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ok = baseline.report(args, "t", actual, outcomes)
        return ok, out.getvalue()

    def test_vanished_scenario_is_named_and_red(self):
        ok, printed = self.run_report({"a": "pass"})
        self.assertFalse(ok)
        self.assertIn("VANISHED t b", printed)
        self.assertIn("RED", printed)

    def test_new_failure_is_named_with_its_reason(self):
        ok, printed = self.run_report({"a": "pass", "b": "fail", "c": "fail"})
        self.assertFalse(ok)
        self.assertIn("NEW FAILURE t c", printed)
        self.assertIn("why c", printed)

    def test_new_pass_is_green_and_says_raise_the_baseline(self):
        ok, printed = self.run_report({"a": "pass", "b": "pass", "c": "pass"})
        self.assertTrue(ok)
        self.assertIn("IMPROVEMENT t b", printed)
        self.assertIn("NEW t c", printed)
        self.assertIn("raise", printed)

    def test_update_rewrites_only_this_target_and_is_green(self):
        ok, _ = self.run_report({"a": "fail", "c": "pass"}, update=True)
        self.assertTrue(ok)
        data = json.loads(self.path.read_text())
        self.assertEqual(data["t"], {"a": "fail", "c": "pass"})
        self.assertEqual(data["other"], {"x": "pass"})

    def test_update_with_only_merges(self):
        self.run_report({"c": "pass"}, only=["c"], update=True)
        self.assertEqual(json.loads(self.path.read_text())["t"], {"a": "pass", "b": "fail", "c": "pass"})


if __name__ == "__main__":
    unittest.main()
