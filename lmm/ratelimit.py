"""Keeping logs readable under a flood of bad input."""

from __future__ import annotations

from typing import Callable


class LogLimiter:
    """Allows one log line per key per C{interval} seconds; the counters carry
    the totals, the log carries the first of each kind and a steady trickle."""

    def __init__(self, clock: Callable[[], float], interval: float = 1.0) -> None:
        self.clock = clock
        self.interval = interval
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        return True
