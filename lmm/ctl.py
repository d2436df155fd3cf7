"""
C{lmmctl}: the control channel's client, for both daemons, and its tables.

    lmmctl [-s SOCKET | -c CONFIG.toml] [--json] [--timeout SECONDS] COMMAND [ARGS...]

The socket is C{-s}'s, else the C{control.socket} of the daemon's
configuration file C{-c}, else C{$LMMCTL_SOCKET}. The command and its words
go to the daemon as one line; its one-line JSON answer is printed as a table
or text (C{--json}: as it came, indented). Exit status: 0 the daemon did it,
1 it refused (its error on stderr), 2 a usage or configuration file error,
3 no daemon could be asked (none listening, no permission, no answer).

An access controller calls this once per event: it imports nothing heavy
(no Twisted, no zope, no lmm module that imports them; the standard
library's C{json}, C{socket}, C{os}, C{sys}, and C{tomllib} only for C{-c}),
so that it starts and answers in well under 50 ms (bench/lmmctl.py). The
protocol itself (docs/operations.md, "The control channel and lmmctl") is simple
enough to speak directly; the server side is L{lmm.control}'s.

The pure helpers the daemons' command modules share sit here too, so that
one module says what a filter or a counter prefix is: L{parseFilters},
L{selectCounters}.
"""

from __future__ import annotations

# The C module under socket: socket.py builds its enums at import, a few ms of
# the 50 an access controller's call may take (bench/lmmctl.py).
import _socket
import json
import os
import sys
import time

# typing costs as much again, and only the type checker needs it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

#: Seconds the command line tool waits for an answer (a swap can take a while).
CLI_TIMEOUT = 60.0

#: The environment variable naming the socket when neither -s nor -c does.
SOCKET_VARIABLE = "LMMCTL_SOCKET"

#: At most this many rows of a listing by default (the LMAP's Binding Cache
#: may hold a million); C{limit=0} asks for all.
DEFAULT_LIMIT = 1000

USAGE = """\
usage: lmmctl [-s SOCKET | -c CONFIG.toml] [--json] [--timeout SECONDS] COMMAND [ARGS...]

  -s SOCKET        the daemon's control socket (its control.socket)
  -c CONFIG.toml   the daemon's configuration file: its control.socket
                   (default: $LMMCTL_SOCKET)
  --json           print the daemon's answer as it came (JSON)
  --timeout S      seconds to wait for the answer (default 60)

lmmctl -s SOCKET help lists the daemon's commands. LMAP: bindings [nai=X]
[address=A] [mpa=M] [limit=N], revoke NAI; MPA: visitors [nai=X] [address=A]
[mac=M] [interface=I] [limit=N], deregister MAC|NAI, attach IF MAC [NAI],
detach IF MAC, links; both: counters [PREFIX], peers, security, backends,
reload, swap KIND BACKEND [KEY=VALUE ...], tunnel BACKEND [KEY=VALUE ...],
help. Exit status: 0 done, 1 refused by the daemon, 2 usage, 3 no daemon
answered.
"""


class Unreachable(Exception):
    """No answer could be had from the daemon: the message says why, in one line."""


class UsageError(Exception):
    """The command line (or the configuration file it names) cannot be used."""


# --- the client ------------------------------------------------------------------


