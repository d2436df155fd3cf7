"""
The MPA's DHCPv6 relay agent (draft-gundavelli-netlmm-mip6-proxy-00 section 6.3,
figure 9; RFC 8415 section 19) as a pure core: bytes and a clock in, actions
out. No sockets, no timers. The MPA's agent (L{lmm.mpa.agent}) holds it, feeds
it its visitors' client messages and the server's datagrams, turns its actions
into the agent's own, and calls L{RelayAgent.tick} at L{RelayAgent.nextDeadline};
the MPA's service owns the UDP port 547 socket (L{lmm.mpa.dhcprelay}).

How a request is tagged. A client message from a visitor is wrapped in a
Relay-Forward with hop-count 0, peer-address the client's (link-local) source
address, link-address L{linkAddressFor} the visitor's Local Network Prefix (its
Subnet-Router anycast address: inside the LNP, so the server picks the pool of
that LNP, and never a host's address), and an Interface-ID option: eight bytes
naming the visitor (four random per relay instance, four counting), which the
server copies into its Relay-Reply and the relay maps back to the visitor, its
access interface and its server. Only the message types a client sends are
relayed (RFC 8415 7.3); anything else from a client is counted and dropped, as
is a message that does not decode.

How an answer comes back. A Relay-Reply is accepted only from the server the
visitor's last request went to (any source when that was a multicast group),
with a known Interface-ID, and carrying an Advertise, Reply or Reconfigure. The
inner message goes to the Relay-Reply's peer-address on the visitor's
interface. A Reply assigning addresses (IA_NA, IA Address with a valid
lifetime over 0, no error status at the top, in the IA or in the address) gives
L{AddressAssigned} for each, a renewal's Reply too (the agent ignores an
address already registered); an IA Address with valid lifetime 0 gives
L{AddressReleased} (RFC 8415 18.2.10.1: the client stops using it), as does
the Reply to a Release or a Decline, for every address the client named.

An Advertise or Reply offering an address outside the visitor's LNP is
refused: counted, noted, and not forwarded. Forwarded, the MS would configure
an address the LMAP does not route and the MPA does not accept packets from;
dropped, the client retransmits and falls back to Solicit, and the operator
sees the misconfigured server in the counters and the log. An address with
valid lifetime 0 is being withdrawn and is not checked.

Retransmission is the client's job (RFC 8415 15): the relay keeps no state a
lost message would need. It does remember each request for
C{answerTimeout} seconds, by (visitor, transaction-id), to count and log a
server that does not answer, and to know what a Reply answers (a Release). A
client retransmission does not extend that time. When a Release goes
unanswered, the client stops using its addresses anyway (RFC 8415 18.2.7), so
the expiry gives L{AddressReleased} too.

The relay does not copy the server's Reconfigure authentication, rewrite
options, or rate-limit clients; the MPA's agent, which holds it, decides which
frames reach it, and takes the reasons of what it dropped (L{RelayAgent.takeDrops})
to log them.
"""

from __future__ import annotations

import os
import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from lmm import dhcp6
from lmm.actions import Note
from lmm.dhcp6 import (
    IANA,
    DHCPv6Error,
    Message,
    MessageType,
    RelayMessage,
    Status,
)
from lmm.inet import canonical

# --- actions ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendToServer:
    """Send the Relay-Forward C{payload} to C{server}, UDP port 547, from port 547."""

    server: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SendToClient:
    """Send the server's message C{payload} to C{clientAddress}, UDP port 546,
    from port 547, on access link C{interface}, where visitor C{visitorKey} is."""

    interface: str
    clientAddress: str
    visitorKey: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class AddressAssigned:
    """The DHCPv6 server gave C{address} to the visitor for C{validLifetime}
    seconds (0xffffffff: infinity); feed it to
    L{lmm.mpa.agent.MobilityProxyAgent.dhcpAddressAssigned}."""

    visitorKey: str
    address: str
    validLifetime: int


@dataclass(frozen=True, slots=True)
class AddressReleased:
    """The visitor stopped using C{address} (Release, Decline, or the server
    withdrew it)."""

    visitorKey: str
    address: str


RelayAction = SendToServer | SendToClient | AddressAssigned | AddressReleased | Note

