"""
Swapping a running daemon's tunnel backend (L{lmm.dataplane.swapping}, the
C{tunnel BACKEND [KEY=VALUE ...]} command of both control channels).

The unit tests drive L{lmm.dataplane.swapping.SwappableTunnel.swap} and the C{tunnel} command
with recording data planes and a fake clock; the options' parsing and the
real backends' refusal of bad options need no kernel. A namespace test swaps
an LMAP's seg6 backend to userspace with options and back to the file's
options, on the real kernel. The end-to-end test runs the lab (lmm.lab:
twistd lmm-lmap, one twistd lmm-mpa on seg6, a Linux MS attached by SLAAC, a
CN) and swaps the LMAP then the MPA to userspace (with options) and back
while the MS pings the CN every 10 ms.
"""

from __future__ import annotations

import json
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

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.test.proto_helpers import StringTransport
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from lmm import live, mh
from lmm.backends import findBackend
from lmm.control import CommandError, ControlProtocol, ask, formatAnswer, parseOptions
from lmm.dataplane import swapping
from lmm.dataplane.common import DataPlaneError
from lmm.dataplane.swapping import SwapError, TunnelConfig
from lmm.lab import demo
from lmm.lab import timeline as tl
from lmm.lab.netns import callIn, netnsUnavailableReason
from lmm.lab.topology import Lab, MSSpec, loadTopology, randomMac
from lmm.lmap.anchor import LocalMobilityAnchor
from lmm.lmap.control import execute
from lmm.lmap.service import LMAPService
from lmm.testing.doubles import RefusingPlane
from lmm.tunnel import ROLE_LMAP, RecordingDataPlane, TunnelBinding
from tests.test_dataplane import CN, LMAP, MS, LabMixin, lmapBinding, mpaBinding

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binding(n: int) -> TunnelBinding:
    return TunnelBinding(f"2001:db8:1::{n:x}", 128, "2001:db8:ff::1", "2001:db8:ff::2",
                         ROLE_LMAP)


class Factory:
    def __init__(self, plane: Any) -> None:
        self.plane = plane
        self.settings: list[Mapping[str, Any]] = []

    def build(self, settings: Mapping[str, Any], reactor: Any) -> Any:
        self.settings.append(settings)
        return self.plane


class _NotStarted(SynchronousTestCase):
    """An LMAP service that is not started, its recording backend carrying two bindings."""

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

    def useBackend(self, plane: Any) -> Factory:
        """Swaps to C{plane}'s name build C{plane}; other names, lmm's backends."""
        factory = Factory(plane)
        # Every swap builds through lmm.live.buildSwapped.
        self.patch(live, "findBackend", lambda interface, name: (
            factory if name == plane.name else findBackend(interface, name)))
        return factory


