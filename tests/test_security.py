"""
lmm.security: RFC 4285 authentication and replay protection of the MPA-LMAP
signaling, key files, and what tshark reads of a protected message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from dataclasses import replace

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from lmm import mh, security
from lmm.config import ConfigError
from lmm.daemon import loadAssociations
from lmm.security import (
    HMAC_SHA1_96,
    HMAC_SHA256_128,
    MobilitySecurityAssociation,
    SecurityAssociations,
    SignalingCodec,
)
from tests.test_mh_golden import TSHARK, ipv6Frame, parsePDML

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LMAP, MPA, OTHER = "2001:db8:ff::1", "2001:db8:ff::11", "2001:db8:ff::12"
KEY = bytes(range(32))
NOW = 1_800_000_000.25
NAI = b"ms1@lmm.test"


def pair(algorithm: security.Algorithm = HMAC_SHA256_128, spi: int = 300,
         window: float = 1.0) -> tuple[SignalingCodec, SignalingCodec]:
    """An LMAP's codec and an MPA's, sharing one SA."""
    lmap = SignalingCodec(mh.DRAFT, LMAP, "lmap", SecurityAssociations(
        [MobilitySecurityAssociation(MPA, spi, algorithm, KEY)]), window)
    mpa = SignalingCodec(mh.DRAFT, MPA, "mpa", SecurityAssociations(
        [MobilitySecurityAssociation(LMAP, spi, algorithm, KEY)]), window)
    return lmap, mpa


def pbu(sequence: int = 7) -> mh.BindingUpdate:
    return mh.ProxyBindingUpdate(sequence, 400, [mh.MobileNodeIdentifier(NAI)])


MESSAGES: list[mh.MobilityMessage] = [
    pbu(),
    mh.BindingAck(0, 7, 400, (mh.LocalAddress("2001:db8:1::5", 64),), proxy=True),
    mh.BindingRevocationIndication(3, 4, (mh.MobileNodeIdentifier(NAI),), proxy=True),
    mh.BindingRevocationAck(0, 3, (), proxy=True),
    mh.Heartbeat(9),
    mh.Heartbeat(9, response=True),
]


class AuthenticationTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        """Every message kind, both directions, both algorithms: what one end
        seals the other opens, options and fields kept."""
        for algorithm in (HMAC_SHA1_96, HMAC_SHA256_128):
            lmap, mpa = pair(algorithm)
            for message in MESSAGES:
                for sender, receiver, source, destination in ((mpa, lmap, MPA, LMAP),
                                                              (lmap, mpa, LMAP, MPA)):
                    data = sender.encode(message, destination, NOW)
                    self.assertEqual(len(data) % 8, 0)
                    opened = receiver.decode(data, source, NOW + 0.01)
                    self.assertEqual(type(opened), type(message))
                    # The Authentication option, checked, is not passed on.
                    self.assertEqual(opened.options, message.options + (
                        mh.ReplayProtection(security.ntpTimestamp(NOW)),))
                    authentication = mh.decode(data).options[-1]
                    assert isinstance(authentication, mh.Authentication)
                    self.assertEqual(authentication.spi, 300)
                    self.assertEqual(len(authentication.authenticationData), algorithm.length)

    def test_macAsRFC4285Says(self) -> None:
        """The authenticator is First(n, HMAC(key, MPA address | LMAP address |
        the header up to the SPI, checksum zero)), computed here apart from
        the codec, with the kernel's checksum filled in on the wire."""
        lmap, mpa = pair(HMAC_SHA1_96)
        data = mh.withChecksum(MPA, LMAP, mpa.encode(pbu(), LMAP, NOW))
        self.assertNotEqual(data[4:6], b"\x00\x00")
        message = mh.decode(data)
        authentication = message.options[-1]
        assert isinstance(authentication, mh.Authentication)
        self.assertEqual(authentication.subtype, mh.AUTH_SUBTYPE_MN_HA)
        # The option is last: after its data only padding.
        spiEnd = data.index(struct.pack("!BI", 1, 300)) + 5
        covered = data[:4] + b"\x00\x00" + data[6:spiEnd]
        mobilityData = (socket.inet_pton(socket.AF_INET6, MPA)
                        + socket.inet_pton(socket.AF_INET6, LMAP) + covered)
        expected = hmac.new(KEY, mobilityData, hashlib.sha1).digest()[:12]
        self.assertEqual(authentication.authenticationData, expected)
        self.assertEqual(data[spiEnd:spiEnd + 12], expected)
        lmap.decode(data, MPA, NOW)
        # The other way, the MPA's address comes first all the same.
        answer = lmap.encode(MESSAGES[1], MPA, NOW)
        authentication = mh.decode(answer).options[-1]
        assert isinstance(authentication, mh.Authentication)
        spiEnd = answer.index(struct.pack("!BI", 1, 300)) + 5
        mobilityData = (socket.inet_pton(socket.AF_INET6, MPA)
                        + socket.inet_pton(socket.AF_INET6, LMAP) + answer[:spiEnd])
        self.assertEqual(authentication.authenticationData,
                         hmac.new(KEY, mobilityData, hashlib.sha1).digest()[:12])

    def test_everyBitCovered(self) -> None:
        """A change of any byte before the padding is refused: as a bad
        authenticator, or as something that no longer decodes or names
        another SPI."""
        lmap, mpa = pair()
        data = mpa.encode(pbu(), LMAP, NOW)
        for i in range(len(data)):
            if i in (4, 5):
                continue  # the checksum: the kernel checks it, RFC 4285 leaves it out
            changed = bytearray(data)
            changed[i] ^= 0x40
            with self.assertRaises(mh.MobilityHeaderError, msg=f"byte {i}") as caught:
                lmap.decode(bytes(changed), MPA, NOW)
            self.assertNotEqual(caught.exception.reason, "", f"byte {i}")

    def test_refusals(self) -> None:
        lmap, mpa = pair()
        data = mpa.encode(pbu(), LMAP, NOW)
        cases = [
            # From another address: no SA with it.
            (lambda: lmap.decode(data, OTHER, NOW), security.UnknownPeer),
            # Plain, unprotected.
            (lambda: lmap.decode(mh.encode(pbu()), MPA, NOW), security.MissingAuthentication),
            # Too old, too far ahead.
            (lambda: lmap.decode(data, MPA, NOW + 1.5), security.StaleTimestamp),
            (lambda: lmap.decode(data, MPA, NOW - 1.5), security.StaleTimestamp),
        ]
        for call, kind in cases:
            with self.assertRaises(kind):
                call()
        # Another SPI than the MPA's.
        _, stranger = pair(spi=301)
        with self.assertRaises(security.UnknownSPI):
            lmap.decode(stranger.encode(pbu(), LMAP, NOW), MPA, NOW)
        # Another key under the same SPI.
        forger = SignalingCodec(mh.DRAFT, MPA, "mpa", SecurityAssociations(
            [MobilitySecurityAssociation(LMAP, 300, HMAC_SHA256_128, bytes(32))]))
        forged = forger.encode(pbu(), LMAP, NOW)
        with self.assertRaises(security.BadAuthenticator) as caught:
            lmap.decode(forged, MPA, NOW)
        # The refused message is kept on the error, for the core's counting.
        decoded = mh.decode(forged)
        self.assertEqual(caught.exception.message,
                         replace(decoded, options=decoded.options[:-1]))
        self.assertEqual(caught.exception.reason, "auth-bad-mac")
        # Authenticated but without a timestamp.
        sa = MobilitySecurityAssociation(MPA, 300, HMAC_SHA256_128, KEY)
        pairBytes = socket.inet_pton(socket.AF_INET6, MPA) + socket.inet_pton(socket.AF_INET6,
                                                                               LMAP)
        unsealed = mh.encode(replace(pbu(), options=pbu().options + (
            mh.Authentication(mh.AUTH_SUBTYPE_MN_HA, 300, bytes(16)),)))
        spiEnd = unsealed.index(struct.pack("!BI", 1, 300)) + 5
        noTimestamp = (unsealed[:spiEnd] + sa.mac(pairBytes + unsealed[:spiEnd])
                       + unsealed[spiEnd + 16:])
        with self.assertRaises(security.MissingTimestamp):
            lmap.decode(noTimestamp, MPA, NOW)

    def test_sealedLayout(self) -> None:
        """encodeSealed's bytes decode to the message with the two options
        added, whatever the length of the message's own options (each
        position mod 8), with no padding after the Authentication option
        (4n+1, RFC 4285 5), which decodeSealed finds as decode does."""
        for macLength in (12, 16):
            for length in range(1, 20):
                message = pbu()
                message = replace(message, options=(mh.MobileNodeIdentifier(b"x" * length),))
                sealed = mh.encodeSealed(message, mh.DRAFT, 4000, 12345, macLength,
                                         lambda c: b"m" * macLength)  # noqa: B023
                self.assertEqual(len(sealed) % 8, 0)
                decoded = mh.decode(sealed)
                self.assertEqual(decoded, replace(message, options=message.options + (
                    mh.ReplayProtection(12345),
                    mh.Authentication(mh.AUTH_SUBTYPE_MN_HA, 4000, b"m" * macLength))))
                authentication = decoded.options[-1]
                assert isinstance(authentication, mh.Authentication)
                start = sealed.index(b"m" * macLength)
                self.assertEqual(authentication.covered, start)
                self.assertEqual(start % 4, 0, (macLength, length))  # the option at 4n+1
                self.assertEqual(start + macLength, len(sealed), (macLength, length))
                self.assertEqual(mh.decodeSealed(sealed, mh.DRAFT), (
                    replace(decoded, options=decoded.options[:-1]),
                    (mh.AUTH_SUBTYPE_MN_HA, 4000, start, b"m" * macLength)))

    def test_otherLayouts(self) -> None:
        """What another implementation may send opens too: the options in
        another order, the Authentication option padded after (mh.encode's
        layout); one that is not last, or not MN-HA, is refused."""
        lmap, _ = pair()
        sa = MobilitySecurityAssociation(MPA, 300, HMAC_SHA256_128, KEY)
        addresses = socket.inet_pton(socket.AF_INET6, MPA) + socket.inet_pton(socket.AF_INET6,
                                                                               LMAP)

        def signed(options: tuple[mh.MobilityOption, ...], subtype: int = 1,
                   after: tuple[mh.MobilityOption, ...] = ()) -> bytes:
            placeholder = mh.Authentication(subtype, 300, bytes(16))
            data = mh.encode(replace(pbu(), options=options + (placeholder,) + after))
            spiEnd = data.index(struct.pack("!BI", subtype, 300)) + 5
            return data[:spiEnd] + sa.mac(addresses + data[:spiEnd]) + data[spiEnd + 16:]

        replay = mh.ReplayProtection(security.ntpTimestamp(NOW))
        padded = 0
        for options in ((replay,) + pbu().options, pbu().options + (replay,)):
            data = signed(options)
            padded += not data.endswith(mh.decode(data).options[-1].authenticationData)  # type: ignore[attr-defined]
            self.assertEqual(lmap.decode(data, MPA, NOW).options, options)
        self.assertTrue(padded)
        with self.assertRaises(security.MissingAuthentication):
            lmap.decode(signed((replay,) + pbu().options, subtype=mh.AUTH_SUBTYPE_MN_AAA),
                        MPA, NOW)
        with self.assertRaises(security.MissingAuthentication):
            lmap.decode(signed((replay,), after=pbu().options), MPA, NOW)

    def test_longKey(self) -> None:
        """A key longer than the hash's block is hashed first (RFC 2104 2)."""
        for algorithm in (HMAC_SHA1_96, HMAC_SHA256_128):
            key = bytes(range(200))
            sa = MobilitySecurityAssociation(MPA, 300, algorithm, key)
            self.assertEqual(sa.mac(b"data"),
                             hmac.new(key, b"data", algorithm.digest).digest()[:algorithm.length])

    def test_reflectedMessage(self) -> None:
        """A PBA the LMAP sealed for the MPA is no PBU the MPA could have sent
        back: the roles fix the order of the addresses, but a message sealed
        by one end and fed back to it still opens; what stops it is the
        message kind (the cores take none of their own kinds' answers)."""
        lmap, mpa = pair()
        data = lmap.encode(MESSAGES[1], MPA, NOW)
        self.assertIsInstance(lmap.decode(data, MPA, NOW), mh.BindingAck)

    def test_unprotected(self) -> None:
        """Without associations: plain codec both ways, nothing required; the
        LMAP adds nothing."""
        codec = SignalingCodec(mh.DRAFT, LMAP, "lmap")
        self.assertFalse(codec.protected)
        self.assertEqual(codec.encode(pbu(), MPA, NOW), mh.encode(pbu()))
        self.assertEqual(codec.decode(mh.encode(pbu()), MPA, NOW), pbu())

    def test_unprotectedTimestamp(self) -> None:
        """Issue 16, part 2: unprotected, the MPA's PBUs carry RFC 5213's
        Timestamp option (8.8's 48.16 format) and nothing else changes; the
        LMAP refuses a PBU stamped outside the window."""
        mpa = SignalingCodec(mh.DRAFT, MPA, "mpa")
        lmap = SignalingCodec(mh.DRAFT, LMAP, "lmap", replayWindow=1.0)
        data = mpa.encode(pbu(), LMAP, NOW)
        decoded = lmap.decode(data, MPA, NOW + 0.5)
        assert isinstance(decoded, mh.BindingUpdate)
        stamp = decoded.option(mh.Timestamp)
        self.assertEqual(stamp, mh.Timestamp(int(NOW) << 16 | 0x4000))
        self.assertEqual(replace(decoded, options=decoded.options[:-1]), pbu())
        self.assertEqual(security.ntpFromRfc5213(stamp.timestamp),  # type: ignore[union-attr]
                         security.ntpTimestamp(NOW))
        ack = mh.ProxyBindingAck(0, 7, 400)
        self.assertEqual(mpa.encode(ack, LMAP, NOW), mh.encode(ack))
        with self.assertRaises(security.StaleTimestamp) as caught:
            lmap.decode(data, MPA, NOW + 1.5)
        self.assertEqual(caught.exception.reason, security.StaleTimestamp.reason)
        # A PBU without one (another implementation's) is taken as it is.
        self.assertEqual(lmap.decode(mh.encode(pbu()), MPA, NOW + 100), pbu())

    def test_noAssociationNoSend(self) -> None:
        lmap, _ = pair()
        with self.assertRaises(ValueError):
            lmap.encode(MESSAGES[1], OTHER, NOW)

    def test_rollover(self) -> None:
        """Two SAs with one peer: both accepted, the first signs; after a
        rekey without the old one, only the new one is accepted."""
        old = MobilitySecurityAssociation(MPA, 300, HMAC_SHA256_128, KEY)
        new = MobilitySecurityAssociation(MPA, 301, HMAC_SHA1_96, bytes(20))
        lmap = SignalingCodec(mh.DRAFT, LMAP, "lmap", SecurityAssociations([new, old]))
        senders = {
            spi: SignalingCodec(mh.DRAFT, MPA, "mpa", SecurityAssociations(
                [MobilitySecurityAssociation(LMAP, sa.spi, sa.algorithm, sa.key)]))
            for spi, sa in ((300, old), (301, new))
        }
        for sender in senders.values():
            lmap.decode(sender.encode(pbu(), LMAP, NOW), MPA, NOW)
        sent = mh.decode(lmap.encode(MESSAGES[1], MPA, NOW)).options[-1]
        assert isinstance(sent, mh.Authentication)
        self.assertEqual(sent.spi, 301)
        lmap.rekey(SecurityAssociations([new]))
        with self.assertRaises(security.UnknownSPI):
            lmap.decode(senders[300].encode(pbu(), LMAP, NOW), MPA, NOW)

    def test_ntpTimestamp(self) -> None:
        # RFC 4285 6 / the golden vector: 2023-11-14 22:13:20.5 UTC.
        self.assertEqual(security.ntpTimestamp(1700000000.5),
                         ((1700000000 + 2208988800) << 32) | 0x80000000)
        self.assertAlmostEqual(security.fromNtpTimestamp(security.ntpTimestamp(NOW)), NOW,
                               places=6)

    def test_keyNeverShown(self) -> None:
        sa = MobilitySecurityAssociation(MPA, 300, HMAC_SHA256_128, KEY)
        self.assertNotIn(KEY.hex(), repr(sa))
        self.assertNotIn("key", sa.describe())


