"""
What changes while a daemon runs (docs/operations.md, "Reload and swapping
backends"): backends swapped by name, and the configuration file read again.

 - L{BackendConfig}: what the file says of one kind of backend, what a
   restart brings back; a swap's options default to the file's when it names
   the backend the file names, and its answer says whether a restart keeps it.
 - L{SwappableAuthenticator}: the MPA's authentication backend, replaced while
   Access-Requests are in flight: each finishes on the backend it started on,
   which is stopped after its last answer.
 - L{Reloader}: the file read again (the C{reload} command, SIGHUP): every key
   is checked first, as at start, and a bad file changes nothing; then each
   group of keys that can change live (L{LiveKeys}) and changed is applied, and
   each other changed key is named, one line per key, as needing a restart.

The tunnel backend's swap is L{lmm.dataplane.swapping}'s (make before break,
its bindings moved); the attach detector's and the DHCPv6 relay port's are the
MPA service's (L{lmm.mpa.service.MPAService.swapDetector}, C{swapRelay}).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.python.failure import Failure
from zope.interface import implementer

from lmm.backends import findBackend
from lmm.config import ConfigError, tomlValue
from lmm.errors import OperatorError
from lmm.interfaces import IAuthenticator, IReactor
from lmm.logs import Logger

log = Logger(namespace="lmm.live")


class SwapError(OperatorError):
    """A swap could not be done; the message says why. The old backend stays."""


class ReloadError(OperatorError):
    """A reload that changed nothing (a bad file, one already running)."""


def direct(build: Callable[[], Any]) -> Any:
    """The C{within} of a daemon that builds in its own namespace: C{build()}."""
    return build()


# --- what the file says ----------------------------------------------------------------


@dataclass(frozen=True)
class BackendConfig:
    """
    What the daemon's configuration file says of one kind of backend.

    @ivar kind: the table's name: C{tunnel}, C{aaa}, C{attach}, C{dhcp}.
    @ivar backend: C{<kind>.backend} as written (C{"auto"} too).
    @ivar options: C{[<kind>.options]}.
    @ivar built: the backend built from it at start (for C{"auto"}: the one
        it picked), None when unknown.
    @ivar path: the file, or None when unknown.
    """

    kind: str
    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)
    built: str | None = None
    path: str | None = None

    @classmethod
    def fromValues(cls, kind: str, values: Mapping[str, Any], built: str | None = None,
                   path: str | None = None) -> BackendConfig:
        """The C{<kind>.backend} and C{<kind>.options} of a daemon's checked settings."""
        return cls(kind, values[f"{kind}.backend"], dict(values[f"{kind}.options"]),
                   built, os.path.abspath(path) if path else None)

    def names(self, backend: str) -> bool:
        """Whether a restart would build C{backend}."""
        return backend in (self.backend, self.built)

    def optionsFor(self, backend: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """A swap's options: C{given} over the file's when C{backend} is the
        file's (the file's options were written for the file's backend)."""
        options = dict(self.options) if self.names(backend) else {}
        options.update(given)
        return options

    def keeps(self, backend: str, options: Mapping[str, Any]) -> bool:
        """Whether a restart brings back C{backend} with C{options}."""
        return self.names(backend) and dict(options) == dict(self.options)

    def keepHint(self, backend: str, options: Mapping[str, Any]) -> str:
        """What to write in the file for a restart to keep a swap."""
        what = f"{self.kind}.backend = {tomlValue(backend)}"
        if dict(options) != dict(self.options):
            what += f" and {self.kind}.options = {tomlValue(dict(options))}"
        return f"not kept after a restart: set {what} in {self.path or 'the configuration file'} "\
               "to keep it"

    def answer(self, backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """The part of a swap's answer that says whether a restart keeps it."""
        result: dict[str, Any] = {"kind": self.kind, "backend": backend,
                                  "options": dict(options),
                                  "persistent": self.keeps(backend, options)}
        if not result["persistent"]:
            result["hint"] = self.keepHint(backend, options)
        return result


def buildSwapped(interface: Any, kind: str, name: str, options: Mapping[str, Any],
                 reactor: IReactor, within: Callable[[Callable[[], Any]], Any] = direct,
                 current: str = "?") -> Any:
    """Backend C{name} of C{interface} built with C{options} (in the daemon's
    namespace, C{within}), or L{SwapError} saying why not and that C{current}
    stays."""
    try:
        factory = findBackend(interface, name)
        return within(lambda: factory.build(dict(options), reactor))
    except Exception as e:
        log.warn("{kind} backend swap to {name} refused: {error}; {old} stays",
                 kind=kind, name=name, error=e, old=current)
        raise SwapError(f"cannot build the {name} {kind} backend: {e}; nothing changed, "
                        f"{current} stays") from None


def _stopped(backend: Any, what: str) -> Deferred[Any]:
    d = maybeDeferred(backend.stop)
    d.addErrback(lambda f: log.failure("stopping the retired {what} backend", f, what=what))
    return d


# --- authentication ------------------------------------------------------------------


@implementer(IAuthenticator)
class SwappableAuthenticator:
    """
    The MPA's authenticator: delegates to C{current} and replaces it while
    the daemon runs (L{swap}). An Access-Request in flight finishes on the
    backend it went to (its sockets, its retransmissions); a replaced backend
    is stopped when its last answer (or failure) is in.

    @ivar name: the current backend's name.
    """

    def __init__(self, backend: Any, name: str, reactor: IReactor,
                 within: Callable[[Callable[[], Any]], Any] = direct) -> None:
        self.current = backend
        self.name = name
        self.reactor = reactor
        self.within = within
        # Requests in flight per backend (by id), and the replaced ones still answering.
        self._inFlight: dict[int, int] = {}
        self._retiring: dict[int, tuple[Any, str]] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.current!r}>"

    def authenticate(self, request: Any) -> Deferred[Any]:
        backend = self.current
        key = id(backend)
        self._inFlight[key] = self._inFlight.get(key, 0) + 1
        d = maybeDeferred(backend.authenticate, request)
        d.addBoth(self._answered, key)
        return d

    def _answered(self, result: Any, key: int) -> Any:
        left = self._inFlight[key] = self._inFlight[key] - 1
        if left == 0:
            del self._inFlight[key]
            retired = self._retiring.pop(key, None)
            if retired is not None:
                _stopped(*retired)
        return result

    @property
    def retiring(self) -> int:
        """Replaced backends still answering requests."""
        return len(self._retiring)

    def swap(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """
        Build backend C{name} with C{options} and send every new request to
        it; the old one answers what it was asked, then stops. Two instances
        of one backend are fine (a RADIUS server list or secret changed):
        each has its own sockets. L{SwapError} when it cannot be built: the
        old one stays.
        """
        new = buildSwapped(IAuthenticator, "aaa", name, options, self.reactor, self.within,
                           self.name)
        old, oldName = self.current, self.name
        self.current, self.name = new, name
        inFlight = self._inFlight.get(id(old), 0)
        if inFlight:
            self._retiring[id(old)] = (old, oldName)
        else:
            _stopped(old, oldName)
        log.info("authentication backend swapped from {old} to {new}; {count} request(s) in "
                 "flight finish on {old}", old=oldName, new=name, count=inFlight)
        return {"previous": oldName, "inFlight": inFlight}

    def stop(self) -> Deferred[Any]:
        waits = [maybeDeferred(self.current.stop)]
        waits += [maybeDeferred(old.stop) for old, _ in self._retiring.values()]
        self._retiring.clear()
        return DeferredList(waits)


# --- reload ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveKeys:
    """
    Keys a running daemon can take from a reloaded file: when any of them
    changed, C{apply} is called with the file's checked values (it returns
    None or a Deferred; an exception, or a failed Deferred, is that group's
    failure, and the running values stay).

    @ivar always: apply at every reload, changed or not (the key file: its
        contents change, not its name).
    """

    keys: tuple[str, ...]
    apply: Callable[[Mapping[str, Any]], Any]
    always: bool = False


def plan(running: Mapping[str, Any], loaded: Mapping[str, Any], live: Sequence[LiveKeys]
         ) -> tuple[list[LiveKeys], list[str]]:
    """What a reload does: the groups to apply (in C{live}'s order) and the
    changed keys no group takes (they need a restart), in the settings' order."""
    changed = [key for key in loaded if loaded[key] != running.get(key)]
    taken = {key for group in live for key in group.keys}
    groups = [group for group in live
              if group.always or any(key in changed for key in group.keys)]
    return groups, [key for key in changed if key not in taken]


class Reloader:
    """
    Reads the daemon's configuration file again and applies what it can
    (L{plan}, L{LiveKeys}); one reload at a time.

    @param load: reads and checks the file as at start (a L{ConfigError}
        for a bad one), giving its values.
    @ivar running: the values in use: the file's at start, then each
        reload's for the keys it applied.
    """

    def __init__(self, path: str, running: Mapping[str, Any],
                 load: Callable[[str], Mapping[str, Any]], live: Sequence[LiveKeys]) -> None:
        self.path = path
        self.running = dict(running)
        self.load = load
        self.live = list(live)
        self.reloads = 0
        self._busy = False

    def swapped(self, kind: str, backend: str, options: Mapping[str, Any]) -> None:
        """A swap command made C{backend} run: a reload compares the file with
        it (and swaps back to what the file says)."""
        self.running[f"{kind}.backend"] = backend
        self.running[f"{kind}.options"] = dict(options)

    def reload(self) -> Deferred[dict[str, Any]]:
        """
        The C{reload} command: fires with C{applied} (keys taken),
        C{failed} (key: why, for groups that could not be applied),
        C{restart} (key: one line saying what the file says and what runs),
        or fails with L{ReloadError} when nothing was changed.
        """
        if self._busy:
            raise ReloadError("a reload is already running")
        try:
            loaded = dict(self.load(self.path))
        except ConfigError as e:
            log.error("reload of {path} refused, nothing changed: {error}", path=self.path,
                      error=e)
            raise ReloadError(f"{e}; nothing changed") from None
        self._busy = True
        d = Deferred.fromCoroutine(self._apply(loaded))

        def done(result: Any) -> Any:
            self._busy = False
            return result

        return d.addBoth(done)

    async def _apply(self, loaded: dict[str, Any]) -> dict[str, Any]:
        groups, restart = plan(self.running, loaded, self.live)
        applied: list[str] = []
        failed: dict[str, str] = {}
        for group in groups:
            keys = [key for key in group.keys if loaded.get(key) != self.running.get(key)]
            try:
                await maybeDeferred(group.apply, loaded)
            except Exception as e:
                if not isinstance(e, OperatorError):
                    log.failure("reload: applying {keys} failed", Failure(),
                                keys=", ".join(group.keys))
                for key in keys or group.keys[:1]:
                    failed[key] = str(e)
                    log.warn("reload: {key} not applied: {error}", key=key, error=e)
                continue
            for key in group.keys:
                self.running[key] = loaded.get(key)
            applied += keys
            for key in keys:
                log.info("reload: {key} = {value} applied", key=key,
                         value=tomlValue(loaded.get(key)))
        lines = {}
        for key in restart:
            lines[key] = (f"{key}: needs a restart (the file says {_shown(loaded[key])}, "
                          f"{_shown(self.running.get(key))} runs)")
            log.warn("reload: {line}", line=lines[key])
        self.reloads += 1
        log.info("configuration {path} reloaded: {applied} applied, {failed} failed, "
                 "{restart} need a restart", path=self.path, applied=len(applied),
                 failed=len(failed), restart=len(restart))
        return {"ok": True, "file": self.path, "applied": applied, "failed": failed,
                "restart": lines}


def _shown(value: Any) -> str:
    return "nothing" if value is None else tomlValue(value)


class ReloadOnHangup(Service):
    """SIGHUP reloads the configuration while the daemon runs (as for most
    daemons); the handler before is put back when the service stops."""

    name = "reload-on-hangup"

    def __init__(self, reloader: Reloader, reactor: Any) -> None:
        self.reloader = reloader
        self.reactor = reactor
        self._previous: Any = None

    def startService(self) -> None:
        Service.startService(self)
        self._previous = signal.signal(signal.SIGHUP, self._hangup)

    def stopService(self) -> None:
        Service.stopService(self)
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _hangup(self, signum: int, frame: Any) -> None:
        # In the signal handler: only wake the reactor.
        self.reactor.callFromThread(self._reload)

    def _reload(self) -> None:
        log.info("SIGHUP: reloading {path}", path=self.reloader.path)
        try:
            d = self.reloader.reload()
        except ReloadError:
            return  # logged by the reloader
        d.addErrback(lambda f: log.failure("reload after SIGHUP", f))
