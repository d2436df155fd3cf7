"""
Different backends at the two ends of one tunnel: they all speak plain
RFC 2473 (an outer IPv6 header, next header 41, nothing else), so the kernel's
SRv6 at one end and lmm's userspace tunnel at the other carry the MS's
traffic both ways, with the backbone checked as in L{tests.test_dataplane}.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.test_dataplane import PREFIX_MS, LabMixin


class _InteropTests(LabMixin):
    lmapKind = ""
    mpaKind = ""

    async def test_bothWays(self) -> None:
        """Ping and 1 MB of TCP each way; on the backbone only IPv6-in-IPv6."""
        lab = self.makeLab()
        self.tunnel(lab, self.lmapKind, self.mpaKind)
        await self.checkBothWays(lab)

    async def test_prefixBothWays(self) -> None:
        """An MPA binding for the MS's /64 (RFC 5213 6.10) against the other backend at
        the LMAP: an address in the prefix, then a second one, both ways."""
        lab = self.makeLab(PREFIX_MS)
        _, atMpa = self.tunnel(lab, self.lmapKind, self.mpaKind, 64)
        self.assertPrefixInstalled(lab, atMpa)
        await self.checkPrefixBothWays(lab)

    async def test_packetTooBig(self) -> None:
        """Each end answers a packet too big for the tunnel, its own way."""
        lab = self.makeLab()
        self.tunnel(lab, self.lmapKind, self.mpaKind)
        await self.checkTooBig(lab)


class Seg6LmapUserspaceMpaTests(_InteropTests, TestCase):
    lmapKind = "seg6"
    mpaKind = "userspace"


class UserspaceLmapSeg6MpaTests(_InteropTests, TestCase):
    lmapKind = "userspace"
    mpaKind = "seg6"


class Ip6tnlLmapSeg6MpaTests(_InteropTests, TestCase):
    """On kernels with ip6tnl (skipped, saying why, on others)."""

    lmapKind = "ip6tnl"
    mpaKind = "seg6"


class Seg6LmapIp6tnlMpaTests(_InteropTests, TestCase):
    lmapKind = "seg6"
    mpaKind = "ip6tnl"
