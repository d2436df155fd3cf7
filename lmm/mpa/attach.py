"""
The MPA's access links: attach detection, frames in and out, link state.

An attach detector (L{lmm.interfaces.IAttachDetector}) tells the MPA when a Mobile Station
attaches or leaves. lmm's two, found by name like every backend, both own the
access links' sockets (L{lmm.interfaces.IAccessLinks}), because home-link emulation needs
every frame an MS sends and must send Router and Neighbor Advertisements on
the MS's link:

 - C{packet} (the default): an C{AF_PACKET} socket per access interface. Every
   frame received goes to the service, which decodes it and feeds the agent;
   a frame from a MAC the Visitor List does not hold is an attach (draft
   section 7: "the MPA on the link on detecting this new mobile station").
 - C{explicit}: the same sockets, but a frame from an unknown MAC is no
   attach: an access point or controller reports attaches and detaches
   (C{attach IF MAC [NAI]}, C{detach IF MAC} on the MPA's control channel, or
   L{ExplicitAttachDetector.attach} from code).

Link state comes from rtnetlink (C{RTMGRP_LINK}, a C{NETLINK_ROUTE} socket in
the reactor): an access interface whose carrier goes (C{IFF_LOWER_UP} clears,
or it is set down) or which leaves the namespace is reported to the agent as a
link down (its visitors leave). Events, not polling: no lag, no timer, and a
socket works from any namespace it was made in, where C{/sys/class/net} shows
the namespace of whoever mounted it. An access interface that does not exist
yet is waited for: its socket opens when it appears, and closes when it goes.

Each packet socket is bound to its interface and protocol (C{ETH_P_IPV6}, or
C{ETH_P_ALL} with C{protocol = "all"}), non-blocking, read by the reactor
(C{addReader}) in a loop capped per wakeup like L{lmm.rawsock}; frames the MPA
sent itself (C{PACKET_OUTGOING}, seen with C{ETH_P_ALL}) are skipped. It joins
the interface's promiscuous mode (C{PACKET_MR_PROMISC}, dropped with the
socket): the MS sends to the virtual LMAP MAC, which a real NIC would filter.

What the detector sets on an access interface when it opens it (unless
C{configure_interfaces = false}), and why: C{accept_ra = 0}, C{autoconf = 0},
C{accept_redirects = 0} (C{net.ipv6.conf.IF}): the MPA must not configure
itself from Router Advertisements on a link where it is the one advertising
(the kernel then sends no Router Solicitation there either), nor follow
redirects there. And it gives the interface the virtual LMAP MAC
(C{mpa.virtual_lmap_mac}) as its address: the MS sends everything to that
MAC, and a kernel drops a frame for another host's MAC before IPv6 sees it,
promiscuous mode or not, so without it nothing from the MS reaches the
tunnel. (The interface is briefly set down for it if the driver cannot change
a live address.) It does not set C{forwarding} (the data plane's business)
and starts no router advertisement daemon: the kernel never sends RAs by
itself, and the only RAs on an access link are the agent's unicast ones.

Over 600 lines, one module on purpose: the packet sockets, the rtnetlink
monitor that opens and closes them, and the two detectors built on both are
the one backend that owns the access links.
"""

from __future__ import annotations

import errno
import socket as _socket
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from lmm import config
from lmm.config import Setting
from lmm.interfaces import IAccessLinks, IReactor
from lmm.logs import Logger
from lmm.mpa.visitor import AttachEvent, DetachEvent
from lmm.reader import drain, errorName

__all__ = [
    "ETH_P_ALL",
    "ETH_P_IPV6",
    "ExplicitAttachDetector",
    "LinkState",
    "PacketAttachDetector",
    "explicitBackend",
    "packetBackend",
    "readLinks",
]

T = TypeVar("T")
Within = Callable[[Callable[[], Any]], Any]

log = Logger(namespace="lmm.mpa.attach")

ETH_P_ALL = 0x0003
ETH_P_IPV6 = 0x86DD
_PROTOCOLS = {"ipv6": ETH_P_IPV6, "all": ETH_P_ALL}

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_OUTGOING: int = getattr(_socket, "PACKET_OUTGOING", 4)
_PACKET_MREQ = struct.Struct("iHH8s")

