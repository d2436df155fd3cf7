"""The heartbeat sub-machine (lmm.heartbeat, RFC 5847), alone: requests,
answers, misses, a peer down and up again, a restart seen."""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from lmm import mh
from lmm.actions import Note, SendMessage
from lmm.heartbeat import HeartbeatPolicy, Heartbeats

PEER = "fd00:1::2"
OTHER = "fd00:1::3"


def sends(actions: list[Any]) -> list[mh.Heartbeat]:
    found = []
    for a in actions:
        if isinstance(a, SendMessage):
            assert isinstance(a.message, mh.Heartbeat)
            found.append(a.message)
    return found


def notes(actions: list[Any]) -> list[str]:
    return [a.event for a in actions if isinstance(a, Note)]


class HeartbeatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.counters: Counter[str] = Counter()
        self.beats = Heartbeats(HeartbeatPolicy(interval=10, timeout=2, missedAllowed=3), 7,
                                self.counters)

    def tick(self, now: float) -> list[Any]:
        actions: list[Any] = []
        self.beats.tick(now, actions)
        return actions

    def answer(self, request: mh.Heartbeat, now: float, counter: int = 40) -> list[Any]:
        actions: list[Any] = []
        self.beats.response(mh.Heartbeat(request.sequence, response=True,
                                         options=(mh.RestartCounter(counter),)),
                            PEER, now, actions)
        return actions

    def test_requests(self) -> None:
        """The first request at once, then one every interval, numbered up,
        each with this node's Restart Counter."""
        self.beats.watch(PEER, 100.0)
        self.assertEqual(self.beats.nextDeadline(), 100.0)
        [first] = sends(self.tick(100.0))
        self.assertEqual((first.sequence, first.response), (1, False))
        self.assertEqual(first.option(mh.RestartCounter), mh.RestartCounter(7))
        self.answer(first, 100.1)
        self.assertEqual(self.beats.nextDeadline(), 110.0)
        self.assertEqual(self.tick(109.9), [])
        [second] = sends(self.tick(110.0))
        self.assertEqual(second.sequence, 2)
        self.assertEqual(self.counters["heartbeat.response"], 1)

    def test_downAndUp(self) -> None:
        """missedAllowed misses in a row: down, once; the first answer: up."""
        self.beats.watch(PEER, 0.0)
        events: list[str] = []
        now = 0.0
        for _ in range(4):
            events += notes(self.tick(now))      # a request
            self.assertEqual(self.beats.nextDeadline(), now + 2)
            events += notes(self.tick(now + 2))  # its timeout
            now += 10
        self.assertEqual(events, ["heartbeat.peer-down"])
        self.assertEqual(self.counters["heartbeat.missed"], 4)
        self.assertEqual(self.beats.describe(now)[0]["state"], "down")
        [request] = sends(self.tick(now))
        self.assertEqual(notes(self.answer(request, now + 0.5)), ["heartbeat.peer-up"])
        self.assertEqual(self.beats.describe(now + 1)[0]["state"], "up")

    def test_lateAndStrangeResponses(self) -> None:
        """A response to no request in flight (too late, or made up) counts
        for nothing."""
        self.beats.watch(PEER, 0.0)
        [request] = sends(self.tick(0.0))
        self.tick(2.0)  # missed
        self.answer(request, 2.5)
        self.assertEqual(self.counters["heartbeat.unmatched"], 1)
        actions: list[Any] = []
        self.beats.response(mh.Heartbeat(99, response=True), OTHER, 3.0, actions)
        self.assertEqual((actions, self.counters["heartbeat.unmatched"]), ([], 2))

    def test_restart(self) -> None:
        """A changed counter is a restart, said once; the first is remembered."""
        self.beats.watch(PEER, 0.0)
        [request] = sends(self.tick(0.0))
        actions: list[Any] = []
        self.assertFalse(self.beats.response(
            mh.Heartbeat(request.sequence, response=True, options=(mh.RestartCounter(40),)),
            PEER, 0.1, actions))
        # The peer restarts and asks first: its request tells.
        actions = []
        self.assertTrue(self.beats.request(
            mh.Heartbeat(1, options=(mh.RestartCounter(41),)), PEER, True, 5.0, actions))
        [answer] = sends(actions)
        self.assertEqual((answer.sequence, answer.response), (1, True))
        self.assertEqual(answer.option(mh.RestartCounter), mh.RestartCounter(7))
        self.assertEqual(notes(actions), ["heartbeat.peer-restarted"])
        actions = []
        self.assertFalse(self.beats.request(
            mh.Heartbeat(2, options=(mh.RestartCounter(41),)), PEER, True, 6.0, actions))
        self.assertEqual(self.counters["heartbeat.peer-restarted"], 1)

    def test_notAPeer(self) -> None:
        actions: list[Any] = []
        self.assertFalse(self.beats.request(mh.Heartbeat(1), OTHER, False, 0.0, actions))
        self.assertEqual((actions, self.counters["heartbeat.refused"]), ([], 1))

    def test_off(self) -> None:
        beats = Heartbeats(HeartbeatPolicy(interval=0), 1, Counter())
        beats.watch(PEER, 0.0)
        self.assertIsNone(beats.nextDeadline())

    def test_policy(self) -> None:
        for bad in ({"interval": -1}, {"interval": 10, "timeout": 11},
                    {"interval": 10, "timeout": 0}, {"missedAllowed": 0}):
            with self.assertRaises(ValueError):
                HeartbeatPolicy(**bad)  # type: ignore[arg-type]
