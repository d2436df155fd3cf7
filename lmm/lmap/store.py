"""
The LMAP's Binding Cache kept on disk: L{SQLiteBindingCache}, an
L{lmm.interfaces.IBindingStore} that answers from memory (the in-memory
L{lmm.lmap.cache.BindingCache}, so lookups cost what they cost without it)
and keeps every change on disk: in a change log at once, in an SQLite database
soon after.

Changes are gathered as the anchor makes them (C{put}, C{remove}) and written
by L{SQLiteBindingCache.commit}: the LMAP's service commits once per reactor
turn, before it sends the Proxy Binding Acknowledgements of that turn
(docs/lmap.md, "Bindings across restarts"), so an acknowledged binding is on
disk. A commit is one record appended to the change log (C{PATH-changes.N}:
one C{write}, its length and CRC-32 before it), not an SQLite transaction: at
5,000 PBU/s every PBU is a turn of its own, and a transaction of one row cost
50 us of the 45 us the PBU itself took (C{bench/lmapcore.py}, one PBU a turn).
L{SQLiteBindingCache.checkpoint}, in a thread every
C{store.checkpoint_interval} seconds, writes what the log holds into the
database in one transaction and removes the log files it no longer needs.
Opening the store reads the database, then the change log written after it
(a daemon killed before its checkpoint), into the database.

With C{synchronous = "normal"} (the default) a commit survives the daemon being
killed (the change log is in the kernel's page cache); with C{"full"} it is
also synced to the disk (C{fdatasync}), and survives a power cut, at the cost of
one sync a turn (SQLite's own terms for the database:
https://sqlite.org/pragma.html#pragma_synchronous).

Besides the entries, the database keeps what the anchor needs to go on
after a restart: the Binding Revocation Indications still waiting for their
acknowledgement (L{lmm.lmap.revocation.Revocations.snapshot}) and the
LMAP's Restart Counter (RFC 5847 3.2), one more at each start.
"""

from __future__ import annotations

import glob
import marshal
import os
import sqlite3
import stat
import struct
import sys
import zlib
from collections import deque
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

# The change log: records of (magic, payload length, CRC-32 of the payload),
# each payload one commit's marshal.dumps((upserts, deletes, revocations or
# None, last revocation sequence)) -- plain tuples of bytes, str, int, float.
_MAGIC = b"LMMc"
_RECORD = struct.Struct("<4sII")
# Bytes after which a commit starts the next change log file (the checkpoint
# removes those it has written into the database).
_SEGMENT_SIZE = 16 * 1024 * 1024

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


def _plain(value: Any) -> Any:
    """C{value} as the built-in type it derives from (an IntEnum as its int)."""
    kind: Any
    for kind in (bool, int, float, str, bytes):
        if isinstance(value, kind):
            return value if type(value) is kind else kind(value)
    return value


def _segments(path: str) -> list[tuple[int, str]]:
    """The change log files beside the database C{path}, oldest first."""
    found = []
    for name in glob.glob(glob.escape(path) + "-changes.*"):
        number = name.rsplit(".", 1)[1]
        if number.isdigit():
            found.append((int(number), name))
    return sorted(found)


def _readChanges(name: str, last: bool) -> list[tuple[Any, ...]]:
    """The commits in the change log file C{name}. A damaged record ends the
    last file (a write the machine did not finish: with C{synchronous =
    "full"} its PBAs never left); anywhere else it is a L{StoreError}."""
    with open(name, "rb") as f:
        data = f.read()
    payloads = []
    position = 0
    while position < len(data):
        damage = None
        if position + _RECORD.size > len(data):
            damage = "a record cut short"
        else:
            magic, length, crc = _RECORD.unpack_from(data, position)
            start = position + _RECORD.size
            payload = data[start:start + length]
            if magic != _MAGIC:
                damage = "no record"
            elif len(payload) < length:
                damage = "a record cut short"
            elif zlib.crc32(payload) != crc:
                damage = "a record whose CRC-32 does not match"
        if damage is not None:
            if last:
                break
            raise StoreError(f"{name}: {damage} at offset {position}; the Binding Cache "
                             "cannot be read past it (move the file away to start without it)")
        try:
            payloads.append(marshal.loads(payload))
        except (EOFError, ValueError, TypeError) as e:
            raise StoreError(f"{name}: the record at offset {position} does not decode: "
                             f"{e}") from None
        position = start + length
    return payloads


