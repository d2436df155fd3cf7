"""
lmm.metrics and lmm.logs.

The collector's families from real services' counters: an LMAP and an MPA
core in this process, on a test clock, their Mobility Header messages handed
to each other (no sockets), an MS attached, authenticated from a profile
file, registered; the exposition parsed back with prometheus_client's parser.
Then a lab (real twistd daemons, FreeRADIUS when installed, a Linux MS,
kernel tunnels) with metrics on, scraped over HTTP after an attach, a ping
and a handover. And the daemons' logs as twistd writes them: millisecond
timestamps by default, JSON lines when asked, to --logfile.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from datetime import datetime
from ipaddress import IPv6Network
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel, formatEventAsClassicLogText
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from lmm import logs, mh, nd
from lmm.aaa import AccessRequest, Profile, ProfileFileAuthenticator
from lmm.config import ConfigError
from lmm.lab import demo
from lmm.lab.netns import Namespace, callIn, waitFor
from lmm.lmap.anchor import LocalMobilityAnchor
from lmm.lmap.service import LMAPService
from lmm.metrics import BUCKETS, DaemonCollector, Histogram, MPALatencies, listenDescription
from lmm.mpa.agent import MobilityProxyAgent
from lmm.mpa.attach import ExplicitAttachDetector
from lmm.mpa.service import MPAService
from lmm.mpa.visitor import AttachEvent
from lmm.testing.mixins import NetnsTestMixin
from lmm.tunnel import RecordingDataPlane
from tests.test_lab import LabTestCase

LMAP = "fd00:4d54::1"
MPA = "fd00:4d54::2"
LNP = "2001:db8:4d54::/64"
MS_MAC = "02:4c:4d:00:0b:01"
MS_ADDRESS = nd.addressFromMac("2001:db8:4d54::", MS_MAC)
ACCESS = "acc0"
VMAC = "02:00:5e:00:53:01"
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scrape(collector: DaemonCollector) -> dict[str, Any]:
    """The families' samples as Prometheus reads them: C{name{labels}} -> value."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return samples(generate_latest(registry).decode())


def samples(text: str) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


class Queue:
    """A Mobility Header port that keeps what is sent until the test delivers it."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str]] = []

    def send(self, data: bytes, destination: str) -> None:
        self.sent.append((data, destination))


class Delayed:
    """The profile file's authenticator, answering C{delay} seconds later on C{clock}."""

    def __init__(self, backend: ProfileFileAuthenticator, clock: Clock, delay: float) -> None:
        self.backend = backend
        self.clock = clock
        self.delay = delay

    def authenticate(self, request: AccessRequest) -> Deferred[Profile]:
        def ask() -> Deferred[Profile]:
            return self.backend.authenticate(request)

        return deferLater(self.clock, self.delay, ask)  # type: ignore[arg-type]

    def stop(self) -> None:
        pass


