"""
The MPA's imperative shell. L{composeMPA} composes the daemon's services
(L{lmm.service.InOrder}): the access links (the attach detector), the
Mobility Header socket, the DHCPv6 relay's port, the control channel, the
core L{MPAService} and the periodic summary, started in that order and
stopped in reverse, so that the deregistrations of L{MobilityProxyAgent.stop}
leave before the sockets close. Everything the MPA decides comes from
L{MobilityProxyAgent} (which holds the DHCPv6 relay's core); L{MPAService}
feeds it and carries its actions out, in order (docs/mpa.md, docs/dhcpv6.md).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from lmm import heartbeat, mh, nd
from lmm.aaa import AAAUnavailable, AccessRejected, AccessRequest, Profile
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
from lmm.interfaces import (
    IAccessLinks,
    IAttachDetector,
    IAuthenticator,
    IDHCPv6Relay,
    IReactor,
    ITunnelDataPlane,
    globalReactor,
)
from lmm.journal import MPA_LIMITED, MPA_PER_VISITOR, Journal
from lmm.live import (
    BackendConfig,
    LiveKeys,
    Reloader,
    ReloadOnHangup,
    SwapError,
    SwappableAuthenticator,
    buildSwapped,
)
from lmm.logs import Logger
from lmm.mpa.agent import Authenticate, MobilityProxyAgent, SendFrame
from lmm.mpa.attach import Within, readLinks
from lmm.mpa.relay import RelayAgent, SendToServer
from lmm.mpa.visitor import AttachEvent, DetachEvent
from lmm.ratelimit import LogLimiter
from lmm.rawsock import IPPROTO_MH
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

log = Logger(namespace="lmm.mpa")


def _direct(f: Callable[[], Any]) -> Any:
    return f()


class MPAService(Service):
    """
    The MPA's core service: runs a L{MobilityProxyAgent}, fed the frames and
    link state of C{detector} (an L{IAccessLinks} provider), the Mobility
    Header datagrams of its C{port}, the DHCPv6 server's datagrams of its
    C{relayPort}, AAA answers from C{authenticator}, and its one timer; it
    carries the agent's actions out (tunnels through C{dataPlane}).

    @param within: calls a function of no arguments in the network namespace
        the MPA works in (its sockets and C{/proc/sys/net} files are made
        there); None: this thread's. For tests that run the MPA in the test
        process with its links in a namespace.
    @param relayPort: the DHCPv6 relay's server side (an
        L{lmm.interfaces.IDHCPv6Relay}, such as L{DHCPv6RelayPort}), or None:
        the agent's Relay-Forwards go nowhere (its relay is off too, then).
    @param dataPlane: the tunnel backend; it is wrapped in a
        L{SwappableTunnel} (the C{tunnel} command swaps it), unless it is one.
    @param tunnelConfig: what the configuration file says of the tunnel
        (for the control channel's C{tunnel} command), or None.
    @param backendConfigs: what the file says of the other backends, by
        kind (C{aaa}, C{attach}, C{dhcp}: L{lmm.live.BackendConfig}), for
        the C{swap} and C{backends} commands.
    @param latencies: the latency histograms to observe (an
        L{lmm.metrics.MPALatencies}, when metrics are on), or None: nothing
        measured.
    @ivar reloader: reads the configuration file again (the C{reload}
        command, SIGHUP), or None: a service built without a file.
    @param signaling: how the signaling is protected (L{SignalingConfig});
        default: no protection, no per-source limit.
    @ivar signaling: the L{SignalingShell}: the codec, the per-source limit, and
        (its C{port}) what sends the encoded messages, the daemon's
        L{MobilityHeaderService}; None: nothing is sent.
    @ivar controlSocket: the control channel's path, for the start's log line.
    """

    name = "mpa"

    def __init__(
        self,
        agent: MobilityProxyAgent,
        detector: IAccessLinks,
        authenticator: IAuthenticator,
        dataPlane: ITunnelDataPlane,
        profile: mh.WireProfile,
        reactor: IReactorTime | None = None,
        *,
        within: Within | None = None,
        logLevel: str = "info",
        describeBackends: str = "",
        relayPort: IDHCPv6Relay | None = None,
        tunnelConfig: BackendConfig | None = None,
        signaling: SignalingConfig | None = None,
        backendConfigs: Mapping[str, BackendConfig] | None = None,
        latencies: Any = None,
    ) -> None:
        if reactor is None:
            reactor = globalReactor()
        if signaling is None:
            signaling = SignalingConfig(SignalingCodec(profile, agent.address, "mpa"))
        if not IAccessLinks.providedBy(detector):
            raise TypeError(f"{detector!r} does not own the access links (IAccessLinks): the "
                            "MPA needs their frames for home-link emulation")
        self.agent = agent
        self.detector = detector
        self.address = agent.address
        self.profile = profile
        self.reactor = reactor
        self.within: Within = within or _direct
        self.backendConfigs = dict(backendConfigs or {})
        if not isinstance(authenticator, SwappableAuthenticator):
            # The swap command and a reload replace what is inside.
            authenticator = SwappableAuthenticator(
                authenticator, getattr(authenticator, "name", type(authenticator).__name__),
                cast(IReactor, reactor), self.within)
        self.authenticator = authenticator
        self.reloader: Reloader | None = None
        # Counts of the detectors swapped out (counters never go back), and the
        # relay ports swapped out still taking answers, with their closing calls.
        self._retiredCounters: Counter[str] = Counter()
        self._retiredPorts: list[tuple[IDHCPv6Relay, Any]] = []
        if not isinstance(dataPlane, SwappableTunnel):
            # A swapped-in backend makes its sockets and routes where the MPA works.
            dataPlane = SwappableTunnel(dataPlane, reactor, tunnelConfig, self.within)
        self.dataPlane = dataPlane
        self.describeBackends = describeBackends
        self.signaling = SignalingShell(signaling, reactor.seconds, log, agent.counters)
        self.relayPort = relayPort
        self.controlSocket: str | None = None
        self.counters: Counter[str] = Counter()
        self._timer = DeadlineTimer(reactor, self._tick)
        self._limiter = LogLimiter(reactor.seconds)
        self.journal = Journal("lmm.mpa", logLevel, reactor.seconds, MPA_PER_VISITOR,
                               MPA_LIMITED)
        # send looked up at each call: a test (or a subclass) may replace it.
        self.latencies = latencies
        self.performer = ActionPerformer(self.dataPlane, lambda m, d: self.send(m, d),
                                         self.journal if latencies is None
                                         else latencies.watching(self.journal), log,
                                         self._tunnelFailed, self.perform,
                                         counters=self.counters, clock=reactor.seconds)

    # --- life cycle ---------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self.dataPlane.prepare(self.address, [self.agent.defaultLmap],
                               self.agent.accessInterfaces)
        self.signaling.announce()
        # Only the access point says who attaches, with the explicit detector.
        self.agent.attachOnFrames = self.detector.attachOnFrames
        if self.agent.relay is None:
            dhcp = "off"
        else:
            dhcp = f"default server {self.agent.defaultDhcpServer or 'none (profiles only)'}"
        # Heartbeats with the LMAP from now: the first tells it of this start.
        self.perform(self.agent.start(self.reactor.seconds()))
        self._schedule()
        log.info("MPA ready on {address}: access interfaces {interfaces}, default LMAP {lmap}, "
                 "{profile} profile{backends}, DHCPv6 relay {dhcp}, control channel {control}",
                 address=self.address, interfaces=", ".join(self.agent.accessInterfaces),
                 lmap=self.agent.defaultLmap, profile=self.profile.name,
                 backends=self.describeBackends, dhcp=dhcp, control=self.controlSocket or "off")

    @property
    def profileMismatches(self) -> dict[str, str]:
        """The peers seen with another wire profile's signs (the control
        channel's C{peers})."""
        return self.agent.profileMismatches.peers

    @property
    def heartbeats(self) -> heartbeat.Heartbeats:
        """The agent's heartbeats (the control channel's C{peers})."""
        return self.agent.heartbeats

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        self._timer.cancel()
        # Deregistrations go out now: the sockets' services stop after this one.
        self.perform(self.agent.stop(self.reactor.seconds()))
        waits = []
        for port, call in self._retiredPorts:
            if call.active():
                call.cancel()
                port.stop()
        self._retiredPorts = []
        for what in (self.authenticator, self.dataPlane):
            d = maybeDeferred(what.stop)
            d.addErrback(self._logFailure, f"stopping {what!r}")
            waits.append(d)
        return DeferredList(waits)

    def _logFailure(self, failure: Failure, what: str) -> None:
        log.failure("{what} failed", failure, what=what)

    def logSummary(self) -> None:
        self.journal.summary(self.allCounters(), visitors=len(self.agent.visitors))

    # --- input --------------------------------------------------------------

    def attach(self, event: AttachEvent) -> None:
        """An attach detector (or the control channel) reports an attach."""
        self._run(self.agent.attach(event, self.reactor.seconds()))

    def detach(self, event: DetachEvent) -> None:
        """An attach detector (or the control channel) reports a detach."""
        self._run(self.agent.detach(event, self.reactor.seconds()))

    def linkDown(self, interface: str) -> None:
        self._run(self.agent.linkDown(interface, self.reactor.seconds()))

    def frameReceived(self, interface: str, data: bytes) -> None:
        now = self.reactor.seconds()
        agent = self.agent
        try:
            frame = nd.decodeFrame(data)
        except nd.NDError as e:
            if self._limiter.allow("nd." + e.reason):
                log.warn("dropped a malformed frame on {interface}: {error} ({reason}, {count} "
                         "so far)", interface=interface, error=str(e), reason=e.reason,
                         count=agent.counters["frame-error." + e.reason] + 1)
            self._run(agent.frameError(interface, e, now))
            return
        self._run(agent.frameReceived(interface, frame, now))

    def datagramReceived(self, data: bytes, source: str) -> None:
        now = self.reactor.seconds()
        message = self.signaling.decode(data, source, now)
        if message is None:
            return
        if isinstance(message, mh.MobilityHeaderError):
            self._run(self.agent.malformed(message, source, now))
        else:
            self._run(self.agent.messageReceived(message, source, now))

    def _run(self, actions: list[Any]) -> None:
        try:
            if actions:
                self.perform(actions)
        finally:
            self._schedule()

    def _tick(self) -> None:
        try:
            self.perform(self.agent.tick(self.reactor.seconds()))
        finally:
            # Whatever went wrong, the next deadline stays armed: an exception
            # here once left a revocation unsent until unrelated input came.
            self._schedule()

    def _schedule(self) -> None:
        if not self.running:
            return
        self._timer.schedule(self.agent.nextDeadline())

    # --- AAA ----------------------------------------------------------------

    def _authenticate(self, request: AccessRequest) -> None:
        self.counters["aaa.requested"] += 1
        d = maybeDeferred(self.authenticator.authenticate, request)
        if self.latencies is not None:
            d.addBoth(self.latencies.answered, self.reactor.seconds(), self.reactor.seconds)
        d.addCallbacks(self._accepted, self._refused, callbackArgs=(request,),
                       errbackArgs=(request,))
        d.addErrback(self._logFailure, f"handling the AAA answer for {request.mac}")

    def _accepted(self, profile: Profile, request: AccessRequest) -> None:
        if not self.running:
            return
        self._run(self.agent.authenticated(request.mac, profile, self.reactor.seconds()))

    def _refused(self, failure: Failure, request: AccessRequest) -> None:
        if not self.running:
            return
        error = failure.value
        assert error is not None
        if not isinstance(error, (AccessRejected, AAAUnavailable)):
            # A broken backend: the agent treats it as "no AAA answered".
            log.failure("the authenticator failed on {mac}", failure, mac=request.mac)
        self._run(self.agent.authenticationFailed(request.mac, error, self.reactor.seconds()))

    # --- output -------------------------------------------------------------

    def perform(self, actions: Iterable[object]) -> None:
        """
        Carry out actions in order (L{ActionPerformer.perform}: an
        asynchronous tunnel change holds back what follows it), the MPA's own
        kinds here. Authentications start after the list is done: a backend
        that answers at once (the file) then feeds the agent after this
        event's actions, not in the middle of them.
        """
        requests: list[AccessRequest] = []
        self.performer.perform(actions, lambda action: self._performOwn(action, requests))
        for request in requests:
            self._authenticate(request)

    def _performOwn(self, action: object, requests: list[AccessRequest]) -> None:
        if isinstance(action, SendFrame):
            if not self.detector.sendFrame(action.interface, action.frame):
                self.counters["frame.not-sent"] += 1
        elif isinstance(action, SendToServer):
            port = self.relayPort
            if port is None:
                self.counters["relay.send-no-port"] += 1
            else:
                port.sendToServer(action.server, action.payload)
        elif isinstance(action, Authenticate):
            requests.append(action.request)

    # --- DHCPv6 ---------------------------------------------------------------

    def _relayed(self, payload: bytes, source: str) -> None:
        """A datagram from a DHCPv6 server, to the agent."""
        if not self.running:
            return
        self._run(self.agent.dhcpDatagramReceived(payload, source, self.reactor.seconds()))

    def _tunnelFailed(self, failure: Failure, binding: TunnelBinding) -> None:
        # The agent's Note says it, with the error: no traceback per refusal.
        self.counters["tunnel.add-failed"] += 1
        error = failure.value
        assert error is not None
        self._run(self.agent.tunnelFailed(binding, error, self.reactor.seconds()))

    def send(self, message: mh.MobilityMessage, destination: str) -> None:
        self.signaling.send(message, destination)

    # --- for the control channel ---------------------------------------------

    def allCounters(self) -> dict[str, int]:
        """The agent's, the relay core's (as C{relay.<name>}), the access
        links', the relay port's, the service's and the tunnel backend's
        counters."""
        merged: Counter[str] = Counter(self.agent.counters)
        relay = self.agent.relay
        if relay is not None:
            merged.update({"relay." + key: value for key, value in relay.counters.items()})
        merged.update(self.detector.counters)
        merged.update(self._retiredCounters)
        for port, _ in self._retiredPorts:
            merged.update(port.counters)
        merged.update(self.signaling.counters)
        if self.relayPort is not None:
            merged.update(self.relayPort.counters)
        merged.update(self.counters)
        merged.update(tunnelCounters(self.dataPlane))
        return dict(merged)

    def deregister(self, mac: str | None = None, nai: bytes | None = None) -> list[Any]:
        """The operator's deregistration of a visitor: the agent decides
        (L{MobilityProxyAgent.deregister}), this carries it out; the actions."""
        actions = self.agent.deregister(self.reactor.seconds(), mac, nai)
        self._run(actions)
        return actions

    def describeLinks(self) -> list[dict[str, str]]:
        return list(self.detector.describe())

    # --- backends swapped while the MPA runs (lmm.live) -------------------------

    def activeBackends(self) -> dict[str, str | None]:
        """Each kind's backend in use, by name (None: the relay is off)."""
        return {"aaa": self.authenticator.name, "attach": self.detector.name,
                "dhcp": None if self.relayPort is None else self.relayPort.name,
                "tunnel": self.dataPlane.name}

    def swapBackend(self, kind: str, name: str, given: Mapping[str, Any]
                    ) -> dict[str, Any] | Deferred[dict[str, Any]]:
        """The C{swap KIND BACKEND [KEY=VALUE ...]} command: the file's options
        when it names that backend, C{given} over them; a reload then compares
        the file with what runs (L{Reloader.swapped})."""
        if kind == "tunnel":
            return self.dataPlane.swapTunnel(name, given).addCallback(self._swapped)
        config = self.backendConfigs.get(kind) or BackendConfig(kind, "")
        options = config.optionsFor(name, given)
        done = self.swapTo(kind, name, options)
        return self._swapped({**done, **config.answer(name, options)})

    def swapTo(self, kind: str, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the C{aaa}, C{attach} or C{dhcp} backend by C{name} built
        with C{options} (the command's and a reload's way); what the swap says."""
        if kind == "aaa":
            return self.authenticator.swap(name, options)
        if kind == "attach":
            return self.swapDetector(name, options)
        if kind == "dhcp":
            return self.swapRelay(name, options)
        raise SwapError(f"no backend kind {kind!r}: aaa, attach, dhcp or tunnel")

    def _swapped(self, answer: dict[str, Any]) -> dict[str, Any]:
        if self.reloader is not None:
            self.reloader.swapped(answer["kind"], answer["backend"], answer["options"])
        return answer

    def swapDetector(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """
        Replace the attach detector (and the access links' sockets it owns),
        make before break: the new one is configured and started on the same
        links, then the old one stopped; visitors stay. A frame read by the
        old socket and not yet delivered is lost with it (the MS sends again).
        """
        old = self.detector
        new = buildSwapped(IAttachDetector, "attach", name, options,
                           cast(IReactor, self.reactor), self.within, old.name)
        if not IAccessLinks.providedBy(new):
            raise SwapError(f"the {name} attach detector does not own the access links "
                            f"(IAccessLinks), which the MPA needs; {old.name} stays")
        def start() -> None:
            new.configure(self.agent.accessInterfaces, self.frameReceived, self.linkDown,
                          self.within, virtualMac=self.agent.defaultVirtualLmapMac)
            new.start(self.attach, self.detach)

        self._startSwapped(new, f"{name} attach detector", start, old.name)
        self.detector = new
        self.agent.attachOnFrames = new.attachOnFrames
        self._retiredCounters.update(old.counters)
        maybeDeferred(old.stop).addErrback(self._logFailure, f"stopping {old!r}")
        log.info("attach detection swapped from {old} to {new}", old=old.name, new=name)
        return {"previous": old.name}

    def swapRelay(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """
        Replace the DHCPv6 relay's port, make before break: the new one binds
        beside the old (SO_REUSEPORT), which keeps delivering the answers to
        what it relayed for the relay's answer timeout, then closes.
        """
        old = self.relayPort
        if old is None or self.agent.relay is None:
            raise SwapError("the DHCPv6 relay is off (dhcp.enabled = false): turning it on "
                            "needs a restart")
        new = buildSwapped(IDHCPv6Relay, "dhcp", name, options, cast(IReactor, self.reactor),
                           self.within, old.name)
        new.address = self.address
        self._startSwapped(new, f"{name} DHCPv6 relay port", lambda: new.start(
            self._relayed, None if self.within is _direct else self.within), old.name)
        self.relayPort = new
        grace = self.agent.relay.answerTimeout
        call = self.reactor.callLater(grace, self._closeRetiredPort, old)
        self._retiredPorts.append((old, call))
        log.info("DHCPv6 relay port swapped from {old} to {new}; the old one takes answers "
                 "for {grace} s more", old=old.name, new=name, grace=grace)
        return {"previous": old.name, "grace": grace}

    def _startSwapped(self, new: Any, what: str, start: Callable[[], None], old: str) -> None:
        """Start a backend swapped in, if the MPA runs (else its services
        start it); one that cannot start is stopped again and L{SwapError}
        says that C{old} stays."""
        if not self.running:
            return
        try:
            start()
        except Exception as e:
            maybeDeferred(new.stop).addErrback(self._logFailure, f"stopping {new!r}")
            raise SwapError(f"the {what} cannot start: {e}; {old} stays") from None

    def _closeRetiredPort(self, port: IDHCPv6Relay) -> None:
        self._retiredPorts = [(p, c) for p, c in self._retiredPorts if p is not port]
        # What it received after the swap was counted by it: keep those too.
        self._retiredCounters.update(port.counters)
        maybeDeferred(port.stop).addErrback(self._logFailure, f"stopping {port!r}")


class AccessLinksService(Service):
    """The access links (the attach detector's sockets) while the daemon
    runs: their frames, link changes, attaches and detaches go to C{core}."""

    name = "access-links"

    def __init__(self, core: MPAService) -> None:
        self.core = core

    def startService(self) -> None:
        core = self.core
        detector = core.detector
        detector.configure(core.agent.accessInterfaces, core.frameReceived, core.linkDown,
                           core.within, virtualMac=core.agent.defaultVirtualLmapMac)
        detector.start(core.attach, core.detach)
        Service.startService(self)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        self.core.detector.stop()
        return succeed(None)


class RelayPortService(Service):
    """The DHCPv6 relay's server-side port (an L{lmm.interfaces.IDHCPv6Relay})
    while the daemon runs: what a server sends goes to C{core}."""

    name = "dhcpv6-relay"

    def __init__(self, core: MPAService) -> None:
        self.core = core

    def startService(self) -> None:
        core = self.core
        assert core.relayPort is not None
        core.relayPort.start(core._relayed, None if core.within is _direct else core.within)
        Service.startService(self)

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        # The one in use now: a swap may have replaced the one started.
        port = self.core.relayPort
        return succeed(None) if port is None else maybeDeferred(port.stop)


def _rawSocket() -> Any:
    import socket

    return socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)


def composeMPA(core: MPAService, controlSocket: str | None = None,
               summaryInterval: float = 60.0, socket: Any = None,
               reactor: IReactor | None = None, metrics: str | None = None,
               path: str | None = None) -> InOrder:
    """
    The MPA daemon's services around C{core}, in their start order: the
    metrics server on C{metrics} (a server endpoint, L{lmm.metrics}; none:
    no metrics, nothing of them imported; C{path}: the configuration file
    its errors name), the access links, the Mobility Header socket on the core's address (made
    where the core works; C{socket}: a raw socket to use instead), the
    DHCPv6 relay's port (if the core has one), the control channel on
    C{controlSocket} (none: no channel), the core, the summary every
    C{summaryInterval} seconds (0: none); on C{reactor} (default: the global
    one).
    """
    from lmm.mpa.control import execute

    if reactor is None:
        reactor = globalReactor()
    top = InOrder()
    if metrics is not None:
        # First: a port it cannot listen on stops the start before anything else.
        from lmm.metrics import metricsService

        metricsService("mpa", core, metrics, reactor, path).setServiceParent(top)
    AccessLinksService(core).setServiceParent(top)
    if socket is not None:
        makeSocket: Callable[[], Any] | None = lambda: socket  # noqa: E731
    elif core.within is not _direct:
        makeSocket = lambda: core.within(_rawSocket)  # noqa: E731
    else:
        makeSocket = None
    port = MobilityHeaderService(core.address, reactor, core.datagramReceived, makeSocket)
    port.setServiceParent(top)
    core.signaling.port = port
    if core.relayPort is not None:
        RelayPortService(core).setServiceParent(top)
    if controlSocket is not None:
        ControlService(lambda words: execute(core, words), controlSocket,
                       reactor).setServiceParent(top)
        core.controlSocket = controlSocket
    core.setServiceParent(top)
    summary = summaryService(summaryInterval, core.logSummary, reactor)
    if summary is not None:
        summary.setServiceParent(top)
    GarbageCollection(reactor).setServiceParent(top)
    return top


# --- building it from the configuration ----------------------------------------------


def restartCounter(path: str, values: dict[str, Any]) -> int:
    """This start's Restart Counter (RFC 5847), one more than the state
    file's; a L{ConfigError} naming C{state.path} when the file cannot be used."""
    statePath = besideConfig(path, values["state.path"])
    try:
        return heartbeat.nextRestartCounter(statePath)
    except (OSError, ValueError) as e:
        raise ConfigError(path, "state.path", str(e)) from None


def makeMPAService(values: dict[str, Any], profile: mh.WireProfile, path: str,
                   reactor: IReactor | None = None) -> InOrder:
    """The MPA daemon as configured (values from L{lmm.mpa.tap.SETTINGS});
    L{ConfigError} naming C{path} for a backend table it cannot use."""
    if reactor is None:
        reactor = globalReactor()

    dataPlane = buildBackend(ITunnelDataPlane, values["tunnel.backend"], values["tunnel.options"],
                             reactor, path, "tunnel.options")
    authenticator = buildBackend(IAuthenticator, values["aaa.backend"], values["aaa.options"],
                                 reactor, path, "aaa.options")
    detector = buildBackend(IAttachDetector, values["attach.backend"], values["attach.options"],
                            reactor, path, "attach.options")
    if not IAccessLinks.providedBy(detector):
        raise ConfigError(path, "attach.backend",
                          f"{values['attach.backend']!r} does not own the access links "
                          "(IAccessLinks), which the MPA needs")
    interfaces = values["mpa.access_interfaces"]
    try:
        links = readLinks()
    except OSError as e:
        log.warn("cannot read the interfaces' MACs: {error}", error=e)
        links = {}
    macs: dict[str, str] = {}
    for name in interfaces:
        mac = links[name].mac if name in links else None
        if mac is not None:
            macs[name] = mac
    agent = MobilityProxyAgent(
        address=values["mpa.address"],
        defaultLmap=values["mpa.lmap"],
        accessInterfaces=interfaces,
        interfaceMacs=macs,
        lifetime=values["registration.lifetime"],
        retransmitTimeout=values["registration.timeout"],
        maxRetries=values["registration.max_retries"],
        maxRetransmitInterval=values["registration.max_interval"],
        raMtu=values["ra.mtu"],
        profile=profile,
        defaultVirtualLmapMac=values["mpa.virtual_lmap_mac"],
        refreshFraction=values["registration.refresh_fraction"],
        # A restarted MPA does not start where the LMAP last saw it (RFC 6275 9.5.1).
        initialSequence=random.randrange(0x10000),
        defaultDhcpServer=values["dhcp.server"],
        relay=RelayAgent(values["dhcp.answer_timeout"]) if values["dhcp.enabled"] else None,
        attachOnFrames=detector.attachOnFrames,
        accessTechnology=mh.ACCESS_TECHNOLOGY_NAMES[values["mpa.access_technology"]],
        maxAuthenticating=values["attach.max_authenticating"],
        rejectHoldDown=values["attach.reject_hold_down"],
        retryInterval=values["registration.retry_interval"],
        unavailableHoldDown=values["attach.unavailable_hold_down"],
        departureHold=values["attach.departure_hold"],
        maxVisitorsPerLink=values["attach.max_visitors_per_link"],
        reuseAuthorization=values["aaa.reuse"],
        heartbeat=heartbeatPolicy(path, values),
        restartCounter=restartCounter(path, values),
    )
    relayPort: IDHCPv6Relay | None = None
    if values["dhcp.enabled"]:
        relayPort = buildBackend(IDHCPv6Relay, values["dhcp.backend"], values["dhcp.options"],
                                 reactor, path, "dhcp.options")
        relayPort.address = values["mpa.address"]
    backends = (f", {values['aaa.backend']} AAA, {values['attach.backend']} attach detection, "
                f"{values['tunnel.backend']} tunnels")
    configs = {kind: BackendConfig.fromValues(kind, values, values[f"{kind}.backend"], path)
               for kind in ("aaa", "attach", "dhcp")}
    core = MPAService(agent, detector, authenticator, dataPlane, profile, reactor,
                      logLevel=values["log.level"], describeBackends=backends,
                      relayPort=relayPort, tunnelConfig=tunnelConfig(values, dataPlane, path),
                      signaling=signalingConfig(path, values, profile, values["mpa.address"],
                                                "mpa"),
                      backendConfigs=configs, latencies=_latencies(values))
    top = composeMPA(core, controlSocket(path, values), values["log.summary_interval"],
                     reactor=reactor, metrics=values.get("metrics.listen"), path=path)
    from lmm.mpa.tap import Options

    core.reloader = Reloader(path, values, Options.read, liveKeys(core, path))
    ReloadOnHangup(core.reloader, reactor).setServiceParent(top)
    return top


def _latencies(values: Mapping[str, Any]) -> Any:
    """The latency histograms when metrics are on (C{metrics.listen}), else None."""
    if values.get("metrics.listen") is None:
        return None
    from lmm.metrics import MPALatencies

    return MPALatencies()


def liveKeys(core: MPAService, path: str | None) -> list[LiveKeys]:
    """What a reload of the MPA's file applies while it runs; every other
    key needs a restart (docs/operations.md)."""
    agent = core.agent

    def backend(kind: str) -> LiveKeys:
        def apply(values: Mapping[str, Any]) -> Any:
            name = values[f"{kind}.backend"]
            core.swapTo(kind, name, values[f"{kind}.options"])
            core.backendConfigs[kind] = BackendConfig.fromValues(kind, values, name, path)

        return LiveKeys((f"{kind}.backend", f"{kind}.options"), apply)

    def setRelay(values: Mapping[str, Any]) -> None:
        agent.defaultDhcpServer = values["dhcp.server"]
        if agent.relay is not None:
            agent.relay.answerTimeout = values["dhcp.answer_timeout"]

    def setLimits(values: Mapping[str, Any]) -> None:
        agent.maxAuthenticating = values["attach.max_authenticating"]
        agent.maxVisitorsPerLink = values["attach.max_visitors_per_link"]
        agent.rejectHoldDown = values["attach.reject_hold_down"]
        agent.unavailableHoldDown = values["attach.unavailable_hold_down"]
        agent.departureHold = values["attach.departure_hold"]
        agent.retryInterval = values["registration.retry_interval"]
        agent.authorizations.reuse = values["aaa.reuse"]

    return [
        *commonLiveKeys(core, path),
        backend("aaa"), backend("attach"), backend("dhcp"),
        LiveKeys(("dhcp.server", "dhcp.answer_timeout"), setRelay),
        LiveKeys(("attach.max_authenticating", "attach.max_visitors_per_link",
                  "attach.reject_hold_down", "attach.unavailable_hold_down",
                  "attach.departure_hold", "registration.retry_interval", "aaa.reuse"),
                 setLimits),
    ]
