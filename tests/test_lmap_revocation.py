"""lmm.lmap.revocation: the LMAP's Binding Revocation Indications in flight, alone."""

from __future__ import annotations

from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from lmm import mh
from lmm.actions import Note, SendMessage
from lmm.lmap.revocation import Revocations
from lmm.signaling import RetransmissionPolicy

MPA1 = "2001:db8:a::1"
NAI = b"ms1@lmm.test"
MNID = mh.MobileNodeIdentifier(NAI)
T0 = 50.0


class RevocationsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.counters: Counter[str] = Counter()
        self.revocations = Revocations(RetransmissionPolicy(1.0, 6, 4.0), self.counters)

    def test_indication(self) -> None:
        """Rule 1: trigger, P, the NAI and the previous Local Address; LMAP-wide numbers."""
        send = self.revocations.revoke(MPA1, MNID, "2001:db8:1::5", 64, T0)
        bri = send.message
        assert isinstance(bri, mh.BindingRevocationIndication)
        self.assertEqual((send.destination, bri.sequence, bri.trigger, bri.proxy),
                         (MPA1, 1, mh.RevocationTrigger.INTER_MAG_HANDOVER_UNKNOWN, True))
        self.assertEqual(bri.options, (MNID, mh.LocalAddress("2001:db8:1::5", 64)))
        other = self.revocations.revoke("2001:db8:a::2", MNID, "2001:db8:1::5", 64, T0).message
        self.assertEqual(other.sequence, 2)  # type: ignore[attr-defined]

    def test_backOffCappedThenGivenUp(self) -> None:
        """Rule 2: 1, 2, 4, then the cap (4) between copies; given up after the last."""
        send = self.revocations.revoke(MPA1, MNID, "2001:db8:1::5", 64, T0)
        times = []
        while (due := self.revocations.nextDeadline()) is not None:
            actions: list[object] = []
            self.revocations.tick(due, actions)
            times.append(due - T0)
            if actions and isinstance(actions[0], Note):
                break
            self.assertEqual(actions, [send])
        self.assertEqual(times, [1, 3, 7, 11, 15, 19, 23])
        self.assertEqual((self.counters["bri.retransmitted"], self.counters["bri.given-up"]),
                         (6, 1))

    def test_acknowledgedAndCancelled(self) -> None:
        """Rules 3 and 4."""
        first = self.revocations.revoke(MPA1, MNID, "2001:db8:1::5", 64, T0).message
        assert isinstance(first, mh.BindingRevocationIndication)
        self.assertIsNone(self.revocations.acknowledged("2001:db8:a::9", first.sequence, 0))
        self.assertIsNotNone(self.revocations.acknowledged(MPA1, first.sequence, 1))
        self.assertEqual(self.counters["bra.status.1"], 1)
        self.revocations.revoke(MPA1, MNID, "2001:db8:1::5", 64, T0)
        self.revocations.cancel(MPA1, NAI)
        self.assertEqual(self.counters["bri.cancelled"], 1)
        actions: list[object] = []
        self.revocations.tick(T0 + 100, actions)
        self.assertEqual(actions, [])
        self.assertIsNone(self.revocations.nextDeadline())

    def test_heldBack(self) -> None:
        """The copy a failed tunnel held back is found by its handover's time,
        until a retransmission has gone out."""
        self.revocations.revoke(MPA1, MNID, "2001:db8:1::5", 64, T0)
        revocation = self.revocations.heldBack(NAI, T0)
        assert revocation is not None
        self.assertEqual(revocation.destination, MPA1)
        self.assertIsNone(self.revocations.heldBack(NAI, T0 + 1))
        actions: list[object] = []
        self.revocations.tick(T0 + 1, actions)
        self.assertEqual([type(a) for a in actions], [SendMessage])
        self.assertIsNone(self.revocations.heldBack(NAI, T0))
