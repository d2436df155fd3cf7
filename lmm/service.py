"""
What the LMAP's and the MPA's services (L{lmm.lmap.service},
L{lmm.mpa.service}) share: carrying out, in order, the actions their state
machines return (L{lmm.actions}), and the Mobility Header socket's protocol.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from lmm import mh
from lmm.actions import AddTunnel, Note, RemoveTunnel, SendMessage
from lmm.journal import Journal
from lmm.rawsock import MobilityHeaderProtocol
from lmm.tunnel import TunnelBinding


class Signaling(MobilityHeaderProtocol):
    """The Mobility Header socket's datagrams, to C{service.datagramReceived}."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def datagramReceived(self, data: bytes, source: str) -> None:
        self.service.datagramReceived(data, source)


class ActionPerformer:
    """
    Carries out a state machine's actions, for a service with a C{dataPlane},
    a C{journal}, a C{log} (its L{Logger}: the log lines keep the daemon's
    namespace), C{send(message, destination)} and C{_tunnelFailed(failure,
    binding)} (what a tunnel the data plane cannot carry means to it).
    """

    dataPlane: Any
    journal: Journal
    log: Logger

    def send(self, message: mh.MobilityMessage, destination: str) -> None:
        raise NotImplementedError

    def _tunnelFailed(self, failure: Failure, binding: TunnelBinding) -> None:
        raise NotImplementedError

    def perform(self, actions: Iterable[object]) -> None:
        """Carry out C{actions} in order (L{performActions})."""
        self.performActions(actions)

    def performActions(self, actions: Iterable[object],
                       other: Callable[[object], None] | None = None) -> None:
        """
        Carry out C{actions} in order: L{SendMessage}, L{AddTunnel},
        L{RemoveTunnel} and L{Note} here, any other kind by C{other} (none:
        ignored). An addition that the data plane answers with a Deferred
        holds back what follows it (the tunnel is up before the PBA or the RA
        leaves): that goes to L{perform} once the Deferred fires. An addition
        that fails (C{addBinding} raises, or its Deferred fails) goes to
        C{_tunnelFailed}, and what followed it is dropped.
        """
        remaining = iter(actions)
        for action in remaining:
            if isinstance(action, SendMessage):
                self.send(action.message, action.destination)
            elif isinstance(action, AddTunnel):
                binding = action.binding
                try:
                    result = self.dataPlane.addBinding(binding)
                except Exception:
                    self._tunnelFailed(Failure(), binding)
                    return
                if isinstance(result, Deferred):
                    rest = list(remaining)
                    result.addCallbacks(lambda _, rest=rest: self.perform(rest),
                                        self._tunnelFailed, errbackArgs=(binding,))
                    return
            elif isinstance(action, RemoveTunnel):
                result = self.dataPlane.removeBinding(action.binding)
                if isinstance(result, Deferred):
                    result.addErrback(self._logFailure, "removing a tunnel binding")
            elif isinstance(action, Note):
                self.journal.note(action)
            elif other is not None:
                other(action)

    def _logFailure(self, failure: Failure, what: str) -> None:
        self.log.failure("{what} failed", failure, what=what)
