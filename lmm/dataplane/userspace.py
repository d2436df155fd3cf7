"""
RFC 2473 in the daemon: the C{userspace} backend, for kernels with neither
seg6 nor ip6tnl. Needs TUN (C{/dev/net/tun}) and raw IPv6 sockets.

The kernel routes what enters the tunnel into a TUN device (C{interface},
"lmmtun0", MTU C{mtu}); the backend reads each packet, finds its binding (by
destination at the LMAP, by source at the MPA: a dict lookup for a /128, the
longest matching prefix otherwise, such as the rfc5213 profile's per-MS /64,
RFC 5213 6.10) and sends it to the peer on a raw socket of protocol 41 bound
to the tunnel end: the kernel puts the outer header in front (source the
tunnel end, next header 41, hop limit C{hop_limit}). What the raw socket
receives is the inner packet (the kernel strips the outer header); if it
comes from the peer its inner addresses name, the backend writes it to the
TUN device and the kernel routes it on. A protocol-41 packet that no raw
socket reads draws a Parameter Problem, so the socket stays open as long as
the backend runs.

Routes and rules (protocol 0x4e by default): at the LMAP C{MOBILE/LEN dev
lmmtun0 metric 78} in the main table; at the MPA, per peer a table (0x4e01...)
with C{default dev lmmtun0}, per visitor C{pref 1078 from MOBILE/LEN iif ACCESS
lookup that table} and C{MOBILE/LEN dev ACCESS metric 78} (MOBILE/LEN: a /128
address in the draft profile, the MS's home network prefix in the rfc5213
profile). The TUN device and the routes through it go when the process does;
the rules are found and removed by the next run.

Packets held for a visitor about to be carried (issue 15): at a handover the
LMAP points the MS's route at the new MPA when it answers the PBU, a
millisecond or two before the new MPA has its visitor's binding. A packet
from a peer for an inner destination this MPA does not carry yet is held (at
most C{hold} seconds, 32 per destination, 256 destinations, 1 MiB in all)
and written out the moment a binding for that destination with that peer is
installed; what is not claimed in time is dropped (counted: C{held},
C{heldDelivered}, C{heldExpired}). A peer's socket stays open when its last binding goes, so
that the next visitor's first packets from it find one (and no Parameter
Problem goes back); an MPA opens its LMAP's at start (C{prepare}'s peers), for
the first handover to it; every socket closes when the backend stops.

A registering visitor's uplink (issue 15): at an MPA, C{prepare}'s access
links each get a rule after every visitor rule (C{pref 32765 iif ACCESS
lookup 0x4e00}, the first of the backend's tables, which holds C{default dev
lmmtun0}), so that what an MS sends from a global address before its binding
is installed reaches the TUN device too. There it is held by source (at most
C{hold} seconds, 32 per source, 256 sources, in the same 1 MiB) and sent up
the tunnel the moment that source's binding is installed: the packets an MS
sends at a new MPA between its attach and the PBA are not lost
(C{heldUplink}, C{heldUplinkSent}, C{heldUplinkExpired}). A source that is
never registered is never forwarded: its packets go when the hold does.

A departing visitor's downlink (issue 15; RFC 5949's reactive mode): at an
MPA, L{UserspaceDataPlane.holdDownlink} keeps what the LMAP tunnels to a
visitor its base station reported gone (at most 256 packets a visitor, in
the same 1 MiB), and L{UserspaceDataPlane.releaseDownlink} either delivers
it (the MS came back) or sends it back up the tunnel to the LMAP (a
handover's revocation came: C{handedBack}); removing the binding drops it.
Without a detach report (nothing held), the hand-back is copies of what was
delivered to the visitor since it was last heard from (its last packet
through the tunnel), at most C{resend} seconds back (0.1; the last 1,024
packets delivered, all visitors together: C{resent}): the packets the MS may
have left before receiving; one it did receive arrives twice. After a report
no copies go: the report is when the MS left, and what was delivered before
it, the MS had.
At the LMAP, a packet from a peer for a mobile that peer carried until
less than C{HAND_BACK_WINDOW} seconds ago, and another peer carries now,
is sent on to that peer (C{handedOver}), not refused: the previous MPA's
hand-back reaches the new one.

MTU: the TUN device's MTU is the tunnel's; the kernel answers a packet too big
for it with a Packet Too Big.

Checksums: a tunnel packet that crossed a veth or was merged by GRO reaches
the raw socket with its inner TCP or UDP checksum left partial (the kernel
keeps "to be completed" beside the packet, which a raw socket does not
pass on), and merged ones longer than the MTU. The TUN device is opened with
a virtio-net header (C{IFF_VNET_HDR}): a packet whose checksum field holds
just the pseudo-header sum -- a partial one -- is written asking the kernel to
complete it, and to segment it if it is a merged TCP packet over the MTU. A
complete checksum is left alone (a corrupted packet is not made valid).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct
import time
from collections import deque
from functools import partial
from typing import Any, Callable, Mapping, Sequence

from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

from lmm import config
from lmm.dataplane.common import (
    AF_INET6,
    IPPROTO_IPV6,
    DataPlaneError,
    KernelLacks,
    NetlinkDataPlane,
    Peer,
    Tags,
    commonSchema,
    log,
    normal,
    packed,
    readSettings,
    tagsFrom,
)
from lmm.interfaces import IReactor
from lmm.reader import drain, stopOnError
from lmm.tunnel import ROLE_LMAP, ROLE_MPA, TunnelBinding

__all__ = ["DEFAULTS", "LACKS_TUN", "UserspaceDataPlane", "userspaceBackend"]

DEFAULTS = Tags(protocol=0x4E, table=0x4E00, priority=1078, metric=78)

LACKS_TUN = "kernel lacks TUN (CONFIG_TUN) or /dev/net/tun is missing: use the seg6 backend"

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_IFF_VNET_HDR = 0x4000
_SO_SNDBUFFORCE = 32
_SO_RCVBUFFORCE = 33
_BUFFER = 4 * 1024 * 1024
_MAX_PACKET = 65536
_AGAIN = (BlockingIOError, InterruptedError)

# struct virtio_net_hdr (no mergeable buffers), in host byte order.
_VNET = struct.Struct("=BBHHHH")
_VNET_SIZE = _VNET.size
_PLAIN = bytes(_VNET_SIZE)
_NEEDS_CSUM = 1
_GSO_TCPV6 = 4
_CHECKSUM_FIELD = {6: 16, 17: 6}  # TCP, UDP: the checksum's offset in their header


def completion(packet: bytes, mtu: int) -> tuple[bytes, bytes]:
    """
    The virtio-net header and the packet to write to the TUN device for a
    decapsulated IPv6 packet: a partial TCP or UDP checksum (the field holds
    the pseudo-header sum, RFC 8200 8.1) is left to the kernel to complete,
    and a TCP packet over C{mtu} (GRO's) to segment; anything else is written
    as it is.
    """
    field = _CHECKSUM_FIELD.get(packet[6]) if len(packet) > 47 else None
    if field is None or len(packet) < 42 + field:
        return _PLAIN, packet
    length = len(packet) - 40
    # One's complement sums are sums modulo 0xffff: 2**16 is 1 modulo 0xffff.
    pseudo = (int.from_bytes(packet[8:40], "big") + length + packet[6]) % 0xFFFF
    at = 40 + field
    if (packet[at] << 8 | packet[at + 1]) % 0xFFFF != pseudo:
        return _PLAIN, packet
    if packet[6] == 6 and len(packet) > mtu:
        header = (packet[52] >> 4) * 4
        return _VNET.pack(_NEEDS_CSUM, _GSO_TCPV6, 40 + header, mtu - 40 - header, 40,
                          field), packet
    return _VNET.pack(_NEEDS_CSUM, 0, 0, 0, 40, field), packet


def _network(binding: TunnelBinding) -> int:
    """A prefix binding's network, as the number L{UserspaceDataPlane._prefixMatch} compares."""
    return int(ipaddress.IPv6Network((binding.mobileAddress, binding.prefixLength),
                                     strict=False).network_address)


@implementer(IReadDescriptor)
class _Reader:
    """Something the reactor reads for the backend: the TUN device or a peer's socket."""

    def __init__(self, fd: int, read: Callable[[], None], name: str,
                 lost: Callable[[], None] | None = None) -> None:
        self.fd = fd
        self.read = read
        self.name = name
        self.lost = lost

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> None:
        self.read()

    def logPrefix(self) -> str:
        return self.name

    def connectionLost(self, reason: Any) -> None:
        # The reactor dropped it (EPOLLERR with nothing to read): its owner decides.
        if self.lost is not None:
            self.lost()


#: userspace backend's C{hold} default, seconds: how long a packet waits for
#: the binding of its inner destination (the module docstring).
HOLD = 0.2
#: The access links' rule into the hold table: after every visitor rule of any
#: backend (theirs are 2-32765, 1076-1078 by default), before the main table's 32766.
UPLINK_HOLD_PRIORITY = 32765
_HELD_PER_DESTINATION = 32
_HELD_DESTINATIONS = 256
_HELD_BYTES = 1 << 20  # all destinations together
#: Peers whose sockets stay open without a binding; beyond, the oldest closes.
_IDLE_PEERS = 64
#: Packets kept for one departing visitor (holdDownlink), in the same _HELD_BYTES.
_DEPARTING_PACKETS = 256
#: Seconds after a mobile's LMAP binding left a peer that the LMAP sends on,
#: to the peer that carries it now, what that previous peer hands back.
HAND_BACK_WINDOW = 2.0
_MOVES_KEPT = 1 << 16  # the most recent moves remembered for that, at most
#: userspace backend's C{resend} default, seconds: how far back a hand-back
#: reaches into what was delivered after the visitor was last heard from.
RESEND = 0.1
_DELIVERED_KEPT = 1024  # packets delivered to visitors, the most recent, for that
_HEARD_KEPT = 1 << 16  # visitors' source addresses last heard from, at most


class UserspaceDataPlane(NetlinkDataPlane):
    """
    The C{userspace} backend (see the module docstring).

    Each peer has its raw socket, bound to the tunnel end and connected to
    the peer: the kernel hands it only that peer's packets, and sending and
    receiving need no address. A protocol-41 packet from a node that is no
    peer finds no socket and draws the kernel's Parameter Problem.
    """

    name = "userspace"

    def __init__(self, reactor: IReactor, netlink: Any, tags: Tags = DEFAULTS,
                 interface: str = "lmmtun0", mtu: int = 1460, hopLimit: int = 64,
                 batch: int = 256, leftovers: str = "clean", forwarding: bool = True,
                 hold: float = HOLD, resend: float = RESEND) -> None:
        super().__init__(reactor, netlink, tags, leftovers, forwarding)
        self.hold = hold
        self.resend = resend
        # MPA: the last packets delivered to visitors (when, destination, packet), and
        # when each visitor source address was last heard (monotonic seconds).
        self._delivered: deque[tuple[float, bytes, bytes]] = deque(maxlen=_DELIVERED_KEPT)
        self._heard: dict[bytes, float] = {}
        self.resent = 0
        # Inner destination -> (when the first came, the peer's socket, the packets).
        self._held: dict[bytes, tuple[float, socket.socket, list[bytes]]] = {}
        self._idlePeers: dict[tuple[str, str], None] = {}  # oldest first
        self.held = self.heldDelivered = self.heldExpired = 0
        self._heldBytes = 0
        # MPA: departing visitors' downlink (network, length, the LMAP's socket, packets).
        self._departing: list[tuple[int, int, socket.socket, list[bytes]]] = []
        # LMAP: (network, length) -> the peer's socket it left and when (hand-back).
        self._movedFrom: dict[tuple[int, int], tuple[socket.socket, float]] = {}
        self.heldDeparting = self.handedBack = self.handedOver = 0
        # MPA: what registering visitors sent, by source (when the first came, packets
        # as read, with their virtio-net header); the access links routed here.
        self._heldUplink: dict[bytes, tuple[float, list[bytes]]] = {}
        self.heldUplink = self.heldUplinkSent = self.heldUplinkExpired = 0
        self.accessLinks: tuple[str, ...] = ()
        self.interface = interface
        self.mtu = mtu
        self.hopLimit = hopLimit
        self.batch = batch
        self.tun = -1
        self.tunIndex: int | None = None
        self._tunReader: _Reader | None = None
        self._peerSockets: dict[tuple[str, str], tuple[socket.socket, _Reader]] = {}
        # Encapsulation: inner destination (LMAP) or source (MPA) -> the peer's socket.
        self._toMobile: dict[bytes, socket.socket] = {}
        self._fromVisitor: dict[bytes, socket.socket] = {}
        self._toPrefix: list[tuple[int, int, socket.socket]] = []
        # An MPA visitor's whole home network prefix (the rfc5213 profile), by source.
        self._fromVisitorPrefix: list[tuple[int, int, socket.socket]] = []
        # Decapsulation: the peer's socket each inner source (LMAP) or destination (MPA)
        # may come in on.
        self._fromMobileVia: dict[bytes, socket.socket] = {}
        self._toVisitorVia: dict[bytes, socket.socket] = {}
        self._fromPrefixVia: list[tuple[int, int, socket.socket]] = []
        self._toVisitorPrefixVia: list[tuple[int, int, socket.socket]] = []
        self.encapsulated = 0
        self.decapsulated = 0
        self._tunError = stopOnError(f"the userspace backend's {interface}")
        self._rawError = stopOnError("a userspace backend's peer socket")
        # Read from the TUN device for no binding (the kernel's two MLD reports when it
        # comes up, packets for a binding just removed).
        self.unrouted = 0
        self.refused = 0  # from a peer, for a mobile address it does not serve
        self.sendDrops = 0
        self.peerErrors = 0  # ICMPv6 errors a peer's socket was given (_peerError)

    # --- start and stop --------------------------------------------------------------

    def probe(self) -> None:
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise KernelLacks(f"{LACKS_TUN} ({e})") from None
        os.close(fd)

    def adopt(self) -> None:
        # The TUN device that carried a previous run's packets went with that process.
        log.info("userspace backend: nothing to adopt (a previous run's TUN device and its "
                 "routes went with it); cleaning what is left")
        self.clean("a previous run")

    def started(self) -> None:
        assert self.namespace is not None
        self.tun = self.namespace.call(self._openTun)
        try:
            self.namespace.sysctl(f"net.ipv6.conf.{self.interface}.addr_gen_mode", 1)
            self.tunIndex = self.interfaceIndex(self.interface)
            self.ipr.link("set", index=self.tunIndex, mtu=self.mtu, txqlen=1000, state="up")
        except BaseException:
            os.close(self.tun)
            self.tun = -1
            raise
        self._tunReader = _Reader(self.tun, self._tunReadable, f"userspace {self.interface}")
        self.reactor.addReader(self._tunReader)
        log.info("userspace backend: TUN device {interface} (MTU {mtu}) up", mtu=self.mtu,
                 interface=self.interface)

    def _openTun(self) -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            request = struct.pack("16sH22x", self.interface.encode(),
                                  _IFF_TUN | _IFF_NO_PI | _IFF_VNET_HDR)
            fcntl.ioctl(fd, _TUNSETIFF, request)
        except OSError as e:
            os.close(fd)
            raise DataPlaneError(f"userspace backend: cannot make TUN device "
                                 f"{self.interface!r}: {e} (another backend's?)") from None
        return fd

    def close(self) -> None:
        for key in list(self._peerSockets):
            self._closeSocket(key)
        if self._tunReader is not None:
            self.reactor.removeReader(self._tunReader)
            self._tunReader = None
        if self.tun >= 0:
            os.close(self.tun)  # the device goes, and every route through it
            self.tun = -1
        super().close()

    def statistics(self) -> dict[str, int]:
        return {"encapsulated": self.encapsulated, "decapsulated": self.decapsulated,
                "unrouted": self.unrouted, "refused": self.refused,
                "sendDrops": self.sendDrops, "peerErrors": self.peerErrors,
                "held": self.held, "heldDelivered": self.heldDelivered,
                "heldExpired": self.heldExpired, "heldDeparting": self.heldDeparting,
                "handedBack": self.handedBack, "handedOver": self.handedOver,
                "resent": self.resent, "heldUplink": self.heldUplink,
                "heldUplinkSent": self.heldUplinkSent,
                "heldUplinkExpired": self.heldUplinkExpired}

    # --- peers ----------------------------------------------------------------------

    def openPeer(self, peer: Peer) -> None:
        if self.tunIndex is None:
            raise DataPlaneError("userspace backend: no TUN device")
        key = (peer.local, peer.remote)
        if key in self._peerSockets:  # open since its last binding went
            del self._idlePeers[key]
            peer.route = {"oif": self.tunIndex}
            return
        assert self.namespace is not None
        sock = self.namespace.call(socket.socket, AF_INET6, socket.SOCK_RAW, IPPROTO_IPV6)
        try:
            sock.bind((peer.local, 0))
            sock.connect((peer.remote, 0))
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, self.hopLimit)
            for force, plain in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF),
                                 (_SO_SNDBUFFORCE, socket.SO_SNDBUF)):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, force, _BUFFER)
                except OSError:
                    sock.setsockopt(socket.SOL_SOCKET, plain, _BUFFER)
        except OSError as e:
            sock.close()
            raise DataPlaneError(f"userspace backend: cannot tunnel from {peer.local} to "
                                 f"{peer.remote}: {e}") from None
        reader = _Reader(sock.fileno(), lambda: self._rawReadable(sock),
                         f"userspace {peer.remote}", lambda: self._peerError(sock))
        self._peerSockets[(peer.local, peer.remote)] = (sock, reader)
        self.reactor.addReader(reader)
        peer.route = {"oif": self.tunIndex}

    def preparePeer(self, local: str, remote: str) -> None:
        # Its socket opened and left idle, reading: a handover's first packets from
        # it, sent before this node's first binding with it, are held, not refused
        # with a Parameter Problem.
        if (local, remote) not in self._peerSockets:
            peer = Peer(local, remote)
            self.openPeer(peer)
            self.closePeer(peer)

    def _peerError(self, sock: socket.socket) -> None:
        """
        An ICMPv6 error from the peer (a Parameter Problem while its daemon
        restarts: no protocol-41 socket there) sets the connected socket's
        error, and with nothing queued the reactor sees only EPOLLERR and
        drops the reader: the peer's packets would queue unread for ever.
        The error is taken (SO_ERROR clears it), counted, and the socket
        read again while it is the peer's.
        """
        for peerSocket, reader in self._peerSockets.values():
            if peerSocket is sock and sock.fileno() >= 0:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                self.peerErrors += 1
                log.debug("userspace backend: {peer} answered with an error ({error}); "
                          "still reading", peer=reader.name, error=os.strerror(code))
                self.reactor.addReader(reader)
                return

    def closePeer(self, peer: Peer) -> None:
        key = (peer.local, peer.remote)
        if self.stopped or key not in self._peerSockets:
            self._closeSocket(key)
            return
        # Kept open, reading: the next binding with this peer takes it again.
        self._idlePeers[key] = None
        while len(self._idlePeers) > _IDLE_PEERS:
            oldest = next(iter(self._idlePeers))
            del self._idlePeers[oldest]
            self._closeSocket(oldest)

    def _closeSocket(self, key: tuple[str, str]) -> None:
        self._idlePeers.pop(key, None)
        found = self._peerSockets.pop(key, None)
        if found is not None:
            sock, reader = found
            self.reactor.removeReader(reader)
            sock.close()

    def prepareAccess(self, interfaces: Sequence[str]) -> None:
        """The hold table's route into the TUN device and each access link's
        rule into it (the module docstring); nothing if nothing is held."""
        if self.hold <= 0 or self.tunIndex is None:
            return
        self.route("replace", dict(family=AF_INET6, dst="::", dst_len=0, table=self.tags.table,
                                   proto=self.tags.protocol, oif=self.tunIndex))
        for name in interfaces:
            self.addRule(dict(family=AF_INET6, priority=UPLINK_HOLD_PRIORITY, iifname=name,
                              table=self.tags.table, protocol=self.tags.protocol))
        self.accessLinks = tuple(interfaces)
        log.info("userspace backend: what visitors on {links} send before their binding is "
                 "held up to {hold} s", links=", ".join(interfaces), hold=self.hold)

    def _exactTables(self, binding: TunnelBinding) -> tuple[dict[bytes, socket.socket],
                                                             dict[bytes, socket.socket]] | None:
        """Where a /128 binding goes (encapsulation, decapsulation), or None:
        a prefix, in L{_prefixTables}."""
        if binding.prefixLength != 128:
            return None
        if binding.role == ROLE_LMAP:
            return self._toMobile, self._fromMobileVia
        return self._fromVisitor, self._toVisitorVia

    def _prefixTables(self, binding: TunnelBinding) -> tuple[str, str]:
        """The attributes holding a prefix binding (encapsulation, decapsulation)."""
        if binding.role == ROLE_LMAP:
            return "_toPrefix", "_fromPrefixVia"
        return "_fromVisitorPrefix", "_toVisitorPrefixVia"

    def installed(self, binding: TunnelBinding, peer: Peer) -> None:
        sock = self._peerSockets[(peer.local, peer.remote)][0]
        tables = self._exactTables(binding)
        if tables is not None:
            mobile = packed(binding.mobileAddress)
            tables[0][mobile] = tables[1][mobile] = sock
        else:
            network = _network(binding)
            for name in self._prefixTables(binding):
                entries: list[tuple[int, int, socket.socket]] = getattr(self, name)
                entries.append((network, binding.prefixLength, sock))
                entries.sort(key=lambda entry: -entry[1])  # longest prefix first
        if binding.role == ROLE_MPA:
            if self._held:
                self._release(binding, sock)
            if self._heldUplink:
                self._releaseUplink(binding, sock)

    def _releaseUplink(self, binding: TunnelBinding, sock: socket.socket) -> None:
        """Send up C{binding}'s tunnel what its visitor sent before it was installed."""
        covering = [(_network(binding), binding.prefixLength, sock)]
        now = self.reactor.seconds()
        for source, (first, packets) in list(self._heldUplink.items()):
            if self._prefixMatch(covering, source) is None:
                continue
            self._dropUplink(source)
            if self._stale(first, now):
                self.heldUplinkExpired += len(packets)
                continue
            for packet in packets:
                self._send(sock, packet)
            self.heldUplinkSent += len(packets)

    def _holdUplink(self, source: bytes, packet: bytes) -> bool:
        """Keep C{packet}, read from the TUN device from a C{source} no binding
        carries, for that source's binding, if there is room; whether it was kept."""
        if self.hold <= 0 or not self.accessLinks or source[0] == 0xFF or (
                source[0] == 0xFE and source[1] & 0xC0 == 0x80) or not any(source):
            return False  # multicast, link-local, unspecified: never a visitor's uplink
        now = self.reactor.seconds()
        found = self._heldUplink.get(source)
        if found is not None and self._stale(found[0], now):
            self.heldUplinkExpired += len(found[1])
            self._dropUplink(source)
            found = None
        if found is None:
            if len(self._heldUplink) >= _HELD_DESTINATIONS:
                for other, (first, packets) in list(self._heldUplink.items()):
                    if self._stale(first, now):
                        self.heldUplinkExpired += len(packets)
                        self._dropUplink(other)
                if len(self._heldUplink) >= _HELD_DESTINATIONS:
                    return False
            found = self._heldUplink[source] = (now, [])
        if len(found[1]) >= _HELD_PER_DESTINATION or \
                self._heldBytes + len(packet) > _HELD_BYTES:
            if not found[1]:
                del self._heldUplink[source]
            return False
        found[1].append(packet)
        self._heldBytes += len(packet)
        self.heldUplink += 1
        return True

    def _dropUplink(self, source: bytes) -> None:
        _, packets = self._heldUplink.pop(source)
        self._heldBytes -= sum(len(p) for p in packets)

    def _release(self, binding: TunnelBinding, sock: socket.socket) -> None:
        """Write out what was held for C{binding}'s addresses from its peer
        (its route is in the kernel already: L{_install})."""
        covering = [(_network(binding), binding.prefixLength, sock)]
        now = self.reactor.seconds()
        for destination, (first, via, packets) in list(self._held.items()):
            if via is not sock or self._prefixMatch(covering, destination) is None:
                continue
            self._drop(destination)
            if self._stale(first, now):
                self.heldExpired += len(packets)
                continue
            for packet in packets:
                self._deliver(packet)
            self.heldDelivered += len(packets)

    def _hold(self, sock: socket.socket, packet: bytes) -> bool:
        """Keep C{packet} (from C{sock}'s peer) for its inner destination's
        binding, if there is room; whether it was kept."""
        if self.hold <= 0 or len(packet) < 40 or packet[0] >> 4 != 6:
            return False
        now = self.reactor.seconds()
        destination = packet[24:40]
        found = self._held.get(destination)
        if found is not None and (found[1] is not sock or self._stale(found[0], now)):
            self.heldExpired += len(found[2])
            self._drop(destination)
            found = None
        if found is None:
            if len(self._held) >= _HELD_DESTINATIONS:
                self._expireHeld(now)
                if len(self._held) >= _HELD_DESTINATIONS:
                    return False
            found = self._held[destination] = (now, sock, [])
        if len(found[2]) >= _HELD_PER_DESTINATION or \
                self._heldBytes + len(packet) > _HELD_BYTES:
            if not found[2]:
                del self._held[destination]
            return False
        found[2].append(packet)
        self._heldBytes += len(packet)
        self.held += 1
        return True

    def _drop(self, destination: bytes) -> None:
        _, _, packets = self._held.pop(destination)
        self._heldBytes -= sum(len(p) for p in packets)

    def _stale(self, first: float, now: float) -> bool:
        """Whether what was first held at C{first} has waited past the hold."""
        return first < now - self.hold

    def _expireHeld(self, now: float) -> None:
        for destination, (first, _, packets) in list(self._held.items()):
            if self._stale(first, now):
                self.heldExpired += len(packets)
                self._drop(destination)

    def uninstalled(self, binding: TunnelBinding) -> None:
        # Packets the kernel queued before the routes went (a swap, a handover) still
        # travel: make before break holds for what is in flight too.
        if self.tun >= 0:
            self._tunReadable()
        found = self._peerSockets.get((normal(binding.localEndpoint),
                                       normal(binding.remoteEndpoint)))
        if found is not None:
            self._rawReadable(found[0])
        key = (_network(binding), binding.prefixLength)
        kept = self._stopHolding(key)
        if kept is not None:  # departing, and neither handed back nor delivered
            self.heldExpired += len(kept[1])
        if binding.role == ROLE_LMAP and found is not None:
            self._moved(key, found[0])
        tables = self._exactTables(binding)
        if tables is not None:
            mobile = packed(binding.mobileAddress)
            tables[0].pop(mobile, None)
            tables[1].pop(mobile, None)
            return
        for name in self._prefixTables(binding):
            setattr(self, name, [e for e in getattr(self, name) if (e[0], e[1]) != key])

    # --- a departing visitor's downlink (lmm.actions.HoldDownlink) -------------------

    def holdDownlink(self, binding: TunnelBinding) -> bool:
        """From now on, what the peer of MPA binding C{binding} tunnels to its
        visitor is kept (L{releaseDownlink}); whether it will be."""
        found = self._peerSockets.get((normal(binding.localEndpoint),
                                       normal(binding.remoteEndpoint)))
        if binding.role != ROLE_MPA or found is None or self.hold <= 0:
            return False
        key = (_network(binding), binding.prefixLength)
        if not self._isDeparting(key):
            self._departing.append((*key, found[0], []))
        return True

    def releaseDownlink(self, binding: TunnelBinding, handBack: bool) -> None:
        """What was kept for C{binding}'s visitor: with C{handBack}, sent back
        to the peer (after what the peer's socket holds already, which would
        be kept too, and, when nothing was held -- no report --, after copies
        of what was delivered to the visitor since it was last heard from,
        L{resend}), else delivered; and nothing is kept from now on."""
        key = (_network(binding), binding.prefixLength)
        found = self._peerSockets.get((normal(binding.localEndpoint),
                                       normal(binding.remoteEndpoint)))
        if handBack and found is not None:
            self._rawReadable(found[0])
            if not self._isDeparting(key):
                # No report: what the MS may have missed. After a report, none:
                # what was delivered before it, the MS had (a copy would arrive
                # twice: with the MS pinging, every copy was a reply it had had).
                self._resendUnheard(key, found[0])
        kept = self._stopHolding(key)
        if kept is None:
            return
        sock, packets = kept
        for packet in packets:
            if not handBack:
                self._deliver(packet)
                self.heldDelivered += 1
            elif self._sendTo(sock, packet):
                self.handedBack += 1

    def _resendUnheard(self, key: tuple[int, int], sock: socket.socket) -> None:
        """Copies of the packets delivered to C{key}'s visitor since it was
        last heard from, at most L{resend} seconds back, up C{sock}'s tunnel."""
        if self.resend <= 0 or not self._delivered:
            return
        network, length = key
        shift = 128 - length
        heard = max((when for source, when in self._heard.items()
                     if int.from_bytes(source, "big") >> shift == network >> shift),
                    default=0.0)
        since = max(heard, time.monotonic() - self.resend)
        for when, destination, packet in self._delivered:
            if when > since and int.from_bytes(destination, "big") >> shift == network >> shift \
                    and self._sendTo(sock, packet):
                self.resent += 1

    def _sendTo(self, sock: socket.socket, packet: bytes) -> bool:
        """C{packet} into C{sock}'s tunnel as it is (a hand-back or what the LMAP
        sends on); whether it went (else counted in C{sendDrops})."""
        try:
            sock.send(packet)
        except OSError:
            self.sendDrops += 1
            return False
        return True

    def _isDeparting(self, key: tuple[int, int]) -> bool:
        """Whether C{key}'s visitor's downlink is being held (L{holdDownlink})."""
        return any((network, length) == key for network, length, _, _ in self._departing)

    def _stopHolding(self, key: tuple[int, int]) -> tuple[socket.socket, list[bytes]] | None:
        for i, (network, length, sock, packets) in enumerate(self._departing):
            if (network, length) == key:
                del self._departing[i]
                self._heldBytes -= sum(len(p) for p in packets)
                return sock, packets
        return None

    def _keepDeparting(self, sock: socket.socket, packet: bytes) -> bool:
        """Whether C{packet} from C{sock} is for a departing visitor (kept,
        or dropped if there is no more room)."""
        value = int.from_bytes(packet[24:40], "big")
        for network, length, via, packets in self._departing:
            if via is sock and value >> (128 - length) == network >> (128 - length):
                if len(packets) < _DEPARTING_PACKETS and \
                        self._heldBytes + len(packet) <= _HELD_BYTES:
                    packets.append(packet)
                    self._heldBytes += len(packet)
                    self.heldDeparting += 1
                else:
                    self.heldExpired += 1
                return True
        return False

    def _moved(self, key: tuple[int, int], sock: socket.socket) -> None:
        """An LMAP binding for C{key} left the peer of C{sock}: what that peer
        hands back for it in the next L{HAND_BACK_WINDOW} seconds goes on."""
        moves = self._movedFrom
        now = self.reactor.seconds()
        moves.pop(key, None)
        moves[key] = (sock, now)
        for oldest, (_, when) in list(moves.items()):  # oldest first
            if when >= now - HAND_BACK_WINDOW and len(moves) <= _MOVES_KEPT:
                break
            del moves[oldest]

    def _handOver(self, sock: socket.socket, packet: bytes) -> bool:
        """Whether C{packet} from C{sock}'s peer was handed back for a mobile
        that peer carried until just now, and went on to the one carrying it."""
        destination = packet[24:40]
        target = self._toMobile.get(destination) or self._prefixMatch(self._toPrefix,
                                                                       destination)
        if target is None or target is sock:
            return False
        value = int.from_bytes(destination, "big")
        moved = self._movedFrom.get((value, 128))
        if moved is None or moved[0] is not sock:
            moved = next(((via, when) for (network, length), (via, when)
                          in self._movedFrom.items()
                          if length < 128 and via is sock
                          and value >> (128 - length) == network >> (128 - length)), None)
        if moved is None or moved[0] is not sock or \
                moved[1] < self.reactor.seconds() - HAND_BACK_WINDOW:
            return False
        if self._sendTo(target, packet):
            self.handedOver += 1
        return True

    # --- packets ---------------------------------------------------------------------

    def _tunReadable(self) -> None:
        """Encapsulate: TUN device -> the binding's peer."""
        fd = self.tun
        # A virtio-net header, all zero (no offloads asked), then the packet.
        drain(partial(os.read, fd, _VNET_SIZE + _MAX_PACKET), self._encapsulate, self.batch,
              self._tunError, lambda: self.tun == fd, f"userspace {self.interface}")

    def _encapsulate(self, packet: bytes) -> None:
        sock = self._toMobile.get(packet[34:50])
        if sock is None:
            source = packet[18:34]
            sock = self._fromVisitor.get(source) or self._prefixMatch(self._fromVisitorPrefix,
                                                                       source)
            if sock is not None:
                if self.resend > 0:
                    self._heardFrom(source)
            else:
                sock = self._prefixMatch(self._toPrefix, packet[34:50])
                if sock is None:
                    if not (self.accessLinks and self._holdUplink(source, packet)):
                        self.unrouted += 1
                    return
        self._send(sock, packet)

    def _send(self, sock: socket.socket, packet: bytes) -> None:
        """Send C{packet} as read from the TUN device (its virtio-net header
        first) up C{sock}'s tunnel."""
        try:
            sock.send(memoryview(packet)[_VNET_SIZE:])
        except OSError as e:
            if not isinstance(e, _AGAIN) and e.errno != errno.ENOBUFS:
                log.debug("userspace backend: sending failed: {error}", error=e)
            self.sendDrops += 1
        else:
            self.encapsulated += 1

    @staticmethod
    def _prefixMatch(prefixes: list[tuple[int, int, socket.socket]], address: bytes
                     ) -> socket.socket | None:
        if not prefixes or len(address) < 16:
            return None
        value = int.from_bytes(address, "big")
        for network, length, sock in prefixes:
            if value >> (128 - length) == network >> (128 - length):
                return sock
        return None

    def _rawReadable(self, sock: socket.socket) -> None:
        """Decapsulate: one peer's socket -> TUN device, for the mobile addresses it serves."""
        drain(partial(sock.recv, _MAX_PACKET), partial(self._decapsulate, sock), self.batch,
              self._rawError, lambda: sock.fileno() >= 0, "userspace peer socket")

    def _heardFrom(self, source: bytes) -> None:
        heard = self._heard
        if len(heard) >= _HEARD_KEPT and source not in heard:
            heard.clear()  # a visitor spraying addresses of its prefix: start again
        heard[source] = time.monotonic()

    def _decapsulate(self, sock: socket.socket, packet: bytes) -> None:
        if self._departing and len(packet) >= 40 and self._keepDeparting(sock, packet):
            return
        if len(packet) >= 40 and packet[0] >> 4 == 6:
            if (self._fromMobileVia.get(packet[8:24]) is sock
                    or self._prefixMatch(self._fromPrefixVia, packet[8:24]) is sock):
                self._deliver(packet)
                return
            destination = packet[24:40]
            if (self._toVisitorVia.get(destination) is sock
                    or self._prefixMatch(self._toVisitorPrefixVia, destination) is sock):
                self._deliver(packet)
                if self.resend > 0:
                    self._delivered.append((time.monotonic(), destination, packet))
                return
            if self._movedFrom and self._handOver(sock, packet):
                return
        if not self._hold(sock, packet):
            self.refused += 1

    def _deliver(self, packet: bytes) -> None:
        try:
            os.writev(self.tun, completion(packet, self.mtu))
        except OSError:
            self.sendDrops += 1
        else:
            self.decapsulated += 1


