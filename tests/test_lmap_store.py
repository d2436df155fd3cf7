"""
The LMAP's persistent Binding Cache (lmm.lmap.store): entries, revocations
and the restart counter across a reopen of a real SQLite database; what the
anchor does with them when it resumes; and the service's commit, once per
reactor turn and before the turn's acknowledgements leave.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from ipaddress import IPv6Network
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lmm import mh
from lmm.actions import AddTunnel, RemoveTunnel, SendMessage
from lmm.lmap.anchor import LocalMobilityAnchor
from lmm.lmap.cache import BindingCache, BindingCacheEntry
from lmm.lmap.service import LMAPService
from lmm.lmap.store import SQLiteBindingCache, StoreError
from lmm.testing.doubles import RecordingDataPlane
from lmm.tunnel import ROLE_LMAP, TunnelBinding

LMAP = "fd00:135::1"
MPA1 = "fd00:135::2"
MPA2 = "fd00:135::3"
LNP = "2001:db8:1::/64"
NOW = 1_800_000_000.0


def entry(n: int, expires: float = NOW + 400, careOf: str = MPA1) -> BindingCacheEntry:
    address = f"2001:db8:1::{n:x}"
    return BindingCacheEntry(f"ms{n}@lmm.test".encode(), address, 64, careOf, 400, n,
                             TunnelBinding(address, 128, LMAP, careOf, ROLE_LMAP),
                             NOW - 10, expires - 400, (0xEE << 56) + n)


def anchor(store: Any) -> LocalMobilityAnchor:
    return LocalMobilityAnchor(LMAP, [IPv6Network(LNP)], [IPv6Network("fd00:135::/64")],
                               maxLifetime=3600, profile=mh.DRAFT, revocationTimeout=1.0,
                               revocationRetries=3, store=store)


def pbu(sequence: int, nai: bytes, address: str = "::") -> bytes:
    return mh.encode(mh.BindingUpdate(sequence, 400, (
        mh.MobileNodeIdentifier(nai), mh.LocalAddress(address, 64)), ack=True, proxy=True))


class SQLiteBindingCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        folder = self.mktemp()
        self.path = os.path.join(folder, "state", "lmap.sqlite")

    def open(self) -> SQLiteBindingCache:
        store = SQLiteBindingCache(self.path)
        self.addCleanup(store._db.close)
        return store

    def test_reopened(self) -> None:
        """What was committed comes back, every field (the NTP timestamp is
        over 2**63); what was not committed does not; a removal stays removed."""
        store = self.open()
        for n in range(1, 6):
            store.put(entry(n))
        self.assertTrue(store.pending)
        self.assertEqual(store.commit(), 5)
        self.assertFalse(store.pending)
        store.remove(b"ms2@lmm.test")
        changed = entry(3)
        changed.careOfAddress = MPA2
        store.put(changed)
        store.commit()
        store.put(entry(9))  # never committed: the daemon is killed here
        again = self.open()
        self.assertEqual(sorted(e.nai for e in again),
                         [b"ms1@lmm.test", b"ms3@lmm.test", b"ms4@lmm.test", b"ms5@lmm.test"])
        self.assertEqual(again.get(b"ms1@lmm.test"), entry(1))
        self.assertEqual(again.get(b"ms3@lmm.test").careOfAddress, MPA2)  # type: ignore[union-attr]
        self.assertEqual(again.getByAddress("2001:db8:1::4"), entry(4))
        self.assertGreater(entry(1).timestamp, 1 << 63)

    def test_expiresKept(self) -> None:
        """A row whose expires is not its updated plus its lifetime (written
        by hand, or by another program) keeps its end when read."""
        store = self.open()
        store.put(entry(1))
        store.commit()
        store.close()
        db = sqlite3.connect(self.path)
        with db:
            db.execute("UPDATE binding SET expires = ?", (NOW + 30,))
        db.close()
        again = self.open().get(b"ms1@lmm.test")
        assert again is not None
        self.assertEqual((again.expires, again.lifetime), (NOW + 30, 400))

    def test_restartCounter(self) -> None:
        """RFC 5847's Restart Counter: one more at each start, kept in the database."""
        counters = [self.open().restartCounter for _ in range(3)]
        self.assertEqual(counters, [counters[0], counters[0] + 1, counters[0] + 2])

    def test_mode(self) -> None:
        """Made 0600 (with its folder); one others can read is refused, by name."""
        self.open()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        os.chmod(self.path, 0o644)
        with self.assertRaises(StoreError) as caught:
            SQLiteBindingCache(self.path)
        self.assertIn(self.path, str(caught.exception))
        self.assertIn("0644", str(caught.exception))

    def test_notADatabase(self) -> None:
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "w") as f:
            f.write("this is no database\n" * 100)
        os.chmod(self.path, 0o600)
        with self.assertRaises(StoreError) as caught:
            SQLiteBindingCache(self.path)
        self.assertIn(self.path, str(caught.exception))

    def test_checkpoint(self) -> None:
        """The write-ahead log is copied into the database by checkpoint (not
        by a commit: the service runs it in a thread), and emptied by close."""
        store = SQLiteBindingCache(self.path)
        for n in range(1, 200):
            store.put(entry(n))
            store.commit()
        wal = self.path + "-wal"
        self.assertGreater(os.path.getsize(wal), 100 * 4096)  # no automatic checkpoint
        busy, frames, done = store.checkpoint()
        self.assertEqual((busy, done), (0, frames))
        self.assertGreater(frames, 0)
        store.close()
        self.assertEqual(os.path.getsize(wal) if os.path.exists(wal) else 0, 0)
        self.assertEqual(len(self.open()), 199)

    def test_revocations(self) -> None:
        store = self.open()
        rows = [(MPA1, 7, b"ms1@lmm.test", "2001:db8:1::1", 64, NOW - 2, 1, 2.0, 4, NOW + 60)]
        store.saveRevocations(rows, 9)
        self.assertTrue(store.pending)
        store.commit()
        self.assertEqual(self.open().loadRevocations(), (rows, 9))


    def test_schemaOneMigrated(self) -> None:
        """A database of the first schema (revocations without C{until}) is
        read; its revocations give up after their retransmissions, as then."""
        store = self.open()
        store.close()
        db = sqlite3.connect(self.path)
        with db:
            db.execute("DROP TABLE revocation")
            db.execute("CREATE TABLE revocation (mpa TEXT NOT NULL, sequence INTEGER NOT NULL, "
                       "nai BLOB NOT NULL, address TEXT NOT NULL, prefix_length INTEGER "
                       "NOT NULL, issued REAL NOT NULL, retransmissions INTEGER NOT NULL, "
                       "interval REAL NOT NULL, trigger INTEGER NOT NULL, "
                       "PRIMARY KEY (mpa, sequence)) WITHOUT ROWID")
            db.execute("INSERT INTO revocation VALUES (?, 7, ?, '2001:db8:1::1', 64, ?, 1, "
                       "2.0, 4)", (MPA1, b"ms1@lmm.test", NOW - 2))
            db.execute("UPDATE meta SET value = 1 WHERE key = 'schema'")
        db.close()
        self.assertEqual(self.open().loadRevocations()[0],
                         [(MPA1, 7, b"ms1@lmm.test", "2001:db8:1::1", 64, NOW - 2, 1, 2.0, 4, 0)])


