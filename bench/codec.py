"""
Mobility Header codec speed: build and parse a Proxy Binding Update (Local
Address and NAI options) and a Proxy Binding Acknowledgement (Local Address),
in microseconds per message, best of several repeats; scapy building the same
PBU for comparison.

usage: python bench/codec.py [--check]
  --check  exit with status 1 if any lmm figure is over the target
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lmm import mh  # noqa: E402

TARGET_US = 10.0
NAI = b"ms00000001@lmm.test"
ADDRESS = "2001:db8:1::5"


def buildPBU() -> bytes:
    # Building includes making the objects: that is what the MPA does per message.
    return mh.encode(
        mh.ProxyBindingUpdate(1, 400, [mh.LocalAddress(ADDRESS, 64), mh.MobileNodeIdentifier(NAI)])
    )


def buildPBA() -> bytes:
    return mh.encode(mh.ProxyBindingAck(0, 1, 400, [mh.LocalAddress(ADDRESS, 64)]))


def scapyPBU() -> Callable[[], bytes]:
    """scapy's way to the same bytes (checksum left zero, as lmm leaves it)."""
    from scapy.layers.inet6 import MIP6MH_BU, MIP6OptMNID, MIP6OptUnknown

    body = bytes((0, 64)) + mh._packAddress(ADDRESS)

    def build() -> bytes:
        return bytes(
            MIP6MH_BU(
                seq=1,
                flags="AP",
                mhtime=100,
                cksum=0,
                options=[MIP6OptUnknown(otype=22, odata=body), MIP6OptMNID(id=NAI)],
            )
        )

    return build


def perMessage(function: Callable[[], object], number: int, repeat: int) -> float:
    """Best time of C{repeat} runs of C{number} calls, in microseconds per call."""
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if over the target")
    parser.add_argument("--number", type=int, default=20000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=7, help="repeats (the best counts)")
    args = parser.parse_args()

    pbu, pba = buildPBU(), buildPBA()
    # The benchmark measures what it claims: these decode to what was built.
    assert mh.decode(pbu).option(mh.LocalAddress) == mh.LocalAddress(ADDRESS, 64)
    assert mh.decode(pba).option(mh.LocalAddress) == mh.LocalAddress(ADDRESS, 64)

    cases: list[tuple[str, Callable[[], object]]] = [
        (f"build PBU ({len(pbu)} bytes)", buildPBU),
        (f"parse PBU ({len(pbu)} bytes)", lambda: mh.decode(pbu)),
        (f"build PBA ({len(pba)} bytes)", buildPBA),
        (f"parse PBA ({len(pba)} bytes)", lambda: mh.decode(pba)),
    ]
    print(f"lmm.mh on Python {sys.version.split()[0]}, target {TARGET_US:.0f} µs per message")
    over = False
    results = []
    for name, function in cases:
        microseconds = perMessage(function, args.number, args.repeat)
        results.append(microseconds)
        verdict = "under target" if microseconds < TARGET_US else "OVER TARGET"
        over = over or microseconds >= TARGET_US
        print(f"  {name:24s} {microseconds:8.2f} µs  {verdict}")

    try:
        scapyBuild = scapyPBU()
    except ImportError:
        print("  scapy is not installed: no comparison")
    else:
        if scapyBuild() != pbu:
            print("  scapy builds different bytes: comparison skipped")
        else:
            microseconds = perMessage(scapyBuild, max(1, args.number // 100), args.repeat)
            print(
                f"  {'scapy build PBU':24s} {microseconds:8.2f} µs"
                f"  ({microseconds / results[0]:.0f} times lmm's, same bytes)"
            )
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
