"""
Heartbeats between the MPAs and the LMAP (RFC 5847), as a pure sub-machine
each core owns (L{Heartbeats}): which peers it watches, when each is next
asked, which answers are missing, which peer has restarted.

Rules (RFC 5847 sections 3 and 5, with the defaults products ship; docs/wire.md):

 1. A node asks each peer it has signaling with (an MPA: its LMAP; the LMAP:
    every MPA it holds or held bindings of) every C{interval} seconds with a
    Heartbeat request (R clear), the sequence number one more each time
    (32 bits, modulo). The first request goes at once: a node that has just
    started tells its peers so at once.
 2. Every request and every response carries the sender's Restart Counter
    option (RFC 5847 5.2), one more after each restart of the sender: kept in
    the LMAP's Binding Cache database, or a state file of the MPA.
 3. A request from a peer is answered with a response (R set) with the
    request's sequence number. A request from anyone else is refused, and
    counted (answering would make the node a reflector).
 4. A response with the sequence number of the request in flight answers
    it. A request that is unanswered after C{timeout} seconds is missed;
    C{missedAllowed} misses in a row and the peer is down (logged, counted,
    shown by the control channel); the requests go on, and the first answer
    brings it up again.
 5. A peer's Restart Counter that differs from the one it last sent, in a
    request or a response, means it restarted (and lost what it had not kept):
    L{Heartbeats.request} and L{Heartbeats.response} say so, and the core
    acts (the MPA registers every visitor again; the LMAP removes the
    restarted MPA's bindings that were not registered since, and revokes
    them: docs/lmap.md, docs/mpa.md). The first counter heard from a peer
    is only remembered.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from lmm.actions import Note, SendMessage
from lmm.config import writePrivateFile
from lmm.mh import Heartbeat, RestartCounter
from lmm.signaling import Deadlines

#: What the heartbeats count, in their core's counters.
COUNTERS = {
    "heartbeat.sent": "Heartbeat requests sent (rule 1)",
    "heartbeat.answered": "requests of peers answered (rule 3)",
    "heartbeat.refused": "requests of nodes that are no peer, unanswered (rule 3)",
    "heartbeat.response": "responses to a request in flight",
    "heartbeat.unmatched": "responses that answer no request in flight",
    "heartbeat.missed": "requests unanswered in time (rule 4)",
    "heartbeat.peer-down": "peers found down: missedAllowed misses in a row",
    "heartbeat.peer-up": "peers answering again after being down",
    "heartbeat.peer-restarted": "peers whose Restart Counter changed (rule 5)",
    "heartbeat-heap.compacted": "rebuilds of the heartbeats' timer heap",
}

#: RFC 5847's defaults, which products keep (HEARTBEAT_INTERVAL,
#: MISSING_HEARTBEATS_ALLOWED); the timeout is lmm's.
DEFAULT_INTERVAL = 60.0
DEFAULT_MISSED_ALLOWED = 3
DEFAULT_TIMEOUT = 5.0

_SEQUENCE_MASK = 0xFFFFFFFF


def unkeptRestartCounter(now: float | None = None) -> int:
    """A Restart Counter for a node that keeps none (an LMAP whose Binding
    Cache lives in memory): its start time in whole seconds, which grows from
    one start to the next as a kept counter would (rule 2)."""
    return int(time.time() if now is None else now) & _SEQUENCE_MASK


def nextRestartCounter(path: str) -> int:
    """Rule 2 for a node that keeps its counter in the file C{path} (an
    MPA): one more than the file says (0 when there is none), written back
    (mode 0600, replaced at once) before it is used. C{OSError} or
    C{ValueError} when the file cannot be read or written."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        text = "0"
    try:
        counter = (int(text) + 1) & _SEQUENCE_MASK
    except ValueError:
        raise ValueError(f"{path}: not a restart counter: {text[:40]!r}") from None
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    writePrivateFile(path, f"{counter}\n", sync=True)
    return counter


@dataclass(frozen=True, slots=True)
class HeartbeatPolicy:
    """How often to ask (C{interval}, seconds; 0: never), how long to wait
    for an answer (C{timeout}), how many misses in a row make a peer down."""

    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    missedAllowed: int = DEFAULT_MISSED_ALLOWED

    def __post_init__(self) -> None:
        if self.interval < 0:
            raise ValueError(f"heartbeat interval {self.interval} is negative")
        if self.interval and not 0 < self.timeout <= self.interval:
            raise ValueError(f"heartbeat timeout {self.timeout} is not in (0, interval "
                             f"{self.interval}]")
        if self.missedAllowed < 1:
            raise ValueError(f"missed heartbeats allowed {self.missedAllowed} is under 1")


class Peer:
    """What one node knows of one peer's heartbeats."""

    __slots__ = ("address", "sequence", "outstanding", "sentAt", "missed", "up",
                 "restartCounter", "lastHeard", "restarts", "due")

    def __init__(self, address: str, due: float) -> None:
        self.address = address
        self.sequence = 0
        #: The sequence number of the request in flight, or None.
        self.outstanding: int | None = None
        #: When the last request went; None: none yet.
        self.sentAt: float | None = None
        self.missed = 0
        #: None until the peer first answers or asks.
        self.up: bool | None = None
        self.restartCounter: int | None = None
        self.lastHeard: float | None = None
        self.restarts = 0
        self.due = due

    def describe(self, now: float) -> dict[str, Any]:
        return {"peer": self.address,
                "state": {None: "unknown", True: "up", False: "down"}[self.up],
                "missed": self.missed, "restartCounter": self.restartCounter,
                "restarts": self.restarts,
                "lastHeard": None if self.lastHeard is None else round(now - self.lastHeard, 3)}


