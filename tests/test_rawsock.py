"""
Tests for L{lmm.rawsock}: real Mobility Headers between two network namespaces
joined by a veth pair, the kernel's checksum both ways (checked independently
with L{lmm.mh.verifyChecksum}), and the read loop's limits with a fake socket.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from lmm import mh
from lmm.interfaces import IMobilityHeaderProtocol, IMobilityHeaderTransport
from lmm.lab.netns import Namespace, callIn, link, waitForDeferred
from lmm.rawsock import (
    IPPROTO_MH,
    IPV6_CHECKSUM,
    MobilityHeaderPort,
    MobilityHeaderProtocol,
)
from lmm.testing.mixins import NetnsTestMixin

reactor: Any = _reactor

ADDRESS_A = "fd00:135::a"
ADDRESS_B = "fd00:135::b"


class Recorder(MobilityHeaderProtocol):
    def __init__(self) -> None:
        self.messages: list[tuple[bytes, str]] = []
        self.started = 0
        self.lost: list[Failure | None] = []

    def startProtocol(self) -> None:
        self.started += 1

    def datagramReceived(self, data: bytes, source: str) -> None:
        self.messages.append((data, source))

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost.append(reason)
        super().connectionLost(reason)


class Answerer(Recorder):
    """Answers each Binding Update with a Binding Acknowledgement, status 0."""

    def datagramReceived(self, data: bytes, source: str) -> None:
        super().datagramReceived(data, source)
        update = mh.decode(data)
        assert isinstance(update, mh.BindingUpdate)
        ack = mh.BindingAck(0, update.sequence, update.lifetime, proxy=True)
        self.transport.send(mh.encode(ack), source)


def pbu(sequence: int = 7) -> mh.BindingUpdate:
    return mh.ProxyBindingUpdate(
        sequence, 400, [mh.MobileNodeIdentifier(f"ms{sequence}@lmm.test".encode())]
    )


class NamespacePortTests(NetnsTestMixin, TestCase):
    def setUp(self) -> None:
        self.a = self.makeNamespace("mha")
        self.b = self.makeNamespace("mhb")
        self.interfaceA, self.interfaceB = link(self.a, self.b, ADDRESS_A, ADDRESS_B)

    def listen(
        self, namespace: Namespace, address: str, protocol: Recorder | None = None
    ) -> tuple[Any, Recorder]:
        protocol = protocol or Recorder()
        sock = self.socketIn(namespace, socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
        port = MobilityHeaderPort(protocol, address, reactor, socket=sock)
        port.startListening()
        self.addCleanup(port.stopListening)
        return port, protocol

    def capture(self, namespace: Namespace) -> socket.socket:
        """A second raw socket of protocol 135 that takes everything: no checksum check."""
        sock = self.socketIn(namespace, socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, -1)
        sock.setblocking(False)
        return sock

    async def captured(self, sock: socket.socket) -> tuple[bytes, str]:
        def receive() -> Any:
            try:
                data, address = sock.recvfrom(2048)
            except BlockingIOError:
                return None
            return data, address[0]

        return await waitForDeferred(receive, 5, 0.005, "a captured message")

    def test_interfaces(self) -> None:
        port, protocol = self.listen(self.a, ADDRESS_A)
        self.assertTrue(verifyObject(IMobilityHeaderTransport, port))
        self.assertTrue(verifyObject(IMobilityHeaderProtocol, protocol))
        self.assertIs(protocol.transport, port)
        self.assertEqual(protocol.started, 1)
        self.assertIn(port, reactor.getReaders())
        self.assertEqual(port.socket.getsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM), 4)
        self.assertFalse(port.socket.getblocking())
        self.assertGreaterEqual(
            port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), 4 * 1024 * 1024
        )
        self.assertEqual(port.socket.getsockname()[0], ADDRESS_A)
        self.assertIn("listening", repr(port))

    async def test_bindingUpdateArrives(self) -> None:
        """
        A Proxy Binding Update crosses the link, decodes to what was sent, and
        carries the checksum the kernel filled in (L{lmm.mh.encode} leaves it zero).
        """
        portA, _ = self.listen(self.a, ADDRESS_A)
        _, received = self.listen(self.b, ADDRESS_B)
        capture = self.capture(self.b)
        message = pbu()
        data = mh.encode(message)
        self.assertEqual(data[4:6], b"\x00\x00")
        self.assertTrue(portA.send(data, ADDRESS_B))

        await waitForDeferred(lambda: received.messages, 5, 0.005, "the PBU")
        [(got, source)] = received.messages
        self.assertEqual(source, ADDRESS_A)
        self.assertEqual(mh.decode(got), message)
        self.assertEqual(got[:4] + got[6:], data[:4] + data[6:])
        self.assertNotEqual(got[4:6], b"\x00\x00")
        self.assertEqual(self.flushLoggedErrors(), [])

        seen, seenSource = await self.captured(capture)
        self.assertEqual((seen, seenSource), (got, ADDRESS_A))
        mh.verifyChecksum(ADDRESS_A, ADDRESS_B, seen)
        self.assertRaises(mh.BadChecksum, mh.verifyChecksum, ADDRESS_A, "fd00:135::c", seen)
        self.assertEqual(struct.unpack("!H", seen[4:6])[0], mh.checksum(ADDRESS_A, ADDRESS_B, data))

    async def test_badChecksumDropped(self) -> None:
        """
        A Mobility Header whose checksum is wrong reaches the namespace (the capture
        socket, which checks nothing, sees it) but never the port.
        """
        _, received = self.listen(self.b, ADDRESS_B)
        capture = self.capture(self.b)
        raw = self.socketIn(self.a, socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
        raw.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, -1)  # the kernel leaves it alone
        raw.bind((ADDRESS_A, 0))
        good = mh.withChecksum(ADDRESS_A, ADDRESS_B, mh.encode(pbu(1)))
        bad = mh.withChecksum(ADDRESS_A, ADDRESS_B, mh.encode(pbu(2)))
        bad = bad[:4] + bytes((bad[4] ^ 0x55, bad[5])) + bad[6:]
        self.assertRaises(mh.BadChecksum, mh.verifyChecksum, ADDRESS_A, ADDRESS_B, bad)

        raw.sendto(bad, (ADDRESS_B, 0))
        self.assertEqual(await self.captured(capture), (bad, ADDRESS_A))
        # Then a good one by the same path: when it is in, the bad one had its chance.
        raw.sendto(good, (ADDRESS_B, 0))
        self.assertEqual(await self.captured(capture), (good, ADDRESS_A))
        await waitForDeferred(lambda: received.messages, 5, 0.005, "the good PBU")
        self.assertEqual(received.messages, [(good, ADDRESS_A)])
        self.assertEqual(received.transport.received, 1)

    async def test_answer(self) -> None:
        """Both ends send and receive: a PBU is answered with a PBA."""
        portA, atA = self.listen(self.a, ADDRESS_A)
        self.listen(self.b, ADDRESS_B, Answerer())
        for sequence in range(10):
            portA.send(mh.encode(pbu(sequence)), ADDRESS_B)
        await waitForDeferred(lambda: len(atA.messages) == 10, 5, 0.005, "ten PBAs")
        acks = [mh.decode(data) for data, _ in atA.messages]
        self.assertEqual(
            sorted(ack.sequence for ack in acks if isinstance(ack, mh.BindingAck)), list(range(10))
        )
        self.assertEqual({source for _, source in atA.messages}, {ADDRESS_B})

    async def test_burst(self) -> None:
        """
        A burst larger than one read's cap all arrives: the socket buffer holds it
        and the port drains it over several wakeups.
        """
        portA, _ = self.listen(self.a, ADDRESS_A)
        portB, atB = self.listen(self.b, ADDRESS_B)
        portB.maxReadsPerCall = 64
        data = mh.encode(pbu())
        sent = sum(portA.send(data, ADDRESS_B) for _ in range(2000))
        self.assertEqual(sent + portA.sendDrops, 2000)
        await waitForDeferred(lambda: len(atB.messages) >= sent, 10, 0.01, "the burst")
        self.assertEqual(portB.received, sent)

    async def test_linkLocal(self) -> None:
        """
        A link-local source comes with its scope as the interface index in the
        receiving namespace, in C{inet_ntop}'s form; a reply to it gets back.
        """
        portA, atA = self.listen(self.a, "::")
        _, atB = self.listen(self.b, "::", Answerer())
        addresses = {}
        for namespace, name in ((self.a, self.interfaceA), (self.b, self.interfaceB)):
            out = namespace.ip("-6", "-o", "address", "show", "dev", name, "scope", "link")
            addresses[namespace.name] = out.split()[3].split("/")[0]
        linkLocalA = addresses[self.a.name]
        linkLocalB = addresses[self.b.name]
        indexA = self.a.interfaceIndex(self.interfaceA)
        indexB = self.b.interfaceIndex(self.interfaceB)
        portA.send(mh.encode(pbu()), f"{linkLocalB}%{indexA}")
        await waitForDeferred(lambda: atA.messages, 5, 0.005, "the PBA")
        self.assertEqual(atB.messages[0][1], f"{linkLocalA}%{indexB}")
        self.assertEqual(atA.messages[0][1], f"{linkLocalB}%{indexA}")
        canonical = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, linkLocalA))
        self.assertEqual(atB.messages[0][1].split("%")[0], canonical)

    def test_stopListening(self) -> None:
        """The socket is closed, the reader gone, the protocol told; twice is harmless."""
        port, protocol = self.listen(self.a, ADDRESS_A)
        d = port.stopListening()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(port.socket.fileno(), -1)
        self.assertEqual(port.fileno(), -1)
        self.assertNotIn(port, reactor.getReaders())
        self.assertFalse(port.connected)
        self.assertEqual(len(protocol.lost), 1)
        self.assertIsNone(protocol.transport)
        self.assertIsNone(self.successResultOf(port.stopListening()))
        self.assertEqual(len(protocol.lost), 1)
        self.assertRaises(OSError, port.send, b"\x00" * 8, ADDRESS_B)

    async def test_stopInCallback(self) -> None:
        """A protocol may stop the port while it is being given messages."""

        class Stopper(Recorder):
            def datagramReceived(self, data: bytes, source: str) -> None:
                super().datagramReceived(data, source)
                self.transport.stopListening()

        portA, _ = self.listen(self.a, ADDRESS_A)
        portB, stopper = self.listen(self.b, ADDRESS_B, Stopper())
        for sequence in range(5):
            portA.send(mh.encode(pbu(sequence)), ADDRESS_B)
        await waitForDeferred(lambda: stopper.lost, 5, 0.005, "the stop")
        self.assertEqual(len(stopper.messages), 1)
        self.assertEqual(portB.fileno(), -1)

    def test_ownSocket(self) -> None:
        """Given no socket, the port makes one in the calling thread's namespace."""
        port: Any = MobilityHeaderPort(Recorder(), ADDRESS_B, reactor)
        callIn(self.b, port.startListening)
        self.addCleanup(port.stopListening)
        self.assertEqual(port.socket.getsockname()[0], ADDRESS_B)
        self.assertEqual(port.socket.proto, IPPROTO_MH)

    def test_bindFails(self) -> None:
        """An address the namespace lacks: the error, and the socket closed."""
        sock = self.socketIn(self.a, socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
        port = MobilityHeaderPort(Recorder(), ADDRESS_B, reactor, socket=sock)
        self.assertRaises(OSError, port.startListening)
        self.assertEqual(sock.fileno(), -1)
        self.assertNotIn(port, reactor.getReaders())

    def test_wrongSocket(self) -> None:
        sock = self.socketIn(self.a, socket.AF_INET6, socket.SOCK_DGRAM)
        port = MobilityHeaderPort(Recorder(), ADDRESS_A, reactor, socket=sock)
        self.assertRaises(ValueError, port.startListening)


class FakeSocket:
    """Enough of a socket for L{MobilityHeaderPort.doRead} and L{MobilityHeaderPort.send}."""

    def __init__(self, queued: list[Any]) -> None:
        self.queued = queued
        self.reads = 0
        self.sendError: OSError | None = None
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int, int, int]]:
        self.reads += 1
        if not self.queued:
            raise BlockingIOError(errno.EAGAIN, "empty")
        item = self.queued.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        if self.sendError is not None:
            raise self.sendError
        self.sent.append((data, address))

    def fileno(self) -> int:
        return 99


class FakeSocketTests(SynchronousTestCase):
    def makePort(self, queued: list[Any], protocol: Recorder | None = None) -> Any:
        port: Any = MobilityHeaderPort(protocol or Recorder(), "fd00::1", reactor)
        port.socket = FakeSocket(queued)
        port.connected = True
        port._sendto = port.socket.sendto
        return port

    def test_cap(self) -> None:
        """One call reads at most C{maxReadsPerCall}; the next takes the rest, then stops."""
        queued = [(b"x" * 8, ("fd00::2", 0, 0, 0))] * 300
        port = self.makePort(list(queued))
        port.doRead()
        self.assertEqual(len(port.protocol.messages), 256)
        port.doRead()
        self.assertEqual(len(port.protocol.messages), 300)
        self.assertEqual(port.received, 300)
        self.assertEqual(port.socket.reads, 301)  # the last one found nothing

    def test_scope(self) -> None:
        port = self.makePort(
            [(b"x" * 8, ("fe80::1%eth0", 0, 0, 7)), (b"y" * 8, ("fd00::2", 0, 0, 0))]
        )
        port.doRead()
        self.assertEqual([s for _, s in port.protocol.messages], ["fe80::1%7", "fd00::2"])

    def test_protocolErrorLogged(self) -> None:
        """A protocol that raises loses that message only."""

        class Flaky(Recorder):
            def datagramReceived(self, data: bytes, source: str) -> None:
                super().datagramReceived(data, source)
                if len(self.messages) == 1:
                    raise ZeroDivisionError()

        port = self.makePort([(b"x" * 8, ("fd00::2", 0, 0, 0))] * 3, Flaky())
        port.doRead()
        self.assertEqual(len(port.protocol.messages), 3)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_interruptedAndFailedReads(self) -> None:
        """EINTR is retried; another error ends this read (the next wakeup tries again)."""
        message = (b"x" * 8, ("fd00::2", 0, 0, 0))
        port = self.makePort(
            [InterruptedError(), message, OSError(errno.ENETDOWN, "down"), message]
        )
        port.doRead()
        self.assertEqual(len(port.protocol.messages), 1)
        port.doRead()
        self.assertEqual(len(port.protocol.messages), 2)

    def test_sendDrops(self) -> None:
        """No buffer space: counted and reported, not raised; other errors raise."""
        port = self.makePort([])
        self.assertTrue(port.send(b"m" * 8, "fd00::2"))
        self.assertEqual(port.socket.sent, [(b"m" * 8, ("fd00::2", 0))])
        for code in (errno.EAGAIN, errno.ENOBUFS):
            port.socket.sendError = OSError(code, "full")
            self.assertFalse(port.send(b"m" * 8, "fd00::2"))
        self.assertEqual(port.sendDrops, 2)
        port.socket.sendError = OSError(errno.ENETUNREACH, "unreachable")
        self.assertRaises(OSError, port.send, b"m" * 8, "fd00::2")
        self.assertEqual(port.sendDrops, 2)

    def test_sendBeforeListening(self) -> None:
        port: Any = MobilityHeaderPort(Recorder(), "fd00::1", reactor)
        self.assertRaises(RuntimeError, port.send, b"m" * 8, "fd00::2")
        self.assertEqual(port.fileno(), -1)
        # Stopping what never started does nothing.
        self.assertIsNone(self.successResultOf(port.stopListening()))
        self.assertEqual(port.protocol.lost, [])
