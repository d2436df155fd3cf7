"""
Every counter a pure core counts is declared in a C{COUNTERS} table of its
modules, and every declared one is counted: the tables are the operator's
list of what C{counters} shows, so they must not drift from the code.

The counting sites are found in the source (ast): a subscript of something
named C{counters} whose key is a string, an f-string, a string plus something,
or a choice between strings; and the relay's C{_drop(reason)}. A key held in a
variable (an event name passed in) is not checked here; its values are
literals elsewhere in the module, which the second check finds.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator

from twisted.trial.unittest import SynchronousTestCase

# A core's modules (their COUNTERS together), and modules whose counting it
# shares without declaring (lmm.signaling and lmm.actions count into the counters
# they are given).
GROUPS = {
    "the MPA's agent": (["lmm.mpa.agent", "lmm.mpa.registration", "lmm.mpa.homelink",
                         "lmm.heartbeat"], ["lmm.signaling", "lmm.actions"]),
    "the DHCPv6 relay core": (["lmm.mpa.relay"], []),
    "the LMAP's anchor": (["lmm.lmap.anchor", "lmm.lmap.revocation", "lmm.heartbeat"],
                          ["lmm.signaling", "lmm.actions"]),
}

_PLACEHOLDER = "\x00"


def _key(node: ast.expr) -> Iterator[str]:
    """The counter names (placeholders for the computed parts) a key spells."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.JoinedStr):
        yield "".join(str(v.value) if isinstance(v, ast.Constant) else _PLACEHOLDER
                      for v in node.values)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        for left in _key(node.left) or [_PLACEHOLDER]:
            rights = list(_key(node.right)) or [_PLACEHOLDER]
            for right in rights:
                yield left + right
    elif isinstance(node, ast.IfExp):
        yield from _key(node.body)
        yield from _key(node.orelse)


def _named(node: ast.expr, name: str) -> bool:
    return (isinstance(node, ast.Name) and node.id == name) or (
        isinstance(node, ast.Attribute) and node.attr == name)


def countedIn(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and _named(node.value, "counters"):
            found.update(_key(node.slice))
        elif (isinstance(node, ast.Call) and _named(node.func, "_drop") and node.args):
            found.update(_key(node.args[0]))
    return {name for name in found if name.strip(_PLACEHOLDER)}


def pattern(declared: str) -> re.Pattern[str]:
    """A declared name as a regular expression: C{<...>} is any value."""
    parts = re.split(r"<[^>]*>", declared)
    return re.compile(".+".join(re.escape(p) for p in parts) + r"\Z")


class CounterTableTests(SynchronousTestCase):
    def group(self, modules: list[str]) -> tuple[dict[str, str], str]:
        declared: dict[str, str] = {}
        source = ""
        for name in modules:
            module = importlib.import_module(name)
            declared.update(module.COUNTERS)
            source += inspect.getsource(module)
        return declared, source

    def test_everyCounterDeclared(self) -> None:
        for what, (modules, shared) in GROUPS.items():
            declared, source = self.group(modules)
            sharedSource = "".join(inspect.getsource(importlib.import_module(m)) for m in shared)
            patterns = [pattern(d) for d in declared]
            for name in sorted(countedIn(source) | countedIn(sharedSource)):
                sample = name.replace(_PLACEHOLDER, "x")
                self.assertTrue(any(p.match(sample) for p in patterns),
                                f"{what} counts {sample!r}, not in its COUNTERS tables")

    def test_everyDeclaredCounted(self) -> None:
        for what, (modules, shared) in GROUPS.items():
            declared, source = self.group(modules)
            source += "".join(inspect.getsource(importlib.import_module(m)) for m in shared)
            for name in declared:
                literal = name.split("<", 1)[0]
                self.assertIn(literal, source.replace(f'"{name}": ', ""),
                              f"{what} declares {name!r} and never counts it")

    def test_finder(self) -> None:
        """The finder sees each way a key is written."""
        source = (
            'counters["a.b"] += 1\n'
            'self.counters[f"c.{x}"] += 1\n'
            'counters["d." + y] += 1\n'
            'counters["e" if z else "f"] += 1\n'
            'self._drop("g." + w)\n'
            'counters[event] += 1\n'
        )
        self.assertEqual(countedIn(source),
                         {"a.b", "c.\x00", "d.\x00", "e", "f", "g.\x00"})
        self.assertTrue(pattern("pba.rejected.<status>").match("pba.rejected.x"))
        self.assertFalse(pattern("pba.rejected.<status>").match("pba.accepted"))
