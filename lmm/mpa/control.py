"""
The MPA's control channel: a UNIX stream socket (C{control.socket}), one
command per line, one line of JSON per answer.

    visitors                 the Visitor List (and entries still deregistering)
    counters                 every counter: the agent's, the access links', the service's
    links                    the access interfaces and their state
    attach IF MAC [NAI]      an access point reports an attach (the explicit backend's input)
    detach IF MAC            ... and a detach
    tunnel BACKEND [KEY=VALUE ...]
                             swap the tunnel backend (shared with the other daemon:
                             L{lmm.control}, docs/dataplane.md)
    security [reload]        the signaling's protection; reload the key file (shared)
    peers                    the LMAPs' heartbeats: up or down, Restart Counters (shared)
    help                     the commands

The line protocol, the client and the command line tool are L{lmm.control}'s;
C{python -m lmm.mpa.control SOCKET visitors} is C{python -m lmm.control}.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from twisted.internet.defer import Deferred

from lmm import config, control
from lmm.control import CommandError, arity, ask, formatAnswer, table  # noqa: F401 (the old names)
from lmm.mpa.visitor import AttachEvent, DetachEvent

HELP = {
    "visitors": "the Visitor List",
    "counters": "every counter",
    "links": "the access interfaces",
    "attach IF MAC [NAI]": "report an attach",
    "detach IF MAC": "report a detach",
    control.TUNNEL_USAGE: control.TUNNEL_HELP,
    control.SECURITY_USAGE: control.SECURITY_HELP,
    "peers": control.PEERS_HELP,
    "help": "this",
}


def _interface(service: Any, name: str) -> str:
    if name not in service.agent.accessInterfaces:
        raise CommandError(f"{name} is not an access interface "
                           f"({', '.join(service.agent.accessInterfaces)})")
    return name


def _mac(text: str) -> str:
    try:
        return config.macAddress(text)
    except ValueError as e:
        raise CommandError(str(e)) from None


def execute(service: Any, words: list[str]) -> dict[str, Any] | Deferred[dict[str, Any]]:
    """Run one command on an L{lmm.mpa.service.MPAService}; the answer."""
    command, args = control.split(words)
    if command == "visitors":
        arity(args, 0, 0, "visitors")
        return {"ok": True, "now": service.reactor.seconds(),
                "visitors": service.describeVisitors()}
    if command == "counters":
        arity(args, 0, 0, "counters")
        return {"ok": True, "counters": dict(sorted(service.allCounters().items()))}
    if command == "links":
        arity(args, 0, 0, "links")
        return {"ok": True, "links": service.describeLinks()}
    if command == "attach":
        arity(args, 2, 3, "attach IF MAC [NAI]")
        nai = args[2].encode("utf-8") if len(args) == 3 else None
        event = AttachEvent(_interface(service, args[0]), _mac(args[1]), nai)
        report: Callable[[Any], None] = getattr(service.detector, "attach", service.attach)
        report(event)
        return {"ok": True}
    if command == "detach":
        arity(args, 2, 2, "detach IF MAC")
        detachEvent = DetachEvent(_interface(service, args[0]), _mac(args[1]))
        getattr(service.detector, "detach", service.detach)(detachEvent)
        return {"ok": True}
    return control.common(service, command, args, HELP)



def main(argv: list[str]) -> int:
    return control.main(argv, "python -m lmm.mpa.control")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
