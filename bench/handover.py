#!/usr/bin/env python3
"""
Handover benchmark: the lab's MS hands over N times between two MPAs while
pinging the correspondent node, through real daemons and seg6 tunnels.

    .venv/bin/python bench/handover.py [--handovers 50] [--dwell 0.4] [--topology FILE]

Prints, over the handovers: pings lost per handover, the time from the link
moving to the first echo reply to a request sent after the link was back (the
outage seen by the MS; it includes the lab's own ~3 ms to move the link), and
the time from the MS's link coming up to its address being usable (bounded by
the host's own DAD). Targets (issue 7): at most 2 lost per handover; p50 of the
link move to first packet under 20 ms.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, top)

from lmm.lab import demo  # noqa: E402
from lmm.lab.topology import DEFAULT_TOPOLOGY, Lab, loadTopology  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--handovers", type=int, default=50)
    parser.add_argument("--dwell", type=float, default=0.4, help="seconds between handovers")
    parser.add_argument("--topology", default=DEFAULT_TOPOLOGY)
    args = parser.parse_args()
    topology = loadTopology(args.topology)
    if len(topology.mpas) < 2:
        print("the topology needs two MPAs")
        return 2
    first, second = topology.mpas[0].name, topology.mpas[1].name
    moves = [second if i % 2 == 0 else first for i in range(args.handovers)]
    topology = dataclasses.replace(topology, handovers=moves, dwell=args.dwell)
    lab = Lab(topology, out=open(os.devnull, "w"))
    result = None
    try:
        lab.start()
        result = demo.runDemo(lab)
    finally:
        lab.stop()
    timeline = demo.buildTimeline(lab, result)
    if result is None or timeline is None:
        print(f"the run failed; logs in {lab.runDir}")
        return 1
    phases = timeline.phases[1:]
    lost = [p.lost for p in phases]
    outages = [p.outage * 1000 for p in phases if p.outage is not None]
    usable = [e.when for e in timeline.phases[0].events if e.label.startswith("address usable")]
    print(f"lmm handover benchmark: {len(phases)} handovers between {first} and {second}, "
          f"{topology.tunnel} tunnels, {lab.aaa} AAA, ping every "
          f"{topology.pingInterval * 1000:g} ms (logs in {lab.runDir})")
    print(f"  pings lost per handover: mean {statistics.mean(lost):.2f}, max {max(lost)}, "
          f"distribution {dict(sorted((n, lost.count(n)) for n in set(lost)))}")
    if outages:
        print(f"  link move -> first reply: p50 {percentile(outages, 0.5):.1f} ms, "
              f"p99 {percentile(outages, 0.99):.1f} ms, max {max(outages):.1f} ms "
              f"({len(phases) - len(outages)} handovers without a reply)")
    if usable:
        print(f"  attach -> address usable: {(usable[0] - timeline.origin) * 1000:.0f} ms")
    print(f"  address kept across all handovers: {result.ok}")
    met = bool(outages) and max(lost) <= 2 and percentile(outages, 0.5) < 20 and result.ok
    print(f"targets (<= 2 lost per handover, p50 < 20 ms): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
