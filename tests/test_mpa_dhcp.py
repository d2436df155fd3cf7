"""
The MPA's DHCPv6 relay (issue 5): the agent's rules for it, without I/O; then
the service in this process with a real Kea DHCPv6 server.

    MPA namespace:   the MPA's access link (to the peer) and backbone (to core)
    peer namespace:  the Mobile Station's frames, injected and read (AF_PACKET)
    core namespace:  a fake LMAP (raw Mobility Header socket), Kea, a fake
                     DHCPv6 server (a UDP socket) that answers what a test says,
                     and an address nobody answers on
    MS namespace:    (DhclientTests) an unmodified ISC dhclient -6

The client messages are built with L{lmm.dhcp6} as a host's client sends them
(tests.test_kea.Visitor), to ff02::1:2 from the MS's link-local address.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, cast

from twisted.internet import reactor as _reactor
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from lmm import dhcp6, mh, nd
from lmm.aaa import Profile, ProfileFileAuthenticator
from lmm.actions import Note, RemoveTunnel, SendMessage
from lmm.dhcp6 import IANA, ClientId, IAAddress, Message, MessageType, ServerId
from lmm.lab import kea
from lmm.lab.netns import callIn, link, waitForDeferred
from lmm.mpa.agent import MobilityProxyAgent
from lmm.mpa.attach import PacketAttachDetector
from lmm.mpa.control import CommandError, execute
from lmm.mpa.dhcprelay import DHCPv6RelayPort
from lmm.mpa.homelink import clientFrame
from lmm.mpa.relay import RelayAgent, SendToServer
from lmm.mpa.service import MPAService, composeMPA
from lmm.mpa.visitor import AttachEvent, DetachEvent, VisitorState
from lmm.testing.mixins import NetnsTestMixin
from lmm.tunnel import RecordingDataPlane
from tests.test_kea import Visitor
from tests.test_mpa_service import LMAP, MPA, TOP, FakeLMAP, Station, receiveAll

# MPA and LMAP are tests.test_mpa_service's (its FakeLMAP uses them).
KEA = "fd00:4d50::53"
FAKE = "fd00:4d50::54"     # the fake DHCPv6 server
NOBODY = "fd00:4d50::55"   # a server that never answers
VMAC = "02:00:5e:00:53:01"
VLL = nd.linkLocalFromMac(VMAC)
LNP = IPv6Network("2001:db8:4d::/64")
POOL = ("2001:db8:4d::1000", "2001:db8:4d::1fff")
OUTSIDE = "2001:db8:99::1000"
MS_MAC = "02:4c:4d:00:0d:01"        # dhcpv6 profile, the default server (Kea)
FAKE_MAC = "02:4c:4d:00:0d:02"      # dhcpv6 profile, server FAKE
SILENT_MAC = "02:4c:4d:00:0d:03"    # dhcpv6 profile, server NOBODY
SLAAC_MAC = "02:4c:4d:00:0d:04"     # slaac profile, no server of its own
STRANGER_MAC = "02:4c:4d:00:0d:66"  # no profile: rejected
ALL_RELAYS_MAC = "33:33:00:01:00:02"

PROFILES = f"""
[[profile]]
nai = "dhcp@lmm.test"
mac = "{MS_MAC}"
local_network_prefix = "{LNP}"
address_mode = "dhcpv6"

[[profile]]
nai = "fake@lmm.test"
mac = "{FAKE_MAC}"
local_network_prefix = "{LNP}"
address_mode = "dhcpv6"
dhcp_server = "{FAKE}"

[[profile]]
nai = "silent@lmm.test"
mac = "{SILENT_MAC}"
local_network_prefix = "{LNP}"
address_mode = "dhcpv6"
dhcp_server = "{NOBODY}"

[[profile]]
nai = "slaac@lmm.test"
mac = "{SLAAC_MAC}"
local_network_prefix = "{LNP}"
address_mode = "slaac"
"""

# Tests use the reactor's every part; Twisted types it by its common part.
reactor: Any = _reactor


def inPool(address: str) -> bool:
    return IPv6Address(POOL[0]) <= IPv6Address(address) <= IPv6Address(POOL[1])


def clientMessage(mac: str, payload: bytes, destination: str = "ff02::1:2") -> bytes:
    """The frame a host's DHCPv6 client sends: UDP 546 to 547 from its link-local address."""
    source = nd.linkLocalFromMac(mac)
    length = 8 + len(payload)
    header = struct.pack("!HHHH", dhcp6.CLIENT_PORT, dhcp6.SERVER_PORT, length, 0)
    checksum = nd.checksum(source, destination, nd.IPPROTO_UDP, header + payload) or 0xFFFF
    ip = nd.IPv6Header(source, destination, nd.IPPROTO_UDP, 1, length).encode()
    destinationMac = ALL_RELAYS_MAC if destination == "ff02::1:2" else VMAC
    return (nd.EthernetHeader(destinationMac, mac).encode() + ip
            + struct.pack("!HHHH", dhcp6.CLIENT_PORT, dhcp6.SERVER_PORT, length, checksum)
            + payload)


def udpChecksumValid(frame: nd.Frame) -> bool:
    assert frame.ip is not None and frame.udp is not None
    data = frame.payload[:frame.udp.length]
    zeroed = data[:6] + b"\x00\x00" + data[8:]
    expected = nd.checksum(frame.ip.source, frame.ip.destination, nd.IPPROTO_UDP, zeroed)
    return frame.udp.checksum == (expected or 0xFFFF)


