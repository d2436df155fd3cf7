"""
A PMIPv6 domain of network namespaces, built from a topology file.

    LMAP namespace:  the backbone bridge (the LMAP's address) --- each MPA
                     and a link to the correspondent node (CN)
    MPA namespaces:  twistd lmm-mpa, FreeRADIUS (when AAA is RADIUS), and an
                     access link to its base station
    air namespace:   one bridge per MPA, its "base station"; an MS's link is
                     a port of one of them
    MS namespaces:   plain Linux hosts (kernel SLAAC), no lmm code
    CN namespace:    a plain host, default route via the LMAP

A handover moves the MS's port from one base station to another, down and up:
the MS sees its link go down and up, nothing else (the approach of
tests/test_mpa_integration.py).

Every namespace is named C{RUN_TAG-lab-...}, so that L{down} finds what a
crashed run left; the run folder keeps every configuration and log.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from typing import Any

from lmm import nd
from lmm.aaa import DEFAULT_NAI_TEMPLATE, naiFromMac
from lmm.lab.logger import LOG_VARIABLE
from lmm.mpa.control import ask
from lmm.mpa.tap import DEFAULT_VIRTUAL_LMAP_MAC
from lmm.testing import freeradius
from lmm.testing.daemons import TWISTD, Daemon, tomlValue
from lmm.testing.netns import RUN_TAG, Namespace, callIn, link, waitFor

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_TOPOLOGY = os.path.join(_REPO, "etc", "lab", "demo.toml")
#: Every namespace of a lab run: RUN_TAG, then this.
LABEL = "lab-"
_LAB_NAMESPACE = re.compile(r"^lmm\d+[0-9a-f]{3}-lab-")
RUN_ROOT = "/tmp"
STATE_FILE = "lab.json"
VIRTUAL_LMAP_MAC = DEFAULT_VIRTUAL_LMAP_MAC


class TopologyError(ValueError):
    """A topology file is wrong; the message names the file and the key."""


# --- the description ----------------------------------------------------------------


@dataclass
class MPASpec:
    name: str
    address: str


@dataclass
class MSSpec:
    name: str
    mac: str
    attach: str
    accept: bool = True

    @property
    def nai(self) -> str:
        return naiFromMac(DEFAULT_NAI_TEMPLATE, self.mac).decode()


@dataclass
class Topology:
    """What a topology file says (docs/lab.md)."""

    path: str
    tunnel: str
    aaa: str
    lmap: str
    prefix: str
    cn: str
    cnGateway: str
    mpas: list[MPASpec]
    stations: list[MSSpec]
    handovers: list[str] = field(default_factory=list)
    dwell: float = 1.5
    pingInterval: float = 0.01
    # The base stations tell their MPA of an association (as a WLAN controller
    # would); without, the MPA detects the MS by its first frame.
    associationReports: bool = True

    def mpa(self, name: str) -> MPASpec:
        for spec in self.mpas:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def backbonePrefix(self) -> str:
        return str(ipaddress.IPv6Network(self.lmap + "/64", strict=False))


def randomMac() -> str:
    return "02:4c:" + secrets.token_bytes(4).hex(":")


def _get(path: str, table: dict[str, Any], key: str, kind: type, where: str,
         default: Any = None) -> Any:
    if key not in table:
        if default is None:
            raise TopologyError(f"{path}: {where}{key} is required")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind):
        raise TopologyError(f"{path}: {where}{key}: expected a {kind.__name__}, "
                            f"got {value!r}")
    return value


def _address(path: str, value: str, key: str) -> str:
    try:
        return str(ipaddress.IPv6Address(value))
    except ValueError:
        raise TopologyError(f"{path}: {key}: {value!r} is not an IPv6 address") from None


def _unknown(path: str, table: dict[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise TopologyError(f"{path}: unknown key {where}{extra[0]} "
                            f"(known: {', '.join(sorted(known))})")


def loadTopology(path: str = DEFAULT_TOPOLOGY) -> Topology:
    """Read and check a topology file; L{TopologyError} names what is wrong."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise TopologyError(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(f"{path}: {e}") from None
    _unknown(path, data, {"lab", "lmap", "mpa", "cn", "ms", "demo"}, "")
    lab = data.get("lab", {})
    _unknown(path, lab, {"tunnel", "aaa", "association_reports"}, "lab.")
    aaa = _get(path, lab, "aaa", str, "lab.", "auto")
    if aaa not in ("auto", "radius", "file"):
        raise TopologyError(f"{path}: lab.aaa: expected auto, radius or file, got {aaa!r}")
    lmap = _get(path, data, "lmap", dict, "")
    _unknown(path, lmap, {"address", "local_network_prefix"}, "lmap.")
    prefix = _get(path, lmap, "local_network_prefix", str, "lmap.")
    try:
        prefix = str(ipaddress.IPv6Network(prefix))
    except ValueError as e:
        raise TopologyError(f"{path}: lmap.local_network_prefix: {e}") from None
    cn = _get(path, data, "cn", dict, "")
    _unknown(path, cn, {"address", "gateway"}, "cn.")
    mpas = []
    for i, table in enumerate(_get(path, data, "mpa", list, "")):
        where = f"mpa[{i}]."
        _unknown(path, table, {"name", "address"}, where)
        mpas.append(MPASpec(_get(path, table, "name", str, where),
                            _address(path, _get(path, table, "address", str, where),
                                     where + "address")))
    names = [m.name for m in mpas]
    if not mpas or len(set(names)) != len(names):
        raise TopologyError(f"{path}: mpa: at least one, with distinct names")
    stations = []
    for i, table in enumerate(_get(path, data, "ms", list, "")):
        where = f"ms[{i}]."
        _unknown(path, table, {"name", "mac", "attach", "accept"}, where)
        attach = _get(path, table, "attach", str, where, names[0])
        if attach not in names:
            raise TopologyError(f"{path}: {where}attach: no MPA named {attach!r}")
        mac = _get(path, table, "mac", str, where, "") or randomMac()
        stations.append(MSSpec(_get(path, table, "name", str, where), mac.lower(), attach,
                               _get(path, table, "accept", bool, where, True)))
    demo = data.get("demo", {})
    _unknown(path, demo, {"path", "dwell", "ping_interval"}, "demo.")
    handovers = _get(path, demo, "path", list, "demo.", [])
    for name in handovers:
        if name not in names:
            raise TopologyError(f"{path}: demo.path: no MPA named {name!r}")
    return Topology(
        path=path,
        tunnel=_get(path, lab, "tunnel", str, "lab.", "seg6"),
        aaa=aaa,
        lmap=_address(path, _get(path, lmap, "address", str, "lmap."), "lmap.address"),
        prefix=prefix,
        cn=_address(path, _get(path, cn, "address", str, "cn."), "cn.address"),
        cnGateway=_address(path, _get(path, cn, "gateway", str, "cn."), "cn.gateway"),
        mpas=mpas,
        stations=stations,
        handovers=handovers,
        dwell=_get(path, demo, "dwell", float, "demo.", 1.5),
        pingInterval=_get(path, demo, "ping_interval", float, "demo.", 0.01),
        associationReports=_get(path, lab, "association_reports", bool, "lab.", True),
    )


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return tomlValue(value)


