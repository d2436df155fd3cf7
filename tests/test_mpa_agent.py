"""lmm.mpa.agent: the MPA's attach life cycle, home-link emulation and signaling, without I/O."""

from __future__ import annotations

import socket
import struct
from dataclasses import replace
from ipaddress import IPv6Network
from typing import Any, TypeVar

from twisted.trial.unittest import SynchronousTestCase

from lmm import mh, nd
from lmm.aaa import AAAUnavailable, AccessRejected, AccessRequest, Profile, RecentAuthorizations
from lmm.actions import AddTunnel, HoldDownlink, Note, ReleaseDownlink, RemoveTunnel, SendMessage
from lmm.heartbeat import HeartbeatPolicy
from lmm.mpa.agent import (
    DEPARTURE_HOLD,
    INVALID_BACKOFF_DOUBLINGS,
    REJECT_HOLD_DOWN,
    RETRY_INTERVAL,
    UNAVAILABLE_HOLD_DOWN,
    Action,
    Authenticate,
    MobilityProxyAgent,
    SendFrame,
)
from lmm.mpa.visitor import AttachEvent, DetachEvent, VisitorEntry, VisitorState
from lmm.signaling import isNewer
from lmm.tunnel import ROLE_MPA, TunnelBinding

MPA = "2001:db8:a::1"
LMAP = "2001:db8:ffff::1"
LMAP2 = "2001:db8:ffff::2"
STRANGER = "2001:db8:b::66"
IFACE = "acc0"
IFACE2 = "acc1"
IFACE_MAC = "02:00:00:00:0a:00"
IFACE2_MAC = "02:00:00:00:0a:01"
VMAC = "02:00:5e:00:53:01"
VLL = nd.linkLocalFromMac(VMAC)
MS_MAC = "02:11:22:33:44:55"
MS_LL = nd.linkLocalFromMac(MS_MAC)
MS2_MAC = "02:11:22:33:44:66"
LNP = IPv6Network("2001:db8:1::/64")
MS_ADDR = nd.addressFromMac("2001:db8:1::", MS_MAC)
OTHER_ADDR = "2001:db8:1::77"
NAI = b"ms1@lmm.test"
NAI2 = b"ms2@lmm.test"
T0 = 1000.0

A = TypeVar("A")


def makeAgent(**kwargs: Any) -> MobilityProxyAgent:
    settings: dict[str, Any] = {
        "address": MPA,
        "defaultLmap": LMAP,
        "accessInterfaces": [IFACE, IFACE2],
        "interfaceMacs": {IFACE: IFACE_MAC, IFACE2: IFACE2_MAC},
        "lifetime": 3600,
        "retransmitTimeout": 1.0,
        "maxRetries": 3,
        "raMtu": 1460,
        "profile": mh.DRAFT,
        "defaultVirtualLmapMac": VMAC,
        "refreshFraction": 0.75,
        # A detach leaves at once (rule 10's departure: DepartingTests).
        "departureHold": 0.0,
    }
    settings.update(kwargs)
    return MobilityProxyAgent(**settings)


def makeProfile(**kwargs: Any) -> Profile:
    settings: dict[str, Any] = {"nai": NAI, "localNetworkPrefix": LNP}
    settings.update(kwargs)
    return Profile(**settings)


def only(actions: list[Action], kind: type[A]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]


def sentFrames(actions: list[Action]) -> list[tuple[str, nd.Frame]]:
    return [(a.interface, nd.decodeFrame(a.frame)) for a in only(actions, SendFrame)]


def shape(actions: list[Action]) -> list[str]:
    """The actions in order, Notes left out, as short words."""
    words = []
    for a in actions:
        if isinstance(a, SendMessage):
            words.append(f"send {type(a.message).__name__} {a.destination}")
        elif isinstance(a, AddTunnel):
            words.append(f"add {a.binding.mobileAddress} {a.binding.accessInterface}")
        elif isinstance(a, RemoveTunnel):
            words.append(f"remove {a.binding.mobileAddress} {a.binding.accessInterface}")
        elif isinstance(a, SendFrame):
            words.append(f"frame {type(nd.decodeFrame(a.frame).message).__name__} {a.interface}")
        elif isinstance(a, Authenticate):
            words.append(f"authenticate {a.request.mac}")
        elif isinstance(a, HoldDownlink):
            words.append(f"hold {a.binding.mobileAddress}")
        elif isinstance(a, ReleaseDownlink):
            words.append(f"{'hand back' if a.handBack else 'deliver'} {a.binding.mobileAddress}")
    return words


def events(actions: list[Action]) -> list[str]:
    return [a.event for a in only(actions, Note)]


def onlyPbu(
    case: SynchronousTestCase, actions: list[Action], destination: str = LMAP
) -> mh.BindingUpdate:
    messages = only(actions, SendMessage)
    case.assertEqual(len(messages), 1, actions)
    case.assertEqual(messages[0].destination, destination)
    message = messages[0].message
    assert isinstance(message, mh.BindingUpdate)
    return message


def pba(
    sequence: int,
    status: int = 0,
    lifetime: int = 3600,
    address: str | None = None,
    prefixLength: int = 64,
    options: tuple[mh.MobilityOption, ...] = (),
) -> mh.BindingAck:
    allOptions = list(options)
    if address is not None:
        allOptions.append(mh.LocalAddress(address, prefixLength))
    return mh.ProxyBindingAck(status, sequence, lifetime, allOptions)


def ipv6Frame(
    source: str,
    destination: str,
    payload: bytes,
    nextHeader: int = nd.IPPROTO_UDP,
    srcMac: str = MS_MAC,
    dstMac: str = VMAC,
) -> nd.Frame:
    header = nd.IPv6Header(source, destination, nextHeader, 64, len(payload)).encode()
    return nd.decodeFrame(nd.EthernetHeader(dstMac, srcMac).encode() + header + payload)


def udpFrame(
    source: str,
    destination: str = "2001:db8:ffff::99",
    sourcePort: int = 40000,
    destinationPort: int = 53,
    srcMac: str = MS_MAC,
    dstMac: str = VMAC,
) -> nd.Frame:
    data = b"query"
    header = struct.pack("!HHHH", sourcePort, destinationPort, 8 + len(data), 0)
    return ipv6Frame(source, destination, header + data, srcMac=srcMac, dstMac=dstMac)


def dhcpSolicit(srcMac: str = MS_MAC) -> nd.Frame:
    return udpFrame(
        nd.linkLocalFromMac(srcMac), "ff02::1:2", 546, 547, srcMac, "33:33:00:01:00:02"
    )


def routerSolicitation(source: str = MS_LL, mac: str = MS_MAC) -> nd.Frame:
    return nd.decodeFrame(nd.buildRouterSolicitation(mac, source))


def dadProbe(target: str, mac: str = MS_MAC) -> nd.Frame:
    return nd.decodeFrame(nd.buildNeighborSolicitation(mac, None, nd.UNSPECIFIED, None, target))


def neighborSolicitation(target: str, source: str = MS_LL, mac: str = MS_MAC) -> nd.Frame:
    return nd.decodeFrame(nd.buildNeighborSolicitation(mac, None, source, None, target))


def attach(
    agent: MobilityProxyAgent, mac: str = MS_MAC, interface: str = IFACE, now: float = T0,
    nai: bytes | None = None,
) -> list[Action]:
    return agent.attach(AttachEvent(interface, mac, nai), now)


def authenticate(
    agent: MobilityProxyAgent,
    profile: Profile | None = None,
    mac: str = MS_MAC,
    interface: str = IFACE,
    now: float = T0,
) -> list[Action]:
    attach(agent, mac, interface, now)
    return agent.authenticated(mac, profile or makeProfile(), now)


def register(
    case: SynchronousTestCase,
    agent: MobilityProxyAgent,
    profile: Profile | None = None,
    mac: str = MS_MAC,
    interface: str = IFACE,
    now: float = T0,
    granted: int = 3600,
) -> VisitorEntry:
    """Attach, authenticate and register an MS whose profile holds its address."""
    profile = profile or makeProfile(localAddress=MS_ADDR)
    bu = onlyPbu(case, authenticate(agent, profile, mac, interface, now))
    local = bu.option(mh.LocalAddress)
    address = MS_ADDR if local is None else local.address
    agent.messageReceived(pba(bu.sequence, lifetime=granted, address=address), LMAP, now)
    visitor = agent.visitors.byMac(mac)
    assert visitor is not None
    case.assertIs(visitor.state, VisitorState.REGISTERED)
    return visitor


def tunnel(address: str = MS_ADDR, interface: str = IFACE, lmap: str = LMAP) -> TunnelBinding:
    return TunnelBinding(address, 128, MPA, lmap, ROLE_MPA, interface)


# --- construction -------------------------------------------------------------


class ConstructionTests(SynchronousTestCase):
    def test_badSettings(self) -> None:
        for key, value in [
            ("lifetime", 2), ("retransmitTimeout", 0), ("maxRetries", -1),
            ("refreshFraction", 1.0), ("refreshFraction", 0), ("raMtu", 1000),
        ]:
            self.assertRaises(ValueError, makeAgent, **{key: value})

    def test_virtualMacFallbackNeedsInterfaceMacs(self) -> None:
        self.assertRaises(
            ValueError, makeAgent, defaultVirtualLmapMac=None, interfaceMacs={IFACE: IFACE_MAC}
        )

    def test_canonicalAddresses(self) -> None:
        agent = makeAgent(address="2001:DB8:A:0::1", defaultLmap="2001:db8:ffff:0:0::1")
        self.assertEqual((agent.address, agent.defaultLmap), (MPA, LMAP))

    def test_idle(self) -> None:
        agent = makeAgent()
        self.assertIsNone(agent.nextDeadline())
        self.assertEqual(agent.tick(T0), [])

    def test_isNewer(self) -> None:
        self.assertTrue(isNewer(2, 1))
        self.assertTrue(isNewer(0, 65535))
        self.assertFalse(isNewer(1, 1))
        self.assertFalse(isNewer(1 + 32768, 1))


# --- attach and authentication -----------------------------------------------


