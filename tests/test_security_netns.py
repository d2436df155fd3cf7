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
import subprocess
import tempfile
import time
from dataclasses import replace
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from lmm import mh
from lmm.control import ask
from lmm.lab.daemons import Daemon, writeConfig
from lmm.lab.netns import link, socketIn, waitFor
from lmm.lab.topology import MSSpec, randomMac
from lmm.security import (
    HMAC_SHA256_128,
    MobilitySecurityAssociation,
    SecurityAssociations,
    SignalingCodec,
    writeKeyFile,
)
from lmm.testing.mixins import NetnsTestMixin
from tests.test_lab import LabTestCase
from tests.test_lmap_integration import MPAClient, pbu

LMAP = "fd00:145::1"
MPA1 = "fd00:145::2"
MPA2 = "fd00:145::3"
FARAWAY = "fd00:146::9"  # has a key, but the LMAP has no route back to it
FLOODER = "fd00:145::66"  # on the backbone, no key of its own
TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                     "tools")
LNP = "2001:db8:1::/64"
KEYS = {MPA1: b"\x11" * 32, MPA2: b"\x22" * 32, FARAWAY: b"\x33" * 32}
SPI = 1000


def writeKeys(path: str, entries: list[tuple[str, int, bytes]]) -> None:
    writeKeyFile(path, [MobilitySecurityAssociation(peer, spi, HMAC_SHA256_128, key)
                        for peer, spi, key in entries])


class SignedMPA(MPAClient):
    """Sends PBUs from one address (signed with C{codec}, or as given),
    reads and opens what the LMAP sends back."""

    def __init__(self, sock: socket.socket, address: str, codec: SignalingCodec | None) -> None:
        super().__init__(sock, address)
        self.codec = codec

    def seal(self, message: mh.MobilityMessage) -> bytes:
        assert self.codec is not None
        return self.codec.encode(message, LMAP, time.time())

    def send(self, message: mh.MobilityMessage | bytes) -> bytes:  # type: ignore[override]
        data = message if isinstance(message, bytes) else self.seal(message)
        self.sock.sendto(data, (LMAP, 0))
        return data

    lmap = LMAP

    def opened(self, data: bytes) -> mh.Message:
        assert self.codec is not None
        return self.codec.decode(data, LMAP, time.time())

    def receive(self, timeout: float = 3.0) -> mh.Message:  # type: ignore[override]
        return super().receive(timeout)[0]


def codecFor(address: str, *spis: tuple[int, bytes]) -> SignalingCodec:
    return SignalingCodec(mh.DRAFT, address, "mpa", SecurityAssociations(
        [MobilitySecurityAssociation(LMAP, spi, HMAC_SHA256_128, key) for spi, key in spis]))