# Linux's SO_RCVBUFFORCE: exceed net.core.rmem_max when privileged.
_SO_RCVBUFFORCE = 33

# Interface settings the detector makes (net.ipv6.conf.IF.KEY), see the module docstring.
INTERFACE_SYSCTLS = (("accept_ra", "0"), ("autoconf", "0"), ("accept_redirects", "0"))


def _direct(f: Callable[[], T]) -> T:
    return f()


# --- rtnetlink ----------------------------------------------------------------

NETLINK_ROUTE = 0
RTMGRP_LINK = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTATTR = struct.Struct("=HH")
_NLA_TYPE_MASK = 0x3FFF


def _align(n: int) -> int:
    return (n + 3) & ~3


@dataclass(frozen=True, slots=True)
class LinkState:
    """One interface as rtnetlink reports it. C{up}: administratively up and
    with carrier (C{IFF_UP} and C{IFF_LOWER_UP})."""

    index: int
    name: str
    flags: int
    mac: str | None

    @property
    def up(self) -> bool:
        return self.flags & (IFF_UP | IFF_LOWER_UP) == IFF_UP | IFF_LOWER_UP


def linkDumpRequest(sequence: int) -> bytes:
    """An RTM_GETLINK dump request: every interface of the socket's namespace."""
    body = _IFINFOMSG.pack(_socket.AF_UNSPEC, 0, 0, 0, 0)
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0
    )
    return header + body


def parseLinkMessages(data: bytes) -> list[tuple[int, int, LinkState | None]]:
    """
    The netlink messages in one datagram, as (type, sequence, state): a
    L{LinkState} for RTM_NEWLINK and RTM_DELLINK, None for the rest
    (NLMSG_DONE ends a dump; NLMSG_ERROR answers a request).
    """
    messages: list[tuple[int, int, LinkState | None]] = []
    offset = 0
    size = len(data)
    while offset + _NLMSGHDR.size <= size:
        length, kind, _, sequence, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > size:
            break
        body = offset + _NLMSGHDR.size
        end = offset + length
        state = None
        if kind in (RTM_NEWLINK, RTM_DELLINK) and body + _IFINFOMSG.size <= end:
            _, _, index, flags, _ = _IFINFOMSG.unpack_from(data, body)
            name = ""
            mac = None
            position = body + _IFINFOMSG.size
            while position + _RTATTR.size <= end:
                attributeLength, attributeType = _RTATTR.unpack_from(data, position)
                if attributeLength < _RTATTR.size or position + attributeLength > end:
                    break
                value = data[position + _RTATTR.size:position + attributeLength]
                attributeType &= _NLA_TYPE_MASK
                if attributeType == IFLA_IFNAME:
                    name = value.split(b"\0", 1)[0].decode("utf-8", "replace")
                elif attributeType == IFLA_ADDRESS and len(value) == 6:
                    mac = value.hex(":")
                position += _align(attributeLength)
            state = LinkState(index, name, flags, mac)
        messages.append((kind, sequence, state))
        offset += _align(length)
    return messages


def _netlinkSocket(within: Within, groups: int) -> _socket.socket:
    sock: _socket.socket = within(
        lambda: _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, NETLINK_ROUTE)
    )
    try:
        sock.bind((0, groups))
    except BaseException:
        sock.close()
        raise
    return sock


def _dump(
    sock: _socket.socket, sequence: int, events: list[tuple[int, LinkState]] | None = None,
    timeout: float = 2.0,
) -> dict[int, LinkState]:
    """Every interface of C{sock}'s namespace, by index (blocking, briefly).
    Events that arrive meanwhile go to C{events}, to be applied after it: one
    may be newer than what the dump says."""
    blocking = sock.gettimeout()
    sock.settimeout(timeout)
    links: dict[int, LinkState] = {}
    try:
        sock.send(linkDumpRequest(sequence))
        while True:
            data = sock.recv(1 << 16)
            for kind, seq, state in parseLinkMessages(data):
                if seq != sequence:
                    if events is not None and state is not None:
                        events.append((kind, state))
                    continue
                if kind == NLMSG_DONE:
                    return links
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, _NLMSGHDR.size)[0]
                    if code:
                        raise OSError(code, f"RTM_GETLINK failed: {errorName(code)}")
                elif kind == RTM_NEWLINK and state is not None:
                    links[state.index] = state
    finally:
        sock.settimeout(blocking)



