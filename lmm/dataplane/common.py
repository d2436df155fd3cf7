"""
What lmm's RFC 2473 tunnel backends share.

Every backend does the same routing around its own way of encapsulating:

  - at the LMAP (role C{lmap}): a route for C{mobileAddress/prefixLength} in
    the main table that enters the tunnel to the MPA;
  - at the MPA (role C{mpa}): a rule C{from mobileAddress/prefixLength iif
    accessInterface lookup TABLE}, where TABLE (one per peer) holds a default
    route into the tunnel to the LMAP; and a route for
    C{mobileAddress/prefixLength} on the access link, for what comes out of
    the tunnel. MOBILE/LEN is a /128 address in the draft profile (one
    address per MS) and the MS's home network prefix, usually a /64, in the
    rfc5213 profile: RFC 5213 6.10 ("The MAG's forwarding considerations")
    tunnels everything from and to the whole prefix. C{mobileAddress} is
    the prefix's network address (L{checkBinding}).

Everything a backend puts in the kernel carries its tag, so that the next run
finds what a crashed one left (L{Tags}): a route and rule protocol number,
a range of 256 table numbers, a rule priority and a route metric. All of it
goes through netlink (pyroute2), in the network namespace the backend was
started in (L{NetworkNamespace}).

L{NetlinkDataPlane} is that shared part; L{lmm.dataplane.seg6},
L{lmm.dataplane.ip6tnl} and L{lmm.dataplane.userspace} fill in how a route
enters the tunnel and how packets leave it. L{PacketTooBigRelay} is RFC 2473
section 8's ICMP relay, for the seg6 backend (see docs/dataplane.md).

Over 600 lines, one module on purpose: the routing every backend shares, its
tags and the namespace it works in are one contract that the three backends
fill in.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

from lmm import config, inet
from lmm.dataplane.rtnl import RouteWriter, Unsupported
from lmm.interfaces import IReactor, ITunnelDataPlane
from lmm.logs import Logger
from lmm.reader import drain, stopOnError
from lmm.tunnel import ROLE_LMAP, ROLE_MPA, TunnelBinding

__all__ = [
    "AF_INET6",
    "IPPROTO_IPV6",
    "MAIN_TABLE",
    "DataPlaneError",
    "KernelLacks",
    "NetlinkDataPlane",
    "NetworkNamespace",
    "PacketTooBigRelay",
    "Peer",
    "Tags",
    "readSettings",
    "relayedTooBig",
    "setForwarding",
]

log = Logger(namespace="lmm.dataplane")

T = TypeVar("T")

AF_INET6 = socket.AF_INET6
IPPROTO_IPV6 = 41  # IPv6-in-IPv6 (RFC 2473), the tunnel's next header
IPPROTO_ICMPV6 = 58
MAIN_TABLE = 254
LOCAL_TABLE = 255
RTPROT_KERNEL = 2
FR_ACT_TO_TBL = 1

_NOT_THERE = frozenset({errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL})


class DataPlaneError(RuntimeError):
    """A backend cannot start, or cannot carry a binding; the message says why in one line."""


class KernelLacks(DataPlaneError):
    """The kernel lacks what the backend needs; the message names it and an alternative."""


def _isIPRoute(netlink: Any) -> bool:
    from pyroute2 import IPRoute

    return isinstance(netlink, IPRoute)


def netlinkErrno(e: BaseException) -> int | None:
    """The errno of a pyroute2 NetlinkError (or an OSError), else None."""
    code = getattr(e, "code", None)
    if isinstance(code, int):
        return code
    return getattr(e, "errno", None)


# --- settings -----------------------------------------------------------------


@dataclass(frozen=True)
class Tags:
    """
    How a backend marks what it creates in the kernel.

    @ivar protocol: the protocol number of its routes and rules (C{proto}).
    @ivar table: the first of its 256 routing tables (peer tables follow it).
    @ivar priority: the priority of its per-visitor rules at the MPA.
    @ivar metric: the metric of its routes for mobile addresses.
    """

    protocol: int
    table: int
    priority: int
    metric: int


SettingsSchema = Mapping[str, tuple[Callable[[Any], Any], Any]]


def commonSchema(defaults: Tags) -> dict[str, tuple[Callable[[Any], Any], Any]]:
    """The settings every netlink backend takes, with this backend's defaults."""
    return {
        "leftovers": (config.oneOf("clean", "adopt"), "clean"),
        "forwarding": (config.boolean, True),
        "protocol": (config.integer(5, 255), defaults.protocol),
        # 256 tables from here, none of them the kernel's own (253-255).
        "table": (config.integer(256, 2**32 - 257), defaults.table),
        "priority": (config.integer(2, 32765), defaults.priority),
        "metric": (config.integer(1, 2**32 - 1), defaults.metric),
    }


