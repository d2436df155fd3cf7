"""
What both ends of the MPA-LMAP signaling share, pure (no I/O, no clock of its
own): 16-bit sequence numbers, deadlines kept in a heap with lazy deletion,
and retransmission with one back-off policy. The LMAP's anchor
(L{lmm.lmap.anchor}), the MPA's registrations (L{lmm.mpa.registration}) and
both ends' heartbeats (L{lmm.heartbeat}) are built on these.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lmm.actions import Note
from lmm.mh import MobilityOption, WireProfile, foreignProfileSign

# --- sequence numbers (RFC 6275 9.5.1) -------------------------------------------

SEQUENCE_MASK = 0xFFFF
_HALF_SEQUENCE = 0x8000


def isNewer(sequence: int, last: int) -> bool:
    """RFC 6275 9.5.1: C{sequence} is newer than C{last} in 16-bit modulo
    arithmetic: (sequence - last) mod 2**16 is in 1..32767."""
    return 0 < ((sequence - last) & SEQUENCE_MASK) < _HALF_SEQUENCE


class SequenceCounter:
    """
    A node's own 16-bit sequence numbers (PBUs of an MPA, BRIs of an LMAP):
    one counter for every message of that kind it sends.
    """

    __slots__ = ("last",)

    def __init__(self, initial: int = 0) -> None:
        #: The number handed out last.
        self.last = initial & SEQUENCE_MASK

    def next(self, inUse: Container[int] = (), count: int = 0) -> int:
        """The next number; after a wrap, numbers in C{inUse} (still waiting
        for an answer; C{count} of them) are skipped."""
        sequence = (self.last + 1) & SEQUENCE_MASK
        for _ in range(count):
            if sequence not in inUse:
                break
            sequence = (sequence + 1) & SEQUENCE_MASK
        self.last = sequence
        return sequence

    def passOver(self, sequence: int) -> None:
        """The peer's last accepted number is C{sequence} (a
        SEQUENCE_NUMBER_OUT_OF_WINDOW answer): continue after it."""
        if isNewer(sequence, self.last):
            self.last = sequence


# --- retransmission (RFC 6275 11.8, 13; RFC 5846 6.1) ------------------------------

#: RFC 6275 13: MAX_BINDACK_TIMEOUT, the default cap of the back-off.
MAX_BINDACK_TIMEOUT = 32.0


@dataclass(frozen=True, slots=True)
class RetransmissionPolicy:
    """
    One back-off for every message that waits for an answer (PBU, BRI): the
    first retransmission after C{initial} seconds, each interval twice the
    last, never more than C{maxInterval} (or C{initial}, if that is larger);
    after C{maxRetries} retransmissions and one more interval, give up.
    """

    initial: float
    maxRetries: int
    maxInterval: float = MAX_BINDACK_TIMEOUT

    def __post_init__(self) -> None:
        if self.initial <= 0:
            raise ValueError(f"retransmission timeout {self.initial} is not positive")
        if self.maxRetries < 0:
            raise ValueError(f"retransmissions {self.maxRetries} is negative")
        if self.maxInterval <= 0:
            raise ValueError(f"largest retransmission interval {self.maxInterval} "
                             "is not positive")

    def backOff(self, interval: float) -> float:
        """The interval after C{interval}."""
        return min(interval * 2, max(self.maxInterval, self.initial))

    def exhausted(self, retransmissions: int) -> bool:
        """Whether, after C{retransmissions}, the next timeout means giving up."""
        return retransmissions >= self.maxRetries


# --- deadlines -------------------------------------------------------------------

K = TypeVar("K")

# A heap this much larger than the live count is rebuilt.
HEAP_SLACK = 1024


class Deadlines(Generic[K]):
    """
    When each of many keys is next due, in a heap with lazy deletion.

    The owner keeps each key's deadline itself, and C{current(key)} reads it
    (None: the key is gone or has nothing due). L{schedule} pushes an item
    only when a deadline comes earlier (or is new): a later one keeps its
    item, which is moved to the key's deadline when it comes up, so a binding
    refreshed any number of times has one item. Items of gone keys are
    dropped when they come up; should they pile up, a push that finds the
    heap over twice the live count (C{size()}) plus some slack rebuilds it
    from C{live()}, and counts C{compacted} in C{counters}.

    @param ordered: whether keys compare (bytes, tuples): items are then
        (due, key); else (due, serial, key), first come first served on ties.
    """

    def __init__(
        self,
        current: Callable[[K], float | None],
        live: Callable[[], Iterable[tuple[float, K]]],
        size: Callable[[], int],
        counters: Counter[str],
        compacted: str,
        ordered: bool = True,
    ) -> None:
        self._current = current
        self._live = live
        self._size = size
        self._counters = counters
        self._compacted = compacted
        self._serial: Iterator[int] | None = None if ordered else itertools.count()
        self._heap: list[tuple] = []  # type: ignore[type-arg]
        self._build()
        self._limit = 2 * len(self._heap) + HEAP_SLACK

    def __len__(self) -> int:
        """Items in the heap, stale ones too."""
        return len(self._heap)

    def _item(self, due: float, key: K) -> tuple:  # type: ignore[type-arg]
        serial = self._serial
        return (due, key) if serial is None else (due, next(serial), key)

    def schedule(self, key: K, due: float | None, previous: float | None) -> None:
        """C{key}'s deadline changed from C{previous} (None: it had none, or
        its item came up and was handed out by L{due}) to C{due}."""
        if due is None or (previous is not None and previous <= due):
            return
        heap = self._heap
        heapq.heappush(heap, self._item(due, key))
        if len(heap) > self._limit:
            # Counting the live keys may not be free: only past the last limit.
            limit = 2 * self._size() + HEAP_SLACK
            if len(heap) > limit:
                self._compact()
                limit = 2 * self._size() + HEAP_SLACK
            self._limit = limit

    def _build(self) -> None:
        self._heap = [self._item(due, key) for due, key in self._live()]
        heapq.heapify(self._heap)

    def _compact(self) -> None:
        self._counters[self._compacted] += 1
        self._build()

    def clear(self) -> None:
        self._heap.clear()

    def due(self, now: float) -> Iterator[K]:
        """The keys due by C{now}, earliest first; a key handed out has no
        item left (L{schedule} it with C{previous=None}). Items pushed while
        this runs are seen too."""
        current = self._current
        while True:
            heap = self._heap
            if not heap or heap[0][0] > now:
                return
            item = heap[0]
            key = item[-1]
            deadline = current(key)
            if deadline is None:
                heapq.heappop(heap)
            elif deadline > item[0]:
                # Moved later since it was queued: queue it at its deadline.
                heapq.heapreplace(heap, self._item(deadline, key))
                continue
            else:
                heapq.heappop(heap)
                # Copies that converged on the same time are one item.
                while heap and heap[0][0] == item[0] and heap[0][-1] == key:
                    heapq.heappop(heap)
                yield key

    def next(self) -> float | None:
        """The earliest deadline, or None; stale items on top are tidied."""
        heap = self._heap
        current = self._current
        while heap:
            item = heap[0]
            deadline = current(item[-1])
            if deadline is None:
                heapq.heappop(heap)
            elif deadline != item[0]:
                heapq.heapreplace(heap, self._item(deadline, item[-1]))
            else:
                return deadline
        return None


# --- wire-profile mismatches (issue 16, docs/wire.md) ------------------------------

#: Peers remembered with a mismatch; past it (a flood of spoofed sources, with
#: the signaling unprotected) new ones are counted, not remembered or noted.
_MISMATCH_PEERS = 1 << 12


class ProfileMismatches:
    """
    The peers whose messages carry another wire profile's signs
    (L{lmm.mh.foreignProfileSign}): each named once, on the first message
    that shows it, as a C{peer.profile-mismatch} note; kept for the control
    channel's C{peers}. Both ends' cores own one.

    @ivar peers: peer address to the sign first seen.
    """

    def __init__(self, profile: WireProfile, counters: Counter[str]) -> None:
        self.profile = profile
        self.counters = counters
        self.peers: dict[str, str] = {}

    def check(self, peer: str, options: Sequence[MobilityOption], status: int | None,
              actions: list[Any]) -> str | None:
        """The sign in a message from C{peer}, or None; the first from each
        peer appends a note to C{actions}."""
        sign = foreignProfileSign(options, status, self.profile)
        if sign is None:
            return None
        self.counters["peer.profile-mismatch"] += 1
        if peer not in self.peers and len(self.peers) < _MISMATCH_PEERS:
            self.peers[peer] = sign
            actions.append(Note("peer.profile-mismatch",
                                {"peer": peer, "profile": self.profile.name, "sign": sign}))
        return sign
