"""
The few rtnetlink requests a binding's installation makes, written and
acknowledged here (RFC 3549; linux/rtnetlink.h, linux/fib_rules.h): a route
replaced or deleted, a rule added or deleted, an interface's index.

pyroute2 runs an asyncio loop for every request: about 1 ms of Python each,
and an MPA's binding takes four (its rule, its route, the peer's table, the
access interface), the LMAP's one or two -- on the path from the PBA to the
first packet of a handover (issue 15). Here each is one sendto and one recv
on a NETLINK_ROUTE socket, tens of microseconds. Only the attributes lmm's
routes and rules carry are written; anything else (a seg6 encapsulation,
metrics) is L{Unsupported}, and the caller asks pyroute2.

The requests' arguments are pyroute2's keywords (C{dst}, C{dst_len},
C{table}, C{proto}, C{priority}, C{oif}; for rules C{src}, C{src_len},
C{iifname}, C{table}, C{priority}, C{protocol}), so the backends' route and
rule dicts serve both. Errors are L{NetlinkError}s with the kernel's errno
in C{code}, as pyroute2's.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from typing import Any

from lmm import inet

__all__ = ["NetlinkError", "RouteWriter", "Unsupported"]

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
RTM_GETLINK = 18
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWRULE, RTM_DELRULE = 32, 33
RTN_UNICAST, RT_SCOPE_UNIVERSE, RT_SCOPE_NOWHERE = 1, 0, 255
RT_TABLE_UNSPEC = 0
FR_ACT_TO_TBL = 1
# Route attributes (linux/rtnetlink.h).
RTA_DST, RTA_OIF, RTA_PRIORITY, RTA_TABLE = 1, 4, 6, 15
# Rule attributes (linux/fib_rules.h).
FRA_SRC, FRA_IIFNAME, FRA_PRIORITY, FRA_TABLE, FRA_PROTOCOL = 2, 3, 6, 15, 21
IFLA_IFNAME = 3

_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg; fib_rule_hdr has the same shape
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg
_ATTRIBUTE = struct.Struct("=HH")
_U32 = struct.Struct("=I")

_ROUTE_KEYS = frozenset({"family", "dst", "dst_len", "table", "proto", "priority", "oif"})
_RULE_KEYS = frozenset({"family", "priority", "src", "src_len", "iifname", "table",
                        "protocol"})


class Unsupported(ValueError):
    """A request with an attribute this writer does not write."""


class NetlinkError(OSError):
    """The kernel refused a request; C{code} is its errno (as pyroute2's)."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(code, f"{what}: {os.strerror(code)}")
        self.code = code


def _attribute(kind: int, value: bytes) -> bytes:
    length = _ATTRIBUTE.size + len(value)
    return _ATTRIBUTE.pack(length, kind) + value + b"\0" * (-length % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attribute(kind, _U32.pack(value))


def _table(table: int, attributes: list[bytes]) -> int:
    """The header's table byte; a table past 255 goes in an attribute too."""
    attributes.append(_u32(RTA_TABLE, table))  # FRA_TABLE has the same number
    return table if table < 256 else RT_TABLE_UNSPEC


class RouteWriter:
    """
    A NETLINK_ROUTE socket of the namespace it was opened in (L{open}), and
    the requests above. Blocking, one request at a time: each waits for its
    acknowledgement, as pyroute2's do.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._sequence = itertools.count(1)

    @classmethod
    def open(cls) -> RouteWriter:
        """A writer for the calling thread's network namespace."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_ROUTE)
        sock.bind((0, 0))
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    # --- requests ---------------------------------------------------------------------

    def route(self, command: str, **route: Any) -> None:
        """C{replace} or C{del} an IPv6 route; L{Unsupported} for other keys."""
        unknown = set(route) - _ROUTE_KEYS
        if unknown or command not in ("replace", "del"):
            raise Unsupported(f"route {command} with {sorted(unknown)}")
        attributes: list[bytes] = []
        if route.get("dst_len", 0) or route.get("dst", "::") != "::":
            attributes.append(_attribute(RTA_DST, inet.packAddress(route["dst"])))
        table = _table(route.get("table", 254), attributes)
        if "priority" in route:
            attributes.append(_u32(RTA_PRIORITY, route["priority"]))
        if "oif" in route:
            attributes.append(_u32(RTA_OIF, route["oif"]))
        if command == "replace":
            kind, flags = RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE
            scope, routeType = RT_SCOPE_UNIVERSE, RTN_UNICAST
        else:
            kind, flags, scope, routeType = RTM_DELROUTE, 0, RT_SCOPE_NOWHERE, 0
        header = _RTMSG.pack(socket.AF_INET6, route.get("dst_len", 0), 0, 0, table,
                             route.get("proto", 0), scope, routeType, 0)
        self._request(kind, flags, header + b"".join(attributes), f"route {command}")

    def rule(self, command: str, **rule: Any) -> None:
        """C{add} or C{del} an IPv6 rule that looks a table up; L{Unsupported}
        for other keys."""
        unknown = set(rule) - _RULE_KEYS
        if unknown or command not in ("add", "del"):
            raise Unsupported(f"rule {command} with {sorted(unknown)}")
        attributes: list[bytes] = []
        if rule.get("src_len", 0):
            attributes.append(_attribute(FRA_SRC, inet.packAddress(rule["src"])))
        if "iifname" in rule:
            attributes.append(_attribute(FRA_IIFNAME, rule["iifname"].encode() + b"\0"))
        if "priority" in rule:
            attributes.append(_u32(FRA_PRIORITY, rule["priority"]))
        if "protocol" in rule:
            attributes.append(_attribute(FRA_PROTOCOL, bytes([rule["protocol"]])))
        table = _table(rule.get("table", 254), attributes)
        kind, flags = ((RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL) if command == "add"
                       else (RTM_DELRULE, 0))
        header = _RTMSG.pack(socket.AF_INET6, 0, rule.get("src_len", 0), 0, table, 0, 0,
                             FR_ACT_TO_TBL, 0)
        self._request(kind, flags, header + b"".join(attributes), f"rule {command}")

    def linkIndex(self, name: str) -> int | None:
        """The index of the interface C{name}, or None: there is none."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attribute(
            IFLA_IFNAME, name.encode() + b"\0")
        try:
            reply = self._request(RTM_GETLINK, 0, body, f"link {name}", ack=False)
        except NetlinkError as e:
            if e.code == 19:  # ENODEV
                return None
            raise
        _, _, index, _, _ = _IFINFO.unpack_from(reply, _HEADER.size)
        return int(index)

    def _request(self, kind: int, flags: int, body: bytes, what: str,
                 ack: bool = True) -> bytes:
        """Send one request; its answer (the message asked for, or the
        acknowledgement), or L{NetlinkError}."""
        sequence = next(self._sequence) & 0xFFFFFFFF
        flags |= NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
        self.sock.send(_HEADER.pack(_HEADER.size + len(body), kind, flags, sequence, 0) + body)
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, replyKind, _, replySequence, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise NetlinkError(71, f"{what}: a netlink message of {length} bytes")
                if replySequence == sequence:
                    if replyKind == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, offset + _HEADER.size)
                        if code:
                            raise NetlinkError(-code, what)
                    return data[offset:offset + length]
                offset += (length + 3) & ~3  # another request's late answer: skip it

