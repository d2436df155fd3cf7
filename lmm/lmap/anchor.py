"""
The LMAP's Proxy Binding Update processing, as a pure state machine.

L{LocalMobilityAnchor} is fed decoded Mobility Header messages and a clock
value (C{now}, seconds, any epoch) and returns a list of actions that the
service carries out in order: L{SendMessage}, L{AddTunnel}, L{RemoveTunnel},
and L{Note} (something worth a log line). It does no I/O and keeps no timers:
L{LocalMobilityAnchor.nextDeadline} says when L{LocalMobilityAnchor.tick} is due.

Rules (draft-gundavelli-netlmm-mip6-proxy-00 sections 4-6 and 9.1, with the
gaps filled from RFC 5213, RFC 5846 and RFC 6275):

 1. A Binding Update without the P flag is answered with the profile's
    "Proxy Registration not supported" status, P clear in the reply; one whose
    source (or Alternate Care-of Address) is not inside a configured MPA
    prefix gets the same status with P set ("proxy registration disabled for
    that MPA"). Nothing is created.
 2. No Mobile Node Identifier option, or one whose subtype is not NAI:
    MISSING_MN_IDENTIFIER_OPTION (160). The NAI is the Binding Cache key.
 3. Lifetime 0 is a deregistration. From the MPA the entry points at: the
    entry goes, its tunnel goes, the reply has status 0 and lifetime 0. From
    another MPA (a late deregistration after a handover): accepted, the
    entry is kept. No entry: accepted.
 4. A Binding Cache Confirmation option asks for the existing entry: found,
    the reply carries its Local Address option (and a PBU from another MPA is
    a handover, rule 8); not found, the profile's "Binding Cache Entry
    missing" status and nothing is created. It takes precedence over a Local
    Address option in the same message.
 5. A Local Address option names the MS's address: it must lie inside one of
    the LMAP's Local Network Prefixes (else NOT_HOME_SUBNET, 132) and not be
    bound to another NAI (else DUPLICATE_ADDRESS_DETECTION_FAILED, 134). The
    LMAP's own address and an LNP's zero-IID address (the Subnet-Router
    anycast address) are refused with ADMINISTRATIVELY_PROHIBITED (129).
    C{::}, or a prefix (prefix length < 128, all bits after it zero) inside an
    LNP, asks the LMAP to assign. An MS with an entry keeps its address (for
    a prefix: if the address is inside it). Otherwise the interface
    identifier is a hash of the NAI (BLAKE2b, so the same MS gets the same
    address again, also after a restart), probing upwards on a collision and
    never using the all-zeros identifier or the LMAP's own address
    (INSUFFICIENT_RESOURCES, 130, when none is free); C{::} assigns from the
    first LNP. Neither option is the same as C{::}. The prefix length in the
    reply is always that of the configured LNP holding the address. A new
    address for an existing NAI replaces the old one (its tunnel is removed,
    the new one added).
 6. The granted lifetime is min(requested, max_lifetime) rounded down to a
    multiple of 4 s (what the wire carries), at least 4 s; the binding
    expires at now + granted. The tunnel (Local Address/128 between the LMAP
    and the MPA) is added before the Proxy Binding Acknowledgement is sent, as
    the draft asks; a refresh from the same MPA for the same address touches
    no tunnel. The care-of address is the source, or the Alternate Care-of
    Address option when present (which must be an MPA too).
 7. Sequence numbers (RFC 6275 9.5.1, 16-bit modulo arithmetic: newer when
    (new - last) mod 2**16 is in 1..32767) are checked only against an entry
    whose care-of address is the same MPA: each MPA numbers its own PBUs, so
    a PBU from another MPA is a handover, accepted whatever its number. An
    old number is answered with SEQUENCE_NUMBER_OUT_OF_WINDOW (135) carrying
    the last accepted number, and nothing changes (L{lmm.signaling.isNewer}).
 8. Handover (draft 6.4): the care-of address moves to the new MPA; the new
    tunnel replaces the old one (one AddTunnel: the data plane replaces the
    route, never removing it; a new address's old tunnel is removed first),
    the PBA is sent to the new MPA, and
    only then a Binding Revocation Indication (RFC 5846; trigger "inter-MAG
    handover, unknown", P set, the NAI and the old Local Address) to the
    previous MPA. The PBA is never held back. The indications waiting for
    their acknowledgement, their retransmission (the protocol's one back-off,
    capped at revocation.max_interval) and their sequence numbers are the
    L{lmm.lmap.revocation.Revocations} sub-machine's; a pending revocation
    towards an MPA is cancelled when the same MS registers there again (it
    came back).
 9. A reply is sent when the BU has the A flag set, or when it is rejected
    (RFC 6275 9.5.1); MPAs set A.
10. A tunnel the data plane could not install (L{LocalMobilityAnchor.tunnelFailed};
    the service dropped what followed the L{AddTunnel}, the PBA included):
    the entry whose tunnel it is goes, and the MPA is answered with
    INSUFFICIENT_RESOURCES (130), lifetime 0, the entry's sequence number --
    sent whatever the A flag, as a rejection is. On a handover or a new
    address the registration replaced is not restored: its tunnel was
    removed before the new one was tried (and a backend replaces a binding
    for the same address), so a restored entry would name a tunnel the data
    plane does not carry, and carrying it again would mean one more change
    asked of a data plane that has just failed, for an MS that has left that
    MPA. The previous MPA's revocation (rule 8) stands: its binding is gone
    either way; the copy held back with the PBA is sent now. The MS is not
    served until the MPA registers again: that is a new binding, and an
    assigned address comes out the same (the NAI hash). A failure whose
    tunnel is no longer the entry's (a deregistration, handover or expiry
    came in between) changes nothing and answers nothing.

11. With protected signaling (L{lmm.security}: the service's codec has
    checked each message's Authentication option and that its Replay
    Protection timestamp is within the window of this clock), the PBUs of
    one MS are ordered by their timestamps, whichever MPA sends them, as
    RFC 5213 5.5 orders them with its Timestamp option; unprotected, by that
    Timestamp option (lmm's MPAs send it then; the codec has checked the
    window; one clock, in NTP units, for both): a PBU not newer than
    the one the entry was last accepted with is answered with
    TIMESTAMP_LOWER_THAN_PREV_ACCEPTED (157) and changes nothing (a replayed
    or late PBU from the MPA the MS left cannot take the binding back). A
    message the codec refused (L{lmm.security.Refused}: no or a wrong
    authenticator, an unknown SPI or peer, no or a stale timestamp) is
    counted under C{refused.<reason>} and answered with nothing: an answer
    would carry the refused message's sequence number to the MPA it names,
    where it could end a registration in flight.

12. Heartbeats (RFC 5847, L{lmm.heartbeat}): the LMAP asks every MPA it
    has registered bindings of, every C{heartbeat.interval} seconds, and
    answers theirs, each message with its Restart Counter (one more at each
    start, kept in the Binding Cache's database). An MPA whose Restart
    Counter changed has restarted and forgotten its visitors: each of its
    bindings not registered since is removed with its tunnel and revoked
    (trigger 7, "possible out-of-sync BCE state"): the new MPA answers
    "binding does not exist", or, had a visitor registered again before the
    restart was seen, drops it, and the MS's next frame registers it anew.

13. Limits: a PBU for a new binding when the Binding Cache holds
    C{maxBindings} (lmap.max_bindings; expired entries not yet reached by
    the timer are removed first) is answered with INSUFFICIENT_RESOURCES
    (130; RFC 5213 8.9, "insufficient resources"), as is one that needs an
    assigned address when every address of the LNP is taken (rule 4).
    Refreshes, handovers and deregistrations of existing bindings are
    served as usual.

14. Peers without revocation (RFC 5846 is optional to an RFC 5213 MAG):
    an MPA gets no Binding Revocation Indications when it is configured so
    (C{withoutRevocation}, revocation.disabled_for), when it answers one
    with a Binding Error "unrecognized MH type" (RFC 6275 9.2; its
    indications in flight are dropped), or when C{SILENT_REVOCATIONS}
    revocations in a row went unanswered past their retransmissions although
    it answered heartbeats since each was sent (silence alone could be an
    outage: rule 2 of L{lmm.lmap.revocation} goes on then; an MPA that has
    acknowledged one does RFC 5846, and its silences stay loss). Logged once
    (C{mpa.without-revocation}), shown by C{peers}; it lasts until the
    daemon restarts. Its MSs' old bindings there end with their lifetime.

15. What an RFC 5213 PBU asks that this LMAP does not do, and another
    profile's signs (issue 16; docs/wire.md, "Profile mismatch"): a Home
    Network Prefix option other than C{::} (in the rfc5213 profile, where
    type 22 is RFC 5213's HNP) is refused with
    NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX (155; RFC 5213 5.3.2, 8.9)
    instead of assigning another address in silence; an HNP of C{::} asks
    for an assigned address, as no Local Address does (RFC 5213 6.9.1.1:
    a MAG asks so). A PBU carrying another profile's Local Address type (an
    unknown option there) or the draft's Local Address read as an HNP
    (L{lmm.mh.foreignProfileSign}) has its MPA named once in a
    C{peer.profile-mismatch} note and in C{peers}. Every rejection carries
    the Mobile Node Identifier when the PBU had one (RFC 5213 5.3.6).

16. RFC 5213's protocol (the rfc5213 wire profile, issue 16): each MS
    gets a home network prefix of its own (C{homeNetworkPrefixLength}, 64
    by default), delegated from the LNPs, which are pools then, and its
    tunnel routes that prefix. A PBU must carry the Home Network Prefix,
    Handoff Indicator and Access Technology Type options (RFC 5213 5.3.1:
    else 158, 161, 162). An HNP of C{::} (0::/0, 6.9.1.1) asks: the MS's
    binding keeps its prefix, else one is delegated by the NAI's hash as
    in rule 5 (never the one holding the LMAP's own address; 130 when none
    is free). A prefix asked for is honoured when it is a free prefix of
    that length in a pool (RFC 5213 5.3.2: else 155,
    NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX) and the MS's binding does not
    hold another (159, BCE_PBU_PREFIX_SET_DO_NOT_MATCH). Every PBA carries
    RFC 5213 5.3.6's options: the MN-ID, the home network prefix (a
    rejection: the request's HNP, if it had one), and the request's Handoff
    Indicator, Access Technology Type, Mobile Node Link-layer Identifier,
    Link-local Address and Timestamp; a revocation names the MS and its
    prefix (RFC 5846 6.1). The Binding Cache is keyed by the NAI alone (one
    interface per MS, as in the draft): the Handoff Indicator is echoed but
    decides nothing -- a PBU from another MPA is a handover (rule 8), also
    with "attachment over a new interface" (1), where RFC 5213 5.4.1 would
    open a second mobility session for a multihomed MS.

Also: an entry whose expiry has passed is gone, even if L{tick} has not run
yet (a PBU finds it expired: removed, and the PBU is processed as if there
were none). An unknown
Mobility Header type is answered with a Binding Error, status 2 (RFC 6275
9.2), at most C{bindingErrorRate} per second (RFC 6275 asks for ICMP-like
rate limiting).

Expiries sit in a heap of (time, NAI) with lazy deletion
(L{lmm.signaling.Deadlines}): a refresh that extends a binding pushes nothing;
when its old time comes up the item is moved to the entry's current expiry,
so a binding refreshed any number of times has one item.

Notes come after the tunnel changes and messages of the same event. The
counters are listed in L{COUNTERS} and L{lmm.lmap.revocation.COUNTERS}.

Over 600 lines: most of it is the rules above and the address and prefix
assignment they need; the revocations are a module of their own (L{lmm.lmap.revocation}).
"""

