"""
RFC 2473 tunnels as kernel ip6tnl devices: the C{ip6tnl} backend, for
distribution kernels (CONFIG_IPV6_TUNNEL). The project's test kernel has no
ip6tnl: the backend says so at start, and its namespace tests skip.

One device per peer, C{mode ip6ip6 local LOCAL remote PEER encaplimit none
hoplimit 64} (no Tunnel Encapsulation Limit option: the outer next header is
41, as the seg6 and userspace backends send and expect), MTU C{mtu} (1460),
named C{prefix} and a number (C{lmm6t0}...), with the interface alias
C{lmm ip6tnl} as its tag. The kernel decapsulates what arrives from PEER for
LOCAL on that device and routes the inner packet; a packet too big for the
device draws the kernel's own Packet Too Big.

Routes and rules (protocol 0x4d by default): at the LMAP C{MOBILE/LEN dev
lmm6tN metric 77} in the main table; at the MPA, per peer a table (0x4d01...)
with C{default dev lmm6tN}, per visitor C{pref 1077 from MOBILE/LEN iif ACCESS
lookup that table} and C{MOBILE/LEN dev ACCESS metric 77}. MOBILE/LEN is a
/128 address in the draft profile and the MS's home network prefix, usually a
/64, in the rfc5213 profile (RFC 5213 6.10).
"""

from __future__ import annotations

import errno
from typing import Any, Mapping

from lmm import config
from lmm.dataplane.common import (
    IPPROTO_IPV6,
    DataPlaneError,
    KernelLacks,
    NetlinkDataPlane,
    Peer,
    Tags,
    commonSchema,
    log,
    netlinkErrno,
    normal,
    readSettings,
    tagsFrom,
)
from lmm.interfaces import IReactor

__all__ = ["DEFAULTS", "LACKS_IP6TNL", "TAG", "Ip6tnlDataPlane", "ip6tnlBackend"]

DEFAULTS = Tags(protocol=0x4D, table=0x4D00, priority=1077, metric=77)
TAG = "lmm ip6tnl"  # the interface alias that marks lmm's devices

LACKS_IP6TNL = "kernel lacks ip6tnl (CONFIG_IPV6_TUNNEL): use the seg6 or userspace backend"

# include/uapi/linux/ip6_tunnel.h
IP6_TNL_F_IGN_ENCAP_LIMIT = 0x1
IP6_TNL_F_USE_ORIG_TCLASS = 0x2

_IFNAMSIZ = 15
_PROBE_LOCAL = "::1"
_PROBE_REMOTE = "100::1"  # RFC 6666 discard-only


