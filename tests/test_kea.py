"""
The relay core against a real Kea DHCPv6 server (L{lmm.lab.kea}).

Two MPA namespaces and a server namespace share a backbone bridge (in the
server's namespace, which holds the server's address). In each MPA namespace a
UDP socket bound to port 547 stands for the MPA's relay port: it sends what
L{RelayAgent.fromClient} makes and feeds what comes back to
L{RelayAgent.fromServer}. The client messages are built with L{lmm.dhcp6}, as
an unmodified host's DHCPv6 client would send them (Client Identifier, IA_NA,
Elapsed Time; no Rapid Commit). Kea has two subnets, one per Local Network
Prefix, and picks one from the Relay-Forward's link-address.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from lmm import dhcp6
from lmm.actions import Note
from lmm.dhcp6 import (
    IANA,
    ClientId,
    ElapsedTime,
    IAAddress,
    Message,
    MessageType,
    OptionRequest,
    ServerId,
)
from lmm.lab import kea
from lmm.lab.netns import Namespace, bridge, link
from lmm.lab.processes import readText
from lmm.mpa.relay import (
    AddressAssigned,
    AddressReleased,
    RelayAction,
    RelayAgent,
    SendToClient,
    SendToServer,
)
from lmm.testing.mixins import NetnsTestMixin

KEA = "fd00:547::2"
NOBODY = "fd00:547::3"  # on the server's bridge too; nothing listens there
MPA1 = "fd00:547::11"
MPA2 = "fd00:547::12"
LNP1 = IPv6Network("2001:db8:1::/64")
LNP2 = IPv6Network("2001:db8:2::/64")
NO_SUBNET = IPv6Network("2001:db8:9::/64")
POOL1 = (IPv6Address("2001:db8:1::1000"), IPv6Address("2001:db8:1::1fff"))
POOL2 = (IPv6Address("2001:db8:2::1000"), IPv6Address("2001:db8:2::1fff"))
ACCESS = "acc0"  # the MPA's access interface, as the relay names it


def inPool(address: str, pool: tuple[IPv6Address, IPv6Address]) -> bool:
    return pool[0] <= IPv6Address(address) <= pool[1]


_NAMES_SERVER = (MessageType.REQUEST, MessageType.RENEW, MessageType.RELEASE, MessageType.DECLINE)


class Visitor:
    """A Mobile Station's DHCPv6 client, enough of it to get an address."""

    def __init__(self, mac: str, linkLocal: str, prefix: IPv6Network) -> None:
        self.mac = mac
        self.linkLocal = linkLocal
        self.prefix = prefix
        self.duid = dhcp6.duidLL(mac)
        self.transactionId = int.from_bytes(bytes.fromhex(mac.replace(":", ""))[-3:], "big")
        self.serverId: bytes | None = None
        self.address: str | None = None

    def message(self, msgType: int, withAddress: bool = False) -> bytes:
        self.transactionId = (self.transactionId + 1) & 0xFFFFFF
        addresses: tuple[dhcp6.Option, ...] = ()
        if withAddress and self.address is not None:
            addresses = (IAAddress(self.address, 0, 0),)
        options: list[dhcp6.Option] = [ClientId(self.duid)]
        # RFC 8415 18.2: only these name the server; Kea drops a Rebind that does.
        if self.serverId is not None and msgType in _NAMES_SERVER:
            options.append(ServerId(self.serverId))
        options += [IANA(1, 0, 0, addresses), ElapsedTime(0), OptionRequest((23,))]
        return dhcp6.encode(Message(msgType, self.transactionId, tuple(options)))


