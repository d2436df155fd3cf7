"""
Mobility Header wire format: messages, options, status codes, checksum.

Pure codec: bytes in, dataclasses out, and back. No I/O, no clock. The layout of
every message and option follows RFC 6275 section 6.1 with the proxy extensions of
draft-gundavelli-netlmm-mip6-proxy-00 and RFC 5213, Binding Revocation (RFC 5846),
Heartbeat (RFC 5847) and the Authentication and Replay Protection options
(RFC 4285). Numbers that the draft left open or that collide with the IANA
registry live in a L{WireProfile}; docs/wire.md says why each default was chosen.

Addresses are carried as canonical text (C{socket.inet_ntop}); identifiers and
opaque data as bytes. Lifetimes are in seconds (the wire counts units of 4 s).

Over 600 lines, one module on purpose (as twisted.names keeps its wire
format in one module): every message and option of the Mobility Header,
their profile numbers and their decoder, read in one place.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, TypeVar

from lmm import inet
from lmm.inet import packAddress as _packAddress
from lmm.inet import unpackAddress as _unpackAddress

IPPROTO_MH = 135
IPPROTO_NONE = 59
LIFETIME_UNIT = 4  # seconds per unit of the BU/BA Lifetime field (RFC 6275 6.1.7)
MAX_LIFETIME = 0xFFFF * LIFETIME_UNIT
MAX_HEADER_LENGTH = (0xFF + 1) * 8  # what the 8-bit Header Len can say


class MHType(IntEnum):
    """Mobility Header message types (IANA "Mobility Header Types")."""

    BINDING_REFRESH_REQUEST = 0
    HOME_TEST_INIT = 1
    CARE_OF_TEST_INIT = 2
    HOME_TEST = 3
    CARE_OF_TEST = 4
    BINDING_UPDATE = 5
    BINDING_ACK = 6
    BINDING_ERROR = 7
    HEARTBEAT = 13  # RFC 5847
    BINDING_REVOCATION = 16  # RFC 5846


class OptionType(IntEnum):
    """Mobility option types assigned by IANA that lmm speaks."""

    PAD1 = 0
    PADN = 1
    BINDING_REFRESH_ADVICE = 2
    ALTERNATE_CARE_OF_ADDRESS = 3
    NONCE_INDICES = 4
    BINDING_AUTHORIZATION_DATA = 5
    MOBILE_NODE_IDENTIFIER = 8  # RFC 4283
    AUTHENTICATION = 9  # RFC 4285
    REPLAY_PROTECTION = 10  # RFC 4285
    EXPERIMENTAL = 18  # RFC 5096
    HOME_NETWORK_PREFIX = 22  # RFC 5213
    HANDOFF_INDICATOR = 23
    ACCESS_TECHNOLOGY_TYPE = 24
    MOBILE_NODE_LINK_LAYER_IDENTIFIER = 25
    LINK_LOCAL_ADDRESS = 26
    TIMESTAMP = 27
    RESTART_COUNTER = 28  # RFC 5847


class Status(IntEnum):
    """Binding Acknowledgement status codes of RFC 6275, RFC 3963, RFC 4285, RFC 5213.

    The draft's own two codes (140, 141) collide with RFC 3963 and are held by
    L{WireProfile} instead.
    """

    ACCEPTED = 0
    ACCEPTED_PREFIX_DISCOVERY_NECESSARY = 1
    REASON_UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    HOME_REGISTRATION_NOT_SUPPORTED = 131
    NOT_HOME_SUBNET = 132
    NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE = 133
    DUPLICATE_ADDRESS_DETECTION_FAILED = 134
    SEQUENCE_NUMBER_OUT_OF_WINDOW = 135
    EXPIRED_HOME_NONCE_INDEX = 136
    EXPIRED_CARE_OF_NONCE_INDEX = 137
    EXPIRED_NONCES = 138
    REGISTRATION_TYPE_CHANGE_DISALLOWED = 139
    MOBILE_ROUTER_OPERATION_NOT_PERMITTED = 140  # RFC 3963
    INVALID_PREFIX = 141  # RFC 3963
    NOT_AUTHORIZED_FOR_PREFIX = 142
    FORWARDING_SETUP_FAILED = 143
    MIPV6_ID_MISMATCH = 144  # RFC 4285
    MIPV6_MESG_ID_REQD = 145
    MIPV6_AUTH_FAIL = 146
    PROXY_REG_NOT_ENABLED = 152  # RFC 5213
    NOT_LMA_FOR_THIS_MOBILE_NODE = 153
    MAG_NOT_AUTHORIZED_FOR_PROXY_REG = 154
    NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX = 155
    TIMESTAMP_MISMATCH = 156
    TIMESTAMP_LOWER_THAN_PREV_ACCEPTED = 157
    MISSING_HOME_NETWORK_PREFIX_OPTION = 158
    BCE_PBU_PREFIX_SET_DO_NOT_MATCH = 159
    MISSING_MN_IDENTIFIER_OPTION = 160
    MISSING_HANDOFF_INDICATOR_OPTION = 161
    MISSING_ACCESS_TECH_TYPE_OPTION = 162


def isAccepted(status: int) -> bool:
    """Status values below 128 mean the Binding Update was accepted (RFC 6275 6.1.8)."""
    return status < 128


class BindingErrorStatus(IntEnum):
    UNKNOWN_BINDING_FOR_HOME_ADDRESS = 1
    UNRECOGNIZED_MH_TYPE = 2


class RevocationType(IntEnum):
    """The B.R. Type field of the Binding Revocation message (RFC 5846 6.1)."""

    INDICATION = 1
    ACKNOWLEDGEMENT = 2


class RevocationTrigger(IntEnum):
    UNSPECIFIED = 0
    ADMINISTRATIVE_REASON = 1
    INTER_MAG_HANDOVER_SAME_ACCESS_TYPE = 2
    INTER_MAG_HANDOVER_DIFFERENT_ACCESS_TYPE = 3
    INTER_MAG_HANDOVER_UNKNOWN = 4
    USER_INITIATED_SESSION_TERMINATION = 5
    ACCESS_NETWORK_SESSION_TERMINATION = 6
    POSSIBLE_OUT_OF_SYNC_BCE_STATE = 7
    # Global triggers (with the G flag) are 128..249; 250..255 are for testing.
    PER_PEER_POLICY = 128
    REVOKING_MOBILE_NODE_LOCAL_POLICY = 129


class RevocationStatus(IntEnum):
    SUCCESS = 0
    PARTIAL_SUCCESS = 1
    BINDING_DOES_NOT_EXIST = 128
    IPV4_HOA_BINDING_DOES_NOT_EXIST = 129
    GLOBAL_REVOCATION_NOT_AUTHORIZED = 130
    CANNOT_IDENTIFY_BINDING = 131
    REVOCATION_FAILED_MN_ATTACHED = 132


class HandoffIndicator(IntEnum):
    RESERVED = 0
    NEW_INTERFACE = 1
    DIFFERENT_INTERFACE = 2
    SAME_INTERFACE_NEW_MAG = 3
    UNKNOWN = 4
    NOT_CHANGED = 5


class AccessTechnology(IntEnum):
    """The Access Technology Type option's values (RFC 5213 8.5)."""

    RESERVED = 0
    VIRTUAL = 1
    PPP = 2
    IEEE_802_3 = 3
    IEEE_802_11 = 4
    IEEE_802_16E = 5


