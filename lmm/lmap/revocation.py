"""
The LMAP's Binding Revocation Indications waiting for their acknowledgement,
as a pure sub-machine of the anchor (L{lmm.lmap.anchor.LocalMobilityAnchor}
owns one): the indication's sequence numbers, its retransmission with the
protocol's one back-off, the acknowledgements, the give-up (RFC 5846 6.1 and
6.2, draft 6.4).

Rules:

 1. An indication (trigger "inter-MAG handover, unknown", P set, the NAI and
    the previous Local Address) takes the next number of one LMAP-wide 16-bit
    counter (L{lmm.signaling.SequenceCounter}).
 2. It is retransmitted after C{revocation_timeout}, the interval doubling
    each time up to the cap (L{lmm.signaling.RetransmissionPolicy}), up to
    C{revocation_max_retries} times; one more interval without an
    acknowledgement and the LMAP gives up -- unless the binding the MPA was
    told to drop could still be alive there (C{until}: the revoked
    registration's expiry). Then it goes on, every cap interval
    (C{revocation.max_interval}), until it is acknowledged or that binding
    has expired (C{revocation.unanswered}, noted once): an MPA that never
    heard it would keep a registered visitor for an MS that left, and the
    visitor's refresh would take the binding back from the MPA the MS is on
    (issue 13: loss on the backbone). Once the loss is over, the MPA hears
    it within one cap interval.
    Before the first repetition past the retransmissions, C{unanswered} (the
    anchor's, rule 14 there) may say to give up instead: the MPA answers
    heartbeats but not revocations, it does not do RFC 5846.
 3. An acknowledgement from that MPA with that sequence number ends it,
    whatever its status (a status other than success is counted).
 4. A pending revocation towards an MPA is cancelled when the same MS
    registers there again (it came back).
 5. After a restart with a persistent Binding Cache, the revocations that
    were in flight (L{Revocations.snapshot}, kept by the store) are resumed
    (L{Revocations.restore}): each is sent again at once, its retransmissions
    so far counted, and the sequence counter goes on after the last number
    handed out, so that a late acknowledgement of the previous run answers
    nothing of this one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from lmm.actions import Note, SendMessage
from lmm.mh import (
    BindingRevocationIndication,
    LocalAddress,
    MobileNodeIdentifier,
    MobilityOption,
    RevocationStatus,
    RevocationTrigger,
)
from lmm.signaling import Deadlines, RetransmissionPolicy, SequenceCounter

#: What the revocations count, in the anchor's counters.
COUNTERS = {
    "bri.sent": "Binding Revocation Indications sent (a handover)",
    "bri.retransmitted": "indications sent again",
    "bri.acknowledged": "indications acknowledged",
    "bra.status.<status>": "acknowledgements with another status than success",
    "bri.given-up": "indications given up",
    "bri.unanswered": "indications past their retransmissions, repeated until the binding "
                      "they revoke has expired",
    "bri.cancelled": "revocations stopped: the MS came back to that MPA",
    "bra.unmatched": "acknowledgements answering no indication in flight",
    "bri.resumed": "indications of a previous run sent again at start (rule 5)",
    "revocation-heap.compacted": "rebuilds of the revocations' timer heap",
}


class Revocation:
    """A Binding Revocation Indication waiting for its acknowledgement."""

    __slots__ = ("message", "destination", "nai", "address", "prefixLength", "issued", "until",
                 "retransmissions", "interval", "due")

    def __init__(self, message: BindingRevocationIndication, destination: str, nai: bytes,
                 address: str, prefixLength: int, issued: float, interval: float,
                 until: float = 0.0) -> None:
        self.message = message
        self.destination = destination
        self.nai = nai
        # What the revoked binding binds (its Local Address or home network prefix).
        self.address = address
        self.prefixLength = prefixLength
        # The handover's time: tells which revocation a failed tunnel held back.
        self.issued = issued
        # Until when the revoked binding may live at the MPA (rule 2).
        self.until = until
        self.retransmissions = 0
        self.interval = interval
        self.due = issued + interval


class Revocations:
    """The LMAP's revocations in flight; see the module docstring for the rules."""

    def __init__(self, policy: RetransmissionPolicy, counters: Counter[str],
                 unanswered: Callable[[Revocation, float, list[object]], bool] | None = None,
                 addressOption: Callable[[str, int], MobilityOption] = LocalAddress,
                 ) -> None:
        self.policy = policy
        self.counters = counters
        #: What names the revoked binding: the profile's (a Local Address, or
        #: RFC 5846 6.1's Home Network Prefix in RFC 5213's protocol).
        self.addressOption = addressOption
        #: Rule 2: whether to go on repeating an indication past its
        #: retransmissions (False: give it up); default: always.
        self.unanswered = unanswered or (lambda revocation, now, actions: True)
        self.sequence = SequenceCounter()
        self._pending: dict[tuple[str, int], Revocation] = {}
        self._byVisitor: dict[tuple[str, bytes], int] = {}
        self._deadlines: Deadlines[tuple[str, int]] = Deadlines(
            self._due, self._scheduled, self.__len__, counters, "revocation-heap.compacted"
        )
        #: One more at every change of what is in flight: the service saves a
        #: snapshot for a persistent store when it moved.
        self.version = 0

    def __len__(self) -> int:
        return len(self._pending)

    def _due(self, key: tuple[str, int]) -> float | None:
        revocation = self._pending.get(key)
        return None if revocation is None else revocation.due

    def _scheduled(self) -> list[tuple[float, tuple[str, int]]]:
        return [(r.due, key) for key, r in self._pending.items()]

    def revoke(self, mpa: str, mnid: MobileNodeIdentifier, address: str, prefixLength: int,
               now: float,
               trigger: int = RevocationTrigger.INTER_MAG_HANDOVER_UNKNOWN,
               until: float = 0.0) -> SendMessage:
        """Rule 1: the indication to C{mpa} for the MS's binding there, which
        may live there until C{until} (rule 2)."""
        sequence = self.sequence.next()
        message = BindingRevocationIndication(
            sequence,
            trigger,
            (mnid, self.addressOption(address, prefixLength)),
            proxy=True,
        )
        key = (mpa, sequence)
        revocation = self._pending[key] = Revocation(
            message, mpa, mnid.identifier, address, prefixLength, now, self.policy.initial, until
        )
        self._byVisitor[mpa, mnid.identifier] = sequence
        self._deadlines.schedule(key, revocation.due, None)
        self.counters["bri.sent"] += 1
        self.version += 1
        return SendMessage(message, mpa)

    def cancel(self, mpa: str, nai: bytes) -> None:
        """Rule 4: the MS registers at C{mpa} again: stop revoking its binding there."""
        if not self._byVisitor:
            return
        sequence = self._byVisitor.pop((mpa, nai), None)
        if sequence is not None and self._pending.pop((mpa, sequence), None) is not None:
            self.counters["bri.cancelled"] += 1
            self.version += 1

    def acknowledged(self, mpa: str | None, sequence: int, status: int) -> Revocation | None:
        """Rule 3: an acknowledgement from C{mpa} (None: no MPA); the
        indication in flight it answered, or None."""
        revocation = None if mpa is None else self._pending.pop((mpa, sequence), None)
        if revocation is None:
            self.counters["bra.unmatched"] += 1
            return None
        self._forget(revocation)
        self.version += 1
        self.counters["bri.acknowledged"] += 1
        if status != RevocationStatus.SUCCESS:
            self.counters[f"bra.status.{status}"] += 1
        return revocation

    def pendingTowards(self, mpa: str) -> bool:
        """Whether an indication to C{mpa} waits for its acknowledgement."""
        return any(key[0] == mpa for key in self._pending)

    def dropTowards(self, mpa: str) -> int:
        """Stop every indication in flight to C{mpa}; how many there were."""
        keys = [key for key in self._pending if key[0] == mpa]
        for key in keys:
            self._forget(self._pending.pop(key))
        if keys:
            self.version += 1
        return len(keys)

    def heldBack(self, nai: bytes, issued: float) -> Revocation | None:
        """The revocation of C{nai}'s binding issued at C{issued} (by the
        handover that gave its entry its tunnel), if none of its copies has
        gone out (the first waited behind the tunnel)."""
        for (mpa, other), sequence in self._byVisitor.items():
            if other != nai:
                continue
            revocation = self._pending.get((mpa, sequence))
            if (revocation is not None and revocation.issued == issued
                    and revocation.retransmissions == 0):
                return revocation
        return None

    def _forget(self, revocation: Revocation) -> None:
        key = (revocation.destination, revocation.nai)
        if self._byVisitor.get(key) == revocation.message.sequence:
            del self._byVisitor[key]

    def tick(self, now: float, actions: list[object]) -> None:
        """Rule 2: the retransmissions and give-ups due by C{now}."""
        policy = self.policy
        for key in self._deadlines.due(now):
            revocation = self._pending.get(key)
            if revocation is None:  # dropped by the hook of one due before it
                continue
            self.version += 1
            mpa, sequence = key
            exhausted = policy.exhausted(revocation.retransmissions)
            if exhausted and (now >= revocation.until or (
                    revocation.retransmissions == policy.maxRetries
                    and not self.unanswered(revocation, now, actions))):
                self._pending.pop(key, None)
                self._forget(revocation)
                self.counters["bri.given-up"] += 1
                actions.append(
                    Note("revocation.given-up",
                         {"nai": revocation.nai.decode("utf-8", "replace"), "mpa": mpa,
                          "sequence": sequence,
                          "retransmissions": revocation.retransmissions})
                )
                continue
            if exhausted:
                # Rule 2: its binding may live on at the MPA; repeated at the cap.
                if revocation.retransmissions == policy.maxRetries:
                    self.counters["bri.unanswered"] += 1
                    actions.append(
                        Note("revocation.unanswered",
                             {"nai": revocation.nai.decode("utf-8", "replace"), "mpa": mpa,
                              "sequence": sequence, "until": revocation.until,
                              "every": policy.maxInterval})
                    )
                revocation.interval = max(policy.maxInterval, policy.initial)
            else:
                revocation.interval = policy.backOff(revocation.interval)
            revocation.retransmissions += 1
            revocation.due = now + revocation.interval
            self._deadlines.schedule(key, revocation.due, None)
            self.counters["bri.retransmitted"] += 1
            actions.append(SendMessage(revocation.message, mpa))

    def nextDeadline(self) -> float | None:
        return self._deadlines.next()

    def earliestFiled(self) -> float | None:
        """L{lmm.signaling.Deadlines.takeEarliest} of the retransmissions."""
        return self._deadlines.takeEarliest()

    def clear(self) -> None:
        """The daemon stops: nothing is waited for any more."""
        self._pending.clear()
        self._byVisitor.clear()
        self._deadlines.clear()
        self.version += 1

    # --- across restarts (rule 5) ---------------------------------------------------

    def snapshot(self) -> list[tuple[Any, ...]]:
        """What is in flight, as rows of (MPA, sequence, NAI, address, prefix
        length, issued, retransmissions, interval, trigger, until)."""
        rows = []
        for (mpa, sequence), r in self._pending.items():
            rows.append((mpa, sequence, r.nai, r.address, r.prefixLength,
                         r.issued, r.retransmissions, r.interval, r.message.trigger,
                         r.until))
        return rows

    def restore(self, rows: list[tuple[Any, ...]], lastSequence: int,
                now: float) -> list[SendMessage]:
        """Resume a previous run's revocations: each sent at once."""
        self.sequence = SequenceCounter(lastSequence)
        sends = []
        for (mpa, sequence, nai, address, prefixLength, issued, retransmissions, interval,
             trigger, until) in rows:
            message = BindingRevocationIndication(
                sequence, trigger,
                (MobileNodeIdentifier(nai), self.addressOption(address, prefixLength)),
                proxy=True)
            revocation = Revocation(message, mpa, nai, address, prefixLength, issued, interval,
                                    until)
            revocation.retransmissions = retransmissions
            revocation.due = now + interval
            key = (mpa, sequence)
            self._pending[key] = revocation
            self._byVisitor[mpa, nai] = sequence
            self._deadlines.schedule(key, revocation.due, None)
            self.counters["bri.resumed"] += 1
            sends.append(SendMessage(message, mpa))
        self.version += 1
        return sends
