"""
A running twistd lmm-lmap in its own namespace, driven over real raw Mobility
Header sockets by a small MPA-side client in another namespace; what comes back
is decoded by lmm and by scapy. And the LMAP service, anchor and all, with a
fake clock and port, over a tunnel backend that refuses bindings.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from ipaddress import IPv6Network
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lmm import mh
from lmm.dataplane.common import DataPlaneError
from lmm.lab.daemons import Daemon, writeConfig
from lmm.lab.netns import link
from lmm.lmap.anchor import LocalMobilityAnchor
from lmm.lmap.service import LMAPService
from lmm.testing.doubles import RecordingDataPlane, RefusingPlane
from lmm.testing.mixins import NetnsTestMixin

LMAP = "fd00:135::1"
MPA1 = "fd00:135::2"
MPA2 = "fd00:135::3"
STRANGER = "fd00:136::9"  # not inside lmap.mpas
LNP = "2001:db8:1::/64"


class MPAClient:
    """Sends PBUs from one address, reads what the LMAP sends back."""

    lmap = LMAP

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address
        self.heartbeats: list[mh.Heartbeat] = []
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, 4)
        sock.bind((address, 0))
        sock.settimeout(3.0)

    def send(self, message: mh.MobilityMessage | bytes) -> None:
        data = message if isinstance(message, bytes) else mh.encode(message)
        self.sock.sendto(data, (LMAP, 0))

    def opened(self, data: bytes) -> mh.Message:
        """What C{data} from the LMAP says (a subclass checks its protection)."""
        return mh.decode(data)

    def receive(self, timeout: float = 3.0) -> tuple[mh.Message, bytes]:
        """The next message from the LMAP that is not a Heartbeat request (those
        are kept in C{heartbeats}: the LMAP asks every MPA it has bindings of)."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.0, deadline - time.monotonic()))
            data, source = self.sock.recvfrom(2048)
            assert source[0] == self.lmap, source
            message = self.opened(data)
            if isinstance(message, mh.Heartbeat) and not message.response:
                self.heartbeats.append(message)
                continue
            return message, data

    def nothing(self, within: float) -> bool:
        try:
            self.receive(within)
        except TimeoutError:
            return True
        return False


def pbu(sequence: int, nai: bytes, *options: mh.MobilityOption, lifetime: int = 400,
        proxy: bool = True) -> mh.BindingUpdate:
    return mh.BindingUpdate(sequence, lifetime, (mh.MobileNodeIdentifier(nai), *options),
                            ack=True, proxy=proxy)


