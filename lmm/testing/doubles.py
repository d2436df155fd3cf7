"""
Test doubles shared by the tests (the recording data plane itself is
L{lmm.tunnel.RecordingDataPlane}, also a backend).
"""

from __future__ import annotations

from typing import Iterable

from twisted.internet.defer import Deferred, fail

from lmm.dataplane.common import DataPlaneError
from lmm.tunnel import RecordingDataPlane, TunnelBinding


class RefusingPlane(RecordingDataPlane):
    """
    A recording backend that cannot carry some tunnels: those to the MPAs (or
    LMAPs) in C{refused}, and the bindings in C{refusedBindings}. It says so as
    C{how} asks: C{"raise"} from C{addBinding}, C{"failed"} with a Deferred that
    has failed already (as lmm.dataplane's backends do), or C{"later"} with one
    that the test fails (or fires) from C{waiting}. With C{slow}, the tunnels
    it does carry are up only when the test fires their Deferred (in
    C{waiting} too): a backend that takes its time.
    """

    name = "refusing"

    def __init__(self, how: str = "failed", refusedBindings: Iterable[TunnelBinding] = (),
                 slow: bool = False, name: str | None = None) -> None:
        super().__init__()
        self.how = how
        self.refused: set[str] = set()
        self.refusedBindings = set(refusedBindings)
        self.slow = slow
        if name is not None:
            self.name = name
        self.waiting: list[tuple[Deferred[None], TunnelBinding]] = []

    def addBinding(self, binding: TunnelBinding) -> Deferred[None] | None:  # type: ignore[override]
        d: Deferred[None]
        if binding.remoteEndpoint not in self.refused and binding not in self.refusedBindings:
            super().addBinding(binding)
            if not self.slow:
                return None
            d = Deferred()
            self.waiting.append((d, binding))
            return d
        # As lmm.dataplane's backends: a replacement that fails leaves neither carried.
        self._bindings.pop(self._key(binding), None)
        error = DataPlaneError(f"cannot reach {binding.remoteEndpoint}")
        if self.how == "raise":
            raise error
        if self.how == "failed":
            return fail(error)
        d = Deferred()
        self.waiting.append((d, binding))
        return d