from __future__ import annotations

import heapq
import socket
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from ipaddress import IPv6Network
from typing import Any

from lmm.actions import AddTunnel, Note, RemoveTunnel, SendMessage, dispatch
from lmm.heartbeat import HeartbeatPolicy, Heartbeats
from lmm.inet import addressToInt, intToAddress
from lmm.lmap.cache import BindingCache, BindingCacheEntry, BindingStore
from lmm.lmap.revocation import Revocation, Revocations
from lmm.mh import (
    LIFETIME_UNIT,
    MAX_LIFETIME,
    MN_ID_SUBTYPE_NAI,
    AccessTechnologyType,
    AlternateCareOfAddress,
    BindingAck,
    BindingCacheConfirmation,
    BindingError,
    BindingErrorStatus,
    BindingRevocationAck,
    BindingUpdate,
    HandoffIndicatorOption,
    Heartbeat,
    HomeNetworkPrefix,
    LinkLocalAddress,
    LocalAddress,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    MobilityHeaderError,
    MobilityMessage,
    MobilityOption,
    ReplayProtection,
    RevocationTrigger,
    Status,
    Timestamp,
    UnknownMessageType,
    UnknownOption,
    WireProfile,
)
from lmm.security import Refused, ntpFromRfc5213
from lmm.signaling import (
    MAX_BINDACK_TIMEOUT,
    Deadlines,
    ProfileMismatches,
    RetransmissionPolicy,
    earliest,
    isNewer,
)
from lmm.tunnel import ROLE_LMAP, TunnelBinding

__all__ = [
    "Action",
    "AddTunnel",
    "COUNTERS",
    "LocalMobilityAnchor",
    "Note",
    "RemoveTunnel",
    "SendMessage",
]

# The actions are lmm.actions' (shared with the MPA), re-exported for the service.
Action = SendMessage | AddTunnel | RemoveTunnel | Note


#: What the anchor counts (the revocations' counters are in L{lmm.lmap.revocation}).
#: C{<...>} stands for a value.
COUNTERS = {
    "pbu.accepted": "Binding Updates accepted (registrations, refreshes, deregistrations)",
    "pbu.rejected.<status>": "Binding Updates rejected, by status",
    "pbu.confirmation-missing": "confirmations of no binding: a new MS (rule 4; answered "
                                "with the profile's Binding Cache Entry missing, no refusal)",
    "binding.created": "new bindings",
    "binding.cache-full": "new bindings refused: the Binding Cache held lmap.max_bindings",
    "binding-error.received": "Binding Errors from anyone (rule 14 reads those of MPAs)",
    "mpa.without-revocation": "MPAs found not to do RFC 5846: no more revocations to them",
    "bri.not-sent": "revocations not sent: the MPA gets none (rule 14)",
    "peer.profile-mismatch": "PBUs carrying another wire profile's options (rule 15)",
    "pbu.handover": "bindings moved to another MPA",
    "binding.address-changed": "bindings given another address by the same MPA",
    "pbu.deregistered": "bindings deregistered by their MPA",
    "pbu.deregistered.stale": "late deregistrations from an MPA the MS left",
    "pbu.deregistered.unknown": "deregistrations of no binding",
    "binding.expired": "bindings expired unrefreshed",
    "binding.resumed": "bindings of a previous run taken up at start (a persistent store)",
    "binding.tunnel-failed": "bindings dropped: the data plane could not install their tunnel",
    "binding.tunnel-failed.stale": "tunnel failures of a binding changed since",
    "binding.peer-restarted": "bindings removed (and revoked): their MPA restarted (rule 12)",
    "binding.revoked": "bindings revoked by the operator (the control channel's revoke)",
    "binding.revoke-unknown": "operator revocations of no live binding",
    "ignored.<message type>": "Mobility Header messages of a kind the LMAP takes none of",
    "malformed.<reason>": "Mobility Header messages that did not decode, by reason",
    "refused.<reason>": "messages refused by the signaling's protection (rule 11), by reason",
    "binding-error.sent": "Binding Errors sent (unknown MH type, RFC 6275 9.2)",
    "binding-error.rate-limited": "Binding Errors not sent: over bindingErrorRate",
    "expiry-heap.compacted": "rebuilds of the expiry heap",
}

# --- helpers ----------------------------------------------------------------

_AF6 = socket.AF_INET6
_pton = socket.inet_pton
_ntop = socket.inet_ntop
# Assignment probes at most this many interface identifiers before giving up.
_MAX_PROBES = 1 << 16

#: Rule 14: revocations unanswered in a row (their retransmissions spent)
#: while the MPA answers heartbeats, before it is taken for one without RFC 5846.
SILENT_REVOCATIONS = 3

