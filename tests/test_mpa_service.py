"""
lmm.mpa.service, lmm.mpa.attach and lmm.mpa.control: the MPA's shell in this
process, its access link and backbone in a namespace, a Mobile Station's frames
injected (and the MPA's read) with an AF_PACKET socket in a peer namespace, a
fake LMAP on a raw Mobility Header socket there.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import Any, cast

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutput
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer

from lmm import mh, nd
from lmm.aaa import AccessRequest, ProfileFileAuthenticator
from lmm.actions import AddTunnel, Note, RemoveTunnel, SendMessage
from lmm.dataplane.common import DataPlaneError
from lmm.interfaces import IAuthenticator
from lmm.lab.netns import callIn, link, waitForDeferred
from lmm.mpa.agent import Authenticate, MobilityProxyAgent, SendFrame
from lmm.mpa.attach import (
    ETH_P_ALL,
    ExplicitAttachDetector,
    PacketAttachDetector,
    parseLinkMessages,
    readLinks,
)
from lmm.mpa.control import CommandError, ask, execute
from lmm.mpa.service import MPAService, composeMPA
from lmm.testing.doubles import RefusingPlane
from lmm.testing.mixins import NetnsTestMixin
from lmm.tunnel import ROLE_MPA, RecordingDataPlane, TunnelBinding

MPA = "fd00:4d50::2"
LMAP = "fd00:4d50::1"
VMAC = "02:00:5e:00:53:01"
VLL = nd.linkLocalFromMac(VMAC)
MS_MAC = "02:4c:4d:00:0a:01"
MS_LL = nd.linkLocalFromMac(MS_MAC)
STRANGER_MAC = "02:4c:4d:00:0a:66"
LNP = "2001:db8:4d::/64"
MS_ADDRESS = nd.addressFromMac("2001:db8:4d::", MS_MAC)
NAI = b"ms@lmm.test"
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROFILES = f"""
[[profile]]
nai = "ms@lmm.test"
mac = "{MS_MAC}"
local_network_prefix = "{LNP}"
address_mode = "slaac"
"""

# Tests use the reactor's every part; Twisted types it by its common part.
reactor: Any = _reactor


def receiveAll(sock: socket.socket) -> list[bytes]:
    """What a non-blocking socket holds now."""
    out = []
    while True:
        try:
            out.append(sock.recv(1 << 16))
        except BlockingIOError:
            return out


class FakeLMAP:
    """A raw Mobility Header socket in the peer namespace, bound to LMAP."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, 4)
        sock.bind((LMAP, 0))
        sock.setblocking(False)
        self.received: list[mh.Message] = []

    def poll(self) -> list[mh.Message]:
        for data in receiveAll(self.sock):
            self.received.append(mh.decode(data))
        return self.received

    def send(self, message: mh.MobilityMessage | bytes) -> None:
        data = message if isinstance(message, bytes) else mh.encode(message)
        self.sock.sendto(data, (MPA, 0))

    async def next(self, kind: type, timeout: float = 3.0) -> Any:
        def found() -> Any:
            for i, message in enumerate(self.poll()):
                if isinstance(message, kind):
                    return self.received.pop(i)
            return None

        return await waitForDeferred(found, timeout, what=f"a {kind.__name__} at the LMAP")


class Station:
    """An AF_PACKET socket on the peer end of the access link: frames from
    any MAC out, every frame the MPA sends in."""

    def __init__(self, sock: socket.socket, interface: str) -> None:
        self.sock = sock
        sock.bind((interface, ETH_P_ALL))
        sock.setblocking(False)
        self.frames: list[nd.Frame] = []

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def poll(self) -> list[nd.Frame]:
        while True:
            try:
                data, address = self.sock.recvfrom(1 << 16)
            except BlockingIOError:
                return self.frames
            except OSError:
                continue  # ENETDOWN while the link flaps
            if address[2] == socket.PACKET_OUTGOING:
                continue  # what we sent
            try:
                self.frames.append(nd.decodeFrame(data))
            except nd.NDError:
                pass

    def advertisementsTo(self, mac: str) -> list[nd.Frame]:
        return [f for f in self.poll() if f.ethernet.destination == mac
                and isinstance(f.message, nd.RouterAdvertisement)]


