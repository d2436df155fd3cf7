"""
Tests for L{lmm.nd}: round trips of every message and option, the Router
Advertisement the MPA sends checked by scapy as an independent decoder, frames
built by scapy classified as the MPA needs, every kind of malformed input,
property tests on random and mutated frames, and one real Linux host in a pair
of network namespaces configuring itself from the RA.

Expected values are written out here from the RFCs (or taken from scapy), not
from the codec's own tables, so a wrong table cannot agree with itself.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from typing import Any

import scapy.layers.dhcp6 as sdhcp6
import scapy.layers.inet6 as s6
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from lmm import nd
from lmm.nd import (
    MTU,
    BadAddress,
    BadChecksum,
    BadCode,
    BadHopLimit,
    BadIPVersion,
    BadLength,
    BadOption,
    EthernetHeader,
    Frame,
    ICMPv6Message,
    IPv6Header,
    MLDDone,
    MLDQuery,
    MLDReport,
    MLDv2Report,
    MulticastAddressRecord,
    NDError,
    NDOption,
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInformation,
    RecursiveDNSServer,
    RouterAdvertisement,
    RouterSolicitation,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    TruncatedFrame,
    UnknownNDOption,
    buildFrame,
    buildNeighborAdvertisement,
    buildNeighborSolicitation,
    buildRouterAdvertisement,
    buildRouterSolicitation,
    decodeFrame,
    decodeICMPv6,
    encodeICMPv6,
)

EXAMPLES = min(int(os.environ.get("LMM_HYPOTHESIS_EXAMPLES", "2000")), 20000)
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# The MPA's side: the virtual LMAP MAC and its link-local address, the MS's MAC,
# its EUI-64 link-local address, and the MS's Local Network Prefix.
LMAP_MAC = "02:00:5e:00:53:01"
LMAP_LL = "fe80::5eff:fe00:5301"
MS_MAC = "52:54:00:12:34:56"
MS_LL = "fe80::5054:ff:fe12:3456"
MS_ADDRESS = "2001:db8:1:0:5054:ff:fe12:3456"  # canonical text (RFC 5952)
LNP = "2001:db8:1::"


def mpaAdvertisement(**kwargs: Any) -> bytes:
    """The RA the MPA sends an MS: unicast, L=0 A=1, MTU 1460, SLLA."""
    arguments: dict[str, Any] = dict(
        prefixes=[
            PrefixInformation(
                LNP, 64, onLink=False, autonomous=True, validLifetime=86400, preferredLifetime=14400
            )
        ],
        mtu=1460,
        managed=True,
        other=True,
        routerLifetime=9000,
        curHopLimit=64,
        reachableTime=30000,
        retransTimer=1000,
    )
    arguments.update(kwargs)
    return buildRouterAdvertisement(LMAP_MAC, MS_MAC, LMAP_LL, MS_LL, **arguments)


def scapyChecksumValid(packet: Packet, layer: type[Packet]) -> bool:
    """Whether scapy, rebuilding C{packet} with the checksum left to it, gets the
    checksum the packet carries."""
    carried = packet[layer].cksum
    clone = packet.copy()
    clone[layer].cksum = None
    return bool(Ether(bytes(clone))[layer].cksum == carried)


def fixChecksum(frame: bytes) -> bytes:
    """C{frame} with the checksum of the ICMPv6 message in it made right again,
    so that mutations reach the code behind the checksum check."""
    if len(frame) < 58 or frame[12:14] != b"\x86\xdd":
        return frame
    nextHeader = frame[20]
    position = 54
    if nextHeader == 0 and len(frame) >= 62:
        nextHeader = frame[54]
        position += (frame[55] + 1) * 8
    payloadEnd = 54 + struct.unpack_from("!H", frame, 18)[0]
    if nextHeader != 58 or position + 4 > min(payloadEnd, len(frame)):
        return frame
    icmp = bytearray(frame[position:payloadEnd])
    icmp[2:4] = b"\x00\x00"
    total = nd._checksum(frame[22:38], frame[38:54], 58, bytes(icmp))
    icmp[2:4] = total.to_bytes(2, "big")
    return frame[:position] + bytes(icmp) + frame[payloadEnd:]


def referenceChecksum(source: bytes, destination: bytes, nextHeader: int, data: bytes) -> int:
    """RFC 1071 the slow way: 16-bit words, end-around carry."""
    whole = source + destination + struct.pack("!I3xB", len(data), nextHeader) + data
    if len(whole) % 2:
        whole += b"\x00"
    total = 0
    for i in range(0, len(whole), 2):
        total += whole[i] << 8 | whole[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class AddressHelperTests(SynchronousTestCase):
    def test_solicitedNodeMulticast(self) -> None:
        self.assertEqual(nd.solicitedNodeMulticast(MS_ADDRESS), "ff02::1:ff12:3456")
        self.assertEqual(nd.solicitedNodeMulticast("fe80::1"), "ff02::1:ff00:1")
        self.assertEqual(nd.solicitedNodeMulticast("2001:db8::abcd:ef01"), "ff02::1:ffcd:ef01")

    def test_multicastMac(self) -> None:
        self.assertEqual(nd.multicastMac("ff02::1"), "33:33:00:00:00:01")
        self.assertEqual(nd.multicastMac("ff02::1:ff12:3456"), "33:33:ff:12:34:56")
        self.assertRaises(ValueError, nd.multicastMac, "fe80::1")

    def test_linkLocalFromMac(self) -> None:
        # RFC 4291 appendix A: invert the universal/local bit, insert ff:fe.
        self.assertEqual(nd.linkLocalFromMac(MS_MAC), MS_LL)
        self.assertEqual(nd.linkLocalFromMac(LMAP_MAC), LMAP_LL)
        self.assertEqual(nd.linkLocalFromMac("00:00:00:00:00:00"), "fe80::200:ff:fe00:0")

    def test_interfaceIdentifier(self) -> None:
        self.assertEqual(nd.interfaceIdentifier(MS_MAC), bytes.fromhex("505400fffe123456"))
        self.assertEqual(nd.macFromInterfaceIdentifier(bytes.fromhex("505400fffe123456")), MS_MAC)
        self.assertIsNone(nd.macFromInterfaceIdentifier(bytes.fromhex("1234567812345678")))
        self.assertIsNone(nd.macFromInterfaceIdentifier(b"\xff\xfe"))
        self.assertEqual(nd.addressFromMac(LNP, MS_MAC), MS_ADDRESS)

    def test_badMac(self) -> None:
        for mac in ("", "52:54:00:12:34", "52:54:00:12:34:5g", "525400123456", "5:54:00:12:34:567"):
            self.assertRaises(ValueError, nd.interfaceIdentifier, mac)

    def test_isLinkLocal(self) -> None:
        self.assertTrue(nd.isLinkLocal("fe80::1"))
        self.assertTrue(nd.isLinkLocal("febf::1"))
        self.assertFalse(nd.isLinkLocal("fec0::1"))
        self.assertFalse(nd.isLinkLocal(MS_ADDRESS))
        self.assertFalse(nd.isLinkLocal("::"))
        self.assertTrue(nd.isMulticast("ff02::1"))
        self.assertFalse(nd.isMulticast("fe80::1"))
        self.assertRaises(ValueError, nd.isLinkLocal, "not an address")


class ChecksumTests(SynchronousTestCase):
    def test_againstScapy(self) -> None:
        data = bytes(s6.ICMPv6EchoRequest(id=7, seq=9, data=b"hello"))
        expected = s6.in6_chksum(58, s6.IPv6(src="fe80::1", dst="ff02::1"), data)
        self.assertEqual(nd.checksum("fe80::1", "ff02::1", 58, data), expected)

    @PROPERTY
    @given(
        st.binary(min_size=16, max_size=16),
        st.binary(min_size=16, max_size=16),
        st.integers(1, 255),
        st.binary(max_size=300),
    )
    def test_reference(self, source: bytes, destination: bytes, nh: int, data: bytes) -> None:
        """The modulo-0xffff shortcut agrees with RFC 1071's loop."""
        self.assertEqual(
            nd._checksum(source, destination, nh, data),
            referenceChecksum(source, destination, nh, data),
        )


