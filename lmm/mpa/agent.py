"""
The MPA's attach life cycle and Proxy Binding Update signaling, as a pure
state machine.

L{MobilityProxyAgent} is fed attach and detach events, decoded frames from the
access links, AAA results, decoded Mobility Header messages and a clock value
(C{now}, seconds, any epoch), and returns a list of actions that the service
carries out in order: L{Authenticate}, L{SendFrame}, and the shared
L{SendMessage} (to an LMAP), L{AddTunnel}, L{RemoveTunnel} and L{Note}. It does
no I/O and keeps no timers: L{MobilityProxyAgent.nextDeadline} says when
L{MobilityProxyAgent.tick} is due.

Rules (draft-gundavelli-netlmm-mip6-proxy-00 sections 6-8, gaps filled from
RFC 5213, RFC 5846, RFC 6275 and RFC 4861):

 1. Attach. A MAC the Visitor List does not hold, reported by an attach
    detector or seen as the source of any frame on an access link, becomes a
    visitor in AUTHENTICATING and the service is asked to L{Authenticate} it.
    Frames from the MPA's own MACs (the interfaces', the virtual LMAP MACs),
    from group or all-zero MACs, and from links that are not access links
    are dropped. At most C{maxAuthenticating} visitors authenticate at once:
    a flood of forged MACs cannot flood the AAA server. While the AAA server
    answers, the MS's link-local address and the target of a DAD probe for a
    global address (or a packet's global source) are remembered.
 2. Rejection. A rejected visitor (or one the AAA server could not be asked
    about) gets nothing: no RA, no NA, no registration, whatever it sends.
    Its entry is held for C{rejectHoldDown} seconds (C{unavailableHoldDown}
    when no AAA server answered), then dropped, so that the next frame
    authenticates it again; a detach drops it at once. A registered visitor
    whose tunnel the data plane cannot carry (L{tunnelFailed}) is
    deregistered and held down the same way (C{unavailableHoldDown}).
 3. Authentication (draft 6.1). The entry is filled from the profile: the
    LMAP (the profile's, else C{defaultLmap}), the virtual LMAP MAC (the
    profile's, else C{defaultVirtualLmapMac}, else the access interface's own
    MAC) and link-local address (the profile's, else the EUI-64 link-local
    address of the virtual MAC), the Local Network Prefix, the Local Address,
    the DHCPv6 server. Then the registration: a Local Address in the profile
    is registered with a Local Address option; else an address the MS was
    seen probing with DAD while it authenticated (or using, when it may choose
    its address); else a Binding Cache Confirmation asks the LMAP for the
    address of a roaming MS. The home link is advertised when the LMAP
    answers (as RFC 5213 6.9.1.1 has it): an unsolicited Router Advertisement
    once the registration is accepted and its tunnel is up, or once the LMAP
    says it has no binding to confirm (a new MS, which needs the prefix to
    make its address); none when it rejects. It goes to the MS's MAC and to
    its link-local address if a frame showed it, else to ff02::1: a host
    whose link went down and up sends no RS. Until then an RS gets no answer
    and a Neighbor Solicitation for the virtual LMAP link-local address (or
    the LMAP's) no NA: a handed-over MS keeps its first packets in its own
    neighbour queue, and sends them when the RA resolves its router, rather
    than sending them to an MPA that has no tunnel for them yet.
 4. Router Advertisements carry the LNP with L=0 (the LMAP is the default
    router for everything), A=1 only for C{slaac}, M=1 and O=1 for
    C{dhcpv6} (C{manual}: A=M=O=0, so that a manually configured MS makes no
    second address), an MTU option of C{raMtu}, a Source Link-layer Address
    option of the virtual LMAP MAC, router lifetime C{routerLifetime}. They
    go from the virtual LMAP MAC and link-local address to the MS's MAC
    (draft 8.2); an answer to an RS goes to the RS's source, or to ff02::1
    when that is ::.
 5. Neighbor Discovery. A DAD probe for a link-local address is the MS's
    business (the MPA never claims the MS's addresses), except for the
    virtual LMAP link-local address (and the LMAP's address), which the MPA
    defends with an NA from the virtual MAC. A DAD probe for a global address
    inside the LNP is the MS configuring that address: it is registered
    unless it is registered or being registered already (draft figure 8). A
    Neighbor Solicitation for the virtual LMAP link-local address, the LMAP's
    address or any global address but the MS's own is answered with an NA
    from the virtual MAC (R=1, S=1, O=1); one for another link-local address
    belongs to another host on the link and is left alone.
 6. Other packets (draft 6.3). A packet whose source is a global address
    inside the LNP, from a visitor that waits for an address
    (AWAITING_ADDRESS), registers that address when the profile says the MS
    may choose its address; otherwise it is counted and one Note per
    address is made. A registered (or registering) visitor's other
    addresses are never registered from its traffic: the LMAP binds one
    address per NAI, and a host using a temporary address beside its stable
    one would make the binding flap.
 7. DHCPv6 (draft 6.3, figure 9). A DHCPv6 client message (UDP 546 to 547)
    from an authenticated visitor, to All_DHCP_Relay_Agents_and_Servers
    (ff02::1:2), becomes a L{RelayDHCPv6} action for the MPA's relay, with
    the visitor's LNP and DHCPv6 server (the profile's, else
    C{defaultDhcpServer}); none known: counted, not relayed. Nothing from a
    visitor being authenticated or rejected is relayed, and a message to
    another address (a client unicasting to its server) is the data plane's.
    The relay reports what the server's Reply did:
    L{MobilityProxyAgent.dhcpAddressAssigned} registers the address as a
    DAD-learned one is (a visitor registered with another address keeps it
    unless its profile says C{dhcpv6}: one address per NAI at the LMAP);
    L{MobilityProxyAgent.dhcpAddressReleased} (Release, Decline, the server
    withdrawing it) deregisters the registered address (a PBU with lifetime
    0), removes its tunnel, and the visitor waits for an address again,
    still attached and authenticated.
 8. Registration. A Proxy Binding Update carries the Mobile Node Identifier
    (NAI) and a Local Address option (the address, the LNP length) or the
    Binding Cache Confirmation option, A and P set, lifetime C{lifetime}.
    Sequence numbers come from one 16-bit counter per MPA (start at
    C{initialSequence}; the service may pass a random one). One registration
    is in flight per visitor: a newer one replaces it. Retransmissions back
    off exponentially (C{retransmitTimeout}, twice that, four times, ... at
    most 32 s or C{retransmitTimeout}), each with a new sequence number (RFC
    6275 11.8); an acknowledgement of any of them answers the registration.
    After C{maxRetries} retransmissions and one more interval the MPA gives
    up: the visitor shows the failure and the registration is tried again
    after C{retryInterval} (a refresh: half-way to the binding's expiry).
 9. Acknowledgement. A Proxy Binding Acknowledgement is matched by sequence
    number and must come from the visitor's LMAP (and name its NAI, if it
    names one). Accepted: the Local Address is the acknowledgement's Local
    Address option, else the one asked for; the LNP, when the profile had
    none, comes from that option's prefix length (and an RA with it goes
    out); the visitor is REGISTERED, the binding expires C{lifetime granted}
    after the PBU was first sent, and is refreshed at C{refreshFraction} of
    that. The tunnel (Local Address/128, MPA to LMAP, on the MS's access
    link) is added once; a new address replaces it. "Binding Cache Entry
    missing" (the profile's number) to a confirmation: AWAITING_ADDRESS, or,
    when no LNP is known, a Local Address option of ::/0 asks the LMAP to
    assign an address (draft 7.1). SEQUENCE_NUMBER_OUT_OF_WINDOW: the
    counter moves past the number the acknowledgement carries (the LMAP's
    last accepted one) and the registration is sent again at once, once per
    registration; a 135 that matches no sequence number does that for every
    registration in flight to that LMAP (the LMAP carries its own number,
    not ours). Any other rejection: the visitor keeps its binding if it has
    one, else waits in AWAITING_ADDRESS; the registration is retried after
    C{retryInterval}. An acknowledgement matching nothing is counted and
    dropped.
 10. Revocation (draft 6.4, RFC 5846). A Binding Revocation Indication from a
    known LMAP (C{defaultLmap} or the LMAP of a visitor) names the visitor by
    its Mobile Node Identifier, else by its Local Address; with G set, every
    visitor registered with that LMAP. The visitor is removed and its tunnel
    too, before the acknowledgement (status SUCCESS, P set, same sequence
    number, G echoed) goes back; a binding it does not know gets
    BINDING_DOES_NOT_EXIST. Indications and heartbeats from other sources
    are dropped (the MPA is no reflector); heartbeat requests from known
    LMAPs are answered (RFC 5847).
 11. Leaving. A detach, a link going down, or the end of the AAA
    Session-Timeout deregisters a visitor that has (or may have) a binding:
    a PBU with lifetime 0, the NAI and the Local Address; the tunnel is
    removed and the visitor leaves the list at once. The deregistration is
    retransmitted like a registration (the entry lives on, DEREGISTERING,
    outside the list) and is cancelled when the same NAI registers here
    again. A binding whose lifetime runs out unrefreshed is removed with its
    tunnel. L{MobilityProxyAgent.stop} deregisters everyone once and removes
    every tunnel. Whenever a visitor leaves the list, for whatever reason,
    C{departed} (if set) is called with its MAC: the service has the DHCPv6
    relay forget it.
 12. A visitor that shows up on another access link of this MPA moves: its
    tunnel is moved to the new link, an RA goes out there, no PBU is needed.
    A visitor whose link reports another NAI leaves and attaches again. A
    second visitor authenticated with the NAI of a first replaces it (its
    tunnel goes; no deregistration, which would remove the new binding).

Notes come after the frames, messages and tunnel changes of the same event.
The counters are listed in L{MobilityProxyAgent}'s docstring.
"""

