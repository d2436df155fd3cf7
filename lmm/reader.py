"""
The one read loop of every descriptor lmm's shell reads in the reactor
(C{IReadDescriptor}, added with C{reactor.addReader}): the Mobility Header
socket (L{lmm.rawsock}), the access links' packet sockets and the rtnetlink
monitor (L{lmm.mpa.attach}), the userspace tunnel's TUN device and peer
sockets (L{lmm.dataplane.userspace}), the Packet Too Big relay
(L{lmm.dataplane.common}).

Each says how it reads one datagram and what it does with it; L{drain} does
the rest the same way for all: read what is queued, up to a cap per wakeup
(enough to drain a burst, few enough that other descriptors and timers get
their turn); stop at EAGAIN; retry on EINTR; on another error ask the
reader, which logs or counts it and says whether to go on; an exception from
the delivery is logged and the loop goes on (a bad packet never stops a
reader); stop when the reader stopped reading in the meantime.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TypeVar

from lmm.logs import Logger

log = Logger(namespace="lmm.reader")

T = TypeVar("T")


def errorName(code: int | None) -> str:
    """An errno as its name (C{ENETUNREACH}), for counter keys."""
    return errno.errorcode.get(code or 0, str(code))


def stopOnError(what: str) -> Callable[[OSError], bool]:
    """The usual answer to a read error: log it, stop until the next wakeup."""

    def readError(error: OSError) -> bool:
        log.warn("reading {what} failed: {error}", what=what, error=error)
        return False

    return readError


def drain(
    receive: Callable[[], T],
    deliver: Callable[[T], object],
    limit: int,
    readError: Callable[[OSError], bool],
    reading: Callable[[], bool],
    what: str,
) -> int:
    """
    Read and deliver up to C{limit} datagrams; how many were delivered.

    @param receive: reads one datagram (non-blocking); C{BlockingIOError}
        when none is queued.
    @param deliver: handles one; what it raises is logged with C{what}.
    @param readError: called with another C{OSError} of C{receive}; True:
        go on reading, False: stop until the next wakeup.
    @param reading: whether the reader still reads (its descriptor may have
        been closed by what a delivery did).
    """
    count = 0
    for _ in range(limit):
        try:
            item = receive()
        except BlockingIOError:
            break
        except InterruptedError:
            continue
        except OSError as e:
            if readError(e):
                continue
            break
        count += 1
        try:
            deliver(item)
        except Exception:
            log.failure("handling what {what} read failed", what=what)
        if not reading():
            break
    return count
