"""
A real FreeRADIUS for a test: private config directory, its own ports,
stopped when the test ends (also when it fails).

The server reads FreeRADIUS's own dictionaries plus lmm's
(radius_dicts/dictionary.lmm), a users file (default: etc/freeradius/users
of the checkout), and answers on 127.0.0.1 and ::1 on a UDP port picked per
run. It runs in the foreground: with C{-X} for a test (single-threaded, its
debug log, what it received and sent, in L{FreeRADIUS.logPath}), or as a
production server runs (C{-f}: its thread pool, one log line per
authentication) for the lab and the benchmarks (C{debug=False}).

Trial has no class-level fixtures (it ignores C{setUpClass}), so each test
starts its own server; that takes about 0.1 s.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmm
from lmm.lab.processes import dieWithParent, end, readText

FREERADIUS = "/usr/sbin/freeradius"
SECRET = b"lmm-testing-secret"
READY = "Ready to process requests"

_CHECKOUT = Path(lmm.__file__).resolve().parent.parent
DEFAULT_USERS = _CHECKOUT / "etc" / "freeradius" / "users"
LMM_DICTIONARY = _CHECKOUT / "radius_dicts" / "dictionary.lmm"

_RADIUSD_CONF = """\
# Written by lmm.lab.freeradius for one test; removed when it ends.
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
libdir = /usr/lib/freeradius
name = freeradius
confdir = {dir}
raddbdir = {dir}
modconfdir = {dir}
db_dir = {dir}
logdir = {dir}/log
radacctdir = {dir}/log
run_dir = {dir}/run
pidfile = {dir}/run/freeradius.pid
max_request_time = 5
cleanup_delay = 1
max_requests = 4096
hostname_lookups = no
proxy_requests = no

log {{
	destination = stdout
	colourise = no
	stripped_names = no
	auth = yes
}}

security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}}

{clients}

modules {{
	pap {{
	}}
	files {{
		filename = {dir}/users
	}}
}}

server lmm {{
{listen}
	authorize {{
		files
		pap
	}}
	authenticate {{
		Auth-Type PAP {{
			pap
		}}
	}}
}}
"""


def missingReason() -> str | None:
    """Why FreeRADIUS cannot run here, or None."""
    if not os.access(FREERADIUS, os.X_OK):
        return f"{FREERADIUS} is not installed (Debian: apt-get install freeradius)"
    return None


def freeUDPPort() -> int:
    """A UDP port free on both 127.0.0.1 and ::1 (at this instant)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as v4:
            v4.bind(("127.0.0.1", 0))
            port = v4.getsockname()[1]
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as v6:
                try:
                    v6.bind(("::1", port))
                except OSError:
                    continue
            return int(port)
    raise RuntimeError("no UDP port free on both 127.0.0.1 and ::1")