class MPAServiceTestsMixin(NetnsTestMixin):
    detectorClass: type = PacketAttachDetector
    detectorOptions: dict[str, Any] = {}

    def setUp(self) -> None:
        self.mpaNs = self.makeNamespace("mpa")
        self.peerNs = self.makeNamespace("peer")
        # The peer's kernel keeps quiet on the access link: only injected frames.
        self.peerNs.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        self.access, self.peerAccess = link(self.mpaNs, self.peerNs, None, None)
        self.peerNs.sysctl("net.ipv6.conf.default.disable_ipv6", 0)
        link(self.mpaNs, self.peerNs, MPA, LMAP)
        # A UNIX socket's path has at most 107 bytes: trial's folders are deeper.
        folder = tempfile.mkdtemp(prefix="lmm-mpa-")
        self.addCleanup(shutil.rmtree, folder, True)
        profiles = os.path.join(folder, "profiles.toml")
        with open(profiles, "w") as f:
            f.write(PROFILES)
        self.lmap = FakeLMAP(self.socketIn(self.peerNs, proto=mh.IPPROTO_MH))
        self.station = Station(
            self.socketIn(self.peerNs, socket.AF_PACKET, socket.SOCK_RAW, 0), self.peerAccess)
        self.dataPlane = RecordingDataPlane()
        self.controlPath = os.path.join(folder, "control.sock")
        self.authenticator = ProfileFileAuthenticator(profiles)

    def within(self, f: Any) -> Any:
        return callIn(self.mpaNs, f)

    def startMPA(self, interfaces: list[str] | None = None) -> MPAService:
        agent = MobilityProxyAgent(
            address=MPA, defaultLmap=LMAP, accessInterfaces=interfaces or [self.access],
            interfaceMacs={}, lifetime=600, retransmitTimeout=0.3, maxRetries=2, raMtu=1460,
            profile=mh.DRAFT, defaultVirtualLmapMac=VMAC, refreshFraction=0.75,
            rejectHoldDown=0.5,
        )
        self.detector = self.detectorClass(reactor, **self.detectorOptions)
        service = MPAService(agent, self.detector, self.authenticator, self.dataPlane, mh.DRAFT,
                             reactor, within=self.within)
        daemon = composeMPA(service, self.controlPath, summaryInterval=0)
        daemon.startService()
        self.addCleanup(daemon.stopService)
        self.service = service
        return service

    def ask(self, command: str) -> dict[str, Any]:
        """A control command, as the channel runs it (the blocking client
        would wait for this very reactor); L{test_controlSocket} uses the socket."""
        try:
            answer = execute(self.service, command.split())
        except CommandError as e:
            answer = {"ok": False, "error": str(e)}
        return json.loads(json.dumps(answer))  # type: ignore[no-any-return]

    def rs(self, mac: str = MS_MAC) -> None:
        self.station.send(nd.buildRouterSolicitation(mac, nd.linkLocalFromMac(mac)))

    def dad(self, address: str = MS_ADDRESS, mac: str = MS_MAC) -> None:
        self.station.send(nd.buildNeighborSolicitation(mac, None, "::", None, address))

    async def advertisement(self, mac: str = MS_MAC, timeout: float = 3.0) -> nd.Frame:
        frames = await waitForDeferred(lambda: self.station.advertisementsTo(mac), timeout,
                                       what=f"an RA to {mac}")
        return frames[0]

    async def newMs(self, mac: str = MS_MAC) -> nd.Frame:
        """The fake LMAP has no binding to confirm (141): the MPA advertises the home
        link (the RA it sends)."""
        confirm = await self.lmap.next(mh.BindingUpdate)
        self.assertIsNotNone(confirm.option(mh.BindingCacheConfirmation))
        # Nothing on the access link before the LMAP's answer.
        self.assertEqual(self.station.advertisementsTo(mac), [])
        self.lmap.send(mh.ProxyBindingAck(141, confirm.sequence, 0))
        return await self.advertisement(mac)

    async def register(self) -> mh.BindingUpdate:
        """The MS attaches with an RS, probes its address; the fake LMAP says
        141 to the confirmation and 0 to the address."""
        self.rs()
        await self.newMs()
        self.dad()
        pbu = await self.lmap.next(mh.BindingUpdate)
        self.assertEqual(pbu.option(mh.LocalAddress), mh.LocalAddress(MS_ADDRESS, 64))
        self.lmap.send(mh.ProxyBindingAck(0, pbu.sequence, pbu.lifetime,
                                          [mh.LocalAddress(MS_ADDRESS, 64)]))
        await waitForDeferred(lambda: self.dataPlane.bindings(), what="the tunnel")
        return pbu  # type: ignore[no-any-return]

    def visitors(self) -> list[dict[str, str]]:
        return self.ask("visitors")["visitors"]  # type: ignore[no-any-return]

    def counters(self) -> dict[str, int]:
        return self.ask("counters")["counters"]  # type: ignore[no-any-return]


