"""
Turning the state machines' L{Note}s into log lines an operator can live with.

A million bindings must not mean a million log lines: events that happen once
per binding (created, deregistered, expired, refused) are logged at debug level,
which C{log.level = "debug"} shows; at the default level the daemon writes a
summary of its counters instead, every C{log.summary_interval} seconds. The
first refusal of each kind in a second is still logged at info, so a
misconfigured MPA shows up at once.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Callable, Mapping, cast

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

from lmm import config
from lmm.actions import Note
from lmm.config import Setting
from lmm.logs import FORMATS, LEVELS
from lmm.ratelimit import LogLimiter

LOG_SETTINGS = [
    Setting("log.level", config.oneOf(*LEVELS), "info",
            "lowest level logged: debug shows every binding event"),
    Setting("log.summary_interval", config.number(0, 86400), 60.0,
            "seconds between summaries of the counters (0: none)"),
    Setting("log.format", config.oneOf(*FORMATS), "text",
            "text: twistd's lines, times with milliseconds; json: one JSON object a line "
            "(lmm.logs); where: twistd's --logfile (none given, with -n: standard output); "
            "--logger or --syslog replace both"),
]

# The LMAP's events once per binding: debug, and counted.
LMAP_PER_BINDING = frozenset({
    "binding.created", "binding.address-changed", "binding.deregistered", "binding.expired",
    "pbu.confirmation-missing", "bri.acknowledged",
})
# The LMAP's refusals: the first of each kind per second at info, the rest at debug.
LMAP_LIMITED = frozenset({"pbu.rejected", "binding.tunnel-failed"})

# The MPA's events once per visitor: debug (the summary counts them). An MPA
# with thousands of Mobile Stations would otherwise log an attach storm line
# by line.
MPA_PER_VISITOR = frozenset({
    "visitor.attached", "visitor.authenticated", "visitor.registered", "visitor.moved",
    "visitor.detached", "visitor.revoked", "visitor.session-ended", "visitor.expired",
    "visitor.awaiting-address", "visitor.replaced", "address.learned", "address.released",
    "registration.assign", "registration.resync",
})
# The MPA's refusals and failures, limited as the LMAP's are.
MPA_LIMITED = frozenset({
    "visitor.rejected", "visitor.tunnel-failed", "visitor.unregistered", "registration.rejected",
    "registration.given-up",
    "deregistration.given-up", "address.not-allowed", "address.outside-prefix",
    "binding-error.received", "dhcpv6.no-answer", "dhcpv6.server-status",
    "dhcpv6.address-outside-prefix", "dhcpv6.wrong-source", "dhcpv6.dropped",
    "attach.refused",
})


#: Both daemons' events that say the deployment is wrong, not the traffic:
#: logged at warn (each comes once per peer, or once per registration).
WARNINGS = frozenset({"peer.profile-mismatch", "pba.nai-mismatch"})


def formatNote(note: Note) -> str:
    """C{event key=value ...}, status codes with their names, for grep and for people."""
    parts = [note.event]
    for key, value in note.fields.items():
        if isinstance(value, IntEnum):
            value = f"{int(value)}({value.name})"
        parts.append(f"{key}={value}")
    return " ".join(parts)


class Journal:
    """Logs a daemon's Notes and the summaries of its counters."""

    def __init__(
        self,
        namespace: str,
        level: str,
        clock: Callable[[], float],
        perBinding: frozenset[str],
        limited: frozenset[str],
    ) -> None:
        """
        @param perBinding: events that happen once per binding or visitor:
            logged at debug only.
        @param limited: refusals and failures: the first of each kind (and
            status, or C{kind} field) per second at info, the rest at debug.
        """
        self.perBinding = perBinding
        self.limited = limited
        self.level = LEVELS[level]
        self._predicate = predicate = LogLevelFilterPredicate(defaultLogLevel=self.level)
        # (casts: mypy cannot see that these provide the zope interfaces)
        observer = FilteringLogObserver(cast(Any, globalLogPublisher), [cast(Any, predicate)])
        self.log = Logger(namespace=namespace, observer=cast(Any, observer))
        self._debug = self.level <= LogLevel.debug
        self._limiter = LogLimiter(clock)
        self._last: dict[str, int] = {}

    def setLevel(self, level: str) -> None:
        """Log from C{level} up from now on (a reload of C{log.level})."""
        self.level = self._predicate.defaultLogLevel = LEVELS[level]
        self._debug = self.level <= LogLevel.debug

    def note(self, note: Note) -> None:
        event = note.event
        if event in WARNINGS:
            level = LogLevel.warn
        elif event in self.perBinding:
            level = LogLevel.debug
        elif event in self.limited:
            fields = note.fields
            key = f"{event}.{fields.get('status', '')}.{fields.get('kind', '')}"
            level = LogLevel.info if self._limiter.allow(key) else LogLevel.debug
        else:
            level = LogLevel.info
        if level is LogLevel.debug and not self._debug:
            return  # the cheap path: nothing built for a line nobody sees
        # The fields also travel as event keys, for JSON log observers.
        self.log.emit(level, "{line}", line=formatNote(note), lmmEvent=event,
                      lmmFields=note.fields)

    def summary(self, counters: Mapping[str, int], **state: Any) -> None:
        """One line: the state given, and each counter's change since the last summary."""
        changes = []
        for key in sorted(counters):
            delta = counters[key] - self._last.get(key, 0)
            if delta:
                changes.append(f"{key}=+{delta}")
        self._last = dict(counters)
        head = " ".join(f"{k}={v}" for k, v in state.items())
        self.log.info("summary {head} {changes}", head=head,
                      changes=" ".join(changes) or "(no change)", lmmState=state,
                      lmmCounters=dict(counters))
