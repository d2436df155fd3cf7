"""
The LMAP's imperative shell. L{makeLMAPService} composes the daemon's
services (L{lmm.service.InOrder}): the Mobility Header socket, the control
channel, the core L{LMAPService} and the periodic summary, started in that
order and stopped in reverse. Everything the LMAP decides comes from
L{LocalMobilityAnchor}; L{LMAPService} feeds it and carries its actions out,
in order.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Any, Mapping

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from lmm import heartbeat, mh
from lmm.actions import SendMessage
from lmm.config import ConfigError, besideConfig
from lmm.control import ControlService
from lmm.daemon import (
    buildBackend,
    commonLiveKeys,
    controlSocket,
    heartbeatPolicy,
    signalingConfig,
)
from lmm.dataplane.swapping import SwappableTunnel, tunnelConfig
from lmm.garbage import GarbageCollection
from lmm.interfaces import IReactor, ITunnelDataPlane, globalReactor
from lmm.journal import LMAP_LIMITED, LMAP_PER_BINDING, Journal
from lmm.live import BackendConfig, Reloader, ReloadOnHangup
from lmm.lmap.anchor import LocalMobilityAnchor
from lmm.lmap.cache import BindingCache, BindingStore
from lmm.lmap.store import SQLiteBindingCache, StoreError
from lmm.logs import Logger
from lmm.ratelimit import LogLimiter
from lmm.security import SignalingCodec
from lmm.service import (
    ActionPerformer,
    InOrder,
    MobilityHeaderService,
    SignalingConfig,
    SignalingShell,
    summaryService,
    tunnelCounters,
)
from lmm.timers import DeadlineTimer
from lmm.tunnel import TunnelBinding

log = Logger(namespace="lmm.lmap")

#: The anchor's clock for the messages it receives, in steps of this many
#: seconds: the bindings made or refreshed within one step share their time
#: (one float, 24 bytes) where each had its own: 48 bytes a binding once it was
#: refreshed (issue 15's 512). Lifetimes are granted in 4-second units (RFC
#: 6275 6.1.7), timestamps checked against windows of hundreds of
#: milliseconds or more (RFC 5213 5.5, security.replay_window).
CLOCK_STEP = 0.001

#: What the service counts beside the anchor (a persistent Binding Cache's commits).
COUNTERS = {
    "store.commits": "transactions written to the persistent Binding Cache",
    "store.commit-failed": "commits that failed (the changes are kept for the next one)",
    "store.checkpoint-failed": "checkpoints of the write-ahead log that failed",
}


class LMAPService(Service):
    """
    The LMAP's core service: runs a L{LocalMobilityAnchor}, fed the Mobility
    Header datagrams its C{port} delivers (L{datagramReceived}) and its one
    timer. Its actions are carried out by an L{ActionPerformer}: an
    asynchronous tunnel addition holds back what follows it (the tunnel is up
    before the PBA leaves); when a tunnel cannot be added, what follows it is
    dropped (it was the answer to a registration that did not happen) and
    the anchor's answer to the failure (L{LocalMobilityAnchor.tunnelFailed})
    is carried out instead.

    @param dataPlane: the tunnel backend; it is wrapped in a
        L{SwappableTunnel} (the C{tunnel} command swaps it), unless it is one.
    @param tunnelConfig: what the configuration file says of the tunnel
        (for the control channel's C{tunnel} command), or None.
    @param signaling: how the signaling is protected (L{SignalingConfig});
        default: no protection, no per-source limit.
    @ivar signaling: the L{SignalingShell}: the codec, the per-source limit, and
        (its C{port}) what sends the encoded messages, the daemon's
        L{MobilityHeaderService}; None: nothing is sent.
    """

    name = "lmap"

    def __init__(
        self,
        anchor: LocalMobilityAnchor,
        dataPlane: ITunnelDataPlane,
        address: str,
        profile: mh.WireProfile,
        reactor: IReactorTime | None = None,
        logLevel: str = "info",
        tunnelConfig: BackendConfig | None = None,
        signaling: SignalingConfig | None = None,
        checkpointInterval: float = 1.0,
    ) -> None:
        if reactor is None:
            reactor = globalReactor()
        if signaling is None:
            signaling = SignalingConfig(SignalingCodec(profile, address, "lmap"))
        self.anchor = anchor
        self.signaling = SignalingShell(signaling, reactor.seconds, log, anchor.counters)
        if not isinstance(dataPlane, SwappableTunnel):
            dataPlane = SwappableTunnel(dataPlane, reactor, tunnelConfig)
        self.dataPlane = dataPlane
        self.address = address
        self.profile = profile
        self.reactor = reactor
        self._timer = DeadlineTimer(reactor, self._tick)
        self._lastMessageTime = float("-inf")
        # Reads the configuration file again (reload, SIGHUP); None: built without one.
        self.reloader: Reloader | None = None
        self.journal = Journal("lmm.lmap", logLevel, reactor.seconds,
                               LMAP_PER_BINDING, LMAP_LIMITED)
        # send looked up at each call: a test (or a subclass) may replace it.
        self.counters: Counter[str] = Counter()
        self.performer = ActionPerformer(self.dataPlane, lambda m, d: self.send(m, d),
                                         self.journal, log, self._tunnelFailed,
                                         counters=self.counters, clock=reactor.seconds)
        # A persistent store: the messages of a turn wait here for its commit.
        self._held: list[tuple[mh.MobilityMessage, str]] | None = None
        self._savedRevocations = anchor.revocations.version
        self._commitLimiter = LogLimiter(reactor.seconds)
        self.checkpointInterval = checkpointInterval
        self._checkpoints: LoopingCall | None = None
        self._checkpointing: Deferred[Any] | None = None

    # --- life cycle ---------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self.dataPlane.prepare(self.address)
        self.signaling.announce()
        store = self.anchor.store
        if store.persistent:
            # A previous run's bindings: their tunnels again, its revocations resumed.
            self.perform(self.anchor.resume(self.reactor.seconds()))
            self._schedule()
            self._checkpoints = LoopingCall(self._checkpoint)
            self._checkpoints.clock = self.reactor
            self._checkpoints.start(self.checkpointInterval, now=False)
            log.info("Binding Cache kept in {path}: {count} binding(s) taken up",
                     path=getattr(store, "path", "?"), count=len(store))
        else:
            log.warn("Binding Cache in memory only (store.backend = \"memory\"): every "
                     "binding is lost when the LMAP restarts")
        log.info("LMAP listening for Proxy Binding Updates on {address} ({profile} profile, "
                 "{backend} tunnels)", address=self.address, profile=self.profile.name,
                 backend=self.dataPlane.name)

    def logSummary(self) -> None:
        self.journal.summary(self.allCounters(), bindings=len(self.anchor.store))

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        self._timer.cancel()
        self.perform(self.anchor.stop(self.reactor.seconds()))
        self._commit()
        if self._checkpoints is not None:
            self._checkpoints.stop()
            self._checkpoints = None
        # Closed once a checkpoint in its thread is done with it.
        running = self._checkpointing or succeed(None)
        running.addBoth(lambda _: self._closeStore())
        running.addCallback(lambda _: self.dataPlane.stop())
        return running

    def _closeStore(self) -> None:
        try:
            self.anchor.store.close()
        except Exception as e:
            log.critical("could not close the Binding Cache: {error}", error=e)

    def _checkpoint(self) -> None:
        """The store's checkpoint, in the reactor's thread pool (inline on a
        reactor without threads, a test's clock), one at a time."""
        if self._checkpointing is not None:
            return
        store = self.anchor.store
        if IReactorThreads.providedBy(self.reactor):
            running = deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                        store.checkpoint)
        else:
            running = maybeDeferred(store.checkpoint)
        self._checkpointing = running

        def done(result: Any) -> None:
            self._checkpointing = None
            if isinstance(result, Failure):
                self.counters["store.checkpoint-failed"] += 1
                if self._commitLimiter.allow("store.checkpoint-failed"):
                    log.critical("could not checkpoint the Binding Cache: {error}",
                                 error=result.value)

        running.addBoth(done)

    # --- input --------------------------------------------------------------

    def _messageTime(self) -> float:
        """The reactor's time, or the same float as the last message's when
        within L{CLOCK_STEP} after it."""
        now = self.reactor.seconds()
        last = self._lastMessageTime
        if 0.0 <= now - last < CLOCK_STEP:
            return last
        self._lastMessageTime = now
        return now

    def datagramReceived(self, data: bytes, source: str) -> None:
        now = self._messageTime()
        message = self.signaling.decode(data, source, now)
        if message is None:
            return
        if isinstance(message, mh.MobilityHeaderError):
            actions = self.anchor.malformed(message, source, now)
        else:
            actions = self.anchor.receive(message, source, now)
        try:
            if actions:
                self.perform(actions)
        finally:
            # Per PBU, only what came earlier than the armed timer (the tick
            # that follows a timer fired early sets the true next deadline).
            self._timer.schedule(self.anchor.earliestFiled())

    def _tick(self) -> None:
        try:
            self.perform(self.anchor.tick(self.reactor.seconds()))
        finally:
            # Whatever went wrong, the next deadline stays armed: an exception
            # here once left a revocation unsent until unrelated input came.
            self._schedule()

    def _schedule(self) -> None:
        self._timer.schedule(self.anchor.nextDeadline())

    # --- output -------------------------------------------------------------

    def perform(self, actions: list[Any]) -> None:
        if self._held is None and self.anchor.store.persistent and (
                self.anchor.store.pending
                or self.anchor.revocations.version != self._savedRevocations):
            # What this event changed is written before its answers leave, in
            # one transaction with the rest of the reactor turn's.
            self._held = []
            self.reactor.callLater(0, self._commit)
        self.performer.perform(actions)

    def _commit(self) -> None:
        """Write the turn's changes, then send what waited for them. A failed
        commit is logged and counted; the answers go all the same (the MPAs
        are served; the changes stay for the next commit)."""
        held, self._held = self._held, None
        store = self.anchor.store
        revocations = self.anchor.revocations
        try:
            if revocations.version != self._savedRevocations:
                store.saveRevocations(revocations.snapshot(), revocations.sequence.last)
                self._savedRevocations = revocations.version
            if store.commit():
                self.counters["store.commits"] += 1
        except Exception as e:
            self.counters["store.commit-failed"] += 1
            if self._commitLimiter.allow("store.commit-failed"):
                log.critical("could not write the Binding Cache: {error} ({count} failed "
                             "commits so far)", error=e,
                             count=self.counters["store.commit-failed"])
        finally:
            performer = self.performer
            for message, destination in held or ():
                try:
                    self.signaling.send(message, destination)
                except Exception:
                    performer.failed(SendMessage(message, destination), Failure())

    def _tunnelFailed(self, failure: Failure, binding: TunnelBinding) -> None:
        # The anchor's Note logs it, the error's text included: no traceback
        # per refused binding.
        error = failure.value
        assert error is not None
        self.perform(self.anchor.tunnelFailed(binding, error, self.reactor.seconds()))
        self._schedule()

    @property
    def revocationless(self) -> dict[str, str]:
        """The MPAs sent no revocations, and why (the anchor's rule 14)."""
        return self.anchor.revocationless

    @property
    def profileMismatches(self) -> dict[str, str]:
        """The peers seen with another wire profile's signs (the control
        channel's C{peers})."""
        return self.anchor.profileMismatches.peers

    @property
    def heartbeats(self) -> heartbeat.Heartbeats:
        """The anchor's heartbeats (the control channel's C{peers})."""
        return self.anchor.heartbeats

    def send(self, message: mh.MobilityMessage, destination: str) -> None:
        held = self._held
        if held is not None:
            held.append((message, destination))
            return
        self.signaling.send(message, destination)

    def allCounters(self) -> dict[str, int]:
        """The anchor's counters, the signaling shell's, the store's and the
        tunnel backend's."""
        merged = Counter(self.anchor.counters)
        merged.update(self.signaling.counters)
        merged.update(self.counters)
        merged.update(tunnelCounters(self.dataPlane))
        return dict(merged)

    # --- for the control channel ---------------------------------------------

    def describeBindings(self) -> list[dict[str, Any]]:
        """The Binding Cache, one dict per entry, by NAI."""
        return [entry.describe() for entry in sorted(self.anchor.store, key=lambda e: e.nai)]

    def activeBackends(self) -> dict[str, str | None]:
        """Each kind's backend in use, by name: the LMAP has a tunnel only."""
        return {"tunnel": self.dataPlane.name}

    def swapBackend(self, kind: str, name: str, given: Mapping[str, Any]
                    ) -> Deferred[dict[str, Any]]:
        """The C{swap tunnel BACKEND [KEY=VALUE ...]} command; a reload then
        compares the file with what runs (L{lmm.live.Reloader.swapped})."""

        def swapped(answer: dict[str, Any]) -> dict[str, Any]:
            if self.reloader is not None:
                self.reloader.swapped("tunnel", answer["backend"], answer["options"])
            return answer

        return self.dataPlane.swapTunnel(name, given).addCallback(swapped)

    def revoke(self, nai: bytes) -> list[Any]:
        """The operator's revocation of C{nai}'s binding: the anchor decides
        (L{LocalMobilityAnchor.revoke}), this carries it out; the actions."""
        actions = self.anchor.revoke(nai, self.reactor.seconds())
        try:
            self.perform(actions)
        finally:
            self._schedule()
        return actions


def composeLMAP(core: LMAPService, controlSocket: str | None = None,
                summaryInterval: float = 60.0, socket: Any = None,
                reactor: IReactor | None = None, metrics: str | None = None,
                path: str | None = None) -> InOrder:
    """
    The LMAP daemon's services around C{core}, in their start order: the
    metrics server on C{metrics} (a server endpoint, L{lmm.metrics}; none:
    no metrics, nothing of them imported; C{path}: the configuration file
    its errors name), the Mobility Header socket on the core's address (C{socket}: makes the raw
    socket to use), the control channel on C{controlSocket} (none: no
    channel), the core, the summary every C{summaryInterval} seconds (0:
    none), on C{reactor} (default: the global one). The core is named
    C{"lmap"} in it.
    """
    from lmm.lmap.control import execute

    if reactor is None:
        reactor = globalReactor()
    top = InOrder()
    if metrics is not None:
        # First: a port it cannot listen on stops the start before anything else.
        from lmm.metrics import metricsService

        metricsService("lmap", core, metrics, reactor, path).setServiceParent(top)
    port = MobilityHeaderService(core.address, reactor, core.datagramReceived, socket)
    port.setServiceParent(top)
    core.signaling.port = port
    if controlSocket is not None:
        ControlService(lambda words: execute(core, words), controlSocket,
                       reactor).setServiceParent(top)
    core.setServiceParent(top)
    summary = summaryService(summaryInterval, core.logSummary, reactor)
    if summary is not None:
        summary.setServiceParent(top)
    GarbageCollection(reactor).setServiceParent(top)
    return top


def bindingStore(values: dict[str, Any], path: str | None) -> BindingStore:
    """The Binding Cache the [store] table asks for; a L{ConfigError} naming
    C{store.path} when its database cannot be used."""
    if values["store.backend"] == "memory":
        return BindingCache()
    database = besideConfig(path, values["store.path"])
    try:
        return SQLiteBindingCache(database, values["store.synchronous"])
    except (StoreError, OSError) as e:
        raise ConfigError(path or "the configuration", "store.path", str(e)) from None


def makeLMAPService(values: dict[str, Any], profile: mh.WireProfile,
                    path: str | None = None, reactor: IReactor | None = None) -> InOrder:
    """The LMAP daemon as configured (values from L{lmm.lmap.tap.SETTINGS}
    read from the file C{path}, named in the tunnel command's answers)."""
    if reactor is None:
        reactor = globalReactor()
    backend = buildBackend(ITunnelDataPlane, values["tunnel.backend"], values["tunnel.options"],
                           reactor, path or "the configuration", "tunnel.options")
    store = bindingStore(values, path)
    anchor = LocalMobilityAnchor(
        store=store,
        heartbeat=heartbeatPolicy(path, values),
        restartCounter=store.restartCounter if isinstance(store, SQLiteBindingCache)
        else heartbeat.unkeptRestartCounter(),
        address=values["lmap.address"],
        prefixes=list(values["lmap.local_network_prefixes"]),
        mpas=[ipaddress.IPv6Network(n) for n in values["lmap.mpas"]],
        maxLifetime=values["lmap.max_lifetime"],
        maxBindings=values["lmap.max_bindings"],
        homeNetworkPrefixLength=values["lmap.home_network_prefix_length"],
        withoutRevocation=[ipaddress.IPv6Network(n) for n in values["revocation.disabled_for"]],
        profile=profile,
        revocationTimeout=values["revocation.timeout"],
        revocationRetries=values["revocation.max_retries"],
        revocationMaxInterval=values["revocation.max_interval"],
    )
    core = LMAPService(anchor, backend, values["lmap.address"], profile, reactor,
                       logLevel=values["log.level"],
                       tunnelConfig=tunnelConfig(values, backend, path),
                       signaling=signalingConfig(path, values, profile, values["lmap.address"],
                                                 "lmap"),
                       checkpointInterval=values["store.checkpoint_interval"])
    top = composeLMAP(core, controlSocket(path, values), values["log.summary_interval"],
                      reactor=reactor, metrics=values.get("metrics.listen"), path=path)
    if path is not None:
        from lmm.lmap.tap import Options

        core.reloader = Reloader(path, values, Options.read, commonLiveKeys(core, path))
        ReloadOnHangup(core.reloader, reactor).setServiceParent(top)
    return top
