"""
The MPA's control channel: a UNIX stream socket (C{control.socket}), one
command per line, one line of JSON per answer.

    visitors [nai=X] [address=A] [mac=M] [interface=I] [limit=N]
                             the Visitor List (and entries still deregistering),
                             filtered here
    deregister MAC|NAI       the visitor leaves as on a detach: a PBU with lifetime 0
    counters [PREFIX]        the counters (those starting with PREFIX): the agent's,
                             the access links', the service's
    links                    the access interfaces and their state
    attach IF MAC [NAI]      an access point reports an attach (the explicit backend's input)
    detach IF MAC            ... and a detach
    tunnel BACKEND [KEY=VALUE ...]
                             swap the tunnel backend (shared with the other daemon:
                             L{lmm.control}, docs/dataplane.md)
    security [reload]        the signaling's protection; reload the key file (shared)
    peers                    the LMAPs' heartbeats: up or down, Restart Counters (shared)
    help                     the commands

The line protocol is L{lmm.control}'s, the client C{lmmctl} L{lmm.ctl}'s
(C{python -m lmm.mpa.control SOCKET visitors}, the older form, still works);
the answers' fields: docs/operations.md ("The control channel and lmmctl").
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from twisted.internet.defer import Deferred

from lmm import config, control, ctl
from lmm.actions import Note
from lmm.control import CommandError, arity
from lmm.ctl import ask, formatAnswer, table  # noqa: F401 (the old names)
from lmm.mpa.visitor import AttachEvent, DetachEvent

VISITORS_USAGE = "visitors [nai=X] [address=A] [mac=M] [interface=I] [limit=N]"
VISITOR_FILTERS = ("nai", "address", "mac", "interface", "limit")

HELP = {
    "visitors": "the Visitor List, then the entries still deregistering; filters: nai=X, "
                "address=A (an address, or a prefix), mac=M, interface=I, "
                f"limit=N (default {ctl.DEFAULT_LIMIT}, 0: all)",
    "deregister MAC|NAI": "the visitor leaves as on a detach: deregistered at its LMAP (a PBU "
                          "with lifetime 0), its tunnel removed",
    "counters [PREFIX]": "every counter, or those starting with PREFIX",
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


def visitorsCommand(service: Any, args: list[str]) -> dict[str, Any]:
    """C{visitors [nai=X] [address=A] [mac=M] [interface=I] [limit=N]}, found by
    the agent (L{lmm.mpa.agent.MobilityProxyAgent.findVisitors})."""
    filters, limit = control.listingFilters(args, VISITOR_FILTERS, VISITORS_USAGE)
    address = control.addressFilter(filters["address"]) if "address" in filters else None
    agent = service.agent
    matched, entries = agent.findVisitors(
        filters["nai"].encode("utf-8") if "nai" in filters else None, address,
        _mac(filters["mac"]) if "mac" in filters else None, filters.get("interface"), limit)
    return {"ok": True, "now": service.reactor.seconds(), "matched": matched,
            "total": len(agent.visitors) + len(agent.registrations.leaving),
            "filtered": bool(filters), "visitors": [e.describe() for e in entries]}


def deregisterCommand(service: Any, args: list[str]) -> dict[str, Any]:
    """C{deregister MAC|NAI}: the agent's decision
    (L{lmm.mpa.agent.MobilityProxyAgent.deregister}), carried out by the
    service; its Note is the answer."""
    arity(args, 1, 1, "deregister MAC|NAI")
    try:
        mac: str | None = config.macAddress(args[0])
        nai = None
    except ValueError:
        mac, nai = None, args[0].encode("utf-8")
    actions = service.deregister(mac, nai)
    note = next(a for a in reversed(actions) if isinstance(a, Note))
    if note.event != "visitor.deregistered":
        if note.fields.get("leaving"):
            raise CommandError(f"{args[0]} is being deregistered already")
        raise CommandError(f"no visitor {args[0]!r} (see visitors)")
    fields = dict(note.fields)
    fields.pop("reason", None)
    return {"ok": True, **fields}


def execute(service: Any, words: list[str]) -> dict[str, Any] | Deferred[dict[str, Any]]:
    """Run one command on an L{lmm.mpa.service.MPAService}; the answer."""
    command, args = control.split(words)
    if command == "visitors":
        return visitorsCommand(service, args)
    if command == "deregister":
        return deregisterCommand(service, args)
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