class CollectorTests(SynchronousTestCase):
    """The families from a real LMAP's and MPA's counters."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        folder = self.mktemp()
        os.makedirs(folder)
        profiles = os.path.join(folder, "profiles.toml")
        with open(profiles, "w") as f:
            f.write(f'[[profile]]\nnai = "ms@lmm.test"\nmac = "{MS_MAC}"\n'
                    f'local_network_prefix = "{LNP}"\naddress_mode = "slaac"\n')
        anchor = LocalMobilityAnchor(LMAP, [IPv6Network(LNP)], [IPv6Network(MPA + "/128")],
                                     maxLifetime=3600, profile=mh.DRAFT,
                                     revocationTimeout=1.0, revocationRetries=3)
        self.lmap = LMAPService(anchor, RecordingDataPlane(), LMAP, mh.DRAFT, self.clock)
        agent = MobilityProxyAgent(
            address=MPA, defaultLmap=LMAP, accessInterfaces=[ACCESS], interfaceMacs={},
            lifetime=600, retransmitTimeout=1.0, maxRetries=2, raMtu=1460, profile=mh.DRAFT,
            defaultVirtualLmapMac=VMAC, refreshFraction=0.75)
        self.latencies = MPALatencies()
        authenticator = Delayed(ProfileFileAuthenticator(profiles), self.clock, 0.004)
        self.mpa = MPAService(agent, ExplicitAttachDetector(cast(Any, self.clock)),
                              cast(Any, authenticator), RecordingDataPlane(), mh.DRAFT, self.clock,
                              latencies=self.latencies)
        self.toLmap, self.toMpa = Queue(), Queue()
        self.mpa.signaling.port = self.toLmap
        self.lmap.signaling.port = self.toMpa
        self.lmap.startService()
        self.mpa.startService()
        self.addCleanup(self.mpa.stopService)
        self.addCleanup(self.lmap.stopService)

    def deliver(self, after: float = 0.0) -> None:
        """What each sent, to the other, C{after} seconds later; until nothing is left."""
        while self.toLmap.sent or self.toMpa.sent:
            self.clock.advance(after)
            for queue, service, source in ((self.toLmap, self.lmap, MPA),
                                           (self.toMpa, self.mpa, LMAP)):
                sent, queue.sent = queue.sent, []
                for data, _ in sent:
                    service.datagramReceived(data, source)

    def register(self) -> None:
        """Attach, AAA 4 ms, the confirmation's 141 (no binding yet) 10 ms
        later, the MS's DAD probe for its SLAAC address at once, its
        registration answered 20 ms later."""
        self.mpa.attach(AttachEvent(ACCESS, MS_MAC))
        self.clock.advance(0.004)  # the AAA answer
        self.deliver(0.01)  # heartbeats, and the confirmation answered
        probe = nd.buildNeighborSolicitation(MS_MAC, None, "::", None, MS_ADDRESS)
        self.mpa.frameReceived(ACCESS, probe)
        self.clock.advance(0.01)
        self.deliver(0.01)  # the PBU there, its PBA back

    def test_lmap(self) -> None:
        """Bindings, PBUs by result and status, tunnels, every counter by name."""
        self.register()
        got = scrape(DaemonCollector("lmap", self.lmap))
        counters = self.lmap.allCounters()
        self.assertEqual(got["lmm_lmap_bindings{}"], 1)
        self.assertEqual(got["lmm_lmap_pbu_total{result=accepted,status=0}"],
                         counters["pbu.accepted"])
        self.assertEqual(got["lmm_lmap_pbu_total{result=accepted,status=0}"], 1)
        self.assertEqual(got["lmm_lmap_pbu_total{result=confirmation-missing,status=141}"], 1)
        self.assertEqual(got["lmm_lmap_bindings_created_total{}"], 1)
        self.assertEqual(got["lmm_tunnel_operations_total{daemon=lmap,operation=add}"], 1)
        self.assertEqual(got["lmm_tunnel_backend_info{backend=recording,daemon=lmap}"], 1)
        for name, value in counters.items():
            self.assertEqual(got[f"lmm_events_total{{daemon=lmap,event={name}}}"], value)
        self.assertNotIn("lmm_mpa_visitors{state=registered}", got)

    def test_mpa(self) -> None:
        """Visitors by state, PBAs, AAA, and the histograms with the clock's times."""
        self.register()
        got = scrape(DaemonCollector("mpa", self.mpa))
        self.assertEqual(got["lmm_mpa_visitors{state=registered}"], 1)
        self.assertEqual(got["lmm_mpa_visitors{state=authenticating}"], 0)
        self.assertEqual(got["lmm_mpa_attaches_total{}"], 1)
        self.assertEqual(got["lmm_mpa_aaa_requests_total{}"], 1)
        self.assertEqual(got["lmm_mpa_aaa_answers_total{result=accept}"], 1)
        self.assertEqual(got["lmm_mpa_pba_total{result=accepted,status=0}"], 1)
        self.assertEqual(got["lmm_mpa_pba_total{result=confirmation-missing,status=141}"], 1)
        self.assertEqual(got["lmm_mpa_pbu_sent_total{}"], 2)
        self.assertEqual(got["lmm_tunnel_operations_total{daemon=mpa,operation=add}"], 1)
        # The RA had no link to go out on (nothing started the access links).
        self.assertEqual(got["lmm_drops_total{daemon=mpa,reason=frame.not-sent}"],
                         self.mpa.allCounters()["frame.not-sent"])
        # AAA: 4 ms, in the 5 ms bucket, not the 2.5 ms one.
        self.assertEqual(got["lmm_mpa_aaa_latency_seconds_count{result=accept}"], 1)
        self.assertEqual(got["lmm_mpa_aaa_latency_seconds_bucket{le=0.005,result=accept}"], 1)
        self.assertEqual(got["lmm_mpa_aaa_latency_seconds_bucket{le=0.0025,result=accept}"], 0)
        self.assertAlmostEqual(got["lmm_mpa_aaa_latency_seconds_sum{result=accept}"], 0.004)
        self.assertEqual(got["lmm_mpa_aaa_latency_seconds_count{result=reject}"], 0)
        # The PBU with the address: sent at the probe, answered 20 ms later.
        self.assertEqual(got["lmm_mpa_registration_latency_seconds_count{}"], 1)
        self.assertAlmostEqual(got["lmm_mpa_registration_latency_seconds_sum{}"], 0.02)
        self.assertEqual(got["lmm_mpa_registration_latency_seconds_bucket{le=0.01}"], 0)
        self.assertEqual(got["lmm_mpa_registration_latency_seconds_bucket{le=0.025}"], 1)
        # Attach to registered: AAA 4 ms, the 141 10 ms, then the PBU's 20 ms.
        self.assertEqual(got["lmm_mpa_handover_latency_seconds_count{}"], 1)
        self.assertAlmostEqual(got["lmm_mpa_handover_latency_seconds_sum{}"], 0.034)
        self.assertEqual(got["lmm_mpa_handover_latency_seconds_bucket{le=0.025}"], 0)
        self.assertEqual(got["lmm_mpa_handover_latency_seconds_bucket{le=0.05}"], 1)
        self.assertEqual(got["lmm_mpa_handover_latency_seconds_bucket{le=+Inf}"], 1)

    def test_mpaWithoutLatencies(self) -> None:
        """Metrics off: nothing measured, no histogram."""
        self.mpa.latencies = None
        got = scrape(DaemonCollector("mpa", self.mpa))
        self.assertFalse([name for name in got if "latency" in name])
        self.assertEqual(got["lmm_mpa_visitors{state=registered}"], 0)