def readSettings(backend: str, settings: Mapping[str, Any], schema: SettingsSchema
                 ) -> dict[str, Any]:
    """
    Check C{settings} (the C{[tunnel.options]} table) against C{schema}
    (key: (parser, default)); raise L{ValueError} naming the key.
    """
    unknown = sorted(set(settings) - set(schema))
    if unknown:
        raise ValueError(f"{backend} backend: unknown key tunnel.options.{unknown[0]} "
                         f"(known: {', '.join(sorted(schema))})")
    values: dict[str, Any] = {}
    for key, (parse, default) in schema.items():
        if key not in settings:
            values[key] = default
            continue
        try:
            values[key] = parse(settings[key])
        except ValueError as e:
            raise ValueError(f"{backend} backend: tunnel.options.{key}: {e}") from None
    return values


def tagsFrom(values: Mapping[str, Any]) -> Tags:
    return Tags(values["protocol"], values["table"], values["priority"], values["metric"])


# --- the namespace ----------------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_libc: Any = None


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at C{fd}."""
    native = getattr(os, "setns", None)  # Python 3.12
    if native is not None:
        native(fd, _CLONE_NEWNET)
        return
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class NetworkNamespace:
    """
    The network namespace a backend was started in. Sockets and netlink
    connections stay in the namespace they were made in; what a backend makes
    later (a raw socket for a new tunnel end) or a C{/proc/sys/net} file it
    opens later is made here through L{call}. In a daemon that is where the
    thread already is, and L{call} only calls; a test that builds a backend
    inside a namespace (with L{lmm.lab.netns.callIn}) gets the same
    behaviour from its main thread.
    """

    _SELF = "/proc/thread-self/ns/net"

    def __init__(self) -> None:
        self.fd = os.open(self._SELF, os.O_RDONLY | os.O_CLOEXEC)
        self.inode = os.fstat(self.fd).st_ino

    def call(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if os.stat(self._SELF).st_ino == self.inode:
            return f(*args, **kwargs)
        home = os.open(self._SELF, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(self.fd)
            try:
                return f(*args, **kwargs)
            finally:
                try:
                    setns(home)
                except OSError as e:
                    raise RuntimeError(f"cannot return to the thread's network namespace: {e}"
                                       ) from e
        finally:
            os.close(home)

    def sysctl(self, key: str, value: str | int | None = None) -> str:
        """Read C{key} (dotted) here; write C{value} first if given. Returns the old value."""
        path = "/proc/sys/" + key.replace(".", "/")

        def access() -> str:
            with open(path) as f:
                old = f.read().strip()
            if value is not None and old != str(value):
                with open(path, "w") as f:
                    f.write(str(value))
            return old

        return self.call(access)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def setForwarding(namespace: NetworkNamespace, backend: str) -> None:
    """Turn on IPv6 forwarding (the tunnel ends route other nodes' packets), and say so."""
    old = namespace.sysctl("net.ipv6.conf.all.forwarding", 1)
    if old != "1":
        log.info("{backend} backend: set net.ipv6.conf.all.forwarding=1 (was {old}): tunnel "
                 "ends forward the mobile stations' packets (this also makes the node ignore "
                 "Router Advertisements)", backend=backend, old=old)
    else:
        log.info("{backend} backend: net.ipv6.conf.all.forwarding is 1, as the tunnel needs",
                 backend=backend)


# --- addresses ------------------------------------------------------------------


def normal(address: str) -> str:
    """An IPv6 address in the one text form used as a key here."""
    return ipaddress.IPv6Address(address).compressed


packed = inet.packAddress


def bindingKey(binding: TunnelBinding) -> tuple[str, str, int]:
    return (binding.role, normal(binding.mobileAddress), binding.prefixLength)


def checkBinding(binding: TunnelBinding) -> None:
    """
    Raise L{ValueError} for a binding no backend can carry: an unknown role,
    an address that is not IPv6, a length outside 0..128, a C{mobileAddress}
    with bits set past C{prefixLength}, an MPA binding without its access
    interface or for ::/0.
    """
    if binding.role not in (ROLE_LMAP, ROLE_MPA):
        raise ValueError(f"unknown role {binding.role!r}")
    for name in ("mobileAddress", "localEndpoint", "remoteEndpoint"):
        try:
            ipaddress.IPv6Address(getattr(binding, name))
        except ValueError:
            raise ValueError(f"{name}: not an IPv6 address: {getattr(binding, name)!r}"
                             ) from None
    if not 0 <= binding.prefixLength <= 128:
        raise ValueError(f"prefixLength: expected 0..128, got {binding.prefixLength}")
    network = ipaddress.IPv6Network((binding.mobileAddress, binding.prefixLength), strict=False)
    if network.network_address != ipaddress.IPv6Address(binding.mobileAddress):
        # The kernel would store the route as the prefix and the rule as given: the two
        # would not match, nor would either match the binding at removal or adoption.
        raise ValueError(f"mobileAddress: {binding.mobileAddress} has bits set past "
                         f"prefixLength {binding.prefixLength} (the prefix is {network})")
    if binding.role == ROLE_MPA:
        if not binding.accessInterface:
            raise ValueError("an MPA binding needs its accessInterface")
        if binding.prefixLength == 0:
            # A rule from ::/0 would send every source on the access link into one tunnel.
            raise ValueError("an MPA binding is for an address or a prefix (prefixLength "
                             "1..128), not ::/0: it would capture every source")


# --- the shared part of the backends -------------------------------------------------


@dataclass
class Peer:
    """
    The far end of a tunnel, as one backend sees it.

    @ivar route: how a route enters the tunnel (pyroute2 route arguments: C{oif},
        C{encap}); the backend fills it in.
    @ivar table: at an MPA, the table whose default route enters the tunnel.
    @ivar device: the backend's own device for this peer (ip6tnl), if any.
    """

    local: str
    remote: str
    route: dict[str, Any] = field(default_factory=dict)
    users: int = 0
    table: int | None = None
    device: str | None = None
    index: int | None = None


@implementer(ITunnelDataPlane)
class NetlinkDataPlane:
    """
    The shared part of lmm's netlink backends (see the module docstring).
    Subclasses say how a route enters the tunnel (L{openPeer}), what a tunnel
    end needs (L{openLocal}), how to check the kernel (L{probe}) and what a
    route of theirs tells about its peer (L{peerOfRoute}, for adoption).

    L{start} runs in the namespace the backend serves (the factory calls it):
    it checks the kernel, cleans or adopts what a previous run left, and
    turns on forwarding.
    """

    name = "netlink"

    def __init__(self, reactor: IReactor, netlink: Any, tags: Tags, leftovers: str = "clean",
                 forwarding: bool = True) -> None:
        self.reactor = reactor
        self.ipr = netlink
        # The requests of a binding's installation, without pyroute2 (opened by start).
        self.rtnl: RouteWriter | None = None
        self.tags = tags
        self.leftovers = leftovers
        self.forwarding = forwarding
        self.namespace: NetworkNamespace | None = None
        self._bindings: dict[tuple[str, str, int], TunnelBinding] = {}
        self._peers: dict[tuple[str, str], Peer] = {}
        self._tables: set[int] = set()
        # An MPA binding's access interface, by binding key: address and length, since
        # a prefix (RFC 5213) and an address may share their first address.
        self._accessIndexes: dict[tuple[str, str, int], int] = {}
        self.stopped = False

    # --- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        """Check the kernel, deal with a previous run's state, turn on forwarding."""
        self.namespace = NetworkNamespace()
        try:
            if _isIPRoute(self.ipr):
                # Beside a real rtnetlink socket only: a test's recording one gets it all.
                self.rtnl = RouteWriter.open()
            self.probe()
            if self.leftovers == "adopt":
                self.adopt()
            else:
                self.clean("a previous run")
            if self.forwarding:
                setForwarding(self.namespace, self.name)
            self.started()
        except BaseException:
            self.close()
            raise
        log.info("{backend} backend started (route and rule protocol {protocol:#x}, tables "
                 "{first}-{last}, rule priority {priority}, metric {metric})",
                 backend=self.name, protocol=self.tags.protocol, first=self.tags.table,
                 last=self.tags.table + 255, priority=self.tags.priority,
                 metric=self.tags.metric)

    def probe(self) -> None:
        """Raise L{KernelLacks} unless the kernel has what this backend needs."""

    def started(self) -> None:
        """Called at the end of L{start}, in the backend's namespace."""

    def close(self) -> None:
        """Release sockets (after L{stop}, or when L{start} fails)."""
        if self.rtnl is not None:
            self.rtnl.close()
            self.rtnl = None
        closer = getattr(self.ipr, "close", None)
        if closer is not None:
            try:
                closer()
            except Exception:
                pass
        if self.namespace is not None:
            self.namespace.close()

    # --- ITunnelDataPlane -------------------------------------------------------------

    def prepare(self, localEndpoint: str, peers: Sequence[str] = (),
                accessInterfaces: Sequence[str] = ()) -> None:
        if self.stopped:
            return
        try:
            self.openLocal(normal(localEndpoint))
            for remote in peers:
                self.preparePeer(normal(localEndpoint), normal(remote))
        except Exception as e:
            log.warn("{backend} backend: could not prepare the tunnel end {address} yet "
                     "({error}); the first binding will", backend=self.name,
                     address=localEndpoint, error=e)
        if accessInterfaces:
            try:
                self.prepareAccess(accessInterfaces)
            except Exception as e:
                log.warn("{backend} backend: could not prepare the access links {links} "
                         "({error}): what a visitor sends before its binding is lost",
                         backend=self.name, links=", ".join(accessInterfaces), error=e)

    def addBinding(self, binding: TunnelBinding) -> Deferred[None] | None:
        """Install C{binding} at once; a failed Deferred (L{DataPlaneError}) if it cannot
        be, with nothing of it left in the kernel."""
        if self.stopped:
            return fail(DataPlaneError(f"{self.name} backend is stopped"))
        try:
            checkBinding(binding)
        except ValueError as e:
            return fail(DataPlaneError(f"{self.name} backend cannot carry {binding}: {e}"))
        key = bindingKey(binding)
        current = self._bindings.get(key)
        if current == binding:
            return None
        try:
            if current is None:
                self._install(binding)
            elif binding.role == ROLE_LMAP:
                # Same mobile address, another tunnel (a handover): the route is
                # replaced, so that packets never find none.
                self._reroute(current, binding)
            else:
                del self._bindings[key]
                self._uninstall(current)
                self._install(binding)
        except Exception as e:
            # Said once, by whoever gets the failure (the LMAP logs it and sends no PBA).
            return fail(DataPlaneError(f"{self.name} backend could not install {binding}: {e}"))
        self._bindings[key] = binding
        log.debug("{backend}: carrying {binding}", backend=self.name, binding=binding)
        return None

    def removeBinding(self, binding: TunnelBinding) -> None:
        try:
            key = bindingKey(binding)
        except ValueError:
            return
        if self._bindings.get(key) != binding:
            return
        del self._bindings[key]
        self._uninstall(binding)
        log.debug("{backend}: no longer carrying {binding}", backend=self.name, binding=binding)

    def bindings(self) -> list[TunnelBinding]:
        return list(self._bindings.values())

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for binding in list(self._bindings.values()):
            self._uninstall(binding)
        self._bindings.clear()
        for peer in list(self._peers.values()):
            self._closePeerQuietly(peer)
        self._peers.clear()
        self.closeLocals()
        # Whatever teardown missed (a route someone replaced, an error above).
        self.clean("this run")
        self.close()
        log.info("{backend} backend stopped", backend=self.name)

    # --- routes and rules ---------------------------------------------------------------

    def mobileRoute(self, binding: TunnelBinding, route: Mapping[str, Any]) -> dict[str, Any]:
        """The route for a mobile address (LMAP: into the tunnel; MPA: on the access link)."""
        return dict(family=AF_INET6, dst=normal(binding.mobileAddress),
                    dst_len=binding.prefixLength, table=MAIN_TABLE, proto=self.tags.protocol,
                    priority=self.tags.metric, **route)

    def visitorRule(self, binding: TunnelBinding, table: int) -> dict[str, Any]:
        # The MS's address (the draft), or its whole home network prefix (RFC 5213 6.10):
        # whatever address in it the MS picks (SLAAC, privacy) goes into the tunnel.
        return dict(family=AF_INET6, priority=self.tags.priority,
                    src=normal(binding.mobileAddress), src_len=binding.prefixLength,
                    iifname=binding.accessInterface, table=table, protocol=self.tags.protocol)

    def defaultRoute(self, peer: Peer, table: int) -> dict[str, Any]:
        return dict(family=AF_INET6, dst="::", dst_len=0, table=table,
                    proto=self.tags.protocol, **peer.route)

    def route(self, command: str, route: Mapping[str, Any]) -> None:
        """C{replace} or C{del} a route: by L{RouteWriter} when it writes all
        of it (lmm.dataplane.rtnl: a handover's path), else by pyroute2."""
        self._request("route", command, route)

    def rule(self, command: str, rule: Mapping[str, Any]) -> None:
        """C{add} or C{del} a rule, as L{route} does."""
        self._request("rule", command, rule)

    def _request(self, kind: str, command: str, spec: Mapping[str, Any]) -> None:
        if self.rtnl is not None:
            try:
                getattr(self.rtnl, kind)(command, **spec)
                return
            except Unsupported:
                pass
        getattr(self.ipr, kind)(command, **spec)

    def addRule(self, rule: Mapping[str, Any]) -> None:
        try:
            self.rule("add", rule)
        except Exception as e:
            if netlinkErrno(e) != errno.EEXIST:  # already there: never twice
                raise

    def deleteRule(self, rule: Mapping[str, Any]) -> None:
        try:
            self.rule("del", rule)
        except Exception as e:
            if netlinkErrno(e) not in _NOT_THERE:
                log.warn("{backend}: could not delete rule {rule}: {error}", backend=self.name,
                         rule=dict(rule), error=e)

    def deleteRoute(self, route: Mapping[str, Any]) -> None:
        spec = {k: v for k, v in route.items() if k not in ("encap", "metrics")}
        try:
            self.route("del", spec)
        except Exception as e:
            if netlinkErrno(e) not in _NOT_THERE:
                log.warn("{backend}: could not delete route {route}: {error}",
                         backend=self.name, route=spec, error=e)

    def interfaceIndex(self, name: str) -> int:
        if self.rtnl is not None:
            index = self.rtnl.linkIndex(name)
            found = [] if index is None else [index]
        else:
            found = self.ipr.link_lookup(ifname=name)
        if not found:
            raise DataPlaneError(f"no interface named {name!r}")
        return int(found[0])

    def routeInterface(self, address: str) -> int:
        """The interface the kernel routes C{address} through."""
        try:
            answer = self.ipr.route("get", dst=address, family=AF_INET6)
        except Exception as e:
            raise DataPlaneError(f"no route to the tunnel peer {address}: {e}") from e
        oif = answer[0].get_attr("RTA_OIF") if answer else None
        if oif is None:
            raise DataPlaneError(f"no route to the tunnel peer {address}")
        return int(oif)

    def addressInterface(self, address: str) -> int | None:
        """The interface holding C{address}, or None if no interface holds it."""
        for message in self.ipr.get_addr(family=AF_INET6, address=address):
            return int(message["index"])
        return None

    # --- peers ------------------------------------------------------------------------

    def openPeer(self, peer: Peer) -> None:
        """Fill in C{peer.route} (and make what it needs, such as a device)."""
        raise NotImplementedError

    def closePeer(self, peer: Peer) -> None:
        """Undo L{openPeer}."""

    def preparePeer(self, local: str, remote: str) -> None:
        """Be ready for C{remote}'s packets before any binding with it (L{prepare});
        most backends need nothing."""

    def prepareAccess(self, interfaces: Sequence[str]) -> None:
        """Be ready for what visitors on these access links send before their
        bindings (L{prepare}); a backend that cannot hold packets does nothing."""

    def openLocal(self, local: str) -> None:
        """Make what a tunnel end at C{local} needs (decapsulation); kept until L{stop}."""

    def closeLocals(self) -> None:
        """Undo every L{openLocal}."""

    def _acquirePeer(self, local: str, remote: str) -> Peer:
        key = (normal(local), normal(remote))
        peer = self._peers.get(key)
        if peer is None:
            peer = Peer(*key)
            self.openPeer(peer)
            self._peers[key] = peer
        peer.users += 1
        return peer

    def _peerTable(self, peer: Peer) -> int:
        if peer.table is None:
            table = self._freeTable()
            self.route("replace", self.defaultRoute(peer, table))
            peer.table = table
            self._tables.add(table)
        return peer.table

    def _freeTable(self) -> int:
        for table in range(self.tags.table + 1, self.tags.table + 256):
            if table not in self._tables:
                return table
        raise DataPlaneError(f"{self.name} backend: all 255 peer tables from "
                             f"{self.tags.table + 1} are in use")

    def _releasePeer(self, peer: Peer) -> None:
        peer.users -= 1
        if peer.users <= 0:
            self._peers.pop((peer.local, peer.remote), None)
            self._closePeerQuietly(peer)

    def _closePeerQuietly(self, peer: Peer) -> None:
        if peer.table is not None:
            self.deleteRoute(self.defaultRoute(peer, peer.table))
            self._tables.discard(peer.table)
            peer.table = None
        try:
            self.closePeer(peer)
        except Exception as e:
            log.warn("{backend}: could not close the tunnel to {remote}: {error}",
                     backend=self.name, remote=peer.remote, error=e)

    # --- installing ------------------------------------------------------------------

    def _install(self, binding: TunnelBinding) -> None:
        undo: list[Callable[[], None]] = []
        try:
            if binding.role == ROLE_LMAP:
                peer = self._routeIntoTunnel(binding)
                undo.append(lambda: self._releasePeer(peer))
                self.installed(binding, peer)
                return
            self.openLocal(normal(binding.localEndpoint))
            peer = self._acquirePeer(binding.localEndpoint, binding.remoteEndpoint)
            undo.append(lambda: self._releasePeer(peer))
            assert binding.accessInterface is not None
            table = self._peerTable(peer)
            rule = self.visitorRule(binding, table)
            self.addRule(rule)
            undo.append(lambda: self.deleteRule(rule))
            index = self.interfaceIndex(binding.accessInterface)
            self.route("replace", self.mobileRoute(binding, {"oif": index}))
            self._accessIndexes[bindingKey(binding)] = index
            self.installed(binding, peer)
        except BaseException:
            for step in reversed(undo):
                step()
            raise

    def _reroute(self, current: TunnelBinding, binding: TunnelBinding) -> None:
        """An LMAP binding replaced by one for the same mobile address to
        another peer: the new peer, one route replace, then the old peer's
        share released (make before break)."""
        try:
            peer = self._routeIntoTunnel(binding)
        except BaseException:
            self._dropFailed(current)
            raise
        self.uninstalled(current)
        self.installed(binding, peer)
        old = self._peers.get((normal(current.localEndpoint), normal(current.remoteEndpoint)))
        if old is not None:
            self._releasePeer(old)

    def _routeIntoTunnel(self, binding: TunnelBinding) -> Peer:
        """An LMAP binding's tunnel end, peer and route into the tunnel (one
        route replace); the peer released again if the route fails."""
        self.openLocal(normal(binding.localEndpoint))
        peer = self._acquirePeer(binding.localEndpoint, binding.remoteEndpoint)
        try:
            self.route("replace", self.mobileRoute(binding, peer.route))
        except BaseException:
            self._releasePeer(peer)
            raise
        return peer

    def _dropFailed(self, current: TunnelBinding) -> None:
        """A replacement failed: the binding it was to replace is not carried
        either (ITunnelDataPlane.addBinding; the LMAP drops the entry)."""
        del self._bindings[bindingKey(current)]
        self._uninstall(current)

    def installed(self, binding: TunnelBinding, peer: Peer) -> None:
        """A binding is in the kernel (for backends that keep their own tables)."""

    def uninstalled(self, binding: TunnelBinding) -> None:
        """A binding's routes and rules left the kernel (its peer is still open)."""

    def _uninstall(self, binding: TunnelBinding) -> None:
        key = (normal(binding.localEndpoint), normal(binding.remoteEndpoint))
        peer = self._peers.get(key)
        if binding.role == ROLE_LMAP:
            self.deleteRoute(self.mobileRoute(binding, {}))
        else:
            if peer is not None and peer.table is not None:
                self.deleteRule(self.visitorRule(binding, peer.table))
            index = self._accessIndexes.pop(bindingKey(binding), None)
            self.deleteRoute(self.mobileRoute(binding, {} if index is None else {"oif": index}))
        # After the kernel stopped routing into the tunnel: what is queued still goes.
        self.uninstalled(binding)
        if peer is not None:
            self._releasePeer(peer)

    # --- what a previous run left ------------------------------------------------------

    def ownRoutes(self) -> list[Any]:
        """Every IPv6 route with this backend's protocol, in any table."""
        return [route for route in self.ipr.get_routes(family=AF_INET6)
                if route["proto"] == self.tags.protocol]

    def ownRules(self) -> list[Any]:
        return [rule for rule in self.ipr.get_rules(family=AF_INET6)
                if rule.get_attr("FRA_PROTOCOL") == self.tags.protocol]

    def clean(self, whose: str) -> int:
        """Delete every route and rule of this backend's tag; return how many there were."""
        count = self.cleanRules(self.ownRules())
        for route in self.ownRoutes():
            self.deleteRoute(routeSpec(route))
            count += 1
        count += self.cleanOther()
        if count:
            log.info("{backend} backend: removed {count} route(s), rule(s) and device(s) left "
                     "by {whose}", backend=self.name, count=count, whose=whose)
        return count

    def cleanRules(self, rules: Iterable[Any]) -> int:
        count = 0
        for rule in rules:
            self.deleteRule(ruleSpec(rule))
            count += 1
        return count

    def cleanOther(self) -> int:
        """Remove the backend's own kinds of leftovers (devices); return how many."""
        return 0

    def peerOfRoute(self, route: Any) -> tuple[str, str] | None:
        """The (local, remote) tunnel ends a route of this backend enters, if it says."""
        return None

    def adopt(self) -> None:
        """
        Take over the bindings a previous run left in the kernel: they are in
        L{bindings} and are removed as if this run had made them. What cannot
        be understood (a route whose tunnel this backend cannot tell, a rule
        without its route) is cleaned.
        """
        routes = self.ownRoutes()
        rules = self.ownRules()
        kept: set[int] = set()
        byTable: dict[int, Peer] = {}
        for route in routes:
            table = route.get_attr("RTA_TABLE")
            if self.tags.table < table <= self.tags.table + 255 and route["dst_len"] == 0:
                ends = self.peerOfRoute(route)
                if ends is None or ends in self._peers:
                    continue
                peer = self._adoptPeer(ends)
                peer.table = table
                self._tables.add(table)
                byTable[table] = peer
                kept.add(id(route))
        count = 0
        for route in routes:
            if (route.get_attr("RTA_TABLE") != MAIN_TABLE
                    or route.get_attr("RTA_PRIORITY") != self.tags.metric):
                continue
            ends = self.peerOfRoute(route)
            if ends is None:
                continue
            peer = self._peers.get(ends) or self._adoptPeer(ends)
            self._adoptBinding(TunnelBinding(route.get_attr("RTA_DST") or "::",
                                             route["dst_len"], *ends, ROLE_LMAP), peer)
            kept.add(id(route))
            count += 1
        access = {(route.get_attr("RTA_DST"), route["dst_len"], route.get_attr("RTA_OIF")): route
                  for route in routes if id(route) not in kept
                  and route.get_attr("RTA_TABLE") == MAIN_TABLE
                  and route.get_attr("RTA_PRIORITY") == self.tags.metric}
        for rule in rules:
            tablePeer = byTable.get(rule.get_attr("FRA_TABLE") or rule["table"])
            source = rule.get_attr("FRA_SRC")
            interface = rule.get_attr("FRA_IIFNAME")
            if (tablePeer is None or source is None or interface is None
                    or rule.get_attr("FRA_PRIORITY") != self.tags.priority):
                continue
            peer = tablePeer
            indexes = self.ipr.link_lookup(ifname=interface)
            length = rule["src_len"]
            route = access.get((source, length, indexes[0] if indexes else None))
            if route is None:
                continue
            binding = TunnelBinding(source, length, peer.local, peer.remote, ROLE_MPA, interface)
            self._adoptBinding(binding, peer)
            self._accessIndexes[bindingKey(binding)] = indexes[0]
            kept.update((id(rule), id(route)))
            count += 1
        for peer in list(self._peers.values()):
            if peer.users == 0:  # a peer table no binding uses any more
                del self._peers[(peer.local, peer.remote)]
                self._closePeerQuietly(peer)
        self.cleanRules([rule for rule in rules
                         if id(rule) not in kept and not self.keepRule(rule)])
        for route in routes:
            if id(route) not in kept and not self.keepRoute(route):
                self.deleteRoute(routeSpec(route))
        self.cleanOther()
        log.info("{backend} backend adopted {count} binding(s) left by a previous run",
                 backend=self.name, count=count)

    def keepRule(self, rule: Any) -> bool:
        """Whether adoption keeps a leftover rule that is no binding's (decapsulation)."""
        return False

    def keepRoute(self, route: Any) -> bool:
        """Whether adoption keeps a leftover route that is no binding's (decapsulation)."""
        return False

    def _adoptPeer(self, ends: tuple[str, str]) -> Peer:
        peer = Peer(*ends)
        self.openPeer(peer)
        self._peers[ends] = peer
        return peer

    def _adoptBinding(self, binding: TunnelBinding, peer: Peer) -> None:
        self.openLocal(peer.local)
        peer.users += 1
        self._bindings[bindingKey(binding)] = binding
        self.installed(binding, peer)


def routeSpec(route: Any) -> dict[str, Any]:
    """Arguments that delete exactly this dumped route."""
    spec: dict[str, Any] = dict(family=AF_INET6, dst=route.get_attr("RTA_DST") or "::",
                                dst_len=route["dst_len"], table=route.get_attr("RTA_TABLE"),
                                proto=route["proto"])
    metric = route.get_attr("RTA_PRIORITY")
    if metric is not None:
        spec["priority"] = metric
    oif = route.get_attr("RTA_OIF")
    if oif is not None:
        spec["oif"] = oif
    return spec


def ruleSpec(rule: Any) -> dict[str, Any]:
    """Arguments that delete exactly this dumped rule."""
    spec: dict[str, Any] = dict(family=AF_INET6, priority=rule.get_attr("FRA_PRIORITY") or 0,
                                table=rule.get_attr("FRA_TABLE") or rule["table"])
    protocol = rule.get_attr("FRA_PROTOCOL")
    if protocol:
        spec["protocol"] = protocol
    for attr, key, length in (("FRA_SRC", "src", "src_len"), ("FRA_DST", "dst", "dst_len")):
        value = rule.get_attr(attr)
        if value is not None:
            spec[key] = value
            spec[length] = rule[length]
    for attr, key in (("FRA_IIFNAME", "iifname"), ("FRA_IP_PROTO", "ip_proto")):
        value = rule.get_attr(attr)
        if value is not None:
            spec[key] = value
    return spec


# --- RFC 2473 section 8: Packet Too Big for the packet inside --------------------------

_PTB = 2
_ICMP6_FILTER = 1
_TUNNEL_HEADER = 40
_MIN_MTU = 1280


def relayedTooBig(message: bytes, endpoints: Iterable[bytes]) -> tuple[str, bytes] | None:
    """
    What to send for an ICMPv6 Packet Too Big about one of our tunnel packets.

    C{message} is the ICMPv6 message (from its type on) the node received;
    C{endpoints} the packed addresses of this node's tunnel ends. When it
    reports that an IPv6-in-IPv6 packet from one of them was too big, the
    answer is (the inner packet's source, a Packet Too Big for it with the
    MTU less the tunnel header, quoting as much of the inner packet as fits
    in 1280 bytes) -- RFC 2473 section 8.2. Otherwise None: not a Packet Too
    Big, not ours, or about an ICMPv6 error (never answered with one).
    """
    if len(message) < 8 + 2 * _TUNNEL_HEADER or message[0] != _PTB:
        return None
    outer = message[8:8 + _TUNNEL_HEADER]
    if outer[0] >> 4 != 6 or outer[6] != IPPROTO_IPV6 or outer[8:24] not in set(endpoints):
        return None
    inner = message[8 + _TUNNEL_HEADER:]
    if inner[0] >> 4 != 6:
        return None
    if inner[6] == IPPROTO_ICMPV6 and len(inner) > _TUNNEL_HEADER and inner[40] < 128:
        return None
    (mtu,) = struct.unpack_from("!I", message, 4)
    mtu = max(_MIN_MTU, mtu - _TUNNEL_HEADER)
    source = inet.unpackAddress(inner, 8)
    quoted = inner[:_MIN_MTU - _TUNNEL_HEADER - 8]
    # Checksum left 0: the kernel computes it for ICMPv6 raw sockets.
    return source, struct.pack("!BBHI", _PTB, 0, 0, mtu) + quoted


@implementer(IReadDescriptor)
class PacketTooBigRelay:
    """
    Turns a Packet Too Big about a tunnel packet into one about the packet
    inside, for the original sender (RFC 2473 section 8.2).

    Needed by the seg6 backend: the kernel encapsulates forwarded packets
    before its MTU check, so a packet too big for the tunnel draws a Packet
    Too Big addressed to the tunnel's own source -- this node -- and the
    sender hears nothing. This reads those (an ICMPv6 raw socket that the
    kernel filters down to Packet Too Big) and answers the sender, at most
    C{rate} times a second.
    """

    def __init__(self, reactor: IReactor, rate: int = 1000) -> None:
        self.reactor = reactor
        self.rate = rate
        self.endpoints: set[bytes] = set()
        self.relayed = 0
        self.ignored = 0
        self.limited = 0
        self._second = 0
        self._inSecond = 0
        self._readError = stopOnError("the Packet Too Big relay's socket")
        self.socket = socket.socket(AF_INET6, socket.SOCK_RAW, IPPROTO_ICMPV6)
        try:
            # ICMP6_FILTER: a set bit blocks that type; pass Packet Too Big only.
            blocked = [0xFFFFFFFF] * 8
            blocked[0] &= ~(1 << _PTB)
            self.socket.setsockopt(IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("8I", *blocked))
            self.socket.setblocking(False)
        except BaseException:
            self.socket.close()
            raise
        self.reactor.addReader(self)

    def addEndpoint(self, address: str) -> None:
        self.endpoints.add(packed(address))

    def fileno(self) -> int:
        return self.socket.fileno()

    def logPrefix(self) -> str:
        return "PacketTooBigRelay"

    def doRead(self) -> None:
        sock = self.socket
        drain(partial(sock.recv, 2048), self._relay, 64, self._readError,
              lambda: sock.fileno() >= 0, "the Packet Too Big relay")

    def _relay(self, message: bytes) -> None:
        answer = relayedTooBig(message, self.endpoints)
        if answer is None:
            self.ignored += 1
            return
        now = int(self.reactor.seconds())
        if now != self._second:
            self._second, self._inSecond = now, 0
        if self._inSecond >= self.rate:
            self.limited += 1
            return
        self._inSecond += 1
        destination, reply = answer
        try:
            self.socket.sendto(reply, (destination, 0))
            self.relayed += 1
        except OSError as e:
            log.debug("Packet Too Big relay: could not tell {destination}: {error}",
                      destination=destination, error=e)

    def connectionLost(self, reason: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self.socket.fileno() >= 0:
            self.reactor.removeReader(self)
            self.socket.close()
