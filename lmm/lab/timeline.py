"""
The lab's timeline: events from the backbone capture (Mobility Header
messages, the first tunnelled packet through an MPA), from the MS's own
capture (Router Advertisements), from the daemons' logs (attach detected,
Access-Accept, registration, revocation) and from the ping, put on one clock
(the wall clock: tcpdump, ping -D and the daemons' logs all use it), printed
and drawn as an SVG picture.
"""

from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Sequence
from xml.sax.saxutils import escape

from lmm import mh

__all__ = ["Event", "Phase", "PingRecord", "Timeline", "packRows", "readPcap", "textBox",
           "textWidth"]


@dataclass(order=True)
class Event:
    """Something that happened, C{when} in seconds since the epoch."""

    when: float
    source: str = field(compare=False)  # "wire", "ms", "lab", "ping", or a daemon's name
    label: str = field(compare=False)


@dataclass
class PingRecord:
    """The echo requests of one ping run: what came back, and when each was sent."""

    interval: float
    replies: dict[int, tuple[float, float]] = field(default_factory=dict)  # seq: (sent, rtt)
    transmitted: int = 0
    stoppedAt: float | None = None  # when the lab stopped ping (SIGINT), if it says
    duplicates: int = 0  # replies to a request answered already (ping's "(DUP!)")

    def sentAt(self, sequence: int) -> float | None:
        """When request C{sequence} was sent: measured if it came back, else
        interpolated between its neighbours that did."""
        if sequence in self.replies:
            return self.replies[sequence][0]
        below = [s for s in self.replies if s < sequence]
        above = [s for s in self.replies if s > sequence]
        if below and above:
            a, b = max(below), min(above)
            ta, tb = self.replies[a][0], self.replies[b][0]
            return ta + (tb - ta) * (sequence - a) / (b - a)
        if below:
            a = max(below)
            return self.replies[a][0] + (sequence - a) * self.interval
        if above:
            b = min(above)
            return self.replies[b][0] - (b - sequence) * self.interval
        return None

    def inFlightAtStop(self, sequence: int) -> bool:
        """Whether C{sequence} is the last request, sent in the moment before
        ping was stopped (C{stoppedAt}, when known): unanswered because ping
        stopped listening, not lost (its summary counts it transmitted)."""
        if (self.stoppedAt is None or sequence != self.transmitted
                or sequence in self.replies):
            return False
        sent = self.sentAt(sequence)
        return sent is not None and sent >= self.stoppedAt - IN_FLIGHT_AT_STOP

    def lost(self) -> list[int]:
        return [s for s in range(1, self.transmitted + 1)
                if s not in self.replies and not self.inFlightAtStop(s)]

    def longestGap(self) -> float:
        """The longest time between two replies' arrivals, seconds."""
        arrivals = sorted(sent + rtt for sent, rtt in self.replies.values())
        return max((b - a for a, b in zip(arrivals, arrivals[1:])), default=0.0)


#: A last request sent this close before ping was stopped was still in flight
#: (the round trip is ~0.3 ms here).
IN_FLIGHT_AT_STOP = 0.005

_PING_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+) .*time=([\d.]+) ms")
_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
_PING_DUPLICATES = re.compile(r" received, \+(\d+) duplicates")


def pingSummary(text: str) -> tuple[int, int] | None:
    """(transmitted, received) from ping's summary line, or None without one."""
    summary = _PING_SUMMARY.search(text)
    return None if summary is None else (int(summary[1]), int(summary[2]))


def parsePing(text: str, interval: float) -> PingRecord:
    """C{ping -D -n} output."""
    record = PingRecord(interval)
    for line in text.splitlines():
        match = _PING_REPLY.match(line)
        if match:
            received, sequence, rtt = float(match[1]), int(match[2]), float(match[3]) / 1000
            if line.endswith("(DUP!)"):
                record.duplicates += 1
                continue
            record.replies.setdefault(sequence, (received - rtt, rtt))
            continue
        summary = pingSummary(line)
        if summary:
            record.transmitted = summary[0]
            # The summary's count is the whole run's (ping does not mark every
            # duplicate "(DUP!)": not those to a multicast destination).
            duplicates = _PING_DUPLICATES.search(line)
            if duplicates:
                record.duplicates = int(duplicates[1])
    if not record.transmitted and record.replies:
        record.transmitted = max(record.replies)
    return record


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value at C{fraction} (0.5: the median, upper of two) of C{values}:
    the item at index floor(fraction * n), the last for 0.99 of fewer than 100.
    The lab benchmarks' p50 and p99 (bench/handover.py, bench/carrier.py)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- captures ---------------------------------------------------------------------------


