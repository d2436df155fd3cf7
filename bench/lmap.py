#!/usr/bin/env python3
"""
Signaling benchmark of a running twistd lmm-lmap (recording tunnel backend),
measured side by side with the C reference responder from the same load
generator (../shared/tools: pbu-loadgen, pbu-reflector).

    sudo .venv/bin/python bench/lmap.py [--fill-seconds 90] [--tools DIR]
        [--only authentication]

Two namespaces joined by veth; the responder runs on CPU 1, the generator on
CPU 0. Runs, in order:
  1. reference, as fast as a window of 256 allows, and at 5,000 PBU/s; then
     the same for bench/tools/rawsock_reflector.py, the reflector's answer on
     lmm's read path (Twisted, lmm.rawsock) with no core: the floor of Python
     and Twisted, printed beside the targets, not one;
  2. a fresh LMAP at 5,000 PBU/s, new bindings (latency);
  3. two kinds of fresh LMAP as fast as the window allows with 20,000 NAIs,
     alternated four times, one without authentication, one with, from one
     generator (bench/tools/pbu-loadgen-auth: pbu-loadgen's PBUs, plain or
     signed as lmm.security signs them, doing the signing's work in both; it
     polls without sleeping, so that the LMAP does not pay for waking it at
     every answer); the LMAP signs and checks everything; each run's 20,000
     bindings are made first, uncounted, so that both measure refreshes
     (in a run of fixed length the slower kind would otherwise answer more
     new bindings, which cost more, than the faster one);
  4. two kinds of LMAP alternated four times, authenticated, one with its
     Binding Cache in memory, one in SQLite (refreshes, as in 3);
  5. a fresh LMAP as fast as the window allows with 1,000,000 distinct NAIs
     for --fill-seconds: it creates a million bindings and refreshes them;
     resident memory is read before and after.
The LMAPs of 2 and 5 keep their Binding Cache in SQLite (the default); those
of 3 in memory (the figure is what authentication costs).
Targets (issue 3): >= 20,000 PBU/s answered with status 0 and 1,000,000
bindings; >= 0.25 of the reference's rate; p99 at 5,000 PBU/s within 2 ms of
the reference's; <= 1 KiB resident per binding. Issue 12: with authentication
at least 0.8 of the rate without, same run. Issue 13: with the SQLite Binding
Cache at least 0.7 of the in-memory rate, same run. Issue 15: >= 50,000
PBU/s with status 0 over the million bindings, >= 0.4 of the reference's
rate, p99 at 5,000/s within 0.5 ms of the reference's, <= 512 B per binding,
and >= 35,000/s authenticated with the SQLite Binding Cache (run 4's).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, top)

from lmm.lab.daemons import Daemon, writeConfig  # noqa: E402
from lmm.lab.netns import Namespace, link  # noqa: E402
from lmm.lab.processes import cleanUpOnTerm, cpuTimes  # noqa: E402
from lmm.mh import OptionType  # noqa: E402
from lmm.security import (  # noqa: E402
    HMAC_SHA256_128,
    MobilitySecurityAssociation,
    writeKeyFile,
)

RESPONDER = "fd00:b::1"
GENERATOR = "fd00:b::2"
PREFIX = "2001:db8:1::"
LOCAL_ADDRESS_TYPE = int(OptionType.HOME_NETWORK_PREFIX)  # the draft profile's default
SPI = 1000
TURNS = 4  # each of two LMAPs compared runs this many times, alternated
AUTH_NAIS = 20_000  # the authentication comparison: new bindings, then refreshes
# (20,000: a second round of the 16-bit sequence numbers is still newer than the first)


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return (["taskset", "-c", str(cpu)] if shutil.which("taskset") else []) + argv


def loadgen(gen: Namespace, tools: str, seconds: float, window: int, nais: int,
            rate: int = 0, key: bytes | None = None, signing: bool = False,
            measuring: Callable[[], None] | None = None) -> dict[str, float]:
    """pbu-loadgen's figures; with C{signing}, bench/tools/pbu-loadgen-auth's
    (which never sleeps), signing every PBU under SPI L{SPI} with C{key}
    (docs/security.md), or none with C{key} None; with C{measuring} too,
    the figures of refreshes only: each NAI's binding is made first, not
    counted, and C{measuring()} is called as the measured run starts."""
    if not signing:
        command = [os.path.join(tools, "pbu-loadgen"), RESPONDER]
    else:
        command = [os.path.join(tools, "pbu-loadgen-auth"), RESPONDER, GENERATOR, str(SPI),
                   "-" if key is None else key.hex()]
    argv = pinned(0, [*command, str(seconds), str(window),
                      str(nais), str(rate), str(LOCAL_ADDRESS_TYPE), PREFIX,
                      *(["1"] if signing and measuring is not None else [])])
    if not signing or measuring is None:
        out = gen.run(argv, timeout=seconds + 60).stdout
    else:
        process = gen.popen(argv, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            first = process.stdout.readline()  # "measuring: ...", once the bindings are made
            measuring()
            out = first + process.communicate(timeout=seconds + 120)[0]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    m = re.search(r"sent (\d+) answered (\d+) in ([\d.]+) s: (\d+) PBA/s; latency p50 ([\d.]+) ms "
                  r"p99 ([\d.]+) ms", out)
    if not m:
        raise RuntimeError(f"unexpected pbu-loadgen output:\n{out}")
    result = {"sent": int(m[1]), "answered": int(m[2]), "seconds": float(m[3]),
              "rate": float(m[4]), "p50": float(m[5]), "p99": float(m[6])}
    for status, count in re.findall(r"status (\d+): (\d+)", out):
        result[f"status{status}"] = int(count)
    result["ok_rate"] = result.get("status0", 0) / result["seconds"]
    return result


def measuredCpu(pid: int, run: Callable[[], dict[str, float]]) -> tuple[dict[str, float], float]:
    """C{run()}'s figures, and the CPU (user and system, µs) process C{pid}
    spent per PBA answered meanwhile."""
    before = cpuSeconds(pid)
    result = run()
    return result, (cpuSeconds(pid) - before) * 1e6 / max(1, result["answered"])


def rssKiB(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpuSeconds(pid: int) -> float:
    """The process's user and system time so far (all its threads)."""
    return sum(cpuTimes(pid))


