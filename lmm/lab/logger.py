"""
The log observer the lab's daemons run with (C{twistd --logger
lmm.lab.logger.observer}): twistd's text format, with microseconds, so that
the timeline can put the daemons' events next to packets captured on the wire.
"""

from __future__ import annotations

import os

from twisted.logger import ILogObserver

from lmm.logs import textObserver

#: The environment variable naming the file the observer appends to.
LOG_VARIABLE = "LMM_LAB_LOG"
#: (The lines: twistd's, times with microseconds, 2024-05-01T12:00:00.123456+0000.)


def observer() -> ILogObserver:
    """A text observer writing to the file named by C{$LMM_LAB_LOG}."""
    # Line-buffered: the lab reads the log while the daemon runs.
    stream = open(os.environ[LOG_VARIABLE], "a", buffering=1)
    return textObserver(stream, digits=6)  # the daemons' format, with microseconds