class PacketDetectorTests(MPAServiceTestsMixin, TestCase):
    async def test_attachAdvertiseRegister(self) -> None:
        self.startMPA()
        # The access interface is set up for home-link emulation.
        for key in ("accept_ra", "autoconf", "accept_redirects"):
            value = self.within(lambda key=key: open(
                f"/proc/sys/net/ipv6/conf/{self.access}/{key}").read().strip())
            self.assertEqual(value, "0", key)
        self.rs()
        confirm = await self.lmap.next(mh.BindingUpdate)
        self.assertTrue(confirm.proxy)
        self.assertEqual(confirm.option(mh.MobileNodeIdentifier), mh.MobileNodeIdentifier(NAI))
        # The RS waits for the LMAP's answer (RFC 5213 6.9.1.1).
        self.assertEqual(self.station.advertisementsTo(MS_MAC), [])
        self.lmap.send(mh.ProxyBindingAck(141, confirm.sequence, 0))
        ra = await self.advertisement()
        # Unicast to the MS's MAC and link-local address, from the virtual LMAP.
        assert ra.ip is not None and isinstance(ra.message, nd.RouterAdvertisement)
        self.assertEqual((ra.ethernet.source, ra.ip.source, ra.ip.destination),
                         (VMAC, VLL, MS_LL))
        self.assertEqual(ra.message.prefixes,
                         (nd.PrefixInformation("2001:db8:4d::", 64, onLink=False,
                                               autonomous=True),))
        self.assertEqual(ra.message.mtu, 1460)
        await waitForDeferred(lambda: self.visitors()[0]["state"] == "awaiting-address")
        self.dad()
        pbu = await self.lmap.next(mh.BindingUpdate)
        self.lmap.send(mh.ProxyBindingAck(0, pbu.sequence, pbu.lifetime,
                                          [mh.LocalAddress(MS_ADDRESS, 64)]))
        bindings = await waitForDeferred(lambda: self.dataPlane.bindings(), what="the tunnel")
        self.assertEqual([(b.mobileAddress, b.remoteEndpoint, b.accessInterface)
                          for b in bindings], [(MS_ADDRESS, LMAP, self.access)])
        [visitor] = self.visitors()
        self.assertEqual((visitor["state"], visitor["localAddress"], visitor["nai"]),
                         ("registered", MS_ADDRESS, "ms@lmm.test"))
        # The MS asks for its default router: the virtual LMAP answers.
        self.station.send(nd.buildNeighborSolicitation(MS_MAC, None, MS_LL, None, VLL))
        na = await waitForDeferred(lambda: [
            f for f in self.station.poll() if isinstance(f.message, nd.NeighborAdvertisement)])
        self.assertEqual(na[0].ethernet.source, VMAC)
        counters = self.counters()
        self.assertEqual(counters["aaa.accepted"], 1)
        self.assertEqual(counters["pba.accepted"], 1)

    async def test_rejectedGetsNothing(self) -> None:
        self.startMPA()
        self.rs(STRANGER_MAC)
        await waitForDeferred(lambda: self.counters().get("aaa.rejected"))
        self.rs(STRANGER_MAC)
        self.dad(nd.addressFromMac("2001:db8:4d::", STRANGER_MAC), STRANGER_MAC)
        await waitForDeferred(lambda: self.counters().get("frame.rejected", 0) >= 2)
        self.assertEqual(self.station.advertisementsTo(STRANGER_MAC), [])
        self.assertEqual(self.lmap.poll(), [])
        [visitor] = self.visitors()
        self.assertEqual(visitor["state"], "rejected")
        self.assertIn("no profile", visitor["failure"])

    async def test_linkDownDeregisters(self) -> None:
        self.startMPA()
        await self.register()
        self.peerNs.ip("link", "set", self.peerAccess, "down")  # the MPA's end loses carrier
        dereg = await self.lmap.next(mh.BindingUpdate)
        self.assertEqual(dereg.lifetime, 0)
        self.assertEqual(dereg.option(mh.LocalAddress), mh.LocalAddress(MS_ADDRESS, 64))
        self.assertEqual(self.dataPlane.bindings(), [])
        # Out of the list; the listing shows it until the LMAP answers.
        self.assertEqual([v["state"] for v in self.visitors()], ["deregistering"])
        self.lmap.send(mh.ProxyBindingAck(0, dereg.sequence, 0))
        await waitForDeferred(lambda: not self.visitors())
        self.assertEqual(self.ask("links")["links"][0]["state"], "down")
        self.peerNs.ip("link", "set", self.peerAccess, "up")
        await waitForDeferred(lambda: self.ask("links")["links"][0]["state"] == "up")
        self.assertEqual(self.counters()["access.link-down"], 1)

    async def test_interfaceComesAndGoes(self) -> None:
        """An access interface that is not there at start is waited for; one
        that leaves the namespace is a link down."""
        self.startMPA(["late0"])
        self.assertEqual(self.ask("links")["links"][0]["state"], "absent")
        self.mpaNs.ip("link", "add", "late0", "type", "veth", "peer", "name", "late1",
                      "netns", self.peerNs.name)
        self.mpaNs.ip("link", "set", "late0", "up")
        self.peerNs.ip("link", "set", "late1", "up")
        await waitForDeferred(lambda: self.ask("links")["links"][0]["state"] == "up")
        self.assertEqual(self.ask("links")["links"][0]["socket"], "open")
        late = Station(self.socketIn(self.peerNs, socket.AF_PACKET, socket.SOCK_RAW, 0), "late1")
        late.send(nd.buildRouterSolicitation(MS_MAC, MS_LL))
        # Its frame was read on late0: the MS is registering.
        await self.lmap.next(mh.BindingUpdate)
        await waitForDeferred(lambda: self.visitors()[0]["interface"] == "late0")
        self.mpaNs.ip("link", "set", "late0", "netns", self.peerNs.name)
        await waitForDeferred(lambda: self.ask("links")["links"][0]["state"] == "absent")
        # The visitor was registering (a PBU in flight): it leaves with a deregistration.
        await waitForDeferred(lambda: not self.visitors())
        self.assertEqual(self.counters()["link.down"], 1)

    async def test_tunnelRefused(self) -> None:
        """The data plane cannot carry the MS's tunnel: the MPA lets the LMAP's
        binding go (deregistration), sends the MS no RA, and holds its MAC down."""
        plane = self.dataPlane = RefusingPlane("failed")
        plane.refused.add(LMAP)
        self.startMPA()
        self.rs()
        await self.newMs()
        self.dad()
        pbu = await self.lmap.next(mh.BindingUpdate)
        self.station.frames.clear()
        self.lmap.send(mh.ProxyBindingAck(0, pbu.sequence, pbu.lifetime,
                                          [mh.LocalAddress(MS_ADDRESS, 64)]))
        dereg = await self.lmap.next(mh.BindingUpdate)
        self.assertEqual(dereg.lifetime, 0)
        self.assertEqual(dereg.option(mh.LocalAddress), mh.LocalAddress(MS_ADDRESS, 64))
        # The listing shows the deregistration in flight and the held-down MAC.
        states = {v["state"]: v for v in self.visitors()}
        self.assertEqual(sorted(states), ["deregistering", "rejected"])
        self.assertIn("cannot reach", states["rejected"]["failure"])
        self.assertEqual(self.counters()["visitor.tunnel-failed"], 1)
        self.assertEqual(plane.bindings(), [])
        # Its RS meanwhile gets nothing.
        self.rs()
        await waitForDeferred(lambda: self.counters().get("frame.rejected"))
        self.assertEqual(self.station.advertisementsTo(MS_MAC), [])

    async def test_revocation(self) -> None:
        self.startMPA()
        await self.register()
        self.lmap.send(mh.BindingRevocationIndication(
            7, mh.RevocationTrigger.INTER_MAG_HANDOVER_UNKNOWN,
            (mh.MobileNodeIdentifier(NAI),), proxy=True))
        bra = await self.lmap.next(mh.BindingRevocationAck)
        self.assertEqual((bra.sequence, bra.status), (7, mh.RevocationStatus.SUCCESS))
        self.assertEqual(self.visitors(), [])
        self.assertEqual(self.dataPlane.bindings(), [])

    async def test_badInputCountedNotFatal(self) -> None:
        self.startMPA()
        ack = mh.encode(mh.ProxyBindingAck(0, 1, 60))
        self.lmap.send(ack[:1] + b"\x09" + ack[2:])  # Header Len past the end
        good = nd.buildRouterSolicitation(MS_MAC, MS_LL)
        self.station.send(good[:60])     # IPv6 Payload Length past the frame's end
        await waitForDeferred(lambda: self.counters().get("frame-error.truncated"))
        await waitForDeferred(lambda: any(k.startswith("malformed.") for k in self.counters()))
        await self.register()            # and the MPA goes on

    async def test_control(self) -> None:
        self.startMPA()
        self.assertEqual(self.ask("frobnicate")["error"], "unknown command 'frobnicate'; try help")
        self.assertIn("usage", self.ask("attach")["error"])
        self.assertIn("not an access interface", self.ask(f"attach eth9 {MS_MAC}")["error"])
        self.assertIn("MAC address", self.ask(f"attach {self.access} 02:zz")["error"])
        self.assertIn("visitors", self.ask("help")["commands"])
        # With the packet detector an explicit report works too.
        self.assertTrue(self.ask(f"attach {self.access} {MS_MAC}")["ok"])
        ra = await self.newMs()
        assert ra.ip is not None
        self.assertEqual(ra.ip.destination, nd.ALL_NODES)  # no link-local address known yet
        self.assertTrue(self.ask(f"detach {self.access} {MS_MAC}")["ok"])
        await waitForDeferred(lambda: not self.visitors())

    async def test_tunnelSwapWithOptions(self) -> None:
        """C{tunnel userspace priority=900 ...}: the visitor's tunnel moves to the
        userspace backend built in the MPA's namespace with those options; the
        answer says a restart does not keep it."""
        if not os.path.exists("/dev/net/tun"):
            raise SkipTest("no /dev/net/tun: the userspace backend cannot run")
        self.startMPA()
        await self.register()
        self.assertIn("usage", self.ask("tunnel")["error"])
        refused = execute(self.service, ["tunnel", "userspace", "priority=1"])
        assert isinstance(refused, Deferred)
        self.assertIn("tunnel.options.priority", str(self.failureResultOf(refused).value))
        self.assertIs(self.service.dataPlane.current, self.dataPlane)
        swapped = execute(self.service, ["tunnel", "userspace", "priority=900",
                                         'interface="lmmswap1"'])
        assert isinstance(swapped, Deferred)
        answer = await swapped
        self.assertEqual({k: answer[k] for k in ("backend", "moved", "options", "persistent")},
                         {"backend": "userspace", "moved": 1, "persistent": False,
                          "options": {"priority": 900, "interface": "lmmswap1"}})
        self.assertIn('set tunnel.backend = "userspace"', answer["hint"])
        rules = self.mpaNs.ip("-6", "rule", "show")
        self.assertIn(f"900:\tfrom {MS_ADDRESS} iif {self.access}", rules)
        self.assertIn("lmmswap1", self.mpaNs.ip("link", "show", "lmmswap1"))
        self.assertEqual(self.dataPlane.bindings(), [])  # the recording one gave it up

    async def test_controlSocket(self) -> None:
        self.startMPA()
        self.assertEqual(os.stat(self.controlPath).st_mode & 0o777, 0o600)
        answer = await deferToThread(ask, self.controlPath, "visitors")
        self.assertEqual((answer["ok"], answer["visitors"]), (True, []))
        answer = await deferToThread(ask, self.controlPath, "x" * 5000)
        self.assertEqual(answer, {"ok": False, "error": "line too long"})
        answer = await deferToThread(ask, self.controlPath, "attach")
        self.assertIn("usage", answer["error"])
        self.rs()
        await self.lmap.next(mh.BindingUpdate)
        # The command-line client prints tables.
        env = dict(os.environ, PYTHONPATH=TOP)
        out = await getProcessOutput(sys.executable, ["-m", "lmm.mpa.control", self.controlPath,
                                                      "visitors"], env)
        lines = out.decode().splitlines()
        self.assertEqual(lines[0].split()[:4], ["MAC", "IF", "NAI", "STATE"])
        self.assertEqual(lines[1].split()[:4], [MS_MAC, self.access, "ms@lmm.test",
                                                "registering"])
        self.assertEqual(lines[-1], "Total number of visitors: 1")
        out = await getProcessOutput(sys.executable, ["-m", "lmm.mpa.control", self.controlPath,
                                                      "links"], env)
        self.assertIn(self.access, out.decode())


