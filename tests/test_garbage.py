"""
lmm.garbage: the daemons' cyclic collector, with CPython's real one (what is
frozen, what a collection finds); time from a test clock.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lmm.garbage import FREEZE_INTERVAL, FULL_INTERVAL, GarbageCollection


class _Node:
    other: Any = None


def cycle() -> _Node:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return a


class GarbageCollectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        gc.unfreeze()  # a daemon another test started and left running froze them
        self.clock = Clock()
        self.service = GarbageCollection(self.clock)
        self.service.startService()
        self.addCleanup(self.stop)

    def stop(self) -> None:
        if self.service.running:
            self.service.stopService()

    def test_startFreezes(self) -> None:
        """What exists at the start is frozen; the young generations are empty."""
        self.assertGreater(gc.get_freeze_count(), 1000)

    def test_olderObjectsFrozen(self) -> None:
        """An object made after the start is frozen within FREEZE_INTERVAL."""
        before = gc.get_freeze_count()
        kept = [cycle() for _ in range(1000)]
        self.clock.advance(FREEZE_INTERVAL)
        self.assertGreaterEqual(gc.get_freeze_count(), before + 2000)
        del kept

    def test_frozenCycleCollectedHourly(self) -> None:
        """A cycle that dies after it was frozen is not collected until the
        full collection, which finds it and freezes again what lives."""
        node = cycle()
        alive = weakref.ref(node)
        self.clock.advance(FREEZE_INTERVAL)
        del node
        gc.collect()
        self.assertIsNotNone(alive())  # frozen: out of the collector's reach
        self.clock.advance(FULL_INTERVAL - FREEZE_INTERVAL)
        self.assertEqual(self.service.collections, 1)
        self.assertIsNone(alive())
        self.assertGreater(gc.get_freeze_count(), 1000)

    def test_collectCounts(self) -> None:
        """collect says how many unreachable objects it found: the cycle's two
        at least (and their attribute dicts, and whatever else died)."""
        node = cycle()
        self.clock.advance(FREEZE_INTERVAL)
        del node
        self.assertGreaterEqual(self.service.collect(), 2)

    def test_stopUnfreezes(self) -> None:
        """Stopped: the collector as it was, no timer left."""
        self.service.stopService()
        self.assertEqual(gc.get_freeze_count(), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
