"""
A real Kea DHCPv6 server for a test, in a network namespace: private config,
lease, lock and pid files in a temporary directory, stopped when the test ends
(also when it fails).

The server answers relayed traffic only: it listens on one interface of the
namespace with a unicast address (Kea's C{"iface/address"} form, without which
it takes no unicast at all), and has one subnet per Local Network Prefix that
no interface of its own is on, so the only way to reach a subnet is a
Relay-Forward whose link-address is inside it (Kea picks the subnet from the
link-address of the relay closest to the client). A link-address in no subnet
gets a NoAddrsAvail answer.

Measured with Kea 2.2: the server is bound and answering about 0.07 s after
start; L{start} polls the namespace's UDP socket table for it rather than
sleeping. Its log (debug level, with every packet) is L{Kea.logPath}.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmm.lab.netns import Namespace, callIn
from lmm.lab.processes import dieWithParent, end, readText

KEA_DHCP6 = "/usr/sbin/kea-dhcp6"

# RFC 5612's Private Enterprise Number for documentation: the server's DUID-EN.
_DOCUMENTATION_PEN = 32473


@dataclass(frozen=True, slots=True)
class Subnet:
    """One subnet of the server: a Local Network Prefix and its address pool
    (C{"first-last"} or a prefix), with Kea's subnet id."""

    prefix: str
    pool: str
    id: int


DEFAULT_SUBNETS = (
    Subnet("2001:db8:1::/64", "2001:db8:1::1000-2001:db8:1::1fff", 1),
    Subnet("2001:db8:2::/64", "2001:db8:2::1000-2001:db8:2::1fff", 2),
)


def missingReason() -> str | None:
    """Why Kea cannot run here, or None."""
    if not os.access(KEA_DHCP6, os.X_OK):
        return f"{KEA_DHCP6} is not installed (Debian: apt-get install kea-dhcp6-server)"
    return None


def config(
    directory: Path,
    interface: str,
    address: str,
    subnets: Sequence[Subnet] = DEFAULT_SUBNETS,
    *,
    preferredLifetime: int = 3000,
    validLifetime: int = 4000,
    renewTimer: int = 1000,
    rebindTimer: int = 2000,
    dnsServers: Sequence[str] = (),
) -> dict[str, Any]:
    """
    The Kea configuration (as JSON data) for a server on C{interface} with
    unicast C{address}, keeping every file it writes in C{directory}.
    etc/kea/kea-dhcp6.conf is the same, for a production server.
    """
    dhcp6: dict[str, Any] = {
        # "iface/address": Kea opens a socket on the unicast address, which is
        # where relays send; the bare name would give multicast only.
        "interfaces-config": {"interfaces": [f"{interface}/{address}"]},
        # lfc-interval 0: no kea-lfc child process to outlive the test.
        "lease-database": {
            "type": "memfile",
            "persist": True,
            "name": str(directory / "leases6.csv"),
            "lfc-interval": 0,
        },
        # A DUID-EN that is not persisted: Kea would otherwise write a DUID-LLT
        # file into its system data directory.
        "server-id": {
            "type": "EN",
            "enterprise-id": _DOCUMENTATION_PEN,
            "identifier": "6c6d6d2d74657374",  # "lmm-test"
            "persist": False,
        },
        "data-directory": str(directory),
        "preferred-lifetime": preferredLifetime,
        "valid-lifetime": validLifetime,
        "renew-timer": renewTimer,
        "rebind-timer": rebindTimer,
        "subnet6": [
            {"id": s.id, "subnet": s.prefix, "pools": [{"pool": s.pool}]} for s in subnets
        ],
        "loggers": [
            {
                "name": "kea-dhcp6",
                "output_options": [{"output": str(directory / "kea-dhcp6.log")}],
                "severity": "DEBUG",
                "debuglevel": 55,  # packets and lease decisions, not every trace
            }
        ],
    }
    if dnsServers:
        dhcp6["option-data"] = [{"name": "dns-servers", "data": ", ".join(dnsServers)}]
    return {"Dhcp6": dhcp6}


SAMPLE_CONFIG = Path(__file__).resolve().parent.parent.parent / "etc" / "kea" / "kea-dhcp6.conf"