class SwapServiceTests(_NotStarted):
    """L{lmm.dataplane.swapping} on an LMAP service that is not started."""

    def test_unknownBackend(self) -> None:
        """An unknown name: a clear error naming the known ones; the old backend stays."""
        failure = self.failureResultOf(self.service.dataPlane.swap("nosuch", {}), SwapError)
        message = str(failure.value)
        self.assertIn("cannot build the nosuch tunnel backend", message)
        self.assertIn("seg6", message)  # the known ones are listed
        self.assertIs(self.service.dataPlane.current, self.old)
        self.assertEqual(len(list(self.old.bindings())), 2)
        self.assertFalse(self.old.stopped)
        # ... and over the control channel, as an answer, not an internal error.
        answer = self.failureResultOf(execute(self.service, ["tunnel", "nosuch"]), SwapError)
        self.assertIn("nosuch", str(answer.value))

    def test_sameBackend(self) -> None:
        self.failureResultOf(self.service.dataPlane.swap("recording", {}), SwapError)
        self.assertIs(self.service.dataPlane.current, self.old)

    def test_swap(self) -> None:
        """Every binding moves; the old backend is stopped after the grace period."""
        new = RecordingDataPlane()
        new.name = "other"
        self.useBackend(new)
        result = self.successResultOf(self.service.dataPlane.swap("other", {}))
        self.assertEqual(result, {"backend": "other", "moved": 2})
        self.assertIs(self.service.dataPlane.current, new)
        self.assertEqual(sorted(new.bindings(), key=str), [binding(1), binding(2)])
        self.assertEqual(list(self.old.bindings()), [])
        self.assertFalse(self.old.stopped)
        self.clock.advance(swapping.GRACE)
        self.assertTrue(self.old.stopped)

    def test_rollBack(self) -> None:
        """A backend that cannot carry one binding: the moved ones go back, the new
        backend is stopped, the old one stays."""
        new = RefusingPlane("raise", [binding(2)])
        self.useBackend(new)
        failure = self.failureResultOf(self.service.dataPlane.swap("refusing", {}), SwapError)
        self.assertIn("only 1 of 2", str(failure.value))
        self.assertEqual(len(self.flushLoggedErrors(DataPlaneError)), 1)  # swap logs it
        self.assertIs(self.service.dataPlane.current, self.old)
        self.assertEqual(sorted(self.old.bindings(), key=str), [binding(1), binding(2)])
        self.assertEqual(list(new.bindings()), [])
        self.assertTrue(new.stopped)
        self.assertFalse(self.old.stopped)

    def test_changesDuringSwap(self) -> None:
        """Tunnel changes made while a swap runs wait for its end and go to the new
        backend; an addition's Deferred fires only then; a second swap is refused."""
        new = RefusingPlane(slow=True, name="slow")
        self.useBackend(new)
        d = self.service.dataPlane.swap("slow", {})
        held = self.service.dataPlane
        self.assertIsNot(held, self.old)
        added = held.addBinding(binding(3))
        assert added is not None  # queued while the swap runs
        held.removeBinding(binding(1))
        self.assertNoResult(added)
        self.failureResultOf(self.service.dataPlane.swap("other", {}), SwapError)
        while new.waiting:
            new.waiting.pop(0)[0].callback(None)
        self.assertEqual(self.successResultOf(d), {"backend": "slow", "moved": 2})
        self.successResultOf(added)
        self.assertIs(self.service.dataPlane.current, new)
        self.assertEqual(sorted(new.bindings(), key=str), [binding(2), binding(3)])
        self.assertEqual(list(self.old.bindings()), [])

    def test_stopInGrace(self) -> None:
        """A service stopped during the grace period stops the old backend too."""
        new = RecordingDataPlane()
        new.name = "other"
        self.useBackend(new)
        self.successResultOf(self.service.dataPlane.swap("other", {}))
        self.service.running = True  # as if started
        self.service.stopService()
        self.assertTrue(self.old.stopped)
        self.assertTrue(new.stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])


def swapCommand(service: Any, words: list[str]) -> Deferred[dict[str, Any]]:
    """The LMAP's control channel runs C{words}, a C{tunnel} command: its answer."""
    answer = execute(service, words)
    assert isinstance(answer, Deferred)
    return answer


class OptionParsingTests(SynchronousTestCase):
    """L{parseOptions}: the C{KEY=VALUE} words of the C{tunnel} command."""

    def test_tomlValues(self) -> None:
        self.assertEqual(parseOptions(["priority=80", 'leftovers="adopt"', "relay_too_big=false",
                                       "rate=1.5"]),
                         {"priority": 80, "leftovers": "adopt", "relay_too_big": False,
                          "rate": 1.5})
        self.assertEqual(parseOptions([]), {})

    def test_bareWords(self) -> None:
        """The shell eats the quotes of leftovers="adopt": a bare word is a string."""
        self.assertEqual(parseOptions(["leftovers=adopt", "interface=lmm-tun1"]),
                         {"leftovers": "adopt", "interface": "lmm-tun1"})
        # ... but what TOML reads as another type stays that type.
        self.assertEqual(parseOptions(["forwarding=true", "table=0x4f00"]),
                         {"forwarding": True, "table": 0x4F00})

    def test_spaces(self) -> None:
        """The line is split at spaces: a value not complete yet goes on in the next word."""
        self.assertEqual(parseOptions(['name="a', 'b=c"', "list=[1,", "2]", "n=3"]),
                         {"name": "a b=c", "list": [1, 2], "n": 3})

    def test_errors(self) -> None:
        """Each error names what is wrong; the key when there is one."""
        for words, expected in (
            (["priority"], "expected KEY=VALUE"),
            (["priority", "=", "80"], "expected KEY=VALUE"),
            (["tunnel.options.priority=80"], "expected KEY=VALUE"),
            (["priority=80", "metric"], "got 'metric'"),
            (["priority="], "tunnel option priority: no value"),
            (["priority=1", "priority=2"], "tunnel option priority: given twice"),
            (["segs=[1,"], "tunnel option segs: [1, is not a TOML value"),
            (['leftovers="adopt'], "tunnel option leftovers"),
        ):
            with self.assertRaises(CommandError, msg=words) as caught:
                parseOptions(words)
            self.assertIn(expected, str(caught.exception), words)


