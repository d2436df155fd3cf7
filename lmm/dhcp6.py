"""
DHCPv6 wire format (RFC 8415): client/server and relay messages, and the
options the MPA's relay agent and its tests need.

Pure codec: bytes in, dataclasses out, and back. No I/O, no clock.

A client/server message (L{Message}) is msg-type, a 24-bit transaction-id and
options; a relay message (L{RelayMessage}: Relay-Forward and Relay-Reply) is
msg-type, hop-count, link-address, peer-address and options (RFC 8415 section
9). Options are type, 16-bit length, body; there is no padding. Known options
decode to their dataclass, any other is kept as an L{UnknownOption} and
encodes back byte for byte. The Relay Message option keeps the relayed message
as bytes (L{RelayMsg.message}), so that a relay forwards exactly what it got;
L{RelayMsg.decoded} decodes it.

Bytes that cannot be decoded raise a L{DHCPv6Error} whose C{reason} is a
counter key; random bytes raise nothing else. Encoding a dataclass whose
fields are out of range raises L{ValueError}.

Addresses are canonical text (C{socket.inet_ntop}); DUIDs and identifiers are
bytes. Lifetimes and timers are in seconds, 0xffffffff is infinity
(L{INFINITY}); the Elapsed Time option counts hundredths of a second.

Over 600 lines, one module on purpose (as L{lmm.mh} is): the wire format of
one protocol, every option beside the message that carries it, is read in
one place.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, TypeVar

from lmm import inet
from lmm.inet import packAddress as _packAddress
from lmm.inet import unpackAddress as _unpackAddress

CLIENT_PORT = 546
SERVER_PORT = 547  # servers and relay agents listen, and relays send, on 547
ALL_DHCP_RELAY_AGENTS_AND_SERVERS = "ff02::1:2"
ALL_DHCP_SERVERS = "ff05::1:3"
INFINITY = 0xFFFFFFFF
HOP_COUNT_LIMIT = 8  # RFC 8415 7.6: a relay discards a Relay-Forward at this hop count
MAX_DUID_LENGTH = 130  # RFC 8415 11.1: 2-byte type and at most 128 bytes
MAX_TRANSACTION_ID = 0xFFFFFF


class MessageType(IntEnum):
    """RFC 8415 7.3 message types."""

    SOLICIT = 1
    ADVERTISE = 2
    REQUEST = 3
    CONFIRM = 4
    RENEW = 5
    REBIND = 6
    REPLY = 7
    RELEASE = 8
    DECLINE = 9
    RECONFIGURE = 10
    INFORMATION_REQUEST = 11
    RELAY_FORW = 12
    RELAY_REPL = 13


class OptionCode(IntEnum):
    """Option codes (IANA "DHCPv6 Option Codes") lmm names; those with a
    dataclass here are decoded, the others kept as L{UnknownOption}."""

    CLIENTID = 1
    SERVERID = 2
    IA_NA = 3
    IA_TA = 4
    IAADDR = 5
    ORO = 6
    PREFERENCE = 7
    ELAPSED_TIME = 8
    RELAY_MSG = 9
    AUTH = 11
    UNICAST = 12
    STATUS_CODE = 13
    RAPID_COMMIT = 14
    USER_CLASS = 15
    VENDOR_CLASS = 16
    VENDOR_OPTS = 17
    INTERFACE_ID = 18
    RECONF_MSG = 19
    RECONF_ACCEPT = 20
    DNS_SERVERS = 23
    DOMAIN_LIST = 24
    IA_PD = 25
    IAPREFIX = 26


class Status(IntEnum):
    """RFC 8415 21.13 status codes."""

    SUCCESS = 0
    UNSPEC_FAIL = 1
    NO_ADDRS_AVAIL = 2
    NO_BINDING = 3
    NOT_ON_LINK = 4
    USE_MULTICAST = 5
    NO_PREFIX_AVAIL = 6


class DUIDType(IntEnum):
    LLT = 1
    EN = 2
    LL = 3
    UUID = 4


HARDWARE_TYPE_ETHERNET = 1

# Who sends what (RFC 8415 7.3): a relay agent relays the client's kinds to the
# servers and the server's kinds back.
CLIENT_MESSAGE_TYPES = frozenset(
    {
        MessageType.SOLICIT,
        MessageType.REQUEST,
        MessageType.CONFIRM,
        MessageType.RENEW,
        MessageType.REBIND,
        MessageType.RELEASE,
        MessageType.DECLINE,
        MessageType.INFORMATION_REQUEST,
    }
)
SERVER_MESSAGE_TYPES = frozenset(
    {MessageType.ADVERTISE, MessageType.REPLY, MessageType.RECONFIGURE}
)
RELAY_MESSAGE_TYPES = frozenset({MessageType.RELAY_FORW, MessageType.RELAY_REPL})


def typeName(msgType: int) -> str:
    """C{"solicit"}, C{"relay-forw"}, ...; the number as text if unknown."""
    try:
        return MessageType(msgType).name.lower().replace("_", "-")
    except ValueError:
        return str(msgType)


# --- errors -----------------------------------------------------------------


class DHCPv6Error(ValueError):
    """A DHCPv6 message that cannot be decoded; C{reason} names the kind (used
    as a counter key), the message says what exactly is wrong."""

    reason = "malformed"


class TruncatedMessage(DHCPv6Error):
    """Shorter than its fixed header (4 bytes, 34 for a relay message)."""

    reason = "truncated"


class BadMessageType(DHCPv6Error):
    """msg-type 0, which RFC 8415 reserves."""

    reason = "bad-msg-type"


class OptionOverrun(DHCPv6Error):
    """An option header or body running past the end of its message or of the
    option that contains it."""

    reason = "option-overrun"


class BadOptionLength(DHCPv6Error):
    """An option whose length does not fit its code (Elapsed Time not 2, IA
    Address under 24, DNS servers not a multiple of 16, ...)."""

    reason = "bad-option-length"


class BadOption(DHCPv6Error):
    """An option whose contents are invalid although its length is right."""

    reason = "bad-option"


# --- helpers ----------------------------------------------------------------


def _checkRange(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} {value} is not in 0..{maximum}")


def duidLL(mac: str) -> bytes:
    """The DUID-LL (RFC 8415 11.4) of an Ethernet C{mac} ("aa:bb:cc:dd:ee:ff")."""
    hardware = bytes.fromhex(mac.replace(":", ""))
    if len(hardware) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return struct.pack("!HH", DUIDType.LL, HARDWARE_TYPE_ETHERNET) + hardware


def duidLLT(mac: str, time: int) -> bytes:
    """The DUID-LLT (RFC 8415 11.2): C{time} is seconds since 2000-01-01 UTC, mod 2**32."""
    return (
        struct.pack("!HHI", DUIDType.LLT, HARDWARE_TYPE_ETHERNET, time & 0xFFFFFFFF)
        + duidLL(mac)[4:]
    )


# --- options ----------------------------------------------------------------


class Option:
    """Base of every option: C{code} is the option code."""

    __slots__ = ()
    code: ClassVar[int]

    def encodeBody(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> Option:
        raise NotImplementedError


OptionT = TypeVar("OptionT", bound=Option)


class _DUIDOption(Option):
    __slots__ = ()
    duid: bytes

    def encodeBody(self) -> bytes:
        if not 2 <= len(self.duid) <= MAX_DUID_LENGTH:
            raise ValueError(f"a DUID has 2 to {MAX_DUID_LENGTH} bytes, not {len(self.duid)}")
        return bytes(self.duid)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> Option:
        if not 2 <= length <= MAX_DUID_LENGTH:
            raise BadOptionLength(
                f"{cls.__name__} option length {length}, a DUID has 2 to {MAX_DUID_LENGTH} bytes"
            )
        return cls(data[offset : offset + length])  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class ClientId(_DUIDOption):
    """Client Identifier (RFC 8415 21.2): the client's DUID."""

    duid: bytes
    code: ClassVar[int] = OptionCode.CLIENTID


