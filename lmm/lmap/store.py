"""
The LMAP's Binding Cache kept on disk: L{SQLiteBindingCache}, an
L{lmm.interfaces.IBindingStore} that answers from memory (the in-memory
L{lmm.lmap.cache.BindingCache}, so lookups cost what they cost without it)
and writes every change to an SQLite database in write-ahead-log mode.

Changes are gathered as the anchor makes them (C{put}, C{remove}) and written
by L{SQLiteBindingCache.commit}, one transaction for all of them: the LMAP's
service commits once per reactor turn, before it sends the Proxy Binding
Acknowledgements of that turn (docs/lmap.md, "Bindings across restarts"), so an
acknowledged binding is on disk, and a turn of 256 PBUs costs one commit.

With C{synchronous = "normal"} (the default) a commit survives the daemon being
killed (the write-ahead log is in the kernel's page cache); with C{"full"} it
is also synced to the disk, and survives a power cut, at the cost of one
fsync a turn (SQLite's own terms: https://sqlite.org/pragma.html#pragma_synchronous).

Besides the entries, the database keeps what the anchor needs to go on
after a restart: the Binding Revocation Indications still waiting for their
acknowledgement (L{lmm.lmap.revocation.Revocations.snapshot}) and the
LMAP's Restart Counter (RFC 5847 3.2), one more at each start.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from zope.interface import implementer

from lmm.interfaces import IBindingStore
from lmm.lmap.cache import BindingCache, BindingCacheEntry
from lmm.tunnel import TunnelBinding

#: What C{store.synchronous} may be, as SQLite's PRAGMA synchronous takes it.
SYNCHRONOUS = ("normal", "full")

_SCHEMA_VERSION = 2
# What the write-ahead log is cut back to once checkpointed, bytes.
_WAL_SIZE_LIMIT = 64 * 1024 * 1024
# An NTP timestamp is unsigned 64-bit; SQLite's integers are signed.
_SIGN = 1 << 63

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS binding (
    nai BLOB PRIMARY KEY,
    local_address TEXT NOT NULL,
    prefix_length INTEGER NOT NULL,
    care_of TEXT NOT NULL,
    lifetime INTEGER NOT NULL,
    expires REAL NOT NULL,
    sequence INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    timestamp INTEGER NOT NULL,
    tunnel_address TEXT NOT NULL,
    tunnel_prefix_length INTEGER NOT NULL,
    tunnel_local TEXT NOT NULL,
    tunnel_remote TEXT NOT NULL,
    tunnel_role TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revocation (
    mpa TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    nai BLOB NOT NULL,
    address TEXT NOT NULL,
    prefix_length INTEGER NOT NULL,
    issued REAL NOT NULL,
    retransmissions INTEGER NOT NULL,
    interval REAL NOT NULL,
    trigger INTEGER NOT NULL,
    until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (mpa, sequence)
) WITHOUT ROWID;
"""