def readPcap(path: str) -> list[tuple[float, bytes]]:
    """The packets of a pcap file (a partial last one is left out)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    if len(data) < 24:
        return []
    magic = struct.unpack_from("<I", data)[0]
    order = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = struct.unpack_from(order + "I", data)[0] == 0xA1B23C4D
    packets = []
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, length, _ = struct.unpack_from(order + "IIII", data, offset)
        offset += 16
        if offset + length > len(data):
            break
        packets.append((seconds + fraction / (1e9 if nano else 1e6),
                        data[offset:offset + length]))
        offset += length
    return packets


def _ntop(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, raw)


_MH_NAMES = {
    mh.BindingUpdate: "PBU",
    mh.BindingAck: "PBA",
    mh.BindingRevocationIndication: "BRI",
    mh.BindingRevocationAck: "BRA",
}


def backboneEvents(path: str, names: dict[str, str], mobile: str | None,
                   heartbeats: bool = False) -> list[Event]:
    """
    Mobility Header messages on the backbone, each first tunnelled packet
    of C{mobile} from an MPA after a gap (its first through a new MPA), and
    the packets for C{mobile} an MPA sends back up its tunnel to the LMAP
    (a departing visitor's, handed back: one event for a run of them).
    C{names} maps addresses to node names. Heartbeats (RFC 5847, every second
    in the lab) only with C{heartbeats}: they would drown the rest.
    """
    events = []
    lastTunnel: dict[str, float] = {}
    current: str | None = None
    handing: tuple[str, int, float, int] | None = None  # source, count, last, event index
    for when, frame in readPcap(path):
        if len(frame) < 54 or frame[12:14] != b"\x86\xdd":
            continue
        nextHeader = frame[20]
        source, destination = _ntop(frame[22:38]), _ntop(frame[38:54])
        a, b = names.get(source, source), names.get(destination, destination)
        if nextHeader == mh.IPPROTO_MH:
            event = _mobilityEvent(when, frame[54:], f"{a}→{b}", heartbeats)
            if event is not None:
                events.append(event)
        elif nextHeader == 41 and len(frame) >= 94 and mobile is not None:
            if names.get(destination) == "lmap" and _ntop(frame[78:94]) == mobile:
                if handing is not None and handing[0] == source and when - handing[2] < 0.05:
                    count, index = handing[1] + 1, handing[3]
                    events[index] = Event(events[index].when, "wire",
                                          f"{count} packets handed back {a}→{b}")
                else:
                    count, index = 1, len(events)
                    events.append(Event(when, "wire", f"1 packet handed back {a}→{b}"))
                handing = (source, count, when, index)
                continue
            innerSource = _ntop(frame[62:78])
            if innerSource != mobile:
                continue
            if current != source:
                events.append(Event(when, "wire", f"first MS packet tunnelled {a}→{b}"))
                current = source
            lastTunnel[source] = when
    return events


def _mobilityEvent(when: float, header: bytes, path: str, heartbeats: bool) -> Event | None:
    """A Mobility Header message seen going C{path} ("a→b"), as an event;
    None for a heartbeat unless C{heartbeats}."""
    try:
        message = mh.decode(header)
    except mh.MobilityHeaderError as e:
        return Event(when, "wire", f"undecodable Mobility Header {path}: {e}")
    if isinstance(message, mh.Heartbeat) and not heartbeats:
        return None
    kind = _MH_NAMES.get(type(message), type(message).__name__)
    detail = f" seq={message.sequence}" if hasattr(message, "sequence") else ""
    if hasattr(message, "status"):
        detail += f" status={int(message.status)}"
    if isinstance(message, mh.BindingUpdate):
        detail += f" lifetime={message.lifetime}"
        local = message.option(mh.LocalAddress)
        if message.option(mh.BindingCacheConfirmation) is not None:
            detail += " (BCC)"
        elif message.option(mh.HandoffIndicatorOption) is not None and local:
            # RFC 5213's protocol; its HNP (type 22) read by the draft's codec.
            detail += f" (HNP {local.address}/{local.prefixLength})"
        elif local is not None:
            detail += " (LoA)"
    return Event(when, "wire", f"{kind} {path}{detail}")


def stationEvents(path: str, address: str | None) -> list[Event]:
    """What the MS saw and sent on its link: RS, RA, DAD of its address."""
    events = []
    for when, frame in readPcap(path):
        if len(frame) < 58 or frame[12:14] != b"\x86\xdd" or frame[20] != 58:
            continue
        kind = frame[54]
        source = _ntop(frame[22:38])
        if kind == 133:
            events.append(Event(when, "ms", "RS sent"))
        elif kind == 134:
            events.append(Event(when, "ms", f"RA received from {source}"))
        elif kind == 135 and source == "::" and len(frame) >= 78:
            target = _ntop(frame[62:78])
            if target == address:
                events.append(Event(when, "ms", f"DAD probe for {target}"))
    return events


# --- daemon logs --------------------------------------------------------------------------

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+[+-]\d{4}) \[[^]]*\] (.*)$")


def logEvents(path: str, daemon: str, keys: Sequence[str]) -> list[Event]:
    """The lines of a daemon's log about the MS (any of C{keys} in the line)."""
    patterns = [
        ("visitor.attached ", "attach detected"),
        ("access accepted:", "Access-Accept"),
        ("access rejected:", "Access-Reject"),
        ("visitor.registered ", "registered, tunnel up"),
        ("visitor.departing ", "detach reported: departing, downlink held"),
        ("visitor.returned ", "reported back: held packets delivered"),
        ("visitor.revoked ", "visitor revoked (BRI)"),
        ("binding.created ", "binding created"),
        ("binding.handover ", "binding moved"),
    ]
    events = []
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return []
    for line in lines:
        match = _LOG_LINE.match(line.rstrip("\n"))
        if match is None:
            continue
        text = match[2]
        if not any(key in text for key in keys):
            continue
        for prefix, label in patterns:
            if text.startswith(prefix):
                when = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
                events.append(Event(when, daemon, label))
    return events


# --- the timeline ------------------------------------------------------------------------


@dataclass
class Phase:
    """From a link change (the attach, a handover) to the next."""

    title: str
    start: float
    events: list[Event] = field(default_factory=list)
    lost: int = 0
    sent: int = 0
    outage: float | None = None  # from the link change to the first reply to a later request
    linkUp: float | None = None  # when the link was back (a handover); requests sent
                                 # before went through the old MPA


@dataclass
class Timeline:
    """Every event of a run, grouped by phase."""

    origin: float
    phases: list[Phase]
    ping: PingRecord | None = None
    pingStart: float | None = None

    @classmethod
    def build(cls, origin: float, changes: Sequence[tuple[float, str]],
              events: Iterable[Event], ping: PingRecord | None,
              linkUp: Sequence[float | None] = ()) -> Timeline:
        """C{changes}: (time, title) of the attach and each handover, in order;
        C{linkUp}: when each one's link was up again, if known."""
        phases = [Phase(title, when) for when, title in changes]
        for phase, up in zip(phases, linkUp):
            phase.linkUp = up
        for event in sorted(events):
            phase = phases[0]
            for candidate in phases:
                if candidate.start <= event.when + 0.0005:
                    phase = candidate
            phase.events.append(event)
        timeline = cls(origin, phases, ping)
        if ping is not None:
            timeline.countLosses()
        return timeline

    def countLosses(self) -> None:
        ping = self.ping
        assert ping is not None
        starts = [p.start for p in self.phases]
        for sequence in range(1, ping.transmitted + 1):
            sent = ping.sentAt(sequence)
            if sent is None or ping.inFlightAtStop(sequence):
                continue
            index = max([i for i, s in enumerate(starts) if s <= sent] or [0])
            phase = self.phases[index]
            phase.sent += 1
            if sequence not in ping.replies:
                phase.lost += 1
            elif phase.outage is None and sent >= (phase.linkUp or phase.start):
                phase.outage = sent + ping.replies[sequence][1] - phase.start
                phase.events.append(Event(sent + ping.replies[sequence][1], "ping",
                                          f"first echo reply (request #{sequence})"))
        for phase in self.phases:
            phase.events.sort()

    def relative(self, when: float) -> str:
        return f"{(when - self.origin) * 1000:9.1f} ms"

    def text(self) -> str:
        lines = []
        for phase in self.phases:
            lines.append(f"{self.relative(phase.start)}  == {phase.title}")
            for event in phase.events:
                delta = (event.when - phase.start) * 1000
                lines.append(f"{self.relative(event.when)}  (+{delta:7.1f})  "
                             f"{event.source:<5} {event.label}")
            if phase.sent:
                outage = (f", first reply {phase.outage * 1000:.1f} ms after the link change"
                          if phase.outage is not None else ", no reply")
                lines.append(f"{'':12}  pings: {phase.sent} sent, {phase.lost} lost{outage}")
        return "\n".join(lines)

    # --- the picture --------------------------------------------------------------------

    def svg(self, title: str) -> str:
        """The run as an SVG picture: RTTs and losses over the whole run, then one
        strip per phase with its signaling events (milliseconds from its start)."""
        width, left, right = 1100, 70, 30
        plotW = width - left - right
        parts: list[str] = []
        y = 40
        parts.append(f'<text x="{left}" y="24" font-size="16" font-weight="bold">'
                     f"{escape(title)}</text>")
        # Whole run: RTT series and losses.
        end = max([e.when for p in self.phases for e in p.events] + [p.start for p in self.phases])
        if self.ping is not None and self.ping.replies:
            end = max(end, max(s + r for s, r in self.ping.replies.values()))
        span = max(end - self.origin, 0.001)

        def x(when: float) -> float:
            return left + plotW * (when - self.origin) / span

        plotH = 180
        top = y + 10
        rtts = [r for _, r in (self.ping.replies.values() if self.ping else [])]
        maxRtt = max(rtts + [0.001]) * 1.15
        parts.append(f'<text x="{left}" y="{top - 4}" font-size="12">ping RTT (ms) to the CN, '
                     f"and lost requests (red); dashed: link changes</text>")
        parts.append(f'<rect x="{left}" y="{top}" width="{plotW}" height="{plotH}" '
                     f'fill="none" stroke="#888"/>')
        for i in range(5):
            value = maxRtt * i / 4
            yy = top + plotH - plotH * i / 4
            parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" font-size="10" '
                         f'text-anchor="end">{value * 1000:.2f}</text>')
        ticks = _ticks(span)
        for t in ticks:
            xx = left + plotW * t / span
            parts.append(f'<line x1="{xx:.1f}" y1="{top + plotH}" x2="{xx:.1f}" '
                         f'y2="{top + plotH + 4}" stroke="#444"/>')
            parts.append(f'<text x="{xx:.1f}" y="{top + plotH + 16}" font-size="10" '
                         f'text-anchor="middle">{t:g} s</text>')
        if self.ping is not None:
            for sent, rtt in self.ping.replies.values():
                parts.append(f'<circle cx="{x(sent):.1f}" '
                             f'cy="{top + plotH - plotH * rtt / maxRtt:.1f}" r="1.3" '
                             f'fill="#1f5fbf"/>')
            for sequence in self.ping.lost():
                lostAt = self.ping.sentAt(sequence)
                if lostAt is not None:
                    parts.append(f'<line x1="{x(lostAt):.1f}" y1="{top + plotH - 12}" '
                                 f'x2="{x(lostAt):.1f}" y2="{top + plotH}" stroke="#d00" '
                                 f'stroke-width="1.5"/>')
        # Phase titles next to their dashed line, one row below the other when they
        # would overlap.
        titleRows = packRows([(x(p.start) + 3, x(p.start) + 3 + textWidth(p.title, 10), None)
                              for p in self.phases])
        for phase, row in zip(self.phases, titleRows):
            parts.append(f'<line x1="{x(phase.start):.1f}" y1="{top}" x2="{x(phase.start):.1f}" '
                         f'y2="{top + plotH}" stroke="#555" stroke-dasharray="4,3"/>')
            parts.append(f'<text x="{x(phase.start) + 3:.1f}" y="{top + 12 + row * 13}" '
                         f'font-size="10">{escape(phase.title)}</text>')
        y = top + plotH + 40
        # One strip per phase: each label in a row of its own where it would overlap
        # another (rows from the top; a leader line from the label down to its mark).
        for phase in self.phases:
            y = self._strip(phase, y, parts, left, plotW, width)
        height = y
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                f'viewBox="0 0 {width} {height}" font-family="sans-serif">\n'
                f'<rect width="{width}" height="{height}" fill="white"/>\n'
                + "\n".join(parts) + "\n</svg>\n")


    def _strip(self, phase: Phase, y: int, parts: list[str], left: int, plotW: int,
               width: int) -> int:
        """One phase's strip at C{y}: its events as labelled marks on its own
        time axis; where the next strip starts."""
        colours = _SOURCE_COLOURS
        events = phase.events
        last = max([e.when for e in events] + [phase.start + 0.005])
        stripSpan = (last - phase.start) * 1.1 + 0.002

        def sx(when: float, start: float = phase.start, s: float = stripSpan) -> float:
            return left + plotW * (when - start + 0.001) / s

        lost = f"; {phase.lost} of {phase.sent} pings lost" if phase.sent else ""
        parts.append(f'<text x="{left}" y="{y}" font-size="13" font-weight="bold">'
                     f"{escape(phase.title)} at {(phase.start - self.origin) * 1000:.1f} ms"
                     f"{escape(lost)}</text>")
        labels = []
        for event in events:
            xx = sx(event.when)
            text = (f"{event.source}: {event.label} "
                    f"(+{(event.when - phase.start) * 1000:.1f})")
            # To the right of the mark, or to its left where it would leave the picture.
            anchor = "start" if xx + 3 + textWidth(text, 10) <= width - 4 else "end"
            tx = xx + 3 if anchor == "start" else xx - 3
            labels.append((event, xx, tx, anchor, text))
        spans = []
        for _, xx, tx, anchor, text in labels:
            x0, _, x1, _ = textBox(tx, 0, 10, text, anchor)
            spans.append((x0, x1, xx))
        rowOf = packRows(spans)
        rows = max(rowOf, default=0) + 1
        axisY = y + 20 + rows * 14
        parts.append(f'<line x1="{left}" y1="{axisY}" x2="{left + plotW}" y2="{axisY}" '
                     f'stroke="#444"/>')
        for t in _ticks(stripSpan * 1000):
            xx = sx(phase.start + t / 1000)
            if xx <= left + plotW:
                parts.append(f'<text x="{xx:.1f}" y="{axisY + 14}" font-size="10" '
                             f'text-anchor="middle">+{t:g} ms</text>')
        for (event, xx, tx, anchor, text), row in zip(labels, rowOf):
            ty = y + 16 + row * 14
            colour = colours.get(event.source, "#b35806")
            parts.append(f'<line x1="{xx:.1f}" y1="{ty + 2}" x2="{xx:.1f}" y2="{axisY}" '
                         f'stroke="{colour}" stroke-width="0.8" stroke-opacity="0.6"/>')
            parts.append(f'<circle cx="{xx:.1f}" cy="{axisY}" r="2.5" fill="{colour}"/>')
            parts.append(f'<text x="{tx:.1f}" y="{ty}" font-size="10" fill="{colour}" '
                         f'text-anchor="{anchor}">{escape(text)}</text>')
        return axisY + 40