def ask(path: str, command: str, timeout: float = 5.0) -> dict[str, Any]:
    """Send one command to the daemon listening on C{path}; its answer.
    OSError when it cannot be reached, ValueError when the answer is no JSON."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode("utf-8") + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    if not data:
        raise ValueError("the daemon closed the connection without an answer")
    answer: dict[str, Any] = json.loads(data)
    return answer


def request(path: str, command: str, timeout: float = CLI_TIMEOUT) -> dict[str, Any]:
    """L{ask}, its failures as one L{Unreachable} line an operator can act on."""
    try:
        return ask(path, command, timeout)
    except FileNotFoundError:
        raise Unreachable(f"{path}: no such socket: the daemon is not running, or its "
                          "control.socket is another path") from None
    except ConnectionRefusedError:
        raise Unreachable(f"{path}: connection refused: the daemon is not running "
                          "(a socket left by one that died)") from None
    except PermissionError:
        raise Unreachable(f"{path}: permission denied: the socket is mode 0600, its "
                          "daemon's user's (run lmmctl as that user)") from None
    except TimeoutError:
        raise Unreachable(f"{path}: no answer within {timeout:g} s") from None
    except OSError as e:
        raise Unreachable(f"{path}: {e.strerror or e}") from None
    except ValueError as e:
        raise Unreachable(f"{path}: {e}") from None


def socketFromConfig(path: str) -> str:
    """
    The C{control.socket} of the daemon configuration file C{path}, a
    relative one relative to that file, as the daemon takes it
    (L{lmm.daemon.controlSocket}). L{UsageError} when the file gives none.
    """
    import tomllib  # only here: -s and $LMMCTL_SOCKET need no TOML

    try:
        with open(path, "rb") as f:
            tables = tomllib.load(f)
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not TOML: {e}") from None
    control = tables.get("control")
    value = control.get("socket") if isinstance(control, dict) else None
    if not isinstance(value, str) or not value:
        raise UsageError(f"{path}: key 'control.socket': not set, the daemon has no control "
                         "channel (set [control] socket = \"/run/lmm-....sock\")")
    if os.path.isabs(value):
        return value
    # As lmm.config.besideConfig (not imported: lmmctl starts with the standard library only).
    return os.path.join(os.path.dirname(os.path.abspath(path)), value)


# --- what the daemons' command modules share (pure) ------------------------------


def parseFilters(words: Sequence[str], keys: Sequence[str]) -> dict[str, str]:
    """
    C{KEY=VALUE} words (C{nai=ms1@lmm.test}, C{mpa=fd00::2}) to a dict;
    ValueError naming the word when one is no C{KEY=VALUE}, its key is not
    one of C{keys}, it has no value, or a key comes twice. Values are kept
    as given: what they mean (an address, a number) is the command's.
    """
    filters: dict[str, str] = {}
    for word in words:
        key, equals, value = word.partition("=")
        key = key.lower()
        if not equals:
            raise ValueError(f"expected KEY=VALUE ({', '.join(keys)}), got {word!r}")
        if key not in keys:
            raise ValueError(f"unknown filter {key!r}: {', '.join(keys)}")
        if not value:
            raise ValueError(f"{key}= needs a value")
        if key in filters:
            raise ValueError(f"{key}= given twice")
        filters[key] = value
    return filters


def parseLimit(text: str | None) -> int | None:
    """C{limit=}'s value: a whole number, 0 for no limit (None); absent:
    L{DEFAULT_LIMIT}. ValueError when it is none."""
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit():
        raise ValueError(f"limit= expects a whole number (0: no limit), got {text!r}")
    return int(text) or None


def selectCounters(counters: Mapping[str, int], prefix: str | None = None) -> dict[str, int]:
    """The counters whose names start with C{prefix} (all without one), by name.
    A prefix naming a group (C{pbu}) also matches C{pbu.accepted}."""
    return {key: counters[key] for key in sorted(counters)
            if prefix is None or key.startswith(prefix)}


# --- formatting ------------------------------------------------------------------

if TYPE_CHECKING:
    # (title, key) of a listing's columns.
    Columns = tuple[tuple[str, str], ...]

BINDING_COLUMNS: Columns = (
    ("NAI", "nai"), ("ADDRESS/PREFIX", "localAddress"), ("MPA (CARE-OF)", "careOfAddress"),
    ("LIFETIME", "lifetime"), ("REMAINING", "expires"), ("UP", "created"), ("SEQ", "sequence"),
)
VISITOR_COLUMNS: Columns = (
    ("MAC", "mac"), ("IF", "interface"), ("NAI", "nai"), ("STATE", "state"),
    ("ADDRESS", "localAddress"), ("LMAP", "lmapAddress"), ("LIFETIME", "lifetime"),
    ("REMAINING", "expires"), ("STATUS", "lastStatus"), ("PENDING", "pendingKind"),
    ("FAILURE", "failure"),
)
# Keys holding a time on the daemon's clock: shown as time left, or time since.
_UNTIL = frozenset({"expires"})
_SINCE = frozenset({"created"})
_DURATION = frozenset({"lifetime"})


def duration(seconds: float) -> str:
    """C{3725} as C{1h02m05s}, C{59} as C{59s}, a negative time as C{-3s}:
    lifetimes as an operator reads them."""
    if seconds < 0:
        return "-" + duration(-seconds)
    whole = int(seconds + 0.5)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def table(rows: list[list[str]]) -> str:
    """Rows of cells as aligned columns, two spaces apart (the first row: titles)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)


