"""
The MPA's "done when" (issue 4), with everything real: a Linux host as the
Mobile Station (a namespace with a veth and the kernel's SLAAC, no lmm code),
FreeRADIUS, a running twistd lmm-lmap and two running twistd lmm-mpa.

    LMAP namespace:  backbone bridge (LMAP's address)  --- MPA1, MPA2
    MPA namespaces:  each its access link, to a "base station" bridge in the air
    air namespace:   bs1 (MPA1's), bs2 (MPA2's); the MS's link is a port of one
    MS namespace:    ms0, the kernel's defaults

A handover moves the MS's port from bs1 to bs2, down and up again: the MS sees
its link go down and up and nothing else changes on it (draft figure 2: MPA,
base station, MS). The MPAs' own links stay up, so MPA1 learns that the MS left
from the LMAP's revocation (draft 6.4), not from a link going down (which would
make it deregister, racing MPA2's registration).

Mobility Header messages are captured on the backbone with tcpdump and decoded
with lmm.mh; the MS's frames are read with an AF_PACKET socket on its port in
the air namespace. The tunnel backend is the recording one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from lmm import mh, nd
from lmm.aaa import DEFAULT_NAI_TEMPLATE, naiFromMac
from lmm.mpa.control import ask
from lmm.testing import freeradius
from lmm.testing.daemons import Daemon, writeConfig
from lmm.testing.netns import Namespace, NetnsTestMixin, bridge, callIn, link, waitFor

LMAP = "fd00:4d51::1"
MPAS = ("fd00:4d51::2", "fd00:4d51::3")
LNP = "2001:db8:4d51::/64"
VMAC = "02:00:5e:00:53:01"  # lmm-mpa's default virtual LMAP MAC
VLL = nd.linkLocalFromMac(VMAC)
ETH_P_ALL = 0x0003

log = Logger(namespace="tests.test_mpa_integration")

_indexes = iter(range(3000, 4000, 2))


def randomMac() -> str:
    return "02:4c:" + secrets.token_bytes(4).hex(":")


def readPcap(path: str) -> list[tuple[float, bytes]]:
    """The packets of a pcap file tcpdump is still writing (a partial last one
    is left out)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    if len(data) < 24:
        return []
    order = "<" if struct.unpack_from("<I", data)[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    packets = []
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, length, _ = struct.unpack_from(order + "IIII", data, offset)
        offset += 16
        if offset + length > len(data):
            break
        packets.append((seconds + fraction / 1e6, data[offset:offset + length]))
        offset += length
    return packets


class Exchange:
    """One Mobility Header message seen on the backbone."""

    def __init__(self, when: float, source: str, destination: str, message: Any) -> None:
        self.when = when
        self.source = source
        self.destination = destination
        self.message = message

    def __repr__(self) -> str:
        m = self.message
        fields = [type(m).__name__]
        for name in ("sequence", "status", "lifetime", "trigger"):
            if hasattr(m, name):
                fields.append(f"{name}={getattr(m, name)}")
        fields += [repr(o) for o in getattr(m, "options", ())]
        return f"{self.when:.3f} {self.source} -> {self.destination} {' '.join(fields)}"


def mobilityHeaders(path: str) -> list[Exchange]:
    exchanges = []
    for when, frame in readPcap(path):
        if len(frame) < 54 or frame[12:14] != b"\x86\xdd" or frame[20] != mh.IPPROTO_MH:
            continue
        source = socket.inet_ntop(socket.AF_INET6, frame[22:38])
        destination = socket.inet_ntop(socket.AF_INET6, frame[38:54])
        try:
            message = mh.decode(frame[54:])
        except mh.MobilityHeaderError as e:
            raise AssertionError(f"undecodable Mobility Header on the backbone: {e}") from e
        exchanges.append(Exchange(when, source, destination, message))
    return exchanges


class Tap:
    """An AF_PACKET socket on the MS's port in the air namespace: what the MS
    sends (incoming there) and what it is sent (outgoing there)."""

    def __init__(self, sock: socket.socket, port: str, mac: str) -> None:
        self.sock = sock
        self.mac = mac
        sock.bind((port, ETH_P_ALL))
        sock.setblocking(False)
        self.sent: list[nd.Frame] = []      # by the MS
        self.received: list[nd.Frame] = []  # by the MS

    def poll(self) -> Tap:
        while True:
            try:
                data, address = self.sock.recvfrom(1 << 16)
            except BlockingIOError:
                return self
            except OSError:
                continue  # ENETDOWN: the port went down for a handover
            try:
                frame = nd.decodeFrame(data)
            except nd.NDError:
                continue
            if address[2] == socket.PACKET_OUTGOING:
                if frame.ethernet.destination == self.mac:
                    self.received.append(frame)
            elif frame.ethernet.source == self.mac:
                self.sent.append(frame)

    def waitQuiet(self, quiet: float, timeout: float = 5.0) -> None:
        """Until the MS has sent nothing for C{quiet} seconds."""
        deadline = time.monotonic() + timeout
        count = len(self.poll().sent)
        last = time.monotonic()
        while time.monotonic() - last < quiet and time.monotonic() < deadline:
            time.sleep(0.02)
            if len(self.poll().sent) != count:
                count = len(self.sent)
                last = time.monotonic()

    def clear(self) -> None:
        self.poll()
        self.sent.clear()
        self.received.clear()

    def describeSent(self) -> list[str]:
        out = []
        for f in self.sent:
            kind = type(f.message).__name__ if f.message is not None else str(f.upperLayer)
            target = f.dadTarget
            ip = f.ip
            out.append(f"{kind} {ip.source if ip else ''} -> {ip.destination if ip else ''}"
                       + (f" (DAD for {target})" if target else ""))
        return out


class MPAIntegrationTests(NetnsTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        if shutil.which("tcpdump") is None:
            raise SkipTest("tcpdump is not installed")
        self.daemons: dict[str, Daemon] = {}
        self.radius: list[freeradius.FreeRADIUS] = []
        self.stations: dict[str, Namespace] = {}
        self.logs = os.path.abspath(self.mktemp())
        os.makedirs(self.logs)
        # UNIX sockets' paths have at most 107 bytes: trial's folders are deeper.
        self.sockets = tempfile.mkdtemp(prefix="lmm-mpa-")
        self.addCleanup(shutil.rmtree, self.sockets, True)
        self.pcap = os.path.join(self.logs, "backbone.pcap")

    # --- the domain -----------------------------------------------------------

    def startDomain(self, mpas: int, users: str) -> None:
        lmapNs = self.lmapNs = self.makeNamespace("lmap")
        self.mpaNs = [self.makeNamespace(f"mpa{i + 1}") for i in range(mpas)]
        backbone = bridge(lmapNs, [(ns, MPAS[i]) for i, ns in enumerate(self.mpaNs)],
                          address=LMAP)
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
        self.startCapture(backbone.name)
        lmapConfig = writeConfig(os.path.join(self.logs, "lmap.toml"), {
            "lmap": {"address": LMAP, "local_network_prefixes": [LNP],
                     "mpas": ["fd00:4d51::/64"]},
            "revocation": {"timeout": 0.3, "max_retries": 3},
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

[control]
socket = "{self.controlPath(i)}"

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
        log = daemon.log()
        # twistd shuts down cleanly, then re-raises the SIGTERM it was stopped by.
        self.assertIn(status, (0, -signal.SIGTERM), f"{name}:\n{log}")
        self.assertIn("Server Shut Down", log, f"{name}:\n{log}")
        self.assertNotIn("Traceback", log, f"{name}:\n{log}")

    def startCapture(self, interface: str) -> None:
        errors = os.path.join(self.logs, "tcpdump.stderr")
        with open(errors, "wb") as stderr:
            process = self.lmapNs.popen(
                ["tcpdump", "-i", interface, "-n", "-U", "--immediate-mode", "-w", self.pcap,
                 "ip6 proto 135"],
                stdout=subprocess.DEVNULL, stderr=stderr)

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                process.wait(5)

        self.addCleanup(stop)

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"tcpdump exited: {open(errors).read()}")
            return "listening on" in open(errors).read()

        waitFor(listening, 10, 0.02, what="tcpdump to listen")

    def attachStation(self, mac: str, baseStation: str) -> tuple[Namespace, Tap]:
        """A new MS whose link is a port of C{baseStation}; its link comes up
        last, so that its first frame reaches the MPA."""
        ms = self.makeNamespace("ms")
        port = f"p{len(self.stations)}"
        self.stations[port] = ms
        a, b = next(_indexes), next(_indexes)
        self.air.ip("link", "add", port, "index", str(a), "type", "veth", "peer", "name", "ms0",
                    "index", str(b), "address", mac, "netns", ms.name)
        tap = Tap(self.socketIn(self.air, socket.AF_PACKET, socket.SOCK_RAW, 0), port, mac)
        self.air.ipBatch([f"link set {port} master {baseStation}", f"link set {port} up"])
        ms.ip("link", "set", "ms0", "up")
        return ms, tap

    # --- looking -----------------------------------------------------------------

    def ask(self, i: int, command: str) -> dict[str, Any]:
        answer = ask(self.controlPath(i), command)
        self.assertTrue(answer["ok"], answer)
        return answer

    def visitors(self, i: int) -> list[dict[str, str]]:
        return self.ask(i, "visitors")["visitors"]  # type: ignore[no-any-return]

    def counters(self, i: int) -> dict[str, int]:
        return self.ask(i, "counters")["counters"]  # type: ignore[no-any-return]

    def registered(self, i: int, mac: str) -> dict[str, str] | None:
        for visitor in self.visitors(i):
            if visitor["mac"] == mac and visitor["state"] == "registered":
                return visitor
        return None

    def globalAddresses(self, ms: Namespace) -> list[dict[str, Any]]:
        out = json.loads(ms.ip("-j", "-6", "addr", "show", "dev", "ms0", "scope", "global"))
        # (ip -j lists the addresses a filter left out as empty objects)
        return [a for iface in out for a in iface.get("addr_info", []) if "local" in a]

    def configuredAddress(self, ms: Namespace) -> str | None:
        """The MS's global address once DAD is done (not tentative)."""
        for address in self.globalAddresses(ms):
            if not address.get("tentative") and not address.get("dadfailed"):
                return str(address["local"])
        return None

    def defaultRoutes(self, ms: Namespace) -> list[dict[str, Any]]:
        return json.loads(ms.ip("-j", "-6", "route", "show", "default"))  # type: ignore[no-any-return]

    def carrierChanges(self, ms: Namespace) -> int:
        return int(ms.run(["cat", "/sys/class/net/ms0/carrier_changes"]).stdout)

    def exchanges(self) -> list[Exchange]:
        return mobilityHeaders(self.pcap)

    def find(self, kind: type, source: str, destination: str, after: float = 0.0,
             **fields: Any) -> list[Exchange]:
        return [e for e in self.exchanges()
                if isinstance(e.message, kind) and e.source == source
                and e.destination == destination and e.when >= after
                and all(getattr(e.message, k) == v for k, v in fields.items())]

    @contextmanager
    def explained(self) -> Iterator[None]:
        """A failure carries the daemons' logs, the backbone's Mobility Header
        messages and the MSs' addresses."""
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
                         + daemon.logTail(80))
        for i, server in enumerate(self.radius):
            parts.append(f"--- FreeRADIUS in mpa{i + 1}, last lines:\n"
                         + "\n".join(server.log().splitlines()[-25:]))
        try:
            parts.append("--- Mobility Header on the backbone:\n"
                         + "\n".join(map(repr, self.exchanges())))
        except AssertionError as e:
            parts.append(f"--- backbone capture: {e}")
        for port, ms in self.stations.items():
            try:
                parts.append(f"--- MS on {port}:\n"
                             + ms.ip("-6", "addr", "show", "dev", "ms0")
                             + ms.ip("-6", "route"))
            except Exception as e:
                parts.append(f"--- MS on {port}: {e}")
        return "\n".join(parts)

    # --- the tests ---------------------------------------------------------------------

    def test_attachSlaacHandover(self) -> None:
        mac = randomMac()
        nai = naiFromMac(DEFAULT_NAI_TEMPLATE, mac).decode()
        users = (f'{nai}\tCleartext-Password := "{mac.replace(":", "")}"\n'
                 f"\tPMIP6-Home-LMA-IPv6-Address = {LMAP},\n"
                 f"\tPMIP6-Home-HN-Prefix = {LNP},\n"
                 f"\tLMM-Address-Mode = slaac\n")
        self.startDomain(2, users)
        with self.explained():
            self.attachAndHandOver(mac, nai)

    def attachAndHandOver(self, mac: str, nai: str) -> None:
        expected = nd.addressFromMac(LNP.split("/")[0], mac)
        started = time.monotonic()
        ms, tap = self.attachStation(mac, "bs1")
        # SLAAC by the kernel: link-local DAD, RS, RA, DAD of the global address.
        address = waitFor(lambda: self.configuredAddress(ms), 15, 0.02,
                          what="the MS's SLAAC address")
        assert address is not None
        slaac = time.monotonic() - started
        self.assertEqual(address, expected)
        [route] = self.defaultRoutes(ms)
        self.assertEqual((route["gateway"], route["dev"]), (VLL, "ms0"))
        self.assertEqual(ms.run(["cat", "/proc/sys/net/ipv6/conf/ms0/mtu"]).stdout.strip(),
                         "1460")  # the RA's MTU option: room for the tunnel header
        # MPA1 registered it with the address the MS configured.
        visitor = waitFor(lambda: self.registered(0, mac), 5, 0.02, what="MPA1's registration")
        assert visitor is not None
        self.assertEqual((visitor["nai"], visitor["localAddress"], visitor["lastStatus"]),
                         (nai, address, "0"))
        [pbu] = waitFor(lambda: self.find(mh.BindingUpdate, MPAS[0], LMAP, lifetime=3600,
                                          options=(mh.MobileNodeIdentifier(nai.encode()),
                                                   mh.LocalAddress(address, 64))), 3, 0.02,
                        what="MPA1's PBU with the Local Address on the wire")
        self.assertTrue(pbu.message.proxy)
        waitFor(lambda: self.find(mh.BindingAck, LMAP, MPAS[0], status=0,
                                  sequence=pbu.message.sequence), 3, 0.02,
                what="the LMAP's PBA to MPA1 on the wire")

        # The handover: the MS's link goes down, joins MPA2's base station, comes
        # up. First the MS finishes configuring (its RS, its MLD reports), so
        # that what it sends after the handover is told apart.
        waitFor(lambda: any(isinstance(f.message, nd.RouterSolicitation)
                            for f in tap.poll().sent), 5, 0.02, what="the MS's RS")
        tap.waitQuiet(0.5)
        tap.clear()
        carrier = self.carrierChanges(ms)
        moved = time.time()
        handover = time.monotonic()
        self.air.ipBatch(["link set p0 down", "link set p0 nomaster", "link set p0 master bs2",
                          "link set p0 up"])
        visitor = waitFor(lambda: self.registered(1, mac), 5, 0.01, what="MPA2's registration")
        assert visitor is not None
        registeredIn = time.monotonic() - handover
        self.assertEqual((visitor["localAddress"], visitor["lastStatus"]), (address, "0"))
        waitFor(lambda: not self.visitors(0), 5, 0.01, what="MPA1 to drop the visitor")
        revokedIn = time.monotonic() - handover
        self.assertEqual(self.carrierChanges(ms) - carrier, 2)  # down, up: all the MS saw

        # On the wire: MPA2 asked (BCC or LoA) and got status 0 and the address;
        # the LMAP revoked MPA1's binding, MPA1 acknowledged.
        [pba] = waitFor(lambda: self.find(mh.BindingAck, LMAP, MPAS[1], after=moved - 1,
                                          status=0), 3, 0.02, what="the PBA to MPA2")
        self.assertEqual(pba.message.option(mh.LocalAddress), mh.LocalAddress(address, 64))
        [request] = [e for e in self.find(mh.BindingUpdate, MPAS[1], LMAP)
                     if e.message.sequence == pba.message.sequence]
        self.assertTrue(request.message.option(mh.BindingCacheConfirmation) is not None
                        or request.message.option(mh.LocalAddress) is not None)
        [bri] = waitFor(lambda: self.find(mh.BindingRevocationIndication, LMAP, MPAS[0]), 3,
                        0.02, what="the BRI to MPA1")
        self.assertEqual(bri.message.option(mh.MobileNodeIdentifier),
                         mh.MobileNodeIdentifier(nai.encode()))
        waitFor(lambda: self.find(mh.BindingRevocationAck, MPAS[0], LMAP,
                                  sequence=bri.message.sequence, status=0), 3, 0.02,
                what="MPA1's BRA")
        self.assertEqual(self.counters(0)["visitor.revoked"], 1)
        self.assertIn("binding.handover", self.daemons["lmap"].log())

        # The MS kept its address, configured (not tentative), and its router.
        time.sleep(1.0)  # what the MS does after its link came back
        self.assertEqual(self.configuredAddress(ms), address)
        self.assertEqual([a["local"] for a in self.globalAddresses(ms)], [address])
        [route] = self.defaultRoutes(ms)
        self.assertEqual(route["gateway"], VLL)
        tap.poll()
        dad = [f for f in tap.sent if f.dadTarget == address]
        self.assertEqual(dad, [], "the MS probed its address again after the handover: "
                         + "; ".join(tap.describeSent()))
        # MPA2 told it its home link at once, unasked.
        self.assertTrue(any(isinstance(f.message, nd.RouterAdvertisement)
                            and f.ethernet.source == VMAC for f in tap.received))
        log.info("SLAAC {slaac:.2f} s; after the handover MPA2 registered in {registered:.0f} "
                 "ms, MPA1 dropped the visitor in {revoked:.0f} ms; the MS sent: {sent}",
                 slaac=slaac, registered=registeredIn * 1000, revoked=revokedIn * 1000,
                 sent="; ".join(tap.describeSent()))

    def test_rejectedGetsNoAdvertisement(self) -> None:
        mac = randomMac()
        nai = naiFromMac(DEFAULT_NAI_TEMPLATE, mac).decode()
        users = (f"{nai}\tAuth-Type := Reject\n"
                 f'\tReply-Message = "{nai} is barred in this test"\n')
        self.startDomain(1, users)
        with self.explained():
            ms, tap = self.attachStation(mac, "bs1")
            waitFor(lambda: self.counters(0).get("aaa.rejected"), 5, 0.02,
                    what="the Access-Reject")
            # The kernel sends its RS once its link-local address is through DAD.
            waitFor(lambda: any(isinstance(f.message, nd.RouterSolicitation)
                                for f in tap.poll().sent), 10, 0.02, what="the MS's RS")
            time.sleep(1.0)  # room for an answer that must not come
            tap.poll()
            self.assertEqual(tap.received, [], "the MPA sent frames to a rejected MS")
            self.assertEqual(self.globalAddresses(ms), [])
            self.assertEqual(self.defaultRoutes(ms), [])
            counters = self.counters(0)
            self.assertEqual(counters["aaa.rejected"], 1)
            self.assertGreaterEqual(counters["frame.rejected"], 1)
            for key in counters:
                self.assertFalse(key.startswith(("ra.", "na.", "pbu.")), key)
            [visitor] = self.visitors(0)
            self.assertEqual(visitor["state"], "rejected")
            self.assertIn("barred in this test", visitor["failure"])
            self.assertEqual(self.exchanges(), [])