def startLMAP(ns: Namespace, folder: str, name: str, key: bytes | None = None,
              store: str = "sqlite") -> Daemon:
    """An lmm-lmap; with C{key}, authenticating (one SA with the generator);
    its Binding Cache in C{store} ("sqlite", the default, or "memory"), a
    fresh database per run."""
    # One generator stands for many MPAs: no per-source limit.
    security: dict[str, Any] = {"authentication": False, "max_rate_per_source": 0}
    if key is not None:
        path = writeKeyFile(os.path.join(folder, f"{name}.keys"), [
            MobilitySecurityAssociation(GENERATOR, SPI, HMAC_SHA256_128, key)])
        security = {"keys": path, "max_rate_per_source": 0}
    config = writeConfig(os.path.join(folder, f"{name}.toml"), {
        "lmap": {"address": RESPONDER, "local_network_prefixes": [PREFIX + "/64"],
                 "mpas": ["fd00:b::/64"], "max_lifetime": 3600},
        "tunnel": {"backend": "recording"},
        "security": security,
        "store": {"backend": store, "path": f"{name}.sqlite"},
    })
    daemon = Daemon(ns, "lmm-lmap", config, os.path.join(folder, f"{name}.log"))
    # Pin the daemon like the reflector: same core, same conditions.
    daemon.start(ready="listening for Proxy Binding Updates")
    subprocess.run(["taskset", "-p", "-c", "1", str(daemon.pid)],
                   capture_output=True, check=False)
    return daemon


