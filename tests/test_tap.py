"""The daemons as users start them: twistd from the virtualenv, in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
twistd = os.path.join(os.path.dirname(sys.executable), "twistd")


def runTwistd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([twistd, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=top, env=dict(os.environ, PYTHONPATH=top))


class TwistdTests(SynchronousTestCase):
    def setUp(self) -> None:
        if not os.path.exists(twistd):
            self.skipTest(f"no twistd next to {sys.executable}")

    def test_pluginsListed(self) -> None:
        out = runTwistd("--help").stdout
        self.assertIn("lmm-lmap", out)
        self.assertIn("lmm-mpa", out)

    def test_help(self) -> None:
        for daemon, key in (("lmm-lmap", "lmap.local_network_prefixes"),
                            ("lmm-mpa", "mpa.access_interfaces")):
            result = runTwistd(daemon, "--help")
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("--config", result.stdout)
            self.assertIn(key, result.stdout)

    def badConfig(self, daemon: str, text: str) -> subprocess.CompletedProcess[str]:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        result = runTwistd("-n", "--pidfile=", daemon, "--config", path)
        self.assertEqual(result.returncode, 1)
        self.assertIn(path, result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        return result

    def test_badValueNamesKeyAndFile(self) -> None:
        result = self.badConfig("lmm-lmap", '[lmap]\naddress = "nope"\n'
                                'local_network_prefixes = ["2001:db8:1::/64"]\n')
        self.assertIn("key 'lmap.address'", result.stderr)
        self.assertIn("expected an IPv6 address", result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)

    def test_missingKey(self) -> None:
        result = self.badConfig("lmm-mpa", '[mpa]\naddress = "2001:db8::2"\nlmap = "2001:db8::1"\n')
        self.assertIn("key 'mpa.access_interfaces'", result.stderr)
        self.assertIn("missing", result.stderr)

    def test_unknownBackendListsKnown(self) -> None:
        result = self.badConfig("lmm-lmap", '[lmap]\naddress = "2001:db8::1"\n'
                                'local_network_prefixes = ["2001:db8:1::/64"]\n'
                                'mpas = ["2001:db8::/64"]\n'
                                '[tunnel]\nbackend = "warp"\n')
        self.assertIn("key 'tunnel.backend'", result.stderr)
        self.assertIn("'warp'", result.stderr)
        self.assertIn("recording", result.stderr)

    def test_badTunnelOptions(self) -> None:
        """A tunnel backend's own table is checked at start, in both daemons: one
        line naming the file and the key (the LMAP's gave a traceback once)."""
        lmap = ('[lmap]\naddress = "2001:db8::1"\nlocal_network_prefixes = ["2001:db8:1::/64"]\n'
                'mpas = ["2001:db8::/64"]\n')
        mpa = ('[mpa]\naddress = "2001:db8::2"\nlmap = "2001:db8::1"\n'
               'access_interfaces = ["lmmnone0"]\n')
        for daemon, head in (("lmm-lmap", lmap), ("lmm-mpa", mpa)):
            result = self.badConfig(daemon, head + '[tunnel]\nbackend = "recording"\n'
                                    '[tunnel.options]\nhistroy = 5\n')
            self.assertIn("key 'tunnel.options'", result.stderr)
            self.assertIn("unknown key tunnel.options.histroy", result.stderr)
            self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)

    def test_overlappingPrefixes(self) -> None:
        result = self.badConfig("lmm-lmap", '[lmap]\naddress = "2001:db8::1"\n'
                                'local_network_prefixes = ["2001:db8:1::/64", "2001:db8::/32"]\n'
                                'mpas = ["2001:db8::/64"]\n')
        self.assertIn("key 'lmap.local_network_prefixes'", result.stderr)
        self.assertIn("overlap", result.stderr)

    def test_noConfig(self) -> None:
        result = runTwistd("-n", "--pidfile=", "lmm-lmap")
        self.assertEqual(result.returncode, 1)
        self.assertIn("--config FILE is required", result.stdout + result.stderr)

    def test_metricsPortInUse(self) -> None:
        """A key whose value cannot be had at start (a metrics port another
        process holds, on loopback) stops the daemon as a bad key does: one line
        naming the key and the file, exit status 1, no traceback."""
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write('[lmap]\naddress = "::1"\nlocal_network_prefixes = ["2001:db8:1::/64"]\n'
                    'mpas = ["::1/128"]\n[store]\nbackend = "memory"\n'
                    '[security]\nauthentication = false\n[tunnel]\nbackend = "recording"\n'
                    f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        result = runTwistd("-n", "--pidfile=", "lmm-lmap", "--config", path)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertNotIn("Traceback", output)
        [line] = [line for line in output.splitlines() if "configuration error" in line]
        self.assertIn(f"lmm-lmap: configuration error: {path}: key 'metrics.listen': cannot "
                      f"listen on", line)
        self.assertIn("Address already in use", line)