class AuthenticatedLMAPTests(NetnsTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.lmapNs = self.makeNamespace("lmap")
        self.mpaNs = self.makeNamespace("mpa")
        _, mpaIf = link(self.lmapNs, self.mpaNs, LMAP, MPA1)
        for address in (MPA2, FARAWAY, FLOODER):
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
            "store": {"path": "lmap.sqlite"},  # beside the configuration
            "tunnel": {"backend": "recording"},  # the signaling only
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
        # 20 PBAs, and the Heartbeat request the first binding made (RFC 5847).
        self.assertEqual(counters.get("mh.send-failed.ENETUNREACH"), 21)
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

    def test_legitimateUnderFlood(self) -> None:
        """20,000 PBU/s signed under a key nobody configured, from another
        address on the backbone (bench/tools/pbu-loadgen-auth): meanwhile
        MPA1 registers 200 MSs, every one answered with status 0."""
        build = tempfile.mkdtemp(prefix="lmm-flood-", dir="/tmp")
        self.addCleanup(shutil.rmtree, build, True)
        loadgen = os.path.join(build, "pbu-loadgen-auth")
        subprocess.run(["gcc", "-O2", "-o", loadgen, os.path.join(TOOLS, "pbu-loadgen-auth.c"),
                        "-lcrypto"], check=True, capture_output=True)
        flood = self.mpaNs.popen([loadgen, LMAP, FLOODER, str(SPI), "55" * 32, "4", "100000",
                                  "1000", "20000"], stdout=subprocess.PIPE)
        self.addCleanup(flood.kill)
        time.sleep(0.5)
        started = time.monotonic()
        for i in range(200):
            self.register(self.mpa1, i + 1, f"ms{i}@lmm.test".encode(),
                          mh.LocalAddress("::", 64))
        took = time.monotonic() - started
        output = flood.communicate(timeout=30)[0].decode()
        sent = int(output.split()[1])
        self.assertGreater(sent, 50000, output)  # it did flood, for 4 s
        self.assertLess(took, 3.5, "the registrations happened during the flood")
        counters = self.counters()
        self.assertEqual(counters.get("binding.created"), 200)
        # Refused by the key, or before that by the rate of that one source.
        self.assertGreater(counters.get("refused.unknown-peer", 0)
                           + counters.get("mh.rate-limited", 0), 50000, counters)
        self.assertEqual(len(self.bindings()), 200)


class AttacksInTheLabTests(LabTestCase):
    """The lab (real MPAs, FreeRADIUS, an MS pinging the CN), authenticated
    as it always is: forged signaling at both daemons changes no binding and
    no visitor, and the MS keeps reaching the CN."""

    def test_forgedAtBothEnds(self) -> None:
        spec = MSSpec("ms1", randomMac(), "mpa1")
        lab = self.makeLab(self.topology(stations=[spec], handovers=[]))
        station = lab.attach(spec)
        lab.waitUsable(station)
        waitFor(lambda: lab.registered("mpa1", spec.mac), 5, 0.02, what="MPA1's registration")
        self.checkPing(lab, station)
        topology = lab.topology
        mpa1 = topology.mpas[0].address
        visitor = lab.registered("mpa1", spec.mac)
        assert visitor is not None
        def seen() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
            """The Binding Cache, and of MPA1's Visitor List what a revocation or
            a deregistration would change (not what the MS's own frames teach,
            such as its link-local address, or when it was last seen)."""
            keys = ("mac", "interface", "nai", "state", "localAddress", "lmapAddress",
                    "tunnelSource", "tunnelDestination", "lifetime", "registeredAt",
                    "expires")
            return lab.bindings(), [{k: entry[k] for k in keys}
                                    for entry in lab.visitors("mpa1")]

        before = seen()
        nai = mh.MobileNodeIdentifier(spec.nai.encode())
        local = mh.LocalAddress(visitor["localAddress"], 64)
        wrongKey = [MobilitySecurityAssociation(mpa1, 1000, HMAC_SHA256_128, bytes(32))]
        # At MPA1, as the LMAP: revocations, plain and under a key nobody has.
        asLmap = socketIn(lab.lmapNs, proto=mh.IPPROTO_MH)
        self.addCleanup(asLmap.close)
        asLmap.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, 4)
        asLmap.bind((topology.lmap, 0))
        bri = mh.BindingRevocationIndication(7, 4, (nai, local), proxy=True)
        forger = SignalingCodec(mh.DRAFT, topology.lmap, "lmap", SecurityAssociations(wrongKey))
        for sequence in (7, 40000):
            message = replace(bri, sequence=sequence)
            asLmap.sendto(mh.encode(message), (mpa1, 0))
            asLmap.sendto(forger.encode(message, mpa1, time.time()), (mpa1, 0))
        # At the LMAP, as MPA1: deregistrations.
        asMpa = socketIn(lab.mpaNs["mpa1"], proto=mh.IPPROTO_MH)
        self.addCleanup(asMpa.close)
        asMpa.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, 4)
        asMpa.bind((mpa1, 0))
        for sequence in (1000, 33768):
            asMpa.sendto(mh.encode(pbu(sequence, spec.nai.encode(), local, lifetime=0)),
                         (topology.lmap, 0))
        time.sleep(0.5)
        self.assertEqual(seen(), before)
        self.checkPing(lab, station)
        mpaCounters, lmapCounters = lab.counters("mpa1"), lab.ask("lmap", "counters")
        self.assertEqual(mpaCounters.get("refused.auth-missing"), 2)
        self.assertEqual(mpaCounters.get("refused.auth-bad-mac"), 2)
        self.assertNotIn("visitor.revoked", mpaCounters)
        self.assertEqual(lmapCounters["counters"].get("refused.auth-missing"), 2)

    def test_macFlood(self) -> None:
        """Frames from 3,000 random MACs on MPA1's access link (a box on the
        base station pretending to be many hosts): the visitors stay within
        attach.max_visitors_per_link (here 100), the Access-Requests within
        it too; the MS attached before keeps reaching the CN and its entry."""
        import random
        import struct as _struct

        from lmm import nd

        spec = MSSpec("ms1", randomMac(), "mpa1")
        topology = self.topology(stations=[spec], handovers=[])
        topology = replace(topology, mpaOverrides={"attach.max_visitors_per_link": 100,
                                                   "attach.max_authenticating": 32})
        lab = self.makeLab(topology)
        station = lab.attach(spec)
        lab.waitUsable(station)
        waitFor(lambda: lab.registered("mpa1", spec.mac), 5, 0.02, what="MPA1's registration")
        lab.air.ip("link", "add", "flood0", "type", "veth", "peer", "name", "flood1")
        lab.air.ipBatch(["link set flood1 master bs1", "link set flood1 up",
                         "link set flood0 up"])
        sender = socketIn(lab.air, socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.addCleanup(sender.close)
        sender.bind(("flood0", 0))
        rng = random.Random(12)
        for _ in range(3000):
            mac = ":".join(f"{b:02x}" for b in
                           _struct.pack("!H", rng.randrange(0x10000) & 0xfeff | 0x0200)
                           + rng.randbytes(4))
            sender.send(nd.buildRouterSolicitation(mac, nd.UNSPECIFIED))
        time.sleep(1.0)
        visitors = lab.visitors("mpa1")
        counters = lab.counters("mpa1")
        self.assertLessEqual(len(visitors), 100)
        self.assertGreater(counters.get("attach.link-full", 0)
                           + counters.get("attach.throttled", 0), 2000, counters)
        self.assertLessEqual(counters.get("visitor.attached", 0), 101 + 100, counters)
        self.assertIn(spec.mac, [v["mac"] for v in visitors])
        self.checkPing(lab, station)
