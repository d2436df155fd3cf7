"""
The lab's scenarios: an MS attaches, configures its address by SLAAC and
pings the CN; while it pings, it hands over along the topology's path; then
the timeline of the run is printed and drawn. The tests run the same code
with shorter dwell times.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from lmm.lab import timeline as tl
from lmm.lab.netns import waitFor
from lmm.lab.topology import Lab, Station


class ScenarioFailed(Exception):
    """The MS did not get what the scenario expects; the message says what."""


@dataclass
class Result:
    """What a run of L{runDemo} showed."""

    address: str | None = None
    problems: list[str] = field(default_factory=list)
    timeline: tl.Timeline | None = None
    svgPath: str | None = None
    addresses: list[str | None] = field(default_factory=list)  # after each handover

    @property
    def ok(self) -> bool:
        return not self.problems


def attach(lab: Lab, station: Station, timeout: float = 15.0) -> tuple[str, float]:
    """Wait for the MS's address (by its method: SLAAC, DHCPv6, manual) and its
    registration; (address, when usable)."""
    (address,) = lab.waitUsable(station, timeout=timeout)
    usable = time.time()
    configured = lab.configuredAddress(station)
    if configured != address:
        raise ScenarioFailed(f"{station.spec.name} configured {configured}, not {address}")
    waitFor(lambda: lab.registered(station.spec.attach, station.spec.mac), 5, 0.01,
            what=f"{station.spec.attach}'s registration of {station.spec.name}")
    return address, usable


def ping(lab: Lab, station: Station, count: int, interval: float, output: str,
         fromCn: bool = False) -> subprocess.Popen[bytes]:
    """Echo requests every C{interval} seconds from the MS to the CN (or from the
    CN to the MS), on an exact schedule (L{lmm.lab.pinger}: iputils ping spaces
    "10 ms" 16 ms apart here); output as C{ping -D} prints it, in C{output}."""
    if fromCn:
        namespace, destination = lab.cnNs, lab.configuredAddress(station) or ""
    else:
        namespace, destination = station.namespace, lab.topology.cn
    with open(output, "wb") as out:
        return namespace.popenPython("from lmm.lab.pinger import main; import sys; "
                                     "sys.exit(main(sys.argv[1:]))",
                                     destination, repr(interval), str(count),
                                     stdout=out, stderr=subprocess.STDOUT)


def handOver(lab: Lab, station: Station, to: str) -> tuple[float, float]:
    """Move the MS to C{to}'s base station; wait until C{to} registered it and the
    MPA it left dropped it. When the link started moving, and when it was up again."""
    before = [spec.name for spec in lab.topology.mpas
              if lab.baseStations[spec.name] == station.baseStation]
    moved = lab.move(station, to)
    waitFor(lambda: lab.registered(to, station.spec.mac), 5, 0.005,
            what=f"{to}'s registration of {station.spec.name}")
    for name in before:
        if name != to:
            waitFor(lambda n=name: not any(v["mac"] == station.spec.mac  # type: ignore[misc]
                                           for v in lab.visitors(n)), 5, 0.01,
                    what=f"{name} to drop {station.spec.name} (revocation)")
    return moved


def runDemo(lab: Lab, out: Any = None, pings: bool = True, pingFromCn: bool = False,
            bothWays: bool = False) -> Result:
    """
    The demo on a started L{Lab}: the first MS of the topology attaches,
    pings (or is pinged by the CN), hands over along C{topology.handovers}. Raises L{ScenarioFailed}
    (or L{TimeoutError}) when a step does not happen; the timeline is then
    still built by L{buildTimeline} from what was recorded. With C{bothWays},
    a second pinger runs the other way at the same time (its output in
    C{ping-reverse.txt}, L{reverseTimeline}).
    """
    topology = lab.topology
    spec = next(s for s in topology.stations if s.accept)
    result = Result()

    def say(text: str) -> None:
        if out is not None:
            out.write(text + "\n")
            out.flush()

    lab.changes, lab.linkUp = [], []
    origin = time.time()
    lab.origin = origin
    station = lab.attach(spec)
    lab.changes.append((origin, f"{spec.name} link up on {spec.attach}'s base station"))
    lab.linkUp.append(None)
    say(f"{spec.name} ({spec.mac}) attached to {spec.attach}'s base station; waiting for "
        f"its address ({spec.addressMethod})")
    address, usable = attach(lab, station)
    result.address = address
    lab.extraEvents.append(tl.Event(usable, "lab", f"address usable: {address}"))
    say(f"{spec.name} configured {address} in {(usable - origin) * 1000:.0f} ms; "
        f"{spec.attach} registered it")
    dwell, interval = topology.dwell, topology.pingInterval
    # More than enough: ping is stopped at the end.
    count = 2 * math.ceil(dwell * (len(topology.handovers) + 1) / interval)
    pingOutput = lab.path("ping.txt")
    lab.pingOutput, lab.pingInterval = pingOutput, interval
    if pings:
        who = (f"the CN pinging {address}" if pingFromCn
               else f"pinging the CN {topology.cn}")
        say(f"{who} every {interval * 1000:g} ms, "
            f"handing over to {' then '.join(topology.handovers) or 'nowhere'}")
        processes = [ping(lab, station, count, interval, pingOutput, pingFromCn)]
        if bothWays:
            lab.reversePingOutput = lab.path("ping-reverse.txt")
            processes.append(ping(lab, station, count, interval, lab.reversePingOutput,
                                  not pingFromCn))
    time.sleep(dwell)
    for to in topology.handovers:
        moved, up = handOver(lab, station, to)
        lab.changes.append((moved, f"handover to {to}"))
        lab.linkUp.append(up)
        lab.extraEvents.append(tl.Event(up, "lab", f"link up on {to}'s base station"))
        kept = lab.configuredAddress(station)
        result.addresses.append(kept)
        say(f"handed over to {to}: registered in {(time.time() - moved) * 1000:.0f} ms "
            f"(including polling), address {'kept' if kept == address else f'now {kept}'}")
        if kept != address:
            result.problems.append(f"after the handover to {to} the MS has {kept}, "
                                   f"not {address}")
        # A dwell of whole ping intervals would put every move at the same
        # point of the ping cycle, so that a run measures one phase fifty
        # times; a random part of an interval more samples them all.
        time.sleep(max(0.0, moved + dwell + random.uniform(0.0, interval) - time.time()))
    if pings:
        # ping keeps its pace only roughly: stop it at the end of the last dwell
        # (SIGINT: it prints its summary), then give the last replies a moment.
        time.sleep(0.1)
        lab.pingStopped = time.time()
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                result.problems.append("ping did not end")
    lab.end = time.time()
    return result


def buildTimeline(lab: Lab, result: Result | None = None) -> tl.Timeline | None:
    """The timeline of what L{runDemo} recorded (call after L{Lab.stop}: the captures
    are complete then)."""
    changes = getattr(lab, "changes", [])
    if not changes:
        return None
    topology = lab.topology
    names = {topology.lmap: "lmap", **{m.address: m.name for m in topology.mpas}}
    station = next(iter(lab.stations.values()), None)
    address = result.address if result is not None else None
    events = list(lab.extraEvents)
    events += tl.backboneEvents(lab.backbonePcap, names, address)
    if station is not None:
        events += tl.stationEvents(lab.path(f"{station.spec.name}.pcap"), address)
        keys = [station.spec.mac, station.spec.nai]
        for name in ["lmap", *[m.name for m in topology.mpas]]:
            events += tl.logEvents(lab.path(f"{name}.log"), name, keys)
    moving = "link switching" if topology.linkMove == "switch" else "link down, moving"
    for when, title in changes[1:]:
        events.append(tl.Event(when, "lab", f"{moving} ({title})"))
    ping = _pingRecord(lab, getattr(lab, "pingOutput", None))
    # What the daemons sent as they stopped is not part of the scenario.
    end = getattr(lab, "end", None) or float("inf")
    events = [e for e in events if e.when <= end]
    return tl.Timeline.build(changes[0][0], changes, events, ping, lab.linkUp)


def reverseTimeline(lab: Lab) -> tl.Timeline | None:
    """The phases of L{runDemo}'s second pinger (C{bothWays}), without events:
    its losses and outages per handover."""
    changes = getattr(lab, "changes", [])
    ping = _pingRecord(lab, getattr(lab, "reversePingOutput", None))
    if not changes or ping is None:
        return None
    return tl.Timeline.build(changes[0][0], changes, [], ping, lab.linkUp)


def _pingRecord(lab: Lab, path: str | None) -> tl.PingRecord | None:
    """What a pinger of L{runDemo} wrote to C{path}, if it wrote anything."""
    if not path or not os.path.exists(path):
        return None
    with open(path, errors="replace") as f:
        ping = tl.parsePing(f.read(), lab.pingInterval)
    ping.stoppedAt = getattr(lab, "pingStopped", None)
    return ping


def checkPings(timeline: tl.Timeline) -> list[str]:
    """Pings got through after each handover."""
    problems = []
    if timeline.ping is None or not timeline.ping.replies:
        return ["no echo reply at all from the CN"]
    for phase in timeline.phases[1:]:
        if phase.outage is None:
            problems.append(f"no echo reply after the {phase.title}")
    return problems


def writePicture(lab: Lab, timeline: tl.Timeline) -> str:
    path = lab.path("timeline.svg")
    with open(path, "w") as f:
        f.write(timeline.svg(f"lmm-lab: {os.path.basename(lab.topology.path)}, "
                             f"{lab.topology.tunnel} tunnels, {lab.aaa} AAA"))
    return path
