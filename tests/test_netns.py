"""
Tests for L{lmm.lab.netns}: names unique to the run, namespaces removed also
when a test fails, sockets made in the namespace asked for, links usable at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
import unittest

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from lmm.lab import netns, processes
from lmm.lab.netns import (
    RUN_TAG,
    Namespace,
    NetnsCommandError,
    bridge,
    callIn,
    leftovers,
    link,
    socketIn,
    waitFor,
    waitForDeferred,
)
from lmm.testing import mixins
from lmm.testing.mixins import NetnsTestMixin

_SIOCGSKNS = 0x894C  # Linux: a file descriptor for the socket's network namespace


def namespaceOf(sock: socket.socket) -> int:
    """The inode of the network namespace C{sock} lives in, asked of the kernel."""
    fd = fcntl.ioctl(sock.fileno(), _SIOCGSKNS)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def threadNamespace() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


class NamesTests(SynchronousTestCase):
    def test_runTag(self) -> None:
        """The tag names the program and the process, and leaves room in an interface name."""
        self.assertTrue(RUN_TAG.startswith(f"lmm{os.getpid() % 100000}"))
        self.assertLessEqual(len(RUN_TAG), 11)

    def test_tagsDifferBetweenProcesses(self) -> None:
        """Two processes (even with the same pid modulo 100000) get different tags."""
        source = "from lmm.lab.netns import RUN_TAG; print(RUN_TAG)"
        env = dict(os.environ, PYTHONPATH=netns._REPO)
        tags = {
            subprocess.run(
                [sys.executable, "-c", source], capture_output=True, text=True, env=env
            ).stdout.strip()
            for _ in range(3)
        }
        tags.add(RUN_TAG)
        self.assertEqual(len(tags), 4)

    def test_interfaceNames(self) -> None:
        """Interface names fit in 15 characters and never repeat."""
        names = {netns._interfaceBase() for _ in range(100)}
        self.assertEqual(len(names), 100)
        for name in names:
            self.assertTrue(name.startswith(RUN_TAG))
            self.assertLessEqual(len(name + "br"), 15)


class PollTests(SynchronousTestCase):
    def test_waitForReturnsTheValue(self) -> None:
        values = iter([0, None, "", "ready"])
        self.assertEqual(waitFor(lambda: next(values), 1, interval=0.001), "ready")

    def test_waitForTimesOut(self) -> None:
        start = time.monotonic()
        error = self.assertRaises(
            TimeoutError, waitFor, lambda: False, 0.05, 0.01, "the impossible"
        )
        self.assertIn("the impossible", str(error))
        self.assertLess(time.monotonic() - start, 1)

    def test_waitForDeferredPollsOnTheReactorClock(self) -> None:
        clock = task.Clock()
        state = {"ready": False}
        d = waitForDeferred(lambda: state["ready"] and 42, 1, 0.1, reactor=clock)
        clock.advance(0.1)
        self.assertNoResult(d)
        state["ready"] = True
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), 42)

    def test_waitForDeferredTimesOut(self) -> None:
        clock = task.Clock()
        d = waitForDeferred(lambda: False, 1, 0.1, what="the impossible", reactor=clock)
        clock.pump([0.1] * 9)
        self.assertNoResult(d)
        clock.pump([0.1] * 2)
        self.assertIn("the impossible", str(self.failureResultOf(d, TimeoutError).value))

    def test_waitForDeferredTrueAtOnce(self) -> None:
        self.assertEqual(self.successResultOf(waitForDeferred(lambda: 7, reactor=task.Clock())), 7)


class SkipTests(SynchronousTestCase):
    def test_skipsSayingWhy(self) -> None:
        self.patch(netns, "_unavailable", ["network namespace tests need root"])

        class Inner(NetnsTestMixin, SynchronousTestCase):
            def test_it(self) -> None:
                self.makeNamespace()

        result = unittest.TestResult()
        Inner("test_it").run(result)
        self.assertEqual(
            [reason for _, reason in result.skipped], ["network namespace tests need root"]
        )

    def test_unprivileged(self) -> None:
        """Without root the probe says so, before trying anything."""
        self.patch(os, "geteuid", lambda: 1000)
        self.assertEqual(netns._probe(), "network namespace tests need root")


class NamespaceTests(NetnsTestMixin, TestCase):
    def test_createdAndListed(self) -> None:
        """Namespaces are named after the run and a label, differ, and are listed."""
        a = self.makeNamespace("x")
        b = self.makeNamespace("x")
        self.assertNotEqual(a.name, b.name)
        for namespace in (a, b):
            self.assertTrue(namespace.name.startswith(f"{RUN_TAG}-x"))
            self.assertIn(namespace.name, leftovers())
        self.assertIn("lo", a.ip("-br", "link", "show", "up"))

    def test_deleteRemovesAndIsIdempotent(self) -> None:
        namespace = self.makeNamespace()
        namespace.delete()
        namespace.delete()
        self.assertNotIn(namespace.name, leftovers())
        self.assertFalse(os.path.exists(namespace.path))

    def test_run(self) -> None:
        namespace = self.makeNamespace()
        out = namespace.run(["ip", "-o", "link"]).stdout
        self.assertEqual([line.split()[1] for line in out.splitlines()], ["lo:"])
        error = self.assertRaises(NetnsCommandError, namespace.run, ["ip", "link", "show", "nix"])
        self.assertIn("nix", str(error))
        self.assertNotEqual(namespace.run(["false"], check=False).returncode, 0)

    def test_python(self) -> None:
        """Python code runs in the namespace, with lmm importable."""
        namespace = self.makeNamespace()
        out = namespace.runPython(
            "import os, sys, lmm.rawsock; print(os.stat('/proc/self/ns/net').st_ino, sys.argv[1])",
            "hello",
        ).stdout.split()
        self.assertEqual(out, [str(os.stat(namespace.path).st_ino), "hello"])

    def test_socketIn(self) -> None:
        """
        The socket is made in the namespace (the kernel says so, and it can bind an
        address only the namespace has); the thread is back home afterwards.
        """
        a = self.makeNamespace()
        b = self.makeNamespace()
        link(a, b, "fd00:1::1", "fd00:1::2")
        home = threadNamespace()
        sock = self.socketIn(a, socket.AF_INET6, socket.SOCK_DGRAM)
        self.assertEqual(threadNamespace(), home)
        self.assertEqual(namespaceOf(sock), os.stat(a.path).st_ino)
        self.assertNotEqual(namespaceOf(sock), os.stat("/proc/self/ns/net").st_ino)
        sock.bind(("fd00:1::1", 0))
        other = self.socketIn(b, socket.AF_INET6, socket.SOCK_DGRAM)
        self.assertRaises(OSError, other.bind, ("fd00:1::1", 0))

    def test_socketInByName(self) -> None:
        namespace = self.makeNamespace()
        sock = socketIn(namespace.name, socket.AF_INET6, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        self.assertEqual(namespaceOf(sock), os.stat(namespace.path).st_ino)

    def test_callInReturnsHomeOnError(self) -> None:
        namespace = self.makeNamespace()
        home = threadNamespace()

        def fail() -> None:
            self.assertNotEqual(threadNamespace(), home)
            raise ZeroDivisionError()

        self.assertRaises(ZeroDivisionError, callIn, namespace, fail)
        self.assertEqual(threadNamespace(), home)
        self.assertRaises(FileNotFoundError, callIn, f"{RUN_TAG}-absent", fail)
        self.assertEqual(threadNamespace(), home)

    def test_interfaceIndexAndSysctl(self) -> None:
        a = self.makeNamespace()
        b = self.makeNamespace()
        nameA, nameB = link(a, b, None, None)
        self.assertEqual(a.interfaceIndex("lo"), 1)
        self.assertNotEqual(a.interfaceIndex(nameA), b.interfaceIndex(nameB))
        self.assertRaises(OSError, a.interfaceIndex, nameB)
        a.sysctl("net.ipv6.conf.all.forwarding", 1)
        self.assertEqual(a.run(["sysctl", "-n", "net.ipv6.conf.all.forwarding"]).stdout, "1\n")
        self.assertEqual(b.run(["sysctl", "-n", "net.ipv6.conf.all.forwarding"]).stdout, "0\n")

    def test_deleteKillsProcesses(self) -> None:
        """Processes started here, and strays started some other way, die with the namespace."""
        namespace = self.makeNamespace()
        mine = namespace.popen(["sleep", "60"])
        stray = namespace.popenPython("import time; time.sleep(60)")
        namespace.processes.remove(stray)  # as if it had been started by other means
        self.addCleanup(stray.wait)
        waitFor(lambda: stray.pid in namespace.pids(), 5)
        namespace.delete()
        self.assertIsNotNone(mine.poll())
        waitFor(lambda: stray.poll() is not None, 5)
        self.assertNotIn(namespace.name, leftovers())

    def test_contextManager(self) -> None:
        skipUnlessNetns = mixins.skipUnlessNetns
        skipUnlessNetns()
        with Namespace.create("ctx") as namespace:
            self.assertIn(namespace.name, leftovers())
        self.assertTrue(namespace.deleted)
        self.assertNotIn(namespace.name, leftovers())

    def test_atExit(self) -> None:
        """Namespaces not deleted by their test are deleted when the interpreter exits."""
        mixins.skipUnlessNetns()
        namespace = Namespace.create("exit")
        self.addCleanup(namespace.delete)
        netns._deleteLeftovers()
        self.assertNotIn(namespace.name, leftovers())


class CleanupTests(NetnsTestMixin, SynchronousTestCase):
    """What a failing test leaves behind: nothing."""

    def runInner(self, failIn: str) -> tuple[unittest.TestResult, list[Namespace], list[int]]:
        made: list[Namespace] = []
        pids: list[int] = []

        class Inner(NetnsTestMixin, SynchronousTestCase):
            def setUp(self) -> None:
                namespace = self.makeNamespace("inner")
                made.append(namespace)
                pids.append(namespace.popen(["sleep", "60"]).pid)
                if failIn == "setUp":
                    raise RuntimeError("setUp broke")

            def test_it(self) -> None:
                made.append(self.makeNamespace("inner"))
                self.socketIn(made[-1], socket.AF_INET6, socket.SOCK_DGRAM)
                if failIn == "test":
                    self.fail("the test failed")
                raise RuntimeError("the test broke")

        result = unittest.TestResult()
        Inner("test_it").run(result)
        return result, made, pids

    def check(self, made: list[Namespace], pids: list[int]) -> None:
        self.assertTrue(made)
        for namespace in made:
            self.assertTrue(namespace.deleted)
            self.assertNotIn(namespace.name, leftovers())
        for pid in pids:
            self.assertFalse(alive(pid))

    def test_failure(self) -> None:
        mixins.skipUnlessNetns()
        result, made, pids = self.runInner("test")
        self.assertEqual((len(result.failures), len(result.errors)), (1, 0))
        self.assertEqual(len(made), 2)
        self.check(made, pids)

    def test_error(self) -> None:
        mixins.skipUnlessNetns()
        result, made, pids = self.runInner("error")
        self.assertEqual((len(result.failures), len(result.errors)), (0, 1))
        self.check(made, pids)

    def test_setUpError(self) -> None:
        mixins.skipUnlessNetns()
        result, made, pids = self.runInner("setUp")
        self.assertEqual(len(result.errors), 1)
        self.assertIn("setUp broke", result.errors[0][1])
        self.assertEqual(len(made), 1)
        self.check(made, pids)


class LinkTests(NetnsTestMixin, TestCase):
    def ping(self, namespace: Namespace, address: str) -> float:
        start = time.monotonic()
        namespace.run(["ping", "-c", "1", "-W", "2", address])
        return time.monotonic() - start

    def test_link(self) -> None:
        """
        The first packet gets through at once (not after the second a lost Neighbor
        Solicitation costs), and the ends are named after the run and have their
        addresses. (The ping comes first: showing a link with C{ip} makes the kernel
        handle its pending carrier change, which would hide the delay.)
        """
        a = self.makeNamespace("a")
        b = self.makeNamespace("b")
        nameA, nameB = link(a, b, "fd00:2::1", "fd00:2::2")
        self.assertLess(self.ping(a, "fd00:2::2"), 0.5)
        self.assertTrue(nameA.startswith(RUN_TAG))
        self.assertLessEqual(max(len(nameA), len(nameB)), 15)
        self.assertIn("fd00:2::1/64", a.ip("-br", "address", "show", nameA))
        self.assertIn("fd00:2::2/64", b.ip("-br", "address", "show", nameB))
        # Link-local addresses are usable at once too (no DAD).
        self.assertNotIn("tentative", b.ip("address", "show", nameB))
        self.assertEqual(b.run(["sysctl", "-n", f"net.ipv6.conf.{nameB}.accept_dad"]).stdout, "0\n")

    def test_linkOptions(self) -> None:
        a = self.makeNamespace("a")
        b = self.makeNamespace("b")
        nameA, nameB = link(
            a, b, "fd00:3::1", None, 48, nameA="up0", nameB="down0", dad=True, mtu=1400
        )
        self.assertEqual((nameA, nameB), ("up0", "down0"))
        self.assertIn("fd00:3::1/48", a.ip("-br", "address", "show", "up0"))
        self.assertIn("mtu 1400", b.ip("link", "show", "down0"))
        self.assertNotIn("global", b.ip("address", "show", "down0"))
        self.assertRaises(ValueError, link, a, b, None, None, nameA="x" * 16)

    def test_severalLinks(self) -> None:
        """A namespace can have many links (distinct names and indexes)."""
        hub = self.makeNamespace("hub")
        spokes = [self.makeNamespace("spoke") for _ in range(3)]
        for i, spoke in enumerate(spokes):
            link(hub, spoke, f"fd00:4:{i}::1", f"fd00:4:{i}::2")
        for i, spoke in enumerate(spokes):
            self.assertLess(self.ping(spoke, f"fd00:4:{i}::1"), 0.5)

    def test_bridge(self) -> None:
        hub = self.makeNamespace("hub")
        members = [self.makeNamespace("m") for _ in range(3)]
        made = bridge(
            hub, [(m, f"fd00:5::{i + 10}") for i, m in enumerate(members)], address="fd00:5::1"
        )
        self.assertEqual(len(made.interfaces), 3)
        self.assertIn(made.ports[0], hub.ip("link", "show", "master", made.name))
        self.assertLess(self.ping(members[0], "fd00:5::12"), 0.5)
        self.assertLess(self.ping(members[2], "fd00:5::1"), 0.5)
        # Multicast reaches every member: all three answer a ping to all-nodes.
        out = (
            members[0]
            .run(["ping", "-c", "2", "-i", "0.2", "-W", "1", f"ff02::1%{made.interfaces[0]}"])
            .stdout
        )
        responders = {line.split()[3] for line in out.splitlines() if "bytes from" in line}
        self.assertGreaterEqual(len(responders), 3)


class NftServerTests(NetnsTestMixin, SynchronousTestCase):
    """L{lmm.lab.nftserver}, in a namespace of its own: scripts commit there,
    in libnftables and in the C{nft} fallback alike; a refused one answers
    nft's error and the server goes on."""

    def serve(self, namespace: Namespace, lines: list[str], fallback: bool) -> list[object]:
        source = ("import sys; from lmm.lab import nftserver\n"
                  + ("nftserver._libnftables = lambda: None\n" if fallback else "")
                  + "nftserver.main()\n")
        process = namespace.popenPython(source, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        out, _ = process.communicate("".join(json.dumps(line) + "\n" for line in lines),
                                     timeout=30)
        return [json.loads(answer) for answer in out.splitlines()]

    def test_scripts(self) -> None:
        for fallback in (False, True):
            namespace = self.makeNamespace("nft")
            answers = self.serve(namespace, [
                "add table netdev t\nadd chain netdev t c { type filter hook ingress "
                "device lo priority 0 ; }\nadd rule netdev t c counter\n",
                "add rule netdev t nosuchchain drop\n",
                "add rule netdev t c drop\n"], fallback)
            self.assertEqual(len(answers), 3)
            self.assertIsNone(answers[0])
            self.assertIsInstance(answers[1], str)
            self.assertIn("nosuchchain", str(answers[1]))
            self.assertIsNone(answers[2])
            listed = namespace.run(["nft", "list", "chain", "netdev", "t", "c"]).stdout
            self.assertIn("counter", listed)
            self.assertIn("drop", listed)


class CpuTimesTests(SynchronousTestCase):
    """lmm.lab.processes.cpuTimes, which the benchmarks' CPU figures come from,
    against the kernel's other account of the same process (os.times)."""

    def test_ownProcess(self) -> None:
        deadline = time.process_time() + 0.3
        while time.process_time() < deadline:  # CPU time, to be seen
            pass
        before = os.times()
        user, system = processes.cpuTimes(os.getpid())
        after = os.times()
        tick = 1 / os.sysconf("SC_CLK_TCK")
        self.assertGreaterEqual(user + system, 0.3 - tick)
        self.assertLessEqual(before.user - tick, user)
        self.assertLessEqual(user, after.user + tick)
        self.assertLessEqual(before.system - tick, system)
        self.assertLessEqual(system, after.system + tick)

    def test_otherProcess(self) -> None:
        """A child's busy 0.4 s shows, its sleep adds nothing."""
        child = subprocess.Popen([sys.executable, "-c",
                                  "import time\nt = time.process_time() + 0.4\n"
                                  "while time.process_time() < t: pass\nprint(flush=True)\n"
                                  "time.sleep(30)"], stdout=subprocess.PIPE)
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        assert child.stdout is not None
        child.stdout.readline()
        user, system = processes.cpuTimes(child.pid)
        self.assertGreaterEqual(user + system, 0.35)  # process_time: both
        time.sleep(0.2)
        self.assertLess(sum(processes.cpuTimes(child.pid)) - (user + system), 0.05)
