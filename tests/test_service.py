"""lmm.service: the daemons' composition (start in order, stop in reverse, no
half-started daemon) and the summary timer, without sockets."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from lmm.actions import Note
from lmm.control import ControlService
from lmm.interfaces import globalReactor
from lmm.journal import Journal
from lmm.service import InOrder, summaryService


class Recorded(Service):
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.setName(name)
        self.log = log
        self.fail = fail

    def startService(self) -> None:
        if self.fail:
            raise OSError(f"{self.name} cannot start")
        Service.startService(self)
        self.log.append(f"start {self.name}")

    def stopService(self) -> None:
        Service.stopService(self)
        self.log.append(f"stop {self.name}")


class InOrderTests(SynchronousTestCase):
    def make(self, failing: str | None = None) -> tuple[InOrder, list[str]]:
        log: list[str] = []
        top = InOrder()
        for name in ("links", "port", "control", "core"):
            Recorded(name, log, fail=name == failing).setServiceParent(top)
        return top, log

    def test_order(self) -> None:
        """Children start in order and stop in reverse: the core stops (and sends
        its deregistrations) while the port is still open."""
        top, log = self.make()
        top.startService()
        top.stopService()
        self.assertEqual(log, ["start links", "start port", "start control", "start core",
                               "stop core", "stop control", "stop port", "stop links"])

    def test_failedStartUndone(self) -> None:
        """A child that cannot start: the ones started before it are stopped, in
        reverse, and the error goes on; nothing is left running."""
        top, log = self.make(failing="control")
        self.assertRaises(OSError, top.startService)
        self.assertEqual(log, ["start links", "start port", "stop port", "stop links"])
        self.assertFalse(top.running)
        self.assertFalse(any(child.running for child in top))

class ControlStartTests(TestCase):
    """With the real reactor: the control channel's socket."""

    def test_liveControlSocketStopsTheStart(self) -> None:
        """The control channel of a live daemon is not taken over: the start fails
        there, with the error, and what started before it stops."""
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "control.sock")
        reactor = globalReactor()
        first = ControlService(lambda words: {"ok": True}, path, reactor)
        first.startService()
        self.addCleanup(first.stopService)
        log: list[str] = []
        top = InOrder()
        Recorded("port", log).setServiceParent(top)
        ControlService(lambda words: {"ok": True}, path, reactor).setServiceParent(top)
        Recorded("core", log).setServiceParent(top)
        self.assertRaises(CannotListenError, top.startService)
        self.assertEqual(log, ["start port", "stop port"])
        # The first daemon's channel still answers.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)


class SummaryTests(SynchronousTestCase):
    def test_firstAfterOneInterval(self) -> None:
        clock = Clock()
        calls: list[float] = []
        timer: Any = summaryService(60.0, lambda: calls.append(clock.seconds()), clock)
        timer.startService()
        self.assertEqual(calls, [])
        clock.advance(60)
        clock.advance(60)
        self.assertEqual(calls, [60.0, 120.0])
        timer.stopService()
        self.assertIsNone(summaryService(0, lambda: None, clock))


class SignalingShellTests(SynchronousTestCase):
    """lmm.service.SignalingShell: rate limits, send errors, refusals."""

    def makeShell(self, rate: float = 0.0) -> tuple[Any, Any, Any]:
        from collections import Counter

        from twisted.logger import Logger

        from lmm import mh
        from lmm.security import SignalingCodec
        from lmm.service import SignalingConfig, SignalingShell

        clock = Clock()
        core: Counter[str] = Counter()
        shell = SignalingShell(
            SignalingConfig(SignalingCodec(mh.DRAFT, "2001:db8::1", "lmap"), None, rate),
            clock.seconds, Logger(namespace="lmm.test"), core)
        return shell, clock, mh

    def test_ratePerSource(self) -> None:
        shell, clock, mh = self.makeShell(rate=10)
        data = mh.encode(mh.Heartbeat(1))
        got = [shell.decode(data, "2001:db8::2", clock.seconds()) for _ in range(15)]
        self.assertEqual(sum(m is not None for m in got), 10)
        self.assertEqual(shell.counters["mh.rate-limited"], 5)
        # Another source has its own bucket; time refills this one.
        self.assertIsNotNone(shell.decode(data, "2001:db8::3", clock.seconds()))
        clock.advance(0.5)
        got = [shell.decode(data, "2001:db8::2", clock.seconds()) for _ in range(6)]
        self.assertEqual(sum(m is not None for m in got), 5)

    def test_sendErrorsCounted(self) -> None:
        """Every OSError of a send is counted by errno and goes no further."""
        import errno

        shell, clock, mh = self.makeShell()

        class Failing:
            def send(self, data: bytes, destination: str) -> bool:
                raise OSError(errno.ENETUNREACH, "Network is unreachable")

        shell.port = Failing()
        for _ in range(3):
            shell.send(mh.Heartbeat(1), "2001:db8:99::1")
        self.assertEqual(shell.counters["mh.send-failed.ENETUNREACH"], 3)

    def test_noAssociationNotSent(self) -> None:
        from lmm import security

        shell, clock, mh = self.makeShell()
        shell.codec = security.SignalingCodec(mh.DRAFT, "2001:db8::1", "lmap",
                                              security.SecurityAssociations([]))
        sent: list[bytes] = []

        class Port:
            def send(self, data: bytes, destination: str) -> bool:
                sent.append(data)
                return True

        shell.port = Port()
        shell.send(mh.Heartbeat(1), "2001:db8::2")
        self.assertEqual(sent, [])
        self.assertEqual(shell.counters["mh.send-unprotected"], 1)