class HistogramTests(SynchronousTestCase):
    def test_buckets(self) -> None:
        """A value equal to a bound is in that bound's bucket (Prometheus's le)."""
        h = Histogram()
        for value in (0.001, 0.0011, 100.0):
            h.observe(value)
        buckets = dict(h.cumulative())
        self.assertEqual((buckets["0.001"], buckets["0.0025"], buckets["60.0"], buckets["+Inf"]),
                         (1, 2, 2, 3))
        self.assertEqual(len(buckets), len(BUCKETS) + 1)
        self.assertAlmostEqual(h.sum, 100.0021)


class ListenTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(listenDescription("[::1]:9480"), "tcp6:9480:interface=\\:\\:1")
        self.assertEqual(listenDescription(":9480"), "tcp6:9480:interface=\\:\\:")
        self.assertEqual(listenDescription("192.0.2.1:9480"), "tcp:9480:interface=192.0.2.1")
        self.assertEqual(listenDescription("unix:/tmp/m.sock"), "unix:/tmp/m.sock")
        for bad in ("[::1]:99999", "tcp:nine", "nonsense:1", 9480, ""):
            with self.assertRaises(ValueError):
                listenDescription(bad)

    def test_badKeyStopsTheDaemon(self) -> None:
        """A bad metrics.listen: one line naming the key and the file, exit status 1."""
        folder = tempfile.mkdtemp(prefix="lmm-metrics-")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "lmap.toml")
        with open(path, "w") as f:
            f.write(LMAP_CONFIG.format(folder=folder) + '\n[metrics]\nlisten = "tcp:nine"\n')
        done = twistd(folder, "lmm-lmap", path)
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn(f"{path}: key 'metrics.listen'", done.stderr)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)

    def test_portInUse(self) -> None:
        """A port it cannot listen on names the key and the file."""
        import socket

        from twisted.internet import reactor

        from lmm.metrics import metricsService

        taken = socket.socket(socket.AF_INET6)
        self.addCleanup(taken.close)
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = metricsService("lmap", object(), listenDescription(f"[::1]:{port}"),
                                 reactor, "/etc/lmm/lmap.toml")
        with self.assertRaises(ConfigError) as caught:
            service.startService()
        self.assertIn("/etc/lmm/lmap.toml: key 'metrics.listen'", str(caught.exception))
        self.assertFalse(service.running)


LMAP_CONFIG = """\
[lmap]
address = "fd00:4d54::1"
local_network_prefixes = ["2001:db8:4d54::/64"]
mpas = ["fd00:4d54::/64"]

[security]
authentication = false

[store]
backend = "memory"

[tunnel]
backend = "recording"
"""