def _cell(key: str, value: Any, now: float) -> str:
    if value is None or value == "":
        return "-"
    try:
        if key in _UNTIL:
            return duration(float(value) - now)
        if key in _SINCE:
            return duration(now - float(value))
        if key in _DURATION:
            return duration(float(value))
    except ValueError:  # "-": none
        pass
    return str(value)


def listing(columns: Columns, entries: Sequence[Mapping[str, Any]], now: float) -> str:
    """Entries as a table of C{columns}, one row each."""
    rows = [[title for title, _ in columns]]
    for entry in entries:
        rows.append([_cell(key, entry.get(key), now) for _, key in columns])
    return table(rows)


def _countLine(noun: str, answer: Mapping[str, Any], shown: int) -> str:
    matched = answer.get("matched", shown)
    line = f"Total number of {noun}: {matched}"
    total = answer.get("total")
    if answer.get("filtered") and total is not None:
        line += f" (of {total})"
    if matched > shown:
        line += f"; the first {shown} shown, limit=0 for all"
    return line


def _peers(answer: Mapping[str, Any]) -> str:
    keys = ("peer", "state", "missed", "restartCounter", "restarts", "lastHeard")
    peers = answer.get("peers") or []
    lines = [f"restart counter {answer.get('restartCounter')}; heartbeat every "
             f"{answer.get('interval')} s, timeout {answer.get('timeout')} s, "
             f"{answer.get('missedAllowed')} missed allowed"]
    if peers:
        rows = [["PEER", "STATE", "MISSED", "RESTART COUNTER", "RESTARTS", "LAST HEARD"]]
        for peer in peers:
            row = [_cell(k, peer.get(k), 0.0) for k in keys]
            if peer.get("lastHeard") is not None:
                row[-1] = duration(float(peer["lastHeard"])) + " ago"
            rows.append(row)
        lines.append(table(rows))
    else:
        lines.append("no peers")
    for key, title in (("withoutRevocation", "sent no revocations"),
                       ("profileMismatches", "another wire profile")):
        for peer, why in (answer.get(key) or {}).items():
            lines.append(f"{peer}: {title}: {why}")
    return "\n".join(lines)


def _tunnel(answer: Mapping[str, Any]) -> str:
    from lmm.config import tomlValue  # stdlib only; a swap is no per-event call

    options = answer.get("options") or {}
    used = (" (" + ", ".join(f"{k}={tomlValue(v)}" for k, v in options.items()) + ")"
            if options else "")
    text = (f"tunnel backend now {answer['backend']}{used}: {answer.get('moved', 0)} "
            "binding(s) moved")
    if answer.get("persistent"):
        return text + "\nas the configuration file says: kept after a restart"
    if answer.get("hint"):
        return text + "\n" + answer["hint"]
    return text


def _swapped(answer: Mapping[str, Any]) -> str:
    """A C{swap KIND BACKEND} answer (the tunnel's has its moved bindings)."""
    if answer.get("kind", "tunnel") == "tunnel":
        return _tunnel(answer)
    from lmm.config import tomlValue  # stdlib only; a swap is no per-event call

    options = answer.get("options") or {}
    used = (" (" + ", ".join(f"{k}={tomlValue(v)}" for k, v in options.items()) + ")"
            if options else "")
    text = f"{answer['kind']} backend now {answer['backend']}{used}, was {answer.get('previous')}"
    if answer.get("inFlight"):
        text += f"; {answer['inFlight']} request(s) in flight finish on {answer['previous']}"
    if answer.get("grace"):
        text += f"; the old port takes answers for {answer['grace']:g} s more"
    if answer.get("persistent"):
        return text + "\nas the configuration file says: kept after a restart"
    return text + ("\n" + answer["hint"] if answer.get("hint") else "")