def writeConfig(path: str, tables: dict[str, dict[str, Any]]) -> str:
    """Write {"lmap": {"address": ...}, ...} as a TOML file (inline tables allowed)."""
    with open(path, "w") as f:
        for name, table in tables.items():
            f.write(f"[{name}]\n")
            for key, value in table.items():
                f.write(f"{key} = {_toml(value)}\n")
            f.write("\n")
    return path


# --- the daemons ---------------------------------------------------------------------


class LabDaemon(Daemon):
    """A L{Daemon} logging through L{lmm.lab.logger}: timestamps with microseconds."""

    def start(self, ready: str, timeout: float = 20.0) -> LabDaemon:
        argv = [TWISTD, "-n", "--pidfile=", "--logger=lmm.lab.logger.observer", self.plugin,
                "--config", self.configPath]
        env = dict(os.environ, PYTHONPATH=_REPO, **{LOG_VARIABLE: self.logPath})
        with open(self.logPath + ".stderr", "wb") as stderr:
            self.process = self.namespace.popen(argv, env=env, stdout=subprocess.DEVNULL,
                                                stderr=stderr)

        def seen() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.plugin} exited with {self.process.returncode}:\n"
                                   + self.logTail())
            return ready in self.log()

        waitFor(seen, timeout, what=f"{self.plugin} to log {ready!r}")
        return self