#: lmap.home_network_prefix_length's default: what SLAAC needs on an
#: Ethernet-like access link (RFC 4862 5.5.3, RFC 2464 4).
DEFAULT_HOME_NETWORK_PREFIX_LENGTH = 64

#: lmap.max_bindings' default: bounds memory (about 0.8 kB a binding, with
#: the SQLite store's copy) under a flood of new NAIs from an MPA.
DEFAULT_MAX_BINDINGS = 1_000_000
# Remembered MPA decisions; the cache is emptied when a flood of spoofed
# sources fills it.
_MPA_CACHE_SIZE = 1 << 16
# Every Sequence Number as one shared int (2.5 MB once): an entry keeps the one
# of its last registration, and a decoded one is an object of its own each time
# (28 bytes a binding at a million).
_SEQUENCES = tuple(range(1 << 16))


def _naiText(nai: bytes) -> str:
    return nai.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class _Prefix:
    """A Local Network Prefix as integers, for membership tests on the hot path."""

    network: int
    length: int
    hostMask: int


#: What RFC 5213 5.3.6 has a PBA copy from its PBU, besides the MN-ID; the
#: Home Network Prefix only into a rejection (an acceptance names the
#: binding's).
_ECHOED = (HandoffIndicatorOption, AccessTechnologyType, MobileNodeLinkLayerIdentifier,
           LinkLocalAddress, Timestamp)


def _echoed(options: Sequence[MobilityOption], withPrefix: bool) -> tuple[MobilityOption, ...]:
    """The first of each option of C{_ECHOED} (and the HNP, C{withPrefix}) in
    C{options}, HNP first, then in the order the RFC lists them."""
    found: dict[type, MobilityOption] = {}
    for option in options:
        kind = type(option)
        if (kind in _ECHOED or (withPrefix and kind is HomeNetworkPrefix)) \
                and kind not in found:
            found[kind] = option
    order = (HomeNetworkPrefix, *_ECHOED) if withPrefix else _ECHOED
    return tuple(found[kind] for kind in order if kind in found)


def _required(prefix: HomeNetworkPrefix | None, seen: set[type]) -> None:
    """RFC 5213 5.3.1, items 5-7 (the MN-ID's is rule 2): a PBU of RFC
    5213's protocol without its HNP, Handoff Indicator or Access Technology
    Type option is refused (158, 161, 162)."""
    if prefix is None:
        raise _Rejected(Status.MISSING_HOME_NETWORK_PREFIX_OPTION,
                        "no Home Network Prefix option")
    if HandoffIndicatorOption not in seen:
        raise _Rejected(Status.MISSING_HANDOFF_INDICATOR_OPTION, "no Handoff Indicator option")
    if AccessTechnologyType not in seen:
        raise _Rejected(Status.MISSING_ACCESS_TECH_TYPE_OPTION,
                        "no Access Technology Type option")


class _Rejected(Exception):
    """A PBU that gets a rejection status; raised inside PBU processing only."""

    def __init__(self, status: int, reason: str, sequence: int | None = None,
                 routine: bool = False) -> None:
        self.status = status
        self.reason = reason
        self.sequence = sequence
        # The expected answer of normal operation, not a refusal (rule 4).
        self.routine = routine


# --- the anchor -------------------------------------------------------------


