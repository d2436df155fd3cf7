"""
The daemons' log observers (docs/operations.md, "Logs").

twistd's own file observer writes whole seconds and takes no time format.
C{twistd lmm-lmap} and C{twistd lmm-mpa} log through L{observerFactory}
instead, unless C{--logger} or C{--syslog} was given (L{lmm.daemon.DaemonOptions}
sets twistd's C{logger} option): the same places as twistd's (C{--logfile},
default C{twistd.log}; C{-n} without one, or C{--logfile=-}: standard
output; SIGUSR1 reopens a rotated file, as twistd's does), in one of two
formats (C{log.format}):

  - C{text}: twistd's lines, time with milliseconds and the UTC offset:
    C{2024-05-01T12:00:00.123+0000 [lmm.mpa#info] visitor.registered nai=...}
  - C{json}: one JSON object a line (twisted.logger's jsonFileLogObserver,
    no record separator): C{log_time} (seconds since the epoch, float),
    C{log_level}, C{log_namespace}, C{log_format} and its fields; a protocol
    step's C{lmmEvent} and C{lmmFields} (lmm.journal). Read back with
    C{twisted.logger.eventsFromJSONLogFile}, or jq.
"""

from __future__ import annotations

import functools
import string
import sys
from datetime import datetime
from typing import IO, Any, Callable, cast

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
    jsonFileLogObserver,
)
from twisted.logger import Logger as _TwistedLogger

FORMATS = ("text", "json")

#: C{log.level}'s names, lowest first.
LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
          "error": LogLevel.error}

#: The levels this process does not log: below its C{log.level} (L{setLevel}).
#: Empty until a daemon sets it: a test or a library user sees everything.
_muted: frozenset[LogLevel] = frozenset()


def setLevel(level: str) -> None:
    """Log from C{level} (a L{LEVELS} name) up in this process, from the next
    event: every L{Logger}'s events, whichever observer takes them (lmm's file,
    twistd's C{--logger}, syslog)."""
    global _muted
    names = list(LEVELS)
    _muted = frozenset(LEVELS[name] for name in names[:names.index(level)])


def currentLevel() -> str:
    """The lowest level this process logs (L{setLevel})."""
    return next((name for name, value in LEVELS.items() if value not in _muted), "error")


class Logger(_TwistedLogger):
    """twisted.logger's C{Logger} that drops an event below the process's
    C{log.level} (L{setLevel}) before it is built: a debug line at the
    default level costs a set lookup, not an event through the observers
    (which, before, wrote it: C{log.level} filtered only the protocol
    steps' lines, L{lmm.journal})."""

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: Any) -> None:
        if level in _muted:
            return
        super().emit(level, format, **kwargs)

#: Strftime of L{formatTime} without its fraction: twistd's (local time).
_TIME = "%Y-%m-%dT%H:%M:%S"


#: The last second L{formatTime} wrote: its local time, that as text, the UTC offset.
_second: tuple[datetime | None, str, str] = (None, "", "")


def formatTime(when: float | None, digits: int = 3) -> str:
    """C{when} in local time with C{digits} (3: milliseconds; 6: microseconds)
    of the second and the UTC offset, as twistd writes it with the fraction
    added: C{2024-05-01T12:00:00.123+0000}."""
    global _second
    if when is None:
        return "-"
    moment = datetime.fromtimestamp(when)
    whole = moment.replace(microsecond=0)
    second = _second  # one read: another thread may log too
    if second[0] != whole or second[0].fold != whole.fold:
        # Once a second: the two strftimes and the time zone's offset are most
        # of a log line's cost in an attach burst.
        second = _second = (whole, whole.strftime(_TIME), whole.astimezone().strftime("%z"))
    fraction = f"{moment.microsecond:06d}"[:digits]
    return f"{second[1]}.{fraction}{second[2]}"


@functools.lru_cache(maxsize=1024)
def _plainFormat(format: str) -> bool:
    """Whether C{str.format_map} renders C{format} as twisted.logger's
    C{formatWithCall} does: no field is a call (C{{name()}})."""
    try:
        return all(field is None or "()" not in field and "()" not in (spec or "")
                   for _, field, spec, _ in string.Formatter().parse(format))
    except ValueError:
        return False


