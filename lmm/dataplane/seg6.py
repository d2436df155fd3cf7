"""
The kernel's SRv6 as an RFC 2473 tunnel: the C{seg6} backend.

A route with C{encap seg6 mode encap.red segs PEER} and one segment puts the
packet in an IPv6 header from the namespace's tunnel source (C{ip sr
tunsrc}) to PEER, next header 41, with no Segment Routing Header: plain
IPv6-in-IPv6. Decapsulation of what arrives for this node is a rule ahead of
the local table, C{ipproto 41 to LOCAL lookup TABLE}, and in TABLE a route
for LOCAL with C{encap seg6local action End.DT6 table 254}: the kernel strips
the outer header and routes the inner packet in the main table. Measured on
the project's kernel; ip6tnl, sit and GRE are not needed.

What it creates (protocol 0x4c on every route and rule, by default):

  - at start nothing but forwarding; on the first binding with a tunnel end
    LOCAL: C{ip sr tunsrc set LOCAL}; the local-table rule moved from
    priority 0 to C{decap_priority + 1} (77); a rule C{pref decap_priority
    (76) to LOCAL ipproto 41 lookup TABLE} and the End.DT6 route in TABLE
    (C{table}, 0x4c00);
  - LMAP: C{MOBILE/LEN encap seg6 mode encap.red segs [MPA] dev DEV metric 76}
    in the main table (DEV: where the kernel routes MPA);
  - MPA: per LMAP a table (0x4c01...) with C{default encap seg6 mode encap.red
    segs [LMAP]}; per visitor C{pref 1076 from MOBILE/LEN iif ACCESS lookup
    that table} and C{MOBILE/LEN dev ACCESS metric 76} in the main table.

MOBILE/LEN is a /128 address in the draft profile and the MS's home network
prefix, usually a /64, in the rfc5213 profile (RFC 5213 6.10): nothing here
depends on the length.

MTU: the kernel encapsulates a forwarded packet before any MTU check (the
seg6 route's own C{mtu} only limits what the node itself sends, less 64
bytes), so a packet too big for the tunnel draws a Packet Too Big addressed
to this node. L{lmm.dataplane.common.PacketTooBigRelay} answers the real
sender instead (RFC 2473 section 8.2).
"""

from __future__ import annotations

import errno
from typing import Any, Iterable, Mapping

from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, genlmsg

from lmm import config
from lmm.dataplane.common import (
    AF_INET6,
    FR_ACT_TO_TBL,
    LOCAL_TABLE,
    MAIN_TABLE,
    RTPROT_KERNEL,
    DataPlaneError,
    KernelLacks,
    NetlinkDataPlane,
    PacketTooBigRelay,
    Peer,
    Tags,
    commonSchema,
    log,
    netlinkErrno,
    normal,
    readSettings,
    ruleSpec,
    tagsFrom,
)
from lmm.interfaces import IReactor

__all__ = ["DEFAULTS", "LACKS_SEG6", "Seg6DataPlane", "Seg6Netlink", "seg6Backend"]

DEFAULTS = Tags(protocol=0x4C, table=0x4C00, priority=1076, metric=76)
DECAP_PRIORITY = 76

LACKS_SEG6 = "kernel lacks seg6 (CONFIG_IPV6_SEG6_LWTUNNEL): use the userspace backend"

LWTUNNEL_ENCAP_SEG6 = 5
SEG6_IPTUN_MODE_ENCAP_RED = 3

_PROBE_DESTINATION = "100::"  # RFC 6666's discard-only prefix, in the backend's own table


def _teachPyroute2() -> None:
    # pyroute2 0.9 knows the "inline" and "encap" modes only; the kernel's
    # encap.red (3) takes the same segment list.
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    header = rtmsg.seg6_encap_info.ipv6_sr_hdr
    header.encapmodes.setdefault("encap.red", SEG6_IPTUN_MODE_ENCAP_RED)
    header.r_encapmodes.setdefault(SEG6_IPTUN_MODE_ENCAP_RED, "encap.red")