def readLinks(within: Within | None = None) -> dict[str, LinkState]:
    """Every interface of the namespace C{within} runs in (default: this
    thread's), by name: for the interfaces' MACs at start."""
    sock = _netlinkSocket(within or _direct, 0)
    try:
        return {state.name: state for state in _dump(sock, 1).values()}
    finally:
        sock.close()


@implementer(IReadDescriptor)
class _LinkMonitor:
    """Reads RTMGRP_LINK events in the reactor; C{changed(kind, state)} is
    called for each RTM_NEWLINK and RTM_DELLINK, C{resynced(states)} with a
    fresh dump when events were lost."""

    def __init__(
        self,
        reactor: IReactorFDSet,
        within: Within,
        changed: Callable[[int, LinkState], None],
        resynced: Callable[[dict[int, LinkState]], None],
    ) -> None:
        self.reactor = reactor
        self.within = within
        self.changed = changed
        self.resynced = resynced
        self.socket: _socket.socket | None = None
        self._sequence = 0

    def start(self) -> None:
        """Subscribe, then dump: no event falls between the two."""
        sock = self.socket = _netlinkSocket(self.within, RTMGRP_LINK)
        try:
            sock.setsockopt(_socket.SOL_SOCKET, _SO_RCVBUFFORCE, 1 << 20)
        except OSError:
            pass
        self._resync()
        sock.setblocking(False)
        self.reactor.addReader(self)

    def _resync(self) -> None:
        assert self.socket is not None
        self._sequence += 1
        events: list[tuple[int, LinkState]] = []
        links = _dump(self.socket, self._sequence, events)
        self.resynced(links)
        for kind, state in events:
            if kind in (RTM_NEWLINK, RTM_DELLINK):
                self.changed(kind, state)

    def stop(self) -> None:
        if self.socket is not None:
            self.reactor.removeReader(self)
            self.socket.close()
            self.socket = None

    def fileno(self) -> int:
        return -1 if self.socket is None else self.socket.fileno()

    def logPrefix(self) -> str:
        return "LinkMonitor"

    def doRead(self) -> None:
        sock = self.socket
        if sock is None:
            return
        drain(partial(sock.recv, 1 << 16), self._deliver, 64, self._readError,
              lambda: self.socket is sock, "rtnetlink")

    def _deliver(self, data: bytes) -> None:
        for kind, _, state in parseLinkMessages(data):
            if state is not None and kind in (RTM_NEWLINK, RTM_DELLINK):
                self.changed(kind, state)

    def _readError(self, error: OSError) -> bool:
        sock = self.socket
        if error.errno != errno.ENOBUFS or sock is None:
            log.warn("rtnetlink read failed: {error}", error=error)
            return False
        # Events were lost: ask for the whole picture again.
        log.info("rtnetlink events lost; reading every link again")
        sock.setblocking(True)
        try:
            self._resync()
        finally:
            sock.setblocking(False)
        return True

    def connectionLost(self, reason: Failure) -> None:
        self.stop()


# --- packet sockets ---------------------------------------------------------------