class Heartbeats:
    """One node's heartbeats; see the module docstring for the rules."""

    def __init__(self, policy: HeartbeatPolicy, restartCounter: int,
                 counters: Counter[str]) -> None:
        self.policy = policy
        self.restartCounter = restartCounter & _SEQUENCE_MASK
        self.counters = counters
        self.peers: dict[str, Peer] = {}
        self._deadlines: Deadlines[str] = Deadlines(
            self._dueOf, lambda: [(p.due, a) for a, p in self.peers.items()],
            self.peers.__len__, counters, "heartbeat-heap.compacted")

    def _dueOf(self, address: str) -> float | None:
        peer = self.peers.get(address)
        return None if peer is None else peer.due

    def _options(self) -> tuple[RestartCounter]:
        return (RestartCounter(self.restartCounter),)

    def watch(self, address: str, now: float) -> None:
        """Rule 1: ask C{address} from now on (at once, the first time)."""
        if address in self.peers or not self.policy.interval:
            return
        self.peers[address] = peer = Peer(address, now)
        self._deadlines.schedule(address, peer.due, None)

    def forget(self, address: str) -> None:
        self.peers.pop(address, None)

    def tick(self, now: float, actions: list[Any]) -> None:
        """Rules 1 and 4: the misses and the requests due by C{now}."""
        policy = self.policy
        for address in self._deadlines.due(now):
            peer = self.peers[address]
            sentAt = peer.sentAt
            if sentAt is not None and peer.outstanding is not None and (
                    now >= sentAt + policy.timeout):
                self._missed(peer, actions)
            if sentAt is None or now >= sentAt + policy.interval:
                peer.sequence = (peer.sequence + 1) & _SEQUENCE_MASK
                peer.outstanding = peer.sequence
                peer.sentAt = now
                self.counters["heartbeat.sent"] += 1
                actions.append(SendMessage(Heartbeat(peer.sequence, options=self._options()),
                                           address))
            peer.due = self._nextDue(peer)
            self._deadlines.schedule(address, peer.due, None)

    def _nextDue(self, peer: Peer) -> float:
        assert peer.sentAt is not None
        if peer.outstanding is not None:
            return peer.sentAt + self.policy.timeout
        return peer.sentAt + self.policy.interval

    def _missed(self, peer: Peer, actions: list[Any]) -> None:
        peer.outstanding = None
        peer.missed += 1
        self.counters["heartbeat.missed"] += 1
        if peer.missed == self.policy.missedAllowed and peer.up is not False:
            peer.up = False
            self.counters["heartbeat.peer-down"] += 1
            actions.append(Note("heartbeat.peer-down",
                                {"peer": peer.address, "missed": peer.missed}))

    def nextDeadline(self) -> float | None:
        return self._deadlines.next()

    def earliestFiled(self) -> float | None:
        """L{lmm.signaling.Deadlines.takeEarliest} of the peers' heartbeats."""
        return self._deadlines.takeEarliest()

    def request(self, message: Heartbeat, source: str, fromPeer: bool, now: float,
                actions: list[Any]) -> bool:
        """Rules 3 and 5: a request from C{source}: the answer, in
        C{actions}; whether the source restarted."""
        if not fromPeer:
            self.counters["heartbeat.refused"] += 1
            return False
        self.counters["heartbeat.answered"] += 1
        actions.append(SendMessage(Heartbeat(message.sequence, response=True,
                                             options=self._options()), source))
        peer = self.peers.get(source)
        return False if peer is None else self._heard(peer, message, now, actions)

    def response(self, message: Heartbeat, source: str, now: float,
                 actions: list[Any]) -> bool:
        """Rules 4 and 5: a response from C{source}; whether it restarted."""
        peer = self.peers.get(source)
        if peer is None or peer.outstanding != message.sequence:
            self.counters["heartbeat.unmatched"] += 1
            return False
        self.counters["heartbeat.response"] += 1
        peer.outstanding = None
        peer.missed = 0
        if peer.up is False:
            self.counters["heartbeat.peer-up"] += 1
            actions.append(Note("heartbeat.peer-up", {"peer": source}))
        peer.up = True
        # Later than the timeout it was due at: its item moves there lazily.
        peer.due = self._nextDue(peer)
        return self._heard(peer, message, now, actions)

    def _heard(self, peer: Peer, message: Heartbeat, now: float, actions: list[Any]) -> bool:
        peer.lastHeard = now
        option = message.option(RestartCounter)
        if option is None:
            return False
        counter = option.counter  # type: ignore[attr-defined]
        previous, peer.restartCounter = peer.restartCounter, counter
        if previous is None or previous == counter:
            return False
        peer.restarts += 1
        self.counters["heartbeat.peer-restarted"] += 1
        actions.append(Note("heartbeat.peer-restarted",
                            {"peer": peer.address, "previous": previous, "counter": counter}))
        return True

    def describe(self, now: float) -> list[dict[str, Any]]:
        return [peer.describe(now) for _, peer in sorted(self.peers.items())]
