"""lmm.inet: the address, checksum and length pieces the codecs share."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lmm import inet, mh, nd

SOURCE = inet.packAddress("2001:db8::1")
DESTINATION = inet.packAddress("2001:db8::2")


def folded(source: bytes, destination: bytes, nextHeader: int, data: bytes) -> int:
    """RFC 1071 written out: 16-bit words, end-around carry, complement."""
    whole = source + destination + struct.pack("!I3xB", len(data), nextHeader) + data
    if len(whole) % 2:
        whole += b"\x00"
    total = sum(struct.unpack(f"!{len(whole) // 2}H", whole))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class AddressTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        self.assertEqual(inet.canonical("2001:DB8:0::1"), "2001:db8::1")
        self.assertEqual(inet.unpackAddress(b"\xff" + SOURCE, 1), "2001:db8::1")
        self.assertEqual(inet.intToAddress(inet.addressToInt("2001:db8::1")), "2001:db8::1")

    def test_notAnAddress(self) -> None:
        error = self.assertRaises(ValueError, inet.packAddress, "2001:db8::zz")
        self.assertIn("'2001:db8::zz'", str(error))
        self.assertRaises(ValueError, inet.packAddress, None)  # type: ignore[arg-type]


#: Addresses with runs of zero and all-ones words, as prefixes often have.
_WORDS = st.lists(st.sampled_from([0, 0, 1, 0xFFFF, 0x2001, 0xDB8]) | st.integers(0, 0xFFFF),
                  min_size=8, max_size=8)


class NetworkTests(SynchronousTestCase):
    """The C library's answers for an IPv6Network, checked against ipaddress's."""

    @given(_WORDS, st.integers(0, 128), _WORDS)
    def test_asIpaddress(self, words: list[int], length: int, other: list[int]) -> None:
        address = ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in words))
        network = ipaddress.IPv6Network((address, length), strict=False)
        if "." not in inet.networkAddress(network):  # ipaddress writes no IPv4 inside
            self.assertEqual(inet.networkAddress(network), str(network.network_address))
            self.assertEqual(inet.networkText(network), str(network))
        candidate = ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in other))
        for text in (str(candidate), str(address), str(network.network_address),
                     str(network.broadcast_address)):
            self.assertEqual(inet.inNetwork(text, network),
                             ipaddress.IPv6Address(text) in network, (text, network))

    def test_notAnAddress(self) -> None:
        with self.assertRaises(ValueError):
            inet.inNetwork("2001:db8::g", ipaddress.IPv6Network("2001:db8::/64"))


class ChecksumTests(SynchronousTestCase):
    @given(st.binary(max_size=200), st.integers(0, 255))
    def test_asRFC1071(self, data: bytes, nextHeader: int) -> None:
        """The one checksum agrees with the folded sum written out, both ways of
        writing zero included, and what it makes checks."""
        packet = b"\x00\x00" + data  # its checksum field first, zero
        value = inet.checksum(SOURCE, DESTINATION, nextHeader, packet)
        self.assertEqual(value, folded(SOURCE, DESTINATION, nextHeader, packet) % 0xFFFF)
        for written in (value, value or 0xFFFF):
            self.assertTrue(inet.checksumValid(SOURCE, DESTINATION, nextHeader,
                                               struct.pack("!H", written) + data))

    def test_zeroSum(self) -> None:
        """A sum of all ones: the MH sends 0 (RFC 6275 6.1.1), UDP 0xffff (RFC 8200 8.1)."""
        # Find a Mobility Header whose checksum comes out 0.
        header = bytearray(b"\x3b\x01\x05\x00\x00\x00\x00\x00")
        target = inet.checksum(SOURCE, DESTINATION, mh.IPPROTO_MH, bytes(header))
        header[6:8] = struct.pack("!H", target)
        self.assertEqual(mh.checksum("2001:db8::1", "2001:db8::2", bytes(header)), 0)
        frame = nd.decodeFrame(nd.buildUDPFrame("02:00:00:00:00:01", "02:00:00:00:00:02",
                                                "fe80::1", "fe80::2", 547, 546, b"\x00\x00"))
        assert frame.udp is not None
        self.assertNotEqual(frame.udp.checksum, 0)


class LengthTests(SynchronousTestCase):
    def test_lengths(self) -> None:
        inet.fixedLength(ValueError, int, 4, 4)
        inet.minimumLength(ValueError, int, 5, 4)
        error = self.assertRaises(ValueError, inet.fixedLength, ValueError, int, 3, 4)
        self.assertEqual(str(error), "int option length 3, expected 4")
        error = self.assertRaises(KeyError, inet.minimumLength, KeyError, int, 3, 4)
        self.assertIn("expected 4 or more", str(error))
