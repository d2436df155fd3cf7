"""
Ethernet, IPv6, ICMPv6 Neighbor Discovery and MLD on the MPA's access links.

Pure codec: whole Ethernet frames (as an AF_PACKET socket reads and writes them)
in, dataclasses out, and frames back. No I/O, no clock.

The MPA emulates the Mobile Station's home link (draft-gundavelli-netlmm-mip6-proxy
sections 6.2 and 8): it answers with a unicast Router Advertisement carrying the
Local Network Prefix with L=0, and with Neighbor Advertisements for the virtual
LMAP link-local address and MAC. It treats any frame from an unknown MAC as an
attach trigger, so L{decodeFrame} decodes the Ethernet and IPv6 headers of every
IPv6 frame, the ND (RFC 4861) and MLD (RFC 2710, RFC 3810) messages in full, and
hands back any other upper layer as bytes with its protocol number.

ND messages are checked as RFC 4861 sections 6.1 and 7.1 say a receiver must
(hop limit 255, checksum, code 0, lengths, option length not 0, address rules);
a frame that fails raises an L{NDError} whose C{reason} is a counter key.
Random bytes raise nothing else.

MAC addresses are text, "aa:bb:cc:dd:ee:ff", lower case; IPv6 addresses are
canonical text (C{socket.inet_ntop}). Lifetimes are in seconds, 0xffffffff is
infinity (L{INFINITY}).

Checksums are verified for the ICMPv6 messages decoded here, never for UDP: on a
veth or any link with transmit checksum offload, an AF_PACKET reader sees UDP
datagrams whose checksum is not filled in yet (CHECKSUM_PARTIAL), while the
kernel computes every ICMPv6 checksum in software.

Over 600 lines, one module on purpose: the frames the MPA reads and writes
on an access link (Ethernet, IPv6, ICMPv6, ND and MLD messages and options,
UDP for DHCPv6), one codec with one set of checks.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, TypeVar

from lmm.inet import checksum as _checksum
from lmm.inet import checksumValid as _checksumValid
from lmm.inet import packAddress as _packAddress

ETH_P_IPV6 = 0x86DD
ETHERNET_HEADER_LENGTH = 14
IPV6_HEADER_LENGTH = 40

IPPROTO_HOPOPTS = 0
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60

DHCPV6_CLIENT_PORT = 546
DHCPV6_SERVER_PORT = 547

ND_HOP_LIMIT = 255  # RFC 4861: ND messages are sent with, and only accepted with, 255
MLD_HOP_LIMIT = 1
INFINITY = 0xFFFFFFFF

UNSPECIFIED = "::"
ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"
ALL_MLDV2_ROUTERS = "ff02::16"


class ICMPv6Type(IntEnum):
    ECHO_REQUEST = 128
    ECHO_REPLY = 129
    MLD_QUERY = 130
    MLD_REPORT = 131
    MLD_DONE = 132
    ROUTER_SOLICITATION = 133
    ROUTER_ADVERTISEMENT = 134
    NEIGHBOR_SOLICITATION = 135
    NEIGHBOR_ADVERTISEMENT = 136
    REDIRECT = 137
    MLDV2_REPORT = 143


class NDOptionType(IntEnum):
    SOURCE_LINK_LAYER_ADDRESS = 1
    TARGET_LINK_LAYER_ADDRESS = 2
    PREFIX_INFORMATION = 3
    REDIRECTED_HEADER = 4
    MTU = 5
    RECURSIVE_DNS_SERVER = 25  # RFC 8106 (was RFC 6106)
    DNS_SEARCH_LIST = 31


class RouterPreference(IntEnum):
    """The Prf field of a Router Advertisement (RFC 4191 2.2); 2 is reserved."""

    MEDIUM = 0
    HIGH = 1
    LOW = 3


class MulticastRecordType(IntEnum):
    """MLDv2 Multicast Address Record types (RFC 3810 5.2.12)."""

    MODE_IS_INCLUDE = 1
    MODE_IS_EXCLUDE = 2
    CHANGE_TO_INCLUDE_MODE = 3
    CHANGE_TO_EXCLUDE_MODE = 4
    ALLOW_NEW_SOURCES = 5
    BLOCK_OLD_SOURCES = 6


# --- errors -----------------------------------------------------------------


class NDError(ValueError):
    """A frame that cannot be decoded or must be discarded; C{reason} names the
    kind (used as a counter key), the message says what exactly is wrong."""

    reason = "malformed"


class TruncatedFrame(NDError):
    """Shorter than its headers, its IPv6 Payload Length or its message need."""

    reason = "truncated"


class BadIPVersion(NDError):
    """Ethertype IPv6 but a version other than 6 in the header."""

    reason = "bad-ip-version"


class BadChecksum(NDError):
    reason = "bad-checksum"


class BadLength(NDError):
    """An ND option of length 0 (RFC 4861 4.6: must be discarded), an option or
    record running past the message, or a length that does not fit the type."""

    reason = "bad-length"


class BadHopLimit(NDError):
    """An ND message whose IPv6 Hop Limit is not 255: it may come from off the
    link, and RFC 4861 says to discard it."""

    reason = "bad-hop-limit"


class BadCode(NDError):
    """An ND message whose ICMPv6 Code is not 0 (RFC 4861 6.1, 7.1)."""

    reason = "bad-code"


class BadAddress(NDError):
    """An address RFC 4861 forbids where it is: a multicast target, a Router
    Advertisement from other than a link-local address, a DAD probe not sent to
    the target's solicited-node group, a solicited NA sent to a group."""

    reason = "bad-address"


