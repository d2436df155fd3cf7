"""
Swapping a running daemon's tunnel backend (L{lmm.dataplane.swapping}, the
C{tunnel BACKEND} command of both control channels).

The unit tests drive L{LMAPService.swapDataPlane} with recording data planes
and a fake clock. The end-to-end test runs the lab (lmm.lab: twistd lmm-lmap,
one twistd lmm-mpa on seg6, a Linux MS attached by SLAAC, a CN) and swaps the
LMAP then the MPA to userspace and back while the MS pings the CN every
10 ms.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from ipaddress import IPv6Network
from typing import Any, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from lmm import mh
from lmm.control import ask
from lmm.dataplane import swapping
from lmm.dataplane.swapping import SwapError
from lmm.lab import demo
from lmm.lab import timeline as tl
from lmm.lab.topology import Lab, MSSpec, loadTopology, randomMac
from lmm.lmap.anchor import LocalMobilityAnchor
from lmm.lmap.control import execute
from lmm.lmap.service import LMAPService
from lmm.testing.netns import netnsUnavailableReason
from lmm.tunnel import ROLE_LMAP, RecordingDataPlane, TunnelBinding

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binding(n: int) -> TunnelBinding:
    return TunnelBinding(f"2001:db8:1::{n:x}", 128, "2001:db8:ff::1", "2001:db8:ff::2",
                         ROLE_LMAP)


class Refusing(RecordingDataPlane):
    """A backend that cannot carry C{refused}."""

    name = "refusing"

    def __init__(self, refused: TunnelBinding) -> None:
        super().__init__()
        self.refused = refused

    def addBinding(self, binding: TunnelBinding) -> None:
        if binding == self.refused:
            raise ValueError("cannot carry that one")
        super().addBinding(binding)


class Slow(RecordingDataPlane):
    """A backend whose additions complete when the test says so."""

    name = "slow"

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Deferred[None]] = []

    def addBinding(self, binding: TunnelBinding) -> Deferred[None]:  # type: ignore[override]
        super().addBinding(binding)
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d


class Factory:
    def __init__(self, plane: Any) -> None:
        self.plane = plane

    def build(self, settings: Mapping[str, Any], reactor: Any) -> Any:
        return self.plane


class SwapServiceTests(SynchronousTestCase):
    """L{lmm.dataplane.swapping} on an LMAP service that is not started."""

    def setUp(self) -> None:
        self.clock = Clock()
        anchor = LocalMobilityAnchor(address="2001:db8:ff::1",
                                     prefixes=[IPv6Network("2001:db8:1::/64")], mpas=[],
                                     maxLifetime=3600, profile=mh.DRAFT,
                                     revocationTimeout=1.0, revocationRetries=3)
        self.old = RecordingDataPlane()
        self.service = LMAPService(anchor, self.old, "2001:db8:ff::1", mh.DRAFT, self.clock)
        for n in (1, 2):
            self.old.addBinding(binding(n))

    def useBackend(self, plane: Any) -> None:
        self.patch(swapping, "findBackend", lambda interface, name: Factory(plane))

    def test_unknownBackend(self) -> None:
        """An unknown name: a clear error naming the known ones; the old backend stays."""
        failure = self.failureResultOf(self.service.swapDataPlane("nosuch", {}), SwapError)
        message = str(failure.value)
        self.assertIn("cannot build the nosuch tunnel backend", message)
        self.assertIn("seg6", message)  # the known ones are listed
        self.assertIs(self.service.dataPlane, self.old)
        self.assertEqual(len(list(self.old.bindings())), 2)
        self.assertFalse(self.old.stopped)
        # ... and over the control channel, as an answer, not an internal error.
        answer = self.failureResultOf(execute(self.service, ["tunnel", "nosuch"]), SwapError)
        self.assertIn("nosuch", str(answer.value))

    def test_sameBackend(self) -> None:
        self.failureResultOf(self.service.swapDataPlane("recording", {}), SwapError)
        self.assertIs(self.service.dataPlane, self.old)

    def test_swap(self) -> None:
        """Every binding moves; the old backend is stopped after the grace period."""
        new = RecordingDataPlane()
        new.name = "other"
        self.useBackend(new)
        result = self.successResultOf(self.service.swapDataPlane("other", {}))
        self.assertEqual(result, {"backend": "other", "moved": 2})
        self.assertIs(self.service.dataPlane, new)
        self.assertEqual(sorted(new.bindings(), key=str), [binding(1), binding(2)])
        self.assertEqual(list(self.old.bindings()), [])
        self.assertFalse(self.old.stopped)
        self.clock.advance(swapping.GRACE)
        self.assertTrue(self.old.stopped)

    def test_rollBack(self) -> None:
        """A backend that cannot carry one binding: the moved ones go back, the new
        backend is stopped, the old one stays."""
        new = Refusing(binding(2))
        self.useBackend(new)
        failure = self.failureResultOf(self.service.swapDataPlane("refusing", {}), SwapError)
        self.assertIn("only 1 of 2", str(failure.value))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)  # swap logs it
        self.assertIs(self.service.dataPlane, self.old)
        self.assertEqual(sorted(self.old.bindings(), key=str), [binding(1), binding(2)])
        self.assertEqual(list(new.bindings()), [])
        self.assertTrue(new.stopped)
        self.assertFalse(self.old.stopped)

    def test_changesDuringSwap(self) -> None:
        """Tunnel changes made while a swap runs wait for its end and go to the new
        backend; an addition's Deferred fires only then; a second swap is refused."""
        new = Slow()
        self.useBackend(new)
        d = self.service.swapDataPlane("slow", {})
        held = self.service.dataPlane
        self.assertIsNot(held, self.old)
        added = held.addBinding(binding(3))
        held.removeBinding(binding(1))
        self.assertNoResult(added)
        self.failureResultOf(self.service.swapDataPlane("other", {}), SwapError)
        while new.waiting:
            new.waiting.pop(0).callback(None)
        self.assertEqual(self.successResultOf(d), {"backend": "slow", "moved": 2})
        self.successResultOf(added)
        self.assertIs(self.service.dataPlane, new)
        self.assertEqual(sorted(new.bindings(), key=str), [binding(2), binding(3)])
        self.assertEqual(list(self.old.bindings()), [])

    def test_stopInGrace(self) -> None:
        """A service stopped during the grace period stops the old backend too."""
        new = RecordingDataPlane()
        new.name = "other"
        self.useBackend(new)
        self.successResultOf(self.service.swapDataPlane("other", {}))
        self.service.running = True  # as if started
        self.service.stopService()
        self.assertTrue(self.old.stopped)
        self.assertTrue(new.stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])