class TunnelCommandTests(_NotStarted):
    """The C{tunnel BACKEND [KEY=VALUE ...]} command on an LMAP service that is not
    started: the options given, the file's, and what the answer says of a restart."""

    def other(self) -> tuple[RecordingDataPlane, Factory]:
        new = RecordingDataPlane()
        new.name = "other"
        return new, self.useBackend(new)

    def tunnel(self, line: str) -> dict[str, Any]:
        return self.successResultOf(swapCommand(self.service, line.split()))

    def refused(self, line: str) -> str:
        return str(self.failureResultOf(swapCommand(self.service, line.split()), SwapError).value)

    def test_options(self) -> None:
        """The options go to the backend's factory; the answer says the swap is not
        kept after a restart, and what to set in the file to keep it."""
        new, factory = self.other()
        answer = self.tunnel('tunnel other priority=80 leftovers="adopt" relay_too_big=false')
        options = {"priority": 80, "leftovers": "adopt", "relay_too_big": False}
        self.assertEqual(factory.settings, [options])
        self.assertEqual({k: answer[k] for k in ("ok", "backend", "moved", "options",
                                                 "persistent")},
                         {"ok": True, "backend": "other", "moved": 2, "options": options,
                          "persistent": False})
        self.assertEqual(answer["hint"],
                         'not kept after a restart: set tunnel.backend = "other" and '
                         'tunnel.options = {priority = 80, leftovers = "adopt", '
                         'relay_too_big = false} in the configuration file to keep it')
        self.assertIs(self.service.dataPlane.current, new)

    def test_badOptions(self) -> None:
        """lmm's backends check the options as they check [tunnel.options]: the error
        names the key, and nothing changes."""
        for line, expected in (
            ("tunnel userspace nosuch=1", "unknown key tunnel.options.nosuch"),
            ("tunnel userspace mtu=99", "tunnel.options.mtu: expected 1280..65535, got 99"),
            ("tunnel userspace interface=lmmtun0123456789", "tunnel.options.interface"),
            ("tunnel seg6 relay_too_big=no", "tunnel.options.relay_too_big: expected true or "
                                             "false, got 'no'"),
            ("tunnel seg6 decap_priority=2000", "tunnel.options.decap_priority"),
        ):
            message = self.refused(line)
            self.assertIn(expected, message, line)
            self.assertIn("nothing changed, recording stays", message)
            self.assertIs(self.service.dataPlane.current, self.old)
            self.assertEqual(len(list(self.old.bindings())), 2)
        # A line that is no KEY=VALUE is refused before any backend is looked for.
        self.assertRaises(CommandError, execute, self.service, ["tunnel", "userspace", "mtu"])
        self.assertRaises(CommandError, execute, self.service, ["tunnel"])
        self.assertIs(self.service.dataPlane.current, self.old)

    def test_auto(self) -> None:
        """auto could build the backend in use: a swap names the one it wants."""
        self.assertIn("name the one to swap to", self.refused("tunnel auto"))
        self.assertIs(self.service.dataPlane.current, self.old)

    def test_fileOptions(self) -> None:
        """Without options, the file's backend gets the file's [tunnel.options] (what a
        restart would build: persistent) and another backend none; options given
        override the file's one key each."""
        self.service.dataPlane.config = TunnelConfig("recording", {"history": 7}, "recording",
                                                 "/etc/lmm/lmap.toml")
        new, factory = self.other()
        answer = self.tunnel("tunnel other")
        self.assertEqual(factory.settings, [{}])
        self.assertEqual((answer["options"], answer["persistent"]), ({}, False))
        self.assertEqual(answer["hint"], 'not kept after a restart: set tunnel.backend = "other" '
                                         'and tunnel.options = {} in /etc/lmm/lmap.toml to keep it')
        # Back to the file's backend (the real recording backend): the file's options.
        answer = self.tunnel("tunnel recording")
        self.assertEqual((answer["options"], answer["persistent"]), ({"history": 7}, True))
        self.assertNotIn("hint", answer)
        plane = self.service.dataPlane.current
        self.assertIsInstance(plane, RecordingDataPlane)
        self.assertEqual(plane.history.maxlen, 7)
        self.assertEqual(len(list(plane.bindings())), 2)
        # Options given override the file's.
        self.tunnel("tunnel other")
        answer = self.tunnel("tunnel recording history=9")
        self.assertEqual((answer["options"], answer["persistent"]), ({"history": 9}, False))
        self.assertEqual(self.service.dataPlane.current.history.maxlen, 9)
        self.assertEqual(answer["hint"], 'not kept after a restart: set tunnel.backend = '
                                         '"recording" and tunnel.options = {history = 9} in '
                                         '/etc/lmm/lmap.toml to keep it')
        # Given as the file has them: a restart builds the same.
        self.tunnel("tunnel other")
        self.assertTrue(self.tunnel("tunnel recording history=7")["persistent"])

    def test_autoInTheFile(self) -> None:
        """A file that says auto: its options go to the backend auto picked."""
        self.service.dataPlane.config = TunnelConfig("auto", {"history": 5}, "recording", None)
        self.other()
        self.tunnel("tunnel other")
        answer = self.tunnel("tunnel recording")
        self.assertEqual((answer["options"], answer["persistent"]), ({"history": 5}, True))

    def test_controlLine(self) -> None:
        """Over the control channel's line protocol: the JSON answers."""
        self.other()
        transport = StringTransport()
        protocol = ControlProtocol(lambda words: execute(self.service, words))
        protocol.makeConnection(transport)
        protocol.dataReceived(b'tunnel userspace mtu=99\ntunnel other name="a b" n=[1, 2]\n')
        refused, done = (json.loads(line) for line in transport.value().splitlines())
        self.assertEqual(refused["ok"], False)
        self.assertIn("tunnel.options.mtu", refused["error"])
        self.assertEqual((done["ok"], done["options"], done["persistent"]),
                         (True, {"name": "a b", "n": [1, 2]}, False))

    def test_formatAnswer(self) -> None:
        """The command line tool's text: the options used and whether a restart keeps it."""
        answer = {"ok": True, "backend": "userspace", "moved": 3,
                  "options": {"priority": 80, "leftovers": "adopt"}, "persistent": False,
                  "hint": "not kept after a restart: set ..."}
        self.assertEqual(formatAnswer("tunnel", answer),
                         'tunnel backend now userspace (priority=80, leftovers="adopt"): 3 '
                         "binding(s) moved\nnot kept after a restart: set ...")
        answer = {"ok": True, "backend": "seg6", "moved": 0, "options": {}, "persistent": True}
        self.assertEqual(formatAnswer("tunnel", answer),
                         "tunnel backend now seg6: 0 binding(s) moved\n"
                         "as the configuration file says: kept after a restart")
        commands = execute(self.service, ["help"])
        assert isinstance(commands, dict)
        text = formatAnswer("help", commands)
        self.assertIn("tunnel BACKEND [KEY=VALUE ...]  swap the tunnel backend", text)
        self.assertIn("not kept after a restart", text)


