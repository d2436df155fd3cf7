"""
Mobility Header messages over a raw IPv6 socket, in the reactor.

Twisted has no raw-socket transport. L{MobilityHeaderPort} is a reader
(C{IReadDescriptor}) for a raw IPv6 socket of protocol 135 that the reactor
watches with C{addReader}; it sends synchronously with C{sendto}.

The kernel does the Mobility Header's checksum both ways (the port sets
C{IPV6_CHECKSUM} to offset 4, the kernel's default for protocol 135, so as
not to depend on that default): it fills it in what the port sends and drops
what arrives with a wrong one. It delivers the Mobility Header itself, without
the IPv6 header, so nothing here parses IPv6.
"""

from __future__ import annotations

import errno
import socket as _socket
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from lmm.interfaces import IMobilityHeaderProtocol, IMobilityHeaderTransport
from lmm.logs import Logger
from lmm.reader import drain, stopOnError

__all__ = [
    "IPPROTO_MH",
    "MobilityHeaderPort",
    "MobilityHeaderProtocol",
]

IPPROTO_MH = 135

# Linux's value (7); BSDs use 26, and Python names it on both.
IPV6_CHECKSUM: int = getattr(_socket, "IPV6_CHECKSUM", 7)
_CHECKSUM_OFFSET = 4  # RFC 6275 6.1.1: the checksum is bytes 4-5 of the Mobility Header

# Linux's SO_RCVBUFFORCE and SO_SNDBUFFORCE: exceed net.core.[rw]mem_max when privileged.
_SO_SNDBUFFORCE = 32
_SO_RCVBUFFORCE = 33

_DROPPED = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})


@implementer(IMobilityHeaderProtocol)
class MobilityHeaderProtocol:
    """
    A base for protocols spoken over a L{MobilityHeaderPort}, shaped like
    L{twisted.internet.protocol.DatagramProtocol}.
    """

    transport: Any = None

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.startProtocol()

    def startProtocol(self) -> None:
        """Called when the port starts listening."""

    def datagramReceived(self, data: bytes, source: str) -> None:
        """Override: one Mobility Header from C{source}."""

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Called when the port stops listening."""
        self.stopProtocol()
        self.transport = None

    def stopProtocol(self) -> None:
        """Called when the port stops listening."""


@implementer(IReadDescriptor, IMobilityHeaderTransport)
class MobilityHeaderPort:
    """
    A raw IPv6 socket of protocol 135 bound to C{bindAddress}, read by the
    reactor.

    @param protocol: an L{IMobilityHeaderProtocol} provider.
    @param bindAddress: the local address; C{"::"} for all. A scope
        (C{"fe80::1%eth0"}) is looked up in the calling thread's namespace.
    @param reactor: an C{IReactorFDSet} provider.
    @param socket: a raw IPv6 socket of protocol 135 to use instead of a new
        one (for instance one made in another network namespace); the port
        configures and binds it, and closes it when it stops listening.
    """

    log = Logger()

    #: Datagrams read per C{doRead} at most: enough to drain a burst in one
    #: wakeup, few enough that other descriptors and timers get their turn.
    maxReadsPerCall = 256
    #: The largest Mobility Header: its length field counts 8-byte units in one
    #: byte. (A smaller buffer is also faster to allocate per read than 64 KiB.)
    maxPacketSize = 2048
    #: Kernel buffer sizes asked for: a burst of 20,000 small messages fits.
    bufferSize = 4 * 1024 * 1024

    def __init__(
        self,
        protocol: Any,
        bindAddress: str,
        reactor: IReactorFDSet,
        socket: _socket.socket | None = None,
    ) -> None:
        self.protocol = protocol
        self.bindAddress = bindAddress
        self.reactor = reactor
        self.socket = socket
        self.connected = False
        self.received = 0
        self.sendDrops = 0
        self._sendto: Any = self._notListening
        self._what = f"the Mobility Header socket on {bindAddress}"
        self._readError = stopOnError(self._what)

    def __repr__(self) -> str:
        state = "listening" if self.connected else "not listening"
        return f"<{type(self).__name__} on {self.bindAddress} ({state})>"

    def startListening(self) -> None:
        """Configure and bind the socket, start reading, tell the protocol."""
        sock = self.socket
        if sock is None:
            sock = self.socket = _socket.socket(_socket.AF_INET6, _socket.SOCK_RAW, IPPROTO_MH)
        try:
            self._configure(sock)
        except BaseException:
            sock.close()
            self.socket = None
            raise
        self._sendto = sock.sendto
        self.connected = True
        self.reactor.addReader(self)
        self.log.info(
            "Mobility Header port listening on {address}",
            address=self.bindAddress,
            receiveBuffer=sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF),
        )
        self.protocol.makeConnection(self)

    def _configure(self, sock: _socket.socket) -> None:
        if (sock.family, sock.type, sock.proto) != (
            _socket.AF_INET6,
            _socket.SOCK_RAW,
            IPPROTO_MH,
        ):
            raise ValueError(f"{sock!r} is not a raw IPv6 socket of protocol {IPPROTO_MH}")
        sock.setblocking(False)
        sock.setsockopt(_socket.IPPROTO_IPV6, IPV6_CHECKSUM, _CHECKSUM_OFFSET)
        for force, plain in (
            (_SO_RCVBUFFORCE, _socket.SO_RCVBUF),
            (_SO_SNDBUFFORCE, _socket.SO_SNDBUF),
        ):
            try:
                sock.setsockopt(_socket.SOL_SOCKET, force, self.bufferSize)
            except OSError:
                # Unprivileged: as much as net.core.rmem_max / wmem_max allow.
                sock.setsockopt(_socket.SOL_SOCKET, plain, self.bufferSize)
        # Parsing only (getaddrinfo knows no port-less raw sockets): the scope, if any.
        info = _socket.getaddrinfo(
            self.bindAddress, None, _socket.AF_INET6, _socket.SOCK_DGRAM, 0, _socket.AI_NUMERICHOST
        )
        sock.bind(info[0][4])

    # IReadDescriptor

    def fileno(self) -> int:
        if self.socket is None:
            return -1
        return self.socket.fileno()

    def logPrefix(self) -> str:
        return f"MobilityHeaderPort({self.bindAddress})"

    def doRead(self) -> None:
        # The hot path: plain recvfrom, through the one read loop.
        # Raw sockets that are not connected get no asynchronous errors;
        # anything else is logged and the next wakeup tries again.
        self.received += drain(partial(self.socket.recvfrom, self.maxPacketSize),  # type: ignore[union-attr]
                               self._deliver, self.maxReadsPerCall, self._readError,
                               self._listening, self._what)

    def _deliver(self, received: tuple[bytes, Any]) -> None:
        data, address = received
        source = address[0]
        if address[3]:
            # Python's text carries an interface name looked up in the calling
            # thread's namespace; the numeric scope is right in any.
            source = f"{source.partition('%')[0]}%{address[3]}"
        self.protocol.datagramReceived(data, source)

    def _listening(self) -> bool:
        return self.connected

    def connectionLost(self, reason: Failure) -> None:
        """The reactor gave up on the socket, or L{stopListening} was called."""
        if not self.connected:
            return
        self.connected = False
        self.reactor.removeReader(self)
        if self.socket is not None:
            self.socket.close()
        self.log.info(
            "Mobility Header port on {address} stopped: {received} received,"
            " {sendDrops} dropped on send",
            address=self.bindAddress,
            received=self.received,
            sendDrops=self.sendDrops,
        )
        self.protocol.connectionLost(reason)

    # IMobilityHeaderTransport

    def send(self, data: bytes, destination: str) -> bool:
        try:
            self._sendto(data, (destination, 0))
        except OSError as e:
            if e.errno in _DROPPED:
                self.sendDrops += 1
                return False
            raise
        return True

    def _notListening(self, data: bytes, address: tuple[str, int]) -> None:
        raise RuntimeError(f"{self!r} cannot send before startListening")

    def stopListening(self) -> Deferred[None]:
        self.connectionLost(Failure(ConnectionDone("Mobility Header port stopped")))
        return succeed(None)