_SOURCE_COLOURS = {"wire": "#7b2d8e", "ms": "#1b7837", "ping": "#1f5fbf", "lab": "#000"}


# --- label layout ---------------------------------------------------------------------------

# Advance widths in ems, on the generous side of DejaVu Sans (the usual "sans-serif"
# on Linux; Helvetica and Arial are narrower), so that estimated boxes hold the
# rendered text.
_CHAR_WIDTHS = {
    **dict.fromkeys("ijlI.,:;'|!`", 0.32),
    **dict.fromkeys(" /\\", 0.36),
    **dict.fromkeys("ftrJ()[]{}-", 0.43),
    **dict.fromkeys("=+<>#~*^&→←", 0.86),
    **dict.fromkeys("mwMW%@", 1.0),
}
_ASCENT, _DESCENT = 0.95, 0.25  # of the font size, above and below the baseline


def textWidth(text: str, size: float, bold: bool = False) -> float:
    """The estimated width in pixels of C{text} in the picture's sans-serif at
    C{size} pixels (an upper estimate rather than a lower one)."""
    ems = sum(_CHAR_WIDTHS.get(c, 0.78 if c.isupper() else 0.65) for c in text)
    return ems * size * (1.1 if bold else 1.0)


def textBox(x: float, y: float, size: float, text: str, anchor: str = "start",
            bold: bool = False) -> tuple[float, float, float, float]:
    """The estimated bounding box (left, top, right, bottom) of an SVG C{<text>} at
    C{x}, C{y} (its baseline) with C{text-anchor} C{anchor}."""
    w = textWidth(text, size, bold)
    x0 = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
    return x0, y - _ASCENT * size, x0 + w, y + _DESCENT * size


