"""
A short bounded pass of bench/fuzz.py (atheris, coverage-guided) over every
parser the daemons expose to the network: each target runs its inputs and
none crashes. The long run (a million inputs per target) is recorded in
docs/benchmarks.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = 5000


class FuzzPassTests(SynchronousTestCase):
    def test_noCrash(self) -> None:
        result = subprocess.run([sys.executable, os.path.join(TOP, "bench", "fuzz.py"),
                                 "--runs", str(RUNS)], capture_output=True, text=True,
                                timeout=600, cwd=TOP)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        self.assertIn("target no crash in any parser: met", output)
        found = dict(re.findall(r"^  (\w+)\s+(\d+) inputs", output, re.M))
        self.assertEqual(sorted(found), sorted(["mh", "nd", "dhcp6", "radius", "rtnetlink"]))
        for target, executed in found.items():
            self.assertGreaterEqual(int(executed), RUNS, f"{target}: {output}")
        # Coverage was measured: the instrumented modules reported edges.
        for target, coverage in re.findall(r"^  (\w+)\s+\d+ inputs\s+coverage\s+(\d+)",
                                           output, re.M):
            self.assertGreater(int(coverage), 10, f"{target}: {output}")