class MPA:
    """One MPA's relay: the pure core and its port 547 in a namespace."""

    def __init__(self, test: NetnsTestMixin, namespace: Namespace, address: str,
                 answerTimeout: float = 5.0) -> None:
        self.relay = RelayAgent(answerTimeout=answerTimeout)
        self.sock = test.socketIn(namespace, socket.AF_INET6, socket.SOCK_DGRAM)
        # A relay sends from, and listens on, the server port.
        self.sock.bind((address, dhcp6.SERVER_PORT))

    def send(self, visitor: Visitor, payload: bytes, server: str = KEA,
             prefix: IPv6Network | None = None) -> None:
        actions = self.relay.fromClient(
            visitor.mac, ACCESS, visitor.linkLocal, payload,
            visitor.prefix if prefix is None else prefix, server, time.monotonic(),
        )
        [action] = actions
        assert isinstance(action, SendToServer), actions
        self.sock.sendto(action.payload, (action.server, dhcp6.SERVER_PORT))

    def receive(self, timeout: float = 3.0) -> list[RelayAction]:
        self.sock.settimeout(timeout)
        data, source = self.sock.recvfrom(65535)
        self.assertFromServerPort(source)
        return self.relay.fromServer(data, source[0], time.monotonic())

    @staticmethod
    def assertFromServerPort(source: tuple[str, int, int, int]) -> None:
        assert source[1] == dhcp6.SERVER_PORT, source

    def exchange(self, visitor: Visitor, msgType: int, withAddress: bool = False,
                 **kwargs: object) -> tuple[list[RelayAction], Message]:
        """Relay one client message, return the relay's actions for the answer
        and the answer as the client would receive it."""
        self.send(visitor, visitor.message(msgType, withAddress), **kwargs)  # type: ignore[arg-type]
        actions = self.receive()
        toClient = [a for a in actions if isinstance(a, SendToClient)]
        assert len(toClient) == 1, actions
        assert toClient[0].visitorKey == visitor.mac
        assert toClient[0].clientAddress == visitor.linkLocal
        assert toClient[0].interface == ACCESS
        answer = dhcp6.decode(toClient[0].payload)
        assert isinstance(answer, Message)
        assert answer.transactionId == visitor.transactionId
        return actions, answer


def assigned(actions: list[RelayAction]) -> list[AddressAssigned]:
    return [a for a in actions if isinstance(a, AddressAssigned)]