# A string, or a comment (// and # to the end of the line, /* ... */): Kea's
# configuration is JSON with comments.
_JSON_COMMENT = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|#[^\n]*|/\*.*?\*/', re.S)


def readConfig(path: Path | str) -> dict[str, Any]:
    """A Kea configuration file as JSON data, its comments dropped."""
    text = Path(path).read_text()
    data: dict[str, Any] = json.loads(_JSON_COMMENT.sub(
        lambda m: m.group(0) if m.group(0).startswith('"') else "", text))
    return data


def privateConfig(data: dict[str, Any], directory: Path) -> dict[str, Any]:
    """
    Kea configuration C{data} (a system install's, as etc/kea/kea-dhcp6.conf)
    for a private instance: every file it writes in C{directory} (DUID, leases,
    control socket, log), the rest as it is. L{_launch} keeps its pid and lock
    files there too.
    """
    dhcp6 = json.loads(json.dumps(data["Dhcp6"]))  # a copy to change
    dhcp6["data-directory"] = str(directory)
    leases = dhcp6.setdefault("lease-database", {"type": "memfile"})
    if leases.get("type") == "memfile":
        leases["name"] = str(directory / "leases6.csv")
        leases["lfc-interval"] = 0  # no kea-lfc child to outlive the instance
    if "control-socket" in dhcp6:
        dhcp6["control-socket"]["socket-name"] = str(directory / "kea6-ctrl-socket")
    for logger in dhcp6.get("loggers", []):
        for output in logger.get("output_options", []):
            output["output"] = str(directory / "kea-dhcp6.log")
    return {"Dhcp6": dhcp6}