class AttachTests(SynchronousTestCase):
    def test_attachAsksForAuthentication(self) -> None:
        agent = makeAgent()
        actions = attach(agent, nai=NAI)
        self.assertEqual(only(actions, Authenticate),
                         [Authenticate(AccessRequest(MS_MAC, IFACE, NAI))])
        self.assertEqual(events(actions), ["visitor.attached"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIs(visitor.state, VisitorState.AUTHENTICATING)
        self.assertEqual((visitor.attachedAt, visitor.lastSeen), (T0, T0))

    def test_knownMacSameInterface(self) -> None:
        agent = makeAgent()
        attach(agent)
        self.assertEqual(attach(agent, now=T0 + 5), [])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertEqual(visitor.lastSeen, T0 + 5)
        self.assertEqual(agent.counters["visitor.attached"], 1)

    def test_macIsLowerCased(self) -> None:
        agent = makeAgent()
        attach(agent, mac=MS_MAC.upper())
        self.assertIsNotNone(agent.visitors.byMac(MS_MAC))

    def test_frameFromUnknownMacAttaches(self) -> None:
        agent = makeAgent()
        actions = agent.frameReceived(IFACE, udpFrame(MS_ADDR), T0)
        self.assertEqual(only(actions, Authenticate),
                         [Authenticate(AccessRequest(MS_MAC, IFACE, None))])
        self.assertEqual(agent.counters["attach.frame"], 1)

    def test_ignoredSources(self) -> None:
        agent = makeAgent()
        # The MPA's own frames (an echo of its RA), group MACs, non-access links.
        self.assertEqual(agent.frameReceived(IFACE, udpFrame(MS_ADDR, srcMac=VMAC), T0), [])
        self.assertEqual(agent.frameReceived(IFACE, udpFrame(MS_ADDR, srcMac=IFACE_MAC), T0), [])
        self.assertEqual(
            agent.frameReceived(IFACE, udpFrame(MS_ADDR, srcMac="33:33:00:00:00:01"), T0), []
        )
        self.assertEqual(agent.frameReceived("eth9", udpFrame(MS_ADDR), T0), [])
        self.assertEqual(attach(agent, interface="eth9"), [])
        self.assertEqual(attach(agent, mac="ff:ff:ff:ff:ff:ff"), [])
        self.assertEqual(len(agent.visitors), 0)
        self.assertEqual(agent.counters["frame.own"], 2)
        self.assertEqual(agent.counters["frame.bad-mac"], 1)
        self.assertEqual(agent.counters["frame.unknown-interface"], 1)

    def test_authenticationThrottled(self) -> None:
        agent = makeAgent(maxAuthenticating=2)
        attach(agent, mac="02:00:00:00:00:01")
        attach(agent, mac="02:00:00:00:00:02")
        refused = attach(agent, mac="02:00:00:00:00:03")
        # Nothing but the (rate-limited) log line of the refusal.
        self.assertEqual([(n.event, n.fields["reason"]) for n in only(refused, Note)],
                         [("attach.refused", "authenticating")])
        self.assertEqual(len(refused), 1)
        self.assertEqual(agent.counters["attach.throttled"], 1)
        agent.authenticated("02:00:00:00:00:01", makeProfile(), T0)
        self.assertEqual(len(only(attach(agent, mac="02:00:00:00:00:03"), Authenticate)), 1)

    def test_linkFull(self) -> None:
        """At most maxVisitorsPerLink visitors on a link, held-down MACs
        included; another link has room of its own; a visitor that moves
        counts where it is."""
        agent = makeAgent(maxVisitorsPerLink=2)
        attach(agent, mac="02:00:00:00:00:01")
        attach(agent, mac="02:00:00:00:00:02")
        refused = attach(agent, mac="02:00:00:00:00:03")
        self.assertEqual(only(refused, Authenticate), [])
        self.assertEqual([n.fields["reason"] for n in only(refused, Note)], ["link-full"])
        self.assertEqual(agent.counters["attach.link-full"], 1)
        self.assertIsNone(agent.visitors.byMac("02:00:00:00:00:03"))
        agent.authenticationFailed("02:00:00:00:00:01", AccessRejected("no"), T0)  # held down
        self.assertEqual(only(attach(agent, mac="02:00:00:00:00:04"), Authenticate), [])
        self.assertEqual(agent.visitors.onInterface(IFACE), 2)
        self.assertEqual(len(only(attach(agent, mac="02:00:00:00:00:04", interface=IFACE2),
                                  Authenticate)), 1)
        # The second visitor moves to the other link: room here, none there.
        attach(agent, mac="02:00:00:00:00:02", interface=IFACE2)
        self.assertEqual((agent.visitors.onInterface(IFACE), agent.visitors.onInterface(IFACE2)),
                         (1, 2))
        self.assertEqual(len(only(attach(agent, mac="02:00:00:00:00:05"), Authenticate)), 1)

    def test_authenticatedFillsEntry(self) -> None:
        agent = makeAgent()
        authenticate(agent, makeProfile(dhcpServer="2001:db8:d::1", sessionTimeout=600))
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertEqual(visitor.nai, NAI)
        self.assertIs(agent.visitors.byNai(NAI), visitor)
        self.assertEqual(visitor.lmapAddress, LMAP)
        self.assertEqual(visitor.tunnelDestination, LMAP)
        self.assertEqual(visitor.tunnelSource, MPA)
        self.assertEqual(visitor.virtualLmapMac, VMAC)
        self.assertEqual(visitor.virtualLmapLinkLocal, VLL)
        self.assertEqual(visitor.localNetworkPrefix, LNP)
        self.assertEqual(visitor.dhcpServer, "2001:db8:d::1")
        self.assertEqual(visitor.sessionExpires, T0 + 600)
        self.assertIs(visitor.state, VisitorState.REGISTERING)

    def test_lateAaaResult(self) -> None:
        agent = makeAgent()
        self.assertEqual(agent.authenticated(MS_MAC, makeProfile(), T0), [])
        self.assertEqual(agent.authenticationFailed(MS_MAC, AccessRejected("no"), T0), [])
        authenticate(agent)
        self.assertEqual(agent.authenticated(MS_MAC, makeProfile(), T0), [])
        self.assertEqual(agent.counters["aaa.late"], 3)


def answered(
    case: SynchronousTestCase,
    agent: MobilityProxyAgent,
    profile: Profile | None = None,
    status: int = 0,
    interface: str = IFACE,
) -> list[Action]:
    """Authenticate an MS, then the LMAP's answer to its first PBU: what the
    answer made the agent do (a roaming MS's binding, status 0, by default)."""
    bu = onlyPbu(case, authenticate(agent, profile, interface=interface))
    local = bu.option(mh.LocalAddress)
    address = MS_ADDR if local is None or local.address == "::" else local.address
    if status:
        return agent.messageReceived(pba(bu.sequence, status=status, lifetime=0), LMAP, T0)
    return agent.messageReceived(pba(bu.sequence, address=address), LMAP, T0)


class UnsolicitedAdvertisementTests(SynchronousTestCase):
    def advertisement(self, actions: list[Action]) -> tuple[str, nd.Frame]:
        frames = sentFrames(actions)
        self.assertEqual(len(frames), 1)
        return frames[0]

    def test_pbuThenTunnelThenRa(self) -> None:
        agent = makeAgent()
        actions = authenticate(agent, makeProfile(localAddress=MS_ADDR))
        # RFC 5213 6.9.1.1: nothing on the access link before the LMAP answers.
        self.assertEqual(shape(actions), [f"send BindingUpdate {LMAP}"])
        self.assertEqual(agent.counters["ra.unsolicited"], 0)
        bu = onlyPbu(self, actions)
        actions = agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0)
        # The tunnel first: the MS's first packets have somewhere to go.
        self.assertEqual(shape(actions), [f"add {MS_ADDR} {IFACE}",
                                          f"frame RouterAdvertisement {IFACE}"])
        interface, frame = self.advertisement(actions)
        self.assertEqual(interface, IFACE)
        self.assertEqual(frame.ethernet.destination, MS_MAC)
        self.assertEqual(frame.ethernet.source, VMAC)
        assert frame.ip is not None
        self.assertEqual(frame.ip.source, VLL)
        # Its link-local address is not known yet: all-nodes, on its MAC.
        self.assertEqual(frame.ip.destination, nd.ALL_NODES)
        self.assertEqual(frame.ip.hopLimit, 255)
        ra = frame.message
        assert isinstance(ra, nd.RouterAdvertisement)
        self.assertEqual(ra.prefixes, (nd.PrefixInformation("2001:db8:1::", 64, onLink=False,
                                                             autonomous=True),))
        self.assertFalse(ra.managed)
        self.assertFalse(ra.other)
        self.assertEqual(ra.mtu, 1460)
        self.assertEqual(ra.sourceLinkLayerAddress, VMAC)
        self.assertEqual(ra.routerLifetime, 1800)
        self.assertEqual(agent.counters["ra.unsolicited"], 1)
        # Later PBAs (refreshes) advertise nothing new.
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None and visitor.refreshAt is not None
        bu = onlyPbu(self, agent.tick(visitor.refreshAt))
        actions = agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0)
        self.assertEqual(sentFrames(actions), [])

    def test_newMsAdvertisedOnEntryMissing(self) -> None:
        agent = makeAgent()
        # A new MS: the LMAP has no binding to confirm; it needs the prefix now.
        actions = answered(self, agent, status=141)
        self.assertEqual(shape(actions)[0], f"frame RouterAdvertisement {IFACE}")
        # Not a rejection (issue 14): counted as what it is.
        self.assertEqual((agent.counters["pba.confirmation-missing"],
                          agent.counters["pba.rejected.141"]), (1, 0))
        _, frame = self.advertisement(actions)
        ra = frame.message
        assert isinstance(ra, nd.RouterAdvertisement)
        self.assertEqual(ra.prefixes[0].prefix, "2001:db8:1::")

    def test_rejectedGetsNoAdvertisement(self) -> None:
        agent = makeAgent()
        self.assertEqual(sentFrames(answered(self, agent, status=129)), [])
        self.assertEqual(agent.counters["ra.unsolicited"], 0)

    def test_heldUntilTheLmapAnswers(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent))
        # A handed-over MS resolves its router and solicits: no answer yet, so that
        # its packets wait in its own neighbour queue.
        self.assertEqual(agent.frameReceived(IFACE, routerSolicitation(), T0), [])
        self.assertEqual(agent.frameReceived(IFACE, neighborSolicitation(VLL), T0), [])
        self.assertEqual(agent.counters["rs.held"], 1)
        self.assertEqual(agent.counters["ns.held"], 1)
        actions = agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0)
        # One RA answers both, to the link-local address the RS showed.
        _, frame = self.advertisement(actions)
        assert frame.ip is not None
        self.assertEqual(frame.ip.destination, MS_LL)
        self.assertEqual(len(sentFrames(agent.frameReceived(IFACE, routerSolicitation(), T0))),
                         1)
        self.assertEqual(len(sentFrames(
            agent.frameReceived(IFACE, neighborSolicitation(VLL), T0))), 1)

    def test_toLinkLocalWhenSeen(self) -> None:
        agent = makeAgent()
        attach(agent)
        # An MLD report or RS while the AAA server answers shows its link-local address.
        agent.frameReceived(IFACE, routerSolicitation(), T0)
        actions = answered(self, agent)
        _, frame = self.advertisement(actions)
        assert frame.ip is not None
        self.assertEqual(frame.ip.destination, MS_LL)
        self.assertEqual(frame.ethernet.destination, MS_MAC)

    def test_addressModes(self) -> None:
        for mode, flags in [
            ("slaac", (True, False, False)),
            ("dhcpv6", (False, True, True)),
            ("manual", (False, False, False)),
        ]:
            agent = makeAgent()
            _, frame = self.advertisement(answered(self, agent, makeProfile(addressMode=mode)))
            ra = frame.message
            assert isinstance(ra, nd.RouterAdvertisement)
            (pio,) = ra.prefixes
            self.assertFalse(pio.onLink)
            self.assertEqual((pio.autonomous, ra.managed, ra.other), flags, mode)

    def test_profileVirtualMacAndLmap(self) -> None:
        agent = makeAgent()
        mac = "02:00:5e:00:53:99"
        actions = authenticate(agent, makeProfile(virtualLmapMac=mac, lmapAddress=LMAP2))
        bu = onlyPbu(self, actions, LMAP2)
        actions = agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP2, T0)
        _, frame = self.advertisement(actions)
        assert frame.ip is not None
        self.assertEqual(frame.ethernet.source, mac)
        self.assertEqual(frame.ip.source, nd.linkLocalFromMac(mac))
        # Its frames are the MPA's own from now on.
        self.assertEqual(agent.frameReceived(IFACE, udpFrame(MS_ADDR, srcMac=mac), T0), [])

    def test_profileVirtualLinkLocal(self) -> None:
        agent = makeAgent()
        _, frame = self.advertisement(
            answered(self, agent, makeProfile(virtualLmapLinkLocal="fe80::1"))
        )
        assert frame.ip is not None
        self.assertEqual(frame.ip.source, "fe80::1")
        self.assertEqual(frame.ethernet.source, VMAC)

    def test_interfaceMacFallback(self) -> None:
        agent = makeAgent(defaultVirtualLmapMac=None)
        _, frame = self.advertisement(answered(self, agent, interface=IFACE2))
        assert frame.ip is not None
        self.assertEqual(frame.ethernet.source, IFACE2_MAC)
        self.assertEqual(frame.ip.source, nd.linkLocalFromMac(IFACE2_MAC))

    def test_noPrefixKnown(self) -> None:
        agent = makeAgent()
        # No prefix to advertise, nothing to confirm: the LMAP assigns, then the RA.
        actions = answered(self, agent, makeProfile(localNetworkPrefix=None), status=141)
        self.assertEqual(sentFrames(actions), [])
        bu = onlyPbu(self, actions)
        actions = agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0)
        _, frame = self.advertisement(actions)
        ra = frame.message
        assert isinstance(ra, nd.RouterAdvertisement)
        self.assertEqual(ra.prefixes[0].prefix, "2001:db8:1::")
        self.assertEqual(agent.counters["ra.unsolicited"], 1)

    def test_againstScapy(self) -> None:
        try:
            from scapy.layers.inet6 import (
                ICMPv6ND_RA,
                ICMPv6NDOptMTU,
                ICMPv6NDOptPrefixInfo,
            )
            from scapy.layers.l2 import Ether
        except ImportError:  # pragma: no cover
            raise self.skipTest("scapy is not installed") from None
        agent = makeAgent()
        actions = answered(self, agent)
        packet = Ether(only(actions, SendFrame)[0].frame)
        self.assertEqual(packet.dst, MS_MAC)
        self.assertEqual(packet[ICMPv6ND_RA].routerlifetime, 1800)
        self.assertEqual(packet[ICMPv6NDOptPrefixInfo].L, 0)
        self.assertEqual(packet[ICMPv6NDOptPrefixInfo].A, 1)
        self.assertEqual(packet[ICMPv6NDOptPrefixInfo].prefix, "2001:db8:1::")
        self.assertEqual(packet[ICMPv6NDOptMTU].mtu, 1460)


# --- registration ------------------------------------------------------------


