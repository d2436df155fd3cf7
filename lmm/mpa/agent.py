"""
The MPA's attach life cycle and Proxy Binding Update signaling, as a pure
state machine.

L{MobilityProxyAgent} is fed attach and detach events, decoded frames from the
access links, AAA results, decoded Mobility Header messages, the DHCPv6
server's datagrams and a clock value (C{now}, seconds, any epoch), and returns
one list of actions that the service carries out in order: L{Authenticate},
L{SendFrame}, L{lmm.mpa.relay.SendToServer}, and the shared L{SendMessage}
(to an LMAP), L{AddTunnel}, L{RemoveTunnel} and L{Note}. It does no I/O and
keeps no timers: L{MobilityProxyAgent.nextDeadline} says when
L{MobilityProxyAgent.tick} is due.

It owns three sub-machines, each in its own module and testable alone:
L{lmm.mpa.registration.Registrations} (sequence numbers, the PBUs in flight,
back-off, resynchronisation, deregistrations), L{lmm.mpa.homelink.HomeLink}
(the RA, NA and DAD decisions of home-link emulation and its frames) and the
DHCPv6 relay's core, L{lmm.mpa.relay.RelayAgent}. What changes a visitor's
state is here, in one file, so that its life cycle reads in one place: that
is why this module stays over 600 lines.

Rules (draft-gundavelli-netlmm-mip6-proxy-00 sections 6-8, gaps filled from
RFC 5213, RFC 5846, RFC 6275 and RFC 4861; the rules of the sub-machines are
in their modules):

 1. Attach. A MAC the Visitor List does not hold, reported by an attach
    detector or, when C{attachOnFrames}, seen as the source of any frame on
    an access link, becomes a visitor in AUTHENTICATING and the service is
    asked to L{Authenticate} it. Frames from the MPA's own MACs (the
    interfaces', the virtual LMAP MACs), from group or all-zero MACs, and
    from links that are not access links are dropped; with
    C{attachOnFrames} off (only the access point says who attaches), so are
    frames from MACs that are not visitors. At most C{maxAuthenticating}
    visitors authenticate at once: a flood of forged MACs cannot flood the
    AAA server. While the AAA server answers, the MS's link-local address
    and the target of a DAD probe for a global address (or a packet's global
    source) are remembered.
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
    the DHCPv6 server. An MS that attaches again with the same request (MAC,
    link, the link's NAI) within C{aaa.reuse} seconds of an Access-Accept,
    and within its Session-Timeout (L{lmm.aaa.RecentAuthorizations}), is
    filled at once from that answer while the AAA server is asked again
    beside it: the same answer confirms it; another profile makes the
    visitor leave (a deregistration) and attach again at once with the new
    one; a rejection makes it leave and holds it down as in rule 2; no
    answer keeps it (the answer reused is still within its bounds). Then
    the registration: a Local Address in the profile
    is registered with a Local Address option; else an address the MS was
    seen probing with DAD while it authenticated (or using, when it may choose
    its address); else a Binding Cache Confirmation asks the LMAP for the
    address of a roaming MS. The home link is advertised when the LMAP
    answers (as RFC 5213 6.9.1.1 has it): an unsolicited Router Advertisement
    once the registration is accepted and its tunnel is up, or once the LMAP
    says it has no binding to confirm (a new MS, which needs the prefix to
    make its address); none when it rejects. Until then RS and NS for the
    router are not answered (L{lmm.mpa.homelink}, rule 2).
 4. Neighbor Discovery and Router Advertisements: L{lmm.mpa.homelink}. A DAD
    probe for a global address inside the LNP is the MS configuring that
    address: it is registered unless it is registered or being registered
    already (draft figure 8).
 5. Other packets (draft 6.3). A packet whose source is a global address
    inside the LNP, from a visitor that waits for an address
    (AWAITING_ADDRESS), registers that address when the profile says the MS
    may choose its address; otherwise it is counted and one Note per
    address is made. A registered (or registering) visitor's other
    addresses are never registered from its traffic: the LMAP binds one
    address per NAI, and a host using a temporary address beside its stable
    one would make the binding flap.
 6. DHCPv6 (draft 6.3, figure 9). A DHCPv6 client message (UDP 546 to 547)
    from an authenticated visitor, to All_DHCP_Relay_Agents_and_Servers
    (ff02::1:2), goes to the relay core with the visitor's LNP and DHCPv6
    server (the profile's, else C{defaultDhcpServer}); none known, or no
    relay: counted, not relayed. Nothing from a visitor being authenticated
    or rejected is relayed, and a message to another address (a client
    unicasting to its server) is the data plane's. The relay's Relay-Forward
    leaves as L{lmm.mpa.relay.SendToServer}; the server's answer
    (L{dhcpDatagramReceived}) goes to the visitor on its current link, from
    its default router (L{lmm.mpa.homelink}, rule 5). An address the server
    assigned (L{dhcpAddressAssigned}) is registered as a DAD-learned one is
    (a visitor registered with another address keeps it unless its profile
    says C{dhcpv6}: one address per NAI at the LMAP); one released
    (L{dhcpAddressReleased}: Release, Decline, the server withdrawing it)
    is deregistered (a PBU with lifetime 0), its tunnel removed, and the
    visitor waits for an address again, still attached and authenticated.
    A message the relay drops is counted there and noted (C{dhcpv6.dropped}).
 7. Registration: L{lmm.mpa.registration}. After C{maxRetries}
    retransmissions and one more interval the MPA gives up: the visitor
    shows the failure and the registration is tried again after
    C{retryInterval} (a refresh: half-way to the binding's expiry).
 8. Acknowledgement. Accepted: the Local Address is the acknowledgement's
    Local Address option, else the one asked for; the LNP, when the profile
    had none, comes from that option's prefix length (and an RA with it goes
    out); the visitor is REGISTERED, the binding expires C{lifetime granted}
    after the PBU was first sent, and is refreshed at C{refreshFraction} of
    that. The tunnel (Local Address/128, MPA to LMAP, on the MS's access
    link) is added once; a new address replaces it. "Binding Cache Entry
    missing" (the profile's number) to a confirmation: AWAITING_ADDRESS, or,
    when no LNP is known, a Local Address option of ::/0 asks the LMAP to
    assign an address (draft 7.1). SEQUENCE_NUMBER_OUT_OF_WINDOW: sent again
    past the LMAP's number, once per registration; a 135 that matches no
    sequence number does that for every registration in flight to that LMAP
    (the LMAP carries its own number, not ours). Any other rejection: the
    visitor waits in AWAITING_ADDRESS; a REGISTERED one is no longer (the
    LMAP refused this MPA for it: a newer binding elsewhere, a refused
    refresh) and its tunnel goes, so no MPA shows a binding the LMAP does
    not hold; it still leaves when its old binding would have expired. The
    registration is retried after C{retryInterval}. An acknowledgement
    matching nothing is counted and dropped. An acceptance the MPA cannot
    use (issue 16: without an address -- no Local Address option and none
    asked for, or none where another profile's sign is --, with lifetime 0,
    with another address than the one asked for, or with one outside the
    MS's LNP) is counted (C{pba.invalid.<reason>}), its binding at the LMAP
    deregistered (so that it does not go stale there), and handled as a
    rejection, named in the C{registration.rejected} note; its retry backs
    off, doubling up to C{INVALID_BACKOFF_DOUBLINGS} times. A PBA carrying
    another wire profile's Local Address type or status
    (L{lmm.mh.foreignProfileSign}) has its LMAP named once in a
    C{peer.profile-mismatch} note, and the sign in the rejection's.
 9. Revocation (draft 6.4, RFC 5846). A Binding Revocation Indication from a
    known LMAP (C{defaultLmap} or the LMAP of a visitor) names the visitor by
    its Mobile Node Identifier, else by its Local Address; with G set, every
    visitor registered with that LMAP. The visitor is removed and its tunnel
    too, before the acknowledgement (status SUCCESS, P set, same sequence
    number, G echoed) goes back; for a handover (RFC 5846 triggers 2-4),
    first the data plane hands back up the tunnel what it held for the
    visitor (rule 10) and copies of what it delivered since the MS was last
    heard from (L{ReleaseDownlink}): the LMAP sends them on to the new MPA.
    A binding it does not know gets BINDING_DOES_NOT_EXIST. Indications and
    heartbeats from other sources are dropped (the MPA is no reflector);
    heartbeat requests from known LMAPs are answered (RFC 5847).
 10. Leaving. A detach, a link going down, or the end of the AAA
    Session-Timeout deregisters a visitor that has (or may have) a binding;
    the tunnel is removed and the visitor leaves the list at once; the
    deregistration is retransmitted (L{lmm.mpa.registration}, rule 7).
    A detach report of a REGISTERED visitor with a tunnel (its base station
    saw it leave: it may be moving) first makes it depart, for
    C{departureHold} seconds (0: it leaves at once): the data plane holds
    its downlink (L{HoldDownlink}) and no PBU goes out. A handover's
    revocation in that time hands what was held back up the tunnel to the
    LMAP, which sends it on to the new MPA (L{ReleaseDownlink}, RFC 5949's
    reactive mode: no packet that reached this MPA after the MS left is
    lost); an attach report of the MS here again delivers it and the
    visitor stays; otherwise it leaves as above when the time is up. Its
    frames do not end the departure: the last ones it sent before it left
    still arrive after the report. A binding whose lifetime runs out
    unrefreshed is removed with its tunnel.
    L{MobilityProxyAgent.stop} deregisters everyone once and removes every
    tunnel. Whenever a visitor leaves the list, for whatever reason, the
    relay forgets it.
 11. A visitor that shows up on another access link of this MPA moves: its
    tunnel is moved to the new link, an RA goes out there, no PBU is needed.
    A visitor whose link reports another NAI leaves and attaches again. A
    second visitor authenticated with the NAI of a first replaces it (its
    tunnel goes; no deregistration, which would remove the new binding).
 12. Heartbeats (RFC 5847, L{lmm.heartbeat}): from L{start}, the default
    LMAP and every LMAP a visitor registered with are asked every
    C{heartbeat.interval} seconds, each request and answer with this MPA's
    Restart Counter (one more at each start, kept in C{state.path}): the
    first request tells the LMAP at once that the MPA restarted (it drops
    the bindings this MPA forgot). An LMAP whose counter changed has
    restarted: every visitor registered with it, with nothing in flight, is
    registered again at once (an LMAP that kept its Binding Cache takes it
    as a refresh; one that lost it, as a new binding).

 13. RFC 5213's protocol (the rfc5213 wire profile, issue 16): the MPA
    registers the MS's home network prefix, not an address (RFC 5213 6.9).
    Once authenticated, the MS is registered at once: its PBU asks for the
    profile's prefix, else for one (0::/0), with the options of
    L{lmm.mpa.registration}'s rule 1. The acceptance's Home Network Prefix
    option is the MS's prefix: the tunnel routes the whole prefix (both
    ways, on the MS's access link) and the Router Advertisement, unicast
    to the MS, carries that prefix alone (RFC 5213 6.7: SLAAC inside it),
    so no other MS on the link learns it. An acceptance without a usable
    prefix (none, C{::}, one with host bits, or another than the one asked
    for) is rule 8's. The addresses the MS makes or uses inside its prefix
    are never registered one by one (rules 4-6 register nothing then):
    refreshes, deregistrations and revocations name the prefix.

Notes come after the frames, messages and tunnel changes of the same event.
The counters are listed in L{COUNTERS} and in the sub-machines' modules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv6Network
from typing import Any

from lmm import nd
from lmm.aaa import REUSE, AAAUnavailable, AccessRequest, Profile, RecentAuthorizations
from lmm.actions import (
    AddTunnel,
    HoldDownlink,
    Note,
    ReleaseDownlink,
    RemoveTunnel,
    SendMessage,
    dispatch,
)
from lmm.dhcp6 import ALL_DHCP_RELAY_AGENTS_AND_SERVERS
from lmm.heartbeat import HeartbeatPolicy, Heartbeats
from lmm.inet import canonical, networkAddress, networkText
from lmm.mh import (
    LIFETIME_UNIT,
    MAX_LIFETIME,
    AccessTechnology,
    BindingAck,
    BindingError,
    BindingRevocationAck,
    BindingRevocationIndication,
    Heartbeat,
    HomeNetworkPrefix,
    LocalAddress,
    MobileNodeIdentifier,
    MobilityHeaderError,
    MobilityMessage,
    RevocationStatus,
    RevocationTrigger,
    Status,
    WireProfile,
)
from lmm.mpa.homelink import HomeLink, inPrefix
from lmm.mpa.registration import Registrations
from lmm.mpa.relay import (
    AddressAssigned,
    AddressReleased,
    RelayAction,
    RelayAgent,
    SendToClient,
    SendToServer,
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
from lmm.security import Refused
from lmm.signaling import (
    MAX_BINDACK_TIMEOUT,
    Deadlines,
    ProfileMismatches,
    RetransmissionPolicy,
    earliest,
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


Action = (SendMessage | AddTunnel | RemoveTunnel | HoldDownlink | ReleaseDownlink | Note
          | Authenticate | SendFrame | SendToServer)

#: What the agent counts (the sub-machines' counters are in their modules,
#: the relay core's show as C{relay.<name>}). C{<...>} stands for a value.
#: attach.reject_hold_down's default: a MAC the AAA server rejected is
#: answered nothing for this long (a flood of strangers costs one
#: Access-Request each per hold-down).
REJECT_HOLD_DOWN = 30.0
#: attach.unavailable_hold_down's default: shorter, since nothing was decided:
#: no AAA server answered (the radius backend has tried every server), or the
#: data plane could not carry the tunnel. The next frame after it asks again.
UNAVAILABLE_HOLD_DOWN = 2.0
#: attach.departure_hold's default: a detach report leaves a registered
#: visitor departing this long (rule 10) -- its downlink held, its binding
#: kept -- so that the revocation of a handover finds it and hands the
#: packets back. Long enough for an attach, an AAA round trip and a PBU
#: elsewhere; short enough that a station that left the domain is
#: deregistered about as soon as before.
DEPARTURE_HOLD = 0.5
#: registration.retry_interval's default: a registration given up (or
#: rejected) is tried again after this long.
RETRY_INTERVAL = 30.0
#: Revocations because the MS moved (RFC 5846 6.1): a recent answer may serve
#: it when it comes back; any other trigger makes it ask the AAA server again.
_HANDOVER_TRIGGERS = frozenset((
    RevocationTrigger.INTER_MAG_HANDOVER_SAME_ACCESS_TYPE,
    RevocationTrigger.INTER_MAG_HANDOVER_DIFFERENT_ACCESS_TYPE,
    RevocationTrigger.INTER_MAG_HANDOVER_UNKNOWN,
))
#: An acceptance the MPA cannot use backs its retry off, doubling from
#: retryInterval up to this many times (rule 8): 30 s .. 4 min by default.
INVALID_BACKOFF_DOUBLINGS = 3

COUNTERS = {
    "visitor.attached": "new visitors (an attach report or, with attachOnFrames, a frame)",
    "attach.frame": "visitors that attached by a frame",
    "attach.throttled": "attaches refused: maxAuthenticating visitors authenticate already",
    "attach.link-full": "attaches refused: the link holds maxVisitorsPerLink visitors already",
    "attach.unknown-interface": "attach reports for a link that is no access link",
    "attach.bad-mac": "attach reports for a group, zero or own MAC",
    "aaa.accepted": "visitors the AAA server accepted",
    "aaa.rejected": "visitors the AAA server rejected",
    "aaa.unavailable": "visitors no AAA server could be asked about",
    "aaa.late": "AAA answers no visitor waits for",
    "aaa.reused": "visitors served at once with a recent answer to the same Access-Request",
    "aaa.confirmed": "reused answers the AAA server gave again",
    "visitor.profile-changed": "visitors served with a reused answer whose profile the AAA "
                               "server changed (they attached again with the new one)",
    "visitor.withdrawn": "visitors served with a reused answer the AAA server then rejected",
    "aaa.reuse-unconfirmed": "reused answers no AAA server could confirm (the visitor kept)",
    "visitor.hold-down-ended": "rejected visitors whose hold-down ended",
    "visitor.moved": "visitors that moved to another access link of this MPA",
    "visitor.replaced": "visitors replaced by a newer one with their NAI",
    "visitor.detached": "visitors that left (detach, link down, another NAI)",
    "visitor.revoked": "visitors removed by a Binding Revocation Indication",
    "visitor.deregistered": "visitors deregistered by the operator (the control channel's "
                            "deregister)",
    "visitor.deregister-unknown": "operator deregistrations of no visitor",
    "visitor.unregistered": "registered visitors whose refresh or handover the LMAP rejected",
    "visitor.session-ended": "visitors whose AAA Session-Timeout ended",
    "visitor.tunnel-failed": "visitors whose tunnel the data plane could not carry",
    "tunnel.failed.stale": "tunnel failures of a visitor gone or moved since",
    "detach.unknown": "detach reports for no visitor",
    "detach.stale": "detach reports from a link the visitor left",
    "detach.repeated": "detach reports for a visitor departing already",
    "visitor.departing": "registered visitors a detach report left departing (rule 10)",
    "visitor.returned": "departing visitors reported back on this MPA (their downlink "
                        "delivered)",
    "visitor.handed-back": "visitors revoked for a handover (their held and unanswered "
                           "downlink handed back to the LMAP)",
    "link.down": "access links that went down",
    "address.learned.<dad|packet|dhcpv6|candidate>": "addresses registered, by how learned",
    "learn.held": "addresses learned again while their failed registration waits its retry",
    "packet.address-not-allowed": "packets from an address the MS may not choose",
    "packet.outside-prefix": "packets from a global address outside the LNP",
    "packet.other-address": "packets from another address of a registered visitor",
    "dhcpv6.client": "DHCPv6 client messages from authenticated visitors",
    "dhcpv6.relayed": "DHCPv6 client messages handed to the relay",
    "dhcpv6.no-server": "DHCPv6 client messages with no server to relay to",
    "dhcpv6.relay-off": "DHCPv6 client messages while the relay is off",
    "dhcpv6.not-to-relays": "DHCPv6 client messages unicast to a server (the data plane's)",
    "dhcpv6.unauthenticated": "DHCPv6 client messages from visitors being authenticated",
    "dhcpv6.no-visitor": "DHCPv6 address reports for no authenticated visitor",
    "dhcpv6.bad-address": "DHCPv6 address reports with an address that is none",
    "dhcpv6.outside-prefix": "DHCPv6 addresses outside the visitor's LNP",
    "dhcpv6.other-address": "DHCPv6 addresses beside a registered one (not dhcpv6 mode)",
    "dhcpv6.released-other": "DHCPv6 releases of an address not registered",
    "dhcpv6.to-client": "DHCPv6 answers framed for a visitor",
    "dhcpv6.client-gone": "DHCPv6 answers for a visitor gone or refused since",
    "dhcpv6.client-bad-frame": "DHCPv6 answers that could not be framed",
    "address.released": "registered addresses released (DHCPv6)",
    "frame.own": "frames from the MPA's own MACs",
    "frame.bad-mac": "frames from group or zero MACs",
    "frame.unknown-interface": "frames from a link that is no access link",
    "frame.unattached": "frames from MACs no attach report named (attachOnFrames off)",
    "frame.rejected": "frames from rejected visitors",
    "frame-error.<reason>": "frames that did not decode, by reason",
    "pbu.given-up": "registrations given up after maxRetries retransmissions",
    "registration.retried": "failed registrations tried again",
    "binding.refresh-sent": "refreshes sent",
    "pba.accepted": "registrations accepted",
    "address.in-home-prefix": "addresses an MS probed or used inside its registered home "
                              "network prefix (rule 13: nothing to register)",
    "pba.rejected.<status>": "acknowledgements with a rejection status",
    "pba.confirmation-missing": "confirmations the LMAP had no binding for: a new MS "
                                "(rule 8), not a rejection",
    "pba.invalid.<reason>": "acceptances the MPA cannot use (rule 8): no-address, "
                            "no-lifetime, other-address, outside-prefix; deregistered",
    "peer.profile-mismatch": "PBAs carrying another wire profile's options or statuses",
    "pba.deregistration": "deregistrations answered",
    "binding.refreshed": "refreshes accepted",
    "binding.expired": "bindings expired unrefreshed",
    "deregistration.given-up": "deregistrations given up",
    "bri.received": "Binding Revocation Indications received",
    "bri.unknown": "indications naming no binding of ours",
    "bri.unknown-source": "indications from an address that is no known LMAP",
    "registration.lmap-restarted": "registrations sent again at once: their LMAP restarted",
    "binding-error.received": "Binding Errors received",
    "ignored.<message type>": "Mobility Header messages of a kind the MPA takes none of",
    "malformed.<reason>": "Mobility Header messages that did not decode, by reason",
    "refused.<reason>": "messages refused by the signaling's protection (lmm.security)",
    "timer-heap.compacted": "rebuilds of the timer heap",
}

# --- helpers ----------------------------------------------------------------

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


def _isGroupOrZeroMac(mac: str) -> bool:
    try:
        return bool(int(mac[:2], 16) & 1) or mac == "00:00:00:00:00:00" or len(mac) != 17
    except ValueError:
        return True


def _undecided(error: BaseException) -> bool:
    """Whether an authentication error decided nothing: no AAA server
    answered (L{AAAUnavailable}) or something else failed; L{AccessRejected}
    is a decision."""
    return not hasattr(error, "reason") or isinstance(error, AAAUnavailable)


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return reason if isinstance(reason, str) else str(error) or type(error).__name__


def _prefixLength(visitor: VisitorEntry) -> int:
    """What a Local Address option carries beside the address: the LNP length."""
    prefix = visitor.localNetworkPrefix
    return 128 if prefix is None else prefix.prefixlen


# --- the agent --------------------------------------------------------------


class MobilityProxyAgent:
    """
    The Visitor List, the home-link emulation and the Proxy Binding Update
    signaling of one MPA; see the module docstring for the rules.

    @ivar visitors: the L{VisitorList}.
    @ivar counters: named event counts, for statistics (L{COUNTERS}, and the
        sub-machines' C{COUNTERS}).
    @ivar registrations: the L{Registrations} sub-machine.
    @ivar homeLink: the L{HomeLink} sub-machine.
    @ivar relay: the DHCPv6 relay core, or None: DHCPv6 is not relayed.
    @ivar attachOnFrames: whether a frame from an unknown MAC is an attach
        (the packet detector), or only an attach report is (the explicit one).
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
        rejectHoldDown: float = REJECT_HOLD_DOWN,
        unavailableHoldDown: float = UNAVAILABLE_HOLD_DOWN,
        retryInterval: float = RETRY_INTERVAL,
        routerLifetime: int = 1800,
        maxAuthenticating: int = 256,
        maxVisitorsPerLink: int = 4096,
        reuseAuthorization: float = REUSE,
        departureHold: float = DEPARTURE_HOLD,
        initialSequence: int = 0,
        defaultDhcpServer: str | None = None,
        maxRetransmitInterval: float = MAX_BINDACK_TIMEOUT,
        relay: RelayAgent | None = None,
        attachOnFrames: bool = True,
        heartbeat: HeartbeatPolicy | None = None,
        restartCounter: int = 0,
        accessTechnology: int = AccessTechnology.IEEE_802_3,
    ) -> None:
        if not LIFETIME_UNIT <= lifetime <= MAX_LIFETIME:
            raise ValueError(f"lifetime {lifetime} is not in {LIFETIME_UNIT}..{MAX_LIFETIME}")
        if retransmitTimeout <= 0:
            raise ValueError(f"retransmitTimeout {retransmitTimeout} is not positive")
        if maxRetries < 0:
            raise ValueError(f"maxRetries {maxRetries} is negative")
        if not 0 < refreshFraction < 1:
            raise ValueError(f"refreshFraction {refreshFraction} is not between 0 and 1")
        self.address = canonical(address)
        self.defaultLmap = canonical(defaultLmap)
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
        self.profile = profile
        # Rule 13: RFC 5213's protocol, a home network prefix per MS.
        self.perNodePrefixes = profile.perNodePrefixes
        self.refreshFraction = refreshFraction
        self.rejectHoldDown = rejectHoldDown
        self.unavailableHoldDown = unavailableHoldDown
        self.retryInterval = retryInterval
        self.maxAuthenticating = maxAuthenticating
        self.maxVisitorsPerLink = maxVisitorsPerLink
        self.departureHold = departureHold
        self.defaultDhcpServer = (
            None if defaultDhcpServer is None else canonical(defaultDhcpServer)
        )
        self.relay = relay
        self.attachOnFrames = attachOnFrames

        self.visitors = VisitorList()
        self.counters: Counter[str] = Counter()
        self.homeLink = HomeLink(raMtu, routerLifetime, self.counters)
        policy = RetransmissionPolicy(retransmitTimeout, maxRetries, maxRetransmitInterval)
        self.registrations = Registrations(lifetime, policy, self.counters, initialSequence,
                                           profile.perNodePrefixes, accessTechnology)
        self.heartbeats = Heartbeats(heartbeat or HeartbeatPolicy(interval=0), restartCounter,
                                     self.counters)
        # Rule 8: LMAPs whose PBAs carry another wire profile's signs.
        self.profileMismatches = ProfileMismatches(profile, self.counters)
        # Frames from these are the MPA's own (or its echo), never an attach.
        self._ownMacs: set[str] = set(self.interfaceMacs.values())
        if defaultVirtualLmapMac is not None:
            self._ownMacs.add(defaultVirtualLmapMac)
        self._authenticating = 0
        # Visitors served with a reused answer whose confirmation is awaited:
        # Access-Requests in flight too (maxAuthenticating bounds both).
        self._confirming = 0
        self.authorizations = RecentAuthorizations(reuseAuthorization)
        # Visitors and leaving entries by their next deadline (VisitorEntry.deadline).
        self._timers: Deadlines[VisitorEntry] = Deadlines(
            lambda v: v.deadline, self._scheduled, self._liveCount, self.counters,
            "timer-heap.compacted", ordered=False,
        )

        self._handlers: dict[type, Callable[[Any, str, float], list[Action]]] = {
            BindingAck: self._bindingAck,
            BindingRevocationIndication: self._revocation,
            Heartbeat: self._heartbeat,
            BindingError: self._bindingError,
        }

    @property
    def retransmitTimeout(self) -> float:
        return self.registrations.policy.initial

    @property
    def raMtu(self) -> int:
        return self.homeLink.raMtu

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
            visitor = self._newVisitor(event.interface, mac, event.nai, now, actions)
            if visitor is not None:
                self._reuse(visitor, now, actions)
            return actions
        visitor.lastSeen = now
        if visitor.departing is not None:
            self._returned(visitor, actions)
        if visitor.interface != event.interface:
            self._move(visitor, event.interface, actions)
        return actions

    def detach(self, event: DetachEvent, now: float) -> list[Action]:
        """An attach detector saw C{event.mac} leave C{event.interface}: a
        registered visitor departs (rule 10), any other leaves."""
        visitor = self.visitors.byMac(event.mac.lower())
        if visitor is None:
            self.counters["detach.unknown"] += 1
            return []
        if visitor.interface != event.interface:
            # It moved to another of our links; the old link's report is stale.
            self.counters["detach.stale"] += 1
            return []
        if visitor.departing is not None:
            self.counters["detach.repeated"] += 1
            return []
        actions: list[Action] = []
        if self.departureHold > 0 and visitor.state is _REGISTERED and visitor.tunnel is not None:
            self._depart(visitor, now, actions)
        else:
            self._leave(visitor, now, actions, "visitor.detached")
        return actions

    def _depart(self, visitor: VisitorEntry, now: float, actions: list[Action]) -> None:
        """Rule 10: a registered visitor reported gone waits C{departureHold}
        seconds for a handover's revocation, its downlink held."""
        assert visitor.tunnel is not None
        visitor.departing = now + self.departureHold
        actions.append(HoldDownlink(visitor.tunnel))
        self._reschedule(visitor)
        self.counters["visitor.departing"] += 1
        actions.append(Note("visitor.departing", {
            "mac": visitor.mac, "nai": visitor.naiText, "interface": visitor.interface,
            "address": visitor.localAddress, "until": visitor.departing}))

    def _returned(self, visitor: VisitorEntry, actions: list[Action]) -> None:
        """Rule 10: a departing visitor is reported back on this MPA: what was held for it
        is delivered, and it stays."""
        visitor.departing = None
        self._reschedule(visitor)
        if visitor.tunnel is not None:
            actions.append(ReleaseDownlink(visitor.tunnel, handBack=False))
        self.counters["visitor.returned"] += 1
        actions.append(Note("visitor.returned", {"mac": visitor.mac, "nai": visitor.naiText,
                                                 "interface": visitor.interface}))

    def deregister(self, now: float, mac: str | None = None,
                   nai: bytes | None = None) -> list[Action]:
        """
        The operator deregisters a visitor, named by its MAC or its NAI (the
        control channel's C{deregister}): it leaves as on a detach (rule 10:
        a PBU with lifetime 0 when it has, or may have, a binding, its
        tunnel removed, out of the list). An MS still on the link attaches
        again at its next frame (packet detection) or its next attach
        report. The last action is a Note: C{visitor.deregistered} (with the
        LMAP), or C{visitor.deregister-unknown} (C{leaving}: it is being
        deregistered already).
        """
        visitor = self.visitors.byMac(mac.lower()) if mac is not None else \
            self.visitors.byNai(nai) if nai is not None else None
        actions: list[Action] = []
        if visitor is None:
            self.counters["visitor.deregister-unknown"] += 1
            leaving = nai is not None and nai in self.registrations.leaving
            actions.append(Note("visitor.deregister-unknown",
                                {"mac": mac, "nai": None if nai is None else
                                 nai.decode("utf-8", "replace"), "leaving": leaving}))
            return actions
        lmap = visitor.lmapAddress
        if visitor.request is not None:
            self.authorizations.forget(visitor.request)  # back only through the AAA server
        self._leave(visitor, now, actions, "visitor.deregistered", "the operator's deregister")
        note = actions[-1]
        assert isinstance(note, Note)
        note.fields["lmap"] = lmap
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
            return self._unknownSource(interface, mac, frame, now)
        visitor.lastSeen = now
        state = visitor.state
        if state is _REJECTED:
            counters["frame.rejected"] += 1
            return []
        actions: list[Action] = []
        if visitor.interface != interface:
            self._move(visitor, interface, actions)
        if state is _AUTHENTICATING:
            if frame.isDHCPv6:
                # Not yet: the client retransmits (RFC 8415 15).
                counters["dhcpv6.unauthenticated"] += 1
            self._observe(visitor, frame)
            return actions
        if frame.ip is not None:
            self._fromVisitor(visitor, interface, frame, now, actions)
        return actions

    def _unknownSource(self, interface: str, mac: str, frame: nd.Frame,
                       now: float) -> list[Action]:
        """Rule 1: a frame from a MAC the Visitor List does not hold."""
        if not self.attachOnFrames:
            # Only the access point says who attaches.
            self.counters["frame.unattached"] += 1
            return []
        if _isGroupOrZeroMac(mac):
            self.counters["frame.bad-mac"] += 1
            return []
        actions: list[Action] = []
        self.counters["attach.frame"] += 1
        visitor = self._newVisitor(interface, mac, None, now, actions)
        if visitor is not None:
            self._observe(visitor, frame)
            self._reuse(visitor, now, actions)
        return actions

    def _fromVisitor(self, visitor: VisitorEntry, interface: str, frame: nd.Frame, now: float,
                     actions: list[Action]) -> None:
        """Rules 4-6: a frame from an authenticated visitor."""
        ip = frame.ip
        assert ip is not None
        source = ip.source
        message = frame.message
        kind = type(message)
        if kind is _RouterSolicitation:
            self._send(visitor, self.homeLink.routerSolicitation(visitor, source), actions)
        elif kind is _NeighborSolicitation:
            assert isinstance(message, nd.NeighborSolicitation)
            self._neighborSolicitation(visitor, source, message.target, now, actions)
        elif frame.isDHCPv6:
            self.counters["dhcpv6.client"] += 1
            self._relayDHCPv6(visitor, interface, frame, now, actions)
        if source == visitor.localAddress or source == nd.UNSPECIFIED:
            return
        if nd.isLinkLocal(source):
            visitor.linkLocalAddress = source
        elif not nd.isMulticast(source):
            self._packetFrom(visitor, source, now, actions)

    def _neighborSolicitation(self, visitor: VisitorEntry, source: str, target: str,
                              now: float, actions: list[Action]) -> None:
        homeLink = self.homeLink
        if source != nd.UNSPECIFIED:
            self._send(visitor, homeLink.neighborSolicitation(visitor, source, target), actions)
            return
        defence, learn = homeLink.duplicateAddressDetection(visitor, target)
        self._send(visitor, defence, actions)
        if learn:
            self._learn(visitor, target, "dad", now, actions)

    @staticmethod
    def _send(visitor: VisitorEntry, frame: bytes | None, actions: list[Action]) -> None:
        if frame is not None:
            actions.append(SendFrame(visitor.interface, frame))

    def frameError(self, interface: str, error: nd.NDError, now: float) -> list[Action]:
        """A frame from C{interface} that did not decode: counted."""
        self.counters["frame-error." + error.reason] += 1
        return []

    # --- DHCPv6 -------------------------------------------------------------

    def _relayDHCPv6(self, visitor: VisitorEntry, interface: str, frame: nd.Frame, now: float,
                     actions: list[Action]) -> None:
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
        relay = self.relay
        if relay is None:
            counters["dhcpv6.relay-off"] += 1
            return
        counters["dhcpv6.relayed"] += 1
        relayed = relay.fromClient(visitor.mac, interface, ip.source, payload,
                                   visitor.localNetworkPrefix, server, now)
        self._relayed(relayed, f"from {visitor.mac} on {interface}", now, actions)

    def dhcpDatagramReceived(self, payload: bytes, source: str, now: float) -> list[Action]:
        """A datagram to the relay's port 547 from C{source} on the backbone:
        the DHCPv6 server's Relay-Reply, to the visitor it answers."""
        actions: list[Action] = []
        if self.relay is not None:
            self._relayed(self.relay.fromServer(payload, source, now), f"from {source}", now,
                          actions)
        return actions

    def _relayed(self, relayed: list[RelayAction], where: str, now: float,
                 actions: list[Action]) -> None:
        """The relay core's actions, as the agent's: a Relay-Forward leaves as
        it is, an answer is framed for the visitor, an address assigned or
        released registers or deregisters it."""
        for action in relayed:
            if isinstance(action, SendToServer):
                actions.append(action)
            elif isinstance(action, SendToClient):
                self._toClient(action, actions)
            elif isinstance(action, AddressAssigned):
                actions.extend(self.dhcpAddressAssigned(action.visitorKey, action.address, now))
            elif isinstance(action, AddressReleased):
                actions.extend(self.dhcpAddressReleased(action.visitorKey, action.address, now))
            else:
                actions.append(action)
        assert self.relay is not None
        for reason in self.relay.takeDrops():
            actions.append(Note("dhcpv6.dropped", {
                "where": where, "kind": reason, "count": self.relay.counters[reason]}))

    def _toClient(self, action: SendToClient, actions: list[Action]) -> None:
        """The server's answer, to the visitor on the link it is on now."""
        visitor = self.visitors.byMac(action.visitorKey)
        if visitor is None or not visitor.authenticated:
            # It left (or was refused) since it asked.
            self.counters["dhcpv6.client-gone"] += 1
            return
        try:
            frame = self.homeLink.toClient(visitor, action.clientAddress, action.payload)
        except ValueError:
            self.counters["dhcpv6.client-bad-frame"] += 1
            return
        self.counters["dhcpv6.to-client"] += 1
        actions.append(SendFrame(visitor.interface, frame))

    def _dhcpVisitor(self, mac: str, address: str) -> tuple[VisitorEntry, str] | None:
        """The authenticated visitor with C{mac} and C{address} made canonical,
        for the relay's reports; None (counted) when either is not usable."""
        visitor = self.visitors.byMac(mac.lower())
        if visitor is None or not visitor.authenticated:
            self.counters["dhcpv6.no-visitor"] += 1
            return None
        try:
            return visitor, canonical(address)
        except (OSError, ValueError):
            self.counters["dhcpv6.bad-address"] += 1
            return None

    def dhcpAddressAssigned(self, mac: str, address: str, now: float) -> list[Action]:
        """The DHCPv6 server's Reply assigned C{address} to the visitor with
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
        if prefix is not None and not inPrefix(address, prefix):
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
        """The visitor with C{mac} gave up C{address} (its Release or Decline,
        or the server withdrawing it). If that is the address registered (or
        being registered) for it, the binding is deregistered and its tunnel
        removed; the visitor stays, authenticated, waiting for an address."""
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
        self.registrations.drop(visitor)
        if deregister:
            entry = replace(visitor, pending=None, tunnel=None, deadline=None, noted=set())
            request = RegistrationRequest(False, address, _prefixLength(visitor))
            actions.append(self.registrations.deregister(entry, request, now))
            self._reschedule(entry)
        self._removeTunnel(visitor, actions)
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
        if visitor is not None and visitor.confirming:
            return self._confirmed(visitor, profile, now)
        if visitor is None or visitor.state is not _AUTHENTICATING:
            self.counters["aaa.late"] += 1
            return []
        self.counters["aaa.accepted"] += 1
        if visitor.request is not None:
            self.authorizations.remember(visitor.request, profile, now)
        return self._accept(visitor, profile, now, reused=False)

    def _accept(self, visitor: VisitorEntry, profile: Profile, now: float,
                reused: bool) -> list[Action]:
        """Rule 3: the visitor in AUTHENTICATING is filled from C{profile}
        and registered."""
        actions: list[Action] = []
        notes: list[Note] = []
        self._setState(visitor, _AWAITING)
        other = self.visitors.byNai(profile.nai)
        if other is not None and other is not visitor:
            # The LMAP binds one NAI once: the newest attachment wins.
            self._replace(other, visitor, actions, notes)
        self._fillFromProfile(visitor, profile, now)
        request = self._firstRegistration(visitor)
        self.registrations.cancelDeregistration(profile.nai)
        self._register(visitor, request, now, actions)
        actions.extend(notes)
        prefix = visitor.localNetworkPrefix
        actions.append(
            Note(
                "visitor.authenticated",
                {"nai": visitor.naiText, "mac": visitor.mac, "interface": visitor.interface,
                 "lmap": visitor.lmapAddress,
                 "prefix": None if prefix is None else networkText(prefix),
                 "address": visitor.localAddress, "addressMode": profile.addressMode,
                 "registration": request.kind, "reused": reused},
            )
        )
        return actions

    def _reuse(self, visitor: VisitorEntry, now: float, actions: list[Action]) -> None:
        """Rule 3: a new visitor whose request got an answer lately is served
        with it now; the Authenticate already asked goes on as its check."""
        request = visitor.request
        recent = None if request is None else self.authorizations.recall(request, now)
        if recent is None:
            return
        profile, answeredAt = recent
        self.counters["aaa.reused"] += 1
        visitor.confirming = True
        self._confirming += 1
        actions.extend(self._accept(visitor, profile, now, reused=True))
        if profile.sessionTimeout:
            # The session the answer opened, not a new one (RFC 2865 5.27).
            visitor.sessionExpires = answeredAt + profile.sessionTimeout
            self._reschedule(visitor)

    def _confirmed(self, visitor: VisitorEntry, profile: Profile, now: float) -> list[Action]:
        """Rule 3: the AAA server answered the request of a visitor served
        with a reused answer."""
        self._stopConfirming(visitor)
        request = visitor.request
        assert request is not None
        if profile == visitor.profile:
            self.counters["aaa.confirmed"] += 1
            self.authorizations.remember(request, profile, now)
            if profile.sessionTimeout:
                visitor.sessionExpires = now + profile.sessionTimeout
                self._reschedule(visitor)
            return []
        # Another profile: leave as on a detach and attach again at once with it.
        self.authorizations.remember(request, profile, now)
        actions: list[Action] = []
        self._leave(visitor, now, actions, "visitor.profile-changed",
                    "the AAA server changed the profile a recent answer gave")
        fresh = VisitorEntry(visitor.mac, visitor.interface, now, now,
                             linkNai=visitor.linkNai, request=request)
        self.visitors.add(fresh)
        self._authenticating += 1
        actions.extend(self._accept(fresh, profile, now, reused=False))
        return actions

    def _stopConfirming(self, visitor: VisitorEntry) -> None:
        if visitor.confirming:
            visitor.confirming = False
            self._confirming -= 1

    def _withdrawn(self, visitor: VisitorEntry, error: BaseException,
                   now: float) -> list[Action]:
        """Rule 3: the AAA server did not confirm a reused answer. Rejected:
        the visitor leaves and is held down (rule 2); none answered: it stays."""
        self._stopConfirming(visitor)
        if _undecided(error):
            self.counters["aaa.reuse-unconfirmed"] += 1
            return [Note("visitor.unconfirmed", {"mac": visitor.mac, "nai": visitor.naiText,
                                                 "reason": _reason(error)})]
        self.counters["aaa.rejected"] += 1
        if visitor.request is not None:
            self.authorizations.forget(visitor.request)
        actions: list[Action] = []
        reason = _reason(error)
        self._leave(visitor, now, actions, "visitor.withdrawn", reason)
        self._holdDown(visitor, now, self.rejectHoldDown, reason)
        return actions

    def _holdDown(self, visitor: VisitorEntry, now: float, hold: float, reason: str) -> None:
        """Rule 2 for a visitor that has left: its MAC is held down for C{hold}."""
        held = VisitorEntry(visitor.mac, visitor.interface, visitor.attachedAt, now,
                            state=_REJECTED, holdUntil=now + hold, failure=reason)
        self.visitors.add(held)
        self._reschedule(held)

    def _replace(self, other: VisitorEntry, visitor: VisitorEntry, actions: list[Action],
                 notes: list[Note]) -> None:
        """Rule 11: C{visitor} has C{other}'s NAI now; C{other} goes, without
        a deregistration (which would remove the new binding)."""
        self._removeVisitor(other)
        self._removeTunnel(other, actions)
        self.counters["visitor.replaced"] += 1
        notes.append(
            Note("visitor.replaced", {"nai": other.naiText, "mac": other.mac,
                                      "interface": other.interface, "by": visitor.mac})
        )

    def _fillFromProfile(self, visitor: VisitorEntry, profile: Profile, now: float) -> None:
        """Rule 3: the entry's fields from the profile and the defaults."""
        visitors = self.visitors
        visitors.setNai(visitor, profile.nai)
        lmap = canonical(profile.lmapAddress) if profile.lmapAddress else self.defaultLmap
        visitors.setLmap(visitor, lmap)
        virtualMac = (profile.virtualLmapMac or self._defaultVirtualMac(visitor.interface)).lower()
        self._ownMacs.add(virtualMac)
        visitor.virtualLmapMac = virtualMac
        visitor.virtualLmapLinkLocal = (
            canonical(profile.virtualLmapLinkLocal)
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
        if profile.localAddress and not self.perNodePrefixes:
            visitors.setAddress(visitor, canonical(profile.localAddress))

    def _firstRegistration(self, visitor: VisitorEntry) -> RegistrationRequest:
        """Rule 3: the profile's Local Address, else the address seen while
        authenticating, else a Binding Cache Confirmation. Rule 13: the
        profile's prefix as the MS's home network prefix, else 0::/0."""
        prefixLength = _prefixLength(visitor)
        if self.perNodePrefixes:
            visitor.candidateAddress = visitor.candidateSource = None
            prefix = visitor.localNetworkPrefix
            if prefix is None:
                return RegistrationRequest(False, "::", 0)
            return RegistrationRequest(False, networkAddress(prefix), prefix.prefixlen)
        candidate = self._usableCandidate(visitor)
        visitor.candidateAddress = visitor.candidateSource = None
        if visitor.localAddress is not None:
            return RegistrationRequest(False, visitor.localAddress, prefixLength)
        if candidate is not None:
            self.counters["address.learned.candidate"] += 1
            return RegistrationRequest(False, candidate, prefixLength)
        return RegistrationRequest(True)

    def authenticationFailed(self, mac: str, error: BaseException, now: float) -> list[Action]:
        """The AAA server refused the visitor with C{mac} (L{lmm.aaa.AccessRejected})
        or none answered (L{lmm.aaa.AAAUnavailable}, or any other error)."""
        visitor = self.visitors.byMac(mac.lower())
        if visitor is not None and visitor.confirming:
            return self._withdrawn(visitor, error, now)
        if visitor is None or visitor.state is not _AUTHENTICATING:
            self.counters["aaa.late"] += 1
            return []
        unavailable = _undecided(error)
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
        visitor = self.visitors.byAddress(canonical(binding.mobileAddress))
        if visitor is None or visitor.tunnel != binding:
            # Gone, moved or re-registered since: nothing of it to undo.
            self.counters["tunnel.failed.stale"] += 1
            return []
        actions: list[Action] = []
        reason = f"the data plane could not carry its tunnel: {error}"
        self._leave(visitor, now, actions, "visitor.tunnel-failed", reason)
        self._holdDown(visitor, now, self.unavailableHoldDown, reason)
        return actions

    def malformed(self, error: MobilityHeaderError, source: str, now: float) -> list[Action]:
        """A Mobility Header packet from C{source} that did not decode: counted.
        The MPA answers nothing (no Binding Error): it is no reflector. One
        the codec refused (L{lmm.security.Refused}: not authenticated, not
        fresh) is counted under C{refused.<reason>} and changes nothing."""
        if isinstance(error, Refused):
            self.counters["refused." + error.reason] += 1
            return []
        self.counters["malformed." + error.reason] += 1
        return []

    # --- timers -------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Do everything due by C{now}: retransmissions and give-ups, refreshes,
        retries, binding expiry, hold-down and session ends, DHCPv6 requests
        that got no answer."""
        actions: list[Action] = []
        for visitor in self._timers.due(now):
            visitor.deadline = None
            self._runTimers(visitor, now, actions)
            self._reschedule(visitor)
        if self.relay is not None:
            self._relayed(self.relay.tick(now), "(no answer)", now, actions)
        self.heartbeats.tick(now, actions)
        return actions

    def nextDeadline(self) -> float | None:
        """When L{tick} next has something to do, or None."""
        return earliest(self._timers.next(),
                        None if self.relay is None else self.relay.nextDeadline(),
                        self.heartbeats.nextDeadline())

    def start(self, now: float) -> list[Action]:
        """The daemon starts: heartbeats with the default LMAP, the first at
        once (its Restart Counter tells the LMAP this MPA restarted: rule 12)."""
        self.heartbeats.watch(self.defaultLmap, now)
        return self.tick(now)

    def stop(self, now: float) -> list[Action]:
        """The daemon stops: deregister every visitor with a binding (once, no
        retransmission) and remove every tunnel."""
        actions: list[Action] = []
        visitors = self.visitors.entries()
        deregistered = 0
        for visitor in visitors:
            if self._mayHaveBinding(visitor):
                request = RegistrationRequest(
                    False, self._boundAddress(visitor), _prefixLength(visitor)
                )
                actions.append(self.registrations.deregisterOnce(visitor, request))
                deregistered += 1
            self._removeTunnel(visitor, actions)
            self._removeVisitor(visitor)
        self.registrations.clear()
        self._timers.clear()
        actions.append(
            Note("mpa.stopped", {"visitors": len(visitors), "deregistered": deregistered})
        )
        return actions

    def describe(self) -> list[dict[str, str]]:
        """The Visitor List for an operator, then the entries still deregistering."""
        return self.visitors.describe() + [
            e.describe() for e in self.registrations.leaving.values()
        ]

    def findVisitors(self, nai: bytes | None = None, address: IPv6Network | None = None,
                     mac: str | None = None, interface: str | None = None,
                     limit: int | None = None) -> tuple[int, list[VisitorEntry]]:
        """
        The visitors, then the entries still deregistering, matching every
        filter given (the control channel's C{visitors}): the NAI, the MAC,
        the access interface, an address (a /128: the visitor's Local
        Address, or the one its tunnel's prefix holds) or a prefix (the
        visitors whose address is inside it). How many match, and the first
        C{limit} (None: all), ordered as L{describe} orders them. One pass
        over the list: an MPA holds thousands of visitors, not millions.
        """
        def matches(e: VisitorEntry) -> bool:
            if nai is not None and e.nai != nai:
                return False
            if mac is not None and e.mac != mac.lower():
                return False
            if interface is not None and e.interface != interface:
                return False
            if address is not None:
                inside = e.localAddress is not None and IPv6Network(e.localAddress) \
                    .subnet_of(address)
                tunnel = e.tunnel
                if not inside and not (tunnel is not None and address.prefixlen == 128
                                       and address.subnet_of(IPv6Network(
                                           f"{tunnel.mobileAddress}/{tunnel.prefixLength}"))):
                    return False
            return True

        current = sorted((e for e in self.visitors if matches(e)),
                         key=lambda e: (e.interface, e.mac))
        found = current + [e for e in self.registrations.leaving.values() if matches(e)]
        return len(found), found if limit is None else found[:limit]

    def _scheduled(self) -> list[tuple[float, VisitorEntry]]:
        leaving = self.registrations.leaving.values()
        return [(v.deadline, v) for v in [*self.visitors, *leaving] if v.deadline is not None]

    def _liveCount(self) -> int:
        return len(self.visitors) + len(self.registrations.leaving)

    def _live(self, visitor: VisitorEntry) -> bool:
        if visitor.state is _DEREGISTERING:
            return self.registrations.isLeaving(visitor)
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
        for t in (visitor.expires, visitor.holdUntil, visitor.sessionExpires, visitor.departing):
            if t is not None:
                times.append(t)
        return min(times) if times else None

    def _reschedule(self, visitor: VisitorEntry) -> None:
        due = self._dueTime(visitor) if self._live(visitor) else None
        previous = visitor.deadline
        if due == previous:
            return
        visitor.deadline = due
        self._timers.schedule(visitor, due, previous)

    def _runTimers(self, visitor: VisitorEntry, now: float, actions: list[Action]) -> None:
        pending = visitor.pending
        if visitor.state is _DEREGISTERING:
            if pending is not None and pending.due <= now:
                self._retransmit(visitor, now, actions)
            return
        if visitor.sessionExpires is not None and visitor.sessionExpires <= now:
            self._leave(visitor, now, actions, "visitor.session-ended")
            return
        if visitor.departing is not None and visitor.departing <= now:
            # No handover revoked it in time: it left the domain (or moved without
            # this MPA hearing of it); what was held for it goes with its tunnel.
            self._leave(visitor, now, actions, "visitor.detached",
                        "departed: no revocation within attach.departure_hold")
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
        self._refreshOrRetry(visitor, now, actions)

    def _refreshOrRetry(self, visitor: VisitorEntry, now: float, actions: list[Action]) -> None:
        if (
            visitor.state is _REGISTERED
            and visitor.refreshAt is not None
            and visitor.refreshAt <= now
        ):
            visitor.refreshAt = None
            if visitor.localAddress is not None:
                request = RegistrationRequest(False, visitor.localAddress, _prefixLength(visitor))
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
        self._removeTunnel(visitor, actions)
        self.counters["binding.expired"] += 1
        actions.append(
            Note("visitor.expired", {"nai": visitor.naiText, "mac": visitor.mac,
                                     "address": visitor.localAddress,
                                     "lmap": visitor.lmapAddress})
        )

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
        if self._authenticating + self._confirming >= self.maxAuthenticating:
            self.counters["attach.throttled"] += 1
            actions.append(Note("attach.refused", {"mac": mac, "interface": interface,
                                                   "reason": "authenticating",
                                                   "limit": self.maxAuthenticating}))
            return None
        if self.visitors.onInterface(interface) >= self.maxVisitorsPerLink:
            self.counters["attach.link-full"] += 1
            actions.append(Note("attach.refused", {"mac": mac, "interface": interface,
                                                   "reason": "link-full",
                                                   "limit": self.maxVisitorsPerLink}))
            return None
        request = AccessRequest(mac, interface, nai)
        visitor = VisitorEntry(mac, interface, now, now, linkNai=nai, request=request)
        self.visitors.add(visitor)
        self._authenticating += 1
        self.counters["visitor.attached"] += 1
        actions.append(Authenticate(request))
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
        return candidate if inPrefix(candidate, prefix) else None

    def _defaultVirtualMac(self, interface: str) -> str:
        if self.defaultVirtualLmapMac is not None:
            return self.defaultVirtualLmapMac
        return self.interfaceMacs[interface]

    def _move(self, visitor: VisitorEntry, interface: str, actions: list[Action]) -> None:
        """Rule 11: the visitor shows up on another access link of this MPA:
        the same care-of address, so the LMAP needs no PBU; the tunnel follows
        the MS."""
        previous = visitor.interface
        self.visitors.setInterface(visitor, interface)
        self.counters["visitor.moved"] += 1
        if visitor.tunnel is not None:
            tunnel = replace(visitor.tunnel, accessInterface=interface)
            actions.append(RemoveTunnel(visitor.tunnel))
            actions.append(AddTunnel(tunnel))
            visitor.tunnel = tunnel
        if visitor.authenticated:
            actions.append(SendFrame(interface, self.homeLink.unsolicited(visitor)))
        actions.append(
            Note("visitor.moved", {"mac": visitor.mac, "nai": visitor.naiText,
                                   "from": previous, "to": interface})
        )

    def _setState(self, visitor: VisitorEntry, state: VisitorState) -> None:
        if visitor.state is _AUTHENTICATING and state is not _AUTHENTICATING:
            self._authenticating -= 1
        visitor.state = state

    def _removeVisitor(self, visitor: VisitorEntry) -> None:
        """Take C{visitor} out of the list, forget its PBU in flight; the
        relay forgets it too."""
        removed = self.visitors.remove(visitor)
        if removed and visitor.state is _AUTHENTICATING:
            self._authenticating -= 1
        if removed:
            self._stopConfirming(visitor)
        self.registrations.drop(visitor)
        visitor.deadline = None
        if removed and self.relay is not None:
            self.relay.forget(visitor.mac)

    @staticmethod
    def _removeTunnel(visitor: VisitorEntry, actions: list[Action]) -> None:
        """The data plane stops carrying the visitor's tunnel, if it has one."""
        if visitor.tunnel is not None:
            actions.append(RemoveTunnel(visitor.tunnel))
            visitor.tunnel = None

    def _advertiseHomeLink(self, visitor: VisitorEntry, actions: list[Action]) -> None:
        """Rule 3: the home link, advertised once the LMAP answered."""
        visitor.advertised = True
        actions.append(SendFrame(visitor.interface, self.homeLink.unsolicited(visitor)))

    # --- addresses ----------------------------------------------------------

    def _packetFrom(
        self, visitor: VisitorEntry, source: str, now: float, actions: list[Action]
    ) -> None:
        """Rule 5: a packet from a global address that is not the registered one."""
        prefix = visitor.localNetworkPrefix
        if prefix is None or not inPrefix(source, prefix):
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
        is registered or being registered (draft 6.3, figures 8 and 9). In
        RFC 5213's protocol (rule 13) the whole prefix is registered: an
        address inside it changes nothing."""
        if self.perNodePrefixes:
            self.counters["address.in-home-prefix"] += 1
            return
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
        request = RegistrationRequest(False, address, _prefixLength(visitor))
        self._register(visitor, request, now, actions)
        actions.append(
            Note("address.learned", {"mac": visitor.mac, "nai": visitor.naiText,
                                     "address": address, "source": how})
        )

    # --- registration -------------------------------------------------------

    def _register(
        self,
        visitor: VisitorEntry,
        request: RegistrationRequest,
        now: float,
        actions: list[Action],
        refresh: bool = False,
    ) -> None:
        """Send a PBU for C{request} (L{Registrations.register})."""
        actions.append(self.registrations.register(visitor, request, now, refresh))
        visitor.lastRequest = request
        visitor.retryAt = None
        if visitor.state is not _REGISTERED:
            visitor.state = _REGISTERING
        self._reschedule(visitor)

    def _retransmit(self, visitor: VisitorEntry, now: float, actions: list[Action]) -> None:
        pending = visitor.pending
        assert pending is not None
        message = self.registrations.timedOut(visitor, now)
        if message is None:
            self._giveUp(visitor, pending, now, actions)
        else:
            actions.append(message)

    def _giveUp(self, visitor: VisitorEntry, pending: PendingRegistration, now: float,
                actions: list[Action]) -> None:
        """Rule 7: no answer to the last retransmission either."""
        transmissions = pending.tries + 1
        if pending.lifetime == 0:
            self.registrations.forgetLeaving(visitor)
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
        """Rule 10: the visitor is gone: deregister it if it may have a
        binding, remove its tunnel, take it out of the list."""
        deregister = self._mayHaveBinding(visitor)
        address = self._boundAddress(visitor)
        self._removeVisitor(visitor)
        if deregister:
            request = RegistrationRequest(False, address, _prefixLength(visitor))
            actions.append(self.registrations.deregister(visitor, request, now))
            self._reschedule(visitor)
        self._removeTunnel(visitor, actions)
        self.counters[event] += 1
        fields: dict[str, Any] = {"mac": visitor.mac, "nai": visitor.naiText,
                                  "interface": visitor.interface, "address": address,
                                  "deregistered": deregister}
        if reason is not None:
            fields["reason"] = reason
        actions.append(Note(event, fields))

    # --- Proxy Binding Acknowledgement ---------------------------------------

    def _bindingAck(self, ack: BindingAck, source: str, now: float) -> list[Action]:
        registrations = self.registrations
        found = registrations.answering(ack)
        if found is None:
            if ack.status == Status.SEQUENCE_NUMBER_OUT_OF_WINDOW:
                return self._resyncAll(ack, source, now)
            self.counters["pba.unmatched"] += 1
            return []
        visitor, pending = found
        if not registrations.fromItsLmap(visitor, ack, source):
            return self._misnamed(visitor, pending, ack, source)
        actions: list[Action] = []
        status = ack.status
        sign = self.profileMismatches.check(source, ack.options, status, actions)
        if status == Status.SEQUENCE_NUMBER_OUT_OF_WINDOW and not pending.resynced:
            self._resendResynced(visitor, pending, ack.sequence, now, actions)
        elif pending.lifetime == 0:
            registrations.forgetLeaving(visitor)
            self.counters["pba.deregistration"] += 1
            if status >= 128:
                self.counters[f"pba.rejected.{status}"] += 1
        elif status < 128:
            self._accepted(visitor, pending, ack, now, actions, sign)
        elif status == self.profile.bindingCacheEntryMissing and pending.request.confirmation:
            self._missing(visitor, now, actions)
        else:
            self._rejected(visitor, pending, status, now, actions,
                           None if sign is None else f"rejected with status {status}; {sign}")
        self._reschedule(visitor)
        return actions

    def _misnamed(self, visitor: VisitorEntry, pending: PendingRegistration, ack: BindingAck,
                  source: str) -> list[Action]:
        """Rule 8: an answer from the visitor's LMAP naming another MS (RFC
        5213 6.9.1.2: the MAG matches a PBA by its MN-ID) is not its answer:
        dropped, the PBU retransmitted as if unanswered; one note per
        registration names the LMAP and both MSs. Nothing is deregistered:
        the binding it names is another MS's."""
        mnid = ack.option(MobileNodeIdentifier)
        if source != visitor.lmapAddress or mnid is None or pending.misnamed:
            return []
        pending.misnamed = True
        return [Note("pba.nai-mismatch", {
            "lmap": source, "sequence": ack.sequence, "status": int(ack.status),
            "nai": visitor.naiText, "named": mnid.nai})]

    def _resendResynced(
        self, visitor: VisitorEntry, pending: PendingRegistration, lastAccepted: int,
        now: float, actions: list[Action],
    ) -> None:
        actions.append(self.registrations.resync(visitor, pending, lastAccepted, now))
        actions.append(
            Note("registration.resync", {"nai": visitor.naiText, "lmap": visitor.lmapAddress,
                                         "sequence": pending.sequence})
        )

    def _resyncAll(self, ack: BindingAck, source: str, now: float) -> list[Action]:
        """A 135 carrying the LMAP's number for some NAI, not ours: every
        registration in flight to that LMAP (for that NAI, if it says) goes
        again past that number."""
        mnid = ack.option(MobileNodeIdentifier)
        candidates = self.registrations.inFlightTo(
            source, self.visitors.byLmap(source), None if mnid is None else mnid.identifier
        )
        if not candidates:
            self.counters["pba.unmatched"] += 1
            return []
        actions: list[Action] = []
        for visitor in candidates:
            pending = visitor.pending
            assert pending is not None
            self._resendResynced(visitor, pending, ack.sequence, now, actions)
            self._reschedule(visitor)
        return actions

    def _accepted(
        self,
        visitor: VisitorEntry,
        pending: PendingRegistration,
        ack: BindingAck,
        now: float,
        actions: list[Action],
        sign: str | None = None,
    ) -> None:
        counters = self.counters
        self.registrations.drop(visitor)
        visitor.lastStatus = ack.status
        if self.perNodePrefixes:
            found = self._homePrefix(visitor, pending.request, ack, sign)
        else:
            found = self._localAddress(visitor, pending.request, ack, sign)
        address, length, problem = found
        if problem is not None:
            self._invalid(visitor, pending, ack, address, length, problem, sign, now, actions)
            return
        assert address is not None
        visitor.invalidAnswers = 0
        counters["pba.accepted"] += 1
        learnedPrefix = False
        if self.perNodePrefixes:
            prefix = IPv6Network((address, length))
            learnedPrefix = visitor.localNetworkPrefix != prefix
            visitor.localNetworkPrefix = prefix
        elif visitor.localNetworkPrefix is None and length < 128:
            visitor.localNetworkPrefix = IPv6Network((address, length), strict=False)
            learnedPrefix = True
        previous = visitor.tunnel
        first = visitor.state is not _REGISTERED
        tunnel = TunnelBinding(
            address, length if self.perNodePrefixes else 128, self.address, visitor.lmapAddress,
            ROLE_MPA, visitor.interface
        )
        self.visitors.setAddress(visitor, address)
        visitor.state = _REGISTERED
        visitor.registeredAt = now
        self.heartbeats.watch(visitor.lmapAddress, now)
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
            lnp = visitor.localNetworkPrefix
            actions.append(
                Note(
                    "visitor.registered",
                    {"nai": visitor.naiText, "mac": visitor.mac, "address": address,
                     "prefix": "None" if lnp is None else networkText(lnp),
                     "lmap": visitor.lmapAddress,
                     "lifetime": ack.lifetime, "previousAddress":
                         None if previous is None else previous.mobileAddress,
                     # Seconds, for the logs and the latency histograms (lmm.metrics):
                     # since the attach (the first registration after it only) and
                     # since this PBU's first transmission.
                     "sinceAttach": round(now - visitor.attachedAt, 6) if first else None,
                     "sincePbu": round(now - pending.firstSentAt, 6)},
                )
            )
        else:
            counters["binding.refreshed"] += 1

    def _localAddress(self, visitor: VisitorEntry, request: RegistrationRequest,
                      ack: BindingAck, sign: str | None
                      ) -> tuple[str | None, int, tuple[str, str] | None]:
        """Rule 8, the draft's protocol: the address an acceptance binds,
        the length of its LNP, and why it cannot be used (L{_unusable})."""
        option = ack.option(LocalAddress)
        address = request.address
        if option is not None and option.address != "::":
            address = option.address
        if option is None and sign is not None:
            # The address is there under another profile's number.
            address = None
        length = _prefixLength(visitor) if option is None else option.prefixLength
        return address, length, self._unusable(visitor, request, option, address,
                                               ack.lifetime)

    def _homePrefix(self, visitor: VisitorEntry, request: RegistrationRequest,
                    ack: BindingAck, sign: str | None
                    ) -> tuple[str | None, int, tuple[str, str] | None]:
        """Rules 8 and 13, RFC 5213's protocol: the home network prefix an
        acceptance binds (RFC 5213 6.9.1.2: its HNP option), its length, and
        why it cannot be used: none, or C{::}, or one with host bits (the
        draft's Local Address read as an HNP: C{sign}); lifetime 0; another
        prefix than the one asked for."""
        option = ack.option(HomeNetworkPrefix)
        if option is None or option.prefix == "::" or sign is not None:
            return None, 0, ("no-address", "accepted without a home network prefix")
        prefix, length = option.prefix, option.prefixLength
        if ack.lifetime <= 0:
            return prefix, length, ("no-lifetime", "accepted with lifetime 0")
        asked = request.address
        if asked not in (None, "::") and (prefix, length) != (asked, request.prefixLength):
            return prefix, length, ("other-address",
                                    f"accepted with prefix {prefix}/{length}, not the "
                                    f"{asked}/{request.prefixLength} asked for")
        return prefix, length, None

    def _unusable(self, visitor: VisitorEntry, request: RegistrationRequest,
                  option: LocalAddress | None, address: str | None,
                  lifetime: int) -> tuple[str, str] | None:
        """Rule 8: why an acceptance cannot be used, as (counter reason,
        sentence), or None: no address, no lifetime, another address than the
        one asked for, an address outside the LNP the MS is served."""
        if address is None or address == "::":
            return "no-address", "accepted without an address"
        if lifetime <= 0:
            return "no-lifetime", "accepted with lifetime 0"
        asked = request.address
        if option is not None and asked not in (None, "::") and address != asked:
            return "other-address", f"accepted with address {address}, not the {asked} asked for"
        prefix = visitor.localNetworkPrefix
        if prefix is not None and not inPrefix(address, prefix):
            return ("outside-prefix",
                    f"accepted with address {address}, outside the MS's prefix {prefix}")
        return None

    def _invalid(self, visitor: VisitorEntry, pending: PendingRegistration, ack: BindingAck,
                 address: str | None, length: int, problem: tuple[str, str],
                 sign: str | None, now: float, actions: list[Action]) -> None:
        """Rule 8: an acceptance the MPA cannot use. The binding the LMAP
        made is deregistered (it would go stale there), the visitor waits,
        unregistered, and the registration is retried after
        C{retryInterval}, doubling with each such answer in a row up to
        C{2**INVALID_BACKOFF_DOUBLINGS} times it."""
        kind, reason = problem
        if sign is not None:
            reason = f"{reason}; {sign}"
        self.counters[f"pba.invalid.{kind}"] += 1
        entry = replace(visitor, pending=None, tunnel=None, deadline=None, noted=set())
        bound = None if address == "::" else address
        request = RegistrationRequest(False, bound, length if bound else 0)
        actions.append(self.registrations.deregister(entry, request, now))
        self._reschedule(entry)
        self._rejected(visitor, pending, ack.status, now, actions,
                       f"{reason} (deregistered)")
        visitor.invalidAnswers += 1
        visitor.retryAt = now + self.retryInterval * (
            1 << min(visitor.invalidAnswers - 1, INVALID_BACKOFF_DOUBLINGS))

    def _missing(self, visitor: VisitorEntry, now: float, actions: list[Action]) -> None:
        """The LMAP has no binding to confirm: a new MS."""
        self.registrations.drop(visitor)
        status = self.profile.bindingCacheEntryMissing
        visitor.lastStatus = status
        # Every new MS's first answer: not counted as a rejection (issue 14).
        self.counters["pba.confirmation-missing"] += 1
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
        self.registrations.drop(visitor)
        visitor.lastStatus = status
        if status >= 128:
            self.counters[f"pba.rejected.{status}"] += 1
        visitor.failure = reason or f"rejected with status {status}"
        if visitor.state is _REGISTERED:
            # The LMAP refused this MPA for the MS (a refresh, or a newer binding
            # elsewhere): the visitor is no longer bound here, and traffic is not
            # tunnelled on an unconfirmed binding (issue 13, rule 2).
            # It still goes when the old binding would have ended, unless a
            # retry is accepted first.
            self._removeTunnel(visitor, actions)
            self.counters["visitor.unregistered"] += 1
            actions.append(
                Note("visitor.unregistered", {"nai": visitor.naiText, "mac": visitor.mac,
                                              "address": visitor.localAddress,
                                              "lmap": visitor.lmapAddress, "status": status})
            )
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
        return any(e.lmapAddress == source for e in self.registrations.leaving.values())

    def _revocationTargets(
        self, message: BindingRevocationIndication, source: str
    ) -> tuple[list[VisitorEntry], bool]:
        """Rule 9: the visitors C{message} from LMAP C{source} revokes, and
        whether it named a deregistration still in flight (now stopped)."""
        visitors = self.visitors
        if message.globalRevocation:
            return visitors.byLmap(source), False
        mnid = message.option(MobileNodeIdentifier)
        visitor = None
        found = False
        if mnid is not None:
            visitor = visitors.byNai(mnid.identifier)
            leaving = self.registrations.leaving.get(mnid.identifier)
            if leaving is not None and leaving.lmapAddress == source:
                # Already leaving: its binding is elsewhere now, stop deregistering.
                self.registrations.forgetLeaving(leaving)
                found = True
        if visitor is None:
            named = self.profile.addressIn(message)
            if named is not None:
                try:
                    visitor = visitors.byAddress(canonical(named[0]))
                except (OSError, ValueError):
                    visitor = None
        if visitor is not None and visitor.lmapAddress == source:
            return [visitor], found
        return [], found

    def _revocation(
        self, message: BindingRevocationIndication, source: str, now: float
    ) -> list[Action]:
        counters = self.counters
        counters["bri.received"] += 1
        if not self._knownLmap(source):
            counters["bri.unknown-source"] += 1
            return []
        targets, found = self._revocationTargets(message, source)
        actions: list[Action] = []
        notes: list[Action] = []
        handover = message.trigger in _HANDOVER_TRIGGERS
        for visitor in targets:
            if visitor.tunnel is not None and handover:
                # Rule 9: what was held for it, and what it may have left before
                # receiving, go to the LMAP, which sends them on to the new MPA;
                # before the tunnel goes.
                actions.append(ReleaseDownlink(visitor.tunnel, handBack=True))
                counters["visitor.handed-back"] += 1
            self._removeVisitor(visitor)
            self._removeTunnel(visitor, actions)
            if not handover and visitor.request is not None:
                # Revoked for a reason of its own: its next attach asks the AAA server.
                self.authorizations.forget(visitor.request)
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
        mnid = message.option(MobileNodeIdentifier)
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
        """Rule 12: a known LMAP's request answered (anyone else's refused: the
        MPA is no reflector), a response matched; a changed Restart Counter
        is the LMAP's restart: every visitor registered with it is
        registered again at once."""
        actions: list[Action] = []
        beats = self.heartbeats
        if message.response:
            restarted = beats.response(message, source, now, actions)
        else:
            restarted = beats.request(message, source, self._knownLmap(source), now, actions)
        if restarted:
            self._lmapRestarted(source, now, actions)
        return actions

    def _lmapRestarted(self, lmap: str, now: float, actions: list[Action]) -> None:
        sent = 0
        for visitor in self.visitors.byLmap(lmap):
            if (visitor.state is _REGISTERED and visitor.localAddress is not None
                    and visitor.pending is None):
                request = RegistrationRequest(False, visitor.localAddress, _prefixLength(visitor))
                self._register(visitor, request, now, actions, refresh=True)
                self._reschedule(visitor)
                sent += 1
        self.counters["registration.lmap-restarted"] += sent
        actions.append(Note("mpa.lmap-restarted", {"lmap": lmap, "registrations": sent}))

    def _bindingError(self, message: BindingError, source: str, now: float) -> list[Action]:
        self.counters["binding-error.received"] += 1
        return [Note("binding-error.received", {"source": source, "status": message.status})]
