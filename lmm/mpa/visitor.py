"""
The MPA's Visitor List (draft-gundavelli-netlmm-mip6-proxy-00 section 7.1) and
the events attach detectors report.

Pure data: no I/O, no clock. L{lmm.mpa.agent.MobilityProxyAgent} owns the list
and changes entries; everything else reads them (the DHCPv6 relay, an operator
command through L{VisitorList.describe}).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv6Network

from lmm.aaa import AccessRequest, Profile
from lmm.tunnel import TunnelBinding


@dataclass(frozen=True, slots=True)
class AttachEvent:
    """A Mobile Station showed up on access link C{interface}. C{nai} is the
    identity the link's access authentication gave (802.1X), or None when the
    link gives only the MAC."""

    interface: str
    mac: str
    nai: bytes | None = None


@dataclass(frozen=True, slots=True)
class DetachEvent:
    """The Mobile Station with C{mac} left access link C{interface}."""

    interface: str
    mac: str


class VisitorState(Enum):
    """Where a visitor is in its attach life cycle.

    AUTHENTICATING: the AAA server was asked, no answer yet.
    REJECTED: access refused; nothing is sent to or for the MS until the
        entry's hold-down ends or the MS detaches.
    AWAITING_ADDRESS: authenticated, the LMAP knows no address for the MS:
        waiting to learn one (DAD, a packet when allowed, DHCPv6).
    REGISTERING: a Proxy Binding Update is in flight for a new registration.
    REGISTERED: the LMAP accepted; the tunnel is up.
    DEREGISTERING: the MS left; a deregistration is in flight. Such an entry
        is no longer in the L{VisitorList}.
    """

    AUTHENTICATING = "authenticating"
    REJECTED = "rejected"
    AWAITING_ADDRESS = "awaiting-address"
    REGISTERING = "registering"
    REGISTERED = "registered"
    DEREGISTERING = "deregistering"


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    """What a Proxy Binding Update asks for: with C{confirmation}, the Binding
    Cache Confirmation option (the LMAP tells the address); otherwise a Local
    Address option with C{address} and the LNP length in C{prefixLength}
    (C{::} asks the LMAP to assign one)."""

    confirmation: bool
    address: str | None = None
    prefixLength: int = 128

    @property
    def kind(self) -> str:
        return "bcc" if self.confirmation else "loa"


@dataclass(slots=True)
class PendingRegistration:
    """A Proxy Binding Update waiting for its acknowledgement.

    @ivar sequence: the sequence number of the latest transmission; each
        retransmission takes a new one (RFC 6275 11.8), and a Proxy Binding
        Acknowledgement for any of C{sequences} answers it.
    @ivar tries: retransmissions so far.
    @ivar interval: the current back-off interval, seconds.
    @ivar due: when the next retransmission (or the give-up) is due.
    @ivar firstSentAt: when the first transmission went out; the binding's
        lifetime is counted from it, which is never later than the LMAP counts.
    @ivar lifetime: the lifetime asked for; 0 for a deregistration.
    @ivar refresh: whether this re-registers a binding that is up.
    @ivar resynced: whether it was sent again after SEQUENCE_NUMBER_OUT_OF_WINDOW
        (once per registration).
    @ivar misnamed: whether an acknowledgement naming another MS was noted
        (once per registration).
    """

    request: RegistrationRequest
    sequence: int
    sequences: list[int]
    interval: float
    due: float
    firstSentAt: float
    lifetime: int
    tries: int = 0
    misnamed: bool = False
    refresh: bool = False
    resynced: bool = False

    @property
    def kind(self) -> str:
        return "dereg" if self.lifetime == 0 else self.request.kind


@dataclass(slots=True)
class VisitorEntry:
    """
    One attached Mobile Station: the fields of draft section 7.1, then the
    MPA's own bookkeeping. Times are the agent's clock (C{now}).

    @ivar nai: the MS's NAI; C{b""} until the AAA server tells it when the link
        gave none.
    @ivar linkNai: the NAI the access link gave at the attach (802.1X, an attach
        report), if any: shown for a visitor the AAA server has not accepted.
    @ivar localAddress: the MS's Local Address: the profile's until a
        registration is accepted, then the registered one.
    @ivar tunnelSource: the MPA's address (the tunnel's source, no Alternate
        Care-of Address is used).
    @ivar tunnelDestination: the LMAP's address.
    @ivar lifetime: the registration lifetime the LMAP granted, seconds.
    @ivar linkLocalAddress: the MS's link-local address, once a frame showed it.
    @ivar tunnel: the tunnel the data plane was told to carry, if any.
    @ivar pending: the Proxy Binding Update in flight, if any.
    @ivar lastRequest: the last registration asked for (retried after a failure).
    @ivar lastStatus: the status of the last Proxy Binding Acknowledgement.
    @ivar failure: why the last registration failed, while it stays failed.
    @ivar invalidAnswers: acceptances in a row the MPA could not use (the
        agent's rule 8: the retry backs off on them).
    @ivar candidateAddress: an address learned while authenticating, checked
        against the profile when it arrives; C{candidateSource} says how
        (C{"dad"} or C{"packet"}).
    @ivar refreshAt: when the binding is re-registered.
    @ivar retryAt: when a failed registration is tried again.
    @ivar holdUntil: when a rejected visitor's entry is dropped (the next frame
        then authenticates it again).
    @ivar advertised: whether the unsolicited RA of the MS's home link went out
        (it waits for the LMAP's first answer).
    @ivar sessionExpires: when the AAA server's Session-Timeout ends the access.
    @ivar departing: when a visitor its base station reported gone leaves,
        unless a handover's revocation or the MS itself comes first (the
        agent's rule 10); None: not departing.
    @ivar request: the Access-Request its attach sent.
    @ivar confirming: served with a recent answer to the same request, the
        AAA server's answer to this one is awaited (the agent's rule 3).
    @ivar deadline: the earliest of the times above: when the agent next has
        something to do for this visitor.
    @ivar noted: addresses already reported as not allowed (one Note each).
    """

    mac: str
    interface: str
    attachedAt: float
    lastSeen: float
    nai: bytes = b""
    state: VisitorState = VisitorState.AUTHENTICATING
    linkNai: bytes | None = None
    localAddress: str | None = None
    localNetworkPrefix: IPv6Network | None = None
    lmapAddress: str = ""
    virtualLmapMac: str = ""
    virtualLmapLinkLocal: str = ""
    tunnelSource: str = ""
    tunnelDestination: str = ""
    lifetime: int = 0
    dhcpServer: str | None = None
    profile: Profile | None = None
    registeredAt: float | None = None
    expires: float | None = None
    linkLocalAddress: str | None = None
    tunnel: TunnelBinding | None = None
    pending: PendingRegistration | None = None
    lastRequest: RegistrationRequest | None = None
    lastStatus: int | None = None
    failure: str | None = None
    invalidAnswers: int = 0
    candidateAddress: str | None = None
    candidateSource: str | None = None
    refreshAt: float | None = None
    retryAt: float | None = None
    holdUntil: float | None = None
    advertised: bool = False
    sessionExpires: float | None = None
    departing: float | None = None
    request: AccessRequest | None = None
    confirming: bool = False
    deadline: float | None = None
    noted: set[str] = field(default_factory=set, repr=False)

    @property
    def authenticated(self) -> bool:
        return self.state in _AUTHENTICATED

    @property
    def naiText(self) -> str:
        return self.nai.decode("utf-8", "replace")

    def describe(self) -> dict[str, str]:
        """Every field as text, for an operator listing; "-" for none."""
        pending = self.pending
        profile = self.profile
        return {
            "mac": self.mac,
            "interface": self.interface,
            "nai": self.naiText or (self.linkNai or b"").decode("utf-8", "replace") or "-",
            "state": self.state.value,
            "localAddress": _text(self.localAddress),
            "localNetworkPrefix": _text(self.localNetworkPrefix),
            "linkLocalAddress": _text(self.linkLocalAddress),
            "lmapAddress": self.lmapAddress or "-",
            "virtualLmapMac": self.virtualLmapMac or "-",
            "virtualLmapLinkLocal": self.virtualLmapLinkLocal or "-",
            "tunnelSource": self.tunnelSource or "-",
            "tunnelDestination": self.tunnelDestination or "-",
            "lifetime": str(self.lifetime),
            "dhcpServer": _text(self.dhcpServer),
            "addressMode": "-" if profile is None else profile.addressMode,
            "mayChooseAddress": "-" if profile is None else str(profile.mayChooseAddress).lower(),
            "attachedAt": _time(self.attachedAt),
            "lastSeen": _time(self.lastSeen),
            "registeredAt": _time(self.registeredAt),
            "expires": _time(self.expires),
            "refreshAt": _time(self.refreshAt),
            "retryAt": _time(self.retryAt),
            "holdUntil": _time(self.holdUntil),
            "sessionExpires": _time(self.sessionExpires),
            "departing": _time(self.departing),
            "tunnel": "-" if self.tunnel is None else (
                f"{self.tunnel.mobileAddress}/{self.tunnel.prefixLength} "
                f"{self.tunnel.localEndpoint} -> {self.tunnel.remoteEndpoint}"
            ),
            "pendingKind": "-" if pending is None else pending.kind,
            "pendingAddress": "-" if pending is None else _text(pending.request.address),
            "pendingSequence": "-" if pending is None else str(pending.sequence),
            "pendingTries": "-" if pending is None else str(pending.tries),
            "pendingDue": "-" if pending is None else _time(pending.due),
            "lastStatus": _text(self.lastStatus),
            "failure": _text(self.failure),
        }


_AUTHENTICATED = frozenset(
    (VisitorState.AWAITING_ADDRESS, VisitorState.REGISTERING, VisitorState.REGISTERED)
)


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def _time(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


class VisitorList:
    """
    The Visitor List: entries by MAC (the key), by NAI, by Local Address and
    by LMAP, and how many are on each interface. Change an indexed field
    through L{setNai}, L{setAddress}, L{setLmap} and L{setInterface} so that
    the indexes follow.
    """

    def __init__(self) -> None:
        self._byMac: dict[str, VisitorEntry] = {}
        self._byNai: dict[bytes, VisitorEntry] = {}
        self._byAddress: dict[str, VisitorEntry] = {}
        self._byLmap: dict[str, dict[str, VisitorEntry]] = {}
        self._perInterface: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._byMac)

    def __iter__(self) -> Iterator[VisitorEntry]:
        return iter(list(self._byMac.values()))

    def __contains__(self, entry: object) -> bool:
        return isinstance(entry, VisitorEntry) and self._byMac.get(entry.mac) is entry

    def entries(self) -> list[VisitorEntry]:
        return list(self._byMac.values())

    def byMac(self, mac: str) -> VisitorEntry | None:
        return self._byMac.get(mac)

    def byNai(self, nai: bytes) -> VisitorEntry | None:
        return self._byNai.get(nai)

    def byAddress(self, address: str) -> VisitorEntry | None:
        return self._byAddress.get(address)

    def byLmap(self, lmap: str) -> list[VisitorEntry]:
        return list(self._byLmap.get(lmap, {}).values())

    def knowsLmap(self, lmap: str) -> bool:
        """Whether some visitor is registered (or registering) with C{lmap}."""
        return lmap in self._byLmap

    def add(self, entry: VisitorEntry) -> None:
        """Insert C{entry}, replacing any entry with its MAC."""
        old = self._byMac.get(entry.mac)
        if old is not None:
            self.remove(old)
        self._byMac[entry.mac] = entry
        self._perInterface[entry.interface] += 1
        if entry.nai:
            self._byNai[entry.nai] = entry
        if entry.localAddress is not None:
            self._byAddress[entry.localAddress] = entry
        if entry.lmapAddress:
            self._byLmap.setdefault(entry.lmapAddress, {})[entry.mac] = entry

    def remove(self, entry: VisitorEntry) -> bool:
        """Remove C{entry}; False if it was not in the list."""
        if self._byMac.get(entry.mac) is not entry:
            return False
        del self._byMac[entry.mac]
        self._perInterface[entry.interface] -= 1
        if self._byNai.get(entry.nai) is entry:
            del self._byNai[entry.nai]
        if entry.localAddress is not None and self._byAddress.get(entry.localAddress) is entry:
            del self._byAddress[entry.localAddress]
        self._unindexLmap(entry)
        return True

    def setNai(self, entry: VisitorEntry, nai: bytes) -> None:
        if self._byNai.get(entry.nai) is entry:
            del self._byNai[entry.nai]
        entry.nai = nai
        if nai and entry in self:
            self._byNai[nai] = entry

    def setAddress(self, entry: VisitorEntry, address: str | None) -> None:
        old = entry.localAddress
        if old is not None and self._byAddress.get(old) is entry:
            del self._byAddress[old]
        entry.localAddress = address
        if address is not None and entry in self:
            self._byAddress[address] = entry

    def setInterface(self, entry: VisitorEntry, interface: str) -> None:
        if entry in self:
            self._perInterface[entry.interface] -= 1
            self._perInterface[interface] += 1
        entry.interface = interface

    def onInterface(self, interface: str) -> int:
        """How many entries are on C{interface}."""
        return self._perInterface[interface]

    def setLmap(self, entry: VisitorEntry, lmap: str) -> None:
        self._unindexLmap(entry)
        entry.lmapAddress = lmap
        if lmap and entry in self:
            self._byLmap.setdefault(lmap, {})[entry.mac] = entry

    def _unindexLmap(self, entry: VisitorEntry) -> None:
        group = self._byLmap.get(entry.lmapAddress)
        if group is not None and group.get(entry.mac) is entry:
            del group[entry.mac]
            if not group:
                del self._byLmap[entry.lmapAddress]

    def describe(self) -> list[dict[str, str]]:
        """The list for an operator: one dict per visitor, every field as
        text, ordered by interface then MAC."""
        return [
            e.describe() for e in sorted(self._byMac.values(), key=lambda e: (e.interface, e.mac))
        ]
