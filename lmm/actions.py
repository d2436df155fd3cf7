"""
What the pure state machines (the LMAP's anchor, the MPA's proxy agent) ask
their services to do. A state machine returns a list of these; the service
carries them out in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmm.mh import MobilityMessage
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
class Note:
    """Something worth a log line: C{event} names it, C{fields} says what."""

    event: str
    fields: dict[str, Any]
