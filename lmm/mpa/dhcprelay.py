"""
The Twisted shell of the MPA's DHCPv6 relay agent: the sockets and the
logging around the pure core, L{lmm.mpa.relay.RelayAgent} (docs/dhcpv6.md).

Client side. The MPA takes its Mobile Stations' DHCPv6 messages from the
frames its attach detector already reads on the access links (C{AF_PACKET}),
not from a UDP socket joined to ff02::1:2 on each access interface:

 - a frame names the MS by its MAC, the key of the Visitor List, so the
   agent decides who is relayed (authenticated visitors only) from the same
   entry it keeps for everything else; a UDP socket gives a link-local
   address and an interface index, which would have to be matched to a
   visitor, racing the frame that tells the agent that address;
 - access interfaces come and go (the detector follows them by rtnetlink):
   no group to join again on each, no socket per interface;
 - the kernel never delivers the Solicit to anyone (the group is not joined
   on the access link), so nothing else on the MPA answers or relays it.

The answer goes back the same way: a whole frame on the visitor's current
access link, from the virtual LMAP MAC and link-local address (the MS's
default router, the same on every MPA of the domain) to the MS's MAC and the
Relay-Reply's peer-address, UDP 547 to 546 (L{clientFrame}). The MS sees one
router on its home link, before and after a handover, and the MPA needs no
address of its own on the access link, nor the kernel's neighbor discovery.

Server side. One UDP socket bound to the MPA's address (C{mpa.address}),
port 547: Relay-Forwards go out from it and Relay-Replies come back to it
(servers answer to the source address and port 547). Bound to that address,
not to C{::}: no client message reaching the MPA's kernel by another path
is taken for a server's.

Every message the core drops is counted there (C{relay.<counter>} in the MPA's
counters) and logged at most once a second per reason.
"""

from __future__ import annotations

import errno
import socket as _socket
import struct
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv6Network
from typing import Any

from twisted.internet.error import MessageLengthError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from lmm import dhcp6, nd
from lmm.interfaces import IDHCPv6Relay
from lmm.mpa.relay import (
    DEFAULT_ANSWER_TIMEOUT,
    DEFAULT_MAX_PENDING,
    RelayAction,
    RelayAgent,
)
from lmm.ratelimit import LogLimiter

__all__ = ["DHCPv6Relay", "clientFrame"]

log = Logger(namespace="lmm.mpa.dhcp")

Within = Callable[[Callable[[], Any]], Any]

_UDP = struct.Struct("!HHHH")
_IPV6 = struct.Struct("!IHBB16s16s")
_ETHERNET = struct.Struct("!6s6sH")
# Linux's IP_FREEBIND (also for IPv6 sockets): bind before the address is usable.
_IP_FREEBIND = getattr(_socket, "IP_FREEBIND", 15)
# Largest datagram read: a Relay-Reply can carry a large inner message.
_MAX_DATAGRAM = 65535


def clientFrame(
    sourceMac: str,
    destinationMac: str,
    sourceAddress: str,
    destinationAddress: str,
    payload: bytes,
    hopLimit: int = 255,
) -> bytes:
    """A whole Ethernet frame carrying the DHCPv6 message C{payload} from a
    relay to a client: IPv6, UDP from port 547 to 546, checksum filled (UDP
    over IPv6 must have one, RFC 8200 8.1)."""
    length = _UDP.size + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"{len(payload)} bytes do not fit a UDP datagram")
    header = _UDP.pack(dhcp6.SERVER_PORT, dhcp6.CLIENT_PORT, length, 0)
    # 0 means "no checksum" in UDP; a computed 0 is sent as 0xffff.
    checksum = nd.checksum(sourceAddress, destinationAddress, nd.IPPROTO_UDP, header + payload)
    udp = _UDP.pack(dhcp6.SERVER_PORT, dhcp6.CLIENT_PORT, length, checksum or 0xFFFF) + payload
    return (
        _ETHERNET.pack(bytes.fromhex(destinationMac.replace(":", "")),
                       bytes.fromhex(sourceMac.replace(":", "")), nd.ETH_P_IPV6)
        + _IPV6.pack(6 << 28, length, nd.IPPROTO_UDP, hopLimit,
                     _socket.inet_pton(_socket.AF_INET6, sourceAddress),
                     _socket.inet_pton(_socket.AF_INET6, destinationAddress))
        + udp
    )


class _ServerSide(DatagramProtocol):
    noisy = False  # the relay logs its own start

    def __init__(self, relay: DHCPv6Relay) -> None:
        self.relay = relay

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.relay.datagramReceived(datagram, addr[0])


def _direct(f: Callable[[], Any]) -> Any:
    return f()


def _errorName(code: int | None) -> str:
    return errno.errorcode.get(code or 0, str(code))


