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


class SourceLimiter:
    """
    A token bucket per source address: at most C{rate} messages a second from
    each, C{burst} at once (default: C{rate}); C{rate} 0 lets everything
    through. The buckets of at most C{maxSources} sources are kept: a flood
    from spoofed addresses empties the table rather than filling memory (and
    each new source starts with a full bucket, so such a flood is not slowed
    by it; what stops that is the signaling's authentication).
    """

    def __init__(self, rate: float, burst: float | None = None,
                 maxSources: int = 1 << 16) -> None:
        self.rate = rate
        self.burst = max(1.0, rate if burst is None else burst)
        self.maxSources = maxSources
        self._buckets: dict[str, list[float]] = {}

    def allow(self, source: str, now: float) -> bool:
        if self.rate <= 0:
            return True
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.maxSources:
                self._buckets.clear()
            self._buckets[source] = [self.burst - 1.0, now]
            return True
        tokens = min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True