class AllFramesTests(MPAServiceTestsMixin, TestCase):
    detectorOptions = {"protocol": ETH_P_ALL, "promiscuous": False,
                       "configureInterfaces": False}

    async def test_outgoingIgnored(self) -> None:
        self.startMPA()
        await self.register()
        # A frame leaving the MPA's access interface (sent by anyone there but
        # the detector's own socket, which never sees its own) is no attach.
        out = self.socketIn(self.mpaNs, socket.AF_PACKET, socket.SOCK_RAW, 0)
        out.bind((self.access, ETH_P_ALL))
        out.send(nd.buildRouterSolicitation(STRANGER_MAC, nd.linkLocalFromMac(STRANGER_MAC)))
        await waitForDeferred(lambda: self.counters().get("access.outgoing-ignored"))
        self.assertEqual([v["mac"] for v in self.visitors()], [MS_MAC])
        self.assertEqual(self.visitors()[0]["state"], "registered")


class ExplicitDetectorTests(MPAServiceTestsMixin, TestCase):
    detectorClass = ExplicitAttachDetector

    async def test_onlyReportsAttach(self) -> None:
        self.startMPA()
        self.rs()
        await waitForDeferred(lambda: self.counters().get("frame.unattached"))
        self.assertEqual(self.visitors(), [])
        self.assertEqual(self.station.advertisementsTo(MS_MAC), [])
        self.assertTrue(self.ask(f"attach {self.access} {MS_MAC} ms@lmm.test")["ok"])
        await self.newMs()
        [visitor] = self.visitors()
        self.assertEqual(visitor["nai"], "ms@lmm.test")
        # Now its frames count: its RS is answered.
        self.station.frames.clear()
        self.rs()
        ra = await self.advertisement()
        assert ra.ip is not None
        self.assertEqual(ra.ip.destination, MS_LL)
        self.assertEqual(self.counters()["explicit.attach"], 1)