def _backends(answer: Mapping[str, Any]) -> str:
    rows = [["KIND", "ACTIVE", "CONFIGURED", "INSTALLED"]]
    for kind, entry in answer["backends"].items():
        rows.append([kind, _scalar(entry.get("active")), _scalar(entry.get("configured")),
                     ", ".join(entry.get("installed", {}))])
    return table(rows)


def _reloaded(answer: Mapping[str, Any]) -> str:
    """One line per key: applied, failed (why), needs a restart (what and what runs)."""
    lines = [f"{key}: applied" for key in answer.get("applied", [])]
    lines += [f"{key}: not applied: {why}" for key, why in answer.get("failed", {}).items()]
    lines += list(answer.get("restart", {}).values())
    return "\n".join(lines) or f"{answer.get('file')}: nothing changed"


def _revoked(answer: Mapping[str, Any]) -> str:
    what = f"{answer.get('nai')} ({answer.get('address')}) at {answer.get('mpa')}"
    if answer.get("indication"):
        return (f"revoked {what}: binding removed here, Binding Revocation Indication "
                "sent to its MPA")
    return (f"removed the binding of {what} here only: that MPA gets no revocations "
            f"({answer.get('withoutRevocation')}); it keeps its visitor until the MS leaves, "
            "and its next refresh registers it again")


def _deregistered(answer: Mapping[str, Any]) -> str:
    what = f"{answer.get('nai')} ({answer.get('mac')} on {answer.get('interface')})"
    if answer.get("deregistered"):
        return (f"deregistered {what}: visitor removed, Proxy Binding Update with lifetime 0 "
                f"sent to {answer.get('lmap')} for {answer.get('address')}")
    return f"removed the visitor {what}: it had no binding to deregister"


def generic(value: Any, indent: str = "") -> str:
    """An answer no table is made for (a command of a newer daemon): a
    readable C{key: value} line per field, nested fields indented, a list of
    records as a table."""
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "ok":
                continue
            if isinstance(item, dict) and item:
                lines.append(f"{indent}{key}:")
                lines.append(generic(item, indent + "  "))
            elif isinstance(item, list) and item and all(isinstance(i, dict) for i in item):
                lines.append(f"{indent}{key}:")
                columns = list(dict.fromkeys(k for i in item for k in i))
                rows = [[c.upper() for c in columns]]
                rows += [[_scalar(i.get(c)) for c in columns] for i in item]
                lines.extend(indent + "  " + line for line in table(rows).splitlines())
            else:
                lines.append(f"{indent}{key}: {_scalar(item)}")
    else:
        lines.append(indent + _scalar(value))
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_scalar(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items()) or "(none)"
    return str(value)


#: The commands whose answers have a form of their own: the field that answer
#: has, and the form.
_FORMS: dict[str, tuple[str, Callable[[Mapping[str, Any]], str]]] = {
    "peers": ("peers", _peers), "tunnel": ("backend", _tunnel), "swap": ("backend", _swapped),
    "backends": ("backends", _backends), "reload": ("applied", _reloaded),
    "revoke": ("nai", _revoked), "deregister": ("mac", _deregistered),
}


def formatAnswer(command: str, answer: dict[str, Any]) -> str:
    """The text lmmctl prints for a successful C{answer} to C{command} (the
    line sent): a table for the listings, a sentence for an action, the
    fields one a line for what it has no form for."""
    name = command.split()[0].lower() if command.split() else ""
    now = float(answer.get("now", time.time()))
    if name == "bindings" or (not name and "bindings" in answer):
        entries = answer.get("bindings", [])
        return (listing(BINDING_COLUMNS, entries, now) + "\n"
                + _countLine("bindings", answer, len(entries)))
    if name == "visitors" or (not name and "visitors" in answer):
        entries = answer.get("visitors", [])
        return (listing(VISITOR_COLUMNS, entries, now) + "\n"
                + _countLine("visitors", answer, len(entries)))
    if "counters" in answer and name == "counters":
        counters = answer["counters"]
        width = max(map(len, counters), default=0)
        return "\n".join(f"{key:{width}}  {value}" for key, value in counters.items()) \
            or "(none)"
    if name == "links" and "links" in answer:
        keys = ("interface", "index", "state", "mac", "socket")
        return table([[k.upper() for k in keys]]
                     + [[_scalar(link.get(k)) for k in keys] for link in answer["links"]])
    form = _FORMS.get(name)
    if form is not None and form[0] in answer:
        return form[1](answer)
    if name == "help" and "commands" in answer:
        commands = answer["commands"]
        width = max(map(len, commands), default=0)
        return "\n".join(f"{usage:{width}}  {text}" for usage, text in commands.items())
    return generic(answer) or "ok"


