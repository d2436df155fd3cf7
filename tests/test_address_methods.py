"""
Issue 5's "done when", with everything real: for each way a Mobile Station
gets its address (SLAAC, DHCPv6, manual), a Linux host ends with a global
address in its Local Network Prefix, the LMAP's binding carries that address,
the host reaches a correspondent node through the tunnel, and after it moves
to the other MPA the same address keeps working (for DHCPv6, including a
Renew answered through the new MPA).

The domain is a L{lmm.lab.topology.Lab} (docs/lab.md):

    LMAP namespace:  backbone bridge (LMAP's address) --- MPA1, MPA2, Kea
                     and a link to the correspondent node (CN)
    Kea namespace:   Kea DHCPv6 (short timers: renew 2 s, rebind 3 s, valid 10 s)
    MPA namespaces:  twistd lmm-mpa, FreeRADIUS, an access link to a base station
    air namespace:   MPA1's and MPA2's base stations; each MS's link is a port of one
    MS namespaces:   ms0, the kernel's defaults; dhclient -6 for DHCPv6

The base stations report no associations here: each MPA detects its MSs by
their first frames (packet attach detection). The daemons run with the seg6
data plane when lmm.dataplane.seg6 is there and the kernel has seg6 (else
the recording one, and no ping is tried). A handover moves an MS's port to
the other base station (L{Lab.move}). A failing test keeps the lab's run
folder (every daemon's log, Kea's, dhclient's, the captures) and names it.

The MPA gives its access interfaces the virtual LMAP MAC (lmm.mpa.attach), so
its kernel takes the frames the MSs send to their default router as its own:
the pings below prove it, nothing in the test does it for the daemons.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from twisted.internet import reactor
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest

from lmm import nd
from lmm.lab import freeradius, kea
from lmm.lab import timeline as tl
from lmm.lab.netns import Namespace, callIn, waitFor
from lmm.lab.topology import KeaSpec, Lab, MPASpec, MSSpec, Station, loadTopology, randomMac
from tests.test_lab import LabTestCase

T = TypeVar("T")

LMAP = "fd00:4d53::1"
MPAS = ("fd00:4d53::2", "fd00:4d53::3")
KEA = "fd00:4d53::53"
CN = "fd00:4d5c::2"
CN_GATEWAY = "fd00:4d5c::1"
LNP = "2001:db8:4d53::/64"
POOL = "2001:db8:4d53::1000-2001:db8:4d53::1fff"

log = Logger(namespace="tests.test_address_methods")


_seg6: list[str | None] = []


def seg6Missing() -> str | None:
    """Why the seg6 data plane cannot carry packets here, or None (probed once)."""
    if not _seg6:
        _seg6.append(_probeSeg6())
    return _seg6[0]


def _probeSeg6() -> str | None:
    try:
        from lmm.dataplane import seg6
    except ImportError as e:
        return f"no seg6 data plane ({e})"
    probe = Namespace.create("seg6probe")
    try:
        plane = callIn(probe, seg6.seg6Backend, {"forwarding": False}, reactor)
        plane.stop()
    except Exception as e:
        return f"seg6 data plane unusable: {e}"
    finally:
        probe.delete()
    return None


class AddressMethodTests(LabTestCase):
    def setUp(self) -> None:
        super().setUp()
        for tool in ("nft", "ping"):
            if shutil.which(tool) is None:
                raise SkipTest(f"{tool} is not installed")
        reason = freeradius.missingReason()
        if reason is not None:
            raise SkipTest(reason)
        self.dataPlane = "recording" if seg6Missing() else "seg6"

    # --- the domain -------------------------------------------------------------------

    def startDomain(self, stations: list[MSSpec], dhcp: bool = False,
                    leaseTimers: tuple[int, int, int, int] = (2, 3, 8, 10)) -> Lab:
        """The lab with C{stations} (not attached yet), FreeRADIUS as AAA, Kea
        with short timers if C{dhcp} (renew, rebind, preferred and valid
        lifetime: C{leaseTimers})."""
        renew, rebind, preferred, valid = leaseTimers
        if dhcp:
            for reason in (kea.missingReason(), kea.dhclientMissingReason()):
                if reason is not None:
                    raise SkipTest(reason)
        topology = replace(
            loadTopology(), tunnel=self.dataPlane, aaa="radius", lmap=LMAP, prefix=LNP,
            cn=CN, cnGateway=CN_GATEWAY, mpas=[MPASpec("mpa1", MPAS[0]), MPASpec("mpa2", MPAS[1])],
            stations=stations, handovers=[], associationReports=False,
            kea=KeaSpec(KEA, POOL, renewTimer=renew, rebindTimer=rebind,
                        preferredLifetime=preferred, validLifetime=valid) if dhcp else None)
        self.lab = self.makeLab(topology)
        return self.lab

    def moveToMpa2(self, *stations: Station) -> float:
        """Each station's link goes down, joins MPA2's base station, comes up."""
        moved = time.time()
        for station in stations:
            self.lab.move(station, "mpa2")
        return moved

    # --- looking ---------------------------------------------------------------------

    def ask(self, i: int, command: str) -> dict[str, Any]:
        answer = self.lab.ask(f"mpa{i + 1}", command)
        self.assertTrue(answer["ok"], answer)
        return answer

    def counters(self, i: int) -> dict[str, int]:
        return self.ask(i, "counters")["counters"]  # type: ignore[no-any-return]

    def visitor(self, i: int, station: Station) -> dict[str, str] | None:
        for entry in self.ask(i, "visitors")["visitors"]:
            if entry["mac"] == station.spec.mac and entry["state"] != "deregistering":
                return entry  # type: ignore[no-any-return]
        return None

    def registered(self, i: int, station: Station) -> dict[str, str] | None:
        entry = self.visitor(i, station)
        return entry if entry is not None and entry["state"] == "registered" else None

    def state(self, i: int, station: Station) -> str | None:
        entry = self.visitor(i, station)
        return None if entry is None else entry["state"]

    def logEvents(self, name: str, event: str, key: str, value: str) -> list[dict[str, str]]:
        """The C{event} lines (debug level) of daemon C{name} whose C{key} is
        C{value}, as fields."""
        found = []
        for line in self.lab.daemons[name].log().splitlines():
            match = re.search(re.escape(event) + r" (.*)$", line)
            if match:
                fields = dict(part.split("=", 1) for part in match.group(1).split()
                              if "=" in part)
                if fields.get(key) == value:
                    found.append(fields)
        return found

    def lmapLog(self, event: str, station: Station) -> list[dict[str, str]]:
        return self.logEvents("lmap", event, "nai", station.spec.nai)

    def mpaLog(self, i: int, event: str, station: Station) -> list[dict[str, str]]:
        return self.logEvents(f"mpa{i + 1}", event, "mac", station.spec.mac)

    def routerAdvertisements(self, station: Station) -> list[nd.RouterAdvertisement]:
        """The RAs the MS received (from the capture on its link)."""
        found = []
        for _, data in tl.readPcap(self.lab.path(f"{station.spec.name}.pcap")):
            try:
                frame = nd.decodeFrame(data)
            except nd.NDError:
                continue
            if isinstance(frame.message, nd.RouterAdvertisement):
                found.append(frame.message)
        return found

    def checkReaches(self, station: Station, address: str) -> None:
        """The MS reaches the CN through the tunnel, from C{address}."""
        if self.dataPlane != "seg6":
            log.info("no ping: {reason}", reason=seg6Missing())
            return
        # The first packet may meet a tunnel being set up: wait for one reply.
        started = time.monotonic()
        waitFor(lambda: self.lab.ping(station, 1)[1] == 1, 5, 0.1, what="a first ping reply")
        first = time.monotonic() - started
        self.assertEqual(self.lab.ping(station), (3, 3))
        log.info("{mac} pinged the CN from {address} through the seg6 tunnel (first reply "
                 "after {first:.2f} s)", mac=station.spec.mac, address=address, first=first)
        # The CN saw the MS's address: the reply went back to it.
        route = station.namespace.ip("-6", "route", "get", CN)
        self.assertIn(f"src {address}", route)

    def wait(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:
        """The first true value of C{predicate}; L{TimeoutError} after C{timeout}."""
        value = waitFor(predicate, timeout, 0.02, what=what)
        assert value is not None
        return value

    def inState(self, i: int, station: Station, state: str) -> bool:
        return self.state(i, station) == state

    def hasAddress(self, station: Station, address: str) -> bool:
        return self.lab.configuredAddress(station) == address

    def checkBinding(self, station: Station, address: str) -> None:
        """MPA1 registered C{address}; the LMAP's binding carries it."""
        visitor = self.wait(lambda: self.registered(0, station), 5, "MPA1's registration")
        self.assertEqual((visitor["nai"], visitor["localAddress"], visitor["lastStatus"]),
                         (station.spec.nai, address, "0"))
        created = self.wait(lambda: self.lmapLog("binding.created", station), 3,
                            "the LMAP's binding.created")
        self.assertEqual((created[-1]["address"], created[-1]["careOf"]), (address, MPAS[0]))

    def checkHandover(self, station: Station, address: str) -> None:
        """MPA2 registered the same address; the LMAP moved the binding."""
        visitor = self.wait(lambda: self.registered(1, station), 5, "MPA2's registration")
        self.assertEqual((visitor["localAddress"], visitor["lastStatus"]), (address, "0"))
        handover = self.wait(lambda: self.lmapLog("binding.handover", station), 3,
                             "the LMAP's binding.handover")
        self.assertEqual((handover[-1]["address"], handover[-1]["careOf"],
                          handover[-1]["previous"]), (address, MPAS[1], MPAS[0]))
        self.wait(lambda: self.visitor(0, station) is None, 5, "MPA1 to drop the visitor")

    # --- the methods --------------------------------------------------------------------

    def test_slaac(self) -> None:
        """The kernel's SLAAC from the unicast RA; its DAD probe registers the address."""
        spec = MSSpec("ms1", randomMac(), "mpa1", addressMethod="slaac", mayChooseAddress=False)
        lab = self.startDomain([spec])
        started = time.monotonic()
        station = lab.attach(spec)
        [address] = lab.waitUsable(station, timeout=15)
        log.info("SLAAC: {address} configured {time:.2f} s after link-up", address=address,
                 time=time.monotonic() - started)
        self.assertEqual(address, nd.addressFromMac(LNP.split("/")[0], spec.mac))
        self.checkBinding(station, address)
        self.assertEqual([e["source"] for e in self.mpaLog(0, "address.learned", station)],
                         ["dad"])
        self.checkReaches(station, address)
        self.moveToMpa2(station)
        self.checkHandover(station, address)
        self.checkReaches(station, address)
        self.assertEqual([a["local"] for a in lab.globalAddresses(station)], [address])

    # --- DHCPv6 ---------------------------------------------------------------------------

    def test_dhcpv6(self) -> None:
        """M and O set: the host makes no SLAAC address; dhclient -6 gets one
        through MPA1's relay, and renews it through MPA2's after the move."""
        spec = MSSpec("ms1", randomMac(), "mpa1", addressMethod="dhcpv6",
                      mayChooseAddress=False)
        lab = self.startDomain([spec], dhcp=True)
        assert lab.kea is not None
        station = lab.attach(spec)
        # The RA arrived (the default route is its), and the host made no
        # address from it: the prefix is not autonomous.
        self.wait(lambda: self.lab.defaultRoutes(station), 10, "the RA's default route")
        self.wait(lambda: lab.linkLocalReady(station), 10, "the MS's link-local address")
        self.assertEqual(lab.globalAddresses(station), [])
        ra = self.wait(lambda: self.routerAdvertisements(station)[:1], 3,
                       "the RA in the MS's capture")[0]
        self.assertEqual((ra.managed, ra.other, [p.autonomous for p in ra.prefixes]),
                         (True, True, [False]))
        started = time.monotonic()
        # The lab starts dhclient -6 and waits for its address, DAD done.
        [address] = lab.waitUsable(station, timeout=15)
        assert station.client is not None
        log.info("DHCPv6: dhclient bound {time:.2f} s after it started",
                 time=time.monotonic() - started)
        bound = [e for e in station.client.events() if e.get("reason") == "BOUND6"]
        self.assertEqual(bound[0]["new_ip6_address"], address)
        first, last = POOL.split("-")
        self.assertTrue(first <= address <= last and len(address) == len(first), address)
        self.assertEqual([a["local"] for a in lab.globalAddresses(station)], [address])
        self.checkBinding(station, address)
        self.assertEqual(
            [e["source"] for e in self.mpaLog(0, "address.learned", station)], ["dhcpv6"])
        self.checkReaches(station, address)

        moved = self.moveToMpa2(station)
        self.checkHandover(station, address)
        log.info("DHCPv6: MPA2 registered {address} {time:.3f} s after the move",
                 address=address, time=time.time() - moved)
        self.checkReaches(station, address)
        # A Renew through MPA2, answered by Kea, renewing the same address.
        client = station.client
        renewed = self.wait(lambda: [e for e in client.events()
                                     if e.get("reason") == "RENEW6"
                                     and float(e.get("time", 0)) > moved], 10,
                            "a Renew answered after the handover")
        self.assertEqual(renewed[0]["new_ip6_address"], address)
        counters = self.counters(1)
        self.assertGreaterEqual(counters.get("relay.client.renew", 0), 1, counters)
        self.assertGreaterEqual(counters.get("relay.server.reply", 0), 1, counters)
        self.assertGreaterEqual(counters.get("relay.address.assigned", 0), 1, counters)
        self.assertIn(f"from {MPAS[1]}", lab.kea.log())
        self.assertEqual(lab.configuredAddress(station), address)
        self.checkReaches(station, address)
        self.assertEqual(self.wait(lambda: self.registered(1, station), 1,
                                   "MPA2's registration")["localAddress"], address)

    def test_dhcpv6ServerRestarts(self) -> None:
        """Issue 13, part 5: Kea killed (SIGKILL) and started again on its
        files 4 s later. An MS bound before keeps its address (its lease
        outlives the outage) and renews it once Kea is back; an MS attaching
        meanwhile gets no answer (the relay counts it), then its address from
        a Solicit retransmitted after Kea returns. Both reach the CN."""
        first = MSSpec("ms1", randomMac(), "mpa1", addressMethod="dhcpv6",
                       mayChooseAddress=False)
        second = MSSpec("ms2", randomMac(), "mpa1", addressMethod="dhcpv6",
                        mayChooseAddress=False)
        lab = self.startDomain([first, second], dhcp=True, leaseTimers=(3, 5, 30, 40))
        assert lab.kea is not None
        bound = lab.attach(first)
        [address] = lab.waitUsable(bound, timeout=15)
        lab.kea.crash()
        crashed = time.time()
        newcomer = lab.attach(second)
        self.wait(lambda: self.counters(0).get("relay.server.no-answer", 0) >= 1, 10,
                  "the relay to count a request Kea did not answer")
        time.sleep(max(0.0, crashed + 4.0 - time.time()))
        lab.kea.restart()
        back = time.time()
        [newAddress] = lab.waitUsable(newcomer, timeout=30)
        log.info("DHCPv6: Kea down {down:.1f} s; the newcomer bound {after:.2f} s after "
                 "it was back", down=back - crashed, after=time.time() - back)
        client = bound.client
        assert client is not None
        renewed = self.wait(lambda: [e for e in client.events()
                                     if e.get("reason") in ("RENEW6", "REBIND6")
                                     and float(e.get("time", 0)) > back], 20,
                            "the first MS's lease renewed after Kea came back")
        self.assertEqual(renewed[0]["new_ip6_address"], address)
        self.assertEqual(lab.configuredAddress(bound), address)
        self.assertNotEqual(newAddress, address)
        for station, its in ((bound, address), (newcomer, newAddress)):
            self.checkBinding(station, its)
            self.checkReaches(station, its)

    # --- manual ---------------------------------------------------------------------------

    def test_manual(self) -> None:
        """Hosts configured by hand (A=M=O=0 in the RA: nothing automatic):
        the profile's address; an address probed with DAD; one used without
        DAD, registered from its first packet when the profile lets the MS
        choose, and only then."""
        prefix = LNP.split("/")[0]
        givenAddress = prefix + "a:1"
        specs = [MSSpec("given", randomMac(), "mpa1", addressMethod="manual",
                        localAddress=givenAddress, mayChooseAddress=False),
                 MSSpec("dad", randomMac(), "mpa1", addressMethod="manual",
                        mayChooseAddress=False),
                 MSSpec("nodad", randomMac(), "mpa1", addressMethod="manual",
                        mayChooseAddress=True),
                 MSSpec("refused", randomMac(), "mpa1", addressMethod="manual",
                        mayChooseAddress=False)]
        given, dad, nodad, refused = (spec.mac for spec in specs)
        addresses = {given: givenAddress, dad: prefix + "a:2", nodad: prefix + "a:3",
                     refused: prefix + "a:4"}
        lab = self.startDomain(specs)
        stations = {spec.mac: lab.attach(spec) for spec in specs}
        # The profile's address is registered as soon as the MS is accepted.
        self.wait(lambda: self.registered(0, stations[given]), 5,
                  "the profile's address registered")
        for mac in (dad, nodad, refused):
            self.wait(partial(self.inState, 0, stations[mac], "awaiting-address"), 5,
                      "the MS waiting for an address")
        for station in stations.values():
            # The RA made no address: the host waits for its administrator.
            self.wait(partial(self.lab.defaultRoutes, station), 10, "the RA's default route")
            self.assertEqual(lab.globalAddresses(station), [])
        # The administrators, by hand (not Lab.waitUsable: two of them skip DAD).
        for mac, station in stations.items():
            options = ["nodad"] if mac in (nodad, refused) else []
            station.namespace.ip("address", "add", f"{addresses[mac]}/64", "dev", "ms0",
                                 *options)
            station.configured = True
        for mac in (given, dad):
            self.wait(partial(self.hasAddress, stations[mac], addresses[mac]), 5, "DAD done")
        self.checkBinding(stations[given], givenAddress)
        self.assertEqual(self.mpaLog(0, "address.learned", stations[given]), [])
        self.checkBinding(stations[dad], addresses[dad])
        self.assertEqual([e["source"] for e in self.mpaLog(0, "address.learned",
                                                          stations[dad])], ["dad"])
        # No DAD: nothing until the MS sends from the address.
        self.assertEqual(self.state(0, stations[nodad]), "awaiting-address")
        if self.dataPlane == "seg6":
            log.info("manual, no DAD: the first ping (sent, received) {result}",
                     result=lab.ping(stations[nodad], 1))
            lab.ping(stations[refused], 1)
        else:
            for mac in (nodad, refused):
                stations[mac].namespace.run(["ping", "-c", "1", "-W", "0.2", CN], check=False)
        self.checkBinding(stations[nodad], addresses[nodad])
        self.assertEqual([e["source"] for e in self.mpaLog(0, "address.learned",
                                                          stations[nodad])], ["packet"])
        for mac in (given, dad, nodad):
            self.checkReaches(stations[mac], addresses[mac])
        # The profile does not let this one choose: counted, noted, not registered.
        self.wait(lambda: self.mpaLog(0, "address.not-allowed", stations[refused]), 3,
                  "the refusal noted")
        self.assertEqual(self.state(0, stations[refused]), "awaiting-address")
        self.assertGreaterEqual(self.counters(0)["packet.address-not-allowed"], 1)
        self.assertEqual(self.lmapLog("binding.created", stations[refused]), [])
        if self.dataPlane == "seg6":
            self.assertEqual(lab.ping(stations[refused], 2)[1], 0)

        moving = [stations[mac] for mac in (given, dad, nodad)]
        self.moveToMpa2(*moving)
        for station in moving:
            self.checkHandover(station, addresses[station.spec.mac])
            self.checkReaches(station, addresses[station.spec.mac])
