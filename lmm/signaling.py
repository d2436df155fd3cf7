"""
What both ends of the MPA-LMAP signaling share, pure (no I/O, no clock of its
own): 16-bit sequence numbers, deadlines with lazy deletion (a heap and buckets),
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

# Items this much more than the live count are swept by a rebuild.
HEAP_SLACK = 1024

#: Deadlines beyond the nearest bucket wait as bare keys in buckets this
#: wide, seconds: a key costs a list slot (8 bytes) there, not a heap item
#: (a tuple, 56 bytes, and its slot). The nearest bucket is a heap of exact
#: deadlines, so the width changes what things cost, never when they are due.
BUCKET_SECONDS = 1.0

_NO_HORIZON = -(1 << 62)


def earliest(*deadlines: float | None) -> float | None:
    """The earliest of C{deadlines} that are not None, or None: a core's next
    deadline over its sub-machines' (each a L{Deadlines} or its owner's)."""
    # A loop, not min() over a generator: called once per PBU, mostly with Nones.
    best = None
    for deadline in deadlines:
        if deadline is not None and (best is None or deadline < best):
            best = deadline
    return best


class Deadlines(Generic[K]):
    """
    When each of many keys is next due, with lazy deletion.

    The owner keeps each key's deadline itself, and C{current(key)} reads it
    (None: the key is gone or has nothing due). L{schedule} files an item
    only when a deadline comes earlier (or is new): a later one keeps its
    item, which is moved to the key's deadline when it comes up, so a binding
    refreshed any number of times has one item. Items of gone keys are
    dropped when they come up; should they pile up, a push that finds over
    twice the live count (C{size()}) plus some slack rebuilds from C{live()},
    and counts C{compacted} in C{counters}.

    Items in the nearest bucket of L{BUCKET_SECONDS} (and any earlier) are
    (due, key) in a heap; later ones are keys in one list per bucket, read
    (their deadlines from C{current}) into the heap when the heap runs dry
    and their bucket is the nearest. A million bindings cost 8 bytes each
    here instead of 64.

    @param ordered: whether keys compare (bytes, tuples): heap items are then
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
        # The last bucket read into the heap: later ones wait in _buckets.
        self._horizon = _NO_HORIZON
        self._buckets: dict[int, list[K]] = {}
        self._slots: list[int] = []  # a heap of _buckets' keys
        self._waiting = 0  # keys in _buckets
        self._earliest: float | None = None  # see takeEarliest
        self._build()
        self._limit = 2 * len(self) + HEAP_SLACK

    def __len__(self) -> int:
        """Items filed, stale ones too."""
        return len(self._heap) + self._waiting

    def _item(self, due: float, key: K) -> tuple:  # type: ignore[type-arg]
        serial = self._serial
        return (due, key) if serial is None else (due, next(serial), key)

    def _file(self, due: float, key: K) -> None:
        slot = int(due // BUCKET_SECONDS)
        if slot <= self._horizon:
            heapq.heappush(self._heap, self._item(due, key))
            return
        bucket = self._buckets.get(slot)
        if bucket is None:
            self._buckets[slot] = [key]
            heapq.heappush(self._slots, slot)
        else:
            bucket.append(key)
        self._waiting += 1

    def schedule(self, key: K, due: float | None, previous: float | None) -> None:
        """C{key}'s deadline changed from C{previous} (None: it had none, or
        its item came up and was handed out by L{due}) to C{due}."""
        if due is None or (previous is not None and previous <= due):
            return
        self._file(due, key)
        if self._earliest is None or due < self._earliest:
            self._earliest = due
        if len(self._heap) + self._waiting > self._limit:
            # Counting the live keys may not be free: only past the last limit.
            limit = 2 * self._size() + HEAP_SLACK
            if len(self) > limit:
                self._compact()
                limit = 2 * self._size() + HEAP_SLACK
            self._limit = limit

    def _build(self) -> None:
        self.clear()
        for due, key in self._live():
            self._file(due, key)

    def _compact(self) -> None:
        self._counters[self._compacted] += 1
        self._build()

    def takeEarliest(self) -> float | None:
        """The earliest deadline L{schedule} filed since the last L{next},
        L{clear} or call of this (None: none), and forget it. After an input,
        it is all that a timer set from L{next} needs: a deadline that moved
        later, or went, only makes that timer fire early, and L{next} then
        says the true one. (Cheaper per input than L{next}, which tidies.)"""
        earliest, self._earliest = self._earliest, None
        return earliest

    def clear(self) -> None:
        self._earliest = None
        self._heap = []
        self._horizon = _NO_HORIZON
        self._buckets = {}
        self._slots = []
        self._waiting = 0

    def _advance(self) -> bool:
        """With the heap empty, read the nearest bucket into it (its keys'
        deadlines as they are now); False when nothing is left."""
        current = self._current
        heap = self._heap
        while not heap and self._slots:
            slot = heapq.heappop(self._slots)
            keys = self._buckets.pop(slot)
            self._waiting -= len(keys)
            self._horizon = slot
            start = slot * BUCKET_SECONDS
            for key in keys:
                deadline = current(key)
                if deadline is None:
                    continue
                # A deadline moved later goes to its own bucket. One moved
                # earlier filed an item of its own, which came up before;
                # this copy comes up at its bucket, as a heap item would have.
                self._file(deadline if deadline >= start else start, key)
        return bool(heap)

    def due(self, now: float) -> Iterator[K]:
        """The keys due by C{now}, earliest first; a key handed out has no
        item left (L{schedule} it with C{previous=None}). Items filed while
        this runs are seen too."""
        current = self._current
        while True:
            heap = self._heap
            if not heap and not self._advance():
                return
            if heap[0][0] > now:
                return
            item = heap[0]
            key = item[-1]
            deadline = current(key)
            if deadline is None:
                heapq.heappop(heap)
            elif deadline > item[0]:
                # Moved later since it was filed: file it at its deadline.
                heapq.heappop(heap)
                self._file(deadline, key)
                continue
            else:
                heapq.heappop(heap)
                # Copies that converged on the same time are one item.
                while heap and heap[0][0] == item[0] and heap[0][-1] == key:
                    heapq.heappop(heap)
                yield key

    def next(self) -> float | None:
        """The earliest deadline, or None; stale items on top are tidied."""
        self._earliest = None
        heap = self._heap
        current = self._current
        while heap or self._advance():
            item = heap[0]
            deadline = current(item[-1])
            if deadline is None:
                heapq.heappop(heap)
            elif deadline != item[0]:
                heapq.heappop(heap)
                self._file(deadline, item[-1])
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
