"""
A real FreeRADIUS for a test: private config directory, its own ports,
stopped when the test ends (also when it fails).

The server reads FreeRADIUS's own dictionaries plus lmm's
(radius_dicts/dictionary.lmm), a users file (default: etc/freeradius/users
of the checkout), and answers on 127.0.0.1 and ::1 on a UDP port picked per
run. It runs in the foreground with C{-X}; its debug log (what it received,
what it sent) is in L{FreeRADIUS.logPath}.

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

# require_message_authenticator: a request without one is dropped, so a test
# that gets an answer proves lmm sent a correct Message-Authenticator.
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

modules {{
	pap {{
	}}
	files {{
		filename = {dir}/users
	}}
}}

server lmm {{
	listen {{
		type = auth
		ipaddr = 127.0.0.1
		port = {port}
	}}
	listen {{
		type = auth
		ipv6addr = ::1
		port = {port}
	}}
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


def _writeConfig(directory: Path, port: int, secret: bytes, users: str) -> None:
    for sub in ("log", "run"):
        (directory / sub).mkdir(exist_ok=True)
    (directory / "radiusd.conf").write_text(
        _RADIUSD_CONF.format(dir=directory, port=port, secret=secret.decode()))
    # FreeRADIUS reads its own dictionaries (/usr/share/freeradius), then this.
    (directory / "dictionary").write_text(f"$INCLUDE {LMM_DICTIONARY}\n")
    (directory / "users").write_text(users)


def start(usersFile: Path | str | None = None, extraUsers: str = "",
          secret: bytes = SECRET, readyTimeout: float = 10.0) -> FreeRADIUS:
    """
    Start a FreeRADIUS and wait until it is ready. The caller must L{stop}
    it; tests use L{startFor}, which arranges that.

    @param usersFile: the users file (default: etc/freeradius/users).
    @param extraUsers: users-file entries appended to it.
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
                [FREERADIUS, "-X", "-d", str(directory)],
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
