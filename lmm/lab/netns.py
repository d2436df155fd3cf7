"""
Network namespaces, veth links and bridges: the lab's, the benchmarks' and the
network tests'.

Every name this module makes starts with L{RUN_TAG}, unique to the process, so
that several test runs can share a machine. Everything it creates is removed:
by the test's cleanups (L{lmm.testing.mixins.NetnsTestMixin}), by
L{Namespace.delete}, or, as a last resort, when the interpreter exits.

A test that needs a socket inside a namespace gets it from L{socketIn}: the
calling thread enters the namespace only for the C{socket()} call, and a socket
stays in the namespace it was created in, so the reactor can then read it from
the main thread. Code that must run wholly inside a namespace runs in a child
process (L{Namespace.popen}, L{Namespace.popenPython}).

Measured here: a veth pair whose two ends have the same interface index (the
kernel gives both the first free index, 2, in two fresh namespaces) has its
carrier change handled by the kernel's link watcher up to a second late, and
the first Neighbor Solicitation on the link is lost: about one second before
the first packet gets through (unless something, such as C{ip link show},
makes the kernel handle the change sooner). L{link} gives the two ends
distinct indexes.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from lmm.dataplane.common import setns
from lmm.interfaces import globalReactor

__all__ = [
    "RUN_TAG",
    "Bridge",
    "Namespace",
    "NetnsCommandError",
    "bridge",
    "callIn",
    "leftovers",
    "link",
    "netnsUnavailableReason",
    "socketIn",
    "waitFor",
    "waitForDeferred",
]

log = Logger()

T = TypeVar("T")

#: Unique to this process: "lmm", the pid modulo 100000 and three random hex
#: digits (at most 11 characters, leaving room in a 15-character interface name).
RUN_TAG = f"lmm{os.getpid() % 100000}{secrets.token_hex(2)[:3]}"

_NETNS_DIR = "/run/netns"
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_IFNAMSIZ = 15

# Interface indexes given to veth ends, distinct per process and per end (see the
# module docstring); far above what a kernel hands out in a fresh namespace.
_FIRST_INDEX = 1000

_counter = 0


def _next() -> int:
    global _counter
    _counter += 1
    return _counter


#: Interface names are case-sensitive: 62 digits give a run 3,844 two-digit bases.
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_interfaces = 0


def _compact(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, len(_DIGITS))
        out = _DIGITS[r] + out
        if not n:
            return out


def _interfaceBase() -> str:
    """RUN_TAG and a number of its own (the namespaces' do not use it up)."""
    global _interfaces
    _interfaces += 1
    base = RUN_TAG + _compact(_interfaces)
    if len(base) > _IFNAMSIZ - 2:
        raise RuntimeError(f"interface names of this run are used up ({base!r} is too long)")
    return base


# --- commands -----------------------------------------------------------------


class NetnsCommandError(subprocess.CalledProcessError):
    """A command failed; unlike its base class, says what the command printed."""

    def __str__(self) -> str:
        text = super().__str__()
        detail = (self.stderr or "").strip() or (self.stdout or "").strip()
        return f"{text}: {detail}" if detail else text


def _run(
    argv: Sequence[str], check: bool = True, input: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv), input=input, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise NetnsCommandError(result.returncode, list(argv), result.stdout, result.stderr)
    return result


_unavailable: list[str | None] = []


def netnsUnavailableReason() -> str | None:
    """
    Why namespace tests cannot run here, or L{None} when they can. Checked once
    per process, by creating and deleting a namespace.
    """
    if not _unavailable:
        _unavailable.append(_probe())
    return _unavailable[0]


def _probe() -> str | None:
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "network namespace tests need iproute2's ip command"
    name = f"{RUN_TAG}-probe"
    try:
        _run(["ip", "netns", "add", name])
    except (OSError, subprocess.SubprocessError) as e:
        return f"ip netns add does not work here: {e}"
    try:
        _run(["ip", "netns", "delete", name])
    except (OSError, subprocess.SubprocessError) as e:
        return f"ip netns delete does not work here: {e}"
    return None


def leftovers(tag: str = RUN_TAG) -> list[str]:
    """The names in C{ip netns list} that start with C{tag}."""
    out = _run(["ip", "netns", "list"]).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [name for name in names if name.startswith(tag)]


# --- switching namespaces ---------------------------------------------------------

def _path(namespace: Namespace | str) -> str:
    if isinstance(namespace, Namespace):
        return namespace.path
    return os.path.join(_NETNS_DIR, namespace)


def callIn(namespace: Namespace | str, f: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """
    Call C{f(*args, **kwargs)} with the calling thread in C{namespace}'s network
    namespace, and return its result. Only this thread moves (network
    namespaces are per thread), and only for the call: C{f} must not yield to
    the reactor. Sockets made by C{f} stay in C{namespace}; so does what
    C{/proc/sys/net} files opened by C{f} refer to.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(_path(namespace), os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            return f(*args, **kwargs)
        finally:
            try:
                setns(home)
            except OSError as e:
                # The thread would go on in the test namespace: no later result is trustworthy.
                raise RuntimeError(f"cannot return to the original network namespace: {e}") from e
    finally:
        os.close(home)


def socketIn(
    namespace: Namespace | str,
    family: int = socket.AF_INET6,
    type: int = socket.SOCK_RAW,
    proto: int = 0,
) -> socket.socket:
    """A new socket in C{namespace}, usable from any thread (and the reactor)."""
    return callIn(namespace, socket.socket, family, type, proto)


# --- namespaces -------------------------------------------------------------------

_live: dict[str, Namespace] = {}


class Namespace:
    """
    A named network namespace (C{ip netns add}), with C{lo} up. Processes started
    with L{popen} or L{popenPython}, and any other process found in the
    namespace, are killed when it is deleted.
    """

    def __init__(self, name: str) -> None:
        """Use L{create}: this only names an existing namespace."""
        self.name = name
        self.path = os.path.join(_NETNS_DIR, name)
        self.processes: list[subprocess.Popen[Any]] = []
        self.deleted = False

    @classmethod
    def create(cls, label: str = "ns") -> Namespace:
        """A new namespace named C{RUN_TAG-labelN}; raise L{NetnsCommandError} on failure."""
        name = f"{RUN_TAG}-{label}{_next()}"
        _run(["ip", "netns", "add", name])
        namespace = cls(name)
        _live[name] = namespace
        try:
            namespace.ip("link", "set", "lo", "up")
        except BaseException:
            namespace.delete()
            raise
        log.debug("created network namespace {name}", name=name)
        return namespace

    def __repr__(self) -> str:
        return f"<Namespace {self.name}{' (deleted)' if self.deleted else ''}>"

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    # Commands

    def execArgv(self, argv: Sequence[str]) -> list[str]:
        """C{argv} prefixed to run in this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        input: str | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        """Run C{argv} here to completion; text output is captured."""
        return _run(self.execArgv(argv), check=check, input=input, timeout=timeout)

    def ip(self, *args: str) -> str:
        """C{ip -n NAME args...}; its standard output."""
        return _run(["ip", "-n", self.name, *args]).stdout

    def ipBatch(self, commands: Sequence[str]) -> None:
        """Several C{ip} commands (one per item, without the C{ip}) in one process."""
        if commands:
            _run(["ip", "-n", self.name, "-batch", "-"], input="\n".join(commands) + "\n")

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start C{argv} here (arguments as for L{subprocess.Popen}); killed by L{delete}."""
        process: subprocess.Popen[Any] = subprocess.Popen(self.execArgv(argv), **kwargs)
        self.processes.append(process)
        return process

    def pythonArgv(self, source: str, *args: str) -> list[str]:
        """The command line running Python C{source} with C{args} as C{sys.argv[1:]}."""
        return [sys.executable, "-c", source, *args]

    def _pythonEnvironment(self, env: dict[str, str] | None) -> dict[str, str]:
        env = dict(os.environ if env is None else env)
        paths = [_REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def runPython(
        self, source: str, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run Python C{source} here to completion, with lmm importable."""
        argv = self.execArgv(self.pythonArgv(source, *args))
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self._pythonEnvironment(None),
        )
        if check and result.returncode != 0:
            raise NetnsCommandError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def popenPython(self, source: str, *args: str, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start Python C{source} here, with lmm importable; killed by L{delete}."""
        kwargs["env"] = self._pythonEnvironment(kwargs.get("env"))
        return self.popen(self.pythonArgv(source, *args), **kwargs)

    # Inspection and settings, done in this process (no fork).

    def interfaceIndex(self, name: str) -> int:
        return callIn(self, socket.if_nametoindex, name)

    def sysctl(self, key: str, value: str | int) -> None:
        """Set C{key} (dotted, as in C{sysctl net.ipv6.conf.all.forwarding}) here."""
        path = "/proc/sys/" + key.replace(".", "/")

        def write() -> None:
            with open(path, "w") as f:
                f.write(str(value))

        callIn(self, write)

    def pids(self) -> list[int]:
        """The processes in this namespace, this one excepted."""
        out = _run(["ip", "netns", "pids", self.name], check=False).stdout
        return [pid for pid in map(int, out.split()) if pid != os.getpid()]

    # Removal

    def delete(self) -> None:
        """Kill the processes in this namespace and delete it; a second call does nothing."""
        if self.deleted:
            return
        self.deleted = True
        _live.pop(self.name, None)
        try:
            self._killProcesses()
        finally:
            result = _run(["ip", "netns", "delete", self.name], check=False)
            if result.returncode != 0 and os.path.exists(self.path):
                raise NetnsCommandError(
                    result.returncode, ["ip", "netns", "delete", self.name], "", result.stderr
                )
            log.debug("deleted network namespace {name}", name=self.name)

    def _killProcesses(self) -> None:
        running = [p for p in self.processes if p.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + 2
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for process in self.processes:
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        # Whatever else lives here: grandchildren, daemons, processes started by hand.
        strays = self.pids()
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if strays:
            waitFor(lambda: not self.pids(), 5, what=f"processes in {self.name} to die")


@atexit.register
def _deleteLeftovers() -> None:
    for namespace in list(_live.values()):
        try:
            namespace.delete()
        except Exception:
            pass


# --- links ------------------------------------------------------------------------

_indexes = 0


def _nextIndexes() -> tuple[int, int]:
    global _indexes
    _indexes += 2
    return _FIRST_INDEX + _indexes, _FIRST_INDEX + _indexes + 1


def _addVeth(nsA: Namespace, nameA: str, nsB: Namespace, nameB: str) -> None:
    indexA, indexB = _nextIndexes()
    command = ["link", "add", nameA]
    peer = ["type", "veth", "peer", "name", nameB]
    if nsB is not nsA:
        peer += ["netns", nsB.name]
    try:
        nsA.ip(*command, "index", str(indexA), *peer, "index", str(indexB))
    except NetnsCommandError:
        # An index is taken: let the kernel choose (and the first packet may wait a second).
        nsA.ip(*command, *peer)


def _addressCommands(name: str, address: str | None, prefixLen: int) -> list[str]:
    commands = []
    if address is not None:
        commands.append(f"address add {address}/{prefixLen} dev {name} nodad")
    commands.append(f"link set {name} up")
    return commands


def link(
    nsA: Namespace,
    nsB: Namespace,
    addressA: str | None,
    addressB: str | None,
    prefixLen: int = 64,
    *,
    nameA: str | None = None,
    nameB: str | None = None,
    dad: bool = False,
    mtu: int | None = None,
) -> tuple[str, str]:
    """
    Join C{nsA} and C{nsB} with a veth pair and return the names of its ends,
    (in C{nsA}, in C{nsB}). Each end gets its address (if not L{None}) with
    C{nodad} and is up when this returns. Unless C{dad} is true, Duplicate
    Address Detection is also off for the link-local addresses, so that they
    are usable at once.
    """
    base = _interfaceBase()
    nameA = nameA or base + "a"
    nameB = nameB or base + "b"
    for name in (nameA, nameB):
        if len(name) > _IFNAMSIZ:
            raise ValueError(f"interface name {name!r} is over {_IFNAMSIZ} characters")
    _addVeth(nsA, nameA, nsB, nameB)
    for namespace, name, address in ((nsA, nameA, addressA), (nsB, nameB, addressB)):
        if not dad:
            namespace.sysctl(f"net.ipv6.conf.{name}.accept_dad", 0)
        commands = _addressCommands(name, address, prefixLen)
        if mtu is not None:
            commands.insert(0, f"link set {name} mtu {mtu}")
        namespace.ipBatch(commands)
    return nameA, nameB


@dataclass
class Bridge:
    """A bridge in C{hub}; C{interfaces[i]} is member i's end of its veth pair."""

    name: str
    hub: Namespace
    interfaces: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)


def bridge(
    hub: Namespace,
    members: Sequence[tuple[Namespace, str | None]],
    prefixLen: int = 64,
    *,
    address: str | None = None,
    dad: bool = False,
) -> Bridge:
    """
    A bridge in C{hub} (with C{address} if given) and, for each C{(namespace,
    address)} in C{members}, a veth pair from that namespace to a port of the
    bridge. STP and multicast snooping are off: ports forward at once and
    Neighbor Discovery multicast reaches everyone.
    """
    name = _interfaceBase() + "br"
    hub.ip("link", "add", name, "type", "bridge", "stp_state", "0", "mcast_snooping", "0")
    if not dad:
        hub.sysctl(f"net.ipv6.conf.{name}.accept_dad", 0)
    hub.ipBatch(_addressCommands(name, address, prefixLen))
    result = Bridge(name, hub)
    for namespace, memberAddress in members:
        base = _interfaceBase()
        inside, port = base + "m", base + "p"
        _addVeth(namespace, inside, hub, port)
        if not dad:
            namespace.sysctl(f"net.ipv6.conf.{inside}.accept_dad", 0)
        hub.ipBatch([f"link set {port} master {name}", f"link set {port} up"])
        namespace.ipBatch(_addressCommands(inside, memberAddress, prefixLen))
        result.interfaces.append(inside)
        result.ports.append(port)
    return result


# --- polling ----------------------------------------------------------------------


def waitFor(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str | None = None,
) -> T:
    """
    Call C{predicate} every C{interval} seconds until it returns something
    true, and return that; raise L{TimeoutError} after C{timeout} seconds.
    Blocks: for code that runs outside the reactor.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what or predicate!r} not true after {timeout} s")
        time.sleep(interval)


def waitForDeferred(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str | None = None,
    reactor: IReactorTime | None = None,
) -> Deferred[T]:
    """
    L{waitFor} for code in the reactor: a L{Deferred} that fires with the first
    true value of C{predicate}, polled every C{interval} seconds of
    C{reactor}'s clock, or fails with L{TimeoutError} after C{timeout} seconds.
    """
    clock = globalReactor() if reactor is None else reactor
    deadline = clock.seconds() + timeout

    async def poll() -> T:
        while True:
            value = predicate()
            if value:
                return value
            if clock.seconds() >= deadline:
                raise TimeoutError(f"{what or predicate!r} not true after {timeout} s")
            await deferLater(clock, interval, lambda: None)

    return Deferred.fromCoroutine(poll())

