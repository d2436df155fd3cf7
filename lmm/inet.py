"""
What the codecs (L{lmm.mh}, L{lmm.nd}, L{lmm.dhcp6}) and the cores share of
the Internet's wire pieces: IPv6 addresses as bytes, text and integers, the
Internet checksum over the IPv6 pseudo-header, and the length checks of
type-length-value options.

Addresses are canonical text as C{socket.inet_ntop} writes it.
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from ipaddress import IPv6Network

_pton = socket.inet_pton
_ntop = socket.inet_ntop
_AF6 = socket.AF_INET6
_PSEUDO_TAIL = struct.Struct("!I3xB")

# --- addresses -------------------------------------------------------------------


def packAddress(address: str) -> bytes:
    """The 16 bytes of IPv6 C{address}; ValueError naming it when it is none."""
    try:
        return _pton(_AF6, address)
    except (OSError, TypeError) as e:
        raise ValueError(f"not an IPv6 address: {address!r}") from e


def unpackAddress(data: bytes, offset: int = 0) -> str:
    """The canonical text of the 16 bytes at C{offset} of C{data}."""
    return _ntop(_AF6, data[offset : offset + 16])


def canonical(address: str) -> str:
    """C{address} as canonical text (C{2001:DB8:0::1} is C{2001:db8::1});
    OSError or ValueError when it is none."""
    return _ntop(_AF6, _pton(_AF6, address))


def addressToInt(address: str) -> int:
    """C{address} as a 128-bit integer (OSError or ValueError when it is none)."""
    return int.from_bytes(_pton(_AF6, address), "big")


def intToAddress(value: int) -> str:
    """The canonical text of the 128-bit integer C{value}."""
    return _ntop(_AF6, value.to_bytes(16, "big"))


# ipaddress parses and writes text in Python (5-10 us an address); these are
# the C library's, for what a per-MS path asks of an IPv6Network.


def networkAddress(network: IPv6Network) -> str:
    """The canonical text of C{network}'s address (its prefix, host bits zero)."""
    return _ntop(_AF6, network.network_address.packed)


def networkText(network: IPv6Network) -> str:
    """C{network} as C{address/length}, the address as canonical text."""
    return f"{networkAddress(network)}/{network.prefixlen}"


def inNetwork(address: str, network: IPv6Network) -> bool:
    """Whether IPv6 C{address} (text) is inside C{network}; ValueError naming
    it when it is no address."""
    return valueInNetwork(int.from_bytes(packAddress(address), "big"), network)


def valueInNetwork(value: int, network: IPv6Network) -> bool:
    """Whether the address whose 128-bit integer is C{value} is inside C{network}."""
    return value & int(network.netmask) == int(network.network_address)


# --- the Internet checksum (RFC 8200 8.1, RFC 1071) --------------------------------


def _sum(source: bytes, destination: bytes, nextHeader: int, data: bytes) -> int:
    # The one's-complement sum of 16-bit words is the number they spell modulo
    # 0xffff (2**16 == 1 there): one big-integer remainder instead of a loop.
    pseudo = source + destination + _PSEUDO_TAIL.pack(len(data), nextHeader)
    if len(data) % 2:
        data += b"\x00"
    return int.from_bytes(pseudo + data, "big") % 0xFFFF


def checksum(source: bytes, destination: bytes, nextHeader: int, data: bytes) -> int:
    """
    The Internet checksum of C{data} (its own checksum field zero) under the
    IPv6 pseudo-header of packed addresses C{source} and C{destination} and
    upper-layer protocol C{nextHeader}: 0 when the sum is all ones. What a
    protocol sends for 0 is its own rule: UDP sends 0xffff (RFC 8200 8.1, 0
    means no checksum), the Mobility Header 0 (RFC 6275 6.1.1, as the kernel
    does for protocol 135).
    """
    # The pseudo-header is never all zeros (next header), so the sum is 1..0xffff.
    return (0xFFFF - _sum(source, destination, nextHeader, data)) % 0xFFFF


def checksumValid(source: bytes, destination: bytes, nextHeader: int, data: bytes) -> bool:
    """Whether C{data}, checksum field included, sums to all ones under the
    pseudo-header (either way of writing a zero checksum passes)."""
    return _sum(source, destination, nextHeader, data) == 0


# --- option lengths ----------------------------------------------------------------


def fixedLength(error: type[Exception], cls: type, length: int, expected: int) -> None:
    """Raise C{error} unless option C{cls} has C{expected} bytes."""
    if length != expected:
        _wrongLength(error, cls, length, f"{expected}")


def minimumLength(error: type[Exception], cls: type, length: int, minimum: int) -> None:
    """Raise C{error} unless option C{cls} has at least C{minimum} bytes."""
    if length < minimum:
        _wrongLength(error, cls, length, f"{minimum} or more")


def _wrongLength(error: type[Exception], cls: type, length: int, expected: str) -> NoReturn:
    raise error(f"{cls.__name__} option length {length}, expected {expected}")
