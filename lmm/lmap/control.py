"""
The LMAP's control channel (C{control.socket}; the protocol is
L{lmm.control}'s, the client C{lmmctl} is L{lmm.ctl}'s):

    bindings [nai=X] [address=A] [mpa=M] [limit=N]
                             the Binding Cache, filtered here (never all of a
                             million entries to be filtered by the client)
    revoke NAI               remove the MS's binding and revoke it at its MPA
                             (a Binding Revocation Indication, RFC 5846)
    counters [PREFIX]        the counters (those starting with PREFIX)
    tunnel BACKEND [KEY=VALUE ...]
                             swap the tunnel backend (shared with the other daemon:
                             L{lmm.control}, docs/dataplane.md)
    security [reload]        the signaling's protection; reload the key file (shared)
    peers                    the MPAs' heartbeats: up or down, Restart Counters (shared)
    help                     the commands

The answers' fields: docs/operations.md ("The control channel and lmmctl").
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from lmm import control, ctl
from lmm.actions import Note
from lmm.control import CommandError, arity
from lmm.inet import canonical

BINDINGS_USAGE = "bindings [nai=X] [address=A] [mpa=M] [limit=N]"
BINDING_FILTERS = ("nai", "address", "mpa", "limit")

HELP = {
    "bindings": "the Binding Cache, one row per binding; filters: nai=X, address=A (an "
                "address, or a prefix: the bindings inside it), mpa=M (the care-of address), "
                f"limit=N (default {ctl.DEFAULT_LIMIT}, 0: all)",
    "revoke NAI": "remove the MS's binding and its tunnel, and send its MPA a Binding "
                  "Revocation Indication (an MPA without RFC 5846: removed here only)",
    "counters [PREFIX]": "every counter, or those starting with PREFIX",
    control.TUNNEL_USAGE: control.TUNNEL_HELP,
    control.SECURITY_USAGE: control.SECURITY_HELP,
    "peers": control.PEERS_HELP,
    "help": "this",
}


def _address(text: str, key: str) -> str:
    try:
        return canonical(text)
    except (OSError, ValueError):
        raise CommandError(f"{key}=: not an IPv6 address: {text!r}") from None


def bindingsCommand(service: Any, args: list[str]) -> dict[str, Any]:
    """C{bindings [nai=X] [address=A] [mpa=M] [limit=N]}, found by the anchor
    (L{lmm.lmap.anchor.LocalMobilityAnchor.findBindings})."""
    filters, limit = control.listingFilters(args, BINDING_FILTERS, BINDINGS_USAGE)
    nai = filters["nai"].encode("utf-8") if "nai" in filters else None
    address = control.addressFilter(filters["address"]) if "address" in filters else None
    mpa = _address(filters["mpa"], "mpa") if "mpa" in filters else None
    now = service.reactor.seconds()
    anchor = service.anchor
    matched, entries = anchor.findBindings(now, nai, address, mpa, limit)
    return {"ok": True, "now": now, "matched": matched, "total": len(anchor.store),
            "filtered": bool(filters), "bindings": [e.describe() for e in entries]}


def revokeCommand(service: Any, args: list[str]) -> dict[str, Any]:
    """C{revoke NAI}: the anchor's decision (L{lmm.lmap.anchor.LocalMobilityAnchor.revoke}),
    carried out by the service; its Note is the answer."""
    arity(args, 1, 1, "revoke NAI")
    actions = service.revoke(args[0].encode("utf-8"))
    note = next(a for a in reversed(actions) if isinstance(a, Note))
    if note.event != "binding.revoked":
        raise CommandError(f"no binding of {args[0]!r} (see bindings nai=...)")
    return {"ok": True, **note.fields}


def execute(service: Any, words: list[str]) -> dict[str, Any] | Deferred[dict[str, Any]]:
    """Run one command on an L{lmm.lmap.service.LMAPService}; the answer."""
    command, args = control.split(words)
    if command == "bindings":
        return bindingsCommand(service, args)
    if command == "revoke":
        return revokeCommand(service, args)
    return control.common(service, command, args, HELP)
