"""
The daemons' control channel: a UNIX stream socket (C{control.socket}), one
command per line, one line of JSON per answer, C{{"ok": true, ...}} or
C{{"ok": false, "error": "..."}}. Each daemon supplies its commands (an
L{Execute}: the words of a line to an answer, or a Deferred of one):
L{lmm.mpa.control} and L{lmm.lmap.control}.

The client is L{lmm.ctl}'s: C{lmmctl -s SOCKET COMMAND [ARGS...]} (also
C{python -m lmm.control SOCKET COMMAND [ARGS...]}, the older form) prints the
answer as a table (C{--json}: as it came); C{help} lists a daemon's commands.
Every command, its answer's fields and the errors: docs/operations.md, "The
control channel and lmmctl". A line is at most 4096 bytes; words are split at white
space; answers come back in the order of the commands, one per line.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from ipaddress import IPv6Network
from typing import Any, Callable, Mapping

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.interfaces import IReactorUNIX
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from lmm.config import ConfigError
from lmm.ctl import (  # noqa: F401 (the client's old names, importable from here)
    BINDING_COLUMNS,
    CLI_TIMEOUT,
    VISITOR_COLUMNS,
    ask,
    formatAnswer,
    parseFilters,
    parseLimit,
    selectCounters,
    table,
)
from lmm.errors import OperatorError
from lmm.inet import canonical
from lmm.logs import Logger
from lmm.security import HMAC_IMPLEMENTATION, loadKeyFile

log = Logger(namespace="lmm.control")

#: A daemon's commands: the words of one line to the answer (or a Deferred of it).
Execute = Callable[[list[str]], Any]

class CommandError(OperatorError):
    """A command the daemon cannot run; the message goes back as the error."""


def arity(args: list[str], low: int, high: int, usage: str) -> None:
    if not low <= len(args) <= high:
        raise CommandError(f"usage: {usage}")


def split(words: list[str]) -> tuple[str, list[str]]:
    """A command line's command (lower case) and its arguments."""
    if not words:
        raise CommandError("empty command; try help")
    return words[0].lower(), words[1:]


def common(service: Any, command: str, args: list[str],
           commands: Mapping[str, str]) -> dict[str, Any] | Deferred[dict[str, Any]]:
    """The commands every daemon has (C{tunnel}, C{security}, C{peers},
    C{counters}, C{swap}, C{backends}, C{reload}, C{help}: C{commands}); a
    daemon's L{Execute} ends with this, for what it does not know itself."""
    if command == "tunnel":
        return tunnelCommand(service, args)
    if command == "security":
        return securityCommand(service, args)
    if command == "peers":
        arity(args, 0, 0, "peers")
        return peersCommand(service)
    if command == "counters":
        arity(args, 0, 1, "counters [PREFIX]")
        return {"ok": True, "counters": selectCounters(service.allCounters(),
                                                       args[0] if args else None)}
    if command == "swap":
        return swapCommand(service, args)
    if command == "backends":
        arity(args, 0, 0, "backends")
        return backendsCommand(service)
    if command == "reload":
        arity(args, 0, 0, "reload")
        return reloadCommand(service)
    if command == "help":
        return {"ok": True, "commands": dict(commands)}
    raise CommandError(f"unknown command {command!r}; try help")


# --- the listings' filters, both daemons' -----------------------------------------


def listingFilters(args: list[str], keys: tuple[str, ...], usage: str
                   ) -> tuple[dict[str, str], int | None]:
    """A listing's C{KEY=VALUE} filters (C{limit} taken out) and its limit;
    L{CommandError} with C{usage} when they are not."""
    try:
        filters = parseFilters(args, keys)
        return filters, parseLimit(filters.pop("limit", None))
    except ValueError as e:
        raise CommandError(f"{e}; usage: {usage}") from None


def addressFilter(text: str) -> IPv6Network:
    """C{address=}'s value: an IPv6 address (as its /128) or a prefix."""
    try:
        if "/" not in text:
            text = canonical(text) + "/128"
        return IPv6Network(text, strict=False)
    except (OSError, ValueError):
        raise CommandError(f"address=: not an IPv6 address or prefix: {text!r}") from None


# --- the peers command, both daemons' -------------------------------------------

PEERS_HELP = ("the signaling peers' heartbeats (RFC 5847): up, down or unknown, missed "
              "requests, their Restart Counters and restarts seen; this node's counter; at "
              "the LMAP, the MPAs sent no revocations (without RFC 5846) and why; the peers "
              "seen speaking another wire profile")


def peersCommand(service: Any) -> dict[str, Any]:
    """C{peers}: what the core's heartbeats know (L{lmm.heartbeat.Heartbeats})."""
    beats = service.heartbeats
    policy = beats.policy
    answer = {"ok": True, "restartCounter": beats.restartCounter,
              "interval": policy.interval, "timeout": policy.timeout,
              "missedAllowed": policy.missedAllowed,
              "peers": beats.describe(service.reactor.seconds())}
    # The LMAP's: the MPAs it sends no revocations (its anchor's rule 14), and why.
    revocationless = getattr(service, "revocationless", None)
    if revocationless is not None:
        answer["withoutRevocation"] = dict(revocationless)
    # Peers whose messages carry another wire profile's signs, with the first.
    answer["profileMismatches"] = dict(service.profileMismatches)
    return answer