class HmacImplementationTests(SynchronousTestCase):
    """
    The C MAC (lmm._hmac) and lmm.security's hashlib one give Python's
    hmac's answer on the same inputs, and each end of the signaling opens
    what the other implementation sealed. scripts/setup builds lmm._hmac (it
    installs the compiler and libcrypto's headers), so a checkout without it
    fails here rather than running the slower MAC unnoticed.
    """

    def test_built(self) -> None:
        self.assertIsNotNone(security._hmac, "lmm._hmac was not built: run scripts/setup")
        self.assertTrue(security.HMAC_IMPLEMENTATION.startswith("C "))

    def implementations(self, sa: MobilitySecurityAssociation,
                        pair: bytes) -> list[security.Authenticator]:
        made = [sa.hashlibBetween(pair)]
        if security._hmac is not None:
            made.append(sa.between(pair))
            self.assertIsInstance(made[-1], security._hmac.Authenticator)
        return made

    def test_sameMac(self) -> None:
        """Keys shorter than, as long as and longer than the block, pairs and
        messages of many lengths: every implementation is First(length,
        HMAC(key, pair | data)), and check() takes the checksum as zero and
        refuses a changed bit, a short or a long MAC."""
        rng = random.Random(12)
        for algorithm in (HMAC_SHA1_96, HMAC_SHA256_128):
            for keyLength in (20, 32, 64, 65, 200):
                key = rng.randbytes(keyLength)
                sa = MobilitySecurityAssociation(MPA, 300, algorithm, key)
                for size in (0, 1, 6, 31, 55, 56, 63, 64, 65, 119, 200, 1000):
                    pairBytes = rng.randbytes(rng.choice((0, 32)))
                    data = rng.randbytes(size)
                    want = hmac.new(key, pairBytes + data,
                                    algorithm.digest).digest()[:algorithm.length]
                    for made in self.implementations(sa, pairBytes):
                        self.assertEqual(made(data), want, (type(made), keyLength, size))
                        self.assertEqual((made.spi, made.length, made.sa),
                                         (300, algorithm.length, sa))
                        if size < 6:
                            with self.assertRaises(ValueError):
                                made.check(data, size, want)
                            continue
                        covered = rng.randrange(6, size + 1)
                        zeroed = data[:4] + b"\0\0" + data[6:covered]
                        mac = hmac.new(key, pairBytes + zeroed,
                                       algorithm.digest).digest()[:algorithm.length]
                        self.assertTrue(made.check(data, covered, mac))
                        flipped = bytes([mac[0] ^ 1]) + mac[1:]
                        self.assertFalse(made.check(data, covered, flipped))
                        self.assertFalse(made.check(data, covered, mac[:-1]))
                        self.assertFalse(made.check(data, covered, mac + b"\0"))
                        with self.assertRaises(ValueError):
                            made.check(data, size + 1, mac)

    def test_interoperate(self) -> None:
        """An LMAP whose MACs are hashlib's and an MPA whose MACs are C's (and
        the other way round) open each other's messages."""
        for algorithm in (HMAC_SHA1_96, HMAC_SHA256_128):
            lmap, mpa = pair(algorithm)
            original = security._hmac
            security._hmac = None
            try:
                hashlibSide = pair(algorithm)
            finally:
                security._hmac = original
            for one, other in ((hashlibSide[0], mpa), (lmap, hashlibSide[1])):
                for message in MESSAGES:
                    if isinstance(message, mh.BindingUpdate | mh.BindingRevocationAck):
                        sender, receiver, at, frm = other, one, LMAP, MPA
                    else:
                        sender, receiver, at, frm = one, other, MPA, LMAP
                    data = sender.encode(message, at, NOW)
                    opened = receiver.decode(data, frm, NOW)
                    self.assertEqual(type(opened), type(message))

    def test_layoutConstants(self) -> None:
        """What lmm._hmac's sealed layout repeats of lmm.mh is lmm.mh's."""
        if security._hmac is None:
            raise SkipTest("lmm._hmac was not built (test_built says so)")
        c = security._hmac
        self.assertEqual((c.REPLAY_PROTECTION, c.AUTHENTICATION, c.MN_HA, c.IPPROTO_NONE,
                          c.MAX_HEADER_LENGTH),
                         (mh.OptionType.REPLAY_PROTECTION, mh.OptionType.AUTHENTICATION,
                          mh.AUTH_SUBTYPE_MN_HA, mh.IPPROTO_NONE, mh.MAX_HEADER_LENGTH))

    def test_sameSeal(self) -> None:
        """C's seal() lays out what mh.sealBody does, byte for byte: bodies
        of every length modulo 8 (each place the options can end), both
        algorithms, timestamps from 0 to 2**64 - 1; one too long for the
        8-bit Header Len is refused by both."""
        rng = random.Random(4285)
        for algorithm in (HMAC_SHA1_96, HMAC_SHA256_128):
            sa = MobilitySecurityAssociation(MPA, 0xFEDCBA98, algorithm, KEY)
            reference, *others = self.implementations(sa, rng.randbytes(32))
            for size in [*range(6, 40), 200, 1900]:
                body = rng.randbytes(size)
                for timestamp in (0, 1, rng.getrandbits(64), 2**64 - 1):
                    want = mh.sealBody(body, 5, sa.spi, timestamp, algorithm.length,
                                       reference)
                    self.assertEqual(reference.seal(body, 5, timestamp), want)
                    for made in others:
                        self.assertEqual(made.seal(body, 5, timestamp), want, (size, timestamp))
            for made in (reference, *others):
                with self.assertRaises(ValueError):
                    made.seal(bytes(2030), 5, 0)

    def test_fastPathAgrees(self) -> None:
        """
        The codec's fast path (lmm._hmac's open(), then mh.decodeBefore) and
        its general decode give the same answer (the same message, or the
        same refusal) to every input: each message kind sealed by each end,
        timestamps on both edges of the window, and thousands of mutations of
        them (bytes changed, cut, added, the padding and options moved, as a
        sender laying them out otherwise would); and the fast path is taken
        for lmm's own layout.
        """
        if security._hmac is None:
            raise SkipTest("lmm._hmac was not built (test_built says so)")
        rng = random.Random(5213)
        for algorithm in (HMAC_SHA1_96, HMAC_SHA256_128):
            lmap, mpa = pair(algorithm)
            window = lmap._window
            inputs: list[tuple[SignalingCodec, bytes, str, float]] = []
            for message in MESSAGES:
                for sender, receiver, source, destination in ((mpa, lmap, MPA, LMAP),
                                                              (lmap, mpa, LMAP, MPA)):
                    data = sender.encode(message, destination, NOW)
                    authenticator = receiver._signing[source]
                    self.assertIsNotNone(authenticator.open(data, NOW, window))
                    stamp = security.ntpTimestamp(NOW)
                    sealer = sender._signing[destination]
                    for skew in (-window - 1, -window, 0, window, window + 1):
                        # Stamped on the window's edges, to the NTP unit.
                        skewed = sealer.seal(mh.encodeBody(message, sender.profile),
                                             message.mhType, stamp + skew)
                        inputs.append((receiver, skewed, source, NOW))
                        self.assertEqual(authenticator.open(skewed, NOW, window) is not None,
                                         abs(skew) <= window, skew)
                    inputs.append((receiver, data, source, NOW + 5))
                    for _ in range(400):
                        inputs.append((receiver, mutated(rng, data), source, NOW))
                        # Changed and signed again: what only a peer can send.
                        inputs.append((receiver, resealed(rng, data, authenticator), source, NOW))
                    inputs.append((receiver, data, OTHER, NOW))
                    relaid = relaidOut(sender, message, destination, rng)
                    inputs.append((receiver, relaid, source, NOW))
            for receiver, data, source, at in inputs:
                self.assertEqual(outcome(receiver.decode, data, source, at),
                                 outcome(receiver._decodeSealed, data, source, at),
                                 data.hex())