class LMAPDaemonTests(NetnsTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.lmapNs = self.makeNamespace("lmap")
        self.mpaNs = self.makeNamespace("mpa")
        _, mpaIf = link(self.lmapNs, self.mpaNs, LMAP, MPA1)
        self.mpaNs.ip("addr", "add", f"{MPA2}/64", "dev", mpaIf, "nodad")
        self.mpaNs.ip("addr", "add", f"{STRANGER}/64", "dev", mpaIf, "nodad")
        self.lmapNs.ip("route", "add", "fd00:136::/64", "dev", _)
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        config = writeConfig(os.path.join(folder, "lmap.toml"), {
            "lmap": {"address": LMAP, "local_network_prefixes": [LNP],
                     "mpas": ["fd00:135::/64"], "max_lifetime": 3600,
                     # test_cacheFull's bound; the others register thousands.
                     "max_bindings": 3 if self._testMethodName == "test_cacheFull" else 10000},
            "revocation": {"timeout": 0.2, "max_retries": 2},
            # The anchor's rules over the wire, with plain messages; the same
            # daemon with authentication is tests.test_security_netns's.
            "security": {"authentication": False},
            "store": {"path": os.path.join(folder, "lmap.sqlite")},
            "tunnel": {"backend": "recording"},  # the signaling only
        })
        self.daemon = Daemon(self.lmapNs, "lmm-lmap", config, os.path.join(folder, "lmap.log"))
        self.addCleanup(self.stopDaemon)
        self.daemon.start(ready="listening for Proxy Binding Updates")
        self.mpa1 = MPAClient(self.socketIn(self.mpaNs, proto=mh.IPPROTO_MH), MPA1)
        self.mpa2 = MPAClient(self.socketIn(self.mpaNs, proto=mh.IPPROTO_MH), MPA2)

    def stopDaemon(self) -> None:
        status = self.daemon.stop()
        log = self.daemon.log()
        # twistd shuts down cleanly, then re-raises the SIGTERM it was stopped by.
        self.assertIn(status, (0, -signal.SIGTERM), log)
        self.assertIn("Server Shut Down", log)
        self.assertNotIn("Traceback", log)

    def test_registrationAndScapy(self) -> None:
        self.mpa1.send(pbu(1, b"ms1@lmm.test", mh.LocalAddress("2001:db8:1::5", 64)))
        ack, raw = self.mpa1.receive()
        self.assertIsInstance(ack, mh.BindingAck)
        assert isinstance(ack, mh.BindingAck)
        self.assertEqual((ack.status, ack.sequence, ack.lifetime, ack.proxy), (0, 1, 400, True))
        self.assertEqual(ack.option(mh.LocalAddress), mh.LocalAddress("2001:db8:1::5", 64))
        # scapy, an independent decoder, reads the same acknowledgement.
        from scapy.layers.inet6 import MIP6MH_BA, IPv6

        packet = IPv6(bytes(IPv6(src=LMAP, dst=MPA1, nh=135) / raw))
        ba = packet[MIP6MH_BA]
        self.assertEqual((ba.status, ba.seq, ba.mhtime * 4), (0, 1, 400))
        self.assertIn("P", str(ba.flags))
        # The LMAP assigns an address when the MPA asks with "::".
        self.mpa1.send(pbu(2, b"ms2@lmm.test", mh.LocalAddress("::", 64)))
        ack, _ = self.mpa1.receive()
        assert isinstance(ack, mh.BindingAck)
        assigned = ack.option(mh.LocalAddress)
        assert assigned is not None
        self.assertEqual(ack.status, 0)
        self.assertTrue(assigned.address.startswith("2001:db8:1:"), assigned)

    def test_handoverRevokesPreviousMPA(self) -> None:
        nai = b"mover@lmm.test"
        self.mpa1.send(pbu(10, nai, mh.LocalAddress("2001:db8:1::77", 64)))
        self.assertEqual(self.mpa1.receive()[0].status, 0)  # type: ignore[union-attr]
        # The MS moves: the new MPA does not know its address, and asks.
        sent = time.monotonic()
        self.mpa2.send(pbu(1, nai, mh.BindingCacheConfirmation()))
        ack, _ = self.mpa2.receive()
        assert isinstance(ack, mh.BindingAck)
        self.assertEqual(ack.status, 0)
        self.assertEqual(ack.option(mh.LocalAddress), mh.LocalAddress("2001:db8:1::77", 64))
        bri, _ = self.mpa1.receive()
        assert isinstance(bri, mh.BindingRevocationIndication)
        self.assertTrue(bri.proxy)
        self.assertEqual(bri.option(mh.MobileNodeIdentifier), mh.MobileNodeIdentifier(nai))
        # Unanswered, it comes again after the revocation timeout (0.2 s)...
        again, _ = self.mpa1.receive()
        assert isinstance(again, mh.BindingRevocationIndication)
        self.assertEqual(again.sequence, bri.sequence)
        self.assertGreater(time.monotonic() - sent, 0.15)
        # ...and stops once acknowledged.
        self.mpa1.send(mh.BindingRevocationAck(bri.sequence, mh.RevocationStatus.SUCCESS,
                                               proxy=True))
        self.assertTrue(self.mpa1.nothing(within=1.0))
        # The old MPA's late deregistration does not remove the moved binding.
        self.mpa1.send(pbu(11, nai, mh.LocalAddress("2001:db8:1::77", 64), lifetime=0))
        self.assertEqual(self.mpa1.receive()[0].status, 0)  # type: ignore[union-attr]
        self.mpa2.send(pbu(2, nai, mh.BindingCacheConfirmation()))
        self.assertEqual(self.mpa2.receive()[0].status, 0)  # type: ignore[union-attr]
        # The current MPA's deregistration does.
        self.mpa2.send(pbu(3, nai, mh.LocalAddress("2001:db8:1::77", 64), lifetime=0))
        self.assertEqual(self.mpa2.receive()[0].status, 0)  # type: ignore[union-attr]
        self.mpa2.send(pbu(4, nai, mh.BindingCacheConfirmation()))
        self.assertEqual(self.mpa2.receive()[0].status, 141)  # type: ignore[union-attr]

    def test_peerWithoutRevocation(self) -> None:
        """Issue 16, part 4: an MPA that answers a revocation with a Binding
        Error (unrecognized MH type: it does not do RFC 5846) is sent no more
        revocations, and the log says so, naming it."""
        nai = b"mover@lmm.test"
        self.mpa1.send(pbu(10, nai, mh.LocalAddress("2001:db8:1::77", 64)))
        self.mpa1.receive()
        self.mpa2.send(pbu(1, nai, mh.BindingCacheConfirmation()))
        self.mpa2.receive()
        bri, _ = self.mpa1.receive()
        assert isinstance(bri, mh.BindingRevocationIndication)
        self.mpa1.send(mh.BindingError(mh.BindingErrorStatus.UNRECOGNIZED_MH_TYPE))
        self.assertTrue(self.mpa1.nothing(within=0.6))  # no retransmission
        # Back to MPA1 (MPA2 is told), and away again: MPA1 is told nothing.
        self.mpa1.send(pbu(11, nai, mh.BindingCacheConfirmation()))
        self.assertEqual(self.mpa1.receive()[0].status, 0)  # type: ignore[union-attr]
        self.assertIsInstance(self.mpa2.receive()[0], mh.BindingRevocationIndication)
        self.mpa2.send(pbu(2, nai, mh.BindingCacheConfirmation()))
        self.assertEqual(self.mpa2.receive()[0].status, 0)  # type: ignore[union-attr]
        self.assertTrue(self.mpa1.nothing(within=0.6))
        self.assertIn(f"mpa.without-revocation mpa={MPA1}", self.daemon.log())

    def test_unprotectedTimestampOrder(self) -> None:
        """Issue 16, part 2: unprotected, RFC 5213's Timestamp option orders
        an MS's PBUs across MPAs: MPA1's PBU replayed after the handover to
        MPA2 gets 157 and the binding stays at MPA2; one stamped outside the
        replay window (1 s) gets no answer."""
        from lmm.security import rfc5213Timestamp

        nai = b"mover@lmm.test"
        address = mh.LocalAddress("2001:db8:1::78", 64)
        first = pbu(10, nai, address, mh.Timestamp(rfc5213Timestamp(time.time())))
        self.mpa1.send(first)
        self.assertEqual(self.mpa1.receive()[0].status, 0)  # type: ignore[union-attr]
        self.mpa2.send(pbu(1, nai, mh.BindingCacheConfirmation(),
                           mh.Timestamp(rfc5213Timestamp(time.time()))))
        self.assertEqual(self.mpa2.receive()[0].status, 0)  # type: ignore[union-attr]
        bri = self.mpa1.receive()[0]
        assert isinstance(bri, mh.BindingRevocationIndication)
        self.mpa1.send(mh.BindingRevocationAck(bri.sequence, 0, proxy=True))
        self.mpa1.send(first)
        ack = self.mpa1.receive()[0]
        assert isinstance(ack, mh.BindingAck)
        self.assertEqual(ack.status, mh.Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED)
        self.mpa1.send(pbu(11, nai, address, mh.Timestamp(rfc5213Timestamp(time.time() + 5))))
        self.assertTrue(self.mpa1.nothing(within=0.5))
        self.assertIn("timestamp not newer", self.daemon.log())

    def test_killedWhileRegistering(self) -> None:
        """kill -9 in the middle of a burst of registrations, and a restart:
        every binding the LMAP acknowledged is in its Binding Cache (the MPA
        asks with a Binding Cache Confirmation: found, same address), and a
        revocation it was waiting on is sent again, same number (issue 13)."""
        nai = b"mover@lmm.test"
        self.mpa1.send(pbu(10, nai, mh.LocalAddress("2001:db8:1::77", 64)))
        self.assertEqual(self.mpa1.receive()[0].status, 0)  # type: ignore[union-attr]
        self.mpa2.send(pbu(1, nai, mh.BindingCacheConfirmation()))
        self.assertEqual(self.mpa2.receive()[0].status, 0)  # type: ignore[union-attr]
        bri, _ = self.mpa1.receive()  # left unanswered
        assert isinstance(bri, mh.BindingRevocationIndication)
        count = 3000
        for n in range(count):
            self.mpa1.send(pbu(1, b"ms%d@lmm.test" % n))
        acknowledged: set[str] = set()

        def acknowledgement(timeout: float) -> bool:
            try:
                ack, _ = self.mpa1.receive(timeout)
            except TimeoutError:
                return False
            if isinstance(ack, mh.BindingAck) and ack.status == 0:
                address = ack.option(mh.LocalAddress)
                assert address is not None
                acknowledged.add(address.address)
            return True

        while len(acknowledged) < count // 3:
            acknowledgement(3.0)
        self.daemon.kill()
        # What left before the kill is acknowledged too.
        while acknowledgement(0.2):
            pass
        self.assertLess(len(acknowledged), count)  # killed mid-burst
        self.daemon.start(ready="listening for Proxy Binding Updates")
        self.assertIn("binding(s) taken up", self.daemon.log())
        # The revocation, again.
        again, _ = self.mpa1.receive()
        assert isinstance(again, mh.BindingRevocationIndication), again
        self.assertEqual((again.sequence, again.option(mh.MobileNodeIdentifier)),
                         (bri.sequence, mh.MobileNodeIdentifier(nai)))
        self.mpa1.send(mh.BindingRevocationAck(bri.sequence, 0, proxy=True))
        # Each acknowledged binding: found at MPA1 with its address.
        found = 0
        for n in range(count):
            self.mpa1.send(pbu(2, b"ms%d@lmm.test" % n, mh.BindingCacheConfirmation()))
            ack, _ = self.mpa1.receive()
            assert isinstance(ack, mh.BindingAck)
            address = ack.option(mh.LocalAddress)
            if ack.status == 0 and address is not None:
                found += 1
                acknowledged.discard(address.address)
        self.assertEqual(acknowledged, set(), "acknowledged, then lost")
        self.assertGreaterEqual(found, count // 3)

    def test_rejections(self) -> None:
        self.mpa1.send(pbu(1, b"nobody@lmm.test", mh.BindingCacheConfirmation()))
        self.assertEqual(self.mpa1.receive()[0].status, 141)  # type: ignore[union-attr]
        self.mpa1.send(pbu(2, b"x@lmm.test", mh.LocalAddress("2001:db8:1::9", 64), proxy=False))
        ack, _ = self.mpa1.receive()
        assert isinstance(ack, mh.BindingAck)
        self.assertEqual((ack.status, ack.proxy), (140, False))
        self.mpa1.send(pbu(3, b"x@lmm.test", mh.LocalAddress("2001:db8:99::9", 64)))
        self.assertEqual(self.mpa1.receive()[0].status,  # type: ignore[union-attr]
                         mh.Status.NOT_HOME_SUBNET)
        # Old sequence numbers from the same MPA are refused.
        self.mpa1.send(pbu(100, b"y@lmm.test", mh.LocalAddress("2001:db8:1::10", 64)))
        self.assertEqual(self.mpa1.receive()[0].status, 0)  # type: ignore[union-attr]
        self.mpa1.send(pbu(99, b"y@lmm.test", mh.LocalAddress("2001:db8:1::10", 64)))
        ack, _ = self.mpa1.receive()
        assert isinstance(ack, mh.BindingAck)
        self.assertEqual((ack.status, ack.sequence),
                         (mh.Status.SEQUENCE_NUMBER_OUT_OF_WINDOW, 100))
        stranger = MPAClient(self.socketIn(self.mpaNs, proto=mh.IPPROTO_MH), STRANGER)
        stranger.send(pbu(1, b"z@lmm.test", mh.LocalAddress("2001:db8:1::11", 64)))
        self.assertEqual(stranger.receive()[0].status, 140)  # type: ignore[union-attr]

    def test_cacheFull(self) -> None:
        """Issue 13, part 6: lmap.max_bindings (3 here) bounds the Binding Cache;
        a new binding past it gets 130 and a log line; the others are served."""
        for n in range(1, 5):
            self.mpa1.send(pbu(n, f"ms{n}@lmm.test".encode(), mh.LocalAddress("::", 64)))
            ack, _ = self.mpa1.receive()
            assert isinstance(ack, mh.BindingAck)
            self.assertEqual(ack.status, 0 if n <= 3 else mh.Status.INSUFFICIENT_RESOURCES)
        self.mpa1.send(pbu(5, b"ms1@lmm.test", mh.LocalAddress("::", 64)))
        self.assertEqual(self.mpa1.receive()[0].status, 0)  # type: ignore[union-attr]
        self.assertIn("the Binding Cache is full (3 bindings, lmap.max_bindings)",
                      self.daemon.log())

    def test_badInputCountedNotFatal(self) -> None:
        good = mh.encode(pbu(1, b"ms1@lmm.test", mh.LocalAddress("2001:db8:1::5", 64)))
        self.mpa1.send(good[:10])                      # truncated
        self.mpa1.send(good[:1] + b"\x09" + good[2:])  # Header Len past the end
        unknown = bytearray(good)
        unknown[2] = 42                                # an MH type nobody knows
        self.mpa1.send(bytes(unknown))
        error, _ = self.mpa1.receive()
        assert isinstance(error, mh.BindingError)
        self.assertEqual(error.status, mh.BindingErrorStatus.UNRECOGNIZED_MH_TYPE)
        self.mpa1.send(good)
        self.assertEqual(self.mpa1.receive()[0].status, 0)  # type: ignore[union-attr]
        log = self.daemon.log()
        self.assertIn("malformed Mobility Header", log)
        self.assertIn("truncated", log)


class RecordingPort:
    """The service's Mobility Header port, keeping what is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str]] = []

    def send(self, data: bytes, destination: str) -> None:
        self.sent.append((data, destination))


class TunnelFailureServiceTests(SynchronousTestCase):
    """A binding whose tunnel the backend refuses: the held-back PBA with status
    0 is never sent, the anchor's PBA with 130 is, and the entry is gone."""

    def makeService(self, how: str) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        anchor = LocalMobilityAnchor(LMAP, [IPv6Network(LNP)], [IPv6Network("fd00:135::/64")],
                                     maxLifetime=3600, profile=mh.DRAFT,
                                     revocationTimeout=1.0, revocationRetries=3)
        self.plane = RefusingPlane(how)
        self.service = LMAPService(anchor, self.plane, LMAP, mh.DRAFT, self.clock)
        self.port = RecordingPort()
        self.service.signaling.port = cast(Any, self.port)

    def register(self, source: str, sequence: int, nai: bytes = b"ms1@lmm.test") -> None:
        message = pbu(sequence, nai, mh.LocalAddress("2001:db8:1::5", 64))
        self.service.datagramReceived(mh.encode(message, mh.DRAFT), source)

    def sent(self) -> list[tuple[mh.Message, str]]:
        """What went out since the last call, decoded by lmm."""
        sent = [(mh.decode(data, mh.DRAFT), destination) for data, destination in self.port.sent]
        self.port.sent.clear()
        return sent

    def assertRefused(self, sent: tuple[mh.Message, str], sequence: int, mpa: str) -> None:
        ack, destination = sent
        self.assertEqual(destination, mpa)
        assert isinstance(ack, mh.BindingAck)
        self.assertEqual((ack.status, ack.sequence, ack.lifetime, ack.proxy),
                         (mh.Status.INSUFFICIENT_RESOURCES, sequence, 0, True))

    def assertRefusedNew(self, how: str) -> None:
        self.makeService(how)
        self.plane.refused.add(MPA1)
        self.register(MPA1, 7)
        [sent] = self.sent()
        self.assertRefused(sent, 7, MPA1)
        self.assertEqual(self.service.describeBindings(), [])
        self.assertEqual(list(self.plane.bindings()), [])
        self.assertEqual(self.service.anchor.counters["binding.tunnel-failed"], 1)
        # Once the backend can carry it, the next PBU is a new binding.
        self.plane.refused.clear()
        self.register(MPA1, 8)
        [(ack, destination)] = self.sent()
        assert isinstance(ack, mh.BindingAck)
        self.assertEqual((ack.status, ack.sequence, destination), (0, 8, MPA1))
        self.assertEqual(len(list(self.plane.bindings())), 1)

    def test_addBindingRaises(self) -> None:
        self.assertRefusedNew("raise")

    def test_addBindingFailedDeferred(self) -> None:
        self.assertRefusedNew("failed")

    def test_deferredFailsLater(self) -> None:
        """Nothing is sent while the tunnel is pending; its failure sends the 130."""
        self.makeService("later")
        self.plane.refused.add(MPA1)
        self.register(MPA1, 7)
        self.assertEqual(self.sent(), [])
        self.assertEqual(len(self.service.describeBindings()), 1)
        [(d, _)] = self.plane.waiting
        d.errback(DataPlaneError("gave up"))
        [sent] = self.sent()
        self.assertRefused(sent, 7, MPA1)
        self.assertEqual(self.service.describeBindings(), [])

    def test_deferredFiresLater(self) -> None:
        """The contrast: a tunnel that comes up sends the held-back PBA with 0."""
        self.makeService("later")
        self.plane.refused.add(MPA1)
        self.register(MPA1, 7)
        [(d, _)] = self.plane.waiting
        d.callback(None)
        [(ack, destination)] = self.sent()
        assert isinstance(ack, mh.BindingAck)
        self.assertEqual((ack.status, ack.sequence, destination), (0, 7, MPA1))
        self.assertEqual(len(self.service.describeBindings()), 1)

    def test_handoverRefused(self) -> None:
        """A handover to an MPA the backend cannot reach: the new MPA gets 130 (and
        never 0), the previous one its revocation, and no tunnel is left."""
        for how in ("raise", "later"):
            self.makeService(how)
            self.register(MPA1, 10)
            [(ack, _)] = self.sent()
            self.assertEqual(ack.status, 0)  # type: ignore[union-attr]
            self.plane.refused.add(MPA2)
            self.register(MPA2, 1)
            for d, _ in self.plane.waiting:
                d.errback(DataPlaneError("gave up"))
            refused, revocation = self.sent()
            self.assertRefused(refused, 1, MPA2)
            bri, destination = revocation
            assert isinstance(bri, mh.BindingRevocationIndication)
            self.assertEqual(destination, MPA1)
            self.assertEqual(bri.option(mh.MobileNodeIdentifier),
                             mh.MobileNodeIdentifier(b"ms1@lmm.test"))
            self.assertEqual(self.service.describeBindings(), [])
            self.assertEqual(list(self.plane.bindings()), [])


class TimerKeptArmedTests(SynchronousTestCase):
    """An exception while the LMAP service carries out a tick's actions (a bug,
    or a backend that raises what it should not) does not leave the timer
    unarmed: the next deadline still comes (issue 13: a revocation once went
    unsent for 100 s)."""

    def test_tickRaises(self) -> None:
        clock = Clock()
        clock.advance(1000)
        anchor = LocalMobilityAnchor(LMAP, [IPv6Network(LNP)], [IPv6Network("fd00:135::/64")],
                                     maxLifetime=3600, profile=mh.DRAFT,
                                     revocationTimeout=1.0, revocationRetries=3)
        service = LMAPService(anchor, RecordingDataPlane(), LMAP, mh.DRAFT, clock)
        port = RecordingPort()
        service.signaling.port = cast(Any, port)
        for source in (MPA1, MPA2):  # a handover: a revocation to MPA1, retransmitted
            service.datagramReceived(
                mh.encode(pbu(1, b"ms1@lmm.test", mh.LocalAddress("2001:db8:1::5", 64))),
                source)
        port.sent.clear()
        original = service.perform
        calls = []

        def failingOnce(actions: list[Any]) -> None:
            calls.append(actions)
            if len(calls) == 1:
                raise RuntimeError("a bug")
            original(actions)

        service.perform = failingOnce  # type: ignore[method-assign]
        with self.assertRaises(RuntimeError):
            clock.advance(1.0)  # the first retransmission's tick: its perform raises
        clock.advance(2.0)  # the next one still comes
        self.assertEqual(len(calls), 2)
        self.assertTrue(any(isinstance(mh.decode(data), mh.BindingRevocationIndication)
                            for data, _ in port.sent))


class TimerPerPBUTests(SynchronousTestCase):
    """After each PBU the service's timer moves only for a deadline earlier
    than the one it is set for (L{LocalMobilityAnchor.earliestFiled}): a
    refresh leaves the reactor alone; the timer then fires early, finds
    nothing due, and is set for the refreshed expiry."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.anchor = LocalMobilityAnchor(LMAP, [IPv6Network(LNP)],
                                          [IPv6Network("fd00:135::/64")], maxLifetime=3600,
                                          profile=mh.DRAFT, revocationTimeout=1.0,
                                          revocationRetries=3)
        self.service = LMAPService(self.anchor, RecordingDataPlane(), LMAP, mh.DRAFT,
                                   self.clock)
        self.port = RecordingPort()
        self.service.signaling.port = cast(Any, self.port)

    def register(self, source: str, sequence: int, lifetime: int = 400) -> None:
        self.service.datagramReceived(mh.encode(pbu(
            sequence, b"ms1@lmm.test", mh.LocalAddress("2001:db8:1::5", 64),
            lifetime=lifetime)), source)
        acks = [m for m in (mh.decode(data) for data, _ in self.port.sent)
                if isinstance(m, mh.BindingAck)]
        self.port.sent.clear()
        self.assertEqual([ack.status for ack in acks], [0])

    def timers(self) -> list[float]:
        return sorted(call.getTime() for call in self.clock.getDelayedCalls())

    def test_refreshLeavesTheTimer(self) -> None:
        self.assertEqual(self.timers(), [])
        self.register(MPA1, 1)
        self.assertEqual(self.timers(), [1400.0])
        armed = self.clock.getDelayedCalls()[0]
        self.clock.advance(100)
        self.register(MPA1, 2)  # expires at 1500 now: later, the timer stays
        self.assertEqual(self.clock.getDelayedCalls(), [armed])
        self.clock.advance(300)  # 1400: early; the binding stays, the timer follows it
        self.assertEqual(len(self.anchor.store), 1)
        self.assertEqual(self.timers(), [1500.0])
        self.register(MPA1, 3, lifetime=10)  # earlier: the timer moves to it
        entry = self.anchor.store.get(b"ms1@lmm.test")
        assert entry is not None
        self.assertLess(entry.expires, 1500.0)
        self.assertEqual(self.timers(), [entry.expires])
        self.clock.advance(entry.expires - self.clock.seconds())
        self.assertEqual(len(self.anchor.store), 0)
        self.assertEqual(self.timers(), [])

    def test_revocationArmsTheTimer(self) -> None:
        """A handover's revocation, due before any expiry, sets the timer."""
        self.register(MPA1, 1)
        self.register(MPA2, 2)
        self.assertEqual(self.timers()[0], 1001.0)  # revocationTimeout after the handover
        self.port.sent.clear()
        self.clock.advance(1.0)
        self.assertTrue(any(isinstance(mh.decode(data), mh.BindingRevocationIndication)
                            for data, _ in self.port.sent))


class ActionFaultServiceTests(SynchronousTestCase):
    """Issue 13, part 4, at the LMAP service: a handover (a new tunnel, the old
    one removed, the PBA, the revocation to the previous MPA, the notes) with
    one kind of action raising each time. Every other action is carried out,
    the failure counted, and the revocation's retransmission timer still runs;
    the same with the persistent store, whose PBAs wait for the turn's commit."""

    def run_(self, failing: str, store: str) -> tuple[LMAPService, RecordingPort, Clock]:
        from lmm.lmap.store import SQLiteBindingCache

        clock = Clock()
        clock.advance(1000)
        cache = None
        if store == "sqlite":
            cache = SQLiteBindingCache(os.path.join(self.mktemp(), "lmap.sqlite"))
            self.addCleanup(cache.close)
        anchor = LocalMobilityAnchor(LMAP, [IPv6Network(LNP)], [IPv6Network("fd00:135::/64")],
                                     maxLifetime=3600, profile=mh.DRAFT, store=cache,
                                     revocationTimeout=1.0, revocationRetries=3)

        class Faulty(RecordingDataPlane):
            def removeBinding(self, binding: Any) -> None:  # type: ignore[override]
                if failing == "RemoveTunnel":
                    raise RuntimeError("the backend broke")
                super().removeBinding(binding)

        service = LMAPService(anchor, Faulty(), LMAP, mh.DRAFT, clock)
        port = RecordingPort()
        service.signaling.port = cast(Any, port)
        message = pbu(1, b"ms1@lmm.test", mh.LocalAddress("2001:db8:1::5", 64))
        service.datagramReceived(mh.encode(message), MPA1)
        clock.advance(0)
        if failing == "SendMessage":
            def send(data: bytes, destination: str) -> None:
                if destination == MPA2:
                    raise RuntimeError("the port broke")
                port.sent.append((data, destination))
            port.send = send  # type: ignore[method-assign]
        elif failing == "Note":
            def note(note: Any) -> None:
                raise RuntimeError("the log broke")
            service.journal.note = note  # type: ignore[method-assign]
        port.sent.clear()
        if failing == "RemoveTunnel":
            # A handover keeping the address replaces the tunnel, removing
            # none: one with a new address removes the old address's.
            message = pbu(1, b"ms1@lmm.test", mh.LocalAddress("2001:db8:1::6", 64))
        service.datagramReceived(mh.encode(message), MPA2)
        clock.advance(0)  # the turn's commit
        return service, port, clock

    def test_everyKind(self) -> None:
        for store in ("memory", "sqlite"):
            for failing in ("SendMessage", "RemoveTunnel", "Note"):
                service, port, clock = self.run_(failing, store)
                what = f"{failing} failing, {store} store"
                kinds = [(type(mh.decode(data)).__name__, destination)
                         for data, destination in port.sent]
                expected = [("BindingAck", MPA2), ("BindingRevocationIndication", MPA1)]
                if failing == "SendMessage":
                    expected = expected[1:]
                self.assertEqual(kinds, expected, what)
                self.assertGreaterEqual(service.counters[f"action.failed.{failing}"], 1, what)
                self.assertEqual(service.describeBindings()[0]["careOfAddress"], MPA2, what)
                self.flushLoggedErrors(RuntimeError)
                # The revocation is retransmitted: the timer survived.
                port.sent.clear()
                clock.advance(1.0)
                self.assertEqual([type(mh.decode(d)).__name__ for d, _ in port.sent],
                                 ["BindingRevocationIndication"], what)