def alternated(seconds: float,
               kinds: dict[str, Callable[[int], tuple[Daemon, bytes | None]]],
               gen: Namespace, tools: str) -> dict[str, dict[str, float]]:
    """Each kind of LMAP (C{kinds[label](turn)}: a fresh daemon and the key the
    generator signs with) run L{TURNS} times in turn (A, B, A, B, ...), from pbu-loadgen-auth
    with L{AUTH_NAIS} NAIs, each run's bindings made first and not counted
    (refreshes only: a slower kind's short run is not more of new bindings
    than a faster one's): each figure the runs' together (L{merged}), so
    that a slow spell of the machine falls on both."""
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in kinds}
    for turn in range(TURNS):
        for label, start in kinds.items():
            daemon, key = start(turn)
            pid = daemon.pid
            started: list[float] = []
            result = loadgen(gen, tools, seconds, 256, AUTH_NAIS, key=key, signing=True,
                             measuring=partial(lambda s, p: s.append(cpuSeconds(p)),
                                               started, pid))
            result["cpu"] = cpuSeconds(pid) - started[0]
            runs[label].append(result)
            daemon.stop()
    return {label: merged(results) for label, results in runs.items()}


def merged(results: list[dict[str, float]]) -> dict[str, float]:
    """Several runs' figures as one: rates over their total time, the worst p50 and p99."""
    seconds = sum(r["seconds"] for r in results)
    total: dict[str, float] = {"seconds": seconds,
                               "p50": max(r["p50"] for r in results),
                               "p99": max(r["p99"] for r in results)}
    for key in {k for r in results for k in r if k in ("sent", "answered", "cpu")
                or k.startswith("status")}:
        total[key] = sum(r.get(key, 0) for r in results)
    total["rate"] = total["answered"] / seconds
    total["ok_rate"] = total.get("status0", 0) / seconds
    return total


def show(label: str, r: dict[str, float]) -> None:
    statuses = ", ".join(f"{k[6:]}: {int(v)}" for k, v in r.items() if k.startswith("status"))
    print(f"  {label:44} {r['rate']:9.0f} PBA/s ({r['ok_rate']:.0f}/s status 0)  "
          f"p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  [{statuses}]", flush=True)


def authentication(resp: Namespace, gen: Namespace, work: str, tools: str, key: bytes,
                   seconds: float) -> dict[str, dict[str, float]]:
    """Run 3 of the module docstring: the rates without and with authentication."""
    print(f"lmm-lmap, authentication off and on (RFC 4285, HMAC-SHA256-128), "
          f"window 256, {AUTH_NAIS} NAIs")
    # The Binding Cache in memory for both: the figure is what authentication costs.
    rates = alternated(seconds / TURNS, {
        "off": lambda n: (startLMAP(resp, work, f"auth-off-{n}", None, store="memory"),
                          None),
        "on": lambda n: (startLMAP(resp, work, f"auth-on-{n}", key, store="memory"), key),
    }, gen, tools)
    for label in ("off", "on"):
        show(f"authentication {label} ({TURNS} runs of {seconds / TURNS:g} s)",
             rates[label])
    # The daemon's own CPU time per answer: what authentication costs it,
    # whatever else the machine did meanwhile (the rates' share is the target).
    cpuPer = {label: rates[label]["cpu"] / max(1.0, rates[label]["answered"]) * 1e6
              for label in ("off", "on")}
    print(f"  CPU per PBA: off {cpuPer['off']:.1f} us, on {cpuPer['on']:.1f} us: "
          f"the rate one core could answer, on as a share of off, "
          f"{cpuPer['off'] / max(1e-9, cpuPer['on']):.2f}")
    return rates


def authenticationTarget(rates: dict[str, dict[str, float]]) -> tuple[str, bool, str]:
    on, off = rates["on"]["ok_rate"], rates["off"]["ok_rate"]
    return (">= 0.8 of the unauthenticated rate with authentication", on >= 0.8 * off,
            f"{on:.0f} vs {off:.0f}/s: {on / max(1.0, off):.2f}")


