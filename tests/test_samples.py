"""
The samples in etc/ as shipped: every configuration loads and they describe
one domain whose addresses agree; Kea's and FreeRADIUS's own checks accept
their snippets; and the whole domain, deployed in network namespaces exactly
as the files say (hosts named and addressed as the samples name them), carries
a Mobile Station's traffic: real twistd daemons started as docs/operations.md
starts them, FreeRADIUS and Kea as private instances of the shipped snippets.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from lmm import config, nd, security
from lmm.aaa import ProfileFileAuthenticator
from lmm.daemon import loadAssociations, pidfileName
from lmm.lab import freeradius, kea
from lmm.lab.netns import Namespace, link, waitFor
from lmm.lab.processes import dieWithParent, end, readText
from lmm.lab.timeline import pingSummary
from lmm.lmap import tap as lmaptap
from lmm.mpa import tap as mpatap
from lmm.testing.mixins import NetnsTestMixin

TOP = Path(__file__).resolve().parent.parent
ETC = TOP / "etc"
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
MPA_FILES = ("mpa.toml", "mpa2.toml", "mpa3.toml")
#: What the second and third MPA's files may say otherwise than etc/mpa.toml.
PER_HOST = {"mpa.address", "security.keys"}
#: Not in the samples: the correspondent node behind the LMAP's second link
#: (docs/operations.md gives these addresses as an example).
LMAP_UPSTREAM, CN = "2001:db8:cc::1", "2001:db8:cc::2"


def load(name: str) -> dict[str, Any]:
    """A daemon's sample, read with the daemon's settings."""
    settings = lmaptap.SETTINGS if name == "lmap.toml" else mpatap.SETTINGS
    return config.load(str(ETC / name), settings)


def sampleDomain() -> dict[str, Any]:
    """The facts the samples state, each from the file that states it."""
    lmap = load("lmap.toml")
    mpas = {name: load(name) for name in MPA_FILES}
    keaConfig = kea.readConfig(kea.SAMPLE_CONFIG)["Dhcp6"]
    keaInterface, keaAddress = keaConfig["interfaces-config"]["interfaces"][0].split("/")
    radius = mpas["mpa.toml"]["aaa.options"]["servers"][0]
    return {
        "lmap": lmap["lmap.address"],
        "lnps": [str(p) for p in lmap["lmap.local_network_prefixes"]],
        "mpas": {name: values["mpa.address"] for name, values in mpas.items()},
        "access": mpas["mpa.toml"]["mpa.access_interfaces"],
        "kea": (keaInterface, keaAddress),
        "subnets": [s["subnet"] for s in keaConfig["subnet6"]],
        "radius": radius,
        "profiles": ProfileFileAuthenticator(str(ETC / "profiles.toml")).entries,
    }


class SampleFileTests(SynchronousTestCase):
    """Every sample loads; together they describe one domain."""

    def test_everyConfigLoads(self) -> None:
        """The daemons' samples load with the daemons' settings and checks,
        and their key files with them; the default tunnel backend carries
        traffic (not recording)."""
        for name, options in [("lmap.toml", lmaptap.Options)] + [
                (name, mpatap.Options) for name in MPA_FILES]:
            o = options()
            o.loadConfig(str(ETC / name))
            self.assertEqual(o.configValues["tunnel.backend"], "auto", name)
            self.assertIsNotNone(loadAssociations(str(ETC / name), o.configValues), name)
        self.assertEqual(len(sampleDomain()["profiles"]), 3)
        with open(ETC / "lab" / "demo.toml", "rb") as f:
            tomllib.load(f)

    def test_otherMpasDifferOnlyPerHost(self) -> None:
        """etc/mpa2.toml and mpa3.toml are etc/mpa.toml but for PER_HOST."""
        first = load("mpa.toml")
        for name in MPA_FILES[1:]:
            values = load(name)
            differ = {k for k in first if first[k] != values[k]}
            self.assertEqual(differ, PER_HOST, name)

    def test_addressesAgree(self) -> None:
        domain = sampleDomain()
        lmap = load("lmap.toml")
        backbone = lmap["lmap.mpas"][0]
        self.assertEqual(len(lmap["lmap.mpas"]), 1)
        lnps = [ipaddress.IPv6Network(p) for p in domain["lnps"]]
        # Kea: on the backbone, one subnet per LNP.
        self.assertIn(ipaddress.IPv6Address(domain["kea"][1]), backbone)
        self.assertEqual(sorted(domain["subnets"]), sorted(domain["lnps"]))
        # RADIUS: on the backbone; every MPA a client with the MPAs' secret.
        clients = (ETC / "freeradius" / "clients.conf").read_text()
        self.assertIn(ipaddress.IPv6Address(domain["radius"]["address"]), backbone)
        self.assertEqual(clients.count(f"secret = {domain['radius']['secret']}\n"),
                         len(MPA_FILES))
        lmapKeys = security.loadKeyFile(str(ETC / "keys" / "lmap.keys"))
        for name, address in domain["mpas"].items():
            values = load(name)
            self.assertIn(ipaddress.IPv6Address(address), backbone, name)
            self.assertEqual(values["mpa.lmap"], domain["lmap"], name)
            self.assertIn(f"ipv6addr = {address}\n", clients, name)
            # The signaling's security association, the same at both ends.
            mine = lmapKeys.sending(address)
            theirs = security.loadKeyFile(
                config.besideConfig(str(ETC / name), values["security.keys"])
            ).sending(domain["lmap"])
            assert mine is not None and theirs is not None, name
            self.assertEqual((mine.spi, mine.key), (theirs.spi, theirs.key), name)
        # Each profile: this LMAP, one of its LNPs, Kea as DHCPv6 server.
        for entry in domain["profiles"]:
            fields = entry.fields
            self.assertEqual(fields["lmapAddress"], domain["lmap"])
            self.assertIn(fields["localNetworkPrefix"], lnps)
            if fields.get("dhcpServer") is not None:
                self.assertEqual(fields["dhcpServer"], domain["kea"][1])
        users = (ETC / "freeradius" / "users").read_text()
        self.assertIn(f"PMIP6-Home-DHCP6-Server-Address = {domain['kea'][1]},", users)
        self.assertNotIn("/opt/lmm", (ETC / "freeradius" / "dictionary").read_text())

    def test_pidfileName(self) -> None:
        """Each daemon its own pidfile when twistd's --pidfile is left alone."""
        self.assertEqual(pidfileName("lmm-lmap", "etc/lmap.toml"), "lmm-lmap.pid")
        self.assertEqual(pidfileName("lmm-mpa", "/etc/lmm/mpa.toml"), "lmm-mpa.pid")
        self.assertEqual(pidfileName("lmm-mpa", "etc/mpa2.toml"), "lmm-mpa-mpa2.pid")
        self.assertEqual(pidfileName("lmm-mpa", None), "lmm-mpa.pid")

    def test_systemdUnits(self) -> None:
        """The units run what docs/operations.md says, and pass systemd's own
        check where there is one."""
        units = ETC / "systemd"
        lmap = (units / "lmm-lmap.service").read_text()
        mpa = (units / "lmm-mpa@.service").read_text()
        self.assertIn("lmm-lmap --config /etc/lmm/lmap.toml", lmap)
        self.assertIn("lmm-mpa --config /etc/lmm/%i.toml", mpa)
        verify = shutil.which("systemd-analyze")
        if verify is None:
            raise SkipTest("no systemd-analyze here to verify the units with")
        folder = Path(tempfile.mkdtemp(prefix="lmm-units-"))
        self.addCleanup(shutil.rmtree, folder, True)
        # The units name /opt/lmm's twistd: verify them against a stand-in.
        for unit in (units / "lmm-lmap.service", units / "lmm-mpa@.service"):
            (folder / unit.name).write_text(unit.read_text().replace(
                "/opt/lmm/.venv/bin/twistd", TWISTD))
        (folder / "lmm-mpa@mpa.service").symlink_to(folder / "lmm-mpa@.service")
        result = subprocess.run([verify, "verify", str(folder / "lmm-lmap.service"),
                                 str(folder / "lmm-mpa@mpa.service")],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class ServerCheckTests(NetnsTestMixin, SynchronousTestCase):
    """Kea's and FreeRADIUS's own checks accept the shipped snippets."""

    def test_keaCheck(self) -> None:
        """kea-dhcp6 -t on etc/kea/kea-dhcp6.conf itself, on a host (a
        namespace) whose interface has the address the file names (Kea checks
        that), and on the private instance made of it."""
        reason = kea.missingReason()
        if reason is not None:
            raise SkipTest(reason)
        interface, address = sampleDomain()["kea"]
        host, peer = self.makeNamespace("kea"), self.makeNamespace("peer")
        link(host, peer, address, None, nameA=interface)
        folder = Path(tempfile.mkdtemp(prefix="lmm-kea-check-"))
        self.addCleanup(shutil.rmtree, folder, True)
        private = kea.writePrivateConfig(folder / "private")
        env = dict(os.environ, KEA_PIDFILE_DIR=str(folder), KEA_LOCKFILE_DIR=str(folder))
        # The system install's data-directory, /var/lib/kea, as Debian's package
        # makes it: for Kea's check alone (ip netns exec gives it a mount
        # namespace of its own), not on this machine.
        (folder / "var-lib" / "kea").mkdir(parents=True)
        for path in (kea.SAMPLE_CONFIG, private):
            argv = ["sh", "-c", 'mount --bind "$0" /var/lib && exec "$@"',
                    str(folder / "var-lib"), kea.KEA_DHCP6, "-t", str(path)]
            result = subprocess.run(host.execArgv(argv),
                                    capture_output=True, text=True, env=env, timeout=30)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            for subnet in sampleDomain()["subnets"]:
                self.assertIn(subnet, result.stdout)

    def test_freeradiusCheck(self) -> None:
        """freeradius -C on a private raddb made of etc/freeradius's users,
        clients.conf and dictionary as they are (lmm.lab.freeradius)."""
        reason = freeradius.missingReason()
        if reason is not None:
            raise SkipTest(reason)
        folder = Path(tempfile.mkdtemp(prefix="lmm-radius-check-"))
        self.addCleanup(shutil.rmtree, folder, True)
        directory = freeradius.writeSampleConfig(folder)
        result = subprocess.run([freeradius.FREERADIUS, "-XC", "-d", str(directory)],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout[-3000:] + result.stderr)
        self.assertIn("Configuration appears to be OK", result.stdout)
        for client in ("lmm-mpa-1", "lmm-mpa-2", "lmm-mpa-3"):
            self.assertIn(f"client {client}", result.stdout)


class SampleDaemon:
    """
    One daemon of the deployment: twistd started in C{namespace} from the
    folder C{cwd}, as docs/operations.md starts it (no --pidfile), with the
    host's /var/lib (the samples keep their state in /var/lib/lmm) replaced,
    for this process alone, by a folder of the test's (C{ip netns exec}
    gives it a mount namespace of its own).
    """

    def __init__(self, namespace: Namespace, cwd: Path, name: str, plugin: str,
                 configFile: str, foreground: bool) -> None:
        self.namespace, self.cwd, self.name = namespace, cwd, name
        self.logPath = cwd / f"{name}.log"
        self.varLib = cwd / f"{name}-var-lib"
        (self.varLib / "lmm").mkdir(parents=True)
        self.pidfile = cwd / pidfileName(plugin, configFile)
        argv = [TWISTD, *(["-n"] if foreground else []), f"--logfile={self.logPath}",
                plugin, "--config", str(ETC / configFile)]
        wrapper = ["sh", "-c", 'mount --bind "$0" /var/lib && exec "$@"', str(self.varLib)]
        env = dict(os.environ, PYTHONPATH=str(TOP))
        with open(cwd / f"{name}.stderr", "ab") as stderr:
            self.process = namespace.popen([*wrapper, *argv], cwd=cwd, env=env,
                                           stdout=subprocess.DEVNULL, stderr=stderr)
        if not foreground:
            # twistd's parent returns once the daemon has forked off.
            self.process.wait(60)

    def log(self) -> str:
        return readText(self.logPath) + readText(self.cwd / f"{self.name}.stderr")

    def waitReady(self, ready: str) -> None:
        def seen() -> bool:
            if self.process.poll() not in (None, 0):
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n"
                                   + self.log()[-3000:])
            return ready in self.log()
        waitFor(seen, 30, 0.05, what=f"{self.name} to log {ready!r}")

    def pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def stop(self) -> None:
        """SIGTERM to the pid in its pidfile; wait until twistd removed the file."""
        if not self.pidfile.exists():
            return
        try:
            os.kill(self.pid(), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            return
        waitFor(lambda: not self.pidfile.exists(), 15, 0.05,
                what=f"{self.name} to stop and remove {self.pidfile}")
        end(self.process)


class DeploymentTests(NetnsTestMixin, SynchronousTestCase):
    """
    etc/ deployed unchanged: an LMAP, three MPAs, FreeRADIUS and Kea, each a
    host (namespace) with the interfaces and addresses the samples name; two
    Linux MSs of the sample profiles attach by their first frames (packet
    detection, MAC authentication), one by SLAAC, one by DHCPv6, and ping a
    correspondent through the LMAP; one moves to another MPA and keeps its
    address.
    """

    def setUp(self) -> None:
        for reason in (freeradius.missingReason(), kea.missingReason(),
                       kea.dhclientMissingReason()):
            if reason is not None:
                raise SkipTest(reason)
        for name in ("lmap.keys", "mpa.keys", "mpa2.keys", "mpa3.keys"):
            mode = (ETC / "keys" / name).stat().st_mode & 0o777
            self.assertEqual(mode, 0o600, f"etc/keys/{name} is {mode:o}: run scripts/setup")
        self.domain = sampleDomain()
        self.folder = Path(tempfile.mkdtemp(prefix="lmm-samples-"))
        self.addCleanup(self.keepOnFailure)
        self.daemons: list[SampleDaemon] = []

    def keepOnFailure(self) -> None:
        if getattr(self, "_failed", True):
            print(f"\nkept the deployment's folder (logs): {self.folder}")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)

    def host(self, label: str, address: str | None) -> Namespace:
        """A host on the backbone: its eth0 a port of the switch's bridge."""
        ns = self.makeNamespace(label)
        _, port = link(ns, self.switch, address, None, nameA="eth0")
        self.switch.ipBatch([f"link set {port} master br0"])
        return ns

    def build(self) -> None:
        domain = self.domain
        self.switch = self.makeNamespace("sw")
        self.switch.ip("link", "add", "br0", "type", "bridge", "stp_state", "0",
                       "mcast_snooping", "0")
        self.switch.ip("link", "set", "br0", "up")
        self.lmapNs = self.host("lmap", domain["lmap"])
        self.mpaNs = {name: self.host(name.split(".")[0], address)
                      for name, address in domain["mpas"].items()}
        self.radiusNs = self.host("radius", domain["radius"]["address"])
        interface, address = domain["kea"]
        self.assertEqual(interface, "eth0")
        self.keaNs = self.host("kea", address)
        self.cnNs = self.makeNamespace("cn")
        link(self.lmapNs, self.cnNs, LMAP_UPSTREAM, CN, nameA="eth1", nameB="eth0")
        self.cnNs.ip("-6", "route", "add", "default", "via", LMAP_UPSTREAM)
        # The access links: each MPA's eth1 a port of a base station (a bridge).
        self.air = self.makeNamespace("air")
        self.air.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
        self.air.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        self.assertEqual(domain["access"], ["eth1"])
        for i, ns in enumerate(self.mpaNs.values()):
            _, port = link(ns, self.air, None, None, nameA="eth1")
            self.air.ipBatch([f"link add bs{i} type bridge stp_state 0 mcast_snooping 0",
                              f"link set {port} master bs{i}", f"link set bs{i} up"])

    def startServers(self) -> None:
        directory = freeradius.writeSampleConfig(self.folder / "raddb")
        with open(self.folder / "freeradius.log", "wb") as out:
            process = self.radiusNs.popen([freeradius.FREERADIUS, "-X", "-d", str(directory)],
                                          stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, preexec_fn=dieWithParent)
        self.addCleanup(end, process)
        waitFor(lambda: freeradius.READY in readText(self.folder / "freeradius.log"), 10,
                what="FreeRADIUS to be ready")
        server = kea.startPrivate(self.keaNs, self.domain["kea"][1], parent=self.folder)
        self.addCleanup(server.stop)

    def startDaemons(self) -> None:
        """From one folder, without --pidfile, as docs/operations.md does: the
        LMAP in the foreground (twistd -n), the MPAs as daemons."""
        lmap = SampleDaemon(self.lmapNs, self.folder, "lmap", "lmm-lmap", "lmap.toml", True)
        self.daemons.append(lmap)
        lmap.waitReady("listening for Proxy Binding Updates")
        for name, ns in self.mpaNs.items():
            daemon = SampleDaemon(ns, self.folder, name.split(".")[0], "lmm-mpa", name, False)
            self.daemons.append(daemon)
            daemon.waitReady("MPA ready")
        pids = {d.pidfile.name: d.pid() for d in self.daemons}
        self.assertEqual(sorted(pids), ["lmm-lmap.pid", "lmm-mpa-mpa2.pid",
                                        "lmm-mpa-mpa3.pid", "lmm-mpa.pid"])
        self.assertEqual(len(set(pids.values())), 4)
        self.assertFalse((self.folder / "twistd.pid").exists())

    def stopDaemons(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()

    def station(self, mac: str, baseStation: int) -> tuple[Namespace, str]:
        """A plain Linux host with C{mac} on base station C{baseStation}; its
        namespace and its port there."""
        ms = self.makeNamespace("ms")
        port = f"ms{mac[-2:]}"
        self.air.ip("link", "add", port, "type", "veth", "peer", "name", "ms0",
                    "address", mac, "netns", ms.name)
        ms.ip("link", "set", "ms0", "up")
        self.air.ipBatch([f"link set {port} master bs{baseStation}", f"link set {port} up"])
        return ms, port

    def profile(self, mac: str) -> dict[str, Any]:
        for entry in self.domain["profiles"]:
            if entry.mac == mac:
                return dict(entry.fields)
        raise KeyError(mac)

    def usable(self, ms: Namespace, address: str) -> bool:
        out = json.loads(ms.ip("-j", "-6", "addr", "show", "dev", "ms0"))
        return any(a.get("local") == address and not a.get("tentative")
                   for i in out for a in i.get("addr_info", []))

    def reaches(self, ms: Namespace) -> None:
        """The MS pings the CN: a first reply within 20 s, then 5 of 5."""
        waitFor(lambda: ms.run(["ping", "-n", "-c", "1", "-W", "1", CN],
                               check=False).returncode == 0, 20, 0.1,
                what="a first echo reply from the CN")
        result = ms.run(["ping", "-n", "-c", "5", "-i", "0.2", "-W", "1", CN], check=False)
        self.assertEqual(pingSummary(result.stdout), (5, 5), result.stdout)

    def test_samplesAsShipped(self) -> None:
        self._failed = True
        self.build()
        self.startServers()
        self.addCleanup(self.stopDaemons)
        self.startDaemons()
        for daemon in self.daemons:
            self.assertIn("auto", daemon.log())  # the tunnel backend the samples name
        # The MAC-only MS: SLAAC in its profile's prefix, on the first MPA.
        slaacMac = "02:00:00:00:00:02"
        slaac = self.profile(slaacMac)
        self.assertEqual(slaac["addressMode"], "slaac")
        ms, port = self.station(slaacMac, 0)
        address = nd.addressFromMac(str(slaac["localNetworkPrefix"].network_address), slaacMac)
        waitFor(lambda: self.usable(ms, address), 20, 0.05, what=f"SLAAC address {address}")
        self.reaches(ms)
        self.assertIn(address, self.lmapNs.ip("-6", "route", "show", "table", "all"))
        # alice, known to the MPA by her MAC only: DHCPv6 from Kea, on the second MPA.
        aliceMac = "02:00:00:00:00:01"
        alice = self.profile(aliceMac)
        self.assertEqual(alice["addressMode"], "dhcpv6")
        ms2, _ = self.station(aliceMac, 1)
        waitFor(lambda: any(not a.get("tentative") for i in json.loads(
            ms2.ip("-j", "-6", "addr", "show", "dev", "ms0", "scope", "link"))
            for a in i.get("addr_info", [])), 10, 0.05, what="alice's link-local address")
        client = kea.startClient(ms2, "ms0", self.folder / "dhclient-alice")
        self.addCleanup(client.stop)
        waitFor(lambda: client.address() is not None, 20, 0.1,
                what="alice's DHCPv6 lease: " + client.output()[-300:])
        self.assertEqual(client.address(), alice["localAddress"])
        waitFor(lambda: self.usable(ms2, alice["localAddress"]), 10, 0.05,
                what="alice's address")
        self.reaches(ms2)
        # The first MS moves to the third MPA and keeps its address.
        self.air.ipBatch([f"link set {port} down", f"link set {port} nomaster",
                          f"link set {port} master bs2", f"link set {port} up"])
        self.reaches(ms)
        self.assertTrue(self.usable(ms, address))
        self.stopDaemons()
        for daemon in self.daemons:
            self.assertNotIn("Traceback", daemon.log(), daemon.name)
        self._failed = False
