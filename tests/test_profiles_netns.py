"""
An LMAP and MPAs on different wire profiles (issue 16, part 3 and 6): real
daemons in the lab's namespaces, Linux MSs. Nothing may look like success:
no binding, no registered visitor, and each daemon names the mismatch in its
log (once per peer, at warn: tests.test_service.JournalLevelTests) and in its
control channel's C{peers}, on the first exchange that shows it.
"""

from __future__ import annotations

import os
import subprocess
from ipaddress import IPv6Address, IPv6Network

from twisted.trial.unittest import SkipTest

from lmm.lab import demo
from lmm.lab.netns import waitFor
from lmm.lab.topology import Lab, MSSpec, randomMac
from tests.test_lab import LabTestCase
from tests.test_mh_golden import TSHARK


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
        """The draft MPA's confirmation is an option RFC 5213 skips: the PBU
        has no HNP (158); its Local Address (type 22) reads at the LMAP as
        an HNP holding a whole address, in a PBU without RFC 5213's Handoff
        Indicator (161). The LMAP names the draft's signs, the MPA the
        statuses only RFC 5213 sends."""
        lab, specs = self.start("rfc5213", "draft")
        mpa = lab.topology.mpa("mpa1").address
        waitFor(lambda: lab.lmapCounters().get("pbu.rejected.161", 0) >= 1, 10, 0.05,
                what="the LMAP to refuse the draft Local Address")
        waitFor(lambda: lab.lmapCounters().get("pbu.rejected.158", 0) >= 1, 10, 0.05,
                what="the LMAP to refuse the confirmation")
        self.mismatchNamed(lab, "lmap", mpa, "draft")
        self.mismatchNamed(lab, "mpa1", lab.topology.lmap, "rfc5213")
        self.nothingRegistered(lab)

    def test_lmapDraftMpaRfc5213(self) -> None:
        """The other way: the rfc5213 MPA's Handoff Indicator and Access
        Technology Type name it at the draft LMAP, which reads its HNP (type
        22) as a Local Address, assigns one and answers it in type 22: the
        MPA reads an HNP with host bits (the draft's sign): an acceptance
        without a prefix, deregistered."""
        lab, specs = self.start("draft", "rfc5213")
        mpa = lab.topology.mpa("mpa1").address
        waitFor(lambda: lab.counters("mpa1").get("pba.invalid.no-address", 0) >= 1, 10, 0.05,
                what="the MPA to refuse the acceptance it cannot read")
        waitFor(lambda: lab.lmapCounters().get("pbu.deregistered", 0) >= 1, 10, 0.05,
                what="the MPA's deregistration of it")
        self.mismatchNamed(lab, "lmap", mpa, "rfc5213")
        self.mismatchNamed(lab, "mpa1", lab.topology.lmap, "draft")
        self.nothingRegistered(lab)


class PerNodePrefixLabTests(LabTestCase):
    """RFC 5213's protocol on both daemons (issue 16, part 1): real kernel
    tunnels, Linux MSs configuring by SLAAC."""

    def test_prefixPerStationAndHandover(self) -> None:
        """Two MSs on one access link each get a /64 of their own from the
        LMAP's pool, advertised to them alone (neither configures the
        other's), reach the CN; one hands over and keeps its address, its
        prefix's tunnel moved and the MPA it left revoked."""
        self.scenario("seg6")

    def test_userspaceBackend(self) -> None:
        """The same through the userspace backend's own forwarding."""
        self.scenario("userspace")

    def test_draftCaptureClean(self) -> None:
        """The draft profile's messages of the same run read clean too."""
        lab = self.makeLab(self.topology(handovers=[]))
        [station] = [lab.attach(spec) for spec in lab.topology.stations]
        lab.waitUsable(station)
        demo.handOver(lab, station, "mpa2")
        self.checkCaptureClean(lab)

    def checkCaptureClean(self, lab: Lab) -> None:
        """tshark reads every Mobility Header frame of the backbone's capture,
        none malformed (issue 16: users read our signaling in Wireshark)."""
        if not os.path.exists(TSHARK):
            raise SkipTest(f"tshark is not installed ({TSHARK})")
        self.assertEqual(lab.stop(), [])

        def count(displayFilter: str) -> int:
            result = subprocess.run([TSHARK, "-n", "-r", lab.backbonePcap, "-Y", displayFilter],
                                    capture_output=True, timeout=60, check=True)
            return len(result.stdout.splitlines())

        self.assertGreater(count("mipv6"), 4)
        self.assertEqual(count("mipv6 && _ws.malformed"), 0)
        self.assertEqual(count("mipv6 && _ws.expert.severity >= warning"), 0)

    def scenario(self, tunnel: str) -> None:
        if tunnel == "seg6":
            from tests.test_address_methods import seg6Missing

            reason = seg6Missing()
            if reason is not None:
                raise SkipTest(reason)
        specs = [MSSpec("ms1", randomMac(), "mpa1"), MSSpec("ms2", randomMac(), "mpa1")]
        lab = self.makeLab(self.topology(stations=specs, handovers=[], profile="rfc5213",
                                         tunnel=tunnel))
        stations = [lab.attach(spec) for spec in specs]
        addresses = lab.waitUsable(*stations)
        pool = IPv6Network(lab.topology.anchored)
        prefixes = {b["nai"]: IPv6Network(b["localAddress"]) for b in lab.bindings()}
        self.assertEqual(set(prefixes), {spec.nai for spec in specs})
        for station, address in zip(stations, addresses):
            prefix = prefixes[station.spec.nai]
            self.assertEqual(prefix.prefixlen, 64)
            self.assertTrue(prefix.subnet_of(pool), prefix)  # type: ignore[arg-type]
            self.assertIn(IPv6Address(address), prefix)
            # One global address: the MS saw no other MS's prefix.
            self.assertEqual([a["local"] for a in lab.globalAddresses(station)], [address])
            self.checkPing(lab, station)
        self.assertNotEqual(*prefixes.values())
        ms1 = stations[0]
        first = str(prefixes[ms1.spec.nai].network_address)
        self.checkPrefixTunnels(lab, first, "mpa1")
        demo.handOver(lab, ms1, "mpa2")
        self.assertEqual(lab.configuredAddress(ms1), addresses[0])
        self.checkPing(lab, ms1)
        self.checkPrefixTunnels(lab, first, "mpa2")
        self.assertEqual(lab.lmapCounters().get("bri.sent"), 1)
        self.checkCaptureClean(lab)

    def checkPrefixTunnels(self, lab: Lab, prefix: str, mpa: str) -> None:
        """The LMAP and C{mpa} (only) route the whole /64 of C{prefix}."""
        waitFor(lambda: sorted(lab.tunnelState(prefix + "/64")) == ["lmap", mpa], 3, 0.02,
                what=f"tunnel state for {prefix}/64 at the LMAP and {mpa}")