def report(checks: list[tuple[str, bool, str]]) -> int:
    """The targets' lines; 0 when every one is met."""
    print("targets:")
    for what, ok, figure in checks:
        print(f"  {'met ' if ok else 'MISSED'} {what}: {figure}")
    return 0 if all(ok for _, ok, _ in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", default=os.path.join(top, "..", "shared", "tools"))
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the short runs")
    parser.add_argument("--fill-seconds", type=float, default=90.0)
    parser.add_argument("--nais", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["authentication"],
                        help="run only this comparison (3 in the list above) and its target")
    args = parser.parse_args()
    cleanUpOnTerm()  # a SIGTERM still removes the namespaces this made
    if os.geteuid() != 0:
        print("bench/lmap.py needs root (network namespaces, raw sockets)")
        return 2
    work = tempfile.mkdtemp(prefix="lmm-bench-lmap-")
    tools = subprocess.run([os.path.join(args.tools, "build"), os.path.join(work, "tools")],
                           capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["gcc", "-O2", "-Wall", "-o", os.path.join(tools, "pbu-loadgen-auth"),
                    os.path.join(top, "bench", "tools", "pbu-loadgen-auth.c"), "-lcrypto"],
                   check=True)
    key = secrets.token_bytes(32)
    resp = Namespace.create("resp")
    gen = Namespace.create("gen")
    try:
        link(resp, gen, RESPONDER, GENERATOR)
        print(f"lmm-lmap signaling benchmark ({os.cpu_count()} CPUs; logs in {work})")
        if args.only == "authentication":
            return report([authenticationTarget(
                authentication(resp, gen, work, tools, key, args.seconds))])

        print("reference: pbu-reflector (stateless C)")
        reflector = resp.popen(pinned(1, [os.path.join(tools, "pbu-reflector")]),
                               stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        refMax = loadgen(gen, tools, args.seconds, 256, 1000)
        show("as fast as window 256 allows", refMax)
        refSlow = loadgen(gen, tools, args.seconds, 256, 1000, rate=5000)
        show("at 5,000 PBU/s", refSlow)
        reflector.terminate()
        reflector.wait()

        # The floor of lmm's own read path (Twisted, lmm.rawsock), the same answer.
        print("reference: bench/tools/rawsock_reflector.py (Twisted and lmm.rawsock, no core)")
        floor = resp.popen(pinned(1, [sys.executable, os.path.join(top, "bench", "tools",
                                                                    "rawsock_reflector.py"),
                                      RESPONDER]), stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # the interpreter and Twisted start
        floorMax, floorCpu = measuredCpu(floor.pid, lambda: loadgen(gen, tools, args.seconds,
                                                                    256, 1000))
        show("as fast as window 256 allows", floorMax)
        floorSlow, floorSlowCpu = measuredCpu(floor.pid, lambda: loadgen(
            gen, tools, args.seconds, 256, 1000, rate=5000))
        show("at 5,000 PBU/s", floorSlow)
        print(f"  CPU per PBA: {floorCpu:.1f} us as fast as it can, {floorSlowCpu:.1f} us at "
              f"5,000/s")
        floor.terminate()
        floor.wait()

        print("lmm-lmap (twistd, recording tunnel backend)")
        daemon = startLMAP(resp, work, "latency")
        slow = loadgen(gen, tools, args.seconds, 256, args.nais, rate=5000)
        show("at 5,000 PBU/s, new bindings", slow)
        daemon.stop()

        rates = authentication(resp, gen, work, tools, key, args.seconds)

        print(f"lmm-lmap, Binding Cache in memory and in SQLite (authentication on), "
              f"window 256, {AUTH_NAIS} NAIs")
        def withStore(store: str) -> Callable[[int], tuple[Daemon, bytes | None]]:
            return lambda n: (startLMAP(resp, work, f"store-{store}-{n}", key, store=store), key)

        storeRates = alternated(args.seconds / TURNS, {store: withStore(store)
                                                   for store in ("memory", "sqlite")},
                                gen, tools)
        for label in ("memory", "sqlite"):
            show(f"{label} ({TURNS} runs of {args.seconds / TURNS:g} s)", storeRates[label])

        daemon = startLMAP(resp, work, "fill")
        pid = daemon.pid
        before = rssKiB(pid)
        fill = loadgen(gen, tools, args.fill_seconds, 256, args.nais)
        after = rssKiB(pid)
        show(f"window 256, {args.nais} NAIs, {args.fill_seconds:.0f} s", fill)
        daemon.stop()
        cycled = fill.get("status0", 0) >= args.nais
        perBinding = (after - before) * 1024 / args.nais if cycled else float("nan")
        print(f"  resident memory: {before / 1024:.1f} MiB at start, {after / 1024:.1f} MiB with "
              f"{args.nais if cycled else 'fewer than ' + str(args.nais)} bindings: "
              f"{perBinding:.0f} bytes per binding")

        ratio = fill["ok_rate"] / refMax["rate"]
        checks = [
            (">= 20,000 PBU/s answered with status 0", fill["ok_rate"] >= 20000,
             f"{fill['ok_rate']:.0f}/s"),
            (f"{args.nais} bindings in the cache", cycled,
             f"{fill.get('status0', 0):.0f} accepted"),
            (">= 0.25 of the reference's rate", ratio >= 0.25, f"{ratio:.2f}"),
            ("p99 at 5,000/s within 2 ms of the reference's", slow["p99"] - refSlow["p99"] <= 2.0,
             f"{slow['p99']:.3f} vs {refSlow['p99']:.3f} ms"),
            ("<= 1 KiB resident per binding", perBinding <= 1024, f"{perBinding:.0f} B"),
            authenticationTarget(rates),
            (">= 0.7 of the in-memory rate with the SQLite Binding Cache",
             storeRates["sqlite"]["ok_rate"] >= 0.7 * storeRates["memory"]["ok_rate"],
             f"{storeRates['sqlite']['ok_rate']:.0f} vs {storeRates['memory']['ok_rate']:.0f}/s: "
             f"{storeRates['sqlite']['ok_rate'] / max(1.0, storeRates['memory']['ok_rate']):.2f}"),
        ]
        sqliteRate = storeRates["sqlite"]["ok_rate"]
        # Issue 15's (item 2): each a ratio or a figure of this run.
        checks += [
            ("issue 15: >= 50,000 PBU/s answered with status 0, 1,000,000 bindings",
             fill["ok_rate"] >= 50000 and cycled, f"{fill['ok_rate']:.0f}/s"),
            ("issue 15: >= 0.4 of the reference's rate", ratio >= 0.4, f"{ratio:.2f}"),
            ("issue 15: p99 at 5,000/s within 0.5 ms of the reference's",
             slow["p99"] - refSlow["p99"] <= 0.5,
             f"{slow['p99']:.3f} vs {refSlow['p99']:.3f} ms"),
            ("issue 15: <= 512 B resident per binding", perBinding <= 512, f"{perBinding:.0f} B"),
            ("issue 15: >= 35,000/s with authentication and the SQLite Binding Cache",
             sqliteRate >= 35000, f"{sqliteRate:.0f}/s"),
        ]
        # Not a target: how much of each target lmm's read path alone leaves.
        print(f"lmm's read path with no core, same run (no target): "
              f"{floorMax['rate'] / refMax['rate']:.2f} of the reflector's rate; p99 at 5,000/s "
              f"{floorSlow['p99']:.3f} ms, {floorSlow['p99'] - refSlow['p99']:+.3f} ms from the "
              f"reflector's")
        return report(checks)
    finally:
        gen.delete()
        resp.delete()


if __name__ == "__main__":
    sys.exit(main())