# --- swap, backends, reload: both daemons' (lmm.live) ---------------------------

SWAP_USAGE = "swap KIND BACKEND [KEY=VALUE ...]"
SWAP_HELP = ("replace a backend while the daemon runs: KIND tunnel (make before break), "
             "aaa, attach or dhcp (MPA; what is in flight finishes on the old one); options "
             "as in [KIND.options] (default: the file's for the file's backend); not kept "
             "after a restart")
BACKENDS_HELP = ("each kind of backend: the one in use, the one the configuration file "
                 "names, and those installed (lmm's and third parties' plugins)")
RELOAD_HELP = ("read the configuration file again (as SIGHUP does): a bad file changes "
               "nothing; what can change live is applied, each other changed key named as "
               "needing a restart")

#: The kinds of backend, their interfaces by name (imported when asked: lmm.interfaces).
BACKEND_KINDS = {"tunnel": "ITunnelDataPlane", "aaa": "IAuthenticator",
                 "attach": "IAttachDetector", "dhcp": "IDHCPv6Relay"}


def swapCommand(service: Any, args: list[str]) -> Any:
    """C{swap KIND BACKEND [KEY=VALUE ...]}: L{lmm.live}'s swaps, through the
    service's C{swapBackend}; the answer names the backend, the options used
    and whether a restart keeps them."""
    if len(args) < 2:
        raise CommandError(f"usage: {SWAP_USAGE}")
    kind, name = args[0].lower(), args[1]
    active = service.activeBackends()
    if kind not in active:
        raise CommandError(f"this daemon swaps {', '.join(active)} backends, not {kind!r}; "
                           f"usage: {SWAP_USAGE}")
    options = parseOptions(args[2:])
    d = maybeDeferred(service.swapBackend, kind, name, options)
    return d.addCallback(lambda result: {"ok": True, **result})


def backendsCommand(service: Any) -> dict[str, Any]:
    """C{backends}: per kind, C{active}, C{configured} (and its options) and
    C{installed} (name: description)."""
    from lmm import interfaces
    from lmm.backends import knownBackends

    configs = dict(getattr(service, "backendConfigs", {}))
    if service.dataPlane.config is not None:
        configs["tunnel"] = service.dataPlane.config
    kinds = {}
    for kind, active in service.activeBackends().items():
        config = configs.get(kind)
        installed = knownBackends(getattr(interfaces, BACKEND_KINDS[kind]))
        kinds[kind] = {
            "active": active,
            "configured": None if config is None else config.backend,
            "options": {} if config is None else dict(config.options),
            "installed": {name: factory.description for name, factory in sorted(installed.items())},
        }
    return {"ok": True, "backends": kinds}


def reloadCommand(service: Any) -> Any:
    reloader = getattr(service, "reloader", None)
    if reloader is None:
        raise CommandError("this daemon was not started from a configuration file: "
                           "nothing to reload")
    return reloader.reload()


# --- the security command, both daemons' ----------------------------------------

SECURITY_USAGE = "security [reload]"
SECURITY_HELP = ("the signaling's protection: on or off, the replay window, the security "
                 "associations (never their keys); reload: read the key file again, "
                 "for a key rollover (docs/security.md)")


def securityCommand(service: Any, args: list[str]) -> dict[str, Any]:
    """C{security}: what protects the daemon's signaling; C{security reload}:
    the key file read again, its associations used from now on (a file that
    cannot be used changes nothing)."""
    arity(args, 0, 1, SECURITY_USAGE)
    signaling = service.signaling
    codec, keyFile = signaling.codec, signaling.keyFile
    if args:
        if args[0] != "reload":
            raise CommandError(f"usage: {SECURITY_USAGE}")
        if keyFile is None:
            raise CommandError("authentication is off (security.authentication = false): "
                               "there is no key file to read")
        try:
            associations = loadKeyFile(keyFile)
        except ConfigError as e:
            raise CommandError(f"{e}; the associations in use are kept") from None
        codec.rekey(associations)
        log.info("security associations reloaded from {path}: {count}",
                 path=keyFile, count=len(associations))
    associations = codec.associations
    return {"ok": True, "authentication": associations is not None,
            "replayWindow": codec.replayWindow if associations is not None else None,
            "keyFile": keyFile,
            "hmac": HMAC_IMPLEMENTATION if associations is not None else None,
            "associations": [] if associations is None else associations.describe()}


# --- the tunnel command, both daemons' ------------------------------------------

TUNNEL_USAGE = "tunnel BACKEND [KEY=VALUE ...]"
TUNNEL_HELP = ("swap the tunnel backend, make before break; options as in [tunnel.options] "
               "(default: the file's for the file's backend); not kept after a restart")

_ITEM = re.compile(r"([A-Za-z0-9_-]+)=(.*)", re.DOTALL)
# What a TOML string needs quotes for; a value without any of it that is no TOML
# value is a bare word, taken as a string (the shell eats the quotes of adopt="x").
_NOT_BARE = re.compile(r"[\s\"'\[\]{},=#]")