class ActionFaultTests(SynchronousTestCase):
    """Issue 13, part 4: an action that raises, of any kind, is counted and
    logged, and every action after it is carried out (L{ActionPerformer})."""

    KINDS = ("SendMessage", "RemoveTunnel", "Note", "Other")

    def perform(self, failing: str) -> tuple[list[str], Any]:
        from collections import Counter

        from twisted.logger import Logger

        from lmm import mh
        from lmm.actions import AddTunnel, Note, RemoveTunnel, SendMessage
        from lmm.journal import Journal
        from lmm.service import ActionPerformer
        from lmm.tunnel import ROLE_LMAP, RecordingDataPlane, TunnelBinding

        done: list[str] = []

        def fault(kind: str) -> None:
            if kind == failing:
                raise RuntimeError(f"{kind} broke")

        class Plane(RecordingDataPlane):
            def addBinding(self, binding: TunnelBinding) -> None:  # type: ignore[override]
                done.append("add")

            def removeBinding(self, binding: TunnelBinding) -> None:  # type: ignore[override]
                fault("RemoveTunnel")
                done.append("remove")

        class Recording(Journal):
            def note(self, note: Note) -> None:
                fault("Note")
                done.append(note.event)

        def send(message: object, destination: str) -> None:
            fault("SendMessage")
            done.append("send " + destination)

        def other(action: object) -> None:
            fault("Other")
            done.append("other")

        clock = Clock()
        counters: Counter[str] = Counter()
        journal = Recording("lmm.test", "info", clock.seconds, frozenset(), frozenset())
        performer = ActionPerformer(Plane(), send, journal, Logger(namespace="lmm.test"),
                                    lambda failure, binding: done.append("tunnel-failed"),
                                    counters=counters, clock=clock.seconds)
        binding = TunnelBinding("2001:db8:1::5", 128, "2001:db8::1", "2001:db8::2", ROLE_LMAP)
        actions: list[object] = []
        for n in range(2):  # each kind twice: the second of each still runs
            actions += [SendMessage(mh.Heartbeat(n), f"mpa{n}"), RemoveTunnel(binding),
                        AddTunnel(binding), Note(f"note{n}", {}), object()]
        performer.perform(actions, other)
        return done, counters

    def test_everyKind(self) -> None:
        everything = ["send mpa0", "remove", "add", "note0", "other",
                      "send mpa1", "remove", "add", "note1", "other"]
        for failing in self.KINDS:
            done, counters = self.perform(failing)
            expected = {"SendMessage": "send", "RemoveTunnel": "remove", "Note": "note",
                        "Other": "other"}[failing]
            self.assertEqual(done, [a for a in everything if not a.startswith(expected)],
                             failing)
            kind = "object" if failing == "Other" else failing
            # (tunnel.add and tunnel.remove: the bindings given to the data plane)
            self.assertEqual(dict(counters), {f"action.failed.{kind}": 2, "tunnel.add": 2,
                                              "tunnel.remove": 2})
            self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1, failing)

    def test_addTunnelRaises(self) -> None:
        """The one kind that stops the rest: what followed a tunnel that could not
        be added answered a registration that did not happen (L{tunnelFailed})."""
        from twisted.logger import Logger

        from lmm import mh
        from lmm.actions import AddTunnel, SendMessage
        from lmm.journal import Journal
        from lmm.service import ActionPerformer
        from lmm.testing.doubles import RefusingPlane
        from lmm.tunnel import ROLE_LMAP, TunnelBinding

        done: list[str] = []
        clock = Clock()
        plane = RefusingPlane("raise")
        plane.refused.add("2001:db8::2")
        performer = ActionPerformer(
            plane, lambda m, d: done.append("send"),
            Journal("lmm.test", "info", clock.seconds, frozenset(), frozenset()),
            Logger(namespace="lmm.test"), lambda failure, binding: done.append("failed"))
        binding = TunnelBinding("2001:db8:1::5", 128, "2001:db8::1", "2001:db8::2", ROLE_LMAP)
        performer.perform([AddTunnel(binding), SendMessage(mh.Heartbeat(1), "x")])
        self.assertEqual(done, ["failed"])


