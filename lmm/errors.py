"""The one error both the control channel and the backends it drives raise."""

from __future__ import annotations


class OperatorError(Exception):
    """What an operator's command cannot do, in words for the operator: the
    control channel answers with its message (C{{"ok": false, "error": ...}})
    instead of logging an internal error."""