#: The names mpa.access_technology takes, for the values of RFC 5213 8.5.
ACCESS_TECHNOLOGY_NAMES = {
    "virtual": AccessTechnology.VIRTUAL,
    "ppp": AccessTechnology.PPP,
    "ieee802.3": AccessTechnology.IEEE_802_3,
    "ieee802.11": AccessTechnology.IEEE_802_11,
    "ieee802.16e": AccessTechnology.IEEE_802_16E,
}


MN_ID_SUBTYPE_NAI = 1  # RFC 4283
AUTH_SUBTYPE_MN_HA = 1  # RFC 4285
AUTH_SUBTYPE_MN_AAA = 2


# --- errors -----------------------------------------------------------------


class MobilityHeaderError(ValueError):
    """A Mobility Header packet that cannot be decoded; C{reason} names the kind
    (used as a counter key), the message says what exactly is wrong."""

    reason = "malformed"


class TruncatedMessage(MobilityHeaderError):
    reason = "truncated"


class BadLength(MobilityHeaderError):
    reason = "bad-length"


class BadPadding(MobilityHeaderError):
    reason = "bad-padding"


class OptionOverrun(MobilityHeaderError):
    reason = "option-overrun"


class BadOption(MobilityHeaderError):
    reason = "bad-option"


class BadChecksum(MobilityHeaderError):
    reason = "bad-checksum"


class UnknownMessageType(MobilityHeaderError):
    """RFC 6275 9.2: the receiver answers with a Binding Error, status 2."""

    reason = "unknown-mh-type"

    def __init__(self, mhType: int) -> None:
        super().__init__(f"unknown Mobility Header type {mhType}")
        self.mhType = mhType


# --- options ----------------------------------------------------------------