class _seg6msg(genlmsg):
    # include/uapi/linux/seg6_genl.h
    nla_map = (
        ("SEG6_ATTR_UNSPEC", "none"),
        ("SEG6_ATTR_DST", "ip6addr"),
        ("SEG6_ATTR_DSTLEN", "int32"),
        ("SEG6_ATTR_HMACKEYID", "uint32"),
        ("SEG6_ATTR_SECRET", "none"),
        ("SEG6_ATTR_SECRETLEN", "uint8"),
        ("SEG6_ATTR_ALGID", "uint8"),
        ("SEG6_ATTR_HMACINFO", "none"),
    )


class Seg6Netlink:
    """C{ip sr tunsrc} through the kernel's "SEG6" generic netlink family."""

    SET_TUNSRC = 3
    GET_TUNSRC = 4

    def __init__(self) -> None:
        from pyroute2.netlink.generic import GenericNetlinkSocket

        self.socket = GenericNetlinkSocket()
        try:
            self.socket.bind("SEG6", _seg6msg)
        except Exception:
            self.socket.close()
            raise

    def _message(self, command: int, attrs: list[Any]) -> _seg6msg:
        message = _seg6msg()
        message["cmd"] = command
        message["version"] = 1
        message["attrs"] = attrs
        return message

    def getTunsrc(self) -> str:
        answer = list(self.socket.nlm_request(self._message(self.GET_TUNSRC, []),
                                              msg_type=self.socket.prid,
                                              msg_flags=NLM_F_REQUEST))
        return normal(answer[0].get_attr("SEG6_ATTR_DST") or "::")

    def setTunsrc(self, address: str) -> None:
        list(self.socket.nlm_request(self._message(self.SET_TUNSRC, [("SEG6_ATTR_DST", address)]),
                                     msg_type=self.socket.prid,
                                     msg_flags=NLM_F_REQUEST | NLM_F_ACK))

    def close(self) -> None:
        self.socket.close()


def encapRed(remote: str) -> dict[str, Any]:
    """pyroute2's C{encap} for C{encap seg6 mode encap.red segs [remote]}."""
    return {"type": "seg6", "mode": "encap.red", "segs": [remote]}


def endDT6() -> dict[str, Any]:
    return {"type": "seg6local", "action": "End.DT6", "table": MAIN_TABLE}


def _isLocalRule(rule: Any) -> bool:
    """The rule that looks up the local table, with no selector."""
    return ((rule.get_attr("FRA_TABLE") or rule["table"]) == LOCAL_TABLE
            and rule["action"] == FR_ACT_TO_TBL and rule["src_len"] == 0
            and rule["dst_len"] == 0 and rule.get_attr("FRA_IIFNAME") is None
            and rule.get_attr("FRA_IP_PROTO") is None and rule.get_attr("FRA_FWMARK") is None)


