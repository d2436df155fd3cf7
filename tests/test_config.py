"""Configuration files: every bad value names the file and the key."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from lmm import config, mh
from lmm.config import ConfigError, Setting
from lmm.daemon import wireProfile
from lmm.lmap import tap as lmaptap
from lmm.mpa import tap as mpatap

SETTINGS = [
    Setting("a.address", config.ipv6Address),
    Setting("a.prefixes", config.listOf(config.ipv6Prefix, minimum=1)),
    Setting("a.count", config.integer(1, 10), 3),
    Setting("a.ratio", config.number(0.1, 2.0), 1.0),
    Setting("a.mode", config.oneOf("x", "y"), "x"),
    Setting("a.flag", config.boolean, False),
    Setting("a.mac", config.macAddress, None),
    Setting("b.options", config.table, {}, table=True),
]

GOOD = """
[a]
address = "2001:db8::1"
prefixes = ["2001:db8:1::/64"]
"""


class ConfigFileTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def assertBad(self, text: str, key: str | None, fragment: str) -> ConfigError:
        path = self.write(text)
        e = self.assertRaises(ConfigError, config.load, path, SETTINGS)
        self.assertEqual(e.key, key)
        self.assertEqual(e.path, path)
        self.assertIn(fragment, str(e))
        self.assertIn(path, str(e))
        if key:
            self.assertIn(f"'{key}'", str(e))
        return e

    def test_defaults(self) -> None:
        values = config.load(self.write(GOOD), SETTINGS)
        self.assertEqual(values["a.address"], "2001:db8::1")
        self.assertEqual(values["a.count"], 3)
        self.assertEqual(values["a.mac"], None)
        self.assertEqual(values["b.options"], {})
        self.assertEqual(str(values["a.prefixes"][0]), "2001:db8:1::/64")

    def test_canonicalAddress(self) -> None:
        values = config.load(self.write(GOOD.replace("2001:db8::1", "2001:DB8:0::1")), SETTINGS)
        self.assertEqual(values["a.address"], "2001:db8::1")

    def test_missing(self) -> None:
        self.assertBad('[a]\naddress = "2001:db8::1"\n', "a.prefixes", "missing")

    def test_unknownKeySuggests(self) -> None:
        e = self.assertBad(GOOD + "cuont = 4\n", "a.cuont", "unknown key")
        self.assertIn("did you mean 'a.count'", str(e))

    def test_wrongTypes(self) -> None:
        self.assertBad(GOOD + "count = 11\n", "a.count", "expected 1..10")
        self.assertBad(GOOD + "count = true\n", "a.count", "whole number")
        self.assertBad(GOOD + 'ratio = "x"\n', "a.ratio", "expected a number")
        self.assertBad(GOOD + 'mode = "z"\n', "a.mode", "one of x, y")
        self.assertBad(GOOD + "flag = 1\n", "a.flag", "true or false")
        self.assertBad(GOOD + 'mac = "02:00"\n', "a.mac", "MAC address")
        self.assertBad(GOOD.replace('"2001:db8::1"', '"10.0.0.1"'), "a.address", "IPv6 address")

    def test_listItemNamed(self) -> None:
        twoPrefixes = '["2001:db8:1::/64", "2001:db8:2::1/64"]'
        self.assertBad(GOOD.replace('["2001:db8:1::/64"]', twoPrefixes), "a.prefixes", "item 1")
        self.assertBad(GOOD.replace('["2001:db8:1::/64"]', "[]"), "a.prefixes", "at least 1")

    def test_freeTable(self) -> None:
        values = config.load(self.write(GOOD + "[b.options]\nanything = 1\n"), SETTINGS)
        self.assertEqual(values["b.options"], {"anything": 1})

    def test_notToml(self) -> None:
        self.assertBad("[a\n", None, "not valid TOML")

    def test_unreadable(self) -> None:
        e = self.assertRaises(ConfigError, config.load, "/nonexistent/lmm.toml", SETTINGS)
        self.assertIn("cannot read", str(e))


class SampleConfigTests(SynchronousTestCase):
    """The samples in etc/ are valid and show every key with its default."""

    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def check(self, options: type, name: str) -> None:
        o = options()
        o.loadConfig(os.path.join(self.top, "etc", name))
        with open(os.path.join(self.top, "etc", name)) as f:
            text = f.read()
        for s in o.settings:
            section, _, key = s.key.rpartition(".")
            self.assertIn(f"[{section}]", text, f"{name} has no [{section}] table")
            self.assertIn(key, text, f"{name} does not show {s.key}")

    def test_lmap(self) -> None:
        self.check(lmaptap.Options, "lmap.toml")

    def test_mpa(self) -> None:
        self.check(mpatap.Options, "mpa.toml")


class WireProfileConfigTests(SynchronousTestCase):
    def values(self, **wire: object) -> dict[str, object]:
        v: dict[str, object] = {"wire.profile": "draft"}
        for key in ("proxy_registration_not_supported", "binding_cache_entry_missing",
                    "binding_cache_confirmation_type", "local_address_type",
                    "binding_cache_confirmation_length"):
            v["wire." + key] = None
        v.update({"wire." + k: x for k, x in wire.items()})
        return v

    def test_defaultIsDraft(self) -> None:
        self.assertIs(wireProfile("f", self.values()), mh.DRAFT)

    def test_rfc5213(self) -> None:
        self.assertIs(wireProfile("f", self.values(profile="rfc5213")), mh.RFC5213)

    def test_override(self) -> None:
        p = wireProfile("f", self.values(local_address_type=200, binding_cache_entry_missing=200))
        self.assertEqual(p.localAddressType, 200)
        self.assertEqual(p.bindingCacheEntryMissing, 200)
        self.assertEqual(p.proxyRegistrationNotSupported, 140)

    def test_collision(self) -> None:
        e = self.assertRaises(ConfigError, wireProfile, "f.toml",
                              self.values(local_address_type=18))
        self.assertEqual(e.key, "wire.local_address_type")
        self.assertIn("same number", str(e))
