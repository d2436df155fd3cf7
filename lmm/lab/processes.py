"""
What the harnesses of external programs (L{lmm.lab.kea}: Kea, dhclient;
L{lmm.lab.freeradius}) share: a child that dies with the test runner, one
way to end it, and reading the files it writes, which may not exist yet.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from pathlib import Path
from typing import Any


def dieWithParent() -> None:
    """A C{preexec_fn}: the child gets SIGTERM if the test runner dies, even by
    SIGKILL, so that no server or client outlives its test (Linux only; best
    effort)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def cleanUpOnTerm() -> None:
    """SIGTERM (timeout(1), a killed CI job) ends this program as an
    exception would: its C{finally} clauses run, so the namespaces, daemons
    and files it made go (the default action leaves them all behind)."""
    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


def end(process: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
    """End C{process}: SIGTERM, SIGKILL if it is still there after C{timeout}
    seconds; its exit status. Nothing happens to one that has ended."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def readText(path: Path | str) -> str:
    """The text of a file a program writes; empty while there is none (or
    unreadable). Bytes that are not UTF-8 are replaced."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def cpuTimes(pid: int) -> tuple[float, float]:
    """Process C{pid}'s user and system CPU seconds so far, all its threads
    (proc(5): the 14th and 15th fields of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick
