"""
The server side of the MPA's DHCPv6 relay agent: one UDP port 547 on the
MPA's address (docs/dhcpv6.md). The relay's decisions are its pure core's,
L{lmm.mpa.relay.RelayAgent}, which the agent holds
(L{lmm.mpa.agent.MobilityProxyAgent}): the agent turns a visitor's DHCPv6
frame into a L{lmm.mpa.relay.SendToServer}, which the service hands to
L{DHCPv6RelayPort.sendToServer}; what arrives on the port goes to the
agent's C{dhcpDatagramReceived}.

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
access link, from the virtual LMAP MAC and link-local address
(L{lmm.mpa.homelink.clientFrame}).

Server side. One UDP socket bound to the MPA's address (C{mpa.address}),
port 547: Relay-Forwards go out from it and Relay-Replies come back to it
(servers answer to the source address and port 547). Bound to that address,
not to C{::}: no client message reaching the MPA's kernel by another path
is taken for a server's. The socket has SO_REUSEPORT: a port swapped in
while the daemon runs (the C{swap dhcp} command, a reload) binds beside the
old one, which keeps taking answers to what it relayed until it closes
(L{lmm.mpa.service.MPAService.swapRelay}).

The port is the C{udp} backend of L{IDHCPv6Relay} (C{dhcp.backend}); the MPA
sets its C{address} before starting it.
"""

from __future__ import annotations

import socket as _socket
from collections import Counter
from collections.abc import Callable
from typing import Any, Mapping

from twisted.internet.error import MessageLengthError
from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from lmm import config, dhcp6
from lmm.interfaces import IDHCPv6Relay, IReactor
from lmm.logs import Logger
from lmm.ratelimit import LogLimiter
from lmm.reader import errorName

__all__ = ["DHCPv6RelayPort"]

log = Logger(namespace="lmm.mpa.dhcp")

Within = Callable[[Callable[[], Any]], Any]
#: What the port hands each datagram from a server to: (payload, source).
Deliver = Callable[[bytes, str], None]

# Linux's IP_FREEBIND (also for IPv6 sockets): bind before the address is usable.
_IP_FREEBIND = getattr(_socket, "IP_FREEBIND", 15)
# Largest datagram read: a Relay-Reply can carry a large inner message.
_MAX_DATAGRAM = 65535


class _ServerSide(DatagramProtocol):
    noisy = False  # the port logs its own start

    def __init__(self, port: DHCPv6RelayPort) -> None:
        self.relayPort = port

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.relayPort.datagramReceived(datagram, addr[0])


def _direct(f: Callable[[], Any]) -> Any:
    return f()



def _ignore(payload: bytes, source: str) -> None:
    pass


@implementer(IDHCPv6Relay)
class DHCPv6RelayPort:
    """
    The relay's UDP port 547 on the MPA's address.

    @ivar counters: C{relay.sent}, C{relay.received},
        C{relay.send-failed.<errno>}, C{relay.send-no-port}.
    """

    name = "udp"

    def __init__(self, address: str | None, reactor: IReactor, *,
                 socket: _socket.socket | None = None) -> None:
        """
        @param address: the MPA's address: the port is bound to it, port 547
            (None: set C{address} before L{start}).
        @param socket: an unbound UDP socket to use (tests make it in a
            namespace); default: one made at L{start}.
        """
        self.address = address
        self.reactor = reactor
        self.counters: Counter[str] = Counter()
        self.port: Any = None
        self._socket = socket
        self._deliver: Deliver = _ignore
        self._limiter = LogLimiter(reactor.seconds)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on [{self.address}]:{dhcp6.SERVER_PORT}>"

    def start(self, deliver: Deliver, within: Within | None = None) -> None:
        """Open port 547 on the MPA's address (in the namespace C{within}
        runs in); each server's datagram goes to C{deliver}."""
        if self.address is None:
            raise ValueError("the relay port has no address to bind to")
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
            # A port swapped in binds beside this one (the module's docstring).
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEPORT, 1)
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

    def datagramReceived(self, payload: bytes, source: str) -> None:
        self.counters["relay.received"] += 1
        self._deliver(payload, source)

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
            self.counters["relay.send-failed." + errorName(code)] += 1
            if self._limiter.allow("send-failed"):
                log.warn("cannot send a Relay-Forward to {server}: {error}", server=server,
                         error=e)
            return False
        self.counters["relay.sent"] += 1
        return True


#: The C{udp} relay port takes no settings of its own (C{[dhcp.options]} empty).
UDP_SETTINGS: list[config.Setting] = []


def udpBackend(settings: Mapping[str, Any], reactor: IReactor) -> DHCPv6RelayPort:
    """Build the C{udp} relay port; the MPA gives it its address before start."""
    config.parseDocument("udp DHCPv6 relay settings", settings, UDP_SETTINGS)
    return DHCPv6RelayPort(None, reactor)
