"""
Home-link emulation, as a pure sub-machine of the MPA's agent
(L{lmm.mpa.agent.MobilityProxyAgent} owns one): what the MPA says on an
access link so that a Mobile Station believes it is on its home link, and
keeps believing it across a handover (draft-gundavelli-netlmm-mip6-proxy-00
sections 6.2 and 8.2, RFC 4861, RFC 4862, RFC 5213 6.9.1.1).

It builds the frames (Router and Neighbor Advertisements, the DHCPv6 answers
relayed to the MS) and decides which Neighbor Discovery messages get one; the
agent decides when the home link is first advertised (after the LMAP's
answer) and what an address the MS probes means to its registration.

Rules:

 1. Router Advertisements carry the LNP with L=0 (the LMAP is the default
    router for everything), A=1 only for C{slaac}, M=1 and O=1 for
    C{dhcpv6} (C{manual}: A=M=O=0, so that a manually configured MS makes no
    second address), an MTU option of C{raMtu}, a Source Link-layer Address
    option of the virtual LMAP MAC, router lifetime C{routerLifetime}. They
    go from the virtual LMAP MAC and link-local address to the MS's MAC
    (draft 8.2); an answer to an RS goes to the RS's source, or to ff02::1
    when that is ::. The unsolicited one goes to the MS's link-local address
    if a frame showed it, else to ff02::1: a host whose link went down and
    up sends no RS.
 2. Until the home link is advertised an RS gets no answer and a Neighbor
    Solicitation for the virtual LMAP link-local address (or the LMAP's) no
    NA: a handed-over MS keeps its first packets in its own neighbour queue,
    and sends them when the RA resolves its router, rather than sending them
    to an MPA that has no tunnel for them yet (RFC 5213 6.9.1.1).
 3. A DAD probe for a link-local address is the MS's business (the MPA
    never claims the MS's addresses), except for the virtual LMAP link-local
    address (and the LMAP's address), which the MPA defends with an NA from
    the virtual MAC (RFC 4862 5.4.3). A DAD probe for a global address inside
    the LNP is the MS configuring that address: the agent learns it (draft
    figure 8).
 4. A Neighbor Solicitation for the virtual LMAP link-local address, the
    LMAP's address or any global address but the MS's own is answered with
    an NA from the virtual MAC (R=1, S=1, O=1); one for another link-local
    address belongs to another host on the link and is left alone.
 5. A DHCPv6 answer goes to the MS as a whole frame from the virtual LMAP MAC
    and link-local address (the MS's default router, the same on every MPA),
    UDP 547 to 546 (L{clientFrame}).
"""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv6Network

from lmm import dhcp6, nd
from lmm.inet import addressToInt, networkAddress, valueInNetwork
from lmm.mpa.visitor import VisitorEntry

#: What home-link emulation counts, in the agent's counters.
COUNTERS = {
    "ra.unsolicited": "Router Advertisements sent unasked (after the LMAP's answer, a move)",
    "ra.solicited": "Router Advertisements answering a Router Solicitation",
    "rs.held": "Router Solicitations left unanswered until the LMAP answered",
    "ns.held": "Neighbor Solicitations for the router left unanswered until then",
    "na.sent": "Neighbor Advertisements from the virtual LMAP MAC",
    "dad.defended": "DAD probes for the router's addresses answered",
    "dad.link-local": "DAD probes for the MS's own link-local address",
    "dad.outside-prefix": "DAD probes for an address outside the LNP",
    "dad.no-prefix": "DAD probes while no LNP is known",
    "ns.own": "Neighbor Solicitations for the MS's own addresses",
    "ns.other-host": "Neighbor Solicitations for another host's link-local address",
}

def inPrefix(address: str, prefix: IPv6Network) -> bool:
    """C{address} is inside C{prefix} and is not its Subnet-Router anycast
    address (the all-zero identifier, which no host configures)."""
    try:
        value = addressToInt(address)
    except (OSError, ValueError):
        return False
    return valueInNetwork(value, prefix) and value != int(prefix.network_address)


def clientFrame(
    sourceMac: str,
    destinationMac: str,
    sourceAddress: str,
    destinationAddress: str,
    payload: bytes,
    hopLimit: int = 255,
) -> bytes:
    """A whole Ethernet frame carrying the DHCPv6 message C{payload} from a
    relay to a client: IPv6, UDP from port 547 to 546 (L{nd.buildUDPFrame})."""
    return nd.buildUDPFrame(sourceMac, destinationMac, sourceAddress, destinationAddress,
                            dhcp6.SERVER_PORT, dhcp6.CLIENT_PORT, payload, hopLimit)


