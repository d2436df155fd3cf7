"""
The RADIUS authenticator: its wire checks, and exchanges with a real
FreeRADIUS (started per test on its own ports) and with a fake server on
loopback that forges, mangles or withholds replies.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from pyrad import packet as rpacket
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from lmm import radius
from lmm.aaa import AAAUnavailable, AccessRejected, AccessRequest, Profile
from lmm.backends import findBackend
from lmm.config import ConfigError
from lmm.interfaces import IAuthenticator
from lmm.lab import freeradius
from lmm.radius import (
    IdPool,
    RadiusAuthenticator,
    RadiusServer,
    ServerPool,
    checkMessageAuthenticator,
    loadDictionary,
    profileFromReply,
    radiusBackend,
    replyMessage,
    responseAuthenticator,
)

DICTIONARY = loadDictionary()
SECRET = b"fake-secret"
TIMEOUT = 0.2
RETRIES = 2

ALICE = AccessRequest("02:00:00:00:00:01", "veth-ms1", b"alice@lmm.test")
MAC_ONLY = AccessRequest("02:00:00:00:00:02", "veth-ms2")

ALICE_PROFILE = Profile(
    nai=b"alice@lmm.test",
    lmapAddress="2001:db8:ff::1",
    localNetworkPrefix=ipaddress.IPv6Network("2001:db8:1::/64"),
    localAddress="2001:db8:1::100",
    virtualLmapMac="02:00:5e:00:53:01",
    virtualLmapLinkLocal="fe80::1",
    addressMode="dhcpv6",
    mayChooseAddress=False,
    dhcpServer="2001:db8:ff::53",
    sessionTimeout=3600,
)

# Tests use the reactor's every part; Twisted types it by its common part.
reactor: Any = _reactor


# --- helpers ------------------------------------------------------------------------


def decodeRequest(data: bytes, secret: bytes = SECRET) -> rpacket.AuthPacket:
    return rpacket.AuthPacket(packet=data, secret=secret, dict=DICTIONARY)


def reply(data: bytes, code: int = rpacket.AccessAccept, secret: bytes = SECRET,
          messageAuthenticator: bool = True, **attributes: Any) -> bytes:
    """A correctly signed reply to the request C{data}, built by pyrad."""
    request = decodeRequest(data, secret)
    answer = request.CreateReply(message_authenticator=messageAuthenticator)
    answer.code = code
    for name, value in attributes.items():
        answer[name.replace("_", "-")] = value
    return answer.ReplyPacket()


def accept(data: bytes, **attributes: Any) -> bytes:
    attributes.setdefault("PMIP6_Home_HN_Prefix", "2001:db8:9::/64")
    return reply(data, **attributes)


def resign(data: bytes, requestAuthenticator: bytes, secret: bytes = SECRET) -> bytes:
    """C{data} with a fresh, correct Response Authenticator (after tampering)."""
    return data[:4] + responseAuthenticator(data, requestAuthenticator, secret) + data[20:]


def attributesOf(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, type, value) of each attribute, walked by hand."""
    found, offset = [], 20
    while offset < len(data):
        kind, length = data[offset], data[offset + 1]
        found.append((offset, kind, data[offset + 2:offset + length]))
        offset += length
    return found


class FakeRadiusServer(DatagramProtocol):
    """Records what it receives; answers with what C{answer} returns."""

    def __init__(self, answer: Callable[[bytes], list[bytes]]) -> None:
        self.answer = answer
        self.received: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received.append(data)
        for datagram in self.answer(data):
            self.send(datagram, addr)

    def send(self, datagram: bytes, addr: Any) -> None:
        transport: Any = self.transport
        transport.write(datagram, addr)


