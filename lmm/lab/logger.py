"""
The log observer the lab's daemons run with (C{twistd --logger
lmm.lab.logger.observer}): twistd's text format, with microseconds, so that
the timeline can put the daemons' events next to packets captured on the wire.
"""

from __future__ import annotations

import os
from typing import Any, cast

from twisted.logger import ILogObserver, textFileLogObserver

#: The environment variable naming the file the observer appends to.
LOG_VARIABLE = "LMM_LAB_LOG"
#: Like twistd's, with microseconds: 2024-05-01T12:00:00.123456+0000.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"


def observer() -> ILogObserver:
    """A text observer writing to the file named by C{$LMM_LAB_LOG}."""
    # Line-buffered: the lab reads the log while the daemon runs.
    stream = open(os.environ[LOG_VARIABLE], "a", buffering=1)
    # (cast: mypy cannot see that FileLogObserver provides the zope interface)
    return cast(Any, textFileLogObserver(stream, timeFormat=TIME_FORMAT))
