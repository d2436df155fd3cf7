"""
What the pure state machines (the LMAP's anchor, the MPA's proxy agent) ask
their services to do. A state machine returns a list of these; the service
carries them out in order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lmm.mh import MHType, MobilityMessage
from lmm.tunnel import TunnelBinding


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Send a Mobility Header C{message} to C{destination} (from the node's address)."""

    message: MobilityMessage
    destination: str


@dataclass(frozen=True, slots=True)
class AddTunnel:
    """Make the data plane carry C{binding}; what follows waits until it does."""

    binding: TunnelBinding


@dataclass(frozen=True, slots=True)
class RemoveTunnel:
    """Stop carrying C{binding}."""

    binding: TunnelBinding


@dataclass(frozen=True, slots=True)
class HoldDownlink:
    """The visitor of MPA binding C{binding} is departing (its base station
    reported it gone): what its peer tunnels to it is kept, not delivered,
    until a L{ReleaseDownlink} or the binding's removal (which drops it).
    RFC 5949's reactive mode, at the previous MAG (docs/mpa.md "Departing
    visitors"); a data plane that cannot hold packets lets this pass."""

    binding: TunnelBinding


@dataclass(frozen=True, slots=True)
class ReleaseDownlink:
    """Stop holding C{binding}'s downlink. What was kept goes back up the
    tunnel to the LMAP with C{handBack} (the MS moved; the LMAP sends it on
    to the new MPA), with copies of what was delivered to the MS since it
    was last heard from (it may have left before receiving them), else out
    on the access link (the MS is back)."""

    binding: TunnelBinding
    handBack: bool


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth a log line: C{event} names it, C{fields} says what."""

    event: str
    fields: dict[str, Any]


#: A state machine's handler of one kind of Mobility Header message: (message,
#: source, now) to actions.
Handler = Callable[[Any, str, float], list[Any]]


def kindName(message: MobilityMessage) -> str:
    """The message's MH type as a counter's word (C{binding-update}), or its number."""
    try:
        return MHType(message.mhType).name.lower().replace("_", "-")
    except ValueError:
        return str(message.mhType)


def dispatch(handlers: Mapping[type, Handler], counters: Counter[str],
             message: MobilityMessage, source: str, now: float) -> list[Any]:
    """C{message} from C{source} to its kind's handler; a kind with none is
    counted (C{ignored.KIND}) and gets nothing."""
    handler = handlers.get(type(message))
    if handler is None:
        counters["ignored." + kindName(message)] += 1
        return []
    return handler(message, source, now)
