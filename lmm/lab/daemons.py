"""
Running lmm's real daemons (twistd lmm-lmap, twistd lmm-mpa) inside a test's
network namespace, from the working tree, with their logs kept.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from lmm.config import writeToml
from lmm.lab.netns import Namespace, waitFor
from lmm.security import ALGORITHMS, MobilitySecurityAssociation, writeKeyFile

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


# The lab and the tests write daemon configurations with the project's TOML writer.
writeConfig = writeToml


def writeKeyFiles(folder: str, lmap: str, mpas: Sequence[str],
                  algorithm: str = "hmac-sha256-128") -> tuple[str, dict[str, str]]:
    """
    Fresh security associations (docs/security.md) between the LMAP at
    C{lmap} and each MPA address in C{mpas}, one random key per pair, written
    as key files (mode 0600) in C{folder}: the LMAP's path, and each MPA's by
    address. The lab's signaling is authenticated, as a deployment's is.
    """
    kind = ALGORITHMS[algorithm]
    lmapSide = []
    paths: dict[str, str] = {}
    for index, mpa in enumerate(mpas):
        spi, key = 1000 + index, secrets.token_bytes(32)
        lmapSide.append(MobilitySecurityAssociation(mpa, spi, kind, key))
        paths[mpa] = writeKeyFile(os.path.join(folder, f"mpa-{index + 1}.keys"),
                                  [MobilitySecurityAssociation(lmap, spi, kind, key)])
    return writeKeyFile(os.path.join(folder, "lmap.keys"), lmapSide), paths


def pythonPath() -> str:
    """The daemons' PYTHONPATH: this checkout first, then what the caller's
    adds (a third party's plugins: examples/plugin)."""
    paths = [_REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                       if p and p != _REPO]
    return os.pathsep.join(paths)


class Daemon:
    """
    One twistd process in a namespace. L{start} returns once C{ready} appears in
    its log; L{stop} ends it with SIGTERM and returns its exit status.
    """

    def __init__(self, namespace: Namespace, plugin: str, configPath: str, logPath: str) -> None:
        self.namespace = namespace
        self.plugin = plugin
        self.configPath = configPath
        self.logPath = logPath
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    def start(self, ready: str, timeout: float = 20.0) -> Daemon:
        argv = [TWISTD, "-n", "--pidfile=", f"--logfile={self.logPath}", self.plugin,
                "--config", self.configPath]
        env = dict(os.environ, PYTHONPATH=pythonPath())
        # A restart appends to the same log: only this run's lines say it is ready.
        before = self._logSize()
        self.process = self.namespace.popen(argv, env=env, stdout=subprocess.DEVNULL,
                                            stderr=open(self.logPath + ".stderr", "ab"))
        def seen() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.plugin} exited with {self.process.returncode}:\n"
                                   + self.logTail())
            return ready in self._logSince(before)
        waitFor(seen, timeout, what=f"{self.plugin} to log {ready!r}")
        return self

    @property
    def pid(self) -> int:
        """The twistd's process id (C{ip netns exec} execs it)."""
        if self.process is None:
            raise RuntimeError(f"{self.plugin} is not started")
        return self.process.pid

    def _logSize(self) -> int:
        try:
            return os.path.getsize(self.logPath)
        except OSError:
            return 0

    def _logSince(self, offset: int) -> str:
        try:
            with open(self.logPath, "rb") as f:
                # twistd rotates a log at 1 MB: a smaller file is a new one.
                f.seek(offset if os.fstat(f.fileno()).st_size >= offset else 0)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """End the daemon as a crash would: SIGKILL, nothing cleaned up."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.returncode = self.process.returncode
        self.process = None

    def log(self) -> str:
        text = ""
        for path in (self.logPath, self.logPath + ".stderr"):
            try:
                with open(path, errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def logTail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> int | None:
        """End the daemon; twistd re-raises SIGTERM after a clean shutdown, so a
        clean stop returns -SIGTERM."""
        if self.process is None:
            return self.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self.returncode = self.process.returncode
        self.process = None
        return self.returncode
