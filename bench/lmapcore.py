#!/usr/bin/env python3
"""
The LMAP's own work per PBU, in one process, with no sockets and no reactor:
L{lmm.lmap.service.LMAPService} (the anchor, its actions, the Binding Cache,
the PBA's encoding) fed PBUs as bytes, on a L{twisted.internet.task.Clock},
its PBAs handed to a port that only counts them; the recording tunnel
backend; signaling unauthenticated.

    .venv/bin/python bench/lmapcore.py [--nais 50000] [--per-turn 256,1]

For each Binding Cache (memory, SQLite in a temporary directory) and each
number of PBUs per reactor turn (--per-turn: 256 is bench/lmap.py's window,
what a busy LMAP reads per wakeup; 1 is an LMAP at a low rate, where every
PBU is a turn of its own and so a commit of its own): µs per PBU for
--nais new bindings, then for their refreshes. No target: bench/lmap.py
measures the daemon; this says how much of its time per PBU is the core's.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from ipaddress import IPv6Network
from typing import Any, cast

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from twisted.internet.task import Clock  # noqa: E402

from lmm import mh  # noqa: E402
from lmm.lmap.anchor import LocalMobilityAnchor  # noqa: E402
from lmm.lmap.cache import BindingCache  # noqa: E402
from lmm.lmap.service import LMAPService  # noqa: E402
from lmm.lmap.store import SQLiteBindingCache  # noqa: E402
from lmm.testing.doubles import RecordingDataPlane  # noqa: E402

LMAP = "fd00:b::1"
MPA = "fd00:b::2"


class CountingPort:
    """The Mobility Header port's C{send}, counting the PBAs and those whose
    status (the octet after the Mobility Header's 6) is not 0."""

    def __init__(self) -> None:
        self.sent = 0
        self.refused = 0

    def send(self, data: bytes, destination: str) -> bool:
        self.sent += 1
        if data[6]:
            self.refused += 1
        return True


def pbu(sequence: int, n: int) -> bytes:
    return mh.encode(mh.BindingUpdate(sequence, 3600, (
        mh.MobileNodeIdentifier(f"ms{n}@lmm.test".encode()),
        mh.LocalAddress("::", 64)), ack=True, proxy=True))


def measure(store: Any, nais: int, perTurn: int) -> tuple[float, float]:
    """µs per PBU: new bindings, then refreshes."""
    clock = Clock()
    clock.advance(1_800_000_000.0)
    # As bench/lmap.py's daemon: one /64 local network prefix, the draft profile.
    anchor = LocalMobilityAnchor(LMAP, [IPv6Network("2001:db8:1::/64")],
                                 [IPv6Network("fd00:b::/64")], maxLifetime=3600,
                                 profile=mh.DRAFT, revocationTimeout=1.0, revocationRetries=3,
                                 store=store)
    service = LMAPService(anchor, RecordingDataPlane(), LMAP, mh.DRAFT, clock)
    port = CountingPort()
    service.signaling.port = cast(Any, port)
    figures = []
    for sequence in (1, 2):
        messages = [pbu(sequence, n) for n in range(nais)]
        gc.collect()
        started = time.perf_counter()
        for first in range(0, nais, perTurn):
            for message in messages[first:first + perTurn]:
                service.datagramReceived(message, MPA)
            clock.advance(0.001)  # the turn ends: its commit, its PBAs
        figures.append((time.perf_counter() - started) / nais * 1e6)
    if port.sent != 2 * nais or port.refused:
        raise RuntimeError(f"{port.sent} PBAs for {2 * nais} PBUs, {port.refused} refusing")
    return figures[0], figures[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nais", type=int, default=50_000)
    parser.add_argument("--per-turn", default="256,1",
                        help="PBUs per reactor turn, comma-separated")
    args = parser.parse_args()
    print(f"lmm-lmap's core, one process, {args.nais} NAIs (new bindings, then refreshes):")
    for perTurn in (int(n) for n in args.per_turn.split(",")):
        for kind in ("memory", "sqlite"):
            folder = tempfile.mkdtemp(prefix="lmm-bench-lmapcore-")
            try:
                store = (BindingCache() if kind == "memory"
                         else SQLiteBindingCache(os.path.join(folder, "lmap.sqlite")))
                created, refreshed = measure(store, args.nais, perTurn)
                if isinstance(store, SQLiteBindingCache):
                    store.close()
            finally:
                shutil.rmtree(folder)
            print(f"  {kind:6} {perTurn:4} per turn: new {created:6.1f} µs, refresh "
                  f"{refreshed:6.1f} µs per PBU")
    print("no target: the daemon's figures are bench/lmap.py's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
