"""
An ICMPv6 echo prober for the lab: requests on an exact schedule, output in
the format of C{ping -D -n} (what L{lmm.lab.timeline.parsePing} reads).

Why not iputils ping: its C{-i} is exact below 10 ms, but on this platform
(iputils 20221126, Linux 6.18) C{-i 0.01} sends every 16 ms and C{-i 0.02}
every 24 ms, so a "10 ms" probe would measure outages to 16 ms. Here request
N leaves at start + N x interval, whatever the replies do, as the handover
benchmark's figures assume.

    python -m lmm.lab.pinger DESTINATION INTERVAL COUNT [WAIT]

Ends after COUNT requests (and WAIT seconds more for the last replies, 1 by
default), or on SIGINT/SIGTERM, with the summary line ping prints.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

ECHO_REQUEST, ECHO_REPLY = 128, 129
PAYLOAD = 56  # ping's default: 64 bytes of ICMPv6


class Stop(Exception):
    pass


def _stop(signum: int, frame: Any) -> None:
    raise Stop()


def run(destination: str, interval: float, count: int, wait: float = 1.0,
        out: Any = sys.stdout) -> int:
    """Probe C{destination}; the number of replies. L{Stop} raised while it runs
    (L{main}'s signal handlers) ends it early, with the summary."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    # Only echo replies (ICMP6_FILTER, type 1 of level IPPROTO_ICMPV6): block
    # all 256 types but 129.
    blocked = [0xFFFFFFFF] * 8
    blocked[ECHO_REPLY >> 5] &= ~(1 << (ECHO_REPLY & 31))
    sock.setsockopt(socket.IPPROTO_ICMPV6, 1, struct.pack("8I", *blocked))
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    identifier = os.getpid() & 0xFFFF
    sent: dict[int, float] = {}
    answered: set[int] = set()
    received = 0
    duplicated = 0
    transmitted = 0
    out.write(f"PING {destination} {PAYLOAD} data bytes\n")
    out.flush()
    start = time.time()
    end: float | None = None
    try:
        while True:
            now = time.time()
            if transmitted < count:
                due = start + transmitted * interval
                if now >= due:
                    transmitted += 1
                    sequence = transmitted & 0xFFFF
                    payload = struct.pack("!d", now) + bytes(PAYLOAD - 8)
                    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, identifier, sequence)
                    sent[sequence] = now
                    answered.discard(sequence)  # (after a wrap of the sequence)
                    try:
                        sock.sendto(header + payload, (destination, 0))
                    except OSError:
                        pass  # no route (the link is moving): a lost request
                    continue
                timeout = due - now
            else:
                if end is None:
                    end = now + wait
                timeout = end - now
                if timeout <= 0 or received >= transmitted:
                    break
            ready, _, _ = select.select([sock], [], [], max(0.0, timeout))
            if not ready:
                continue
            data, ancillary, _, source = sock.recvmsg(2048, socket.CMSG_SPACE(4))
            arrived = time.time()
            if len(data) < 8:
                continue
            kind, _, _, ident, sequence = struct.unpack_from("!BBHHH", data)
            if kind != ECHO_REPLY or ident != identifier or sequence not in sent:
                continue
            hops = next((struct.unpack("i", value)[0] for level, kind, value in ancillary
                         if kind == socket.IPV6_HOPLIMIT), 0)
            rtt = (arrived - sent[sequence]) * 1000
            # A second reply to one request (a copy delivered twice) is shown, as
            # ping shows it, and not counted as received.
            duplicate = sequence in answered
            if duplicate:
                duplicated += 1
            else:
                answered.add(sequence)
                received += 1
            out.write(f"[{arrived:.6f}] {len(data)} bytes from {source[0]}: "
                      f"icmp_seq={sequence} ttl={hops} time={rtt:.3f} ms"
                      + (" (DUP!)\n" if duplicate else "\n"))
            out.flush()
    except Stop:
        pass
    finally:
        sock.close()
    lost = transmitted - received
    percent = 0 if not transmitted else round(100 * lost / transmitted)
    duplicates = f"+{duplicated} duplicates, " if duplicated else ""
    out.write(f"\n--- {destination} ping statistics ---\n"
              f"{transmitted} packets transmitted, {received} received, {duplicates}"
              f"{percent}% packet loss\n")
    out.flush()
    return received


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        sys.stderr.write(__doc__ or "")
        return 2
    destination, interval, count = argv[0], float(argv[1]), int(argv[2])
    wait = float(argv[3]) if len(argv) == 4 else 1.0
    # Stopped like ping: the summary still comes.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    run(destination, interval, count, wait)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