class RegistrationTests(SynchronousTestCase):
    def test_pbuWithLocalAddress(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        self.assertTrue(bu.proxy)
        self.assertTrue(bu.ack)
        self.assertEqual(bu.lifetime, 3600)
        self.assertEqual(bu.option(mh.MobileNodeIdentifier), mh.MobileNodeIdentifier(NAI))
        self.assertEqual(bu.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))
        self.assertIsNone(bu.option(mh.BindingCacheConfirmation))
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None and visitor.pending is not None
        self.assertIs(visitor.state, VisitorState.REGISTERING)
        self.assertEqual(visitor.pending.kind, "loa")
        self.assertEqual(visitor.pending.sequence, bu.sequence)
        self.assertIs(agent.visitors.byAddress(MS_ADDR), visitor)

    def test_pbuWithConfirmation(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent))
        self.assertEqual(bu.option(mh.BindingCacheConfirmation), mh.BindingCacheConfirmation())
        self.assertIsNone(bu.option(mh.LocalAddress))
        self.assertEqual(bu.option(mh.MobileNodeIdentifier), mh.MobileNodeIdentifier(NAI))
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None and visitor.pending is not None
        self.assertEqual(visitor.pending.kind, "bcc")

    def test_acceptedAddsTunnel(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        actions = agent.messageReceived(pba(bu.sequence, lifetime=1800, address=MS_ADDR), LMAP,
                                        T0 + 0.2)
        self.assertEqual(only(actions, AddTunnel), [AddTunnel(tunnel())])
        self.assertEqual(events(actions), ["visitor.registered"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIs(visitor.state, VisitorState.REGISTERED)
        self.assertEqual(visitor.lifetime, 1800)
        self.assertEqual(visitor.registeredAt, T0 + 0.2)
        # Counted from the PBU: never after the LMAP's own expiry.
        self.assertEqual(visitor.expires, T0 + 1800)
        self.assertEqual(visitor.refreshAt, T0 + 1350)
        self.assertIsNone(visitor.pending)
        self.assertEqual(visitor.tunnel, tunnel())
        self.assertEqual(agent.nextDeadline(), T0 + 1350)

    def test_confirmationAccepted(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent))
        actions = agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0)
        # The address is the PBA's; the tunnel, then the RA with the prefix.
        self.assertEqual(shape(actions), [f"add {MS_ADDR} {IFACE}",
                                          f"frame RouterAdvertisement {IFACE}"])
        visitor = agent.visitors.byAddress(MS_ADDR)
        assert visitor is not None
        self.assertEqual(visitor.localAddress, MS_ADDR)

    def test_confirmationTeachesPrefix(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localNetworkPrefix=None)))
        actions = agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0)
        self.assertEqual(shape(actions), [f"add {MS_ADDR} {IFACE}",
                                          f"frame RouterAdvertisement {IFACE}"])
        ((_, frame),) = sentFrames(actions)
        ra = frame.message
        assert isinstance(ra, nd.RouterAdvertisement)
        self.assertEqual(ra.prefixes[0].prefix, "2001:db8:1::")
        self.assertFalse(ra.prefixes[0].onLink)

    def test_entryMissingThenDad(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent))
        actions = agent.messageReceived(pba(bu.sequence, status=141, lifetime=0), LMAP, T0)
        self.assertEqual(only(actions, SendMessage), [])
        self.assertEqual(events(actions), ["visitor.awaiting-address"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIs(visitor.state, VisitorState.AWAITING_ADDRESS)
        self.assertIsNone(agent.nextDeadline())
        # The MS configures its address (draft figure 8).
        actions = agent.frameReceived(IFACE, dadProbe(MS_ADDR), T0 + 2)
        bu2 = onlyPbu(self, actions)
        self.assertEqual(bu2.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))
        self.assertEqual(bu2.option(mh.MobileNodeIdentifier), mh.MobileNodeIdentifier(NAI))
        self.assertEqual(only(actions, SendFrame), [])
        actions = agent.messageReceived(pba(bu2.sequence, address=MS_ADDR), LMAP, T0 + 2)
        self.assertEqual(only(actions, AddTunnel), [AddTunnel(tunnel())])
        self.assertIs(visitor.state, VisitorState.REGISTERED)

    def test_entryMissingUnderRfc5213Profile(self) -> None:
        agent = makeAgent(profile=mh.RFC5213)
        bu = onlyPbu(self, authenticate(agent))
        agent.messageReceived(
            pba(bu.sequence, status=mh.RFC5213.bindingCacheEntryMissing, lifetime=0), LMAP, T0
        )
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIs(visitor.state, VisitorState.AWAITING_ADDRESS)

    def test_entryMissingWithoutPrefixAsksLmapToAssign(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localNetworkPrefix=None)))
        actions = agent.messageReceived(pba(bu.sequence, status=141, lifetime=0), LMAP, T0)
        bu2 = onlyPbu(self, actions)
        self.assertEqual(bu2.option(mh.LocalAddress), mh.LocalAddress("::", 0))
        actions = agent.messageReceived(pba(bu2.sequence, address=OTHER_ADDR), LMAP, T0)
        self.assertEqual(shape(actions), [f"add {OTHER_ADDR} {IFACE}",
                                          f"frame RouterAdvertisement {IFACE}"])

    def test_rejected(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        actions = agent.messageReceived(
            pba(bu.sequence, status=mh.Status.NOT_HOME_SUBNET, lifetime=0), LMAP, T0
        )
        self.assertEqual(shape(actions), [])
        self.assertEqual(events(actions), ["registration.rejected"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIs(visitor.state, VisitorState.AWAITING_ADDRESS)
        self.assertEqual(visitor.lastStatus, 132)
        self.assertIsNone(visitor.tunnel)
        self.assertEqual(agent.counters["pba.rejected.132"], 1)
        # Tried again after retryInterval; the same DAD meanwhile changes nothing.
        self.assertEqual(agent.nextDeadline(), T0 + 30)
        self.assertEqual(only(agent.frameReceived(IFACE, dadProbe(MS_ADDR), T0 + 1),
                              SendMessage), [])
        bu2 = onlyPbu(self, agent.tick(T0 + 30))
        self.assertEqual(bu2.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))

    def test_reregistrationOfSameAddressAddsNoTunnel(self) -> None:
        agent = makeAgent()
        visitor = register(self, agent)
        # The MS re-DADs its registered address (its link flapped): nothing.
        self.assertEqual(agent.frameReceived(IFACE, dadProbe(MS_ADDR), T0 + 10), [])
        self.assertIsNone(visitor.pending)

    def test_newAddressReplacesTunnel(self) -> None:
        agent = makeAgent()
        visitor = register(self, agent)
        bu = onlyPbu(self, agent.frameReceived(IFACE, dadProbe(OTHER_ADDR), T0 + 10))
        self.assertEqual(bu.option(mh.LocalAddress), mh.LocalAddress(OTHER_ADDR, 64))
        self.assertIs(visitor.state, VisitorState.REGISTERED)
        actions = agent.messageReceived(pba(bu.sequence, address=OTHER_ADDR), LMAP, T0 + 10)
        self.assertEqual(shape(actions), [f"remove {MS_ADDR} {IFACE}", f"add {OTHER_ADDR} {IFACE}"])
        self.assertIsNone(agent.visitors.byAddress(MS_ADDR))
        self.assertIs(agent.visitors.byAddress(OTHER_ADDR), visitor)

    def test_newerPbuReplacesPending(self) -> None:
        agent = makeAgent()
        first = onlyPbu(self, authenticate(agent))
        second = onlyPbu(self, agent.frameReceived(IFACE, dadProbe(MS_ADDR), T0 + 0.1))
        self.assertTrue(isNewer(second.sequence, first.sequence))
        self.assertEqual(agent.messageReceived(pba(first.sequence, address=MS_ADDR), LMAP, T0),
                         [])
        self.assertEqual(agent.counters["pba.unmatched"], 1)
        actions = agent.messageReceived(pba(second.sequence, address=MS_ADDR), LMAP, T0)
        self.assertEqual(only(actions, AddTunnel), [AddTunnel(tunnel())])

    def test_dadDuringAuthenticationIsRegisteredAtOnce(self) -> None:
        agent = makeAgent()
        attach(agent)
        agent.frameReceived(IFACE, dadProbe(MS_ADDR), T0)
        bu = onlyPbu(self, agent.authenticated(MS_MAC, makeProfile(), T0 + 0.5))
        self.assertEqual(bu.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))

    def test_packetDuringAuthenticationNeedsPermission(self) -> None:
        agent = makeAgent()
        attach(agent)
        agent.frameReceived(IFACE, udpFrame(MS_ADDR), T0)
        bu = onlyPbu(self, agent.authenticated(MS_MAC, makeProfile(), T0))
        self.assertIsNotNone(bu.option(mh.BindingCacheConfirmation))
        agent = makeAgent()
        attach(agent)
        agent.frameReceived(IFACE, udpFrame(MS_ADDR), T0)
        bu = onlyPbu(self, agent.authenticated(MS_MAC, makeProfile(mayChooseAddress=True), T0))
        self.assertEqual(bu.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))


class AcknowledgementMatchingTests(SynchronousTestCase):
    def test_unmatched(self) -> None:
        agent = makeAgent()
        self.assertEqual(agent.messageReceived(pba(77, address=MS_ADDR), LMAP, T0), [])
        self.assertEqual(agent.counters["pba.unmatched"], 1)

    def test_wrongSource(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        self.assertEqual(agent.messageReceived(pba(bu.sequence, address=MS_ADDR), STRANGER, T0),
                         [])
        self.assertEqual(agent.counters["pba.wrong-source"], 1)
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIs(visitor.state, VisitorState.REGISTERING)

    def test_naiMismatch(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        ack = pba(bu.sequence, address=MS_ADDR, options=(mh.MobileNodeIdentifier(NAI2),))
        self.assertEqual(shape(agent.messageReceived(ack, LMAP, T0)), [])  # only a note
        self.assertEqual(agent.counters["pba.nai-mismatch"], 1)
        ack = pba(bu.sequence, address=MS_ADDR, options=(mh.MobileNodeIdentifier(NAI),))
        self.assertEqual(len(only(agent.messageReceived(ack, LMAP, T0), AddTunnel)), 1)

    def test_duplicateAckAfterAcceptance(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0)
        self.assertEqual(agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0), [])
        self.assertEqual(agent.counters["pba.unmatched"], 1)

    def test_acceptedWithoutAddress(self) -> None:
        """Rule 8: the LMAP said yes to nothing: its binding is deregistered,
        the visitor waits, and the retry backs off."""
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent))
        actions = agent.messageReceived(pba(bu.sequence), LMAP, T0)
        self.assertEqual(shape(actions), [f"send BindingUpdate {LMAP}"])
        dereg = onlyPbu(self, actions)
        self.assertEqual((dereg.lifetime, dereg.option(mh.MobileNodeIdentifier)),
                         (0, mh.MobileNodeIdentifier(NAI)))
        self.assertIsNone(dereg.option(mh.LocalAddress))
        self.assertEqual(agent.counters["pba.invalid.no-address"], 1)
        self.assertEqual(events(actions), ["registration.rejected"])
        note = only(actions, Note)[0]
        self.assertEqual(note.fields["lmap"], LMAP)
        self.assertEqual(note.fields["reason"], "accepted without an address (deregistered)")
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIs(visitor.state, VisitorState.AWAITING_ADDRESS)
        self.assertEqual(visitor.retryAt, T0 + RETRY_INTERVAL)

    def test_sequenceResync(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        # The LMAP remembers our numbers from before a restart: 5000 was the last.
        actions = agent.messageReceived(
            pba(5000, status=mh.Status.SEQUENCE_NUMBER_OUT_OF_WINDOW, lifetime=0), LMAP, T0 + 0.1
        )
        bu2 = onlyPbu(self, actions)
        self.assertNotEqual(bu.sequence, 5000)
        self.assertEqual(bu2.sequence, 5001)
        self.assertEqual(bu2.option(mh.LocalAddress), bu.option(mh.LocalAddress))
        self.assertEqual(events(actions), ["registration.resync"])
        actions = agent.messageReceived(pba(5001, address=MS_ADDR), LMAP, T0 + 0.2)
        self.assertEqual(only(actions, AddTunnel), [AddTunnel(tunnel())])
        # Later PBUs keep counting from there.
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None and visitor.refreshAt is not None
        self.assertEqual(onlyPbu(self, agent.tick(visitor.refreshAt)).sequence, 5002)

    def test_sequenceResyncMatchedOnce(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        out = mh.Status.SEQUENCE_NUMBER_OUT_OF_WINDOW
        bu2 = onlyPbu(self, agent.messageReceived(pba(bu.sequence, status=out), LMAP, T0))
        self.assertEqual(bu2.sequence, bu.sequence + 1)
        # A second 135 for the same registration is a rejection.
        actions = agent.messageReceived(pba(bu2.sequence, status=out), LMAP, T0)
        self.assertEqual(only(actions, SendMessage), [])
        self.assertEqual(events(actions), ["registration.rejected"])

    def test_unmatchedResyncFromStranger(self) -> None:
        agent = makeAgent()
        authenticate(agent, makeProfile(localAddress=MS_ADDR))
        out = mh.Status.SEQUENCE_NUMBER_OUT_OF_WINDOW
        self.assertEqual(agent.messageReceived(pba(5000, status=out), STRANGER, T0), [])
        self.assertEqual(agent.counters["pba.unmatched"], 1)

    def test_sequenceWraps(self) -> None:
        agent = makeAgent(initialSequence=65535)
        bu = onlyPbu(self, authenticate(agent))
        self.assertEqual(bu.sequence, 0)


# --- home-link emulation ------------------------------------------------------


class NeighborDiscoveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.agent = makeAgent()
        self.visitor = register(self, self.agent)

    def receive(self, frame: nd.Frame, now: float = T0 + 1) -> list[Action]:
        return self.agent.frameReceived(IFACE, frame, now)

    def test_routerSolicitation(self) -> None:
        actions = self.receive(routerSolicitation())
        ((interface, frame),) = sentFrames(actions)
        self.assertEqual(interface, IFACE)
        self.assertEqual((frame.ethernet.source, frame.ethernet.destination), (VMAC, MS_MAC))
        assert frame.ip is not None
        self.assertEqual((frame.ip.source, frame.ip.destination), (VLL, MS_LL))
        ra = frame.message
        assert isinstance(ra, nd.RouterAdvertisement)
        self.assertEqual(ra.prefixes[0].prefix, "2001:db8:1::")
        self.assertFalse(ra.prefixes[0].onLink)
        self.assertEqual(ra.mtu, 1460)
        self.assertEqual(only(actions, SendMessage), [])
        self.assertEqual(self.visitor.linkLocalAddress, MS_LL)

    def test_routerSolicitationFromUnspecified(self) -> None:
        ((_, frame),) = sentFrames(self.receive(routerSolicitation(nd.UNSPECIFIED)))
        assert frame.ip is not None
        # Draft 8.2: all-nodes, but always the MS's MAC.
        self.assertEqual(frame.ip.destination, nd.ALL_NODES)
        self.assertEqual(frame.ethernet.destination, MS_MAC)

    def test_linkLocalDad(self) -> None:
        self.assertEqual(self.receive(dadProbe(MS_LL)), [])
        self.assertEqual(self.agent.counters["dad.link-local"], 1)

    def test_virtualLinkLocalDadDefended(self) -> None:
        ((_, frame),) = sentFrames(self.receive(dadProbe(VLL)))
        self.assertEqual((frame.ethernet.source, frame.ethernet.destination), (VMAC, MS_MAC))
        assert frame.ip is not None
        self.assertEqual(frame.ip.destination, nd.ALL_NODES)
        na = frame.message
        assert isinstance(na, nd.NeighborAdvertisement)
        self.assertEqual(na.target, VLL)
        self.assertEqual((na.router, na.solicited, na.override), (True, False, True))
        self.assertEqual(na.targetLinkLayerAddress, VMAC)

    def test_dadOutsidePrefix(self) -> None:
        self.assertEqual(self.receive(dadProbe("2001:db8:99::1")), [])
        self.assertEqual(self.agent.counters["dad.outside-prefix"], 1)

    def test_dadForSubnetRouterAnycast(self) -> None:
        self.assertEqual(self.receive(dadProbe("2001:db8:1::")), [])

    def test_neighborSolicitationForVirtualLinkLocal(self) -> None:
        actions = self.receive(neighborSolicitation(VLL))
        ((_, frame),) = sentFrames(actions)
        self.assertEqual((frame.ethernet.source, frame.ethernet.destination), (VMAC, MS_MAC))
        assert frame.ip is not None
        self.assertEqual((frame.ip.source, frame.ip.destination), (VLL, MS_LL))
        na = frame.message
        assert isinstance(na, nd.NeighborAdvertisement)
        self.assertEqual(na.target, VLL)
        self.assertEqual((na.router, na.solicited, na.override), (True, True, True))
        self.assertEqual(na.targetLinkLayerAddress, VMAC)

    def test_neighborSolicitationFromGlobalAddress(self) -> None:
        ((_, frame),) = sentFrames(self.receive(neighborSolicitation(VLL, source=MS_ADDR)))
        assert frame.ip is not None
        self.assertEqual(frame.ip.destination, MS_ADDR)

    def test_neighborSolicitationForOtherGlobal(self) -> None:
        # Whatever is not the MS's own is behind its default router, the LMAP.
        for target in (OTHER_ADDR, LMAP, "2001:db8:77::1"):
            ((_, frame),) = sentFrames(self.receive(neighborSolicitation(target)))
            na = frame.message
            assert isinstance(na, nd.NeighborAdvertisement)
            self.assertEqual((na.target, na.targetLinkLayerAddress), (target, VMAC))

    def test_neighborSolicitationForOwnAddresses(self) -> None:
        self.receive(routerSolicitation())
        self.assertEqual(self.receive(neighborSolicitation(MS_ADDR)), [])
        self.assertEqual(self.receive(neighborSolicitation(MS_LL, source=MS_ADDR)), [])
        self.assertEqual(self.agent.counters["ns.own"], 2)

    def test_neighborSolicitationForOtherHostsLinkLocal(self) -> None:
        self.assertEqual(self.receive(neighborSolicitation("fe80::99")), [])
        self.assertEqual(self.agent.counters["ns.other-host"], 1)

    def test_otherFrames(self) -> None:
        # Data from the registered address, ARP-like non-IPv6: nothing to do.
        self.assertEqual(self.receive(udpFrame(MS_ADDR)), [])
        raw = nd.EthernetHeader(VMAC, MS_MAC, 0x0806).encode() + bytes(28)
        self.assertEqual(self.receive(nd.decodeFrame(raw)), [])
        self.assertEqual(self.visitor.lastSeen, T0 + 1)

    def test_frameErrorCounted(self) -> None:
        self.assertEqual(self.agent.frameError(IFACE, nd.BadHopLimit("x"), T0), [])
        self.assertEqual(self.agent.counters["frame-error.bad-hop-limit"], 1)


class AddressLearningTests(SynchronousTestCase):
    def awaiting(self, **profile: Any) -> MobilityProxyAgent:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(**profile)))
        agent.messageReceived(pba(bu.sequence, status=141, lifetime=0), LMAP, T0)
        return agent

    def test_packetWithoutPermission(self) -> None:
        agent = self.awaiting()
        actions = agent.frameReceived(IFACE, udpFrame(MS_ADDR), T0 + 1)
        self.assertEqual(shape(actions), [])
        self.assertEqual(events(actions), ["address.not-allowed"])
        # Counted each time, noted once.
        self.assertEqual(agent.frameReceived(IFACE, udpFrame(MS_ADDR), T0 + 2), [])
        self.assertEqual(agent.counters["packet.address-not-allowed"], 2)

    def test_packetWithPermission(self) -> None:
        agent = self.awaiting(mayChooseAddress=True, addressMode="manual")
        bu = onlyPbu(self, agent.frameReceived(IFACE, udpFrame(MS_ADDR), T0 + 1))
        self.assertEqual(bu.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))
        # Its next packets while the PBU is in flight send nothing more.
        self.assertEqual(only(agent.frameReceived(IFACE, udpFrame(MS_ADDR), T0 + 1.1),
                              SendMessage), [])
        actions = agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0 + 1.2)
        self.assertEqual(only(actions, AddTunnel), [AddTunnel(tunnel())])
        self.assertEqual(agent.frameReceived(IFACE, udpFrame(MS_ADDR), T0 + 2), [])

    def test_packetFromOtherAddressWhileRegistered(self) -> None:
        agent = makeAgent()
        register(self, agent, makeProfile(localAddress=MS_ADDR, mayChooseAddress=True))
        self.assertEqual(agent.frameReceived(IFACE, udpFrame(OTHER_ADDR), T0 + 1), [])
        self.assertEqual(agent.counters["packet.other-address"], 1)

    def test_packetOutsidePrefix(self) -> None:
        agent = self.awaiting(mayChooseAddress=True)
        self.assertEqual(agent.frameReceived(IFACE, udpFrame("2001:db8:99::1"), T0 + 1), [])
        self.assertEqual(agent.counters["packet.outside-prefix"], 1)

    def test_linkLocalSourceRemembered(self) -> None:
        agent = self.awaiting()
        self.assertEqual(agent.frameReceived(IFACE, udpFrame(MS_LL, "ff02::16"), T0 + 1), [])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertEqual(visitor.linkLocalAddress, MS_LL)

    def test_dhcpv6FramesCounted(self) -> None:
        agent = self.awaiting(addressMode="dhcpv6")
        self.assertEqual(agent.frameReceived(IFACE, dhcpSolicit(), T0 + 1), [])
        self.assertEqual(agent.counters["dhcpv6.client"], 1)

    def test_dhcpAddressAssigned(self) -> None:
        agent = self.awaiting(addressMode="dhcpv6")
        bu = onlyPbu(self, agent.dhcpAddressAssigned(MS_MAC, "2001:DB8:1::1:5", T0 + 1))
        self.assertEqual(bu.option(mh.LocalAddress), mh.LocalAddress("2001:db8:1::1:5", 64))
        self.assertEqual(agent.counters["address.learned.dhcpv6"], 1)

    def test_dhcpAddressRefused(self) -> None:
        agent = self.awaiting(addressMode="dhcpv6")
        actions = agent.dhcpAddressAssigned(MS_MAC, "2001:db8:99::5", T0)
        self.assertEqual(shape(actions), [])
        self.assertEqual(events(actions), ["address.outside-prefix"])
        self.assertEqual(agent.dhcpAddressAssigned(MS_MAC, "bogus", T0), [])
        self.assertEqual(agent.dhcpAddressAssigned(MS2_MAC, "2001:db8:1::5", T0), [])
        self.assertEqual(agent.counters["dhcpv6.bad-address"], 1)
        self.assertEqual(agent.counters["dhcpv6.no-visitor"], 1)


