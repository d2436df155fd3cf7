"""lmm.lmap.cache: the Binding Cache entry and the in-memory IBindingStore."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from lmm.interfaces import IBindingStore
from lmm.lmap.cache import BindingCache, BindingCacheEntry
from lmm.tunnel import ROLE_LMAP, TunnelBinding


def makeEntry(nai: bytes = b"ms@example.net", address: str = "2001:db8:1::10",
              careOf: str = "2001:db8:a::1", now: float = 100.0) -> BindingCacheEntry:
    tunnel = TunnelBinding(address, 128, "2001:db8:ffff::1", careOf, ROLE_LMAP)
    return BindingCacheEntry(nai, address, 64, careOf, 3600, 1, tunnel, now, now)


class BindingCacheEntryTests(SynchronousTestCase):
    def test_slotted(self) -> None:
        """An entry carries no per-instance dict: a million of them stay small."""
        entry = makeEntry()
        self.assertFalse(hasattr(entry, "__dict__"))
        with self.assertRaises(AttributeError):
            entry.extra = 1  # type: ignore[attr-defined]

    def test_mutable(self) -> None:
        entry = makeEntry()
        entry.updated = 5.0
        entry.sequence = 7
        self.assertEqual((entry.updated, entry.sequence), (5.0, 7))

    def test_expires(self) -> None:
        """A binding ends its lifetime after its last update."""
        entry = makeEntry(now=100.0)
        self.assertEqual(entry.expires, 3700.0)
        entry.updated, entry.lifetime = 200.0, 40
        self.assertEqual(entry.expires, 240.0)


class BindingCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cache = BindingCache()

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IBindingStore, self.cache))

    def test_empty(self) -> None:
        self.assertEqual(len(self.cache), 0)
        self.assertEqual(list(self.cache), [])
        self.assertIsNone(self.cache.get(b"nobody"))
        self.assertIsNone(self.cache.getByAddress("2001:db8::1"))
        self.assertIsNone(self.cache.remove(b"nobody"))

    def test_putGet(self) -> None:
        a = makeEntry(b"a", "2001:db8:1::a")
        b = makeEntry(b"b", "2001:db8:1::b")
        self.cache.put(a)
        self.cache.put(b)
        self.assertEqual(len(self.cache), 2)
        self.assertIs(self.cache.get(b"a"), a)
        self.assertIs(self.cache.getByAddress("2001:db8:1::b"), b)
        self.assertEqual({e.nai for e in self.cache}, {b"a", b"b"})

    def test_putSameEntry(self) -> None:
        """Putting a held entry again (a refresh) changes nothing."""
        a = makeEntry()
        self.cache.put(a)
        a.updated = 1.0
        self.cache.put(a)
        self.assertEqual(len(self.cache), 1)
        self.assertIs(self.cache.getByAddress(a.localAddress), a)

    def test_replaceWithNewAddress(self) -> None:
        """A new entry for the same NAI replaces the old one and its address."""
        old = makeEntry(b"a", "2001:db8:1::a")
        new = makeEntry(b"a", "2001:db8:1::b")
        self.cache.put(old)
        self.cache.put(new)
        self.assertEqual(len(self.cache), 1)
        self.assertIs(self.cache.get(b"a"), new)
        self.assertIsNone(self.cache.getByAddress("2001:db8:1::a"))
        self.assertIs(self.cache.getByAddress("2001:db8:1::b"), new)

    def test_remove(self) -> None:
        a = makeEntry()
        self.cache.put(a)
        self.assertIs(self.cache.remove(a.nai), a)
        self.assertEqual(len(self.cache), 0)
        self.assertIsNone(self.cache.getByAddress(a.localAddress))
        self.assertIsNone(self.cache.remove(a.nai))

    def test_removeKeepsOthersAddress(self) -> None:
        """Removing an entry whose address was taken over by another entry
        leaves the other one findable by address."""
        a = makeEntry(b"a", "2001:db8:1::a")
        b = makeEntry(b"b", "2001:db8:1::a")
        self.cache.put(a)
        self.cache.put(b)
        self.cache.remove(b"a")
        self.assertIs(self.cache.getByAddress("2001:db8:1::a"), b)