class RadiusTestMixin:
    addCleanup: Callable[..., None]

    def fakeServer(self, answer: Callable[[bytes], list[bytes]]) -> tuple[FakeRadiusServer,
                                                                         RadiusServer]:
        fake = FakeRadiusServer(answer)
        port = reactor.listenUDP(0, fake, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return fake, RadiusServer("127.0.0.1", port.getHost().port, SECRET)

    async def failsWith(self, d: defer.Deferred[Any], exception: type[Exception]) -> Any:
        """The exception C{d} fails with; fail the test if it does not."""
        return await self.assertFailure(d, exception)  # type: ignore[attr-defined]

    def authenticator(self, servers: list[RadiusServer], **kwargs: Any) -> RadiusAuthenticator:
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("retries", RETRIES)
        auth = RadiusAuthenticator(reactor, servers, dictionary=DICTIONARY, **kwargs)
        self.addCleanup(auth.stop)
        return auth


# --- pure parts -----------------------------------------------------------------------


def pyradRequest(authenticator: bytes, identifier: int, request: AccessRequest, nai: bytes,
                 password: str, nasIdentifier: str, nasPortType: int,
                 serviceType: int) -> bytes:
    """The Access-Request as pyrad lays it out (lmm's before it laid out its
    own), Message-Authenticator first: the reference for lmm's."""
    packet = rpacket.AuthPacket(code=rpacket.AccessRequest, id=identifier, secret=SECRET,
                                dict=DICTIONARY, authenticator=authenticator)
    packet.add_message_authenticator()
    packet["User-Name"] = nai
    packet["User-Password"] = packet.PwCrypt(password)
    packet["Calling-Station-Id"] = radius.callingStationId(request.mac)
    packet["NAS-Identifier"] = nasIdentifier
    packet["NAS-Port-Type"] = nasPortType
    if request.accessInterface:
        packet["NAS-Port-Id"] = request.accessInterface
    packet["Service-Type"] = serviceType
    data: bytes = packet.RequestPacket()
    return data


class WireTests(SynchronousTestCase):
    def authenticator(self, password: str = "mac",
                      nasIdentifier: str = "mpa-1") -> RadiusAuthenticator:
        auth = RadiusAuthenticator.__new__(RadiusAuthenticator)  # no sockets needed
        auth.dictionary, auth.password, auth.naiTemplate = DICTIONARY, password, "{mac_plain}@x"
        auth.nasIdentifier, auth.nasPortType, auth.serviceType = nasIdentifier, 15, "auto"
        return auth

    def request(self) -> bytes:
        server = RadiusServer("127.0.0.1", 1812, SECRET)
        return self.authenticator().buildRequest(server, 7, ALICE, b"alice@lmm.test")[1]

    def test_sameAsPyrad(self) -> None:
        """lmm's Access-Request is, octet for octet, pyrad's for the same
        fields and Request Authenticator: passwords of every length to 128
        octets, with and without NAS-Port-Id, framed and call-check."""
        server = RadiusServer("127.0.0.1", 1812, SECRET)
        for length in (1, 12, 15, 16, 17, 31, 32, 33, 100, 128):
            for request, serviceType in ((ALICE, 2), (MAC_ONLY, 10),
                                         (AccessRequest(ALICE.mac, "", b"alice@lmm.test"), 2)):
                password = "pässwörd-0123456789" * 7
                password = password.encode("utf-8")[:length].decode("utf-8", "ignore")
                auth = self.authenticator(password=password or "p")
                authenticator, data = auth.buildRequest(server, 42, request, b"ms@lmm.test")
                self.assertEqual(data[4:20], authenticator)
                self.assertEqual(data, pyradRequest(authenticator, 42, request, b"ms@lmm.test",
                                                    auth.password, "mpa-1", 15, serviceType),
                                 (length, request))

    def test_tshark(self) -> None:
        """Wireshark's RADIUS dissector, another reading than pyrad's, shows each
        attribute of lmm's Access-Requests, and with the shared secret decrypts
        the User-Password."""
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether
        from scapy.packet import Raw
        from scapy.utils import wrpcap

        from tests.test_mh_golden import TSHARK
        if not os.path.exists(TSHARK):
            raise SkipTest(f"tshark is not installed ({TSHARK})")
        server = RadiusServer("127.0.0.1", 1812, SECRET)
        requests = [(ALICE, b"alice@lmm.test"), (MAC_ONLY, b"020000000002@lmm.test")]
        directory = tempfile.mkdtemp(prefix="lmm-radius-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "requests.pcap")
        wrpcap(path, [Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=40000, dport=1812)
                      / Raw(self.authenticator().buildRequest(server, 7, request, nai)[1])
                      for request, nai in requests])
        fields = ["radius.code", "radius.User_Name", "radius.User_Password",
                  "radius.Calling_Station_Id", "radius.NAS_Identifier", "radius.NAS_Port_Type",
                  "radius.NAS_Port_Id", "radius.Service_Type", "_ws.malformed", "_ws.expert"]
        result = subprocess.run(
            [TSHARK, "-n", "-r", path, "-o", f"radius.shared_secret:{SECRET.decode()}",
             "-T", "fields", "-E", "separator=|", *[a for f in fields for a in ("-e", f)]],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "HOME": directory, "XDG_CONFIG_HOME": directory})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.splitlines(), [
            "1|alice@lmm.test|020000000001|02-00-00-00-00-01|mpa-1|15|veth-ms1|2||",
            "1|020000000002@lmm.test|020000000002|02-00-00-00-00-02|mpa-1|15|veth-ms2|10||",
        ])

    def test_attributeBounds(self) -> None:
        self.assertEqual(radius.attribute(1, b"x" * 253)[:2], bytes((1, 255)))
        self.assertRaises(ValueError, radius.attribute, 1, b"")
        self.assertRaises(ValueError, radius.attribute, 1, b"x" * 254)

    def test_accessRequest(self) -> None:
        data = self.request()
        self.assertEqual(data[0], rpacket.AccessRequest)
        self.assertEqual(data[1], 7)
        request = decodeRequest(data)
        self.assertEqual(request["User-Name"], ["alice@lmm.test"])
        self.assertEqual(request.PwDecrypt(request["User-Password"][0]), "020000000001")
        self.assertEqual(request["Calling-Station-Id"], ["02-00-00-00-00-01"])  # RFC 3580
        self.assertEqual(request["NAS-Identifier"], ["mpa-1"])
        self.assertEqual(request["NAS-Port-Type"], ["Ethernet"])
        self.assertEqual(request["NAS-Port-Id"], ["veth-ms1"])
        self.assertEqual(request["Service-Type"], ["Framed-User"])

    def test_messageAuthenticatorFirstAndRight(self) -> None:
        # Checked by hand (RFC 3579 section 3.2), not with lmm's or pyrad's code.
        data = self.request()
        offset, kind, value = attributesOf(data)[0]
        self.assertEqual((offset, kind, len(value)), (20, 80, 16))
        zeroed = data[:22] + bytes(16) + data[38:]
        self.assertEqual(value, hmac.new(SECRET, zeroed, hashlib.md5).digest())
        self.assertTrue(decodeRequest(data).verify_message_authenticator())

    def test_responseAuthenticator(self) -> None:
        data = self.request()
        answer = accept(data)
        self.assertEqual(answer[4:20], responseAuthenticator(answer, data[4:20], SECRET))
        self.assertNotEqual(answer[4:20], responseAuthenticator(answer, data[4:20], b"other"))

    def test_checkMessageAuthenticator(self) -> None:
        data = self.request()
        signed = accept(data)
        self.assertIs(checkMessageAuthenticator(signed, data[4:20], SECRET), True)
        self.assertIs(checkMessageAuthenticator(signed, data[4:20], b"other"), False)
        self.assertIsNone(checkMessageAuthenticator(accept(data, messageAuthenticator=False),
                                                    data[4:20], SECRET))
        offset = [o for o, kind, _ in attributesOf(signed) if kind == 80][0]
        tampered = signed[:offset + 2] + bytes(16) + signed[offset + 18:]
        self.assertIs(checkMessageAuthenticator(tampered, data[4:20], SECRET), False)

    def test_callingStationId(self) -> None:
        self.assertEqual(radius.callingStationId("0a:bc:00:00:00:01"), "0A-BC-00-00-00-01")