class HeaderTests(SynchronousTestCase):
    def test_ethernet(self) -> None:
        header = EthernetHeader(MS_MAC, LMAP_MAC, 0x86DD)
        self.assertEqual(header.encode(), bytes.fromhex("525400123456 02005e005301 86dd"))

    def test_ipv6RoundTrip(self) -> None:
        ip = IPv6Header(MS_LL, "ff02::2", 58, 255, 8, trafficClass=0xB8, flowLabel=0xABCDE)
        ether = EthernetHeader("33:33:00:00:00:02", MS_MAC)
        icmp = encodeICMPv6(RouterSolicitation(), MS_LL, "ff02::2")
        frame = decodeFrame(ether.encode() + ip.encode() + icmp)
        self.assertEqual(frame.ethernet, ether)
        self.assertEqual(frame.ip, ip)
        self.assertEqual(IPv6Header.version, 6)
        p = Ether(ether.encode() + ip.encode() + icmp)
        self.assertEqual((p[s6.IPv6].tc, p[s6.IPv6].fl), (0xB8, 0xABCDE))


class RoundTripTests(SynchronousTestCase):
    """Every message and option, built and decoded again."""

    def roundTrip(
        self,
        message: ICMPv6Message,
        source: str = MS_LL,
        destination: str = "ff02::2",
        hopLimit: int = 255,
        routerAlert: bool = False,
    ) -> Frame:
        data = buildFrame(
            MS_MAC, nd.multicastMac("ff02::2"), source, destination, message, hopLimit, routerAlert
        )
        frame = decodeFrame(data)
        self.assertEqual(frame.message, message)
        self.assertEqual(frame.upperLayer, 58)
        assert frame.ip is not None
        self.assertEqual((frame.ip.source, frame.ip.destination), (source, destination))
        self.assertEqual(frame.ip.hopLimit, hopLimit)
        self.assertEqual(decodeICMPv6(frame.payload, source, destination, hopLimit), message)
        return frame

    def test_options(self) -> None:
        options: list[NDOption] = [
            SourceLinkLayerAddress(MS_MAC),
            TargetLinkLayerAddress(LMAP_MAC),
            MTU(1460),
            MTU(0xFFFFFFFF),
            RecursiveDNSServer(("2001:db8::53",), 600),
            RecursiveDNSServer(("2001:db8::53", "2001:db8::35"), nd.INFINITY),
            UnknownNDOption(31, bytes(14)),
            UnknownNDOption(200, b"\x01" * 6),
        ]
        for onLink in (False, True):
            for autonomous in (False, True):
                for router in (False, True):
                    options.append(PrefixInformation(LNP, 64, onLink, autonomous, 100, 50, router))
        options.append(PrefixInformation("::", 0, validLifetime=0, preferredLifetime=0))
        options.append(PrefixInformation("2001:db8::1", 128))
        for option in options:
            self.roundTrip(RouterAdvertisement(options=(option,)), source=LMAP_LL)
        self.roundTrip(RouterAdvertisement(options=tuple(options)), source=LMAP_LL)

    def test_routerSolicitation(self) -> None:
        self.roundTrip(RouterSolicitation())
        self.roundTrip(RouterSolicitation((SourceLinkLayerAddress(MS_MAC),)))
        self.roundTrip(RouterSolicitation(), source="::")

    def test_routerAdvertisement(self) -> None:
        for managed in (False, True):
            for other in (False, True):
                for preference in (0, 1, 3):
                    self.roundTrip(
                        RouterAdvertisement(
                            0, managed, other, 0, 0xFFFFFFFF, 1, (), not managed, preference
                        ),
                        source=LMAP_LL,
                        destination="ff02::1",
                    )
        ra = RouterAdvertisement(
            64,
            options=(
                SourceLinkLayerAddress(LMAP_MAC),
                PrefixInformation(LNP, onLink=False),
                PrefixInformation("2001:db8:2::"),
                MTU(1460),
            ),
        )
        self.assertEqual(ra.mtu, 1460)
        self.assertEqual([p.prefix for p in ra.prefixes], [LNP, "2001:db8:2::"])
        self.assertEqual(ra.sourceLinkLayerAddress, LMAP_MAC)
        self.assertIsNone(RouterAdvertisement().mtu)

    def test_neighborSolicitation(self) -> None:
        self.roundTrip(NeighborSolicitation(LMAP_LL, (SourceLinkLayerAddress(MS_MAC),)))
        frame = self.roundTrip(
            NeighborSolicitation(MS_ADDRESS), "::", nd.solicitedNodeMulticast(MS_ADDRESS)
        )
        self.assertEqual(frame.dadTarget, MS_ADDRESS)

    def test_neighborAdvertisement(self) -> None:
        for flags in range(8):
            r, s, o = bool(flags & 4), bool(flags & 2), bool(flags & 1)
            self.roundTrip(
                NeighborAdvertisement(LMAP_LL, r, s, o, (TargetLinkLayerAddress(LMAP_MAC),)),
                source=LMAP_LL,
                destination=MS_LL,
            )
        na = NeighborAdvertisement(LMAP_LL, options=(TargetLinkLayerAddress(LMAP_MAC),))
        self.assertEqual(na.targetLinkLayerAddress, LMAP_MAC)
        self.assertIsNone(NeighborAdvertisement(LMAP_LL).targetLinkLayerAddress)

    def test_mld(self) -> None:
        self.roundTrip(MLDQuery(), destination="ff02::1", hopLimit=1, routerAlert=True)
        self.roundTrip(MLDQuery("ff02::1:ff12:3456", 1000), hopLimit=1, routerAlert=True)
        self.roundTrip(MLDReport("ff02::1:ff12:3456"), hopLimit=1, routerAlert=True)
        self.roundTrip(MLDDone("ff02::1:ff12:3456"), hopLimit=1, routerAlert=True)
        report = MLDv2Report(
            (
                MulticastAddressRecord(4, "ff02::1:ff12:3456"),
                MulticastAddressRecord(1, "ff3e::1234", (MS_ADDRESS, "2001:db8::1"), b"abcd"),
            )
        )
        frame = self.roundTrip(report, "::", nd.ALL_MLDV2_ROUTERS, 1, True)
        self.assertEqual(frame.ip.nextHeader if frame.ip else None, 0)
        self.assertEqual(report.groups, ("ff02::1:ff12:3456", "ff3e::1234"))
        self.roundTrip(MLDv2Report(), hopLimit=1)

    def test_encodeErrors(self) -> None:
        bad: list[ICMPv6Message] = [
            RouterAdvertisement(options=(UnknownNDOption(9, b"123"),)),
            RouterAdvertisement(options=(UnknownNDOption(0, bytes(6)),)),
            RouterAdvertisement(options=(UnknownNDOption(9, bytes(2046)),)),
            RouterAdvertisement(options=(PrefixInformation(LNP, 129),)),
            RouterAdvertisement(options=(RecursiveDNSServer((), 10),)),
            RouterAdvertisement(options=(SourceLinkLayerAddress("nope"),)),
            NeighborSolicitation("nope"),
            MLDv2Report((MulticastAddressRecord(1, "ff02::1", (), b"abc"),)),
        ]
        for message in bad:
            self.assertRaises(ValueError, buildFrame, MS_MAC, MS_MAC, LMAP_LL, MS_LL, message)
        self.assertRaises(
            ValueError, buildRouterAdvertisement, LMAP_MAC, MS_MAC, "2001:db8::1", MS_LL
        )
        self.assertRaises(
            ValueError, buildNeighborAdvertisement, LMAP_MAC, MS_MAC, LMAP_LL, "ff02::1"
        )


