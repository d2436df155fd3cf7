"""
Issue 5's "done when", with everything real: for each way a Mobile Station
gets its address (SLAAC, DHCPv6, manual), a Linux host ends with a global
address in its Local Network Prefix, the LMAP's binding carries that address,
the host reaches a correspondent node through the tunnel, and after it moves
to the other MPA the same address keeps working (for DHCPv6, including a
Renew answered through the new MPA).

    LMAP namespace:  backbone bridge (LMAP's address) --- MPA1, MPA2, DHCP
                     and a link to the correspondent node (CN)
    DHCP namespace:  Kea DHCPv6 (short timers: renew 2 s, rebind 3 s, valid 10 s)
    MPA namespaces:  twistd lmm-mpa, FreeRADIUS, an access link to a base station
    air namespace:   bs1 (MPA1's), bs2 (MPA2's); each MS's link is a port of one
    MS namespaces:   ms0, the kernel's defaults; dhclient -6 for DHCPv6

The daemons run with the seg6 data plane when lmm.dataplane.seg6 is there and
the kernel has seg6 (else the recording one, and no ping is tried). Handovers
move an MS's port from bs1 to bs2, as tests/test_mpa_integration.py does.

The MPA gives its access interfaces the virtual LMAP MAC (lmm.mpa.attach), so
its kernel takes the frames the MSs send to their default router as its own:
the pings below prove it, nothing in the test does it for the daemons.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet import reactor
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from lmm import nd
from lmm.aaa import DEFAULT_NAI_TEMPLATE, naiFromMac
from lmm.mpa.control import ask
from lmm.testing import freeradius, kea
from lmm.testing.daemons import Daemon, writeConfig
from lmm.testing.netns import Namespace, NetnsTestMixin, bridge, callIn, link, waitFor
from tests.test_mpa_integration import Tap, randomMac

T = TypeVar("T")

LMAP = "fd00:4d53::1"
MPAS = ("fd00:4d53::2", "fd00:4d53::3")
KEA = "fd00:4d53::53"
CN = "fd00:4d5c::2"
CN_GATEWAY = "fd00:4d5c::1"
LNP = "2001:db8:4d53::/64"
POOL = "2001:db8:4d53::1000-2001:db8:4d53::1fff"
VMAC = "02:00:5e:00:53:01"  # lmm-mpa's default virtual LMAP MAC
VLL = nd.linkLocalFromMac(VMAC)
DHCLIENT = "/usr/sbin/dhclient"

log = Logger(namespace="tests.test_address_methods")

_indexes = iter(range(5000, 6000, 2))


_seg6: list[str | None] = []


def seg6Missing() -> str | None:
    """Why the seg6 data plane cannot carry packets here, or None (probed once)."""
    if not _seg6:
        _seg6.append(_probeSeg6())
    return _seg6[0]


def _probeSeg6() -> str | None:
    try:
        from lmm.dataplane import seg6
    except ImportError as e:
        return f"no seg6 data plane ({e})"
    probe = Namespace.create("seg6probe")
    try:
        plane = callIn(probe, seg6.seg6Backend, {"forwarding": False}, reactor)
        plane.stop()
    except Exception as e:
        return f"seg6 data plane unusable: {e}"
    finally:
        probe.delete()
    return None


# dhclient's script: configure the address as dhclient-script does, and write
# down what happened; never touch the machine's /etc/resolv.conf.
DHCLIENT_SCRIPT = """#!/bin/sh
{ echo "reason=$reason"; echo "new_ip6_address=$new_ip6_address"; echo "time=$(date +%%s.%%N)";
  echo ---; } >> %(events)s
case "$reason" in
  BOUND6|RENEW6|REBIND6)
    [ -n "$new_ip6_address" ] && ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" \\
        dev "$interface" valid_lft "$new_max_life" preferred_lft "$new_preferred_life" ;;
  RELEASE6|EXPIRE6|STOP6)
    [ -n "$old_ip6_address" ] && ip -6 addr del "$old_ip6_address/$old_ip6_prefixlen" \\
        dev "$interface" ;;
