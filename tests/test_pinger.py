"""
Tests for L{lmm.lab.pinger}, the lab's exact-schedule echo prober: what it
prints is what iputils C{ping -D -n} prints, as far as L{lmm.lab.timeline}
reads it, and it is checked against the real ping's output here.
"""

from __future__ import annotations

import io

from twisted.trial.unittest import SynchronousTestCase

from lmm.lab import timeline as tl
from lmm.lab.netns import callIn
from lmm.lab.pinger import run
from lmm.testing.mixins import NetnsTestMixin


class PingerTests(NetnsTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ns = self.makeNamespace("ping")
        self.ns.ip("link", "set", "lo", "up")

    def probe(self, destination: str, count: int, interval: float = 0.01) -> str:
        out = io.StringIO()
        callIn(self.ns, run, destination, interval, count, 0.3, out)
        return out.getvalue()

    def test_repliesRead(self) -> None:
        text = self.probe("::1", 20)
        record = tl.parsePing(text, 0.01)
        self.assertEqual(record.transmitted, 20)
        self.assertEqual(sorted(record.replies), list(range(1, 21)))
        # Sent on its schedule: request 20 left 190 ms after request 1 (not 16 ms
        # apart as iputils does with -i 0.01 here); generous bounds, this is no
        # benchmark.
        first, last = record.replies[1][0], record.replies[20][0]
        self.assertTrue(0.17 < last - first < 0.4, last - first)
        for _, rtt in record.replies.values():
            self.assertTrue(0 <= rtt < 0.1, rtt)

    def test_noRoute(self) -> None:
        # Nothing answers (no route at all): every request counted as sent and lost.
        text = self.probe("2001:db8:ffff::1", 5)
        record = tl.parsePing(text, 0.01)
        self.assertEqual((record.transmitted, record.replies), (5, {}))

    def test_sameFormatAsPing(self) -> None:
        """The real ping's output and ours read the same (sequence, RTT, summary)."""
        real = self.ns.run(["ping", "-n", "-D", "-c", "3", "-i", "0.05", "::1"]).stdout
        ours = self.probe("::1", 3, 0.05)
        for text in (real, ours):
            record = tl.parsePing(text, 0.05)
            self.assertEqual((record.transmitted, sorted(record.replies)), (3, [1, 2, 3]), text)

    def test_duplicates(self) -> None:
        """Two replies to one request (here: both ends of a veth pair answer a
        ping to all-nodes): the second is marked "(DUP!)" and counted in the
        summary's "+N duplicates", as ping does, and read as a duplicate, not
        as a reply; the real ping's output reads the same."""
        self.ns.sysctl("net.ipv6.conf.default.accept_dad", 0)
        self.ns.ip("link", "add", "pa", "type", "veth", "peer", "name", "pb")
        self.ns.ip("link", "set", "pa", "up")
        self.ns.ip("link", "set", "pb", "up")
        destination = "ff02::1%pa"
        real = self.ns.run(["ping", "-n", "-D", "-c", "3", "-i", "0.05", destination]).stdout
        ours = self.probe(destination, 3, 0.05)
        for text in (real, ours):
            record = tl.parsePing(text, 0.05)
            self.assertEqual(sorted(record.replies), [1, 2, 3], text)
            # Each stops once every request has a reply: maybe before the last
            # one's second.
            self.assertIn(record.duplicates, (2, 3), text)
            self.assertEqual(record.lost(), [], text)
        self.assertEqual(ours.count("(DUP!)"), tl.parsePing(ours, 0.05).duplicates, ours)
