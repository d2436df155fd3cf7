"""
RFC 5213 conformance of what lmm sends (issue 16, part 6): every message and
rejection the rfc5213 profile's two cores produce, taken from the real state
machines (L{lmm.lmap.anchor}, L{lmm.mpa.agent}) talking to each other, not
written by hand; each is read back by lmm's codec and by tshark, which must
name every option (the checks of L{tests.test_mh_golden.TsharkChecks}) and
mark nothing malformed. The same messages are in tests/golden/rfc5213-messages.pcap
for people to open in Wireshark; regenerate it with
C{python -m tests.test_rfc5213_conformance}.

Unauthenticated, so that the RFC 5213 options are what tshark reads (the
MPA's codec adds the Timestamp option, RFC 5213 8.8, as it does on the wire);
the authenticated form of each message is the golden vectors' buAuthentication.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from ipaddress import IPv6Network

from twisted.trial.unittest import SynchronousTestCase

from lmm import mh
from lmm.aaa import Profile
from lmm.actions import SendMessage
from lmm.lmap.anchor import LocalMobilityAnchor
from lmm.mh import Status
from lmm.mpa.agent import MobilityProxyAgent
from lmm.mpa.visitor import AttachEvent, DetachEvent
from lmm.security import rfc5213Timestamp
from tests.test_mh_golden import TsharkChecks, Vector, forVectors, pcapBytes

LMAP, MPA1, MPA2 = "2001:db8:ffff::1", "2001:db8:a::1", "2001:db8:a::2"
POOL = IPv6Network("2001:db8:100::/48")
MAC = "02:00:00:00:00:01"
NAI = b"ms1@lmm.test"
T0 = 1700000000.5
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden",
                      "rfc5213-messages.pcap")


def _agent(address: str) -> MobilityProxyAgent:
    return MobilityProxyAgent(address, LMAP, ["acc0"], {"acc0": "02:00:00:00:0a:00"}, 3600,
                              1.0, 3, 1460, mh.RFC5213, "02:00:5e:00:53:01", 0.75,
                              initialSequence=100,
                              # the MS's leaving below deregisters at its detach
                              departureHold=0)


def _sent(actions: Sequence[object]) -> list[mh.MobilityMessage]:
    return [a.message for a in actions if isinstance(a, SendMessage)]


def _stamped(message: mh.MobilityMessage, now: float) -> mh.MobilityMessage:
    """As the unauthenticated MPA's codec sends a PBU (L{lmm.security.SignalingCodec})."""
    if isinstance(message, mh.BindingUpdate):
        return dataclasses.replace(message, options=(*message.options,
                                                     mh.Timestamp(rfc5213Timestamp(now))))
    return message


def scenario() -> list[tuple[str, mh.MobilityMessage]]:
    """(name, message) for each kind of message and rejection the two cores
    send in RFC 5213's protocol, in the order they were sent."""
    lmap = LocalMobilityAnchor(LMAP, [POOL], [IPv6Network("2001:db8:a::/64")], 3600,
                               mh.RFC5213, 1.0, 3)
    mpa1, mpa2 = _agent(MPA1), _agent(MPA2)
    out: list[tuple[str, mh.MobilityMessage]] = []

    def mpaSends(name: str, actions: Sequence[object], now: float) -> mh.BindingUpdate:
        [message] = _sent(actions)
        message = _stamped(message, now)
        out.append((name, message))
        assert isinstance(message, mh.BindingUpdate)
        return message

    def lmapAnswers(name: str, message: mh.MobilityMessage, source: str,
                    now: float) -> list[mh.MobilityMessage]:
        answers = _sent(lmap.receive(message, source, now))  # type: ignore[arg-type]
        out.extend((f"{name}{i or ''}", answer) for i, answer in enumerate(answers))
        return answers

    # Registration at MPA1: 0::/0 asked, a /64 delegated.
    mpa1.attach(AttachEvent("acc0", MAC), T0)
    pbu = mpaSends("pbuInitial", mpa1.authenticated(MAC, Profile(nai=NAI), T0), T0)
    [pba] = lmapAnswers("pbaAccepted", pbu, MPA1, T0)
    mpa1.messageReceived(pba, LMAP, T0)  # type: ignore[arg-type]
    # Its refresh (Handoff Indicator 5).
    refresh = mpaSends("pbuRefresh", mpa1.tick(T0 + 2700), T0 + 2700)
    [pba] = lmapAnswers("pbaRefreshed", refresh, MPA1, T0 + 2700)
    mpa1.messageReceived(pba, LMAP, T0 + 2700)  # type: ignore[arg-type]
    # The MS at MPA2: the handover's PBA, then the revocation to MPA1, its acknowledgement.
    mpa2.attach(AttachEvent("acc0", MAC), T0 + 2701)
    pbu2 = mpaSends("pbuHandover", mpa2.authenticated(MAC, Profile(nai=NAI), T0 + 2701),
                    T0 + 2701)
    answers = lmapAnswers("pbaHandover", pbu2, MPA2, T0 + 2701)
    mpa2.messageReceived(answers[0], LMAP, T0 + 2701)  # type: ignore[arg-type]
    [bra] = _sent(mpa1.messageReceived(answers[1], LMAP, T0 + 2701))  # type: ignore[arg-type]
    out[-1] = ("bri", answers[1])
    out.append(("bra", bra))
    # MPA1's refresh replayed: older than the binding's timestamp.
    lmapAnswers("pba157", refresh, MPA1, T0 + 2702)
    # Rejections: what a PBU lacks or asks that this LMAP does not give.
    prefix = pbu2.option(mh.HomeNetworkPrefix)
    options = [o for o in pbu2.options if not isinstance(o, mh.MobileNodeIdentifier)]

    def without(kind: type, sequence: int, nai: bytes = b"ms2@lmm.test",
                extra: tuple[mh.MobilityOption, ...] = ()) -> mh.BindingUpdate:
        kept = [o for o in options if not isinstance(o, kind)]
        if extra:
            kept = [o for o in kept if not isinstance(o, mh.HomeNetworkPrefix)] + list(extra)
        return mh.ProxyBindingUpdate(sequence, 3600, [mh.MobileNodeIdentifier(nai), *kept])

    lmapAnswers("pba158", without(mh.HomeNetworkPrefix, 1), MPA1, T0 + 2703)
    lmapAnswers("pba161", without(mh.HandoffIndicatorOption, 2), MPA1, T0 + 2703)
    lmapAnswers("pba162", without(mh.AccessTechnologyType, 3), MPA1, T0 + 2703)
    outside = (mh.HomeNetworkPrefix("2001:db8:200::", 64),)
    lmapAnswers("pba155", without(type(None), 4, extra=outside), MPA1, T0 + 2703)
    assert prefix is not None
    other = (mh.HomeNetworkPrefix("2001:db8:100:7::", 64),)
    # The MS's own, newer (sequence and time) than its binding, asking another prefix.
    fresh = without(mh.Timestamp, 150, NAI, extra=other)
    fresh = dataclasses.replace(fresh, options=(
        *fresh.options, mh.Timestamp(rfc5213Timestamp(T0 + 2703))))
    lmapAnswers("pba159", fresh, MPA2, T0 + 2703)
    lmapAnswers("pba160", mh.ProxyBindingUpdate(6, 3600, options), MPA1, T0 + 2703)
    lmapAnswers("pba152", without(type(None), 7), "2001:db8:b::1", T0 + 2703)
    lmapAnswers("pba135", without(type(None), 99, NAI), MPA2, T0 + 2703)
    # The MS leaves MPA2: its deregistration, acknowledged.
    dereg = mpaSends("pbuDeregistration", mpa2.detach(DetachEvent("acc0", MAC), T0 + 2704),
                     T0 + 2704)
    lmapAnswers("pbaDeregistered", dereg, MPA2, T0 + 2704)
    return out


