"""
lmm-lab: a PMIPv6 domain of network namespaces on one Linux machine.

The lab issue builds it; until then `lmm-lab demo` says what is missing rather
than pretending.
"""

from __future__ import annotations

import argparse
import sys

MISSING = """\
lmm-lab demo is not built yet. It needs, by issue:
  - the MPA (attach detection, AAA, home-link emulation, proxy registration)
  - address configuration (DHCPv6 relay, SLAAC, manual)
  - the kernel and userspace tunnel data planes
  - the lab itself (topology, scenarios, timeline)
What runs today: twistd lmm-lmap and twistd lmm-mpa with --config (samples in etc/),
and the test suite (./run tests).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmm-lab", description=__doc__)
    parser.add_argument("command", choices=["demo", "down"])
    args = parser.parse_args(argv)
    if args.command == "down":
        return 0
    sys.stdout.write(MISSING)
    return 3


if __name__ == "__main__":
    sys.exit(main())