# --- the agent, pure -----------------------------------------------------------------

T0 = 1000.0
IFACE = "acc0"


def makeAgent(**kwargs: Any) -> MobilityProxyAgent:
    settings: dict[str, Any] = dict(
        address=MPA, defaultLmap=LMAP, accessInterfaces=[IFACE], interfaceMacs={},
        lifetime=3600, retransmitTimeout=1.0, maxRetries=3, raMtu=1460, profile=mh.DRAFT,
        defaultVirtualLmapMac=VMAC, refreshFraction=0.75)
    settings.update(kwargs)
    return MobilityProxyAgent(**settings)


def solicitFrame(mac: str = MS_MAC, destination: str = "ff02::1:2") -> nd.Frame:
    payload = Visitor(mac, nd.linkLocalFromMac(mac), LNP).message(MessageType.SOLICIT)
    return nd.decodeFrame(clientMessage(mac, payload, destination))


class AgentTests(SynchronousTestCase):
    """The agent's DHCPv6 inputs and outputs, with no I/O."""

    def authenticated(self, agent: MobilityProxyAgent, **profile: Any) -> list[Any]:
        agent.attach(AttachEvent(IFACE, MS_MAC), T0)
        fields: dict[str, Any] = {"localNetworkPrefix": LNP, "addressMode": "dhcpv6"}
        fields.update(profile)
        return agent.authenticated(MS_MAC, Profile(b"ms@lmm.test", **fields), T0)

    def registered(self, agent: MobilityProxyAgent, address: str) -> None:
        """Through the relay: the LMAP had no binding, DHCPv6 gave C{address}."""
        [bcc] = [a.message for a in self.authenticated(agent) if isinstance(a, SendMessage)]
        assert isinstance(bcc, mh.BindingUpdate)
        agent.messageReceived(mh.ProxyBindingAck(141, bcc.sequence, 0), LMAP, T0)
        [pbu] = [a.message for a in agent.dhcpAddressAssigned(MS_MAC, address, T0 + 1)
                 if isinstance(a, SendMessage)]
        assert isinstance(pbu, mh.BindingUpdate)
        agent.messageReceived(mh.ProxyBindingAck(0, pbu.sequence, 3600,
                                                 [mh.LocalAddress(address, 64)]), LMAP, T0 + 1)
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIs(visitor.state, VisitorState.REGISTERED)

    def test_relayedWithServerAndPrefix(self) -> None:
        relay = RelayAgent()
        agent = makeAgent(defaultDhcpServer="2001:DB8::53", relay=relay)
        self.authenticated(agent)
        frame = solicitFrame()
        [action] = agent.frameReceived(IFACE, frame, T0 + 1)
        # The relay core's Relay-Forward: the MS's message, its link-local
        # address, its LNP, the Interface-ID naming it; to the default server.
        assert isinstance(action, SendToServer)
        forward = dhcp6.decode(action.payload)
        assert isinstance(forward, dhcp6.RelayMessage)
        self.assertEqual((action.server, forward.peerAddress, forward.linkAddress,
                          forward.relayed, forward.interfaceId),
                         ("2001:db8::53", nd.linkLocalFromMac(MS_MAC), str(LNP.network_address),
                          frame.udpPayload, relay.interfaceIdOf(MS_MAC)))
        self.assertEqual(relay.describe()[0]["interface"], IFACE)
        self.assertEqual(agent.counters["dhcpv6.relayed"], 1)
        # The profile's server comes first.
        agent = makeAgent(defaultDhcpServer="2001:db8::53", relay=RelayAgent())
        self.authenticated(agent, dhcpServer="2001:db8::99")
        [action] = agent.frameReceived(IFACE, solicitFrame(), T0 + 1)
        assert isinstance(action, SendToServer)
        self.assertEqual(action.server, "2001:db8::99")

    def test_notRelayed(self) -> None:
        agent = makeAgent()
        # Being authenticated: not yet (the client retransmits).
        agent.attach(AttachEvent(IFACE, MS_MAC), T0)
        self.assertEqual(agent.frameReceived(IFACE, solicitFrame(), T0), [])
        self.assertEqual(agent.counters["dhcpv6.unauthenticated"], 1)
        agent.authenticated(MS_MAC, Profile(b"ms@lmm.test", localNetworkPrefix=LNP), T0)
        # No server anywhere.
        self.assertEqual(agent.frameReceived(IFACE, solicitFrame(), T0), [])
        self.assertEqual(agent.counters["dhcpv6.no-server"], 1)
        # Unicast to a server: the data plane's.
        agent.defaultDhcpServer = "2001:db8::53"
        self.assertEqual(agent.frameReceived(IFACE, solicitFrame(destination="2001:db8::53"),
                                             T0), [])
        self.assertEqual(agent.counters["dhcpv6.not-to-relays"], 1)
        # Rejected: nothing.
        agent.attach(AttachEvent(IFACE, STRANGER_MAC), T0)
        agent.authenticationFailed(STRANGER_MAC, Exception("no"), T0)
        self.assertEqual(agent.frameReceived(IFACE, solicitFrame(STRANGER_MAC), T0), [])
        self.assertEqual(agent.counters["dhcpv6.relayed"], 0)

    def test_releaseDeregistersAndWaits(self) -> None:
        agent = makeAgent()
        address = "2001:db8:4d::1234"
        self.registered(agent, address)
        actions = agent.dhcpAddressReleased(MS_MAC, address, T0 + 5)
        [dereg] = [a for a in actions if isinstance(a, SendMessage)]
        assert isinstance(dereg.message, mh.BindingUpdate)
        self.assertEqual(dereg.message.lifetime, 0)
        self.assertEqual(dereg.message.option(mh.LocalAddress), mh.LocalAddress(address, 64))
        self.assertEqual([a.binding.mobileAddress for a in actions if isinstance(a, RemoveTunnel)],
                         [address])
        self.assertEqual([a.event for a in actions if isinstance(a, Note)], ["address.released"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertEqual((visitor.state, visitor.localAddress, visitor.tunnel),
                         (VisitorState.AWAITING_ADDRESS, None, None))
        self.assertEqual(agent.visitors.byAddress(address), None)
        # Listed twice: the visitor, and its deregistration in flight.
        self.assertEqual([e["state"] for e in agent.describe()],
                         ["awaiting-address", "deregistering"])
        # The deregistration is retransmitted until answered...
        self.assertEqual(agent.nextDeadline(), T0 + 6)
        [again] = [a for a in agent.tick(T0 + 6) if isinstance(a, SendMessage)]
        assert isinstance(again.message, mh.BindingUpdate)
        self.assertEqual(again.message.lifetime, 0)
        # ...and cancelled by a new address's registration.
        actions = agent.dhcpAddressAssigned(MS_MAC, "2001:db8:4d::5678", T0 + 7)
        [pbu] = [a for a in actions if isinstance(a, SendMessage)]
        assert isinstance(pbu.message, mh.BindingUpdate)
        self.assertEqual(pbu.message.lifetime, 3600)
        self.assertEqual(agent.counters["deregistration.cancelled"], 1)
        self.assertEqual([e["state"] for e in agent.describe()], ["registering"])
        agent.messageReceived(mh.ProxyBindingAck(0, pbu.message.sequence, 3600,
                                                 [mh.LocalAddress("2001:db8:4d::5678", 64)]),
                              LMAP, T0 + 7)
        self.assertEqual(agent.visitors.byMac(MS_MAC).state,  # type: ignore[union-attr]
                         VisitorState.REGISTERED)

    def test_releaseAnswered(self) -> None:
        agent = makeAgent()
        self.registered(agent, "2001:db8:4d::1234")
        [dereg] = [a.message for a in
                   agent.dhcpAddressReleased(MS_MAC, "2001:db8:4d::1234", T0 + 5)
                   if isinstance(a, SendMessage)]
        assert isinstance(dereg, mh.BindingUpdate)
        agent.messageReceived(mh.ProxyBindingAck(0, dereg.sequence, 0), LMAP, T0 + 5)
        self.assertEqual([e["state"] for e in agent.describe()], ["awaiting-address"])
        self.assertEqual(agent.counters["pba.deregistration"], 1)
        self.assertIsNone(agent.nextDeadline())

    def test_releaseOfAnotherAddress(self) -> None:
        agent = makeAgent()
        self.registered(agent, "2001:db8:4d::1234")
        self.assertEqual(agent.dhcpAddressReleased(MS_MAC, "2001:db8:4d::9", T0 + 5), [])
        self.assertEqual(agent.dhcpAddressReleased(MS_MAC, "bogus", T0 + 5), [])
        self.assertEqual(agent.dhcpAddressReleased(STRANGER_MAC, "2001:db8:4d::9", T0 + 5), [])
        self.assertEqual((agent.counters["dhcpv6.released-other"],
                          agent.counters["dhcpv6.bad-address"],
                          agent.counters["dhcpv6.no-visitor"]), (1, 1, 1))

    def test_releaseWhileAwaiting(self) -> None:
        """Nothing registered: nothing to deregister."""
        agent = makeAgent()
        [bcc] = [a.message for a in self.authenticated(agent) if isinstance(a, SendMessage)]
        assert isinstance(bcc, mh.BindingUpdate)
        agent.messageReceived(mh.ProxyBindingAck(141, bcc.sequence, 0), LMAP, T0)
        self.assertEqual(agent.dhcpAddressReleased(MS_MAC, "2001:db8:4d::9", T0 + 1), [])

    def test_otherAddressKeepsBindingUnlessDhcpMode(self) -> None:
        agent = makeAgent()
        agent.attach(AttachEvent(IFACE, MS_MAC), T0)
        agent.authenticated(MS_MAC, Profile(b"ms@lmm.test", localNetworkPrefix=LNP,
                                            localAddress="2001:db8:4d::1"), T0)
        self.assertEqual(agent.dhcpAddressAssigned(MS_MAC, "2001:db8:4d::2", T0), [])
        self.assertEqual(agent.counters["dhcpv6.other-address"], 1)
        # In dhcpv6 mode the server's newest address is the one.
        agent = makeAgent()
        self.registered(agent, "2001:db8:4d::1234")
        actions = agent.dhcpAddressAssigned(MS_MAC, "2001:db8:4d::5678", T0 + 2)
        self.assertEqual(len([a for a in actions if isinstance(a, SendMessage)]), 1)

    def test_departedEveryWay(self) -> None:
        """Every way out of the Visitor List is reported: the relay forgets."""
        relay = RelayAgent()
        # Each return waits for the AAA answer (no reused one), as registered() expects;
        # the detach leaves at once (departing: the agent's DepartingTests).
        agent = makeAgent(relay=relay, defaultDhcpServer="2001:db8::53", reuseAuthorization=0,
                          departureHold=0)
        gone: list[str] = []

        def forget(key: str, forget: Any = relay.forget) -> None:
            gone.append(key)
            forget(key)

        relay.forget = forget  # type: ignore[method-assign, assignment]
        self.registered(agent, "2001:db8:4d::1234")
        agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 2)
        self.assertEqual(gone, [MS_MAC])
        self.registered(agent, "2001:db8:4d::1234")
        agent.messageReceived(mh.BindingRevocationIndication(
            3, 1, (mh.MobileNodeIdentifier(b"ms@lmm.test"),), proxy=True), LMAP, T0 + 3)
        self.assertEqual(gone, [MS_MAC] * 2)
        self.registered(agent, "2001:db8:4d::1234")
        agent.linkDown(IFACE, T0 + 4)
        self.assertEqual(gone, [MS_MAC] * 3)
        self.registered(agent, "2001:db8:4d::1234")
        agent.stop(T0 + 5)
        self.assertEqual(gone, [MS_MAC] * 4)

    def test_clientFrame(self) -> None:
        frame = nd.decodeFrame(clientFrame(VMAC, MS_MAC, VLL, "fe80::1", b"\x07\x00\x00\x01"))
        assert frame.ip is not None and frame.udp is not None
        self.assertEqual((frame.ethernet.source, frame.ethernet.destination), (VMAC, MS_MAC))
        self.assertEqual((frame.ip.source, frame.ip.destination), (VLL, "fe80::1"))
        self.assertEqual((frame.udp.sourcePort, frame.udp.destinationPort), (547, 546))
        self.assertEqual(frame.udpPayload, b"\x07\x00\x00\x01")
        self.assertTrue(udpChecksumValid(frame))
        # scapy agrees with the checksum.
        from scapy.layers.inet6 import UDP
        from scapy.layers.l2 import Ether

        packet = Ether(clientFrame(VMAC, MS_MAC, VLL, "fe80::1", b"\x07\x00\x00\x01"))
        sent = packet[UDP].chksum
        del packet[UDP].chksum
        self.assertEqual(Ether(bytes(packet))[UDP].chksum, sent)


# --- the service with real Kea -------------------------------------------------------------


class FakeServer:
    """A DHCPv6 server on FAKE:547 that answers each Relay-Forward with an
    Advertise offering C{offer}."""

    def __init__(self, sock: socket.socket, offer: str) -> None:
        self.sock = sock
        self.offer = offer
        sock.bind((FAKE, dhcp6.SERVER_PORT))
        sock.setblocking(False)
        self.received: list[dhcp6.RelayMessage] = []

    def answer(self) -> int:
        for data in receiveAll(self.sock):
            forward = dhcp6.decode(data)
            assert isinstance(forward, dhcp6.RelayMessage)
            self.received.append(forward)
            inner = dhcp6.decode(forward.relayed or b"")
            advertise = Message(MessageType.ADVERTISE, inner.transactionId, (  # type: ignore[union-attr]
                ClientId(dhcp6.duidLL(FAKE_MAC)), ServerId(b"\x00\x02fake-duid"),
                IANA(1, 100, 200, (IAAddress(self.offer, 100, 200),))))
            reply = dhcp6.RelayReply(forward.linkAddress, forward.peerAddress,
                                     dhcp6.encode(advertise), forward.interfaceId)
            self.sock.sendto(dhcp6.encode(reply), (MPA, dhcp6.SERVER_PORT))
        return len(self.received)


class DHCPServiceMixin(NetnsTestMixin):
    """The MPA service in this process, Kea and a fake LMAP in the core namespace."""

    def setUp(self) -> None:
        reason = kea.missingReason()
        if reason is not None:
            raise SkipTest(reason)
        self.mpaNs = self.makeNamespace("mpa")
        self.peerNs = self.makeNamespace("peer")
        self.coreNs = self.makeNamespace("core")
        # The peer's kernel keeps quiet on the access link: only injected frames.
        self.peerNs.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        self.access, self.peerAccess = link(self.mpaNs, self.peerNs, None, None)
        _, backbone = link(self.mpaNs, self.coreNs, MPA, LMAP)
        self.coreNs.ipBatch([f"address add {a}/64 dev {backbone} nodad"
                             for a in (KEA, FAKE, NOBODY)])
        self.kea = kea.startFor(self, self.coreNs, backbone, KEA,
                                subnets=[kea.Subnet(str(LNP), "-".join(POOL), 1)])
        folder = tempfile.mkdtemp(prefix="lmm-mpa-dhcp-")
        self.addCleanup(shutil.rmtree, folder, True)
        profiles = os.path.join(folder, "profiles.toml")
        with open(profiles, "w") as f:
            f.write(PROFILES)
        self.authenticator = ProfileFileAuthenticator(profiles)
        self.lmap = FakeLMAP(self.socketIn(self.coreNs, proto=mh.IPPROTO_MH))
        self.station = Station(
            self.socketIn(self.peerNs, socket.AF_PACKET, socket.SOCK_RAW, 0), self.peerAccess)
        self.dataPlane = RecordingDataPlane()
        self.events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def startMPA(self, defaultServer: str | None = KEA, relay: bool = True,
                 interfaces: list[str] | None = None) -> MPAService:
        agent = MobilityProxyAgent(
            address=MPA, defaultLmap=LMAP, accessInterfaces=interfaces or [self.access],
            interfaceMacs={},
            lifetime=600, retransmitTimeout=0.3, maxRetries=2, raMtu=1460, profile=mh.DRAFT,
            defaultVirtualLmapMac=VMAC, refreshFraction=0.75, defaultDhcpServer=defaultServer,
            relay=RelayAgent(answerTimeout=0.3) if relay else None,
        )
        self.relay = agent.relay
        port = DHCPv6RelayPort(MPA, reactor) if relay else None
        service = MPAService(agent, PacketAttachDetector(reactor), self.authenticator,
                             self.dataPlane, mh.DRAFT, reactor, within=self.within,
                             relayPort=port)
        daemon = composeMPA(service, summaryInterval=0)
        daemon.startService()
        self.addCleanup(daemon.stopService)
        self.service = service
        return service

    def within(self, f: Any) -> Any:
        return callIn(self.mpaNs, f)

    def ask(self, command: str) -> dict[str, Any]:
        try:
            answer = execute(self.service, command.split())
            assert isinstance(answer, dict)  # only tunnel answers later
            return answer
        except CommandError as e:
            return {"ok": False, "error": str(e)}

    def counters(self) -> dict[str, int]:
        return self.ask("counters")["counters"]  # type: ignore[no-any-return]

    def visitor(self, mac: str = MS_MAC) -> dict[str, str] | None:
        for entry in self.ask("visitors")["visitors"]:
            if entry["mac"] == mac and entry["state"] != "deregistering":
                return entry  # type: ignore[no-any-return]
        return None

    def answersTo(self, mac: str) -> list[tuple[nd.Frame, Message]]:
        """The DHCPv6 messages the MPA sent to C{mac}."""
        found = []
        for frame in self.station.poll():
            if frame.ethernet.destination == mac and frame.udp is not None \
                    and frame.udp.destinationPort == dhcp6.CLIENT_PORT:
                message = dhcp6.decode(frame.udpPayload or b"")
                assert isinstance(message, Message)
                found.append((frame, message))
        return found

    async def answer(self, client: Visitor, msgType: int, withAddress: bool = False,
                     timeout: float = 3.0) -> Message:
        """Send one client message, wait for the server's answer at the MS."""
        self.station.frames.clear()
        self.station.send(clientMessage(client.mac, client.message(msgType, withAddress)))
        [(frame, message)] = await waitForDeferred(
            lambda: self.answersTo(client.mac), timeout,
            what=f"an answer to {dhcp6.typeName(msgType)}; counters {self.counters()}")
        # From the MS's default router, to its link-local address, checksum right.
        assert frame.ip is not None
        self.assertEqual((frame.ethernet.source, frame.ip.source, frame.ip.destination),
                         (VMAC, VLL, client.linkLocal))
        self.assertTrue(udpChecksumValid(frame))
        self.assertEqual(message.transactionId, client.transactionId)
        return message

    async def attach(self, mac: str = MS_MAC) -> nd.RouterAdvertisement:
        """The MS attaches (RS); the LMAP has no binding for it (141)."""
        self.station.send(nd.buildRouterSolicitation(mac, nd.linkLocalFromMac(mac)))
        confirm = await self.lmap.next(mh.BindingUpdate)
        self.assertIsNotNone(confirm.option(mh.BindingCacheConfirmation))
        self.lmap.send(mh.ProxyBindingAck(141, confirm.sequence, 0))
        # The RA answers the RS once the LMAP answered.
        frames = await waitForDeferred(lambda: self.station.advertisementsTo(mac),
                                       what=f"an RA to {mac}")
        await waitForDeferred(lambda: (self.visitor(mac) or {}).get("state")
                              == "awaiting-address")
        ra = frames[0].message
        assert isinstance(ra, nd.RouterAdvertisement)
        return ra

    async def getAddress(self, client: Visitor) -> str:
        """Solicit, Advertise, Request, Reply; the PBU with that address, PBA 0."""
        advertise = await self.answer(client, MessageType.SOLICIT)
        self.assertEqual(advertise.msgType, MessageType.ADVERTISE)
        ia = advertise.option(IANA)
        assert ia is not None
        [offer] = ia.addresses
        serverId = advertise.option(ServerId)
        assert serverId is not None
        client.serverId, client.address = serverId.duid, offer.address
        reply = await self.answer(client, MessageType.REQUEST, withAddress=True)
        self.assertEqual(reply.msgType, MessageType.REPLY)
        pbu = await self.lmap.next(mh.BindingUpdate)
        self.assertEqual(pbu.option(mh.LocalAddress), mh.LocalAddress(offer.address, 64))
        self.lmap.send(mh.ProxyBindingAck(0, pbu.sequence, pbu.lifetime,
                                          [mh.LocalAddress(offer.address, 64)]))
        await waitForDeferred(lambda: self.dataPlane.bindings(), what="the tunnel")
        return offer.address

    def client(self, mac: str = MS_MAC) -> Visitor:
        return Visitor(mac, nd.linkLocalFromMac(mac), LNP)


class DHCPServiceTests(DHCPServiceMixin, TestCase):
    async def test_solicitToBinding(self) -> None:
        self.startMPA()
        ra = await self.attach()
        # A dhcpv6 profile: M and O set, no autonomous prefix.
        self.assertEqual((ra.managed, ra.other, [p.autonomous for p in ra.prefixes]),
                         (True, True, [False]))
        client = self.client()
        address = await self.getAddress(client)
        self.assertTrue(inPool(address), address)
        visitor = self.visitor()
        assert visitor is not None
        self.assertEqual((visitor["state"], visitor["localAddress"]), ("registered", address))
        self.assertEqual([(b.mobileAddress, b.accessInterface) for b in self.dataPlane.bindings()],
                         [(address, self.access)])
        counters = self.counters()
        for key, value in (("relay.client.solicit", 1), ("relay.client.request", 1),
                           ("relay.server.advertise", 1), ("relay.server.reply", 1),
                           ("relay.address.assigned", 1), ("address.learned.dhcpv6", 1),
                           ("dhcpv6.relayed", 2), ("dhcpv6.to-client", 2),
                           ("relay.sent", 2), ("relay.received", 2)):
            self.assertEqual(counters.get(key), value, key)
        leases = [row for row in self.kea.leases() if row["address"] == address]
        self.assertEqual(leases[-1]["duid"], client.duid.hex(":"))
        # A Renew is answered and changes nothing at the LMAP.
        reply = await self.answer(client, MessageType.RENEW, withAddress=True)
        self.assertEqual(reply.msgType, MessageType.REPLY)
        self.assertEqual(self.lmap.poll(), [])
        self.assertEqual(self.counters()["relay.address.assigned"], 2)

    async def test_relayPortSwapped(self) -> None:
        """The relay's port swapped while a Solicit is relayed (the swap command,
        lmm.live): the server's Advertise still reaches the MS, the Request goes
        out of the new port and its Reply comes back; the old port closes after
        the relay's answer timeout; counters count both ports."""
        self.startMPA()
        await self.attach()
        client = self.client()
        self.station.frames.clear()
        self.station.send(clientMessage(client.mac, client.message(MessageType.SOLICIT)))
        await waitForDeferred(lambda: self.counters().get("relay.sent", 0) >= 1,
                              what="the Solicit relayed")
        old = self.service.relayPort
        assert isinstance(old, DHCPv6RelayPort)
        answer = await maybeDeferred(execute, self.service, ["swap", "dhcp", "udp"])
        self.assertEqual((answer["ok"], answer["previous"], answer["backend"]),
                         (True, "udp", "udp"), answer)
        self.assertIsNot(self.service.relayPort, old)
        [(_, advertise)] = await waitForDeferred(lambda: self.answersTo(client.mac),
                                                 what="the Advertise")
        self.assertEqual(advertise.msgType, MessageType.ADVERTISE)
        ia, serverId = advertise.option(IANA), advertise.option(ServerId)
        assert ia is not None and serverId is not None
        client.serverId, client.address = serverId.duid, ia.addresses[0].address
        reply = await self.answer(client, MessageType.REQUEST, withAddress=True)
        self.assertEqual(reply.msgType, MessageType.REPLY)
        await waitForDeferred(lambda: old.port is None, what="the old port closed")
        counters = self.counters()
        self.assertEqual((counters["relay.sent"], counters["relay.received"]), (2, 2))

    async def test_releaseDeregisters(self) -> None:
        self.startMPA()
        await self.attach()
        client = self.client()
        address = await self.getAddress(client)
        reply = await self.answer(client, MessageType.RELEASE, withAddress=True)
        self.assertEqual(reply.msgType, MessageType.REPLY)
        dereg = await self.lmap.next(mh.BindingUpdate)
        self.assertEqual((dereg.lifetime, dereg.option(mh.LocalAddress)),
                         (0, mh.LocalAddress(address, 64)))
        self.assertEqual(self.dataPlane.bindings(), [])
        self.lmap.send(mh.ProxyBindingAck(0, dereg.sequence, 0))
        await waitForDeferred(lambda: [v["state"] for v in self.ask("visitors")["visitors"]]
                              == ["awaiting-address"])
        self.assertEqual(self.counters()["address.released"], 1)
        # Still authenticated: it asks again and is registered again.
        client.serverId = client.address = None
        again = await self.getAddress(client)
        self.assertTrue(inPool(again))

    async def test_onlyAuthenticatedVisitors(self) -> None:
        self.startMPA()
        self.station.send(nd.buildRouterSolicitation(STRANGER_MAC,
                                                     nd.linkLocalFromMac(STRANGER_MAC)))
        await waitForDeferred(lambda: self.counters().get("aaa.rejected"))
        stranger = self.client(STRANGER_MAC)
        for _ in range(3):
            self.station.send(clientMessage(STRANGER_MAC, stranger.message(MessageType.SOLICIT)))
        await waitForDeferred(lambda: self.counters().get("frame.rejected", 0) >= 3)
        # An authenticated MS's answer comes; the stranger's never does.
        await self.attach()
        await self.answer(self.client(), MessageType.SOLICIT)
        self.assertEqual(self.answersTo(STRANGER_MAC), [])
        counters = self.counters()
        self.assertEqual((counters["relay.client.relayed"], counters["dhcpv6.relayed"]), (1, 1))
        self.assertNotIn(dhcp6.duidLL(STRANGER_MAC).hex(":"), self.kea.log())

    async def test_detachForgets(self) -> None:
        self.startMPA()
        await self.attach()
        client = self.client()
        await self.getAddress(client)
        assert self.relay is not None
        interfaceId = self.relay.interfaceIdOf(MS_MAC)
        assert interfaceId is not None
        self.assertTrue(self.ask(f"detach {self.access} {MS_MAC}")["ok"])
        await self.lmap.next(mh.BindingUpdate)  # the deregistration
        self.assertIsNone(self.relay.interfaceIdOf(MS_MAC))
        self.assertEqual(self.counters()["relay.visitor.forgotten"], 1)
        # A late answer for it, from the right server, finds nobody.
        late = dhcp6.RelayReply(str(LNP.network_address), client.linkLocal,
                                client.message(MessageType.REPLY), interfaceId)
        sock = self.socketIn(self.coreNs, socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind((KEA, 0))
        self.station.poll()
        self.station.frames.clear()
        sock.sendto(dhcp6.encode(late), (MPA, dhcp6.SERVER_PORT))
        await waitForDeferred(lambda: self.counters().get("relay.server.unknown-interface-id"))
        self.assertEqual(self.answersTo(MS_MAC), [])

    async def test_badInputCountedLoggedDropped(self) -> None:
        self.startMPA()
        await self.attach()
        sock = self.socketIn(self.coreNs, socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind((FAKE, 0))
        for _ in range(3):
            sock.sendto(b"\x0d\x00", (MPA, dhcp6.SERVER_PORT))  # a Relay-Reply, truncated
        self.station.send(clientMessage(MS_MAC, b"\x01\x02"))    # a Solicit, truncated
        await waitForDeferred(lambda: self.counters().get("relay.server.malformed.truncated")
                              == 3 and self.counters().get("relay.client.malformed.truncated"))
        # Logged once a second per reason, not once per message.
        warnings = [e for e in self.events if e.get("lmmEvent") == "dhcpv6.dropped"
                    and e.get("log_level") == LogLevel.info]
        self.assertEqual(sorted(e["lmmFields"]["kind"] for e in warnings),
                         ["client.malformed.truncated", "server.malformed.truncated"])
        # An answer for the MS from another address than its server: refused.
        client = self.client()
        await self.answer(client, MessageType.SOLICIT)
        assert self.relay is not None
        interfaceId = self.relay.interfaceIdOf(MS_MAC)
        forged = dhcp6.RelayReply(str(LNP.network_address), client.linkLocal,
                                  client.message(MessageType.REPLY), interfaceId)
        self.station.frames.clear()
        sock.sendto(dhcp6.encode(forged), (MPA, dhcp6.SERVER_PORT))
        await waitForDeferred(lambda: self.counters().get("relay.server.wrong-source"))
        self.assertEqual(self.answersTo(MS_MAC), [])
        self.assertTrue([e for e in self.events if e.get("lmmEvent") == "dhcpv6.wrong-source"])
        # And the relay goes on.
        await self.answer(client, MessageType.SOLICIT)

    async def test_serverNotAnswering(self) -> None:
        self.startMPA()
        await self.attach(SILENT_MAC)
        client = self.client(SILENT_MAC)
        self.station.send(clientMessage(SILENT_MAC, client.message(MessageType.SOLICIT)))
        # The relay's deadline runs on the service's timer.
        await waitForDeferred(lambda: self.counters().get("relay.server.no-answer"), 3)
        [note] = [e for e in self.events if e.get("lmmEvent") == "dhcpv6.no-answer"]
        self.assertEqual((note["lmmFields"]["server"], note["lmmFields"]["request"]),
                         (NOBODY, "solicit"))
        self.assertEqual(self.answersTo(SILENT_MAC), [])
        assert self.relay is not None
        self.assertIsNone(self.relay.nextDeadline())

    async def test_addressOutsideThePrefix(self) -> None:
        fake = FakeServer(self.socketIn(self.coreNs, socket.AF_INET6, socket.SOCK_DGRAM),
                          OUTSIDE)
        self.startMPA()
        await self.attach(FAKE_MAC)
        client = self.client(FAKE_MAC)
        self.station.send(clientMessage(FAKE_MAC, client.message(MessageType.SOLICIT)))
        await waitForDeferred(fake.answer, what="the Relay-Forward at the fake server")
        self.assertEqual(fake.received[0].linkAddress, str(LNP.network_address))
        await waitForDeferred(lambda: self.counters().get("relay.address.outside-prefix"))
        self.assertEqual(self.answersTo(FAKE_MAC), [])
        self.assertEqual(self.counters()["relay.server.refused"], 1)
        self.assertTrue([e for e in self.events
                         if e.get("lmmEvent") == "dhcpv6.address-outside-prefix"])
        self.assertEqual(self.lmap.poll(), [])

    async def test_noServerNoRelay(self) -> None:
        """No default server, a profile naming none: counted, not relayed;
        and an MPA with the relay off relays nothing."""
        self.startMPA(defaultServer=None)
        await self.attach(SLAAC_MAC)
        self.station.send(clientMessage(SLAAC_MAC,
                                        self.client(SLAAC_MAC).message(MessageType.SOLICIT)))
        await waitForDeferred(lambda: self.counters().get("dhcpv6.no-server"))
        self.assertEqual(self.counters().get("relay.client.relayed", 0), 0)

    async def test_relayOff(self) -> None:
        self.startMPA(relay=False)
        await self.attach()
        self.station.send(clientMessage(MS_MAC, self.client().message(MessageType.SOLICIT)))
        await waitForDeferred(lambda: self.counters().get("dhcpv6.relay-off"))
        self.assertFalse(any(k.startswith("relay.") for k in self.counters()))


class AutoLMAP:
    """A fake LMAP that answers by itself: no binding to confirm (141), yes to
    any Local Address, yes to deregistrations."""

    def __init__(self, lmap: FakeLMAP) -> None:
        self.lmap = lmap
        self.loop = LoopingCall(self.answer)
        self.loop.clock = reactor
        self.seen: list[mh.BindingUpdate] = []

    def answer(self) -> None:
        for message in self.lmap.poll():
            if not isinstance(message, mh.BindingUpdate):
                continue
            self.seen.append(message)
            local = message.option(mh.LocalAddress)
            if message.lifetime == 0:
                self.lmap.send(mh.ProxyBindingAck(0, message.sequence, 0))
            elif local is None:
                self.lmap.send(mh.ProxyBindingAck(141, message.sequence, 0))
            else:
                self.lmap.send(mh.ProxyBindingAck(0, message.sequence, message.lifetime, [local]))
        self.lmap.received.clear()


class DhclientTests(DHCPServiceMixin, TestCase):
    """An unmodified ISC dhclient -6 on an MS's link (L{kea.startClient}), the
    service in between."""

    def setUp(self) -> None:
        reason = kea.dhclientMissingReason()
        if reason is not None:
            raise SkipTest(reason)
        super().setUp()
        self.ms = self.makeNamespace("ms")
        self.msAccess, self.msLink = link(self.mpaNs, self.ms, None, None)
        self.directory = Path(tempfile.mkdtemp(prefix="lmm-dhclient-"))
        self.addCleanup(shutil.rmtree, self.directory, True)
        with open(self.authenticator.path, "a") as f:
            f.write(f'\n[[profile]]\nnai = "real@lmm.test"\nmac = "{self.msMac()}"\n'
                    f'local_network_prefix = "{LNP}"\naddress_mode = "dhcpv6"\n')
        self.authenticator = ProfileFileAuthenticator(self.authenticator.path)
        self.auto = AutoLMAP(self.lmap)
        self.auto.loop.start(0.01)
        self.addCleanup(self.stopAuto)

    def stopAuto(self) -> None:
        if self.auto.loop.running:
            self.auto.loop.stop()

    def msMac(self) -> str:
        [info] = json.loads(self.ms.ip("-j", "link", "show", self.msLink))
        return str(info["address"])

    def dhclient(self, *options: str) -> kea.DHCPClient:
        """dhclient -6 with C{options}, its files in the test's directory
        (shared by every client of the test), stopped when the test ends."""
        client = kea.startClient(self.ms, self.msLink, self.directory, options)
        self.addCleanup(client.stop)
        return client

    def explain(self, client: kea.DHCPClient) -> str:
        return (f"counters {self.counters()}\ndhclient:\n{client.output()[-2000:]}\nKea:\n"
                + "\n".join(self.kea.log().splitlines()[-20:]))

    async def test_dhclientGetsAnAddressRegistered(self) -> None:
        self.startMPA(interfaces=[self.msAccess])
        mac = self.msMac()
        client = self.dhclient()
        await waitForDeferred(
            lambda: [e for e in client.events() if e.get("reason") == "BOUND6"]
            or not client.running(), 20, 0.05, what="dhclient bound")
        bound = [e for e in client.events() if e.get("reason") == "BOUND6"]
        self.assertTrue(bound, self.explain(client))
        address = bound[0]["new_ip6_address"]
        self.assertTrue(inPool(address), address)
        visitor = await waitForDeferred(
            lambda: (self.visitor(mac) or {}).get("state") == "registered" and self.visitor(mac),
            5, what="the registration")
        self.assertEqual(visitor["localAddress"], address)  # type: ignore[index]
        self.assertEqual(self.counters()["address.learned.dhcpv6"], 1)
        # dhclient -r: the Release goes through, the binding is deregistered.
        releaser = self.dhclient("-r")
        await waitForDeferred(lambda: not releaser.running()
                              and self.counters().get("address.released"), 15,
                              what=f"the release; {self.explain(releaser)}")
        await waitForDeferred(lambda: [m for m in self.auto.seen
                                       if m.lifetime == 0 and m.option(mh.LocalAddress)
                                       == mh.LocalAddress(address, 64)],
                              what="the deregistration at the LMAP")


class ConfigTests(SynchronousTestCase):
    def test_badServer(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write('[mpa]\naddress = "2001:db8::2"\nlmap = "2001:db8::1"\n'
                    'access_interfaces = ["eth9"]\n[dhcp]\nserver = "fe80::1"\n')
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        result = subprocess.run([twistd, "-n", "--pidfile=", "lmm-mpa", "--config", path],
                                capture_output=True, text=True, timeout=60, cwd=TOP,
                                env=dict(os.environ, PYTHONPATH=TOP))
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("key 'dhcp.server'", result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)

    def test_keys(self) -> None:
        from lmm.mpa import tap

        o = tap.Options()
        o.loadConfig(os.path.join(TOP, "etc", "mpa.toml"))
        values = o.configValues
        self.assertEqual((values["dhcp.enabled"], values["dhcp.server"],
                          values["dhcp.answer_timeout"]), (True, None, 5.0))