def _readValue(text: str) -> Any:
    """The TOML value C{text}, or a bare word as a string; ValueError if neither."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError as e:
        if text and _NOT_BARE.search(text) is None:
            return text
        raise ValueError(str(e)) from None


def _complete(text: str) -> bool:
    try:
        _readValue(text)
    except ValueError:
        return False
    return True


def parseOptions(words: list[str]) -> dict[str, Any]:
    """
    C{KEY=VALUE} words to options; each value is read as a TOML value
    (C{priority=80}, C{leftovers="adopt"}, C{relay_too_big=false}), and a bare
    word that is none (C{leftovers=adopt}) as a string. The line was split at
    spaces: a value that is not complete yet (a quoted string or an array
    with spaces in it) goes on in the next word. L{CommandError} says what is
    wrong, naming the key.
    """
    items: list[list[str]] = []
    for word in words:
        if items and not _complete(items[-1][1]):
            items[-1][1] += " " + word
            continue
        match = _ITEM.fullmatch(word)
        if match is None:
            raise CommandError(f"tunnel: expected KEY=VALUE (no spaces around =), got {word!r}; "
                               f"usage: {TUNNEL_USAGE}")
        items.append([match.group(1), match.group(2)])
    options: dict[str, Any] = {}
    for key, text in items:
        if key in options:
            raise CommandError(f"tunnel option {key}: given twice")
        if not text:
            raise CommandError(f"tunnel option {key}: no value (KEY=VALUE, no spaces around =)")
        try:
            options[key] = _readValue(text)
        except ValueError as e:
            raise CommandError(f"tunnel option {key}: {text} is not a TOML value ({e})") from None
    return options


def tunnelCommand(service: Any, args: list[str]) -> Deferred[dict[str, Any]]:
    """C{tunnel BACKEND [KEY=VALUE ...]}: C{swap tunnel BACKEND ...} (the
    service's C{dataPlane} is a L{lmm.dataplane.swapping.SwappableTunnel})."""
    if not args:
        raise CommandError(f"usage: {TUNNEL_USAGE}")
    options = parseOptions(args[1:])
    d: Deferred[dict[str, Any]] = maybeDeferred(service.swapBackend, "tunnel", args[0], options)
    return d.addCallback(lambda result: {"ok": True, **result})


class ControlProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 4096

    def __init__(self, execute: Execute) -> None:
        self.execute = execute
        # Answers go out in the order of the commands, even when one takes a while.
        self._last: Deferred[None] = succeed(None)

    def lineReceived(self, line: bytes) -> None:
        try:
            words = line.decode("utf-8").split()
        except UnicodeDecodeError as e:
            answer: Deferred[dict[str, Any]] = succeed({"ok": False, "error": str(e)})
        else:
            answer = maybeDeferred(self.execute, words)
        answer.addErrback(self._failed, line)
        self._last.addCallback(lambda _: answer).addCallback(self._send)

    def _failed(self, failure: Failure, line: bytes) -> dict[str, Any]:
        error = failure.value
        if isinstance(error, OperatorError):
            return {"ok": False, "error": str(error)}
        log.failure("control command {line!r} failed", failure, line=line)
        return {"ok": False, "error": f"internal error: {error}"}

    def _send(self, answer: dict[str, Any]) -> None:
        # default=str: a TOML date given as a tunnel option goes back as text.
        self.sendLine(json.dumps(answer, default=str).encode("utf-8"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self._send({"ok": False, "error": "line too long"})
        if self.transport is not None:
            self.transport.loseConnection()  # type: ignore[misc]


class ControlFactory(Factory):
    def __init__(self, execute: Execute) -> None:
        self.execute = execute

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        return ControlProtocol(self.execute)


class ControlService(StreamServerEndpointService):
    """
    The control channel as a service of the daemon's MultiService: a UNIX
    stream socket on C{path}, mode 0600; a stale socket of a dead daemon is
    replaced, a live daemon's is not (C{wantPID} keeps a lock file beside
    it), and then the daemon does not start: the error is raised by
    C{startService}.
    """

    def __init__(self, execute: Execute, path: str, reactor: IReactorUNIX) -> None:
        endpoint = UNIXServerEndpoint(reactor, path, mode=0o600, wantPID=True)
        super().__init__(endpoint, ControlFactory(execute))
        self.path = path
        # A socket that cannot be had stops the start, rather than a logged failure.
        self._raiseSynchronously = True

    def startService(self) -> None:
        super().startService()
        log.info("control channel on {path}", path=self.path)


# --- the client: lmm.ctl's (lmmctl), which imports nothing heavy ---------------------


def main(argv: list[str], program: str = "python -m lmm.control") -> int:
    """C{python -m lmm.control [--json] SOCKET COMMAND [ARGS...]}: lmmctl's
    L{lmm.ctl.legacyMain}, the socket first (C{lmmctl} starts faster)."""
    from lmm.ctl import legacyMain

    return legacyMain(argv, program)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