class ProfileFromReplyTests(SynchronousTestCase):
    def decoded(self, **attributes: Any) -> rpacket.AuthPacket:
        answer = rpacket.AuthPacket(code=rpacket.AccessAccept, id=1, secret=SECRET,
                                    authenticator=bytes(16), dict=DICTIONARY)
        for name, value in attributes.items():
            answer[name.replace("_", "-")] = value
        return rpacket.AuthPacket(packet=answer.ReplyPacket(), secret=SECRET, dict=DICTIONARY)

    def test_full(self) -> None:
        answer = self.decoded(
            Mobile_Node_Identifier=b"alice@lmm.test", User_Name="ignored@lmm.test",
            PMIP6_Home_LMA_IPv6_Address="2001:db8:ff::1", PMIP6_Home_HN_Prefix="2001:db8:1::/64",
            Framed_IPv6_Address="2001:db8:1::100",
            PMIP6_Home_DHCP6_Server_Address="2001:db8:ff::53",
            Session_Timeout=3600, LMM_Virtual_LMAP_MAC="02:00:5E:00:53:01",
            LMM_Virtual_LMAP_Link_Local="fe80::1", LMM_Address_Mode="dhcpv6",
            LMM_MS_May_Choose_Address="no")
        self.assertEqual(profileFromReply(answer, b"asked@lmm.test"), ALICE_PROFILE)

    def test_naiFallbacks(self) -> None:
        self.assertEqual(profileFromReply(self.decoded(User_Name="u@x"), b"asked@x").nai, b"u@x")
        self.assertEqual(profileFromReply(self.decoded(), b"asked@x"),
                         Profile(nai=b"asked@x"))

    def test_integerValues(self) -> None:
        profile = profileFromReply(self.decoded(LMM_Address_Mode=3, LMM_MS_May_Choose_Address=1),
                                   b"a")
        self.assertEqual((profile.addressMode, profile.mayChooseAddress), ("manual", True))

    def test_badValues(self) -> None:
        cases: list[dict[str, Any]] = [{"LMM_Address_Mode": 9}, {"LMM_MS_May_Choose_Address": 2},
                                       {"LMM_Virtual_LMAP_Link_Local": "2001:db8::1"}]
        for attributes in cases:
            e = self.assertRaises(ValueError, profileFromReply, self.decoded(**attributes), b"a")
            self.assertIn(next(iter(attributes)).replace("_", "-"), str(e))

    def test_undecodable(self) -> None:
        answer = self.decoded()
        answer[147] = [b"\x20\x01"]  # PMIP6-Home-LMA-IPv6-Address, 2 octets
        answer[168] = [b"\x20\x01" * 9]  # Framed-IPv6-Address, 18 octets
        e = self.assertRaises(ValueError, profileFromReply, answer, b"a")
        self.assertIn("cannot decode", str(e))


def outcome(f: Callable[..., Any], *args: Any) -> Any:
    """What C{f(*args)} returns, or the type and text of what it raises."""
    try:
        return f(*args)
    except Exception as e:
        return (type(e), str(e))