class ResumeTests(SynchronousTestCase):
    def test_resume(self) -> None:
        """A binding still alive gets its tunnel, an expired one goes (its
        leftover tunnel too), a revocation in flight is sent again, and the
        revocations' numbers go on after the previous run's."""
        store = SQLiteBindingCache(os.path.join(self.mktemp(), "lmap.sqlite"))
        self.addCleanup(store._db.close)
        store.put(entry(1))
        store.put(entry(2, expires=NOW - 1))
        store.saveRevocations([(MPA2, 40, b"ms1@lmm.test", "2001:db8:1::1", 64, NOW - 3, 1,
                                2.0, 4, NOW + 60)], 41)
        store.commit()
        lma = anchor(store)
        actions = lma.resume(NOW)
        self.assertIn(AddTunnel(entry(1).tunnel), actions)
        self.assertIn(RemoveTunnel(entry(2).tunnel), actions)
        self.assertIsNone(store.get(b"ms2@lmm.test"))
        [send] = [a for a in actions if isinstance(a, SendMessage)]
        assert isinstance(send.message, mh.BindingRevocationIndication)
        self.assertEqual((send.destination, send.message.sequence), (MPA2, 40))
        self.assertEqual(send.message.option(mh.MobileNodeIdentifier),
                         mh.MobileNodeIdentifier(b"ms1@lmm.test"))
        self.assertEqual(lma.counters["bri.resumed"], 1)
        # Its acknowledgement ends it, as before the restart.
        lma.receive(mh.BindingRevocationAck(40, 0, (), proxy=True), MPA2, NOW + 0.1)
        self.assertEqual(lma.counters["bri.acknowledged"], 1)
        self.assertEqual(len(lma.revocations), 0)
        self.assertEqual(lma.revocations.sequence.next(), 42)
        # The expiry heap knows the resumed binding.
        self.assertEqual(lma.nextDeadline(), entry(1).expires)

    def test_memoryStoreResumesNothing(self) -> None:
        lma = anchor(BindingCache())
        self.assertEqual([type(a).__name__ for a in lma.resume(NOW)], ["Note"])


