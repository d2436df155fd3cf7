"""
Finding backends by name through Twisted's plugin system.

lmm's own backends are declared in C{twisted/plugins/lmm_backends.py} with
L{Backend}; anyone can declare more the same way in a C{twisted/plugins/}
directory of their own. Declaring imports nothing: the implementation's module is
imported when the backend is built.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Protocol

from twisted.plugin import IPlugin, getPlugins
from zope.interface import Interface, implementer

from lmm.interfaces import IBackendFactory, IReactor


class BackendFactory(Protocol):
    """What an L{IBackendFactory} provider offers, for the type checker."""

    name: str
    provides: Any
    description: str

    def build(self, settings: Mapping[str, Any], reactor: IReactor) -> Any: ...


class UnknownBackend(LookupError):
    """No backend of that kind has that name; the message lists the known ones."""


@implementer(IPlugin, IBackendFactory)
class Backend:
    """
    A backend declaration.

    @param name: the name used in configuration files.
    @param provides: the interface the built object provides.
    @param factory: C{"package.module:callable"}; the callable is called with
        (settings, reactor) and returns the backend.
    """

    def __init__(self, name: str, provides: type[Interface], factory: str, description: str):
        self.name = name
        self.provides = provides
        self.factory = factory
        self.description = description

    def build(self, settings: Mapping[str, Any], reactor: IReactor) -> Any:
        moduleName, _, attribute = self.factory.partition(":")
        module = importlib.import_module(moduleName)
        backend = getattr(module, attribute)(settings, reactor)
        if not self.provides.providedBy(backend):
            raise TypeError(f"backend {self.name!r} built {backend!r}, which does not provide "
                            f"{self.provides.__name__}")
        return backend

    def __repr__(self) -> str:
        return f"<Backend {self.provides.__name__} {self.name!r}>"


def knownBackends(interface: type[Interface]) -> dict[str, BackendFactory]:
    """Every backend declared for C{interface}, by name."""
    found: dict[str, BackendFactory] = {}
    for plugin in getPlugins(IBackendFactory):
        if plugin.provides is interface:
            found.setdefault(plugin.name, plugin)
    return found


def findBackend(interface: type[Interface], name: str) -> BackendFactory:
    """The backend for C{interface} called C{name}, or L{UnknownBackend}."""
    known = knownBackends(interface)
    try:
        return known[name]
    except KeyError:
        names = ", ".join(sorted(known)) or "none"
        raise UnknownBackend(
            f"no {interface.__name__} backend named {name!r}; known: {names}"
        ) from None