# --- the lab --------------------------------------------------------------------------


@dataclass
class Station:
    spec: MSSpec
    namespace: Namespace
    port: str
    baseStation: str


class Lab:
    """
    A running topology. L{start} builds it, L{stop} removes it all (logs and
    configurations stay in L{runDir}). Everything blocks: no reactor.
    """

    def __init__(self, topology: Topology, runDir: str | None = None,
                 out: Any = None) -> None:
        self.topology = topology
        self.runDir = runDir or os.path.join(RUN_ROOT, f"lmm-lab-{RUN_TAG}")
        self.out = out
        self.namespaces: list[Namespace] = []
        self.daemons: dict[str, Daemon] = {}
        self.radius: dict[str, freeradius.FreeRADIUS] = {}
        self.captures: list[subprocess.Popen[bytes]] = []
        self.stations: dict[str, Station] = {}
        self.access: dict[str, str] = {}
        self.baseStations: dict[str, str] = {}
        self.aaa = topology.aaa
        if self.aaa == "auto":
            self.aaa = "radius" if freeradius.missingReason() is None else "file"
        self._indexes = iter(range(3000, 4000, 2))
        # What a scenario records for the timeline (lmm.lab.demo).
        self.origin = 0.0
        self.end: float | None = None
        self.changes: list[tuple[float, str]] = []
        self.linkUp: list[float | None] = []
        self.extraEvents: list[Any] = []
        self.pingOutput: str | None = None
        self.pingInterval = topology.pingInterval
        self.backbonePcap = self.path("backbone.pcap")

    def say(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text + "\n")
            self.out.flush()

    def path(self, name: str) -> str:
        return os.path.join(self.runDir, name)

    def namespace(self, label: str) -> Namespace:
        ns = Namespace.create(LABEL + label)
        self.namespaces.append(ns)
        self._writeState()
        return ns

    def _writeState(self) -> None:
        state = {"owner": os.getpid(), "tag": RUN_TAG,
                 "namespaces": [ns.name for ns in self.namespaces]}
        with open(self.path(STATE_FILE), "w") as f:
            json.dump(state, f)

    # Building

    def start(self) -> Lab:
        topology = self.topology
        os.makedirs(self.runDir, exist_ok=True)
        self.lmapNs = self.namespace("lmap")
        self.mpaNs = {spec.name: self.namespace(spec.name) for spec in topology.mpas}
        self.cnNs = self.namespace("cn")
        self.air = self.namespace("air")
        backboneMembers = [(self.mpaNs[s.name], s.address) for s in topology.mpas]
        from lmm.testing.netns import bridge

        backbone = bridge(self.lmapNs, backboneMembers, address=topology.lmap)
        self.backbone = backbone.name
        link(self.lmapNs, self.cnNs, topology.cnGateway, topology.cn)
        self.cnNs.ip("-6", "route", "add", "default", "via", topology.cnGateway)
        # The base stations are bridges: no IPv6 of their own on the access links.
        self.air.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
        self.air.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        for i, spec in enumerate(topology.mpas):
            # The MPA gives its access interface the virtual LMAP MAC itself.
            accessIf, port = link(self.mpaNs[spec.name], self.air, None, None)
            self.access[spec.name] = accessIf
            bs = self.baseStations[spec.name] = f"bs{i + 1}"
            self.air.ip("link", "add", bs, "type", "bridge", "stp_state", "0",
                        "mcast_snooping", "0")
            self.air.ipBatch([f"link set {port} master {bs}", f"link set {bs} up"])
        self.startCaptures()
        lmapConfig = writeConfig(self.path("lmap.toml"), {
            "lmap": {"address": topology.lmap, "local_network_prefixes": [topology.prefix],
                     "mpas": [topology.backbonePrefix]},
            "revocation": {"timeout": 0.3, "max_retries": 3},
            "control": {"socket": self.controlPath("lmap")},
            "tunnel": {"backend": topology.tunnel},
            "log": {"level": "debug", "summary_interval": 0},
        })
        self.startDaemon("lmap", self.lmapNs, "lmm-lmap", lmapConfig,
                         "listening for Proxy Binding Updates")
        if self.aaa == "radius":
            self.say(f"AAA: FreeRADIUS ({freeradius.FREERADIUS}), one in each MPA's namespace")
        else:
            reason = freeradius.missingReason() or "the topology asks for it"
            self.say(f"AAA: the profile file ({reason}); not FreeRADIUS")
        for spec in topology.mpas:
            ns = self.mpaNs[spec.name]
            aaa: dict[str, Any]
            if self.aaa == "radius":
                # FreeRADIUS listens on loopback only: one in each MPA's namespace.
                server = callIn(ns, freeradius.start, extraUsers=self.radiusUsers())
                self.radius[spec.name] = server
                aaa = {"backend": "radius"}
                aaaOptions: dict[str, Any] = {"servers": server.servers(), "timeout": 0.5}
            else:
                aaa = {"backend": "file"}
                aaaOptions = {"path": self.writeProfiles()}
            config = self.mpaConfig(spec, aaa, aaaOptions)
            self.startDaemon(spec.name, ns, "lmm-mpa", config, "MPA ready")
        return self

    def radiusUsers(self) -> str:
        lines = []
        for spec in self.topology.stations:
            if spec.accept:
                lines.append(f'{spec.nai}\tCleartext-Password := "{spec.mac.replace(":", "")}"\n'
                             f"\tPMIP6-Home-LMA-IPv6-Address = {self.topology.lmap},\n"
                             f"\tPMIP6-Home-HN-Prefix = {self.topology.prefix},\n"
                             f"\tLMM-Address-Mode = slaac\n")
            else:
                lines.append(f"{spec.nai}\tAuth-Type := Reject\n"
                             f'\tReply-Message = "{spec.name} is barred in this lab"\n')
        return "".join(lines)

    def writeProfiles(self) -> str:
        path = self.path("profiles.toml")
        with open(path, "w") as f:
            for spec in self.topology.stations:
                if spec.accept:  # an MS with no profile is rejected
                    f.write(f'[[profile]]\nnai = "{spec.nai}"\nmac = "{spec.mac}"\n'
                            f'lmap_address = "{self.topology.lmap}"\n'
                            f'local_network_prefix = "{self.topology.prefix}"\n'
                            f'address_mode = "slaac"\nmay_choose_address = true\n\n')
        return path

    def mpaConfig(self, spec: MPASpec, aaa: dict[str, Any], aaaOptions: dict[str, Any]) -> str:
        path = self.path(f"{spec.name}.toml")
        writeConfig(path, {
            "mpa": {"address": spec.address, "lmap": self.topology.lmap,
                    "access_interfaces": [self.access[spec.name]]},
            "registration": {"timeout": 0.5},
            "aaa": aaa,
            "aaa.options": aaaOptions,
            "control": {"socket": self.controlPath(spec.name)},
            "tunnel": {"backend": self.topology.tunnel},
            "log": {"level": "debug", "summary_interval": 0},
        })
        return path

    def controlPath(self, name: str) -> str:
        return self.path(f"{name}.sock")

    def startDaemon(self, name: str, ns: Namespace, plugin: str, config: str,
                    ready: str) -> None:
        daemon = LabDaemon(ns, plugin, config, self.path(f"{name}.log"))
        self.daemons[name] = daemon
        daemon.start(ready=ready)

    def startCaptures(self) -> None:
        """tcpdump on the backbone (Mobility Header, tunnelled packets) and, per MS
        later, on its link."""
        self.capture(self.lmapNs, self.backbone, self.backbonePcap,
                     "ip6 proto 135 or ip6 proto 41")

    def capture(self, ns: Namespace, interface: str, pcap: str, expression: str) -> None:
        errors = pcap + ".stderr"
        with open(errors, "wb") as stderr:
            process = ns.popen(["tcpdump", "-i", interface, "-n", "-U", "--immediate-mode",
                                "-s", "200", "-w", pcap, expression],
                               stdout=subprocess.DEVNULL, stderr=stderr)
        self.captures.append(process)

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"tcpdump exited: {open(errors).read()}")
            return "listening on" in open(errors).read()

        waitFor(listening, 10, 0.02, what="tcpdump to listen")

    # Mobile stations

    def attach(self, spec: MSSpec) -> Station:
        """A new MS whose link is a port of its MPA's base station; its link comes up
        last, so that its first frame reaches the MPA."""
        ms = self.namespace(spec.name)
        port = f"p{len(self.stations)}"
        a, b = next(self._indexes), next(self._indexes)
        self.air.ip("link", "add", port, "index", str(a), "type", "veth", "peer", "name", "ms0",
                    "index", str(b), "address", spec.mac, "netns", ms.name)
        station = Station(spec, ms, port, self.baseStations[spec.attach])
        self.stations[spec.name] = station
        # The MS's own view: what it is sent (RA) and sends (RS, DAD), with times.
        # ms0 is up first (tcpdump needs that); it has a carrier once the port is up.
        ms.ip("link", "set", "ms0", "up")
        self.capture(ms, "ms0", self.path(f"{spec.name}.pcap"), "icmp6 and ip6[40] > 132")
        self.air.ipBatch([f"link set {port} master {station.baseStation}",
                          f"link set {port} up"])
        self.associated(station, spec.attach)
        return station

    def associated(self, station: Station, mpa: str) -> None:
        """The base station of C{mpa} reports the MS's association, when the topology
        says base stations do: an attach trigger from the access network, as a
        WLAN controller gives (the MPA's control channel, C{attach IF MAC})."""
        if self.topology.associationReports:
            self.ask(mpa, f"attach {self.access[mpa]} {station.spec.mac}")

    def move(self, station: Station, mpa: str) -> tuple[float, float]:
        """Hand the MS over to C{mpa}: its link goes down, joins that base station,
        comes up. When it started going down, and when it was up again."""
        bs = self.baseStations[mpa]
        when = time.time()
        self.air.ipBatch([f"link set {station.port} down", f"link set {station.port} nomaster",
                          f"link set {station.port} master {bs}",
                          f"link set {station.port} up"])
        up = time.time()
        station.baseStation = bs
        # No disassociation report to the MPA left: it learns of the move from the
        # LMAP's revocation (a report could deregister the binding the new MPA is
        # taking over).
        self.associated(station, mpa)
        return when, up

    def leave(self, station: Station) -> None:
        """The MS leaves the domain: its link goes down, and its base station (when
        base stations report) tells the MPA it served."""
        mpa = self.servingMpa(station)
        self.air.ip("link", "set", station.port, "down")
        if self.topology.associationReports and mpa is not None:
            self.ask(mpa, f"detach {self.access[mpa]} {station.spec.mac}")

    def servingMpa(self, station: Station) -> str | None:
        """The MPA whose base station the MS's link is on."""
        for name, bs in self.baseStations.items():
            if bs == station.baseStation:
                return name
        return None

    def globalAddresses(self, station: Station) -> list[dict[str, Any]]:
        out = json.loads(station.namespace.ip("-j", "-6", "addr", "show", "dev", "ms0",
                                              "scope", "global"))
        return [a for iface in out for a in iface.get("addr_info", []) if "local" in a]

    def configuredAddress(self, station: Station) -> str | None:
        """The MS's global address once DAD is done (not tentative)."""
        for address in self.globalAddresses(station):
            if not address.get("tentative") and not address.get("dadfailed"):
                return str(address["local"])
        return None

    def expectedAddress(self, station: Station) -> str:
        return nd.addressFromMac(self.topology.prefix.split("/")[0], station.spec.mac)

    def ask(self, mpa: str, command: str) -> dict[str, Any]:
        return ask(self.controlPath(mpa), command)

    def visitors(self, mpa: str) -> list[dict[str, str]]:
        return list(self.ask(mpa, "visitors").get("visitors", []))

    def counters(self, mpa: str) -> dict[str, int]:
        return dict(self.ask(mpa, "counters").get("counters", {}))

    def registered(self, mpa: str, mac: str) -> dict[str, str] | None:
        for visitor in self.visitors(mpa):
            if visitor["mac"] == mac and visitor["state"] == "registered":
                return visitor
        return None

    # Removal

    def stop(self) -> list[str]:
        """Stop the daemons, the captures, FreeRADIUS; delete the namespaces. What went
        wrong on the way (nothing stops the rest from being removed)."""
        problems = []
        for name, daemon in self.daemons.items():
            try:
                status = daemon.stop()
                if status not in (0, -signal.SIGTERM):
                    problems.append(f"{name} exited with {status}")
                if "Traceback" in daemon.log():
                    problems.append(f"{name} logged a traceback ({daemon.logPath})")
            except Exception as e:
                problems.append(f"stopping {name}: {e}")
        for process in self.captures:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
        for name, server in self.radius.items():
            try:
                shutil.copy(server.logPath, self.path(f"freeradius-{name}.log"))
            except OSError:
                pass
            server.stop()
        for ns in reversed(self.namespaces):
            try:
                ns.delete()
            except Exception as e:
                problems.append(f"deleting {ns.name}: {e}")
        try:
            os.unlink(self.path(STATE_FILE))
        except OSError:
            pass
        for name in ["lmap"] + [spec.name for spec in self.topology.mpas]:
            try:
                os.unlink(self.controlPath(name))
            except OSError:
                pass
        return problems