#: What the relay core counts (the MPA shows them as C{relay.<name>}).
COUNTERS = {
    "client.relayed": "client messages relayed",
    "client.<type>": "client messages relayed, by type",
    "client.retransmitted": "client retransmissions (same type and transaction)",
    "client.not-relayed.<type>": "messages from a client of a type no client sends",
    "client.malformed.<reason>": "client messages that did not decode",
    "client.no-prefix": "client messages from a visitor with no LNP known",
    "client.bad-address": "client messages from an address that is no unicast one",
    "client.bad-server": "client messages for a server address that is none",
    "server.forwarded": "server answers forwarded to a client",
    "server.<type>": "server answers forwarded, by type",
    "server.answered": "server answers to a request waited for",
    "server.unmatched": "server answers no request waits for (late, or a Reconfigure)",
    "server.no-answer": "requests the server did not answer in answerTimeout",
    "server.malformed.<reason>": "server datagrams that did not decode",
    "server.malformed-inner.<reason>": "Relay-Replies whose inner message did not decode",
    "server.not-relay-reply.<type>": "server datagrams that are no Relay-Reply",
    "server.no-interface-id": "Relay-Replies without an Interface-ID",
    "server.unknown-interface-id": "Relay-Replies for no visitor known",
    "server.wrong-source": "Relay-Replies from another address than the visitor's server",
    "server.no-relay-message": "Relay-Replies without a Relay Message option",
    "server.bad-inner.<type>": "Relay-Replies carrying a message no server sends",
    "server.peer-changed": "answers to another peer-address than the last request's",
    "server.status.<status>": "error statuses at the top or in an IA",
    "server.refused": "answers not forwarded: an address outside the LNP",
    "address.outside-prefix": "addresses offered outside the LNP",
    "address.assigned": "addresses a Reply assigned",
    "address.refused-status": "IA Addresses with an error status",
    "address.released": "addresses released (Release, Decline, valid lifetime 0)",
    "pending.full": "requests relayed but not tracked (maxPending)",
    "visitor.forgotten": "visitors forgotten (they left)",
}

DEFAULT_ANSWER_TIMEOUT = 5.0
DEFAULT_MAX_PENDING = 4096
INTERFACE_ID_LENGTH = 8
# Drop reasons kept for an owner that does not take them (the counters count all).
_MAX_DROPS = 64

_RELAY_REPL = MessageType.RELAY_REPL
_REPLY = MessageType.REPLY
_RELEASING = frozenset({MessageType.RELEASE, MessageType.DECLINE})


def linkAddressFor(prefix: IPv6Network) -> str:
    """The link-address the relay puts in a Relay-Forward for a visitor with
    Local Network Prefix C{prefix}: its Subnet-Router anycast address (RFC 4291
    2.6.1). A DHCPv6 server picks the subnet containing the link-address, and
    it must be global (Kea ignores C{::} and link-local ones)."""
    return str(prefix.network_address)


# --- state ------------------------------------------------------------------


@dataclass(slots=True)
class _Visitor:
    """Where a visitor's answers go: updated by each of its requests."""

    key: str
    interfaceId: bytes
    interface: str
    clientAddress: str
    prefix: IPv6Network
    server: str
    serverIsGroup: bool


@dataclass(slots=True)
class _Pending:
    """A request not answered yet."""

    visitorKey: str
    transactionId: int
    msgType: int
    server: str
    sentAt: float
    expires: float
    addresses: tuple[str, ...]
    retransmissions: int = 0


def _statusName(status: int) -> str:
    try:
        return Status(status).name.lower().replace("_", "-")
    except ValueError:
        return str(status)


def _iaAddresses(message: Message) -> tuple[str, ...]:
    """The addresses a client names in its IA_NA options."""
    return tuple(
        address.address for ia in message.optionsOf(IANA) for address in ia.addresses
    )


