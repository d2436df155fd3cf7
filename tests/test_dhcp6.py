"""
Tests for L{lmm.dhcp6}: round trips of every message and option, vectors
written out from RFC 8415, messages built by scapy decoded by lmm and lmm's
decoded by scapy (an independent decoder), every kind of malformed input, and
property tests: random and mutated bytes raise nothing but L{DHCPv6Error}.

LMM_HYPOTHESIS_EXAMPLES sets the number of examples of the random-bytes test
(2000 by default, at most 20000 here); the structured tests run a tenth of it,
at least 500.
"""

from __future__ import annotations

import os
import socket

import scapy.layers.dhcp6 as s
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lmm import dhcp6
from lmm.dhcp6 import (
    IANA,
    BadMessageType,
    BadOption,
    BadOptionLength,
    ClientId,
    DHCPv6Error,
    DNSServers,
    ElapsedTime,
    IAAddress,
    InterfaceId,
    Message,
    MessageType,
    Option,
    OptionOverrun,
    OptionRequest,
    Preference,
    RapidCommit,
    RelayMessage,
    RelayMsg,
    ServerId,
    StatusCode,
    TruncatedMessage,
    UnknownOption,
)

EXAMPLES = min(int(os.environ.get("LMM_HYPOTHESIS_EXAMPLES", "2000")), 20000)
STRUCTURED_EXAMPLES = min(EXAMPLES, max(500, EXAMPLES // 10))
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=HEALTH
)
STRUCTURED = settings(
    max_examples=STRUCTURED_EXAMPLES, deadline=None, database=None, suppress_health_check=HEALTH
)

MAC = "02:00:5e:10:00:01"
# RFC 8415 11.4: DUID-LL is type 3, hardware type 1 (Ethernet), the MAC.
DUID = bytes.fromhex("00030001") + bytes.fromhex("02005e100001")
SERVER_DUID = bytes.fromhex("0002000080d9") + b"lmm-test"


def solicit(transactionId: int = 0x123456) -> Message:
    return Message(
        MessageType.SOLICIT,
        transactionId,
        (ClientId(DUID), IANA(7), ElapsedTime(0), OptionRequest((23,))),
    )


def reply(address: str = "2001:db8:1::1000", valid: int = 4000) -> Message:
    return Message(
        MessageType.REPLY,
        0x123456,
        (
            ClientId(DUID),
            ServerId(SERVER_DUID),
            IANA(7, 1000, 2000, (IAAddress(address, 3000, valid),)),
        ),
    )


class VectorTests(SynchronousTestCase):
    """Bytes written out from RFC 8415's figures."""

    def test_solicit(self) -> None:
        data = (
            bytes.fromhex("01123456")  # Solicit, transaction-id
            + bytes.fromhex("0001000a") + DUID  # Client Identifier
            + bytes.fromhex("0003000c" "00000007" "00000000" "00000000")  # IA_NA, no addresses
            + bytes.fromhex("00080002" "0000")  # Elapsed Time
            + bytes.fromhex("00060002" "0017")  # ORO: DNS servers
        )
        self.assertEqual(dhcp6.encode(solicit()), data)
        self.assertEqual(dhcp6.decode(data), solicit())

    def test_relayForward(self) -> None:
        inner = dhcp6.encode(solicit())
        data = (
            bytes.fromhex("0c00")  # Relay-Forw, hop-count 0
            + socket.inet_pton(socket.AF_INET6, "2001:db8:1::")
            + socket.inet_pton(socket.AF_INET6, "fe80::1")
            + bytes.fromhex("00120003") + b"abc"  # Interface-ID
            + bytes.fromhex("0009") + len(inner).to_bytes(2, "big") + inner  # Relay Message
        )
        message = dhcp6.RelayForward("2001:db8:1::", "fe80::1", inner, b"abc")
        self.assertEqual(dhcp6.encode(message), data)
        decoded = dhcp6.decode(data)
        self.assertEqual(decoded, message)
        assert isinstance(decoded, RelayMessage)
        self.assertEqual(decoded.interfaceId, b"abc")
        self.assertEqual(decoded.relayed, inner)
        relayMsg = decoded.option(RelayMsg)
        assert relayMsg is not None
        self.assertEqual(relayMsg.decoded(), solicit())

    def test_iaAddressWithStatus(self) -> None:
        okay = (StatusCode(0, "okay"),)
        data = (
            bytes.fromhex("07000001")  # Reply
            + bytes.fromhex("0003" "0032" "00000001" "000003e8" "000007d0")  # IA_NA, 50 bytes
            + bytes.fromhex("0005" "0022")  # IA Address, 34 bytes
            + socket.inet_pton(socket.AF_INET6, "2001:db8::5")
            + bytes.fromhex("00000bb8" "00000fa0")
            + bytes.fromhex("000d" "0006" "0000") + b"okay"  # Status Code in the address
        )
        message = dhcp6.decode(data)
        self.assertEqual(
            message,
            Message(
                MessageType.REPLY,
                1,
                (IANA(1, 1000, 2000, (IAAddress("2001:db8::5", 3000, 4000, okay),)),),
            ),
        )
        self.assertEqual(dhcp6.encode(message), data)

    def test_unknownOptionKept(self) -> None:
        data = bytes.fromhex("0b000001" "ffff0003616263" "00000000")
        message = dhcp6.decode(data)
        self.assertEqual(message.options, (UnknownOption(0xFFFF, b"abc"), UnknownOption(0)))
        self.assertEqual(dhcp6.encode(message), data)

    def test_emptyMessage(self) -> None:
        self.assertEqual(dhcp6.decode(b"\x0b\x00\x00\x01"), Message(11, 1))
        relay = dhcp6.decode(b"\x0d\x01" + bytes(32))
        self.assertEqual(relay, RelayMessage(13, 1, "::", "::"))
        assert isinstance(relay, RelayMessage)
        self.assertIsNone(relay.relayed)
        self.assertIsNone(relay.interfaceId)

    def test_unknownMessageTypeDecodes(self) -> None:
        # Leasequery (14) and later types share the client/server layout.
        message = dhcp6.decode(bytes.fromhex("0e000002"))
        self.assertEqual(message, Message(14, 2))
        self.assertEqual(message.typeName, "14")


OPTIONS: list[Option] = [
    ClientId(DUID),
    ServerId(SERVER_DUID),
    IANA(1, 2, 3, (IAAddress("2001:db8::1", 4, 5, (StatusCode(0, "ok"),)), StatusCode(2, "x"))),
    IAAddress("2001:db8::1", 0xFFFFFFFF, 0xFFFFFFFF),
    OptionRequest((23, 24)),
    OptionRequest(),
    Preference(255),
    ElapsedTime(0xFFFF),
    RelayMsg(b"\x01\x00\x00\x01"),
    StatusCode(3, "NoBinding: ✓"),
    RapidCommit(),
    InterfaceId(b""),
    InterfaceId(b"eth0"),
    DNSServers(("2001:db8::53", "2001:db8::54")),
    UnknownOption(4242, b"\x00\x01"),
]


class RoundTripTests(SynchronousTestCase):
    def test_everyOptionInAMessage(self) -> None:
        for option in OPTIONS:
            message = Message(MessageType.REPLY, 0xABCDEF, (option,))
            self.assertEqual(dhcp6.decode(dhcp6.encode(message)), message, option)

    def test_everyOptionInARelayMessage(self) -> None:
        for option in OPTIONS:
            message = RelayMessage(MessageType.RELAY_REPL, 3, "2001:db8::1", "fe80::1", (option,))
            self.assertEqual(dhcp6.decode(dhcp6.encode(message)), message, option)

    def test_everyType(self) -> None:
        for msgType in MessageType:
            if msgType in dhcp6.RELAY_MESSAGE_TYPES:
                message: Message | RelayMessage = RelayMessage(msgType, 0, "::", "::")
            else:
                message = Message(msgType, 0xFFFFFF)
            self.assertEqual(dhcp6.decode(dhcp6.encode(message)), message)

    def test_accessors(self) -> None:
        message = reply()
        ia = message.option(IANA)
        assert ia is not None
        self.assertEqual(ia.addresses, (IAAddress("2001:db8:1::1000", 3000, 4000),))
        self.assertEqual(ia.status, dhcp6.Status.SUCCESS)
        self.assertEqual(message.status, dhcp6.Status.SUCCESS)
        self.assertEqual(message.optionsOf(ClientId), (ClientId(DUID),))
        self.assertIsNone(message.option(RapidCommit))
        self.assertEqual(message.typeName, "reply")
        failed = Message(MessageType.REPLY, 1, (StatusCode(2, "none"),))
        self.assertEqual(failed.status, dhcp6.Status.NO_ADDRS_AVAIL)
        address = IAAddress("::1", 0, 0, (StatusCode(4),))
        self.assertEqual(address.status, 4)
        self.assertEqual(address.option(StatusCode), StatusCode(4))
        self.assertTrue(StatusCode(0).success)
        self.assertFalse(StatusCode(1).success)

    def test_typeName(self) -> None:
        self.assertEqual(dhcp6.typeName(12), "relay-forw")
        self.assertEqual(dhcp6.typeName(11), "information-request")
        self.assertEqual(dhcp6.typeName(99), "99")

    def test_duids(self) -> None:
        self.assertEqual(dhcp6.duidLL(MAC), DUID)
        self.assertEqual(
            dhcp6.duidLLT(MAC, 0x01020304), bytes.fromhex("000100010102030402005e100001")
        )
        self.assertRaises(ValueError, dhcp6.duidLL, "02:00")

    def test_statusMessageNotUTF8(self) -> None:
        data = bytes.fromhex("07000001" "000d0003" "0000ff")
        self.assertEqual(dhcp6.decode(data).options, (StatusCode(0, "\ufffd"),))


class ScapyTests(SynchronousTestCase):
    """scapy builds, lmm decodes; lmm encodes, scapy decodes."""

    def test_decodesScapySolicit(self) -> None:
        packet = (
            s.DHCP6_Solicit(trid=0x10203)
            / s.DHCP6OptClientId(duid=s.DUID_LL(lladdr=MAC))
            / s.DHCP6OptIA_NA(iaid=9, T1=0, T2=0)
            / s.DHCP6OptElapsedTime(elapsedtime=150)
            / s.DHCP6OptOptReq(reqopts=[23, 24])
            / s.DHCP6OptRapidCommit()
        )
        data = bytes(packet)
        message = dhcp6.decode(data)
        self.assertEqual(
            message,
            Message(
                1,
                0x10203,
                (ClientId(DUID), IANA(9), ElapsedTime(150), OptionRequest((23, 24)), RapidCommit()),
            ),
        )
        self.assertEqual(dhcp6.encode(message), data)

    def test_decodesScapyRelayForward(self) -> None:
        inner = s.DHCP6_Request(trid=77) / s.DHCP6OptClientId(duid=s.DUID_LL(lladdr=MAC))
        packet = (
            s.DHCP6_RelayForward(hopcount=1, linkaddr="2001:db8:1::", peeraddr="fe80::1")
            / s.DHCP6OptIfaceId(ifaceid=b"\x01\x02")
            / s.DHCP6OptRelayMsg(message=inner)
        )
        message = dhcp6.decode(bytes(packet))
        assert isinstance(message, RelayMessage)
        self.assertEqual(
            (message.msgType, message.hopCount, message.linkAddress, message.peerAddress),
            (12, 1, "2001:db8:1::", "fe80::1"),
        )
        self.assertEqual(message.interfaceId, b"\x01\x02")
        self.assertEqual(dhcp6.decode(message.relayed or b""), Message(3, 77, (ClientId(DUID),)))

    def test_decodesScapyReply(self) -> None:
        packet = (
            s.DHCP6_Reply(trid=5)
            / s.DHCP6OptServerId(duid=s.DUID_LL(lladdr=MAC))
            / s.DHCP6OptIA_NA(
                iaid=1,
                T1=10,
                T2=20,
                ianaopts=[
                    s.DHCP6OptIAAddress(addr="2001:db8::7", preflft=30, validlft=40),
                    s.DHCP6OptStatusCode(statuscode=0, statusmsg=b"all fine"),
                ],
            )
            / s.DHCP6OptPref(prefval=200)
            / s.DHCP6OptDNSServers(dnsservers=["2001:db8::53"])
        )
        message = dhcp6.decode(bytes(packet))
        self.assertEqual(
            message.options,
            (
                ServerId(DUID),
                IANA(1, 10, 20, (IAAddress("2001:db8::7", 30, 40), StatusCode(0, "all fine"))),
                Preference(200),
                DNSServers(("2001:db8::53",)),
            ),
        )

    def test_scapyDecodesRelayReply(self) -> None:
        inner = dhcp6.encode(reply())
        data = dhcp6.encode(dhcp6.RelayReply("2001:db8:1::", "fe80::1", inner, b"id"))
        packet = s.DHCP6_RelayReply(data)
        self.assertEqual(packet.msgtype, 13)
        self.assertEqual(packet.linkaddr, "2001:db8:1::")
        self.assertEqual(packet.peeraddr, "fe80::1")
        self.assertEqual(packet[s.DHCP6OptIfaceId].ifaceid, b"id")
        relayed = packet[s.DHCP6OptRelayMsg].message
        self.assertEqual(relayed.msgtype, 7)
        self.assertEqual(relayed.trid, 0x123456)
        self.assertEqual(bytes(relayed[s.DHCP6OptClientId].duid), DUID)
        self.assertEqual(bytes(relayed[s.DHCP6OptServerId].duid), SERVER_DUID)
        ia = relayed[s.DHCP6OptIA_NA]
        self.assertEqual((ia.iaid, ia.T1, ia.T2), (7, 1000, 2000))
        address = ia.ianaopts[0]
        self.assertEqual(
            (address.addr, address.preflft, address.validlft), ("2001:db8:1::1000", 3000, 4000)
        )

    def test_scapyDecodesEveryOption(self) -> None:
        data = dhcp6.encode(
            Message(
                MessageType.ADVERTISE,
                1,
                (
                    StatusCode(2, "none here"),
                    Preference(7),
                    ElapsedTime(12),
                    OptionRequest((23,)),
                    RapidCommit(),
                    DNSServers(("2001:db8::53",)),
                ),
            )
        )
        packet = s.DHCP6_Advertise(data)
        self.assertEqual(packet[s.DHCP6OptStatusCode].statuscode, 2)
        self.assertEqual(packet[s.DHCP6OptStatusCode].statusmsg, b"none here")
        self.assertEqual(packet[s.DHCP6OptPref].prefval, 7)
        self.assertEqual(packet[s.DHCP6OptElapsedTime].elapsedtime, 12)
        self.assertEqual(packet[s.DHCP6OptOptReq].reqopts, [23])
        self.assertTrue(packet.haslayer(s.DHCP6OptRapidCommit))
        self.assertEqual(packet[s.DHCP6OptDNSServers].dnsservers, ["2001:db8::53"])
        self.assertFalse(packet.haslayer(s.DHCP6OptUnknown))

    def test_scapyDecodesRelayForward(self) -> None:
        inner = dhcp6.encode(solicit())
        data = dhcp6.encode(dhcp6.RelayForward("2001:db8:2::", "fe80::9", inner, b"\x00" * 8))
        packet = s.DHCP6_RelayForward(data)
        self.assertEqual((packet.hopcount, packet.linkaddr), (0, "2001:db8:2::"))
        message = packet[s.DHCP6OptRelayMsg].message
        self.assertIsInstance(message, s.DHCP6_Solicit)
        self.assertEqual(message.trid, 0x123456)
        self.assertEqual(message[s.DHCP6OptIA_NA].iaid, 7)


class MalformedTests(SynchronousTestCase):
    def assertReason(self, data: bytes, error: type[DHCPv6Error], reason: str) -> None:
        e = self.assertRaises(error, dhcp6.decode, data)
        self.assertEqual(e.reason, reason)
        self.assertIsInstance(e, DHCPv6Error)
        self.assertIsInstance(e, ValueError)

    def test_truncated(self) -> None:
        for data in (b"", b"\x01", b"\x01\x00\x00"):
            self.assertReason(data, TruncatedMessage, "truncated")
        self.assertReason(b"\x0c" + bytes(32), TruncatedMessage, "truncated")
        self.assertReason(b"\x0d" + bytes(2), TruncatedMessage, "truncated")

    def test_reservedType(self) -> None:
        self.assertReason(b"\x00\x00\x00\x00", BadMessageType, "bad-msg-type")

    def test_optionHeaderOverrun(self) -> None:
        self.assertReason(bytes.fromhex("01000001" "0001"), OptionOverrun, "option-overrun")
        self.assertReason(bytes.fromhex("01000001" "000100"), OptionOverrun, "option-overrun")

    def test_optionBodyOverrun(self) -> None:
        self.assertReason(bytes.fromhex("01000001" "00010005" "0000"), OptionOverrun,
                          "option-overrun")

    def test_subOptionOverrun(self) -> None:
        # IA_NA of 16 bytes whose sub-option says 8 bytes follow: 4 do.
        data = bytes.fromhex("07000001" "00030010" "000000010000000000000000" "000d0008")
        self.assertReason(data, OptionOverrun, "option-overrun")

    def test_badLengths(self) -> None:
        for code, body in (
            (1, b""),  # DUID under 2 bytes
            (1, b"\x00"),
            (2, bytes(131)),  # DUID over 130
            (3, bytes(11)),  # IA_NA under 12
            (5, bytes(23)),  # IA Address under 24
            (6, b"\x00"),  # odd ORO
            (7, b""),  # Preference not 1
            (7, b"\x00\x00"),
            (8, b"\x00"),  # Elapsed Time not 2
            (13, b"\x00"),  # Status Code under 2
            (14, b"\x00"),  # Rapid Commit not 0
            (23, bytes(15)),  # DNS servers not a multiple of 16
        ):
            data = b"\x07\x00\x00\x01" + code.to_bytes(2, "big") + len(body).to_bytes(2, "big")
            self.assertReason(data + body, BadOptionLength, "bad-option-length")

    def test_badLengthInsideIA(self) -> None:
        address = bytes.fromhex("00050004") + bytes(4)
        ia = bytes.fromhex("0003") + (12 + len(address)).to_bytes(2, "big") + bytes(12) + address
        self.assertReason(b"\x07\x00\x00\x01" + ia, BadOptionLength, "bad-option-length")

    def test_unknownInsideIAKept(self) -> None:
        # Only IA Address and Status Code are decoded inside an IA_NA; the rest
        # is kept, which also bounds how deep crafted input can nest.
        nested = bytes.fromhex("0003000c") + bytes(12)
        ia = bytes.fromhex("0003") + (12 + len(nested)).to_bytes(2, "big") + bytes(12) + nested
        message = dhcp6.decode(b"\x07\x00\x00\x01" + ia)
        self.assertEqual(message.options, (IANA(0, 0, 0, (UnknownOption(3, bytes(12)),)),))

    def test_badOptionIsAnError(self) -> None:
        self.assertTrue(issubclass(BadOption, DHCPv6Error))
        self.assertEqual(BadOption.reason, "bad-option")


class EncodeErrorTests(SynchronousTestCase):
    def test_outOfRange(self) -> None:
        for message in (
            Message(1, 0x1000000),
            Message(1, -1),
            Message(0, 1),
            Message(256, 1),
            Message(12, 1),  # a relay type needs a RelayMessage
            RelayMessage(12, 256, "::", "::"),
            RelayMessage(12, 0, "not an address", "::"),
            Message(1, 1, (ClientId(b"\x00"),)),
            Message(1, 1, (ClientId(bytes(131)),)),
            Message(1, 1, (IANA(1 << 32),)),
            Message(1, 1, (IANA(1, -1),)),
            Message(1, 1, (IAAddress("::", 1 << 32, 0),)),
            Message(1, 1, (OptionRequest((70000,)),)),
            Message(1, 1, (Preference(256),)),
            Message(1, 1, (ElapsedTime(0x10000),)),
            Message(1, 1, (StatusCode(0x10000),)),
            Message(1, 1, (DNSServers(("10.0.0.1",)),)),
            Message(1, 1, (UnknownOption(0x10000),)),
            Message(1, 1, (UnknownOption(5, bytes(0x10000)),)),
        ):
            self.assertRaises(ValueError, dhcp6.encode, message)


# --- property tests ----------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
addresses = st.binary(min_size=16, max_size=16).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))
duids = st.binary(min_size=2, max_size=130)
statusCodes = st.builds(StatusCode, u16, st.text(max_size=20))
iaAddresses = st.builds(
    IAAddress, addresses, u32, u32, st.lists(statusCodes, max_size=2).map(tuple)
)
knownCodes = set(dhcp6.OptionCode)
unknownOptions = st.builds(
    UnknownOption, u16.filter(lambda c: c not in knownCodes), st.binary(max_size=40)
)
options: st.SearchStrategy[Option] = st.one_of(
    st.builds(ClientId, duids),
    st.builds(ServerId, duids),
    st.builds(
        IANA, u32, u32, u32, st.lists(st.one_of(iaAddresses, statusCodes), max_size=3).map(tuple)
    ),
    iaAddresses,
    st.builds(OptionRequest, st.lists(u16, max_size=5).map(tuple)),
    st.builds(Preference, u8),
    st.builds(ElapsedTime, u16),
    st.builds(RelayMsg, st.binary(max_size=40)),
    statusCodes,
    st.just(RapidCommit()),
    st.builds(InterfaceId, st.binary(max_size=20)),
    st.builds(DNSServers, st.lists(addresses, max_size=3).map(tuple)),
    unknownOptions,
)
optionTuples = st.lists(options, max_size=6).map(tuple)
messages: st.SearchStrategy[Message | RelayMessage] = st.one_of(
    st.builds(
        Message,
        st.integers(1, 255).filter(lambda t: t not in dhcp6.RELAY_MESSAGE_TYPES),
        st.integers(0, 0xFFFFFF),
        optionTuples,
    ),
    st.builds(RelayMessage, st.sampled_from([12, 13]), u8, addresses, addresses, optionTuples),
)


