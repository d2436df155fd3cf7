"""
Test mixins: what a trial test case needs to use the lab's namespaces and
servers, with everything it makes removed by its cleanups.
"""

from __future__ import annotations

import socket
import unittest
from typing import TYPE_CHECKING

from lmm.lab.netns import Namespace, netnsUnavailableReason, socketIn

__all__ = ["NetnsTestMixin", "skipUnlessNetns"]


def skipUnlessNetns() -> None:
    """Raise L{unittest.SkipTest} saying why, unless namespace tests can run."""
    reason = netnsUnavailableReason()
    if reason is not None:
        raise unittest.SkipTest(reason)


if TYPE_CHECKING:
    _TestCaseBase = unittest.TestCase
else:
    _TestCaseBase = object


class NetnsTestMixin(_TestCaseBase):
    """
    For trial (or unittest) test cases: namespaces and sockets that are removed
    by the test's cleanups, whether it passes or fails. A test that asks for a
    namespace where there can be none is skipped, saying why.
    """

    def makeNamespace(self, label: str = "ns") -> Namespace:
        skipUnlessNetns()
        namespace = Namespace.create(label)
        self.addCleanup(namespace.delete)
        return namespace

    def socketIn(
        self,
        namespace: Namespace,
        family: int = socket.AF_INET6,
        type: int = socket.SOCK_RAW,
        proto: int = 0,
    ) -> socket.socket:
        """L{socketIn}, closed by the test's cleanups."""
        sock = socketIn(namespace, family, type, proto)
        self.addCleanup(sock.close)
        return sock