class Ip6tnlDataPlane(NetlinkDataPlane):
    """The C{ip6tnl} backend (see the module docstring)."""

    name = "ip6tnl"

    def __init__(self, reactor: IReactor, netlink: Any, tags: Tags = DEFAULTS, mtu: int = 1460,
                 hopLimit: int = 64, prefix: str = "lmm6t", leftovers: str = "clean",
                 forwarding: bool = True) -> None:
        super().__init__(reactor, netlink, tags, leftovers, forwarding)
        self.mtu = mtu
        self.hopLimit = hopLimit
        self.prefix = prefix
        self._adoptable: dict[tuple[str, str], tuple[str, int]] = {}
        self._byIndex: dict[int, tuple[str, str]] = {}

    # --- the kernel -----------------------------------------------------------------

    def deviceArguments(self, name: str, local: str, remote: str) -> dict[str, Any]:
        """pyroute2 C{link("add")} arguments for one tunnel device."""
        return dict(ifname=name, kind="ip6tnl", ip6tnl_local=local, ip6tnl_remote=remote,
                    ip6tnl_proto=IPPROTO_IPV6, ip6tnl_ttl=self.hopLimit,
                    ip6tnl_encap_limit=0,
                    ip6tnl_flags=IP6_TNL_F_IGN_ENCAP_LIMIT | IP6_TNL_F_USE_ORIG_TCLASS)

    def probe(self) -> None:
        name = (self.prefix + "probe")[:_IFNAMSIZ]
        try:
            self.ipr.link("add", **self.deviceArguments(name, _PROBE_LOCAL, _PROBE_REMOTE))
        except Exception as e:
            code = netlinkErrno(e)
            if code == errno.EEXIST:
                self._deleteDevice(name)  # a crashed probe's
                return
            if code in (errno.EOPNOTSUPP, errno.ENOENT, errno.EINVAL):
                raise KernelLacks(f"{LACKS_IP6TNL} ({e})") from None
            raise
        self._deleteDevice(name)

    def _deleteDevice(self, name: str) -> None:
        try:
            indexes = self.ipr.link_lookup(ifname=name)
            if indexes:
                self.ipr.link("del", index=indexes[0])
        except Exception as e:
            if netlinkErrno(e) not in (errno.ENODEV, errno.ENOENT):
                log.warn("ip6tnl backend: could not delete {name}: {error}", name=name, error=e)

    def ownDevices(self) -> list[tuple[str, int, str, str]]:
        """(name, index, local, remote) of every ip6tnl device tagged as lmm's."""
        found = []
        for link in self.ipr.get_links():
            if link.get_attr("IFLA_IFALIAS") != TAG:
                continue
            info = link.get_attr("IFLA_LINKINFO")
            if info is None or info.get_attr("IFLA_INFO_KIND") != "ip6tnl":
                continue
            data = info.get_attr("IFLA_INFO_DATA")
            local = data.get_attr("IFLA_IP6TNL_LOCAL") if data is not None else None
            remote = data.get_attr("IFLA_IP6TNL_REMOTE") if data is not None else None
            found.append((link.get_attr("IFLA_IFNAME"), int(link["index"]),
                          normal(local or "::"), normal(remote or "::")))
        return found

    def cleanOther(self) -> int:
        count = 0
        inUse = {peer.index for peer in self._peers.values()}
        for name, index, _local, _remote in self.ownDevices():
            if index in inUse:
                continue
            self._deleteDevice(name)
            count += 1
        return count

    def adopt(self) -> None:
        for name, index, local, remote in self.ownDevices():
            self._adoptable[(local, remote)] = (name, index)
            self._byIndex[index] = (local, remote)
        super().adopt()  # its cleanOther() removes the devices no binding uses
        self._adoptable.clear()

    def peerOfRoute(self, route: Any) -> tuple[str, str] | None:
        if route.get_attr("RTA_ENCAP_TYPE") is not None:
            return None
        return self._byIndex.get(route.get_attr("RTA_OIF"))

    # --- peers -------------------------------------------------------------------

    def _freeName(self) -> str:
        taken = {link.get_attr("IFLA_IFNAME") for link in self.ipr.get_links()}
        for n in range(100000):
            name = f"{self.prefix}{n}"
            if len(name) > _IFNAMSIZ:
                break
            if name not in taken:
                return name
        raise DataPlaneError(f"ip6tnl backend: no free interface name starting {self.prefix!r}")

    def openPeer(self, peer: Peer) -> None:
        adopted = self._adoptable.pop((peer.local, peer.remote), None)
        if adopted is not None:
            peer.device, peer.index = adopted
            peer.route = {"oif": peer.index}
            return
        name = self._freeName()
        self.ipr.link("add", **self.deviceArguments(name, peer.local, peer.remote))
        try:
            index = self.interfaceIndex(name)
            self.ipr.link("set", index=index, mtu=self.mtu, ifalias=TAG, state="up")
        except BaseException:
            self._deleteDevice(name)
            raise
        peer.device, peer.index = name, index
        peer.route = {"oif": index}
        log.info("ip6tnl backend: {name} tunnels {local} to {remote} (MTU {mtu})", name=name,
                 local=peer.local, remote=peer.remote, mtu=self.mtu)

    def closePeer(self, peer: Peer) -> None:
        if peer.device is not None:
            self._deleteDevice(peer.device)
            self._byIndex.pop(peer.index or -1, None)
            peer.device = peer.index = None


def ip6tnlBackend(settings: Mapping[str, Any], reactor: IReactor) -> Ip6tnlDataPlane:
    """
    The C{ip6tnl} backend, started in the calling thread's network namespace.

    Settings: those of every backend (docs/dataplane.md) and C{mtu} (1460),
    C{hop_limit} (64), C{prefix} (device names, "lmm6t").
    """
    schema = commonSchema(DEFAULTS)
    schema["mtu"] = (config.integer(1280, 65535), 1460)
    schema["hop_limit"] = (config.integer(1, 255), 64)
    schema["prefix"] = (config.string, "lmm6t")
    values = readSettings("ip6tnl", settings, schema)
    if len(values["prefix"]) > _IFNAMSIZ - 3:
        raise ValueError(f"ip6tnl backend: tunnel.options.prefix: at most {_IFNAMSIZ - 3} "
                         f"characters, got {values['prefix']!r}")
    from pyroute2 import IPRoute

    plane = Ip6tnlDataPlane(reactor, IPRoute(), tagsFrom(values), values["mtu"],
                            values["hop_limit"], values["prefix"], values["leftovers"],
                            values["forwarding"])
    plane.start()
    return plane

