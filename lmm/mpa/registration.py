"""
The MPA's Proxy Binding Updates in flight, as a pure sub-machine of the agent
(L{lmm.mpa.agent.MobilityProxyAgent} owns one, as aioquic's connection owns
its loss recovery): sequence numbers, the PBUs waiting for their
acknowledgement, retransmission with back-off, resynchronisation after
SEQUENCE_NUMBER_OUT_OF_WINDOW, and the deregistrations of visitors that left.

It decides how a PBU goes out and when it is sent again; the agent decides
what a registration is for and what an answer means to the visitor.

Rules (RFC 6275 9.5.1, 11.8 and 13, RFC 5213 6.9.1.5, draft 6.1):

 1. A Proxy Binding Update carries the Mobile Node Identifier (the NAI) and
    a Local Address option (the address, the LNP length) or the Binding
    Cache Confirmation option, A and P set; the lifetime is C{lifetime} for a
    registration, 0 for a deregistration. In RFC 5213's protocol
    (C{perNodePrefixes}; RFC 5213 6.9.1.5) it carries instead the Home
    Network Prefix option (the MS's prefix, or 0::/0 to ask for one), the
    Handoff Indicator (5, "handoff state not changed", for a refresh, else
    4, "handoff state unknown": the MPA cannot tell a new MS from one that
    moved here, 6.9.1.1), the Access Technology Type (C{accessTechnology})
    and the MS's MAC as the Mobile Node Link-layer Identifier.
 2. Sequence numbers come from one 16-bit counter per MPA
    (L{lmm.signaling.SequenceCounter}; the service starts it at a random
    number, so that a restarted MPA does not start where the LMAP last saw
    it). After a wrap, numbers still waiting for an answer are skipped.
 3. One registration is in flight per visitor: a newer one replaces it, and
    cancels a deregistration of the same NAI still in flight (the MS came
    back, or a released address was replaced).
 4. Retransmissions follow the one back-off policy of the protocol
    (L{lmm.signaling.RetransmissionPolicy}: C{retransmitTimeout}, twice that,
    ... at most its cap), each with a new sequence number (RFC 6275 11.8); an
    acknowledgement of any of them answers the registration. After
    C{maxRetries} retransmissions and one more interval the agent gives up.
 5. An acknowledgement is matched by sequence number, must come from the
    visitor's LMAP and name its NAI if it names one.
 6. SEQUENCE_NUMBER_OUT_OF_WINDOW carries the LMAP's last accepted number:
    the counter moves past it and the registration goes again at once, once
    per registration.
 7. A visitor that leaves while the LMAP may hold its binding is
    deregistered by an entry of its own (DEREGISTERING), outside the Visitor
    List, retransmitted like a registration, until answered, given up or
    cancelled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from lmm.actions import SendMessage
from lmm.mh import (
    AccessTechnology,
    AccessTechnologyType,
    BindingAck,
    BindingCacheConfirmation,
    HandoffIndicator,
    HandoffIndicatorOption,
    HomeNetworkPrefix,
    LocalAddress,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    MobilityOption,
    ProxyBindingUpdate,
)
from lmm.mpa.visitor import PendingRegistration, RegistrationRequest, VisitorEntry, VisitorState
from lmm.nd import packMac
from lmm.signaling import RetransmissionPolicy, SequenceCounter

#: What the registrations count, in the agent's counters.
COUNTERS = {
    "pbu.sent": "registrations sent (not retransmissions)",
    "pbu.retransmitted": "retransmissions of a registration or deregistration",
    "pbu.deregistration": "deregistrations sent (lifetime 0)",
    "pba.resync": "registrations sent again past the LMAP's number after a 135",
    "pba.unmatched": "acknowledgements that answer nothing in flight",
    "pba.wrong-source": "acknowledgements from another address than the visitor's LMAP",
    "pba.nai-mismatch": "acknowledgements naming another NAI than the registration's",
    "deregistration.cancelled": "deregistrations stopped because the NAI registered again",
}

_DEREGISTERING = VisitorState.DEREGISTERING


class Registrations:
    """
    The PBUs in flight of one MPA; see the module docstring for the rules.

    @ivar leaving: NAI to the DEREGISTERING entry whose deregistration is in
        flight.
    """

    def __init__(self, lifetime: int, policy: RetransmissionPolicy, counters: Counter[str],
                 initialSequence: int = 0, perNodePrefixes: bool = False,
                 accessTechnology: int = AccessTechnology.IEEE_802_3) -> None:
        self.lifetime = lifetime
        self.perNodePrefixes = perNodePrefixes
        self._technology = AccessTechnologyType(accessTechnology)
        self.policy = policy
        self.counters = counters
        self.sequence = SequenceCounter(initialSequence)
        # Sequence number -> the visitor (or leaving entry) whose PBU used it.
        self._outstanding: dict[int, VisitorEntry] = {}
        self.leaving: dict[bytes, VisitorEntry] = {}

    # --- sending ------------------------------------------------------------------

    def _nextSequence(self) -> int:
        outstanding = self._outstanding
        return self.sequence.next(outstanding, len(outstanding))

    def message(self, visitor: VisitorEntry, request: RegistrationRequest, sequence: int,
                lifetime: int) -> SendMessage:
        """Rule 1: the PBU for C{request}, to the visitor's LMAP."""
        options: list[MobilityOption] = [MobileNodeIdentifier(visitor.nai)]
        if self.perNodePrefixes:
            pending = visitor.pending
            refresh = pending is not None and pending.refresh and lifetime > 0
            options += (
                HomeNetworkPrefix(request.address or "::",
                                  request.prefixLength if request.address else 0),
                HandoffIndicatorOption(HandoffIndicator.NOT_CHANGED if refresh
                                       else HandoffIndicator.UNKNOWN),
                self._technology,
                MobileNodeLinkLayerIdentifier(packMac(visitor.mac)),
            )
        elif request.confirmation:
            options.append(BindingCacheConfirmation())
        elif request.address is not None:
            options.append(LocalAddress(request.address, request.prefixLength))
        return SendMessage(ProxyBindingUpdate(sequence, lifetime, options), visitor.lmapAddress)

    def _start(self, visitor: VisitorEntry, request: RegistrationRequest, now: float,
               lifetime: int, refresh: bool = False) -> SendMessage:
        sequence = self._nextSequence()
        timeout = self.policy.initial
        visitor.pending = PendingRegistration(
            request, sequence, [sequence], timeout, now + timeout, now, lifetime, refresh=refresh
        )
        self._outstanding[sequence] = visitor
        return self.message(visitor, request, sequence, lifetime)

    def register(self, visitor: VisitorEntry, request: RegistrationRequest, now: float,
                 refresh: bool = False) -> SendMessage:
        """Rule 3: a PBU for C{request}; it replaces the visitor's PBU in
        flight and a deregistration of its NAI."""
        self.drop(visitor)
        if visitor.nai in self.leaving:
            self.cancelDeregistration(visitor.nai)
        self.counters["pbu.sent"] += 1
        return self._start(visitor, request, now, self.lifetime, refresh)

    def deregister(self, entry: VisitorEntry, request: RegistrationRequest,
                   now: float) -> SendMessage:
        """Rule 7: C{entry}, out of the Visitor List, deregisters C{request}'s
        address, retransmitted until answered."""
        self.cancelDeregistration(entry.nai)
        entry.state = _DEREGISTERING
        self.leaving[entry.nai] = entry
        self.counters["pbu.deregistration"] += 1
        return self._start(entry, request, now, 0)

    def deregisterOnce(self, visitor: VisitorEntry, request: RegistrationRequest) -> SendMessage:
        """A deregistration that nobody waits for (the daemon stops)."""
        self.counters["pbu.deregistration"] += 1
        return self.message(visitor, request, self._nextSequence(), 0)

    def drop(self, visitor: VisitorEntry) -> None:
        """Forget the visitor's PBU in flight: its acknowledgement answers nothing."""
        pending = visitor.pending
        if pending is None:
            return
        outstanding = self._outstanding
        for sequence in pending.sequences:
            if outstanding.get(sequence) is visitor:
                del outstanding[sequence]
        visitor.pending = None

    def resend(self, visitor: VisitorEntry, pending: PendingRegistration) -> SendMessage:
        """The same registration again, with a new sequence number."""
        sequence = self._nextSequence()
        pending.sequence = sequence
        pending.sequences.append(sequence)
        self._outstanding[sequence] = visitor
        return self.message(visitor, pending.request, sequence, pending.lifetime)

    def timedOut(self, visitor: VisitorEntry, now: float) -> SendMessage | None:
        """Rule 4: the visitor's PBU went unanswered for its interval: its
        retransmission, or None when the policy says give up (the PBU in
        flight is then forgotten)."""
        pending = visitor.pending
        assert pending is not None
        policy = self.policy
        if policy.exhausted(pending.tries):
            self.drop(visitor)
            return None
        pending.tries += 1
        pending.interval = policy.backOff(pending.interval)
        pending.due = now + pending.interval
        self.counters["pbu.retransmitted"] += 1
        return self.resend(visitor, pending)

    # --- acknowledgements -----------------------------------------------------------

    def answering(self, ack: BindingAck) -> tuple[VisitorEntry, PendingRegistration] | None:
        """The visitor and registration whose PBU C{ack}'s sequence number answers."""
        visitor = self._outstanding.get(ack.sequence)
        pending = None if visitor is None else visitor.pending
        if visitor is None or pending is None or ack.sequence not in pending.sequences:
            return None
        return visitor, pending

    def fromItsLmap(self, visitor: VisitorEntry, ack: BindingAck, source: str) -> bool:
        """Rule 5: C{ack} came from the visitor's LMAP and names its NAI, if any."""
        if source != visitor.lmapAddress:
            self.counters["pba.wrong-source"] += 1
            return False
        mnid = ack.option(MobileNodeIdentifier)
        if mnid is not None and mnid.identifier != visitor.nai:
            self.counters["pba.nai-mismatch"] += 1
            return False
        return True

    def resync(self, visitor: VisitorEntry, pending: PendingRegistration, lastAccepted: int,
               now: float) -> SendMessage:
        """Rule 6: past the LMAP's last accepted number, the registration again."""
        self.sequence.passOver(lastAccepted)
        pending.resynced = True
        pending.due = now + pending.interval
        self.counters["pba.resync"] += 1
        return self.resend(visitor, pending)

    def inFlightTo(self, lmap: str, visitors: Iterable[VisitorEntry],
                   nai: bytes | None) -> list[VisitorEntry]:
        """The registrations (of C{visitors} and the leaving entries) in
        flight to C{lmap}, for C{nai} if given, not yet resynchronised: what
        a 135 that matches no sequence number concerns."""
        found = []
        for visitor in [*visitors, *self.leaving.values()]:
            if (visitor.lmapAddress == lmap and visitor.pending is not None
                    and not visitor.pending.resynced
                    and (nai is None or nai == visitor.nai)):
                found.append(visitor)
        return found

    # --- deregistrations ------------------------------------------------------------

    def isLeaving(self, entry: VisitorEntry) -> bool:
        return self.leaving.get(entry.nai) is entry

    def cancelDeregistration(self, nai: bytes) -> None:
        """The NAI registers here again: its old deregistration must not follow."""
        entry = self.leaving.pop(nai, None)
        if entry is not None:
            self.drop(entry)
            entry.deadline = None
            self.counters["deregistration.cancelled"] += 1

    def forgetLeaving(self, entry: VisitorEntry) -> None:
        """C{entry}'s deregistration is over (answered, given up, or its
        binding is elsewhere now)."""
        if self.leaving.get(entry.nai) is entry:
            del self.leaving[entry.nai]
        self.drop(entry)
        entry.deadline = None

    def clear(self) -> None:
        """The daemon stops: nothing is waited for any more."""
        for entry in self.leaving.values():
            entry.deadline = None
        self.leaving.clear()
        self._outstanding.clear()
