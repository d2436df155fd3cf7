"""Tests for lmm.signaling: what the anchor and the MPA's registrations share."""

from __future__ import annotations

import random
from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from lmm.signaling import (
    BUCKET_SECONDS,
    MAX_BINDACK_TIMEOUT,
    Deadlines,
    RetransmissionPolicy,
    SequenceCounter,
    earliest,
    isNewer,
)


class SequenceTests(SynchronousTestCase):
    def test_isNewer(self) -> None:
        """RFC 6275 9.5.1: newer when (new - last) mod 2**16 is in 1..32767."""
        self.assertTrue(isNewer(1, 0))
        self.assertTrue(isNewer(0, 0xFFFF))
        self.assertTrue(isNewer(32767, 0))
        self.assertFalse(isNewer(32768, 0))
        self.assertFalse(isNewer(0, 0))
        self.assertFalse(isNewer(0xFFFF, 0))

    def test_counterWraps(self) -> None:
        counter = SequenceCounter(0xFFFE)
        self.assertEqual([counter.next(), counter.next(), counter.next()], [0xFFFF, 0, 1])

    def test_counterSkipsInUse(self) -> None:
        """After a wrap, numbers still waiting for an answer are not handed out again."""
        counter = SequenceCounter(0xFFFF)
        inUse = {0, 1}
        self.assertEqual(counter.next(inUse, len(inUse)), 2)
        self.assertEqual(counter.last, 2)

    def test_passOver(self) -> None:
        counter = SequenceCounter(10)
        counter.passOver(5)
        self.assertEqual(counter.last, 10)
        counter.passOver(500)
        self.assertEqual(counter.next(), 501)


class RetransmissionPolicyTests(SynchronousTestCase):
    def test_backOffCapped(self) -> None:
        policy = RetransmissionPolicy(1.0, 10)
        intervals = [1.0]
        for _ in range(7):
            intervals.append(policy.backOff(intervals[-1]))
        self.assertEqual(intervals, [1, 2, 4, 8, 16, 32, 32, 32])
        self.assertEqual(policy.maxInterval, MAX_BINDACK_TIMEOUT)

    def test_capBelowInitial(self) -> None:
        """A first timeout over the cap is kept, not shortened."""
        self.assertEqual(RetransmissionPolicy(40.0, 3).backOff(40.0), 40.0)
        self.assertEqual(RetransmissionPolicy(1.0, 3, maxInterval=3.0).backOff(2.0), 3.0)

    def test_exhausted(self) -> None:
        policy = RetransmissionPolicy(1.0, 2)
        self.assertEqual([policy.exhausted(n) for n in range(4)], [False, False, True, True])

    def test_invalid(self) -> None:
        self.assertRaises(ValueError, RetransmissionPolicy, 0.0, 1)
        self.assertRaises(ValueError, RetransmissionPolicy, 1.0, -1)
        self.assertRaises(ValueError, RetransmissionPolicy, 1.0, 1, 0.0)


class EarliestTests(SynchronousTestCase):
    def test_asMin(self) -> None:
        """The smallest deadline given, Nones ignored; None when there is none."""
        rng = random.Random(7)
        for _ in range(2000):
            given = [rng.choice([None, rng.uniform(0, 10), 5.0]) for _ in range(rng.randrange(6))]
            present = [d for d in given if d is not None]
            self.assertEqual(earliest(*given), min(present) if present else None, given)


class DeadlinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.deadlines: dict[bytes, float] = {}
        self.counters: Counter[str] = Counter()
        self.heap = self.make()

    def make(self, ordered: bool = True) -> Deadlines[bytes]:
        return Deadlines(self.deadlines.get, lambda: [(d, k) for k, d in self.deadlines.items()],
                         lambda: len(self.deadlines), self.counters, "heap.compacted", ordered)

    def set(self, key: bytes, due: float | None) -> None:
        previous = self.deadlines.get(key)
        if due is None:
            self.deadlines.pop(key, None)
        else:
            self.deadlines[key] = due
        self.heap.schedule(key, due, previous)

    def test_order(self) -> None:
        self.set(b"b", 2.0)
        self.set(b"a", 1.0)
        self.set(b"c", 3.0)
        self.assertEqual(self.heap.next(), 1.0)
        self.assertEqual(list(self.heap.due(2.5)), [b"a", b"b"])
        self.assertEqual(self.heap.next(), 3.0)

    def test_laterKeepsItsItem(self) -> None:
        """A deadline moved later pushes nothing; its item follows it when it comes up."""
        self.set(b"a", 1.0)
        for later in (2.0, 3.0, 4.0):
            self.set(b"a", later)
        self.assertEqual(len(self.heap), 1)
        self.assertEqual(list(self.heap.due(3.5)), [])
        self.assertEqual(self.heap.next(), 4.0)
        self.assertEqual(list(self.heap.due(4.0)), [b"a"])

    def test_earlierPushes(self) -> None:
        self.set(b"a", 5.0)
        self.set(b"a", 1.0)
        self.assertEqual(list(self.heap.due(1.0)), [b"a"])
        del self.deadlines[b"a"]
        self.assertEqual(list(self.heap.due(10.0)), [])
        self.assertIsNone(self.heap.next())

    def test_goneDropped(self) -> None:
        self.set(b"a", 1.0)
        self.set(b"a", None)
        self.assertEqual(list(self.heap.due(2.0)), [])
        self.assertEqual(len(self.heap), 0)

    def test_compaction(self) -> None:
        """Items of gone keys that pile up are swept by a rebuild, and counted."""
        for i in range(3000):
            key = b"%d" % i
            self.set(key, 100.0 + i)
            self.set(key, None)
        self.set(b"live", 1.0)
        self.assertGreater(self.counters["heap.compacted"], 0)
        self.assertLess(len(self.heap), 1100)
        self.assertEqual(list(self.heap.due(1.0)), [b"live"])

    def test_unordered(self) -> None:
        """Keys that do not compare are served first come first served on ties."""
        deadlines: dict[object, float] = {}
        first, second = object(), object()
        heap: Deadlines[object] = Deadlines(deadlines.get, lambda: [], lambda: len(deadlines),
                                            self.counters, "x", ordered=False)
        for key in (first, second):
            deadlines[key] = 1.0
            heap.schedule(key, 1.0, None)
        self.assertEqual(list(heap.due(1.0)), [first, second])

    def test_pushedWhileDue(self) -> None:
        """A key scheduled again while due() runs is seen by the same run."""
        self.set(b"a", 1.0)
        seen = []
        for key in self.heap.due(5.0):
            seen.append(key)
            if len(seen) == 1:
                self.deadlines[key] = 2.0
                self.heap.schedule(key, 2.0, None)
        self.assertEqual(seen, [b"a", b"a"])

    def test_bucketsHoldKeysAlone(self) -> None:
        """Deadlines past the nearest bucket are bare keys, not heap items;
        the nearest bucket's are exact."""
        for i in range(100):
            self.set(b"%d" % i, 10.0 + i * BUCKET_SECONDS / 3)
        self.assertEqual(len(self.heap), 100)
        self.assertEqual(len(self.heap._heap), 0)
        self.assertEqual(self.heap.next(), 10.0)
        self.assertLessEqual(len(self.heap._heap), 3)
        self.assertEqual(list(self.heap.due(10.0 + BUCKET_SECONDS / 3)), [b"0", b"1"])

    def test_takeEarliest(self) -> None:
        """The earliest deadline filed since the last call, L{Deadlines.next} or
        clear; a deadline moved later or removed files nothing, so is not said."""
        self.set(b"a", 5.0)
        self.set(b"b", 3.0)
        self.set(b"c", 4.0)
        self.assertEqual(self.heap.takeEarliest(), 3.0)
        self.assertIsNone(self.heap.takeEarliest())
        self.set(b"b", 9.0)
        self.set(b"a", None)
        self.assertIsNone(self.heap.takeEarliest())
        self.set(b"c", 2.0)
        self.assertEqual(self.heap.next(), 2.0)
        self.assertIsNone(self.heap.takeEarliest())
        self.set(b"d", 1.0)
        self.heap.clear()
        self.assertIsNone(self.heap.takeEarliest())

    def test_timerFromTakeEarliest(self) -> None:
        """A timer set from L{Deadlines.next}, and after each change moved
        earlier by what L{Deadlines.takeEarliest} says (as a service's
        DeadlineTimer is after each input), is never later than the earliest
        deadline; when it fires, L{Deadlines.next} sets it again. Random
        histories, keys that compare and keys served in order of arrival."""
        for seed in range(60):
            rng = random.Random(seed)
            self.deadlines.clear()
            self.heap = self.make(ordered=seed % 2 == 0)
            now = 0.0
            armed = self.heap.next()
            for step in range(400):
                roll = rng.random()
                if roll < 0.7:
                    key = b"%d" % rng.randrange(60)
                    self.set(key, None if roll < 0.1 else now + rng.choice(
                        (0.0, 0.01, 0.3, 1.0, 2.5, 7.0)) * rng.random() * BUCKET_SECONDS * 3)
                    filed = self.heap.takeEarliest()
                    if filed is not None and (armed is None or filed < armed):
                        armed = filed
                    pending = min(self.deadlines.values(), default=None)
                    if pending is not None:
                        self.assertIsNotNone(armed, (seed, step))
                        assert armed is not None
                        self.assertLessEqual(armed, pending, (seed, step))
                elif armed is not None:
                    # The timer fires (at once, or the clock went past it).
                    now = max(now, armed)
                    for k in self.heap.due(now):
                        del self.deadlines[k]
                    armed = self.heap.next()
                    self.assertEqual(armed, min(self.deadlines.values(), default=None))

    def test_agreesWithTheDeadlines(self) -> None:
        """Random schedules, refreshes (later and earlier), removals and
        clocks: what L{Deadlines} hands out and its next deadline are what
        the deadlines say, whichever bucket an item waits in; keys that
        compare and keys served in order of arrival alike."""
        for seed in range(80):
            rng = random.Random(seed)
            self.deadlines.clear()
            self.heap = self.make(ordered=seed % 2 == 0)
            now = 0.0
            for step in range(400):
                key = b"%d" % rng.randrange(60)
                roll = rng.random()
                if roll < 0.6:
                    self.set(key, now + rng.choice((0.0, 0.01, 0.3, 0.99, 1.0, 2.5, 7.0))
                             * rng.random() * BUCKET_SECONDS * 3)
                elif roll < 0.7:
                    self.set(key, None)
                else:
                    now += rng.random() * BUCKET_SECONDS
                    expected = sorted(k for k, d in self.deadlines.items() if d <= now)
                    handed = []
                    for k in self.heap.due(now):
                        handed.append(k)
                        del self.deadlines[k]  # the owner's part: a handed-out key is done
                    self.assertEqual(sorted(handed), expected, (seed, step))
                    pending = min(self.deadlines.values(), default=None)
                    self.assertEqual(self.heap.next(), pending, (seed, step))
                    self.assertLessEqual(len(self.heap), 2 * len(self.deadlines) + 1024)