@implementer(IReadDescriptor)
class _AccessPort:
    """One access interface's AF_PACKET socket, read by the reactor."""

    #: Frames read per wakeup at most (as lmm.rawsock: drain a burst, let others run).
    maxReadsPerCall = 256
    #: Kernel receive buffer asked for.
    bufferSize = 2 * 1024 * 1024

    def __init__(
        self,
        owner: PacketAttachDetector,
        name: str,
        index: int,
        sock: _socket.socket,
    ) -> None:
        self.owner = owner
        self.name = name
        self.index = index
        self.socket: _socket.socket | None = sock
        # Reused for every read: a frame is copied out at its own length.
        self._buffer = bytearray(1 << 17)
        self._view = memoryview(self._buffer)

    def fileno(self) -> int:
        return -1 if self.socket is None else self.socket.fileno()

    def logPrefix(self) -> str:
        return f"AccessPort({self.name})"

    def doRead(self) -> None:
        sock = self.socket
        if sock is None:
            return
        drain(partial(sock.recvfrom_into, self._buffer), self._deliver, self.maxReadsPerCall,
              self._readError, lambda: self.socket is sock, f"a frame from {self.name}")

    def _deliver(self, received: tuple[int, Any]) -> None:
        size, address = received
        counters = self.owner.counters
        if address[2] == PACKET_OUTGOING:
            counters["access.outgoing-ignored"] += 1
            return
        counters["access.frames"] += 1
        self.owner.frameReceived(self.name, bytes(self._view[:size]))

    def _readError(self, error: OSError) -> bool:
        # ENETDOWN: the link went down (reported once); the rtnetlink monitor
        # tells the agent. Anything else: log, next wakeup.
        self.owner.counters["access.read-error." + errorName(error.errno or 0)] += 1
        if error.errno not in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
            log.warn("reading {interface} failed: {error}", interface=self.name, error=error)
        return False

    def send(self, frame: bytes) -> None:
        if self.socket is None:
            raise OSError(errno.ENODEV, "the access port is closed")
        self.socket.send(frame)

    def close(self) -> None:
        sock = self.socket
        if sock is not None:
            self.socket = None
            self.owner.reactor.removeReader(self)
            sock.close()

    def connectionLost(self, reason: Failure) -> None:
        self.close()


@dataclass
class _Link:
    """What the detector knows of one configured access interface."""

    name: str
    index: int | None = None
    up: bool = False
    mac: str | None = None
    port: _AccessPort | None = None


_DROPPED = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})