esac
exit 0
"""


class Station:
    """A Mobile Station: its namespace, its port on a base station, its NAI."""

    def __init__(self, ms: Namespace, port: str, mac: str, tap: Tap) -> None:
        self.ms = ms
        self.port = port
        self.mac = mac
        self.tap = tap
        self.nai = naiFromMac(DEFAULT_NAI_TEMPLATE, mac).decode()
        self.events: Path | None = None  # what dhclient's script wrote down


class AddressMethodTests(NetnsTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        for tool in ("nft", "ping"):
            if shutil.which(tool) is None:
                raise SkipTest(f"{tool} is not installed")
        self.daemons: dict[str, Daemon] = {}
        self.radius: list[freeradius.FreeRADIUS] = []
        self.stations: list[Station] = []
        self.kea: kea.Kea | None = None
        self.logs = os.path.abspath(self.mktemp())
        os.makedirs(self.logs)
        # UNIX sockets' paths have at most 107 bytes: trial's folders are deeper.
        self.sockets = tempfile.mkdtemp(prefix="lmm-addr-")
        self.addCleanup(shutil.rmtree, self.sockets, True)
        self.dataPlane = "recording" if seg6Missing() else "seg6"

    # --- the domain -------------------------------------------------------------------

    def startDomain(self, users: str, dhcp: bool = False) -> None:
        lmapNs = self.lmapNs = self.makeNamespace("lmap")
        self.mpaNs = [self.makeNamespace(f"mpa{i + 1}") for i in range(2)]
        members: list[tuple[Namespace, str | None]] = [
            (ns, MPAS[i]) for i, ns in enumerate(self.mpaNs)]
        if dhcp:
            dhcpNs = self.makeNamespace("dhcp")
            members.append((dhcpNs, KEA))
        backbone = bridge(lmapNs, members, address=LMAP)
        cn = self.cn = self.makeNamespace("cn")
        link(lmapNs, cn, CN_GATEWAY, CN)
        cn.ip("-6", "route", "add", "default", "via", CN_GATEWAY)
        if dhcp:
            self.kea = kea.startFor(
                self, dhcpNs, backbone.interfaces[2], KEA,
                subnets=[kea.Subnet(LNP, POOL, 1)], renewTimer=2, rebindTimer=3,
                preferredLifetime=8, validLifetime=10)
        air = self.air = self.makeNamespace("air")
        # The base stations are bridges: no IPv6 of their own on the access links.
        air.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
        air.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        self.access: list[str] = []
        for i, ns in enumerate(self.mpaNs):
            accessIf, port = link(ns, air, None, None)
            self.access.append(accessIf)
            air.ip("link", "add", f"bs{i + 1}", "type", "bridge", "stp_state", "0",
                   "mcast_snooping", "0")
            air.ipBatch([f"link set {port} master bs{i + 1}", f"link set bs{i + 1} up"])
        lmapConfig = writeConfig(os.path.join(self.logs, "lmap.toml"), {
            "lmap": {"address": LMAP, "local_network_prefixes": [LNP],
                     "mpas": ["fd00:4d53::/64"]},
            "revocation": {"timeout": 0.3, "max_retries": 3},
            "tunnel": {"backend": self.dataPlane},
            "log": {"level": "debug", "summary_interval": 0},
        })
        self.startDaemon("lmap", lmapNs, "lmm-lmap", lmapConfig,
                         "listening for Proxy Binding Updates")
        for i, ns in enumerate(self.mpaNs):
            # FreeRADIUS listens on loopback only: one in each MPA's namespace.
            server = callIn(ns, freeradius.start, extraUsers=users)
            self.radius.append(server)
            self.addCleanup(server.stop)
            self.startDaemon(f"mpa{i + 1}", ns, "lmm-mpa", self.mpaConfig(i, server),
                             "MPA ready")

    def mpaConfig(self, i: int, server: freeradius.FreeRADIUS) -> str:
        path = os.path.join(self.logs, f"mpa{i + 1}.toml")
        with open(path, "w") as f:
            f.write(f"""\
