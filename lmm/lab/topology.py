"""
A PMIPv6 domain of network namespaces, built from a topology file.

    LMAP namespace:  the backbone bridge (the LMAP's address) --- each MPA
                     and a link to the correspondent node (CN)
    MPA namespaces:  twistd lmm-mpa, FreeRADIUS (when AAA is RADIUS), and an
                     access link to its base station
    air namespace:   one bridge per MPA, its "base station"; an MS's link is
                     a port of one of them
    MS namespaces:   plain Linux hosts, no lmm code: kernel SLAAC, the stock
                     DHCPv6 client (dhclient -6), or an address the lab
                     configures by hand (ip addr add, with DAD)
    CN namespace:    a plain host, default route via the LMAP
    Kea namespace:   Kea DHCPv6 on the backbone, when an MS uses DHCPv6 (or
                     the topology has a [kea] table); the MPAs relay to it

A handover moves the MS's port from one base station to another, down and up:
the MS sees its link go down and up, nothing else (the approach of
tests/test_mpa_integration.py).

Every namespace is named C{RUN_TAG-lab-...}, so that L{down} finds what a
crashed run left; the run folder keeps every configuration and log.

Over 600 lines: the topology file's checks and the lab built from it (the
namespaces, bridges, daemons, servers and their clean-up) are one thing to a
reader of either; the scenarios and the demo are in L{lmm.lab.demo}.
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
from typing import Any, Mapping, Sequence

from lmm import nd
from lmm.aaa import ADDRESS_MODES, DEFAULT_NAI_TEMPLATE, naiFromMac
from lmm.config import tomlValue
from lmm.lab import freeradius, kea
from lmm.lab.daemons import TWISTD, Daemon, pythonPath, writeConfig, writeKeyFiles
from lmm.lab.logger import LOG_VARIABLE
from lmm.lab.netns import RUN_TAG, Namespace, callIn, link, waitFor
from lmm.lab.processes import end
from lmm.lab.timeline import PingRecord, parsePing, pingSummary
from lmm.mpa.control import ask
from lmm.mpa.tap import DEFAULT_VIRTUAL_LMAP_MAC

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_TOPOLOGY = os.path.join(_REPO, "etc", "lab", "demo.toml")
#: Every namespace of a lab run: RUN_TAG, then this.
LABEL = "lab-"
_LAB_NAMESPACE = re.compile(r"^lmm\d+[0-9a-f]{3}-lab-")
RUN_ROOT = "/tmp"
STATE_FILE = "lab.json"
VIRTUAL_LMAP_MAC = DEFAULT_VIRTUAL_LMAP_MAC
#: The nftables table of L{Lab.backboneLoss}, in each namespace of the backbone.
LOSS_TABLE = "lmm_lab_loss"
#: The nftables table that carries the MSs' frames between their ports and the
#: base stations when links switch (L{Lab.switchLink}), in the air namespace.
AIR_TABLE = "lmm_lab_air"
#: The lab's heartbeats (RFC 5847): a restart is seen within a second or two,
#: not the products' minute (docs/lab.md).
LAB_HEARTBEAT = {"interval": 1.0, "timeout": 0.5, "missed_allowed": 3}


class TopologyError(ValueError):
    """A topology file is wrong; the message names the file and the key."""


# --- the description ----------------------------------------------------------------


@dataclass
class MPASpec:
    name: str
    address: str


@dataclass
class MSSpec:
    """
    One MS. C{addressMethod}: how it gets its address (C{slaac}, C{dhcpv6},
    C{manual}), also its profile's address mode. C{localAddress}: a manual
    MS's address, also given to it by its profile (else the lab picks one
    from its MAC, L{manualAddress}, and the MPA learns it from the MS's DAD).
    C{sessionTimeout}: seconds of access its profile grants (AAA
    Session-Timeout), None for no limit. C{mayChooseAddress}: its profile lets
    the MPA register an address learned from its packets.
    """

    name: str
    mac: str
    attach: str
    accept: bool = True
    addressMethod: str = "slaac"
    localAddress: str | None = None
    sessionTimeout: int | None = None
    mayChooseAddress: bool = True

    @property
    def nai(self) -> str:
        return naiFromMac(DEFAULT_NAI_TEMPLATE, self.mac).decode()


@dataclass
class KeaSpec:
    """The lab's DHCPv6 server: its backbone address, its pool in the LNP
    (C{"first-last"}) and the timers it gives clients (seconds)."""

    address: str
    pool: str
    renewTimer: int = 1000
    rebindTimer: int = 2000
    preferredLifetime: int = 3000
    validLifetime: int = 4000


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
    # How an MS's link moves to another base station: "cut" (its port goes down
    # and comes up on the other: the MS sees its carrier go, and what it sends
    # meanwhile is lost, as on a WLAN), "switch" (its port changes base station
    # at once: the MS never sees its link move, as in a cellular handover whose
    # radio keeps what the device sends meanwhile).
    linkMove: str = "cut"
    # Kea's settings; None: the defaults (L{defaultKea}) when an MS needs it.
    kea: KeaSpec | None = None
    # Settings given to the daemons over the lab's own, as dotted names
    # ({"lmap.max_lifetime": 4}, {"registration.lifetime": 4}): the MPAs' apply
    # to every MPA.
    lmapOverrides: dict[str, Any] = field(default_factory=dict)
    mpaOverrides: dict[str, Any] = field(default_factory=dict)
    # The wire profile of both daemons (docs/wire.md): "draft", or "rfc5213",
    # RFC 5213's protocol, each MS a home network prefix of its own.
    profile: str = "draft"

    def mpa(self, name: str) -> MPASpec:
        for spec in self.mpas:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def backbonePrefix(self) -> str:
        return str(ipaddress.IPv6Network(self.lmap + "/64", strict=False))

    @property
    def perNodePrefixes(self) -> bool:
        return self.profile == "rfc5213"

    @property
    def anchored(self) -> str:
        """What the LMAP anchors: the LNP, or (rfc5213) the pool the MSs'
        /64 home network prefixes come from: the /56 holding the LNP."""
        network = ipaddress.IPv6Network(self.prefix)
        if self.perNodePrefixes and network.prefixlen > 56:
            network = network.supernet(new_prefix=56)
        return str(network)

    def keaSpec(self) -> KeaSpec | None:
        """The Kea the lab runs: the topology's, else the defaults when an MS
        uses DHCPv6; None: no Kea."""
        if self.kea is not None:
            return self.kea
        if any(s.addressMethod == "dhcpv6" for s in self.stations):
            return defaultKea(self.backbonePrefix, self.prefix)
        return None


def defaultKea(backbonePrefix: str, prefix: str) -> KeaSpec:
    """Kea at ::53 of the backbone, handing out ::1000-::1fff of the LNP."""
    backbone = ipaddress.IPv6Network(backbonePrefix)
    lnp = ipaddress.IPv6Network(prefix)
    return KeaSpec(str(backbone.network_address + 0x53),
                   f"{lnp.network_address + 0x1000}-{lnp.network_address + 0x1fff}")


def manualAddress(prefix: str, mac: str) -> str:
    """The address the lab gives a manual MS that its topology names none:
    C{::a:} and the last four octets of its MAC, in the LNP (not the SLAAC
    address, so that the two methods cannot be mistaken for each other)."""
    network = ipaddress.IPv6Network(prefix)
    low = int(mac.replace(":", "")[4:], 16)
    return str(network.network_address + ((0xA << 32) | low))


def _settled(address: Mapping[str, Any]) -> bool:
    """Whether an address of C{ip -j addr} is usable: its DAD is done and passed."""
    return not address.get("tentative") and not address.get("dadfailed")


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


def _flatten(path: str, table: Any, where: str, prefix: str = "") -> dict[str, Any]:
    """{"registration": {"lifetime": 4}} -> {"registration.lifetime": 4}."""
    if not isinstance(table, dict):
        raise TopologyError(f"{path}: {where}: expected a table of the daemon's settings, "
                            f"got {table!r}")
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = prefix + key
        if isinstance(value, dict):
            flat.update(_flatten(path, value, where, name + "."))
        elif "." not in name:
            raise TopologyError(f"{path}: {where}.{name}: expected TABLE.KEY, as in the "
                                f"daemon's configuration file")
        else:
            flat[name] = value
    return flat


def _inPrefix(path: str, address: str, prefix: str, key: str) -> str:
    if ipaddress.IPv6Address(address) not in ipaddress.IPv6Network(prefix):
        raise TopologyError(f"{path}: {key}: {address} is outside {prefix}")
    return address


def _readToml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise TopologyError(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(f"{path}: {e}") from None


def _station(path: str, table: dict[str, Any], where: str, names: list[str],
             prefix: str) -> MSSpec:
    """One C{[[ms]]} table."""
    _unknown(path, table, {"name", "mac", "attach", "accept", "address", "local_address",
                           "session_timeout", "may_choose_address"}, where)
    attach = _get(path, table, "attach", str, where, names[0])
    if attach not in names:
        raise TopologyError(f"{path}: {where}attach: no MPA named {attach!r}")
    mac = _get(path, table, "mac", str, where, "") or randomMac()
    method = _get(path, table, "address", str, where, "slaac")
    if method not in ADDRESS_MODES:
        raise TopologyError(f"{path}: {where}address: expected one of "
                            f"{', '.join(ADDRESS_MODES)}, got {method!r}")
    localAddress = None
    if "local_address" in table:
        if method != "manual":
            raise TopologyError(f"{path}: {where}local_address: only for an MS whose "
                                f"address is manual")
        localAddress = _inPrefix(path, _address(path, _get(path, table, "local_address",
                                                           str, where),
                                                where + "local_address"),
                                 prefix, where + "local_address")
    sessionTimeout = None
    if "session_timeout" in table:
        sessionTimeout = _get(path, table, "session_timeout", int, where)
        if isinstance(sessionTimeout, bool) or sessionTimeout < 1:
            raise TopologyError(f"{path}: {where}session_timeout: expected whole "
                                f"seconds, at least 1, got {sessionTimeout!r}")
    return MSSpec(_get(path, table, "name", str, where), mac.lower(), attach,
                  _get(path, table, "accept", bool, where, True), method,
                  localAddress, sessionTimeout,
                  _get(path, table, "may_choose_address", bool, where, True))


def _kea(path: str, table: dict[str, Any], backbonePrefix: str, prefix: str,
         taken: list[str]) -> KeaSpec:
    """The C{[kea]} table."""
    _unknown(path, table, {"address", "pool", "renew_timer", "rebind_timer",
                           "preferred_lifetime", "valid_lifetime"}, "kea.")
    default = defaultKea(backbonePrefix, prefix)
    address = _inPrefix(path, _address(path, _get(path, table, "address", str, "kea.",
                                                  default.address), "kea.address"),
                        backbonePrefix, "kea.address")
    if address in taken:
        raise TopologyError(f"{path}: kea.address: {address} is taken by the LMAP or an MPA")
    pool = _get(path, table, "pool", str, "kea.", default.pool)
    bounds = pool.split("-")
    if len(bounds) != 2:
        raise TopologyError(f"{path}: kea.pool: expected FIRST-LAST, got {pool!r}")
    first, last = (_inPrefix(path, _address(path, b.strip(), "kea.pool"), prefix,
                             "kea.pool") for b in bounds)
    if ipaddress.IPv6Address(first) > ipaddress.IPv6Address(last):
        raise TopologyError(f"{path}: kea.pool: {first} comes after {last}")
    timers = [_get(path, table, key, int, "kea.", getattr(default, attribute))
              for key, attribute in (("renew_timer", "renewTimer"),
                                     ("rebind_timer", "rebindTimer"),
                                     ("preferred_lifetime", "preferredLifetime"),
                                     ("valid_lifetime", "validLifetime"))]
    return KeaSpec(address, f"{first}-{last}", *timers)


# What [lab] link_move may say (Topology.linkMove).
LINK_MOVES = ("cut", "switch")


def loadTopology(path: str = DEFAULT_TOPOLOGY) -> Topology:
    """Read and check a topology file; L{TopologyError} names what is wrong."""
    data = _readToml(path)
    _unknown(path, data, {"lab", "lmap", "mpa", "cn", "ms", "kea", "overrides", "demo"}, "")
    lab = data.get("lab", {})
    _unknown(path, lab, {"tunnel", "aaa", "association_reports", "profile", "link_move"},
             "lab.")
    linkMove = _get(path, lab, "link_move", str, "lab.", "cut")
    if linkMove not in LINK_MOVES:
        raise TopologyError(f"{path}: lab.link_move: expected {' or '.join(LINK_MOVES)}, "
                            f"got {linkMove!r}")
    profile = _get(path, lab, "profile", str, "lab.", "draft")
    if profile not in ("draft", "rfc5213"):
        raise TopologyError(f"{path}: lab.profile: expected draft or rfc5213, got {profile!r}")
    aaa = _get(path, lab, "aaa", str, "lab.", "auto")
    if aaa not in ("auto", "radius", "file"):
        raise TopologyError(f"{path}: lab.aaa: expected auto, radius or file, got {aaa!r}")
    lmap = _get(path, data, "lmap", dict, "")
    _unknown(path, lmap, {"address", "local_network_prefix"}, "lmap.")
    lmapAddress = _address(path, _get(path, lmap, "address", str, "lmap."), "lmap.address")
    backbonePrefix = str(ipaddress.IPv6Network(lmapAddress + "/64", strict=False))
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
    stations = [_station(path, table, f"ms[{i}].", names, prefix)
                for i, table in enumerate(_get(path, data, "ms", list, ""))]
    keaSpec = None
    if "kea" in data:
        keaSpec = _kea(path, _get(path, data, "kea", dict, ""), backbonePrefix, prefix,
                       [lmapAddress] + [m.address for m in mpas])
    overrides = _get(path, data, "overrides", dict, "", {}) if "overrides" in data else {}
    _unknown(path, overrides, {"lmap", "mpa"}, "overrides.")
    demo = data.get("demo", {})
    _unknown(path, demo, {"path", "dwell", "ping_interval"}, "demo.")
    handovers = _get(path, demo, "path", list, "demo.", [])
    for name in handovers:
        if name not in names:
            raise TopologyError(f"{path}: demo.path: no MPA named {name!r}")
    return checkTopology(Topology(
        path=path,
        tunnel=_get(path, lab, "tunnel", str, "lab.", "auto"),
        aaa=aaa,
        lmap=lmapAddress,
        prefix=prefix,
        cn=_address(path, _get(path, cn, "address", str, "cn."), "cn.address"),
        cnGateway=_address(path, _get(path, cn, "gateway", str, "cn."), "cn.gateway"),
        mpas=mpas,
        stations=stations,
        handovers=handovers,
        dwell=_get(path, demo, "dwell", float, "demo.", 1.5),
        pingInterval=_get(path, demo, "ping_interval", float, "demo.", 0.01),
        associationReports=_get(path, lab, "association_reports", bool, "lab.", True),
        linkMove=linkMove,
        kea=keaSpec,
        lmapOverrides=_flatten(path, overrides.get("lmap", {}), "overrides.lmap"),
        mpaOverrides=_flatten(path, overrides.get("mpa", {}), "overrides.mpa"),
        profile=profile,
    ))


def checkTopology(topology: Topology) -> Topology:
    """C{topology}, if its parts fit together; else L{TopologyError}."""
    if topology.perNodePrefixes and any(s.addressMethod == "dhcpv6"
                                        for s in topology.stations):
        raise TopologyError(f"{topology.path}: an MS using dhcpv6 needs lab.profile = "
                            "\"draft\": in rfc5213 the LMAP delegates each MS's prefix, "
                            "for SLAAC")
    if topology.linkMove == "switch" and not topology.associationReports:
        # The MS sends nothing of its own when a link it never sees move moves: the
        # MPA it reaches would have no frame to detect it by.
        raise TopologyError(f"{topology.path}: lab.link_move = \"switch\" needs "
                            "lab.association_reports = true")
    return topology


def applyOverrides(tables: dict[str, dict[str, Any]], overrides: dict[str, Any],
                   ) -> dict[str, dict[str, Any]]:
    """C{tables} with each dotted setting of C{overrides} set: C{"a.b.key"} is
    C{key} of the table C{"a.b"}."""
    for name, value in overrides.items():
        table, _, key = name.rpartition(".")
        tables.setdefault(table, {})[key] = value
    return tables


# --- the daemons ---------------------------------------------------------------------


class LabDaemon(Daemon):
    """A L{Daemon} logging through L{lmm.lab.logger}: timestamps with microseconds."""

    def start(self, ready: str, timeout: float = 20.0) -> LabDaemon:
        argv = [TWISTD, "-n", "--pidfile=", "--logger=lmm.lab.logger.observer", self.plugin,
                "--config", self.configPath]
        env = dict(os.environ, PYTHONPATH=pythonPath(), **{LOG_VARIABLE: self.logPath})
        before = self._logSize()  # a restart appends to the same log
        with open(self.logPath + ".stderr", "ab") as stderr:
            self.process = self.namespace.popen(argv, env=env, stdout=subprocess.DEVNULL,
                                                stderr=stderr)

        def seen() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.plugin} exited with {self.process.returncode}:\n"
                                   + self.logTail())
            return ready in self._logSince(before)

        waitFor(seen, timeout, what=f"{self.plugin} to log {ready!r}")
        return self


# --- the lab --------------------------------------------------------------------------


@dataclass
class Station:
    spec: MSSpec
    namespace: Namespace
    port: str
    baseStation: str
    # How far its address configuration went (L{Lab.waitUsable}): its DHCPv6
    # client, whether the lab configured its manual address, the usable address.
    client: kea.DHCPClient | None = None
    configured: bool = False
    address: str | None = None


class BackgroundPing:
    """C{ping -n -D} from an MS in the background (iputils: its C{-i 0.02} is
    about 24 ms here, see L{lmm.lab.pinger}); L{stop} gives what it lost."""

    def __init__(self, station: Station, destination: str, interval: float) -> None:
        self.interval = interval
        self.process = station.namespace.popen(
            ["ping", "-n", "-D", "-i", f"{interval:g}", "-W", "1", destination],
            stdout=subprocess.PIPE, text=True)

    def stop(self) -> PingRecord:
        time.sleep(0.1)  # the last reply's room
        stopped = time.time()
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=10)
        record = parsePing(out, self.interval)
        record.stoppedAt = stopped
        return record


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
        self.kea: kea.Kea | None = None
        self.keaSpec = topology.keaSpec()
        self.stopped: list[str] | None = None  # what L{stop} found, once it ran
        self.captures: list[subprocess.Popen[bytes]] = []
        self.stations: dict[str, Station] = {}
        self.access: dict[str, str] = {}
        self.baseStations: dict[str, str] = {}
        # The air namespace's nftables server (L{airRules}), when links switch.
        self._nft: subprocess.Popen[str] | None = None
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
        self.reversePingOutput: str | None = None  # a second pinger's, the other way
        self.pingStopped: float | None = None  # when the demo stopped its ping
        self.pingInterval = topology.pingInterval
        #: Each MPA's key file, by address (written when the lab starts).
        self.mpaKeys: dict[str, str] = {}
        self.backbonePcap = self.path("backbone.pcap")
        self._ready: dict[str, str] = {}  # what each daemon logs when it is ready

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
        backboneMembers: list[tuple[Namespace, str | None]] = [
            (self.mpaNs[s.name], s.address) for s in topology.mpas]
        if self.keaSpec is not None:
            self.keaNs = self.namespace("kea")
            backboneMembers.append((self.keaNs, self.keaSpec.address))
        from lmm.lab.netns import bridge

        backbone = bridge(self.lmapNs, backboneMembers, address=topology.lmap)
        self.backbone = backbone.name
        # Each MPA's end of the backbone, and the LMAP's bridge port for it.
        self.backboneLinks = {
            spec.name: (backbone.interfaces[i], backbone.ports[i])
            for i, spec in enumerate(topology.mpas)}
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
            if topology.linkMove == "switch":
                # The base station's radio end (L{switchLink}): what comes out of
                # u<N> enters the bridge, what the bridge sends an MS leaves by it.
                self.air.ipBatch([f"link add {self._radio(bs)} type veth peer name v{i + 1}",
                                  f"link set v{i + 1} master {bs}", f"link set v{i + 1} up",
                                  f"link set {self._radio(bs)} up"])
        if topology.linkMove == "switch":
            self._nft = self.air.popenPython(
                "from lmm.lab.nftserver import main; import sys; sys.exit(main())",
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.airRules(f"add table netdev {AIR_TABLE}\n" + "".join(
                f"add chain netdev {AIR_TABLE} in_{self._radio(bs)} {{ type filter hook "
                f"ingress device {self._radio(bs)} priority 0 ; }}\n"
                f"add rule netdev {AIR_TABLE} in_{self._radio(bs)} drop\n"
                for bs in self.baseStations.values()))
        self.startCaptures()
        lmapKeys, self.mpaKeys = writeKeyFiles(self.runDir, topology.lmap,
                                               [spec.address for spec in topology.mpas])
        if topology.lmapOverrides.get("security.authentication", True):
            self.say(f"signaling: authenticated (RFC 4285, HMAC-SHA256-128), fresh keys in "
                     f"{lmapKeys} and one file per MPA")
        else:
            self.say("signaling: NOT authenticated (the topology's [overrides] say so)")
        lmapConfig = writeConfig(self.path("lmap.toml"), applyOverrides({
            "lmap": {"address": topology.lmap, "local_network_prefixes": [topology.anchored],
                     "mpas": [topology.backbonePrefix]},
            "wire": {"profile": topology.profile},
            # Retransmissions short enough that a lab heals within seconds
            # of a backbone outage (docs/lab.md).
            "revocation": {"timeout": 0.3, "max_retries": 3, "max_interval": 2.0},
            "security": {"keys": lmapKeys},
            "control": {"socket": self.controlPath("lmap")},
            "store": {"path": self.path("lmap.sqlite")},
            "heartbeat": dict(LAB_HEARTBEAT),
            "tunnel": {"backend": topology.tunnel},
            "log": {"level": "debug", "summary_interval": 0},
        }, topology.lmapOverrides))
        self.startDaemon("lmap", self.lmapNs, "lmm-lmap", lmapConfig,
                         "listening for Proxy Binding Updates")
        if self.keaSpec is not None:
            self.startKea(self.keaSpec, backbone.interfaces[len(topology.mpas)])
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
                # Threaded, as deployed: the demo's and benchmarks' AAA times are real.
                server = callIn(ns, freeradius.start, extraUsers=self.radiusUsers(),
                                debug=False)
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
        """The FreeRADIUS users entries: the same profiles as L{writeProfiles}."""
        lines = []
        for spec in self.topology.stations:
            if spec.accept:
                prefix = self.profilePrefix(spec)
                replies = [f"PMIP6-Home-LMA-IPv6-Address = {self.topology.lmap}",
                           *([f"PMIP6-Home-HN-Prefix = {prefix}"] if prefix else []),
                           f"LMM-Address-Mode = {spec.addressMethod}",
                           "LMM-MS-May-Choose-Address = "
                           + ("yes" if spec.mayChooseAddress else "no")]
                if spec.localAddress is not None:
                    replies.append(f"Framed-IPv6-Address = {spec.localAddress}")
                if spec.sessionTimeout is not None:
                    replies.append(f"Session-Timeout = {spec.sessionTimeout}")
                lines.append(f'{spec.nai}\tCleartext-Password := "{spec.mac.replace(":", "")}"\n'
                             + "".join(f"\t{reply},\n" for reply in replies[:-1])
                             + f"\t{replies[-1]}\n")
            else:
                lines.append(f"{spec.nai}\tAuth-Type := Reject\n"
                             f'\tReply-Message = "{spec.name} is barred in this lab"\n')
        return "".join(lines)

    def profilePrefix(self, spec: MSSpec) -> str | None:
        """The prefix an MS's profile names: the LNP; in the rfc5213 profile
        none (the LMAP delegates one), but for an MS with a fixed address
        the /64 holding it, asked for as its home network prefix."""
        if not self.topology.perNodePrefixes:
            return self.topology.prefix
        if spec.localAddress is None:
            return None
        return str(ipaddress.IPv6Network(spec.localAddress + "/64", strict=False))

    def writeProfiles(self) -> str:
        """The profile file (lmm.aaa): an MS with no profile is rejected."""
        path = self.path("profiles.toml")
        with open(path, "w") as f:
            for spec in self.topology.stations:
                if not spec.accept:
                    continue
                prefix = self.profilePrefix(spec)
                f.write(f'[[profile]]\nnai = "{spec.nai}"\nmac = "{spec.mac}"\n'
                        f'lmap_address = "{self.topology.lmap}"\n'
                        + (f'local_network_prefix = "{prefix}"\n' if prefix else "")
                        + f'address_mode = "{spec.addressMethod}"\n'
                        f"may_choose_address = {tomlValue(spec.mayChooseAddress)}\n")
                if spec.localAddress is not None:
                    f.write(f'local_address = "{spec.localAddress}"\n')
                if spec.sessionTimeout is not None:
                    f.write(f"session_timeout = {spec.sessionTimeout}\n")
                f.write("\n")
        return path

    def mpaConfig(self, spec: MPASpec, aaa: dict[str, Any], aaaOptions: dict[str, Any]) -> str:
        path = self.path(f"{spec.name}.toml")
        tables: dict[str, dict[str, Any]] = {
            "mpa": {"address": spec.address, "lmap": self.topology.lmap,
                    "access_interfaces": [self.access[spec.name]]},
            "registration": {"timeout": 0.5, "max_interval": 2.0, "retry_interval": 2.0},
            "security": {"keys": self.mpaKeys[spec.address]},
            "aaa": aaa,
            "aaa.options": aaaOptions,
            "control": {"socket": self.controlPath(spec.name)},
            "state": {"path": self.path(f"{spec.name}.state")},
            "heartbeat": dict(LAB_HEARTBEAT),
            "tunnel": {"backend": self.topology.tunnel},
            "log": {"level": "debug", "summary_interval": 0},
            "wire": {"profile": self.topology.profile},
        }
        if self.topology.perNodePrefixes:
            # The LMAP delegates each MS's prefix: the profiles name none.
            aaaOptions = {**aaaOptions, "require_prefix_or_address": False}
            tables["aaa.options"] = aaaOptions
        if self.keaSpec is not None:
            tables["dhcp"] = {"server": self.keaSpec.address}
        writeConfig(path, applyOverrides(tables, self.topology.mpaOverrides))
        return path

    def startKea(self, spec: KeaSpec, interface: str) -> None:
        """Kea DHCPv6 in its namespace on the backbone, one subnet: the LNP."""
        self.kea = kea.start(self.keaNs, interface, spec.address,
                             subnets=[kea.Subnet(self.topology.prefix, spec.pool, 1)],
                             parent=self.runDir, renewTimer=spec.renewTimer,
                             rebindTimer=spec.rebindTimer,
                             preferredLifetime=spec.preferredLifetime,
                             validLifetime=spec.validLifetime)
        self.say(f"DHCPv6: Kea ({kea.KEA_DHCP6}) at {spec.address}, pool {spec.pool}")

    def controlPath(self, name: str) -> str:
        return self.path(f"{name}.sock")

    def startDaemon(self, name: str, ns: Namespace, plugin: str, config: str,
                    ready: str) -> None:
        daemon = LabDaemon(ns, plugin, config, self.path(f"{name}.log"))
        self.daemons[name] = daemon
        self._ready[name] = ready
        daemon.start(ready=ready)

    def crash(self, name: str) -> float:
        """Kill the daemon C{name} as a crash would (SIGKILL: nothing cleaned
        up, kernel state left); when it died (time.time)."""
        self.daemons[name].kill()
        return time.time()

    def restart(self, name: str) -> float:
        """Start the daemon C{name} again, same configuration, same log; when
        it was ready (time.time)."""
        self.daemons[name].start(ready=self._ready[name])
        return time.time()

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
        if self.topology.linkMove == "switch":
            self.air.ip("link", "set", port, "up")
            self.switchLink(station, station.baseStation, first=True)
        else:
            self.air.ipBatch([f"link set {port} master {station.baseStation}",
                              f"link set {port} up"])
        self.associated(station, spec.attach)
        return station

    @staticmethod
    def _radio(bs: str) -> str:
        """The air namespace's end of base station C{bs}'s radio link (C{u<N>})."""
        return "u" + bs.removeprefix("bs")

    def switchLink(self, station: Station, bs: str, first: bool = False) -> None:
        """Put C{station}'s link on base station C{bs} in one step (the topology's
        C{linkMove} "switch"): one nftables transaction, so each frame goes to
        one base station or the other, never to none. (Moving a bridge port
        to another bridge leaves it in neither for a fraction of a
        millisecond: measured, 9 of 3,000 pings at 1 ms lost in 50 moves.)
        The MS's port belongs to no bridge: its ingress sends its frames out
        of the base station's radio end; each radio end's ingress sends on
        what is for the MSs on that base station (unicast to each MAC,
        multicast copied to every one) and drops the rest."""
        old, station.baseStation = station.baseStation, bs
        chain = f"in_{station.port}"
        script = [f"add chain netdev {AIR_TABLE} {chain} {{ type filter hook ingress "
                  f"device {station.port} priority 0 ; }}"] if first else []
        script += [f"flush chain netdev {AIR_TABLE} {chain}",
                   f"add rule netdev {AIR_TABLE} {chain} fwd to {self._radio(bs)}"]
        for each in sorted({old, bs}):
            radio = f"in_{self._radio(each)}"
            here = [s for s in self.stations.values() if s.baseStation == each]
            script.append(f"flush chain netdev {AIR_TABLE} {radio}")
            script += [f"add rule netdev {AIR_TABLE} {radio} ether daddr {s.spec.mac} "
                       f"fwd to {s.port}" for s in here]
            script += [f"add rule netdev {AIR_TABLE} {radio} ether daddr & 01:00:00:00:00:00 "
                       f"== 01:00:00:00:00:00 dup to {s.port}" for s in here]
            script.append(f"add rule netdev {AIR_TABLE} {radio} drop")
        self.airRules("\n".join(script) + "\n")

    def airRules(self, script: str) -> None:
        """Commit C{script} (one nftables transaction) in the air namespace, by
        the lab's L{lmm.lab.nftserver} there: a C{nft -f} would take 6-20 ms to
        start, and the switch would wait for it."""
        process = self._nft
        assert process is not None and process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(script) + "\n")
        process.stdin.flush()
        answer = process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the lab's nftables server exited with {process.wait()}")
        error = json.loads(answer)
        if error is not None:
            raise RuntimeError(f"nftables refused the air namespace's rules: {error}\n{script}")

    def associated(self, station: Station, mpa: str) -> None:
        """The base station of C{mpa} reports the MS's association, when the topology
        says base stations do: an attach trigger from the access network, as a
        WLAN controller gives (the MPA's control channel, C{attach IF MAC})."""
        if self.topology.associationReports:
            self.ask(mpa, f"attach {self.access[mpa]} {station.spec.mac}")

    def move(self, station: Station, mpa: str, report: bool = True) -> tuple[float, float]:
        """Hand the MS over to C{mpa}: the base station it leaves reports it gone
        (with association reports, unless not C{report}: a report lost, an
        access network that gives none), its link goes down, joins C{mpa}'s
        base station, comes up (the topology's C{linkMove} "switch": joins it at
        once, its carrier never down). When the move began (before that
        report), and when the link was up again."""
        bs = self.baseStations[mpa]
        previous = self.servingMpa(station)
        when = time.time()
        if (report and self.topology.associationReports and previous is not None
                and previous != mpa):
            # The disassociation, reported as the MS leaves (an access point sees the
            # station's disassociation before its radio link is gone): the MPA left
            # holds what comes for the MS until the revocation says where it went
            # (docs/mpa.md "Departing visitors").
            self.ask(previous, f"detach {self.access[previous]} {station.spec.mac}")
        if self.topology.linkMove == "switch":
            self.switchLink(station, bs)
        else:
            self.air.ipBatch([f"link set {station.port} down",
                              f"link set {station.port} nomaster",
                              f"link set {station.port} master {bs}",
                              f"link set {station.port} up"])
        up = time.time()
        station.baseStation = bs
        self.associated(station, mpa)
        return when, up

    def leave(self, station: Station) -> None:
        """The MS leaves the domain: its link goes down, and its base station (when
        base stations report) tells the MPA it served."""
        mpa = self.servingMpa(station)
        self.air.ip("link", "set", station.port, "down")
        if self.topology.associationReports and mpa is not None:
            self.ask(mpa, f"detach {self.access[mpa]} {station.spec.mac}")

    def backboneLoss(self, percent: float, mpas: list[str] | None = None) -> None:
        """Drop C{percent} % of the packets between the LMAP and each MPA, at
        random, in both directions (0: none). The drop is at each receiver's
        ingress (nftables, netdev family, C{numgen random}): before seg6
        decapsulation, so it takes signaling and tunnelled data alike (a
        seg6 tunnel's packets never reach an INPUT hook). The backbone's own
        Neighbor Discovery is spared, the outer header's ICMPv6, so that the
        loss is the signaling's and the data's, not the neighbour cache's.
        C{mpas}: only the links of these MPAs (default: all)."""
        table = LOSS_TABLE
        for name, (inside, port) in self.backboneLinks.items():
            if mpas is not None and name not in mpas:
                continue
            for ns, device in ((self.mpaNs[name], inside), (self.lmapNs, port)):
                chain = f"in_{device}".replace("-", "_")
                # Every packet at 100 %; else a random draw per packet.
                sample = "" if percent >= 100 else \
                    f"numgen random mod 1000 < {round(percent * 10)} "
                if percent <= 0:
                    ns.run(["nft", "delete", "chain", "netdev", table, chain], check=False)
                    continue
                script = (f"add table netdev {table}\n"
                          f"add chain netdev {table} {chain} "
                          f"{{ type filter hook ingress device {device} priority 0 ; }}\n"
                          f"flush chain netdev {table} {chain}\n"
                          f"add rule netdev {table} {chain} meta protocol ip6 "
                          f"ip6 nexthdr != ipv6-icmp {sample}counter drop\n")
                ns.run(["nft", "-f", "-"], input=script)

    def backboneDropped(self) -> int:
        """Packets the backbone's loss has dropped so far, all links."""
        total = 0
        for ns in (self.lmapNs, *self.mpaNs.values()):
            out = ns.run(["nft", "-j", "list", "table", "netdev", LOSS_TABLE], check=False)
            if out.returncode:
                continue
            for item in json.loads(out.stdout)["nftables"]:
                for expr in item.get("rule", {}).get("expr", []):
                    if "counter" in expr:
                        total += expr["counter"]["packets"]
        return total

    def agrees(self, stations: Sequence[Station]) -> bool:
        """Whether the LMAP and the MPAs agree on C{stations}: one binding
        each, at the MPA whose base station it is on; that MPA shows it
        registered; no other MPA holds a visitor for it."""
        bindings = {b["nai"]: b["careOfAddress"] for b in self.bindings()}
        if len(bindings) != len(stations):
            return False
        visitors = {m.name: {v["mac"]: v["state"] for v in self.visitors(m.name)}
                    for m in self.topology.mpas}
        for station in stations:
            serving = self.servingMpa(station)
            mac = station.spec.mac
            if serving is None or bindings.get(station.spec.nai) != \
                    self.topology.mpa(serving).address:
                return False
            if visitors[serving].get(mac) != "registered":
                return False
            if any(mac in v for name, v in visitors.items() if name != serving):
                return False
        return True

    def backgroundPing(self, station: Station, interval: float = 0.02) -> BackgroundPing:
        """C{ping -D} from C{station} to the CN until L{BackgroundPing.stop}."""
        return BackgroundPing(station, self.topology.cn, interval)

    def servingMpa(self, station: Station) -> str | None:
        """The MPA whose base station the MS's link is on."""
        for name, bs in self.baseStations.items():
            if bs == station.baseStation:
                return name
        return None

    def addresses(self, station: Station, scope: str = "global") -> list[dict[str, Any]]:
        """The MS's IPv6 addresses of C{scope}, as C{ip -j} gives them (C{local},
        C{tentative}, ...)."""
        out = json.loads(station.namespace.ip("-j", "-6", "addr", "show", "dev", "ms0",
                                              "scope", scope))
        return [a for iface in out for a in iface.get("addr_info", []) if "local" in a]

    def globalAddresses(self, station: Station) -> list[dict[str, Any]]:
        return self.addresses(station)

    def defaultRoutes(self, station: Station) -> list[dict[str, Any]]:
        """The MS's IPv6 default routes, as C{ip -j} gives them (C{gateway},
        C{dev}, ...): one via its router's link-local address once an RA came."""
        return list(json.loads(station.namespace.ip("-j", "-6", "route", "show", "default")))

    def configuredAddress(self, station: Station) -> str | None:
        """The MS's global address once DAD is done (not tentative)."""
        for address in self.globalAddresses(station):
            if _settled(address):
                return str(address["local"])
        return None

    def expectedAddress(self, station: Station) -> str | None:
        """The address the MS should end up with: its SLAAC address (from its MAC),
        its manual address; for DHCPv6, what its client was given (None before)."""
        spec = station.spec
        if spec.addressMethod == "dhcpv6":
            return None if station.client is None else station.client.address()
        prefix = self.homePrefix(station)
        if prefix is None:
            return None
        if spec.addressMethod == "manual":
            return spec.localAddress or manualAddress(prefix, spec.mac)
        return nd.addressFromMac(prefix.split("/")[0], spec.mac)

    def homePrefix(self, station: Station) -> str | None:
        """The prefix the MS makes its address in: the LNP, or (rfc5213) the
        home network prefix the LMAP delegated to it (None before)."""
        if not self.topology.perNodePrefixes:
            return self.topology.prefix
        for binding in self.bindings():
            if binding["nai"] == station.spec.nai:
                return str(binding["localAddress"])
        return None

    def linkLocalReady(self, station: Station) -> bool:
        """Whether the MS's link-local address is usable (DAD done)."""
        return any(_settled(a) for a in self.addresses(station, "link"))

    def usable(self, station: Station, address: str) -> bool:
        """Whether the MS has C{address}, DAD done."""
        return any(a["local"] == address and _settled(a) for a in self.globalAddresses(station))

    def configure(self, station: Station) -> str | None:
        """
        One step of the MS's address configuration, as its method has it; its
        usable address once it has one (then also C{station.address}), else None.
        SLAAC: the kernel does it all. Manual: once the link-local address is
        usable, C{ip addr add ADDRESS/64} (with DAD, as an administrator would).
        DHCPv6: once the link-local address is usable (dhclient exits without
        one), the stock client, C{dhclient -6}; its files and output in
        C{dhclient-NAME/} of the run folder.
        """
        spec = station.spec
        if spec.addressMethod == "manual" and not station.configured:
            if not self.linkLocalReady(station):
                return None
            address = self.expectedAddress(station)
            if address is None:
                return None  # rfc5213: its prefix is not delegated yet
            station.namespace.ip("address", "add", f"{address}/64", "dev", "ms0")
            station.configured = True
        elif spec.addressMethod == "dhcpv6" and station.client is None:
            if not self.linkLocalReady(station):
                return None
            station.client = kea.startClient(station.namespace, "ms0",
                                             self.path(f"dhclient-{spec.name}"))
        if station.client is not None and not station.client.running():
            raise RuntimeError(f"{spec.name}'s dhclient exited: "
                               + station.client.output()[-500:])
        expected = self.expectedAddress(station)
        if expected is None or not self.usable(station, expected):
            return None
        station.address = expected
        return expected

    def waitUsable(self, *stations: Station, timeout: float = 20.0) -> list[str]:
        """
        Wait until each MS has its address, usable (not tentative), whatever its
        method (L{configure}: the lab does a manual MS's or starts a DHCPv6
        client's part); the addresses, in order. Several MSs configure at the
        same time. L{TimeoutError} names those that did not and what they have.
        """
        pending = list(stations)

        def step() -> bool:
            for station in list(pending):
                if self.configure(station) is not None:
                    pending.remove(station)
            return not pending

        try:
            waitFor(step, timeout, 0.01)
        except TimeoutError:
            raise TimeoutError("no usable address after {:g} s: {}".format(timeout, "; ".join(
                f"{s.spec.name} ({s.spec.addressMethod}) has "
                + (", ".join(f"{a['local']}{' tentative' if a.get('tentative') else ''}"
                             for a in self.globalAddresses(s)) or "no global address")
                for s in pending))) from None
        return [str(station.address) for station in stations]

    def ping(self, station: Station, count: int = 3, interval: float = 0.2,
             destination: str | None = None) -> tuple[int, int]:
        """(sent, received) of a ping from the MS (to the CN by default)."""
        result = station.namespace.run(
            ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1",
             destination or self.topology.cn], check=False, timeout=30 + count * interval)
        return pingSummary(result.stdout) or (0, 0)

    def snapshot(self) -> str:
        """What the lab looks like now, for a failure report: each MS's addresses
        and routes, each MPA's visitors, the LMAP's bindings (best effort)."""
        parts = []
        for name, station in self.stations.items():
            try:
                parts.append(f"--- {name} ({station.spec.addressMethod}, {station.spec.mac}, "
                             f"on {self.servingMpa(station)}'s base station)\n"
                             + station.namespace.ip("-6", "addr", "show", "dev", "ms0")
                             + station.namespace.ip("-6", "route"))
                if station.client is not None:
                    parts.append(f"--- {name}'s dhclient:\n" + station.client.output()[-1500:])
            except Exception as e:
                parts.append(f"--- {name}: {e}")
        for spec in self.topology.mpas:
            try:
                parts.append(f"--- {spec.name} visitors: {json.dumps(self.visitors(spec.name))}")
            except Exception as e:
                parts.append(f"--- {spec.name}: {e}")
        try:
            parts.append(f"--- LMAP bindings: {json.dumps(self.bindings())}")
        except Exception as e:
            parts.append(f"--- LMAP: {e}")
        return "\n".join(parts) + "\n"

    def bindings(self) -> list[dict[str, Any]]:
        """The LMAP's Binding Cache (its control channel's C{bindings})."""
        return list(ask(self.controlPath("lmap"), "bindings").get("bindings", []))

    def lmapCounters(self) -> dict[str, int]:
        return dict(ask(self.controlPath("lmap"), "counters").get("counters", {}))

    def kernelState(self, name: str) -> str:
        """The routes of every table and the rules of the namespace of C{name}
        (C{lmap} or an MPA): where the tunnels of the data plane are."""
        ns = self.lmapNs if name == "lmap" else self.mpaNs[name]
        return (ns.ip("-6", "route", "show", "table", "all") + ns.ip("-6", "rule", "show"))

    def tunnelState(self, address: str) -> dict[str, list[str]]:
        """Each line of L{kernelState} of the LMAP and of every MPA that names
        C{address} (a route or a rule for it), by node; only nodes with some."""
        pattern = re.compile(r"(?<![0-9a-f:])" + re.escape(address) + r"(?![0-9a-f:])")
        found = {}
        for name in ["lmap", *[spec.name for spec in self.topology.mpas]]:
            lines = [line for line in self.kernelState(name).splitlines()
                     if pattern.search(line)]
            if lines:
                found[name] = lines
        return found

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
        """Stop the daemons, the captures, FreeRADIUS, Kea, the DHCPv6 clients; delete
        the namespaces. What went wrong on the way (nothing stops the rest from being
        removed). Every log stays in the run folder. A second call only says again
        what the first found."""
        if self.stopped is not None:
            return list(self.stopped)
        problems: list[str] = []
        self.stopped = problems
        for step in (self._stopClients, self._stopDaemons, self._stopCaptures,
                     self._stopRadius, self._stopKea, self._deleteNamespaces):
            step(problems)
        for path in [self.path(STATE_FILE)] + [
                self.controlPath(name)
                for name in ["lmap"] + [spec.name for spec in self.topology.mpas]]:
            try:
                os.unlink(path)
            except OSError:
                pass
        return problems

    def _stopClients(self, problems: list[str]) -> None:
        for station in self.stations.values():
            if station.client is not None:
                try:
                    station.client.stop()
                except Exception as e:
                    problems.append(f"stopping {station.spec.name}'s dhclient: {e}")

    def _stopDaemons(self, problems: list[str]) -> None:
        for name, daemon in self.daemons.items():
            try:
                status = daemon.stop()
                if status not in (0, -signal.SIGTERM):
                    problems.append(f"{name} exited with {status}")
                if "Traceback" in daemon.log():
                    problems.append(f"{name} logged a traceback ({daemon.logPath})")
            except Exception as e:
                problems.append(f"stopping {name}: {e}")

    def _stopCaptures(self, problems: list[str]) -> None:
        for process in self.captures:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()

    def _stopRadius(self, problems: list[str]) -> None:
        for name, server in self.radius.items():
            self._keep(server.logPath, f"freeradius-{name}.log")
            server.stop()

    def _stopKea(self, problems: list[str]) -> None:
        if self.kea is None:
            return
        end(self.kea.process)  # its last words in the copy of its log
        for source, target in ((self.kea.logPath, "kea-dhcp6.log"),
                               (self.kea.directory / "kea.out", "kea-dhcp6.out"),
                               (self.kea.leasePath, "kea-leases6.csv"),
                               (self.kea.configPath, "kea-dhcp6.conf")):
            self._keep(source, target)
        try:
            self.kea.stop()
        except Exception as e:
            problems.append(f"stopping Kea: {e}")

    def _deleteNamespaces(self, problems: list[str]) -> None:
        for ns in reversed(self.namespaces):
            try:
                ns.delete()
            except Exception as e:
                problems.append(f"deleting {ns.name}: {e}")

    def _keep(self, source: Any, name: str) -> None:
        """A copy of C{source} in the run folder, if there is one to copy."""
        try:
            shutil.copy(source, self.path(name))
        except OSError:
            pass


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