def writePrivateConfig(directory: Path | str, sample: Path | str = SAMPLE_CONFIG) -> Path:
    """L{privateConfig} of the file C{sample}, written as C{directory}/kea-dhcp6.conf
    (the folder made if need be); its path."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kea-dhcp6.conf"
    path.write_text(json.dumps(privateConfig(readConfig(sample), directory), indent=2))
    return path


def startPrivate(namespace: Namespace, address: str, sample: Path | str = SAMPLE_CONFIG,
                 readyTimeout: float = 10.0, parent: Path | str | None = None) -> Kea:
    """
    Kea in C{namespace} on the configuration file C{sample} as it is, but for
    its files (L{privateConfig}), in a new directory in C{parent}; waits until it
    is bound to C{address} (the sample's unicast address). The caller stops it.
    """
    reason = missingReason()
    if reason is not None:
        raise RuntimeError(reason)
    directory = Path(tempfile.mkdtemp(prefix="lmm-kea-", dir=parent))
    try:
        data = privateConfig(readConfig(sample), directory)
        (directory / "kea-dhcp6.conf").write_text(json.dumps(data, indent=2))
        interface = data["Dhcp6"]["interfaces-config"]["interfaces"][0].split("/")[0]
        subnets = tuple(Subnet(s["subnet"], s["pools"][0]["pool"], s["id"])
                        for s in data["Dhcp6"]["subnet6"])
        process = _launch(namespace, directory, address, readyTimeout)
        return Kea(directory, namespace, interface, address, subnets, process)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _boundUDP(address: str, port: int) -> bool:
    """Whether a UDP socket of the calling thread's namespace is bound to
    C{address}, C{port} (read from /proc: no process to start)."""
    packed = socket.inet_pton(socket.AF_INET6, address)
    # /proc/net/udp6 prints each 32-bit word of the address in host byte order.
    words = [packed[i : i + 4] for i in range(0, 16, 4)]
    local = "".join(w[::-1].hex().upper() for w in words) + f":{port:04X}"
    with open("/proc/thread-self/net/udp6") as table:
        return any(line.split()[1] == local for line in table.readlines()[1:])


@dataclass
class Kea:
    """A running Kea DHCPv6 server; L{stop} ends it and removes its directory."""

    directory: Path
    namespace: Namespace
    interface: str
    address: str
    subnets: tuple[Subnet, ...]
    process: subprocess.Popen[bytes]
    stopped: bool = field(default=False)

    @property
    def logPath(self) -> Path:
        return self.directory / "kea-dhcp6.log"

    @property
    def configPath(self) -> Path:
        return self.directory / "kea-dhcp6.conf"

    @property
    def leasePath(self) -> Path:
        return self.directory / "leases6.csv"

    def log(self) -> str:
        """Kea's own log, and what it printed before its loggers were set up."""
        return readText(self.directory / "kea.out") + readText(self.logPath)

    def leases(self) -> list[dict[str, str]]:
        """The lease file's rows (address, duid, valid_lifetime, expire, ...);
        a released lease stays as a row with valid_lifetime 0."""
        lines = readText(self.leasePath).splitlines()
        if not lines:
            return []
        header = lines[0].split(",")
        return [dict(zip(header, line.split(","))) for line in lines[1:] if line]

    def running(self) -> bool:
        return self.process.poll() is None

    def crash(self) -> None:
        """Kill the server (SIGKILL); its files, leases included, stay for L{restart}."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, readyTimeout: float = 10.0) -> None:
        """Start the server again on its files (after L{crash}), and wait until
        it is bound: what a DHCPv6 server coming back after an outage does."""
        self.crash()
        self.process = _launch(self.namespace, self.directory, self.address, readyTimeout)

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL after 5 s) and remove its files."""
        if self.stopped:
            return
        self.stopped = True
        end(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def start(
    namespace: Namespace,
    interface: str,
    address: str,
    subnets: Sequence[Subnet] = DEFAULT_SUBNETS,
    readyTimeout: float = 10.0,
    parent: Path | str | None = None,
    **options: Any,
) -> Kea:
    """
    Start Kea DHCPv6 in C{namespace}, listening on C{interface} with unicast
    C{address} (which must be configured and usable there), and wait until it
    is bound. The caller must L{Kea.stop} it; tests use L{startFor}, which
    arranges that. Its files are in a new directory in C{parent} (default:
    the system's temporary directory). C{options} go to L{config}.
    """
    reason = missingReason()
    if reason is not None:
        raise RuntimeError(reason)
    directory = Path(tempfile.mkdtemp(prefix="lmm-kea-", dir=parent))
    try:
        configPath = directory / "kea-dhcp6.conf"
        configPath.write_text(
            json.dumps(config(directory, interface, address, subnets, **options), indent=2)
        )
        process = _launch(namespace, directory, address, readyTimeout)
        return Kea(directory, namespace, interface, address, tuple(subnets), process)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _launch(namespace: Namespace, directory: Path, address: str,
            readyTimeout: float) -> subprocess.Popen[bytes]:
    """Start kea-dhcp6 on the configuration in C{directory}; wait until it is
    bound to C{address}, port 547."""
    env = dict(os.environ)
    # Kea's pid and lock files go to its system directories unless told.
    env["KEA_PIDFILE_DIR"] = str(directory)
    env["KEA_LOCKFILE_DIR"] = str(directory)
    env.pop("KEA_LOGGER_DESTINATION", None)
    with open(directory / "kea.out", "ab") as out:
        process = namespace.popen(
            [KEA_DHCP6, "-c", str(directory / "kea-dhcp6.conf")],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=dieWithParent,
        )
    deadline = time.monotonic() + readyTimeout
    while process.poll() is None:
        if callIn(namespace, _boundUDP, address, 547):
            return process
        if time.monotonic() >= deadline:
            break
        time.sleep(0.005)
    end(process)
    text = readText(directory / "kea.out") + readText(directory / "kea-dhcp6.log")
    tail = "\n".join(text.splitlines()[-20:])
    state = "is not bound" if process.returncode is None or process.returncode < 0 \
        else f"exited ({process.returncode})"
    raise RuntimeError(f"Kea {state} after start; the end of its log:\n{tail}")


def startFor(testCase: Any, namespace: Namespace, interface: str, address: str,
             **kwargs: Any) -> Kea:
    """
    Start a Kea for a trial test and stop it when the test ends, passed or
    failed; skip the test if Kea is not installed. Register this after the
    namespace's cleanup, so that it runs first.
    """
    from twisted.trial.unittest import SkipTest

    reason = missingReason()
    if reason is not None:
        raise SkipTest(reason)
    server = start(namespace, interface, address, **kwargs)
    testCase.addCleanup(server.stop)
    return server


# --- the stock DHCPv6 client -----------------------------------------------------------

DHCLIENT = "/usr/sbin/dhclient"

# dhclient's script: configure the address as dhclient-script does, and write
# down what happened; never touch the machine's /etc/resolv.conf.
DHCLIENT_SCRIPT = """#!/bin/sh
{ echo "reason=$reason"; echo "new_ip6_address=$new_ip6_address"; echo "time=$(date +%%s.%%N)";
  echo ---; } >> %(events)s
case "$reason" in
  BOUND6|RENEW6|REBIND6)
    [ -n "$new_ip6_address" ] && ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" \\
        dev "$interface" valid_lft "$new_max_life" preferred_lft "$new_preferred_life" ;;
  RELEASE6|EXPIRE6|STOP6)
    [ -n "$old_ip6_address" ] && ip -6 addr del "$old_ip6_address/$old_ip6_prefixlen" \\
        dev "$interface" ;;
esac
exit 0
"""


def dhclientMissingReason() -> str | None:
    """Why the stock DHCPv6 client cannot run here, or None."""
    if not os.access(DHCLIENT, os.X_OK):
        return f"{DHCLIENT} is not installed (Debian: apt-get install isc-dhcp-client)"
    return None


@dataclass
class DHCPClient:
    """
    An unmodified ISC C{dhclient -6} on one interface of a namespace, with
    private files in C{directory} (configuration, leases, pid, its script, the
    script's record of events, its output). L{stop} ends it; the files stay.
    """

    namespace: Namespace
    interface: str
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def eventsPath(self) -> Path:
        return self.directory / "events"

    @property
    def outputPath(self) -> Path:
        return self.directory / "dhclient.out"

    def events(self) -> list[dict[str, str]]:
        """What the script was called for, oldest first: C{reason},
        C{new_ip6_address}, C{time} (seconds, the wall clock)."""
        text = readText(self.eventsPath)
        return [dict(line.split("=", 1) for line in block.strip().splitlines() if "=" in line)
                for block in text.split("---") if block.strip()]

    def address(self) -> str | None:
        """The address of the latest lease (BOUND6, RENEW6, REBIND6), or None."""
        for event in reversed(self.events()):
            if event.get("reason") in ("BOUND6", "RENEW6", "REBIND6") \
                    and event.get("new_ip6_address"):
                return event["new_ip6_address"]
        return None

    def output(self) -> str:
        return readText(self.outputPath)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """End the client (SIGTERM, SIGKILL after 5 s): no Release is sent."""
        end(self.process)


def startClient(namespace: Namespace, interface: str, directory: Path | str,
                options: Sequence[str] = ()) -> DHCPClient:
    """
    Start C{dhclient -6 -d} on C{interface} of C{namespace}, its files in
    C{directory} (created). The interface needs a usable (not tentative)
    link-local address, or dhclient exits at once. The caller stops it
    (L{DHCPClient.stop}); deleting the namespace also does. C{options}: more
    of dhclient's, before the interface (C{["-r"]}: release the lease in
    C{directory} and exit); a second client on the same C{directory} shares
    the first one's lease, events and output files.
    """
    reason = dhclientMissingReason()
    if reason is not None:
        raise RuntimeError(reason)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "script"
    script.write_text(DHCLIENT_SCRIPT % {"events": directory / "events"})
    script.chmod(0o755)
    (directory / "dhclient.conf").write_text("")
    argv = [DHCLIENT, "-6", "-d", "-v", "-cf", str(directory / "dhclient.conf"),
            "-lf", str(directory / "leases"), "-pf", str(directory / "pid"),
            "-sf", str(script), *options, interface]
    with open(directory / "dhclient.out", "ab") as out:
        process = namespace.popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, preexec_fn=dieWithParent)
    return DHCPClient(namespace, interface, directory, process)


def main(argv: Sequence[str] | None = None) -> int:
    """C{python -m lmm.lab.kea DIR [SAMPLE]}: a private Kea configuration in
    DIR made from SAMPLE (default etc/kea/kea-dhcp6.conf), unchanged but for
    where its files go; prints the command that runs it."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2) or args[0].startswith("-"):
        sys.stderr.write("usage: python -m lmm.lab.kea DIR [SAMPLE]\n")
        return 2
    path = writePrivateConfig(args[0], *args[1:])
    folder = path.parent
    print(f"KEA_PIDFILE_DIR={folder} KEA_LOCKFILE_DIR={folder} {KEA_DHCP6} -c {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