@implementer(IAuthenticator)
class _Authenticator:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def authenticate(self, request: AccessRequest) -> Deferred[Any]:
        self.log.append(f"auth {request.mac}")
        return Deferred()

    def stop(self) -> None:
        pass


class PerformTests(SynchronousTestCase):
    """L{MPAService.perform}: the shared action loop (L{lmm.service.ActionPerformer})
    with the MPA's own kinds, on a service that is not started."""

    def makeService(self, how: str) -> MPAService:
        agent = MobilityProxyAgent(
            address=MPA, defaultLmap=LMAP, accessInterfaces=["eth1"], interfaceMacs={},
            lifetime=600, retransmitTimeout=0.3, maxRetries=2, raMtu=1460, profile=mh.DRAFT,
            defaultVirtualLmapMac=VMAC, refreshFraction=0.75)
        self.order: list[str] = []
        detector = ExplicitAttachDetector(cast(Any, Clock()))  # never started: no descriptors
        self.plane = RefusingPlane(how)
        self.plane.refused.add(LMAP)
        service = MPAService(agent, detector, _Authenticator(self.order), self.plane, mh.DRAFT,
                             Clock())
        service.send = self.send  # type: ignore[method-assign]
        detector.sendFrame = self.sendFrame  # type: ignore[method-assign]
        return service

    def send(self, message: mh.MobilityMessage, destination: str) -> None:
        self.order.append(f"send {destination}")

    def sendFrame(self, interface: str, frame: bytes) -> bool:
        self.order.append(f"frame {interface}")
        return True

    def actions(self) -> list[object]:
        binding = TunnelBinding(MS_ADDRESS, 128, MPA, LMAP, ROLE_MPA, "eth1")
        return [Authenticate(AccessRequest(STRANGER_MAC, "eth1")), AddTunnel(binding),
                SendFrame("eth1", b"ra"), Authenticate(AccessRequest(MS_MAC, "eth1")),
                SendMessage(mh.ProxyBindingAck(0, 1, 60), LMAP), RemoveTunnel(binding),
                Note("test.note", {})]

    def test_heldBack(self) -> None:
        """What follows a pending tunnel waits for it; authentications start after
        the part of the list that ran."""
        service = self.makeService("later")
        service.perform(self.actions())
        self.assertEqual(self.order, [f"auth {STRANGER_MAC}"])
        self.plane.waiting.pop()[0].callback(None)
        self.assertEqual(self.order, [f"auth {STRANGER_MAC}", "frame eth1", f"send {LMAP}",
                                      f"auth {MS_MAC}"])
        self.assertEqual(self.plane.bindings(), [])  # added, then removed

    def test_failedLater(self) -> None:
        """A tunnel that fails: counted, given to the agent, what waited for it
        dropped (no visitor has this tunnel here: the agent finds it stale)."""
        service = self.makeService("later")
        service.perform(self.actions())
        self.plane.waiting.pop()[0].errback(DataPlaneError("gave up"))
        self.assertEqual(self.order, [f"auth {STRANGER_MAC}"])
        self.assertEqual(service.counters["tunnel.add-failed"], 1)
        self.assertEqual(service.agent.counters["tunnel.failed.stale"], 1)

    def test_addBindingRaises(self) -> None:
        """A backend that raises is taken as one whose Deferred failed (as at the LMAP)."""
        service = self.makeService("raise")
        service.perform(self.actions())
        self.assertEqual(self.order, [f"auth {STRANGER_MAC}"])
        self.assertEqual(service.counters["tunnel.add-failed"], 1)
        self.assertEqual(service.agent.counters["tunnel.failed.stale"], 1)


    def performFailing(self, failing: str) -> MPAService:
        """A service whose C{failing} kind of action raises, given each of its
        own kinds (and a send) twice."""
        from lmm.mpa.relay import SendToServer

        service = self.makeService("failed")
        self.plane.refused.clear()
        order = self.order

        class RelayPort:
            counters: dict[str, int] = {}

            def sendToServer(self, server: str, payload: bytes) -> None:
                if failing == "SendToServer":
                    raise RuntimeError("the relay socket broke")
                order.append(f"relay {server}")

        def sendFrame(interface: str, frame: bytes) -> bool:
            if failing == "SendFrame":
                raise RuntimeError("the access link broke")
            order.append(f"frame {interface}")
            return True

        def send(message: mh.MobilityMessage, destination: str) -> None:
            if failing == "SendMessage":
                raise RuntimeError("the port broke")
            order.append(f"send {destination}")

        service.relayPort = cast(Any, RelayPort())
        service.detector.sendFrame = sendFrame  # type: ignore[method-assign]
        service.send = send  # type: ignore[method-assign]
        actions = [SendFrame("eth1", b"ra"), SendToServer("2001:db8::53", b"x"),
                   SendMessage(mh.ProxyBindingAck(0, 1, 60), LMAP),
                   Authenticate(AccessRequest(MS_MAC, "eth1"))]
        service.perform(actions + actions)
        return service

    def test_ownKindsFailing(self) -> None:
        """Issue 13, part 4: a frame, a relayed DHCPv6 message or a send that
        raises is counted and logged; the actions after it are carried out."""
        everything = ["frame eth1", "relay 2001:db8::53", f"send {LMAP}"] * 2 + [
            f"auth {MS_MAC}"] * 2
        prefix = {"SendFrame": "frame", "SendToServer": "relay", "SendMessage": "send"}
        for failing, skipped in prefix.items():
            service = self.performFailing(failing)
            self.assertEqual(self.order, [a for a in everything if not a.startswith(skipped)],
                             failing)
            self.assertEqual(service.counters[f"action.failed.{failing}"], 2, failing)
            self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1, failing)