class RelayAgent:
    """
    The MPA's DHCPv6 relay agent; see the module docstring for the rules.

    Visitors are named by C{visitorKey}, the MPA's key for a visitor (its MAC).

    @ivar counters: named event counts (L{COUNTERS}).
    """

    def __init__(
        self,
        answerTimeout: float = DEFAULT_ANSWER_TIMEOUT,
        maxPending: int = DEFAULT_MAX_PENDING,
        epoch: bytes | None = None,
    ) -> None:
        """
        @param answerTimeout: seconds after which a request with no answer is
            counted as C{server.no-answer}.
        @param maxPending: requests remembered at most; more are relayed but
            not tracked (C{pending.full}).
        @param epoch: the first four bytes of every Interface-ID this relay
            makes (default: random), so that an answer to a relay that has
            since restarted finds no visitor rather than the wrong one.
        """
        if epoch is None:
            epoch = os.urandom(4)
        if len(epoch) != 4:
            raise ValueError("the Interface-ID epoch has 4 bytes")
        self.answerTimeout = answerTimeout
        self.maxPending = maxPending
        self.counters: Counter[str] = Counter()
        self._epoch = epoch
        self._next = 0
        self._visitors: dict[str, _Visitor] = {}
        self._byInterfaceId: dict[bytes, _Visitor] = {}
        # Insertion order is expiry order: every entry lives answerTimeout.
        self._pending: OrderedDict[tuple[str, int], _Pending] = OrderedDict()
        self._drops: list[str] = []

    # --- client side ------------------------------------------------------------

    def fromClient(
        self,
        visitorKey: str,
        interface: str,
        clientAddress: str,
        payload: bytes,
        prefix: IPv6Network | str | None,
        server: str,
        now: float,
    ) -> list[RelayAction]:
        """
        A DHCPv6 message (UDP payload to port 547) from visitor C{visitorKey}
        on access link C{interface}, sent from C{clientAddress}.

        @param prefix: the visitor's Local Network Prefix; the link-address is
            made from it (L{linkAddressFor}), and the server's answers must
            stay inside it. None (not known yet): dropped, C{client.no-prefix}.
        @param server: where to relay: the visitor's DHCPv6 server, a unicast
            address or a group such as C{ff05::1:3}.
        """
        counters = self.counters
        try:
            message = dhcp6.decode(payload)
        except DHCPv6Error as e:
            return self._drop("client.malformed." + e.reason)
        msgType = message.msgType
        if msgType not in dhcp6.CLIENT_MESSAGE_TYPES:
            return self._drop("client.not-relayed." + dhcp6.typeName(msgType))
        assert isinstance(message, Message)
        if prefix is None:
            return self._drop("client.no-prefix")
        try:
            network = (
                prefix if isinstance(prefix, IPv6Network) else IPv6Network(prefix, strict=False)
            )
            # A scope ("%eth0") says nothing the interface does not.
            peer = canonical(clientAddress.split("%", 1)[0])
        except (OSError, ValueError):
            return self._drop("client.bad-address")
        if peer[:2] == "ff" or peer == "::":
            return self._drop("client.bad-address")
        try:
            destination = canonical(server)
        except (OSError, ValueError):
            return self._drop("client.bad-server")
        visitor = self._visitor(visitorKey)
        visitor.interface = interface
        visitor.clientAddress = peer
        visitor.prefix = network
        visitor.server = destination
        visitor.serverIsGroup = destination[:2] == "ff"
        forward = dhcp6.RelayForward(
            linkAddressFor(network), visitor.clientAddress, payload, visitor.interfaceId
        )
        self._remember(visitor, message, now)
        counters["client.relayed"] += 1
        counters["client." + dhcp6.typeName(msgType)] += 1
        return [SendToServer(visitor.server, dhcp6.encode(forward))]

    def _drop(self, reason: str) -> list[RelayAction]:
        """Count a message dropped for C{reason} and queue the reason for
        L{takeDrops}; no action."""
        self.counters[reason] += 1
        if len(self._drops) < _MAX_DROPS:
            self._drops.append(reason)
        return []

    def takeDrops(self) -> list[str]:
        """Why the messages given since the last call were dropped (counter
        names, in order), for the owner to log; the queue is emptied."""
        drops, self._drops = self._drops, []
        return drops

    def _visitor(self, visitorKey: str) -> _Visitor:
        visitor = self._visitors.get(visitorKey)
        if visitor is None:
            self._next = (self._next + 1) & 0xFFFFFFFF
            interfaceId = self._epoch + struct.pack("!I", self._next)
            visitor = _Visitor(visitorKey, interfaceId, "", "", IPv6Network("::/128"), "", False)
            self._visitors[visitorKey] = visitor
            self._byInterfaceId[interfaceId] = visitor
        return visitor

    def _remember(self, visitor: _Visitor, message: Message, now: float) -> None:
        key = (visitor.key, message.transactionId)
        pending = self._pending.get(key)
        if pending is not None and pending.msgType == message.msgType:
            # The client's retransmission: the first one's clock keeps running.
            pending.retransmissions += 1
            pending.server = visitor.server
            self.counters["client.retransmitted"] += 1
            return
        if pending is not None:
            del self._pending[key]
        elif len(self._pending) >= self.maxPending:
            self.counters["pending.full"] += 1
            return
        addresses = _iaAddresses(message) if message.msgType in _RELEASING else ()
        self._pending[key] = _Pending(
            visitor.key,
            message.transactionId,
            message.msgType,
            visitor.server,
            now,
            now + self.answerTimeout,
            addresses,
        )

    # --- server side ------------------------------------------------------------

    def fromServer(self, payload: bytes, source: str, now: float) -> list[RelayAction]:
        """A UDP payload that came to port 547 from C{source} (the server side)."""
        counters = self.counters
        try:
            relay = dhcp6.decode(payload)
        except DHCPv6Error as e:
            return self._drop("server.malformed." + e.reason)
        if relay.msgType != _RELAY_REPL:
            return self._drop("server.not-relay-reply." + dhcp6.typeName(relay.msgType))
        assert isinstance(relay, RelayMessage)
        interfaceId = relay.interfaceId
        if interfaceId is None:
            return self._drop("server.no-interface-id")
        visitor = self._byInterfaceId.get(interfaceId)
        if visitor is None:
            return self._drop("server.unknown-interface-id")
        if not visitor.serverIsGroup and not self._sameAddress(source, visitor.server):
            counters["server.wrong-source"] += 1
            return [
                Note(
                    "dhcpv6.wrong-source",
                    {"visitor": visitor.key, "source": source, "server": visitor.server},
                )
            ]
        inner = relay.relayed
        if inner is None:
            return self._drop("server.no-relay-message")
        try:
            message = dhcp6.decode(inner)
        except DHCPv6Error as e:
            return self._drop("server.malformed-inner." + e.reason)
        if message.msgType not in dhcp6.SERVER_MESSAGE_TYPES:
            return self._drop("server.bad-inner." + dhcp6.typeName(message.msgType))
        assert isinstance(message, Message)
        pending = self._pending.pop((visitor.key, message.transactionId), None)
        counters["server.answered" if pending is not None else "server.unmatched"] += 1

        actions: list[RelayAction] = []
        outside = self._outside(visitor, message)
        if outside:
            counters["server.refused"] += 1
            counters["address.outside-prefix"] += len(outside)
            actions.append(
                Note(
                    "dhcpv6.address-outside-prefix",
                    {"visitor": visitor.key, "addresses": outside,
                     "prefix": str(visitor.prefix), "server": visitor.server,
                     "message": message.typeName},
                )
            )
            return actions
        peer = relay.peerAddress
        if peer != visitor.clientAddress:
            counters["server.peer-changed"] += 1
        counters["server.forwarded"] += 1
        counters["server." + message.typeName] += 1
        actions.append(SendToClient(visitor.interface, peer, visitor.key, inner))
        self._statuses(visitor, message, pending, actions)
        if message.msgType == _REPLY:
            if pending is not None and pending.msgType in _RELEASING:
                self._released(visitor.key, pending.addresses, actions)
            else:
                self._assigned(visitor, message, actions)
        return actions

    @staticmethod
    def _sameAddress(source: str, server: str) -> bool:
        if source == server:
            return True
        try:
            return canonical(source) == server
        except (OSError, ValueError):
            return False

    def _outside(self, visitor: _Visitor, message: Message) -> list[str]:
        """The addresses C{message} offers (valid lifetime over 0) outside the
        LNP, or its Subnet-Router anycast address (no host's, and the agent
        would refuse it too)."""
        prefix = visitor.prefix
        anycast = prefix.network_address
        found = []
        for ia in message.optionsOf(IANA):
            for address in ia.addresses:
                if address.validLifetime:
                    value = IPv6Address(address.address)
                    if value not in prefix or value == anycast:
                        found.append(address.address)
        return found

    def _statuses(
        self,
        visitor: _Visitor,
        message: Message,
        pending: _Pending | None,
        actions: list[RelayAction],
    ) -> None:
        """Count and note the error statuses at the top and in each IA_NA (a
        server with no address to give answers NoAddrsAvail, RFC 8415 18.3)."""
        found = []
        top = message.option(dhcp6.StatusCode)
        if top is not None and not top.success:
            found.append(top)
        for ia in message.optionsOf(IANA):
            status = ia.option(dhcp6.StatusCode)
            if status is not None and not status.success:
                found.append(status)
        for status in found:
            name = _statusName(status.status)
            self.counters["server.status." + name] += 1
            actions.append(
                Note(
                    "dhcpv6.server-status",
                    {"visitor": visitor.key, "status": name, "text": status.message,
                     "message": message.typeName,
                     "request": "-" if pending is None else dhcp6.typeName(pending.msgType),
                     "server": visitor.server},
                )
            )

    def _assigned(self, visitor: _Visitor, message: Message, actions: list[RelayAction]) -> None:
        if message.status != Status.SUCCESS:
            return
        counters = self.counters
        for ia in message.optionsOf(IANA):
            if ia.status != Status.SUCCESS:
                continue
            for address in ia.addresses:
                if address.status != Status.SUCCESS:
                    counters["address.refused-status"] += 1
                elif address.validLifetime:
                    counters["address.assigned"] += 1
                    actions.append(
                        AddressAssigned(visitor.key, address.address, address.validLifetime)
                    )
                else:
                    counters["address.released"] += 1
                    actions.append(AddressReleased(visitor.key, address.address))

    def _released(
        self, visitorKey: str, addresses: tuple[str, ...], actions: list[RelayAction]
    ) -> None:
        for address in addresses:
            self.counters["address.released"] += 1
            actions.append(AddressReleased(visitorKey, address))

    # --- time -------------------------------------------------------------------

    def tick(self, now: float) -> list[RelayAction]:
        """Expire the requests whose answer time is over."""
        actions: list[RelayAction] = []
        pending = self._pending
        while pending:
            key, entry = next(iter(pending.items()))
            if entry.expires > now:
                break
            del pending[key]
            self.counters["server.no-answer"] += 1
            actions.append(
                Note(
                    "dhcpv6.no-answer",
                    {"visitor": entry.visitorKey, "server": entry.server,
                     "request": dhcp6.typeName(entry.msgType),
                     "transactionId": f"{entry.transactionId:06x}",
                     "retransmissions": entry.retransmissions,
                     "waited": round(now - entry.sentAt, 3)},
                )
            )
            if entry.msgType in _RELEASING:
                self._released(entry.visitorKey, entry.addresses, actions)
        return actions

    def nextDeadline(self) -> float | None:
        """When L{tick} next has something to do, or None."""
        for entry in self._pending.values():
            return entry.expires
        return None

    # --- visitors ---------------------------------------------------------------

    def forget(self, visitorKey: str) -> None:
        """The visitor left: its answers from now on find no visitor
        (C{server.unknown-interface-id}), its requests are no longer awaited."""
        visitor = self._visitors.pop(visitorKey, None)
        if visitor is None:
            return
        del self._byInterfaceId[visitor.interfaceId]
        self.counters["visitor.forgotten"] += 1
        for key in [k for k in self._pending if k[0] == visitorKey]:
            del self._pending[key]

    def interfaceIdOf(self, visitorKey: str) -> bytes | None:
        """The Interface-ID the relay tags the visitor's requests with, if any."""
        visitor = self._visitors.get(visitorKey)
        return None if visitor is None else visitor.interfaceId

    def pendingCount(self) -> int:
        return len(self._pending)

    def describe(self) -> list[dict[str, str]]:
        """Each known visitor, for an operator listing."""
        return [
            {"visitor": v.key, "interfaceId": v.interfaceId.hex(), "interface": v.interface,
             "clientAddress": v.clientAddress, "prefix": str(v.prefix),
             "linkAddress": linkAddressFor(v.prefix), "server": v.server}
            for v in self._visitors.values()
        ]