class ReplyDecoderTests(SynchronousTestCase):
    """lmm's reading of a reply's attributes (L{radius.ReplyDecoder}) against
    pyrad's packet, the reference it replaces on the attach path."""

    # Values as servers send them, and values pyrad cannot decode.
    GOOD = {
        "Mobile-Node-Identifier": [b"alice@lmm.test", b"\xff\xfe"],
        "User-Name": [b"bob@lmm.test", b"\xc3\x28"],
        "PMIP6-Home-HN-Prefix": [b"\x00\x40" + bytes.fromhex("20010db8000100000000000000000000"),
                                 b"\x00\x30\x20\x01\x0d\xb8", b"\x00\x81" + bytes(16)],
        "PMIP6-Home-LMA-IPv6-Address": [bytes.fromhex("20010db8ff0000000000000000000001"),
                                        bytes.fromhex("00000000000000000000ffff01020304")],
        # (inet_ntop's text is pyrad's but for an IPv4 address inside: the last two)
        "Framed-IPv6-Address": [bytes.fromhex("20010db8000100000000000000000100"), bytes(16),
                                bytes.fromhex("00000000000000000000ffff0a000001"),
                                bytes.fromhex("0000000000000000000000000a000001")],
        "PMIP6-Home-DHCP6-Server-Address": [bytes.fromhex("20010db8ff0000000000000000000053")],
        "Session-Timeout": [(3600).to_bytes(4, "big"), bytes(4)],
        "Reply-Message": [b"go away", b"\xe2\x82\xac", b"\xff"],
    }
    VENDOR = {  # LMM's sub-attribute codes (radius_dicts/dictionary.lmm)
        1: [bytes.fromhex("02005e005301")],
        2: [bytes.fromhex("fe800000000000000000000000000001"),
            bytes.fromhex("20010db8000000000000000000000001")],
        3: [(1).to_bytes(4, "big"), (2).to_bytes(4, "big"), (3).to_bytes(4, "big"),
            (9).to_bytes(4, "big")],
        4: [(0).to_bytes(4, "big"), (1).to_bytes(4, "big"), (2).to_bytes(4, "big")],
    }
    LMM_VENDOR = 32473

    def reply(self, rng: Any, code: int) -> bytes:
        attributes = b""
        for _ in range(rng.randrange(0, 9)):
            choice = rng.random()
            if choice < 0.5:
                name = rng.choice(sorted(self.GOOD))
                key = DICTIONARY.attrindex.GetForward(name)
                value = (rng.choice(self.GOOD[name]) if rng.random() < 0.8
                         else rng.randbytes(rng.randrange(1, 20)))
                attributes += radius.attribute(key, value)
            elif choice < 0.85:
                subs = b""
                for _ in range(rng.randrange(1, 4)):
                    sub = rng.randrange(1, 6)
                    value = (rng.choice(self.VENDOR[sub]) if sub in self.VENDOR
                             and rng.random() < 0.8 else rng.randbytes(rng.randrange(0, 18)))
                    subs += bytes((sub, len(value) + 2)) + value
                if rng.random() < 0.1:
                    subs = subs[:-1]  # sub-attributes that do not add up
                vendor = self.LMM_VENDOR if rng.random() < 0.9 else 9
                attributes += radius.attribute(26, vendor.to_bytes(4, "big") + subs)
            else:  # what lmm does not read: Class, an unknown type, a short Vendor-Specific
                kind = rng.choice([25, 200, 26])
                attributes += radius.attribute(kind, rng.randbytes(rng.randrange(1, 6)))
        header = struct.pack("!BBH", code, 7, 20 + len(attributes)) + bytes(16)
        return header + attributes

    def test_sameAsPyrad(self) -> None:
        """On 5,000 random replies (valid values, undecodable ones, repeated
        attributes, vendor attributes split right and wrong), the profile and
        the Reply-Message read through lmm's decoder are pyrad's, errors and
        their text included."""
        rng = random.Random(15)
        decoder = radius.ReplyDecoder.forDictionary(DICTIONARY)
        assert decoder is not None
        kinds = set()
        for _ in range(5000):
            code = rng.choice([rpacket.AccessAccept, rpacket.AccessReject])
            data = self.reply(rng, code)
            reference = rpacket.AuthPacket(packet=data, secret=SECRET, dict=DICTIONARY)
            ours = decoder.decode(code, radius.rawAttributes(data))
            self.assertEqual(ours.code, reference.code)
            expected = outcome(profileFromReply, reference, b"asked@lmm.test")
            got = outcome(profileFromReply, ours, b"asked@lmm.test")
            kinds.add(type(expected).__name__)
            if got != expected or replyMessage(ours) != replyMessage(reference):
                self.fail(f"{data.hex()}: {got!r} against pyrad's {expected!r}")
        # Both outcomes, a profile and an error, were met.
        self.assertEqual(kinds, {"Profile", "tuple"})

    def test_full(self) -> None:
        """ALICE_PROFILE's attributes, through the decoder."""
        answer = rpacket.AuthPacket(code=rpacket.AccessAccept, id=1, secret=SECRET,
                                    authenticator=bytes(16), dict=DICTIONARY)
        for name, value in [
                ("Mobile-Node-Identifier", b"alice@lmm.test"),
                ("PMIP6-Home-LMA-IPv6-Address", "2001:db8:ff::1"),
                ("PMIP6-Home-HN-Prefix", "2001:db8:1::/64"),
                ("Framed-IPv6-Address", "2001:db8:1::100"),
                ("PMIP6-Home-DHCP6-Server-Address", "2001:db8:ff::53"),
                ("Session-Timeout", 3600), ("LMM-Virtual-LMAP-MAC", "02:00:5E:00:53:01"),
                ("LMM-Virtual-LMAP-Link-Local", "fe80::1"), ("LMM-Address-Mode", "dhcpv6"),
                ("LMM-MS-May-Choose-Address", "no")]:
            answer[name] = value
        data = answer.ReplyPacket()
        decoder = radius.ReplyDecoder.forDictionary(DICTIONARY)
        assert decoder is not None
        reply = decoder.decode(rpacket.AccessAccept, radius.rawAttributes(data))
        self.assertEqual(profileFromReply(reply, b"asked@lmm.test"), ALICE_PROFILE)

    def test_dictionariesPyradMustRead(self) -> None:
        """A dictionary with a TLV, or one tagging or encrypting an attribute
        lmm reads, leaves the replies to pyrad's packet."""
        folder = self.mktemp()
        os.makedirs(folder)
        default = Path(radius.defaultDictionaryPath())
        base = default.read_text().replace("$INCLUDE ", f"$INCLUDE {default.parent}/")
        for extra, expected in [("", True),
                                ("ATTRIBUTE\tLMM-Test-TLV\t240\ttlv\n", False),
                                ("ATTRIBUTE\tReply-Message\t18\tstring has_tag\n", False)]:
            path = os.path.join(folder, f"dictionary{len(extra)}")
            text = base
            if "Reply-Message" in extra:
                text = text.replace("ATTRIBUTE\tReply-Message\t\t\t\t18\tstring\n", "")
            Path(path).write_text(text + extra)
            dictionary = loadDictionary(path)
            self.assertEqual(radius.ReplyDecoder.forDictionary(dictionary) is not None,
                             expected, extra)


class IdPoolTests(SynchronousTestCase):
    def test_all256Distinct(self) -> None:
        pool = IdPool()
        ids = [pool.allocate() for _ in range(256)]
        self.assertEqual(sorted(i for i in ids if i is not None), list(range(256)))
        self.assertIsNone(pool.allocate())
        pool.release(17)
        self.assertEqual(pool.allocate(), 17)
        self.assertEqual(len(pool.inFlight), 256)

    def test_freedGoesLast(self) -> None:
        # A late reply to an old request must not match the next one.
        pool = IdPool()
        first = pool.allocate()
        assert first is not None
        pool.release(first)
        following = [pool.allocate() for _ in range(255)]
        self.assertNotIn(first, following)
        self.assertEqual(pool.allocate(), first)

    def test_releaseUnknown(self) -> None:
        self.assertRaises(KeyError, IdPool().release, 3)