def outcome(decode: object, data: bytes, source: str, now: float) -> object:
    """What a decode gives: the message, or the refusal's type and text."""
    try:
        return decode(data, source, now)  # type: ignore[operator]
    except mh.MobilityHeaderError as e:
        return type(e), str(e)


def mutated(rng: random.Random, data: bytes) -> bytes:
    """C{data} with a few bytes changed, cut or added (the Header Len kept
    right half of the time, so that most reach the options)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        choice = rng.random()
        at = rng.randrange(len(out))
        if choice < 0.6:
            out[at] = rng.choice((0, 1, 3, 5, 8, 9, 10, 255, rng.randrange(256)))
        elif choice < 0.8:
            del out[at:at + rng.randint(1, 8)]
        else:
            out[at:at] = bytes(rng.randint(1, 8))
    if out and rng.random() < 0.5:
        out[1:2] = bytes(((len(out) + 7) // 8 - 1,))
        out.extend(bytes(-len(out) % 8))
    return bytes(out)


def resealed(rng: random.Random, data: bytes, authenticator: security.Authenticator) -> bytes:
    """C{data} (lmm's layout, its MAC last) with a few of the bytes before
    its Authentication option changed to option types, lengths and padding,
    and its MAC made again: odd layouts, authentic."""
    out = bytearray(data)
    at = len(out) - 7 - authenticator.length
    for _ in range(rng.randint(1, 3)):
        out[rng.randrange(6, at)] = rng.choice((0, 1, 2, 3, 5, 8, 9, 10, 18, rng.randrange(256)))
    covered = at + 7
    out[covered:covered + authenticator.length] = authenticator(
        bytes(out[:4]) + b"\0\0" + bytes(out[6:covered]))
    return bytes(out)


def relaidOut(sender: SignalingCodec, message: mh.MobilityMessage, destination: str,
              rng: random.Random) -> bytes:
    """C{message} sealed as another sender may lay it out (RFC 4285 allows
    it): the Replay Protection option first, padding after the MAC."""
    authenticator = sender._signing[destination]
    stamp = mh.ReplayProtection(security.ntpTimestamp(NOW))
    moved = replace(message, options=(stamp, *message.options))  # type: ignore[type-var]
    parts = mh.encode(moved, sender.profile)
    body = bytearray(parts)
    # The Authentication option at 4n+1, then PadN to the 8-byte end.
    position = len(body)
    body.extend(mh._padding((1 - position) % 4))
    start = len(body)
    body.extend(struct.pack("!BBBI", mh.OptionType.AUTHENTICATION, 5 + authenticator.length,
                            mh.AUTH_SUBTYPE_MN_HA, authenticator.spi))
    body.extend(bytes(authenticator.length))
    body.extend(mh._padding(-len(body) % 8) if -len(body) % 8 else b"")
    body[1] = len(body) // 8 - 1
    covered = start + 7
    body[4:6] = b"\0\0"
    mac = authenticator(bytes(body[:covered]))
    body[covered:covered + authenticator.length] = mac
    del rng
    return bytes(body)


class KeyFileTests(SynchronousTestCase):
    def write(self, text: str, mode: int = 0o600) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def association(self, **changes: object) -> str:
        table: dict[str, object] = {"peer": MPA, "spi": 1000, "algorithm": "hmac-sha256-128",
                                    "key": KEY.hex()}
        table.update(changes)
        lines = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in table.items()
                        if v is not None)
        return "[[association]]\n" + lines

    def test_loads(self) -> None:
        path = self.write(self.association() + self.association(spi=1001, peer="2001:DB8:FF:0::11"))
        associations = security.loadKeyFile(path)
        self.assertEqual(len(associations), 2)
        self.assertEqual(associations.sending(MPA).spi, 1000)  # type: ignore[union-attr]
        self.assertEqual(associations.lookup(MPA, 1001).key, KEY)  # type: ignore[union-attr]

    def test_writeKeyFile(self) -> None:
        """What writeKeyFile writes (mode 0600) loadKeyFile reads back, the
        same SAs in the same order; writing again replaces the file."""
        path = self.mktemp()
        written = [MobilitySecurityAssociation(MPA, 1000, HMAC_SHA256_128, KEY),
                   MobilitySecurityAssociation(MPA, 1001, HMAC_SHA1_96, bytes(20)),
                   MobilitySecurityAssociation(OTHER, 1000, HMAC_SHA256_128, KEY)]
        security.writeKeyFile(path, written)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        loaded = security.loadKeyFile(path)
        self.assertEqual([loaded.lookup(sa.peer, sa.spi) for sa in written], written)
        self.assertEqual(loaded.sending(MPA), written[0])
        security.writeKeyFile(path, written[2:])
        self.assertEqual(len(security.loadKeyFile(path)), 1)

    def test_permissions(self) -> None:
        """A key file others may read or write is refused, naming the mode."""
        for mode in (0o644, 0o640, 0o604, 0o620):
            path = self.write(self.association(), mode)
            with self.assertRaises(ConfigError) as caught:
                security.loadKeyFile(path)
            self.assertIn(f"{mode:04o}", str(caught.exception))
            self.assertIn("chmod 600", str(caught.exception))
        security.loadKeyFile(self.write(self.association(), 0o400))

    def test_errors(self) -> None:
        """Each bad table names the file and the key, and never the key's value."""
        cases = {
            "association[0].spi": self.association(spi=255),
            "association[0].algorithm": self.association(algorithm="md5"),
            "association[0].peer": self.association(peer="not-an-address"),
            "association[0].key": self.association(key=KEY.hex()[:30]),
            "association[0].colour": self.association(colour="red"),
            "association": self.association() + self.association(),
        }
        for key, text in cases.items():
            path = self.write(text)
            with self.assertRaises(ConfigError) as caught:
                security.loadKeyFile(path)
            self.assertEqual(caught.exception.key, key, text)
            self.assertIn(path, str(caught.exception))
            self.assertNotIn(KEY.hex()[:30], str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            security.loadKeyFile(self.write(f'[[association]]\nkey = "{KEY.hex()}\n'))
        self.assertNotIn(KEY.hex(), str(caught.exception))
        with self.assertRaises(ConfigError):
            security.loadKeyFile(self.write(""))
        with self.assertRaises(ConfigError):
            security.loadKeyFile(self.mktemp())

    def test_configuration(self) -> None:
        """The [security] table: a key file relative to the configuration
        file; none with authentication on is an error naming security.keys;
        authentication off needs none."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        with open(os.path.join(folder, "my.keys"), "w") as f:
            f.write(self.association())
        os.chmod(os.path.join(folder, "my.keys"), 0o600)
        config = os.path.join(folder, "lmap.toml")
        values = {"security.authentication": True, "security.keys": "my.keys",
                  "security.replay_window": 1.0}
        self.assertEqual(len(loadAssociations(config, values) or ()), 1)
        with self.assertRaises(ConfigError) as caught:
            loadAssociations(config, dict(values, **{"security.keys": None}))
        self.assertEqual(caught.exception.key, "security.keys")
        self.assertEqual(caught.exception.path, config)
        os.chmod(os.path.join(folder, "my.keys"), 0o644)
        with self.assertRaises(ConfigError) as caught:
            loadAssociations(config, values)
        self.assertEqual(caught.exception.key, "security.keys")
        self.assertIsNone(loadAssociations(config, dict(values, **{
            "security.authentication": False})))

    def test_samples(self) -> None:
        """etc/'s key files load (scripts/setup gave them mode 0600) and hold
        one SA for the pair etc/lmap.toml and etc/mpa.toml make."""
        lmap = security.loadKeyFile(os.path.join(TOP, "etc", "keys", "lmap.keys"))
        mpa = security.loadKeyFile(os.path.join(TOP, "etc", "keys", "mpa.keys"))
        mine, theirs = lmap.sending("2001:db8:ff::2"), mpa.sending("2001:db8:ff::1")
        assert mine is not None and theirs is not None
        self.assertEqual((mine.spi, mine.algorithm, mine.key),
                         (theirs.spi, theirs.algorithm, theirs.key))

    def test_newkey(self) -> None:
        result = subprocess.run([sys.executable, "-m", "lmm.security", "newkey"],
                                capture_output=True, text=True, cwd=TOP, check=True)
        self.assertEqual(len(bytes.fromhex(result.stdout.strip())), 32)


class TsharkTests(SynchronousTestCase):
    def test_decodesClean(self) -> None:
        """tshark reads every protected message kind without complaint, with
        the Replay Protection and Authentication options where they are."""
        lmap, mpa = pair()
        frames = []
        for message in MESSAGES:
            data = mpa.encode(message, LMAP, NOW)
            frames.append(ipv6Frame(mh.withChecksum("2001:db8::1", "2001:db8::2", data)))
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        for number, frame in enumerate(frames):
            out.append(struct.pack("<IIII", 1700000000 + number, 0, len(frame), len(frame)))
            out.append(frame)
        directory = tempfile.mkdtemp(prefix="lmm-security-")
        try:
            path = os.path.join(directory, "protected.pcap")
            with open(path, "wb") as f:
                f.write(b"".join(out))
            result = subprocess.run([TSHARK, "-n", "-r", path, "-T", "pdml"],
                                    capture_output=True, timeout=60, check=True,
                                    env={**os.environ, "HOME": directory,
                                         "XDG_CONFIG_HOME": directory})
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        packets = parsePDML(result.stdout)
        self.assertEqual(len(packets), len(MESSAGES))
        for message, packet in zip(MESSAGES, packets):
            self.assertFalse(packet.malformed, message)
            kinds = [option.kind for option in packet.options if option.kind > 1]  # not padding
            self.assertEqual(kinds[-2:], [mh.OptionType.REPLAY_PROTECTION,
                                          mh.OptionType.AUTHENTICATION], message)
