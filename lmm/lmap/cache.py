"""
The LMAP's Binding Cache: one entry per Mobile Station, found by its NAI or by
its Local Address. This one lives in memory only; L{lmm.lmap.store} keeps one
on disk as well.

Sized for a million bindings: an entry is one slotted object, the cache is two
dicts pointing at the same entries, and nothing else is kept per binding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from zope.interface import implementer

from lmm.interfaces import IBindingStore
from lmm.tunnel import TunnelBinding


@dataclass(slots=True)
class BindingCacheEntry:
    """
    What the LMAP knows of one Mobile Station.

    @ivar nai: the MS's NAI (the Mobile Node Identifier), the primary key.
    @ivar localAddress: the MS's Local Address (canonical text), the second key.
        Do not change it (nor C{nai}) on an entry a store holds: L{put} a new entry.
    @ivar prefixLength: the length of the Local Network Prefix holding it.
    @ivar careOfAddress: the MPA the MS is attached to (the tunnel's far end).
    @ivar lifetime: the lifetime granted by the last accepted registration, seconds.
    @ivar sequence: the Sequence Number of the last accepted registration.
    @ivar tunnel: what the data plane was told to carry for this binding.
    @ivar created: when the binding was created.
    @ivar updated: when a registration was last accepted for it; the binding
        ends at C{updated + lifetime} (L{expires}) unless refreshed.
    @ivar timestamp: the Replay Protection timestamp (RFC 4285 6, NTP format)
        of the last accepted registration, 0 for none: a PBU for the MS from
        any MPA must be newer (the anchor's rule 11).
    """

    nai: bytes
    localAddress: str
    prefixLength: int
    careOfAddress: str
    lifetime: int
    sequence: int
    tunnel: TunnelBinding
    created: float
    updated: float
    timestamp: int = 0

    @property
    def expires(self) -> float:
        """When the binding ends unless refreshed (the anchor's clock). Derived,
        not kept: a float and a slot less per binding (issue 15's 512 bytes)."""
        return self.updated + self.lifetime

    def describe(self) -> dict[str, Any]:
        """The entry for an operator (the control channel's C{bindings}); times
        on the anchor's clock."""
        return {"nai": self.nai.decode("utf-8", "replace"),
                "localAddress": f"{self.localAddress}/{self.prefixLength}",
                "careOfAddress": self.careOfAddress, "lifetime": self.lifetime,
                "expires": self.expires, "created": self.created, "updated": self.updated,
                "sequence": self.sequence}


class BindingStore(Protocol):
    """L{IBindingStore} for the type checker (which does not read zope interfaces)."""

    def get(self, nai: bytes) -> BindingCacheEntry | None: ...

    def getByAddress(self, address: str) -> BindingCacheEntry | None: ...

    def put(self, entry: BindingCacheEntry) -> None: ...

    def remove(self, nai: bytes) -> BindingCacheEntry | None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[BindingCacheEntry]: ...

    @property
    def persistent(self) -> bool: ...

    @property
    def pending(self) -> bool: ...

    def commit(self) -> int: ...

    def checkpoint(self) -> tuple[int, int, int]: ...

    def close(self) -> None: ...

    def saveRevocations(self, rows: Iterable[tuple[Any, ...]], lastSequence: int) -> None: ...

    def loadRevocations(self) -> tuple[list[tuple[Any, ...]], int]: ...


@implementer(IBindingStore)
class BindingCache:
    """An in-memory L{IBindingStore}: a dict by NAI and a dict by Local Address."""

    __slots__ = ("_byNai", "_byAddress")

    def __init__(self) -> None:
        self._byNai: dict[bytes, BindingCacheEntry] = {}
        self._byAddress: dict[str, BindingCacheEntry] = {}

    def get(self, nai: bytes) -> BindingCacheEntry | None:
        return self._byNai.get(nai)

    def getByAddress(self, address: str) -> BindingCacheEntry | None:
        return self._byAddress.get(address)

    def put(self, entry: BindingCacheEntry) -> None:
        """Insert C{entry}, replacing the entry of the same NAI (and dropping
        that one's Local Address). An address held by another NAI's entry now
        finds C{entry}: callers check for duplicates first."""
        old = self._byNai.get(entry.nai)
        if old is entry:
            # A refresh of an entry held already: both keys are unchanged.
            return
        self._byNai[entry.nai] = entry
        if old is not None and self._byAddress.get(old.localAddress) is old:
            del self._byAddress[old.localAddress]
        self._byAddress[entry.localAddress] = entry

    def remove(self, nai: bytes) -> BindingCacheEntry | None:
        entry = self._byNai.pop(nai, None)
        if entry is not None and self._byAddress.get(entry.localAddress) is entry:
            del self._byAddress[entry.localAddress]
        return entry

    def __len__(self) -> int:
        return len(self._byNai)

    def __iter__(self) -> Iterator[BindingCacheEntry]:
        return iter(self._byNai.values())

    # Nothing outlives the process: nothing to write, nothing to read back.
    persistent = False
    pending = False

    def commit(self) -> int:
        return 0

    def checkpoint(self) -> tuple[int, int, int]:
        return 0, 0, 0

    def close(self) -> None:
        pass

    def saveRevocations(self, rows: Iterable[tuple[Any, ...]], lastSequence: int) -> None:
        pass

    def loadRevocations(self) -> tuple[list[tuple[Any, ...]], int]:
        return [], 0