class LocalMobilityAnchor:
    """
    The LMAP's Binding Cache and Proxy Binding Update processing; see the
    module docstring for the rules.

    @ivar counters: named event counts, for statistics (L{COUNTERS} and
        L{lmm.lmap.revocation.COUNTERS}).
    @ivar store: the L{lmm.interfaces.IBindingStore} provider holding the entries.
    @ivar revocations: the L{Revocations} sub-machine.
    """

    def __init__(
        self,
        address: str,
        prefixes: Sequence[IPv6Network],
        mpas: Sequence[IPv6Network],
        maxLifetime: int,
        profile: WireProfile,
        revocationTimeout: float,
        revocationRetries: int,
        store: BindingStore | None = None,
        bindingErrorRate: float = 10.0,
        revocationMaxInterval: float = MAX_BINDACK_TIMEOUT,
        heartbeat: HeartbeatPolicy | None = None,
        restartCounter: int = 0,
        maxBindings: int = DEFAULT_MAX_BINDINGS,
        withoutRevocation: Sequence[IPv6Network] = (),
        homeNetworkPrefixLength: int = DEFAULT_HOME_NETWORK_PREFIX_LENGTH,
    ) -> None:
        if not prefixes:
            raise ValueError("an LMAP needs at least one Local Network Prefix")
        if maxLifetime < LIFETIME_UNIT:
            raise ValueError(f"maxLifetime {maxLifetime} is under {LIFETIME_UNIT} s")
        self._addressValue = addressToInt(address)
        self.address = intToAddress(self._addressValue)
        self.prefixes = [IPv6Network(p) for p in prefixes]
        self._prefixes = [
            _Prefix(int(p.network_address), p.prefixlen, int(p.hostmask)) for p in self.prefixes
        ]
        # Rule 16: what a binding binds -- an address and its /128 tunnel
        # (the draft), or a home network prefix of its own (RFC 5213), each
        # delegated from the LNPs, which are pools then.
        self.perNodePrefixes = profile.perNodePrefixes
        self.homeNetworkPrefixLength = homeNetworkPrefixLength
        if self.perNodePrefixes:
            if not 1 <= homeNetworkPrefixLength <= 128:
                raise ValueError(f"homeNetworkPrefixLength {homeNetworkPrefixLength} "
                                 "is not 1..128")
            for pool in self.prefixes:
                if pool.prefixlen > homeNetworkPrefixLength:
                    raise ValueError(f"{pool} is longer than the /{homeNetworkPrefixLength} "
                                     "home network prefixes delegated from it")
        self._tunnelLength = homeNetworkPrefixLength if self.perNodePrefixes else 128
        self._lifetimes: dict[int, int] = {}
        self._shift = 128 - self._tunnelLength
        self.mpas = [IPv6Network(p) for p in mpas]
        self._mpaNetworks = [(int(p.network_address), int(p.netmask)) for p in self.mpas]
        self._mpaCache: dict[str, str | None] = {}
        # What the wire can carry, rounded down to whole units.
        self.maxLifetime = min(maxLifetime, MAX_LIFETIME) // LIFETIME_UNIT * LIFETIME_UNIT
        self.maxBindings = maxBindings
        self.profile = profile
        self.store: BindingStore = BindingCache() if store is None else store
        self.counters: Counter[str] = Counter()
        try:
            policy = RetransmissionPolicy(revocationTimeout, revocationRetries,
                                          revocationMaxInterval)
        except ValueError as e:
            raise ValueError(f"revocation: {e}") from None
        self.revocations = Revocations(policy, self.counters, self._revocationUnanswered,
                                       profile.addressOption)
        # Rule 14: the MPAs that get no revocations, and why; those configured
        # so, by prefix; who has acknowledged one; unanswered ones in a row.
        self.revocationless: dict[str, str] = {}
        self._withoutRevocation = [(int(n.network_address), int(n.netmask))
                                   for n in map(IPv6Network, withoutRevocation)]
        self._revocationAnswered: set[str] = set()
        self._revocationsUnanswered: Counter[str] = Counter()
        self.heartbeats = Heartbeats(heartbeat or HeartbeatPolicy(interval=0), restartCounter,
                                     self.counters)
        # Rule 15: peers whose PBUs carry another wire profile's signs.
        self.profileMismatches = ProfileMismatches(profile, self.counters)

        # Binding expiries; an adopted store's entries expire like new ones.
        store = self.store
        self._expiries: Deadlines[bytes] = Deadlines(
            self._expiryOf, lambda: [(e.expires, e.nai) for e in store], store.__len__,
            self.counters, "expiry-heap.compacted",
        )

        self._bindingErrorRate = bindingErrorRate
        self._bindingErrorTokens = max(1.0, bindingErrorRate)
        self._bindingErrorStamp: float | None = None

        self._handlers: dict[type, Callable[[Any, str, float], list[Action]]] = {
            BindingUpdate: self._bindingUpdate,
            BindingRevocationAck: self._revocationAck,
            BindingError: self._bindingError,
            Heartbeat: self._heartbeat,
        }

    # --- input --------------------------------------------------------------

    def receive(self, message: MobilityMessage, source: str, now: float) -> list[Action]:
        """Process one decoded message from C{source}; return what to do, in order."""
        return dispatch(self._handlers, self.counters, message, source, now)

    def malformed(self, error: MobilityHeaderError, source: str, now: float) -> list[Action]:
        """A packet from C{source} that did not decode: count it, and answer an
        unknown message type with a Binding Error (RFC 6275 9.2). One the
        codec refused (rule 11) is counted and answered with nothing."""
        if isinstance(error, Refused):
            self.counters["refused." + error.reason] += 1
            return []
        self.counters["malformed." + error.reason] += 1
        if not isinstance(error, UnknownMessageType):
            return []
        if not self._bindingErrorAllowed(now):
            self.counters["binding-error.rate-limited"] += 1
            return []
        self.counters["binding-error.sent"] += 1
        # No Home Address option came with it: the Home Address field is "::".
        return [SendMessage(BindingError(BindingErrorStatus.UNRECOGNIZED_MH_TYPE), source)]

    def tunnelFailed(
        self, binding: TunnelBinding, error: BaseException, now: float
    ) -> list[Action]:
        """
        The data plane could not install C{binding}, asked for by an
        L{AddTunnel}: its C{addBinding} raised C{error}, or its Deferred failed
        with it. The service has dropped what followed the AddTunnel (the PBA
        with status 0, a handover's revocation); these actions replace them.

        Rule 10 of the module docstring: the entry whose tunnel it is goes,
        also after a handover or an address change (a failed replacement
        leaves neither tunnel carried, ITunnelDataPlane.addBinding, and an
        address change's old tunnel was removed first; restoring the entry
        would name a tunnel nobody carries), and its MPA gets INSUFFICIENT_RESOURCES (130)
        with lifetime 0. A handover's held-back revocation is sent, since the
        previous MPA's binding is gone either way.

        The answer goes to the entry's care-of address, the tunnel's far end:
        the cache does not keep a PBU's source, which differs from it only
        when the PBU carried an Alternate Care-of Address.
        """
        counters = self.counters
        reason = str(error) or type(error).__name__
        entry = self.store.getByAddress(binding.mobileAddress)
        if entry is None or entry.tunnel != binding:
            # Superseded (deregistered, handed over, expired): nothing of it
            # is left to undo, and its PBU is no longer the one to answer.
            counters["binding.tunnel-failed.stale"] += 1
            return [
                Note(
                    "binding.tunnel-failed",
                    {"nai": None, "address": binding.mobileAddress,
                     "careOf": binding.remoteEndpoint, "error": reason, "stale": True},
                )
            ]
        nai = entry.nai
        careOf = entry.careOfAddress
        self.store.remove(nai)
        counters["binding.tunnel-failed"] += 1
        status = Status.INSUFFICIENT_RESOURCES
        actions: list[Action] = [
            SendMessage(BindingAck(status, entry.sequence, 0, (MobileNodeIdentifier(nai),),
                                   proxy=True), careOf)
        ]
        previous: str | None = None
        revocation = self.revocations.heldBack(entry.nai, entry.updated)
        if revocation is not None:
            previous = revocation.destination
            actions.append(SendMessage(revocation.message, previous))
        actions.append(
            Note(
                "binding.tunnel-failed",
                {"nai": _naiText(nai), "address": entry.localAddress, "careOf": careOf,
                 "status": status, "sequence": entry.sequence, "previous": previous,
                 "error": reason, "stale": False},
            )
        )
        return actions

    def tick(self, now: float) -> list[Action]:
        """Do everything due by C{now}: binding expiry, revocation retransmission."""
        actions: list[Action] = []
        self._expireDue(now, actions)
        self.revocations.tick(now, actions)  # type: ignore[arg-type]
        self.heartbeats.tick(now, actions)
        return actions

    def _expireDue(self, now: float, actions: list[Action]) -> None:
        store = self.store
        for nai in self._expiries.due(now):
            entry = store.get(nai)
            assert entry is not None
            self._expire(entry, actions)

    def nextDeadline(self) -> float | None:
        """When L{tick} next has something to do, or None. It tidies the heaps
        (drops and requeues stale items) and changes no binding."""
        return earliest(self._expiries.next(), self.revocations.nextDeadline(),
                        self.heartbeats.nextDeadline())

    def earliestFiled(self) -> float | None:
        """The earliest deadline filed since L{nextDeadline} or the last call
        of this, or None: after an input, enough to re-arm a timer that
        L{nextDeadline} set, without tidying (L{lmm.signaling.Deadlines.takeEarliest}:
        the timer fires early at worst, and L{nextDeadline} then re-arms it)."""
        return earliest(self._expiries.takeEarliest(), self.revocations.earliestFiled(),
                        self.heartbeats.earliestFiled())

    def stop(self, now: float) -> list[Action]:
        """The daemon stops: remove every binding's tunnel and forget pending
        revocations. The store keeps its entries, so that a persistent store
        can be adopted by the next anchor."""
        actions: list[Action] = [RemoveTunnel(entry.tunnel) for entry in self.store]
        self.revocations.clear()
        actions.append(Note("lmap.stopped", {"bindings": len(actions)}))
        return actions

    def resume(self, now: float) -> list[Action]:
        """
        The daemon starts with a store that kept a previous run's entries (a
        persistent one; an in-memory store starts empty): each binding still
        alive gets its tunnel again (a data plane that adopted the previous
        run's gets nothing new), an expired one goes (its leftover tunnel
        with it), and the revocations that were in flight are sent again
        (L{Revocations.restore}).
        """
        actions: list[Action] = []
        resumed = 0
        for entry in list(self.store):
            if entry.expires <= now:
                self._expire(entry, actions)
            else:
                actions.append(AddTunnel(entry.tunnel))
                self.heartbeats.watch(entry.careOfAddress, now)
                resumed += 1
        rows, lastSequence = self.store.loadRevocations()
        sends = self.revocations.restore(rows, lastSequence, now)
        actions.extend(sends)
        self.counters["binding.resumed"] += resumed
        actions.append(Note("lmap.resumed", {"bindings": resumed, "revocations": len(sends)}))
        return actions

    # --- the operator's (the control channel's bindings and revoke) ----------

    def findBindings(self, now: float, nai: bytes | None = None,
                     address: IPv6Network | None = None, mpa: str | None = None,
                     limit: int | None = None) -> tuple[int, list[BindingCacheEntry]]:
        """
        The live entries matching every filter given: the NAI; an address
        (a /128: the entry binding it, its own address or, with per-node
        prefixes, the home network prefix holding it) or a prefix (the
        entries inside it); the MPA (care-of address, canonical text). How
        many match, and the first C{limit} of them by NAI (None: all). The
        NAI and an address are index lookups; a prefix or an MPA alone reads
        the whole Binding Cache once (a million entries: well under a second).
        """
        candidates: Any
        if nai is not None:
            entry = self.store.get(nai)
            candidates = () if entry is None else (entry,)
        else:
            candidates = self.store
        if address is not None and address.prefixlen == 128:
            bound = self._bindingOf(int(address.network_address))
            candidates = bound if nai is None else [e for e in candidates if e in bound]
        elif address is not None:
            low, high = int(address.network_address), int(address.broadcast_address)
            candidates = (e for e in candidates if low <= addressToInt(e.localAddress) <= high)
        if mpa is not None:
            candidates = (e for e in candidates if e.careOfAddress == mpa)
        matches = [e for e in candidates if e.expires > now]
        if limit is not None and len(matches) > limit:
            return len(matches), heapq.nsmallest(limit, matches, key=lambda e: e.nai)
        return len(matches), sorted(matches, key=lambda e: e.nai)

    def _bindingOf(self, value: int) -> tuple[BindingCacheEntry, ...]:
        """The entry binding the address C{value}: its Local Address, or (per-
        node prefixes) its home network prefix."""
        entry = self.store.getByAddress(intToAddress(value))
        if entry is None and self.perNodePrefixes:
            entry = self.store.getByAddress(intToAddress(value >> self._shift << self._shift))
        return () if entry is None else (entry,)

    def revoke(self, nai: bytes, now: float) -> list[Action]:
        """
        The operator revokes C{nai}'s binding (the control channel's
        C{revoke}): the entry goes with its tunnel, and its MPA is sent a
        Binding Revocation Indication (RFC 5846, trigger "administrative
        reason", retransmitted as a handover's is, rule 8, while the binding
        may live there) -- unless that MPA gets no revocations (rule 14):
        then the binding goes here only, and the MPA's next refresh
        registers it again. The last action is a Note saying which:
        C{binding.revoked} (C{indication} true or false, and why not), or
        C{binding.revoke-unknown} when there is no live binding of C{nai}.
        """
        entry = self.store.get(nai)
        actions: list[Action] = []
        if entry is not None and entry.expires <= now:
            self._expire(entry, actions)  # gone already, the timer not there yet
            entry = None
        if entry is None:
            self.counters["binding.revoke-unknown"] += 1
            actions.append(Note("binding.revoke-unknown", {"nai": _naiText(nai)}))
            return actions
        self.store.remove(entry.nai)
        actions.append(RemoveTunnel(entry.tunnel))
        self.counters["binding.revoked"] += 1
        mpa = entry.careOfAddress
        indication = self._revokes(mpa)
        if indication:
            actions.append(self.revocations.revoke(
                mpa, MobileNodeIdentifier(entry.nai), entry.localAddress, entry.prefixLength,
                now, RevocationTrigger.ADMINISTRATIVE_REASON, entry.expires))
        actions.append(Note("binding.revoked", {
            "nai": _naiText(entry.nai), "address": f"{entry.localAddress}/{entry.prefixLength}",
            "mpa": mpa, "indication": indication,
            "withoutRevocation": None if indication else self.revocationless.get(mpa)}))
        return actions

    def _expiryOf(self, nai: bytes) -> float | None:
        entry = self.store.get(nai)
        return None if entry is None else entry.expires

    # --- Proxy Binding Update ----------------------------------------------

    def _bindingUpdate(self, bu: BindingUpdate, source: str, now: float) -> list[Action]:
        """Rules 1-9: a Binding Update from C{source}, in protocol steps:
        the request's options (L{_request}), the entry and its sequence
        number, a deregistration, the address (L{_address}), then create
        (L{_create}), refresh or move (L{_move}) the binding."""
        actions: list[Action] = []
        nai: bytes | None = None
        try:
            if not bu.proxy:
                # The draft's 4.2: P is set in the reply only if it was in the BU.
                self._reject(
                    actions, bu, source, None, self.profile.proxyRegistrationNotSupported,
                    "not a proxy registration", proxy=False,
                )
                return actions
            mpa, careOf, mnid, localAddress, confirmation, timestamp, prefix = self._request(
                bu, source, actions)
            nai = mnid.identifier
            entry = self.store.get(nai)
            if entry is not None and entry.expires <= now:
                self._expire(entry, actions)
                entry = None
            sameMpa = entry is not None and entry.careOfAddress == careOf
            if sameMpa and not isNewer(bu.sequence, entry.sequence):  # type: ignore[union-attr]
                # The reply carries the last accepted number (RFC 6275 9.5.1).
                raise _Rejected(
                    Status.SEQUENCE_NUMBER_OUT_OF_WINDOW, "sequence number not newer",
                    entry.sequence,  # type: ignore[union-attr]
                )
            if timestamp and entry is not None and timestamp <= entry.timestamp:
                raise _Rejected(Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED,
                                "timestamp not newer than the binding's")
            if bu.lifetime == 0:
                self._deregister(actions, bu, mpa, careOf, mnid, entry, localAddress, sameMpa)
                return actions
            if entry is None and len(self.store) >= self.maxBindings:
                self._full(now, actions)
            address, prefixLength = self._address(confirmation, localAddress, prefix, nai,
                                                  entry, now, actions)
        except _Rejected as rejection:
            self._reject(
                actions, bu, source, nai, rejection.status, rejection.reason, rejection.sequence,
                routine=rejection.routine,
            )
            return actions
        granted = bu.lifetime
        if granted > self.maxLifetime:
            granted = self.maxLifetime
        elif granted % LIFETIME_UNIT or granted < LIFETIME_UNIT:
            granted = self._grant(granted)
        # One int object per value, not one per binding (memory per binding).
        granted = self._lifetimes.setdefault(granted, granted)
        self.counters["pbu.accepted"] += 1
        if entry is None:
            self._create(actions, bu, mpa, careOf, mnid, address, prefixLength, granted, now,
                         timestamp)
        elif sameMpa and address == entry.localAddress:
            # The hot path, inline: a refresh touches no tunnel. An extended
            # binding keeps its heap item (requeued lazily); only a shortened
            # one needs an earlier item.
            expires = now + granted
            if expires < entry.expires:
                self._expiries.schedule(nai, expires, entry.expires)
            entry.lifetime = granted
            entry.sequence = _SEQUENCES[bu.sequence]
            entry.updated = now  # and so expires
            if timestamp:
                entry.timestamp = timestamp
            self.store.put(entry)
            if bu.ack:
                actions.append(self._ack(bu, granted, address, prefixLength, mpa, mnid))
        else:
            self._move(actions, bu, mpa, careOf, mnid, entry, address, prefixLength, granted,
                       sameMpa, now, timestamp)
        return actions

    def _full(self, now: float, actions: list[Action]) -> None:
        """Rule 13: a new binding when the cache holds C{maxBindings}. Expired
        entries the timer has not reached yet make room first."""
        self._expireDue(now, actions)
        if len(self.store) >= self.maxBindings:
            self.counters["binding.cache-full"] += 1
            raise _Rejected(Status.INSUFFICIENT_RESOURCES,
                            f"the Binding Cache is full ({self.maxBindings} bindings, "
                            "lmap.max_bindings)")

    def _request(
        self, bu: BindingUpdate, source: str, actions: list[Action]
    ) -> tuple[str, str, MobileNodeIdentifier, LocalAddress | None, bool, int,
               HomeNetworkPrefix | None]:
        """Rules 1, 2, 6, 11, 15 and 16: the BU's MPA and care-of address
        (both allowed MPAs), its NAI, its Local Address option, whether it
        asks for a confirmation, its Replay Protection timestamp (0: none),
        and (RFC 5213's protocol) its Home Network Prefix option; the first
        of each option counts. An option that may be another profile's (an
        unknown one, a Home Network Prefix in the draft's protocol, RFC
        5213's Handoff Indicator and Access Technology Type there, the
        draft's confirmation in RFC 5213's) goes to L{_foreign}."""
        mpa = self._mpaOf(source)
        if mpa is None:
            raise _Rejected(
                self.profile.proxyRegistrationNotSupported, "source is not an allowed MPA"
            )
        mnid: MobileNodeIdentifier | None = None
        localAddress: LocalAddress | None = None
        confirmation = False
        timestamp = 0
        careOf = mpa
        others: list[MobilityOption] = []
        for option in bu.options:
            # type() is: the option classes are final, and this is the hot path.
            kind = type(option)
            if kind is MobileNodeIdentifier:
                if mnid is None:
                    mnid = option  # type: ignore[assignment]
            elif kind is LocalAddress:
                if localAddress is None:
                    localAddress = option  # type: ignore[assignment]
            elif kind is BindingCacheConfirmation:
                confirmation = True
            elif kind is ReplayProtection or kind is Timestamp:
                # One clock for both (rule 11): NTP units.
                timestamp = timestamp or (
                    option.timestamp if kind is ReplayProtection  # type: ignore[attr-defined]
                    else ntpFromRfc5213(option.timestamp))  # type: ignore[attr-defined]
            elif kind is AlternateCareOfAddress:
                assert isinstance(option, AlternateCareOfAddress)
                alternate = self._mpaOf(option.address)
                if alternate is None:
                    raise _Rejected(
                        self.profile.proxyRegistrationNotSupported,
                        "alternate care-of address is not an allowed MPA",
                    )
                careOf = alternate
            else:
                others.append(option)
        if mnid is None or mnid.subtype != MN_ID_SUBTYPE_NAI:
            raise _Rejected(Status.MISSING_MN_IDENTIFIER_OPTION, "no NAI Mobile Node Identifier")
        prefix = None
        if others or self.perNodePrefixes:
            prefix = self._others(bu, source, others, confirmation, actions)
        return mpa, careOf, mnid, localAddress, confirmation, timestamp, prefix

    def _others(self, bu: BindingUpdate, source: str, others: Sequence[MobilityOption],
                confirmation: bool, actions: list[Action]) -> HomeNetworkPrefix | None:
        """Rules 15 and 16, for L{_request}: the PBU's options off the draft's
        hot path. Its Home Network Prefix option in RFC 5213's protocol
        (whose HNP, Handoff Indicator and Access Technology Type options a
        PBU must carry: L{_required}), else None. An option that may be
        another profile's (an unknown one, a Home Network Prefix -- the
        draft's Local Address read as one --, RFC 5213's Handoff Indicator
        and Access Technology Type in the draft's protocol, the draft's
        confirmation in RFC 5213's) goes to L{_foreign}."""
        perNode = self.perNodePrefixes
        prefix: HomeNetworkPrefix | None = None
        kinds = {type(option) for option in others}
        for option in others:
            if type(option) is HomeNetworkPrefix:
                prefix = option  # type: ignore[assignment]
                break
        rfc5213 = HandoffIndicatorOption in kinds or AccessTechnologyType in kinds
        if (prefix is not None or UnknownOption in kinds or (rfc5213 and not perNode)
                or (confirmation and perNode)):
            self._foreign(bu, source, prefix, actions)
        if not perNode:
            return None
        _required(prefix, kinds)
        return prefix

    def _foreign(self, bu: BindingUpdate, source: str, prefix: HomeNetworkPrefix | None,
                 actions: list[Action]) -> None:
        """Rule 15: a PBU with an option that may be another profile's:
        another profile's signs are named. In the draft's protocol a Home
        Network Prefix other than C{::} is refused (none is delegated; C{::}
        asks for the address the LMAP assigns, as no Local Address does);
        in RFC 5213's, rule 16 decides."""
        self.profileMismatches.check(source, bu.options, None, actions)
        if not self.perNodePrefixes and prefix is not None and prefix.prefix != "::":
            raise _Rejected(
                Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                f"Home Network Prefix {prefix.prefix}/{prefix.prefixLength} asked for: this "
                "LMAP delegates no prefixes (it assigns addresses in its Local Network Prefixes)",
            )

    def _address(
        self,
        confirmation: bool,
        localAddress: LocalAddress | None,
        prefix: HomeNetworkPrefix | None,
        nai: bytes,
        entry: BindingCacheEntry | None,
        now: float,
        actions: list[Action],
    ) -> tuple[str, int]:
        """Rules 4 and 5: the Local Address the registration binds, and the
        length of the LNP holding it; L{_Rejected} when it cannot have one.
        In RFC 5213's protocol (C{prefix}, the PBU's HNP option): rule 16."""
        if prefix is not None:
            return self._homePrefix(prefix, nai, entry, now, actions)
        if confirmation:
            if entry is None:
                raise _Rejected(
                    self.profile.bindingCacheEntryMissing, "no Binding Cache entry to confirm",
                    routine=True,
                )
            return entry.localAddress, entry.prefixLength
        if localAddress is None:
            if entry is not None:
                return entry.localAddress, entry.prefixLength
            return self._assignFirst(nai, now, actions)
        requested = localAddress.address
        if entry is not None and (requested == entry.localAddress or requested == "::"):
            return entry.localAddress, entry.prefixLength
        if requested == "::":
            return self._assignFirst(nai, now, actions)
        return self._resolve(requested, localAddress.prefixLength, nai, entry, now, actions)

    def _create(self, actions: list[Action], bu: BindingUpdate, mpa: str, careOf: str,
                mnid: MobileNodeIdentifier, address: str, prefixLength: int, granted: int,
                now: float, timestamp: int) -> None:
        """Rule 6: a new binding; its tunnel before its PBA."""
        nai = mnid.identifier
        expires = now + granted
        tunnel = TunnelBinding(address, self._tunnelLength, self.address, careOf, ROLE_LMAP)
        entry = BindingCacheEntry(
            nai, address, prefixLength, careOf, granted, _SEQUENCES[bu.sequence], tunnel,
            now, now, timestamp,
        )
        self.store.put(entry)
        self._expiries.schedule(nai, expires, None)
        self.revocations.cancel(careOf, nai)
        self.heartbeats.watch(mpa, now)
        # The tunnel before the PBA (draft 6.1).
        actions.append(AddTunnel(tunnel))
        if bu.ack:
            actions.append(self._ack(bu, granted, address, prefixLength, mpa, mnid))
        self.counters["binding.created"] += 1
        actions.append(
            Note(
                "binding.created",
                {"nai": _naiText(nai), "address": address, "careOf": careOf,
                 "lifetime": granted},
            )
        )

    def _move(self, actions: list[Action], bu: BindingUpdate, mpa: str, careOf: str,
              mnid: MobileNodeIdentifier, old: BindingCacheEntry, address: str,
              prefixLength: int, granted: int, sameMpa: bool, now: float,
              timestamp: int) -> None:
        """Rules 5 and 8: a handover, a new address, or both: the new tunnel,
        the PBA, then the previous MPA's revocation. For the same address the
        new tunnel replaces the old one in one step (the data plane's make
        before break: the kernel's route is replaced, never missing); another
        address's old tunnel is removed first."""
        nai = old.nai
        expires = now + granted
        previous = old.careOfAddress
        oldTunnel = old.tunnel
        # Until then the previous MPA may hold it: its revocation lasts as long.
        previousExpires = old.expires
        tunnel = TunnelBinding(address, self._tunnelLength, self.address, careOf, ROLE_LMAP)
        self._expiries.schedule(nai, expires, previousExpires)
        entry = old
        if address == old.localAddress:
            entry.careOfAddress = careOf
            entry.lifetime = granted
            entry.sequence = _SEQUENCES[bu.sequence]
            entry.tunnel = tunnel
            entry.updated = now  # and so expires
            if timestamp:
                entry.timestamp = timestamp
        else:
            # A new key: a new entry, so that the store can re-index it.
            entry = BindingCacheEntry(
                nai, address, prefixLength, careOf, granted, _SEQUENCES[bu.sequence],
                tunnel, old.created, now, timestamp or old.timestamp,
            )
        self.store.put(entry)
        if address != old.localAddress:
            # Another address's tunnel: its removal delays no packet of the new
            # one, and it must not wait behind an AddTunnel that may fail.
            actions.append(RemoveTunnel(oldTunnel))
        actions.append(AddTunnel(tunnel))
        # The PBA first: the new MPA is never kept waiting for the old one.
        if bu.ack:
            actions.append(self._ack(bu, granted, address, prefixLength, mpa, mnid))
        naiText = _naiText(nai)
        if sameMpa:
            self.counters["binding.address-changed"] += 1
            actions.append(
                Note(
                    "binding.address-changed",
                    {"nai": naiText, "address": address, "previousAddress": old.localAddress,
                     "careOf": careOf},
                )
            )
            return
        self.revocations.cancel(careOf, nai)
        self.heartbeats.watch(mpa, now)
        if self._revokes(previous):
            actions.append(self.revocations.revoke(previous, mnid, old.localAddress,
                                                   old.prefixLength, now,
                                                   until=previousExpires))
        self.counters["pbu.handover"] += 1
        actions.append(
            Note(
                "binding.handover",
                {"nai": naiText, "address": address, "careOf": careOf, "previous": previous,
                 "previousAddress": old.localAddress},
            )
        )

    def _deregister(
        self,
        actions: list[Action],
        bu: BindingUpdate,
        mpa: str,
        careOf: str,
        mnid: MobileNodeIdentifier,
        entry: BindingCacheEntry | None,
        localAddress: LocalAddress | None,
        sameMpa: bool,
    ) -> None:
        counters = self.counters
        counters["pbu.accepted"] += 1
        nai = mnid.identifier
        options: tuple[MobilityOption, ...] = ()
        if entry is None:
            counters["pbu.deregistered.unknown"] += 1
            if self.perNodePrefixes:
                # RFC 5213 5.3.6: the request's options, its HNP included.
                options = (mnid, *_echoed(bu.options, True))
            elif localAddress is not None:
                options = (localAddress,)
        else:
            options = self._bindingOptions(bu, mnid, entry.localAddress, entry.prefixLength)
            if sameMpa:
                self.store.remove(nai)
                actions.append(RemoveTunnel(entry.tunnel))
                counters["pbu.deregistered"] += 1
                actions.append(
                    Note(
                        "binding.deregistered",
                        {"nai": _naiText(nai), "address": entry.localAddress, "careOf": careOf},
                    )
                )
            else:
                # Late, from the MPA the MS left: the binding is the new MPA's.
                counters["pbu.deregistered.stale"] += 1
        if bu.ack:
            actions.append(SendMessage(BindingAck(0, bu.sequence, 0, options, proxy=True), mpa))

    def _homePrefix(self, request: HomeNetworkPrefix, nai: bytes,
                    entry: BindingCacheEntry | None, now: float,
                    actions: list[Action]) -> tuple[str, int]:
        """Rule 16 (RFC 5213 5.3.2, 5.4.1): the home network prefix a PBU of
        RFC 5213's protocol binds. C{::} (0::/0 by RFC 5213 6.9.1.1; any
        length is read so) asks: the binding's prefix, else one delegated
        from the first pool. Another prefix is honoured when it is a
        C{homeNetworkPrefixLength} prefix inside a pool that no other MS
        holds (else NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, 155) and the MS
        has no binding for another one (else BCE_PBU_PREFIX_SET_DO_NOT_MATCH,
        159)."""
        if request.prefix == "::":
            if entry is not None:
                return entry.localAddress, entry.prefixLength
            return self._assignFirst(nai, now, actions)
        value = addressToInt(request.prefix)
        length = self.homeNetworkPrefixLength
        text = f"{request.prefix}/{request.prefixLength}"
        if entry is not None and value == addressToInt(entry.localAddress) \
                and request.prefixLength == entry.prefixLength:
            return entry.localAddress, entry.prefixLength
        if (request.prefixLength != length or value & ((1 << self._shift) - 1)
                or self._owner(value) is None
                or value >> self._shift == self._addressValue >> self._shift):
            raise _Rejected(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                            f"{text} is not a /{length} this LMAP delegates")
        if entry is not None:
            raise _Rejected(Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH,
                            f"{text} asked for; the binding holds "
                            f"{entry.localAddress}/{entry.prefixLength}")
        prefix = intToAddress(value)
        other = self.store.getByAddress(prefix)
        if other is not None and other.nai != nai:
            if other.expires > now:
                raise _Rejected(Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
                                f"{text} is delegated to {_naiText(other.nai)}")
            self._expire(other, actions)
        return prefix, length

    def _resolve(
        self,
        text: str,
        requestedLength: int,
        nai: bytes,
        entry: BindingCacheEntry | None,
        now: float,
        actions: list[Action],
    ) -> tuple[str, int]:
        """The Local Address a PBU asks for, as (canonical text, LNP length);
        raise L{_Rejected} when it cannot have it."""
        try:
            value = addressToInt(text)
        except (OSError, ValueError):
            raise _Rejected(Status.NOT_HOME_SUBNET, f"not an IPv6 address: {text!r}") from None
        if value == 0:
            if entry is not None:
                return entry.localAddress, entry.prefixLength
            return self._assignFirst(nai, now, actions)
        lnp = self._owner(value)
        if lnp is None:
            raise _Rejected(Status.NOT_HOME_SUBNET, f"{text} is outside the LNPs")
        if requestedLength < 128:
            hostMask = (1 << (128 - max(requestedLength, lnp.length))) - 1
            if value & hostMask == 0:
                # A prefix, not an address: the LMAP picks one inside it.
                if entry is not None and addressToInt(entry.localAddress) & ~hostMask == value:
                    return entry.localAddress, entry.prefixLength
                return self._assign(nai, value, hostMask + 1, 0, lnp.length, now, actions)
        if value == self._addressValue or value == lnp.network:
            raise _Rejected(Status.ADMINISTRATIVELY_PROHIBITED, f"{text} is reserved")
        address = intToAddress(value)
        other = self.store.getByAddress(address)
        if other is not None and other.nai != nai:
            if other.expires > now:
                raise _Rejected(
                    Status.DUPLICATE_ADDRESS_DETECTION_FAILED,
                    f"{address} is bound to {_naiText(other.nai)}",
                )
            self._expire(other, actions)
        return address, lnp.length

    def _assignFirst(
        self, nai: bytes, now: float, actions: list[Action]
    ) -> tuple[str, int]:
        """C{::}: an address (a home network prefix) from the first LNP (pool)."""
        first = self._prefixes[0]
        if self.perNodePrefixes:
            length = self.homeNetworkPrefixLength
            return self._assign(nai, first.network, 1 << (length - first.length), self._shift,
                                length, now, actions)
        return self._assign(nai, first.network, first.hostMask + 1, 0, first.length, now,
                            actions)

    def _assign(
        self,
        nai: bytes,
        network: int,
        count: int,
        shift: int,
        length: int,
        now: float,
        actions: list[Action],
    ) -> tuple[str, int]:
        """A free one of the C{count} (a power of two) blocks of 2**C{shift}
        addresses in C{network} for C{nai}, as (its first address, C{length}):
        an address (C{shift} 0) or a home network prefix. The block's number
        is a hash of the NAI, probed upwards on collision; never the
        all-zeros interface identifier, nor a block holding the LMAP's own
        address."""
        mask = count - 1
        index = int.from_bytes(blake2b(nai, digest_size=16).digest(), "big") & mask
        store = self.store
        own = self._addressValue >> shift
        for _ in range(min(count, _MAX_PROBES)):
            value = network | (index << shift)
            if (index or shift) and value >> shift != own:
                address = intToAddress(value)
                other = store.getByAddress(address)
                if other is None or other.nai == nai:
                    return address, length
                if other.expires <= now:
                    self._expire(other, actions)
                    return address, length
            index = (index + 1) & mask
        raise _Rejected(Status.INSUFFICIENT_RESOURCES,
                        "no free home network prefix to delegate" if shift
                        else "no free address to assign")

    def _owner(self, value: int) -> _Prefix | None:
        for lnp in self._prefixes:
            if value & ~lnp.hostMask == lnp.network:
                return lnp
        return None

    def _grant(self, requested: int) -> int:
        granted = min(requested, self.maxLifetime)
        granted -= granted % LIFETIME_UNIT
        return granted if granted >= LIFETIME_UNIT else LIFETIME_UNIT

    def _ack(
        self, bu: BindingUpdate, granted: int, address: str, prefixLength: int, mpa: str,
        mnid: MobileNodeIdentifier,
    ) -> SendMessage:
        """The acceptance of C{bu}, naming the binding (L{_bindingOptions})."""
        options = self._bindingOptions(bu, mnid, address, prefixLength)
        return SendMessage(BindingAck(0, bu.sequence, granted, options, proxy=True), mpa)

    def _bindingOptions(self, bu: BindingUpdate, mnid: MobileNodeIdentifier, address: str,
                        prefixLength: int) -> tuple[MobilityOption, ...]:
        """The options of a PBA answering C{bu} for the binding of C{address}:
        the profile's option naming it (L{WireProfile.addressOption}), and in
        RFC 5213's protocol 5.3.6's others -- the MN-ID first, then the
        request's Handoff Indicator, Access Technology Type, Link-layer
        Identifier, Link-local Address and Timestamp."""
        named = self.profile.addressOption(address, prefixLength)
        if self.perNodePrefixes:
            return (mnid, named, *_echoed(bu.options, False))
        return (named,)

    def _reject(
        self,
        actions: list[Action],
        bu: BindingUpdate,
        source: str,
        nai: bytes | None,
        status: int,
        reason: str,
        sequence: int | None = None,
        proxy: bool = True,
        routine: bool = False,
    ) -> None:
        # A new MS's confirmation finds no entry on every first attach: counted
        # and noted as what it is, not as a refusal (issue 14).
        event = "pbu.confirmation-missing" if routine else "pbu.rejected"
        self.counters[event if routine else f"pbu.rejected.{status}"] += 1
        if sequence is None:
            sequence = bu.sequence
        if nai is None:
            # Refused before its NAI was read (rule 1, 15): still named.
            mnid = bu.option(MobileNodeIdentifier)
            if mnid is not None and mnid.subtype == MN_ID_SUBTYPE_NAI:
                nai = mnid.identifier
        actions.append(
            Note(
                event,
                {"status": status, "reason": reason, "source": source,
                 "nai": None if nai is None else _naiText(nai), "sequence": bu.sequence},
            )
        )
        # Rejections are always answered, A flag or not (RFC 6275 9.5.1), and
        # name the MS when it is known (RFC 5213 5.3.6: the MAG matches by it);
        # in RFC 5213's protocol with the request's options, its HNPs too.
        options: tuple[MobilityOption, ...] = () if nai is None else (
            MobileNodeIdentifier(nai),)
        if self.perNodePrefixes:
            options += _echoed(bu.options, True)
        actions.append(SendMessage(BindingAck(status, sequence, 0, options, proxy=proxy),
                                   source))

    def _mpaOf(self, source: str) -> str | None:
        """The canonical (shared) text of C{source} if it may register, else None."""
        try:
            return self._mpaCache[source]
        except KeyError:
            pass
        try:
            packed = _pton(_AF6, source)
        except (OSError, TypeError, ValueError):
            return None
        value = int.from_bytes(packed, "big")
        allowed: str | None = None
        for network, mask in self._mpaNetworks:
            if value & mask == network:
                # One string object for every entry pointing at this MPA.
                allowed = sys.intern(_ntop(_AF6, packed))
                break
        cache = self._mpaCache
        if len(cache) >= _MPA_CACHE_SIZE:
            cache.clear()
        cache[source] = allowed
        return allowed

    # --- expiry -------------------------------------------------------------

    def _expire(self, entry: BindingCacheEntry, actions: list[Action]) -> None:
        self.store.remove(entry.nai)
        actions.append(RemoveTunnel(entry.tunnel))
        self.counters["binding.expired"] += 1
        actions.append(
            Note(
                "binding.expired",
                {"nai": _naiText(entry.nai), "address": entry.localAddress,
                 "careOf": entry.careOfAddress},
            )
        )

    # --- revocation ---------------------------------------------------------

    def _revocationAck(
        self, message: BindingRevocationAck, source: str, now: float
    ) -> list[Action]:
        mpa = self._mpaOf(source)
        revocation = self.revocations.acknowledged(mpa, message.sequence, message.status)
        if revocation is None:
            return []
        assert mpa is not None
        # Rule 14: it does RFC 5846; its silences are loss from now on.
        self._revocationAnswered.add(mpa)
        self._revocationsUnanswered.pop(mpa, None)
        # The handover's last step at the LMAP, for the logs (followed by NAI).
        return [Note("bri.acknowledged", {
            "nai": _naiText(revocation.nai), "mpa": mpa,
            "address": f"{revocation.address}/{revocation.prefixLength}",
            "status": message.status, "retransmissions": revocation.retransmissions})]

    def _revokes(self, mpa: str) -> bool:
        """Rule 14: whether C{mpa} gets revocations."""
        if mpa in self.revocationless:
            self.counters["bri.not-sent"] += 1
            return False
        if self._withoutRevocation:
            value = addressToInt(mpa)
            if any(value & mask == network for network, mask in self._withoutRevocation):
                self.revocationless[mpa] = "configured (revocation.disabled_for)"
                self.counters["bri.not-sent"] += 1
                return False
        return True

    def _noRevocations(self, mpa: str, why: str, actions: list[Action]) -> None:
        """Rule 14: C{mpa} does not do RFC 5846: no more revocations to it."""
        self.revocationless[mpa] = why
        self.counters["mpa.without-revocation"] += 1
        dropped = self.revocations.dropTowards(mpa)
        actions.append(Note("mpa.without-revocation", {"mpa": mpa, "reason": why,
                                                       "dropped": dropped}))

    def _revocationUnanswered(self, revocation: Revocation, now: float,
                              actions: list[Any]) -> bool:
        """Rule 14, for the revocation sub-machine: whether to go on with
        C{revocation}, unanswered after its retransmissions."""
        mpa = revocation.destination
        if mpa in self.revocationless:
            return False
        peer = self.heartbeats.peers.get(mpa)
        heard = peer is not None and peer.lastHeard is not None and \
            peer.lastHeard > revocation.issued
        if not heard or mpa in self._revocationAnswered:
            return True  # loss, or an outage: rule 2's repetitions
        self._revocationsUnanswered[mpa] += 1
        if self._revocationsUnanswered[mpa] < SILENT_REVOCATIONS:
            return True
        self._noRevocations(mpa, f"{SILENT_REVOCATIONS} revocations in a row unanswered "
                                 "while it answered heartbeats", actions)
        return False

    def _bindingError(self, message: BindingError, source: str, now: float) -> list[Action]:
        """Rule 14: an MPA that answers a revocation with "unrecognized MH
        type" (RFC 6275 9.2) does not do RFC 5846."""
        self.counters["binding-error.received"] += 1
        mpa = self._mpaOf(source)
        actions: list[Action] = []
        if (mpa is not None and mpa not in self.revocationless
                and message.status == BindingErrorStatus.UNRECOGNIZED_MH_TYPE
                and self.revocations.pendingTowards(mpa)):
            self._noRevocations(mpa, "a Binding Error (unrecognized MH type) answered its "
                                     "revocation", actions)
        return actions

    # --- the rest -----------------------------------------------------------

    def _heartbeat(self, message: Heartbeat, source: str, now: float) -> list[Action]:
        """RFC 5847 (L{lmm.heartbeat}): an MPA's request answered (anyone
        else's refused: the LMAP is no reflector), a response matched; a
        changed Restart Counter is rule 12."""
        actions: list[Action] = []
        mpa = self._mpaOf(source)
        beats = self.heartbeats
        if message.response:
            restarted = beats.response(message, source, now, actions)
        else:
            restarted = beats.request(message, source, mpa is not None, now, actions)
        if restarted and mpa is not None:
            self._mpaRestarted(mpa, now, actions)
        return actions

    def _mpaRestarted(self, mpa: str, now: float, actions: list[Action]) -> None:
        """Rule 12: the MPA restarted and forgot its visitors: each binding
        it had not registered since is removed, tunnel and all, and revoked
        (trigger "possible out-of-sync BCE state", RFC 5846 8.1) in case a
        visitor did register again before the restart was seen (its first
        heartbeat lost): that MPA then drops it, and the MS's next frame
        registers it anew. O(bindings), once per restart."""
        removed = [e for e in self.store if e.careOfAddress == mpa and e.updated < now]
        for entry in removed:
            self.store.remove(entry.nai)
            actions.append(RemoveTunnel(entry.tunnel))
            if not self._revokes(mpa):
                continue
            actions.append(self.revocations.revoke(
                mpa, MobileNodeIdentifier(entry.nai), entry.localAddress, entry.prefixLength,
                now, RevocationTrigger.POSSIBLE_OUT_OF_SYNC_BCE_STATE, entry.expires))
        self.counters["binding.peer-restarted"] += len(removed)
        actions.append(Note("lmap.mpa-restarted", {"mpa": mpa, "bindings": len(removed)}))

    def _bindingErrorAllowed(self, now: float) -> bool:
        """A token bucket of C{bindingErrorRate} per second, burst the same."""
        rate = self._bindingErrorRate
        if rate <= 0:
            return False
        burst = max(1.0, rate)
        if self._bindingErrorStamp is not None:
            elapsed = max(0.0, now - self._bindingErrorStamp)
            self._bindingErrorTokens = min(burst, self._bindingErrorTokens + elapsed * rate)
        self._bindingErrorStamp = now
        if self._bindingErrorTokens < 1.0:
            return False
        self._bindingErrorTokens -= 1.0
        return True