class DownlinkActionTests(SynchronousTestCase):
    """HoldDownlink and ReleaseDownlink reach a data plane that can hold
    packets, directly or through the daemon's L{SwappableTunnel}; one that
    cannot is counted and the actions after them go on."""

    def perform(self, plane: Any) -> tuple[list[object], Any]:
        from collections import Counter

        from twisted.logger import Logger

        from lmm.actions import HoldDownlink, Note, ReleaseDownlink
        from lmm.journal import Journal
        from lmm.service import ActionPerformer
        from lmm.tunnel import ROLE_MPA, TunnelBinding

        clock = Clock()
        counters: Counter[str] = Counter()
        notes: list[object] = []

        class Recording(Journal):
            def note(self, note: Note) -> None:
                notes.append(note.event)

        performer = ActionPerformer(
            plane, lambda m, d: None,
            Recording("lmm.test", "info", clock.seconds, frozenset(), frozenset()),
            Logger(namespace="lmm.test"), lambda failure, binding: None, counters=counters)
        binding = TunnelBinding("2001:db8:1::5", 128, "2001:db8::2", "2001:db8::1", ROLE_MPA,
                                "acc0")
        performer.perform([HoldDownlink(binding), ReleaseDownlink(binding, handBack=True),
                           Note("after", {})])
        return notes, counters

    def test_holdingPlane(self) -> None:
        from lmm.dataplane.swapping import SwappableTunnel
        from lmm.tunnel import RecordingDataPlane

        calls: list[tuple[str, bool]] = []

        class Holding(RecordingDataPlane):
            def holdDownlink(self, binding: Any) -> bool:
                calls.append(("hold", False))
                return True

            def releaseDownlink(self, binding: Any, handBack: bool) -> None:
                calls.append(("release", handBack))

        for plane in (Holding(), SwappableTunnel(Holding(), Clock())):
            calls.clear()
            notes, counters = self.perform(plane)
            self.assertEqual(calls, [("hold", False), ("release", True)])
            self.assertEqual(notes, ["after"])
            self.assertEqual(counters["downlink.hold-unsupported"], 0)

    def test_planeThatCannot(self) -> None:
        from lmm.dataplane.swapping import SwappableTunnel
        from lmm.tunnel import RecordingDataPlane

        for plane in (RecordingDataPlane(), SwappableTunnel(RecordingDataPlane(), Clock())):
            notes, counters = self.perform(plane)
            self.assertEqual(notes, ["after"])
            self.assertEqual(counters["downlink.hold-unsupported"], 1)


class JournalLevelTests(SynchronousTestCase):
    """What level each kind of Note is logged at (lmm.journal)."""

    def test_levels(self) -> None:
        seen: list[tuple[str, LogLevel]] = []

        def observer(event: dict[str, Any]) -> None:
            if "lmmEvent" in event:
                seen.append((event["lmmEvent"], event["log_level"]))

        # (cast: mypy cannot see that a function provides ILogObserver)
        provider = cast(ILogObserver, observer)
        globalLogPublisher.addObserver(provider)
        self.addCleanup(globalLogPublisher.removeObserver, provider)
        journal = Journal("lmm.test", "info", Clock().seconds, frozenset({"binding.created"}),
                          frozenset())
        for event in ("peer.profile-mismatch", "visitor.registered", "binding.created"):
            journal.note(Note(event, {"peer": "2001:db8::1"}))
        # A deployment's mistake at warn; a per-binding event only at debug.
        self.assertEqual(seen, [("peer.profile-mismatch", LogLevel.warn),
                                ("visitor.registered", LogLevel.info)])


class TunnelCountersTests(SynchronousTestCase):
    """The tunnel backend's own counts reach the daemons' C{counters} as
    C{tunnel.<statistic>}, through the swappable tunnel; a backend without
    them adds nothing."""

    def test_throughTheSwappableTunnel(self) -> None:
        from lmm.dataplane.swapping import SwappableTunnel
        from lmm.service import tunnelCounters
        from lmm.tunnel import RecordingDataPlane

        class Counting(RecordingDataPlane):
            def statistics(self) -> dict[str, int]:
                return {"heldUplink": 3, "heldUplinkSent": 2}

        self.assertEqual(tunnelCounters(SwappableTunnel(RecordingDataPlane(), Clock())), {})
        self.assertEqual(tunnelCounters(SwappableTunnel(Counting(), Clock())),
                         {"tunnel.heldUplink": 3, "tunnel.heldUplinkSent": 2})