def twistd(folder: str, plugin: str, config: str, *options: str, wait: bool = True,
           ) -> subprocess.CompletedProcess[str]:
    argv = [os.path.join(os.path.dirname(sys.executable), "twistd"), "--pidfile=", *options,
            plugin, "--config", config]
    env = dict(os.environ, PYTHONPATH=TOP)
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=30)


# --- the daemons as twistd runs them -----------------------------------------------------

#: twistd's time with milliseconds and the UTC offset, at the start of each line.
MS_LINE = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} \[[^\]]+\] ")
READY = "listening for Proxy Binding Updates"


class _Item:
    size = 5

    def name(self) -> str:
        return "called"


class LogTextTests(SynchronousTestCase):
    """lmm.logs' text lines are twisted.logger's classic lines, made faster:
    each checked against twisted's own formatting."""

    def events(self) -> list[dict[str, Any]]:
        when = 1_700_000_000.25
        info = {"log_level": LogLevel.info, "log_namespace": "lmm.radius", "log_time": when}
        try:
            raise ValueError("a failure's traceback")
        except ValueError:
            failure = Failure()
        return [
            dict(info, log_format="access accepted: {nai} (MAC {mac}) by {server}",
                 nai="ms@lmm.test", mac="02:00:00:00:00:01", server="[::1]:1812"),
            dict(info, log_format="{n:.2f}, {o.size}, {l[1]}, {s!r}", n=3.14159, o=_Item(),
                 l=[1, 2], s="q"),
            dict(info, log_format="a call: {o.name()}", o=_Item()),  # twisted's own syntax
            dict(info, log_format="a field that is missing: {nope}"),
            dict(info, log_format="not a format {"),
            dict(info, log_format=""),
            dict(info, log_format="two\nlines {a}", a=1, log_time=None),
            dict(info, log_format="{a}", a=1, log_system="custom"),
            {"log_format": "no level, no namespace {a}", "a": 1, "log_time": when},
            dict(info, log_format="{{braces}} {a}", a=2),
            dict(info, log_format="failed: {a}", a=1, log_failure=failure),
            dict(info, log_format=b"bytes {a}", a=1),
        ]

    def test_sameAsTwisted(self) -> None:
        """Every kind of event gives twisted's line, character for character."""
        def when(t: float | None) -> str:
            return logs.formatTime(t)

        for event in self.events():
            self.assertEqual(logs.classicText(event, when),
                             formatEventAsClassicLogText(event, when), event["log_format"])

    def test_timeAsBefore(self) -> None:
        """formatTime's cached second gives what datetime gives for each time,
        including fractions that round up into the next second."""
        def direct(when: float, digits: int) -> str:
            moment = datetime.fromtimestamp(when).astimezone()
            fraction = f"{moment.microsecond:06d}"[:digits]
            return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{fraction}{moment.strftime('%z')}"

        times = [1_700_000_000 + i * 0.0999999 for i in range(300)]
        times += [1_700_000_000.9999996, 1_700_000_001.0000004, 1_600_000_000.5, 1_700_000_000.5]
        for t in times:
            for digits in (3, 6):
                self.assertEqual(logs.formatTime(t, digits), direct(t, digits), t)
        self.assertEqual(logs.formatTime(None), "-")


class LevelTests(SynchronousTestCase):
    """lmm.logs.Logger drops what is below the process's log.level before it
    reaches any observer."""

    def setUp(self) -> None:
        self.addCleanup(logs.setLevel, logs.currentLevel())
        self.seen: list[dict[str, Any]] = []
        self.log = logs.Logger(namespace="lmm.test", observer=cast(Any, self.seen.append))

    def levels(self) -> list[LogLevel]:
        self.seen.clear()
        self.log.debug("d")
        self.log.info("i")
        self.log.warn("w")
        self.log.error("e")
        self.log.failure("f", Failure(ValueError("x")))
        return [event["log_level"] for event in self.seen]

    def test_everythingUntilSet(self) -> None:
        logs.setLevel("debug")
        self.assertEqual(self.levels(), [LogLevel.debug, LogLevel.info, LogLevel.warn,
                                         LogLevel.error, LogLevel.critical])
        self.assertEqual(logs.currentLevel(), "debug")

    def test_fromTheLevelUp(self) -> None:
        logs.setLevel("info")
        self.assertEqual(self.levels(), [LogLevel.info, LogLevel.warn, LogLevel.error,
                                         LogLevel.critical])
        logs.setLevel("error")
        self.assertEqual(self.levels(), [LogLevel.error, LogLevel.critical])
        self.assertEqual(logs.currentLevel(), "error")

    def test_classAttribute(self) -> None:
        """As twisted's, a class's C{log = Logger()} is named after the class,
        and keeps the level."""
        seen = self.seen

        class Step:
            log = logs.Logger(observer=cast(Any, seen.append))

        logs.setLevel("info")
        Step().log.debug("hidden")
        Step().log.info("shown")
        self.assertEqual([e["log_format"] for e in seen], ["shown"])
        self.assertEqual(seen[0]["log_namespace"], f"{__name__}.Step")