@implementer(IAccessLinks)
class PacketAttachDetector:
    """
    The C{packet} attach detector: an C{AF_PACKET} socket per access
    interface, rtnetlink for link state; any frame from an unknown MAC is an
    attach (the service feeds it to the agent, which decides).

    @param protocol: C{ETH_P_IPV6} (the default: what an IPv6 MS sends; no
        copy of the MPA's own output) or C{ETH_P_ALL}.
    @param promiscuous: put each access interface in promiscuous mode while
        its socket is open (frames to the virtual LMAP MAC must reach us).
    @param configureInterfaces: set C{INTERFACE_SYSCTLS} on each access
        interface when it is opened.
    """

    name = "packet"
    attachOnFrames = True

    def __init__(
        self,
        reactor: IReactorFDSet,
        protocol: int = ETH_P_IPV6,
        promiscuous: bool = True,
        configureInterfaces: bool = True,
    ) -> None:
        self.reactor = reactor
        self.protocol = protocol
        self.promiscuous = promiscuous
        self.configureInterfaces = configureInterfaces
        self.counters: Counter[str] = Counter()
        self.links: dict[str, _Link] = {}
        self.within: Within = _direct
        self.frameReceived: Callable[[str, bytes], None] = _ignoreFrame
        self.linkDown: Callable[[str], None] = _ignoreLink
        self.onAttach: Callable[[AttachEvent], None] = _ignoreEvent
        self.onDetach: Callable[[DetachEvent], None] = _ignoreEvent
        self._monitor: _LinkMonitor | None = None
        self.running = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} on {', '.join(self.links) or 'nothing'}>"

    # IAccessLinks

    def configure(
        self,
        interfaces: Iterable[str],
        frameReceived: Callable[[str, bytes], None],
        linkDown: Callable[[str], None],
        within: Within | None = None,
        virtualMac: str | None = None,
    ) -> None:
        self.links = {name: _Link(name) for name in interfaces}
        self.virtualMac = virtualMac
        self.frameReceived = frameReceived
        self.linkDown = linkDown
        self.within = within or _direct

    def start(
        self, onAttach: Callable[[AttachEvent], None], onDetach: Callable[[DetachEvent], None]
    ) -> None:
        self.onAttach = onAttach
        self.onDetach = onDetach
        self.running = True
        self._monitor = _LinkMonitor(self.reactor, self.within, self._changed, self._resynced)
        self._monitor.start()
        for link in self.links.values():
            if link.index is None:
                log.warn("access interface {interface} does not exist (yet): waiting for it",
                         interface=link.name)

    def stop(self) -> None:
        self.running = False
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None
        for link in self.links.values():
            if link.port is not None:
                link.port.close()
                link.port = None

    def sendFrame(self, interface: str, frame: bytes) -> bool:
        link = self.links.get(interface)
        port = None if link is None else link.port
        if port is None:
            self.counters["access.send-no-link"] += 1
            return False
        try:
            port.send(frame)
        except OSError as e:
            if e.errno in _DROPPED:
                self.counters["access.send-dropped"] += 1
            else:
                self.counters["access.send-failed." + errorName(e.errno or 0)] += 1
            return False
        self.counters["access.sent"] += 1
        return True

    def describe(self) -> list[dict[str, str]]:
        return [
            {"interface": link.name,
             "index": "-" if link.index is None else str(link.index),
             "state": "absent" if link.index is None else ("up" if link.up else "down"),
             "mac": link.mac or "-",
             "socket": "open" if link.port is not None else "closed"}
            for link in self.links.values()
        ]

    def interfaceMacs(self) -> dict[str, str]:
        return {link.name: link.mac for link in self.links.values() if link.mac}

    # link state

    def _resynced(self, states: Mapping[int, LinkState]) -> None:
        """A whole picture: open what appeared, close what went, note changes."""
        byName = {state.name: state for state in states.values()}
        for link in list(self.links.values()):
            state = byName.get(link.name)
            if state is None:
                if link.index is not None:
                    self._gone(link)
            else:
                self._update(link, state)

    def _changed(self, kind: int, state: LinkState) -> None:
        if not self.running:
            return
        # A rename or a move away shows up under the old index.
        for link in self.links.values():
            if link.index == state.index and (kind == RTM_DELLINK or state.name != link.name):
                self._gone(link)
        if kind == RTM_NEWLINK:
            named = self.links.get(state.name)
            if named is not None:
                self._update(named, state)

    def _update(self, link: _Link, state: LinkState) -> None:
        if link.index != state.index:
            if link.index is not None:
                self._gone(link)
            link.index = state.index
            link.up = False
            self.counters["access.link-appeared"] += 1
            self._open(link)
        if state.mac:
            link.mac = state.mac
        up = state.up
        if up and not link.up:
            self.counters["access.link-up"] += 1
            log.info("access link {interface} is up", interface=link.name)
        elif link.up and not up:
            self.counters["access.link-down"] += 1
            log.info("access link {interface} is down", interface=link.name)
            link.up = False
            self.linkDown(link.name)
        link.up = up

    def _gone(self, link: _Link) -> None:
        wasUp = link.up
        if link.port is not None:
            link.port.close()
            link.port = None
        link.index = None
        link.up = False
        self.counters["access.link-gone"] += 1
        log.info("access interface {interface} is gone", interface=link.name)
        if wasUp:
            self.counters["access.link-down"] += 1
            self.linkDown(link.name)

    def _open(self, link: _Link) -> None:
        assert link.index is not None
        if self.configureInterfaces:
            self._configureInterface(link.name)
        try:
            sock = self._packetSocket(link.name, link.index)
        except OSError as e:
            self.counters["access.open-failed"] += 1
            log.error("cannot open access interface {interface}: {error}",
                      interface=link.name, error=e)
            return
        link.port = _AccessPort(self, link.name, link.index, sock)
        self.reactor.addReader(link.port)
        log.info("reading frames on access interface {interface} (index {index}{promisc})",
                 interface=link.name, index=link.index,
                 promisc=", promiscuous" if self.promiscuous else "")

    def _packetSocket(self, name: str, index: int) -> _socket.socket:
        # Protocol 0 until bound: no frame of another interface slips in.
        sock: _socket.socket = self.within(
            lambda: _socket.socket(_socket.AF_PACKET, _socket.SOCK_RAW, 0)
        )
        try:
            sock.setblocking(False)
            try:
                sock.setsockopt(_socket.SOL_SOCKET, _SO_RCVBUFFORCE, _AccessPort.bufferSize)
            except OSError:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, _AccessPort.bufferSize)
            # Python looks the name up in the socket's own namespace.
            sock.bind((name, self.protocol))
            if self.promiscuous:
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                                _PACKET_MREQ.pack(index, PACKET_MR_PROMISC, 0, b""))
        except BaseException:
            sock.close()
            raise
        return sock

    def _configureInterface(self, name: str) -> None:
        for key, value in INTERFACE_SYSCTLS:
            path = f"/proc/sys/net/ipv6/conf/{name}/{key}"
            try:
                self.within(partial(_write, path, value))
            except OSError as e:
                log.warn("cannot set {path} to {value}: {error}", path=path, value=value, error=e)
        if self.virtualMac is not None:
            try:
                if self.within(partial(claimMac, name, self.virtualMac)):
                    log.info("access interface {interface} now has the virtual LMAP MAC {mac}",
                             interface=name, mac=self.virtualMac)
            except Exception as e:
                self.counters["access.mac-failed"] += 1
                log.error("cannot give {interface} the virtual LMAP MAC {mac}: {error}; frames "
                          "from Mobile Stations will not reach the tunnel",
                          interface=name, mac=self.virtualMac, error=e)


