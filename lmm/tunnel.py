"""
What the tunnel data plane is told, and the recording backend.

A L{TunnelBinding} says: packets for C{mobileAddress}/C{prefixLength} travel in
an IPv6-in-IPv6 tunnel (RFC 2473) between C{localEndpoint} and
C{remoteEndpoint}. At the LMAP the remote end is the MPA; at the MPA it is the
LMAP and C{accessInterface} is the link the MS is on: packets from
MOBILE/LEN arriving there go into the tunnel, and packets for MOBILE/LEN
coming out of it go onto that link.

MOBILE/LEN is a /128 address in the draft profile and the MS's home network
prefix, usually a /64, in the rfc5213 profile (RFC 5213 6.10, "The MAG's
forwarding considerations": the MAG tunnels the whole prefix, whatever
addresses the MS forms in it). C{mobileAddress} is then the prefix's network
address; the netlink backends refuse one with bits set past C{prefixLength}.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from zope.interface import implementer

from lmm.interfaces import IReactor, ITunnelDataPlane

ROLE_LMAP = "lmap"
ROLE_MPA = "mpa"


@dataclass(frozen=True, slots=True)
class TunnelBinding:
    mobileAddress: str
    prefixLength: int
    localEndpoint: str
    remoteEndpoint: str
    role: str
    accessInterface: str | None = None


@implementer(ITunnelDataPlane)
class RecordingDataPlane:
    """
    Carries nothing; remembers what it was asked. For control-plane tests and
    signaling benchmarks. C{history} keeps the last C{historySize} calls as
    (verb, binding) so that a benchmark with a million bindings stays small.
    """

    name = "recording"

    def __init__(self, historySize: int = 10000) -> None:
        self._bindings: dict[str | tuple[str, int], TunnelBinding] = {}
        self.history: deque[tuple[str, TunnelBinding]] = deque(maxlen=historySize)
        self.added = 0
        self.removed = 0
        self.stopped = False
        self.prepared: list[str] = []

    def prepare(self, localEndpoint: str, peers: Sequence[str] = (),
                accessInterfaces: Sequence[str] = ()) -> None:
        self.prepared.append(localEndpoint)

    @staticmethod
    def _key(binding: TunnelBinding) -> str | tuple[str, int]:
        # A /128 by its address alone: no tuple per binding (the LMAP benchmark's
        # million bindings are all /128s, and each tuple is 64 bytes).
        if binding.prefixLength == 128:
            return binding.mobileAddress
        return (binding.mobileAddress, binding.prefixLength)

    def addBinding(self, binding: TunnelBinding) -> None:
        self._bindings[self._key(binding)] = binding
        self.history.append(("add", binding))
        self.added += 1

    def removeBinding(self, binding: TunnelBinding) -> None:
        key = self._key(binding)
        if self._bindings.get(key) == binding:
            del self._bindings[key]
        self.history.append(("remove", binding))
        self.removed += 1

    def bindings(self) -> Iterable[TunnelBinding]:
        return list(self._bindings.values())

    def stop(self) -> None:
        self.stopped = True
        self._bindings.clear()


def recordingBackend(settings: Mapping[str, Any], reactor: IReactor) -> RecordingDataPlane:
    unknown = sorted(set(settings) - {"history"})
    if unknown:
        raise ValueError(f"recording backend: unknown key tunnel.options.{unknown[0]} "
                         f"(known: history)")
    size = settings.get("history", 10000)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"recording backend: tunnel.options.history: expected a whole "
                         f"number >= 0, got {size!r}")
    return RecordingDataPlane(size)