class AgainstScapyTests(SynchronousTestCase):
    """What lmm builds, read by scapy."""

    def test_mpaRouterAdvertisement(self) -> None:
        data = mpaAdvertisement()
        p = Ether(data)
        self.assertEqual((p.dst, p.src, p.type), (MS_MAC, LMAP_MAC, 0x86DD))
        ip = p[s6.IPv6]
        self.assertEqual((ip.src, ip.dst, ip.hlim, ip.nh, ip.plen), (LMAP_LL, MS_LL, 255, 58, 64))
        ra = p[s6.ICMPv6ND_RA]
        self.assertEqual((ra.code, ra.chlim, ra.M, ra.O, ra.H, ra.prf), (0, 64, 1, 1, 0, 0))
        self.assertEqual(
            (ra.routerlifetime, ra.reachabletime, ra.retranstimer), (9000, 30000, 1000)
        )
        pio = p[s6.ICMPv6NDOptPrefixInfo]
        self.assertEqual((pio.len, pio.prefixlen, pio.L, pio.A, pio.R), (4, 64, 0, 1, 0))
        self.assertEqual((pio.validlifetime, pio.preferredlifetime), (86400, 14400))
        self.assertEqual(pio.prefix, LNP)
        self.assertEqual((p[s6.ICMPv6NDOptMTU].len, p[s6.ICMPv6NDOptMTU].mtu), (1, 1460))
        slla = p[s6.ICMPv6NDOptSrcLLAddr]
        self.assertEqual((slla.len, slla.lladdr), (1, LMAP_MAC))
        self.assertTrue(scapyChecksumValid(p, s6.ICMPv6ND_RA))
        self.assertNotIn(Raw, p)
        self.assertEqual(len(bytes(p)), len(data))

    def test_mpaRouterAdvertisementBytes(self) -> None:
        """scapy, given every field, builds the very same frame, checksum included."""
        expected = bytes(
            Ether(src=LMAP_MAC, dst=MS_MAC)
            / s6.IPv6(src=LMAP_LL, dst=MS_LL, hlim=255)
            / s6.ICMPv6ND_RA(
                chlim=64,
                M=1,
                O=1,
                prf=0,
                routerlifetime=9000,
                reachabletime=30000,
                retranstimer=1000,
            )
            / s6.ICMPv6NDOptSrcLLAddr(lladdr=LMAP_MAC)
            / s6.ICMPv6NDOptMTU(mtu=1460)
            / s6.ICMPv6NDOptPrefixInfo(
                prefix=LNP,
                prefixlen=64,
                L=0,
                A=1,
                validlifetime=86400,
                preferredlifetime=14400,
            )
        )
        self.assertEqual(mpaAdvertisement().hex(), expected.hex())

    def test_routerAdvertisementWithDNS(self) -> None:
        p = Ether(mpaAdvertisement(dnsServers=["2001:db8::53", "2001:db8::35"], dnsLifetime=300))
        rdnss = p[s6.ICMPv6NDOptRDNSS]
        self.assertEqual((rdnss.len, rdnss.lifetime), (5, 300))
        self.assertEqual(rdnss.dns, ["2001:db8::53", "2001:db8::35"])
        self.assertTrue(scapyChecksumValid(p, s6.ICMPv6ND_RA))

    def test_neighborAdvertisement(self) -> None:
        p = Ether(buildNeighborAdvertisement(LMAP_MAC, MS_MAC, LMAP_LL, MS_ADDRESS))
        self.assertEqual((p.dst, p.src, p[s6.IPv6].hlim), (MS_MAC, LMAP_MAC, 255))
        na = p[s6.ICMPv6ND_NA]
        self.assertEqual((na.R, na.S, na.O, na.tgt), (1, 1, 1, LMAP_LL))
        self.assertEqual(p[s6.ICMPv6NDOptDstLLAddr].lladdr, LMAP_MAC)
        self.assertTrue(scapyChecksumValid(p, s6.ICMPv6ND_NA))
        unsolicited = Ether(
            buildNeighborAdvertisement(
                LMAP_MAC, "33:33:00:00:00:01", LMAP_LL, "ff02::1", solicited=False
            )
        )
        self.assertEqual(unsolicited[s6.ICMPv6ND_NA].S, 0)
        bare = Ether(
            buildNeighborAdvertisement(
                LMAP_MAC, MS_MAC, LMAP_LL, MS_LL, MS_ADDRESS, includeTargetLinkLayerAddress=False
            )
        )
        self.assertEqual(bare[s6.ICMPv6ND_NA].tgt, MS_ADDRESS)
        self.assertNotIn(s6.ICMPv6NDOptDstLLAddr, bare)

    def test_neighborSolicitation(self) -> None:
        p = Ether(buildNeighborSolicitation(LMAP_MAC, None, "::", None, MS_ADDRESS))
        self.assertEqual((p.dst, p[s6.IPv6].src), ("33:33:ff:12:34:56", "::"))
        self.assertEqual(p[s6.IPv6].dst, "ff02::1:ff12:3456")
        self.assertEqual(p[s6.ICMPv6ND_NS].tgt, MS_ADDRESS)
        self.assertNotIn(s6.ICMPv6NDOptSrcLLAddr, p)
        self.assertTrue(scapyChecksumValid(p, s6.ICMPv6ND_NS))
        p = Ether(buildNeighborSolicitation(LMAP_MAC, MS_MAC, LMAP_LL, MS_LL, MS_LL))
        self.assertEqual(p[s6.ICMPv6NDOptSrcLLAddr].lladdr, LMAP_MAC)
        self.assertTrue(scapyChecksumValid(p, s6.ICMPv6ND_NS))

    def test_routerSolicitation(self) -> None:
        p = Ether(buildRouterSolicitation(MS_MAC, MS_LL))
        self.assertEqual((p.dst, p[s6.IPv6].dst), ("33:33:00:00:00:02", "ff02::2"))
        self.assertEqual(p[s6.ICMPv6NDOptSrcLLAddr].lladdr, MS_MAC)
        self.assertTrue(scapyChecksumValid(p, s6.ICMPv6ND_RS))
        self.assertNotIn(s6.ICMPv6NDOptSrcLLAddr, Ether(buildRouterSolicitation(MS_MAC, "::")))

    def test_mldv2Report(self) -> None:
        report = MLDv2Report((MulticastAddressRecord(4, "ff02::1:ff12:3456"),))
        p = Ether(buildFrame(MS_MAC, "33:33:00:00:00:16", "::", "ff02::16", report, 1, True))
        self.assertEqual(p[s6.IPv6ExtHdrHopByHop].options[0].otype, 5)
        self.assertEqual(p[s6.IPv6ExtHdrHopByHop].options[0].value, 0)
        record = p[s6.ICMPv6MLReport2].records[0]
        self.assertEqual((record.rtype, record.dst), (4, "ff02::1:ff12:3456"))
        self.assertTrue(scapyChecksumValid(p, s6.ICMPv6MLReport2))