from __future__ import annotations

import heapq
import itertools
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from lmm import nd
from lmm.aaa import AAAUnavailable, AccessRequest, Profile
from lmm.actions import AddTunnel, Note, RemoveTunnel, SendMessage, dispatch
from lmm.dhcp6 import ALL_DHCP_RELAY_AGENTS_AND_SERVERS
from lmm.mh import (
    LIFETIME_UNIT,
    MAX_LIFETIME,
    BindingAck,
    BindingCacheConfirmation,
    BindingError,
    BindingRevocationAck,
    BindingRevocationIndication,
    Heartbeat,
    LocalAddress,
    MobileNodeIdentifier,
    MobilityHeaderError,
    MobilityMessage,
    MobilityOption,
    ProxyBindingUpdate,
    RevocationStatus,
    Status,
    WireProfile,
)
from lmm.mpa.visitor import (
    AttachEvent,
    DetachEvent,
    PendingRegistration,
    RegistrationRequest,
    VisitorEntry,
    VisitorList,
    VisitorState,
)
from lmm.tunnel import ROLE_MPA, TunnelBinding

# --- actions ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Ask the L{lmm.interfaces.IAuthenticator} about C{request}; feed the
    result back with L{MobilityProxyAgent.authenticated} or
    L{MobilityProxyAgent.authenticationFailed}."""

    request: AccessRequest


@dataclass(frozen=True, slots=True)
class SendFrame:
    """Send the Ethernet C{frame} (whole, as bytes) on access link C{interface}."""

    interface: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class RelayDHCPv6:
    """Relay the DHCPv6 client message C{payload} (the UDP payload to port
    547) that visitor C{mac} sent from C{clientAddress} on access link
    C{interface}, to C{server}, tagged with its Local Network Prefix
    C{prefix}: what L{lmm.mpa.relay.RelayAgent.fromClient} takes."""

    mac: str
    interface: str
    clientAddress: str
    payload: bytes
    prefix: IPv6Network | None
    server: str


Action = SendMessage | AddTunnel | RemoveTunnel | Note | Authenticate | SendFrame | RelayDHCPv6


# --- helpers ----------------------------------------------------------------

_SEQUENCE_MASK = 0xFFFF
_HALF_SEQUENCE = 0x8000
# RFC 6275 13: MAX_BINDACK_TIMEOUT; the back-off stops doubling there.
_MAX_BINDACK_TIMEOUT = 32.0
# A timer heap this much larger than the live count is rebuilt.
_HEAP_SLACK = 1024
# Addresses per visitor reported as "not allowed" with a Note; more are counted only.
_MAX_NOTED = 16

_AUTHENTICATING = VisitorState.AUTHENTICATING
_REJECTED = VisitorState.REJECTED
_AWAITING = VisitorState.AWAITING_ADDRESS
_REGISTERING = VisitorState.REGISTERING
_REGISTERED = VisitorState.REGISTERED
_DEREGISTERING = VisitorState.DEREGISTERING

_RouterSolicitation = nd.RouterSolicitation
_NeighborSolicitation = nd.NeighborSolicitation


def isNewer(sequence: int, last: int) -> bool:
    """RFC 6275 9.5.1: C{sequence} is newer than C{last} in 16-bit modulo arithmetic."""
    return 0 < ((sequence - last) & _SEQUENCE_MASK) < _HALF_SEQUENCE


def _canonical(address: str) -> str:
    return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address))


def _inPrefix(address: str, prefix: IPv6Network) -> bool:
    """C{address} is inside C{prefix} and is not its Subnet-Router anycast
    address (the all-zero identifier, which no host configures)."""
    try:
        value = IPv6Address(address)
    except ValueError:
        return False
    return value in prefix and value != prefix.network_address


def _isGroupOrZeroMac(mac: str) -> bool:
    try:
        return bool(int(mac[:2], 16) & 1) or mac == "00:00:00:00:00:00" or len(mac) != 17
    except ValueError:
        return True


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return reason if isinstance(reason, str) else str(error) or type(error).__name__


# --- the agent --------------------------------------------------------------


class MobilityProxyAgent:
    """
    The Visitor List, the home-link emulation and the Proxy Binding Update
    signaling of one MPA; see the module docstring for the rules.

    @ivar visitors: the L{VisitorList}.
    @ivar counters: named event counts, for statistics: C{visitor.attached},
        C{attach.frame} (the attach was a frame), C{attach.throttled},
        C{attach.unknown-interface}, C{attach.bad-mac}, C{aaa.accepted},
        C{aaa.rejected}, C{aaa.unavailable}, C{aaa.late} (no visitor waits
        for it), C{visitor.hold-down-ended}, C{visitor.moved},
        C{visitor.replaced}, C{visitor.detached}, C{visitor.revoked},
        C{visitor.session-ended}, C{visitor.tunnel-failed} (the data plane
        could not carry its tunnel), C{tunnel.failed.stale}, C{detach.unknown},
        C{detach.stale} (the MS is on another link now), C{link.down}, C{ra.unsolicited},
        C{ra.solicited}, C{rs.held}, C{ns.held}, C{na.sent}, C{dad.defended}, C{dad.link-local},
        C{dad.outside-prefix}, C{dad.no-prefix}, C{ns.own}, C{ns.other-host},
        C{address.learned.<dad|packet|dhcpv6|candidate>}, C{learn.held} (a
        failed address waits for its retry), C{packet.address-not-allowed},
        C{packet.outside-prefix}, C{packet.other-address}, C{dhcpv6.client},
        C{dhcpv6.relayed}, C{dhcpv6.no-server}, C{dhcpv6.not-to-relays},
        C{dhcpv6.unauthenticated}, C{dhcpv6.no-visitor}, C{dhcpv6.bad-address},
        C{dhcpv6.outside-prefix}, C{dhcpv6.other-address} (a visitor
        registered with another address, not in C{dhcpv6} mode),
        C{dhcpv6.released-other} (a release of an address not registered),
        C{address.released},
        C{frame.own}, C{frame.bad-mac}, C{frame.unknown-interface},
        C{frame.rejected}, C{frame-error.<reason>}, C{pbu.sent},
        C{pbu.retransmitted}, C{pbu.given-up}, C{pbu.deregistration},
        C{registration.retried}, C{binding.refresh-sent}, C{pba.accepted},
        C{pba.rejected.<status>}, C{pba.resync}, C{pba.unmatched},
        C{pba.wrong-source}, C{pba.nai-mismatch}, C{pba.no-address},
        C{pba.deregistration} (a deregistration answered), C{binding.refreshed},
        C{binding.expired}, C{deregistration.cancelled},
        C{deregistration.given-up}, C{bri.received}, C{bri.unknown},
        C{bri.unknown-source}, C{heartbeat.answered}, C{heartbeat.response},
        C{heartbeat.refused}, C{binding-error.received},
        C{ignored.<message type>}, C{malformed.<reason>},
        C{timer-heap.compacted}.
    """

    def __init__(
        self,
        address: str,
        defaultLmap: str,
        accessInterfaces: Sequence[str],
        interfaceMacs: Mapping[str, str],
        lifetime: int,
        retransmitTimeout: float,
        maxRetries: int,
        raMtu: int,
        profile: WireProfile,
        defaultVirtualLmapMac: str | None,
        refreshFraction: float,
        *,
        rejectHoldDown: float = 30.0,
        unavailableHoldDown: float = 5.0,
        retryInterval: float = 30.0,
        routerLifetime: int = 1800,
        maxAuthenticating: int = 256,
        initialSequence: int = 0,
        defaultDhcpServer: str | None = None,
    ) -> None:
        if not LIFETIME_UNIT <= lifetime <= MAX_LIFETIME:
            raise ValueError(f"lifetime {lifetime} is not in {LIFETIME_UNIT}..{MAX_LIFETIME}")
        if retransmitTimeout <= 0:
            raise ValueError(f"retransmitTimeout {retransmitTimeout} is not positive")
        if maxRetries < 0:
            raise ValueError(f"maxRetries {maxRetries} is negative")
        if not 0 < refreshFraction < 1:
            raise ValueError(f"refreshFraction {refreshFraction} is not between 0 and 1")
        if raMtu < 1280:
            raise ValueError(f"raMtu {raMtu} is under the IPv6 minimum, 1280")
        self.address = _canonical(address)
        self.defaultLmap = _canonical(defaultLmap)
        self.accessInterfaces = list(accessInterfaces)
        self._interfaces = frozenset(self.accessInterfaces)
        self.interfaceMacs = {name: mac.lower() for name, mac in interfaceMacs.items()}
        if defaultVirtualLmapMac is None:
            missing = [i for i in self.accessInterfaces if i not in self.interfaceMacs]
            if missing:
                raise ValueError(
                    "no default virtual LMAP MAC and no MAC for access interface(s) "
                    + ", ".join(missing)
                )
        else:
            defaultVirtualLmapMac = defaultVirtualLmapMac.lower()
            nd.linkLocalFromMac(defaultVirtualLmapMac)  # checks the form
        self.defaultVirtualLmapMac = defaultVirtualLmapMac
        self.lifetime = lifetime
        self.retransmitTimeout = retransmitTimeout
        self.maxRetries = maxRetries
        self.raMtu = raMtu
        self.profile = profile
        self.refreshFraction = refreshFraction
        self.rejectHoldDown = rejectHoldDown
        self.unavailableHoldDown = unavailableHoldDown
        self.retryInterval = retryInterval
        self.routerLifetime = routerLifetime
        self.maxAuthenticating = maxAuthenticating
        self.defaultDhcpServer = (
            None if defaultDhcpServer is None else _canonical(defaultDhcpServer)
        )
        # Called with a visitor's MAC when it leaves the Visitor List.
        self.departed: Callable[[str], None] | None = None
        self._maxInterval = max(_MAX_BINDACK_TIMEOUT, retransmitTimeout)

        self.visitors = VisitorList()
        self.counters: Counter[str] = Counter()
        # Frames from these are the MPA's own (or its echo), never an attach.
        self._ownMacs: set[str] = set(self.interfaceMacs.values())
        if defaultVirtualLmapMac is not None:
            self._ownMacs.add(defaultVirtualLmapMac)
        self._authenticating = 0
        self._sequence = initialSequence & _SEQUENCE_MASK
        # Sequence number -> the visitor (or leaving entry) whose PBU used it.
        self._outstanding: dict[int, VisitorEntry] = {}
        # NAI -> the DEREGISTERING entry whose deregistration is in flight.
        self._leaving: dict[bytes, VisitorEntry] = {}
        self._timers: list[tuple[float, int, VisitorEntry]] = []
        self._timerSerial = itertools.count()

        self._handlers: dict[type, Callable[[Any, str, float], list[Action]]] = {
            BindingAck: self._bindingAck,
            BindingRevocationIndication: self._revocation,
            Heartbeat: self._heartbeat,
            BindingError: self._bindingError,
        }

    # --- attach and detach --------------------------------------------------

    def attach(self, event: AttachEvent, now: float) -> list[Action]:
        """An attach detector saw C{event.mac} on C{event.interface}."""
        if event.interface not in self._interfaces:
            self.counters["attach.unknown-interface"] += 1
            return []
        mac = event.mac.lower()
        if _isGroupOrZeroMac(mac) or mac in self._ownMacs:
            self.counters["attach.bad-mac"] += 1
            return []
        actions: list[Action] = []
        visitor = self._current(mac, now)
        if (
            visitor is not None
            and event.nai is not None
            and visitor.nai
            and event.nai != visitor.nai
        ):
            # Another identity behind the same MAC: the old one leaves.
            self._leave(visitor, now, actions, "visitor.detached")
            visitor = None
        if visitor is None:
            self._newVisitor(event.interface, mac, event.nai, now, actions)
            return actions
        visitor.lastSeen = now
        if visitor.interface != event.interface:
            self._move(visitor, event.interface, now, actions)
        return actions

    def detach(self, event: DetachEvent, now: float) -> list[Action]:
        """An attach detector saw C{event.mac} leave C{event.interface}."""
        visitor = self.visitors.byMac(event.mac.lower())
        if visitor is None:
            self.counters["detach.unknown"] += 1
            return []
        if visitor.interface != event.interface:
            # It moved to another of our links; the old link's report is stale.
            self.counters["detach.stale"] += 1
            return []
        actions: list[Action] = []
        self._leave(visitor, now, actions, "visitor.detached")
        return actions

    def linkDown(self, interface: str, now: float) -> list[Action]:
        """Access link C{interface} went down: every visitor on it leaves."""
        actions: list[Action] = []
        leaving = [v for v in self.visitors if v.interface == interface]
        for visitor in leaving:
            self._leave(visitor, now, actions, "visitor.detached")
        self.counters["link.down"] += 1
        actions.append(Note("link.down", {"interface": interface, "visitors": len(leaving)}))
        return actions

    # --- frames -------------------------------------------------------------

    def frameReceived(self, interface: str, frame: nd.Frame, now: float) -> list[Action]:
        """A decoded frame from access link C{interface}."""
        counters = self.counters
        if interface not in self._interfaces:
            counters["frame.unknown-interface"] += 1
            return []
        mac = frame.ethernet.source
        if mac in self._ownMacs:
            counters["frame.own"] += 1
            return []
        visitor = self._current(mac, now)
        if visitor is None:
            if _isGroupOrZeroMac(mac):
                counters["frame.bad-mac"] += 1
                return []
            actions: list[Action] = []
            counters["attach.frame"] += 1
            visitor = self._newVisitor(interface, mac, None, now, actions)
            if visitor is not None:
                self._observe(visitor, frame)
            return actions
        visitor.lastSeen = now
        state = visitor.state
        if state is _REJECTED:
            counters["frame.rejected"] += 1
            return []
        actions = []
        if visitor.interface != interface:
            self._move(visitor, interface, now, actions)
        if state is _AUTHENTICATING:
            if frame.isDHCPv6:
                # Not yet: the client retransmits (RFC 8415 15).
                counters["dhcpv6.unauthenticated"] += 1
            self._observe(visitor, frame)
            return actions
        ip = frame.ip
        if ip is None:
            return actions
        source = ip.source
        message = frame.message
        kind = type(message)
        if kind is _RouterSolicitation:
            self._solicited(visitor, source, actions)
        elif kind is _NeighborSolicitation:
            assert isinstance(message, nd.NeighborSolicitation)
            if source == nd.UNSPECIFIED:
                self._duplicateAddressDetection(visitor, message.target, now, actions)
            else:
                self._neighborSolicitation(visitor, source, message.target, actions)
        elif frame.isDHCPv6:
            # The relay carries it; the address comes back through
            # dhcpAddressAssigned.
            counters["dhcpv6.client"] += 1
            self._relayDHCPv6(visitor, interface, frame, actions)
        if source == visitor.localAddress or source == nd.UNSPECIFIED:
            return actions
        if nd.isLinkLocal(source):
            visitor.linkLocalAddress = source
        elif not nd.isMulticast(source):
            self._packetFrom(visitor, source, now, actions)
        return actions

    def frameError(self, interface: str, error: nd.NDError, now: float) -> list[Action]:
        """A frame from C{interface} that did not decode: counted."""
        self.counters["frame-error." + error.reason] += 1
        return []

    def _relayDHCPv6(
        self, visitor: VisitorEntry, interface: str, frame: nd.Frame, actions: list[Action]
    ) -> None:
        ip = frame.ip
        payload = frame.udpPayload
        assert ip is not None and payload is not None
        counters = self.counters
        if ip.destination != ALL_DHCP_RELAY_AGENTS_AND_SERVERS:
            # A client unicasting to its server: the data plane's traffic.
            counters["dhcpv6.not-to-relays"] += 1
            return
        server = visitor.dhcpServer or self.defaultDhcpServer
        if server is None:
            counters["dhcpv6.no-server"] += 1
            return
        counters["dhcpv6.relayed"] += 1
        actions.append(
            RelayDHCPv6(visitor.mac, interface, ip.source, payload, visitor.localNetworkPrefix,
                        server)
        )

    def _dhcpVisitor(self, mac: str, address: str) -> tuple[VisitorEntry, str] | None:
        """The authenticated visitor with C{mac} and C{address} made canonical,
        for the relay's reports; None (counted) when either is not usable."""
        visitor = self.visitors.byMac(mac.lower())
        if visitor is None or not visitor.authenticated:
            self.counters["dhcpv6.no-visitor"] += 1
            return None
        try:
            return visitor, _canonical(address)
        except (OSError, ValueError):
            self.counters["dhcpv6.bad-address"] += 1
            return None

    def dhcpAddressAssigned(self, mac: str, address: str, now: float) -> list[Action]:
        """The DHCPv6 relay saw a Reply assign C{address} to the visitor with
        C{mac}: register it, as a DAD-learned address is."""
        found = self._dhcpVisitor(mac, address)
        if found is None:
            return []
        visitor, address = found
        current = self._boundAddress(visitor) or visitor.localAddress
        profile = visitor.profile
        if (
            current is not None
            and current != address
            and (profile is None or profile.addressMode != "dhcpv6")
        ):
            # One address per NAI at the LMAP: a stateful address beside the
            # one the profile's method gave does not move the binding.
            self.counters["dhcpv6.other-address"] += 1
            return []
        prefix = visitor.localNetworkPrefix
        actions: list[Action] = []
        if prefix is not None and not _inPrefix(address, prefix):
            self.counters["dhcpv6.outside-prefix"] += 1
            actions.append(
                Note(
                    "address.outside-prefix",
                    {"mac": visitor.mac, "nai": visitor.naiText, "address": address,
                     "prefix": str(prefix), "source": "dhcpv6"},
                )
            )
            return actions
        self._learn(visitor, address, "dhcpv6", now, actions)
        return actions

    def dhcpAddressReleased(self, mac: str, address: str, now: float) -> list[Action]:
        """The DHCPv6 relay saw the visitor with C{mac} give up C{address} (its
        Release or Decline, or the server withdrawing it). If that is the
        address registered (or being registered) for it, the binding is
        deregistered and its tunnel removed; the visitor stays, authenticated,
        waiting for an address."""
        found = self._dhcpVisitor(mac, address)
        if found is None:
            return []
        visitor, address = found
        if address != self._boundAddress(visitor) and address != visitor.localAddress:
            self.counters["dhcpv6.released-other"] += 1
            return []
        actions: list[Action] = []
        self._releaseAddress(visitor, address, now, actions)
        return actions

    def _releaseAddress(
        self, visitor: VisitorEntry, address: str, now: float, actions: list[Action]
    ) -> None:
        """Deregister C{address} and keep the visitor, AWAITING_ADDRESS. The
        deregistration runs in an entry of its own, as a departed visitor's
        does, so that a new registration of the visitor cancels it."""
        deregister = self._mayHaveBinding(visitor)
        self._dropPending(visitor)
        if deregister:
            self._cancelDeregistration(visitor.nai)
            entry = replace(visitor, state=_DEREGISTERING, pending=None, tunnel=None,
                            deadline=None, noted=set())
            request = RegistrationRequest(False, address, self._prefixLength(visitor))
            sequence = self._nextSequence()
            timeout = self.retransmitTimeout
            entry.pending = PendingRegistration(
                request, sequence, [sequence], timeout, now + timeout, now, 0
            )
            self._outstanding[sequence] = entry
            self._leaving[entry.nai] = entry
            self.counters["pbu.deregistration"] += 1
            actions.append(self._pbu(entry, request, sequence, 0))
            self._reschedule(entry)
        if visitor.tunnel is not None:
            actions.append(RemoveTunnel(visitor.tunnel))
            visitor.tunnel = None
        self.visitors.setAddress(visitor, None)
        visitor.state = _AWAITING
        visitor.registeredAt = visitor.expires = visitor.refreshAt = visitor.retryAt = None
        visitor.lifetime = 0
        visitor.lastRequest = None
        visitor.failure = None
        self._reschedule(visitor)
        self.counters["address.released"] += 1
        actions.append(
            Note("address.released", {"mac": visitor.mac, "nai": visitor.naiText,
                                      "address": address, "source": "dhcpv6",
                                      "deregistered": deregister})
        )

    # --- AAA ----------------------------------------------------------------

    def authenticated(self, mac: str, profile: Profile, now: float) -> list[Action]:
        """The AAA server accepted the visitor with C{mac} and sent C{profile}."""
        visitor = self.visitors.byMac(mac.lower())
        if visitor is None or visitor.state is not _AUTHENTICATING:
            self.counters["aaa.late"] += 1
            return []
        actions: list[Action] = []
        notes: list[Note] = []
        self.counters["aaa.accepted"] += 1
        self._setState(visitor, _AWAITING)
        visitors = self.visitors
        nai = profile.nai
        other = visitors.byNai(nai)
        if other is not None and other is not visitor:
            # The LMAP binds one NAI once: the newest attachment wins.
            self._removeVisitor(other)
            if other.tunnel is not None:
                actions.append(RemoveTunnel(other.tunnel))
                other.tunnel = None
            self.counters["visitor.replaced"] += 1
            notes.append(
                Note("visitor.replaced", {"nai": other.naiText, "mac": other.mac,
                                          "interface": other.interface, "by": visitor.mac})
            )
        visitors.setNai(visitor, nai)
        lmap = _canonical(profile.lmapAddress) if profile.lmapAddress else self.defaultLmap
        visitors.setLmap(visitor, lmap)
        virtualMac = (profile.virtualLmapMac or self._defaultVirtualMac(visitor.interface)).lower()
        self._ownMacs.add(virtualMac)
        visitor.virtualLmapMac = virtualMac
        visitor.virtualLmapLinkLocal = (
            _canonical(profile.virtualLmapLinkLocal)
            if profile.virtualLmapLinkLocal
            else nd.linkLocalFromMac(virtualMac)
        )
        visitor.localNetworkPrefix = profile.localNetworkPrefix
        visitor.dhcpServer = profile.dhcpServer
        visitor.tunnelSource = self.address
        visitor.tunnelDestination = lmap
        visitor.profile = profile
        visitor.failure = None
        visitor.holdUntil = None
        if profile.sessionTimeout:
            visitor.sessionExpires = now + profile.sessionTimeout
        if profile.localAddress:
            visitors.setAddress(visitor, _canonical(profile.localAddress))

        prefix = visitor.localNetworkPrefix
        prefixLength = 128 if prefix is None else prefix.prefixlen
        candidate = self._usableCandidate(visitor)
        if visitor.localAddress is not None:
            request = RegistrationRequest(False, visitor.localAddress, prefixLength)
        elif candidate is not None:
            self.counters["address.learned.candidate"] += 1
            request = RegistrationRequest(False, candidate, prefixLength)
        else:
            request = RegistrationRequest(True)
        visitor.candidateAddress = visitor.candidateSource = None
        self._cancelDeregistration(nai)
        self._register(visitor, request, now, actions)
        actions.extend(notes)
        actions.append(
            Note(
                "visitor.authenticated",
                {"nai": visitor.naiText, "mac": visitor.mac, "interface": visitor.interface,
                 "lmap": lmap, "prefix": None if prefix is None else str(prefix),
                 "address": visitor.localAddress, "addressMode": profile.addressMode,
                 "registration": request.kind},
            )
        )
        return actions

    def authenticationFailed(self, mac: str, error: BaseException, now: float) -> list[Action]:
        """The AAA server refused the visitor with C{mac} (L{lmm.aaa.AccessRejected})
        or none answered (L{lmm.aaa.AAAUnavailable}, or any other error)."""
        visitor = self.visitors.byMac(mac.lower())
        if visitor is None or visitor.state is not _AUTHENTICATING:
            self.counters["aaa.late"] += 1
            return []
        unavailable = not hasattr(error, "reason") or isinstance(error, AAAUnavailable)
        self._setState(visitor, _REJECTED)
        hold = self.unavailableHoldDown if unavailable else self.rejectHoldDown
        visitor.holdUntil = now + hold
        visitor.failure = _reason(error)
        visitor.candidateAddress = visitor.candidateSource = None
        self.counters["aaa.unavailable" if unavailable else "aaa.rejected"] += 1
        self._reschedule(visitor)
        return [
            Note(
                "visitor.rejected",
                {"mac": visitor.mac, "interface": visitor.interface, "reason": visitor.failure,
                 "unavailable": unavailable, "holdDown": hold},
            )
        ]

    # --- Mobility Header ----------------------------------------------------

    def messageReceived(self, message: MobilityMessage, source: str, now: float) -> list[Action]:
        """A decoded Mobility Header message from C{source} (canonical text)."""
        return dispatch(self._handlers, self.counters, message, source, now)

    def tunnelFailed(self, binding: TunnelBinding, error: BaseException,
                     now: float) -> list[Action]:
        """
        The data plane could not carry C{binding} (the service dropped what
        followed its L{AddTunnel}: the RA). The LMAP's binding points here for
        nothing: the visitor leaves as if detached (a deregistration, so that
        the LMAP's state is true), and its MAC is held down like an MS no AAA
        server could be asked about (C{unavailableHoldDown}), then its next
        frame starts over: a backend that recovered then carries it.
        """
        visitor = self.visitors.byAddress(_canonical(binding.mobileAddress))
        if visitor is None or visitor.tunnel != binding:
            # Gone, moved or re-registered since: nothing of it to undo.
            self.counters["tunnel.failed.stale"] += 1
            return []
        actions: list[Action] = []
        reason = f"the data plane could not carry its tunnel: {error}"
        self._leave(visitor, now, actions, "visitor.tunnel-failed", reason)
        held = VisitorEntry(visitor.mac, visitor.interface, visitor.attachedAt, now,
                            state=_REJECTED, holdUntil=now + self.unavailableHoldDown,
                            failure=reason)
        self.visitors.add(held)
        self._reschedule(held)
        return actions

    def malformed(self, error: MobilityHeaderError, source: str, now: float) -> list[Action]:
        """A Mobility Header packet from C{source} that did not decode: counted.
        The MPA answers nothing (no Binding Error): it is no reflector."""
        self.counters["malformed." + error.reason] += 1
        return []

    # --- timers -------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Do everything due by C{now}: retransmissions and give-ups, refreshes,
        retries, binding expiry, hold-down and session ends."""
        actions: list[Action] = []
        heap = self._timers
        while heap and heap[0][0] <= now:
            due, _, visitor = heapq.heappop(heap)
            if visitor.deadline != due:
                continue
            visitor.deadline = None
            self._runTimers(visitor, now, actions)
            self._reschedule(visitor)
        return actions

    def nextDeadline(self) -> float | None:
        """When L{tick} next has something to do, or None."""
        heap = self._timers
        while heap and heap[0][2].deadline != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def stop(self, now: float) -> list[Action]:
        """The daemon stops: deregister every visitor with a binding (once, no
        retransmission) and remove every tunnel."""
        actions: list[Action] = []
        visitors = self.visitors.entries()
        deregistered = 0
        for visitor in visitors:
            if self._mayHaveBinding(visitor):
                sequence = self._nextSequence()
                request = RegistrationRequest(
                    False, self._boundAddress(visitor), self._prefixLength(visitor)
                )
                actions.append(self._pbu(visitor, request, sequence, 0))
                self.counters["pbu.deregistration"] += 1
                deregistered += 1
            if visitor.tunnel is not None:
                actions.append(RemoveTunnel(visitor.tunnel))
                visitor.tunnel = None
            self._removeVisitor(visitor)
        for entry in self._leaving.values():
            entry.deadline = None
        self._leaving.clear()
        self._outstanding.clear()
        self._timers.clear()
        actions.append(
            Note("mpa.stopped", {"visitors": len(visitors), "deregistered": deregistered})
        )
        return actions

    def describe(self) -> list[dict[str, str]]:
        """The Visitor List for an operator, then the entries still deregistering."""
        return self.visitors.describe() + [e.describe() for e in self._leaving.values()]

    # --- attach internals ---------------------------------------------------

    def _current(self, mac: str, now: float) -> VisitorEntry | None:
        """The visitor with C{mac}; a rejected one whose hold-down is over is gone."""
        visitor = self.visitors.byMac(mac)
        if (
            visitor is not None
            and visitor.state is _REJECTED
            and visitor.holdUntil is not None
            and visitor.holdUntil <= now
        ):
            self._removeVisitor(visitor)
            self.counters["visitor.hold-down-ended"] += 1
            return None
        return visitor

    def _newVisitor(
        self, interface: str, mac: str, nai: bytes | None, now: float, actions: list[Action]
    ) -> VisitorEntry | None:
        if self._authenticating >= self.maxAuthenticating:
            self.counters["attach.throttled"] += 1
            return None
        visitor = VisitorEntry(mac, interface, now, now)
        self.visitors.add(visitor)
        self._authenticating += 1
        self.counters["visitor.attached"] += 1
        actions.append(Authenticate(AccessRequest(mac, interface, nai)))
        actions.append(
            Note(
                "visitor.attached",
                {"mac": mac, "interface": interface,
                 "nai": None if nai is None else nai.decode("utf-8", "replace")},
            )
        )
        return visitor

    def _observe(self, visitor: VisitorEntry, frame: nd.Frame) -> None:
        """Remember what a frame from a visitor being authenticated tells:
        its link-local address, an address it probes or uses."""
        ip = frame.ip
        if ip is None:
            return
        source = ip.source
        if source == nd.UNSPECIFIED:
            target = frame.dadTarget
            if target is not None and not nd.isLinkLocal(target):
                visitor.candidateAddress, visitor.candidateSource = target, "dad"
        elif nd.isLinkLocal(source):
            visitor.linkLocalAddress = source
        elif not nd.isMulticast(source) and visitor.candidateSource != "dad":
            visitor.candidateAddress, visitor.candidateSource = source, "packet"

    def _usableCandidate(self, visitor: VisitorEntry) -> str | None:
        """The address remembered while authenticating, if the profile allows it."""
        candidate = visitor.candidateAddress
        prefix = visitor.localNetworkPrefix
        profile = visitor.profile
        if candidate is None or prefix is None or profile is None:
            return None
        if visitor.candidateSource == "packet" and not profile.mayChooseAddress:
            return None
        return candidate if _inPrefix(candidate, prefix) else None

    def _defaultVirtualMac(self, interface: str) -> str:
        if self.defaultVirtualLmapMac is not None:
            return self.defaultVirtualLmapMac
        return self.interfaceMacs[interface]

    def _move(
        self, visitor: VisitorEntry, interface: str, now: float, actions: list[Action]
    ) -> None:
        """The visitor shows up on another access link of this MPA: the same
        care-of address, so the LMAP needs no PBU; the tunnel follows the MS."""
        previous = visitor.interface
        visitor.interface = interface
        self.counters["visitor.moved"] += 1
        if visitor.tunnel is not None:
            tunnel = replace(visitor.tunnel, accessInterface=interface)
            actions.append(RemoveTunnel(visitor.tunnel))
            actions.append(AddTunnel(tunnel))
            visitor.tunnel = tunnel
        if visitor.authenticated:
            actions.append(
                self._advertisement(visitor, visitor.linkLocalAddress or nd.ALL_NODES)
            )
            self.counters["ra.unsolicited"] += 1
        actions.append(
            Note("visitor.moved", {"mac": visitor.mac, "nai": visitor.naiText,
                                   "from": previous, "to": interface})
        )

    def _setState(self, visitor: VisitorEntry, state: VisitorState) -> None:
        if visitor.state is _AUTHENTICATING and state is not _AUTHENTICATING:
            self._authenticating -= 1
        visitor.state = state

    def _removeVisitor(self, visitor: VisitorEntry) -> None:
        """Take C{visitor} out of the list and forget its PBU in flight."""
        removed = self.visitors.remove(visitor)
        if removed and visitor.state is _AUTHENTICATING:
            self._authenticating -= 1
        self._dropPending(visitor)
        visitor.deadline = None
        if removed and self.departed is not None:
            self.departed(visitor.mac)

    # --- home-link emulation ------------------------------------------------

    def _advertisement(self, visitor: VisitorEntry, destination: str) -> SendFrame:
        """A unicast Router Advertisement of the visitor's home link (draft 6.2)."""
        profile = visitor.profile
        mode = "slaac" if profile is None else profile.addressMode
        prefixes: tuple[nd.PrefixInformation, ...] = ()
        prefix = visitor.localNetworkPrefix
        if prefix is not None:
            prefixes = (
                nd.PrefixInformation(
                    str(prefix.network_address),
                    prefix.prefixlen,
                    onLink=False,
                    autonomous=mode == "slaac",
                ),
            )
        stateful = mode == "dhcpv6"
        frame = nd.buildRouterAdvertisement(
            visitor.virtualLmapMac,
            visitor.mac,
            visitor.virtualLmapLinkLocal,
            destination,
            prefixes,
            mtu=self.raMtu,
            managed=stateful,
            other=stateful,
            routerLifetime=self.routerLifetime,
        )
        return SendFrame(visitor.interface, frame)

    def _advertiseHomeLink(self, visitor: VisitorEntry, actions: list[Action]) -> None:
        """The unsolicited RA (rule 3): the MS may send no RS (a link flap)."""
        visitor.advertised = True
        actions.append(self._advertisement(visitor, visitor.linkLocalAddress or nd.ALL_NODES))
        self.counters["ra.unsolicited"] += 1

    def _solicited(self, visitor: VisitorEntry, source: str, actions: list[Action]) -> None:
        if not visitor.advertised:
            # The RA that follows the LMAP's answer answers this RS too.
            self.counters["rs.held"] += 1
            return
        # Draft 8.2: to the RS's source, or all-nodes from ::; always to the MS's MAC.
        destination = nd.ALL_NODES if source == nd.UNSPECIFIED else source
        actions.append(self._advertisement(visitor, destination))
        self.counters["ra.solicited"] += 1

    def _duplicateAddressDetection(
        self, visitor: VisitorEntry, target: str, now: float, actions: list[Action]
    ) -> None:
        counters = self.counters
        if target == visitor.virtualLmapLinkLocal or target == visitor.lmapAddress:
            # The MS's default router owns it: defend it (RFC 4862 5.4.3).
            actions.append(
                SendFrame(
                    visitor.interface,
                    nd.buildNeighborAdvertisement(
                        visitor.virtualLmapMac, visitor.mac, visitor.virtualLmapLinkLocal,
                        nd.ALL_NODES, target, router=True, solicited=False, override=True,
                    ),
                )
            )
            counters["dad.defended"] += 1
            return
        if nd.isLinkLocal(target):
            # The MS's own link-local DAD: normal DAD, nothing to say.
            counters["dad.link-local"] += 1
            return
        prefix = visitor.localNetworkPrefix
        if prefix is None:
            counters["dad.no-prefix"] += 1
            return
        if not _inPrefix(target, prefix):
            counters["dad.outside-prefix"] += 1
            return
        self._learn(visitor, target, "dad", now, actions)

    def _neighborSolicitation(
        self, visitor: VisitorEntry, source: str, target: str, actions: list[Action]
    ) -> None:
        if nd.isMulticast(source):
            return
        pending = visitor.pending
        if (
            target == visitor.localAddress
            or target == visitor.linkLocalAddress
            or (pending is not None and target == pending.request.address)
        ):
            self.counters["ns.own"] += 1
            return
        if (
            target != visitor.virtualLmapLinkLocal
            and target != visitor.lmapAddress
            and nd.isLinkLocal(target)
        ):
            # Another host's link-local address: that host answers.
            self.counters["ns.other-host"] += 1
            return
        if not visitor.advertised:
            # The MS's packets wait in its neighbour queue for the RA (rule 3).
            self.counters["ns.held"] += 1
            return
        actions.append(
            SendFrame(
                visitor.interface,
                nd.buildNeighborAdvertisement(
                    visitor.virtualLmapMac, visitor.mac, visitor.virtualLmapLinkLocal, source,
                    target, router=True, solicited=True, override=True,
                ),
            )
        )
        self.counters["na.sent"] += 1

    def _packetFrom(
        self, visitor: VisitorEntry, source: str, now: float, actions: list[Action]
    ) -> None:
        """A packet from a global address that is not the registered one."""
        prefix = visitor.localNetworkPrefix
        if prefix is None or not _inPrefix(source, prefix):
            self.counters["packet.outside-prefix"] += 1
            return
        pending = visitor.pending
        if pending is not None and pending.request.address == source:
            return
        if visitor.state is not _AWAITING:
            # One address per NAI at the LMAP: traffic never moves the binding.
            self.counters["packet.other-address"] += 1
            return
        profile = visitor.profile
        if profile is not None and profile.mayChooseAddress:
            self._learn(visitor, source, "packet", now, actions)
            return
        self.counters["packet.address-not-allowed"] += 1
        if source not in visitor.noted and len(visitor.noted) < _MAX_NOTED:
            visitor.noted.add(source)
            actions.append(
                Note(
                    "address.not-allowed",
                    {"mac": visitor.mac, "nai": visitor.naiText, "address": source,
                     "reason": "the profile does not let the MS choose its address"},
                )
            )

    def _learn(
        self, visitor: VisitorEntry, address: str, how: str, now: float, actions: list[Action]
    ) -> None:
        """The MS uses (or is about to use) C{address}: register it unless it
        is registered or being registered (draft 6.3, figures 8 and 9)."""
        if visitor.state is _REGISTERED and visitor.localAddress == address:
            return
        pending = visitor.pending
        if pending is not None and pending.request.address == address:
            return
        last = visitor.lastRequest
        if visitor.retryAt is not None and last is not None and last.address == address:
            # It failed a moment ago; its retry timer will try it again.
            self.counters["learn.held"] += 1
            return
        self.counters["address.learned." + how] += 1
        request = RegistrationRequest(False, address, self._prefixLength(visitor))
        self._register(visitor, request, now, actions)
        actions.append(
            Note("address.learned", {"mac": visitor.mac, "nai": visitor.naiText,
                                     "address": address, "source": how})
        )

    # --- registration -------------------------------------------------------

    def _nextSequence(self) -> int:
        sequence = (self._sequence + 1) & _SEQUENCE_MASK
        outstanding = self._outstanding
        # After a wrap, skip numbers still waiting for their acknowledgement.
        for _ in range(len(outstanding)):
            if sequence not in outstanding:
                break
            sequence = (sequence + 1) & _SEQUENCE_MASK
        self._sequence = sequence
        return sequence

    def _pbu(
        self, visitor: VisitorEntry, request: RegistrationRequest, sequence: int, lifetime: int
    ) -> SendMessage:
        options: list[MobilityOption] = [MobileNodeIdentifier(visitor.nai)]
        if request.confirmation:
            options.append(BindingCacheConfirmation())
        elif request.address is not None:
            options.append(LocalAddress(request.address, request.prefixLength))
        return SendMessage(ProxyBindingUpdate(sequence, lifetime, options), visitor.lmapAddress)

    def _register(
        self,
        visitor: VisitorEntry,
        request: RegistrationRequest,
        now: float,
        actions: list[Action],
        refresh: bool = False,
    ) -> None:
        """Send a PBU for C{request}; it replaces any in flight, and a
        deregistration of the same NAI still in flight (a released address)."""
        self._dropPending(visitor)
        if visitor.nai in self._leaving:
            self._cancelDeregistration(visitor.nai)
        sequence = self._nextSequence()
        timeout = self.retransmitTimeout
        visitor.pending = PendingRegistration(
            request, sequence, [sequence], timeout, now + timeout, now, self.lifetime,
            refresh=refresh,
        )
        self._outstanding[sequence] = visitor
        visitor.lastRequest = request
        visitor.retryAt = None
        if visitor.state is not _REGISTERED:
            visitor.state = _REGISTERING
        self.counters["pbu.sent"] += 1
        actions.append(self._pbu(visitor, request, sequence, self.lifetime))
        self._reschedule(visitor)

    def _dropPending(self, visitor: VisitorEntry) -> None:
        pending = visitor.pending
        if pending is None:
            return
        outstanding = self._outstanding
        for sequence in pending.sequences:
            if outstanding.get(sequence) is visitor:
                del outstanding[sequence]
        visitor.pending = None

    def _resend(
        self, visitor: VisitorEntry, pending: PendingRegistration, actions: list[Action]
    ) -> None:
        sequence = self._nextSequence()
        pending.sequence = sequence
        pending.sequences.append(sequence)
        self._outstanding[sequence] = visitor
        actions.append(self._pbu(visitor, pending.request, sequence, pending.lifetime))

    def _retransmit(self, visitor: VisitorEntry, now: float, actions: list[Action]) -> None:
        pending = visitor.pending
        assert pending is not None
        if pending.tries >= self.maxRetries:
            self._giveUp(visitor, now, actions)
            return
        pending.tries += 1
        pending.interval = min(pending.interval * 2, self._maxInterval)
        pending.due = now + pending.interval
        self.counters["pbu.retransmitted"] += 1
        self._resend(visitor, pending, actions)

    def _giveUp(self, visitor: VisitorEntry, now: float, actions: list[Action]) -> None:
        pending = visitor.pending
        assert pending is not None
        self._dropPending(visitor)
        transmissions = pending.tries + 1
        if pending.lifetime == 0:
            self._forgetLeaving(visitor)
            self.counters["deregistration.given-up"] += 1
            actions.append(
                Note("deregistration.given-up", {"nai": visitor.naiText,
                                                 "lmap": visitor.lmapAddress,
                                                 "transmissions": transmissions})
            )
            return
        self.counters["pbu.given-up"] += 1
        visitor.failure = (
            f"no answer from {visitor.lmapAddress} to {transmissions} transmission(s)"
        )
        if visitor.state is _REGISTERED and visitor.expires is not None:
            # The binding still holds: try again half-way to its end.
            half = (visitor.expires - now) / 2
            visitor.retryAt = now + half if half >= self.retransmitTimeout else None
        else:
            visitor.state = _AWAITING
            visitor.retryAt = now + self.retryInterval
        actions.append(
            Note(
                "registration.given-up",
                {"nai": visitor.naiText, "mac": visitor.mac, "lmap": visitor.lmapAddress,
                 "registration": pending.request.kind, "address": pending.request.address,
                 "transmissions": transmissions, "retryAt": visitor.retryAt},
            )
        )

    def _mayHaveBinding(self, visitor: VisitorEntry) -> bool:
        """Whether the LMAP may hold a binding for C{visitor} through this MPA:
        one was accepted, or a PBU is (or was just) in flight."""
        return bool(visitor.nai) and (
            visitor.tunnel is not None or visitor.state in (_REGISTERING, _REGISTERED)
        )

    @staticmethod
    def _prefixLength(visitor: VisitorEntry) -> int:
        """What a Local Address option carries beside the address: the LNP length."""
        prefix = visitor.localNetworkPrefix
        return 128 if prefix is None else prefix.prefixlen

    def _boundAddress(self, visitor: VisitorEntry) -> str | None:
        if visitor.tunnel is not None:
            return visitor.tunnel.mobileAddress
        pending = visitor.pending
        if pending is not None and pending.request.address not in (None, "::"):
            return pending.request.address
        return None

    def _leave(
        self, visitor: VisitorEntry, now: float, actions: list[Action], event: str,
        reason: str | None = None,
    ) -> None:
        """The visitor is gone: deregister it if it may have a binding, remove
        its tunnel, take it out of the list."""
        deregister = self._mayHaveBinding(visitor)
        address = self._boundAddress(visitor)
        self._removeVisitor(visitor)
        if deregister:
            self._cancelDeregistration(visitor.nai)
            request = RegistrationRequest(False, address, self._prefixLength(visitor))
            sequence = self._nextSequence()
            timeout = self.retransmitTimeout
            visitor.pending = PendingRegistration(
                request, sequence, [sequence], timeout, now + timeout, now, 0
            )
            visitor.state = _DEREGISTERING
            self._outstanding[sequence] = visitor
            self._leaving[visitor.nai] = visitor
            self.counters["pbu.deregistration"] += 1
            actions.append(self._pbu(visitor, request, sequence, 0))
            self._reschedule(visitor)
        if visitor.tunnel is not None:
            actions.append(RemoveTunnel(visitor.tunnel))
            visitor.tunnel = None
        self.counters[event] += 1
        fields: dict[str, Any] = {"mac": visitor.mac, "nai": visitor.naiText,
                                  "interface": visitor.interface, "address": address,
                                  "deregistered": deregister}
        if reason is not None:
            fields["reason"] = reason
        actions.append(Note(event, fields))

    def _cancelDeregistration(self, nai: bytes) -> None:
        """The NAI registers here again: its old deregistration must not follow."""
        entry = self._leaving.pop(nai, None)
        if entry is not None:
            self._dropPending(entry)
            entry.deadline = None
            self.counters["deregistration.cancelled"] += 1

    def _forgetLeaving(self, entry: VisitorEntry) -> None:
        if self._leaving.get(entry.nai) is entry:
            del self._leaving[entry.nai]
        self._dropPending(entry)
        entry.deadline = None

    # --- Proxy Binding Acknowledgement ---------------------------------------

    def _bindingAck(self, ack: BindingAck, source: str, now: float) -> list[Action]:
        counters = self.counters
        visitor = self._outstanding.get(ack.sequence)
        pending = None if visitor is None else visitor.pending
        if visitor is None or pending is None or ack.sequence not in pending.sequences:
            if ack.status == Status.SEQUENCE_NUMBER_OUT_OF_WINDOW:
                return self._resyncAll(ack, source, now)
            counters["pba.unmatched"] += 1
            return []
        if source != visitor.lmapAddress:
            counters["pba.wrong-source"] += 1
            return []
        mnid = ack.option(MobileNodeIdentifier)
        if mnid is not None and mnid.identifier != visitor.nai:
            counters["pba.nai-mismatch"] += 1
            return []
        actions: list[Action] = []
        status = ack.status
        if status == Status.SEQUENCE_NUMBER_OUT_OF_WINDOW and not pending.resynced:
            self._resync(ack.sequence)
            self._resendResynced(visitor, pending, now, actions)
        elif pending.lifetime == 0:
            self._forgetLeaving(visitor)
            counters["pba.deregistration"] += 1
            if status >= 128:
                counters[f"pba.rejected.{status}"] += 1
        elif status < 128:
            self._accepted(visitor, pending, ack, now, actions)
        elif status == self.profile.bindingCacheEntryMissing and pending.request.confirmation:
            self._missing(visitor, now, actions)
        else:
            self._rejected(visitor, pending, status, now, actions)
        self._reschedule(visitor)
        return actions

    def _resync(self, sequence: int) -> None:
        # The acknowledgement carries the LMAP's last accepted number: go past it.
        if isNewer(sequence, self._sequence):
            self._sequence = sequence

    def _resendResynced(
        self, visitor: VisitorEntry, pending: PendingRegistration, now: float,
        actions: list[Action],
    ) -> None:
        pending.resynced = True
        pending.due = now + pending.interval
        self.counters["pba.resync"] += 1
        self._resend(visitor, pending, actions)
        actions.append(
            Note("registration.resync", {"nai": visitor.naiText, "lmap": visitor.lmapAddress,
                                         "sequence": pending.sequence})
        )

    def _resyncAll(self, ack: BindingAck, source: str, now: float) -> list[Action]:
        """A 135 carrying the LMAP's number for some NAI, not ours: every
        registration in flight to that LMAP (for that NAI, if it says) goes
        again past that number."""
        mnid = ack.option(MobileNodeIdentifier)
        candidates = [
            v
            for v in self.visitors.byLmap(source) + list(self._leaving.values())
            if v.lmapAddress == source
            and v.pending is not None
            and not v.pending.resynced
            and (mnid is None or mnid.identifier == v.nai)
        ]
        if not candidates:
            self.counters["pba.unmatched"] += 1
            return []
        self._resync(ack.sequence)
        actions: list[Action] = []
        for visitor in candidates:
            pending = visitor.pending
            assert pending is not None
            self._resendResynced(visitor, pending, now, actions)
            self._reschedule(visitor)
        return actions

    def _accepted(
        self,
        visitor: VisitorEntry,
        pending: PendingRegistration,
        ack: BindingAck,
        now: float,
        actions: list[Action],
    ) -> None:
        counters = self.counters
        self._dropPending(visitor)
        visitor.lastStatus = ack.status
        option = ack.option(LocalAddress)
        address = pending.request.address
        if option is not None and option.address != "::":
            address = option.address
        if address is None or address == "::" or ack.lifetime <= 0:
            # Nothing to tunnel: the LMAP said yes to nothing.
            counters["pba.no-address"] += 1
            self._rejected(
                visitor, pending, ack.status, now, actions, "accepted without an address"
            )
            return
        counters["pba.accepted"] += 1
        learnedPrefix = False
        if visitor.localNetworkPrefix is None and option is not None and option.prefixLength < 128:
            visitor.localNetworkPrefix = IPv6Network((address, option.prefixLength), strict=False)
            learnedPrefix = True
        previous = visitor.tunnel
        first = visitor.state is not _REGISTERED
        tunnel = TunnelBinding(
            address, 128, self.address, visitor.lmapAddress, ROLE_MPA, visitor.interface
        )
        self.visitors.setAddress(visitor, address)
        visitor.state = _REGISTERED
        visitor.registeredAt = now
        visitor.lifetime = ack.lifetime
        # Counted from the first transmission: never after the LMAP's own expiry.
        visitor.expires = pending.firstSentAt + ack.lifetime
        visitor.refreshAt = pending.firstSentAt + ack.lifetime * self.refreshFraction
        visitor.retryAt = None
        visitor.failure = None
        if tunnel != previous:
            if previous is not None:
                actions.append(RemoveTunnel(previous))
            actions.append(AddTunnel(tunnel))
            visitor.tunnel = tunnel
        if learnedPrefix or not visitor.advertised:
            # After AddTunnel: what the MS sends on it has somewhere to go.
            self._advertiseHomeLink(visitor, actions)
        if first or tunnel != previous:
            actions.append(
                Note(
                    "visitor.registered",
                    {"nai": visitor.naiText, "mac": visitor.mac, "address": address,
                     "prefix": str(visitor.localNetworkPrefix), "lmap": visitor.lmapAddress,
                     "lifetime": ack.lifetime, "previousAddress":
                         None if previous is None else previous.mobileAddress},
                )
            )
        else:
            counters["binding.refreshed"] += 1

    def _missing(self, visitor: VisitorEntry, now: float, actions: list[Action]) -> None:
        """The LMAP has no binding to confirm: a new MS."""
        self._dropPending(visitor)
        status = self.profile.bindingCacheEntryMissing
        visitor.lastStatus = status
        self.counters[f"pba.rejected.{status}"] += 1
        if visitor.localNetworkPrefix is None:
            # No prefix to advertise, so nothing to learn from: let the LMAP assign.
            self._register(visitor, RegistrationRequest(False, "::", 0), now, actions)
            actions.append(
                Note("registration.assign", {"nai": visitor.naiText, "mac": visitor.mac,
                                             "lmap": visitor.lmapAddress})
            )
            return
        visitor.state = _AWAITING
        if not visitor.advertised:
            # A new MS: it makes its address from the prefix.
            self._advertiseHomeLink(visitor, actions)
        actions.append(
            Note("visitor.awaiting-address", {"nai": visitor.naiText, "mac": visitor.mac,
                                              "prefix": str(visitor.localNetworkPrefix)})
        )

    def _rejected(
        self,
        visitor: VisitorEntry,
        pending: PendingRegistration,
        status: int,
        now: float,
        actions: list[Action],
        reason: str | None = None,
    ) -> None:
        self._dropPending(visitor)
        visitor.lastStatus = status
        if status >= 128:
            self.counters[f"pba.rejected.{status}"] += 1
        visitor.failure = reason or f"rejected with status {status}"
        if visitor.state is not _REGISTERED:
            visitor.state = _AWAITING
        visitor.retryAt = now + self.retryInterval
        actions.append(
            Note(
                "registration.rejected",
                {"nai": visitor.naiText, "mac": visitor.mac, "lmap": visitor.lmapAddress,
                 "status": status, "registration": pending.request.kind,
                 "address": pending.request.address, "reason": visitor.failure},
            )
        )

    # --- revocation and the rest ---------------------------------------------

    def _knownLmap(self, source: str) -> bool:
        if source == self.defaultLmap or self.visitors.knowsLmap(source):
            return True
        return any(e.lmapAddress == source for e in self._leaving.values())

    def _revocation(
        self, message: BindingRevocationIndication, source: str, now: float
    ) -> list[Action]:
        counters = self.counters
        counters["bri.received"] += 1
        if not self._knownLmap(source):
            counters["bri.unknown-source"] += 1
            return []
        visitors = self.visitors
        mnid = message.option(MobileNodeIdentifier)
        targets: list[VisitorEntry] = []
        found = False
        if message.globalRevocation:
            targets = visitors.byLmap(source)
        else:
            visitor = None
            if mnid is not None:
                visitor = visitors.byNai(mnid.identifier)
                leaving = self._leaving.get(mnid.identifier)
                if leaving is not None and leaving.lmapAddress == source:
                    # Already leaving: its binding is elsewhere now, stop deregistering.
                    self._forgetLeaving(leaving)
                    found = True
            if visitor is None:
                option = message.option(LocalAddress)
                if option is not None:
                    try:
                        visitor = visitors.byAddress(_canonical(option.address))
                    except (OSError, ValueError):
                        visitor = None
            if visitor is not None and visitor.lmapAddress == source:
                targets = [visitor]
        actions: list[Action] = []
        notes: list[Action] = []
        for visitor in targets:
            self._removeVisitor(visitor)
            if visitor.tunnel is not None:
                actions.append(RemoveTunnel(visitor.tunnel))
                visitor.tunnel = None
            counters["visitor.revoked"] += 1
            notes.append(
                Note("visitor.revoked", {"nai": visitor.naiText, "mac": visitor.mac,
                                         "address": visitor.localAddress, "lmap": source,
                                         "trigger": message.trigger})
            )
        if targets or found:
            status = RevocationStatus.SUCCESS
        else:
            status = RevocationStatus.BINDING_DOES_NOT_EXIST
            counters["bri.unknown"] += 1
        # The visitor is gone before the acknowledgement (draft 6.4).
        actions.append(
            SendMessage(
                BindingRevocationAck(
                    message.sequence, status, () if mnid is None else (mnid,), proxy=True,
                    globalRevocation=message.globalRevocation,
                ),
                source,
            )
        )
        actions.extend(notes)
        return actions

    def _heartbeat(self, message: Heartbeat, source: str, now: float) -> list[Action]:
        if message.response:
            self.counters["heartbeat.response"] += 1
            return []
        if not self._knownLmap(source):
            self.counters["heartbeat.refused"] += 1
            return []
        self.counters["heartbeat.answered"] += 1
        return [SendMessage(Heartbeat(message.sequence, response=True), source)]

    def _bindingError(self, message: BindingError, source: str, now: float) -> list[Action]:
        self.counters["binding-error.received"] += 1
        return [Note("binding-error.received", {"source": source, "status": message.status})]

    # --- timers -------------------------------------------------------------

    def _live(self, visitor: VisitorEntry) -> bool:
        if visitor.state is _DEREGISTERING:
            return self._leaving.get(visitor.nai) is visitor
        return visitor in self.visitors

    def _dueTime(self, visitor: VisitorEntry) -> float | None:
        pending = visitor.pending
        if visitor.state is _DEREGISTERING:
            return None if pending is None else pending.due
        times: list[float] = []
        if pending is not None:
            times.append(pending.due)
        else:
            if visitor.refreshAt is not None and visitor.state is _REGISTERED:
                times.append(visitor.refreshAt)
            if visitor.retryAt is not None:
                times.append(visitor.retryAt)
        for t in (visitor.expires, visitor.holdUntil, visitor.sessionExpires):
            if t is not None:
                times.append(t)
        return min(times) if times else None

    def _reschedule(self, visitor: VisitorEntry) -> None:
        due = self._dueTime(visitor) if self._live(visitor) else None
        if due == visitor.deadline:
            return
        visitor.deadline = due
        if due is None:
            return
        heap = self._timers
        heapq.heappush(heap, (due, next(self._timerSerial), visitor))
        if len(heap) > 2 * (len(self.visitors) + len(self._leaving)) + _HEAP_SLACK:
            self.counters["timer-heap.compacted"] += 1
            live: Iterable[VisitorEntry] = itertools.chain(self.visitors, self._leaving.values())
            self._timers = [
                (v.deadline, next(self._timerSerial), v) for v in live if v.deadline is not None
            ]
            heapq.heapify(self._timers)

    def _runTimers(self, visitor: VisitorEntry, now: float, actions: list[Action]) -> None:
        pending = visitor.pending
        if visitor.state is _DEREGISTERING:
            if pending is not None and pending.due <= now:
                self._retransmit(visitor, now, actions)
            return
        if visitor.sessionExpires is not None and visitor.sessionExpires <= now:
            self._leave(visitor, now, actions, "visitor.session-ended")
            return
        if visitor.state is _REJECTED:
            if visitor.holdUntil is not None and visitor.holdUntil <= now:
                self._removeVisitor(visitor)
                self.counters["visitor.hold-down-ended"] += 1
            return
        if visitor.expires is not None and visitor.expires <= now:
            self._expire(visitor, actions)
            return
        if pending is not None:
            if pending.due <= now:
                self._retransmit(visitor, now, actions)
            return
        if (
            visitor.state is _REGISTERED
            and visitor.refreshAt is not None
            and visitor.refreshAt <= now
        ):
            visitor.refreshAt = None
            if visitor.localAddress is not None:
                request = RegistrationRequest(
                    False, visitor.localAddress, self._prefixLength(visitor)
                )
                self.counters["binding.refresh-sent"] += 1
                self._register(visitor, request, now, actions, refresh=True)
                return
        if visitor.retryAt is not None and visitor.retryAt <= now:
            retry = visitor.lastRequest
            visitor.retryAt = None
            if retry is not None:
                self.counters["registration.retried"] += 1
                self._register(visitor, retry, now, actions, refresh=visitor.state is _REGISTERED)

    def _expire(self, visitor: VisitorEntry, actions: list[Action]) -> None:
        """The binding's lifetime ran out unrefreshed: the LMAP dropped it too."""
        self._removeVisitor(visitor)
        if visitor.tunnel is not None:
            actions.append(RemoveTunnel(visitor.tunnel))
            visitor.tunnel = None
        self.counters["binding.expired"] += 1
        actions.append(
            Note("visitor.expired", {"nai": visitor.naiText, "mac": visitor.mac,
                                     "address": visitor.localAddress,
                                     "lmap": visitor.lmapAddress})
        )
