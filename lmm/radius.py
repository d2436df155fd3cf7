"""
RADIUS network access authentication for the MPA (draft section 6.1).

pyrad's dictionary names the attributes (pyrad has no Twisted client).
The Access-Request, eight attributes of RFC 2865's own, is laid out here:
byte for byte what pyrad lays out (tests/test_radius.py checks it against
pyrad), in a fifth of the time (12 against 50-64 us in one process); a
reply's attributes are found here too (L{ReplyDecoder}) and their values
decoded by pyrad's own functions, the same answer as pyrad's packet gives
(checked on random replies) without building one. This
module owns the socket, the Identifiers, the retransmissions and the choice
of server. An Access-Request carries the MS's NAI as User-Name, a PAP
password, its MAC as Calling-Station-Id and a Message-Authenticator (RFC 3579
section 3.2); an Access-Accept carries the MS profile in RFC 6572 attributes
and lmm's own vendor attributes (radius_dicts/dictionary.lmm). See docs/aaa.md.

Replies that fail a check (length, Identifier, Response Authenticator,
Message-Authenticator) are counted in L{RadiusAuthenticator.counters}, logged
and dropped: the request keeps waiting for a good reply or its timeout, so a
forged packet cannot end an exchange.

Over 600 lines, one module on purpose: the packets' checks, the exchange
(Identifiers, retransmissions, server order) and the profile mapping are one
backend, and each piece is only ever used by the others.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import random
import socket
import struct
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NoReturn, TypeAlias

from pyrad import packet as rpacket
from pyrad import tools as rtools
from pyrad.dictionary import Dictionary
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

import lmm
from lmm import config
from lmm.aaa import (
    ADDRESS_MODES,
    DEFAULT_NAI_TEMPLATE,
    MAX_NAI_LENGTH,
    AAAUnavailable,
    AccessRejected,
    AccessRequest,
    Profile,
    backendSettings,
    checkProfile,
    naiFromMac,
    naiTemplate,
)
from lmm.config import ConfigError, Setting
from lmm.interfaces import IAuthenticator, IReactor
from lmm.logs import Logger

ACCESS_REQUEST = rpacket.AccessRequest
ACCESS_ACCEPT = rpacket.AccessAccept
ACCESS_REJECT = rpacket.AccessReject
ACCESS_CHALLENGE = rpacket.AccessChallenge

# Attribute types (RFC 2865 section 5, RFC 2869 5.14).
USER_NAME = 1
USER_PASSWORD = 2
SERVICE_TYPE = 6
CALLING_STATION_ID = 31
NAS_IDENTIFIER = 32
NAS_PORT_TYPE = 61
NAS_PORT_ID = 87
MESSAGE_AUTHENTICATOR = 80
PROXY_STATE = 33
MAX_ATTRIBUTE_LENGTH = 253  # octets of a value (RFC 2865 section 5)
HEADER_LENGTH = 20
MAX_PACKET_LENGTH = 4096  # RFC 2865 section 3

SERVICE_TYPES = {"framed": 2, "call-check": 10}  # Framed-User, Call-Check (RFC 3580)
NAS_PORT_TYPE_ETHERNET = 15
#: radius.dead_time's default: FreeRADIUS marks a home server zombie, then
#: dead, within about 30-40 s of silence (zombie_period 40); Cisco's
#: radius-server deadtime is minutes. 30 s keeps a dead server off the attach
#: path while it is down, and finds it again soon after it returns.
DEFAULT_DEAD_TIME = 30.0



# --- the dictionary -----------------------------------------------------------


def dictionaryCandidates() -> list[Path]:
    """
    Where the default dictionary is looked for, in order: radius_dicts/ next to
    the lmm package (a checkout, or an editable install), then
    C{<prefix>/share/lmm/radius_dicts} (an install that ships it as data).
    """
    package = Path(lmm.__file__).resolve().parent
    return [
        package.parent / "radius_dicts" / "dictionary",
        Path(sys.prefix) / "share" / "lmm" / "radius_dicts" / "dictionary",
    ]


def defaultDictionaryPath() -> str:
    """The dictionary lmm ships, or L{FileNotFoundError} saying where it looked."""
    candidates = dictionaryCandidates()
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        "lmm's RADIUS dictionary is not in " + " or ".join(map(str, candidates))
        + "; set the radius backend's 'dictionary' setting")


# What lmm reads and writes: a dictionary given in the settings must have them.
NEEDED_ATTRIBUTES = (
    "User-Name", "User-Password", "Calling-Station-Id", "NAS-Identifier", "NAS-Port-Type",
    "NAS-Port-Id", "Service-Type", "Reply-Message", "Session-Timeout", "Framed-IPv6-Address",
    "Mobile-Node-Identifier", "PMIP6-Home-LMA-IPv6-Address", "PMIP6-Home-HN-Prefix",
    "PMIP6-Home-DHCP6-Server-Address", "LMM-Virtual-LMAP-MAC", "LMM-Virtual-LMAP-Link-Local",
    "LMM-Address-Mode", "LMM-MS-May-Choose-Address",
)


def loadDictionary(path: str | None = None) -> Dictionary:
    """
    Read a pyrad dictionary (default: lmm's); L{ValueError} if it lacks an
    attribute lmm uses, L{OSError} if it cannot be read.
    """
    if path is None:
        path = defaultDictionaryPath()
    try:
        dictionary = Dictionary(path)
    except OSError:
        raise
    except Exception as e:  # pyrad's ParseError and friends
        raise ValueError(f"{path}: {e}") from None
    missing = [name for name in NEEDED_ATTRIBUTES if name not in dictionary.attributes]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)} (see radius_dicts/dictionary)")
    return dictionary


# --- wire checks (pure) -----------------------------------------------------------


def responseAuthenticator(data: bytes, requestAuthenticator: bytes, secret: bytes) -> bytes:
    """The Response Authenticator a reply C{data} should carry (RFC 2865 section 3)."""
    return hashlib.md5(data[:4] + requestAuthenticator + data[HEADER_LENGTH:] + secret).digest()


def rawAttributes(data: bytes, offset: int = HEADER_LENGTH) -> list[tuple[int, bytes]]:
    """The (type, value) pairs of a packet, or of what follows C{offset} in
    C{data} (a Vendor-Specific's sub-attributes, RFC 2865 section 5.26, after
    its Vendor-Id); L{ValueError} if they do not add up."""
    attributes = []
    while offset < len(data):
        if offset + 2 > len(data):
            raise ValueError("truncated attribute header")
        kind, length = data[offset], data[offset + 1]
        if length < 2 or offset + length > len(data):
            raise ValueError(f"attribute {kind} has a bad length {length}")
        attributes.append((kind, data[offset + 2:offset + length]))
        offset += length
    return attributes


def attribute(kind: int, value: bytes) -> bytes:
    """One attribute, type, length, value (RFC 2865 section 5); L{ValueError}
    for a value of no octet or more than 253."""
    if not 0 < len(value) <= MAX_ATTRIBUTE_LENGTH:
        raise ValueError(f"attribute {kind}: a value has 1..{MAX_ATTRIBUTE_LENGTH} octets, "
                         f"this one {len(value)}")
    return bytes((kind, len(value) + 2)) + value


def hidePassword(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """
    A User-Password's value (RFC 2865 section 5.2): the password padded with
    NULs to a multiple of 16 octets (16 for none), each 16 XORed with the MD5
    of the secret and the previous 16 sent (the Request Authenticator first).
    """
    padded = password + bytes(-len(password) % 16) if password else bytes(16)
    hidden = b""
    previous = authenticator
    for start in range(0, len(padded), 16):
        digest = hashlib.md5(secret + previous).digest()
        previous = (int.from_bytes(padded[start:start + 16], "big")
                    ^ int.from_bytes(digest, "big")).to_bytes(16, "big")
        hidden += previous
    return hidden


def encodeAccessRequest(identifier: int, authenticator: bytes, secret: bytes,
                        attributes: bytes) -> bytes:
    """
    An Access-Request: C{attributes} (encoded) after a Message-Authenticator,
    the first attribute (RFC 3579 section 3.2, and the BlastRADIUS advice,
    CVE-2024-3596), computed over the whole packet.
    """
    length = HEADER_LENGTH + 18 + len(attributes)
    if length > MAX_PACKET_LENGTH:
        raise ValueError(f"an Access-Request of {length} octets (at most {MAX_PACKET_LENGTH})")
    header = struct.pack("!BBH", ACCESS_REQUEST, identifier, length) + authenticator
    signing = bytes((MESSAGE_AUTHENTICATOR, 18))
    mac = hmac.new(secret, header + signing + bytes(16) + attributes, hashlib.md5).digest()
    return header + signing + mac + attributes


def messageAuthenticator(data: bytes, authenticator: bytes, secret: bytes) -> bytes:
    """
    The Message-Authenticator for C{data} (RFC 2869 section 5.14, RFC 3579
    section 3.2): HMAC-MD5 keyed with the secret over the packet with the
    attribute's value zeroed and C{authenticator} (the Request Authenticator,
    also for a reply) in the Authenticator field.
    """
    zeroed = bytearray(data)
    zeroed[4:HEADER_LENGTH] = authenticator
    offset = HEADER_LENGTH
    while offset + 2 <= len(data):
        kind, length = data[offset], data[offset + 1]
        if length < 2:
            break
        if kind == MESSAGE_AUTHENTICATOR:
            zeroed[offset + 2:offset + length] = bytes(length - 2)
        offset += length
    return hmac.new(secret, bytes(zeroed), hashlib.md5).digest()


def checkMessageAuthenticator(data: bytes, authenticator: bytes, secret: bytes) -> bool | None:
    """
    Whether C{data}'s Message-Authenticator is right: None when it has none,
    False when it is wrong, repeated or not 16 octets.
    """
    values = [v for kind, v in rawAttributes(data) if kind == MESSAGE_AUTHENTICATOR]
    if not values:
        return None
    if len(values) > 1 or len(values[0]) != 16:
        return False
    return hmac.compare_digest(values[0], messageAuthenticator(data, authenticator, secret))


def callingStationId(mac: str) -> str:
    """A MAC as RFC 3580 section 3.21 writes Calling-Station-Id: 00-10-A4-23-19-C0."""
    return config.macAddress(mac).replace(":", "-").upper()


# --- a reply's attributes (pure) -----------------------------------------------------

#: The attributes lmm reads in a reply (L{profileFromReply}, L{replyMessage}).
REPLY_ATTRIBUTES = (
    "Mobile-Node-Identifier", "User-Name", "PMIP6-Home-HN-Prefix", "LMM-Address-Mode",
    "LMM-MS-May-Choose-Address", "LMM-Virtual-LMAP-Link-Local", "LMM-Virtual-LMAP-MAC",
    "PMIP6-Home-LMA-IPv6-Address", "Framed-IPv6-Address", "PMIP6-Home-DHCP6-Server-Address",
    "Session-Timeout", "Reply-Message",
)
VENDOR_SPECIFIC = 26


def _decodeValue(kind: str, value: bytes) -> Any:
    if kind == "ipv6addr" and len(value) == 16:
        # Each MS's own Framed-IPv6-Address: pyrad writes it with ipaddress
        # (~5 us), whose text is inet_ntop's but for an IPv4 address inside.
        text = socket.inet_ntop(socket.AF_INET6, value)
        if "." not in text:
            return text
    return _pyradValue(kind, value)


@functools.lru_cache(maxsize=1024)
def _pyradValue(kind: str, value: bytes) -> Any:
    # pyrad's own decoding; a domain's profiles share most values (its
    # prefix, its LMAP, its modes), so most are decoded once.
    return rtools.DecodeAttr(kind, value)


class Reply:
    """
    A reply's code and the values of the attributes lmm reads, decoded when
    asked for as pyrad decodes them with the same dictionary: what
    L{profileFromReply} and L{replyMessage} ask of a pyrad packet (C{name in
    reply}, C{reply.get(name)}), without the packet. Made by L{ReplyDecoder}.
    """

    __slots__ = ("code", "_values", "_types")

    def __init__(self, code: int, values: dict[str, list[bytes]],
                 types: Mapping[str, tuple[str, Mapping[bytes, str]]]) -> None:
        self.code = code
        self._values = values
        self._types = types

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def get(self, name: str, failobj: Any = None) -> Any:
        values = self._values.get(name)
        if values is None:
            return failobj
        kind, named = self._types[name]
        return [named[v] if v in named else _decodeValue(kind, v) for v in values]


class ReplyDecoder:
    """
    The attributes of L{REPLY_ATTRIBUTES} a reply carries, found by the
    dictionary's codes (vendor ones in RFC 2865's Vendor-Specific form, as
    pyrad splits them) and kept as octets for L{Reply}: an Access-Accept took
    pyrad 13.6 us to decode and L{profileFromReply} 39 us to read from pyrad's
    packet, on every attach. L{forDictionary} says whether a dictionary allows
    it.
    """

    def __init__(self, dictionary: Dictionary) -> None:
        self.names: dict[Any, str] = {}
        self.types: dict[str, tuple[str, Mapping[bytes, str]]] = {}
        for name in REPLY_ATTRIBUTES:
            attribute = dictionary.attributes.get(name)
            if attribute is not None:
                self.names[dictionary.attrindex.GetForward(name)] = name
                self.types[name] = (attribute.type, dict(attribute.values.backward))

    @classmethod
    def forDictionary(cls, dictionary: Dictionary) -> ReplyDecoder | None:
        """A decoder, or None where pyrad's packet must decode the replies:
        a dictionary with TLVs (pyrad refuses a packet whose TLV it cannot
        split), or whose definition of an attribute lmm reads has a tag, an
        encryption or a parent."""
        attributes = dictionary.attributes
        if any(a.type == "tlv" for a in attributes.values()):
            return None
        for name in REPLY_ATTRIBUTES:
            a = attributes.get(name)
            if a is not None and (a.has_tag or a.encrypt or a.is_sub_attribute):
                return None
        return cls(dictionary)

    def decode(self, code: int, attributes: list[tuple[int, bytes]]) -> Reply:
        """The reply of C{code} whose (type, value) pairs are C{attributes}
        (L{rawAttributes})."""
        names = self.names
        values: dict[str, list[bytes]] = {}
        for kind, value in attributes:
            if kind == VENDOR_SPECIFIC and len(value) >= 6:
                vendor = int.from_bytes(value[:4], "big")
                try:
                    found = rawAttributes(value, 4)
                except ValueError:
                    # Sub-attributes that do not add up: pyrad keeps the whole
                    # as one Vendor-Specific, which lmm does not read.
                    continue
                for subtype, subvalue in found:
                    name = names.get((vendor, subtype))
                    if name is not None:
                        values.setdefault(name, []).append(subvalue)
                continue
            name = names.get(kind)
            if name is not None:
                values.setdefault(name, []).append(value)
        return Reply(code, values, self.types)


#: What the replies lmm reads are: a pyrad packet, or a L{Reply}.
ReplyPacket: TypeAlias = "rpacket.Packet | Reply"


# --- Access-Accept to Profile (pure) ------------------------------------------------


def _first(reply: ReplyPacket, name: str) -> Any:
    try:
        # Most of the names asked for are absent, and pyrad's get finds that
        # out by raising inside (2 us a name; the test first: 0.4).
        values = reply.get(name) if name in reply else None
    except Exception as e:  # pyrad raises what its decoders raise
        raise ValueError(f"{name}: cannot decode ({e})") from None
    return values[0] if values else None


@functools.lru_cache(maxsize=256)
def _network(prefix: str) -> ipaddress.IPv6Network:
    # The profiles of one domain share a few prefixes; IPv6Network is immutable.
    return ipaddress.IPv6Network(prefix)


def _flag(name: str, value: Any) -> bool:
    if value in ("yes", 1):
        return True
    if value in ("no", 0):
        return False
    raise ValueError(f"{name}: expected yes (1) or no (0), got {value!r}")


def profileFromReply(reply: ReplyPacket, requestNai: bytes) -> Profile:
    """
    The MS profile an Access-Accept carries. The NAI is the
    Mobile-Node-Identifier (RFC 6572), else the reply's User-Name, else the
    NAI that was asked for. L{ValueError} names an attribute that cannot be used.
    """
    nai = _first(reply, "Mobile-Node-Identifier")
    if nai is None:
        nai = _first(reply, "User-Name")
    if isinstance(nai, str):
        nai = nai.encode("utf-8")
    if not nai:
        nai = requestNai

    prefix = _first(reply, "PMIP6-Home-HN-Prefix")
    mode = _first(reply, "LMM-Address-Mode")
    if mode is not None and mode not in ADDRESS_MODES:
        raise ValueError(f"LMM-Address-Mode: unknown value {mode!r}")
    mayChoose = _first(reply, "LMM-MS-May-Choose-Address")
    linkLocal = _first(reply, "LMM-Virtual-LMAP-Link-Local")
    if linkLocal is not None and not ipaddress.IPv6Address(linkLocal).is_link_local:
        raise ValueError(f"LMM-Virtual-LMAP-Link-Local: {linkLocal} is not link-local")
    mac = _first(reply, "LMM-Virtual-LMAP-MAC")
    return Profile(
        nai=nai,
        lmapAddress=_first(reply, "PMIP6-Home-LMA-IPv6-Address"),
        localNetworkPrefix=_network(prefix) if prefix is not None else None,
        localAddress=_first(reply, "Framed-IPv6-Address"),
        virtualLmapMac=mac.lower() if mac is not None else None,
        virtualLmapLinkLocal=linkLocal,
        addressMode=mode if mode is not None else "slaac",
        mayChooseAddress=(_flag("LMM-MS-May-Choose-Address", mayChoose)
                          if mayChoose is not None else False),
        dhcpServer=_first(reply, "PMIP6-Home-DHCP6-Server-Address"),
        sessionTimeout=_first(reply, "Session-Timeout"),
    )


def replyMessage(reply: ReplyPacket) -> str | None:
    messages = []
    for value in reply.get("Reply-Message") or []:
        messages.append(value if isinstance(value, str) else value.decode("utf-8", "replace"))
    return " ".join(messages) or None


# --- servers, Identifiers, the socket ----------------------------------------------------


@dataclass(frozen=True)
class RadiusServer:
    """A RADIUS server: an IP address (no DNS on the attach path), port, secret."""

    address: str
    port: int
    secret: bytes
    #: The address's octets, to match a reply's source (L{_sameEndpoint}).
    packed: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        address = ipaddress.ip_address(self.address)
        object.__setattr__(self, "address", str(address))
        object.__setattr__(self, "packed", address.packed)

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.address else socket.AF_INET

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else \
            f"{self.address}:{self.port}"


class ServerPool:
    """
    Which RADIUS servers a request tries, in which order: the configured
    order, less the servers that did not answer a request recently. A server
    whose C{1 + retries} transmissions went unanswered is dead for
    C{deadTime} seconds (0: never skipped): requests go to the next one at
    once instead of each waiting out its timeouts (as FreeRADIUS' home
    servers and Cisco's C{radius-server deadtime} do). When that time is
    over, one request at a time tries it again in its place (the probe):
    answered, it is alive and first again (C{revived}); not, dead for
    another C{deadTime}. When every server is dead, each is tried all the
    same, in order: a dead pool never refuses without asking.
    """

    def __init__(self, servers: list[RadiusServer], deadTime: float) -> None:
        self.servers = list(servers)
        self.deadTime = deadTime
        self._deadUntil: dict[RadiusServer, float] = {}
        self._probing: set[RadiusServer] = set()

    def order(self, now: float) -> list[RadiusServer]:
        """The servers a request begun at C{now} tries, in turn."""
        ready = [server for server in self.servers if self._ready(server, now)]
        return ready or list(self.servers)

    def _ready(self, server: RadiusServer, now: float) -> bool:
        until = self._deadUntil.get(server)
        return until is None or (until <= now and server not in self._probing)

    def asking(self, server: RadiusServer) -> None:
        """A request asks C{server} now: if it is dead, that is its probe."""
        if server in self._deadUntil:
            self._probing.add(server)

    def isDead(self, server: RadiusServer) -> bool:
        return server in self._deadUntil

    def answered(self, server: RadiusServer) -> bool:
        """C{server} answered; whether it had been dead."""
        self._probing.discard(server)
        return self._deadUntil.pop(server, None) is not None

    def silent(self, server: RadiusServer, now: float) -> bool:
        """C{server} answered none of a request's transmissions; whether it
        is now marked dead (it was not)."""
        self._probing.discard(server)
        if self.deadTime <= 0:
            return False
        newly = server not in self._deadUntil
        self._deadUntil[server] = now + self.deadTime
        return newly

    def abandoned(self, server: RadiusServer) -> None:
        """A request stopped before C{server} answered or timed out."""
        self._probing.discard(server)

    def describe(self, now: float) -> list[dict[str, Any]]:
        """Each server and its state, for the control channel."""
        out = []
        for server in self.servers:
            until = self._deadUntil.get(server)
            state = "alive" if until is None else (
                "probing" if server in self._probing else "dead")
            out.append({"server": str(server), "state": state,
                        "deadFor": None if until is None else max(0.0, until - now)})
        return out


class IdPool:
    """
    The 256 Identifiers of one socket: no two requests in flight share one.
    A freed Identifier goes to the back of the line, so a late reply to an old
    request is not taken for the reply to the next.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        ids = list(range(256))
        (rng or random.SystemRandom()).shuffle(ids)
        self._free: deque[int] = deque(ids)
        self._inFlight: set[int] = set()

    def allocate(self) -> int | None:
        """A free Identifier, or None when all 256 are in flight."""
        if not self._free:
            return None
        identifier = self._free.popleft()
        self._inFlight.add(identifier)
        return identifier

    def release(self, identifier: int) -> None:
        self._inFlight.remove(identifier)
        self._free.append(identifier)

    @property
    def inFlight(self) -> frozenset[int]:
        return frozenset(self._inFlight)


@dataclass(eq=False)
class _Exchange:
    """One request to one server, in flight; its Identifier is its key."""

    server: RadiusServer
    identifier: int
    authenticator: bytes
    data: bytes
    waiter: defer.Deferred[ReplyPacket] | None = field(default=None)


class _RadiusSocket(DatagramProtocol):
    """One UDP socket of an address family, its Identifiers and its exchanges."""

    def __init__(self, owner: RadiusAuthenticator, family: int) -> None:
        self.owner = owner
        self.family = family
        self.ids = IdPool()
        self.exchanges: dict[int, _Exchange] = {}
        self._idWaiters: deque[defer.Deferred[int]] = deque()
        self.port: Any = None

    def allocateId(self) -> int | defer.Deferred[int]:
        """An Identifier now, or a Deferred of one when one is released (256
        in flight): released ones go to the waiters first, in turn."""
        identifier = self.ids.allocate()
        if identifier is not None:
            return identifier
        waiter: defer.Deferred[int] = defer.Deferred(lambda d: self._idWaiters.remove(d))
        self._idWaiters.append(waiter)
        self.owner.counters["request.queued"] += 1
        return waiter

    def releaseId(self, identifier: int) -> None:
        if self._idWaiters:
            self._idWaiters.popleft().callback(identifier)  # handed over, still in flight
        else:
            self.ids.release(identifier)

    def failAll(self, reason: Exception) -> None:
        while self._idWaiters:
            self._idWaiters.popleft().errback(reason)
        for exchange in list(self.exchanges.values()):
            if exchange.waiter is not None and not exchange.waiter.called:
                exchange.waiter.errback(reason)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.owner.datagramReceived(self, datagram, (addr[0], addr[1]))


class _NoAnswer(Exception):
    pass


class _Silent(Exception):
    """No answer to one transmission within the timeout."""


# --- the authenticator ----------------------------------------------------------------


@implementer(IAuthenticator)
class RadiusAuthenticator:
    """
    Authenticates Mobile Stations against RADIUS servers, tried in order.

    Each server gets C{1 + retries} transmissions of the same packet (same
    Identifier and Request Authenticator, RFC 5080 section 2.2.1), C{timeout}
    seconds apart; a server that answers none is skipped for the next, and
    for C{deadTime} seconds after by the requests that follow (L{ServerPool}).
    When none answers, L{AAAUnavailable}.

    @ivar counters: what happened, by name: C{request.sent},
        C{request.retransmitted}, C{request.queued}, C{access.accept},
        C{access.reject}, C{access.challenge}, C{access.unavailable},
        C{server.timeout}, C{server.marked-dead}, C{server.revived}, and the
        dropped replies C{reply.malformed},
        C{reply.unmatched}, C{reply.bad-authenticator},
        C{reply.bad-message-authenticator}, C{reply.missing-message-authenticator},
        C{reply.unexpected-code}, C{reply.unexpected-proxy-state}; and the
        Access-Accepts turned into rejections, C{reply.missing-attributes} and
        C{reply.bad-attributes}.
    """

    name = "radius"
    log = Logger()

    def __init__(
        self,
        reactor: IReactor,
        servers: list[RadiusServer],
        dictionary: Dictionary | None = None,
        timeout: float = 1.0,
        retries: int = 2,
        deadTime: float = DEFAULT_DEAD_TIME,
        naiTemplate: str = DEFAULT_NAI_TEMPLATE,
        password: str = "mac",
        nasIdentifier: str = "lmm-mpa",
        nasPortType: int = NAS_PORT_TYPE_ETHERNET,
        serviceType: str = "auto",
        sourceAddress: str | None = None,
        requirePrefixOrAddress: bool = True,
        requireMessageAuthenticator: bool = False,
    ) -> None:
        if not servers:
            raise ValueError("at least one RADIUS server is needed")
        if serviceType != "auto" and serviceType not in SERVICE_TYPES:
            raise ValueError(f"service type: expected auto, framed or call-check, "
                             f"got {serviceType!r}")
        self.reactor = reactor
        self.servers = list(servers)
        self.pool = ServerPool(self.servers, deadTime)
        self.dictionary = dictionary if dictionary is not None else loadDictionary()
        self._replies = ReplyDecoder.forDictionary(self.dictionary)
        self.timeout = timeout
        self.retries = retries
        self.naiTemplate = naiTemplate
        self.password = password
        self.nasIdentifier = nasIdentifier
        self.nasPortType = nasPortType
        self.serviceType = serviceType
        self.requirePrefixOrAddress = requirePrefixOrAddress
        self.requireMessageAuthenticator = requireMessageAuthenticator
        self.counters: Counter[str] = Counter()
        self._stopped = False
        self._sockets: dict[int, _RadiusSocket] = {}
        for family in sorted({server.family for server in self.servers}):
            self._sockets[family] = self._listen(family, sourceAddress)

    def _listen(self, family: int, sourceAddress: str | None) -> _RadiusSocket:
        interface = "::" if family == socket.AF_INET6 else "0.0.0.0"
        if sourceAddress is not None and \
                (":" in sourceAddress) == (family == socket.AF_INET6):
            interface = sourceAddress
        protocol = _RadiusSocket(self, family)
        protocol.port = self.reactor.listenUDP(0, protocol, interface=interface,
                                               maxPacketSize=MAX_PACKET_LENGTH)
        return protocol

    # -- IAuthenticator

    def authenticate(self, request: AccessRequest) -> defer.Deferred[Profile]:
        if self._stopped:
            return defer.fail(AAAUnavailable("the RADIUS authenticator is stopped"))
        return defer.Deferred.fromCoroutine(self._authenticate(request))

    def stop(self) -> defer.Deferred[None]:
        """Fail what is in flight with L{AAAUnavailable}; close the sockets."""
        self._stopped = True
        reason = AAAUnavailable("the RADIUS authenticator was stopped")
        stopping = []
        for radiusSocket in self._sockets.values():
            radiusSocket.failAll(reason)
            stopping.append(defer.maybeDeferred(radiusSocket.port.stopListening))
        return defer.gatherResults(stopping).addCallback(lambda _: None)

    # -- one authentication

    async def _authenticate(self, request: AccessRequest) -> Profile:
        try:
            config.macAddress(request.mac)
            nai = request.nai if request.nai is not None else \
                naiFromMac(self.naiTemplate, request.mac)
            if not nai or len(nai) > MAX_NAI_LENGTH:
                raise ValueError(f"a User-Name has 1..{MAX_NAI_LENGTH} octets, this NAI "
                                 f"{len(nai)}")
        except ValueError as e:
            # Nothing to ask a server: the contract is a Deferred that fails,
            # with AccessRejected or AAAUnavailable.
            raise AccessRejected(f"cannot authenticate {request}: {e}") from None
        silent = []
        pool = self.pool
        for server in pool.order(self.reactor.seconds()):
            pool.asking(server)
            try:
                reply = await self._exchange(server, request, nai)
            except _NoAnswer:
                self.counters["server.timeout"] += 1
                self.log.warn(
                    "RADIUS server {server} did not answer {transmissions} transmission(s) "
                    "for {nai}", server=str(server), transmissions=1 + self.retries,
                    nai=nai.decode("utf-8", "replace"))
                if pool.silent(server, self.reactor.seconds()):
                    self.counters["server.marked-dead"] += 1
                    self.log.warn("RADIUS server {server} marked dead: the next {deadTime} s "
                                  "of requests go to the others first", server=str(server),
                                  deadTime=pool.deadTime)
                silent.append(str(server))
                continue
            except BaseException:
                pool.abandoned(server)
                raise
            if pool.answered(server):
                self.counters["server.revived"] += 1
                self.log.info("RADIUS server {server} answers again: back in its place",
                              server=str(server))
            return self._interpret(reply, server, request, nai)
        self.counters["access.unavailable"] += 1
        reason = f"no RADIUS server answered ({', '.join(silent)})"
        self.log.error("access for {nai} (MAC {mac}) failed: {reason}",
                       nai=nai.decode("utf-8", "replace"), mac=request.mac, reason=reason)
        raise AAAUnavailable(reason)

    def buildRequest(self, server: RadiusServer, identifier: int, request: AccessRequest,
                     nai: bytes) -> tuple[bytes, bytes]:
        """The Access-Request for C{request}, for C{server}: its Request
        Authenticator and its octets."""
        # RFC 2865 3: unpredictable and unique; os.urandom is the kernel's CSPRNG.
        authenticator = os.urandom(16)
        password = request.mac.replace(":", "") if self.password == "mac" else self.password
        serviceType = self.serviceType
        if serviceType == "auto":
            # RFC 3580 section 3.20: Call-Check for MAC authentication.
            serviceType = "framed" if request.nai is not None else "call-check"
        attributes = (
            attribute(USER_NAME, nai)
            + attribute(USER_PASSWORD, hidePassword(password.encode("utf-8"), server.secret,
                                                    authenticator))
            + attribute(CALLING_STATION_ID, callingStationId(request.mac).encode("ascii"))
            + self._nasAttributes
            + (attribute(NAS_PORT_ID, request.accessInterface.encode("utf-8"))
               if request.accessInterface else b"")
            + attribute(SERVICE_TYPE, SERVICE_TYPES[serviceType].to_bytes(4, "big"))
        )
        return authenticator, encodeAccessRequest(identifier, authenticator, server.secret,
                                                  attributes)

    @functools.cached_property
    def _nasAttributes(self) -> bytes:
        # The same in every request: NAS-Identifier, NAS-Port-Type.
        return (attribute(NAS_IDENTIFIER, self.nasIdentifier.encode("utf-8"))
                + attribute(NAS_PORT_TYPE, self.nasPortType.to_bytes(4, "big")))

    async def _exchange(self, server: RadiusServer, request: AccessRequest,
                        nai: bytes) -> ReplyPacket:
        radiusSocket = self._sockets[server.family]
        identifier = radiusSocket.allocateId()
        if not isinstance(identifier, int):
            identifier = await identifier
        try:
            authenticator, data = self.buildRequest(server, identifier, request, nai)
            exchange = _Exchange(server, identifier, authenticator, data)
            radiusSocket.exchanges[identifier] = exchange
            for attempt in range(1 + self.retries):
                # One timer a transmission; cheaper than Deferred.addTimeout's
                # callbacks, on every attach.
                waiter = exchange.waiter = defer.Deferred()
                timer = self.reactor.callLater(self.timeout, waiter.errback, _Silent())
                radiusSocket.port.write(exchange.data, (server.address, server.port))
                self.counters["request.retransmitted" if attempt else "request.sent"] += 1
                try:
                    return await waiter
                except _Silent:
                    continue
                finally:
                    if timer.active():
                        timer.cancel()
            raise _NoAnswer()
        finally:
            radiusSocket.exchanges.pop(identifier, None)
            radiusSocket.releaseId(identifier)

    # -- replies

    def _drop(self, counter: str, message: str, source: tuple[str, int], **fields: Any) -> None:
        self.counters[counter] += 1
        self.log.warn("RADIUS reply from {source} dropped ({counter}): " + message,
                      source=f"{source[0]}:{source[1]}", counter=counter, **fields)

    def datagramReceived(self, radiusSocket: _RadiusSocket, data: bytes,
                         source: tuple[str, int]) -> None:
        if len(data) < HEADER_LENGTH:
            self._drop("reply.malformed", "{length} octets", source, length=len(data))
            return
        code, identifier, length = struct.unpack("!BBH", data[:4])
        if not HEADER_LENGTH <= length <= min(len(data), MAX_PACKET_LENGTH):
            self._drop("reply.malformed", "Length field {length}, {size} octets received",
                       source, length=length, size=len(data))
            return
        data = data[:length]  # octets past Length are padding (RFC 2865 section 3)

        exchange = radiusSocket.exchanges.get(identifier)
        if exchange is None or exchange.waiter is None or exchange.waiter.called \
                or not _sameEndpoint(source, exchange.server):
            # Also the normal fate of the second answer to a retransmission.
            self.counters["reply.unmatched"] += 1
            self.log.debug("RADIUS reply from {source} with Identifier {identifier} matches "
                           "no request in flight; dropped", source=f"{source[0]}:{source[1]}",
                           identifier=identifier)
            return
        secret = exchange.server.secret
        if not hmac.compare_digest(data[4:HEADER_LENGTH], responseAuthenticator(
                data, exchange.authenticator, secret)):
            self._drop("reply.bad-authenticator", "bad Response Authenticator (wrong secret "
                       "or forged), Identifier {identifier}", source, identifier=identifier)
            return
        if code not in (ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE):
            self._drop("reply.unexpected-code", "code {code} to an Access-Request", source,
                       code=code)
            return
        try:
            attributes = rawAttributes(data)
            reply: ReplyPacket = (
                self._replies.decode(code, attributes) if self._replies is not None
                else rpacket.AuthPacket(packet=data, secret=secret, dict=self.dictionary))
        except (ValueError, rpacket.PacketError) as e:
            self._drop("reply.malformed", "{error}", source, error=str(e))
            return
        valid = checkMessageAuthenticator(data, exchange.authenticator, secret)
        if valid is False:
            self._drop("reply.bad-message-authenticator", "bad Message-Authenticator, "
                       "Identifier {identifier}", source, identifier=identifier)
            return
        if valid is None and self.requireMessageAuthenticator:
            self._drop("reply.missing-message-authenticator", "no Message-Authenticator, "
                       "which require_message_authenticator asks for", source)
            return
        if any(kind == PROXY_STATE for kind, _ in attributes):
            # We send none: a Proxy-State in the reply is the mark of BlastRADIUS.
            self._drop("reply.unexpected-proxy-state", "a Proxy-State that was never sent",
                       source)
            return
        exchange.waiter.callback(reply)

    def _interpret(self, reply: ReplyPacket, server: RadiusServer,
                   request: AccessRequest, nai: bytes) -> Profile:
        who = nai.decode("utf-8", "replace")
        if reply.code == ACCESS_REJECT:
            self.counters["access.reject"] += 1
            message = replyMessage(reply)
            reason = f"Access-Reject from {server}" + (f": {message}" if message else "")
            # The agent's visitor.rejected says it at info, the first of a second.
            self.log.debug("access rejected: {nai} (MAC {mac} on {interface}): {reason}",
                           nai=who, mac=request.mac, interface=request.accessInterface,
                           reason=reason)
            raise AccessRejected(reason)
        if reply.code == ACCESS_CHALLENGE:
            self.counters["access.challenge"] += 1
            reason = f"Access-Challenge from {server}: lmm authenticates with PAP only"
            self.log.warn("access rejected: {nai}: {reason}", nai=who, reason=reason)
            raise AccessRejected(reason)
        try:
            profile = profileFromReply(reply, nai)
        except ValueError as e:
            self._unusable("reply.bad-attributes", server, who, str(e))
        problem = checkProfile(profile, self.requirePrefixOrAddress)
        if problem is not None:
            field, message = problem
            counter = "reply.missing-attributes" if field is None else "reply.bad-attributes"
            self._unusable(counter, server, who, message)
        self.counters["access.accept"] += 1
        # Once per MS: debug, as the MPA's other per-visitor events (docs/operations.md).
        self.log.debug("access accepted: {nai} (MAC {mac} on {interface}) by {server}",
                       nai=profile.nai.decode("utf-8", "replace"), mac=request.mac,
                       interface=request.accessInterface, server=str(server))
        return profile

    def _unusable(self, counter: str, server: RadiusServer, nai: str, problem: str) -> NoReturn:
        # The server authenticated the MS but gave no usable profile: its
        # configuration is wrong, and asking another server would not help.
        self.counters[counter] += 1
        reason = f"Access-Accept from {server} unusable: {problem}"
        self.log.error("access rejected: {nai}: {reason} ({counter})", nai=nai, reason=reason,
                       counter=counter)
        raise AccessRejected(reason)


def _sameEndpoint(source: tuple[str, int], server: RadiusServer) -> bool:
    # The kernel's text of the source, compared as octets: any way of writing
    # the server's address in the configuration matches.
    try:
        return source[1] == server.port and socket.inet_pton(
            server.family, source[0]) == server.packed
    except (OSError, TypeError):
        return False


# --- backend factory ----------------------------------------------------------------------


def _ipAddress(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(config.string(value)))
    except ValueError as e:
        raise ValueError(f"expected an IP address, got {value!r}") from e


SERVER_SETTINGS = [
    Setting("address", _ipAddress, help="the server's IP address"),
    Setting("port", config.integer(1, 65535), 1812, "the server's authentication port"),
    Setting("secret", config.string, help="the shared secret"),
]


def _server(value: Any) -> RadiusServer:
    try:
        values = config.parseDocument("-", config.table(value), SERVER_SETTINGS)
    except ConfigError as e:  # name the server's key; listOf adds which server
        raise ValueError(f"{e.key}: {e.message}") from None
    return RadiusServer(values["address"], values["port"], values["secret"].encode("utf-8"))


_servers = config.listOf(_server, minimum=1)


def _attributeText(value: Any) -> str:
    text = config.string(value)
    if not 0 < len(text.encode("utf-8")) <= MAX_ATTRIBUTE_LENGTH:  # RFC 2865 section 5
        raise ValueError(f"a RADIUS attribute has 1..{MAX_ATTRIBUTE_LENGTH} octets")
    return text


def _password(value: Any) -> str:
    password = config.string(value)
    if len(password.encode("utf-8")) > 128:  # RFC 2865 section 5.2
        raise ValueError("a PAP password has at most 128 octets")
    return password


RADIUS_SETTINGS = [
    Setting("servers", _servers,
            help="[{address, port = 1812, secret}, ...], tried in this order"),
    Setting("timeout", config.number(0.01, 60), 1.0, "seconds between transmissions"),
    Setting("retries", config.integer(0, 10), 2, "retransmissions per server"),
    Setting("dead_time", config.number(0, 86400), DEFAULT_DEAD_TIME,
            "seconds a server that answered nothing is skipped (0: never)"),
    Setting("nai_template", naiTemplate, DEFAULT_NAI_TEMPLATE,
            "NAI for an MS the link gives only a MAC for"),
    Setting("password", _password, "mac",
            "PAP password: 'mac' (the MAC, aabbccddeeff) or a fixed string"),
    Setting("nas_identifier", _attributeText, "lmm-mpa", "NAS-Identifier"),
    Setting("nas_port_type", config.integer(0, 2**32 - 1), NAS_PORT_TYPE_ETHERNET,
            "NAS-Port-Type (15 Ethernet, 19 Wireless-802.11)"),
    Setting("service_type", config.oneOf("auto", *SERVICE_TYPES), "auto",
            "Service-Type: framed, call-check, or auto (call-check for MAC-only)"),
    Setting("dictionary", config.string, None, "pyrad dictionary (default: lmm's radius_dicts)"),
    Setting("source_address", _ipAddress, None, "address to send from"),
    Setting("require_prefix_or_address", config.boolean, True,
            "reject an Access-Accept with neither a prefix nor an address"),
    Setting("require_message_authenticator", config.boolean, False,
            "drop replies without a Message-Authenticator"),
]


def radiusBackend(settings: Mapping[str, Any], reactor: IReactor) -> RadiusAuthenticator:
    """Build the C{radius} authenticator; keys in L{RADIUS_SETTINGS}."""
    label = "radius authenticator settings"
    values = backendSettings(label, settings, RADIUS_SETTINGS)
    try:
        dictionary = loadDictionary(values["dictionary"])
    except (OSError, ValueError) as e:
        raise ConfigError(label, "dictionary", f"cannot load: {e}") from None
    return RadiusAuthenticator(
        reactor,
        values["servers"],
        dictionary=dictionary,
        timeout=values["timeout"],
        retries=values["retries"],
        deadTime=values["dead_time"],
        naiTemplate=values["nai_template"],
        password=values["password"],
        nasIdentifier=values["nas_identifier"],
        nasPortType=values["nas_port_type"],
        serviceType=values["service_type"],
        sourceAddress=values["source_address"],
        requirePrefixOrAddress=values["require_prefix_or_address"],
        requireMessageAuthenticator=values["require_message_authenticator"],
    )