class ServerPoolTests(SynchronousTestCase):
    """L{ServerPool}: dead servers skipped, probed one request at a time."""

    A = RadiusServer("127.0.0.1", 1812, b"a")
    B = RadiusServer("127.0.0.2", 1812, b"b")

    def test_deadSkippedThenProbed(self) -> None:
        pool = ServerPool([self.A, self.B], deadTime=30)
        self.assertEqual(pool.order(0), [self.A, self.B])
        pool.asking(self.A)
        self.assertTrue(pool.silent(self.A, 3))
        self.assertFalse(pool.silent(self.A, 3))  # already dead: not again
        self.assertEqual(pool.order(10), [self.B])
        # Its time is over: the next request probes it, in its place; the
        # requests meanwhile do not.
        self.assertEqual(pool.order(33), [self.A, self.B])
        pool.asking(self.A)
        self.assertEqual(pool.order(33.5), [self.B])
        self.assertEqual([d["state"] for d in pool.describe(33.5)], ["probing", "alive"])
        self.assertTrue(pool.answered(self.A))
        self.assertFalse(pool.answered(self.A))
        self.assertEqual(pool.order(34), [self.A, self.B])

    def test_probeSilentDeadAgain(self) -> None:
        pool = ServerPool([self.A, self.B], deadTime=30)
        pool.silent(self.A, 0)
        pool.asking(self.A)
        pool.silent(self.A, 31)
        self.assertEqual(pool.order(40), [self.B])
        self.assertEqual(pool.order(61), [self.A, self.B])

    def test_abandonedProbe(self) -> None:
        pool = ServerPool([self.A, self.B], deadTime=30)
        pool.silent(self.A, 0)
        pool.asking(self.A)
        pool.abandoned(self.A)
        self.assertEqual(pool.order(31), [self.A, self.B])

    def test_allDeadAllTried(self) -> None:
        pool = ServerPool([self.A, self.B], deadTime=30)
        pool.silent(self.A, 0)
        pool.silent(self.B, 0)
        self.assertEqual(pool.order(1), [self.A, self.B])

    def test_deadTimeZero(self) -> None:
        pool = ServerPool([self.A, self.B], deadTime=0)
        self.assertFalse(pool.silent(self.A, 0))
        self.assertEqual(pool.order(1), [self.A, self.B])