def claimMac(interface: str, mac: str) -> bool:
    """Give C{interface} the address C{mac}; False when it already had it."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=interface)
        if not found:
            raise OSError(errno.ENODEV, f"no interface {interface}")
        index = found[0]
        if ipr.get_links(index)[0].get_attr("IFLA_ADDRESS") == mac:
            return False
        try:
            ipr.link("set", index=index, address=mac)
        except NetlinkError as e:
            if e.code != errno.EBUSY:
                raise
            # Drivers without live address change want the link down for it.
            ipr.link("set", index=index, state="down")
            ipr.link("set", index=index, address=mac)
            ipr.link("set", index=index, state="up")
    return True


class ExplicitAttachDetector(PacketAttachDetector):
    """
    The C{explicit} attach detector: the access links of L{PacketAttachDetector},
    but only an access point or controller says who attaches and leaves (the
    control channel's C{attach} and C{detach}, or L{attach} and L{detach}). A
    frame from a MAC the agent does not know is dropped (counted as
    C{frame.unattached}).
    """

    name = "explicit"
    attachOnFrames = False

    def attach(self, event: AttachEvent) -> None:
        self.counters["explicit.attach"] += 1
        self.onAttach(event)

    def detach(self, event: DetachEvent) -> None:
        self.counters["explicit.detach"] += 1
        self.onDetach(event)


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _ignoreFrame(interface: str, frame: bytes) -> None:
    pass


def _ignoreLink(interface: str) -> None:
    pass


def _ignoreEvent(event: object) -> None:
    pass


# --- backend factories ------------------------------------------------------------

PACKET_SETTINGS = [
    Setting("protocol", config.oneOf(*_PROTOCOLS), "ipv6",
            "frames read: ipv6 (ETH_P_IPV6) or all (ETH_P_ALL)"),
    Setting("promiscuous", config.boolean, True,
            "promiscuous mode on access interfaces while the MPA reads them"),
    Setting("configure_interfaces", config.boolean, True,
            "set accept_ra, autoconf, accept_redirects to 0 on access interfaces"),
]


def _packetValues(label: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    values = config.parseDocument(label, settings, PACKET_SETTINGS)
    return {"protocol": _PROTOCOLS[values["protocol"]], "promiscuous": values["promiscuous"],
            "configureInterfaces": values["configure_interfaces"]}


def packetBackend(settings: Mapping[str, Any], reactor: IReactor) -> PacketAttachDetector:
    """Build the C{packet} detector; keys in L{PACKET_SETTINGS}."""
    return PacketAttachDetector(reactor, **_packetValues("packet attach settings", settings))


def explicitBackend(settings: Mapping[str, Any], reactor: IReactor) -> ExplicitAttachDetector:
    """Build the C{explicit} detector; keys in L{PACKET_SETTINGS}."""
    return ExplicitAttachDetector(reactor, **_packetValues("explicit attach settings", settings))