class BadOption(NDError):
    """An option whose contents are invalid, or which may not be where it is
    (a Source Link-layer Address option in a message from ::)."""

    reason = "bad-option"


# --- addresses --------------------------------------------------------------

_pton = socket.inet_pton
_ntop = socket.inet_ntop
_AF6 = socket.AF_INET6
_UNSPECIFIED_BYTES = bytes(16)
_SOLICITED_NODE_PREFIX = bytes.fromhex("ff0200000000000000000001ff")


def packMac(mac: str) -> bytes:
    """The 6 bytes of C{mac} ("aa:bb:cc:dd:ee:ff"); L{ValueError} for another form."""
    # Cheap form check, then fromhex: any whitespace fromhex would skip leaves
    # fewer than 6 bytes.
    if isinstance(mac, str) and len(mac) == 17 and mac[2::3] == ":::::":
        try:
            packed = bytes.fromhex(mac.replace(":", ""))
        except ValueError:
            pass
        else:
            if len(packed) == 6:
                return packed
    raise ValueError(f"not a MAC address (aa:bb:cc:dd:ee:ff): {mac!r}")


def _unpackMac(data: bytes, offset: int = 0) -> str:
    return data[offset : offset + 6].hex(":")


def isMulticast(address: str) -> bool:
    return _packAddress(address)[0] == 0xFF


def isLinkLocal(address: str) -> bool:
    """fe80::/10 (RFC 4291 2.5.6): tells a DAD probe for a link-local address
    from one for a global (Local) address."""
    packed = _packAddress(address)
    return packed[0] == 0xFE and packed[1] & 0xC0 == 0x80


def solicitedNodeMulticast(address: str) -> str:
    """ff02::1:ffXX:XXXX, the group that NS for C{address} go to (RFC 4291 2.7.1)."""
    return _ntop(_AF6, _SOLICITED_NODE_PREFIX + _packAddress(address)[13:])


def multicastMac(address: str) -> str:
    """33:33 and the low 32 bits of the group (RFC 2464 7)."""
    packed = _packAddress(address)
    if packed[0] != 0xFF:
        raise ValueError(f"{address} is not a multicast address")
    return (b"\x33\x33" + packed[12:]).hex(":")


def interfaceIdentifier(mac: str) -> bytes:
    """The 8-byte modified EUI-64 interface identifier of a 48-bit MAC: ff:fe in
    the middle and the universal/local bit inverted (RFC 4291 appendix A)."""
    m = packMac(mac)
    return bytes((m[0] ^ 0x02,)) + m[1:3] + b"\xff\xfe" + m[3:6]


def macFromInterfaceIdentifier(identifier: bytes) -> str | None:
    """The MAC an EUI-64 interface identifier was made from, or None if it was
    not made from one (stable-privacy and temporary addresses, RFC 7217 and 8981)."""
    if len(identifier) != 8 or identifier[3:5] != b"\xff\xfe":
        return None
    return (bytes((identifier[0] ^ 0x02,)) + identifier[1:3] + identifier[5:8]).hex(":")


def addressFromMac(prefix: str, mac: str) -> str:
    """The address SLAAC makes from a /64 C{prefix} and C{mac} (RFC 4862 5.5.3)
    when the host uses EUI-64 identifiers (Linux's addr_gen_mode 0)."""
    return _ntop(_AF6, _packAddress(prefix)[:8] + interfaceIdentifier(mac))


def linkLocalFromMac(mac: str) -> str:
    """fe80:: and the modified EUI-64 identifier of C{mac} (RFC 4291, RFC 4862 5.3)."""
    return addressFromMac("fe80::", mac)


# --- checksum ---------------------------------------------------------------


def checksum(source: str, destination: str, nextHeader: int, data: bytes) -> int:
    """The Internet checksum of C{data} (its own checksum field zero) under the
    IPv6 pseudo-header (RFC 8200 8.1; L{lmm.inet.checksum})."""
    return _checksum(_packAddress(source), _packAddress(destination), nextHeader, data)


# --- headers ----------------------------------------------------------------

_ETHERNET = struct.Struct("!6s6sH")
_IPV6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True)
class EthernetHeader:
    destination: str
    source: str
    etherType: int = ETH_P_IPV6

    def encode(self) -> bytes:
        return _ETHERNET.pack(packMac(self.destination), packMac(self.source), self.etherType)


@dataclass(frozen=True, slots=True)
class IPv6Header:
    """The fixed IPv6 header (RFC 8200 3). C{nextHeader} is the header's own
    field: the first extension header's type if there is one."""

    source: str
    destination: str
    nextHeader: int
    hopLimit: int = ND_HOP_LIMIT
    payloadLength: int = 0
    trafficClass: int = 0
    flowLabel: int = 0
    version: ClassVar[int] = 6

    def encode(self) -> bytes:
        first = 6 << 28 | (self.trafficClass & 0xFF) << 20 | self.flowLabel & 0xFFFFF
        return _IPV6.pack(
            first,
            self.payloadLength,
            self.nextHeader,
            self.hopLimit,
            _packAddress(self.source),
            _packAddress(self.destination),
        )


@dataclass(frozen=True, slots=True)
class UDPHeader:
    sourcePort: int
    destinationPort: int
    length: int
    checksum: int


# --- ND options -------------------------------------------------------------