def scapyFrame(payload: Packet, src: str, dst: str, hlim: int = 255, mac: str = MS_MAC) -> bytes:
    dstMac = nd.multicastMac(dst) if nd.isMulticast(dst) else LMAP_MAC
    return bytes(Ether(src=mac, dst=dstMac) / s6.IPv6(src=src, dst=dst, hlim=hlim) / payload)


class ScapyFrameTests(SynchronousTestCase):
    """Frames scapy builds, as an MS would send them, classified by lmm."""

    def test_routerSolicitation(self) -> None:
        frame = decodeFrame(
            scapyFrame(s6.ICMPv6ND_RS() / s6.ICMPv6NDOptSrcLLAddr(lladdr=MS_MAC), MS_LL, "ff02::2")
        )
        self.assertEqual(frame.ethernet, EthernetHeader("33:33:00:00:00:02", MS_MAC, 0x86DD))
        self.assertIsInstance(frame.message, RouterSolicitation)
        assert isinstance(frame.message, RouterSolicitation)
        self.assertEqual(frame.message.sourceLinkLayerAddress, MS_MAC)
        self.assertIsNone(frame.dadTarget)
        frame = decodeFrame(scapyFrame(s6.ICMPv6ND_RS(), "::", "ff02::2"))
        self.assertEqual(frame.message, RouterSolicitation())

    def test_dadForGlobalAddress(self) -> None:
        group = nd.solicitedNodeMulticast(MS_ADDRESS)
        frame = decodeFrame(scapyFrame(s6.ICMPv6ND_NS(tgt=MS_ADDRESS), "::", group))
        self.assertEqual(frame.message, NeighborSolicitation(MS_ADDRESS))
        self.assertEqual(frame.ethernet.destination, "33:33:ff:12:34:56")
        self.assertEqual(frame.dadTarget, MS_ADDRESS)
        self.assertFalse(nd.isLinkLocal(frame.dadTarget or ""))

    def test_dadForLinkLocalAddress(self) -> None:
        group = nd.solicitedNodeMulticast(MS_LL)
        frame = decodeFrame(scapyFrame(s6.ICMPv6ND_NS(tgt=MS_LL), "::", group))
        self.assertEqual(frame.dadTarget, MS_LL)
        self.assertTrue(nd.isLinkLocal(frame.dadTarget or ""))

    def test_neighborSolicitation(self) -> None:
        frame = decodeFrame(
            scapyFrame(
                s6.ICMPv6ND_NS(tgt=LMAP_LL) / s6.ICMPv6NDOptSrcLLAddr(lladdr=MS_MAC),
                MS_ADDRESS,
                nd.solicitedNodeMulticast(LMAP_LL),
            )
        )
        self.assertEqual(
            frame.message, NeighborSolicitation(LMAP_LL, (SourceLinkLayerAddress(MS_MAC),))
        )
        self.assertIsNone(frame.dadTarget)
        assert frame.ip is not None
        self.assertEqual(frame.ip.source, MS_ADDRESS)

    def test_neighborAdvertisement(self) -> None:
        frame = decodeFrame(
            scapyFrame(
                s6.ICMPv6ND_NA(tgt=MS_ADDRESS, R=0, S=1, O=1)
                / s6.ICMPv6NDOptDstLLAddr(lladdr=MS_MAC),
                MS_ADDRESS,
                LMAP_LL,
            )
        )
        self.assertEqual(
            frame.message,
            NeighborAdvertisement(MS_ADDRESS, False, True, True, (TargetLinkLayerAddress(MS_MAC),)),
        )

    def test_mldv2ReportWithRouterAlert(self) -> None:
        records = [
            s6.ICMPv6MLDMultAddrRec(rtype=4, dst="ff02::1:ff12:3456"),
            s6.ICMPv6MLDMultAddrRec(rtype=1, dst="ff05::2", sources=["2001:db8::7"]),
        ]
        packet = s6.IPv6ExtHdrHopByHop(options=[s6.RouterAlert(value=0)]) / s6.ICMPv6MLReport2(
            records=records
        )
        frame = decodeFrame(scapyFrame(packet, MS_LL, "ff02::16", hlim=1))
        assert frame.ip is not None
        self.assertEqual((frame.ip.nextHeader, frame.upperLayer), (0, 58))
        self.assertEqual(
            frame.message,
            MLDv2Report(
                (
                    MulticastAddressRecord(4, "ff02::1:ff12:3456"),
                    MulticastAddressRecord(1, "ff05::2", ("2001:db8::7",)),
                )
            ),
        )
        # During DAD of its link-local address a host reports from ::.
        frame = decodeFrame(scapyFrame(packet, "::", "ff02::16", hlim=1))
        self.assertIsInstance(frame.message, MLDv2Report)

    def test_mldv1Report(self) -> None:
        packet = s6.IPv6ExtHdrHopByHop(options=[s6.RouterAlert()]) / s6.ICMPv6MLReport(
            mladdr="ff02::1:ff12:3456"
        )
        frame = decodeFrame(scapyFrame(packet, MS_LL, "ff02::1:ff12:3456", hlim=1))
        self.assertEqual(frame.message, MLDReport("ff02::1:ff12:3456"))

    def test_dhcpv6Solicit(self) -> None:
        solicit = sdhcp6.DHCP6_Solicit(trid=0x123456) / sdhcp6.DHCP6OptClientId()
        packet = UDP(sport=546, dport=547) / solicit
        frame = decodeFrame(scapyFrame(packet, MS_LL, "ff02::1:2", hlim=1))
        self.assertTrue(frame.isDHCPv6)
        self.assertIsNone(frame.message)
        self.assertEqual(frame.upperLayer, 17)
        assert frame.udp is not None
        self.assertEqual((frame.udp.sourcePort, frame.udp.destinationPort), (546, 547))
        self.assertEqual(frame.udpPayload, bytes(solicit))
        self.assertEqual((frame.udpPayload or b"")[:4], bytes.fromhex("01123456"))
        # A relay's message (547 to 547) or any other UDP is not a client's.
        other = decodeFrame(scapyFrame(UDP(sport=547, dport=547) / solicit, MS_LL, "ff02::1:2"))
        self.assertFalse(other.isDHCPv6)
        self.assertFalse(
            decodeFrame(scapyFrame(UDP(sport=5353, dport=53), MS_LL, LMAP_LL)).isDHCPv6
        )

    def test_echoFromLocalAddress(self) -> None:
        frame = decodeFrame(
            scapyFrame(
                s6.ICMPv6EchoRequest(id=1, seq=2, data=b"x" * 20), MS_ADDRESS, "2001:db8::99"
            )
        )
        assert frame.ip is not None
        self.assertEqual(frame.ip.source, MS_ADDRESS)
        self.assertEqual((frame.upperLayer, frame.message, frame.udp), (58, None, None))
        self.assertEqual(frame.payload[0], 128)
        self.assertIsNone(frame.udpPayload)
        self.assertFalse(frame.isDHCPv6)

    def test_tcpAndNoNextHeader(self) -> None:
        frame = decodeFrame(scapyFrame(Raw(b"\x00" * 20), MS_ADDRESS, "2001:db8::99") + b"")
        self.assertEqual(frame.upperLayer, 59)  # scapy's default: No Next Header
        frame = decodeFrame(
            bytes(
                Ether(src=MS_MAC, dst=LMAP_MAC)
                / s6.IPv6(src=MS_ADDRESS, dst="2001:db8::99", nh=6)
                / Raw(b"t" * 20)
            )
        )
        self.assertEqual((frame.upperLayer, frame.payload), (6, b"t" * 20))

    def test_extensionHeadersSkipped(self) -> None:
        packet = (
            s6.IPv6ExtHdrHopByHop()
            / s6.IPv6ExtHdrDestOpt()
            / s6.IPv6ExtHdrRouting(addresses=["2001:db8::5"], segleft=0)
            / UDP(sport=546, dport=547)
            / b"\x01\x00\x00\x01"
        )
        frame = decodeFrame(scapyFrame(packet, MS_LL, "ff02::1:2"))
        self.assertTrue(frame.isDHCPv6)
        fragment = decodeFrame(
            scapyFrame(s6.IPv6ExtHdrFragment(offset=8) / Raw(b"f" * 16), MS_ADDRESS, "2001:db8::1")
        )
        self.assertEqual(fragment.upperLayer, 44)

    def test_ethernetPaddingIgnored(self) -> None:
        data = scapyFrame(s6.ICMPv6ND_RS(), "::", "ff02::2")
        self.assertEqual(len(data), 62)
        padded = decodeFrame(data + bytes(30))
        self.assertEqual(padded, decodeFrame(data))

    def test_notIPv6(self) -> None:
        frame = decodeFrame(bytes(Ether(src=MS_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP()))
        self.assertEqual(frame.ethernet.etherType, 0x0806)
        self.assertEqual(frame.ethernet.destination, "ff:ff:ff:ff:ff:ff")
        self.assertIsNone(frame.ip)
        self.assertIsNone(frame.upperLayer)
        self.assertIsNone(frame.message)
        self.assertEqual(len(frame.payload), 28)
        self.assertIsNone(decodeFrame(bytes(14)).ip)


def _icmp(message: bytes, source: str = MS_LL, destination: str = "ff02::2") -> bytes:
    """Raw ICMPv6 bytes (checksum field zero) with the checksum filled in."""
    total = nd.checksum(source, destination, 58, message)
    return message[:2] + total.to_bytes(2, "big") + message[4:]


def _frame(
    icmp: bytes, source: str = MS_LL, destination: str = "ff02::2", hopLimit: int = 255
) -> bytes:
    ip = IPv6Header(source, destination, 58, hopLimit, len(icmp))
    return EthernetHeader("33:33:00:00:00:02", MS_MAC).encode() + ip.encode() + icmp


class MalformedTests(SynchronousTestCase):
    """Every way a frame is rejected, and the counter key each gives."""

    def assertRejected(self, error: type[NDError], reason: str, data: bytes) -> NDError:
        e = self.assertRaises(error, decodeFrame, data)
        self.assertEqual(e.reason, reason)
        self.assertIsInstance(e, ValueError)
        return e

    def test_reasonsDistinct(self) -> None:
        errors = [
            NDError,
            TruncatedFrame,
            BadIPVersion,
            BadChecksum,
            BadLength,
            BadHopLimit,
            BadCode,
            BadAddress,
            BadOption,
        ]
        self.assertEqual(len({e.reason for e in errors}), len(errors))

    def test_badChecksum(self) -> None:
        good = scapyFrame(s6.ICMPv6ND_RS(), "::", "ff02::2")
        bad = good[:56] + bytes((good[56] ^ 0x01,)) + good[57:]
        self.assertRejected(BadChecksum, "bad-checksum", bad)
        wrong = scapyFrame(s6.ICMPv6ND_RS(cksum=0x1234), "::", "ff02::2")
        self.assertRejected(BadChecksum, "bad-checksum", wrong)
        # Checked over the addresses too: same message, other destination.
        moved = good[:38] + nd._packAddress("ff02::1") + good[54:]
        self.assertRejected(BadChecksum, "bad-checksum", moved)
        for message in (MLDv2Report(), MLDReport("ff02::1")):
            data = bytearray(buildFrame(MS_MAC, MS_MAC, MS_LL, "ff02::16", message, 1, True))
            data[-1] ^= 0x40
            self.assertRejected(BadChecksum, "bad-checksum", bytes(data))

    def test_hopLimit(self) -> None:
        """RFC 4861 6.1, 7.1: ND messages whose hop limit is not 255 are discarded."""
        packets = [
            (s6.ICMPv6ND_RS(), MS_LL, "ff02::2"),
            (s6.ICMPv6ND_RA(), LMAP_LL, "ff02::1"),
            (s6.ICMPv6ND_NS(tgt=MS_ADDRESS), "::", "ff02::1:ff12:3456"),
            (s6.ICMPv6ND_NA(tgt=MS_ADDRESS, S=0), MS_ADDRESS, "ff02::1"),
        ]
        for packet, source, destination in packets:
            self.assertIsNotNone(decodeFrame(scapyFrame(packet, source, destination)).message)
            for hopLimit in (0, 1, 64, 254):
                self.assertRejected(
                    BadHopLimit,
                    "bad-hop-limit",
                    scapyFrame(packet, source, destination, hlim=hopLimit),
                )
        # MLD is sent with hop limit 1; other ICMPv6 with any.
        data = buildFrame(MS_MAC, MS_MAC, MS_LL, "ff02::16", MLDv2Report(), 1, True)
        self.assertIsInstance(decodeFrame(data).message, MLDv2Report)
        echo = scapyFrame(s6.ICMPv6EchoRequest(), MS_ADDRESS, "2001:db8::1", hlim=3)
        self.assertEqual(decodeFrame(echo).upperLayer, 58)

    def test_code(self) -> None:
        self.assertRejected(
            BadCode, "bad-code", scapyFrame(s6.ICMPv6ND_RS(code=1), MS_LL, "ff02::2")
        )

    def test_optionLengthZero(self) -> None:
        """RFC 4861 4.6: a node must silently discard a message with an option of length 0."""
        icmp = _icmp(bytes((133, 0, 0, 0, 0, 0, 0, 0, 1, 0)) + bytes(6))
        e = self.assertRejected(BadLength, "bad-length", _frame(icmp))
        self.assertIn("length 0", str(e))
        icmp = _icmp(bytes((133, 0, 0, 0, 0, 0, 0, 0, 99, 0)) + bytes(6))
        self.assertRejected(BadLength, "bad-length", _frame(icmp))

    def test_optionOverrun(self) -> None:
        slla = bytes((1, 1)) + bytes.fromhex("525400123456")
        for tail in (slla[:1], bytes((1, 2)) + slla[2:], slla + bytes((5, 1, 0, 0))):
            icmp = _icmp(bytes((133, 0, 0, 0, 0, 0, 0, 0)) + tail)
            self.assertRejected(BadLength, "bad-length", _frame(icmp))

    def test_optionWrongLength(self) -> None:
        cases = [
            bytes((1, 2)) + bytes(14),  # SLLA of 2 units: not Ethernet
            bytes((5, 2)) + bytes(14),  # MTU
            bytes((3, 3)) + bytes(22),  # PIO
            bytes((25, 2)) + bytes(14),  # RDNSS: even
            bytes((25, 1)) + bytes(6),  # RDNSS: no address
        ]
        for option in cases:
            icmp = _icmp(bytes((134, 0, 0, 0)) + bytes(12) + option, LMAP_LL, "ff02::1")
            self.assertRejected(BadLength, "bad-length", _frame(icmp, LMAP_LL, "ff02::1"))

    def test_prefixLengthOver128(self) -> None:
        pio = bytearray(PrefixInformation(LNP).encodeBody())
        pio[0] = 129
        icmp = _icmp(bytes((134, 0, 0, 0)) + bytes(12) + b"\x03\x04" + pio, LMAP_LL, "ff02::1")
        self.assertRejected(BadOption, "bad-option", _frame(icmp, LMAP_LL, "ff02::1"))

    def test_sourceLinkLayerFromUnspecified(self) -> None:
        """RFC 4861 6.1.1 and 7.1.1: no SLLA option in an RS or NS from ::."""
        rs = s6.ICMPv6ND_RS() / s6.ICMPv6NDOptSrcLLAddr(lladdr=MS_MAC)
        self.assertRejected(BadOption, "bad-option", scapyFrame(rs, "::", "ff02::2"))
        ns = s6.ICMPv6ND_NS(tgt=MS_ADDRESS) / s6.ICMPv6NDOptSrcLLAddr(lladdr=MS_MAC)
        self.assertRejected(BadOption, "bad-option", scapyFrame(ns, "::", "ff02::1:ff12:3456"))

    def test_addresses(self) -> None:
        cases = [
            # An RA from a global address (RFC 4861 6.1.2).
            (s6.ICMPv6ND_RA(), MS_ADDRESS, "ff02::1"),
            # Multicast targets (7.1.1, 7.1.2).
            (s6.ICMPv6ND_NS(tgt="ff02::1"), MS_LL, "ff02::1"),
            (s6.ICMPv6ND_NA(tgt="ff02::1", S=0), MS_LL, "ff02::1"),
            # A DAD probe not to the target's solicited-node group (7.1.1).
            (s6.ICMPv6ND_NS(tgt=MS_ADDRESS), "::", "ff02::1"),
            (s6.ICMPv6ND_NS(tgt=MS_ADDRESS), "::", "ff02::1:ff12:3457"),
            # A solicited NA to a group (7.1.2).
            (s6.ICMPv6ND_NA(tgt=MS_ADDRESS, S=1), MS_ADDRESS, "ff02::1"),
        ]
        for packet, source, destination in cases:
            self.assertRejected(BadAddress, "bad-address", scapyFrame(packet, source, destination))

    def test_truncated(self) -> None:
        """Every strict prefix of a frame is truncated (its Payload Length says so)."""
        data = mpaAdvertisement(dnsServers=["2001:db8::53"])
        for end in range(len(data)):
            self.assertRejected(TruncatedFrame, "truncated", data[:end])

    def test_messageShorterThanFixedPart(self) -> None:
        for icmpType, size in ((133, 7), (134, 15), (135, 23), (136, 23), (143, 7), (131, 23)):
            icmp = _icmp(bytes((icmpType,)) + bytes(size - 1))
            self.assertRejected(TruncatedFrame, "truncated", _frame(icmp))
        self.assertRejected(TruncatedFrame, "truncated", _frame(b"\x85\x00\x00"))

    def test_mldv2RecordOverrun(self) -> None:
        record = MulticastAddressRecord(4, "ff02::1:ff12:3456").encode()
        for body in (
            struct.pack("!2xH", 2) + record,  # two records announced, one there
            struct.pack("!2xH", 1) + record[:19],
            struct.pack("!2xH", 1) + record[:2] + b"\x00\x01" + record[4:],  # a source missing
            struct.pack("!2xH", 1) + record[:1] + b"\x01" + record[2:],  # aux data missing
        ):
            icmp = _icmp(b"\x8f\x00\x00\x00" + body, MS_LL, "ff02::16")
            self.assertRejected(BadLength, "bad-length", _frame(icmp, MS_LL, "ff02::16", 1))

    def test_ipVersion(self) -> None:
        data = bytearray(scapyFrame(s6.ICMPv6ND_RS(), "::", "ff02::2"))
        data[14] = 0x45
        self.assertRejected(BadIPVersion, "bad-ip-version", bytes(data))

    def test_extensionHeaderOverrun(self) -> None:
        data = bytearray(scapyFrame(s6.IPv6ExtHdrHopByHop() / s6.ICMPv6ND_RS(), "::", "ff02::2"))
        data[55] = 4  # 40 bytes of hop-by-hop in a 16-byte payload
        self.assertRejected(TruncatedFrame, "truncated", bytes(data))
        self.assertRejected(
            TruncatedFrame, "truncated", scapyFrame(Raw(b""), MS_LL, "ff02::2")[:53]
        )
        short = bytes(Ether() / s6.IPv6(nh=0, plen=4) / Raw(b"\x3a\x00\x00\x00"))
        self.assertRejected(TruncatedFrame, "truncated", short)

    def test_udp(self) -> None:
        short = bytes(Ether() / s6.IPv6(nh=17) / Raw(b"\x02\x22\x02\x23"))
        self.assertRejected(TruncatedFrame, "truncated", short)
        for length in (7, 13):
            bad = bytes(Ether() / s6.IPv6() / UDP(sport=546, dport=547, len=length) / b"abcd")
            self.assertRejected(BadLength, "bad-length", bad)

    def test_decodeICMPv6Directly(self) -> None:
        self.assertRaises(TruncatedFrame, decodeICMPv6, b"\x85", MS_LL, "ff02::2")
        self.assertIsNone(decodeICMPv6(b"\x80\x00\x00\x00", MS_LL, "ff02::2"))
        rs = encodeICMPv6(RouterSolicitation(), MS_LL, "ff02::2")
        self.assertRaises(BadHopLimit, decodeICMPv6, rs, MS_LL, "ff02::2", 64)
        self.assertEqual(decodeICMPv6(rs, MS_LL, "ff02::2"), RouterSolicitation())


def _validFrames() -> list[bytes]:
    record = MulticastAddressRecord(1, "ff3e::1", ("2001:db8::1",), b"aux!")
    return [
        mpaAdvertisement(dnsServers=["2001:db8::53"], options=[UnknownNDOption(31, bytes(14))]),
        buildRouterSolicitation(MS_MAC, MS_LL),
        buildNeighborSolicitation(MS_MAC, None, "::", None, MS_ADDRESS),
        buildNeighborSolicitation(MS_MAC, LMAP_MAC, MS_ADDRESS, LMAP_LL, LMAP_LL),
        buildNeighborAdvertisement(LMAP_MAC, MS_MAC, LMAP_LL, MS_LL),
        buildFrame(MS_MAC, MS_MAC, "::", "ff02::16", MLDv2Report((record,)), 1, True),
        buildFrame(MS_MAC, MS_MAC, MS_LL, "ff02::16", MLDReport("ff02::1:ff00:1"), 1, True),
        scapyFrame(UDP(sport=546, dport=547) / sdhcp6.DHCP6_Solicit(), MS_LL, "ff02::1:2"),
        scapyFrame(
            s6.IPv6ExtHdrHopByHop() / s6.IPv6ExtHdrDestOpt() / s6.ICMPv6EchoRequest(),
            MS_ADDRESS,
            "2001:db8::1",
        ),
    ]


VALID_FRAMES = _validFrames()
_IPV6_ICMP_HEADER = EthernetHeader(MS_MAC, LMAP_MAC).encode() + bytes((0x60, 0, 0, 0))


ADVERTISEMENTS = st.builds(
    RouterAdvertisement,
    st.integers(0, 255),
    st.booleans(),
    st.booleans(),
    st.integers(0, 65535),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.lists(
        st.one_of(
            st.builds(SourceLinkLayerAddress, st.sampled_from([MS_MAC, LMAP_MAC])),
            st.builds(MTU, st.integers(0, 0xFFFFFFFF)),
            st.builds(
                PrefixInformation,
                st.sampled_from([LNP, "::", "2001:db8::1"]),
                st.integers(0, 128),
                st.booleans(),
                st.booleans(),
                st.integers(0, 0xFFFFFFFF),
                st.integers(0, 0xFFFFFFFF),
                st.booleans(),
            ),
            st.builds(
                RecursiveDNSServer,
                st.lists(st.sampled_from(["2001:db8::53", "::1"]), min_size=1, max_size=4).map(
                    tuple
                ),
                st.integers(0, 0xFFFFFFFF),
            ),
            st.builds(
                UnknownNDOption,
                st.sampled_from([4, 31, 200, 255]),
                st.integers(0, 3).map(lambda n: bytes(6 + 8 * n)),
            ),
        ),
        max_size=8,
    ).map(tuple),
    st.booleans(),
    st.sampled_from([0, 1, 3]),
)


def _decodeOrNDError(testCase: SynchronousTestCase, data: bytes) -> None:
    try:
        frame = decodeFrame(data)
    except NDError as e:
        testCase.assertIsInstance(e.reason, str)
    else:
        testCase.assertIsInstance(frame, Frame)


class PropertyTests(SynchronousTestCase):
    """Nothing but an L{NDError} comes out of L{decodeFrame}."""

    def test_validFramesDecode(self) -> None:
        for data in VALID_FRAMES:
            self.assertIsNotNone(decodeFrame(data).ip)
            self.assertEqual(fixChecksum(data), data)

    @PROPERTY
    @given(st.binary(max_size=300))
    def test_randomBytes(self, data: bytes) -> None:
        _decodeOrNDError(self, data)

    @PROPERTY
    @given(
        st.sampled_from([0, 17, 58, 43, 44, 60]),
        st.sampled_from([1, 255, 64]),
        st.sampled_from([MS_LL, "::", LMAP_LL, MS_ADDRESS]),
        st.sampled_from(["ff02::2", "ff02::1:ff12:3456", MS_LL, "ff02::16"]),
        st.binary(max_size=200),
        st.booleans(),
    )
    def test_randomPayload(
        self,
        nextHeader: int,
        hopLimit: int,
        source: str,
        destination: str,
        payload: bytes,
        checksummed: bool,
    ) -> None:
        """Random bytes behind valid headers, most with a right ICMPv6 checksum,
        to reach the option and record parsers."""
        if nextHeader == 58 and payload:
            payload = (
                bytes((133 + payload[0] % 4 if payload[0] < 200 else payload[0],)) + payload[1:]
            )
        data = (
            _IPV6_ICMP_HEADER
            + struct.pack("!HBB", len(payload), nextHeader, hopLimit)
            + nd._packAddress(source)
            + nd._packAddress(destination)
            + payload
        )
        _decodeOrNDError(self, fixChecksum(data) if checksummed else data)

    @PROPERTY
    @given(
        st.sampled_from(VALID_FRAMES),
        st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6),
        st.integers(0, 3),
        st.booleans(),
    )
    def test_mutations(
        self, data: bytes, changes: list[tuple[int, int]], how: int, checksummed: bool
    ) -> None:
        """Valid frames with bytes changed, inserted, removed or cut off."""
        mutated = bytearray(data)
        for position, value in changes:
            position %= len(mutated) + 1
            if how == 0 and position < len(mutated):
                mutated[position] = value
            elif how == 1:
                mutated.insert(position, value)
            elif how == 2 and position < len(mutated):
                del mutated[position]
            else:
                del mutated[position:]
            if not mutated:
                break
        result = bytes(mutated)
        _decodeOrNDError(self, fixChecksum(result) if checksummed else result)

    @PROPERTY
    @given(ADVERTISEMENTS)
    def test_advertisementRoundTrip(self, message: RouterAdvertisement) -> None:
        data = buildFrame(LMAP_MAC, MS_MAC, LMAP_LL, MS_LL, message)
        self.assertEqual(decodeFrame(data).message, message)

    # scapy takes a millisecond a frame: a tenth of the examples.
    @settings(PROPERTY, max_examples=max(EXAMPLES // 10, 10))
    @given(ADVERTISEMENTS)
    def test_advertisementAgainstScapy(self, message: RouterAdvertisement) -> None:
        data = buildFrame(LMAP_MAC, MS_MAC, LMAP_LL, MS_LL, message)
        p = Ether(data)
        self.assertTrue(scapyChecksumValid(p, s6.ICMPv6ND_RA))
        self.assertEqual(
            (p[s6.ICMPv6ND_RA].M, p[s6.ICMPv6ND_RA].O), (message.managed, message.other)
        )
        self.assertEqual(
            [(o.prefix, o.prefixLength, o.onLink, o.autonomous) for o in message.prefixes],
            [(q.prefix, q.prefixlen, q.L, q.A) for q in _scapyLayers(p, s6.ICMPv6NDOptPrefixInfo)],
        )


def _scapyLayers(packet: Packet, layer: type[Packet]) -> list[Packet]:
    found: list[Packet] = []
    while (layer_ := packet.getlayer(layer, len(found) + 1)) is not None:
        found.append(layer_)
    return found


# --- a real Linux host ------------------------------------------------------


def _run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=30).stdout


def _json(*command: str) -> Any:
    return json.loads(_run(*command) or "[]")


class RealHostTests(SynchronousTestCase):
    """An unmodified Linux host, in a network namespace, configures itself from
    the RA lmm builds: a SLAAC address in the LNP, a default route via the
    virtual LMAP link-local address, the advertised MTU, and (L=0) no on-link
    route for the prefix."""

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("needs root to create network namespaces")
        if shutil.which("ip") is None:
            raise SkipTest("needs iproute2's ip")
        base = f"lmnd{os.getpid()}"
        self.msNamespace, self.mpaNamespace = base + "b", base + "a"
        for namespace in (self.mpaNamespace, self.msNamespace):
            result = subprocess.run(
                ["ip", "netns", "add", namespace], capture_output=True, text=True, timeout=30
            )
            if result.returncode:
                raise SkipTest(f"ip netns add failed: {result.stderr.strip()}")
            self.addCleanup(
                subprocess.run, ["ip", "netns", "del", namespace], capture_output=True, timeout=30
            )

    def waitFor(self, what: str, check: Any, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def addresses(self, interface: str) -> list[dict[str, Any]]:
        links = _json("ip", "-n", self.msNamespace, "-j", "-6", "addr", "show", "dev", interface)
        return [a for link in links for a in link.get("addr_info", [])]

    def test_hostConfiguresFromAdvertisement(self) -> None:
        mpaIf, msIf = self.mpaNamespace, self.msNamespace
        _run(
            "ip", "link", "add", mpaIf, "netns", self.mpaNamespace,
            "type", "veth", "peer", "name", msIf, "netns", self.msNamespace,
        )  # fmt: skip
        # What an unmodified host does by default, made explicit: accept RAs,
        # EUI-64 interface identifiers.
        for key, value in (("forwarding", "0"), ("accept_ra", "1"), ("addr_gen_mode", "0")):
            _run("ip", "netns", "exec", self.msNamespace,
                 "sysctl", "-qw", f"net.ipv6.conf.{msIf}.{key}={value}")  # fmt: skip
        _run("ip", "-n", self.mpaNamespace, "link", "set", mpaIf, "up")
        _run("ip", "-n", self.msNamespace, "link", "set", msIf, "up")
        msMac = _json("ip", "-n", self.msNamespace, "-j", "link", "show", msIf)[0]["address"]
        msLinkLocal = nd.linkLocalFromMac(msMac)

        # A unicast RA to a tentative address is dropped: wait for DAD.
        def linkLocalReady() -> bool:
            return any(
                a["local"] == msLinkLocal and not a.get("tentative") for a in self.addresses(msIf)
            )

        self.waitFor("the host's link-local address", linkLocalReady)

        frame = buildRouterAdvertisement(
            LMAP_MAC,
            msMac,
            LMAP_LL,
            msLinkLocal,
            prefixes=[PrefixInformation("2001:db8:1::", 64, onLink=False, autonomous=True)],
            mtu=1460,
        )
        sender = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
            "s.bind((sys.argv[1], 0))\n"
            "s.send(bytes.fromhex(sys.argv[2]))\n"
        )
        _run("ip", "netns", "exec", self.mpaNamespace,
             sys.executable, "-c", sender, mpaIf, frame.hex())  # fmt: skip

        expected = nd.addressFromMac("2001:db8:1::", msMac)

        def slaacAddress() -> dict[str, Any] | None:
            for a in self.addresses(msIf):
                if a["local"] == expected and not a.get("tentative"):
                    return a
            return None

        address = self.waitFor(f"SLAAC address {expected}", slaacAddress)
        self.assertEqual((address["prefixlen"], address["scope"]), (64, "global"))
        self.assertLessEqual(address["valid_life_time"], 2592000)
        self.assertGreater(address["valid_life_time"], 2592000 - 60)

        routes = _json("ip", "-n", self.msNamespace, "-j", "-6", "route", "show", "dev", msIf)
        defaults = [r for r in routes if r["dst"] == "default"]
        self.assertEqual(len(defaults), 1, routes)
        self.assertEqual((defaults[0]["gateway"], defaults[0]["protocol"]), (LMAP_LL, "ra"))
        # L=0: the prefix is not on-link, everything goes to the default router.
        self.assertNotIn("2001:db8:1::/64", [r["dst"] for r in routes])

        mtu = _run("ip", "netns", "exec", self.msNamespace,
                   "sysctl", "-n", f"net.ipv6.conf.{msIf}.mtu")  # fmt: skip
        self.assertEqual(mtu.strip(), "1460")

        # The SLLA option put the virtual LMAP MAC in the host's neighbour cache.
        neighbours = _json("ip", "-n", self.msNamespace, "-j", "-6", "neigh", "show", "dev", msIf)
        self.assertIn((LMAP_LL, LMAP_MAC), [(n["dst"], n.get("lladdr")) for n in neighbours])
