"""
How long L{lmm.nd} takes on the MPA's hot paths: building the unicast Router
Advertisement it sends each MS, and decoding the frames that trigger an attach
(Router Solicitation, DAD Neighbor Solicitation, MLDv2 Report). scapy's time to
build the same RA is printed for scale when scapy is installed.

    python bench/nd.py [iterations]
"""

from __future__ import annotations

import os
import sys
import timeit
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lmm import nd  # noqa: E402

LMAP_MAC = "02:00:5e:00:53:01"
LMAP_LL = nd.linkLocalFromMac(LMAP_MAC)
MS_MAC = "52:54:00:12:34:56"
MS_LL = nd.linkLocalFromMac(MS_MAC)
MS_ADDRESS = nd.addressFromMac("2001:db8:1::", MS_MAC)


def buildAdvertisement() -> bytes:
    return nd.buildRouterAdvertisement(
        LMAP_MAC,
        MS_MAC,
        LMAP_LL,
        MS_LL,
        prefixes=[nd.PrefixInformation("2001:db8:1::", 64, onLink=False, autonomous=True)],
        mtu=1460,
        managed=True,
        other=True,
    )


RS = nd.buildRouterSolicitation(MS_MAC, MS_LL)
DAD_NS = nd.buildNeighborSolicitation(MS_MAC, None, "::", None, MS_ADDRESS)
MLD = nd.buildFrame(
    MS_MAC,
    "33:33:00:00:00:16",
    "::",
    nd.ALL_MLDV2_ROUTERS,
    nd.MLDv2Report((nd.MulticastAddressRecord(4, nd.solicitedNodeMulticast(MS_ADDRESS)),)),
    hopLimit=1,
    routerAlert=True,
)


def measure(name: str, function: Callable[[], object], iterations: int) -> None:
    best = min(timeit.repeat(function, number=iterations, repeat=5))
    print(f"{name:<44} {best / iterations * 1e6:8.2f} µs")


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    assert nd.decodeFrame(RS).message is not None
    assert nd.decodeFrame(DAD_NS).dadTarget == MS_ADDRESS
    measure("build RA (SLLA, MTU, PIO; whole frame)", buildAdvertisement, iterations)
    measure("decode RS frame (with SLLA)", lambda: nd.decodeFrame(RS), iterations)
    measure("decode DAD NS frame + dadTarget", lambda: nd.decodeFrame(DAD_NS).dadTarget, iterations)
    measure("decode MLDv2 Report frame (hop-by-hop)", lambda: nd.decodeFrame(MLD), iterations)
    measure(
        "build NA (virtual LMAP)",
        lambda: nd.buildNeighborAdvertisement(LMAP_MAC, MS_MAC, LMAP_LL, MS_LL),
        iterations,
    )
    try:
        import scapy.layers.inet6 as s6
        from scapy.layers.l2 import Ether
    except ImportError:
        return

    def scapyAdvertisement() -> bytes:
        return bytes(
            Ether(src=LMAP_MAC, dst=MS_MAC)
            / s6.IPv6(src=LMAP_LL, dst=MS_LL, hlim=255)
            / s6.ICMPv6ND_RA(chlim=64, M=1, O=1, prf=0, routerlifetime=1800)
            / s6.ICMPv6NDOptSrcLLAddr(lladdr=LMAP_MAC)
            / s6.ICMPv6NDOptMTU(mtu=1460)
            / s6.ICMPv6NDOptPrefixInfo(
                prefix="2001:db8:1::",
                prefixlen=64,
                L=0,
                A=1,
                validlifetime=2592000,
                preferredlifetime=604800,
            )
        )

    # Byte for byte the same frame, checksum included.
    assert scapyAdvertisement() == buildAdvertisement()
    measure("scapy: build the same RA (for scale)", scapyAdvertisement, max(iterations // 50, 10))


if __name__ == "__main__":
    main()
