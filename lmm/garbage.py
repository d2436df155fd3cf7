"""
CPython's cyclic garbage collector, kept off the signaling's latency.

Reference counting frees almost everything a daemon drops; the cyclic
collector is there for the rest (a Failure and its traceback's frames, a
Deferred chain that refers to itself). Its full collection walks every
object it tracks, and a daemon's bindings and visitors are most of them: an
LMAP creating bindings at 5,000/s paused 12, 35 and 50 ms in full collections
within ten seconds (50,000 bindings), which was bench/lmap.py's p99 at that
rate. The pauses grow with the Binding Cache.

L{GarbageCollection} moves what has lived for L{FREEZE_INTERVAL} out of the
collector's generations (C{gc.freeze}, which only joins two lists): the
young collections, which find the cycles of a reactor turn, walk what is
new, and the full ones find almost nothing to walk. A cycle that dies after
it was frozen waits for the full collection every L{FULL_INTERVAL}, of
everything, which logs its pause and what it found.
"""

from __future__ import annotations

import gc
import time

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from lmm.logs import Logger

log = Logger(namespace="lmm.garbage")

#: Seconds between two gc.freeze() calls: what is older waits for the full collection.
FREEZE_INTERVAL = 0.2
#: Seconds between full collections, of the frozen objects too.
FULL_INTERVAL = 3600.0


class GarbageCollection(Service):
    """The freezing and the hourly full collection, while the daemon runs;
    the collector as it was when it stops (in-process tests start daemons)."""

    name = "garbage-collection"

    def __init__(self, reactor: IReactorTime, freezeInterval: float = FREEZE_INTERVAL,
                 fullInterval: float = FULL_INTERVAL) -> None:
        self.reactor = reactor
        self.freezeInterval = freezeInterval
        self.fullInterval = fullInterval
        self.collections = 0
        self._loops: list[LoopingCall] = []

    def startService(self) -> None:
        Service.startService(self)
        # What the start made (modules, configuration, a restored Binding Cache)
        # lives as long as the daemon: collected once, then out of the way.
        gc.collect()
        gc.freeze()
        for call, interval in ((gc.freeze, self.freezeInterval),
                               (self.collect, self.fullInterval)):
            loop = LoopingCall(call)
            loop.clock = self.reactor
            loop.start(interval, now=False).addErrback(
                lambda f: log.failure("garbage collection", f))
            self._loops.append(loop)

    def stopService(self) -> None:
        Service.stopService(self)
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        gc.unfreeze()

    def collect(self) -> int:
        """A full collection of everything, the frozen objects too; how many
        unreachable objects it found."""
        started = time.perf_counter()
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        try:
            found = gc.collect()
        finally:
            gc.freeze()
        self.collections += 1
        log.info("garbage collection: {found} unreachable objects among {frozen} in "
                 "{milliseconds:.1f} ms", found=found, frozen=frozen,
                 milliseconds=(time.perf_counter() - started) * 1000)
        return found
