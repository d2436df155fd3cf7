"""
The MPA's "done when" (issue 4), with everything real: a Linux host as the
Mobile Station (a namespace with a veth and the kernel's SLAAC, no lmm code),
FreeRADIUS, a running twistd lmm-lmap and two running twistd lmm-mpa.

The domain is a L{lmm.lab.topology.Lab} (docs/lab.md), on the addresses of
etc/lab/demo.toml, with FreeRADIUS as AAA and the recording tunnel backend:

    LMAP namespace:  backbone bridge (LMAP's address) --- MPA1, MPA2
    MPA namespaces:  each its access link, to a "base station" bridge in the air
    air namespace:   MPA1's and MPA2's base stations; the MS's link is a port of one
    MS namespace:    ms0, the kernel's defaults

A handover moves the MS's port to MPA2's base station, down and up again
(L{Lab.move}): the MS sees its link go down and up and nothing else changes on
it (draft figure 2: MPA, base station, MS). The MPAs' own links stay up, so
MPA1 learns that the MS left from the LMAP's revocation (draft 6.4), not from
a link going down (which would make it deregister, racing MPA2's
registration). The base stations report associations to their MPA (the lab's
default): nothing here depends on how an MPA detects an MS (packet attach
detection is tested by tests/test_address_methods.py).

Mobility Header messages are read from the lab's capture on the backbone and
decoded with lmm.mh; the MS's frames are read with an AF_PACKET socket in the
air namespace, on its port. A failing test keeps the lab's run folder (every
daemon's log, FreeRADIUS's, the captures) and names it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from typing import Any

from twisted.logger import Logger
from twisted.trial.unittest import SkipTest

from lmm import mh, nd
from lmm.lab import freeradius
from lmm.lab import timeline as tl
from lmm.lab.netns import socketIn, waitFor
from lmm.lab.topology import VIRTUAL_LMAP_MAC, Lab, MSSpec, Station, loadTopology, randomMac
from tests.test_lab import LabTestCase

VLL = nd.linkLocalFromMac(VIRTUAL_LMAP_MAC)
ETH_P_ALL = 0x0003

log = Logger(namespace="tests.test_mpa_integration")


class Exchange:
    """One Mobility Header message seen on the backbone; C{message} without the
    signaling's protection options (RFC 4285: Replay Protection, then
    Authentication, last; tests.test_security checks them), C{protected}
    whether it carried them."""

    def __init__(self, when: float, source: str, destination: str, message: Any) -> None:
        self.when = when
        self.source = source
        self.destination = destination
        options = message.options
        self.protected = (len(options) >= 2 and type(options[-1]) is mh.Authentication
                          and type(options[-2]) is mh.ReplayProtection)
        self.message = replace(message, options=options[:-2]) if self.protected else message

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
    for when, frame in tl.readPcap(path):
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
    """
    An AF_PACKET socket in the air namespace: what the MS sends (incoming on
    its port) and what it is sent (outgoing on its port, to its MAC). The
    socket takes every interface there, so that it is open before the MS's
    link exists and sees its first frames; L{poll} keeps those of C{port},
    set once the MS is attached.
    """

    def __init__(self, sock: socket.socket, mac: str) -> None:
        self.sock = sock
        self.mac = mac
        self.port: str | None = None
        sock.setblocking(False)
        self.sent: list[nd.Frame] = []      # by the MS
        self.received: list[nd.Frame] = []  # by the MS

    def poll(self) -> Tap:
        assert self.port is not None, "the tap's port is not set"
        while True:
            try:
                data, address = self.sock.recvfrom(1 << 16)
            except BlockingIOError:
                return self
            except OSError:
                continue  # ENETDOWN: the port went down for a handover
            if address[0] != self.port:
                continue
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


class MPAIntegrationTests(LabTestCase):
    def setUp(self) -> None:
        super().setUp()
        reason = freeradius.missingReason()
        if reason is not None:
            raise SkipTest(reason)

    # --- the domain -----------------------------------------------------------

    def startDomain(self, mpas: int, spec: MSSpec) -> Lab:
        """The lab with C{mpas} MPAs (of demo.toml's two) and the MS C{spec}, not
        attached yet; FreeRADIUS as AAA, the recording tunnel backend."""
        base = loadTopology()
        self.lab = self.makeLab(replace(base, tunnel="recording", aaa="radius",
                                        mpas=base.mpas[:mpas], stations=[spec], handovers=[]))
        self.lmap = self.lab.topology.lmap
        self.mpas = [m.address for m in self.lab.topology.mpas]
        return self.lab

    def attach(self, spec: MSSpec) -> tuple[Station, Tap]:
        """The MS on its MPA's base station (L{Lab.attach}), its tap opened first."""
        sock = socketIn(self.lab.air, socket.AF_PACKET, socket.SOCK_RAW,
                        socket.htons(ETH_P_ALL))
        self.addCleanup(sock.close)
        tap = Tap(sock, spec.mac)
        station = self.lab.attach(spec)
        tap.port = station.port
        return station, tap

    # --- looking -----------------------------------------------------------------

    def ask(self, mpa: str, command: str) -> dict[str, Any]:
        answer = self.lab.ask(mpa, command)
        self.assertTrue(answer["ok"], answer)
        return answer

    def visitors(self, mpa: str) -> list[dict[str, str]]:
        return self.ask(mpa, "visitors")["visitors"]  # type: ignore[no-any-return]

    def counters(self, mpa: str) -> dict[str, int]:
        return self.ask(mpa, "counters")["counters"]  # type: ignore[no-any-return]

    def carrierChanges(self, station: Station) -> int:
        return int(station.namespace.run(["cat", "/sys/class/net/ms0/carrier_changes"]).stdout)

    def exchanges(self, heartbeats: bool = False) -> list[Exchange]:
        """The Mobility Header messages on the backbone; the heartbeats
        (RFC 5847, every second in the lab) only with C{heartbeats}."""
        return [e for e in mobilityHeaders(self.lab.backbonePcap)
                if heartbeats or not isinstance(e.message, mh.Heartbeat)]

    def find(self, kind: type, source: str, destination: str, after: float = 0.0,
             **fields: Any) -> list[Exchange]:
        return [e for e in self.exchanges()
                if isinstance(e.message, kind) and e.source == source
                and e.destination == destination and e.when >= after
                and all(getattr(e.message, k) == v for k, v in fields.items())]

    def stopCleanly(self) -> None:
        """Stop the lab: every daemon exits cleanly (status, no traceback:
        L{Lab.stop}) and logs its shutdown."""
        self.assertEqual(self.lab.stop(), [], f"logs in {self.lab.runDir}")
        for name, daemon in self.lab.daemons.items():
            self.assertIn("Server Shut Down", daemon.log(), f"{name}: {daemon.logPath}")

    # --- the tests ---------------------------------------------------------------------

    def test_attachSlaacHandover(self) -> None:
        spec = MSSpec("ms", randomMac(), "mpa1")
        lab = self.startDomain(2, spec)
        self.attachAndHandOver(lab, spec)
        # The lab's signaling is authenticated, as a deployment's is by default.
        exchanges = self.exchanges()
        self.assertTrue(exchanges)
        self.assertEqual([e for e in exchanges if not e.protected], [])
        self.stopCleanly()

    def attachAndHandOver(self, lab: Lab, spec: MSSpec) -> None:
        mac, nai = spec.mac, spec.nai
        lmap, mpas = self.lmap, self.mpas
        expected = nd.addressFromMac(lab.topology.prefix.split("/")[0], mac)
        started = time.monotonic()
        station, tap = self.attach(spec)
        # SLAAC by the kernel: link-local DAD, RS, RA, DAD of the global address.
        address = waitFor(lambda: lab.configuredAddress(station), 15, 0.02,
                          what="the MS's SLAAC address")
        assert address is not None
        slaac = time.monotonic() - started
        self.assertEqual(address, expected)
        [route] = lab.defaultRoutes(station)
        self.assertEqual((route["gateway"], route["dev"]), (VLL, "ms0"))
        self.assertEqual(
            station.namespace.run(["cat", "/proc/sys/net/ipv6/conf/ms0/mtu"]).stdout.strip(),
            "1460")  # the RA's MTU option: room for the tunnel header
        # MPA1 registered it with the address the MS configured.
        visitor = waitFor(lambda: lab.registered("mpa1", mac), 5, 0.02,
                          what="MPA1's registration")
        assert visitor is not None
        self.assertEqual((visitor["nai"], visitor["localAddress"], visitor["lastStatus"]),
                         (nai, address, "0"))
        [pbu] = waitFor(lambda: self.find(mh.BindingUpdate, mpas[0], lmap, lifetime=3600,
                                          options=(mh.MobileNodeIdentifier(nai.encode()),
                                                   mh.LocalAddress(address, 64))), 3, 0.02,
                        what="MPA1's PBU with the Local Address on the wire")
        self.assertTrue(pbu.message.proxy)
        waitFor(lambda: self.find(mh.BindingAck, lmap, mpas[0], status=0,
                                  sequence=pbu.message.sequence), 3, 0.02,
                what="the LMAP's PBA to MPA1 on the wire")

        # The handover: the MS's link goes down, joins MPA2's base station, comes
        # up. First the MS finishes configuring (its RS, its MLD reports), so
        # that what it sends after the handover is told apart.
        waitFor(lambda: any(isinstance(f.message, nd.RouterSolicitation)
                            for f in tap.poll().sent), 5, 0.02, what="the MS's RS")
        tap.waitQuiet(0.5)
        tap.clear()
        carrier = self.carrierChanges(station)
        handover = time.monotonic()
        moved, _ = lab.move(station, "mpa2")
        visitor = waitFor(lambda: lab.registered("mpa2", mac), 5, 0.01,
                          what="MPA2's registration")
        assert visitor is not None
        registeredIn = time.monotonic() - handover
        self.assertEqual((visitor["localAddress"], visitor["lastStatus"]), (address, "0"))
        waitFor(lambda: not self.visitors("mpa1"), 5, 0.01, what="MPA1 to drop the visitor")
        revokedIn = time.monotonic() - handover
        self.assertEqual(self.carrierChanges(station) - carrier, 2)  # down, up: all it saw

        # On the wire: MPA2 asked (BCC or LoA) and got status 0 and the address;
        # the LMAP revoked MPA1's binding, MPA1 acknowledged.
        [pba] = waitFor(lambda: self.find(mh.BindingAck, lmap, mpas[1], after=moved - 1,
                                          status=0), 3, 0.02, what="the PBA to MPA2")
        self.assertEqual(pba.message.option(mh.LocalAddress), mh.LocalAddress(address, 64))
        [request] = [e for e in self.find(mh.BindingUpdate, mpas[1], lmap)
                     if e.message.sequence == pba.message.sequence]
        self.assertTrue(request.message.option(mh.BindingCacheConfirmation) is not None
                        or request.message.option(mh.LocalAddress) is not None)
        [bri] = waitFor(lambda: self.find(mh.BindingRevocationIndication, lmap, mpas[0]), 3,
                        0.02, what="the BRI to MPA1")
        self.assertEqual(bri.message.option(mh.MobileNodeIdentifier),
                         mh.MobileNodeIdentifier(nai.encode()))
        waitFor(lambda: self.find(mh.BindingRevocationAck, mpas[0], lmap,
                                  sequence=bri.message.sequence, status=0), 3, 0.02,
                what="MPA1's BRA")
        self.assertEqual(self.counters("mpa1")["visitor.revoked"], 1)
        self.assertIn("binding.handover", lab.daemons["lmap"].log())

        # The MS kept its address, configured (not tentative), and its router.
        time.sleep(1.0)  # what the MS does after its link came back
        self.assertEqual(lab.configuredAddress(station), address)
        self.assertEqual([a["local"] for a in lab.globalAddresses(station)], [address])
        [route] = lab.defaultRoutes(station)
        self.assertEqual(route["gateway"], VLL)
        tap.poll()
        dad = [f for f in tap.sent if f.dadTarget == address]
        self.assertEqual(dad, [], "the MS probed its address again after the handover: "
                         + "; ".join(tap.describeSent()))
        # MPA2 told it its home link at once, unasked.
        self.assertTrue(any(isinstance(f.message, nd.RouterAdvertisement)
                            and f.ethernet.source == VIRTUAL_LMAP_MAC for f in tap.received))
        log.info("SLAAC {slaac:.2f} s; after the handover MPA2 registered in {registered:.0f} "
                 "ms, MPA1 dropped the visitor in {revoked:.0f} ms; the MS sent: {sent}",
                 slaac=slaac, registered=registeredIn * 1000, revoked=revokedIn * 1000,
                 sent="; ".join(tap.describeSent()))

    def test_rejectedGetsNoAdvertisement(self) -> None:
        spec = MSSpec("barred", randomMac(), "mpa1", accept=False)
        lab = self.startDomain(1, spec)
        station, tap = self.attach(spec)
        waitFor(lambda: self.counters("mpa1").get("aaa.rejected"), 5, 0.02,
                what="the Access-Reject")
        # The kernel sends its RS once its link-local address is through DAD.
        waitFor(lambda: any(isinstance(f.message, nd.RouterSolicitation)
                            for f in tap.poll().sent), 10, 0.02, what="the MS's RS")
        time.sleep(1.0)  # room for an answer that must not come
        tap.poll()
        self.assertEqual(tap.received, [], "the MPA sent frames to a rejected MS")
        self.assertEqual(lab.globalAddresses(station), [])
        self.assertEqual(lab.defaultRoutes(station), [])
        counters = self.counters("mpa1")
        self.assertEqual(counters["aaa.rejected"], 1)
        self.assertGreaterEqual(counters["frame.rejected"], 1)
        for key in counters:
            self.assertFalse(key.startswith(("ra.", "na.", "pbu.")), key)
        [visitor] = self.visitors("mpa1")
        self.assertEqual(visitor["state"], "rejected")
        self.assertIn("barred is barred in this lab", visitor["failure"])
        self.assertEqual(self.exchanges(), [])
        self.stopCleanly()
