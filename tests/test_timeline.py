"""
Tests for the layout of L{lmm.lab.timeline}'s picture: labels of events close in
time do not overlap, and the strips grow only as much as their labels need.
"""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from itertools import combinations

from twisted.trial.unittest import SynchronousTestCase

from lmm.lab import timeline as tl

_SVG = "{http://www.w3.org/2000/svg}"

_LABEL = re.compile(r"^\w+: .* \(\+\d+\.\d\)$")  # an event's label: "source: label (+ms)"

Box = tuple[float, float, float, float]


def texts(svg: str) -> list[tuple[str, Box]]:
    """Each C{<text>} of C{svg}: its content and its box, estimated from its x, y,
    font size, anchor and weight the way the layout estimates it."""
    found = []
    for element in ET.fromstring(svg).iter(f"{_SVG}text"):
        content = element.text or ""
        box = tl.textBox(float(element.get("x", "0")), float(element.get("y", "0")),
                         float(element.get("font-size", "16")), content,
                         element.get("text-anchor", "start"),
                         element.get("font-weight") == "bold")
        found.append((content, box))
    return found


def intersect(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def height(svg: str) -> float:
    return float(ET.fromstring(svg).get("height", "0"))


def handover(start: float, offsets: list[float]) -> list[tl.Event]:
    """A handover's signaling, C{offsets} in ms from C{start}, cycling through
    labels like the demo's (long and short ones)."""
    labels = [
        ("lab", "link down, moving (handover to mpa2)"),
        ("mpa2", "attach detected"),
        ("mpa2", "Access-Accept"),
        ("ms", "RA received from fe80::5eff:fe00:5301"),
        ("wire", "PBU mpa2→lmap seq=36034 lifetime=3600 (BCC)"),
        ("wire", "PBA lmap→mpa2 seq=36034 status=0"),
        ("wire", "BRI lmap→mpa1 seq=1"),
        ("lmap", "binding moved"),
        ("wire", "BRA mpa1→lmap seq=1 status=0"),
        ("mpa1", "visitor revoked (BRI)"),
        ("mpa2", "registered, tunnel up"),
        ("wire", "first MS packet tunnelled mpa2→lmap"),
        ("ping", "first echo reply (request #93)"),
    ]
    return [tl.Event(start + offset / 1000, *labels[i % len(labels)])
            for i, offset in enumerate(offsets)]


class LayoutTests(SynchronousTestCase):
    """The picture's labels: packed in rows, never on top of each other."""

    def assertNoOverlap(self, svg: str) -> None:
        boxes = texts(svg)
        for (a, boxA), (b, boxB) in combinations(boxes, 2):
            self.assertFalse(intersect(boxA, boxB), f"{a!r} {boxA} overlaps {b!r} {boxB}")

    def assertLabelled(self, svg: str, timeline: tl.Timeline) -> None:
        """Each event has its label: as many texts "source: label (+ms)" as events
        with that source and label."""
        contents = [content for content, _ in texts(svg)]
        events = [e for phase in timeline.phases for e in phase.events]
        for event in events:
            label = f"{event.source}: {event.label} (+"
            self.assertEqual(len([c for c in contents if c.startswith(label)]),
                             len([e for e in events
                                  if (e.source, e.label) == (event.source, event.label)]),
                             label)

    def test_closeEventsDoNotOverlap(self) -> None:
        """A handover whose PBA, BRI and "binding moved" are within 0.1 ms, and
        a burst of 40 events within 1 ms at the end of a strip (labels to the left
        of their marks)."""
        offsets = [0.0, 2.9, 6.6, 8.3, 8.6, 8.8, 12.1, 12.15, 12.2, 14.5, 14.5, 26.8, 38.4,
                   38.8]
        burst = [30 + i * 0.025 for i in range(40)]
        events = handover(100.0, offsets) + handover(101.0, burst)
        timeline = tl.Timeline.build(100.0, [(100.0, "handover to mpa2"),
                                             (101.0, "handover to mpa1")], events, None)
        svg = timeline.svg("close events")
        self.assertNoOverlap(svg)
        self.assertLabelled(svg, timeline)
        self.assertEqual(len([c for c, _ in texts(svg) if _LABEL.match(c)]), len(events))

    def test_randomEventsDoNotOverlap(self) -> None:
        """Phases close together (their titles in the RTT plot too) and events at
        random times, some at the same instant."""
        rng = random.Random(1234)
        starts = [100.0, 100.002, 100.004, 100.5]
        changes = [(s, f"handover {i}") for i, s in enumerate(starts)]
        events: list[tl.Event] = []
        for start in starts:
            offsets = sorted(rng.choice([0.0, rng.uniform(0, 50)]) for _ in range(25))
            events += handover(start, offsets)
        timeline = tl.Timeline.build(100.0, changes, events, None)
        svg = timeline.svg("random events")
        self.assertNoOverlap(svg)
        self.assertLabelled(svg, timeline)

    def test_leadersCrossNoLabel(self) -> None:
        """The leader lines from the labels down to their marks pass no other
        label, in a handover as the demo records it (labels right and left of
        their marks), except where two labels each cover the other's mark (there
        no choice of rows helps)."""
        # link down, attach, Access-Accept, RA, PBU, PBA, BRI, binding moved, BRA,
        # revoked, registered, first tunnelled packet, first reply.
        offsets = [0.0, 3.8, 5.2, 12.3, 5.6, 7.7, 7.8, 7.8, 9.5, 9.6, 12.5, 12.4, 12.5]
        timeline = tl.Timeline.build(100.0, [(100.0, "handover to mpa1")],
                                     handover(100.0, offsets), None)
        svg = timeline.svg("leaders")
        self.assertNoOverlap(svg)
        # Each event is drawn as its leader line, its mark, then its label.
        labelled: list[tuple[float, float, float, str, Box]] = []
        leader: tuple[float, float, float] | None = None
        for element in ET.fromstring(svg):
            if element.tag == f"{_SVG}line" and element.get("stroke-opacity") == "0.6":
                leader = (float(element.get("x1", "0")), float(element.get("y1", "0")),
                          float(element.get("y2", "0")))
            elif element.tag == f"{_SVG}text" and leader is not None:
                [(content, box)] = texts(ET.tostring(element, encoding="unicode"))
                labelled.append((*leader, content, box))
                leader = None
        self.assertEqual(len(labelled), len(offsets))

        def crosses(x: float, y1: float, y2: float, box: Box) -> bool:
            return box[0] <= x <= box[2] and y1 < box[3] and box[1] < y2

        for x, y1, y2, content, box in labelled:
            for otherX, _, _, other, otherBox in labelled:
                if crosses(x, y1, y2, otherBox):
                    self.assertTrue(box[0] <= otherX <= box[2],
                                    f"the leader of {content!r} crosses {other!r}")

    def test_farApartSingleRow(self) -> None:
        """Events far apart: every label on the same row, and the picture no
        taller than with a single event per strip."""
        events = handover(100.0, [0.0, 1000.0, 2000.0])
        timeline = tl.Timeline.build(100.0, [(100.0, "attach")], events, None)
        svg = timeline.svg("far apart")
        self.assertNoOverlap(svg)
        self.assertLabelled(svg, timeline)
        rows = {box[1] for content, box in texts(svg) if content.endswith(")")
                and ": " in content}
        self.assertEqual(len(rows), 1)
        single = tl.Timeline.build(100.0, [(100.0, "attach")], events[:1], None)
        self.assertEqual(height(svg), height(single.svg("far apart")))

    def test_stripGrowsWithRows(self) -> None:
        """Three events at the same instant (and one later) take three rows; the
        picture grows by two rows' height."""
        far = tl.Timeline.build(100.0, [(100.0, "attach")],
                                handover(100.0, [0.0, 10.0, 20.0]), None)
        close = tl.Timeline.build(100.0, [(100.0, "attach")],
                                  handover(100.0, [0.0, 0.0, 0.0, 20.0]), None)
        self.assertEqual(height(close.svg("t")) - height(far.svg("t")), 2 * 14)
        self.assertNoOverlap(close.svg("t"))

    def test_packRows(self) -> None:
        """Greedy: the first row where the span fits, C{gap} pixels between spans
        in a row, and where its leader crosses no label lower down; a label over
        another's mark packed first."""
        self.assertEqual(tl.packRows([(0, 50, None), (60, 100, None), (100, 150, None),
                                      (0, 10, None)]), [0, 0, 1, 1])
        self.assertEqual(tl.packRows([(0, 50, None), (53, 60, None)], gap=2), [0, 0])
        self.assertEqual(tl.packRows([(0, 50, None), (53, 60, None)], gap=6), [0, 1])
        # The third label fits in row 0, but its leader (x=107) would cross the
        # second, below: a new row.
        self.assertEqual(tl.packRows([(0, 100, None), (0, 300, None), (110, 150, 107)]),
                         [0, 1, 2])
        self.assertEqual(tl.packRows([(0, 100, None), (0, 300, None), (110, 150, None)]),
                         [0, 1, 0])
        # A leader crossing nothing below, and one in the same row, are no matter.
        self.assertEqual(tl.packRows([(10, 100, 7), (200, 300, 5)]), [0, 0])
        # The second label, left of its mark (x=300), covers the first one's mark
        # (x=100): it goes above, so that the first one's leader does not cross it.
        self.assertEqual(tl.packRows([(103, 200, 100), (90, 297, 300)]), [1, 0])
        self.assertEqual(tl.packRows([]), [])

    def test_textBox(self) -> None:
        """Boxes follow the anchor; wider text, bold and bigger fonts are wider."""
        start = tl.textBox(100, 50, 10, "PBA lmap→mpa2")
        end = tl.textBox(100, 50, 10, "PBA lmap→mpa2", "end")
        middle = tl.textBox(100, 50, 10, "PBA lmap→mpa2", "middle")
        self.assertEqual(start[0], 100)
        self.assertEqual(end[2], 100)
        self.assertAlmostEqual((middle[0] + middle[2]) / 2, 100)
        self.assertLess(start[1], 50)
        self.assertGreater(start[3], 50)
        self.assertLess(tl.textWidth("iiii", 10), tl.textWidth("mmmm", 10))
        self.assertLess(tl.textWidth("PBA", 10), tl.textWidth("PBA", 10, bold=True))
        self.assertLess(tl.textWidth("PBA", 10), tl.textWidth("PBA", 13))


class PingRecordTests(SynchronousTestCase):
    def test_lastInFlightIsNotLost(self) -> None:
        """The request sent as ping was stopped has no reply yet: ping counts it
        transmitted, the timeline does not count it lost; one missing before the
        last is lost."""
        from lmm.lab.timeline import parsePing

        lines = ["PING fd00:cc::2 56 data bytes"]
        for sequence in (1, 2, 4, 5):
            lines.append(f"[1000.{sequence:02d}0000] 64 bytes from fd00:cc::2: "
                         f"icmp_seq={sequence} ttl=63 time=0.3 ms")
        lines += ["", "--- fd00:cc::2 ping statistics ---",
                  "6 packets transmitted, 4 received, 33% packet loss"]
        record = parsePing("\n".join(lines), 0.01)
        self.assertEqual(record.transmitted, 6)
        self.assertEqual(record.lost(), [3, 6])  # no stop time known: lost
        record.stoppedAt = 1000.062  # the 6th went at ~1000.06, just before
        self.assertEqual(record.lost(), [3])
        record.stoppedAt = 1000.2  # long after: lost
        self.assertEqual(record.lost(), [3, 6])


class PercentileTests(SynchronousTestCase):
    """L{tl.percentile}, the lab benchmarks' p50 and p99."""

    def test_median(self) -> None:
        """Of an even count, the upper of the two middle values; order does not matter."""
        self.assertEqual(tl.percentile([4.0, 1.0, 3.0, 2.0], 0.5), 3.0)
        self.assertEqual(tl.percentile([5.0, 1.0, 3.0], 0.5), 3.0)

    def test_tail(self) -> None:
        """p99 of fewer than 100 values is the largest; of 200, the 199th."""
        self.assertEqual(tl.percentile([float(n) for n in range(50)], 0.99), 49.0)
        self.assertEqual(tl.percentile([float(n) for n in range(200)], 0.99), 198.0)
        self.assertEqual(tl.percentile([7.0], 0.99), 7.0)
