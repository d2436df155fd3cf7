"""lmm.mpa.registration: the MPA's PBUs in flight, alone (no agent)."""

from __future__ import annotations

from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from lmm import mh
from lmm.mpa.registration import Registrations
from lmm.mpa.visitor import RegistrationRequest, VisitorEntry, VisitorState
from lmm.signaling import RetransmissionPolicy

LMAP = "2001:db8:ffff::1"
NAI = b"ms1@lmm.test"
T0 = 100.0


def visitor(nai: bytes = NAI, mac: str = "02:11:22:33:44:55") -> VisitorEntry:
    entry = VisitorEntry(mac, "acc0", T0, T0, nai=nai, lmapAddress=LMAP)
    return entry


class RegistrationsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.counters: Counter[str] = Counter()
        self.registrations = Registrations(3600, RetransmissionPolicy(1.0, 2, 4.0),
                                           self.counters, initialSequence=0xFFFE)

    def test_message(self) -> None:
        """Rule 1: NAI, then the Local Address option or the confirmation; A and P set."""
        v = visitor()
        send = self.registrations.register(v, RegistrationRequest(False, "2001:db8:1::5", 64), T0)
        bu = send.message
        assert isinstance(bu, mh.BindingUpdate)
        self.assertEqual(send.destination, LMAP)
        self.assertEqual((bu.sequence, bu.lifetime, bu.ack, bu.proxy), (0xFFFF, 3600, True, True))
        self.assertEqual(bu.options, (mh.MobileNodeIdentifier(NAI),
                                      mh.LocalAddress("2001:db8:1::5", 64)))
        bcc = self.registrations.register(visitor(b"ms2"), RegistrationRequest(True), T0).message
        assert isinstance(bcc, mh.BindingUpdate)
        self.assertEqual(bcc.sequence, 0)
        self.assertIsNotNone(bcc.option(mh.BindingCacheConfirmation))
        self.assertEqual(self.counters["pbu.sent"], 2)

    def test_backOffThenGiveUp(self) -> None:
        """Rule 4: new numbers, doubling intervals up to the cap, then None."""
        v = visitor()
        first = self.registrations.register(v, RegistrationRequest(True), T0)
        assert v.pending is not None
        self.assertEqual(v.pending.due, T0 + 1)
        again = self.registrations.timedOut(v, T0 + 1)
        assert again is not None and v.pending is not None
        self.assertEqual(v.pending.due, T0 + 3)
        self.assertNotEqual(again.message.sequence,  # type: ignore[attr-defined]
                            first.message.sequence)  # type: ignore[attr-defined]
        third = self.registrations.timedOut(v, T0 + 3)
        assert third is not None and v.pending is not None
        self.assertEqual(v.pending.due, T0 + 7)  # 4.0, the cap
        self.assertIsNone(self.registrations.timedOut(v, T0 + 7))
        self.assertIsNone(v.pending)
        self.assertEqual(self.counters["pbu.retransmitted"], 2)

    def test_anyTransmissionAnswers(self) -> None:
        v = visitor()
        first = self.registrations.register(v, RegistrationRequest(True), T0).message
        assert isinstance(first, mh.BindingUpdate)
        self.registrations.timedOut(v, T0 + 1)
        found = self.registrations.answering(mh.ProxyBindingAck(0, first.sequence, 3600))
        self.assertEqual(found, (v, v.pending))
        self.registrations.drop(v)
        self.assertIsNone(self.registrations.answering(mh.ProxyBindingAck(0, first.sequence, 0)))

    def test_fromItsLmap(self) -> None:
        """Rule 5: the visitor's LMAP, its NAI if named."""
        v = visitor()
        ack = mh.ProxyBindingAck(0, 1, 3600, [mh.MobileNodeIdentifier(b"other")])
        self.assertFalse(self.registrations.fromItsLmap(v, ack, LMAP))
        self.assertFalse(self.registrations.fromItsLmap(v, mh.ProxyBindingAck(0, 1, 0),
                                                        "2001:db8::66"))
        self.assertTrue(self.registrations.fromItsLmap(v, mh.ProxyBindingAck(0, 1, 0), LMAP))
        self.assertEqual((self.counters["pba.nai-mismatch"], self.counters["pba.wrong-source"]),
                         (1, 1))

    def test_resync(self) -> None:
        """Rule 6: past the LMAP's last accepted number, once."""
        v = visitor()
        self.registrations.register(v, RegistrationRequest(True), T0)
        assert v.pending is not None
        again = self.registrations.resync(v, v.pending, 5000, T0 + 0.1)
        self.assertEqual(again.message.sequence, 5001)  # type: ignore[attr-defined]
        self.assertTrue(v.pending.resynced)
        self.assertEqual(self.registrations.inFlightTo(LMAP, [v], None), [])

    def test_deregistrationCancelledByRegistration(self) -> None:
        """Rules 3 and 7: a leaving entry deregisters until the NAI registers again."""
        leaving = visitor()
        dereg = self.registrations.deregister(
            leaving, RegistrationRequest(False, "2001:db8:1::5", 64), T0).message
        assert isinstance(dereg, mh.BindingUpdate)
        self.assertEqual(dereg.lifetime, 0)
        self.assertIs(leaving.state, VisitorState.DEREGISTERING)
        self.assertTrue(self.registrations.isLeaving(leaving))
        back = visitor(mac="02:11:22:33:44:66")
        self.registrations.register(back, RegistrationRequest(True), T0 + 1)
        self.assertFalse(self.registrations.isLeaving(leaving))
        self.assertIsNone(self.registrations.answering(mh.ProxyBindingAck(0, dereg.sequence, 0)))
        self.assertEqual(self.counters["deregistration.cancelled"], 1)

    def test_sequenceSkipsOutstanding(self) -> None:
        """Rule 2: after a wrap, a number still waiting is not handed out again."""
        registrations = Registrations(3600, RetransmissionPolicy(1.0, 2), self.counters,
                                      initialSequence=0xFFFF)
        waiting = visitor()
        registrations.register(waiting, RegistrationRequest(True), T0)  # takes 0
        registrations.sequence.last = 0xFFFF
        other = registrations.register(visitor(b"ms2", "02:00:00:00:00:02"),
                                       RegistrationRequest(True), T0)
        self.assertEqual(other.message.sequence, 1)  # type: ignore[attr-defined]
