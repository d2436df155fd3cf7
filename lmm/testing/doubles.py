"""
Test doubles shared by the tests (the recording data plane itself is
L{lmm.tunnel.RecordingDataPlane}, also a backend).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail

from lmm.dataplane.common import DataPlaneError
from lmm.tunnel import RecordingDataPlane, TunnelBinding


class RefusingPlane(RecordingDataPlane):
    """
    A recording backend that cannot carry tunnels to the MPAs in C{refused}. It
    says so as C{how} asks: C{"raise"} from C{addBinding}, C{"failed"} with a
    Deferred that has failed already (as lmm.dataplane's backends do), or
    C{"later"} with one that the test fails (or fires) from C{waiting}.
    """

    name = "refusing"

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.refused: set[str] = set()
        self.waiting: list[tuple[Deferred[None], TunnelBinding]] = []

    def addBinding(self, binding: TunnelBinding) -> Deferred[None] | None:  # type: ignore[override]
        if binding.remoteEndpoint not in self.refused:
            super().addBinding(binding)
            return None
        error = DataPlaneError(f"cannot reach {binding.remoteEndpoint}")
        if self.how == "raise":
            raise error
        if self.how == "failed":
            return fail(error)
        d: Deferred[None] = Deferred()
        self.waiting.append((d, binding))
        return d
