"""
An LMAP and MPAs on different wire profiles (issue 16, part 3 and 6): real
daemons in the lab's namespaces, Linux MSs. Nothing may look like success:
no binding, no registered visitor, and each daemon names the mismatch in its
log (once per peer, at warn: tests.test_service.JournalLevelTests) and in its
control channel's C{peers}, on the first exchange that shows it.
"""

from __future__ import annotations

from ipaddress import IPv6Network

from lmm.lab.netns import waitFor
from lmm.lab.topology import Lab, MSSpec, randomMac
from tests.test_lab import LabTestCase


class CrossProfileTests(LabTestCase):
    def start(self, lmapProfile: str, mpaProfile: str) -> tuple[Lab, list[MSSpec]]:
        """One MS that asks by Binding Cache Confirmation (SLAAC, its address
        unknown to the MPA) and one whose profile gives its address."""
        # The manual MS's address, inside the lab's LNP (unique to the run).
        manual = str(IPv6Network(self.topology().prefix).network_address + 0x5EED)
        specs = [MSSpec("ms1", randomMac(), "mpa1"),
                 MSSpec("ms2", randomMac(), "mpa1", addressMethod="manual",
                        localAddress=manual)]
        lab = self.makeLab(self.topology(
            stations=specs, handovers=[],
            lmapOverrides={"wire.profile": lmapProfile},
            mpaOverrides={"wire.profile": mpaProfile}))
        for spec in specs:
            lab.attach(spec)
        return lab, specs

    def mismatchNamed(self, lab: Lab, name: str, peer: str, other: str) -> None:
        """C{name}'s log and C{peers} name C{peer} as speaking profile C{other}."""
        mismatches = lab.ask(name, "peers")["profileMismatches"]
        self.assertEqual(list(mismatches), [peer], mismatches)
        self.assertIn(f"{other!r} wire profile", mismatches[peer])
        log = lab.daemons[name].log()
        lines = [line for line in log.splitlines()
                 if f"peer.profile-mismatch peer={peer}" in line]
        self.assertEqual(len(lines), 1, log)

    def nothingRegistered(self, lab: Lab) -> None:
        self.assertEqual(lab.bindings(), [])
        visitors = lab.visitors("mpa1")
        self.assertEqual(len(visitors), 2, visitors)
        self.assertEqual({v["state"] for v in visitors}, {"awaiting-address"}, visitors)

    def test_lmapRfc5213MpaDraft(self) -> None:
        """The draft MPA's confirmation gets the rfc5213 LMAP's "no entry"
        (153), which the MPA names; its Local Address (type 22) reads at the
        LMAP as an HNP holding a whole address: refused with 155, named."""
        lab, specs = self.start("rfc5213", "draft")
        mpa = lab.topology.mpa("mpa1").address
        waitFor(lambda: lab.lmapCounters().get("pbu.rejected.155", 0) >= 1, 10, 0.05,
                what="the LMAP to refuse the draft Local Address")
        waitFor(lambda: lab.lmapCounters().get("pbu.rejected.153", 0) >= 1, 10, 0.05,
                what="the LMAP to answer the confirmation")
        self.mismatchNamed(lab, "lmap", mpa, "draft")
        self.mismatchNamed(lab, "mpa1", lab.topology.lmap, "rfc5213")
        self.nothingRegistered(lab)

    def test_lmapDraftMpaRfc5213(self) -> None:
        """The other way: the draft LMAP's 141 to a confirmation is named by
        the rfc5213 MPA; the MPA's Local Address (type 253) is unknown to the
        LMAP, which names it and assigns one in its type 22, which the MPA
        reads as an HNP: an acceptance without an address, deregistered."""
        lab, specs = self.start("draft", "rfc5213")
        mpa = lab.topology.mpa("mpa1").address
        waitFor(lambda: lab.counters("mpa1").get("pba.invalid.no-address", 0) >= 1, 10, 0.05,
                what="the MPA to refuse the acceptance it cannot read")
        waitFor(lambda: lab.lmapCounters().get("pbu.deregistered", 0) >= 1, 10, 0.05,
                what="the MPA's deregistration of it")
        self.mismatchNamed(lab, "lmap", mpa, "rfc5213")
        self.mismatchNamed(lab, "mpa1", lab.topology.lmap, "draft")
        self.nothingRegistered(lab)