# --- rejection ---------------------------------------------------------------


class RejectionTests(SynchronousTestCase):
    def rejected(self, error: Exception | None = None) -> MobilityProxyAgent:
        agent = makeAgent()
        attach(agent)
        actions = agent.authenticationFailed(MS_MAC, error or AccessRejected("bad"), T0)
        self.assertEqual(shape(actions), [])
        self.assertEqual(events(actions), ["visitor.rejected"])
        return agent

    def test_rejectedGetsNothing(self) -> None:
        agent = self.rejected()
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIs(visitor.state, VisitorState.REJECTED)
        self.assertEqual(visitor.failure, "bad")
        for frame in (
            routerSolicitation(), routerSolicitation(nd.UNSPECIFIED), dadProbe(MS_ADDR),
            dadProbe(VLL), neighborSolicitation(VLL), udpFrame(MS_ADDR), dhcpSolicit(),
        ):
            self.assertEqual(agent.frameReceived(IFACE, frame, T0 + 1), [])
        self.assertEqual(attach(agent, now=T0 + 2), [])
        self.assertEqual(agent.dhcpAddressAssigned(MS_MAC, MS_ADDR, T0 + 2), [])
        self.assertEqual(agent.counters["frame.rejected"], 7)
        self.assertEqual(agent.counters["aaa.rejected"], 1)

    def test_holdDownThenAuthenticatedAgain(self) -> None:
        agent = self.rejected()
        self.assertEqual(agent.nextDeadline(), T0 + 30)
        self.assertEqual(agent.frameReceived(IFACE, routerSolicitation(), T0 + 29), [])
        actions = agent.frameReceived(IFACE, routerSolicitation(), T0 + 30)
        self.assertEqual(shape(actions), [f"authenticate {MS_MAC}"])

    def test_holdDownEndsAtTick(self) -> None:
        agent = self.rejected()
        self.assertEqual(agent.tick(T0 + 30), [])
        self.assertIsNone(agent.visitors.byMac(MS_MAC))
        self.assertIsNone(agent.nextDeadline())

    def test_unavailableHoldsShorter(self) -> None:
        agent = self.rejected(AAAUnavailable("no server"))
        self.assertEqual(agent.nextDeadline(), T0 + UNAVAILABLE_HOLD_DOWN)
        self.assertLess(UNAVAILABLE_HOLD_DOWN, REJECT_HOLD_DOWN)
        self.assertEqual(agent.counters["aaa.unavailable"], 1)

    def test_rejectedShowsTheLinksNai(self) -> None:
        """A rejected MS whose access link named it (802.1X, an attach report
        with an NAI) is listed with that NAI; one known only by its MAC with
        "-" (the NAI its MAC makes is the AAA backend's)."""
        agent = makeAgent()
        attach(agent, nai=NAI)
        attach(agent, mac=MS2_MAC)
        agent.authenticationFailed(MS_MAC, AccessRejected("barred"), T0)
        agent.authenticationFailed(MS2_MAC, AccessRejected("unknown"), T0)
        listed = {v["mac"]: (v["nai"], v["state"]) for v in agent.describe()}
        self.assertEqual(listed, {MS_MAC: (NAI.decode(), "rejected"),
                                  MS2_MAC: ("-", "rejected")})

    def test_detachEndsRejection(self) -> None:
        agent = self.rejected()
        self.assertEqual(shape(agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 1)), [])
        self.assertEqual(shape(agent.frameReceived(IFACE, routerSolicitation(), T0 + 2)),
                         [f"authenticate {MS_MAC}"])


class InvalidAcceptanceTests(SynchronousTestCase):
    """Rule 8, issue 16: an acceptance the MPA cannot use is deregistered,
    named, counted and retried with back-off; another profile's signs are
    named once per LMAP."""

    def registration(self, actions: list[Action]) -> mh.BindingUpdate:
        """The one registration among C{actions}; the deregistration of the
        unusable binding may be retransmitted beside it."""
        registrations = [m.message for m in only(actions, SendMessage)
                         if isinstance(m.message, mh.BindingUpdate) and m.message.lifetime]
        self.assertEqual(len(registrations), 1, actions)
        return registrations[0]

    def test_otherAddress(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        actions = agent.messageReceived(pba(bu.sequence, address=OTHER_ADDR), LMAP, T0)
        self.assertEqual(only(actions, AddTunnel), [])
        dereg = onlyPbu(self, actions)
        self.assertEqual((dereg.lifetime, dereg.option(mh.LocalAddress)),
                         (0, mh.LocalAddress(OTHER_ADDR, 64)))
        self.assertEqual(agent.counters["pba.invalid.other-address"], 1)
        self.assertIn(f"accepted with address {OTHER_ADDR}, not the {MS_ADDR} asked for",
                      only(actions, Note)[0].fields["reason"])

    def test_outsidePrefix(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent))
        self.assertIsNotNone(bu.option(mh.BindingCacheConfirmation))
        actions = agent.messageReceived(pba(bu.sequence, address="2001:db8:2::5"), LMAP, T0)
        self.assertEqual(only(actions, AddTunnel), [])
        self.assertEqual(onlyPbu(self, actions).lifetime, 0)
        self.assertEqual(agent.counters["pba.invalid.outside-prefix"], 1)

    def test_zeroLifetime(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        actions = agent.messageReceived(pba(bu.sequence, lifetime=0, address=MS_ADDR), LMAP, T0)
        self.assertEqual(only(actions, AddTunnel), [])
        self.assertEqual(agent.counters["pba.invalid.no-lifetime"], 1)

    def test_backOffThenReset(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        now = T0
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        delays = []
        for _ in range(INVALID_BACKOFF_DOUBLINGS + 2):
            agent.messageReceived(pba(bu.sequence, address=OTHER_ADDR), LMAP, now)
            assert visitor.retryAt is not None
            delays.append(visitor.retryAt - now)
            now = visitor.retryAt
            bu = self.registration(agent.tick(now))
            self.assertEqual(bu.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))
        cap = RETRY_INTERVAL * 2 ** INVALID_BACKOFF_DOUBLINGS
        self.assertEqual(delays, [RETRY_INTERVAL * 2 ** i for i in
                                  range(INVALID_BACKOFF_DOUBLINGS)] + [cap, cap])
        actions = agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, now)
        self.assertEqual(only(actions, AddTunnel), [AddTunnel(tunnel())])
        self.assertEqual(visitor.invalidAnswers, 0)

    def test_refreshAnsweredUnusable(self) -> None:
        """A registered visitor whose refresh gets another address stops
        being registered: its tunnel goes, and the LMAP's binding too."""
        agent = makeAgent()
        visitor = register(self, agent)
        now = visitor.refreshAt
        assert now is not None
        bu = onlyPbu(self, agent.tick(now))
        actions = agent.messageReceived(pba(bu.sequence, address=OTHER_ADDR), LMAP, now)
        self.assertEqual(shape(actions),
                         [f"send BindingUpdate {LMAP}", f"remove {MS_ADDR} {IFACE}"])
        self.assertEqual(onlyPbu(self, actions).lifetime, 0)
        self.assertIs(visitor.state, VisitorState.AWAITING_ADDRESS)
        self.assertIn("visitor.unregistered", events(actions))

    def test_rfc5213LmapNamedOnce(self) -> None:
        """An LMAP on the rfc5213 profile answers a draft MPA with its Local
        Address under type 253: the MPA finds no address, and says why."""
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        foreign = mh.UnknownOption(253, bytes((0, 64)) + socket.inet_pton(socket.AF_INET6,
                                                                           MS_ADDR))
        actions = agent.messageReceived(pba(bu.sequence, options=(foreign,)), LMAP, T0)
        self.assertEqual(events(actions), ["peer.profile-mismatch", "registration.rejected"])
        mismatch, rejected = only(actions, Note)
        self.assertEqual(mismatch.fields["peer"], LMAP)
        self.assertIn("the Local Address of the 'rfc5213' wire profile",
                      mismatch.fields["sign"])
        self.assertIn("rfc5213", rejected.fields["reason"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None and visitor.retryAt is not None
        now = visitor.retryAt
        bu = self.registration(agent.tick(now))
        actions = agent.messageReceived(pba(bu.sequence, options=(foreign,)), LMAP, now)
        self.assertEqual(events(actions), ["registration.rejected"])
        self.assertEqual(agent.counters["peer.profile-mismatch"], 2)
        self.assertEqual(agent.profileMismatches.peers, {LMAP: mismatch.fields["sign"]})

    def test_rfc5213StatusNamed(self) -> None:
        """The rfc5213 profile's "no entry" (153) to a draft MPA's
        confirmation: rejected, and the status named."""
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent))
        actions = agent.messageReceived(
            pba(bu.sequence, status=mh.Status.NOT_LMA_FOR_THIS_MOBILE_NODE, lifetime=0),
            LMAP, T0)
        self.assertEqual(events(actions), ["peer.profile-mismatch", "registration.rejected"])
        self.assertIn("status 153 is 'Binding Cache Entry missing' in the 'rfc5213'",
                      only(actions, Note)[1].fields["reason"])

    def test_ownProfileNoSign(self) -> None:
        agent = makeAgent(profile=mh.RFC5213)
        bu = onlyPbu(self, authenticate(agent))
        actions = agent.messageReceived(
            pba(bu.sequence, status=mh.Status.NOT_LMA_FOR_THIS_MOBILE_NODE, lifetime=0),
            LMAP, T0)
        self.assertNotIn("peer.profile-mismatch", events(actions))