class DictionaryTests(SynchronousTestCase):
    def test_default(self) -> None:
        checkout = Path(radius.__file__).resolve().parent.parent
        self.assertEqual(radius.defaultDictionaryPath(),
                         str(checkout / "radius_dicts" / "dictionary"))
        self.assertEqual(DICTIONARY.vendors.GetForward("LMM"), 32473)

    def test_incomplete(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("ATTRIBUTE\tUser-Name\t1\tstring\n")
        e = self.assertRaises(ValueError, loadDictionary, path)
        self.assertIn("LMM-Address-Mode", str(e))
        self.assertRaises(OSError, loadDictionary, path + ".missing")

    def test_unparsable(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("ATTRIBUTE\tUser-Name\n")
        self.assertRaises(ValueError, loadDictionary, path)


class BackendTests(RadiusTestMixin, SynchronousTestCase):
    SERVERS = [{"address": "127.0.0.1", "secret": "s"}]

    def build(self, settings: dict[str, Any]) -> RadiusAuthenticator:
        auth = radiusBackend(settings, reactor)
        self.addCleanup(auth.stop)
        return auth

    def test_declared(self) -> None:
        auth = findBackend(IAuthenticator, "radius").build({"servers": self.SERVERS}, reactor)
        self.addCleanup(auth.stop)
        self.assertTrue(verifyObject(IAuthenticator, auth))

    def test_defaults(self) -> None:
        auth = self.build({"servers": self.SERVERS})
        self.assertEqual(auth.servers, [RadiusServer("127.0.0.1", 1812, b"s")])
        self.assertEqual((auth.timeout, auth.retries, auth.password, auth.nasPortType),
                         (1.0, 2, "mac", 15))

    def test_all(self) -> None:
        auth = self.build({
            "servers": [{"address": "::1", "port": 11812, "secret": "a"}, *self.SERVERS],
            "timeout": 0.5, "retries": 0, "nai_template": "{mac}@x", "password": "pw",
            "nas_identifier": "mpa-7", "nas_port_type": 19, "service_type": "call-check",
            "dictionary": radius.defaultDictionaryPath(), "source_address": "127.0.0.1",
            "require_prefix_or_address": False, "require_message_authenticator": True,
        })
        self.assertEqual(auth.servers[0], RadiusServer("::1", 11812, b"a"))
        self.assertEqual(len(auth._sockets), 2)  # one per address family
        self.assertEqual((auth.serviceType, auth.requireMessageAuthenticator),
                         ("call-check", True))

    def test_errors(self) -> None:
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({}, "servers", "required"),
            ({"servers": []}, "servers", "at least 1"),
            ({"servers": [{"address": "127.0.0.1"}]}, "servers", "item 0: secret"),
            ({"servers": [{"address": "radius.example", "secret": "s"}]}, "servers",
             "IP address"),
            ({"servers": [{"address": "::1", "secret": "s", "prot": 1}]}, "servers",
             "did you mean 'port'"),
            ({"servers": self.SERVERS, "timeout": 0}, "timeout", "0.01"),
            ({"servers": self.SERVERS, "nai_template": "{mac_dot}"}, "nai_template", "mac_dot"),
            ({"servers": self.SERVERS, "service_type": "login"}, "service_type", "call-check"),
            ({"servers": self.SERVERS, "password": "p" * 129}, "password", "128"),
            ({"servers": self.SERVERS, "nas_identifier": "n" * 254}, "nas_identifier", "253"),
            ({"servers": self.SERVERS, "nas_identifier": ""}, "nas_identifier", "non-empty"),
            ({"servers": self.SERVERS, "dictionary": "/nonexistent"}, "dictionary",
             "cannot load"),
        ]
        for settings, key, fragment in cases:
            e = self.assertRaises(ConfigError, radiusBackend, settings, reactor)
            self.assertEqual(e.key, key)
            self.assertIn(fragment, str(e))


# --- against a fake server on loopback ---------------------------------------------------


class FakeServerTests(RadiusTestMixin, TestCase):
    async def test_acceptWithMessageAuthenticator(self) -> None:
        fake, server = self.fakeServer(lambda data: [accept(data)])
        auth = self.authenticator([server])
        profile = await auth.authenticate(MAC_ONLY)
        self.assertEqual(profile.nai, b"020000000002@lmm.test")
        self.assertEqual(auth.counters, {"request.sent": 1, "access.accept": 1})
        # On the wire: Message-Authenticator first and right, Call-Check for MAC-only.
        data = fake.received[0]
        offset, kind, value = attributesOf(data)[0]
        self.assertEqual((offset, kind), (20, 80))
        self.assertEqual(value, hmac.new(SECRET, data[:22] + bytes(16) + data[38:],
                                         hashlib.md5).digest())
        self.assertEqual(decodeRequest(data)["Service-Type"], ["Call-Check"])

    async def test_silentServer(self) -> None:
        # Retransmissions: same Identifier and Request Authenticator, TIMEOUT apart.
        fake, server = self.fakeServer(lambda data: [])
        auth = self.authenticator([server])
        start = time.monotonic()
        failure = await self.failsWith(auth.authenticate(ALICE), AAAUnavailable)
        elapsed = time.monotonic() - start
        self.assertIn(str(server), failure.reason)
        self.assertEqual(len(fake.received), 1 + RETRIES)
        self.assertEqual(len(set(fake.received)), 1)
        self.assertGreaterEqual(elapsed, (1 + RETRIES) * TIMEOUT)
        self.assertLess(elapsed, (1 + RETRIES) * TIMEOUT + 0.5)
        self.assertEqual(auth.counters, {"request.sent": 1, "request.retransmitted": 2,
                                         "server.timeout": 1, "server.marked-dead": 1,
                                         "access.unavailable": 1})

    async def test_forgedRepliesDropped(self) -> None:
        # Signed with the wrong secret: counted, logged, dropped; the request
        # still times out (nothing good ever comes).
        fake, server = self.fakeServer(lambda data: [reply(data, secret=b"forger")])
        auth = self.authenticator([server])
        await self.failsWith(auth.authenticate(ALICE), AAAUnavailable)
        self.assertEqual(auth.counters["reply.bad-authenticator"], 1 + RETRIES)
        self.assertEqual(auth.counters["access.accept"], 0)

    async def test_forgedThenGood(self) -> None:
        fake, server = self.fakeServer(
            lambda data: [accept(data, secret=b"forger", PMIP6_Home_HN_Prefix="2001:db8:66::/64"),
                          accept(data)])
        auth = self.authenticator([server])
        profile = await auth.authenticate(ALICE)
        self.assertEqual(profile.localNetworkPrefix, ipaddress.IPv6Network("2001:db8:9::/64"))
        self.assertEqual(auth.counters["reply.bad-authenticator"], 1)
        self.assertEqual(len(fake.received), 1)

    async def test_badMessageAuthenticator(self) -> None:
        def answer(data: bytes) -> list[bytes]:
            good = accept(data)
            offset = [o for o, kind, _ in attributesOf(good) if kind == 80][0]
            bad = good[:offset + 2] + b"\xff" * 16 + good[offset + 18:]
            return [resign(bad, data[4:20]), good]

        fake, server = self.fakeServer(answer)
        auth = self.authenticator([server])
        await auth.authenticate(ALICE)
        self.assertEqual(auth.counters["reply.bad-message-authenticator"], 1)
        self.assertEqual(auth.counters["access.accept"], 1)

    async def test_requireMessageAuthenticator(self) -> None:
        fake, server = self.fakeServer(
            lambda data: [accept(data, messageAuthenticator=False), accept(data)])
        auth = self.authenticator([server], requireMessageAuthenticator=True)
        await auth.authenticate(ALICE)
        self.assertEqual(auth.counters["reply.missing-message-authenticator"], 1)
        # Without the setting, a reply without one (FreeRADIUS 3.2.1's) is fine.
        fake.answer = lambda data: [accept(data, messageAuthenticator=False)]
        await self.authenticator([server]).authenticate(ALICE)

    async def test_malformedAndUnmatched(self) -> None:
        spoofer = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        self.addCleanup(spoofer.stopListening)

        def answer(data: bytes) -> list[bytes]:
            good = accept(data)
            otherId = good[:1] + bytes([(good[1] + 1) % 256]) + good[2:]
            longer = good[:2] + struct.pack("!H", len(good) + 10) + good[4:]
            spoofer.write(good, ("127.0.0.1", auth._sockets[socket.AF_INET].port.getHost().port))
            return [b"\x02\x01\x00", longer, resign(otherId, data[4:20]), good + b"\0pad"]

        fake, server = self.fakeServer(answer)
        auth = self.authenticator([server])
        profile = await auth.authenticate(ALICE)
        self.assertEqual(profile.nai, b"alice@lmm.test")
        self.assertEqual(auth.counters["reply.malformed"], 2)
        self.assertEqual(auth.counters["reply.unmatched"], 2)  # wrong port, wrong Identifier

    async def test_proxyStateAndUnexpectedCode(self) -> None:
        def answer(data: bytes) -> list[bytes]:
            request = decodeRequest(data)
            withProxyState = request.CreateReply()
            OrderedDict.__setitem__(withProxyState, 33, [b"blast"])
            wrongCode = bytes([rpacket.AccountingResponse]) + accept(data)[1:]
            return [withProxyState.ReplyPacket(), resign(wrongCode, data[4:20]), accept(data)]

        fake, server = self.fakeServer(answer)
        auth = self.authenticator([server])
        await auth.authenticate(ALICE)
        self.assertEqual(auth.counters["reply.unexpected-proxy-state"], 1)
        self.assertEqual(auth.counters["reply.unexpected-code"], 1)

    async def test_challengeRejected(self) -> None:
        fake, server = self.fakeServer(lambda data: [reply(data, code=rpacket.AccessChallenge)])
        auth = self.authenticator([server])
        failure = await self.failsWith(auth.authenticate(ALICE), AccessRejected)
        self.assertIn("Access-Challenge", failure.reason)
        self.assertEqual(auth.counters["access.challenge"], 1)

    async def test_unusableAccept(self) -> None:
        fake, server = self.fakeServer(lambda data: [accept(data, LMM_Address_Mode=9)])
        auth = self.authenticator([server])
        failure = await self.failsWith(auth.authenticate(ALICE), AccessRejected)
        self.assertIn("LMM-Address-Mode", failure.reason)
        fake.answer = lambda data: [accept(data, Framed_IPv6_Address="2001:db8:7::1")]
        failure = await self.failsWith(auth.authenticate(ALICE), AccessRejected)
        self.assertIn("outside", failure.reason)
        self.assertEqual(auth.counters["reply.bad-attributes"], 2)
        self.assertEqual(len(fake.received), 2)  # not retried elsewhere: the server answered

    async def test_256InFlightThenQueued(self) -> None:
        held: list[bytes] = []

        def hold(data: bytes) -> list[bytes]:
            held.append(data)
            return []

        fake, server = self.fakeServer(hold)
        auth = self.authenticator([server], timeout=10.0)
        pending = [auth.authenticate(AccessRequest(f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
                                                   "e")) for i in range(300)]
        radiusSocket = auth._sockets[socket.AF_INET]
        self.assertEqual(len(radiusSocket.ids.inFlight), 256)
        self.assertEqual(auth.counters["request.queued"], 44)
        deadline = time.monotonic() + 5
        while len(held) < 256 and time.monotonic() < deadline:
            await deferLater(0.01)
        self.assertEqual(len({data[1] for data in held}), 256)  # all Identifiers distinct
        fake.answer = lambda data: [accept(data)]
        for data in held:
            fake.send(accept(data), ("127.0.0.1", radiusSocket.port.getHost().port))
        profiles = await defer.gatherResults(pending)
        self.assertEqual(len({p.nai for p in profiles}), 300)
        self.assertEqual(auth.counters["access.accept"], 300)
        self.assertEqual(radiusSocket.ids.inFlight, frozenset())

    async def test_cancelFreesIdentifier(self) -> None:
        fake, server = self.fakeServer(lambda data: [])
        auth = self.authenticator([server], timeout=10.0)
        d = auth.authenticate(ALICE)
        self.assertEqual(len(auth._sockets[socket.AF_INET].ids.inFlight), 1)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(auth._sockets[socket.AF_INET].ids.inFlight, frozenset())

    async def test_badRequestRejected(self) -> None:
        # Nothing is sent; the Deferred fails (it does not raise).
        fake, server = self.fakeServer(lambda data: [accept(data)])
        auth = self.authenticator([server])
        for request in [AccessRequest("02:00:00:00:00", "e", b"a@b"),
                        AccessRequest("02:00:00:00:00:01", "e", b"x" * 254),
                        AccessRequest("02:00:00:00:00:01", "e", b"")]:
            await self.failsWith(auth.authenticate(request), AccessRejected)
        self.assertEqual(fake.received, [])

    async def test_stop(self) -> None:
        fake, server = self.fakeServer(lambda data: [])
        auth = self.authenticator([server], timeout=10.0)
        d = auth.authenticate(ALICE)
        await auth.stop()
        failure = self.failureResultOf(d, AAAUnavailable)
        self.assertIn("stopped", failure.value.reason)
        self.failureResultOf(auth.authenticate(ALICE), AAAUnavailable)


def deferLater(seconds: float) -> defer.Deferred[None]:
    from twisted.internet.task import deferLater as later

    return later(reactor, seconds, lambda: None)


# --- against a real FreeRADIUS ----------------------------------------------------------

BARE = 'bare@lmm.test\tCleartext-Password := "020000000005"\n'


class FreeRADIUSTests(RadiusTestMixin, TestCase):
    def setUp(self) -> None:
        self.freeradius = freeradius.startFor(self, extraUsers=BARE)
        self.server = RadiusServer("127.0.0.1", self.freeradius.port, self.freeradius.secret)

    async def test_acceptFullProfile(self) -> None:
        auth = self.authenticator([self.server], nasIdentifier="mpa-test")
        self.assertEqual(await auth.authenticate(ALICE), ALICE_PROFILE)
        self.assertEqual(auth.counters, {"request.sent": 1, "access.accept": 1})
        # What FreeRADIUS saw (its -X log); it drops requests without a right
        # Message-Authenticator (require_message_authenticator = yes).
        log = self.freeradius.log()
        self.assertIn("Message-Authenticator = 0x", log)
        self.assertIn('Calling-Station-Id = "02-00-00-00-00-01"', log)
        self.assertIn("NAS-Port-Type = Ethernet", log)
        self.assertIn('NAS-Identifier = "mpa-test"', log)
        self.assertIn("Service-Type = Framed-User", log)

    async def test_acceptMacOnly(self) -> None:
        auth = self.authenticator([self.server])
        profile = await auth.authenticate(MAC_ONLY)
        self.assertEqual(profile, Profile(
            nai=b"020000000002@lmm.test", lmapAddress="2001:db8:ff::1",
            localNetworkPrefix=ipaddress.IPv6Network("2001:db8:2::/64"),
            virtualLmapMac="02:00:5e:00:53:01", virtualLmapLinkLocal="fe80::1",
            addressMode="slaac", mayChooseAddress=True))
        self.assertIn("Service-Type = Call-Check", self.freeradius.log())

    async def test_acceptOverIPv6(self) -> None:
        server = RadiusServer("::1", self.freeradius.port, self.freeradius.secret)
        auth = self.authenticator([server])
        carol = AccessRequest("02:00:00:00:00:03", "e", b"carol@lmm.test")
        profile = await auth.authenticate(carol)
        self.assertEqual((profile.localAddress, profile.addressMode), ("2001:db8:1::c", "manual"))

    async def test_reject(self) -> None:
        auth = self.authenticator([self.server])
        failure = await self.failsWith(
            auth.authenticate(AccessRequest("02:00:00:00:00:66", "e", b"mallory@lmm.test")),
            AccessRejected)
        self.assertIn("mallory@lmm.test is barred", failure.reason)
        # alice from another MAC: wrong password.
        await self.failsWith(
            auth.authenticate(AccessRequest("02:00:00:00:00:09", "e", b"alice@lmm.test")),
            AccessRejected)
        self.assertEqual(auth.counters["access.reject"], 2)

    async def test_acceptWithoutProfile(self) -> None:
        # FreeRADIUS knows the MS but gives it no prefix and no address.
        auth = self.authenticator([self.server])
        request = AccessRequest("02:00:00:00:00:05", "e", b"bare@lmm.test")
        failure = await self.failsWith(auth.authenticate(request), AccessRejected)
        self.assertIn("neither", failure.reason)
        self.assertEqual(auth.counters["reply.missing-attributes"], 1)
        # Unless the LMAP is to assign them (draft 6.1, Binding Cache Confirmation).
        lenient = self.authenticator([self.server], requirePrefixOrAddress=False)
        self.assertEqual(await lenient.authenticate(request), Profile(nai=b"bare@lmm.test"))

    async def test_wrongSecret(self) -> None:
        # FreeRADIUS drops the request (bad Message-Authenticator): no answer.
        server = RadiusServer("127.0.0.1", self.freeradius.port, b"not-the-secret")
        auth = self.authenticator([server], retries=0)
        await self.failsWith(auth.authenticate(ALICE), AAAUnavailable)

    async def test_failover(self) -> None:
        # The first server (on ::1, its own socket) answers nothing: after its
        # retries, the second (FreeRADIUS on 127.0.0.1) is asked.
        unreachable = RadiusServer("::1", freeradius.freeUDPPort(), b"x")
        auth = self.authenticator([unreachable, self.server])
        start = time.monotonic()
        self.assertEqual(await auth.authenticate(ALICE), ALICE_PROFILE)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, (1 + RETRIES) * TIMEOUT)
        self.assertLess(elapsed, (1 + RETRIES) * TIMEOUT + 0.5)
        self.assertEqual(auth.counters["server.timeout"], 1)
        self.assertEqual(auth.counters["request.sent"], 2)
        self.assertEqual(auth.counters["request.retransmitted"], RETRIES)


