"""
The MPA's imperative shell: the Mobility Header socket, the access links (the
attach detector), the authenticator, the tunnel data plane, the DHCPv6 relay,
the one timer and the control channel. Everything it decides comes from
L{MobilityProxyAgent} (which holds the DHCPv6 relay's core); this module
feeds it and carries its actions out, in order (docs/mpa.md, docs/dhcpv6.md).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Iterable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from lmm import mh, nd
from lmm.aaa import AAAUnavailable, AccessRejected, AccessRequest, Profile
from lmm.config import ConfigError
from lmm.daemon import buildBackend
from lmm.dataplane.swapping import SwappableDataPlane, TunnelConfig, tunnelConfig
from lmm.interfaces import IAttachDetector, IAuthenticator, ITunnelDataPlane
from lmm.journal import MPA_LIMITED, MPA_PER_VISITOR, Journal
from lmm.mpa.agent import Authenticate, MobilityProxyAgent, SendFrame
from lmm.mpa.attach import IAccessLinks, Within, readLinks
from lmm.mpa.dhcprelay import DHCPv6RelayPort
from lmm.mpa.relay import RelayAgent, SendToServer
from lmm.mpa.visitor import AttachEvent, DetachEvent
from lmm.ratelimit import LogLimiter
from lmm.rawsock import IPPROTO_MH, MobilityHeaderPort
from lmm.service import ActionPerformer, Signaling
from lmm.timers import DeadlineTimer

log = Logger(namespace="lmm.mpa")

def _direct(f: Callable[[], Any]) -> Any:
    return f()


class MPAService(ActionPerformer, SwappableDataPlane, Service):
    """
    Runs a L{MobilityProxyAgent}: Mobility Header messages on a raw socket
    bound to C{address}, frames and link state from C{detector} (an
    L{IAccessLinks} provider), AAA through C{authenticator}, tunnels through
    C{dataPlane}.

    @param within: calls a function of no arguments in the network namespace
        the MPA works in (its sockets and C{/proc/sys/net} files are made
        there); None: this thread's. For tests that run the MPA in the test
        process with its links in a namespace.
    @param controlSocket: the path of the control channel's UNIX socket, or
        None for none (L{lmm.mpa.control}).
    @param relayPort: the DHCPv6 relay's server side (an
        L{lmm.interfaces.IDHCPv6Relay}, such as L{DHCPv6RelayPort}), or None:
        the agent's Relay-Forwards go nowhere (its relay is off too, then).
    @param tunnelConfig: what the configuration file says of the tunnel
        (for the control channel's C{tunnel} command), or None.
    """

    name = "mpa"
    log = log

    def __init__(
        self,
        agent: MobilityProxyAgent,
        detector: Any,
        authenticator: Any,
        dataPlane: Any,
        profile: mh.WireProfile,
        reactor: Any = None,
        *,
        within: Within | None = None,
        socket: Any = None,
        controlSocket: str | None = None,
        logLevel: str = "info",
        summaryInterval: float = 60.0,
        describeBackends: str = "",
        relayPort: Any = None,
        tunnelConfig: TunnelConfig | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        if not IAccessLinks.providedBy(detector):
            raise TypeError(f"{detector!r} does not own the access links (IAccessLinks): the "
                            "MPA needs their frames for home-link emulation")
        self.agent = agent
        self.detector = detector
        self.authenticator = authenticator
        self.dataPlane = dataPlane
        self.address = agent.address
        self.profile = profile
        self.reactor = reactor
        self.within: Within = within or _direct
        self._socket = socket
        self.controlSocket = controlSocket
        self.describeBackends = describeBackends
        self.port: MobilityHeaderPort | None = None
        self.relayPort = relayPort
        self.control: Any = None
        self.tunnelConfig = tunnelConfig
        self.counters: Counter[str] = Counter()
        self._timer = DeadlineTimer(reactor, self._tick)
        self._limiter = LogLimiter(reactor.seconds)
        self.journal = Journal("lmm.mpa", logLevel, reactor.seconds, MPA_PER_VISITOR,
                               MPA_LIMITED)
        self.summaryInterval = summaryInterval
        self._summary: Any = None

    def buildWithin(self, build: Callable[[], Any]) -> Any:
        # A swapped-in backend makes its sockets and routes where the MPA works.
        return self.within(build)

    # --- life cycle ---------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        try:
            self._open()
        except BaseException:
            # Whatever did open is closed again: no half-started MPA.
            Service.stopService(self)
            self._close()
            raise
        if self.summaryInterval:
            self._summary = LoopingCall(self.logSummary)
            self._summary.clock = self.reactor
            self._summary.start(self.summaryInterval, now=False)
        if self.agent.relay is None:
            dhcp = "off"
        else:
            dhcp = f"default server {self.agent.defaultDhcpServer or 'none (profiles only)'}"
        log.info("MPA ready on {address}: access interfaces {interfaces}, default LMAP {lmap}, "
                 "{profile} profile{backends}, DHCPv6 relay {dhcp}, control channel {control}",
                 address=self.address, interfaces=", ".join(self.agent.accessInterfaces),
                 lmap=self.agent.defaultLmap, profile=self.profile.name,
                 backends=self.describeBackends, dhcp=dhcp, control=self.controlSocket or "off")

    def _open(self) -> None:
        self.dataPlane.prepare(self.address)
        self.detector.configure(self.agent.accessInterfaces, self.frameReceived, self.linkDown,
                                self.within, virtualMac=self.agent.defaultVirtualLmapMac)
        self.detector.start(self.attach, self.detach)
        # Only the access point says who attaches, with the explicit detector.
        self.agent.attachOnFrames = self.detector.attachOnFrames
        sock = self._socket
        if sock is None and self.within is not _direct:
            sock = self.within(_rawSocket)
        self.port = MobilityHeaderPort(Signaling(self), self.address, self.reactor, sock)
        self.port.startListening()
        if self.relayPort is not None:
            self.relayPort.start(self._relayed, None if self.within is _direct else self.within)
        if self.controlSocket is not None:
            from lmm.mpa.control import listenControl

            self.control = listenControl(self, self.controlSocket, self.reactor)

    def _close(self) -> list[Deferred[Any]]:
        waits: list[Deferred[Any]] = []
        if self.control is not None:
            waits.append(maybeDeferred(self.control.stopListening))
            self.control = None
        if self.port is not None:
            self.port.stopListening()
            self.port = None
        if self.relayPort is not None:
            waits.append(maybeDeferred(self.relayPort.stop))
        self.detector.stop()
        return waits

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        if self._summary is not None and self._summary.running:
            self._summary.stop()
        self._timer.cancel()
        # Deregistrations go out before the sockets close.
        self.perform(self.agent.stop(self.reactor.seconds()))
        waits = self._close()
        waits.append(self.stopRetired())
        for what in (self.authenticator, self.dataPlane):
            d = maybeDeferred(what.stop)
            d.addErrback(self._logFailure, f"stopping {what!r}")
            waits.append(d)
        return DeferredList(waits)

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
        try:
            message = mh.decode(data, self.profile)
        except mh.MobilityHeaderError as e:
            if self._limiter.allow("mh." + e.reason):
                log.warn("dropped a malformed Mobility Header from {source}: {error} "
                         "({reason}, {count} so far)", source=source, error=str(e),
                         reason=e.reason, count=self.agent.counters["malformed." + e.reason] + 1)
            self._run(self.agent.malformed(e, source, now))
            return
        self._run(self.agent.messageReceived(message, source, now))

    def _run(self, actions: list[Any]) -> None:
        if actions:
            self.perform(actions)
        self._schedule()

    def _tick(self) -> None:
        self.perform(self.agent.tick(self.reactor.seconds()))
        self._schedule()

    def _schedule(self) -> None:
        if not self.running:
            return
        self._timer.schedule(self.agent.nextDeadline())

    # --- AAA ----------------------------------------------------------------

    def _authenticate(self, request: AccessRequest) -> None:
        self.counters["aaa.requested"] += 1
        d = maybeDeferred(self.authenticator.authenticate, request)
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
        Carry out actions in order (L{ActionPerformer.performActions}: an
        asynchronous tunnel change holds back what follows it), the MPA's own
        kinds here. Authentications start after the list is done: a backend
        that answers at once (the file) then feeds the agent after this
        event's actions, not in the middle of them.
        """
        requests: list[AccessRequest] = []
        self.performActions(actions, lambda action: self._performOwn(action, requests))
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

    def _tunnelFailed(self, failure: Failure, binding: Any) -> None:
        # The agent's Note says it, with the error: no traceback per refusal.
        self.counters["tunnel.add-failed"] += 1
        error = failure.value
        assert error is not None
        self._run(self.agent.tunnelFailed(binding, error, self.reactor.seconds()))

    def send(self, message: mh.MobilityMessage, destination: str) -> None:
        if self.port is None:
            return
        try:
            self.port.send(mh.encode(message, self.profile), destination)
        except OSError as e:
            self.counters["mh.send-failed"] += 1
            if self._limiter.allow("mh.send"):
                log.warn("cannot send a Mobility Header to {destination}: {error}",
                         destination=destination, error=e)

    # --- for the control channel ---------------------------------------------

    def allCounters(self) -> dict[str, int]:
        """The agent's, the relay core's (as C{relay.<name>}), the access
        links', the relay port's and the service's counters."""
        merged: Counter[str] = Counter(self.agent.counters)
        relay = self.agent.relay
        if relay is not None:
            merged.update({"relay." + key: value for key, value in relay.counters.items()})
        merged.update(self.detector.counters)
        if self.relayPort is not None:
            merged.update(self.relayPort.counters)
        merged.update(self.counters)
        return dict(merged)

    def describeVisitors(self) -> list[dict[str, str]]:
        return self.agent.describe()

    def describeLinks(self) -> list[dict[str, str]]:
        return list(self.detector.describe())


def _rawSocket() -> Any:
    import socket

    return socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)


# --- building it from the configuration ----------------------------------------------


def makeMPAService(values: dict[str, Any], profile: mh.WireProfile, path: str) -> MPAService:
    """The MPA service as configured (values from L{lmm.mpa.tap.SETTINGS});
    L{ConfigError} naming C{path} for a backend table it cannot use."""
    from twisted.internet import reactor

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
    )
    relayPort = DHCPv6RelayPort(values["mpa.address"], reactor) if values["dhcp.enabled"] else None
    backends = (f", {values['aaa.backend']} AAA, {values['attach.backend']} attach detection, "
                f"{values['tunnel.backend']} tunnels")
    return MPAService(agent, detector, authenticator, dataPlane, profile, reactor,
                      controlSocket=values["control.socket"], logLevel=values["log.level"],
                      summaryInterval=values["log.summary_interval"],
                      describeBackends=backends, relayPort=relayPort,
                      tunnelConfig=tunnelConfig(values, dataPlane, path))