# --- timers ------------------------------------------------------------------


class RetransmissionTests(SynchronousTestCase):
    def test_backOffAndGiveUp(self) -> None:
        agent = makeAgent()
        first = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        sequences = [first.sequence]
        for due in (T0 + 1, T0 + 3, T0 + 7):
            self.assertEqual(agent.nextDeadline(), due)
            self.assertEqual(agent.tick(due - 0.01), [])
            bu = onlyPbu(self, agent.tick(due))
            # A new number each time (RFC 6275 11.8), the same request.
            self.assertTrue(isNewer(bu.sequence, sequences[-1]))
            self.assertEqual(bu.option(mh.LocalAddress), first.option(mh.LocalAddress))
            sequences.append(bu.sequence)
        self.assertEqual(agent.nextDeadline(), T0 + 15)
        actions = agent.tick(T0 + 15)
        self.assertEqual(shape(actions), [])
        self.assertEqual(events(actions), ["registration.given-up"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIs(visitor.state, VisitorState.AWAITING_ADDRESS)
        self.assertIn("4 transmission", visitor.failure or "")
        self.assertEqual(agent.counters["pbu.retransmitted"], 3)
        self.assertEqual(agent.counters["pbu.given-up"], 1)
        self.assertEqual(visitor.describe()["failure"], visitor.failure)
        # Tried again after retryInterval.
        self.assertEqual(agent.nextDeadline(), T0 + 45)
        bu = onlyPbu(self, agent.tick(T0 + 45))
        self.assertEqual(bu.option(mh.LocalAddress), first.option(mh.LocalAddress))
        self.assertIs(visitor.state, VisitorState.REGISTERING)

    def test_ackForEarlierTransmission(self) -> None:
        agent = makeAgent()
        first = onlyPbu(self, authenticate(agent, makeProfile(localAddress=MS_ADDR)))
        onlyPbu(self, agent.tick(T0 + 1))
        actions = agent.messageReceived(pba(first.sequence, address=MS_ADDR), LMAP, T0 + 1.5)
        self.assertEqual(only(actions, AddTunnel), [AddTunnel(tunnel())])
        # Counted from the first transmission.
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertEqual(visitor.expires, T0 + 3600)

    def test_noRetries(self) -> None:
        agent = makeAgent(maxRetries=0)
        onlyPbu(self, authenticate(agent))
        self.assertEqual(events(agent.tick(T0 + 1)), ["registration.given-up"])

    def test_backOffCapped(self) -> None:
        agent = makeAgent(maxRetries=10)
        onlyPbu(self, authenticate(agent))
        now = T0
        intervals = []
        while True:
            due = agent.nextDeadline()
            assert due is not None
            intervals.append(due - now)
            now = due
            if events(agent.tick(now)):
                break
        self.assertEqual(intervals, [1, 2, 4, 8, 16, 32, 32, 32, 32, 32, 32])


class RefreshTests(SynchronousTestCase):
    def test_refreshAtFraction(self) -> None:
        agent = makeAgent()
        visitor = register(self, agent)
        self.assertEqual(agent.nextDeadline(), T0 + 2700)
        self.assertEqual(agent.tick(T0 + 2699), [])
        bu = onlyPbu(self, agent.tick(T0 + 2700))
        self.assertEqual(bu.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))
        self.assertEqual(bu.lifetime, 3600)
        assert visitor.pending is not None
        self.assertTrue(visitor.pending.refresh)
        self.assertIs(visitor.state, VisitorState.REGISTERED)
        actions = agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0 + 2700.1)
        self.assertEqual(actions, [])
        self.assertEqual(visitor.expires, T0 + 2700 + 3600)
        self.assertEqual(agent.counters["binding.refreshed"], 1)
        self.assertEqual(agent.nextDeadline(), T0 + 2700 + 2700)

    def test_refreshAfterConfirmationUsesLocalAddress(self) -> None:
        agent = makeAgent()
        bu = onlyPbu(self, authenticate(agent))
        agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0)
        refresh = onlyPbu(self, agent.tick(T0 + 2700))
        self.assertIsNone(refresh.option(mh.BindingCacheConfirmation))
        self.assertEqual(refresh.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))

    def test_shorterGrantedLifetime(self) -> None:
        agent = makeAgent()
        register(self, agent, granted=400)
        self.assertEqual(agent.nextDeadline(), T0 + 300)

    def test_rejectedRefreshUnregisters(self) -> None:
        """Issue 13, rule 2: a refused refresh leaves no registered visitor and
        no tunnel; a retry that is accepted registers it again."""
        agent = makeAgent()
        visitor = register(self, agent)
        bu = onlyPbu(self, agent.tick(T0 + 2700))
        actions = agent.messageReceived(
            pba(bu.sequence, status=mh.Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED, lifetime=0),
            LMAP, T0 + 2700.1,
        )
        self.assertEqual(shape(actions), [f"remove {MS_ADDR} {IFACE}"])
        self.assertEqual(events(actions), ["visitor.unregistered", "registration.rejected"])
        self.assertIs(visitor.state, VisitorState.AWAITING_ADDRESS)
        self.assertIsNone(visitor.tunnel)
        self.assertEqual(agent.counters["visitor.unregistered"], 1)
        self.assertEqual(agent.nextDeadline(), T0 + 2700.1 + 30)
        retry = onlyPbu(self, agent.tick(T0 + 2730.1))
        self.assertEqual(retry.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))
        actions = agent.messageReceived(pba(retry.sequence, address=MS_ADDR), LMAP, T0 + 2731)
        self.assertEqual(shape(actions), [f"add {MS_ADDR} {IFACE}"])
        self.assertIs(visitor.state, VisitorState.REGISTERED)

    def test_rejectedRefreshStillExpires(self) -> None:
        agent = makeAgent()
        register(self, agent)
        now = T0 + 2700
        bu = onlyPbu(self, agent.tick(now))
        agent.messageReceived(pba(bu.sequence, status=129, lifetime=0), LMAP, now)
        while True:
            deadline = agent.nextDeadline()
            assert deadline is not None
            actions = agent.tick(deadline)
            for sent in only(actions, SendMessage):
                assert isinstance(sent.message, mh.BindingUpdate)
                agent.messageReceived(
                    pba(sent.message.sequence, status=129, lifetime=0), LMAP, deadline
                )
            if "visitor.expired" in events(actions):
                break
        self.assertEqual(deadline, T0 + 3600)
        self.assertIsNone(agent.visitors.byMac(MS_MAC))

    def test_refreshGivesUpThenExpires(self) -> None:
        agent = makeAgent()
        visitor = register(self, agent)
        onlyPbu(self, agent.tick(T0 + 2700))
        for due in (T0 + 2701, T0 + 2703, T0 + 2707):
            onlyPbu(self, agent.tick(due))
        self.assertEqual(events(agent.tick(T0 + 2715)), ["registration.given-up"])
        # The binding still holds: tried again half-way to its end.
        self.assertIs(visitor.state, VisitorState.REGISTERED)
        self.assertEqual(visitor.retryAt, T0 + 2715 + (3600 - 2715) / 2)
        retryAt = visitor.retryAt
        assert retryAt is not None
        self.assertEqual(agent.nextDeadline(), retryAt)
        onlyPbu(self, agent.tick(retryAt))
        now = retryAt
        while True:
            deadline = agent.nextDeadline()
            assert deadline is not None
            if deadline >= T0 + 3600:
                break
            agent.tick(deadline)
            now = deadline
        self.assertEqual(agent.nextDeadline(), T0 + 3600)
        self.assertLess(now, T0 + 3600)
        actions = agent.tick(T0 + 3600)
        self.assertEqual(shape(actions), [f"remove {MS_ADDR} {IFACE}"])
        self.assertEqual(events(actions), ["visitor.expired"])
        self.assertIsNone(agent.visitors.byMac(MS_MAC))
        self.assertEqual(agent.counters["binding.expired"], 1)
        self.assertIsNone(agent.nextDeadline())


# --- revocation and the rest -----------------------------------------------------


class RevocationTests(SynchronousTestCase):
    def bri(self, sequence: int = 7, *options: mh.MobilityOption,
            globalRevocation: bool = False) -> mh.BindingRevocationIndication:
        return mh.BindingRevocationIndication(
            sequence, mh.RevocationTrigger.INTER_MAG_HANDOVER_UNKNOWN, options, proxy=True,
            globalRevocation=globalRevocation,
        )

    def test_revokedByIdentifier(self) -> None:
        agent = makeAgent()
        register(self, agent)
        actions = agent.messageReceived(
            self.bri(7, mh.MobileNodeIdentifier(NAI), mh.LocalAddress(MS_ADDR, 64)), LMAP, T0 + 5
        )
        # A handover (trigger 4, unknown): what the MS may have missed goes back first.
        self.assertEqual(shape(actions), [f"hand back {MS_ADDR}", f"remove {MS_ADDR} {IFACE}",
                                          f"send BindingRevocationAck {LMAP}"])
        bra = only(actions, SendMessage)[0].message
        assert isinstance(bra, mh.BindingRevocationAck)
        self.assertEqual((bra.sequence, bra.status, bra.proxy), (7, 0, True))
        self.assertEqual(events(actions), ["visitor.revoked"])
        self.assertIsNone(agent.visitors.byMac(MS_MAC))
        self.assertIsNone(agent.visitors.byNai(NAI))
        self.assertIsNone(agent.nextDeadline())
        # Its next frame is a new attach (it came back), served at once with
        # the answer it got before (rule 3: it moved away, so it may).
        self.assertEqual(shape(agent.frameReceived(IFACE, routerSolicitation(), T0 + 6)),
                         [f"authenticate {MS_MAC}", f"send BindingUpdate {LMAP}"])
        self.assertEqual(agent.counters["aaa.reused"], 1)

    def test_revokedAdministratively(self) -> None:
        """Revoked for a reason of its own, not a handover: its next attach
        waits for the AAA server."""
        agent = makeAgent()
        register(self, agent)
        bri = mh.BindingRevocationIndication(
            7, mh.RevocationTrigger.ADMINISTRATIVE_REASON, (mh.MobileNodeIdentifier(NAI),),
            proxy=True)
        agent.messageReceived(bri, LMAP, T0 + 5)
        self.assertEqual(shape(agent.frameReceived(IFACE, routerSolicitation(), T0 + 6)),
                         [f"authenticate {MS_MAC}"])
        self.assertEqual(agent.counters["aaa.reused"], 0)

    def test_revokedByAddress(self) -> None:
        agent = makeAgent()
        register(self, agent)
        actions = agent.messageReceived(self.bri(8, mh.LocalAddress(MS_ADDR, 64)), LMAP, T0)
        self.assertEqual(only(actions, RemoveTunnel), [RemoveTunnel(tunnel())])
        bra = only(actions, SendMessage)[0].message
        assert isinstance(bra, mh.BindingRevocationAck)
        self.assertEqual(bra.status, mh.RevocationStatus.SUCCESS)

    def test_unknownBinding(self) -> None:
        agent = makeAgent()
        register(self, agent)
        actions = agent.messageReceived(self.bri(9, mh.MobileNodeIdentifier(NAI2)), LMAP, T0)
        self.assertEqual(shape(actions), [f"send BindingRevocationAck {LMAP}"])
        bra = only(actions, SendMessage)[0].message
        assert isinstance(bra, mh.BindingRevocationAck)
        self.assertEqual((bra.sequence, bra.status), (9, 128))
        self.assertIsNotNone(agent.visitors.byMac(MS_MAC))
        self.assertEqual(agent.counters["bri.unknown"], 1)

    def test_otherLmapCannotRevoke(self) -> None:
        agent = makeAgent()
        register(self, agent, makeProfile(localAddress=MS_ADDR))
        authenticate(agent, makeProfile(nai=NAI2, lmapAddress=LMAP2), mac=MS2_MAC)
        actions = agent.messageReceived(self.bri(9, mh.MobileNodeIdentifier(NAI)), LMAP2, T0)
        bra = only(actions, SendMessage)[0].message
        assert isinstance(bra, mh.BindingRevocationAck)
        self.assertEqual(bra.status, 128)
        self.assertIsNotNone(agent.visitors.byNai(NAI))

    def test_unknownSourceDropped(self) -> None:
        agent = makeAgent()
        register(self, agent)
        self.assertEqual(
            agent.messageReceived(self.bri(9, mh.MobileNodeIdentifier(NAI)), STRANGER, T0), []
        )
        self.assertEqual(agent.counters["bri.unknown-source"], 1)
        self.assertIsNotNone(agent.visitors.byNai(NAI))

    def test_global(self) -> None:
        agent = makeAgent()
        register(self, agent)
        profile2 = makeProfile(nai=NAI2, localAddress=OTHER_ADDR)
        register(self, agent, profile2, mac=MS2_MAC)
        actions = agent.messageReceived(self.bri(10, globalRevocation=True), LMAP, T0)
        self.assertEqual(len(only(actions, RemoveTunnel)), 2)
        bra = only(actions, SendMessage)[0].message
        assert isinstance(bra, mh.BindingRevocationAck)
        self.assertEqual((bra.status, bra.globalRevocation), (0, True))
        self.assertEqual(len(agent.visitors), 0)

    def test_revocationStopsDeregistration(self) -> None:
        agent = makeAgent()
        register(self, agent)
        agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 1)
        actions = agent.messageReceived(self.bri(11, mh.MobileNodeIdentifier(NAI)), LMAP, T0 + 1)
        bra = only(actions, SendMessage)[0].message
        assert isinstance(bra, mh.BindingRevocationAck)
        self.assertEqual(bra.status, 0)
        self.assertEqual(agent.describe(), [])
        self.assertIsNone(agent.nextDeadline())

    def test_heartbeat(self) -> None:
        agent = makeAgent(restartCounter=9)
        actions = agent.messageReceived(mh.Heartbeat(42), LMAP, T0)
        self.assertEqual(actions, [SendMessage(mh.Heartbeat(
            42, response=True, options=(mh.RestartCounter(9),)), LMAP)])
        self.assertEqual(agent.messageReceived(mh.Heartbeat(43), STRANGER, T0), [])
        self.assertEqual(agent.messageReceived(mh.Heartbeat(44, response=True), LMAP, T0), [])
        self.assertEqual(agent.counters["heartbeat.refused"], 1)
        self.assertEqual(agent.counters["heartbeat.unmatched"], 1)

    def test_lmapRestarted(self) -> None:
        """Rule 12: from start the MPA asks its LMAP at once; when the LMAP's
        Restart Counter changes, every visitor registered with it is
        registered again at once, and stays registered when it is accepted."""
        agent = makeAgent(heartbeat=HeartbeatPolicy(interval=10, timeout=2),
                          restartCounter=3)
        [request] = only(agent.start(T0), SendMessage)
        assert isinstance(request.message, mh.Heartbeat)
        self.assertEqual((request.destination, request.message.response), (LMAP, False))
        self.assertEqual(request.message.option(mh.RestartCounter), mh.RestartCounter(3))
        agent.messageReceived(mh.Heartbeat(request.message.sequence, response=True,
                                           options=(mh.RestartCounter(100),)), LMAP, T0)
        visitor = register(self, agent, now=T0 + 1)
        # The LMAP restarts and asks: its counter is one more.
        actions = agent.messageReceived(mh.Heartbeat(1, options=(mh.RestartCounter(101),)),
                                        LMAP, T0 + 20)
        pbus = [a.message for a in only(actions, SendMessage)
                if isinstance(a.message, mh.BindingUpdate)]
        self.assertEqual(len(pbus), 1)
        self.assertEqual(pbus[0].option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))
        self.assertIn("mpa.lmap-restarted", events(actions))
        self.assertEqual(agent.counters["registration.lmap-restarted"], 1)
        agent.messageReceived(pba(pbus[0].sequence, address=MS_ADDR), LMAP, T0 + 20.01)
        self.assertIs(visitor.state, VisitorState.REGISTERED)
        self.assertEqual(agent.heartbeats.describe(T0 + 21)[0]["restarts"], 1)

    def test_otherMessages(self) -> None:
        agent = makeAgent()
        self.assertEqual(agent.messageReceived(mh.BindingUpdate(1, 10), LMAP, T0), [])
        self.assertEqual(agent.counters["ignored.binding-update"], 1)
        self.assertEqual(events(agent.messageReceived(mh.BindingError(2), LMAP, T0)),
                         ["binding-error.received"])
        self.assertEqual(agent.malformed(mh.BadChecksum("x"), LMAP, T0), [])
        self.assertEqual(agent.malformed(mh.UnknownMessageType(99), LMAP, T0), [])
        self.assertEqual(agent.counters["malformed.bad-checksum"], 1)
        self.assertEqual(agent.counters["malformed.unknown-mh-type"], 1)


