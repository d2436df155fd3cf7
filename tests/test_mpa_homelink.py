"""lmm.mpa.homelink: home-link emulation's decisions and frames, alone (no agent)."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from lmm import nd
from lmm.aaa import Profile
from lmm.mpa.homelink import HomeLink, inPrefix
from lmm.mpa.visitor import PendingRegistration, RegistrationRequest, VisitorEntry, VisitorState

VMAC = "02:00:5e:00:53:01"
VLL = nd.linkLocalFromMac(VMAC)
MS_MAC = "02:11:22:33:44:55"
MS_LL = nd.linkLocalFromMac(MS_MAC)
LNP = IPv6Network("2001:db8:1::/64")
LMAP = "2001:db8:ffff::1"


def visitor(mode: str = "slaac", advertised: bool = True) -> VisitorEntry:
    return VisitorEntry(
        MS_MAC, "acc0", 0.0, 0.0, nai=b"ms@lmm.test", state=VisitorState.REGISTERED,
        localAddress="2001:db8:1::5", localNetworkPrefix=LNP, lmapAddress=LMAP,
        virtualLmapMac=VMAC, virtualLmapLinkLocal=VLL,
        profile=Profile(b"ms@lmm.test", localNetworkPrefix=LNP, addressMode=mode),
        advertised=advertised,
    )


class HomeLinkTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.counters: Counter[str] = Counter()
        self.homeLink = HomeLink(1460, 1800, self.counters)

    def test_advertisementFlags(self) -> None:
        """Rule 1: L=0 always; A for slaac; M and O for dhcpv6; none for manual."""
        for mode, flags in (("slaac", (False, True, False, False)),
                            ("dhcpv6", (False, False, True, True)),
                            ("manual", (False, False, False, False))):
            frame = nd.decodeFrame(self.homeLink.advertisement(visitor(mode), MS_LL))
            ra = frame.message
            assert isinstance(ra, nd.RouterAdvertisement) and frame.ip is not None
            [info] = ra.prefixes
            self.assertEqual((info.onLink, info.autonomous, ra.managed, ra.other), flags, mode)
            self.assertEqual((frame.ethernet.source, frame.ethernet.destination,
                              frame.ip.source, frame.ip.destination, ra.mtu,
                              ra.routerLifetime), (VMAC, MS_MAC, VLL, MS_LL, 1460, 1800))

    def test_unsolicitedToAllNodesWithoutLinkLocal(self) -> None:
        frame = nd.decodeFrame(self.homeLink.unsolicited(visitor()))
        assert frame.ip is not None
        self.assertEqual((frame.ethernet.destination, frame.ip.destination),
                         (MS_MAC, nd.ALL_NODES))
        self.assertEqual(self.counters["ra.unsolicited"], 1)

    def test_heldUntilAdvertised(self) -> None:
        """Rule 2: no RA and no NA for the router before the LMAP answered."""
        waiting = visitor(advertised=False)
        self.assertIsNone(self.homeLink.routerSolicitation(waiting, MS_LL))
        self.assertIsNone(self.homeLink.neighborSolicitation(waiting, MS_LL, VLL))
        self.assertEqual((self.counters["rs.held"], self.counters["ns.held"]), (1, 1))
        answer = self.homeLink.routerSolicitation(visitor(), nd.UNSPECIFIED)
        assert answer is not None
        self.assertEqual(nd.decodeFrame(answer).ip.destination,  # type: ignore[union-attr]
                         nd.ALL_NODES)

    def test_dad(self) -> None:
        """Rule 3: the router's addresses defended, the MS's own left alone,
        a global address inside the LNP to learn."""
        v = visitor()
        defence, learn = self.homeLink.duplicateAddressDetection(v, VLL)
        assert defence is not None
        na = nd.decodeFrame(defence).message
        assert isinstance(na, nd.NeighborAdvertisement)
        self.assertEqual((na.target, na.router, na.solicited, learn), (VLL, True, False, False))
        self.assertEqual(self.homeLink.duplicateAddressDetection(v, MS_LL), (None, False))
        self.assertEqual(self.homeLink.duplicateAddressDetection(v, "2001:db8:9::1"),
                         (None, False))
        self.assertEqual(self.homeLink.duplicateAddressDetection(v, "2001:db8:1::9"),
                         (None, True))
        self.assertEqual(self.counters, Counter({"dad.defended": 1, "dad.link-local": 1,
                                                 "dad.outside-prefix": 1}))

    def test_neighborSolicitation(self) -> None:
        """Rule 4: NA for the router and foreign globals; not the MS's own
        addresses (also the one being registered), not another host's link-local."""
        v = visitor()
        v.pending = PendingRegistration(RegistrationRequest(False, "2001:db8:1::7"), 1, [1],
                                        1.0, 1.0, 0.0, 3600)
        for target in ("2001:db8:1::5", "2001:db8:1::7", "fe80::99"):
            self.assertIsNone(self.homeLink.neighborSolicitation(v, MS_LL, target), target)
        self.assertIsNone(self.homeLink.neighborSolicitation(v, "ff02::1", VLL))
        for target in (VLL, LMAP, "2001:db8:77::1"):
            frame = self.homeLink.neighborSolicitation(v, MS_LL, target)
            assert frame is not None
            na = nd.decodeFrame(frame).message
            assert isinstance(na, nd.NeighborAdvertisement)
            self.assertEqual((na.target, na.router, na.solicited, na.override),
                             (target, True, True, True))
        self.assertEqual((self.counters["ns.own"], self.counters["ns.other-host"],
                          self.counters["na.sent"]), (2, 1, 3))

    def test_toClientAndInPrefix(self) -> None:
        frame = nd.decodeFrame(self.homeLink.toClient(visitor(), MS_LL, b"\x07\x00\x00\x01"))
        assert frame.ip is not None
        self.assertEqual((frame.ethernet.source, frame.ip.source, frame.udpPayload),
                         (VMAC, VLL, b"\x07\x00\x00\x01"))
        self.assertRaises(ValueError, self.homeLink.toClient, visitor(), "bogus", b"")
        self.assertTrue(inPrefix("2001:db8:1::1", LNP))
        self.assertFalse(inPrefix("2001:db8:1::", LNP))
        self.assertFalse(inPrefix("bogus", LNP))

    def test_minimumMtu(self) -> None:
        self.assertRaises(ValueError, HomeLink, 1279, 1800, self.counters)
