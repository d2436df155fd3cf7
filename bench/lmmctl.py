#!/usr/bin/env python3
"""
lmmctl's start-and-answer time against a running twistd lmm-lmap: what an
access controller pays per event when it calls lmmctl (issue 14: under 50 ms).

    sudo .venv/bin/python bench/lmmctl.py [--runs 50] [--command counters]

A real LMAP (twistd -n lmm-lmap, the recording tunnel backend, an in-memory
Binding Cache, authenticated signaling with a fresh key file) in a network
namespace of its own, its control socket in a temporary folder. Each run is
one process started from here with subprocess and waited for, its output
discarded, timed with time.perf_counter: C{.venv/bin/lmmctl -s SOCKET
COMMAND}, then beside it, in the same run, the older C{python -m lmm.control
SOCKET COMMAND} (which imports Twisted) as a reference. Prints min, median
and p90 of each, and C{met} / C{MISSED} for the target: lmmctl's median
under 50 ms. Every run's answer is checked (exit status 0). The children run
with bytecode caching on (PYTHONDONTWRITEBYTECODE dropped from their
environment), as an installed lmmctl runs: pip compiles a package's modules
when it installs it; the warm-up runs write the checkout's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, top)

from lmm.lab.daemons import Daemon, writeConfig, writeKeyFiles  # noqa: E402
from lmm.lab.netns import Namespace, netnsUnavailableReason  # noqa: E402

LMAP = "fd00:c7::1"
MPA = "fd00:c7::2"
TARGET = 0.050  # seconds, lmmctl's median
BIN = os.path.dirname(sys.executable)


def startLmap(folder: str, namespace: Namespace) -> tuple[Daemon, str]:
    namespace.ip("addr", "add", f"{LMAP}/64", "dev", "lo")
    keys, _ = writeKeyFiles(folder, LMAP, [MPA])
    socketPath = os.path.join(folder, "lmap.sock")
    config = writeConfig(os.path.join(folder, "lmap.toml"), {
        "lmap": {"address": LMAP, "local_network_prefixes": ["2001:db8:c7::/64"],
                 "mpas": ["fd00:c7::/64"]},
        "security": {"keys": keys},
        "control": {"socket": socketPath},
        "store": {"backend": "memory"},
        "tunnel": {"backend": "recording"},
        "log": {"summary_interval": 0},
    })
    daemon = Daemon(namespace, "lmm-lmap", config, os.path.join(folder, "lmap.log"))
    daemon.start("listening for Proxy Binding Updates")
    return daemon, socketPath


# Bytecode cached, as an installed copy has it.
ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timeRuns(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=ENVIRONMENT)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}): "
                             f"{result.stderr.decode(errors='replace')}")
    return times


def summary(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (f"{name:28} min {ordered[0] * 1e3:6.1f} ms  median "
            f"{statistics.median(ordered) * 1e3:6.1f} ms  p90 {p90 * 1e3:6.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--command", default="counters")
    options = parser.parse_args()
    reason = netnsUnavailableReason()
    if reason is not None:
        print(f"skipped: {reason}")
        return 1
    lmmctl = os.path.join(BIN, "lmmctl")
    if not os.path.exists(lmmctl):
        print(f"skipped: no {lmmctl} (run scripts/setup: it installs the console script)")
        return 1
    folder = tempfile.mkdtemp(prefix="lmm-bench-lmmctl-")
    namespace = Namespace.create("ctl")
    daemon = None
    try:
        daemon, socketPath = startLmap(folder, namespace)
        words = options.command.split()
        fast = [lmmctl, "-s", socketPath, *words]
        reference = [sys.executable, "-m", "lmm.control", socketPath, *words]
        timeRuns(fast, 3)  # the page cache warm for both
        timeRuns(reference, 3)
        # Interleaved halves: a machine that slows down mid-run slows both.
        lmmctlTimes: list[float] = []
        referenceTimes: list[float] = []
        for _ in range(2):
            lmmctlTimes += timeRuns(fast, options.runs // 2)
            referenceTimes += timeRuns(reference, options.runs // 2)
        print(f"{options.runs} runs each of '{options.command}' against twistd lmm-lmap")
        print(summary("lmmctl", lmmctlTimes))
        print(summary("python -m lmm.control", referenceTimes))
        median = statistics.median(lmmctlTimes)
        verdict = "met" if median < TARGET else "MISSED"
        print(f"lmmctl median {median * 1e3:.1f} ms < {TARGET * 1e3:.0f} ms: {verdict}")
        return 0
    finally:
        if daemon is not None:
            daemon.stop()
        namespace.delete()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
