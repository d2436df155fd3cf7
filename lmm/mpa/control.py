"""
The MPA's control channel: a UNIX stream socket (C{control.socket}), one
command per line, one line of JSON per answer.

    visitors                 the Visitor List (and entries still deregistering)
    counters                 every counter: the agent's, the access links', the service's
    links                    the access interfaces and their state
    attach IF MAC [NAI]      an access point reports an attach (the explicit backend's input)
    detach IF MAC            ... and a detach
    help                     the commands

An answer is C{{"ok": true, ...}} or C{{"ok": false, "error": "..."}}. From a
shell: C{python -m lmm.mpa.control SOCKET visitors} prints a table (C{--json}
prints the answer as it came).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any, Callable

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from lmm import config
from lmm.mpa.visitor import AttachEvent, DetachEvent

log = Logger(namespace="lmm.mpa.control")

HELP = {
    "visitors": "the Visitor List",
    "counters": "every counter",
    "links": "the access interfaces",
    "attach IF MAC [NAI]": "report an attach",
    "detach IF MAC": "report a detach",
    "help": "this",
}


class CommandError(Exception):
    pass


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


def execute(service: Any, words: list[str]) -> dict[str, Any]:
    """Run one command on an L{lmm.mpa.service.MPAService}; the answer."""
    if not words:
        raise CommandError("empty command; try help")
    command, args = words[0].lower(), words[1:]

    def arity(low: int, high: int, usage: str) -> None:
        if not low <= len(args) <= high:
            raise CommandError(f"usage: {usage}")

    if command == "visitors":
        arity(0, 0, "visitors")
        return {"ok": True, "now": service.reactor.seconds(),
                "visitors": service.describeVisitors()}
    if command == "counters":
        arity(0, 0, "counters")
        return {"ok": True, "counters": dict(sorted(service.allCounters().items()))}
    if command == "links":
        arity(0, 0, "links")
        return {"ok": True, "links": service.describeLinks()}
    if command == "attach":
        arity(2, 3, "attach IF MAC [NAI]")
        nai = args[2].encode("utf-8") if len(args) == 3 else None
        event = AttachEvent(_interface(service, args[0]), _mac(args[1]), nai)
        report: Callable[[Any], None] = getattr(service.detector, "attach", service.attach)
        report(event)
        return {"ok": True}
    if command == "detach":
        arity(2, 2, "detach IF MAC")
        detachEvent = DetachEvent(_interface(service, args[0]), _mac(args[1]))
        getattr(service.detector, "detach", service.detach)(detachEvent)
        return {"ok": True}
    if command == "help":
        return {"ok": True, "commands": HELP}
    raise CommandError(f"unknown command {command!r}; try help")


class ControlProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 4096

    def __init__(self, service: Any) -> None:
        self.service = service

    def lineReceived(self, line: bytes) -> None:
        try:
            words = line.decode("utf-8").split()
            answer = execute(self.service, words)
        except (CommandError, UnicodeDecodeError) as e:
            answer = {"ok": False, "error": str(e)}
        except Exception as e:
            log.failure("control command {line!r} failed", line=line)
            answer = {"ok": False, "error": f"internal error: {e}"}
        self.sendLine(json.dumps(answer).encode("utf-8"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.sendLine(json.dumps({"ok": False, "error": "line too long"}).encode("utf-8"))
        if self.transport is not None:
            self.transport.loseConnection()  # type: ignore[misc]


class ControlFactory(Factory):
    def __init__(self, service: Any) -> None:
        self.service = service

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        return ControlProtocol(self.service)


def listenControl(service: Any, path: str, reactor: Any) -> Any:
    """Listen on C{path} (mode 0600; a stale socket of a dead MPA is replaced,
    a live MPA's is not: C{wantPID} keeps a lock file beside it)."""
    port = reactor.listenUNIX(path, ControlFactory(service), mode=0o600, wantPID=True)
    log.info("control channel on {path}", path=path)
    return port


# --- the client -------------------------------------------------------------------


def ask(path: str, command: str, timeout: float = 5.0) -> dict[str, Any]:
    """Send one command to the MPA listening on C{path}; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode("utf-8") + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer


VISITOR_COLUMNS = (
    ("MAC", "mac"), ("IF", "interface"), ("NAI", "nai"), ("STATE", "state"),
    ("LOCAL ADDRESS", "localAddress"), ("LMAP", "lmapAddress"), ("STATUS", "lastStatus"),
    ("EXPIRES", "expires"), ("PENDING", "pendingKind"), ("FAILURE", "failure"),
)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)


def _inSeconds(value: str, now: float) -> str:
    try:
        return f"{float(value) - now:.0f}s"
    except ValueError:
        return value


def formatAnswer(command: str, answer: dict[str, Any]) -> str:
    if "visitors" in answer:
        now = answer.get("now", time.time())
        rows = [[title for title, _ in VISITOR_COLUMNS]]
        for visitor in answer["visitors"]:
            row = [visitor.get(key, "-") for _, key in VISITOR_COLUMNS]
            row[7] = _inSeconds(row[7], now)
            rows.append(row)
        return table(rows) + f"\n{len(answer['visitors'])} visitor(s)"
    if "counters" in answer:
        counters = answer["counters"]
        return "\n".join(f"{key} {value}" for key, value in counters.items()) or "(none)"
    if "links" in answer:
        keys = ("interface", "index", "state", "mac", "socket")
        return table([[k.upper() for k in keys]]
                     + [[link.get(k, "-") for k in keys] for link in answer["links"]])
    if "commands" in answer:
        return "\n".join(f"{usage:22} {text}" for usage, text in answer["commands"].items())
    return "ok"


def main(argv: list[str]) -> int:
    args = list(argv)
    raw = "--json" in args
    if raw:
        args.remove("--json")
    if len(args) < 2:
        sys.stderr.write("usage: python -m lmm.mpa.control [--json] SOCKET COMMAND [ARGS...]\n"
                         "commands: " + ", ".join(HELP) + "\n")
        return 2
    path, command = args[0], " ".join(args[1:])
    try:
        answer = ask(path, command)
    except (OSError, ValueError) as e:
        sys.stderr.write(f"{path}: {e}\n")
        return 1
    if raw:
        print(json.dumps(answer, indent=2))
    elif answer.get("ok"):
        print(formatAnswer(command, answer))
    else:
        sys.stderr.write(f"error: {answer.get('error')}\n")
    return 0 if answer.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
