"""
What changes while a daemon runs (L{lmm.live}): backends swapped by name
(authentication, attach detection, the DHCPv6 relay's port; the tunnel's are
in tests.test_swap) and the configuration file reloaded (the C{reload}
command, SIGHUP).

The unit tests drive L{lmm.live.SwappableAuthenticator} with a backend whose
answers the test holds (pure logic) and real ones built by name, the reload
plan, and a real MPA built by L{lmm.mpa.service.makeMPAService} from a file
the test rewrites (not started: no sockets). The end-to-end test runs the lab
(twistd lmm-lmap, twistd lmm-mpa with FreeRADIUS, a Linux MS pinging a CN
every 10 ms) and swaps each of the MPA's backends, reloads its file by
command and by SIGHUP, and swaps in the third-party backend of
examples/plugin, counting the pings lost in each phase.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from lmm import config, logs
from lmm.aaa import AccessRequest, ProfileFileAuthenticator
from lmm.control import ask
from lmm.ctl import formatAnswer
from lmm.lab import demo, freeradius
from lmm.lab.daemons import writeKeyFiles
from lmm.lab.topology import Lab, MSSpec, randomMac
from lmm.live import BackendConfig, LiveKeys, ReloadError, SwapError, SwappableAuthenticator, plan
from lmm.mpa import control as mpaControl
from lmm.mpa.service import makeMPAService
from tests.test_lab import LabTestCase
from tests.test_swap import checkPhases, stopPinger

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(_REPO, "examples", "plugin")
LMAP = "2001:db8:ff::1"
MPA = "2001:db8:ff::2"
MS_MAC = "02:00:00:00:01:01"


def writeProfiles(path: str, mac: str, prefix: str = "2001:db8:1::/64") -> str:
    with open(path, "w") as f:
        f.write(f'[[profile]]\nmac = "{mac}"\nlmap_address = "{LMAP}"\n'
                f'local_network_prefix = "{prefix}"\n')
    return path


class HeldAuthenticator:
    """An authenticator whose answers the test gives (pure logic of the swap)."""

    name = "held"

    def __init__(self) -> None:
        self.asked: list[tuple[AccessRequest, Deferred[Any]]] = []
        self.stopped = 0

    def authenticate(self, request: AccessRequest) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.asked.append((request, d))
        return d

    def stop(self) -> None:
        self.stopped += 1


class BackendConfigTests(SynchronousTestCase):
    config = BackendConfig("aaa", "radius", {"timeout": 0.5}, "radius", "/etc/lmm/mpa.toml")

    def test_options(self) -> None:
        """A swap to the file's backend starts from the file's options; to another,
        from none (the file's were written for its own backend)."""
        self.assertEqual(self.config.optionsFor("radius", {"retries": 2}),
                         {"timeout": 0.5, "retries": 2})
        self.assertEqual(self.config.optionsFor("file", {"path": "p"}), {"path": "p"})

    def test_answer(self) -> None:
        """The answer says whether a restart keeps the swap, and what to write if not."""
        self.assertEqual(self.config.answer("radius", {"timeout": 0.5}),
                         {"kind": "aaa", "backend": "radius", "options": {"timeout": 0.5},
                          "persistent": True})
        answer = self.config.answer("file", {"path": "p"})
        self.assertFalse(answer["persistent"])
        self.assertEqual(answer["hint"], 'not kept after a restart: set aaa.backend = "file" and '
                         'aaa.options = {path = "p"} in /etc/lmm/mpa.toml to keep it')


class SwappableAuthenticatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        from twisted.internet import reactor

        self.folder = tempfile.mkdtemp(prefix="lmm-live-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.profiles = writeProfiles(os.path.join(self.folder, "profiles.toml"), MS_MAC)
        self.held = HeldAuthenticator()
        self.auth = SwappableAuthenticator(self.held, "held", reactor)  # type: ignore[arg-type]

    def test_inFlightFinishesOnTheOld(self) -> None:
        """A request asked before the swap is answered by the old backend, which
        stops after that answer; requests after the swap go to the new one."""
        before = self.auth.authenticate(AccessRequest(MS_MAC, "eth1"))
        answer = self.auth.swap("file", {"path": self.profiles})
        self.assertEqual(answer, {"previous": "held", "inFlight": 1})
        self.assertEqual((self.auth.name, self.auth.retiring, self.held.stopped), ("file", 1, 0))
        self.assertIsInstance(self.auth.current, ProfileFileAuthenticator)
        after = self.successResultOf(self.auth.authenticate(AccessRequest(MS_MAC, "eth1")))
        self.assertEqual(str(after.localNetworkPrefix), "2001:db8:1::/64")
        self.assertEqual(len(self.held.asked), 1)
        self.held.asked[0][1].callback("the old one's answer")
        self.assertEqual(self.successResultOf(before), "the old one's answer")
        self.assertEqual((self.auth.retiring, self.held.stopped), (0, 1))

    def test_idleOldStopsAtOnce(self) -> None:
        self.auth.swap("file", {"path": self.profiles})
        self.assertEqual(self.held.stopped, 1)

    def test_refused(self) -> None:
        """A backend that cannot be built (unknown name, bad options) changes nothing."""
        with self.assertRaises(SwapError) as caught:
            self.auth.swap("nosuch", {})
        self.assertIn("no IAuthenticator backend named 'nosuch'", str(caught.exception))
        self.assertIn("held stays", str(caught.exception))
        with self.assertRaises(SwapError) as caught:
            self.auth.swap("file", {"path": self.profiles, "colour": "red"})
        self.assertIn("colour", str(caught.exception))
        self.assertIs(self.auth.current, self.held)
        self.assertEqual(self.held.stopped, 0)


class FormatTests(SynchronousTestCase):
    """What lmmctl prints for the answers of swap, backends and reload."""

    def test_swap(self) -> None:
        text = formatAnswer("swap aaa file path=p", {
            "ok": True, "kind": "aaa", "backend": "file", "previous": "radius", "inFlight": 2,
            "options": {"path": "p"}, "persistent": False, "hint": "not kept after a restart"})
        self.assertEqual(text, 'aaa backend now file (path="p"), was radius; 2 request(s) in '
                               "flight finish on radius\nnot kept after a restart")

    def test_backends(self) -> None:
        text = formatAnswer("backends", {"ok": True, "backends": {
            "aaa": {"active": "file", "configured": "radius", "options": {},
                    "installed": {"file": "...", "radius": "..."}},
            "dhcp": {"active": None, "configured": "udp", "options": {}, "installed": {}}}})
        self.assertEqual(text.splitlines(), ["KIND  ACTIVE  CONFIGURED  INSTALLED",
                                             "aaa   file    radius      file, radius",
                                             "dhcp  -       udp"])

    def test_reload(self) -> None:
        text = formatAnswer("reload", {"ok": True, "file": "/x.toml", "applied": ["log.level"],
                                       "failed": {"aaa.options": "no such file"},
                                       "restart": {"ra.mtu": "ra.mtu: needs a restart (...)"}})
        self.assertEqual(text.splitlines(), ["log.level: applied",
                                             "aaa.options: not applied: no such file",
                                             "ra.mtu: needs a restart (...)"])
        self.assertEqual(formatAnswer("reload", {"ok": True, "file": "/x.toml", "applied": [],
                                                 "failed": {}, "restart": {}}),
                         "/x.toml: nothing changed")


class PlanTests(SynchronousTestCase):
    def test_plan(self) -> None:
        """Groups with a changed key are applied, in order; the always group at every
        reload; changed keys no group takes need a restart, in the file's order."""
        a = LiveKeys(("aaa.backend", "aaa.options"), lambda v: None)
        b = LiveKeys(("log.level",), lambda v: None)
        c = LiveKeys(("security.keys",), lambda v: None, always=True)
        running = {"aaa.backend": "file", "aaa.options": {}, "log.level": "info",
                   "security.keys": "k", "mpa.address": "2001:db8::1", "ra.mtu": 1460}
        loaded = {**running, "aaa.options": {"path": "p"}, "mpa.address": "2001:db8::2",
                  "ra.mtu": 1400}
        self.assertEqual(plan(running, loaded, [a, b, c]), ([a, c], ["mpa.address", "ra.mtu"]))


class ReloadTests(SynchronousTestCase):
    """A real MPA built from a file (not started), the file rewritten and reloaded."""

    def setUp(self) -> None:
        # A reload sets the process's level (lmm.logs): the next tests' is theirs.
        self.addCleanup(logs.setLevel, logs.currentLevel())
        self.folder = tempfile.mkdtemp(prefix="lmm-reload-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.path = os.path.join(self.folder, "mpa.toml")
        _, keys = writeKeyFiles(self.folder, LMAP, [MPA])
        self.keys = keys[MPA]
        self.tables: dict[str, dict[str, Any]] = {
            "mpa": {"address": MPA, "lmap": LMAP, "access_interfaces": ["lo"]},
            "aaa": {"backend": "file"},
            "aaa.options": {"path": writeProfiles(os.path.join(self.folder, "a.toml"), MS_MAC)},
            "security": {"keys": os.path.basename(self.keys)},
            "state": {"path": "mpa.state"},
            "tunnel": {"backend": "recording"},
            "log": {"summary_interval": 0},
        }
        self.write()
        from lmm.mpa.tap import Options

        options = Options()
        options.parseOptions(["--config", self.path])
        self.top = makeMPAService(options.configValues, options.profile, self.path)
        self.core = self.top.getServiceNamed("mpa")  # type: ignore[attr-defined]

    def write(self) -> None:
        config.writeToml(self.path, self.tables)

    def reload(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.successResultOf(
            mpaControl.execute(self.core, ["reload"]))  # type: ignore[arg-type]
        return answer

    def test_applied(self) -> None:
        """Live keys are applied (the authenticator swapped to the file's new
        options, the log level, the DHCPv6 server, the limits); the others are
        named, one line each, with what the file says and what runs."""
        newProfiles = writeProfiles(os.path.join(self.folder, "b.toml"), MS_MAC,
                                    "2001:db8:2::/64")
        self.tables["aaa.options"] = {"path": newProfiles}
        self.tables["log"]["level"] = "debug"
        self.tables["dhcp"] = {"server": "2001:db8:ff::53"}
        self.tables["attach"] = {"max_authenticating": 7}
        self.tables["registration"] = {"lifetime": 600}
        self.tables["ra"] = {"mtu": 1400}
        self.write()
        answer = self.reload()
        self.assertEqual(sorted(answer["applied"]), ["aaa.options", "attach.max_authenticating",
                                                     "dhcp.server", "log.level"])
        self.assertEqual(answer["failed"], {})
        self.assertEqual(answer["restart"], {
            "registration.lifetime": "registration.lifetime: needs a restart (the file says "
                                     "600, 3600 runs)",
            "ra.mtu": "ra.mtu: needs a restart (the file says 1400, 1460 runs)"})
        self.assertEqual(self.core.authenticator.current.path, newProfiles)
        self.assertEqual(self.core.journal.level.name, "debug")
        self.assertEqual(logs.currentLevel(), "debug")  # and every other logger's
        self.assertEqual(self.core.agent.defaultDhcpServer, "2001:db8:ff::53")
        self.assertEqual(self.core.agent.maxAuthenticating, 7)
        # The swap command's defaults are the file's now.
        self.assertTrue(self.core.backendConfigs["aaa"].keeps("file", {"path": newProfiles}))
        self.assertEqual(self.core.swapBackend("aaa", "file", {})["options"],
                         {"path": newProfiles})
        # Again, unchanged: nothing applied, the same keys still need a restart.
        again = self.reload()
        self.assertEqual((again["applied"], sorted(again["restart"])),
                         ([], ["ra.mtu", "registration.lifetime"]))

    def test_badFile(self) -> None:
        """A file that would not start the daemon changes nothing: the error names
        the key and the file."""
        self.tables["log"]["level"] = "debug"
        self.tables["aaa"]["colour"] = "red"
        self.write()
        with self.assertRaises(ReloadError) as caught:
            mpaControl.execute(self.core, ["reload"])  # type: ignore[arg-type]
        self.assertIn(self.path, str(caught.exception))
        self.assertIn("aaa.colour", str(caught.exception))
        self.assertIn("nothing changed", str(caught.exception))
        self.assertEqual(self.core.journal.level.name, "info")

    def test_failedSwap(self) -> None:
        """A backend the file names that cannot be built fails that key alone; the
        rest is applied and the running backend stays."""
        self.tables["aaa.options"] = {"path": os.path.join(self.folder, "missing.toml")}
        self.tables["log"]["level"] = "warn"
        self.write()
        answer = self.reload()
        self.assertEqual(answer["applied"], ["log.level"])
        self.assertEqual(logs.currentLevel(), "warn")
        self.assertIn("missing.toml", answer["failed"]["aaa.options"])
        self.assertEqual(self.core.authenticator.current.path, os.path.join(self.folder, "a.toml"))
        # Still different from what runs: the next reload tries again.
        self.assertEqual(self.core.reloader.running["aaa.options"],
                         {"path": os.path.join(self.folder, "a.toml")})

    def test_keyRollover(self) -> None:
        """The key file is read again at every reload: a new association is used."""
        codec = self.core.signaling.codec
        [before] = codec.associations.byPeer[LMAP]
        rollover = os.path.join(self.folder, "rollover")
        os.mkdir(rollover)
        _, keys = writeKeyFiles(rollover, LMAP, [MPA])
        os.replace(keys[MPA], self.keys)
        self.reload()
        [after] = codec.associations.byPeer[LMAP]
        self.assertNotEqual(after.key, before.key)

    def test_swapCommand(self) -> None:
        """The swap command's answer: the backend, the options (the file's, for the
        file's backend), whether a restart keeps it."""
        profiles = os.path.join(self.folder, "a.toml")
        answer = self.core.swapBackend("aaa", "file", {})
        self.assertEqual({k: answer[k] for k in ("backend", "options", "persistent")},
                         {"backend": "file", "options": {"path": profiles},
                          "persistent": True})
        self.assertEqual(self.core.authenticator.current.path, profiles)

    def test_relayPort(self) -> None:
        """The relay's port is the udp backend, swapped by name; with the relay off
        there is nothing to swap."""
        self.assertEqual(self.core.activeBackends()["dhcp"], "udp")
        answer = self.core.swapBackend("dhcp", "udp", {})
        self.assertEqual((answer["previous"], answer["backend"], answer["persistent"]),
                         ("udp", "udp", True))
        self.core.relayPort = None
        with self.assertRaises(SwapError):
            self.core.swapRelay("udp", {})


class SwapUnderPingTests(LabTestCase):
    """The MPA swaps each backend and reloads its file while a Linux MS pings a CN."""

    DWELL = 0.6

    def setUp(self) -> None:
        reason = freeradius.missingReason()
        if reason is not None:
            raise SkipTest(reason)
        super().setUp()
        # The daemons find the example's plugin on PYTHONPATH (lmm.lab.daemons keeps it).
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join([p for p in (old, PLUGIN) if p])
        self.addCleanup(self._restoreEnvironment, old)

    def _restoreEnvironment(self, old: str | None) -> None:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old

    def test_swapUnderPing(self) -> None:
        base = self.topology()
        spec = MSSpec("ms1", randomMac(), base.mpas[0].name)
        second = MSSpec("ms2", randomMac(), base.mpas[0].name)
        lab = self.makeLab(replace(base, mpas=base.mpas[:1], stations=[spec, second],
                                   aaa="radius", handovers=[]))
        self.runSwaps(lab, spec, second)

    def runSwaps(self, lab: Lab, spec: MSSpec, second: MSSpec) -> None:
        mpa = lab.controlPath("mpa1")
        station = lab.attach(spec)
        address, _ = demo.attach(lab, station)
        [before] = ask(lab.controlPath("lmap"), "bindings")["bindings"]
        profiles = lab.writeProfiles()
        mpaFile = lab.path("mpa1.toml")
        steps: list[tuple[str, Any]] = [
            ("aaa to file", f"swap aaa file path={profiles}"),
            ("attach to explicit", "swap attach explicit"),
            ("attach to packet", "swap attach packet"),
            ("dhcp port anew", "swap dhcp udp"),
            ("reload: aaa back to radius", None),
            ("SIGHUP: log level", None),
            ("aaa to allowlist", f'swap aaa allowlist macs=["{second.mac}"] '
                                 f"lmap_address={lab.topology.lmap} "
                                 f"local_network_prefix={lab.topology.prefix}"),
        ]
        output = lab.path("ping.txt")
        count = int(self.DWELL * (len(steps) + 2) / 0.01) * 2
        process = demo.ping(lab, station, count, 0.01, output)
        answers: dict[str, Any] = {}
        try:
            origin = time.time()
            changes = [(origin, "start")]
            time.sleep(self.DWELL)
            for title, command in steps:
                when = time.time()
                if title.startswith("reload"):
                    # The file as the lab wrote it names radius: swapped back by a reload.
                    with open(mpaFile) as f:
                        text = f.read()
                    with open(mpaFile, "w") as f:
                        f.write(text.replace("[registration]\n",
                                             "[registration]\nlifetime = 1800\n"))
                    answer = ask(mpa, "reload", timeout=30)
                elif title.startswith("SIGHUP"):
                    with open(mpaFile) as f:
                        text = f.read()
                    with open(mpaFile, "w") as f:
                        f.write(text.replace('level = "debug"', 'level = "info"'))
                    process_ = lab.daemons["mpa1"].process
                    assert process_ is not None
                    os.kill(process_.pid, signal.SIGHUP)
                    answer = {"ok": True}
                else:
                    answer = ask(mpa, command, timeout=30)
                answers[title] = answer
                self.assertTrue(answer.get("ok"), f"{title}: {answer}")
                changes.append((when, title))
                time.sleep(max(0.0, when + self.DWELL - time.time()))
        finally:
            stopPinger(process)
        # Nothing on the data path changes: room for a loaded machine only.
        checkPhases(self, output, origin, changes, 2)

        reloaded = answers["reload: aaa back to radius"]
        self.assertEqual(sorted(reloaded["applied"]), ["aaa.backend", "aaa.options"])
        self.assertEqual(list(reloaded["restart"]), ["registration.lifetime"])
        self.assertIn("persistent", answers["aaa to file"])
        self.assertFalse(answers["aaa to file"]["persistent"])
        # The binding never changed; the MPA still serves the MS.
        [after] = ask(lab.controlPath("lmap"), "bindings")["bindings"]
        self.assertEqual(after, {**before, "expires": after["expires"]})
        backends = ask(mpa, "backends")["backends"]
        self.assertEqual({kind: backends[kind]["active"] for kind in ("aaa", "attach", "dhcp")},
                         {"aaa": "allowlist", "attach": "packet", "dhcp": "udp"})
        self.assertIn("allowlist", backends["aaa"]["installed"])
        self.assertEqual(backends["aaa"]["configured"], "radius")
        # The SIGHUP's reload: the level the file says now.
        log = lab.daemons["mpa1"].log()
        self.assertIn("SIGHUP: reloading", log)
        self.assertIn("reload: log.level = \"info\" applied", log)
        # The third party's backend lets the MS on its list in.
        other = lab.attach(second)
        demo.attach(lab, other)
        naisNow = sorted(b["nai"] for b in ask(lab.controlPath("lmap"), "bindings")["bindings"])
        self.assertEqual(naisNow, sorted([spec.nai, second.nai]))
        for daemon in ("lmap", "mpa1"):
            self.assertNotIn("Traceback", lab.daemons[daemon].log())
