"""
A running twistd lmm-lmap with authentication on (RFC 4285, lmm.security), in
its own namespace, attacked from another over real raw Mobility Header
sockets the way a host on the backbone would: forged deregistrations and
handovers, a replay across a handover, an answer the kernel cannot route, and
a key rollover under traffic. The Binding Cache is read through the control
channel before and after each attack.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from lmm import mh
from lmm.control import ask
from lmm.lab.daemons import Daemon, writeConfig
from lmm.lab.netns import link
from lmm.security import (
    HMAC_SHA256_128,
    MobilitySecurityAssociation,
    SecurityAssociations,
    SignalingCodec,
)
from lmm.testing.mixins import NetnsTestMixin

LMAP = "fd00:145::1"
MPA1 = "fd00:145::2"
MPA2 = "fd00:145::3"
FARAWAY = "fd00:146::9"  # has a key, but the LMAP has no route back to it
LNP = "2001:db8:1::/64"
KEYS = {MPA1: b"\x11" * 32, MPA2: b"\x22" * 32, FARAWAY: b"\x33" * 32}
SPI = 1000


def keyFileText(entries: list[tuple[str, int, bytes]]) -> str:
    return "".join(f'[[association]]\npeer = "{peer}"\nspi = {spi}\n'
                   f'algorithm = "hmac-sha256-128"\nkey = "{key.hex()}"\n\n'
                   for peer, spi, key in entries)


def writeKeys(path: str, entries: list[tuple[str, int, bytes]]) -> None:
    fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(keyFileText(entries))
    os.replace(path + ".new", path)


class SignedMPA:
    """Sends PBUs from one address (signed with C{codec}, or as given),
    reads and opens what the LMAP sends back."""

    def __init__(self, sock: socket.socket, address: str, codec: SignalingCodec | None) -> None:
        self.sock = sock
        self.address = address
        self.codec = codec
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, 4)
        sock.bind((address, 0))

    def seal(self, message: mh.MobilityMessage) -> bytes:
        assert self.codec is not None
        return self.codec.encode(message, LMAP, time.time())

    def send(self, message: mh.MobilityMessage | bytes) -> bytes:
        data = message if isinstance(message, bytes) else self.seal(message)
        self.sock.sendto(data, (LMAP, 0))
        return data

    def receive(self, timeout: float = 3.0) -> mh.Message:
        self.sock.settimeout(timeout)
        data, source = self.sock.recvfrom(2048)
        assert source[0] == LMAP, source
        assert self.codec is not None
        return self.codec.decode(data, LMAP, time.time())

    def nothing(self, within: float = 0.5) -> bool:
        self.sock.settimeout(within)
        try:
            self.sock.recvfrom(2048)
        except TimeoutError:
            return True
        return False


def codecFor(address: str, *spis: tuple[int, bytes]) -> SignalingCodec:
    return SignalingCodec(mh.DRAFT, address, "mpa", SecurityAssociations(
        [MobilitySecurityAssociation(LMAP, spi, HMAC_SHA256_128, key) for spi, key in spis]))


def pbu(sequence: int, nai: bytes, *options: mh.MobilityOption,
        lifetime: int = 400) -> mh.BindingUpdate:
    return mh.BindingUpdate(sequence, lifetime, (mh.MobileNodeIdentifier(nai), *options),
                            ack=True, proxy=True)


class AuthenticatedLMAPTests(NetnsTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.lmapNs = self.makeNamespace("lmap")
        self.mpaNs = self.makeNamespace("mpa")
        _, mpaIf = link(self.lmapNs, self.mpaNs, LMAP, MPA1)
        for address in (MPA2, FARAWAY):
            self.mpaNs.ip("addr", "add", f"{address}/64", "dev", mpaIf, "nodad")
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        self.keyFile = os.path.join(folder, "lmap.keys")
        writeKeys(self.keyFile, [(peer, SPI, key) for peer, key in KEYS.items()])
        # AF_UNIX paths are short: the control socket lives in a folder of its own.
        short = tempfile.mkdtemp(prefix="lmm-sec-", dir="/tmp")
        self.addCleanup(shutil.rmtree, short, True)
        self.control = os.path.join(short, "lmap.sock")
        config = writeConfig(os.path.join(folder, "lmap.toml"), {
            "lmap": {"address": LMAP, "local_network_prefixes": [LNP],
                     "mpas": ["fd00:145::/64", "fd00:146::/64"], "max_lifetime": 3600},
            "revocation": {"timeout": 0.2, "max_retries": 2},
            "security": {"keys": "lmap.keys", "replay_window": 1.0},
            "control": {"socket": self.control},
        })
        self.daemon = Daemon(self.lmapNs, "lmm-lmap", config, os.path.join(folder, "lmap.log"))
        self.addCleanup(self.stopDaemon)
        self.daemon.start(ready="listening for Proxy Binding Updates")
        self.mpa1 = self.client(MPA1, codecFor(MPA1, (SPI, KEYS[MPA1])))
        self.mpa2 = self.client(MPA2, codecFor(MPA2, (SPI, KEYS[MPA2])))
        # The attacker: on the backbone, can send from any address, has no key.
        self.forger1 = self.client(MPA1, codecFor(MPA1, (SPI, b"\x99" * 32)))
        self.forger2 = self.client(MPA2, None)

    def client(self, address: str, codec: SignalingCodec | None) -> SignedMPA:
        sock = self.socketIn(self.mpaNs, proto=mh.IPPROTO_MH)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return SignedMPA(sock, address, codec)

    def stopDaemon(self) -> None:
        status = self.daemon.stop()
        log = self.daemon.log()
        self.assertIn(status, (0, -signal.SIGTERM), log)
        self.assertNotIn("Traceback", log)

    def ask(self, command: str) -> dict[str, Any]:
        answer = ask(self.control, command)
        self.assertTrue(answer["ok"], answer)
        return answer

    def bindings(self) -> list[tuple[str, str, str]]:
        return [(b["nai"], b["localAddress"], b["careOfAddress"])
                for b in self.ask("bindings")["bindings"]]

    def counters(self) -> dict[str, int]:
        return self.ask("counters")["counters"]  # type: ignore[no-any-return]

    def register(self, client: SignedMPA, sequence: int, nai: bytes,
                 *options: mh.MobilityOption) -> bytes:
        data = client.send(pbu(sequence, nai, *options))
        ack = client.receive()
        assert isinstance(ack, mh.BindingAck), ack
        self.assertEqual(ack.status, 0)
        return data

    def test_shownOnTheControlChannel(self) -> None:
        answer = self.ask("security")
        self.assertTrue(answer["authentication"])
        self.assertEqual(answer["replayWindow"], 1.0)
        self.assertEqual(sorted(a["peer"] for a in answer["associations"]),
                         sorted(KEYS))
        self.assertNotIn(KEYS[MPA1].hex(), str(answer))
        self.assertNotIn(KEYS[MPA1].hex(), self.daemon.log())

    def test_forgedDeregistration(self) -> None:
        """Lifetime-0 PBUs spoofed from the serving MPA (numbers 1000 and
        33768: one is always inside the window), unsigned or under a wrong
        key, delete nothing and are answered with nothing."""
        self.register(self.mpa1, 5, b"ms1@lmm.test", mh.LocalAddress("2001:db8:1::5", 64))
        before = self.bindings()
        for sequence in (1000, 33768):
            self.forger1.send(mh.encode(pbu(sequence, b"ms1@lmm.test", lifetime=0)))
            self.forger1.send(pbu(sequence, b"ms1@lmm.test", lifetime=0))
        self.assertTrue(self.mpa1.nothing(within=0.5))
        self.assertEqual(self.bindings(), before)
        counters = self.counters()
        self.assertEqual(counters.get("refused.auth-missing"), 2)
        self.assertEqual(counters.get("refused.auth-bad-mac"), 2)
        self.assertNotIn("pbu.deregistered", counters)
        self.assertIn("refused a Mobility Header message", self.daemon.log())

    def test_forgedHandover(self) -> None:
        """A Binding Cache Confirmation PBU spoofed from another MPA moves
        nothing and revokes nothing."""
        self.register(self.mpa1, 5, b"ms1@lmm.test", mh.LocalAddress("2001:db8:1::5", 64))
        before = self.bindings()
        self.forger2.send(mh.encode(pbu(1, b"ms1@lmm.test", mh.BindingCacheConfirmation())))
        self.assertTrue(self.mpa1.nothing(within=0.6))  # no revocation
        self.assertEqual(self.bindings(), before)
        self.assertNotIn("pbu.handover", self.counters())

    def test_replayAcrossHandover(self) -> None:
        """An authentic PBU captured at MPA1 and replayed after the MS moved to
        MPA2: within the replay window it is older than the binding's last
        PBU (157); after it, stale (dropped). The binding stays at MPA2."""
        captured = self.register(self.mpa1, 5, b"ms1@lmm.test",
                                 mh.LocalAddress("2001:db8:1::5", 64))
        self.register(self.mpa2, 1, b"ms1@lmm.test", mh.BindingCacheConfirmation())
        bri = self.mpa1.receive()
        assert isinstance(bri, mh.BindingRevocationIndication)
        self.mpa1.send(mh.BindingRevocationAck(bri.sequence, 0, (), proxy=True))
        moved = self.bindings()
        self.assertEqual(moved, [("ms1@lmm.test", "2001:db8:1::5/64", MPA2)])
        self.mpa1.send(captured)  # within the 1 s window
        ack = self.mpa1.receive()
        assert isinstance(ack, mh.BindingAck)
        self.assertEqual(ack.status, mh.Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED)
        time.sleep(1.1)
        self.mpa1.send(captured)  # outside it
        self.assertTrue(self.mpa1.nothing(within=0.5))
        self.assertEqual(self.bindings(), moved)
        counters = self.counters()
        self.assertEqual(counters.get("pbu.rejected.157"), 1)
        self.assertEqual(counters.get("refused.replay-stale"), 1)

    def test_answerCannotBeRouted(self) -> None:
        """An authentic PBU from a peer the LMAP has no route back to: the
        send fails (ENETUNREACH), is counted and logged once, no traceback,
        and what follows is answered."""
        faraway = self.client(FARAWAY, codecFor(FARAWAY, (SPI, KEYS[FARAWAY])))
        for sequence in range(1, 21):
            faraway.send(pbu(sequence, b"far@lmm.test", mh.LocalAddress("::", 64)))
        self.register(self.mpa1, 5, b"ms1@lmm.test", mh.LocalAddress("2001:db8:1::5", 64))
        counters = self.counters()
        self.assertEqual(counters.get("mh.send-failed.ENETUNREACH"), 20)
        log = self.daemon.log()
        self.assertEqual(log.count("cannot send a Mobility Header"), 1, log)

    def test_rollover(self) -> None:
        """A new key for MPA1 rolled in while it keeps registering, in three
        reloads; every PBU is answered with status 0; at the end the old key
        is refused."""
        newKey, newSpi = b"\x44" * 32, SPI + 1
        both = codecFor(MPA1, (SPI, KEYS[MPA1]), (newSpi, newKey))
        others = [(p, SPI, k) for p, k in KEYS.items() if p != MPA1]
        sequence = 1

        def traffic(client: SignedMPA, count: int = 5) -> None:
            nonlocal sequence
            for _ in range(count):
                sequence += 1
                self.register(client, sequence, b"ms1@lmm.test",
                              mh.LocalAddress("2001:db8:1::5", 64))

        traffic(self.mpa1)
        # 1. The new SA listed second: accepted, not yet used to sign.
        writeKeys(self.keyFile, [(MPA1, SPI, KEYS[MPA1]), (MPA1, newSpi, newKey), *others])
        self.assertEqual(len(self.ask("security reload")["associations"]), 4)
        self.mpa1.codec = both  # the MPA's own step 1 (it signs with the old SA still)
        traffic(self.mpa1)
        # 2. The new SA first at both ends: the LMAP signs with it.
        writeKeys(self.keyFile, [(MPA1, newSpi, newKey), (MPA1, SPI, KEYS[MPA1]), *others])
        self.ask("security reload")
        traffic(self.mpa1)
        self.mpa1.codec = codecFor(MPA1, (newSpi, newKey), (SPI, KEYS[MPA1]))
        traffic(self.mpa1)
        # 3. The old SA gone.
        writeKeys(self.keyFile, [(MPA1, newSpi, newKey), *others])
        self.ask("security reload")
        self.mpa1.codec = codecFor(MPA1, (newSpi, newKey))
        traffic(self.mpa1)
        old = codecFor(MPA1, (SPI, KEYS[MPA1]))
        self.mpa1.send(old.encode(pbu(sequence + 1, b"ms1@lmm.test"), LMAP, time.time()))
        self.assertTrue(self.mpa1.nothing(within=0.5))
        self.assertEqual(self.counters().get("refused.auth-unknown-spi"), 1)
        # A key file others can read is refused by the reload; the SAs in use stay.
        os.chmod(self.keyFile, 0o644)
        answer = ask(self.control, "security reload")
        self.assertFalse(answer["ok"])
        self.assertIn("0644", answer["error"])
        traffic(self.mpa1, 1)