[mpa]
address = "{MPAS[i]}"
lmap = "{LMAP}"
access_interfaces = ["{self.access[i]}"]

[registration]
timeout = 0.5

[aaa]
backend = "radius"

[aaa.options]
servers = [{{ address = "127.0.0.1", port = {server.port}, secret = "{server.secret.decode()}" }}]
timeout = 0.5

[dhcp]
server = "{KEA}"

[control]
socket = "{self.controlPath(i)}"

[tunnel]
backend = "{self.dataPlane}"

[log]
level = "debug"
summary_interval = 0
""")
        return path

    def controlPath(self, i: int) -> str:
        return os.path.join(self.sockets, f"mpa{i + 1}.sock")

    def startDaemon(self, name: str, ns: Namespace, plugin: str, config: str,
                    ready: str) -> None:
        daemon = Daemon(ns, plugin, config, os.path.join(self.logs, f"{name}.log"))
        self.daemons[name] = daemon
        self.addCleanup(self.stopDaemon, name)
        with self.explained():
            daemon.start(ready=ready)

    def stopDaemon(self, name: str) -> None:
        daemon = self.daemons[name]
        status = daemon.stop()
        text = daemon.log()
        # twistd shuts down cleanly, then re-raises the SIGTERM it was stopped by.
        self.assertIn(status, (0, -signal.SIGTERM), f"{name}:\n{text}")
        self.assertNotIn("Traceback", text, f"{name}:\n{text}")

    def addStation(self, mac: str, baseStation: str = "bs1") -> Station:
        """A new MS with C{mac} whose link is a port of C{baseStation}; its link
        comes up last, so that its first frame reaches the MPA."""
        ms = self.makeNamespace("ms")
        port = f"p{len(self.stations)}"
        a, b = next(_indexes), next(_indexes)
        self.air.ip("link", "add", port, "index", str(a), "type", "veth", "peer", "name", "ms0",
                    "index", str(b), "address", mac, "netns", ms.name)
        tap = Tap(self.socketIn(self.air, socket.AF_PACKET, socket.SOCK_RAW, 0), port, mac)
        self.air.ipBatch([f"link set {port} master {baseStation}", f"link set {port} up"])
        ms.ip("link", "set", "ms0", "up")
        station = Station(ms, port, mac, tap)
        self.stations.append(station)
        return station

    def handOver(self, *stations: Station) -> float:
        """Each station's link goes down, joins MPA2's base station, comes up."""
        commands = []
        for s in stations:
            commands += [f"link set {s.port} down", f"link set {s.port} nomaster",
                         f"link set {s.port} master bs2", f"link set {s.port} up"]
        moved = time.time()
        self.air.ipBatch(commands)
        return moved

    # --- looking ---------------------------------------------------------------------

    def ask(self, i: int, command: str) -> dict[str, Any]:
        answer = ask(self.controlPath(i), command)
        self.assertTrue(answer["ok"], answer)
        return answer

    def counters(self, i: int) -> dict[str, int]:
        return self.ask(i, "counters")["counters"]  # type: ignore[no-any-return]

    def visitor(self, i: int, station: Station) -> dict[str, str] | None:
        for entry in self.ask(i, "visitors")["visitors"]:
            if entry["mac"] == station.mac and entry["state"] != "deregistering":
                return entry  # type: ignore[no-any-return]
        return None

    def registered(self, i: int, station: Station) -> dict[str, str] | None:
        entry = self.visitor(i, station)
        return entry if entry is not None and entry["state"] == "registered" else None

    def state(self, i: int, station: Station) -> str | None:
        entry = self.visitor(i, station)
        return None if entry is None else entry["state"]

    def globalAddresses(self, station: Station) -> list[dict[str, Any]]:
        out = json.loads(station.ms.ip("-j", "-6", "addr", "show", "dev", "ms0", "scope",
                                       "global"))
        return [a for iface in out for a in iface.get("addr_info", []) if "local" in a]

    def configuredAddress(self, station: Station) -> str | None:
        """The MS's global address once DAD is done (not tentative)."""
        for address in self.globalAddresses(station):
            if not address.get("tentative") and not address.get("dadfailed"):
                return str(address["local"])
        return None

    def linkLocalReady(self, station: Station) -> bool:
        out = json.loads(station.ms.ip("-j", "-6", "addr", "show", "dev", "ms0", "scope",
                                       "link"))
        return any("local" in a and not a.get("tentative")
                   for iface in out for a in iface.get("addr_info", []))

    def defaultRoutes(self, station: Station) -> list[dict[str, Any]]:
        return json.loads(  # type: ignore[no-any-return]
            station.ms.ip("-j", "-6", "route", "show", "default"))

    def lmapLog(self, event: str, station: Station) -> list[dict[str, str]]:
        """The LMAP's C{event} lines (debug level) for the station's NAI, as fields."""
        found = []
        for line in self.daemons["lmap"].log().splitlines():
            match = re.search(re.escape(event) + r" (.*)$", line)
            if match:
                fields = dict(part.split("=", 1) for part in match.group(1).split()
                              if "=" in part)
                if fields.get("nai") == station.nai:
                    found.append(fields)
        return found

    def mpaLog(self, i: int, event: str, station: Station) -> list[dict[str, str]]:
        found = []
        for line in self.daemons[f"mpa{i + 1}"].log().splitlines():
            match = re.search(re.escape(event) + r" (.*)$", line)
            if match:
                fields = dict(part.split("=", 1) for part in match.group(1).split()
                              if "=" in part)
                if fields.get("mac") == station.mac:
                    found.append(fields)
        return found

    def ping(self, station: Station, count: int = 3) -> tuple[int, int]:
        """(sent, received) of a ping from the MS to the CN."""
        result = station.ms.run(["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", CN],
                                check=False, timeout=30)
        sent = re.search(r"(\d+) packets transmitted", result.stdout)
        received = re.search(r"(\d+) received", result.stdout)
        return (int(sent.group(1)) if sent else 0, int(received.group(1)) if received else 0)

    def checkPing(self, station: Station, address: str) -> None:
        """The MS reaches the CN through the tunnel, from C{address}."""
        if self.dataPlane != "seg6":
            log.info("no ping: {reason}", reason=seg6Missing())
            return
        # The first packet may meet a tunnel being set up: wait for one reply.
        started = time.monotonic()
        waitFor(lambda: self.ping(station, 1)[1] == 1, 5, 0.1, what="a first ping reply")
        first = time.monotonic() - started
        self.assertEqual(self.ping(station), (3, 3))
        log.info("{mac} pinged the CN from {address} through the seg6 tunnel (first reply "
                 "after {first:.2f} s)", mac=station.mac, address=address, first=first)
        # The CN saw the MS's address: the reply went back to it.
        route = station.ms.ip("-6", "route", "get", CN)
        self.assertIn(f"src {address}", route)

    @contextmanager
    def explained(self) -> Iterator[None]:
        """A failure carries the daemons' logs and the MSs' addresses."""
        try:
            yield
        except SkipTest:
            raise
        except Exception as e:
            raise self.failureException(f"{type(e).__name__}: {e}\n{self.report()}") from e

    def report(self) -> str:
        parts = []
        for name, daemon in self.daemons.items():
            parts.append(f"--- {name} log ({daemon.logPath}), last lines:\n"
                         + daemon.logTail(60))
        if self.kea is not None:
            parts.append("--- Kea, last lines:\n" + "\n".join(self.kea.log().splitlines()[-15:]))
        for station in self.stations:
            try:
                parts.append(f"--- MS {station.mac} on {station.port}:\n"
                             + station.ms.ip("-6", "addr", "show", "dev", "ms0")
                             + station.ms.ip("-6", "route"))
                out = Path(self.logs, f"dhclient-{station.port}.out")
                if out.exists():
                    parts.append(f"--- dhclient on {station.port}:\n"
                                 + out.read_text(errors="replace")[-1500:])
            except Exception as e:
                parts.append(f"--- MS on {station.port}: {e}")
        return "\n".join(parts)

    def wait(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:
        """The first true value of C{predicate}; L{TimeoutError} after C{timeout}."""
        value = waitFor(predicate, timeout, 0.02, what=what)
        assert value is not None
        return value

    def inState(self, i: int, station: Station, state: str) -> bool:
        return self.state(i, station) == state

    def hasAddress(self, station: Station, address: str) -> bool:
        return self.configuredAddress(station) == address

    @staticmethod
    def user(mac: str, *items: str) -> str:
        """A FreeRADIUS users entry for the MS with C{mac}: its LMAP and LNP, and C{items}."""
        nai = naiFromMac(DEFAULT_NAI_TEMPLATE, mac).decode()
        replies = [f"PMIP6-Home-LMA-IPv6-Address = {LMAP}", f"PMIP6-Home-HN-Prefix = {LNP}",
                   *items]
        return (f'{nai}\tCleartext-Password := "{mac.replace(":", "")}"\n\t'
                + ",\n\t".join(replies) + "\n\n")

    def checkBinding(self, station: Station, address: str) -> None:
        """MPA1 registered C{address}; the LMAP's binding carries it."""
        visitor = self.wait(lambda: self.registered(0, station), 5, "MPA1's registration")
        self.assertEqual((visitor["nai"], visitor["localAddress"], visitor["lastStatus"]),
                         (station.nai, address, "0"))
        created = self.wait(lambda: self.lmapLog("binding.created", station), 3,
                            "the LMAP's binding.created")
        self.assertEqual((created[-1]["address"], created[-1]["careOf"]), (address, MPAS[0]))

    def checkHandover(self, station: Station, address: str) -> None:
        """MPA2 registered the same address; the LMAP moved the binding."""
        visitor = self.wait(lambda: self.registered(1, station), 5, "MPA2's registration")
        self.assertEqual((visitor["localAddress"], visitor["lastStatus"]), (address, "0"))
        handover = self.wait(lambda: self.lmapLog("binding.handover", station), 3,
                             "the LMAP's binding.handover")
        self.assertEqual((handover[-1]["address"], handover[-1]["careOf"],
                          handover[-1]["previous"]), (address, MPAS[1], MPAS[0]))
        self.wait(lambda: self.visitor(0, station) is None, 5, "MPA1 to drop the visitor")

    # --- the methods --------------------------------------------------------------------

    def test_slaac(self) -> None:
        """The kernel's SLAAC from the unicast RA; its DAD probe registers the address."""
        mac = randomMac()
        self.startDomain(self.user(mac, "LMM-Address-Mode = slaac"))
        with self.explained():
            started = time.monotonic()
            station = self.addStation(mac)
            address: str = self.wait(lambda: self.configuredAddress(station), 15,
                                     "the MS's SLAAC address")
            log.info("SLAAC: {address} configured {time:.2f} s after link-up", address=address,
                     time=time.monotonic() - started)
            self.assertEqual(address, nd.addressFromMac(LNP.split("/")[0], mac))
            self.checkBinding(station, address)
            self.assertEqual([e["source"] for e in self.mpaLog(0, "address.learned", station)],
                             ["dad"])
            self.checkPing(station, address)
            self.handOver(station)
            self.checkHandover(station, address)
            self.checkPing(station, address)
            self.assertEqual([a["local"] for a in self.globalAddresses(station)], [address])

    # --- DHCPv6 ---------------------------------------------------------------------------

    def dhclient(self, station: Station) -> None:
        """An unmodified ISC dhclient -6 on the MS, with private files; stopped
        by the cleanups (and with its namespace)."""
        directory = Path(tempfile.mkdtemp(prefix="lmm-dhclient-"))
        self.addCleanup(shutil.rmtree, directory, True)
        station.events = directory / "events"
        script = directory / "script"
        script.write_text(DHCLIENT_SCRIPT % {"events": directory / "events"})
        script.chmod(0o755)
        (directory / "dhclient.conf").write_text("")
        argv = [DHCLIENT, "-6", "-d", "-v", "-cf", str(directory / "dhclient.conf"),
                "-lf", str(directory / "leases"), "-pf", str(directory / "pid"),
                "-sf", str(script), "ms0"]
        with open(os.path.join(self.logs, f"dhclient-{station.port}.out"), "ab") as out:
            process = station.ms.popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT)

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                process.wait(5)

        self.addCleanup(stop)

    @staticmethod
    def dhcpEvents(station: Station) -> list[dict[str, str]]:
        if station.events is None:
            return []
        try:
            text = station.events.read_text()
        except OSError:
            return []
        return [dict(line.split("=", 1) for line in block.strip().splitlines() if "=" in line)
                for block in text.split("---") if block.strip()]

    def test_dhcpv6(self) -> None:
        """M and O set: the host makes no SLAAC address; dhclient -6 gets one
        through MPA1's relay, and renews it through MPA2's after the move."""
        if not os.access(DHCLIENT, os.X_OK):
            raise SkipTest(f"{DHCLIENT} is not installed (apt-get install isc-dhcp-client)")
        mac = randomMac()
        self.startDomain(self.user(mac, "LMM-Address-Mode = dhcpv6"), dhcp=True)
        assert self.kea is not None
        with self.explained():
            station = self.addStation(mac)
            # The RA arrived (the default route is its), and the host made no
            # address from it: the prefix is not autonomous.
            self.wait(lambda: self.defaultRoutes(station), 10, "the RA's default route")
            self.wait(lambda: self.linkLocalReady(station), 10, "the MS's link-local address")
            self.assertEqual(self.globalAddresses(station), [])
            tap = station.tap.poll()
            [ra] = [f.message for f in tap.received
                    if isinstance(f.message, nd.RouterAdvertisement)][:1]
            assert isinstance(ra, nd.RouterAdvertisement)
            self.assertEqual((ra.managed, ra.other, [p.autonomous for p in ra.prefixes]),
                             (True, True, [False]))
            started = time.monotonic()
            self.dhclient(station)
            bound = self.wait(lambda: [e for e in self.dhcpEvents(station)
                                       if e.get("reason") == "BOUND6"], 15, "dhclient bound")
            log.info("DHCPv6: dhclient bound {time:.2f} s after it started",
                     time=time.monotonic() - started)
            address = bound[0]["new_ip6_address"]
            first, last = POOL.split("-")
            self.assertTrue(first <= address <= last and len(address) == len(first), address)
            self.wait(lambda: self.configuredAddress(station) == address, 5,
                      "the DHCPv6 address configured (DAD done)")
            self.assertEqual([a["local"] for a in self.globalAddresses(station)], [address])
            self.checkBinding(station, address)
            self.assertEqual(
                [e["source"] for e in self.mpaLog(0, "address.learned", station)], ["dhcpv6"])
            self.checkPing(station, address)

            moved = self.handOver(station)
            self.checkHandover(station, address)
            log.info("DHCPv6: MPA2 registered {address} {time:.3f} s after the move",
                     address=address, time=time.time() - moved)
            self.checkPing(station, address)
            # A Renew through MPA2, answered by Kea, renewing the same address.
            renewed = self.wait(lambda: [e for e in self.dhcpEvents(station)
                                         if e.get("reason") == "RENEW6"
                                         and float(e.get("time", 0)) > moved], 10,
                                "a Renew answered after the handover")
            self.assertEqual(renewed[0]["new_ip6_address"], address)
            counters = self.counters(1)
            self.assertGreaterEqual(counters.get("relay.client.renew", 0), 1, counters)
            self.assertGreaterEqual(counters.get("relay.server.reply", 0), 1, counters)
            self.assertGreaterEqual(counters.get("relay.address.assigned", 0), 1, counters)
            self.assertIn(f"from {MPAS[1]}", self.kea.log())
            self.assertEqual(self.configuredAddress(station), address)
            self.checkPing(station, address)
            self.assertEqual(self.wait(lambda: self.registered(1, station), 1,
                                       "MPA2's registration")["localAddress"], address)

    # --- manual ---------------------------------------------------------------------------

    def test_manual(self) -> None:
        """Hosts configured by hand (A=M=O=0 in the RA: nothing automatic):
        the profile's address; an address probed with DAD; one used without
        DAD, registered from its first packet when the profile lets the MS
        choose, and only then."""
        given, dad, nodad, refused = (randomMac() for _ in range(4))
        prefix = LNP.split("/")[0]
        givenAddress = prefix + "a:1"
        addresses = {given: givenAddress, dad: prefix + "a:2", nodad: prefix + "a:3",
                     refused: prefix + "a:4"}
        users = (self.user(given, "LMM-Address-Mode = manual",
                           f"Framed-IPv6-Address = {givenAddress}")
                 + self.user(dad, "LMM-Address-Mode = manual")
                 + self.user(nodad, "LMM-Address-Mode = manual",
                             "LMM-MS-May-Choose-Address = yes")
                 + self.user(refused, "LMM-Address-Mode = manual"))
        self.startDomain(users)
        with self.explained():
            stations = {mac: self.addStation(mac) for mac in (given, dad, nodad, refused)}
            # The profile's address is registered as soon as the MS is accepted.
            self.wait(lambda: self.registered(0, stations[given]), 5,
                      "the profile's address registered")
            for mac in (dad, nodad, refused):
                self.wait(partial(self.inState, 0, stations[mac], "awaiting-address"), 5,
                          "the MS waiting for an address")
            for station in stations.values():
                # The RA made no address: the host waits for its administrator.
                self.wait(partial(self.defaultRoutes, station), 10, "the RA's default route")
                self.assertEqual(self.globalAddresses(station), [])
            for mac, station in stations.items():
                options = ["nodad"] if mac in (nodad, refused) else []
                station.ms.ip("address", "add", f"{addresses[mac]}/64", "dev", "ms0", *options)
            for mac in (given, dad):
                self.wait(partial(self.hasAddress, stations[mac], addresses[mac]), 5, "DAD done")
            self.checkBinding(stations[given], givenAddress)
            self.assertEqual(self.mpaLog(0, "address.learned", stations[given]), [])
            self.checkBinding(stations[dad], addresses[dad])
            self.assertEqual([e["source"] for e in self.mpaLog(0, "address.learned",
                                                              stations[dad])], ["dad"])
            # No DAD: nothing until the MS sends from the address.
            self.assertEqual(self.state(0, stations[nodad]), "awaiting-address")
            if self.dataPlane == "seg6":
                log.info("manual, no DAD: the first ping (sent, received) {result}",
                         result=self.ping(stations[nodad], 1))
                self.ping(stations[refused], 1)
            else:
                for mac in (nodad, refused):
                    stations[mac].ms.run(["ping", "-c", "1", "-W", "0.2", CN], check=False)
            self.checkBinding(stations[nodad], addresses[nodad])
            self.assertEqual([e["source"] for e in self.mpaLog(0, "address.learned",
                                                              stations[nodad])], ["packet"])
            for mac in (given, dad, nodad):
                self.checkPing(stations[mac], addresses[mac])
            # The profile does not let this one choose: counted, noted, not registered.
            self.wait(lambda: self.mpaLog(0, "address.not-allowed", stations[refused]), 3,
                      "the refusal noted")
            self.assertEqual(self.state(0, stations[refused]), "awaiting-address")
            self.assertGreaterEqual(self.counters(0)["packet.address-not-allowed"], 1)
            self.assertEqual(self.lmapLog("binding.created", stations[refused]), [])
            if self.dataPlane == "seg6":
                self.assertEqual(self.ping(stations[refused], 2)[1], 0)

            moving = [stations[mac] for mac in (given, dad, nodad)]
            self.handOver(*moving)
            for station in moving:
                self.checkHandover(station, addresses[station.mac])
                self.checkPing(station, addresses[station.mac])