class Seg6DataPlane(NetlinkDataPlane):
    """The C{seg6} backend (see the module docstring)."""

    name = "seg6"

    def __init__(self, reactor: IReactor, netlink: Any, seg6: Any, tags: Tags = DEFAULTS,
                 decapPriority: int = DECAP_PRIORITY, relayTooBig: bool = True,
                 relayRate: int = 1000, leftovers: str = "clean",
                 forwarding: bool = True) -> None:
        super().__init__(reactor, netlink, tags, leftovers, forwarding)
        _teachPyroute2()
        self.seg6 = seg6
        self.decapPriority = decapPriority
        self.decapTable = tags.table
        self.relayTooBig = relayTooBig
        self.relayRate = relayRate
        self.relay: PacketTooBigRelay | None = None
        self._locals: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._tunsrcBefore: str | None = None
        self._tunsrc: str | None = None
        self._movedLocal: list[int] = []  # the priorities the local-table rule had

    # --- start and stop ------------------------------------------------------------

    def probe(self) -> None:
        if self.seg6 is None:
            raise KernelLacks(LACKS_SEG6 + " (no SEG6 generic netlink family)")
        lo = self.interfaceIndex("lo")
        for encap in (encapRed("::1"), endDT6()):
            route = dict(family=AF_INET6, dst=_PROBE_DESTINATION, dst_len=128,
                         table=self.decapTable, proto=self.tags.protocol, oif=lo)
            try:
                self.ipr.route("replace", encap=encap, **route)
            except Exception as e:
                raise KernelLacks(f"{LACKS_SEG6} ({encap['type']} routes: {e})") from None
            self.deleteRoute(route)
        self._tunsrcBefore = self.seg6.getTunsrc()
        self._tunsrc = None

    def started(self) -> None:
        if self.relayTooBig and self.relay is None:
            assert self.namespace is not None
            self.relay = self.namespace.call(PacketTooBigRelay, self.reactor, self.relayRate)
            for local in self._locals:
                self.relay.addEndpoint(local)

    def closeLocals(self) -> None:
        for route, rule in self._locals.values():
            self.deleteRule(rule)
            self.deleteRoute(route)
        self._locals.clear()
        self.restoreLocalRule()
        if self._tunsrc is not None and self._tunsrcBefore is not None:
            try:
                self.seg6.setTunsrc(self._tunsrcBefore)
            except Exception as e:
                log.warn("seg6 backend: could not set the tunnel source back to {address}: "
                         "{error}", address=self._tunsrcBefore, error=e)
            self._tunsrc = None

    def close(self) -> None:
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
        if self.seg6 is not None:
            self.seg6.close()
        super().close()

    # --- the local-table rule ------------------------------------------------------------

    def moveLocalRule(self) -> None:
        """
        Put the local-table rule after the decapsulation rules: a packet of
        protocol 41 for this node must meet End.DT6 before local delivery.
        Added at its new place before it leaves the old, so that the node
        never goes without it.
        """
        ahead = [rule for rule in self.ipr.get_rules(family=AF_INET6)
                 if _isLocalRule(rule) and (rule.get_attr("FRA_PRIORITY") or 0)
                 <= self.decapPriority]
        if not ahead:
            return
        self.addRule(self.localRule())
        for rule in ahead:
            priority = rule.get_attr("FRA_PRIORITY") or 0
            self.deleteRule(ruleSpec(rule))
            self._movedLocal.append(priority)
        log.info("seg6 backend: moved the local-table rule from priority {old} to {new}, after "
                 "the decapsulation rule ({decap})", old=self._movedLocal,
                 new=self.decapPriority + 1, decap=self.decapPriority)

    def localRule(self) -> dict[str, Any]:
        return dict(family=AF_INET6, priority=self.decapPriority + 1, table=LOCAL_TABLE,
                    protocol=self.tags.protocol)

    def restoreLocalRule(self) -> None:
        """Put the local-table rule back where it was (priority 0 after a crash)."""
        ours = [rule for rule in self.ipr.get_rules(family=AF_INET6)
                if _isLocalRule(rule) and rule.get_attr("FRA_PROTOCOL") == self.tags.protocol]
        if not ours and not self._movedLocal:
            return
        for priority in self._movedLocal or [0]:
            self.addRule(dict(family=AF_INET6, priority=priority, table=LOCAL_TABLE,
                              protocol=RTPROT_KERNEL))
        for rule in ours:
            self.deleteRule(ruleSpec(rule))
        log.info("seg6 backend: put the local-table rule back at priority {priority}",
                 priority=self._movedLocal or [0])
        self._movedLocal = []

    def cleanRules(self, rules: Iterable[Any]) -> int:
        rules = list(rules)
        local = [rule for rule in rules if _isLocalRule(rule)]
        others = [rule for rule in rules if not _isLocalRule(rule)]
        count = super().cleanRules(others)
        if local:
            self.restoreLocalRule()
        return count + len(local)

    def keepRule(self, rule: Any) -> bool:
        if _isLocalRule(rule):
            return bool(self._locals)
        return rule.get_attr("FRA_IP_PROTO") == 41 and normal(
            rule.get_attr("FRA_DST") or "::") in self._locals

    def keepRoute(self, route: Any) -> bool:
        return (route.get_attr("RTA_TABLE") == self.decapTable
                and normal(route.get_attr("RTA_DST") or "::") in self._locals)

    # --- tunnel ends ---------------------------------------------------------------

    def openLocal(self, local: str) -> None:
        if local in self._locals:
            return
        if self._tunsrc is None:
            current = self.seg6.getTunsrc()
            if current != local:
                self.seg6.setTunsrc(local)
                log.info("seg6 backend: tunnel source (ip sr tunsrc) set to {address} (was "
                         "{old})", address=local, old=current)
            self._tunsrc = local
        elif self._tunsrc != local:
            raise DataPlaneError(f"a namespace has one SRv6 tunnel source (ip sr tunsrc); it is "
                                 f"{self._tunsrc}, a binding asks for {local}")
        self.moveLocalRule()
        device = self.addressInterface(local)
        if device is None:
            raise DataPlaneError(f"no interface has the tunnel end address {local}")
        route = dict(family=AF_INET6, dst=local, dst_len=128, table=self.decapTable,
                     proto=self.tags.protocol, oif=device)
        self.ipr.route("replace", encap=endDT6(), **route)
        rule = dict(family=AF_INET6, priority=self.decapPriority, dst=local, dst_len=128,
                    ip_proto=41, table=self.decapTable, protocol=self.tags.protocol)
        self.addRule(rule)
        self._locals[local] = (route, rule)
        if self.relay is not None:
            self.relay.addEndpoint(local)
        log.info("seg6 backend: decapsulating IPv6-in-IPv6 for {address} (rule {priority}, "
                 "End.DT6 in table {table})", address=local, priority=self.decapPriority,
                 table=self.decapTable)

    def openPeer(self, peer: Peer) -> None:
        peer.route = {"oif": self.routeInterface(peer.remote), "encap": encapRed(peer.remote)}

    def peerOfRoute(self, route: Any) -> tuple[str, str] | None:
        if route.get_attr("RTA_ENCAP_TYPE") != LWTUNNEL_ENCAP_SEG6:
            return None
        encap = route.get_attr("RTA_ENCAP")
        header = encap.get_attr("SEG6_IPTUNNEL_SRH") if encap is not None else None
        if header is None or header["encapmode"] != SEG6_IPTUN_MODE_ENCAP_RED:
            return None
        segments = header["segs"]
        if len(segments) != 1 or self._tunsrcBefore in (None, "::"):
            return None
        return (normal(self._tunsrcBefore), normal(segments[0]))

    def adopt(self) -> None:
        # The tunnel source a previous run set is this run's too.
        if self._tunsrcBefore not in (None, "::"):
            self._tunsrc = self._tunsrcBefore
        super().adopt()
        if not self._locals:
            self._tunsrc = None