def classicText(event: dict[str, Any], formatTime: Callable[[float | None], str]) -> str | None:
    """twisted.logger's C{formatEventAsClassicLogText}, the same text: C{str.format_map}
    for the common event (a plain format, no failure, no system given), twisted's
    own formatting (a pure-Python formatter, five times slower) for the rest and for
    anything the fast way cannot render."""
    format = event.get("log_format")
    if (type(format) is not str or "log_failure" in event or "log_flattened" in event
            or event.get("log_system") is not None or not _plainFormat(format)):
        return formatEventAsClassicLogText(event, formatTime)
    try:
        text = format.format_map(event)
    except Exception:
        return formatEventAsClassicLogText(event, formatTime)
    if not text:
        return None
    level = event.get("log_level")
    system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
    line = f"{formatTime(event.get('log_time'))} [{system}] {text}"
    return line.replace("\n", "\n\t") + "\n"


def textObserver(stream: IO[Any], digits: int = 3) -> ILogObserver:
    """twistd's text lines on C{stream}, times with C{digits} of the second."""
    def format(event: dict[str, Any]) -> str | None:
        return classicText(event, lambda when: formatTime(when, digits))

    # (cast: mypy cannot see that FileLogObserver provides the zope interface)
    return cast(ILogObserver, FileLogObserver(stream, format))


def jsonObserver(stream: IO[Any]) -> ILogObserver:
    """One JSON object a line on C{stream}: the event as twisted.logger
    writes it, with C{lmmTime} (the text's time) and C{lmmText} (the text's
    message) added for people and jq."""
    write = jsonFileLogObserver(stream, recordSeparator="")

    def observe(event: dict[str, Any]) -> None:
        write(dict(event, lmmTime=formatTime(event.get("log_time")),
                   lmmText=formatEvent(event)))

    return cast(ILogObserver, observe)


def openLog(logfile: str | None, nodaemon: bool) -> IO[Any]:
    """Where twistd would log (its UnixAppLogger): standard output for C{-}
    or C{-n} without C{--logfile}, else the file (default C{twistd.log}),
    rotated as twistd's, reopened on SIGUSR1."""
    if logfile == "-" or (nodaemon and not logfile):
        if logfile == "-" and not nodaemon:
            sys.exit("Daemons cannot log to stdout, exiting!")
        return sys.stdout
    from twisted.python.logfile import LogFile

    log = LogFile.fromFullPath(logfile or "twistd.log")
    import signal

    if not signal.getsignal(signal.SIGUSR1):
        def rotate(signum: int, frame: Any) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(log.rotate)  # type: ignore[attr-defined]

        signal.signal(signal.SIGUSR1, rotate)
    return cast(IO[Any], log)


def observerFactory(logfile: str | None, nodaemon: bool, format: str = "text"
                    ) -> Callable[[], ILogObserver]:
    """What twistd's C{logger} option takes: called with no arguments when
    logging starts, it opens the log and returns its observer."""
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}: {', '.join(FORMATS)}")

    def make() -> ILogObserver:
        stream = openLog(logfile, nodaemon)
        return jsonObserver(stream) if format == "json" else textObserver(stream)

    return make


#: What L{observer} opens: set by L{useDefaultLogger} (twistd's C{logger}
#: option takes a name, and calls what it names with no arguments).
_default: dict[str, Any] = {"logfile": None, "nodaemon": True, "format": "text"}


def observer() -> ILogObserver:
    """The observer twistd starts logging with (its C{--logger lmm.logs.observer}),
    as L{useDefaultLogger} set it up."""
    return observerFactory(**_default)()


def useDefaultLogger(twistdOptions: Any, format: str) -> bool:
    """Log through L{observer} with twistd's options C{twistdOptions} (the
    parent of a plugin's options: C{--logfile}, C{-n}), in C{format}, unless
    they name a logger or syslog already; whether it did."""
    if twistdOptions is None or twistdOptions.get("logger") or twistdOptions.get("syslog"):
        return False
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}: {', '.join(FORMATS)}")
    _default.update(logfile=twistdOptions.get("logfile"), format=format,
                    nodaemon=bool(twistdOptions.get("nodaemon") or twistdOptions.get("debug")))
    # A name: twistd's ServerOptions imports it after the plugin's options are parsed.
    twistdOptions["logger"] = f"{__name__}.observer"
    return True


__all__ = ["FORMATS", "LEVELS", "Logger", "currentLevel", "formatTime", "jsonObserver", "observer",
           "observerFactory", "openLog", "setLevel", "textObserver", "useDefaultLogger"]