class SwapOptionsOnTheKernelTests(LabMixin, TestCase):
    """An LMAP service on seg6 (as its file says: metric 777) in a namespace swaps to
    userspace with options, then back to seg6 with the file's: each time the
    routes show the options, and the MS reaches the CN."""

    def setUp(self) -> None:
        if not os.path.exists("/dev/net/tun"):
            raise SkipTest("no /dev/net/tun: the userspace backend cannot run")

    def route(self, lab: Any) -> str:
        return lab.lmap.ip("-6", "route", "show", MS).strip()

    async def test_optionsTakeEffect(self) -> None:
        lab = self.makeLab()
        atLmap = self.makePlane(lab.lmap, "seg6", metric=777)
        atMpa = self.makePlane(lab.mpa, "seg6")
        atLmap.addBinding(lmapBinding())
        atMpa.addBinding(mpaBinding(lab.access))
        anchor = LocalMobilityAnchor(address=LMAP, prefixes=[IPv6Network("2001:db8:1::/64")],
                                     mpas=[], maxLifetime=3600, profile=mh.DRAFT,
                                     revocationTimeout=1.0, revocationRetries=3)
        service = LMAPService(anchor, atLmap, LMAP, mh.DRAFT, reactor,
                              tunnelConfig=TunnelConfig("seg6", {"metric": 777}, "seg6",
                                                        "/etc/lmm/lmap.toml"))
        service.dataPlane.within = lambda build: callIn(lab.lmap, build)
        self.addCleanup(lambda: service.dataPlane.stop())
        self.assertIn("metric 777", self.route(lab))
        self.assertEqual(await self.ping(lab.ms, CN, 3), (3, 3))

        answer = await swapCommand(service, ["tunnel", "userspace", "interface=lmmswap0",
                                             "metric=555", "hop_limit=9"])
        self.assertEqual((answer["moved"], answer["persistent"]), (1, False))
        route = self.route(lab)
        self.assertIn("dev lmmswap0", route)
        self.assertIn("metric 555", route)
        self.assertNotIn("seg6", route)
        self.assertEqual(service.dataPlane.current.hopLimit, 9)
        self.assertEqual(await self.ping(lab.ms, CN, 3), (3, 3))

        answer = await swapCommand(service, ["tunnel", "seg6"])
        self.assertEqual((answer["moved"], answer["options"], answer["persistent"]),
                         (1, {"metric": 777}, True))
        route = self.route(lab)
        self.assertIn("encap seg6", route)
        self.assertIn("metric 777", route)
        self.assertEqual(await self.ping(lab.ms, CN, 3), (3, 3))


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


