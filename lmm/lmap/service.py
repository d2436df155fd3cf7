"""
The LMAP's imperative shell: the Mobility Header socket, the one timer, the
tunnel backend. Everything it decides comes from L{LocalMobilityAnchor}; this
module only carries the actions out, in order.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from lmm import mh
from lmm.daemon import buildBackend
from lmm.dataplane.swapping import SwappableDataPlane, TunnelConfig, tunnelConfig
from lmm.interfaces import ITunnelDataPlane
from lmm.journal import LMAP_LIMITED, LMAP_PER_BINDING, Journal
from lmm.lmap.anchor import LocalMobilityAnchor
from lmm.ratelimit import LogLimiter
from lmm.rawsock import MobilityHeaderPort
from lmm.service import ActionPerformer, Signaling
from lmm.timers import DeadlineTimer

log = Logger(namespace="lmm.lmap")


class LMAPService(ActionPerformer, SwappableDataPlane, Service):
    """
    Runs a L{LocalMobilityAnchor} on a raw Mobility Header socket. Its
    actions are carried out by L{ActionPerformer.perform}: an asynchronous
    tunnel addition holds back what follows it (the tunnel is up before the
    PBA leaves); when a tunnel cannot be added, what follows it is dropped
    (it was the answer to a registration that did not happen) and the
    anchor's answer to the failure (L{LocalMobilityAnchor.tunnelFailed}) is
    carried out instead.

    @param controlSocket: the path of the control channel's UNIX socket, or
        None for none (L{lmm.lmap.control}).
    @param tunnelConfig: what the configuration file says of the tunnel
        (for the control channel's C{tunnel} command), or None.
    """

    name = "lmap"
    log = log

    def __init__(
        self,
        anchor: LocalMobilityAnchor,
        dataPlane: Any,
        address: str,
        profile: mh.WireProfile,
        reactor: Any = None,
        socket: Any = None,
        logLevel: str = "info",
        summaryInterval: float = 60.0,
        controlSocket: str | None = None,
        tunnelConfig: TunnelConfig | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.anchor = anchor
        self.dataPlane = dataPlane
        self.address = address
        self.profile = profile
        self.reactor = reactor
        self._socket = socket
        self.port: MobilityHeaderPort | None = None
        self.controlSocket = controlSocket
        self.control: Any = None
        self.tunnelConfig = tunnelConfig
        self._timer = DeadlineTimer(reactor, self._tick)
        self._limiter = LogLimiter(reactor.seconds)
        self.journal = Journal("lmm.lmap", logLevel, reactor.seconds,
                               LMAP_PER_BINDING, LMAP_LIMITED)
        self.summaryInterval = summaryInterval
        self._summary: Any = None

    # --- life cycle ---------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self.dataPlane.prepare(self.address)
        self.port = MobilityHeaderPort(Signaling(self), self.address, self.reactor, self._socket)
        self.port.startListening()
        if self.controlSocket is not None:
            from lmm.lmap.control import listenControl

            self.control = listenControl(self, self.controlSocket, self.reactor)
        log.info("LMAP listening for Proxy Binding Updates on {address} ({profile} profile, "
                 "{backend} tunnels)", address=self.address, profile=self.profile.name,
                 backend=getattr(self.dataPlane, "name", type(self.dataPlane).__name__))
        if self.summaryInterval:
            self._summary = LoopingCall(self.logSummary)
            self._summary.clock = self.reactor
            self._summary.start(self.summaryInterval, now=False)

    def logSummary(self) -> None:
        self.journal.summary(self.anchor.counters, bindings=len(self.anchor.store))

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        if self._summary is not None and self._summary.running:
            self._summary.stop()
        self._timer.cancel()
        self.perform(self.anchor.stop(self.reactor.seconds()))
        if self.port is not None:
            self.port.stopListening()
            self.port = None
        waits = [self.stopRetired(), maybeDeferred(self.dataPlane.stop)]
        if self.control is not None:
            waits.append(maybeDeferred(self.control.stopListening))
            self.control = None
        return DeferredList(waits).addCallback(lambda _: None)

    # --- input --------------------------------------------------------------

    def datagramReceived(self, data: bytes, source: str) -> None:
        now = self.reactor.seconds()
        try:
            message = mh.decode(data, self.profile)
        except mh.MobilityHeaderError as e:
            if self._limiter.allow(e.reason):
                log.warn("dropped a malformed Mobility Header from {source}: {error} "
                         "({reason}, {count} so far)", source=source, error=str(e),
                         reason=e.reason, count=self.anchor.counters["malformed." + e.reason] + 1)
            actions = self.anchor.malformed(e, source, now)
        else:
            actions = self.anchor.receive(message, source, now)
        if actions:
            self.perform(actions)
        self._schedule()

    def _tick(self) -> None:
        self.perform(self.anchor.tick(self.reactor.seconds()))
        self._schedule()

    def _schedule(self) -> None:
        self._timer.schedule(self.anchor.nextDeadline())

    # --- output (ActionPerformer.perform carries the actions out) ---------------

    def _tunnelFailed(self, failure: Failure, binding: Any) -> None:
        # The anchor's Note logs it, the error's text included: no traceback
        # per refused binding.
        error = failure.value
        assert error is not None
        self.perform(self.anchor.tunnelFailed(binding, error, self.reactor.seconds()))
        self._schedule()

    # --- for the control channel ---------------------------------------------

    def describeBindings(self) -> list[dict[str, Any]]:
        """The Binding Cache, one dict per entry."""
        return [{"nai": entry.nai.decode("utf-8", "replace"),
                 "localAddress": f"{entry.localAddress}/{entry.prefixLength}",
                 "careOfAddress": entry.careOfAddress, "lifetime": entry.lifetime,
                 "expires": entry.expires}
                for entry in sorted(self.anchor.store, key=lambda e: e.nai)]

    def send(self, message: mh.MobilityMessage, destination: str) -> None:
        if self.port is None:
            return
        self.port.send(mh.encode(message, self.profile), destination)


def makeLMAPService(values: dict[str, Any], profile: mh.WireProfile,
                    path: str | None = None) -> LMAPService:
    """The LMAP service as configured (values from L{lmm.lmap.tap.SETTINGS}
    read from the file C{path}, named in the tunnel command's answers)."""
    from twisted.internet import reactor

    dataPlane = buildBackend(ITunnelDataPlane, values["tunnel.backend"], values["tunnel.options"],
                             reactor, path or "the configuration", "tunnel.options")
    anchor = LocalMobilityAnchor(
        address=values["lmap.address"],
        prefixes=list(values["lmap.local_network_prefixes"]),
        mpas=[ipaddress.IPv6Network(n) for n in values["lmap.mpas"]],
        maxLifetime=values["lmap.max_lifetime"],
        profile=profile,
        revocationTimeout=values["revocation.timeout"],
        revocationRetries=values["revocation.max_retries"],
        revocationMaxInterval=values["revocation.max_interval"],
    )
    return LMAPService(anchor, dataPlane, values["lmap.address"], profile, reactor,
                       logLevel=values["log.level"],
                       summaryInterval=values["log.summary_interval"],
                       controlSocket=values["control.socket"],
                       tunnelConfig=tunnelConfig(values, dataPlane, path))