class LeavingTests(SynchronousTestCase):
    def test_detachDeregisters(self) -> None:
        agent = makeAgent()
        register(self, agent)
        actions = agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 10)
        self.assertEqual(shape(actions),
                         [f"send BindingUpdate {LMAP}", f"remove {MS_ADDR} {IFACE}"])
        bu = onlyPbu(self, actions)
        self.assertEqual(bu.lifetime, 0)
        self.assertTrue(bu.proxy)
        self.assertEqual(bu.option(mh.MobileNodeIdentifier), mh.MobileNodeIdentifier(NAI))
        self.assertEqual(bu.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))
        self.assertEqual(events(actions), ["visitor.detached"])
        self.assertIsNone(agent.visitors.byMac(MS_MAC))
        self.assertEqual(len(agent.visitors), 0)
        # Retransmitted until acknowledged; the listing shows it meanwhile.
        (entry,) = agent.describe()
        self.assertEqual(entry["state"], "deregistering")
        bu2 = onlyPbu(self, agent.tick(T0 + 11))
        self.assertEqual(bu2.lifetime, 0)
        self.assertEqual(
            agent.messageReceived(mh.ProxyBindingAck(0, bu2.sequence, 0), LMAP, T0 + 11), []
        )
        self.assertEqual(agent.counters["pba.deregistration"], 1)
        self.assertIsNone(agent.nextDeadline())
        self.assertEqual(agent.describe(), [])

    def test_tunnelFailedDeregistersAndHoldsDown(self) -> None:
        agent = makeAgent(unavailableHoldDown=5.0)
        visitor = register(self, agent)
        binding = visitor.tunnel
        assert binding is not None
        actions = agent.tunnelFailed(binding, OSError("table full"), T0 + 1)
        # The LMAP's binding is let go (its state is true again); the removal of a
        # tunnel never installed is a no-op for a data plane.
        self.assertEqual(shape(actions),
                         [f"send BindingUpdate {LMAP}", f"remove {MS_ADDR} {IFACE}"])
        self.assertEqual(onlyPbu(self, actions).lifetime, 0)
        (note,) = only(actions, Note)
        self.assertEqual(note.event, "visitor.tunnel-failed")
        self.assertIn("table full", note.fields["reason"])
        self.assertEqual(agent.counters["visitor.tunnel-failed"], 1)
        # Held down: its frames get nothing (no RA, no new registration)...
        held = agent.visitors.byMac(MS_MAC)
        assert held is not None
        self.assertIs(held.state, VisitorState.REJECTED)
        self.assertIn("table full", held.failure or "")
        self.assertEqual(agent.frameReceived(IFACE, routerSolicitation(), T0 + 2), [])
        # ... until the hold-down ends: then its next frame starts over.
        agent.tick(T0 + 7)
        self.assertIsNone(agent.visitors.byMac(MS_MAC))
        self.assertEqual(len(only(agent.frameReceived(IFACE, routerSolicitation(), T0 + 8),
                                  Authenticate)), 1)

    def test_tunnelFailedStale(self) -> None:
        agent = makeAgent()
        visitor = register(self, agent)
        binding = visitor.tunnel
        assert binding is not None
        agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 1)
        self.assertEqual(agent.tunnelFailed(binding, OSError("late"), T0 + 2), [])
        self.assertEqual(agent.counters["tunnel.failed.stale"], 1)

    def test_deregistrationGivesUp(self) -> None:
        agent = makeAgent(maxRetries=1)
        register(self, agent)
        agent.detach(DetachEvent(IFACE, MS_MAC), T0)
        onlyPbu(self, agent.tick(T0 + 1))
        self.assertEqual(events(agent.tick(T0 + 3)), ["deregistration.given-up"])
        self.assertIsNone(agent.nextDeadline())

    def test_detachWithoutBinding(self) -> None:
        agent = makeAgent()
        attach(agent)
        actions = agent.detach(DetachEvent(IFACE, MS_MAC), T0)
        self.assertEqual(shape(actions), [])
        self.assertEqual(events(actions), ["visitor.detached"])
        self.assertEqual(len(agent.visitors), 0)
        # The AAA answer that comes later finds nobody.
        self.assertEqual(agent.authenticated(MS_MAC, makeProfile(), T0), [])

    def test_detachWhileRegistering(self) -> None:
        agent = makeAgent()
        authenticate(agent)
        # A confirmation may have moved the binding here: deregister by NAI.
        bu = onlyPbu(self, agent.detach(DetachEvent(IFACE, MS_MAC), T0))
        self.assertEqual(bu.lifetime, 0)
        self.assertIsNone(bu.option(mh.LocalAddress))
        self.assertIsNone(bu.option(mh.BindingCacheConfirmation))

    def test_detachUnknownOrStale(self) -> None:
        agent = makeAgent()
        self.assertEqual(agent.detach(DetachEvent(IFACE, MS_MAC), T0), [])
        register(self, agent)
        self.assertEqual(agent.detach(DetachEvent(IFACE2, MS_MAC), T0), [])
        self.assertEqual(agent.counters["detach.unknown"], 1)
        self.assertEqual(agent.counters["detach.stale"], 1)
        self.assertIsNotNone(agent.visitors.byMac(MS_MAC))

    def test_linkDown(self) -> None:
        agent = makeAgent()
        register(self, agent)
        register(self, agent, makeProfile(nai=NAI2, localAddress=OTHER_ADDR), mac=MS2_MAC,
                 interface=IFACE2)
        attach(agent, mac="02:00:00:00:00:09")
        actions = agent.linkDown(IFACE, T0 + 1)
        self.assertEqual(shape(actions),
                         [f"send BindingUpdate {LMAP}", f"remove {MS_ADDR} {IFACE}"])
        self.assertEqual(events(actions)[-1], "link.down")
        self.assertEqual([v.mac for v in agent.visitors], [MS2_MAC])

    def test_reattachCancelsDeregistration(self) -> None:
        agent = makeAgent(reuseAuthorization=0)
        register(self, agent)
        agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 1)
        attach(agent, now=T0 + 1.5)
        bu = onlyPbu(self, agent.authenticated(MS_MAC, makeProfile(localAddress=MS_ADDR),
                                               T0 + 1.5))
        self.assertEqual(bu.lifetime, 3600)
        self.assertEqual(agent.counters["deregistration.cancelled"], 1)
        # Only the new registration is retransmitted.
        retransmitted = onlyPbu(self, agent.tick(T0 + 2.5))
        self.assertEqual(retransmitted.lifetime, 3600)
        self.assertEqual(len(agent.describe()), 1)

    def test_sessionTimeout(self) -> None:
        agent = makeAgent()
        register(self, agent, makeProfile(localAddress=MS_ADDR, sessionTimeout=600))
        self.assertEqual(agent.nextDeadline(), T0 + 600)
        actions = agent.tick(T0 + 600)
        bu = onlyPbu(self, actions)
        self.assertEqual(bu.lifetime, 0)
        self.assertEqual(events(actions), ["visitor.session-ended"])
        self.assertIsNone(agent.visitors.byMac(MS_MAC))

    def test_stop(self) -> None:
        agent = makeAgent()
        register(self, agent)
        register(self, agent, makeProfile(nai=NAI2, localAddress=OTHER_ADDR), mac=MS2_MAC)
        attach(agent, mac="02:00:00:00:00:09")
        actions = agent.stop(T0 + 5)
        self.assertEqual(
            sorted(shape(actions)),
            sorted([f"send BindingUpdate {LMAP}", f"remove {MS_ADDR} {IFACE}",
                    f"send BindingUpdate {LMAP}", f"remove {OTHER_ADDR} {IFACE}"]),
        )
        for send in only(actions, SendMessage):
            assert isinstance(send.message, mh.BindingUpdate)
            self.assertEqual(send.message.lifetime, 0)
        self.assertEqual(events(actions), ["mpa.stopped"])
        self.assertEqual(len(agent.visitors), 0)
        self.assertIsNone(agent.nextDeadline())
        self.assertEqual(agent.tick(T0 + 10000), [])