class NetlinkTests(NetnsTestMixin, SynchronousTestCase):
    def test_readLinks(self) -> None:
        ns = self.makeNamespace("nl")
        a, _ = link(ns, self.makeNamespace("nl"), None, None)
        links = readLinks(lambda f: callIn(ns, f))
        self.assertEqual(sorted(links), sorted(["lo", a]))
        self.assertTrue(links[a].up)
        self.assertEqual(links[a].mac, ns.ip("-br", "link", "show", a).split()[2])

    def test_parseGarbage(self) -> None:
        self.assertEqual(parseLinkMessages(b""), [])
        self.assertEqual(parseLinkMessages(b"\x10\x00\x00\x00" + bytes(8)), [])
        # A header claiming more than there is stops the walk.
        self.assertEqual(parseLinkMessages(b"\xff\x00\x00\x00" + bytes(12)), [])


class ConfigTests(SynchronousTestCase):
    """Bad backend tables stop twistd lmm-mpa with one line naming the file and key."""

    def run_(self, text: str) -> subprocess.CompletedProcess[str]:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            # recording: the daemon runs in this namespace, and builds its tunnel
            # backend before the tables under test (auto would change this host).
            f.write('[mpa]\naddress = "2001:db8::2"\nlmap = "2001:db8::1"\n'
                    'access_interfaces = ["eth9"]\n' + text
                    + '\n[tunnel]\nbackend = "recording"\n')
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        result = subprocess.run([twistd, "-n", "--pidfile=", "lmm-mpa", "--config", path],
                                capture_output=True, text=True, timeout=60, cwd=TOP,
                                env=dict(os.environ, PYTHONPATH=TOP))
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn(path, result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        return result

    def test_aaaOptions(self) -> None:
        result = self.run_("[aaa]\nbackend = \"file\"\n")
        self.assertIn("key 'aaa.options.path'", result.stderr)
        result = self.run_('[aaa]\nbackend = "radius"\n[aaa.options]\nservers = []\n')
        self.assertIn("key 'aaa.options.servers'", result.stderr)

    def test_attachBackend(self) -> None:
        result = self.run_('[attach]\nbackend = "telepathy"\n')
        self.assertIn("key 'attach.backend'", result.stderr)
        self.assertIn("explicit", result.stderr)
        result = self.run_('[attach]\nbackend = "explicit"\n')
        self.assertIn("key 'control.socket'", result.stderr)
        result = self.run_('[aaa.options]\npath = "etc/profiles.toml"\n'
                           '[attach.options]\nprotocol = "ipx"\n')
        self.assertIn("key 'attach.options.protocol'", result.stderr)

    def test_virtualMac(self) -> None:
        result = self.run_('virtual_lmap_mac = "03:00:5e:00:53:01"\n')
        self.assertIn("group address", result.stderr)
