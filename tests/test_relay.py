"""
Tests for L{lmm.mpa.relay}: the MPA's DHCPv6 relay agent as a pure core, fed
bytes and a clock, every branch of its rules. Messages are built with
L{lmm.dhcp6}; the Relay-Forwards it makes are also checked with scapy.
"""

from __future__ import annotations

from ipaddress import IPv6Network

import scapy.layers.dhcp6 as s
from twisted.trial.unittest import SynchronousTestCase

from lmm import dhcp6
from lmm.actions import Note
from lmm.dhcp6 import (
    IANA,
    ClientId,
    ElapsedTime,
    IAAddress,
    Message,
    MessageType,
    RelayMessage,
    ServerId,
    StatusCode,
)
from lmm.mpa.relay import (
    AddressAssigned,
    AddressReleased,
    RelayAction,
    RelayAgent,
    SendToClient,
    SendToServer,
    linkAddressFor,
)

EPOCH = b"\xee\x01\x02\x03"
MAC = "02:00:5e:10:00:01"
OTHER = "02:00:5e:10:00:02"
PEER = "fe80::5eff:fe10:1"
LNP = "2001:db8:1::/64"
LINK = "2001:db8:1::"
SERVER = "fd00:547::2"
DUID = dhcp6.duidLL(MAC)
SERVER_DUID = bytes.fromhex("0002000080d9") + b"lmm-test"
IN = "2001:db8:1::1000"
OUT = "2001:db8:9::1000"


def client(msgType: int, transactionId: int = 0x111111, *addresses: str) -> bytes:
    ia = IANA(1, 0, 0, tuple(IAAddress(a, 0, 0) for a in addresses))
    return dhcp6.encode(Message(msgType, transactionId, (ClientId(DUID), ia, ElapsedTime(0))))


