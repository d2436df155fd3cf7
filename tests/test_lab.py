"""
Tests for L{lmm.lab}: the lab's scenarios run programmatically, with the same
code as C{lmm-lab demo} (real twistd daemons, a Linux MS, seg6 tunnels) and
shorter dwell times; and the timeline's pure parts.

A failing test keeps its run folder (configurations, logs, captures) and names
it in the failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import replace

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from lmm.lab import demo
from lmm.lab import timeline as tl
from lmm.lab.topology import Lab, MSSpec, Topology, down, labNamespaces, loadTopology, randomMac
from lmm.testing.netns import netnsUnavailableReason, waitFor

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TimelineTests(SynchronousTestCase):
    """The pure parts: ping output, losses per phase, the picture."""

    PING = """\
PING fd00:cc::2(fd00:cc::2) 56 data bytes
[100.010000] 64 bytes from fd00:cc::2: icmp_seq=1 ttl=63 time=0.200 ms
[100.020000] 64 bytes from fd00:cc::2: icmp_seq=2 ttl=63 time=0.200 ms
[100.060000] 64 bytes from fd00:cc::2: icmp_seq=6 ttl=63 time=0.200 ms

--- fd00:cc::2 ping statistics ---
7 packets transmitted, 3 received, 57% packet loss, time 60ms
"""

    def test_parsePing(self) -> None:
        record = tl.parsePing(self.PING, 0.01)
        self.assertEqual(record.transmitted, 7)
        self.assertEqual(sorted(record.replies), [1, 2, 6])
        self.assertEqual(record.lost(), [3, 4, 5, 7])
        self.assertAlmostEqual(record.sentAt(4) or 0, 100.0398, places=4)  # interpolated

    def test_lossesPerPhase(self) -> None:
        record = tl.parsePing(self.PING, 0.01)
        timeline = tl.Timeline.build(100.0, [(100.0, "attach"), (100.025, "handover")],
                                     [tl.Event(100.03, "wire", "PBU")], record)
        attach, handover = timeline.phases
        self.assertEqual((attach.sent, attach.lost), (2, 0))
        self.assertEqual((handover.sent, handover.lost), (5, 4))
        self.assertAlmostEqual(handover.outage or 0, 0.035, places=4)
        self.assertIn("PBU", timeline.text())
        ET.fromstring(timeline.svg("a <test> & more"))  # well-formed


class LabTests(SynchronousTestCase):
    """The lab's scenarios on the real kernel."""

    def setUp(self) -> None:
        self.failed = False  # then the run folder is kept
        reason = netnsUnavailableReason()
        if reason is not None:
            raise SkipTest(reason)
        if shutil.which("tcpdump") is None:
            raise SkipTest("tcpdump is not installed")

    def makeLab(self, topology: Topology) -> Lab:
        # UNIX sockets' paths have at most 107 bytes: trial's folders are deeper.
        runDir = tempfile.mkdtemp(prefix="lmm-lab-test-")
        lab = Lab(topology, runDir=runDir)
        self.addCleanup(self.stopLab, lab)
        try:
            lab.start()
        except BaseException as e:
            raise self.failureException(f"{e}; logs in {runDir}") from e
        return lab

    def stopLab(self, lab: Lab) -> None:
        problems = lab.stop()
        if problems or self.failed:
            sys.stderr.write(f"\nlab logs kept in {lab.runDir}\n")
        else:
            shutil.rmtree(lab.runDir, ignore_errors=True)
        self.assertEqual(problems, [], f"logs in {lab.runDir}")

    def topology(self, **changes: object) -> Topology:
        base = loadTopology()
        return replace(base, **changes)  # type: ignore[arg-type]

    def run_(self, lab: Lab) -> demo.Result:
        try:
            return demo.runDemo(lab)
        except Exception as e:
            self.failed = True
            raise self.failureException(f"{type(e).__name__}: {e}; logs in {lab.runDir}") \
                from e

    def finish(self, lab: Lab, result: demo.Result) -> tl.Timeline:
        lab.stop()
        timeline = demo.buildTimeline(lab, result)
        assert timeline is not None
        problems = result.problems + demo.checkPings(timeline)
        if problems:
            self.failed = True
        self.assertEqual(problems, [], f"{timeline.text()}\nlogs in {lab.runDir}")
        return timeline

    def test_attachAndPing(self) -> None:
        """The MS configures its address by SLAAC, is registered, reaches the CN."""
        lab = self.makeLab(self.topology(handovers=[], dwell=0.3))
        result = self.run_(lab)
        timeline = self.finish(lab, result)
        [phase] = timeline.phases
        self.assertEqual(phase.lost, 0, timeline.text())
        labels = [e.label for e in phase.events]
        for wanted in ("attach detected", "Access-Accept", "registered, tunnel up"):
            self.assertIn(wanted, labels)
        self.assertTrue(any(label.startswith("RA received") for label in labels))

    def test_handoverBothWays(self) -> None:
        """mpa1 → mpa2 → mpa1 while pinging: the MS keeps its address, pings go on,
        the LMAP revokes the old MPA each time; the picture is well-formed."""
        lab = self.makeLab(self.topology(handovers=["mpa2", "mpa1"], dwell=0.5))
        result = self.run_(lab)
        timeline = self.finish(lab, result)
        self.assertEqual(result.addresses, [result.address, result.address])
        for phase in timeline.phases[1:]:
            labels = [e.label for e in phase.events]
            self.assertTrue(any(label.startswith("BRI ") for label in labels), labels)
            self.assertTrue(any(label.startswith("BRA ") for label in labels), labels)
            self.assertTrue(any(label.startswith("first MS packet tunnelled")
                                for label in labels), labels)
            # Measured: 1-3 lost at 10 ms; generous for a loaded machine.
            self.assertLess(phase.lost, 30, timeline.text())
        ET.parse(demo.writePicture(lab, timeline))

    def test_rejected(self) -> None:
        """An MS that AAA rejects gets no RA, no address, no registration."""
        barred = MSSpec("barred", randomMac(), "mpa1", accept=False)
        lab = self.makeLab(self.topology(stations=[barred], handovers=[]))
        station = lab.attach(barred)
        try:
            waitFor(lambda: lab.counters("mpa1").get("aaa.rejected"), 5, 0.02,
                    what="the rejection")
            time.sleep(1.0)  # room for an answer that must not come
            self.assertEqual(lab.globalAddresses(station), [])
            [visitor] = lab.visitors("mpa1")
            self.assertEqual(visitor["state"], "rejected")
        except BaseException:
            self.failed = True
            raise
        lab.stop()
        events = tl.stationEvents(lab.path("barred.pcap"), None)
        self.assertEqual([e for e in events if e.label.startswith("RA")], [])
        self.assertEqual(tl.backboneEvents(lab.backbonePcap, {}, None), [])

    def test_downAfterCrash(self) -> None:
        """A lab whose process is killed leaves namespaces and daemons; down removes them."""
        runDir = tempfile.mkdtemp(prefix="lmm-lab-test-")
        self.addCleanup(shutil.rmtree, runDir, True)
        before = set(labNamespaces())
        source = (
            "import sys\n"
            "from dataclasses import replace\n"
            "from lmm.lab.topology import Lab, loadTopology\n"
            "t = loadTopology()\n"
            "t = replace(t, mpas=t.mpas[:1], aaa='file')\n"
            f"lab = Lab(t, runDir={runDir!r}).start()\n"
            "print(lab.daemons['mpa1'].process.pid, flush=True)\n"
            "sys.stdin.read()\n"
        )
        process = subprocess.Popen([sys.executable, "-c", source], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, cwd=_REPO,
                                   env=dict(os.environ, PYTHONPATH=_REPO))
        self.addCleanup(process.kill)  # (harmless once it is dead)
        line = process.stdout.readline() if process.stdout else ""
        self.assertTrue(line.strip(), "the lab did not start")
        pid = int(line)
        ours = [n for n in labNamespaces() if n not in before]
        self.assertTrue(ours)
        os.kill(process.pid, signal.SIGKILL)  # no cleanup of any kind
        process.wait()
        self.assertTrue(os.path.exists(f"/proc/{pid}"), "the MPA died with its lab")
        with open(os.devnull, "w") as out:
            down(out=out)
        self.assertEqual([n for n in labNamespaces() if n in ours], [])
        waitFor(lambda: not os.path.exists(f"/proc/{pid}"), 5, what="the MPA to be gone")
        self.assertTrue(os.path.exists(os.path.join(runDir, "mpa1.log")))