@dataclass
class FreeRADIUS:
    """A running FreeRADIUS; L{stop} ends it and removes its directory."""

    directory: Path
    port: int
    secret: bytes
    process: subprocess.Popen[bytes]

    @property
    def logPath(self) -> Path:
        return self.directory / "log" / "radiusd.out"

    def servers(self, address: str = "127.0.0.1") -> list[dict[str, Any]]:
        """The C{servers} setting of lmm's radius backend for this server."""
        return [{"address": address, "port": self.port, "secret": self.secret.decode()}]

    def log(self) -> str:
        return readText(self.logPath)

    def stop(self) -> None:
        end(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


# require_message_authenticator: a request without one is dropped, so a test
# that gets an answer proves lmm sent a correct Message-Authenticator.
_TEST_CLIENTS = """\
client lmm4 {{
	ipaddr = 127.0.0.1
	secret = {secret}
	require_message_authenticator = yes
}}
client lmm6 {{
	ipv6addr = ::1
	secret = {secret}
	require_message_authenticator = yes
}}
"""

SAMPLES = _CHECKOUT / "etc" / "freeradius"


def _listen(addresses: list[tuple[str, int]]) -> str:
    """The C{listen} sections of the server for each (address, port)."""
    return "".join(
        f"\tlisten {{\n\t\ttype = auth\n\t\t{'ipv6addr' if ':' in a else 'ipaddr'} = {a}\n"
        f"\t\tport = {port}\n\t}}\n" for a, port in addresses)


def writeConfig(directory: Path, users: str, clients: str, dictionary: str,
                listen: list[tuple[str, int]]) -> None:
    """
    A private configuration directory for C{freeradius -d DIRECTORY}: a
    minimal radiusd.conf (its log, run and pid files inside, the C{files}
    and C{pap} modules, C{reject_delay = 0}, no proxying) answering on each
    (address, port) of C{listen}, with the text of a C{users} file, of
    C{clients} entries and of a local C{dictionary} (FreeRADIUS reads its
    own dictionaries, then this one; a relative C{$INCLUDE} in it is read
    from C{directory}).
    """
    for sub in ("log", "run"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    (directory / "clients.conf").write_text(clients)
    (directory / "radiusd.conf").write_text(_RADIUSD_CONF.format(
        dir=directory, clients=f"$INCLUDE {directory / 'clients.conf'}",
        listen=_listen(listen)))
    (directory / "dictionary").write_text(dictionary)
    (directory / "users").write_text(users)


def writeSampleConfig(directory: Path | str, listen: list[tuple[str, int]] | None = None,
                      samples: Path = SAMPLES) -> Path:
    """
    L{writeConfig} with etc/freeradius's users, clients.conf and dictionary
    as they are (and dictionary.lmm beside the dictionary, which includes it
    by a relative path), answering on port 1812 of every address (C{::} and
    0.0.0.0) unless C{listen} says otherwise: a private instance of the
    samples, C{freeradius -X -d DIRECTORY}. The directory, made if need be.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(samples / "dictionary.lmm", directory / "dictionary.lmm")
    writeConfig(directory, (samples / "users").read_text(),
                (samples / "clients.conf").read_text(),
                (samples / "dictionary").read_text(),
                listen or [("::", 1812), ("0.0.0.0", 1812)])
    return directory


def _writeConfig(directory: Path, port: int, secret: bytes, users: str) -> None:
    writeConfig(directory, users, _TEST_CLIENTS.format(secret=secret.decode()),
                f"$INCLUDE {LMM_DICTIONARY}\n", [("127.0.0.1", port), ("::1", port)])


def start(usersFile: Path | str | None = None, extraUsers: str = "",
          secret: bytes = SECRET, readyTimeout: float = 10.0,
          debug: bool = True) -> FreeRADIUS:
    """
    Start a FreeRADIUS and wait until it is ready. The caller must L{stop}
    it; tests use L{startFor}, which arranges that.

    @param usersFile: the users file (default: etc/freeradius/users).
    @param extraUsers: users-file entries appended to it.
    @param debug: C{-X} (single-threaded, every packet in the log); False:
        C{-f}, threaded as in production (issue 15: attach bursts are
        measured against a server that runs as deployed).
    """
    reason = missingReason()
    if reason is not None:
        raise RuntimeError(reason)
    users = Path(usersFile or DEFAULT_USERS).read_text() + "\n" + extraUsers
    lastLog = ""
    for _ in range(3):  # another process may take the port we picked: try again
        directory = Path(tempfile.mkdtemp(prefix="lmm-freeradius-"))
        port = freeUDPPort()
        _writeConfig(directory, port, secret, users)
        logPath = directory / "log" / "radiusd.out"
        with open(logPath, "wb") as out:
            process = subprocess.Popen(
                [FREERADIUS, *(["-X"] if debug else ["-f", "-l", "stdout"]), "-d",
                 str(directory)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=dieWithParent)
        server = FreeRADIUS(directory, port, secret, process)
        deadline = time.monotonic() + readyTimeout
        try:
            while time.monotonic() < deadline and process.poll() is None:
                if READY in server.log():
                    return server
                time.sleep(0.01)
        except BaseException:
            server.stop()
            raise
        lastLog = server.log()
        server.stop()
        if "Failed binding" not in lastLog:
            break
    tail = "\n".join(lastLog.splitlines()[-20:])
    raise RuntimeError(f"FreeRADIUS did not start; the end of its log:\n{tail}")


def startFor(testCase: Any, **kwargs: Any) -> FreeRADIUS:
    """
    Start a FreeRADIUS for a trial test and stop it when the test ends,
    passed or failed; skip the test if FreeRADIUS is not installed.
    """
    from twisted.trial.unittest import SkipTest

    reason = missingReason()
    if reason is not None:
        raise SkipTest(reason)
    server = start(**kwargs)
    testCase.addCleanup(server.stop)
    return server


def main(argv: list[str] | None = None) -> int:
    """C{python -m lmm.lab.freeradius DIR [ADDRESS PORT]}: a private FreeRADIUS
    configuration in DIR made from etc/freeradius (L{writeSampleConfig});
    prints the command that runs it."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 3) or args[0].startswith("-") or (
            len(args) == 3 and not args[2].isdigit()):
        sys.stderr.write("usage: python -m lmm.lab.freeradius DIR [ADDRESS PORT]\n")
        return 2
    listen = [(args[1], int(args[2]))] if len(args) == 3 else None
    directory = writeSampleConfig(args[0], listen)
    print(f"{FREERADIUS} -X -d {directory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