# --- down ---------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _liveRuns() -> set[str]:
    """The run tags of labs whose process is still running."""
    live = set()
    for entry in os.listdir(RUN_ROOT):
        if not entry.startswith("lmm-lab-"):
            continue
        try:
            with open(os.path.join(RUN_ROOT, entry, STATE_FILE)) as f:
                state = json.load(f)
        except (OSError, ValueError):
            continue
        if state.get("owner") != os.getpid() and _alive(int(state.get("owner", 0))):
            live.add(str(state.get("tag")))
    return live


def labNamespaces() -> list[str]:
    """The namespaces of lab runs on this machine (names C{lmmNNN-lab-...})."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [name for name in names if _LAB_NAMESPACE.match(name)]


def down(everything: bool = False, out: Any = sys.stdout) -> int:
    """
    Remove what lab runs left: their namespaces and every process in them
    (daemons, FreeRADIUS, tcpdump, ping). Runs still going are left alone
    unless C{everything}. The run folders (logs) stay. How many namespaces
    were removed.
    """
    live = set() if everything else _liveRuns()
    removed = 0
    for name in labNamespaces():
        tag = name.split("-", 1)[0]
        if tag in live:
            out.write(f"left alone: {name} (its lab is still running)\n")
            continue
        Namespace(name).delete()
        removed += 1
        out.write(f"removed namespace {name}\n")
    for entry in sorted(os.listdir(RUN_ROOT)):
        state = os.path.join(RUN_ROOT, entry, STATE_FILE)
        if entry.startswith("lmm-lab-") and os.path.exists(state):
            tag = entry[len("lmm-lab-"):]
            if tag not in live:
                os.unlink(state)
    return removed
