#!/usr/bin/env python3
"""
pbu-reflector's answer on lmm's own read path: the Twisted epoll reactor and
L{lmm.rawsock.MobilityHeaderPort} (the LMAP's Mobility Header socket and its
read loop), answering each BU with the 16-byte PBA of ../shared/tools'
pbu-reflector (status 0, its sequence number and lifetime), with no lmm core,
no store, no security. bench/lmap.py measures it beside the C reflector: what
Python and Twisted cost before lmm does any work.

    rawsock_reflector.py ADDRESS
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from twisted.internet import epollreactor  # noqa: E402

epollreactor.install()

from twisted.internet import reactor  # noqa: E402

from lmm.rawsock import MobilityHeaderPort, MobilityHeaderProtocol  # noqa: E402


class Reflector(MobilityHeaderProtocol):
    def datagramReceived(self, data: bytes, source: str) -> None:
        # No next header, length 1 (16 bytes), type 6 (BA); status 0, P flag;
        # the BU's sequence number (its bytes 6-7) and lifetime (10-11).
        answer = bytearray(16)
        answer[0], answer[1], answer[2], answer[7] = 59, 1, 6, 0x20
        answer[8:10] = data[6:8]
        answer[10:12] = data[10:12]
        self.transport.send(bytes(answer), source)


def main() -> None:
    MobilityHeaderPort(Reflector(), sys.argv[1], reactor).startListening()
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