def vectors() -> list[Vector]:
    return [Vector(name, mh.RFC5213, mh.encode(message, mh.RFC5213).hex(), message)
            for name, message in scenario()]


VECTORS = vectors()


class ScenarioTests(SynchronousTestCase):
    """The scenario covers what it says: each message kind, each status."""

    def test_coverage(self) -> None:
        statuses = {m.status for _, m in scenario() if isinstance(m, mh.BindingAck)}
        self.assertEqual(statuses, {
            0, Status.SEQUENCE_NUMBER_OUT_OF_WINDOW, Status.PROXY_REG_NOT_ENABLED,
            Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX,
            Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED, Status.MISSING_HOME_NETWORK_PREFIX_OPTION,
            Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH, Status.MISSING_MN_IDENTIFIER_OPTION,
            Status.MISSING_HANDOFF_INDICATOR_OPTION, Status.MISSING_ACCESS_TECH_TYPE_OPTION})
        kinds = {type(m).__name__ for _, m in scenario()}
        self.assertEqual(kinds, {"BindingUpdate", "BindingAck", "BindingRevocationIndication",
                                 "BindingRevocationAck"})

    def test_rfc5213Options(self) -> None:
        """RFC 5213 5.3.6: every PBA names the MS (but the one refused for
        lacking its MN-ID) and carries the request's Handoff Indicator and
        Access Technology Type when it had them; no draft option anywhere."""
        for name, message in scenario():
            kinds = {type(o) for o in message.options}
            self.assertFalse(kinds & {mh.LocalAddress, mh.BindingCacheConfirmation}, name)
            if isinstance(message, mh.BindingAck) and name not in ("pba160", "pba152"):
                self.assertIn(mh.MobileNodeIdentifier, kinds, name)
            if name.startswith("pbu") or name in ("pbaAccepted", "pbaHandover", "pba155"):
                self.assertTrue({mh.HomeNetworkPrefix, mh.HandoffIndicatorOption,
                                 mh.AccessTechnologyType} <= kinds, name)

    def test_goldenPcapCurrent(self) -> None:
        """tests/golden/rfc5213-messages.pcap holds these messages."""
        with open(GOLDEN, "rb") as f:
            self.assertEqual(f.read(), pcapBytes(VECTORS),
                             "regenerate: python -m tests.test_rfc5213_conformance")


@forVectors(VECTORS)
class CodecTests(SynchronousTestCase):
    def checkVector(self, vector: Vector) -> None:
        self.assertEqual(mh.decode(vector.data, mh.RFC5213), vector.message)


@forVectors(VECTORS)
class TsharkTests(TsharkChecks):
    """tshark names every option of every message, none malformed."""

    vectors = VECTORS
    packets = None


def main() -> None:
    with open(GOLDEN, "wb") as f:
        f.write(pcapBytes(VECTORS))
    sys.stdout.write(f"wrote {GOLDEN}\n")


if __name__ == "__main__":
    main()