def server(
    msgType: int = MessageType.REPLY,
    transactionId: int = 0x111111,
    addresses: tuple[tuple[str, int], ...] = ((IN, 4000),),
    iaStatus: StatusCode | None = None,
    topStatus: StatusCode | None = None,
    addressStatus: StatusCode | None = None,
) -> bytes:
    sub: tuple[dhcp6.Option, ...] = tuple(
        IAAddress(a, v // 2, v, () if addressStatus is None else (addressStatus,))
        for a, v in addresses
    )
    if iaStatus is not None:
        sub += (iaStatus,)
    options: tuple[dhcp6.Option, ...] = (ClientId(DUID), ServerId(SERVER_DUID))
    if topStatus is not None:
        options += (topStatus,)
    options += (IANA(1, 1000, 2000, sub),)
    return dhcp6.encode(Message(msgType, transactionId, options))


class RelayTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.relay = RelayAgent(answerTimeout=5.0, epoch=EPOCH)

    def forward(
        self,
        payload: bytes,
        key: str = MAC,
        interface: str = "eth1",
        peer: str = PEER,
        prefix: IPv6Network | str | None = LNP,
        to: str = SERVER,
        now: float = 0.0,
    ) -> list[RelayAction]:
        return self.relay.fromClient(key, interface, peer, payload, prefix, to, now)

    def relayed(self, payload: bytes, key: str = MAC, **kwargs: object) -> RelayMessage:
        """Relay C{payload} and return the Relay-Forward sent."""
        actions = self.forward(payload, key, **kwargs)  # type: ignore[arg-type]
        self.assertEqual(len(actions), 1, actions)
        action = actions[0]
        assert isinstance(action, SendToServer)
        message = dhcp6.decode(action.payload)
        assert isinstance(message, RelayMessage)
        return message

    def answer(
        self,
        inner: bytes,
        key: str = MAC,
        source: str = SERVER,
        peer: str = PEER,
        now: float = 1.0,
        interfaceId: bytes | None = None,
    ) -> list[RelayAction]:
        if interfaceId is None:
            interfaceId = self.relay.interfaceIdOf(key)
        reply = dhcp6.RelayReply(LINK, peer, inner, interfaceId)
        return self.relay.fromServer(dhcp6.encode(reply), source, now)

    def counted(self, *keys: str) -> None:
        for key in keys:
            self.assertTrue(self.relay.counters[key] >= 1, f"{key}: {self.relay.counters}")

    def notes(self, actions: list[RelayAction]) -> list[Note]:
        return [a for a in actions if isinstance(a, Note)]


class LinkAddressTests(SynchronousTestCase):
    def test_subnetRouterAnycast(self) -> None:
        self.assertEqual(linkAddressFor(IPv6Network("2001:db8:1::/64")), "2001:db8:1::")
        self.assertEqual(linkAddressFor(IPv6Network("2001:db8:7700::/40")), "2001:db8:7700::")
        self.assertEqual(linkAddressFor(IPv6Network("2001:db8::5/128")), "2001:db8::5")


class FromClientTests(RelayTestCase):
    def test_relayForward(self) -> None:
        payload = client(MessageType.SOLICIT)
        actions = self.forward(payload)
        self.assertEqual(len(actions), 1)
        action = actions[0]
        assert isinstance(action, SendToServer)
        self.assertEqual(action.server, SERVER)
        forward = dhcp6.decode(action.payload)
        assert isinstance(forward, RelayMessage)
        self.assertEqual(forward.msgType, MessageType.RELAY_FORW)
        self.assertEqual(forward.hopCount, 0)
        self.assertEqual(forward.linkAddress, LINK)
        self.assertEqual(forward.peerAddress, PEER)
        self.assertEqual(forward.interfaceId, EPOCH + b"\x00\x00\x00\x01")
        self.assertEqual(forward.relayed, payload)  # byte for byte
        self.assertEqual(self.relay.interfaceIdOf(MAC), forward.interfaceId)
        self.counted("client.relayed", "client.solicit")
        self.assertEqual(self.relay.pendingCount(), 1)

    def test_scapyReadsTheRelayForward(self) -> None:
        action = self.forward(client(MessageType.REQUEST))[0]
        assert isinstance(action, SendToServer)
        packet = s.DHCP6_RelayForward(action.payload)
        self.assertEqual((packet.hopcount, packet.linkaddr, packet.peeraddr), (0, LINK, PEER))
        self.assertEqual(packet[s.DHCP6OptIfaceId].ifaceid, EPOCH + b"\x00\x00\x00\x01")
        self.assertIsInstance(packet[s.DHCP6OptRelayMsg].message, s.DHCP6_Request)

    def test_everyClientType(self) -> None:
        for number, msgType in enumerate(sorted(dhcp6.CLIENT_MESSAGE_TYPES)):
            self.relayed(client(msgType, number))
        self.assertEqual(self.relay.counters["client.relayed"], 8)
        self.counted("client.information-request", "client.decline", "client.rebind")

    def test_notRelayed(self) -> None:
        relayForward = dhcp6.encode(dhcp6.RelayForward(LINK, PEER, client(1)))
        for payload, name in (
            (server(MessageType.ADVERTISE), "advertise"),
            (server(MessageType.REPLY), "reply"),
            (dhcp6.encode(Message(MessageType.RECONFIGURE, 0)), "reconfigure"),
            (relayForward, "relay-forw"),
            (dhcp6.encode(Message(200, 1)), "200"),
        ):
            self.assertEqual(self.forward(payload), [])
            self.counted("client.not-relayed." + name)
        self.assertEqual(self.relay.counters["client.relayed"], 0)
        self.assertIsNone(self.relay.interfaceIdOf(MAC))

    def test_malformed(self) -> None:
        self.assertEqual(self.forward(b"\x01\x00"), [])
        self.assertEqual(self.forward(b"\x01\x00\x00\x01\x00\x01\x00\x09"), [])
        self.counted("client.malformed.truncated", "client.malformed.option-overrun")

    def test_noPrefix(self) -> None:
        self.assertEqual(self.forward(client(1), prefix=None), [])
        self.counted("client.no-prefix")

    def test_prefixAsText(self) -> None:
        forward = self.relayed(client(1), prefix="2001:db8:5::77/64")
        self.assertEqual(forward.linkAddress, "2001:db8:5::")

    def test_prefixAsNetwork(self) -> None:
        forward = self.relayed(client(1), prefix=IPv6Network("2001:db8:6::/48"))
        self.assertEqual(forward.linkAddress, "2001:db8:6::")

    def test_badAddresses(self) -> None:
        for peer, prefix in (
            ("not an address", LNP),
            ("ff02::1", LNP),
            ("::", LNP),
            (PEER, "2001:db8::/200"),
        ):
            self.assertEqual(self.forward(client(1), peer=peer, prefix=prefix), [])
        self.assertEqual(self.relay.counters["client.bad-address"], 4)

    def test_scopedClientAddress(self) -> None:
        forward = self.relayed(client(1), peer="FE80::5EFF:FE10:1%eth1")
        self.assertEqual(forward.peerAddress, PEER)

    def test_badServer(self) -> None:
        self.assertEqual(self.forward(client(1), to="dhcp.example"), [])
        self.counted("client.bad-server")

    def test_serverCanonical(self) -> None:
        action = self.forward(client(1), to="FD00:547:0::2")[0]
        assert isinstance(action, SendToServer)
        self.assertEqual(action.server, SERVER)

    def test_oneInterfaceIdPerVisitor(self) -> None:
        first = self.relayed(client(1, 1)).interfaceId
        again = self.relayed(client(3, 2)).interfaceId
        other = self.relayed(client(1, 3), OTHER).interfaceId
        self.assertEqual(first, again)
        self.assertNotEqual(first, other)
        self.assertEqual(other, EPOCH + b"\x00\x00\x00\x02")

    def test_randomEpoch(self) -> None:
        a, b = RelayAgent(), RelayAgent()
        actions = a.fromClient(MAC, "eth1", PEER, client(1), LNP, SERVER, 0)
        actions += b.fromClient(MAC, "eth1", PEER, client(1), LNP, SERVER, 0)
        self.assertEqual(len(actions), 2)
        ids = [a.interfaceIdOf(MAC), b.interfaceIdOf(MAC)]
        self.assertEqual([len(i or b"") for i in ids], [8, 8])
        self.assertNotEqual(ids[0], ids[1])  # 1 in 2**32 to fail

    def test_badEpoch(self) -> None:
        self.assertRaises(ValueError, RelayAgent, epoch=b"\x00")

    def test_retransmission(self) -> None:
        self.forward(client(1), now=0.0)
        self.forward(client(1), now=1.0)
        self.forward(client(1), now=3.0)
        self.assertEqual(self.relay.counters["client.relayed"], 3)
        self.assertEqual(self.relay.counters["client.retransmitted"], 2)
        self.assertEqual(self.relay.pendingCount(), 1)
        # The first transmission's clock keeps running.
        self.assertEqual(self.relay.nextDeadline(), 5.0)

    def test_sameTransactionOtherType(self) -> None:
        self.forward(client(1, 9), now=0.0)
        self.forward(client(3, 9), now=2.0)
        self.assertEqual(self.relay.pendingCount(), 1)
        self.assertEqual(self.relay.nextDeadline(), 7.0)
        self.assertEqual(self.relay.counters["client.retransmitted"], 0)

    def test_pendingFull(self) -> None:
        relay = RelayAgent(maxPending=2, epoch=EPOCH)
        for transactionId in range(3):
            actions = relay.fromClient(MAC, "eth1", PEER, client(1, transactionId), LNP, SERVER, 0)
            self.assertEqual(len(actions), 1)  # relayed all the same
        self.assertEqual(relay.pendingCount(), 2)
        self.assertEqual(relay.counters["pending.full"], 1)


class FromServerTests(RelayTestCase):
    def test_advertise(self) -> None:
        self.forward(client(MessageType.SOLICIT))
        inner = server(MessageType.ADVERTISE)
        actions = self.answer(inner)
        self.assertEqual(actions, [SendToClient("eth1", PEER, MAC, inner)])
        self.counted("server.answered", "server.forwarded", "server.advertise")
        self.assertEqual(self.relay.pendingCount(), 0)
        self.assertIsNone(self.relay.nextDeadline())

    def test_replyAssigns(self) -> None:
        self.forward(client(MessageType.REQUEST))
        inner = server()
        actions = self.answer(inner)
        self.assertEqual(
            actions,
            [SendToClient("eth1", PEER, MAC, inner), AddressAssigned(MAC, IN, 4000)],
        )
        self.counted("server.answered", "server.reply", "address.assigned")

    def test_rapidCommitReplyToSolicit(self) -> None:
        self.forward(client(MessageType.SOLICIT))
        actions = self.answer(server(MessageType.REPLY))
        self.assertIn(AddressAssigned(MAC, IN, 4000), actions)

    def test_unmatchedReplyStillAssigns(self) -> None:
        # Late (after the answer time) or unasked: the server committed the lease.
        self.forward(client(MessageType.RENEW, 1))
        actions = self.answer(server(transactionId=2))
        self.assertIn(AddressAssigned(MAC, IN, 4000), actions)
        self.counted("server.unmatched")
        self.assertEqual(self.relay.pendingCount(), 1)

    def test_severalAddresses(self) -> None:
        self.forward(client(MessageType.REQUEST))
        second = "2001:db8:1::1001"
        actions = self.answer(server(addresses=((IN, 4000), (second, 0xFFFFFFFF))))
        assigned = [a for a in actions if isinstance(a, AddressAssigned)]
        self.assertEqual(
            assigned, [AddressAssigned(MAC, IN, 4000), AddressAssigned(MAC, second, 0xFFFFFFFF)]
        )

    def test_advertiseDoesNotAssign(self) -> None:
        self.forward(client(MessageType.SOLICIT))
        actions = self.answer(server(MessageType.ADVERTISE))
        self.assertFalse([a for a in actions if isinstance(a, AddressAssigned)])

    def test_noAddrsAvailInIA(self) -> None:
        # What Kea answers for a link-address in none of its subnets.
        self.forward(client(MessageType.SOLICIT))
        status = StatusCode(2, "Server could not select subnet for this client")
        inner = server(MessageType.ADVERTISE, addresses=(), iaStatus=status)
        actions = self.answer(inner)
        self.assertEqual(actions[0], SendToClient("eth1", PEER, MAC, inner))
        [note] = self.notes(actions)
        self.assertEqual(note.event, "dhcpv6.server-status")
        self.assertEqual(note.fields["status"], "no-addrs-avail")
        self.assertEqual(note.fields["text"], status.message)
        self.assertEqual(note.fields["request"], "solicit")
        self.counted("server.status.no-addrs-avail")

    def test_topLevelErrorStatus(self) -> None:
        self.forward(client(MessageType.REQUEST))
        actions = self.answer(server(topStatus=StatusCode(1, "broken")))
        self.assertFalse([a for a in actions if isinstance(a, AddressAssigned)])
        self.counted("server.status.unspec-fail")
        self.assertEqual(len(self.notes(actions)), 1)

    def test_iaErrorStatusWithAddress(self) -> None:
        self.forward(client(MessageType.RENEW))
        actions = self.answer(server(iaStatus=StatusCode(3, "no binding")))
        self.assertFalse([a for a in actions if isinstance(a, AddressAssigned)])
        self.counted("server.status.no-binding")

    def test_successStatusIsNoError(self) -> None:
        self.forward(client(MessageType.REQUEST))
        actions = self.answer(server(iaStatus=StatusCode(0, "fine"), topStatus=StatusCode(0)))
        self.assertEqual(self.notes(actions), [])
        self.assertIn(AddressAssigned(MAC, IN, 4000), actions)

    def test_addressErrorStatus(self) -> None:
        self.forward(client(MessageType.REQUEST))
        actions = self.answer(server(addressStatus=StatusCode(4, "not on link")))
        self.assertFalse([a for a in actions if isinstance(a, AddressAssigned)])
        self.counted("address.refused-status")

    def test_unknownStatusName(self) -> None:
        self.forward(client(MessageType.REQUEST))
        self.answer(server(topStatus=StatusCode(4242)))
        self.counted("server.status.4242")

    def test_zeroLifetimeReleases(self) -> None:
        self.forward(client(MessageType.RENEW))
        actions = self.answer(server(addresses=((IN, 0),)))
        self.assertIn(AddressReleased(MAC, IN), actions)
        self.counted("address.released")

    def test_outsidePrefixRefused(self) -> None:
        self.forward(client(MessageType.REQUEST))
        actions = self.answer(server(addresses=((IN, 4000), (OUT, 4000))))
        [note] = actions
        assert isinstance(note, Note)
        self.assertEqual(note.event, "dhcpv6.address-outside-prefix")
        self.assertEqual(note.fields["addresses"], [OUT])
        self.assertEqual(note.fields["prefix"], LNP)
        self.counted("server.refused", "address.outside-prefix", "server.answered")
        self.assertEqual(self.relay.counters["server.forwarded"], 0)

    def test_subnetRouterAnycastRefused(self) -> None:
        self.forward(client(MessageType.REQUEST))
        actions = self.answer(server(addresses=((LINK, 4000),)))
        self.assertEqual([type(a) for a in actions], [Note])
        self.counted("server.refused")

    def test_outsidePrefixAdvertiseRefused(self) -> None:
        self.forward(client(MessageType.SOLICIT))
        actions = self.answer(server(MessageType.ADVERTISE, addresses=((OUT, 4000),)))
        self.assertEqual([type(a) for a in actions], [Note])

    def test_outsidePrefixWithdrawnIsForwarded(self) -> None:
        # Valid lifetime 0: the server takes the address back; nothing to refuse.
        self.forward(client(MessageType.RENEW))
        actions = self.answer(server(addresses=((OUT, 0), (IN, 4000))))
        self.assertEqual(
            actions[1:], [AddressReleased(MAC, OUT), AddressAssigned(MAC, IN, 4000)]
        )

    def test_replyToRelease(self) -> None:
        self.forward(client(MessageType.RELEASE, 5, IN, "2001:db8:1::1001"))
        inner = dhcp6.encode(
            Message(MessageType.REPLY, 5, (ClientId(DUID), StatusCode(0, "released")))
        )
        actions = self.answer(inner)
        self.assertEqual(
            actions,
            [
                SendToClient("eth1", PEER, MAC, inner),
                AddressReleased(MAC, IN),
                AddressReleased(MAC, "2001:db8:1::1001"),
            ],
        )
        self.assertEqual(self.relay.counters["address.released"], 2)

    def test_replyToReleaseWithNoBinding(self) -> None:
        # RFC 8415 18.2.7: the client considers its addresses released anyway.
        self.forward(client(MessageType.RELEASE, 5, IN))
        inner = server(transactionId=5, addresses=(), iaStatus=StatusCode(3, "no binding"))
        actions = self.answer(inner)
        self.assertIn(AddressReleased(MAC, IN), actions)
        self.assertFalse([a for a in actions if isinstance(a, AddressAssigned)])

    def test_replyToDecline(self) -> None:
        self.forward(client(MessageType.DECLINE, 6, IN))
        actions = self.answer(dhcp6.encode(Message(MessageType.REPLY, 6, (ClientId(DUID),))))
        self.assertIn(AddressReleased(MAC, IN), actions)

    def test_reconfigure(self) -> None:
        self.forward(client(MessageType.REQUEST))
        inner = dhcp6.encode(Message(MessageType.RECONFIGURE, 0, (ClientId(DUID),)))
        actions = self.answer(inner)
        self.assertEqual(actions, [SendToClient("eth1", PEER, MAC, inner)])
        self.counted("server.reconfigure", "server.unmatched")

    def test_visitorMoved(self) -> None:
        self.forward(client(MessageType.SOLICIT, 1), interface="eth1")
        self.forward(client(MessageType.REQUEST, 2), interface="eth2")
        actions = self.answer(server(transactionId=2))
        self.assertEqual(actions[0], SendToClient("eth2", PEER, MAC, server(transactionId=2)))

    def test_twoVisitors(self) -> None:
        self.forward(client(MessageType.REQUEST), MAC, "eth1", PEER)
        self.forward(client(MessageType.REQUEST), OTHER, "eth2", "fe80::2", "2001:db8:2::/64")
        inner = server(addresses=(("2001:db8:2::1000", 4000),))
        actions = self.answer(inner, OTHER, peer="fe80::2")
        self.assertEqual(
            actions,
            [
                SendToClient("eth2", "fe80::2", OTHER, inner),
                AddressAssigned(OTHER, "2001:db8:2::1000", 4000),
            ],
        )
        # The same address for the first visitor is outside its LNP: refused,
        # but the server did answer.
        self.assertEqual([type(a) for a in self.answer(inner, MAC)], [Note])
        self.assertEqual(self.relay.pendingCount(), 0)

    def test_peerChanged(self) -> None:
        self.forward(client(MessageType.REQUEST))
        actions = self.answer(server(), peer="fe80::99")
        self.assertEqual(actions[0], SendToClient("eth1", "fe80::99", MAC, server()))
        self.counted("server.peer-changed")

    def test_sourceCanonicalised(self) -> None:
        self.forward(client(MessageType.REQUEST))
        self.assertEqual(len(self.answer(server(), source="FD00:547:0:0::2")), 2)

    def test_wrongSource(self) -> None:
        self.forward(client(MessageType.REQUEST))
        for source in ("fd00:547::66", "garbage"):
            [note] = self.answer(server(), source=source)
            assert isinstance(note, Note)
            self.assertEqual(note.event, "dhcpv6.wrong-source")
            self.assertEqual(note.fields["source"], source)
        self.assertEqual(self.relay.counters["server.wrong-source"], 2)
        self.assertEqual(self.relay.pendingCount(), 1)

    def test_groupServerAnySource(self) -> None:
        self.forward(client(MessageType.REQUEST), to=dhcp6.ALL_DHCP_SERVERS)
        actions = self.answer(server(), source="fd00:547::66")
        self.assertIn(AddressAssigned(MAC, IN, 4000), actions)

    def test_malformed(self) -> None:
        self.assertEqual(self.relay.fromServer(b"\x0d\x00", SERVER, 1.0), [])
        self.counted("server.malformed.truncated")

    def test_notRelayReply(self) -> None:
        self.assertEqual(self.relay.fromServer(server(), SERVER, 1.0), [])
        forward = dhcp6.encode(dhcp6.RelayForward(LINK, PEER, client(1), b"x"))
        self.assertEqual(self.relay.fromServer(forward, SERVER, 1.0), [])
        self.counted("server.not-relay-reply.reply", "server.not-relay-reply.relay-forw")

    def test_noInterfaceId(self) -> None:
        data = dhcp6.encode(dhcp6.RelayReply(LINK, PEER, server()))
        self.assertEqual(self.relay.fromServer(data, SERVER, 1.0), [])
        self.counted("server.no-interface-id")

    def test_unknownInterfaceId(self) -> None:
        self.forward(client(MessageType.REQUEST))
        self.assertEqual(self.answer(server(), interfaceId=b"\x00" * 8), [])
        self.assertEqual(self.answer(server(), interfaceId=b""), [])
        self.assertEqual(self.relay.counters["server.unknown-interface-id"], 2)

    def test_noRelayMessage(self) -> None:
        self.forward(client(MessageType.REQUEST))
        interfaceId = self.relay.interfaceIdOf(MAC)
        assert interfaceId is not None
        data = dhcp6.encode(
            RelayMessage(13, 0, LINK, PEER, (dhcp6.InterfaceId(interfaceId),))
        )
        self.assertEqual(self.relay.fromServer(data, SERVER, 1.0), [])
        self.counted("server.no-relay-message")

    def test_malformedInner(self) -> None:
        self.forward(client(MessageType.REQUEST))
        self.assertEqual(self.answer(b"\x07\x00"), [])
        self.counted("server.malformed-inner.truncated")

    def test_badInner(self) -> None:
        self.forward(client(MessageType.REQUEST))
        self.assertEqual(self.answer(client(MessageType.SOLICIT)), [])
        nested = dhcp6.encode(dhcp6.RelayReply(LINK, PEER, server()))
        self.assertEqual(self.answer(nested), [])
        self.counted("server.bad-inner.solicit", "server.bad-inner.relay-repl")
        self.assertEqual(self.relay.pendingCount(), 1)


class TimeTests(RelayTestCase):
    def test_noAnswer(self) -> None:
        self.assertIsNone(self.relay.nextDeadline())
        self.assertEqual(self.relay.tick(100.0), [])
        self.forward(client(MessageType.SOLICIT, 0xABCDEF), now=10.0)
        self.forward(client(MessageType.SOLICIT, 0xABCDEF), now=11.0)
        self.forward(client(MessageType.REQUEST, 2), OTHER, now=12.0)
        self.assertEqual(self.relay.nextDeadline(), 15.0)
        self.assertEqual(self.relay.tick(14.9), [])
        [note] = self.relay.tick(15.0)
        assert isinstance(note, Note)
        self.assertEqual(note.event, "dhcpv6.no-answer")
        self.assertEqual(
            note.fields,
            {"visitor": MAC, "server": SERVER, "request": "solicit",
             "transactionId": "abcdef", "retransmissions": 1, "waited": 5.0},
        )
        self.assertEqual(self.relay.nextDeadline(), 17.0)
        [other] = self.relay.tick(30.0)
        self.assertEqual(self.relay.counters["server.no-answer"], 2)
        self.assertIsNone(self.relay.nextDeadline())
        # An answer after that is unmatched, and still forwarded.
        actions = self.answer(server(MessageType.ADVERTISE, 0xABCDEF), now=31.0)
        self.assertEqual(len(actions), 1)
        self.counted("server.unmatched")

    def test_retransmittedAfterExpiryIsAwaitedAgain(self) -> None:
        self.forward(client(MessageType.SOLICIT), now=0.0)
        self.relay.tick(5.0)
        self.forward(client(MessageType.SOLICIT), now=6.0)
        self.assertEqual(self.relay.nextDeadline(), 11.0)

    def test_unansweredReleaseReleases(self) -> None:
        self.forward(client(MessageType.RELEASE, 1, IN), now=0.0)
        actions = self.relay.tick(5.0)
        self.assertEqual([type(a) for a in actions], [Note, AddressReleased])
        self.assertEqual(actions[1], AddressReleased(MAC, IN))


class VisitorTests(RelayTestCase):
    def test_forget(self) -> None:
        self.forward(client(MessageType.REQUEST))
        self.forward(client(MessageType.REQUEST, 2), OTHER)
        interfaceId = self.relay.interfaceIdOf(MAC)
        self.relay.forget(MAC)
        self.relay.forget(MAC)  # again: nothing
        self.relay.forget("never seen")
        self.assertEqual(self.relay.counters["visitor.forgotten"], 1)
        self.assertIsNone(self.relay.interfaceIdOf(MAC))
        self.assertEqual(self.relay.pendingCount(), 1)
        self.assertEqual(self.answer(server(), interfaceId=interfaceId), [])
        self.counted("server.unknown-interface-id")
        # Coming back, the visitor gets a new Interface-ID.
        self.forward(client(MessageType.SOLICIT))
        self.assertNotEqual(self.relay.interfaceIdOf(MAC), interfaceId)

    def test_describe(self) -> None:
        self.forward(client(MessageType.REQUEST))
        self.assertEqual(
            self.relay.describe(),
            [{"visitor": MAC, "interfaceId": (EPOCH + b"\x00\x00\x00\x01").hex(),
              "interface": "eth1", "clientAddress": PEER, "prefix": LNP,
              "linkAddress": LINK, "server": SERVER}],
        )