_UPSERT = ("INSERT OR REPLACE INTO binding VALUES "
           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_DELETE = "DELETE FROM binding WHERE nai = ?"


class StoreError(Exception):
    """The database cannot be opened or read: the text says which file and why."""


def _row(e: BindingCacheEntry) -> tuple[Any, ...]:
    t = e.tunnel
    return (e.nai, e.localAddress, e.prefixLength, e.careOfAddress, e.lifetime, e.expires,
            e.sequence, e.created, e.updated, e.timestamp - _SIGN, t.mobileAddress,
            t.prefixLength, t.localEndpoint, t.remoteEndpoint, t.role)


def _entry(row: tuple[Any, ...]) -> BindingCacheEntry:
    (nai, address, prefixLength, careOf, lifetime, expires, sequence, created, updated,
     timestamp, tunnelAddress, tunnelPrefix, local, remote, role) = row
    # One string per MPA, as the anchor keeps them (memory per binding).
    careOf = sys.intern(careOf)
    tunnel = TunnelBinding(tunnelAddress, tunnelPrefix, sys.intern(local), sys.intern(remote),
                           sys.intern(role))
    if expires != updated + lifetime:
        # An entry's end is its last update plus its lifetime; a row whose
        # expires says otherwise (written by hand) keeps its end.
        updated = expires - lifetime
    return BindingCacheEntry(bytes(nai), address, prefixLength, careOf, lifetime, sequence,
                             tunnel, created, updated, timestamp + _SIGN)


@implementer(IBindingStore)
class SQLiteBindingCache:
    """
    The Binding Cache in memory and in the SQLite database at C{path}
    (created, mode 0600, with its folder, if missing). Opening it loads
    every entry it holds, expired ones too (the anchor drops those when it
    resumes: L{lmm.lmap.anchor.LocalMobilityAnchor.resume}).

    @raise StoreError: the file cannot be opened, is no such database, or
        is readable by others.
    """

    persistent = True

    def __init__(self, path: str, synchronous: str = "normal") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous {synchronous!r}: expected one of {SYNCHRONOUS}")
        self.path = path
        self._memory = BindingCache()
        self._dirty: dict[bytes, BindingCacheEntry | None] = {}
        self._revocations: list[tuple[Any, ...]] | None = None
        self._revocationSequence = 0
        self._synchronous = synchronous
        self._checkpointer: sqlite3.Connection | None = None
        try:
            self._db = self._open(path, synchronous)
            self.restartCounter = self._load()
        except sqlite3.Error as e:
            raise StoreError(f"{path}: {e}") from None

    @staticmethod
    def _open(path: str, synchronous: str) -> sqlite3.Connection:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if os.path.exists(path):
            mode = os.stat(path).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise StoreError(f"{path}: mode {stat.S_IMODE(mode):04o}: the Binding Cache "
                                 "names every mobile node; make it 0600")
        else:
            # Made 0600 before SQLite writes a byte of it.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        # Checkpoints come from L{checkpoint}, in a thread: one run by the
        # commit that crossed SQLite's threshold held the LMAP's reactor for
        # milliseconds (p99 at 5,000 PBU/s: 2.6-3.1 ms with, 0.6-0.8 without).
        db.execute("PRAGMA wal_autocheckpoint = 0")
        db.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        db.executescript(_SCHEMA)
        return db

    def _load(self) -> int:
        """Read the entries; count this start (RFC 5847 3.2); the new counter."""
        db = self._db
        version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if version is not None and version[0] == 1:
            # Version 2 keeps how long a revoked binding may live at its MPA;
            # a revocation of version 1 gives up as it used to (0).
            db.execute("ALTER TABLE revocation ADD COLUMN until REAL NOT NULL DEFAULT 0")
            version = None
        if version is not None and version[0] != _SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version[0]}, this lmm reads "
                             f"{_SCHEMA_VERSION}")
        memory = self._memory
        for row in db.execute("SELECT * FROM binding"):
            memory.put(_entry(row))
        found = db.execute("SELECT value FROM meta WHERE key = 'restart_counter'").fetchone()
        counter = ((found[0] if found else 0) + 1) & 0xFFFFFFFF
        with db:
            db.execute("BEGIN")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('restart_counter', ?)", (counter,))
        return counter

    # --- IBindingStore: from memory, changes remembered ------------------------------

    def get(self, nai: bytes) -> BindingCacheEntry | None:
        return self._memory.get(nai)

    def getByAddress(self, address: str) -> BindingCacheEntry | None:
        return self._memory.getByAddress(address)

    def put(self, entry: BindingCacheEntry) -> None:
        self._memory.put(entry)
        self._dirty[entry.nai] = entry

    def remove(self, nai: bytes) -> BindingCacheEntry | None:
        entry = self._memory.remove(nai)
        if entry is not None:
            self._dirty[nai] = None
        return entry

    def __len__(self) -> int:
        return len(self._memory)

    def __iter__(self) -> Iterator[BindingCacheEntry]:
        return iter(self._memory)

    # --- on disk ------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether there are changes that L{commit} has not written yet."""
        return bool(self._dirty) or self._revocations is not None

    def saveRevocations(self, rows: Iterable[tuple[Any, ...]], lastSequence: int) -> None:
        """Replace the revocations in flight, at the next L{commit}: rows of
        (MPA, sequence, NAI, address, prefix length, issued, retransmissions,
        interval, trigger, until), as L{lmm.lmap.revocation.Revocations.snapshot} gives them,
        and the last sequence number handed out."""
        self._revocations = list(rows)
        self._revocationSequence = lastSequence

    def loadRevocations(self) -> tuple[list[tuple[Any, ...]], int]:
        """The revocations in flight when the database was last committed, and
        the last sequence number handed out then."""
        rows = [(mpa, sequence, bytes(nai), *rest) for mpa, sequence, nai, *rest
                in self._db.execute("SELECT * FROM revocation")]
        found = self._db.execute(
            "SELECT value FROM meta WHERE key = 'revocation_sequence'").fetchone()
        return rows, found[0] if found else 0

    def commit(self) -> int:
        """Write what changed since the last commit, as one transaction; how
        many entries it wrote or deleted. C{sqlite3.Error} when it cannot
        (the changes stay, for the next commit)."""
        dirty = self._dirty
        revocations = self._revocations
        if not dirty and revocations is None:
            return 0
        upserts = [_row(e) for e in dirty.values() if e is not None]
        deletes = [(nai,) for nai, e in dirty.items() if e is None]
        db = self._db
        with db:
            db.execute("BEGIN")
            if upserts:
                db.executemany(_UPSERT, upserts)
            if deletes:
                db.executemany(_DELETE, deletes)
            if revocations is not None:
                db.execute("DELETE FROM revocation")
                db.executemany("INSERT INTO revocation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               revocations)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('revocation_sequence', ?)",
                           (self._revocationSequence,))
        self._dirty = {}
        self._revocations = None
        return len(upserts) + len(deletes)

    def checkpoint(self) -> tuple[int, int, int]:
        """Copy what the write-ahead log holds into the database: SQLite's
        PASSIVE checkpoint, which waits for no writer and blocks none, on a
        connection of its own, for a thread of its own (the service runs it
        every C{store.checkpoint_interval} seconds, one at a time). SQLite's
        answer: (busy, frames in the log, frames checkpointed)."""
        db = self._checkpointer
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            self._checkpointer = db
        busy, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, frames, done

    def close(self) -> None:
        """Commit what is left, checkpoint all of it, close the database.
        Not while a L{checkpoint} runs."""
        try:
            self.commit()
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()
            if self._checkpointer is not None:
                self._checkpointer.close()