def decodeOrError(data: bytes) -> None:
    try:
        message = dhcp6.decode(data)
    except DHCPv6Error:
        return
    # What decodes encodes back to the same bytes: nothing is lost or invented
    # (but a Status Code message that is not UTF-8, which is decoded with
    # replacement characters, for logs).
    again = dhcp6.encode(message)
    assert dhcp6.decode(again) == message, (data, message)
    assert again == data or "\ufffd" in str(message), (data, message)
    if isinstance(message, RelayMessage) and message.relayed is not None:
        try:
            dhcp6.decode(message.relayed)
        except DHCPv6Error:
            pass


class PropertyTests(SynchronousTestCase):
    @SETTINGS
    @given(st.binary(max_size=200))
    def test_randomBytes(self, data: bytes) -> None:
        decodeOrError(data)

    @STRUCTURED
    @given(st.sampled_from(list(range(1, 14))), st.binary(max_size=120))
    def test_randomBodies(self, msgType: int, body: bytes) -> None:
        decodeOrError(bytes((msgType,)) + body)

    @STRUCTURED
    @given(messages)
    def test_roundTrip(self, message: Message | RelayMessage) -> None:
        data = dhcp6.encode(message)
        self.assertEqual(dhcp6.decode(data), message)
        self.assertEqual(dhcp6.encode(dhcp6.decode(data)), data)

    @STRUCTURED
    @given(messages, st.data())
    def test_mutated(self, message: Message | RelayMessage, data: st.DataObject) -> None:
        encoded = bytearray(dhcp6.encode(message))
        for _ in range(data.draw(st.integers(1, 4))):
            if not encoded:
                break
            where = data.draw(st.integers(0, len(encoded) - 1))
            encoded[where] = data.draw(u8)
        cut = data.draw(st.integers(0, len(encoded)))
        decodeOrError(bytes(encoded[:cut]) + data.draw(st.binary(max_size=4)))