def seg6Backend(settings: Mapping[str, Any], reactor: IReactor) -> Seg6DataPlane:
    """
    The C{seg6} backend, started in the calling thread's network namespace.

    Settings (C{[tunnel.options]}): C{leftovers} ("clean" or "adopt"),
    C{forwarding}, C{protocol}, C{table}, C{priority}, C{metric} (see
    docs/dataplane.md), C{decap_priority} (76: the decapsulation rule; the
    local-table rule goes right after it), C{relay_too_big} (true) and
    C{relay_rate} (Packet Too Big messages relayed per second, 1000).
    """
    schema = commonSchema(DEFAULTS)
    schema["decap_priority"] = (config.integer(1, 32000), DECAP_PRIORITY)
    schema["relay_too_big"] = (config.boolean, True)
    schema["relay_rate"] = (config.integer(1, 1000000), 1000)
    values = readSettings("seg6", settings, schema)
    if values["decap_priority"] + 1 >= values["priority"]:
        raise ValueError("seg6 backend: tunnel.options.decap_priority must be below priority - 1 "
                         "(the local-table rule sits between them)")
    from pyroute2 import IPRoute

    try:
        seg6: Seg6Netlink | None = Seg6Netlink()
    except Exception as e:
        if netlinkErrno(e) not in (errno.ENOENT, errno.EOPNOTSUPP) and "not found" not in str(e):
            raise
        seg6 = None
    try:
        netlink = IPRoute()
    except BaseException:
        if seg6 is not None:
            seg6.close()
        raise
    plane = Seg6DataPlane(reactor, netlink, seg6, tagsFrom(values), values["decap_priority"],
                          values["relay_too_big"], values["relay_rate"], values["leftovers"],
                          values["forwarding"])
    plane.start()  # closes both sockets if it fails
    return plane