def _writeCommits(db: sqlite3.Connection, commits: Iterable[tuple[int, tuple[Any, ...]]]) -> None:
    """Write C{commits} (in order: an entry's last change wins) into the
    database, one transaction."""
    rows: dict[bytes, tuple[Any, ...] | None] = {}
    revocations = None
    for _, (upserts, deletes, revoked, sequence) in commits:
        for row in upserts:
            rows[row[0]] = row
        for nai in deletes:
            rows[nai] = None
        if revoked is not None:
            revocations = (revoked, sequence)
    with db:
        db.execute("BEGIN")
        db.executemany(_UPSERT, [row for row in rows.values() if row is not None])
        db.executemany(_DELETE, [(nai,) for nai, row in rows.items() if row is None])
        if revocations is not None:
            db.execute("DELETE FROM revocation")
            db.executemany("INSERT INTO revocation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           revocations[0])
            db.execute("INSERT OR REPLACE INTO meta VALUES ('revocation_sequence', ?)",
                       (revocations[1],))


@implementer(IBindingStore)
class SQLiteBindingCache:
    """
    The Binding Cache in memory and in the SQLite database at C{path}
    (created, mode 0600, with its folder, if missing) with its change log.
    Opening it writes the change log into the database, then loads every
    entry the database holds, expired ones too (the anchor drops those when
    it resumes: L{lmm.lmap.anchor.LocalMobilityAnchor.resume}).

    @raise StoreError: the file cannot be opened, is no such database, is
        readable by others, or its change log is damaged before its end.
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
        # Commits in the change log, not yet in the database: (file number,
        # payload), appended by commit, taken by checkpoint (in its thread).
        self._unwritten: deque[tuple[int, tuple[Any, ...]]] = deque()
        self._log: int | None = None
        self._logSize = 0
        self._segment = 0
        try:
            self._db = self._open(path, synchronous)
            self._migrate()
            self._recover()
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

    def _recover(self) -> None:
        """The change log of a previous run (killed, or its last writes not
        yet in the database), written into the database, then removed."""
        segments = _segments(self.path)
        if not segments:
            return
        commits = [(number, payload) for number, name in segments
                   for payload in _readChanges(name, number == segments[-1][0])]
        _writeCommits(self._db, commits)
        for _, name in segments:
            os.remove(name)

    def _migrate(self) -> None:
        """Bring a database of an earlier schema up to this one; refuse a later one."""
        db = self._db
        version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if version is not None and version[0] == 1:
            # Version 2 keeps how long a revoked binding may live at its MPA;
            # a revocation of version 1 gives up as it used to (0).
            db.execute("ALTER TABLE revocation ADD COLUMN until REAL NOT NULL DEFAULT 0")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
            version = (_SCHEMA_VERSION,)
        if version is not None and version[0] != _SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version[0]}, this lmm reads "
                             f"{_SCHEMA_VERSION}")

    def _load(self) -> int:
        """Read the entries; count this start (RFC 5847 3.2); the new counter."""
        db = self._db
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
        # Plain values for the change log (marshal takes no IntEnum: the trigger).
        self._revocations = [tuple(_plain(v) for v in row) for row in rows]
        self._revocationSequence = lastSequence

    def loadRevocations(self) -> tuple[list[tuple[Any, ...]], int]:
        """The revocations in flight at the last commit that saved them, and
        the last sequence number handed out then."""
        for _, (_, _, revocations, sequence) in reversed(self._unwritten):
            if revocations is not None:
                return list(revocations), sequence
        rows = [(mpa, sequence, bytes(nai), *rest) for mpa, sequence, nai, *rest
                in self._db.execute("SELECT * FROM revocation")]
        found = self._db.execute(
            "SELECT value FROM meta WHERE key = 'revocation_sequence'").fetchone()
        return rows, found[0] if found else 0

    def commit(self) -> int:
        """Append what changed since the last commit to the change log, one
        record; how many entries it wrote or deleted. C{OSError} when it
        cannot (the changes stay, for the next commit; the log is cut back
        to before the record)."""
        dirty = self._dirty
        revocations = self._revocations
        if not dirty and revocations is None:
            return 0
        upserts = [_row(e) for e in dirty.values() if e is not None]
        deletes = [nai for nai, e in dirty.items() if e is None]
        payload = (upserts, deletes, revocations,
                   self._revocationSequence if revocations is not None else 0)
        data = marshal.dumps(payload)
        record = _RECORD.pack(_MAGIC, len(data), zlib.crc32(data)) + data
        fd = self._logFile()
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(fd, view):]
            if self._synchronous == "full":
                os.fdatasync(fd)
        except OSError:
            try:
                os.ftruncate(fd, self._logSize)  # no half record before the next one
            except OSError:
                pass
            # The next commit starts a file of its own, whatever this one's state.
            self._log = None
            try:
                os.close(fd)
            except OSError:
                pass
            raise
        self._logSize += len(record)
        self._unwritten.append((self._segment, payload))
        self._dirty = {}
        self._revocations = None
        return len(upserts) + len(deletes)

    def _logFile(self) -> int:
        """The change log file to append to: a new one past L{_SEGMENT_SIZE}."""
        fd = self._log
        if fd is not None and self._logSize < _SEGMENT_SIZE:
            return fd
        if fd is not None:
            os.close(fd)
            self._log = None
        self._segment += 1
        name = f"{self.path}-changes.{self._segment}"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        if self._synchronous == "full":
            # The new file's name is on disk before a record in it counts.
            folder = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        self._log = fd
        self._logSize = 0
        return fd

    def _writeLog(self, db: sqlite3.Connection) -> None:
        """What the change log holds and the database not yet, into the
        database; then the log files wholly written removed. Safe in another
        thread than L{commit}'s (the deque is; the file being appended to is
        never removed)."""
        commits = []
        unwritten = self._unwritten
        while True:
            try:
                commits.append(unwritten.popleft())
            except IndexError:
                break
        if not commits:
            return
        try:
            _writeCommits(db, commits)
        except BaseException:
            unwritten.extendleft(reversed(commits))  # the next checkpoint tries again
            raise
        # Every commit of a file before the last one written is in the database.
        last = commits[-1][0]
        for number, name in _segments(self.path):
            if number < last:
                os.remove(name)

    def checkpoint(self) -> tuple[int, int, int]:
        """Write the change log into the database (L{_writeLog}), then copy
        what SQLite's write-ahead log holds into the database: SQLite's PASSIVE
        checkpoint, which waits for no writer and blocks none. On a connection
        of its own, for a thread of its own (the service runs it every
        C{store.checkpoint_interval} seconds, one at a time). SQLite's answer:
        (busy, frames in the log, frames checkpointed)."""
        db = self._checkpointer
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            self._checkpointer = db
        self._writeLog(db)
        busy, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, frames, done

    def close(self) -> None:
        """Commit what is left, write all of it into the database, checkpoint
        it, remove the change log, close. Not while a L{checkpoint} runs."""
        try:
            self.commit()
            self._writeLog(self._db)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if self._log is not None:
                os.close(self._log)
                self._log = None
            for _, name in _segments(self.path):
                os.remove(name)
        finally:
            if self._log is not None:
                os.close(self._log)
                self._log = None
            self._db.close()
            if self._checkpointer is not None:
                self._checkpointer.close()