def packRows(spans: Sequence[tuple[float, float, float | None]],
             gap: float = 6.0) -> list[int]:
    """
    Rows (0 at the top) for labels: C{(left, right, leader)} spans, C{leader} the
    x of a vertical line from the label down past the rows below it (to the axis),
    or C{None}. Labels in a row are at least C{gap} pixels apart. A label whose
    span a leader passes under is packed before that leader's label, and each
    label goes in the first row where it fits and its leader crosses no label
    below: then no leader crosses a label, unless two labels each cover the
    other's leader. As many rows are used as needed, and no more: labels that do
    not overlap all get row 0.
    """
    count = len(spans)
    # over[i]: the labels whose leaders pass under label i (i goes above them).
    over = [[j for j, (_, _, leader) in enumerate(spans)
             if j != i and leader is not None and x0 - 2 <= leader <= x1 + 2]
            for i, (x0, x1, _) in enumerate(spans)]
    waiting = [0] * count
    for i in range(count):
        for j in over[i]:
            waiting[j] += 1
    order: list[int] = []
    placed = [False] * count
    while len(order) < count:
        # The first in the given order that no unplaced label must go above (if
        # there is none, labels cover each other's leaders: the first unplaced).
        i = next((i for i in range(count) if not placed[i] and waiting[i] == 0),
                 next(i for i in range(count) if not placed[i]))
        placed[i] = True
        order.append(i)
        for j in over[i]:
            waiting[j] -= 1

    rows: list[list[tuple[float, float]]] = []
    result = [0] * count
    for i in order:
        x0, x1, leader = spans[i]

        def fits(r: int, x0: float = x0, x1: float = x1) -> bool:
            return r >= len(rows) or all(x1 + gap <= a or b + gap <= x0 for a, b in rows[r])

        def clear(r: int, leader: float | None = leader) -> bool:
            return leader is None or not any(a - 2 <= leader <= b + 2
                                             for below in rows[r + 1:] for a, b in below)

        # A new row at the bottom always does.
        row = next(r for r in range(len(rows) + 1) if fits(r) and clear(r))
        if row == len(rows):
            rows.append([])
        rows[row].append((x0, x1))
        result[i] = row
    return result


def _ticks(span: float) -> list[float]:
    """Round tick values from 0 to C{span}, about 10 of them."""
    steps = [1, 2, 5]
    magnitude = 10.0 ** int(f"{span / 10:e}".split("e")[1]) if span > 0 else 1.0
    step = magnitude
    for step in (s * magnitude for s in steps + [10]):
        if span / step <= 10:
            break
    count = int(span / step) + 1
    return [round(i * step, 6) for i in range(count)]