class DepartingTests(SynchronousTestCase):
    """Rule 10: a registered visitor reported gone departs first."""

    def departed(self) -> tuple[MobilityProxyAgent, list[Action]]:
        agent = makeAgent(departureHold=DEPARTURE_HOLD)
        register(self, agent)
        return agent, agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 10)

    def test_departs(self) -> None:
        """No PBU, the tunnel kept, the downlink held; the listing shows until when."""
        agent, actions = self.departed()
        self.assertEqual(shape(actions), [f"hold {MS_ADDR}"])
        self.assertEqual(only(actions, HoldDownlink), [HoldDownlink(tunnel())])
        self.assertEqual(events(actions), ["visitor.departing"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertEqual(visitor.departing, T0 + 10 + DEPARTURE_HOLD)
        self.assertEqual(agent.nextDeadline(), T0 + 10 + DEPARTURE_HOLD)
        self.assertNotEqual(agent.describe()[0]["departing"], "-")
        # A second report changes nothing.
        self.assertEqual(agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 10.1), [])
        self.assertEqual(agent.counters["detach.repeated"], 1)

    def test_handedBack(self) -> None:
        """A handover's revocation hands the held packets back before the tunnel goes."""
        agent, _ = self.departed()
        bri = mh.BindingRevocationIndication(
            7, mh.RevocationTrigger.INTER_MAG_HANDOVER_SAME_ACCESS_TYPE,
            (mh.MobileNodeIdentifier(NAI),), proxy=True)
        actions = agent.messageReceived(bri, LMAP, T0 + 10.02)
        self.assertEqual(shape(actions), [f"hand back {MS_ADDR}", f"remove {MS_ADDR} {IFACE}",
                                          f"send BindingRevocationAck {LMAP}"])
        self.assertEqual(agent.counters["visitor.handed-back"], 1)
        self.assertIsNone(agent.visitors.byMac(MS_MAC))
        self.assertIsNone(agent.nextDeadline())

    def test_revokedOtherwise(self) -> None:
        """Revoked for another reason: nothing goes back, the removal drops it."""
        agent, _ = self.departed()
        bri = mh.BindingRevocationIndication(
            7, mh.RevocationTrigger.ADMINISTRATIVE_REASON, (mh.MobileNodeIdentifier(NAI),),
            proxy=True)
        actions = agent.messageReceived(bri, LMAP, T0 + 10.02)
        self.assertEqual(shape(actions), [f"remove {MS_ADDR} {IFACE}",
                                          f"send BindingRevocationAck {LMAP}"])
        self.assertEqual(agent.counters["visitor.handed-back"], 0)

    def test_leavesWhenTimeIsUp(self) -> None:
        """No revocation in time: it leaves as a detach always did."""
        agent, _ = self.departed()
        self.assertEqual(agent.tick(T0 + 10 + DEPARTURE_HOLD - 0.01), [])
        actions = agent.tick(T0 + 10 + DEPARTURE_HOLD)
        self.assertEqual(shape(actions),
                         [f"send BindingUpdate {LMAP}", f"remove {MS_ADDR} {IFACE}"])
        self.assertEqual(onlyPbu(self, actions).lifetime, 0)
        (note,) = only(actions, Note)
        self.assertEqual(note.event, "visitor.detached")
        self.assertIn("departure_hold", note.fields["reason"])
        self.assertIsNone(agent.visitors.byMac(MS_MAC))

    def test_returns(self) -> None:
        """An attach report of the MS here again: what was held is delivered,
        and it stays registered with no PBU."""
        agent, _ = self.departed()
        actions = agent.attach(AttachEvent(IFACE, MS_MAC), T0 + 10.1)
        self.assertEqual(shape(actions), [f"deliver {MS_ADDR}"])
        self.assertEqual(events(actions), ["visitor.returned"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIsNone(visitor.departing)
        self.assertIs(visitor.state, VisitorState.REGISTERED)
        # No departure timer left: nothing until the refresh.
        self.assertEqual(agent.tick(T0 + 11), [])

    def test_framesDoNotReturn(self) -> None:
        """A frame the MS sent before it left, arriving after the report, is
        answered as usual and ends nothing."""
        agent, _ = self.departed()
        actions = agent.frameReceived(IFACE, routerSolicitation(), T0 + 10.001)
        self.assertNotIn("visitor.returned", events(actions))
        self.assertEqual(only(actions, ReleaseDownlink), [])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIsNotNone(visitor.departing)

    def test_onlyRegisteredDepart(self) -> None:
        """A visitor with no binding yet leaves at once; so does every visitor
        with departureHold 0."""
        agent = makeAgent(departureHold=DEPARTURE_HOLD)
        attach(agent)
        self.assertEqual(events(agent.detach(DetachEvent(IFACE, MS_MAC), T0)),
                         ["visitor.detached"])
        agent = makeAgent(departureHold=0)
        register(self, agent)
        self.assertEqual(shape(agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 1))[0],
                         f"send BindingUpdate {LMAP}")

    def test_linkDownLeavesAtOnce(self) -> None:
        """A departing visitor whose link goes down (or the operator
        deregisters) leaves at once: its tunnel's removal drops what was held."""
        agent, _ = self.departed()
        actions = agent.linkDown(IFACE, T0 + 10.1)
        self.assertEqual(shape(actions),
                         [f"send BindingUpdate {LMAP}", f"remove {MS_ADDR} {IFACE}"])


class ReusedAnswerTests(SynchronousTestCase):
    """Rule 3: a recent Access-Accept serves the same MS attaching again at
    once; the AAA server's answer to the new request confirms, changes or
    withdraws it."""

    def returned(self, agent: MobilityProxyAgent, profile: Profile | None = None,
                 now: float = T0 + 10, interface: str = IFACE) -> list[Action]:
        """Registered, detached (the MS moved away), attached again at C{now}."""
        register(self, agent, profile)
        leave = onlyPbu(self, agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 1))
        agent.messageReceived(pba(leave.sequence, lifetime=0), LMAP, T0 + 1)
        return attach(agent, interface=interface, now=now)

    def test_servedAtOnce(self) -> None:
        agent = makeAgent()
        actions = self.returned(agent)
        self.assertEqual(shape(actions), [f"authenticate {MS_MAC}", f"send BindingUpdate {LMAP}"])
        bu = onlyPbu(self, actions)
        self.assertEqual(bu.option(mh.LocalAddress), mh.LocalAddress(MS_ADDR, 64))
        note = [a for a in only(actions, Note) if a.event == "visitor.authenticated"][0]
        self.assertTrue(note.fields["reused"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertTrue(visitor.confirming)
        self.assertEqual(agent.counters["aaa.reused"], 1)
        # The same answer again: confirmed, nothing to do.
        self.assertEqual(agent.authenticated(MS_MAC, makeProfile(localAddress=MS_ADDR),
                                             T0 + 10.002), [])
        self.assertFalse(visitor.confirming)
        self.assertEqual(agent.counters["aaa.confirmed"], 1)
        agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0 + 10.003)
        self.assertIs(visitor.state, VisitorState.REGISTERED)

    def test_confirmedBeforeTheAck(self) -> None:
        """The PBA may come before or after the confirmation: here after."""
        agent = makeAgent()
        bu = onlyPbu(self, self.returned(agent))
        agent.authenticated(MS_MAC, makeProfile(localAddress=MS_ADDR), T0 + 10.001)
        actions = agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0 + 10.002)
        self.assertIn(f"add {MS_ADDR} {IFACE}", shape(actions))

    def test_withdrawn(self) -> None:
        """The AAA server rejects the new request: the visitor leaves (a
        deregistration), held down like any rejected MS; the answer is gone."""
        agent = makeAgent()
        bu = onlyPbu(self, self.returned(agent))
        agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0 + 10.001)
        actions = agent.authenticationFailed(MS_MAC, AccessRejected("account closed"),
                                             T0 + 10.002)
        self.assertEqual(shape(actions), [f"send BindingUpdate {LMAP}",
                                          f"remove {MS_ADDR} {IFACE}"])
        self.assertEqual(onlyPbu(self, actions).lifetime, 0)
        self.assertEqual(events(actions), ["visitor.withdrawn"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertIs(visitor.state, VisitorState.REJECTED)
        self.assertEqual(agent.counters["visitor.withdrawn"], 1)
        self.assertEqual(len(agent.authorizations), 0)
        # After the hold-down, the next attach asks the AAA server and waits.
        agent.tick(T0 + 10.002 + agent.rejectHoldDown)
        self.assertEqual(shape(attach(agent, now=T0 + 50)), [f"authenticate {MS_MAC}"])

    def test_unconfirmed(self) -> None:
        """No AAA server answers the new request: the visitor stays."""
        agent = makeAgent()
        self.returned(agent)
        actions = agent.authenticationFailed(MS_MAC, AAAUnavailable("no server"), T0 + 12)
        self.assertEqual(shape(actions), [])
        self.assertEqual(events(actions), ["visitor.unconfirmed"])
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertFalse(visitor.confirming)
        self.assertEqual(agent.counters["aaa.reuse-unconfirmed"], 1)

    def test_changedProfile(self) -> None:
        """Another profile: the visitor leaves and attaches again with it."""
        agent = makeAgent()
        self.returned(agent)
        changed = makeProfile(localAddress=OTHER_ADDR)
        actions = agent.authenticated(MS_MAC, changed, T0 + 10.002)
        self.assertEqual(shape(actions), [f"send BindingUpdate {LMAP}",
                                          f"send BindingUpdate {LMAP}"])
        leave, again = only(actions, SendMessage)
        assert isinstance(leave.message, mh.BindingUpdate)
        assert isinstance(again.message, mh.BindingUpdate)
        self.assertEqual(leave.message.lifetime, 0)
        self.assertEqual(again.message.option(mh.LocalAddress), mh.LocalAddress(OTHER_ADDR, 64))
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertEqual((visitor.profile, visitor.confirming), (changed, False))
        self.assertEqual(agent.counters["visitor.profile-changed"], 1)

    def test_bounds(self) -> None:
        """Not past aaa.reuse, not past the Session-Timeout (whose end stays
        the first answer's), not for another link or with reuse 0."""
        agent = makeAgent(reuseAuthorization=5)
        self.assertEqual(shape(self.returned(agent, now=T0 + 6)), [f"authenticate {MS_MAC}"])
        agent = makeAgent(reuseAuthorization=0)
        self.assertEqual(shape(self.returned(agent)), [f"authenticate {MS_MAC}"])
        agent = makeAgent()
        self.assertEqual(shape(self.returned(agent, interface=IFACE2)),
                         [f"authenticate {MS_MAC}"])
        agent = makeAgent()
        timed = makeProfile(localAddress=MS_ADDR, sessionTimeout=8)
        self.assertEqual(shape(self.returned(agent, timed, now=T0 + 9)),
                         [f"authenticate {MS_MAC}"])
        agent = makeAgent()
        self.returned(agent, timed, now=T0 + 5)
        visitor = agent.visitors.byMac(MS_MAC)
        assert visitor is not None
        self.assertEqual(visitor.sessionExpires, T0 + 8)

    def test_throttled(self) -> None:
        """A visitor whose reused answer awaits its check counts against
        maxAuthenticating, like an Access-Request in flight."""
        agent = makeAgent(maxAuthenticating=1)
        self.returned(agent)
        self.assertEqual(shape(attach(agent, mac=MS2_MAC, now=T0 + 11)), [])
        self.assertEqual(agent.counters["attach.throttled"], 1)
        agent.authenticated(MS_MAC, makeProfile(localAddress=MS_ADDR), T0 + 11)
        self.assertEqual(shape(attach(agent, mac=MS2_MAC, now=T0 + 12)),
                         [f"authenticate {MS2_MAC}"])

    def test_operatorDeregisterForgets(self) -> None:
        agent = makeAgent()
        register(self, agent)
        agent.deregister(T0 + 1, mac=MS_MAC)
        self.assertEqual(shape(attach(agent, now=T0 + 2)), [f"authenticate {MS_MAC}"])


class RecentAuthorizationsTests(SynchronousTestCase):
    def test_leastRecentlyUsedGoFirst(self) -> None:
        recent = RecentAuthorizations(reuse=60, limit=2)
        requests = [AccessRequest(f"02:00:00:00:00:0{i}", IFACE) for i in range(3)]
        for i, request in enumerate(requests):
            recent.remember(request, makeProfile(), T0 + i)
        self.assertEqual(len(recent), 2)
        self.assertIsNone(recent.recall(requests[0], T0 + 3))
        self.assertEqual(recent.recall(requests[2], T0 + 3), (makeProfile(), T0 + 2))
        self.assertIsNone(recent.recall(requests[2], T0 + 62))
        self.assertEqual(len(recent), 1)
        recent.reuse = 0  # a reload turned it off
        self.assertIsNone(recent.recall(requests[1], T0 + 3))


class MoveAndReplaceTests(SynchronousTestCase):
    def test_moveToAnotherAccessLink(self) -> None:
        agent = makeAgent()
        visitor = register(self, agent)
        actions = agent.frameReceived(IFACE2, udpFrame(MS_ADDR), T0 + 1)
        self.assertEqual(shape(actions), [f"remove {MS_ADDR} {IFACE}", f"add {MS_ADDR} {IFACE2}",
                                          f"frame RouterAdvertisement {IFACE2}"])
        self.assertEqual(visitor.interface, IFACE2)
        self.assertEqual(visitor.tunnel, tunnel(interface=IFACE2))

    def test_otherNaiOnSameMac(self) -> None:
        agent = makeAgent()
        register(self, agent)
        actions = agent.attach(AttachEvent(IFACE, MS_MAC, NAI2), T0 + 1)
        self.assertEqual(shape(actions), [f"send BindingUpdate {LMAP}",
                                          f"remove {MS_ADDR} {IFACE}", f"authenticate {MS_MAC}"])

    def test_sameNaiFromAnotherMac(self) -> None:
        agent = makeAgent()
        register(self, agent)
        attach(agent, mac=MS2_MAC)
        actions = agent.authenticated(MS2_MAC, makeProfile(localAddress=MS_ADDR), T0 + 1)
        self.assertEqual(shape(actions)[0], f"remove {MS_ADDR} {IFACE}")
        self.assertIn("visitor.replaced", events(actions))
        self.assertIsNone(agent.visitors.byMac(MS_MAC))
        visitor = agent.visitors.byNai(NAI)
        assert visitor is not None
        self.assertEqual(visitor.mac, MS2_MAC)


class ListingTests(SynchronousTestCase):
    def test_describe(self) -> None:
        agent = makeAgent()
        register(self, agent, makeProfile(localAddress=MS_ADDR, dhcpServer="2001:db8:d::1"))
        attach(agent, mac=MS2_MAC, now=T0 + 1)
        listing = agent.describe()
        self.assertEqual([e["mac"] for e in listing], [MS_MAC, MS2_MAC])
        entry = listing[0]
        for value in entry.values():
            self.assertIsInstance(value, str)
        self.assertEqual(entry["nai"], NAI.decode())
        self.assertEqual(entry["state"], "registered")
        self.assertEqual(entry["localAddress"], MS_ADDR)
        self.assertEqual(entry["localNetworkPrefix"], str(LNP))
        self.assertEqual(entry["lmapAddress"], LMAP)
        self.assertEqual(entry["virtualLmapMac"], VMAC)
        self.assertEqual(entry["virtualLmapLinkLocal"], VLL)
        self.assertEqual(entry["tunnelSource"], MPA)
        self.assertEqual(entry["tunnelDestination"], LMAP)
        self.assertEqual(entry["lifetime"], "3600")
        self.assertEqual(entry["dhcpServer"], "2001:db8:d::1")
        self.assertEqual(entry["expires"], f"{T0 + 3600:.3f}")
        self.assertEqual(entry["pendingKind"], "-")
        self.assertEqual(entry["interface"], IFACE)
        self.assertEqual(listing[1]["state"], "authenticating")
        self.assertEqual(listing[1]["nai"], "-")
        self.assertEqual(agent.visitors.describe(), listing)


HNP = "2001:db8:100:1::"
HNP_ADDR = nd.addressFromMac(HNP, MS_MAC)
MS_LLID = mh.MobileNodeLinkLayerIdentifier(bytes.fromhex(MS_MAC.replace(":", "")))


def perNodePba(sequence: int, prefix: str | None = HNP, length: int = 64,
               lifetime: int = 3600, status: int = 0) -> mh.BindingAck:
    """A PBA as RFC 5213 5.3.6 has an LMA build it."""
    options: list[mh.MobilityOption] = [mh.MobileNodeIdentifier(NAI)]
    if prefix is not None:
        options.append(mh.HomeNetworkPrefix(prefix, length))
    options += [mh.HandoffIndicatorOption(mh.HandoffIndicator.UNKNOWN),
                mh.AccessTechnologyType(mh.AccessTechnology.IEEE_802_3), MS_LLID]
    return mh.ProxyBindingAck(status, sequence, lifetime, options)


class PerNodePrefixTests(SynchronousTestCase):
    """Rule 13: RFC 5213's protocol, a home network prefix per MS."""

    def setUp(self) -> None:
        self.agent = makeAgent(profile=mh.RFC5213)

    def registered(self) -> list[Action]:
        bu = onlyPbu(self, authenticate(self.agent, makeProfile(localNetworkPrefix=None)))
        return self.agent.messageReceived(perNodePba(bu.sequence), LMAP, T0)

    def test_registration(self) -> None:
        """The PBU of RFC 5213 6.9.1.5: MN-ID, HNP 0::/0 (asking), Handoff
        Indicator "unknown", Access Technology Type, the MS's MAC as its
        Link-layer Identifier; nothing of the draft's. No RA before the PBA."""
        actions = authenticate(self.agent, makeProfile(localNetworkPrefix=None))
        self.assertEqual(shape(actions), [f"send BindingUpdate {LMAP}"])
        bu = onlyPbu(self, actions)
        self.assertEqual(bu.options, (
            mh.MobileNodeIdentifier(NAI), mh.HomeNetworkPrefix("::", 0),
            mh.HandoffIndicatorOption(mh.HandoffIndicator.UNKNOWN),
            mh.AccessTechnologyType(mh.AccessTechnology.IEEE_802_3), MS_LLID))
        self.assertTrue((bu.proxy, bu.ack))

    def test_accessTechnology(self) -> None:
        agent = makeAgent(profile=mh.RFC5213, accessTechnology=mh.AccessTechnology.IEEE_802_11)
        bu = onlyPbu(self, authenticate(agent))
        self.assertEqual(bu.option(mh.AccessTechnologyType),
                         mh.AccessTechnologyType(mh.AccessTechnology.IEEE_802_11))

    def test_accepted(self) -> None:
        """The PBA's prefix: routed to the MS through the tunnel (the whole
        /64), then advertised to it alone (a unicast RA, A set: SLAAC)."""
        actions = self.registered()
        self.assertEqual(shape(actions),
                         [f"add {HNP} {IFACE}", f"frame RouterAdvertisement {IFACE}"])
        add = only(actions, AddTunnel)[0]
        self.assertEqual(add.binding, TunnelBinding(HNP, 64, MPA, LMAP, ROLE_MPA, IFACE))
        interface, frame = sentFrames(actions)[0]
        self.assertEqual(frame.ethernet.destination, MS_MAC)
        ra = frame.message
        assert isinstance(ra, nd.RouterAdvertisement)
        prefixes = [o for o in ra.options if isinstance(o, nd.PrefixInformation)]
        self.assertEqual([(p.prefix, p.prefixLength, p.autonomous) for p in prefixes],
                         [(HNP, 64, True)])
        visitor = self.agent.visitors.byNai(NAI)
        assert visitor is not None
        self.assertEqual((visitor.state, str(visitor.localNetworkPrefix)),
                         (VisitorState.REGISTERED, f"{HNP}/64"))

    def test_addressInPrefixNotRegistered(self) -> None:
        """The MS configuring an address in its prefix (DAD) or sending from
        it changes nothing: the prefix is registered whole."""
        self.registered()
        actions = self.agent.frameReceived(IFACE, dadProbe(HNP_ADDR), T0 + 1)
        actions += self.agent.frameReceived(IFACE, udpFrame(HNP_ADDR), T0 + 1)
        self.assertEqual(only(actions, SendMessage), [])
        self.assertEqual(self.agent.counters["address.in-home-prefix"], 1)

    def test_refresh(self) -> None:
        """A re-registration names the prefix, Handoff Indicator 5 (RFC 5213 6.9.1.3)."""
        self.registered()
        bu = onlyPbu(self, self.agent.tick(T0 + 2700))
        self.assertEqual((bu.option(mh.HomeNetworkPrefix), bu.option(mh.HandoffIndicatorOption)),
                         (mh.HomeNetworkPrefix(HNP, 64),
                          mh.HandoffIndicatorOption(mh.HandoffIndicator.NOT_CHANGED)))

    def test_leave(self) -> None:
        """A detach deregisters the prefix."""
        self.registered()
        actions = self.agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 1)
        self.assertEqual(shape(actions), [f"send BindingUpdate {LMAP}", f"remove {HNP} {IFACE}"])
        bu = onlyPbu(self, actions)
        self.assertEqual((bu.lifetime, bu.option(mh.HomeNetworkPrefix)),
                         (0, mh.HomeNetworkPrefix(HNP, 64)))

    def test_profilePrefixAsked(self) -> None:
        """A prefix in the MS's profile is asked for; a PBA with another is
        not used: deregistered, counted."""
        bu = onlyPbu(self, authenticate(self.agent, makeProfile(
            localNetworkPrefix=IPv6Network("2001:db8:100:7::/64"))))
        self.assertEqual(bu.option(mh.HomeNetworkPrefix),
                         mh.HomeNetworkPrefix("2001:db8:100:7::", 64))
        actions = self.agent.messageReceived(perNodePba(bu.sequence), LMAP, T0)
        self.assertEqual(only(actions, AddTunnel), [])
        dereg = onlyPbu(self, actions)
        self.assertEqual((dereg.lifetime, dereg.option(mh.HomeNetworkPrefix)),
                         (0, mh.HomeNetworkPrefix(HNP, 64)))
        self.assertEqual(self.agent.counters["pba.invalid.other-address"], 1)

    def test_noPrefix(self) -> None:
        """Status 0 without an HNP, or with the draft's Local Address read
        as one: no-address, deregistered, nothing advertised."""
        for prefix, length in ((None, 64), ("::", 0), (HNP_ADDR, 64)):
            agent = makeAgent(profile=mh.RFC5213)
            bu = onlyPbu(self, authenticate(agent, makeProfile(localNetworkPrefix=None)))
            actions = agent.messageReceived(perNodePba(bu.sequence, prefix, length), LMAP, T0)
            self.assertEqual(shape(actions), [f"send BindingUpdate {LMAP}"], prefix)
            self.assertEqual(agent.counters["pba.invalid.no-address"], 1)

    def test_otherMobileNode(self) -> None:
        """A PBA from the LMAP naming another MS is not the answer (RFC 5213
        6.9.1.2): nothing changes, nothing is deregistered, one note per
        registration names the LMAP and both MSs; the PBU goes again."""
        bu = onlyPbu(self, authenticate(self.agent, makeProfile(localNetworkPrefix=None)))
        other = mh.ProxyBindingAck(0, bu.sequence, 3600, [
            mh.MobileNodeIdentifier(b"other@lmm.test"), mh.HomeNetworkPrefix(HNP, 64)])
        actions = self.agent.messageReceived(other, LMAP, T0)
        self.assertEqual(shape(actions), [])
        [note] = only(actions, Note)
        self.assertEqual((note.event, note.fields["lmap"], note.fields["named"]),
                         ("pba.nai-mismatch", LMAP, "other@lmm.test"))
        self.assertEqual(self.agent.messageReceived(other, LMAP, T0), [])
        self.assertEqual(self.agent.counters["pba.nai-mismatch"], 2)
        self.assertEqual(onlyPbu(self, self.agent.tick(T0 + 1)).sequence, bu.sequence + 1)

    def test_revocationByPrefix(self) -> None:
        """A revocation naming only the prefix (RFC 5846 6.1) finds the visitor."""
        self.registered()
        actions = self.agent.messageReceived(mh.BindingRevocationIndication(
            7, 4, (mh.HomeNetworkPrefix(HNP, 64),), proxy=True), LMAP, T0 + 1)
        self.assertEqual(shape(actions), [f"hand back {HNP}", f"remove {HNP} {IFACE}",
                                          f"send BindingRevocationAck {LMAP}"])
        self.assertIsNone(self.agent.visitors.byNai(NAI))


class WireTests(SynchronousTestCase):
    """Every message the agent sends encodes, and decodes to itself, under both profiles."""

    def scenario(self, profile: mh.WireProfile) -> list[SendMessage]:
        agent = makeAgent(profile=profile)
        sent: list[SendMessage] = []

        def keep(actions: list[Action]) -> list[Action]:
            sent.extend(only(actions, SendMessage))
            return actions

        missing = profile.bindingCacheEntryMissing
        bu = onlyPbu(self, keep(authenticate(agent)))
        keep(agent.messageReceived(pba(bu.sequence, status=missing, lifetime=0), LMAP, T0))
        bu = onlyPbu(self, keep(agent.frameReceived(IFACE, dadProbe(MS_ADDR), T0)))
        keep(agent.tick(T0 + 1))
        keep(agent.messageReceived(pba(bu.sequence, address=MS_ADDR), LMAP, T0 + 1))
        keep(agent.tick(T0 + 2700))
        keep(authenticate(agent, makeProfile(nai=NAI2, localNetworkPrefix=None), mac=MS2_MAC))
        second = sent[-1].message
        assert isinstance(second, mh.BindingUpdate)
        keep(agent.messageReceived(pba(second.sequence, status=missing, lifetime=0), LMAP, T0))
        keep(agent.messageReceived(mh.Heartbeat(5), LMAP, T0))
        keep(agent.messageReceived(
            mh.BindingRevocationIndication(3, 4, (mh.MobileNodeIdentifier(b"nobody"),),
                                           proxy=True), LMAP, T0))
        keep(agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 2701))
        keep(agent.stop(T0 + 2702))
        return sent

    def check(self, profile: mh.WireProfile) -> None:
        sent = self.scenario(profile)
        kinds = set()
        for send in sent:
            data = mh.encode(send.message, profile)
            self.assertEqual(len(data) % 8, 0)
            self.assertEqual(mh.decode(data, profile), send.message)
            message = send.message
            if isinstance(message, mh.BindingUpdate):
                confirmation = message.option(mh.BindingCacheConfirmation) is not None
                local = message.option(mh.LocalAddress)
                kinds.add(("bcc" if confirmation else "loa" if local else "nai-only",
                           message.lifetime == 0))
            else:
                kinds.add((type(message).__name__, False))
        self.assertTrue(
            {("bcc", False), ("loa", False), ("loa", True), ("nai-only", True),
             ("Heartbeat", False), ("BindingRevocationAck", False)} <= kinds,
            kinds,
        )

    def test_draft(self) -> None:
        self.check(mh.DRAFT)

    def test_rfc5213(self) -> None:
        """RFC 5213's protocol: registration, refresh, deregistration,
        revocation acknowledgement, heartbeat, through the codec."""
        agent = makeAgent(profile=mh.RFC5213)
        sent: list[SendMessage] = []
        bu = onlyPbu(self, authenticate(agent, makeProfile(localNetworkPrefix=None)))
        sent.append(SendMessage(bu, LMAP))
        sent += only(agent.messageReceived(perNodePba(bu.sequence), LMAP, T0), SendMessage)
        sent += only(agent.tick(T0 + 2700), SendMessage)
        sent += only(agent.messageReceived(mh.Heartbeat(5), LMAP, T0), SendMessage)
        sent += only(agent.messageReceived(mh.BindingRevocationIndication(
            3, 4, (mh.MobileNodeIdentifier(b"nobody"),), proxy=True), LMAP, T0), SendMessage)
        sent += only(agent.detach(DetachEvent(IFACE, MS_MAC), T0 + 2701), SendMessage)
        self.assertEqual(len(sent), 5)
        for send in sent:
            data = mh.encode(send.message, mh.RFC5213)
            self.assertEqual(len(data) % 8, 0)
            self.assertEqual(mh.decode(data, mh.RFC5213), send.message)