class FailoverAndBackTests(RadiusTestMixin, TestCase):
    """Issue 13, part 5, against two real FreeRADIUS: the first stops
    answering (SIGSTOP), requests go to the second, at once after the first
    one's timeouts; the first answers again (SIGCONT), and after dead_time
    the requests are its again."""

    async def test_failoverAndBack(self) -> None:
        first = freeradius.startFor(self)
        second = freeradius.startFor(self)
        servers = [RadiusServer("127.0.0.1", f.port, f.secret) for f in (first, second)]
        deadTime = 1.0
        auth = self.authenticator(servers, deadTime=deadTime)
        self.assertEqual(await auth.authenticate(ALICE), ALICE_PROFILE)
        os.kill(first.process.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, first.process.pid, signal.SIGCONT)
        start = time.monotonic()
        self.assertEqual(await auth.authenticate(ALICE), ALICE_PROFILE)
        failoverGap = time.monotonic() - start
        self.assertGreaterEqual(failoverGap, (1 + RETRIES) * TIMEOUT)
        self.assertEqual(auth.counters["server.marked-dead"], 1)
        # The next ones go to the second at once.
        start = time.monotonic()
        for _ in range(3):
            self.assertEqual(await auth.authenticate(ALICE), ALICE_PROFILE)
        self.assertLess(time.monotonic() - start, TIMEOUT)
        self.assertEqual(auth.counters["server.timeout"], 1)
        os.kill(first.process.pid, signal.SIGCONT)
        await deferLater(deadTime + 0.1)
        before = first.log().count("Received Access-Request")
        self.assertEqual(await auth.authenticate(ALICE), ALICE_PROFILE)
        self.assertEqual(auth.counters["server.revived"], 1)
        self.assertEqual(auth.counters["server.timeout"], 1)
        self.assertEqual([d["state"] for d in auth.pool.describe(reactor.seconds())],
                         ["alive", "alive"])
        await deferLater(0.2)  # its -X log is written
        self.assertGreater(first.log().count("Received Access-Request"), before)
        print(f"\nRADIUS failover gap {failoverGap * 1000:.0f} ms "
              f"(timeout {TIMEOUT} s x {1 + RETRIES}); back after dead_time {deadTime} s")


class UnreachableTests(RadiusTestMixin, TestCase):
    async def test_unreachable(self) -> None:
        # A port nobody listens on; two servers, each tried 1 + RETRIES times.
        servers = [RadiusServer("127.0.0.1", freeradius.freeUDPPort(), b"x") for _ in range(2)]
        auth = self.authenticator(servers)
        start = time.monotonic()
        failure = await self.failsWith(auth.authenticate(ALICE), AAAUnavailable)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 2 * (1 + RETRIES) * TIMEOUT)
        self.assertLess(elapsed, 2 * (1 + RETRIES) * TIMEOUT + 0.5)
        for server in servers:
            self.assertIn(str(server), failure.reason)
        self.assertEqual(auth.counters["request.sent"], 2)
        self.assertEqual(auth.counters["request.retransmitted"], 2 * RETRIES)
        self.assertEqual(auth.counters["access.unavailable"], 1)