class DaemonLogTests(NetnsTestMixin, SynchronousTestCase):
    """twistd lmm-lmap in a namespace of the test's, its raw socket on ::1."""

    def start(self, extra: str, *options: str, stdout: Any = subprocess.DEVNULL,
              tunnel: str = "recording") -> tuple[subprocess.Popen[bytes], str, Namespace]:
        ns = self.makeNamespace("logs")
        folder = tempfile.mkdtemp(prefix="lmm-logs-")
        self.addCleanup(shutil.rmtree, folder, True)
        config = os.path.join(folder, "lmap.toml")
        with open(config, "w") as f:
            f.write(LMAP_CONFIG.replace("fd00:4d54::1", "::1").replace(
                "fd00:4d54::/64", "::1/128").replace('"recording"', f'"{tunnel}"') + extra)
        logPath = os.path.join(folder, "lmap.log")
        argv = [os.path.join(os.path.dirname(sys.executable), "twistd"), "-n", "--pidfile=",
                *options, "lmm-lmap", "--config", config]
        process = ns.popen([a.replace("LOG", logPath) for a in argv], cwd=folder,
                           env=dict(os.environ, PYTHONPATH=TOP), stdout=stdout,
                           stderr=open(logPath + ".stderr", "wb"))

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

        self.addCleanup(stop)
        return process, logPath, ns

    def waitFor(self, process: subprocess.Popen[bytes], path: str, text: str,
                stderr: str | None = None) -> str:
        def seen() -> bool:
            if process.poll() is not None:
                with open(stderr or path + ".stderr") as f:
                    raise AssertionError(f"twistd exited {process.returncode}: {f.read()}")
            return os.path.exists(path) and text in open(path).read()

        waitFor(seen, 20, 0.05, what=f"{text!r} in {path}")
        with open(path) as f:
            return f.read()

    def test_millisecondsByDefault(self) -> None:
        """No --logger: twistd's lines in --logfile, times with milliseconds."""
        process, path, _ = self.start("", "--logfile=LOG")
        text = self.waitFor(process, path, READY)
        lines = text.splitlines()
        self.assertGreater(len(lines), 3)
        for line in lines:
            if line.startswith("\t"):
                continue  # a multi-line message's continuation
            self.assertRegex(line, MS_LINE)
        self.assertTrue(any("[lmm.lmap#info]" in line and READY in line for line in lines))

    def test_stdoutWithoutLogfile(self) -> None:
        """-n without --logfile: standard output, as twistd's."""
        out = tempfile.NamedTemporaryFile("w+b", prefix="lmm-stdout-", delete=False)
        self.addCleanup(os.unlink, out.name)
        self.addCleanup(out.close)
        process, path, _ = self.start("", stdout=out)
        self.waitFor(process, out.name, READY, path + ".stderr")
        with open(out.name) as f:
            first = f.readline()
        self.assertRegex(first, MS_LINE)

    def test_levelForEveryLogger(self) -> None:
        """log.level holds for the whole daemon, not only its protocol steps:
        the tunnel backend's debug line for a new binding ("carrying") is
        written at debug and not at info (before, it was written at every level)."""
        for level, written in (("info", False), ("debug", True)):
            process, path, ns = self.start(f'\n[log]\nlevel = "{level}"\n', "--logfile=LOG",
                                           tunnel="userspace")
            self.waitFor(process, path, READY)
            sock = self.socketIn(ns, proto=mh.IPPROTO_MH)
            sock.settimeout(10)
            sock.sendto(mh.encode(mh.BindingUpdate(1, 400, (
                mh.MobileNodeIdentifier(b"ms1@lmm.test"), mh.LocalAddress("::", 64)),
                ack=True, proxy=True)), ("::1", 0))
            while not isinstance(mh.decode(sock.recv(2048)), mh.BindingAck):
                pass  # its own PBU, looped back
            process.terminate()
            process.wait(10)
            with open(path) as f:
                text = f.read()
            self.assertEqual("userspace: carrying" in text, written, text)
            self.assertEqual("#debug]" in text, written, text)

    def test_jsonWhenAsked(self) -> None:
        """log.format = "json": one JSON object a line, read back by twisted.logger;
        and the metrics served by the daemon (metrics.listen)."""
        from twisted.logger import eventsFromJSONLogFile

        process, path, ns = self.start('\n[log]\nformat = "json"\n[metrics]\n'
                                       'listen = "[::1]:9480"\n', "--logfile=LOG")
        text = self.waitFor(process, path, READY)
        lines = text.splitlines()
        events = [json.loads(line) for line in lines]  # every line is one object
        self.assertTrue(all(isinstance(e.get("log_time"), float) for e in events))
        with open(path) as f:
            read = list(eventsFromJSONLogFile(f, recordSeparator=""))
        self.assertEqual(len(read), len(lines))
        self.assertTrue(any(e.get("log_namespace") == "lmm.lmap" and READY in e["log_format"]
                            for e in read))
        self.waitFor(process, path, "metrics for Prometheus at http://[::1]:9480")
        got = samples(callIn(ns, fetch, "http://[::1]:9480/metrics"))
        self.assertEqual(got["lmm_lmap_bindings{}"], 0)
        self.assertIn("process_resident_memory_bytes{}", got)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        if not answer.headers["Content-Type"].startswith("text/plain"):
            raise AssertionError(answer.headers["Content-Type"])
        return str(answer.read().decode())


