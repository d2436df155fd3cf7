"""
L{lmm.dataplane.rtnl}: the rtnetlink requests written without pyroute2,
checked against the kernel of a namespace the test makes (a veth pair in it) (read back with
iproute2's C{ip}, an independent reader) and against pyroute2 (the same
route and rule, deleted by the other).
"""

from __future__ import annotations

import errno

from pyroute2 import IPRoute
from twisted.trial.unittest import SynchronousTestCase

from lmm.dataplane.rtnl import NetlinkError, RouteWriter, Unsupported
from lmm.lab.netns import Namespace, callIn
from lmm.testing.mixins import NetnsTestMixin

ROUTE = dict(family=10, dst="2001:db8:1::5", dst_len=128, table=20001, proto=78,
             priority=78)
RULE = dict(family=10, priority=1078, src="2001:db8:1::", src_len=64, iifname="dummy0",
            table=20001, protocol=78)


class RouteWriterTests(NetnsTestMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.ns: Namespace = self.makeNamespace("rtnl")
        self.ns.ip("link", "add", "dummy0", "type", "veth", "peer", "name", "dummy1")
        self.ns.ip("link", "set", "dummy0", "up")
        self.ns.ip("link", "set", "dummy1", "up")
        self.writer = callIn(self.ns, RouteWriter.open)
        self.addCleanup(self.writer.close)
        self.index = int(self.ns.run(["cat", "/sys/class/net/dummy0/ifindex"]).stdout)

    def test_route(self) -> None:
        """Replaced (twice: no EEXIST), read back by ip with every attribute, deleted."""
        route = dict(ROUTE, oif=self.index)
        self.writer.route("replace", **route)
        self.writer.route("replace", **route)
        shown = self.ns.ip("-6", "route", "show", "table", "20001").strip()
        self.assertEqual(shown, "2001:db8:1::5 dev dummy0 proto 78 metric 78 pref medium")
        self.writer.route("del", **route)
        self.assertEqual(self.ns.ip("-6", "route", "show", "table", "20001").strip(), "")
        with self.assertRaises(NetlinkError) as caught:
            self.writer.route("del", **route)
        self.assertEqual(caught.exception.code, errno.ESRCH)

    def test_defaultRouteInMain(self) -> None:
        self.writer.route("replace", family=10, dst="::", dst_len=0, table=254, proto=78,
                          oif=self.index)
        self.assertIn("default dev dummy0 proto 78", self.ns.ip("-6", "route", "show"))

    def test_rule(self) -> None:
        """Added, read back by ip, refused twice (EEXIST, as the backends expect),
        deleted; pyroute2 deletes what the writer added, and the other way."""
        self.writer.rule("add", **RULE)
        self.assertIn("1078:\tfrom 2001:db8:1::/64 iif dummy0 lookup 20001 proto 78",
                      self.ns.ip("-6", "rule"))
        with self.assertRaises(NetlinkError) as caught:
            self.writer.rule("add", **RULE)
        self.assertEqual(caught.exception.code, errno.EEXIST)
        ipr = callIn(self.ns, IPRoute)
        self.addCleanup(ipr.close)
        ipr.rule("del", **RULE)
        self.assertNotIn("1078:", self.ns.ip("-6", "rule"))
        ipr.rule("add", **RULE)
        self.writer.rule("del", **RULE)
        self.assertNotIn("1078:", self.ns.ip("-6", "rule"))

    def test_linkIndex(self) -> None:
        self.assertEqual(self.writer.linkIndex("dummy0"), self.index)
        self.assertEqual(self.writer.linkIndex("lo"), 1)
        self.assertIsNone(self.writer.linkIndex("nosuch0"))

    def test_unsupported(self) -> None:
        """What it does not write is said, for the caller to ask pyroute2."""
        with self.assertRaises(Unsupported):
            self.writer.route("replace", encap={"type": "seg6"}, **ROUTE)
        with self.assertRaises(Unsupported):
            self.writer.rule("add", fwmark=1, **RULE)
        with self.assertRaises(Unsupported):
            self.writer.route("add", **ROUTE)