def userspaceBackend(settings: Mapping[str, Any], reactor: IReactor) -> UserspaceDataPlane:
    """
    The C{userspace} backend, started in the calling thread's network namespace.

    Settings: those of every backend (docs/dataplane.md) and C{interface}
    (the TUN device, "lmmtun0"), C{mtu} (1460), C{hop_limit} (64) and
    C{batch} (packets handled per wake-up and direction, 256), C{hold}
    (seconds a packet from a peer waits for its destination's binding, 0.2;
    0: none waits), C{resend} (how far back, in seconds, a hand-back copies
    what was delivered since the visitor was last heard from, 0.1; 0: none).
    """
    schema = commonSchema(DEFAULTS)
    schema["interface"] = (config.string, "lmmtun0")
    schema["mtu"] = (config.integer(1280, 65535), 1460)
    schema["hop_limit"] = (config.integer(1, 255), 64)
    schema["batch"] = (config.integer(1, 100000), 256)
    schema["hold"] = (config.number(0, 10), HOLD)
    schema["resend"] = (config.number(0, 10), RESEND)
    values = readSettings("userspace", settings, schema)
    if len(values["interface"]) > 15:
        raise ValueError("userspace backend: tunnel.options.interface: at most 15 characters")
    from pyroute2 import IPRoute

    plane = UserspaceDataPlane(reactor, IPRoute(), tagsFrom(values), values["interface"],
                               values["mtu"], values["hop_limit"], values["batch"],
                               values["leftovers"], values["forwarding"], values["hold"],
                               values["resend"])
    plane.start()
    return plane