@dataclass(frozen=True, slots=True)
class ServerId(_DUIDOption):
    """Server Identifier (RFC 8415 21.3): the server's DUID."""

    duid: bytes
    code: ClassVar[int] = OptionCode.SERVERID


@dataclass(frozen=True, slots=True)
class StatusCode(Option):
    """Status Code (RFC 8415 21.13): a code and a UTF-8 message for people
    (decoded with errors replaced: it is for logs, not for deciding)."""

    status: int
    message: str = ""
    code: ClassVar[int] = OptionCode.STATUS_CODE

    @property
    def success(self) -> bool:
        return self.status == Status.SUCCESS

    def encodeBody(self) -> bytes:
        _checkRange("status code", self.status, 0xFFFF)
        return struct.pack("!H", self.status) + self.message.encode("utf-8")

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> StatusCode:
        inet.minimumLength(BadOptionLength, cls, length, 2)
        status = struct.unpack_from("!H", data, offset)[0]
        return cls(status, data[offset + 2 : offset + length].decode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class IAAddress(Option):
    """IA Address (RFC 8415 21.6): an address with its lifetimes, in an IA_NA."""

    address: str
    preferredLifetime: int
    validLifetime: int
    options: tuple[Option, ...] = ()
    code: ClassVar[int] = OptionCode.IAADDR

    def option(self, kind: type[OptionT]) -> OptionT | None:
        return _first(self.options, kind)

    @property
    def status(self) -> int:
        """The status of its Status Code option; Success when there is none."""
        return _status(self.options)

    def encodeBody(self) -> bytes:
        _checkRange("preferred lifetime", self.preferredLifetime, INFINITY)
        _checkRange("valid lifetime", self.validLifetime, INFINITY)
        return (
            _packAddress(self.address)
            + struct.pack("!II", self.preferredLifetime, self.validLifetime)
            + _encodeOptions(self.options)
        )

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> IAAddress:
        inet.minimumLength(BadOptionLength, cls, length, 24)
        preferred, valid = struct.unpack_from("!II", data, offset + 16)
        return cls(
            _unpackAddress(data, offset),
            preferred,
            valid,
            _decodeOptions(data, offset + 24, offset + length, _IAADDR_OPTIONS),
        )


@dataclass(frozen=True, slots=True)
class IANA(Option):
    """Identity Association for Non-temporary Addresses (RFC 8415 21.4): IAID,
    T1, T2 (seconds), and IA Address and Status Code options."""

    iaid: int
    t1: int = 0
    t2: int = 0
    options: tuple[Option, ...] = ()
    code: ClassVar[int] = OptionCode.IA_NA

    def option(self, kind: type[OptionT]) -> OptionT | None:
        return _first(self.options, kind)

    @property
    def addresses(self) -> tuple[IAAddress, ...]:
        return tuple(o for o in self.options if type(o) is IAAddress)

    @property
    def status(self) -> int:
        """The status of its Status Code option; Success when there is none."""
        return _status(self.options)

    def encodeBody(self) -> bytes:
        _checkRange("IAID", self.iaid, 0xFFFFFFFF)
        _checkRange("T1", self.t1, INFINITY)
        _checkRange("T2", self.t2, INFINITY)
        return struct.pack("!III", self.iaid, self.t1, self.t2) + _encodeOptions(self.options)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> IANA:
        inet.minimumLength(BadOptionLength, cls, length, 12)
        iaid, t1, t2 = struct.unpack_from("!III", data, offset)
        return cls(
            iaid, t1, t2, _decodeOptions(data, offset + 12, offset + length, _IA_NA_OPTIONS)
        )


@dataclass(frozen=True, slots=True)
class OptionRequest(Option):
    """Option Request (RFC 8415 21.7): the option codes the client wants."""

    codes: tuple[int, ...] = ()
    code: ClassVar[int] = OptionCode.ORO

    def encodeBody(self) -> bytes:
        for c in self.codes:
            _checkRange("option code", c, 0xFFFF)
        return struct.pack(f"!{len(self.codes)}H", *self.codes)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> OptionRequest:
        if length % 2:
            raise BadOptionLength(f"OptionRequest option length {length} is odd")
        return cls(struct.unpack_from(f"!{length // 2}H", data, offset))


@dataclass(frozen=True, slots=True)
class Preference(Option):
    """Preference (RFC 8415 21.8), 0..255: which server's Advertise a client takes."""

    value: int
    code: ClassVar[int] = OptionCode.PREFERENCE

    def encodeBody(self) -> bytes:
        _checkRange("preference", self.value, 0xFF)
        return bytes((self.value,))

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> Preference:
        inet.fixedLength(BadOptionLength, cls, length, 1)
        return cls(data[offset])


@dataclass(frozen=True, slots=True)
class ElapsedTime(Option):
    """Elapsed Time (RFC 8415 21.9), in hundredths of a second; 0xffff and over
    are sent as 0xffff."""

    hundredths: int = 0
    code: ClassVar[int] = OptionCode.ELAPSED_TIME

    def encodeBody(self) -> bytes:
        _checkRange("elapsed time", self.hundredths, 0xFFFF)
        return struct.pack("!H", self.hundredths)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> ElapsedTime:
        inet.fixedLength(BadOptionLength, cls, length, 2)
        return cls(struct.unpack_from("!H", data, offset)[0])


@dataclass(frozen=True, slots=True)
class RelayMsg(Option):
    """Relay Message (RFC 8415 21.10): the relayed message, kept as bytes."""

    message: bytes
    code: ClassVar[int] = OptionCode.RELAY_MSG

    def decoded(self) -> Message | RelayMessage:
        """The relayed message, decoded; raise a L{DHCPv6Error} if it cannot be."""
        return decode(self.message)

    def encodeBody(self) -> bytes:
        return bytes(self.message)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> RelayMsg:
        return cls(data[offset : offset + length])


@dataclass(frozen=True, slots=True)
class RapidCommit(Option):
    """Rapid Commit (RFC 8415 21.14): Solicit-Reply instead of four messages."""

    code: ClassVar[int] = OptionCode.RAPID_COMMIT

    def encodeBody(self) -> bytes:
        return b""

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> RapidCommit:
        inet.fixedLength(BadOptionLength, cls, length, 0)
        return cls()


@dataclass(frozen=True, slots=True)
class InterfaceId(Option):
    """Interface-ID (RFC 8415 21.18): opaque; a relay puts it in a Relay-Forward
    and the server copies it into the Relay-Reply."""

    identifier: bytes
    code: ClassVar[int] = OptionCode.INTERFACE_ID

    def encodeBody(self) -> bytes:
        return bytes(self.identifier)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> InterfaceId:
        return cls(data[offset : offset + length])


@dataclass(frozen=True, slots=True)
class DNSServers(Option):
    """DNS Recursive Name Server (RFC 3646): addresses."""

    addresses: tuple[str, ...] = ()
    code: ClassVar[int] = OptionCode.DNS_SERVERS

    def encodeBody(self) -> bytes:
        return b"".join(_packAddress(a) for a in self.addresses)

    @classmethod
    def decodeBody(cls, data: bytes, offset: int, length: int) -> DNSServers:
        if length % 16:
            raise BadOptionLength(f"DNSServers option length {length} is not a multiple of 16")
        return cls(tuple(_unpackAddress(data, i) for i in range(offset, offset + length, 16)))


@dataclass(frozen=True, slots=True)
class UnknownOption(Option):
    """An option this codec does not decode: kept, and encoded back as it came."""

    type: int
    data: bytes = b""
    code: ClassVar[int] = -1

    def encodeBody(self) -> bytes:
        return bytes(self.data)


_OPTIONS: dict[int, type[Option]] = {
    cls.code: cls
    for cls in (
        ClientId,
        ServerId,
        IANA,
        IAAddress,
        OptionRequest,
        Preference,
        ElapsedTime,
        RelayMsg,
        StatusCode,
        RapidCommit,
        InterfaceId,
        DNSServers,
    )
}
# What may sit inside an IA_NA and an IA Address; anything else is kept unknown
# (also bounding the nesting, so crafted input cannot recurse deeply).
_IA_NA_OPTIONS: dict[int, type[Option]] = {
    OptionCode.IAADDR: IAAddress,
    OptionCode.STATUS_CODE: StatusCode,
}
_IAADDR_OPTIONS: dict[int, type[Option]] = {OptionCode.STATUS_CODE: StatusCode}


def _first(options: tuple[Option, ...], kind: type[OptionT]) -> OptionT | None:
    for o in options:
        if type(o) is kind:
            return o
    return None


def _status(options: tuple[Option, ...]) -> int:
    # RFC 8415 21.13: no Status Code option means Success.
    found = _first(options, StatusCode)
    return Status.SUCCESS if found is None else found.status


# --- messages ---------------------------------------------------------------


class _Options:
    __slots__ = ()
    options: tuple[Option, ...]

    def option(self, kind: type[OptionT]) -> OptionT | None:
        """The first option of that class, or None."""
        return _first(self.options, kind)

    def optionsOf(self, kind: type[OptionT]) -> tuple[OptionT, ...]:
        """Every option of that class, in order."""
        return tuple(o for o in self.options if type(o) is kind)  # type: ignore[misc]

    @property
    def status(self) -> int:
        """The status of the message's top-level Status Code; Success without one."""
        return _status(self.options)


@dataclass(frozen=True, slots=True)
class Message(_Options):
    """A client/server message (RFC 8415 8): every type but the relays'."""

    msgType: int
    transactionId: int
    options: tuple[Option, ...] = ()

    @property
    def typeName(self) -> str:
        return typeName(self.msgType)


@dataclass(frozen=True, slots=True)
class RelayMessage(_Options):
    """A Relay-Forward or Relay-Reply (RFC 8415 9)."""

    msgType: int
    hopCount: int
    linkAddress: str
    peerAddress: str
    options: tuple[Option, ...] = ()

    @property
    def typeName(self) -> str:
        return typeName(self.msgType)

    @property
    def relayed(self) -> bytes | None:
        """The bytes of its Relay Message option, or None without one."""
        found = _first(self.options, RelayMsg)
        return None if found is None else found.message

    @property
    def interfaceId(self) -> bytes | None:
        found = _first(self.options, InterfaceId)
        return None if found is None else found.identifier


def RelayForward(
    linkAddress: str,
    peerAddress: str,
    relayed: bytes,
    interfaceId: bytes | None = None,
    hopCount: int = 0,
    options: Iterable[Option] = (),
) -> RelayMessage:
    """A Relay-Forward carrying C{relayed}; the Interface-ID, when given, comes
    first (servers copy it back, RFC 8415 19.1.1)."""
    head: tuple[Option, ...] = () if interfaceId is None else (InterfaceId(interfaceId),)
    return RelayMessage(
        MessageType.RELAY_FORW,
        hopCount,
        linkAddress,
        peerAddress,
        head + tuple(options) + (RelayMsg(relayed),),
    )


def RelayReply(
    linkAddress: str,
    peerAddress: str,
    relayed: bytes,
    interfaceId: bytes | None = None,
    hopCount: int = 0,
) -> RelayMessage:
    """A Relay-Reply carrying C{relayed}, as a server sends it."""
    head: tuple[Option, ...] = () if interfaceId is None else (InterfaceId(interfaceId),)
    return RelayMessage(
        MessageType.RELAY_REPL, hopCount, linkAddress, peerAddress, head + (RelayMsg(relayed),)
    )


# --- encoding ---------------------------------------------------------------

_OPTION_HEADER = struct.Struct("!HH")
_RELAY_HEADER_LENGTH = 34


def _encodeOptions(options: Iterable[Option]) -> bytes:
    parts = []
    for option in options:
        body = option.encodeBody()
        if len(body) > 0xFFFF:
            name = type(option).__name__
            raise ValueError(f"{name} option body is {len(body)} bytes, over 65535")
        if type(option) is UnknownOption:
            code = option.type
            _checkRange("option code", code, 0xFFFF)
        else:
            code = option.code
        parts.append(_OPTION_HEADER.pack(code, len(body)))
        parts.append(body)
    return b"".join(parts)


def encode(message: Message | RelayMessage) -> bytes:
    """The bytes of C{message} (a UDP payload)."""
    _checkRange("msg-type", message.msgType, 0xFF)
    if message.msgType == 0:
        raise ValueError("msg-type 0 is reserved")
    if isinstance(message, RelayMessage):
        _checkRange("hop-count", message.hopCount, 0xFF)
        head = (
            bytes((message.msgType, message.hopCount))
            + _packAddress(message.linkAddress)
            + _packAddress(message.peerAddress)
        )
    else:
        if message.msgType in RELAY_MESSAGE_TYPES:
            raise ValueError(f"a {typeName(message.msgType)} is a RelayMessage")
        _checkRange("transaction-id", message.transactionId, MAX_TRANSACTION_ID)
        head = struct.pack("!I", message.msgType << 24 | message.transactionId)
    return head + _encodeOptions(message.options)


# --- decoding ---------------------------------------------------------------


def decode(data: bytes) -> Message | RelayMessage:
    """Decode one DHCPv6 message (a whole UDP payload); raise a L{DHCPv6Error}
    saying what is wrong."""
    size = len(data)
    if size < 4:
        raise TruncatedMessage(f"{size} bytes, a DHCPv6 message has at least 4")
    msgType = data[0]
    if msgType == 0:
        raise BadMessageType("msg-type 0 is reserved")
    if msgType in RELAY_MESSAGE_TYPES:
        if size < _RELAY_HEADER_LENGTH:
            raise TruncatedMessage(
                f"{size} bytes, a {typeName(msgType)} has at least {_RELAY_HEADER_LENGTH}"
            )
        return RelayMessage(
            msgType,
            data[1],
            _unpackAddress(data, 2),
            _unpackAddress(data, 18),
            _decodeOptions(data, _RELAY_HEADER_LENGTH, size, _OPTIONS),
        )
    return Message(
        msgType,
        int.from_bytes(data[1:4], "big"),
        _decodeOptions(data, 4, size, _OPTIONS),
    )


def _decodeOptions(
    data: bytes, position: int, end: int, decoders: dict[int, type[Option]]
) -> tuple[Option, ...]:
    options: list[Option] = []
    unpack = _OPTION_HEADER.unpack_from
    while position < end:
        if position + 4 > end:
            raise OptionOverrun(
                f"{end - position} bytes at offset {position}, an option header has 4"
            )
        code, length = unpack(data, position)
        body = position + 4
        position = body + length
        if position > end:
            raise OptionOverrun(
                f"option {code} at offset {body - 4} runs {position - end} bytes past its end"
            )
        decoder = decoders.get(code)
        if decoder is None:
            options.append(UnknownOption(code, data[body:position]))
        else:
            options.append(decoder.decodeBody(data, body, length))
    return tuple(options)
