#!/usr/bin/env python3
"""
How soon an unmodified Linux host sends its first frame after its link's
carrier comes back: the floor under packet detection's handover latency
(an MPA without association reports sees an MS only by what it sends).

    sudo .venv/bin/python bench/carrier.py [--cycles 40] [--down 0.05]

No lmm runs here. Two namespaces: a "base station" (a bridge with no IPv6 of
its own, as in the lab's air namespace) and a host joined to it by veth, its
link-local address configured, DAD off (as the lab's MS). Each cycle takes
the base station's end down for --down seconds and up again, as
L{lmm.lab.topology.Lab.move} does with a cut link; the host's kernel sees its
carrier go and come back. For each cycle: from the kernel's RTM_NEWLINK
notice of the carrier (C{ip -ts monitor link} in the host's namespace) to the
host's first frame on the wire (tcpdump on its end), and what that frame was.
With nothing else sending, it is the host's MLDv2 report on the new carrier
(RFC 3810 section 6.1; Linux resends its reports when a configured link's
carrier returns, "we might have roamed").

bench/handover.py --packet-detection prints the same gap inside the lab
("link up -> the MS's first frame at the new base station").
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lmm.lab import timeline as tl  # noqa: E402
from lmm.lab.netns import Namespace, link, waitFor  # noqa: E402
from lmm.lab.processes import cleanUpOnTerm  # noqa: E402

NOTICE = re.compile(r"\[([0-9T:.-]+)\]\s+\d+: (\S+?)[@:].*LOWER_UP")


def kind(frame: bytes) -> str:
    """A frame's kind, enough to tell an MLDv2 report (ICMPv6 143 behind a
    hop-by-hop header), a Neighbor or Router Solicitation."""
    if frame[12:14] != b"\x86\xdd":
        return f"ethertype 0x{frame[12:14].hex()}"
    header, at = frame[20], 54
    if header == 0:  # hop-by-hop options: its length in 8-octet units beyond the first
        header, at = frame[54], 54 + 8 * (frame[55] + 1)
    if header == 58:
        return {143: "MLDv2 report", 133: "Router Solicitation",
                135: "Neighbor Solicitation"}.get(frame[at], f"ICMPv6 type {frame[at]}")
    return f"IPv6 next header {header}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--down", type=float, default=0.05, help="seconds the carrier is down")
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between cycles")
    args = parser.parse_args()
    cleanUpOnTerm()  # a SIGTERM still removes the namespaces this made
    if os.geteuid() != 0:
        print("run as root (network namespaces)", file=sys.stderr)
        return 2
    station, host = Namespace.create("bs"), Namespace.create("host")
    try:
        station.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
        station.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        port, inside = link(station, host, None, None)
        station.ipBatch(["link add bs type bridge stp_state 0", f"link set {port} master bs",
                         "link set bs up"])
        out = f"/tmp/{host.name}"
        pcap, notices = out + ".pcap", out + ".monitor"
        errors = open(pcap + ".stderr", "wb")
        capture = host.popen(["tcpdump", "-i", inside, "-n", "-U", "--immediate-mode",
                              "-s", "200", "-w", pcap, "inbound or outbound"],
                             stdout=subprocess.DEVNULL, stderr=errors)
        waitFor(lambda: "listening on" in open(pcap + ".stderr").read(), 10, 0.02,
                what="tcpdump to listen")
        monitor = host.popen(["ip", "-ts", "monitor", "link"], stdout=open(notices, "w"))
        time.sleep(1.0)  # the first configuration's reports and solicitations pass
        started = time.time()
        stamps = []
        for _ in range(args.cycles):
            station.ip("link", "set", port, "down")
            time.sleep(args.down)
            stamps.append(time.time())
            station.ip("link", "set", port, "up")
            time.sleep(args.gap)
        capture.terminate()
        monitor.terminate()
        capture.wait()
        monitor.wait()
        ups = []
        for line in open(notices):
            found = NOTICE.match(line)
            if found and found.group(2) == inside:
                ups.append(datetime.datetime.fromisoformat(found.group(1)).timestamp())
        frames = [(when, frame) for when, frame in tl.readPcap(pcap) if when >= started]
        for path in (pcap, notices, pcap + ".stderr"):
            os.unlink(path)
    finally:
        host.delete()
        station.delete()
    delays: list[float] = []
    fromCommand: list[float] = []
    kinds: dict[str, int] = {}
    for i, stamp in enumerate(stamps):
        end = stamps[i + 1] if i + 1 < len(stamps) else float("inf")
        up = next((u for u in ups if stamp <= u < end), None)
        first = next(((w, f) for w, f in frames if (up or stamp) <= w < end), None)
        if up is None or first is None:
            continue
        delays.append((first[0] - up) * 1000)
        fromCommand.append((first[0] - stamp) * 1000)
        what = kind(first[1])
        kinds[what] = kinds.get(what, 0) + 1
    if not delays:
        print("no cycle had both a carrier notice and a frame")
        return 1
    print(f"carrier back -> the host's first frame, {len(delays)} of {args.cycles} cycles "
          f"(kernel {os.uname().release}):")
    print(f"  from the carrier notice: p50 {tl.percentile(delays, 0.5):.1f} ms, "
          f"p99 {tl.percentile(delays, 0.99):.1f} ms, min {min(delays):.1f}, "
          f"max {max(delays):.1f} ms")
    print(f"  from the command that raised it: p50 {tl.percentile(fromCommand, 0.5):.1f} ms, "
          f"mean {statistics.mean(fromCommand):.1f} ms")
    print("  first frames: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    print("no target: the floor under packet detection's link up -> first packet "
          "(issue 15: p50 <= 8 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
