"""Backends are found by name through Twisted plugins, also a third party's."""

from __future__ import annotations

import os
import sys
from typing import Any, cast

from twisted.trial.unittest import SynchronousTestCase

import twisted.plugins
from lmm.backends import Backend, UnknownBackend, findBackend, knownBackends
from lmm.interfaces import ITunnelDataPlane
from lmm.tunnel import ROLE_LMAP, RecordingDataPlane, TunnelBinding

THIRD_PARTY = '''
from lmm.backends import Backend
from lmm.interfaces import ITunnelDataPlane
thirdParty = Backend("thirdparty", ITunnelDataPlane, "lmm.tunnel:recordingBackend",
                     "declared outside lmm")
'''


class DiscoveryTests(SynchronousTestCase):
    def test_recordingFound(self) -> None:
        factory = findBackend(ITunnelDataPlane, "recording")
        backend = factory.build({}, cast(Any, None))
        self.assertIsInstance(backend, RecordingDataPlane)
        self.assertTrue(ITunnelDataPlane.providedBy(backend))

    def test_unknownListsKnown(self) -> None:
        e = self.assertRaises(UnknownBackend, findBackend, ITunnelDataPlane, "nope")
        self.assertIn("'nope'", str(e))
        self.assertIn("recording", str(e))
        self.assertIn("ITunnelDataPlane", str(e))

    def test_thirdPartyPluginDirectory(self) -> None:
        # A package elsewhere on sys.path with its own twisted/plugins/ adds a backend.
        root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "twisted", "plugins"))
        with open(os.path.join(root, "twisted", "plugins", "acme_tunnel.py"), "w") as f:
            f.write(THIRD_PARTY)
        sys.path.insert(0, root)
        saved = list(twisted.plugins.__path__)
        self.addCleanup(sys.path.remove, root)
        self.addCleanup(setattr, twisted.plugins, "__path__", saved)
        twisted.plugins.__path__.insert(0, os.path.join(root, "twisted", "plugins"))
        self.assertIn("thirdparty", knownBackends(ITunnelDataPlane))
        built = findBackend(ITunnelDataPlane, "thirdparty").build({}, cast(Any, None))
        self.assertIsInstance(built, RecordingDataPlane)

    def test_buildChecksInterface(self) -> None:
        b = Backend("bad", ITunnelDataPlane, "lmm.config:table", "returns a dict")
        self.assertRaises(TypeError, b.build, {}, None)


class RecordingDataPlaneTests(SynchronousTestCase):
    def test_records(self) -> None:
        plane = RecordingDataPlane(historySize=2)
        b1 = TunnelBinding("2001:db8:1::5", 128, "2001:db8::1", "2001:db8::2", ROLE_LMAP)
        b2 = TunnelBinding("2001:db8:1::5", 128, "2001:db8::1", "2001:db8::3", ROLE_LMAP)
        plane.addBinding(b1)
        plane.addBinding(b2)
        plane.removeBinding(b1)  # stale: b2 replaced it
        self.assertEqual(list(plane.bindings()), [b2])
        self.assertEqual(list(plane.history), [("add", b2), ("remove", b1)])
        self.assertEqual((plane.added, plane.removed), (2, 1))
        plane.removeBinding(b2)
        self.assertEqual(list(plane.bindings()), [])