class VisitorListTests(SynchronousTestCase):
    def test_indexes(self) -> None:
        from lmm.mpa.visitor import VisitorList

        visitors = VisitorList()
        entry = VisitorEntry(MS_MAC, IFACE, T0, T0)
        visitors.add(entry)
        visitors.setNai(entry, NAI)
        visitors.setAddress(entry, MS_ADDR)
        visitors.setLmap(entry, LMAP)
        self.assertIs(visitors.byNai(NAI), entry)
        self.assertIs(visitors.byAddress(MS_ADDR), entry)
        self.assertEqual(visitors.byLmap(LMAP), [entry])
        self.assertTrue(visitors.knowsLmap(LMAP))
        visitors.setAddress(entry, OTHER_ADDR)
        self.assertIsNone(visitors.byAddress(MS_ADDR))
        self.assertIs(visitors.byAddress(OTHER_ADDR), entry)
        # A new entry for the same MAC replaces the old one everywhere.
        newer = replace(entry, noted=set())
        visitors.add(newer)
        self.assertIs(visitors.byNai(NAI), newer)
        self.assertEqual(visitors.entries(), [newer])
        self.assertTrue(visitors.remove(newer))
        self.assertFalse(visitors.remove(newer))
        self.assertIsNone(visitors.byNai(NAI))
        self.assertIsNone(visitors.byAddress(OTHER_ADDR))
        self.assertFalse(visitors.knowsLmap(LMAP))
        self.assertEqual(len(visitors), 0)