class RecordingPort:
    def __init__(self, check: Any = None) -> None:
        self.sent: list[tuple[bytes, str]] = []
        self.check = check

    def send(self, data: bytes, destination: str) -> None:
        if self.check is not None:
            self.check(data)
        self.sent.append((data, destination))


class GroupCommitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "lmap.sqlite")
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = SQLiteBindingCache(self.path)
        self.service = LMAPService(anchor(self.store), RecordingDataPlane(), LMAP, mh.DRAFT,
                                   self.clock)
        self.addCleanup(lambda: self.store._db.close())

    def onDisk(self) -> list[bytes]:
        db = sqlite3.connect(self.path)
        try:
            return sorted(bytes(row[0]) for row in db.execute("SELECT nai FROM binding"))
        finally:
            db.close()

    def test_committedBeforeTheAcknowledgement(self) -> None:
        """The PBAs of a turn leave after its one commit; each finds its
        binding on disk (read by another connection, as a restarted LMAP would)."""
        seen: list[list[bytes]] = []
        port = RecordingPort(lambda data: seen.append(self.onDisk()))
        self.service.signaling.port = cast(Any, port)
        for n in range(3):
            self.service.datagramReceived(pbu(1, f"ms{n}@lmm.test".encode()), MPA1)
        self.assertEqual(port.sent, [])  # held for the turn's commit
        self.clock.advance(0)
        self.assertEqual(len(port.sent), 3)
        everyone = [b"ms0@lmm.test", b"ms1@lmm.test", b"ms2@lmm.test"]
        self.assertEqual(seen, [everyone] * 3)
        self.assertEqual(self.service.allCounters()["store.commits"], 1)
        # A turn that changes nothing (a rejected PBU) waits for no commit.
        self.service.datagramReceived(pbu(1, b"ms0@lmm.test"), MPA1)
        self.assertEqual(len(port.sent), 4)

    def test_messageTimeShared(self) -> None:
        """Bindings made or refreshed within CLOCK_STEP of each other share one
        time object (memory a binding); a step later, the time is the clock's."""
        from lmm.lmap.service import CLOCK_STEP

        self.service.signaling.port = cast(Any, RecordingPort())
        self.service.datagramReceived(pbu(1, b"ms0@lmm.test"), MPA1)
        self.clock.advance(CLOCK_STEP / 2)
        self.service.datagramReceived(pbu(1, b"ms1@lmm.test"), MPA1)
        first, second = self.store.get(b"ms0@lmm.test"), self.store.get(b"ms1@lmm.test")
        assert first is not None and second is not None
        self.assertIs(second.created, first.created)
        self.assertEqual(first.created, NOW)
        self.clock.advance(CLOCK_STEP)
        self.service.datagramReceived(pbu(2, b"ms0@lmm.test"), MPA1)  # a refresh
        self.assertEqual(first.updated, NOW + 1.5 * CLOCK_STEP)
        self.assertIs(first.created, second.updated)  # what a refresh leaves shared

    def test_checkpointsWhileRunning(self) -> None:
        """The running service checkpoints every checkpointInterval; stopping
        it closes the store (its log checkpointed and cut to nothing)."""
        calls: list[tuple[int, int, int]] = []
        original = self.store.checkpoint

        def checkpoint() -> tuple[int, int, int]:
            calls.append(original())
            return calls[-1]

        self.store.checkpoint = checkpoint  # type: ignore[method-assign]
        self.service.startService()
        self.service.signaling.port = cast(Any, RecordingPort())
        self.service.datagramReceived(pbu(1, b"ms0@lmm.test"), MPA1)
        self.clock.advance(0)
        self.clock.advance(1.0)
        self.assertEqual(len(calls), 1)
        self.assertGreater(calls[0][2], 0)
        self.successResultOf(self.service.stopService())
        wal = self.path + "-wal"
        self.assertFalse(os.path.exists(wal) and os.path.getsize(wal))

    def test_commitFails(self) -> None:
        """A commit that fails is counted and logged; the answers go all the
        same and the changes are written by the next commit."""
        port = RecordingPort()
        self.service.signaling.port = cast(Any, port)
        original = self.store.commit
        self.store.commit = lambda: (_ for _ in ()).throw(  # type: ignore[method-assign]
            sqlite3.OperationalError("database or disk is full"))
        self.service.datagramReceived(pbu(1, b"ms0@lmm.test"), MPA1)
        self.clock.advance(0)
        self.assertEqual(len(port.sent), 1)
        self.assertEqual(self.service.allCounters()["store.commit-failed"], 1)
        self.assertEqual(self.onDisk(), [])
        self.store.commit = original  # type: ignore[method-assign]
        self.service.datagramReceived(pbu(1, b"ms1@lmm.test"), MPA1)
        self.clock.advance(0)
        self.assertEqual(self.onDisk(), [b"ms0@lmm.test", b"ms1@lmm.test"])
        self.flushLoggedErrors()
