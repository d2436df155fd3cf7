"""
The LMAP's control channel (C{control.socket}; the protocol, the client and
C{python -m lmm.control} are L{lmm.control}'s):

    bindings                 the Binding Cache: NAI, Local Address, care-of, lifetime, expires
    counters                 the anchor's counters
    tunnel BACKEND [KEY=VALUE ...]
                             swap the tunnel backend (shared with the other daemon:
                             L{lmm.control}, docs/dataplane.md)
    security [reload]        the signaling's protection; reload the key file (shared)
    peers                    the MPAs' heartbeats: up or down, Restart Counters (shared)
    help                     the commands
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from lmm import control
from lmm.control import arity

HELP = {
    "bindings": "the Binding Cache",
    "counters": "every counter",
    control.TUNNEL_USAGE: control.TUNNEL_HELP,
    control.SECURITY_USAGE: control.SECURITY_HELP,
    "peers": control.PEERS_HELP,
    "help": "this",
}


def execute(service: Any, words: list[str]) -> dict[str, Any] | Deferred[dict[str, Any]]:
    """Run one command on an L{lmm.lmap.service.LMAPService}; the answer."""
    command, args = control.split(words)
    if command == "bindings":
        arity(args, 0, 0, "bindings")
        return {"ok": True, "now": service.reactor.seconds(),
                "bindings": service.describeBindings()}
    if command == "counters":
        arity(args, 0, 0, "counters")
        return {"ok": True, "counters": dict(sorted(service.allCounters().items()))}
    return control.common(service, command, args, HELP)

