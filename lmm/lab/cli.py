"""
lmm-lab: a PMIPv6 domain of network namespaces on one Linux machine.

  lmm-lab demo [--topology FILE] [--profile draft|rfc5213]
                                   build the topology, attach an MS, hand it over
                                   while it pings, print and draw the timeline
  lmm-lab down [--all]             remove what lab runs left (namespaces, processes)

docs/lab.md explains the demo, its timeline and the topology file.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from dataclasses import replace
from typing import Any

from lmm.lab import demo, freeradius
from lmm.lab.netns import netnsUnavailableReason
from lmm.lab.topology import (
    DEFAULT_TOPOLOGY,
    LINK_MOVES,
    Lab,
    TopologyError,
    checkTopology,
    down,
    loadTopology,
)


def runDemo(topologyPath: str, out: Any = sys.stdout, profile: str | None = None,
            linkMove: str | None = None) -> int:
    """The demo, start to end, with both daemons on C{profile} and the MS's
    link moving as C{linkMove} says (None: as the topology says); its exit
    status."""
    try:
        topology = loadTopology(topologyPath)
        if profile is not None:
            topology = replace(topology, profile=profile)
        if linkMove is not None:
            topology = replace(topology, linkMove=linkMove)
        topology = checkTopology(topology)
    except TopologyError as e:
        out.write(f"lmm-lab: {e}\n")
        return 2
    reason = netnsUnavailableReason()
    if reason is not None:
        out.write(f"lmm-lab: cannot run the lab here: {reason}\n")
        return 2
    if topology.aaa == "radius" and freeradius.missingReason() is not None:
        out.write(f"lmm-lab: the topology asks for RADIUS: {freeradius.missingReason()}\n")
        return 2
    lab = Lab(topology, out=out)
    out.write(f"lmm-lab: run folder {lab.runDir} (configurations, logs, captures)\n")
    result: demo.Result | None = None
    failure: str | None = None
    try:
        lab.start()
        result = demo.runDemo(lab, out)
    except KeyboardInterrupt:
        failure = "interrupted"
    except Exception as e:
        failure = f"{type(e).__name__}: {e}"
        with open(lab.path("failure.txt"), "w") as f:
            traceback.print_exc(file=f)
    finally:
        problems = lab.stop()
    timeline = None
    if lab.changes:
        timeline = demo.buildTimeline(lab, result)
    if timeline is not None:
        out.write("\nTimeline (ms from the MS's link coming up; (+ms) from the phase's start)\n")
        out.write(timeline.text() + "\n")
        svg = demo.writePicture(lab, timeline)
        out.write(f"\nPicture: {svg}\n")
    if result is not None and timeline is not None:
        result.problems += demo.checkPings(timeline)
    if problems:
        out.write("while stopping: " + "; ".join(problems) + "\n")
    if failure is not None:
        out.write(f"\nlmm-lab demo FAILED: {failure}\nEverything was removed; the logs are in "
                  f"{lab.runDir}\n")
        return 1
    assert result is not None
    if result.problems:
        out.write("\nlmm-lab demo FAILED:\n" + "".join(f"  - {p}\n" for p in result.problems)
                  + f"The logs are in {lab.runDir}\n")
        return 1
    out.write(f"\nOK: the MS kept {result.address} across "
              f"{len(topology.handovers)} handover(s) and its pings got through after each. "
              f"Logs: {lab.runDir}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmm-lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    demoParser = commands.add_parser("demo", help="run the demo")
    demoParser.add_argument("--topology", default=DEFAULT_TOPOLOGY,
                            help="topology file (default: etc/lab/demo.toml)")
    demoParser.add_argument("--profile", choices=("draft", "rfc5213"), default=None,
                            help="both daemons' wire profile (default: the topology's "
                                 "lab.profile): rfc5213 is RFC 5213's protocol, each MS a "
                                 "home network prefix of its own")
    demoParser.add_argument("--link-move", choices=LINK_MOVES, default=None,
                            help="how a handover moves the MS's link (default: the "
                                 "topology's lab.link_move): cut, down and up on the other "
                                 "base station; switch, in one step, never down")
    downParser = commands.add_parser("down", help="remove what lab runs left")
    downParser.add_argument("--all", action="store_true",
                            help="also the namespaces of lab runs still running")
    args = parser.parse_args(argv)
    if args.command == "down":
        reason = netnsUnavailableReason()
        if reason is not None:
            sys.stdout.write(f"lmm-lab: nothing to do: {reason}\n")
            return 0
        removed = down(everything=args.all)
        sys.stdout.write(f"lmm-lab down: removed {removed} namespace(s)\n")
        return 0
    return runDemo(args.topology, profile=args.profile, linkMove=args.link_move)


if __name__ == "__main__":
    sys.exit(main())