def stopPinger(process: subprocess.Popen[bytes]) -> None:
    """End a L{demo.ping}: its summary goes to its output."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()


def checkPhases(test: SynchronousTestCase, output: str, origin: float,
                changes: list[tuple[float, str]], most: int) -> dict[str, tuple[int, int]]:
    """The pings of C{output} (10 ms apart) cut into the phases C{changes}
    began, (lost, sent) by title: each phase sent some and lost at most C{most}."""
    with open(output, errors="replace") as f:
        record = tl.parsePing(f.read(), 0.01)
    timeline = tl.Timeline.build(origin, changes, [], record)
    losses = {phase.title: (phase.lost, phase.sent) for phase in timeline.phases}
    sys.stderr.write(f"\nlost pings per phase (lost, sent): {losses}\n")
    test.assertTrue(record.replies, "no ping answered")
    for label, (lost, sent) in losses.items():
        test.assertGreater(sent, 0, label)
        test.assertLessEqual(lost, most, f"{label}: {timeline.text()}")
    return losses


class SwapUnderPingTests(SynchronousTestCase):
    """The daemons swap backends while a Linux MS pings a CN."""

    # To userspace with options (the LMAP's route metric, the MPA's rule priority), back
    # to seg6 as the files say (no options).
    SWAPS = (("lmap", "userspace", "metric=555"), ("mpa1", "userspace", "priority=1090"),
             ("lmap", "seg6", ""), ("mpa1", "seg6", ""))
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

    def checkAnswer(self, lab: Lab, daemon: str, backend: str, options: str,
                    answer: dict[str, Any]) -> None:
        """Moved, with the options asked for; kept after a restart only when back to
        what the daemon's file says (seg6, no options), else a hint naming the file."""
        key, _, value = options.partition("=")
        given = {key: int(value)} if options else {}
        self.assertEqual({k: answer.get(k) for k in ("ok", "backend", "moved", "options",
                                                     "persistent")},
                         {"ok": True, "backend": backend, "moved": 1, "options": given,
                          "persistent": backend == "seg6"}, f"{daemon} to {backend}: {answer}")
        if backend == "seg6":
            self.assertNotIn("hint", answer)
            return
        self.assertIn(f'set tunnel.backend = "userspace" and tunnel.options = {{{key} = {value}}}',
                      answer["hint"])
        if daemon != "lmap":  # lmm.lmap.tap does not hand its file's path to the service yet
            self.assertIn(lab.path(f"{daemon}.toml"), answer["hint"])

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
            for daemon, backend, options in self.SWAPS:
                when = time.time()
                answer = ask(lab.controlPath(daemon), f"tunnel {backend} {options}", timeout=30)
                self.checkAnswer(lab, daemon, backend, options, answer)
                changes.append((when, f"{daemon} to {backend}"))
                if daemon == "lmap":
                    routes = self.lmapRoutes(lab, address)
                    if backend == "userspace":
                        self.assertFalse(any("seg6" in r for r in routes), routes)
                        self.assertTrue(any("dev lmmtun0" in r and "metric 555" in r
                                            for r in routes), routes)
                    else:
                        self.assertTrue(any("encap seg6" in r for r in routes), routes)
                else:
                    # The visitor's rule: seg6's pref 1076, userspace's 1090 as asked (its
                    # default is 1078); the old one goes as soon as the new one is in.
                    rules = lab.mpaNs[daemon].ip("-6", "rule", "show")
                    wanted, gone = ("1090:", "1076:") if backend == "userspace" \
                        else ("1076:", "1090:")
                    self.assertIn(wanted, rules)
                    self.assertNotIn(gone, rules)
                    self.assertNotIn("1078:", rules)
                time.sleep(max(0.0, when + self.DWELL - time.time()))
            # Past the grace period: the old backends are gone, their routes with them.
            time.sleep(swapping.GRACE - self.DWELL + 0.2)
            self.assertFalse(any("lmmtun0" in r for r in self.lmapRoutes(lab, address)))
        finally:
            stopPinger(process)
        # Make before break: nothing should be lost; room for a loaded machine.
        checkPhases(self, output, origin, changes, 2)
        for daemon in ("lmap", "mpa1"):
            self.assertNotIn("Traceback", lab.daemons[daemon].log())
