"""Unit tests of RESULTS.md's requirement verdicts (xmppconf/results.py).

python3 -m unittest discover -s conformance/tests -t conformance
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmppconf import results


def report(target: str, **scenarios: str) -> dict:
    return {
        "target": target,
        "scenarios": {name: {"result": r, "reason": f"why {name}"} for name, r in scenarios.items()},
    }


HERALD = ("Herald (SQLite)", ("herald/sqlite",), "herald")
PROSODY = ("Prosody", ("prosody",), "prosody")
REQ = results.Requirement("feature", "XEP-0000", results.BOTH, ("sm_*", "fed_message_*"))


class Status(unittest.TestCase):
    def reports(self, **fed: str) -> dict:
        r = {
            "herald/sqlite": report("herald/sqlite", sm_resume="pass", sm_other="n/a"),
            "prosody": report("prosody", sm_resume="pass"),
            "fed/herald-ejabberd/external": report("fed/herald-ejabberd/external", **fed),
        }
        return r

    def test_met_when_every_mapped_scenario_that_ran_passed(self):
        seen = results.observations(self.reports(fed_message_a_to_b="pass"), HERALD)
        self.assertEqual(results.status(REQ, seen), (results.MET, []))

    def test_a_failed_federation_run_counts_for_the_servers_of_its_pair_only(self):
        reports = self.reports(fed_message_a_to_b="fail")
        verdict, failed = results.status(REQ, results.observations(reports, HERALD))
        self.assertEqual(verdict, results.NOT_MET)
        self.assertEqual(failed, [("fed/herald-ejabberd/external", "fail", "why fed_message_a_to_b")])
        self.assertEqual(results.status(REQ, results.observations(reports, PROSODY))[0], results.MET)

    def test_not_tested_when_nothing_mapped_ran(self):
        req = results.Requirement("group chat", "XEP-0045", results.BOTH, ("muc_*",))
        seen = results.observations(self.reports(), HERALD)
        self.assertEqual(results.status(req, seen)[0], results.NOT_TESTED)

    def test_not_tested_when_every_mapped_scenario_was_na(self):
        req = results.Requirement("x", "XEP-0000", results.BOTH, ("sm_other",))
        self.assertEqual(results.status(req, results.observations(self.reports(), HERALD))[0], results.NOT_TESTED)

    def test_render_lists_missing_targets_and_failure_reasons(self):
        text = results.render(self.reports(fed_message_a_to_b="fail"))
        self.assertIn("Not run: herald/postgres", text)
        self.assertIn("why fed_message_a_to_b", text)


if __name__ == "__main__":
    unittest.main()