def _problem() -> str | None:
    reason = netnsUnavailableReason()
    if reason is not None:
        return reason
    for tool in ("tcpdump", "ping"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun: the userspace backend cannot run"
    from tests.test_address_methods import seg6Missing

    return seg6Missing()


class SwapUnderPingTests(SynchronousTestCase):
    """The daemons swap backends while a Linux MS pings a CN."""

    SWAPS = (("lmap", "userspace"), ("mpa1", "userspace"), ("lmap", "seg6"), ("mpa1", "seg6"))
    DWELL = 0.6

    def setUp(self) -> None:
        reason = _problem()
        if reason is not None:
            raise SkipTest(reason)
        self.failed = False

    def stopLab(self, lab: Lab) -> None:
        problems = lab.stop()
        if problems or self.failed:
            sys.stderr.write(f"\nlab logs kept in {lab.runDir}\n")
        else:
            shutil.rmtree(lab.runDir, ignore_errors=True)
        self.assertEqual(problems, [], f"logs in {lab.runDir}")

    def lmapRoutes(self, lab: Lab, address: str) -> list[str]:
        out = lab.lmapNs.ip("-6", "route", "show")
        return [line for line in out.splitlines() if line.startswith(address)]

    def test_swapUnderPing(self) -> None:
        base = loadTopology()
        spec = MSSpec("ms1", randomMac(), base.mpas[0].name)
        topology = replace(base, mpas=base.mpas[:1], stations=[spec], aaa="file",
                           tunnel="seg6", handovers=[])
        # UNIX sockets' paths have at most 107 bytes: trial's folders are deeper.
        lab = Lab(topology, runDir=tempfile.mkdtemp(prefix="lmm-swap-test-"))
        self.addCleanup(self.stopLab, lab)
        try:
            self.runSwaps(lab, spec)
        except BaseException:
            self.failed = True
            raise

    def runSwaps(self, lab: Lab, spec: MSSpec) -> None:
        lab.start()
        station = lab.attach(spec)
        address, _ = demo.attach(lab, station)
        [entry] = ask(lab.controlPath("lmap"), "bindings")["bindings"]
        self.assertEqual(entry["localAddress"].split("/")[0], address)
        self.assertTrue(any("encap seg6" in r for r in self.lmapRoutes(lab, address)))
        output = lab.path("ping.txt")
        count = int(self.DWELL * (len(self.SWAPS) + 2) / 0.01) * 2
        process = demo.ping(lab, station, count, 0.01, output)
        try:
            origin = time.time()
            changes = [(origin, "seg6 everywhere")]
            time.sleep(self.DWELL)
            for daemon, backend in self.SWAPS:
                when = time.time()
                answer = ask(lab.controlPath(daemon), f"tunnel {backend}", timeout=30)
                self.assertEqual(answer, {"ok": True, "backend": backend, "moved": 1},
                                 f"{daemon} to {backend}")
                changes.append((when, f"{daemon} to {backend}"))
                if daemon == "lmap":
                    routes = self.lmapRoutes(lab, address)
                    if backend == "userspace":
                        self.assertFalse(any("seg6" in r for r in routes), routes)
                        self.assertTrue(any("dev lmmtun0" in r for r in routes), routes)
                    else:
                        self.assertTrue(any("encap seg6" in r for r in routes), routes)
                else:
                    # The visitor's rule: seg6's pref 1076, userspace's 1078; the old one
                    # goes as soon as the new one is in.
                    rules = lab.mpaNs[daemon].ip("-6", "rule", "show")
                    wanted, gone = ("1078:", "1076:") if backend == "userspace" \
                        else ("1076:", "1078:")
                    self.assertIn(wanted, rules)
                    self.assertNotIn(gone, rules)
                time.sleep(max(0.0, when + self.DWELL - time.time()))
            # Past the grace period: the old backends are gone, their routes with them.
            time.sleep(swapping.GRACE - self.DWELL + 0.2)
            self.assertFalse(any("lmmtun0" in r for r in self.lmapRoutes(lab, address)))
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        with open(output, errors="replace") as f:
            record = tl.parsePing(f.read(), 0.01)
        timeline = tl.Timeline.build(origin, changes, [], record)
        losses = {phase.title: (phase.lost, phase.sent) for phase in timeline.phases}
        sys.stderr.write(f"\nlost pings per phase (lost, sent): {losses}\n")
        self.assertTrue(record.replies, "no ping answered")
        for label, (lost, sent) in losses.items():
            self.assertGreater(sent, 0, label)
            # Make before break: nothing should be lost; room for a loaded machine.
            self.assertLessEqual(lost, 2, f"{label}: {timeline.text()}")
        for daemon in ("lmap", "mpa1"):
            self.assertNotIn("Traceback", lab.daemons[daemon].log())