class HomeLink:
    """
    The frames of home-link emulation for the MPA's visitors; see the module
    docstring for the rules. Each method returns the frames to send, as
    (access interface, frame) pairs the agent makes its L{SendFrame}s of.
    """

    def __init__(self, raMtu: int, routerLifetime: int, counters: Counter[str]) -> None:
        if raMtu < 1280:
            raise ValueError(f"raMtu {raMtu} is under the IPv6 minimum, 1280")
        self.raMtu = raMtu
        self.routerLifetime = routerLifetime
        self.counters = counters

    def advertisement(self, visitor: VisitorEntry, destination: str) -> bytes:
        """Rule 1: a unicast Router Advertisement of the visitor's home link."""
        profile = visitor.profile
        mode = "slaac" if profile is None else profile.addressMode
        prefixes: tuple[nd.PrefixInformation, ...] = ()
        prefix = visitor.localNetworkPrefix
        if prefix is not None:
            prefixes = (
                nd.PrefixInformation(networkAddress(prefix), prefix.prefixlen,
                                     onLink=False, autonomous=mode == "slaac"),
            )
        stateful = mode == "dhcpv6"
        return nd.buildRouterAdvertisement(
            visitor.virtualLmapMac, visitor.mac, visitor.virtualLmapLinkLocal, destination,
            prefixes, mtu=self.raMtu, managed=stateful, other=stateful,
            routerLifetime=self.routerLifetime,
        )

    def unsolicited(self, visitor: VisitorEntry) -> bytes:
        """Rule 1: the RA nobody asked for (the MS may send no RS: a link flap)."""
        self.counters["ra.unsolicited"] += 1
        return self.advertisement(visitor, visitor.linkLocalAddress or nd.ALL_NODES)

    def routerSolicitation(self, visitor: VisitorEntry, source: str) -> bytes | None:
        """Rules 1 and 2: the answer to an RS from C{source}, if one is due."""
        if not visitor.advertised:
            # The RA that follows the LMAP's answer answers this RS too.
            self.counters["rs.held"] += 1
            return None
        self.counters["ra.solicited"] += 1
        return self.advertisement(visitor, nd.ALL_NODES if source == nd.UNSPECIFIED else source)

    def duplicateAddressDetection(self, visitor: VisitorEntry,
                                  target: str) -> tuple[bytes | None, bool]:
        """Rule 3: a DAD probe for C{target}: the NA that defends it (or None),
        and whether it is a global address inside the LNP for the agent to learn."""
        counters = self.counters
        if target == visitor.virtualLmapLinkLocal or target == visitor.lmapAddress:
            counters["dad.defended"] += 1
            return nd.buildNeighborAdvertisement(
                visitor.virtualLmapMac, visitor.mac, visitor.virtualLmapLinkLocal, nd.ALL_NODES,
                target, router=True, solicited=False, override=True,
            ), False
        if nd.isLinkLocal(target):
            # The MS's own link-local DAD: normal DAD, nothing to say.
            counters["dad.link-local"] += 1
            return None, False
        prefix = visitor.localNetworkPrefix
        if prefix is None:
            counters["dad.no-prefix"] += 1
            return None, False
        if not inPrefix(target, prefix):
            counters["dad.outside-prefix"] += 1
            return None, False
        return None, True

    def neighborSolicitation(self, visitor: VisitorEntry, source: str,
                             target: str) -> bytes | None:
        """Rules 2 and 4: the NA answering a solicitation of C{target}, if one is due."""
        if nd.isMulticast(source):
            return None
        pending = visitor.pending
        if (
            target == visitor.localAddress
            or target == visitor.linkLocalAddress
            or (pending is not None and target == pending.request.address)
        ):
            self.counters["ns.own"] += 1
            return None
        if (
            target != visitor.virtualLmapLinkLocal
            and target != visitor.lmapAddress
            and nd.isLinkLocal(target)
        ):
            # Another host's link-local address: that host answers.
            self.counters["ns.other-host"] += 1
            return None
        if not visitor.advertised:
            # The MS's packets wait in its neighbour queue for the RA (rule 2).
            self.counters["ns.held"] += 1
            return None
        self.counters["na.sent"] += 1
        return nd.buildNeighborAdvertisement(
            visitor.virtualLmapMac, visitor.mac, visitor.virtualLmapLinkLocal, source, target,
            router=True, solicited=True, override=True,
        )

    @staticmethod
    def toClient(visitor: VisitorEntry, clientAddress: str, payload: bytes) -> bytes:
        """Rule 5: the DHCPv6 server's answer C{payload}, from the MS's
        default router; ValueError when it cannot be framed."""
        return clientFrame(visitor.virtualLmapMac, visitor.mac, visitor.virtualLmapLinkLocal,
                           clientAddress, payload)
