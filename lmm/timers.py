"""The one timer a service keeps for its state machine's next deadline."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime


class DeadlineTimer:
    """
    Calls C{fire} at the earliest deadline it is given (reactor time). The
    state machines say when they next need a tick (C{nextDeadline}); the
    service passes that here after every input (the LMAP's, after a PBU, only
    the earliest deadline filed since: C{LocalMobilityAnchor.earliestFiled}),
    and a later deadline than the one already set changes nothing, so the hot
    path rarely touches the reactor.
    """

    def __init__(self, reactor: IReactorTime, fire: Callable[[], None]) -> None:
        self.reactor = reactor
        self.fire = fire
        self._call: Any = None
        self._at: float | None = None

    def schedule(self, deadline: float | None) -> None:
        if deadline is None or (self._at is not None and self._at <= deadline):
            return
        self.cancel()
        self._at = deadline
        self._call = self.reactor.callLater(max(0.0, deadline - self.reactor.seconds()),
                                            self._fired)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._at = None

    def _fired(self) -> None:
        self._call = None
        self._at = None
        self.fire()
