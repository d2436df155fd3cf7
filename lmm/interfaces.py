"""
lmm's interfaces, in one place (as ldaptor has them): those its backends
implement (authentication, DHCPv6 relay port, tunnel data plane, attach
detection and access links, binding store) and the Mobility Header port's.

A backend is found by name through L{IBackendFactory} plugins (see
L{lmm.backends}); a third party adds one with a module in its own
C{twisted/plugins/} directory, without touching lmm.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorSocket,
    IReactorTime,
    IReactorUDP,
    IReactorUNIX,
)
from zope.interface import Attribute, Interface


class IReactor(IReactorCore, IReactorTime, IReactorFDSet, IReactorUDP, IReactorUNIX,
               IReactorSocket):
    """
    What lmm's daemons use of the reactor: time (the timers), descriptors
    (raw and packet sockets read with C{addReader}), UDP (RADIUS), UNIX
    sockets (the control channel), adopted sockets (the DHCPv6 relay's port
    made in a namespace). Parts of lmm that need less say so with Twisted's
    own interfaces (C{IReactorTime}, C{IReactorFDSet}, ...).
    """


def globalReactor() -> IReactor:
    """Twisted's global reactor, typed as what lmm uses of it (it provides
    all of L{IReactor} on Linux; Twisted types it by its common part only)."""
    from twisted.internet import reactor

    return cast(IReactor, reactor)


class IBackendFactory(Interface):
    """A named way to build a backend; what C{twisted.plugin.getPlugins} finds.

    Plugin modules are imported whenever anything scans C{twisted.plugins}, so a
    factory must import its implementation only inside L{build}.
    """

    name = Attribute("The name a configuration file uses for this backend (str).")
    provides = Attribute("The interface the built backend provides, e.g. ITunnelDataPlane.")
    description = Attribute("One line for listings and error messages (str).")

    def build(settings, reactor):
        """
        Build the backend.

        @param settings: the backend's table from the daemon's configuration (a
            mapping; keys are the backend's own and documented with it).
        @param reactor: the reactor the backend must use.
        @return: a provider of C{provides}.
        """


class IAuthenticator(Interface):
    """Network access authentication and MS profile download (draft 6.1)."""

    def authenticate(request):
        """
        Authenticate a Mobile Station.

        @param request: an L{lmm.aaa.AccessRequest} (NAI, MAC, access interface).
        @return: a Deferred firing with an L{lmm.aaa.Profile}, or failing with
            L{lmm.aaa.AccessRejected} or L{lmm.aaa.AAAUnavailable}.
        """

    def stop():
        """Release sockets and timers; return a Deferred or None."""


class IDHCPv6Relay(Interface):
    """
    The server side of the MPA's DHCPv6 relay agent (draft 6.3, RFC 8415
    section 19): a UDP port 547 on the MPA's address. The relay's decisions
    are its pure core's (L{lmm.mpa.relay.RelayAgent}, held by the MPA's
    agent); the service hands this port the agent's
    L{lmm.mpa.relay.SendToServer} actions and gives the agent what arrives.
    """

    name = Attribute("The backend's name (str).")
    address = Attribute("The MPA's address, the port's: set by the MPA before L{start} (str).")
    counters = Attribute("Event counts (a collections.Counter): relay.sent, relay.received...")

    def start(deliver, within):
        """
        Open the port and read it.

        @param deliver: called with (payload, source) for each datagram from
            a server.
        @param within: calls a function of no arguments in the MPA's network
            namespace (where the socket is made), or None for this thread's.
        """

    def sendToServer(server, payload):
        """Send a Relay-Forward to C{[server]:547}; False if it could not go."""

    def stop():
        """Close the port; return a Deferred or None."""


class ITunnelDataPlane(Interface):
    """The bi-directional MPA-LMAP tunnel, IPv6 in IPv6 (RFC 2473).

    Both daemons use it: the LMAP routes an MS's Local Address into the tunnel to
    its MPA; the MPA routes packets from the MS into the tunnel to its LMAP and
    delivers decapsulated packets on the access link.
    """

    name = Attribute("The backend's name (str).")

    def prepare(localEndpoint, peers=(), accessInterfaces=()):
        """
        Get ready to be a tunnel end at C{localEndpoint} (this node's address),
        before any binding: the first binding then adds only its own routes,
        and the first handover to this node is as quick as the others. Called
        once at start, and on a backend swapped in; a failure is logged, not
        raised (the first binding tries again and reports it). C{peers}: far
        ends the first bindings will likely have (an MPA's LMAP); a backend
        that reads each peer's packets itself (userspace) is ready for theirs,
        so that a handover's first packets, sent before this node's first
        binding, find it. C{accessInterfaces}: an MPA's access links; a
        backend that can hold packets (userspace) holds what a visitor sends
        before its binding is installed, and sends it up the tunnel then.
        """

    def addBinding(binding):
        """
        Make the data plane carry C{binding} (an L{lmm.tunnel.TunnelBinding}).
        One with the role, mobile address and prefix length of a binding
        carried already replaces it, without a moment when neither is carried
        (the LMAP's handover: no removal of the old binding follows); when
        the replacement fails, neither is carried.

        @return: a Deferred firing when packets flow, or None when done at once.
        """

    def removeBinding(binding):
        """Stop carrying C{binding}; removing an unknown binding is not an error."""

    def bindings():
        """The bindings the data plane carries now (for adoption and swapping)."""

    def stop():
        """Tear everything down; return a Deferred or None."""


class IAttachDetector(Interface):
    """Tells the MPA when a Mobile Station attaches to or leaves an access link.

    The MPA can replace its detector while it runs (make before break: the
    new one is configured and started, then the old one stopped): a
    detector's C{start} must not undo what another running on the same
    links set up, nor its C{stop} what the other still needs.
    """

    def start(onAttach, onDetach):
        """
        Begin reporting.

        @param onAttach: called with an L{lmm.mpa.visitor.AttachEvent}.
        @param onDetach: called with an L{lmm.mpa.visitor.DetachEvent}.
        """

    def stop():
        """Stop reporting; return a Deferred or None."""


class IBindingStore(Interface):
    """Where the LMAP keeps its Binding Cache entries.

    Keyed by the MS's NAI (bytes) and reachable by Local Address (str).
    """

    def get(nai):
        """The entry for C{nai}, or None."""

    def getByAddress(address):
        """The entry whose Local Address is C{address}, or None."""

    def put(entry):
        """Insert or replace the entry for C{entry.nai}."""

    def remove(nai):
        """Remove and return the entry for C{nai}, or None."""

    def __len__():
        """How many entries there are."""

    def __iter__():
        """Iterate over the entries."""

    persistent = Attribute("Whether the entries outlive the process (bool).")
    pending = Attribute("Whether changes wait for L{commit} (bool).")

    def commit():
        """Write the changes made since the last commit (one transaction);
        how many entries it wrote. A store in memory has nothing to write."""

    def checkpoint():
        """Bring the store's files up to date with its commits (a
        write-ahead log copied into the database), in a thread of its own;
        blocks no commit."""

    def close():
        """Commit what is left; release the store."""

    def saveRevocations(rows, lastSequence):
        """Keep the revocations in flight (at the next commit): rows as
        L{lmm.lmap.revocation.Revocations.snapshot} gives them."""

    def loadRevocations():
        """The revocations in flight last committed, and the last sequence number."""


class IAccessLinks(IAttachDetector):
    """
    An attach detector that also owns the access links: frames in and out,
    link state. L{lmm.mpa.service.MPAService} needs one.
    """

    name = Attribute("The backend's name (str).")
    attachOnFrames = Attribute(
        "Whether a frame from a MAC the agent does not know is an attach (bool)."
    )
    counters = Attribute("Event counts (a collections.Counter), for the control channel.")

    def configure(interfaces, frameReceived, linkDown, within, virtualMac):
        """
        Say what to watch and where to deliver, before L{start}.

        @param interfaces: the access interfaces' names.
        @param frameReceived: called with (interface name, frame bytes).
        @param linkDown: called with the interface name when an access link
            goes down or away.
        @param within: calls a function of no arguments in the network
            namespace the links are in and returns its result (sockets and
            C{/proc/sys/net} files opened there stay there); None for this
            thread's.
        @param virtualMac: the virtual LMAP MAC the access interfaces must
            take frames for as their own, or None.
        """

    def sendFrame(interface, frame):
        """Send a whole Ethernet frame on C{interface}; False if it could not go."""

    def describe():
        """Each access interface's state, for an operator (a list of dicts)."""


class IMobilityHeaderProtocol(Interface):
    """What a L{MobilityHeaderPort} delivers to."""

    def makeConnection(transport):
        """The port is listening; C{transport} provides L{IMobilityHeaderTransport}."""

    def datagramReceived(data, source):
        """
        A Mobility Header arrived, its checksum checked by the kernel.

        @param data: the Mobility Header and what follows it (bytes).
        @param source: the IPv6 source address as C{inet_ntop} writes it; for a
            source with a scope (link-local), followed by C{%} and the numeric
            scope id (an interface index in the port's namespace).
        """

    def connectionLost(reason):
        """The port stopped listening; its socket is closed."""


class IMobilityHeaderTransport(Interface):
    """What a L{MobilityHeaderProtocol} sends with."""

    bindAddress = Attribute("The local address the socket is bound to (str).")
    sendDrops = Attribute("How many messages L{send} dropped for lack of buffer space (int).")

    def send(data, destination):
        """
        Send a Mobility Header (checksum left to the kernel) to C{destination}.

        @return: True if the kernel took it, False if it was dropped for lack
            of buffer space (counted in C{sendDrops}).
        @raise OSError: for other failures (no route, message too big).
        """

    def stopListening():
        """Stop reading and close the socket; return a Deferred that has fired."""