class NDOption:
    """Base of every ND option (RFC 4861 4.6): type, length in units of 8 bytes,
    body. C{encodeBody} returns the bytes after the type and length."""

    __slots__ = ()
    optionType: ClassVar[int]

    def encodeBody(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> NDOption:
        """Decode the C{length} bytes at C{offset} (the option less its first two)."""
        raise NotImplementedError


def _fixedOption(cls: type, length: int, units: int) -> None:
    if length != units * 8 - 2:
        raise BadLength(f"{cls.__name__} option length {(length + 2) // 8}, expected {units}")


class _LinkLayerAddress(NDOption):
    __slots__ = ()

    def encodeBody(self) -> bytes:
        return packMac(self.address)  # type: ignore[attr-defined]

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> NDOption:
        # On Ethernet the option is one unit, a 6-byte MAC (RFC 2464 6); Linux too
        # ignores the address in an option of another length.
        _fixedOption(cls, length, 1)
        return cls(_unpackMac(data, offset))  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class SourceLinkLayerAddress(_LinkLayerAddress):
    address: str
    optionType: ClassVar[int] = NDOptionType.SOURCE_LINK_LAYER_ADDRESS


@dataclass(frozen=True, slots=True)
class TargetLinkLayerAddress(_LinkLayerAddress):
    address: str
    optionType: ClassVar[int] = NDOptionType.TARGET_LINK_LAYER_ADDRESS


_PREFIX = struct.Struct("!BBII4x16s")


@dataclass(frozen=True, slots=True)
class PrefixInformation(NDOption):
    """RFC 4861 4.6.2. The MPA sends the MS's Local Network Prefix with
    C{onLink} false, so that the MS sends everything to its default router.
    C{routerAddress} is RFC 6275's R flag (the prefix field holds the router's
    whole address)."""

    prefix: str
    prefixLength: int = 64
    onLink: bool = True
    autonomous: bool = True
    validLifetime: int = 2592000
    preferredLifetime: int = 604800
    routerAddress: bool = False
    optionType: ClassVar[int] = NDOptionType.PREFIX_INFORMATION

    def encodeBody(self) -> bytes:
        if not 0 <= self.prefixLength <= 128:
            raise ValueError(f"prefix length {self.prefixLength} is not in 0..128")
        flags = self.onLink << 7 | self.autonomous << 6 | self.routerAddress << 5
        return _PREFIX.pack(
            self.prefixLength,
            flags,
            self.validLifetime,
            self.preferredLifetime,
            _packAddress(self.prefix),
        )

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> PrefixInformation:
        _fixedOption(cls, length, 4)
        prefixLength, flags, valid, preferred, prefix = _PREFIX.unpack_from(data, offset)
        if prefixLength > 128:
            raise BadOption(f"Prefix Information prefix length {prefixLength} is over 128")
        return cls(
            _ntop(_AF6, prefix),
            prefixLength,
            bool(flags & 0x80),
            bool(flags & 0x40),
            valid,
            preferred,
            bool(flags & 0x20),
        )


_MTU = struct.Struct("!2xI")


@dataclass(frozen=True, slots=True)
class MTU(NDOption):
    """RFC 4861 4.6.4: the link MTU hosts should use."""

    mtu: int
    optionType: ClassVar[int] = NDOptionType.MTU

    def encodeBody(self) -> bytes:
        return _MTU.pack(self.mtu)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> MTU:
        _fixedOption(cls, length, 1)
        return cls(_MTU.unpack_from(data, offset)[0])


@dataclass(frozen=True, slots=True)
class RecursiveDNSServer(NDOption):
    """RFC 8106 5.1: DNS server addresses and their lifetime."""

    servers: tuple[str, ...]
    lifetime: int
    optionType: ClassVar[int] = NDOptionType.RECURSIVE_DNS_SERVER

    def encodeBody(self) -> bytes:
        if not self.servers:
            raise ValueError("an RDNSS option carries at least one address")
        return struct.pack("!2xI", self.lifetime) + b"".join(_packAddress(a) for a in self.servers)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> RecursiveDNSServer:
        units = (length + 2) // 8
        if units < 3 or units % 2 == 0:
            raise BadLength(f"RDNSS option length {units}, expected an odd number of 3 or more")
        lifetime = struct.unpack_from("!2xI", data, offset)[0]
        servers = tuple(
            _ntop(_AF6, data[p : p + 16]) for p in range(offset + 6, offset + length, 16)
        )
        return cls(servers, lifetime)


@dataclass(frozen=True, slots=True)
class UnknownNDOption(NDOption):
    """An option this codec does not decode: kept, and skipped (RFC 4861 4.6:
    receivers must silently ignore options they do not recognize)."""

    type: int
    data: bytes = b""

    def encodeBody(self) -> bytes:
        if not 1 <= self.type <= 255:
            raise ValueError(f"an ND option type is 1..255, not {self.type}")
        if (len(self.data) + 2) % 8:
            raise ValueError(
                f"option type {self.type}: {len(self.data)} bytes of data do not fill"
                " the option to a multiple of 8 bytes"
            )
        return bytes(self.data)


_OPTIONS: dict[int, type[NDOption]] = {
    c.optionType: c
    for c in (
        SourceLinkLayerAddress,
        TargetLinkLayerAddress,
        PrefixInformation,
        MTU,
        RecursiveDNSServer,
    )
}


def _encodeOptions(options: Iterable[NDOption]) -> bytes:
    parts = []
    for option in options:
        body = option.encodeBody()
        size = len(body) + 2
        if size % 8 or size > 255 * 8:
            raise ValueError(f"{type(option).__name__} option is {size} bytes")
        optionType = option.type if isinstance(option, UnknownNDOption) else option.optionType
        parts.append(bytes((optionType, size // 8)))
        parts.append(body)
    return b"".join(parts)


def _decodeOptions(data: bytes, position: int) -> tuple[NDOption, ...]:
    options: list[NDOption] = []
    end = len(data)
    while position < end:
        if position + 2 > end:
            raise BadLength(f"option at offset {position} has no length byte")
        optionType = data[position]
        units = data[position + 1]
        if units == 0:
            raise BadLength(f"option type {optionType} at offset {position} has length 0")
        body = position + 2
        position += units * 8
        if position > end:
            raise BadLength(
                f"option type {optionType} at offset {body - 2}"
                f" runs {position - end} bytes past the message"
            )
        decoder = _OPTIONS.get(optionType)
        if decoder is None:
            options.append(UnknownNDOption(optionType, data[body:position]))
        else:
            options.append(decoder.decodeBody(data, body, position - body))
    return tuple(options)


# --- messages ---------------------------------------------------------------

Option = TypeVar("Option", bound=NDOption)


class ICMPv6Message:
    """Base of every message decoded here. C{minimumLength} counts the whole
    message with its 4-byte ICMPv6 header; C{encodeBody} returns what follows
    that header."""

    __slots__ = ()
    icmpType: ClassVar[int]
    minimumLength: ClassVar[int]

    def encodeBody(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decodeBody(cls, data: bytes, source: str, destination: str) -> ICMPv6Message:
        raise NotImplementedError


class NDMessage(ICMPv6Message):
    """An RFC 4861 message: hop limit 255, code 0, options after the fixed part."""

    __slots__ = ()
    options: tuple[NDOption, ...]

    def option(self, kind: type[Option]) -> Option | None:
        """The first option of that class, or None."""
        for o in self.options:
            if type(o) is kind:
                return o  # type: ignore[return-value]
        return None

    def optionsOf(self, kind: type[Option]) -> tuple[Option, ...]:
        """Every option of that class (an RA can carry several prefixes)."""
        return tuple(o for o in self.options if type(o) is kind)  # type: ignore[misc]

    @property
    def sourceLinkLayerAddress(self) -> str | None:
        o = self.option(SourceLinkLayerAddress)
        return None if o is None else o.address


def _noSourceLinkLayerFromUnspecified(
    cls: type, source: str, options: tuple[NDOption, ...]
) -> None:
    if source == UNSPECIFIED:
        for o in options:
            if type(o) is SourceLinkLayerAddress:
                raise BadOption(
                    f"{cls.__name__} from :: carries a Source Link-layer Address option"
                )


@dataclass(frozen=True, slots=True)
class RouterSolicitation(NDMessage):
    options: tuple[NDOption, ...] = ()
    icmpType: ClassVar[int] = ICMPv6Type.ROUTER_SOLICITATION
    minimumLength: ClassVar[int] = 8

    def encodeBody(self) -> bytes:
        return bytes(4) + _encodeOptions(self.options)

    @classmethod
    def decodeBody(cls, data: bytes, source: str, destination: str) -> RouterSolicitation:
        options = _decodeOptions(data, 8)
        _noSourceLinkLayerFromUnspecified(cls, source, options)
        return cls(options)


_RA = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class RouterAdvertisement(NDMessage):
    """RFC 4861 4.2. C{managed} is M (addresses from DHCPv6), C{other} is O
    (other configuration from DHCPv6), C{homeAgent} is RFC 6275's H, and
    C{preference} RFC 4191's Prf. Times: router lifetime in seconds, reachable
    time and retransmission timer in milliseconds, 0 for unspecified."""

    curHopLimit: int = 64
    managed: bool = False
    other: bool = False
    routerLifetime: int = 1800
    reachableTime: int = 0
    retransTimer: int = 0
    options: tuple[NDOption, ...] = ()
    homeAgent: bool = False
    preference: int = RouterPreference.MEDIUM
    icmpType: ClassVar[int] = ICMPv6Type.ROUTER_ADVERTISEMENT
    minimumLength: ClassVar[int] = 16

    def encodeBody(self) -> bytes:
        flags = (
            self.managed << 7 | self.other << 6 | self.homeAgent << 5 | (self.preference & 3) << 3
        )
        return _RA.pack(
            self.curHopLimit, flags, self.routerLifetime, self.reachableTime, self.retransTimer
        ) + _encodeOptions(self.options)

    @classmethod
    def decodeBody(cls, data: bytes, source: str, destination: str) -> RouterAdvertisement:
        if not isLinkLocal(source):
            raise BadAddress(f"Router Advertisement from {source}, not a link-local address")
        hopLimit, flags, lifetime, reachable, retrans = _RA.unpack_from(data, 4)
        return cls(
            hopLimit,
            bool(flags & 0x80),
            bool(flags & 0x40),
            lifetime,
            reachable,
            retrans,
            _decodeOptions(data, 16),
            bool(flags & 0x20),
            flags >> 3 & 3,
        )

    @property
    def prefixes(self) -> tuple[PrefixInformation, ...]:
        return self.optionsOf(PrefixInformation)

    @property
    def mtu(self) -> int | None:
        o = self.option(MTU)
        return None if o is None else o.mtu


def _target(cls: type, data: bytes) -> tuple[bytes, str]:
    packed = data[8:24]
    if packed[0] == 0xFF:
        raise BadAddress(f"{cls.__name__} for a multicast target {_ntop(_AF6, packed)}")
    return packed, _ntop(_AF6, packed)


@dataclass(frozen=True, slots=True)
class NeighborSolicitation(NDMessage):
    """RFC 4861 4.3. From :: it is a Duplicate Address Detection probe for
    C{target} (RFC 4862 5.4.2), sent to the target's solicited-node group."""

    target: str
    options: tuple[NDOption, ...] = ()
    icmpType: ClassVar[int] = ICMPv6Type.NEIGHBOR_SOLICITATION
    minimumLength: ClassVar[int] = 24

    def encodeBody(self) -> bytes:
        return bytes(4) + _packAddress(self.target) + _encodeOptions(self.options)

    @classmethod
    def decodeBody(cls, data: bytes, source: str, destination: str) -> NeighborSolicitation:
        packed, target = _target(cls, data)
        options = _decodeOptions(data, 24)
        if source == UNSPECIFIED:
            if _packAddress(destination) != _SOLICITED_NODE_PREFIX + packed[13:]:
                raise BadAddress(
                    f"DAD Neighbor Solicitation for {target} sent to {destination},"
                    " not to its solicited-node group"
                )
            _noSourceLinkLayerFromUnspecified(cls, source, options)
        return cls(target, options)


_NA = struct.Struct("!B3x")


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement(NDMessage):
    """RFC 4861 4.4: C{router} R, C{solicited} S, C{override} O."""

    target: str
    router: bool = False
    solicited: bool = False
    override: bool = False
    options: tuple[NDOption, ...] = ()
    icmpType: ClassVar[int] = ICMPv6Type.NEIGHBOR_ADVERTISEMENT
    minimumLength: ClassVar[int] = 24

    def encodeBody(self) -> bytes:
        flags = self.router << 7 | self.solicited << 6 | self.override << 5
        return _NA.pack(flags) + _packAddress(self.target) + _encodeOptions(self.options)

    @classmethod
    def decodeBody(cls, data: bytes, source: str, destination: str) -> NeighborAdvertisement:
        _, target = _target(cls, data)
        flags = data[4]
        if flags & 0x40 and isMulticast(destination):
            raise BadAddress(f"solicited Neighbor Advertisement sent to {destination}")
        return cls(
            target,
            bool(flags & 0x80),
            bool(flags & 0x40),
            bool(flags & 0x20),
            _decodeOptions(data, 24),
        )

    @property
    def targetLinkLayerAddress(self) -> str | None:
        o = self.option(TargetLinkLayerAddress)
        return None if o is None else o.address


_MLD = struct.Struct("!H2x16s")


class _MLDv1(ICMPv6Message):
    """Maximum Response Delay (ms), reserved, Multicast Address (RFC 2710 3)."""

    __slots__ = ()
    minimumLength: ClassVar[int] = 24

    def encodeBody(self) -> bytes:
        delay = getattr(self, "maximumResponseDelay", 0)
        return _MLD.pack(delay, _packAddress(self.multicastAddress))  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class MLDQuery(_MLDv1):
    """An MLDv1 or (its first 24 bytes) an MLDv2 Query; the MPA only recognises it."""

    multicastAddress: str = UNSPECIFIED
    maximumResponseDelay: int = 10000
    icmpType: ClassVar[int] = ICMPv6Type.MLD_QUERY

    @classmethod
    def decodeBody(cls, data: bytes, source: str, destination: str) -> MLDQuery:
        delay, group = _MLD.unpack_from(data, 4)
        return cls(_ntop(_AF6, group), delay)


@dataclass(frozen=True, slots=True)
class MLDReport(_MLDv1):
    """An MLDv1 Report (RFC 2710), sent by hosts made to speak MLDv1."""

    multicastAddress: str
    icmpType: ClassVar[int] = ICMPv6Type.MLD_REPORT

    @classmethod
    def decodeBody(cls, data: bytes, source: str, destination: str) -> MLDReport:
        return cls(_ntop(_AF6, data[8:24]))


@dataclass(frozen=True, slots=True)
class MLDDone(_MLDv1):
    multicastAddress: str
    icmpType: ClassVar[int] = ICMPv6Type.MLD_DONE

    @classmethod
    def decodeBody(cls, data: bytes, source: str, destination: str) -> MLDDone:
        return cls(_ntop(_AF6, data[8:24]))


_RECORD = struct.Struct("!BBH16s")


@dataclass(frozen=True, slots=True)
class MulticastAddressRecord:
    """One record of an MLDv2 Report (RFC 3810 5.2.4). A host joins the
    solicited-node group of each of its addresses, so the records of a report
    tell the low 24 bits of the addresses a host holds or is probing."""

    recordType: int
    multicastAddress: str
    sources: tuple[str, ...] = ()
    auxiliaryData: bytes = b""

    def encode(self) -> bytes:
        if len(self.auxiliaryData) % 4:
            raise ValueError("MLDv2 auxiliary data is a whole number of 32-bit words")
        return (
            _RECORD.pack(
                self.recordType,
                len(self.auxiliaryData) // 4,
                len(self.sources),
                _packAddress(self.multicastAddress),
            )
            + b"".join(_packAddress(s) for s in self.sources)
            + self.auxiliaryData
        )


@dataclass(frozen=True, slots=True)
class MLDv2Report(ICMPv6Message):
    """RFC 3810 5.2. Linux sends these when an interface comes up (also when it
    keeps its addresses across a link flap and sends neither RS nor DAD)."""

    records: tuple[MulticastAddressRecord, ...] = ()
    icmpType: ClassVar[int] = ICMPv6Type.MLDV2_REPORT
    minimumLength: ClassVar[int] = 8

    def encodeBody(self) -> bytes:
        return struct.pack("!2xH", len(self.records)) + b"".join(r.encode() for r in self.records)

    @classmethod
    def decodeBody(cls, data: bytes, source: str, destination: str) -> MLDv2Report:
        count = struct.unpack_from("!H", data, 6)[0]
        records = []
        position = 8
        end = len(data)
        for i in range(count):
            if position + 20 > end:
                raise BadLength(f"MLDv2 record {i} of {count} runs past the message")
            recordType, auxWords, sourceCount, group = _RECORD.unpack_from(data, position)
            start = position + 20
            auxStart = start + 16 * sourceCount
            position = auxStart + 4 * auxWords
            if position > end:
                raise BadLength(f"MLDv2 record {i} of {count} runs past the message")
            records.append(
                MulticastAddressRecord(
                    recordType,
                    _ntop(_AF6, group),
                    tuple(_ntop(_AF6, data[p : p + 16]) for p in range(start, auxStart, 16)),
                    data[auxStart:position],
                )
            )
        return cls(tuple(records))

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(r.multicastAddress for r in self.records)


_ND_TYPES = frozenset(
    (
        ICMPv6Type.ROUTER_SOLICITATION,
        ICMPv6Type.ROUTER_ADVERTISEMENT,
        ICMPv6Type.NEIGHBOR_SOLICITATION,
        ICMPv6Type.NEIGHBOR_ADVERTISEMENT,
    )
)

_MESSAGES: dict[int, type[ICMPv6Message]] = {
    c.icmpType: c
    for c in (
        RouterSolicitation,
        RouterAdvertisement,
        NeighborSolicitation,
        NeighborAdvertisement,
        MLDQuery,
        MLDReport,
        MLDDone,
        MLDv2Report,
    )
}


# --- ICMPv6 -----------------------------------------------------------------


def encodeICMPv6(message: ICMPv6Message, source: str, destination: str) -> bytes:
    """The ICMPv6 bytes of C{message} from C{source} to C{destination}, checksum filled."""
    return _encodeICMPv6(message, _packAddress(source), _packAddress(destination))


def _encodeICMPv6(message: ICMPv6Message, source: bytes, destination: bytes) -> bytes:
    data = bytes((message.icmpType, 0, 0, 0)) + message.encodeBody()
    total = _checksum(source, destination, IPPROTO_ICMPV6, data)
    return data[:2] + total.to_bytes(2, "big") + data[4:]


def decodeICMPv6(
    data: bytes, source: str, destination: str, hopLimit: int = ND_HOP_LIMIT
) -> ICMPv6Message | None:
    """Decode and check the ICMPv6 message C{data} that came from C{source} to
    C{destination} with C{hopLimit}; None for a type not decoded here (echo,
    errors, Redirect...), whose checksum is not checked either."""
    return _decodeICMPv6(
        data, _packAddress(source), _packAddress(destination), source, destination, hopLimit
    )


def _decodeICMPv6(
    data: bytes,
    packedSource: bytes,
    packedDestination: bytes,
    source: str,
    destination: str,
    hopLimit: int,
) -> ICMPv6Message | None:
    if len(data) < 4:
        raise TruncatedFrame(f"{len(data)} bytes of ICMPv6, a header has 4")
    icmpType = data[0]
    cls = _MESSAGES.get(icmpType)
    if cls is None:
        return None
    if icmpType in _ND_TYPES:
        if hopLimit != ND_HOP_LIMIT:
            raise BadHopLimit(f"{cls.__name__} with hop limit {hopLimit}, not 255")
        if data[1] != 0:
            raise BadCode(f"{cls.__name__} with code {data[1]}, not 0")
    if len(data) < cls.minimumLength:
        raise TruncatedFrame(
            f"{len(data)} bytes of {cls.__name__}, it has at least {cls.minimumLength}"
        )
    if not _checksumValid(packedSource, packedDestination, IPPROTO_ICMPV6, data):
        raise BadChecksum(f"{cls.__name__} from {source} to {destination}: bad checksum")
    return cls.decodeBody(data, source, destination)


# --- frames -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded Ethernet frame.

    For a frame of another ethertype only C{ethernet} and C{payload} (what follows
    the Ethernet header) are set. For IPv6, C{upperLayer} is the protocol found
    after skipping extension headers (hop-by-hop, routing, destination options;
    a fragment header stops the walk and is the upper layer) and C{payload} its
    bytes, cut to the IPv6 Payload Length (Ethernet padding dropped).
    C{message} is the decoded ND or MLD message if there is one; C{udp} the UDP
    header if the upper layer is UDP.
    """

    ethernet: EthernetHeader
    ip: IPv6Header | None = None
    upperLayer: int | None = None
    payload: bytes = b""
    message: ICMPv6Message | None = None
    udp: UDPHeader | None = None

    @property
    def isDHCPv6(self) -> bool:
        """A DHCPv6 client message: UDP from port 546 to 547 (RFC 8415 7.2)."""
        udp = self.udp
        return (
            udp is not None
            and udp.destinationPort == DHCPV6_SERVER_PORT
            and udp.sourcePort == DHCPV6_CLIENT_PORT
        )

    @property
    def udpPayload(self) -> bytes | None:
        udp = self.udp
        return None if udp is None else self.payload[8 : udp.length]

    @property
    def dadTarget(self) -> str | None:
        """The address a Duplicate Address Detection probe is for: the target of
        a Neighbor Solicitation from ::. Use L{isLinkLocal} to tell a probe for a
        link-local address from one for a Local Address."""
        message = self.message
        if type(message) is NeighborSolicitation and self.ip is not None:
            if self.ip.source == UNSPECIFIED:
                return message.target
        return None


_EXTENSION_HEADERS = frozenset((IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS))


def decodeFrame(data: bytes) -> Frame:
    """Decode an Ethernet II frame; raise an L{NDError} saying what is wrong.

    A frame of another ethertype than IPv6 is no error: its L{Frame} has no C{ip}.
    """
    size = len(data)
    if size < ETHERNET_HEADER_LENGTH:
        raise TruncatedFrame(f"{size} bytes, an Ethernet header has 14")
    destinationMac, sourceMac, etherType = _ETHERNET.unpack_from(data)
    ethernet = EthernetHeader(destinationMac.hex(":"), sourceMac.hex(":"), etherType)
    if etherType != ETH_P_IPV6:
        return Frame(ethernet, payload=data[ETHERNET_HEADER_LENGTH:])
    if size < ETHERNET_HEADER_LENGTH + IPV6_HEADER_LENGTH:
        raise TruncatedFrame(f"{size} bytes, Ethernet and IPv6 headers have 54")
    first, payloadLength, nextHeader, hopLimit, packedSource, packedDestination = _IPV6.unpack_from(
        data, ETHERNET_HEADER_LENGTH
    )
    if first >> 28 != 6:
        raise BadIPVersion(f"IP version {first >> 28} in an IPv6 frame")
    start = ETHERNET_HEADER_LENGTH + IPV6_HEADER_LENGTH
    end = start + payloadLength
    if end > size:
        raise TruncatedFrame(
            f"Payload Length says {payloadLength} bytes, the frame holds {size - start}"
        )
    source = _ntop(_AF6, packedSource)
    destination = _ntop(_AF6, packedDestination)
    ip = IPv6Header(
        source,
        destination,
        nextHeader,
        hopLimit,
        payloadLength,
        first >> 20 & 0xFF,
        first & 0xFFFFF,
    )
    upperLayer = nextHeader
    position = start
    while upperLayer in _EXTENSION_HEADERS:
        if position + 8 > end:
            raise TruncatedFrame(f"extension header {upperLayer} runs past the payload")
        upperLayer = data[position]
        position += (data[position + 1] + 1) * 8
        if position > end:
            raise TruncatedFrame("extension header runs past the payload")
    payload = data[position:end]
    if upperLayer == IPPROTO_ICMPV6:
        message = _decodeICMPv6(
            payload, packedSource, packedDestination, source, destination, hopLimit
        )
        return Frame(ethernet, ip, upperLayer, payload, message)
    if upperLayer == IPPROTO_UDP:
        if len(payload) < 8:
            raise TruncatedFrame(f"{len(payload)} bytes of UDP, a header has 8")
        udp = UDPHeader(*_UDP.unpack_from(payload))
        if not 8 <= udp.length <= len(payload):
            raise BadLength(f"UDP length {udp.length} in {len(payload)} bytes")
        return Frame(ethernet, ip, upperLayer, payload, udp=udp)
    return Frame(ethernet, ip, upperLayer, payload)


# --- building ---------------------------------------------------------------

# Hop-by-hop header with a Router Alert option, value 0 (MLD; RFC 2711, RFC 3810
# 5) and a PadN of 0 data bytes to fill it to 8 bytes. Its first byte is the
# next header, filled in when used.
_ROUTER_ALERT_TAIL = bytes((0, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00))


def buildFrame(
    srcMac: str,
    dstMac: str,
    srcAddress: str,
    dstAddress: str,
    message: ICMPv6Message,
    hopLimit: int = ND_HOP_LIMIT,
    routerAlert: bool = False,
    trafficClass: int = 0,
    flowLabel: int = 0,
) -> bytes:
    """A whole Ethernet frame carrying C{message} in IPv6, checksum filled.
    C{routerAlert} puts a hop-by-hop Router Alert option in front (MLD wants it,
    with C{hopLimit} 1)."""
    source = _packAddress(srcAddress)
    destination = _packAddress(dstAddress)
    icmp = _encodeICMPv6(message, source, destination)
    if routerAlert:
        nextHeader = IPPROTO_HOPOPTS
        icmp = bytes((IPPROTO_ICMPV6,)) + _ROUTER_ALERT_TAIL + icmp
    else:
        nextHeader = IPPROTO_ICMPV6
    if len(icmp) > 0xFFFF:
        raise ValueError(f"{len(icmp)} bytes do not fit an IPv6 payload")
    first = 6 << 28 | (trafficClass & 0xFF) << 20 | flowLabel & 0xFFFFF
    return (
        _ETHERNET.pack(packMac(dstMac), packMac(srcMac), ETH_P_IPV6)
        + _IPV6.pack(first, len(icmp), nextHeader, hopLimit, source, destination)
        + icmp
    )


def buildUDPFrame(
    srcMac: str,
    dstMac: str,
    srcAddress: str,
    dstAddress: str,
    sourcePort: int,
    destinationPort: int,
    payload: bytes,
    hopLimit: int = 255,
) -> bytes:
    """A whole Ethernet frame carrying the UDP datagram C{payload} in IPv6,
    checksum filled: UDP over IPv6 must have one, and a computed 0 is sent as
    0xffff, since 0 means none (RFC 8200 8.1)."""
    length = _UDP.size + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"{len(payload)} bytes do not fit a UDP datagram")
    source = _packAddress(srcAddress)
    destination = _packAddress(dstAddress)
    header = _UDP.pack(sourcePort, destinationPort, length, 0)
    udpChecksum = _checksum(source, destination, IPPROTO_UDP, header + payload) or 0xFFFF
    return (
        _ETHERNET.pack(packMac(dstMac), packMac(srcMac), ETH_P_IPV6)
        + _IPV6.pack(6 << 28, length, IPPROTO_UDP, hopLimit, source, destination)
        + _UDP.pack(sourcePort, destinationPort, length, udpChecksum)
        + payload
    )


def buildRouterAdvertisement(
    srcMac: str,
    dstMac: str,
    srcAddress: str,
    dstAddress: str,
    prefixes: Iterable[PrefixInformation] = (),
    mtu: int | None = None,
    managed: bool = False,
    other: bool = False,
    routerLifetime: int = 1800,
    curHopLimit: int = 64,
    reachableTime: int = 0,
    retransTimer: int = 0,
    dnsServers: Iterable[str] = (),
    dnsLifetime: int = 1800,
    sourceLinkLayerAddress: bool = True,
    options: Iterable[NDOption] = (),
) -> bytes:
    """A Router Advertisement frame. The MPA sends it unicast: to the MS's MAC
    and link-local address, from the virtual LMAP MAC and link-local address,
    with the Local Network Prefix at C{onLink} false (draft section 6.2) and a
    Source Link-layer Address option of C{srcMac}, so that the MS reaches its
    default router without asking."""
    if not isLinkLocal(srcAddress):
        raise ValueError(f"a Router Advertisement comes from a link-local address: {srcAddress}")
    allOptions: list[NDOption] = []
    if sourceLinkLayerAddress:
        allOptions.append(SourceLinkLayerAddress(srcMac))
    if mtu is not None:
        allOptions.append(MTU(mtu))
    allOptions.extend(prefixes)
    servers = tuple(dnsServers)
    if servers:
        allOptions.append(RecursiveDNSServer(servers, dnsLifetime))
    allOptions.extend(options)
    message = RouterAdvertisement(
        curHopLimit,
        managed,
        other,
        routerLifetime,
        reachableTime,
        retransTimer,
        tuple(allOptions),
    )
    return buildFrame(srcMac, dstMac, srcAddress, dstAddress, message)


def buildNeighborAdvertisement(
    srcMac: str,
    dstMac: str,
    srcAddress: str,
    dstAddress: str,
    target: str | None = None,
    router: bool = True,
    solicited: bool = True,
    override: bool = True,
    targetLinkLayerAddress: str | None = None,
    includeTargetLinkLayerAddress: bool = True,
) -> bytes:
    """A Neighbor Advertisement frame. C{target} defaults to C{srcAddress},
    the Target Link-layer Address to C{srcMac}: the MPA answers for the virtual
    LMAP address with the virtual LMAP MAC, as a router. Unsolicited ones (to
    ff02::1) need C{solicited} false (RFC 4861 7.2.4, 7.2.6)."""
    if target is None:
        target = srcAddress
    if solicited and isMulticast(dstAddress):
        raise ValueError(f"a solicited Neighbor Advertisement cannot go to {dstAddress}")
    options: tuple[NDOption, ...] = ()
    if includeTargetLinkLayerAddress:
        options = (TargetLinkLayerAddress(targetLinkLayerAddress or srcMac),)
    message = NeighborAdvertisement(target, router, solicited, override, options)
    return buildFrame(srcMac, dstMac, srcAddress, dstAddress, message)


def buildNeighborSolicitation(
    srcMac: str,
    dstMac: str | None,
    srcAddress: str,
    dstAddress: str | None,
    target: str,
    sourceLinkLayerAddress: bool = True,
) -> bytes:
    """A Neighbor Solicitation frame for C{target}. With C{dstAddress} None it
    goes to the target's solicited-node group (and C{dstMac} None to that
    group's MAC); from :: it is a DAD probe and carries no Source Link-layer
    Address option (RFC 4861 7.2.2)."""
    if dstAddress is None:
        dstAddress = solicitedNodeMulticast(target)
    if dstMac is None:
        dstMac = multicastMac(dstAddress)
    options: tuple[NDOption, ...] = ()
    if sourceLinkLayerAddress and srcAddress != UNSPECIFIED:
        options = (SourceLinkLayerAddress(srcMac),)
    message = NeighborSolicitation(target, options)
    return buildFrame(srcMac, dstMac, srcAddress, dstAddress, message)


def buildRouterSolicitation(
    srcMac: str,
    srcAddress: str,
    dstMac: str = "33:33:00:00:00:02",
    dstAddress: str = ALL_ROUTERS,
    sourceLinkLayerAddress: bool = True,
) -> bytes:
    """A Router Solicitation frame, as a host sends it (for tests and the lab)."""
    options: tuple[NDOption, ...] = ()
    if sourceLinkLayerAddress and srcAddress != UNSPECIFIED:
        options = (SourceLinkLayerAddress(srcMac),)
    return buildFrame(srcMac, dstMac, srcAddress, dstAddress, RouterSolicitation(options))