# --- a lab, scraped ------------------------------------------------------------------------


class LabMetricsTests(LabTestCase):
    """The demo's attach, ping and handover with every daemon's metrics on."""

    def test_scrapedAfterHandover(self) -> None:
        listen = {"metrics.listen": "[::1]:9480"}
        # auto: the kernel's seg6 where it has it, else the userspace tunnel.
        lab = self.makeLab(self.topology(handovers=["mpa2"], dwell=0.5, tunnel="auto",
                                         lmapOverrides=listen, mpaOverrides=listen))
        result = demo.runDemo(lab)
        self.assertEqual(result.problems, [])
        scraped = {name: samples(callIn(lab.daemons[name].namespace, fetch,
                                        "http://[::1]:9480/metrics"))
                   for name in ("lmap", "mpa1", "mpa2")}
        lmap, mpa1, mpa2 = scraped["lmap"], scraped["mpa1"], scraped["mpa2"]
        self.assertEqual(lmap["lmm_lmap_bindings{}"], 1)
        self.assertGreaterEqual(lmap["lmm_lmap_handovers_total{}"], 1)
        self.assertGreaterEqual(lmap["lmm_lmap_revocations_total{event=acknowledged}"], 1)
        self.assertGreaterEqual(lmap["lmm_lmap_pbu_total{result=accepted,status=0}"], 2)
        self.assertEqual(lmap["lmm_events_total{daemon=lmap,event=pbu.accepted}"],
                         lab.lmapCounters()["pbu.accepted"])
        self.assertEqual(mpa2["lmm_mpa_visitors{state=registered}"], 1)
        self.assertEqual(mpa1["lmm_mpa_visitors{state=registered}"], 0)
        self.assertGreaterEqual(mpa1["lmm_mpa_revocations_total{event=revoked}"], 1)
        for mpa in (mpa1, mpa2):
            self.assertGreaterEqual(mpa["lmm_mpa_aaa_latency_seconds_count{result=accept}"], 1)
            self.assertGreaterEqual(mpa["lmm_mpa_handover_latency_seconds_count{}"], 1)
            self.assertGreaterEqual(mpa["lmm_mpa_registration_latency_seconds_count{}"], 1)
            self.assertGreaterEqual(mpa["lmm_tunnel_operations_total{daemon=mpa,operation=add}"],
                                    1)
            # Plausible: a lab's AAA answers within a second, a registration too.
            self.assertEqual(mpa["lmm_mpa_aaa_latency_seconds_bucket{le=1.0,result=accept}"],
                             mpa["lmm_mpa_aaa_latency_seconds_count{result=accept}"])
            self.assertLess(mpa["lmm_mpa_registration_latency_seconds_sum{}"]
                            / mpa["lmm_mpa_registration_latency_seconds_count{}"], 1.0)
        # The handover into mpa2: the MS kept its address, no SLAAC wait: well under 1 s.
        self.assertLess(mpa2["lmm_mpa_handover_latency_seconds_sum{}"], 1.0)