class KeaRelayTests(NetnsTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        server = self.makeNamespace("dhcp")
        mpa1 = self.makeNamespace("mpa")
        mpa2 = self.makeNamespace("mpa")
        backbone = bridge(server, [(mpa1, MPA1), (mpa2, MPA2)], address=KEA)
        server.ip("address", "add", f"{NOBODY}/64", "dev", backbone.name, "nodad")
        started = time.monotonic()
        self.kea = kea.startFor(self, server, backbone.name, KEA)
        self.startTime = time.monotonic() - started
        self.mpa1 = MPA(self, mpa1, MPA1)
        self.mpa2 = MPA(self, mpa2, MPA2)

    def getAddress(self, mpa: MPA, visitor: Visitor) -> AddressAssigned:
        """Solicit, Advertise, Request, Reply through C{mpa}."""
        answered = mpa.relay.counters["server.answered"]
        actions, advertise = mpa.exchange(visitor, MessageType.SOLICIT)
        self.assertEqual(advertise.msgType, MessageType.ADVERTISE)
        self.assertEqual(assigned(actions), [])
        ia = advertise.option(IANA)
        assert ia is not None, advertise
        [offer] = ia.addresses
        serverId = advertise.option(ServerId)
        assert serverId is not None
        visitor.serverId = serverId.duid
        visitor.address = offer.address
        actions, reply = mpa.exchange(visitor, MessageType.REQUEST, withAddress=True)
        self.assertEqual(reply.msgType, MessageType.REPLY)
        [address] = assigned(actions)
        self.assertEqual(address.address, offer.address)
        self.assertEqual(address.visitorKey, visitor.mac)
        self.assertEqual(address.validLifetime, 4000)
        self.assertEqual(mpa.relay.counters["server.answered"], answered + 2)
        self.assertEqual(mpa.relay.pendingCount(), 0)
        return address

    def test_startsFast(self) -> None:
        # DESIGN.md measured 0.07 s; allow for a loaded machine.
        self.assertLess(self.startTime, 2.0)
        self.assertTrue(self.kea.running())

    def test_addressFromTheLNPsPool(self) -> None:
        visitor = Visitor("02:00:5e:10:00:01", "fe80::1", LNP1)
        address = self.getAddress(self.mpa1, visitor)
        self.assertTrue(inPool(address.address, POOL1), address)
        self.assertIn(IPv6Address(address.address), LNP1)
        leases = [row for row in self.kea.leases() if row["address"] == address.address]
        self.assertTrue(leases, self.kea.leases())
        self.assertEqual(leases[-1]["duid"], visitor.duid.hex(":"))

    def test_twoPrefixesTwoPools(self) -> None:
        one = Visitor("02:00:5e:10:00:01", "fe80::1", LNP1)
        two = Visitor("02:00:5e:10:00:02", "fe80::2", LNP2)
        first = self.getAddress(self.mpa1, one)
        second = self.getAddress(self.mpa1, two)
        self.assertTrue(inPool(first.address, POOL1), first)
        self.assertTrue(inPool(second.address, POOL2), second)
        self.assertNotEqual(
            self.mpa1.relay.interfaceIdOf(one.mac), self.mpa1.relay.interfaceIdOf(two.mac)
        )

    def test_renewAfterHandover(self) -> None:
        visitor = Visitor("02:00:5e:10:00:03", "fe80::3", LNP1)
        address = self.getAddress(self.mpa1, visitor)
        # The MS moved to MPA2: a relay that never saw it, another Interface-ID,
        # the same LNP and so the same link-address.
        actions, reply = self.mpa2.exchange(visitor, MessageType.RENEW, withAddress=True)
        self.assertEqual(reply.msgType, MessageType.REPLY)
        self.assertEqual(assigned(actions), [AddressAssigned(visitor.mac, address.address, 4000)])
        self.assertEqual(reply.status, dhcp6.Status.SUCCESS)
        # And a Rebind (the client lost its server) through MPA2 keeps it too.
        actions, reply = self.mpa2.exchange(visitor, MessageType.REBIND, withAddress=True)
        self.assertEqual(assigned(actions), [AddressAssigned(visitor.mac, address.address, 4000)])

    def test_release(self) -> None:
        visitor = Visitor("02:00:5e:10:00:04", "fe80::4", LNP2)
        address = self.getAddress(self.mpa1, visitor)
        actions, reply = self.mpa1.exchange(visitor, MessageType.RELEASE, withAddress=True)
        self.assertEqual(reply.msgType, MessageType.REPLY)
        self.assertIn(AddressReleased(visitor.mac, address.address), actions)
        self.assertEqual(assigned(actions), [])
        self.assertEqual([n for n in actions if isinstance(n, Note)], [])
        # Kea let the lease go: its memfile ends with the lease at lifetime 0.
        rows = [row for row in self.kea.leases() if row["address"] == address.address]
        self.assertEqual(rows[-1]["valid_lifetime"], "0", rows)

    def test_linkAddressInNoSubnet(self) -> None:
        visitor = Visitor("02:00:5e:10:00:05", "fe80::5", NO_SUBNET)
        actions, advertise = self.mpa1.exchange(visitor, MessageType.SOLICIT)
        self.assertEqual(advertise.msgType, MessageType.ADVERTISE)
        self.assertEqual(assigned(actions), [])
        ia = advertise.option(IANA)
        assert ia is not None
        self.assertEqual(ia.addresses, ())
        self.assertEqual(ia.status, dhcp6.Status.NO_ADDRS_AVAIL)
        [note] = [a for a in actions if isinstance(a, Note)]
        self.assertEqual(note.event, "dhcpv6.server-status")
        self.assertEqual(note.fields["status"], "no-addrs-avail")
        self.assertEqual(self.mpa1.relay.counters["server.status.no-addrs-avail"], 1)
        # A Request anyway is refused the same way.
        serverId = advertise.option(ServerId)
        assert serverId is not None
        visitor.serverId = serverId.duid
        actions, reply = self.mpa1.exchange(visitor, MessageType.REQUEST)
        self.assertEqual(reply.msgType, MessageType.REPLY)
        self.assertEqual(assigned(actions), [])
        self.assertEqual(self.mpa1.relay.counters["server.status.no-addrs-avail"], 2)

    def test_serverNotAnswering(self) -> None:
        mpa = self.mpa2
        mpa.relay = RelayAgent(answerTimeout=0.3)
        visitor = Visitor("02:00:5e:10:00:06", "fe80::6", LNP1)
        mpa.send(visitor, visitor.message(MessageType.SOLICIT), server=NOBODY)
        sentAt = time.monotonic()
        self.assertRaises(TimeoutError, mpa.receive, 0.5)
        deadline = mpa.relay.nextDeadline()
        assert deadline is not None
        self.assertLessEqual(deadline, time.monotonic())
        self.assertGreaterEqual(deadline, sentAt)
        [note] = mpa.relay.tick(time.monotonic())
        assert isinstance(note, Note)
        self.assertEqual(note.event, "dhcpv6.no-answer")
        self.assertEqual(note.fields["server"], NOBODY)
        self.assertEqual(mpa.relay.counters["server.no-answer"], 1)
        self.assertIsNone(mpa.relay.nextDeadline())
        # The relay goes on: the same visitor through the real server works.
        address = self.getAddress(mpa, visitor)
        self.assertTrue(inPool(address.address, POOL1))


MS_MAC = "02:00:5e:10:00:99"
MPA_ACCESS = "fe80::1"


class RealClientTests(NetnsTestMixin, SynchronousTestCase):
    """
    An unmodified DHCPv6 client (ISC dhclient) on an MS's link: its Solicit to
    ff02::1:2 reaches the MPA's port 547, the relay core carries it to Kea and
    the answers back, until dhclient is bound; then dhclient -r releases.
    """

    def setUp(self) -> None:
        reason = kea.dhclientMissingReason()
        if reason is not None:
            raise SkipTest(reason)
        server = self.makeNamespace("dhcp")
        mpa = self.makeNamespace("mpa")
        self.ms = self.makeNamespace("ms")
        backbone = bridge(server, [(mpa, MPA1)], address=KEA)
        self.kea = kea.startFor(self, server, backbone.name, KEA)
        self.access, self.msLink = link(mpa, self.ms, None, None)
        self.ms.ip("link", "set", self.msLink, "address", MS_MAC)
        mpa.ip("address", "add", f"{MPA_ACCESS}/64", "dev", self.access, "nodad")
        self.accessIndex = mpa.interfaceIndex(self.access)
        # One socket for both sides, as the MPA's: port 547 on every address,
        # and the relays' group on the access link.
        self.sock = self.socketIn(mpa, socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::", dhcp6.SERVER_PORT))
        group = socket.inet_pton(socket.AF_INET6, dhcp6.ALL_DHCP_RELAY_AGENTS_AND_SERVERS)
        self.sock.setsockopt(
            socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
            group + struct.pack("@I", self.accessIndex),
        )
        self.relay = RelayAgent()
        self.actions: list[RelayAction] = []
        self.directory = Path(tempfile.mkdtemp(prefix="lmm-dhclient-"))
        self.addCleanup(shutil.rmtree, self.directory, True)

    def dhclient(self, *extra: str) -> kea.DHCPClient:
        """The stock client on the MS's link (C{extra}: more of its options)."""
        client = kea.startClient(self.ms, self.msLink, self.directory, extra)
        self.addCleanup(client.stop)
        return client

    def pump(self, until: Callable[[], bool], timeout: float = 15.0) -> None:
        """Be the MPA's relay until C{until()} (or fail after C{timeout})."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                log = readText(self.directory / "dhclient.out")
                self.fail(f"not done after {timeout} s; relay counters "
                          f"{dict(self.relay.counters)}; dhclient said:\n{log[-2000:]}")
            self.sock.settimeout(min(left, 0.05))
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            now = time.monotonic()
            if source[0].startswith("fe80:") and source[3] == self.accessIndex:
                actions = self.relay.fromClient(
                    MS_MAC, self.access, source[0], data, LNP1, KEA, now
                )
            else:
                actions = self.relay.fromServer(data, source[0], now)
            self.actions += actions
            for action in actions:
                if isinstance(action, SendToServer):
                    self.sock.sendto(action.payload, (action.server, dhcp6.SERVER_PORT))
                elif isinstance(action, SendToClient):
                    self.sock.sendto(
                        action.payload,
                        (action.clientAddress, dhcp6.CLIENT_PORT, 0, self.accessIndex),
                    )

    def bound(self, client: kea.DHCPClient) -> dict[str, str] | None:
        for event in client.events():
            if event.get("reason") == "BOUND6" and event.get("new_ip6_address"):
                return event
        return None

    def test_dhclientGetsAndReleasesAnAddress(self) -> None:
        client = self.dhclient()
        self.pump(lambda: self.bound(client) is not None or not client.running())
        event = self.bound(client)
        assert event is not None, client.events()
        address = event["new_ip6_address"]
        self.assertTrue(inPool(address, POOL1), address)
        self.assertEqual(assigned(self.actions), [AddressAssigned(MS_MAC, address, 4000)])
        self.assertEqual(self.relay.counters["client.solicit"], 1)
        self.assertEqual(self.relay.counters["client.request"], 1)
        # dhclient -r: stops the running client and releases its address.
        releaser = self.dhclient("-r")
        self.pump(lambda: AddressReleased(MS_MAC, address) in self.actions
                  and not releaser.running())
        self.assertEqual(self.relay.counters["client.release"], 1)
        self.assertEqual(self.relay.counters["server.no-answer"], 0)
        rows = [row for row in self.kea.leases() if row["address"] == address]
        self.assertEqual(rows[-1]["valid_lifetime"], "0", rows)


SAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "etc" / "kea" / "kea-dhcp6.conf"


class SampleConfigTests(NetnsTestMixin, SynchronousTestCase):
    def test_sampleConfigIsValid(self) -> None:
        """etc/kea/kea-dhcp6.conf passes Kea's own check where its interface
        has its address (Kea checks that too)."""
        reason = kea.missingReason()
        if reason is not None:
            raise SkipTest(reason)
        text = SAMPLE_CONFIG.read_text()
        self.assertIn('"eth0/2001:db8:ff::53"', text)
        backbone = self.makeNamespace("kea")
        other = self.makeNamespace("peer")
        link(backbone, other, "2001:db8:ff::53", None, nameA="eth0")
        directory = tempfile.mkdtemp(prefix="lmm-kea-check-")
        self.addCleanup(shutil.rmtree, directory, True)
        env = dict(os.environ, KEA_PIDFILE_DIR=directory, KEA_LOCKFILE_DIR=directory)
        # Its data-directory, /var/lib/kea, for the check alone (tests.test_samples).
        os.makedirs(os.path.join(directory, "var-lib", "kea"))
        result = subprocess.run(
            backbone.execArgv(["sh", "-c", 'mount --bind "$0" /var/lib && exec "$@"',
                               os.path.join(directory, "var-lib"),
                               kea.KEA_DHCP6, "-t", str(SAMPLE_CONFIG)]),
            capture_output=True, text=True, env=env, timeout=30,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("2001:db8:1::/64", result.stdout)
        self.assertIn("2001:db8:2::/64", result.stdout)


class KeaHelperTests(NetnsTestMixin, SynchronousTestCase):
    """L{lmm.lab.kea} itself: nothing is left behind."""

    def setUp(self) -> None:
        reason = kea.missingReason()
        if reason is not None:
            raise SkipTest(reason)
        self.namespace = self.makeNamespace("kea")
        self.peer = self.makeNamespace("peer")
        self.interface, _ = link(self.namespace, self.peer, KEA, MPA1)

    def test_stop(self) -> None:
        server = kea.start(self.namespace, self.interface, KEA)
        self.addCleanup(server.stop)
        self.assertTrue(server.running())
        self.assertTrue(server.configPath.exists())
        self.assertIn(f"{self.interface}/{KEA}", server.configPath.read_text())
        server.stop()
        self.assertFalse(server.running())
        self.assertFalse(server.directory.exists())
        self.assertEqual(self.namespace.pids(), [])
        server.stop()  # again: nothing

    def test_failedStartLeavesNothing(self) -> None:
        parent = Path(tempfile.mkdtemp(prefix="lmm-kea-test-"))
        self.addCleanup(shutil.rmtree, parent, True)
        # Not an address of the interface: Kea rejects its configuration.
        e = self.assertRaises(
            RuntimeError, kea.start, self.namespace, self.interface, "fd00:547::77",
            parent=parent,
        )
        self.assertIn("exited", str(e))
        self.assertIn("fd00:547::77", str(e))
        self.assertEqual(list(parent.iterdir()), [])
        self.assertEqual(self.namespace.pids(), [])