class MobilityOption:
    """Base of every mobility option.

    C{kind} is the IANA type (or, for the draft's options, the profile's role
    name); C{alignment} is RFC 6275's xn+y requirement as (x, y), (0, 0) for none.
    """

    __slots__ = ()
    kind: ClassVar[object]
    alignment: ClassVar[tuple[int, int]] = (0, 0)

    def encodeBody(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> MobilityOption:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class BindingRefreshAdvice(MobilityOption):
    interval: int  # units of 4 s
    kind: ClassVar[object] = OptionType.BINDING_REFRESH_ADVICE
    alignment: ClassVar[tuple[int, int]] = (2, 0)

    def encodeBody(self) -> bytes:
        return struct.pack("!H", self.interval)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> BindingRefreshAdvice:
        inet.fixedLength(BadOption, cls, length, 2)
        return cls(struct.unpack_from("!H", data, offset)[0])


@dataclass(frozen=True, slots=True)
class AlternateCareOfAddress(MobilityOption):
    address: str
    kind: ClassVar[object] = OptionType.ALTERNATE_CARE_OF_ADDRESS
    alignment: ClassVar[tuple[int, int]] = (8, 6)

    def encodeBody(self) -> bytes:
        return _packAddress(self.address)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> AlternateCareOfAddress:
        inet.fixedLength(BadOption, cls, length, 16)
        return cls(_unpackAddress(data, offset))


@dataclass(frozen=True, slots=True)
class NonceIndices(MobilityOption):
    homeNonceIndex: int
    careOfNonceIndex: int
    kind: ClassVar[object] = OptionType.NONCE_INDICES
    alignment: ClassVar[tuple[int, int]] = (2, 0)

    def encodeBody(self) -> bytes:
        return struct.pack("!HH", self.homeNonceIndex, self.careOfNonceIndex)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> NonceIndices:
        inet.fixedLength(BadOption, cls, length, 4)
        return cls(*struct.unpack_from("!HH", data, offset))


@dataclass(frozen=True, slots=True)
class BindingAuthorizationData(MobilityOption):
    authenticator: bytes
    kind: ClassVar[object] = OptionType.BINDING_AUTHORIZATION_DATA
    alignment: ClassVar[tuple[int, int]] = (8, 2)

    def encodeBody(self) -> bytes:
        return bytes(self.authenticator)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> BindingAuthorizationData:
        return cls(data[offset : offset + length])


@dataclass(frozen=True, slots=True)
class MobileNodeIdentifier(MobilityOption):
    """RFC 4283; with subtype 1 the identifier is an NAI (RFC 4282), UTF-8."""

    identifier: bytes
    subtype: int = MN_ID_SUBTYPE_NAI
    kind: ClassVar[object] = OptionType.MOBILE_NODE_IDENTIFIER

    @property
    def nai(self) -> str:
        return self.identifier.decode("utf-8", "replace")

    def encodeBody(self) -> bytes:
        if not self.identifier or len(self.identifier) > 254:
            raise ValueError("a Mobile Node Identifier has 1 to 254 bytes")
        return bytes((self.subtype,)) + self.identifier

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> MobileNodeIdentifier:
        if length < 2:
            raise BadOption(f"Mobile Node Identifier option length {length}, expected 2 or more")
        return cls(data[offset + 1 : offset + length], data[offset])


@dataclass(frozen=True, slots=True)
class Authentication(MobilityOption):
    """RFC 4285 section 5: subtype, Mobility SPI, Authentication Data."""

    subtype: int
    spi: int
    authenticationData: bytes
    # Decoded: where the covered part of the header ends (after the SPI).
    covered: int = field(default=0, compare=False, repr=False)
    kind: ClassVar[object] = OptionType.AUTHENTICATION
    alignment: ClassVar[tuple[int, int]] = (4, 1)

    def encodeBody(self) -> bytes:
        return struct.pack("!BI", self.subtype, self.spi) + self.authenticationData

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> Authentication:
        if length < 5:
            raise BadOption(f"Authentication option length {length}, expected 5 or more")
        subtype, spi = struct.unpack_from("!BI", data, offset)
        return cls(subtype, spi, data[offset + 5 : offset + length], offset + 5)


_TIMESTAMP = struct.Struct("!Q")  # RFC 4285 6's 64-bit NTP timestamp


@dataclass(frozen=True, slots=True)
class ReplayProtection(MobilityOption):
    """RFC 4285 section 6: a 64-bit NTP-format timestamp."""

    timestamp: int
    kind: ClassVar[object] = OptionType.REPLAY_PROTECTION
    alignment: ClassVar[tuple[int, int]] = (8, 2)

    def encodeBody(self) -> bytes:
        return _TIMESTAMP.pack(self.timestamp)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> ReplayProtection:
        if length != 8:  # every protected message's path: fixedLength only to say why
            inet.fixedLength(BadOption, cls, length, 8)
        return cls(_TIMESTAMP.unpack_from(data, offset)[0])


@dataclass(frozen=True, slots=True)
class Experimental(MobilityOption):
    """RFC 5096's Experimental Mobility Option: opaque data."""

    data: bytes = b""
    kind: ClassVar[object] = OptionType.EXPERIMENTAL

    def encodeBody(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> Experimental:
        return cls(data[offset : offset + length])


@dataclass(frozen=True, slots=True)
class BindingCacheConfirmation(MobilityOption):
    """The draft's option (section 4.3): no data, asks the LMAP whether it holds a
    Binding Cache entry for the NAI. Its type number and its length are the
    profile's: one reserved zero byte by default, which tshark 4.0 reads
    cleanly as an Experimental option (length 0, the draft's, makes it mark
    the packet malformed); any length is read."""

    kind: ClassVar[object] = "binding-cache-confirmation"

    def encodeBody(self) -> bytes:
        return b""

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> BindingCacheConfirmation:
        # Sent as RFC 5096's Experimental option by default: tolerate data after it.
        return cls()


class _PrefixLayout(MobilityOption):
    """Reserved, Prefix Length, 16-byte address: RFC 5213's HNP layout."""

    __slots__ = ()
    alignment: ClassVar[tuple[int, int]] = (8, 4)

    def _encodePrefix(self, address: str, prefixLength: int) -> bytes:
        if not 0 <= prefixLength <= 128:
            raise ValueError(f"prefix length {prefixLength} is not in 0..128")
        return bytes((0, prefixLength)) + _packAddress(address)

    @classmethod
    def _decodePrefix(cls, data: bytes, offset: int, length: int) -> tuple[str, int]:
        inet.fixedLength(BadOption, cls, length, 18)
        prefixLength = data[offset + 1]
        if prefixLength > 128:
            raise BadOption(f"{cls.__name__} prefix length {prefixLength} is over 128")
        return _unpackAddress(data, offset + 2), prefixLength


@dataclass(frozen=True, slots=True)
class LocalAddress(_PrefixLayout):
    """The draft's assigned Local Address (its "Assigned Home Address option"):
    the MS's whole address, and in the prefix length the length of its LNP."""

    address: str
    prefixLength: int
    kind: ClassVar[object] = "local-address"

    def encodeBody(self) -> bytes:
        return self._encodePrefix(self.address, self.prefixLength)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> LocalAddress:
        return cls(*cls._decodePrefix(data, offset, length))


@dataclass(frozen=True, slots=True)
class HomeNetworkPrefix(_PrefixLayout):
    prefix: str
    prefixLength: int
    kind: ClassVar[object] = OptionType.HOME_NETWORK_PREFIX

    def encodeBody(self) -> bytes:
        return self._encodePrefix(self.prefix, self.prefixLength)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> HomeNetworkPrefix:
        return cls(*cls._decodePrefix(data, offset, length))


class _ByteValue(MobilityOption):
    """Reserved byte then a one-byte value (Handoff Indicator, ATT)."""

    __slots__ = ()

    def encodeBody(self) -> bytes:
        return bytes((0, self.value))  # type: ignore[attr-defined]

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> MobilityOption:
        inet.fixedLength(BadOption, cls, length, 2)
        return cls(data[offset + 1])  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class HandoffIndicatorOption(_ByteValue):
    value: int
    kind: ClassVar[object] = OptionType.HANDOFF_INDICATOR


@dataclass(frozen=True, slots=True)
class AccessTechnologyType(_ByteValue):
    value: int
    kind: ClassVar[object] = OptionType.ACCESS_TECHNOLOGY_TYPE


@dataclass(frozen=True, slots=True)
class MobileNodeLinkLayerIdentifier(MobilityOption):
    identifier: bytes
    kind: ClassVar[object] = OptionType.MOBILE_NODE_LINK_LAYER_IDENTIFIER
    alignment: ClassVar[tuple[int, int]] = (8, 2)

    def encodeBody(self) -> bytes:
        if not self.identifier:
            raise ValueError("a Link-layer Identifier has at least 1 byte")
        return b"\x00\x00" + self.identifier

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> MobileNodeLinkLayerIdentifier:
        if length < 3:
            raise BadOption(f"Link-layer Identifier option length {length}, expected 3 or more")
        return cls(data[offset + 2 : offset + length])


@dataclass(frozen=True, slots=True)
class LinkLocalAddress(MobilityOption):
    address: str
    kind: ClassVar[object] = OptionType.LINK_LOCAL_ADDRESS
    alignment: ClassVar[tuple[int, int]] = (8, 6)

    def encodeBody(self) -> bytes:
        return _packAddress(self.address)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> LinkLocalAddress:
        inet.fixedLength(BadOption, cls, length, 16)
        return cls(_unpackAddress(data, offset))


@dataclass(frozen=True, slots=True)
class Timestamp(MobilityOption):
    """RFC 5213 8.8: seconds since 1970-01-01 00:00 UTC in the upper 48 bits,
    1/65536 s in the lower 16 (not NTP's 32.32 format, unlike L{ReplayProtection})."""

    timestamp: int
    kind: ClassVar[object] = OptionType.TIMESTAMP
    alignment: ClassVar[tuple[int, int]] = (8, 2)

    def encodeBody(self) -> bytes:
        return struct.pack("!Q", self.timestamp)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> Timestamp:
        inet.fixedLength(BadOption, cls, length, 8)
        return cls(struct.unpack_from("!Q", data, offset)[0])


@dataclass(frozen=True, slots=True)
class RestartCounter(MobilityOption):
    """RFC 5847 5.2: a node's 32-bit Restart Counter, one more after each
    restart, carried in Heartbeat messages (alignment 4n+2)."""

    counter: int
    kind: ClassVar[object] = OptionType.RESTART_COUNTER
    alignment: ClassVar[tuple[int, int]] = (4, 2)

    def encodeBody(self) -> bytes:
        return struct.pack("!I", self.counter)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> RestartCounter:
        inet.fixedLength(BadOption, cls, length, 4)
        return cls(struct.unpack_from("!I", data, offset)[0])


@dataclass(frozen=True, slots=True)
class UnknownOption(MobilityOption):
    """An option this profile does not know: kept, and skipped (RFC 6275 9.2)."""

    type: int
    data: bytes = b""
    kind: ClassVar[object] = "unknown"

    def encodeBody(self) -> bytes:
        # Types 0 and 1 are padding: data sent under them would be read as padding.
        if not 2 <= self.type <= 255:
            raise ValueError(f"an option type is 2..255, not {self.type}")
        return bytes(self.data)


_KNOWN_OPTIONS: tuple[type[MobilityOption], ...] = (
    BindingRefreshAdvice,
    AlternateCareOfAddress,
    NonceIndices,
    BindingAuthorizationData,
    MobileNodeIdentifier,
    Authentication,
    ReplayProtection,
    Experimental,
    HomeNetworkPrefix,
    HandoffIndicatorOption,
    AccessTechnologyType,
    MobileNodeLinkLayerIdentifier,
    LinkLocalAddress,
    Timestamp,
    RestartCounter,
)


# --- profiles ---------------------------------------------------------------


@dataclass(frozen=True)
class WireProfile:
    """The numbers a deployment speaks where the draft and IANA disagree.

    C{proxyRegistrationNotSupported} and C{bindingCacheEntryMissing} are the
    status codes of the draft's section 5.1; C{bindingCacheConfirmationType} and
    C{localAddressType} the type numbers of its two options. An option number
    given to one of the draft's options hides the IANA option of that number in
    this profile (docs/wire.md).
    """

    name: str
    proxyRegistrationNotSupported: int
    bindingCacheEntryMissing: int
    bindingCacheConfirmationType: int
    localAddressType: int
    #: Bytes of data (reserved, zero) in a Binding Cache Confirmation sent: 0
    #: as the draft writes it, 1 (default) for tshark (docs/wire.md).
    bindingCacheConfirmationLength: int = 1
    #: RFC 5213's own protocol (issue 16): each MS gets a home network prefix
    #: of its own, named by Home Network Prefix options (RFC 5213 5.3, 6.9),
    #: with the Handoff Indicator and Access Technology Type in every PBU and
    #: PBA; False: the draft's, one address inside a shared LNP, named by the
    #: Local Address option.
    perNodePrefixes: bool = False
    typeOf: dict[type, int] = field(init=False, repr=False, compare=False)
    #: Bodies that the profile, not the option, decides.
    bodyOf: dict[type, bytes] = field(init=False, repr=False, compare=False)
    decoders: dict[int, type[MobilityOption]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("proxyRegistrationNotSupported", "bindingCacheEntryMissing"):
            value = getattr(self, key)
            if not 128 <= value <= 255:
                raise ValueError(f"{key} must be a rejection status, 128..255, not {value}")
        for key in ("bindingCacheConfirmationType", "localAddressType"):
            value = getattr(self, key)
            if not 2 <= value <= 255:
                raise ValueError(f"{key} must be an option type, 2..255, not {value}")
        if self.bindingCacheConfirmationLength not in (0, 1):
            raise ValueError("bindingCacheConfirmationLength must be 0 (the draft) or 1, "
                             f"not {self.bindingCacheConfirmationLength}")
        if self.bindingCacheConfirmationType == self.localAddressType:
            raise ValueError(
                "bindingCacheConfirmationType and localAddressType are the same number"
            )
        if self.proxyRegistrationNotSupported == self.bindingCacheEntryMissing:
            raise ValueError(
                "proxyRegistrationNotSupported and bindingCacheEntryMissing are the same status"
            )
        decoders: dict[int, type[MobilityOption]] = {
            int(c.kind): c  # type: ignore[call-overload]
            for c in _KNOWN_OPTIONS
        }
        decoders[self.bindingCacheConfirmationType] = BindingCacheConfirmation
        decoders[self.localAddressType] = LocalAddress
        typeOf: dict[type, int] = {
            c: int(c.kind)  # type: ignore[call-overload]
            for c in _KNOWN_OPTIONS
        }
        typeOf[BindingCacheConfirmation] = self.bindingCacheConfirmationType
        typeOf[LocalAddress] = self.localAddressType
        object.__setattr__(self, "typeOf", typeOf)
        object.__setattr__(self, "decoders", decoders)
        object.__setattr__(self, "bodyOf", {
            BindingCacheConfirmation: bytes(self.bindingCacheConfirmationLength)})

    def addressOption(self, address: str, prefixLength: int) -> LocalAddress | HomeNetworkPrefix:
        """What names a binding's address in this profile: the MS's home
        network prefix (RFC 5213 8.3), or the draft's Local Address."""
        if self.perNodePrefixes:
            return HomeNetworkPrefix(address, prefixLength)
        return LocalAddress(address, prefixLength)

    def addressIn(self, message: MobilityMessage) -> tuple[str, int] | None:
        """The (address or prefix, length) that L{addressOption} put in C{message}."""
        if self.perNodePrefixes:
            prefix = message.option(HomeNetworkPrefix)
            return None if prefix is None else (prefix.prefix, prefix.prefixLength)
        local = message.option(LocalAddress)
        return None if local is None else (local.address, local.prefixLength)


# The draft as written, with the two options placed where tshark and RFC 5213
# peers can read them (docs/wire.md).
DRAFT = WireProfile(
    name="draft",
    proxyRegistrationNotSupported=140,
    bindingCacheEntryMissing=141,
    bindingCacheConfirmationType=OptionType.EXPERIMENTAL,
    localAddressType=OptionType.HOME_NETWORK_PREFIX,
)

# RFC 5213's protocol and numbers: per-MN home network prefixes; the draft's
# two options, which it does not send, get numbers no IANA option uses (docs/wire.md).
RFC5213 = WireProfile(
    name="rfc5213",
    proxyRegistrationNotSupported=Status.PROXY_REG_NOT_ENABLED,
    bindingCacheEntryMissing=Status.NOT_LMA_FOR_THIS_MOBILE_NODE,
    bindingCacheConfirmationType=OptionType.EXPERIMENTAL,
    localAddressType=253,
    perNodePrefixes=True,
)

PROFILES = {p.name: p for p in (DRAFT, RFC5213)}


def foreignProfileSign(
    options: Sequence[MobilityOption], status: int | None, profile: WireProfile
) -> str | None:
    """
    What in a message read under C{profile} belongs to another profile: an
    option whose type is that profile's Local Address, or a rejection status
    that is its "Binding Cache Entry missing" or "Proxy Registration not
    supported"; a sentence for the log, or None (docs/wire.md, "Profile
    mismatch"; issue 16: a mismatch is named on the first exchange, never
    left silent).

    The draft's Local Address has RFC 5213's Home Network Prefix layout and,
    in the draft profile, its type (22): read as an HNP it carries a whole
    address, bits set past its prefix length, or a /128. An HNP of C{::} asks
    for a prefix, as an RFC 5213 MAG's does, and is no sign. A Handoff
    Indicator or Access Technology Type option, which RFC 5213 puts in every
    PBU and PBA (5.3.6, 6.9.1.5) and the draft never sends, is one at a
    daemon of the draft's protocol, as are the statuses only that protocol
    sends (a missing HNP, Handoff Indicator or Access Technology Type, a
    prefix set that does not match); and the draft's Binding Cache
    Confirmation is one at a daemon of RFC 5213's.
    """
    for option in options:
        kind = type(option)
        if (kind is HandoffIndicatorOption or kind is AccessTechnologyType) \
                and not profile.perNodePrefixes:
            return (f"a {kind.__name__} option is RFC 5213's protocol (the "
                    f"{RFC5213.name!r} wire profile), and this daemon speaks "
                    f"{profile.name!r}")
        if kind is BindingCacheConfirmation and profile.perNodePrefixes:
            return ("a Binding Cache Confirmation option is the draft's protocol (the "
                    f"{DRAFT.name!r} wire profile), and this daemon speaks {profile.name!r}")
        if kind is UnknownOption:
            number = option.type  # type: ignore[attr-defined]
        elif kind is HomeNetworkPrefix:
            prefix = option.prefix  # type: ignore[attr-defined]
            length = option.prefixLength  # type: ignore[attr-defined]
            if prefix == "::" or (length < 128 and not _hostBits(prefix, length)):
                continue
            number = int(OptionType.HOME_NETWORK_PREFIX)
        else:
            continue
        for other in PROFILES.values():
            if other is not profile and other.localAddressType == number:
                return (f"option type {number} is the Local Address of the {other.name!r} "
                        f"wire profile, and this daemon speaks {profile.name!r}")
    return None if status is None else _foreignStatus(status, profile)


def _foreignStatus(status: int, profile: WireProfile) -> str | None:
    """L{foreignProfileSign} for a status."""
    if status in _PER_NODE_STATUSES and not profile.perNodePrefixes:
        return (f"status {status} ({Status(status).name}) belongs to RFC 5213's protocol "
                f"(the {RFC5213.name!r} wire profile), and this daemon speaks {profile.name!r}")
    if status >= 128:
        for other in PROFILES.values():
            if other is profile:
                continue
            for key, meaning in (("bindingCacheEntryMissing", "Binding Cache Entry missing"),
                                 ("proxyRegistrationNotSupported",
                                  "Proxy Registration not supported")):
                if status == getattr(other, key) != getattr(profile, key):
                    return (f"status {status} is {meaning!r} in the {other.name!r} wire "
                            f"profile, and this daemon speaks {profile.name!r}")
    return None


# Statuses only RFC 5213's protocol sends: what its PBUs lack or ask (8.9).
_PER_NODE_STATUSES = frozenset((
    Status.MISSING_HOME_NETWORK_PREFIX_OPTION, Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH,
    Status.MISSING_HANDOFF_INDICATOR_OPTION, Status.MISSING_ACCESS_TECH_TYPE_OPTION))


def _hostBits(address: str, length: int) -> bool:
    """Whether C{address} has bits set past its first C{length}."""
    return bool(inet.addressToInt(address) & ((1 << (128 - length)) - 1))


# --- messages ---------------------------------------------------------------

Option = TypeVar("Option", bound=MobilityOption)


class MobilityMessage:
    """Base of every message: C{options} is a tuple of L{MobilityOption}."""

    __slots__ = ()
    mhType: ClassVar[int]
    fixedLength: ClassVar[int]  # bytes of message data after the 6-byte header
    options: tuple[MobilityOption, ...]

    def option(self, kind: type[Option]) -> Option | None:
        """The first option of that class, or None."""
        for o in self.options:
            if type(o) is kind:
                return o
        return None

    def encodeFixed(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decodeFixed(
        cls, data: bytes, options: tuple[MobilityOption, ...]
    ) -> MobilityMessage:
        raise NotImplementedError


_BU_FLAGS = ("ack", "home", "linkLocal", "key", "mobilityAnchorPoint", "router", "proxy")
_BU = struct.Struct("!HHH")


@dataclass(frozen=True, slots=True)
class BindingUpdate(MobilityMessage):
    """RFC 6275 6.1.7; with C{proxy} set, the draft's Proxy Binding Update."""

    sequence: int
    lifetime: int  # seconds
    options: tuple[MobilityOption, ...] = ()
    ack: bool = False
    home: bool = False
    linkLocal: bool = False
    key: bool = False
    mobilityAnchorPoint: bool = False  # M, RFC 5380
    router: bool = False  # R, RFC 3963
    proxy: bool = False  # P
    mhType: ClassVar[int] = MHType.BINDING_UPDATE
    fixedLength: ClassVar[int] = 6

    def encodeFixed(self) -> bytes:
        flags = (
            self.ack << 15
            | self.home << 14
            | self.linkLocal << 13
            | self.key << 12
            | self.mobilityAnchorPoint << 11
            | self.router << 10
            | self.proxy << 9
        )
        return _BU.pack(self.sequence, flags, _lifetimeUnits(self.lifetime))

    @classmethod
    def decodeFixed(cls, data: bytes, options: tuple[MobilityOption, ...]) -> BindingUpdate:
        sequence, flags, lifetime = _BU.unpack_from(data, 6)
        return cls(
            sequence,
            lifetime * LIFETIME_UNIT,
            options,
            bool(flags & 0x8000),
            bool(flags & 0x4000),
            bool(flags & 0x2000),
            bool(flags & 0x1000),
            bool(flags & 0x0800),
            bool(flags & 0x0400),
            bool(flags & 0x0200),
        )


def ProxyBindingUpdate(
    sequence: int, lifetime: int, options: Iterable[MobilityOption], ack: bool = True
) -> BindingUpdate:
    """A Proxy Binding Update: a Binding Update with the P flag (and A, as MPAs
    always want the acknowledgement)."""
    return BindingUpdate(sequence, lifetime, tuple(options), ack=ack, proxy=True)


_BA = struct.Struct("!BBHH")


@dataclass(frozen=True, slots=True)
class BindingAck(MobilityMessage):
    """RFC 6275 6.1.8; with C{proxy} set, the draft's Proxy Binding Acknowledgement."""

    status: int
    sequence: int
    lifetime: int  # seconds
    options: tuple[MobilityOption, ...] = ()
    key: bool = False
    router: bool = False
    proxy: bool = False
    mhType: ClassVar[int] = MHType.BINDING_ACK
    fixedLength: ClassVar[int] = 6

    @property
    def accepted(self) -> bool:
        return isAccepted(self.status)

    def encodeFixed(self) -> bytes:
        flags = self.key << 7 | self.router << 6 | self.proxy << 5
        return _BA.pack(self.status, flags, self.sequence, _lifetimeUnits(self.lifetime))

    @classmethod
    def decodeFixed(cls, data: bytes, options: tuple[MobilityOption, ...]) -> BindingAck:
        status, flags, sequence, lifetime = _BA.unpack_from(data, 6)
        return cls(
            status,
            sequence,
            lifetime * LIFETIME_UNIT,
            options,
            bool(flags & 0x80),
            bool(flags & 0x40),
            bool(flags & 0x20),
        )


def ProxyBindingAck(
    status: int, sequence: int, lifetime: int, options: Iterable[MobilityOption] = ()
) -> BindingAck:
    """A Proxy Binding Acknowledgement: a Binding Acknowledgement with the P flag."""
    return BindingAck(status, sequence, lifetime, tuple(options), proxy=True)


@dataclass(frozen=True, slots=True)
class BindingError(MobilityMessage):
    """RFC 6275 6.1.9."""

    status: int
    homeAddress: str = "::"
    options: tuple[MobilityOption, ...] = ()
    mhType: ClassVar[int] = MHType.BINDING_ERROR
    fixedLength: ClassVar[int] = 18

    def encodeFixed(self) -> bytes:
        return bytes((self.status, 0)) + _packAddress(self.homeAddress)

    @classmethod
    def decodeFixed(cls, data: bytes, options: tuple[MobilityOption, ...]) -> BindingError:
        return cls(data[6], _unpackAddress(data, 8), options)


_HB = struct.Struct("!BBI")


@dataclass(frozen=True, slots=True)
class Heartbeat(MobilityMessage):
    """RFC 5847 section 5: U (unsolicited) and R (response) flags, 32-bit sequence."""

    sequence: int
    unsolicited: bool = False
    response: bool = False
    options: tuple[MobilityOption, ...] = ()
    mhType: ClassVar[int] = MHType.HEARTBEAT
    fixedLength: ClassVar[int] = 6

    def encodeFixed(self) -> bytes:
        return _HB.pack(0, self.unsolicited << 1 | self.response, self.sequence)

    @classmethod
    def decodeFixed(cls, data: bytes, options: tuple[MobilityOption, ...]) -> Heartbeat:
        _, flags, sequence = _HB.unpack_from(data, 6)
        return cls(sequence, bool(flags & 2), bool(flags & 1), options)


_BR = struct.Struct("!BBHBB")


@dataclass(frozen=True, slots=True)
class BindingRevocationIndication(MobilityMessage):
    """RFC 5846 6.1: B.R. Type 1, flags |P|V|G|. C{proxy} is P (a proxy binding),
    C{ipv4HomeAddressOnly} is V (revoke the IPv4 home address binding only),
    C{globalRevocation} is G (all bindings sharing an identifier, e.g. a MAG's)."""

    sequence: int
    trigger: int
    options: tuple[MobilityOption, ...] = ()
    proxy: bool = False
    globalRevocation: bool = False
    ipv4HomeAddressOnly: bool = False
    mhType: ClassVar[int] = MHType.BINDING_REVOCATION
    fixedLength: ClassVar[int] = 6

    def encodeFixed(self) -> bytes:
        flags = self.proxy << 7 | self.ipv4HomeAddressOnly << 6 | self.globalRevocation << 5
        return _BR.pack(RevocationType.INDICATION, self.trigger, self.sequence, flags, 0)

    @classmethod
    def decodeFixed(
        cls, data: bytes, options: tuple[MobilityOption, ...]
    ) -> BindingRevocationIndication:
        _, trigger, sequence, flags, _ = _BR.unpack_from(data, 6)
        return cls(
            sequence, trigger, options, bool(flags & 0x80), bool(flags & 0x20), bool(flags & 0x40)
        )


@dataclass(frozen=True, slots=True)
class BindingRevocationAck(MobilityMessage):
    """RFC 5846 6.2: B.R. Type 2; the P, V and G flags echo the indication's."""

    sequence: int
    status: int
    options: tuple[MobilityOption, ...] = ()
    proxy: bool = False
    globalRevocation: bool = False
    ipv4HomeAddressOnly: bool = False
    mhType: ClassVar[int] = MHType.BINDING_REVOCATION
    fixedLength: ClassVar[int] = 6

    def encodeFixed(self) -> bytes:
        flags = self.proxy << 7 | self.ipv4HomeAddressOnly << 6 | self.globalRevocation << 5
        return _BR.pack(RevocationType.ACKNOWLEDGEMENT, self.status, self.sequence, flags, 0)

    @classmethod
    def decodeFixed(cls, data: bytes, options: tuple[MobilityOption, ...]) -> BindingRevocationAck:
        _, status, sequence, flags, _ = _BR.unpack_from(data, 6)
        return cls(
            sequence, status, options, bool(flags & 0x80), bool(flags & 0x20), bool(flags & 0x40)
        )


Message = (
    BindingUpdate
    | BindingAck
    | BindingError
    | Heartbeat
    | BindingRevocationIndication
    | BindingRevocationAck
)

_MESSAGES: dict[int, type[MobilityMessage]] = {
    MHType.BINDING_UPDATE: BindingUpdate,
    MHType.BINDING_ACK: BindingAck,
    MHType.BINDING_ERROR: BindingError,
    MHType.HEARTBEAT: Heartbeat,
}
_REVOCATIONS: dict[int, type[MobilityMessage]] = {
    RevocationType.INDICATION: BindingRevocationIndication,
    RevocationType.ACKNOWLEDGEMENT: BindingRevocationAck,
}


def _lifetimeUnits(seconds: int) -> int:
    if not 0 <= seconds <= MAX_LIFETIME:
        raise ValueError(f"lifetime {seconds} s is not in 0..{MAX_LIFETIME}")
    # Round up: a registration never gets less than was asked for by rounding.
    return -(-seconds // LIFETIME_UNIT)


# --- encoding ---------------------------------------------------------------

_PAD1 = b"\x00"
_ZEROS = bytes(8)


def _padding(n: int) -> bytes:
    if n == 0:
        return b""
    if n == 1:
        return _PAD1
    return bytes((OptionType.PADN, n - 2)) + _ZEROS[: n - 2]


def optionBody(option: MobilityOption, profile: WireProfile = DRAFT) -> bytes:
    """The data C{option} is sent with in C{profile} (L{_encodeBody} inlines it)."""
    body = profile.bodyOf.get(type(option))
    return option.encodeBody() if body is None else body


def _encodeBody(message: MobilityMessage, profile: WireProfile) -> tuple[list[bytes], int]:
    """The message's fixed part and options, padded as their alignments ask:
    the parts (the first one left empty, for the header) and the length so far."""
    fixed = message.encodeFixed()
    parts = [b"", fixed]
    position = 6 + len(fixed)
    typeOf = profile.typeOf
    bodyOf = profile.bodyOf
    for option in message.options:
        kind = type(option)
        body = bodyOf[kind] if kind in bodyOf else option.encodeBody()
        if len(body) > 255:
            raise ValueError(f"{type(option).__name__} option body is {len(body)} bytes, over 255")
        x, y = option.alignment
        if x:
            pad = (y - position) % x
            if pad:
                parts.append(_padding(pad))
                position += pad
        if kind is UnknownOption:
            optionType = option.type  # type: ignore[attr-defined]
        else:
            optionType = typeOf[kind]
        parts.append(bytes((optionType, len(body))))
        parts.append(body)
        position += 2 + len(body)
    return parts, position


def _header(message: MobilityMessage, length: int) -> bytes:
    if length > MAX_HEADER_LENGTH:
        raise ValueError(f"{type(message).__name__} is {length} bytes, over {MAX_HEADER_LENGTH}")
    return bytes((IPPROTO_NONE, length // 8 - 1, message.mhType, 0, 0, 0))


def encode(message: MobilityMessage, profile: WireProfile = DRAFT) -> bytes:
    """The Mobility Header bytes of C{message}, checksum zero (the kernel fills
    it on a raw socket of protocol 135; see L{checksum} otherwise)."""
    parts, position = _encodeBody(message, profile)
    tail = -position % 8
    if tail:
        parts.append(_padding(tail))
        position += tail
    parts[0] = _header(message, position)
    return b"".join(parts)


@functools.lru_cache(maxsize=256)
def _sealLayout(position: int, spi: int, macLength: int) -> tuple[bytes, bytes, bytes, int]:
    """
    What follows a message's own options, ending at C{position} (mod 8), when
    it is sealed: the bytes before the Replay Protection timestamp (padding to
    8n+2, type, length), those after it up to the MAC (padding to 4n+1, the
    Authentication option's type, length, MN-HA subtype, SPI), the padding
    after the MAC, and how many bytes all that adds. Of the two places 4n+1
    offers the Authentication option, the one where it ends the header on its
    8-byte boundary: no padding after it (a MAC a multiple of 4 bytes long,
    as both of lmm's are), one option less for every receiver to read.
    """
    before = (2 - position) % 8
    afterTimestamp = position + before + 2 + 8
    middle = (1 - afterTimestamp) % 4
    if (afterTimestamp + middle + 7 + macLength) % 8:
        middle += 4 if (afterTimestamp + middle + 4 + 7 + macLength) % 8 == 0 else 0
    end = afterTimestamp + middle + 7 + macLength
    tail = -end % 8
    return (
        _padding(before) + bytes((OptionType.REPLAY_PROTECTION, 8)),
        _padding(middle) + struct.pack("!BBBI", OptionType.AUTHENTICATION, 5 + macLength,
                                       AUTH_SUBTYPE_MN_HA, spi),
        _padding(tail),
        end + tail - position,
    )


def encodeBody(message: MobilityMessage, profile: WireProfile = DRAFT) -> bytes:
    """The message's fixed part and options, aligned, without the header's
    first six bytes and without padding at the end: what L{sealBody} seals."""
    return b"".join(_encodeBody(message, profile)[0])


def encodeSealed(message: MobilityMessage, profile: WireProfile, spi: int, timestamp: int,
                 macLength: int, mac: Callable[[bytes], bytes]) -> bytes:
    """
    C{message} followed by a L{ReplayProtection} option carrying C{timestamp}
    and, last, an L{Authentication} option (MN-HA, C{spi}) whose data is
    C{mac(header)} of C{macLength} bytes, given the header up to and including
    the SPI with the checksum zero (RFC 4285 sections 5 and 6, "MH Data").
    It decodes (L{decode}) to the message with those two options added.
    """
    return sealBody(encodeBody(message, profile), message.mhType, spi, timestamp, macLength,
                    mac)


def sealBody(body: bytes, mhType: int, spi: int, timestamp: int, macLength: int,
             mac: Callable[[bytes], bytes]) -> bytes:
    """L{encodeSealed} of the message of type C{mhType} whose L{encodeBody}
    is C{body}. (lmm._hmac's C{Authenticator.seal} lays it out the same way,
    checked in tests/test_security.py.)"""
    position = 6 + len(body)
    before, after, tail, extra = _sealLayout(position % 8, spi, macLength)
    length = position + extra
    if length > MAX_HEADER_LENGTH:
        raise ValueError(f"the sealed header is {length} bytes, over {MAX_HEADER_LENGTH}")
    covered = b"".join((bytes((IPPROTO_NONE, length // 8 - 1, mhType, 0, 0, 0)), body, before,
                        timestamp.to_bytes(8, "big"), after))
    code = mac(covered)
    if len(code) != macLength:
        raise ValueError(f"the MAC is {len(code)} bytes, not {macLength}")
    return covered + code + tail


# --- decoding ---------------------------------------------------------------


def decode(data: bytes, profile: WireProfile = DRAFT) -> Message:
    """Decode one Mobility Header; raise a L{MobilityHeaderError} saying what is
    wrong. Bytes past the Header Len are not part of the header and are ignored."""
    return _decode(data, profile, -1)[0]


#: What L{decodeSealed} gives of the Authentication option: its subtype, SPI,
#: where the data it covers ends (after the SPI), and its Authentication Data.
SealFields = tuple[int, int, int, bytes]


def decodeSealed(data: bytes, profile: WireProfile) -> tuple[Message, SealFields | None]:
    """
    For the signaling's security layer (L{lmm.security}): the message in
    C{data} with the options before its Authentication option, and that
    option's fields, not made into an L{Authentication} (the LMAP's hot
    path). None for the fields when the header has no Authentication option
    or something other than padding follows it (RFC 4285 5: it is the last
    option). The same errors as L{decode} for what does not decode.
    """
    message, at, end = _decode(data, profile, OptionType.AUTHENTICATION)
    if at == end:
        return message, None
    covered = at + 7
    if covered > end:
        raise OptionOverrun(f"option type {OptionType.AUTHENTICATION} at offset {at} "
                            f"runs past the header: {end - at} bytes left")
    length, subtype, spi = _AUTHENTICATION_HEAD.unpack_from(data, at)
    last = at + 2 + length
    if last != end:  # not where lmm puts it
        if last > end:
            raise OptionOverrun(f"option type {OptionType.AUTHENTICATION} at offset {at}"
                                f" runs {last - end} bytes past the header")
        if length < 5:
            raise BadOption(f"Authentication option length {length}, expected 5 or more")
        if _decodeOptions(data, last, end, {}, -1)[0]:
            return message, None
    return message, (subtype, spi, covered, data[covered:last])


_AUTHENTICATION_HEAD = struct.Struct("!xBBI")  # type, length, subtype, SPI


def decodeBefore(data: bytes, profile: WireProfile, end: int,
                 last: MobilityOption) -> Message | None:
    """
    The security layer's fast path (L{lmm.security.SignalingCodec.decode},
    once lmm._hmac found the sealed layout and its MAC right): the message in
    C{data} with its options before offset C{end}, then C{last}. None when
    that is not all the header holds there (an Authentication option before
    C{end}, or the fixed part running past it): L{decodeSealed} then decides.
    """
    message, at, _ = _decode(data, profile, OptionType.AUTHENTICATION, end, last)
    if at != end or 6 + message.fixedLength > end:  # type: ignore[union-attr]
        return None
    return message


def _decode(data: bytes, profile: WireProfile, stop: int, end: int = 0,
            last: MobilityOption | None = None) -> tuple[Message, int, int]:
    """The message (its options up to the first of type C{stop}, or up to
    offset C{end} when given, then C{last} when given), where its options
    stopped (the header's end if at none), and the header's end."""
    size = len(data)
    if size < 8:
        raise TruncatedMessage(f"{size} bytes, a Mobility Header has at least 8")
    length = (data[1] + 1) * 8
    if length > size:
        raise TruncatedMessage(f"Header Len says {length} bytes, only {size} received")
    mhType = data[2]
    cls = _MESSAGES.get(mhType)
    if cls is None:
        if mhType != MHType.BINDING_REVOCATION:
            raise UnknownMessageType(mhType)
        cls = _REVOCATIONS.get(data[6])
        if cls is None:
            raise MobilityHeaderError(f"unknown Binding Revocation type {data[6]}")
    start = 6 + cls.fixedLength
    if start > length:
        raise BadLength(
            f"Header Len says {length} bytes, a {cls.__name__} needs at least {start}"
        )
    limit = end or length
    if start < limit:
        options, at = _decodeOptions(data, start, limit, profile.decoders, stop)
    else:
        options, at = (), limit
    if last is not None:
        options = (*options, last)
    return cls.decodeFixed(data, options), at, length  # type: ignore[return-value]


def _decodeOptions(
    data: bytes, position: int, end: int, decoders: dict[int, type[MobilityOption]],
    stop: int,
) -> tuple[tuple[MobilityOption, ...], int]:
    """The options from C{position} to C{end}, or to the first of type
    C{stop}, and where they stopped."""
    options: list[MobilityOption] = []
    while position < end:
        optionType = data[position]
        if optionType == 0:  # Pad1 (ints, not the IntEnum: this is the hot loop)
            position += 1
            continue
        if optionType == stop:
            break
        if position + 2 > end:
            raise OptionOverrun(f"option type {optionType} at offset {position} has no length byte")
        length = data[position + 1]
        body = position + 2
        position = body + length
        if position > end:
            raise OptionOverrun(
                f"option type {optionType} at offset {body - 2}"
                f" runs {position - end} bytes past the header"
            )
        if optionType == 1:  # PadN
            if data[body:position].count(0) != length:
                raise BadPadding(f"PadN at offset {body - 2} carries non-zero bytes")
            continue
        decoder = decoders.get(optionType)
        if decoder is None:
            options.append(UnknownOption(optionType, data[body:position]))
        else:
            options.append(decoder.decodeBody(data, body, length))
    return tuple(options), position


# --- checksum ---------------------------------------------------------------


def checksum(source: str, destination: str, header: bytes) -> int:
    """The MH checksum (RFC 6275 6.1.1) over the IPv6 pseudo-header and
    C{header}, whose own checksum field is taken as zero. A sum of zero is
    sent as zero: the kernel does the same for protocol 135."""
    return inet.checksum(_packAddress(source), _packAddress(destination), IPPROTO_MH,
                         header[:4] + b"\x00\x00" + header[6:])


def withChecksum(source: str, destination: str, header: bytes) -> bytes:
    """C{header} with its checksum field filled in, for senders without the kernel's help."""
    return header[:4] + struct.pack("!H", checksum(source, destination, header)) + header[6:]


def verifyChecksum(source: str, destination: str, header: bytes) -> None:
    """Raise L{BadChecksum} unless the header's checksum is right."""
    if len(header) < 8:
        raise TruncatedMessage(f"{len(header)} bytes, a Mobility Header has at least 8")
    carried = struct.unpack_from("!H", header, 4)[0]
    expected = checksum(source, destination, header)
    if carried != expected and not (carried == 0xFFFF and expected == 0):
        raise BadChecksum(f"checksum {carried:#06x}, expected {expected:#06x}")
