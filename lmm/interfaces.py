"""
The interfaces lmm's backends implement, in one place (as ldaptor does).

A backend is found by name through L{IBackendFactory} plugins (see
L{lmm.backends}); a third party adds one with a module in its own
C{twisted/plugins/} directory, without touching lmm.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IBackendFactory(Interface):
    """A named way to build a backend; what C{twisted.plugin.getPlugins} finds.

    Plugin modules are imported whenever anything scans C{twisted.plugins}, so a
    factory must import its implementation only inside L{build}.
    """

    name = Attribute("The name a configuration file uses for this backend (str).")
    provides = Attribute("The interface the built backend provides, e.g. ITunnelDataPlane.")
    description = Attribute("One line for listings and error messages (str).")

    def build(settings, reactor):  # type: ignore[no-untyped-def]
        """
        Build the backend.

        @param settings: the backend's table from the daemon's configuration (a
            mapping; keys are the backend's own and documented with it).
        @param reactor: the reactor the backend must use.
        @return: a provider of C{provides}.
        """


class IAuthenticator(Interface):
    """Network access authentication and MS profile download (draft 6.1)."""

    def authenticate(request):  # type: ignore[no-untyped-def]
        """
        Authenticate a Mobile Station.

        @param request: an L{lmm.aaa.AccessRequest} (NAI, MAC, access interface).
        @return: a Deferred firing with an L{lmm.aaa.Profile}, or failing with
            L{lmm.aaa.AccessRejected} or L{lmm.aaa.AAAUnavailable}.
        """

    def stop():  # type: ignore[no-untyped-def]
        """Release sockets and timers; return a Deferred or None."""


class IDHCPv6Relay(Interface):
    """The MPA's DHCPv6 relay agent (draft 6.3, RFC 8415 section 19)."""

    def relayFromClient(visitor, message, clientAddress):  # type: ignore[no-untyped-def]
        """Relay a client message (bytes) from a visitor to its DHCPv6 server."""

    def stop():  # type: ignore[no-untyped-def]
        """Release sockets and timers; return a Deferred or None."""


class ITunnelDataPlane(Interface):
    """The bi-directional MPA-LMAP tunnel, IPv6 in IPv6 (RFC 2473).

    Both daemons use it: the LMAP routes an MS's Local Address into the tunnel to
    its MPA; the MPA routes packets from the MS into the tunnel to its LMAP and
    delivers decapsulated packets on the access link.
    """

    name = Attribute("The backend's name (str).")

    def addBinding(binding):  # type: ignore[no-untyped-def]
        """
        Make the data plane carry C{binding} (an L{lmm.tunnel.TunnelBinding}).

        @return: a Deferred firing when packets flow, or None when done at once.
        """

    def removeBinding(binding):  # type: ignore[no-untyped-def]
        """Stop carrying C{binding}; removing an unknown binding is not an error."""

    def bindings():  # type: ignore[no-untyped-def]
        """The bindings the data plane carries now (for adoption and swapping)."""

    def stop():  # type: ignore[no-untyped-def]
        """Tear everything down; return a Deferred or None."""


class IAttachDetector(Interface):
    """Tells the MPA when a Mobile Station attaches to or leaves an access link."""

    def start(onAttach, onDetach):  # type: ignore[no-untyped-def]
        """
        Begin reporting.

        @param onAttach: called with an L{lmm.mpa.visitor.AttachEvent}.
        @param onDetach: called with an L{lmm.mpa.visitor.DetachEvent}.
        """

    def stop():  # type: ignore[no-untyped-def]
        """Stop reporting; return a Deferred or None."""


class IBindingStore(Interface):
    """Where the LMAP keeps its Binding Cache entries.

    Keyed by the MS's NAI (bytes) and reachable by Local Address (str).
    """

    def get(nai):  # type: ignore[no-untyped-def]
        """The entry for C{nai}, or None."""

    def getByAddress(address):  # type: ignore[no-untyped-def]
        """The entry whose Local Address is C{address}, or None."""

    def put(entry):  # type: ignore[no-untyped-def]
        """Insert or replace the entry for C{entry.nai}."""

    def remove(nai):  # type: ignore[no-untyped-def]
        """Remove and return the entry for C{nai}, or None."""

    def __len__():  # type: ignore[no-untyped-def]
        """How many entries there are."""

    def __iter__():  # type: ignore[no-untyped-def]
        """Iterate over the entries."""