# --- the command line ------------------------------------------------------------


def run(path: str, words: Sequence[str], raw: bool = False,
        timeout: float = CLI_TIMEOUT) -> int:
    """Ask the daemon on C{path}, print the answer; the exit status."""
    command = " ".join(words)
    try:
        answer = request(path, command, timeout)
    except Unreachable as e:
        sys.stderr.write(f"lmmctl: {e}\n")
        return 3
    ok = bool(answer.get("ok"))
    if raw:
        sys.stdout.write(json.dumps(answer, indent=2) + "\n")
    elif ok:
        sys.stdout.write(formatAnswer(command, answer) + "\n")
    else:
        sys.stderr.write(f"error: {answer.get('error')}\n")
    return 0 if ok else 1


def parseArguments(argv: Sequence[str],
                   environ: Mapping[str, str] | None = None) -> tuple[str, list[str], bool, float]:
    """lmmctl's options (before the command; C{--json} anywhere): the
    socket, the command's words, raw JSON or not, the timeout. L{UsageError}
    says what is wrong."""
    if environ is None:
        environ = os.environ
    args = list(argv)
    raw = "--json" in args
    args = [a for a in args if a != "--json"]
    path: str | None = None
    config: str | None = None
    timeout = CLI_TIMEOUT
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option in ("-h", "--help"):
            raise UsageError("")
        if option in ("-s", "--socket", "-c", "--config", "--timeout"):
            if not args:
                raise UsageError(f"{option} needs a value")
            value = args.pop(0)
            if option in ("-s", "--socket"):
                path = value
            elif option in ("-c", "--config"):
                config = value
            else:
                try:
                    timeout = float(value)
                except ValueError:
                    raise UsageError(f"--timeout expects seconds, got {value!r}") from None
                if not timeout > 0:
                    raise UsageError(f"--timeout expects seconds, got {value!r}")
        else:
            raise UsageError(f"unknown option {option}")
    if not args:
        raise UsageError("no command (try: help)")
    if path is None and config is not None:
        path = socketFromConfig(config)
    if path is None:
        path = environ.get(SOCKET_VARIABLE) or None
    if path is None:
        raise UsageError(f"no control socket: give -s SOCKET or -c CONFIG.toml, or set "
                         f"${SOCKET_VARIABLE}")
    return path, args, raw, timeout


def main(argv: Sequence[str] | None = None) -> int:
    """The C{lmmctl} console script."""
    try:
        path, words, raw, timeout = parseArguments(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        if str(e):
            sys.stderr.write(f"lmmctl: {e}\n")
            sys.stderr.write("usage: lmmctl [-s SOCKET | -c CONFIG.toml] [--json] COMMAND "
                             "[ARGS...] (lmmctl --help)\n")
            return 2
        sys.stdout.write(USAGE)
        return 0
    return run(path, words, raw, timeout)


def legacyMain(argv: Sequence[str], program: str = "python -m lmm.control") -> int:
    """C{python -m lmm.control [--json] SOCKET COMMAND [ARGS...]}: the older
    form, the socket first."""
    args = list(argv)
    raw = "--json" in args
    args = [a for a in args if a != "--json"]
    if len(args) < 2:
        sys.stderr.write(f"usage: {program} [--json] SOCKET COMMAND [ARGS...]\n"
                         "(the command help lists the daemon's commands; lmmctl is the same "
                         "tool, faster to start)\n")
        return 2
    return run(args[0], args[1:], raw)


if __name__ == "__main__":
    sys.exit(main())