@implementer(IDHCPv6Relay)
class DHCPv6Relay:
    """
    The MPA's DHCPv6 relay: a L{RelayAgent} and its server-side UDP port.

    @ivar core: the L{RelayAgent}; its counters show as C{relay.<name>}.
    @ivar counters: the shell's own: C{relay.sent}, C{relay.received},
        C{relay.send-failed.<errno>}, C{relay.send-no-port}.
    """

    def __init__(
        self,
        address: str,
        reactor: Any,
        answerTimeout: float = DEFAULT_ANSWER_TIMEOUT,
        maxPending: int = DEFAULT_MAX_PENDING,
        *,
        core: RelayAgent | None = None,
        socket: _socket.socket | None = None,
    ) -> None:
        """
        @param address: the MPA's address: the port is bound to it, port 547.
        @param socket: an unbound UDP socket to use (tests make it in a
            namespace); default: one made at L{start}.
        """
        self.address = address
        self.reactor = reactor
        self.core = core if core is not None else RelayAgent(answerTimeout, maxPending)
        self.counters: Counter[str] = Counter()
        self.port: Any = None
        self._socket = socket
        self._deliver: Callable[[list[RelayAction]], None] = _ignore
        self._limiter = LogLimiter(reactor.seconds)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on [{self.address}]:{dhcp6.SERVER_PORT}>"

    # --- life cycle ---------------------------------------------------------------

    def start(
        self, deliver: Callable[[list[RelayAction]], None], within: Within | None = None
    ) -> None:
        """Open port 547 on the MPA's address (in the namespace C{within}
        runs in); each server's datagram's actions go to C{deliver}."""
        self._deliver = deliver
        sock = self._socket
        if sock is None:
            sock = (within or _direct)(
                lambda: _socket.socket(_socket.AF_INET6, _socket.SOCK_DGRAM)
            )
        self._socket = None
        try:
            sock.setblocking(False)
            # The MPA's address may still be tentative (DAD) when the daemon starts.
            sock.setsockopt(_socket.SOL_IP, _IP_FREEBIND, 1)
            sock.bind((self.address, dhcp6.SERVER_PORT))
            # The reactor takes a copy of the descriptor (socket.fromfd).
            self.port = self.reactor.adoptDatagramPort(
                sock.fileno(), _socket.AF_INET6, _ServerSide(self), _MAX_DATAGRAM
            )
        finally:
            sock.close()
        log.info("DHCPv6 relay listening on [{address}]:{port}", address=self.address,
                 port=dhcp6.SERVER_PORT)

    def stop(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            port.stopListening()

    # --- the core, with its drops logged -----------------------------------------

    def fromClient(
        self,
        visitorKey: str,
        interface: str,
        clientAddress: str,
        payload: bytes,
        prefix: IPv6Network | str | None,
        server: str,
        now: float,
    ) -> list[RelayAction]:
        """L{RelayAgent.fromClient}: a message from a visitor."""
        core = self.core
        before = core.counters.copy()
        actions = core.fromClient(visitorKey, interface, clientAddress, payload, prefix, server,
                                  now)
        if not actions:
            self._dropped(before, f"from {visitorKey} on {interface}")
        return actions

    def fromServer(self, payload: bytes, source: str, now: float) -> list[RelayAction]:
        """L{RelayAgent.fromServer}: a datagram to port 547 from the backbone."""
        core = self.core
        before = core.counters.copy()
        actions = core.fromServer(payload, source, now)
        if not actions:
            self._dropped(before, f"from {source}")
        return actions

    def _dropped(self, before: Counter[str], where: str) -> None:
        counters = self.core.counters
        reasons = [key for key, value in counters.items() if value != before.get(key, 0)]
        for reason in reasons or ["dropped"]:
            if self._limiter.allow(reason):
                log.warn("dropped a DHCPv6 message {where}: {reason} ({count} so far)",
                         where=where, reason=reason, count=counters[reason])

    def tick(self, now: float) -> list[RelayAction]:
        return self.core.tick(now)

    def nextDeadline(self) -> float | None:
        return self.core.nextDeadline()

    def forget(self, visitorKey: str) -> None:
        self.core.forget(visitorKey)

    # --- the port -----------------------------------------------------------------

    def datagramReceived(self, payload: bytes, source: str) -> None:
        self.counters["relay.received"] += 1
        self._deliver(self.fromServer(payload, source, self.reactor.seconds()))

    def sendToServer(self, server: str, payload: bytes) -> bool:
        """Send a Relay-Forward to C{[server]:547}; False if it could not go."""
        port = self.port
        if port is None:
            self.counters["relay.send-no-port"] += 1
            return False
        try:
            port.write(payload, (server, dhcp6.SERVER_PORT))
        except (OSError, MessageLengthError) as e:
            code = getattr(e, "errno", None)
            self.counters["relay.send-failed." + _errorName(code)] += 1
            if self._limiter.allow("send-failed"):
                log.warn("cannot send a Relay-Forward to {server}: {error}", server=server,
                         error=e)
            return False
        self.counters["relay.sent"] += 1
        return True

    # --- for the control channel --------------------------------------------------------

    def allCounters(self) -> dict[str, int]:
        """The core's counters as C{relay.<name>}, and the shell's."""
        merged = {"relay." + key: value for key, value in self.core.counters.items()}
        merged.update(self.counters)
        return merged

    def describe(self) -> list[dict[str, str]]:
        return self.core.describe()


def _ignore(actions: list[RelayAction]) -> None:
    pass
