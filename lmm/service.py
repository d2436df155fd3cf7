"""
What the LMAP's and the MPA's services (L{lmm.lmap.service},
L{lmm.mpa.service}) are made of: the action loop that carries out, in order,
what their state machines return (L{lmm.actions}); the Mobility Header socket
as a service; and the MultiService they are composed in, which starts its
children in order, stops them in reverse, and undoes a start that failed half
way.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFDSet, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from lmm import mh
from lmm.actions import AddTunnel, HoldDownlink, Note, ReleaseDownlink, RemoveTunnel, SendMessage
from lmm.config import ConfigError
from lmm.interfaces import ITunnelDataPlane
from lmm.journal import Journal
from lmm.ratelimit import LogLimiter, SourceLimiter
from lmm.rawsock import MobilityHeaderPort, MobilityHeaderProtocol
from lmm.reader import errorName
from lmm.security import Refused, SignalingCodec
from lmm.tunnel import TunnelBinding

#: Carries out a kind of action the shared loop does not know (the MPA's own).
Other = Callable[[object], None]


class ActionPerformer:
    """
    Carries out a state machine's actions in order: L{SendMessage} by
    C{send(message, destination)}, L{AddTunnel} and L{RemoveTunnel} on
    C{dataPlane}, L{HoldDownlink} and L{ReleaseDownlink} on it too when it
    can hold packets (C{holdDownlink}, C{releaseDownlink}: the userspace
    backend; counted C{downlink.hold-unsupported} otherwise), L{Note} in
    C{journal}, any other kind by C{other}. An
    addition that the data plane answers with a Deferred holds back what
    follows it (the tunnel is up before the PBA or the RA leaves): that is
    carried out once the Deferred fires. An addition that fails (C{addBinding}
    raises, or its Deferred fails) goes to C{tunnelFailed(failure, binding)},
    and what followed it is dropped.

    Any other action that raises is counted (C{action.failed.<kind>} in
    C{counters}) and logged with its traceback, once a second per kind at
    most, and the actions after it are carried out all the same: one broken
    backend call never takes another event's PBA, BRI or tunnel with it, and
    the caller's timer is re-armed as usual (issue 13, part 4).

    @param log: the daemon's L{Logger}, for failures to remove a tunnel.
    @param resume: what carries out the actions held back once their tunnel
        is up (default: L{perform}); a service whose own loop does more
        around it (the MPA's authentications) passes that.
    """

    def __init__(self, dataPlane: ITunnelDataPlane, send: Callable[[Any, str], None],
                 journal: Journal,
                 log: Logger, tunnelFailed: Callable[[Failure, TunnelBinding], None],
                 resume: Callable[[list[object]], None] | None = None,
                 counters: Counter[str] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.dataPlane = dataPlane
        self.send = send
        self.journal = journal
        self.log = log
        self.tunnelFailed = tunnelFailed
        self.resume = resume
        self.counters: Counter[str] = Counter() if counters is None else counters
        self._limiter = LogLimiter(clock or time.monotonic)

    def perform(self, actions: Iterable[object], other: Other | None = None) -> None:
        remaining = iter(actions)
        for action in remaining:
            try:
                if isinstance(action, SendMessage):
                    self.send(action.message, action.destination)
                elif isinstance(action, AddTunnel):
                    self.counters["tunnel.add"] += 1
                    if not self._addTunnel(action.binding, remaining, other):
                        return
                elif isinstance(action, RemoveTunnel):
                    self.counters["tunnel.remove"] += 1
                    result = self.dataPlane.removeBinding(action.binding)
                    if isinstance(result, Deferred):
                        result.addErrback(self._logFailure, "removing a tunnel binding")
                elif isinstance(action, Note):
                    self.journal.note(action)
                elif isinstance(action, HoldDownlink):
                    if not self._downlink("holdDownlink", action.binding):
                        self.counters["downlink.hold-unsupported"] += 1
                elif isinstance(action, ReleaseDownlink):
                    self._downlink("releaseDownlink", action.binding, action.handBack)
                elif other is not None:
                    other(action)
            except Exception:
                self.failed(action, Failure())

    def _downlink(self, method: str, *args: Any) -> bool:
        """C{dataPlane.method(*args)}, if the data plane has it: whether it did."""
        call = getattr(self.dataPlane, method, None)
        if call is None:
            return False
        return call(*args) is not False

    def _addTunnel(self, binding: TunnelBinding, remaining: Iterator[object],
                   other: Other | None) -> bool:
        """Whether what follows C{binding}'s addition may be carried out now."""
        try:
            result = self.dataPlane.addBinding(binding)
        except Exception:
            failure = Failure()
            try:
                self.tunnelFailed(failure, binding)
            except Exception:
                self.failed(AddTunnel(binding), Failure())
            return False
        if isinstance(result, Deferred):
            result.addCallbacks(self._resume, self.tunnelFailed,
                                callbackArgs=(list(remaining), other),
                                errbackArgs=(binding,))
            result.addErrback(self._logFailure, "carrying out what waited for a tunnel")
            return False
        return True

    def failed(self, action: object, failure: Failure) -> None:
        """C{action} raised C{failure}: counted, and logged once a second per kind."""
        kind = type(action).__name__
        key = "action.failed." + kind
        self.counters[key] += 1
        if self._limiter.allow(key):
            self.log.failure("carrying out {kind} failed; the actions after it go on "
                             "({count} so far)", failure, kind=kind, count=self.counters[key])

    def _resume(self, _: object, rest: list[object], other: Other | None) -> None:
        if self.resume is not None:
            self.resume(rest)
        else:
            self.perform(rest, other)

    def _logFailure(self, failure: Failure, what: str) -> None:
        self.log.failure("{what} failed", failure, what=what)


#: What L{ActionPerformer} and L{SignalingShell} count (the daemons'
#: C{counters} show them).
COUNTERS = {
    "action.failed.<kind>": "actions that raised (logged); those after them were carried out",
    "mh.send-failed.<errno>": "Mobility Header sends the kernel refused, by errno",
    "mh.send-unprotected": "messages not sent: no security association with the destination",
    "mh.rate-limited": "messages dropped unread: over security.max_rate_per_source",
    "tunnel.add": "tunnel bindings given to the data plane to add (lmm_tunnel_operations)",
    "tunnel.remove": "tunnel bindings given to the data plane to remove",
    "tunnel.<statistic>": "the tunnel backend's own counts: the userspace backend's packets "
                          "encapsulated, held, handed back (docs/dataplane.md)",
    "downlink.hold-unsupported": "departing visitors whose downlink the data plane cannot hold "
                                 "(a kernel backend: what comes for them meanwhile is lost)",
}


def tunnelCounters(plane: Any) -> dict[str, int]:
    """The tunnel backend's own counts (C{statistics()}, where it has them)
    as C{tunnel.<statistic>}, for the daemons' C{counters}."""
    statistics = getattr(plane, "statistics", None)
    if statistics is None:
        return {}
    return {"tunnel." + key: value for key, value in statistics().items()}


@dataclass(frozen=True)
class SignalingConfig:
    """
    How a daemon's signaling is protected, as its configuration says
    (L{lmm.daemon.signalingConfig}): the codec, the key file its security
    associations came from (the control channel's C{security reload} reads it
    again; None: authentication off), and the most Mobility Header messages a
    second read from one source (0: no limit).
    """

    codec: SignalingCodec
    keyFile: str | None = None
    maxRatePerSource: float = 0.0


class SignalingShell:
    """
    What both daemons do with Mobility Header datagrams, deciding nothing:
    L{decode} with the codec (one that does not decode, or that the codec
    refuses, is logged rate-limited and returned as the error, for the core's
    C{malformed}); L{send} encodes and sends what the core sends. A send
    error is counted by errno (L{COUNTERS}) and logged rate-limited, and
    never stops what follows it.

    @ivar codec: the L{SignalingCodec}; C{keyFile}: where its associations came from.
    @ivar port: what sends bytes (C{send(data, destination)}); None: nothing.
    @ivar counters: this shell's counters.
    """

    def __init__(self, config: SignalingConfig, clock: Callable[[], float], logger: Logger,
                 coreCounters: Counter[str]) -> None:
        self.codec = config.codec
        self.keyFile = config.keyFile
        self.sources = SourceLimiter(config.maxRatePerSource)
        self.clock = clock
        self.log = logger
        self.coreCounters = coreCounters
        self.counters: Counter[str] = Counter()
        self.port: Any = None
        self._limiter = LogLimiter(clock)

    def announce(self) -> None:
        """The start's log line of the signaling's protection; a warning when off."""
        codec = self.codec
        associations = codec.associations
        if associations is None:
            self.log.warn("Mobility Header signaling is NOT authenticated "
                          "(security.authentication = false): any host that can reach this "
                          "one can forge or replay registrations and revocations "
                          "(docs/security.md)")
            return
        algorithms = sorted({sa.algorithm.name for listed in associations.byPeer.values()
                             for sa in listed})
        self.log.info("Mobility Header signaling authenticated (RFC 4285): {count} security "
                      "association(s) with {peers} peer(s), {algorithms}, replay window {window} s",
                      count=len(associations), peers=len(associations.byPeer),
                      algorithms=", ".join(algorithms), window=codec.replayWindow)

    def decode(self, data: bytes, source: str,
               now: float) -> mh.Message | mh.MobilityHeaderError | None:
        """The message in C{data}; the error it gives; None when its source
        is over its rate (counted, logged at most once a second)."""
        if not self.sources.allow(source, now):
            self.counters["mh.rate-limited"] += 1
            if self._limiter.allow("mh.rate-limited"):
                self.log.warn("dropping Mobility Header messages from {source}: over "
                              "{rate:g} a second ({count} dropped so far)", source=source,
                              rate=self.sources.rate, count=self.counters["mh.rate-limited"])
            return None
        try:
            return self.codec.decode(data, source, now)
        except mh.MobilityHeaderError as e:
            reason = e.reason
            if isinstance(e, Refused):
                if self._limiter.allow("refused." + reason):
                    self.log.warn("refused a Mobility Header message from {source}: {error} "
                                  "({reason}, {count} so far)", source=source, error=str(e),
                                  reason=reason,
                                  count=self.coreCounters["refused." + reason] + 1)
            elif self._limiter.allow("mh." + reason):
                self.log.warn("dropped a malformed Mobility Header from {source}: {error} "
                              "({reason}, {count} so far)", source=source, error=str(e),
                              reason=reason, count=self.coreCounters["malformed." + reason] + 1)
            return e

    def send(self, message: mh.MobilityMessage, destination: str) -> None:
        port = self.port
        if port is None:
            return
        try:
            data = self.codec.encode(message, destination, self.clock())
        except ValueError as e:
            self.counters["mh.send-unprotected"] += 1
            if self._limiter.allow("mh.send-unprotected"):
                self.log.warn("not sending {kind} to {destination}: {error}",
                              kind=type(message).__name__, destination=destination, error=e)
            return
        try:
            port.send(data, destination)
        except OSError as e:
            name = errorName(e.errno)
            self.counters["mh.send-failed." + name] += 1
            if self._limiter.allow("mh.send-failed." + name):
                self.log.warn("cannot send a Mobility Header to {destination}: {error} "
                              "({count} so far)", destination=destination, error=e,
                              count=self.counters["mh.send-failed." + name])


class _Deliver(MobilityHeaderProtocol):
    def __init__(self, deliver: Callable[[bytes, str], None]) -> None:
        self.deliver = deliver

    def datagramReceived(self, data: bytes, source: str) -> None:
        self.deliver(data, source)


class MobilityHeaderService(Service):
    """
    A raw Mobility Header socket on C{address} (L{MobilityHeaderPort}) while
    the service runs; each datagram goes to C{deliver(data, source)}.

    @param socket: makes the raw socket to use (in another namespace, say),
        or None: the port makes its own.
    """

    name = "mobility-header"

    def __init__(self, address: str, reactor: IReactorFDSet,
                 deliver: Callable[[bytes, str], None],
                 socket: Callable[[], Any] | None = None) -> None:
        self.address = address
        self.reactor = reactor
        self.deliver = deliver
        self.socket = socket
        self.port: MobilityHeaderPort | None = None

    def startService(self) -> None:
        sock = None if self.socket is None else self.socket()
        port = MobilityHeaderPort(_Deliver(self.deliver), self.address, self.reactor, sock)
        port.startListening()
        self.port = port
        Service.startService(self)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        port, self.port = self.port, None
        return succeed(None) if port is None else port.stopListening()

    def send(self, data: bytes, destination: str) -> bool:
        """L{MobilityHeaderPort.send}; nothing (False) while not listening."""
        port = self.port
        if port is None:
            return False
        return port.send(data, destination)


class InOrder(MultiService):
    """
    A daemon's services: started in the order they were added, stopped in
    reverse (so the core, added after its sockets, sends its last messages
    before they close). A child that fails to start stops the ones started
    before it, and the error goes on: no half-started daemon.

    @ivar startFailed: given a L{ConfigError} a child raised at start (a
        metrics port in use), after the undoing; the daemons' C{makeService}
        sets one that says it in one line and exits 1, as for a bad key.
        None: the error goes on.
    """

    startFailed: Callable[[ConfigError], None] | None = None

    def startService(self) -> None:
        started: list[Any] = []
        Service.startService(self)
        children: list[Any] = list(self)
        try:
            for service in children:
                service.startService()
                started.append(service)
        except BaseException as e:
            Service.stopService(self)
            for service in reversed(started):
                service.stopService()
            if isinstance(e, ConfigError) and self.startFailed is not None:
                self.startFailed(e)
            raise


def summaryService(interval: float, summary: Callable[[], None],
                   reactor: IReactorTime) -> TimerService | None:
    """The periodic summary of the counters, every C{interval} seconds (none
    for 0); the first at the end of the first interval."""
    if not interval:
        return None
    started: list[bool] = []

    def tick() -> None:
        # TimerService calls at once when it starts: a summary of nothing yet.
        if started:
            summary()
        started.append(True)
        del started[1:]

    timer = TimerService(interval, tick)
    timer.clock = reactor
    return timer
