"""The AAA data, NAIs made from MACs, and the profile-file authenticator."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from lmm import aaa
from lmm.aaa import (
    AAAUnavailable,
    AccessRejected,
    AccessRequest,
    Profile,
    ProfileFileAuthenticator,
    fileBackend,
    naiFromMac,
)
from lmm.backends import findBackend
from lmm.config import ConfigError
from lmm.interfaces import IAuthenticator

SAMPLE = str(Path(aaa.__file__).resolve().parent.parent / "etc" / "profiles.toml")

ALICE = Profile(
    nai=b"alice@lmm.test",
    lmapAddress="2001:db8:ff::1",
    localNetworkPrefix=ipaddress.IPv6Network("2001:db8:1::/64"),
    localAddress="2001:db8:1::100",
    virtualLmapMac="02:00:5e:00:53:01",
    virtualLmapLinkLocal="fe80::1",
    addressMode="dhcpv6",
    mayChooseAddress=False,
    dhcpServer="2001:db8:ff::53",
    sessionTimeout=3600,
)

# Tests use the reactor's every part; Twisted types it by its common part.
reactor: Any = _reactor


class NaiFromMacTests(SynchronousTestCase):
    MAC = "02:0A:00:00:00:01"

    def test_default(self) -> None:
        self.assertEqual(naiFromMac(aaa.DEFAULT_NAI_TEMPLATE, self.MAC), b"020a00000001@lmm.test")

    def test_placeholders(self) -> None:
        self.assertEqual(naiFromMac("{mac}", self.MAC), b"02-0a-00-00-00-01")
        self.assertEqual(naiFromMac("{mac_colon}@x", self.MAC), b"02:0a:00:00:00:01@x")
        self.assertEqual(naiFromMac("{mac_plain}", self.MAC), b"020a00000001")
        self.assertEqual(naiFromMac("{MAC}/{MAC_PLAIN}", self.MAC),
                         b"02-0A-00-00-00-01/020A00000001")
        self.assertEqual(naiFromMac("{MAC_COLON}", self.MAC), b"02:0A:00:00:00:01")
        self.assertEqual(naiFromMac("mab-{{x}}-{mac_plain}", self.MAC), b"mab-{x}-020a00000001")

    def test_unknownPlaceholder(self) -> None:
        e = self.assertRaises(ValueError, naiFromMac, "{mac_dotted}@x", self.MAC)
        self.assertIn("{mac_dotted}", str(e))
        self.assertIn("{mac_plain}", str(e))  # lists the known ones
        self.assertRaises(ValueError, naiFromMac, "{}@x", self.MAC)
        self.assertRaises(ValueError, naiFromMac, "{0}@x", self.MAC)

    def test_formatSpec(self) -> None:
        self.assertRaises(ValueError, naiFromMac, "{mac:>20}", self.MAC)
        self.assertRaises(ValueError, naiFromMac, "{mac!r}", self.MAC)

    def test_badMac(self) -> None:
        self.assertRaises(ValueError, naiFromMac, "{mac}", "02:00:00:00:00")

    def test_emptyOrLong(self) -> None:
        self.assertRaises(ValueError, naiFromMac, "", self.MAC)
        self.assertRaises(ValueError, naiFromMac, "x" * 250 + "{mac_plain}", self.MAC)

    def test_templateParser(self) -> None:
        self.assertEqual(aaa.naiTemplate("{mac}@a"), "{mac}@a")
        self.assertRaises(ValueError, aaa.naiTemplate, "{nope}")
        self.assertRaises(ValueError, aaa.naiTemplate, 3)


class ProfileFileTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def assertConfigError(self, text: str, key: str | None, *fragments: str,
                          **kwargs: bool) -> ConfigError:
        path = self.write(text)
        e = self.assertRaises(ConfigError, ProfileFileAuthenticator, path, **kwargs)
        self.assertEqual(e.key, key)
        self.assertIn(path, str(e))
        for fragment in fragments:
            self.assertIn(fragment, str(e))
        return e

    def test_sampleFile(self) -> None:
        auth = ProfileFileAuthenticator(SAMPLE)
        self.assertTrue(verifyObject(IAuthenticator, auth))
        self.assertEqual(len(auth.entries), 3)
        request = AccessRequest("02:00:00:00:00:01", "eth1", b"alice@lmm.test")
        self.assertEqual(self.successResultOf(auth.authenticate(request)), ALICE)

    def test_macOnlyByMac(self) -> None:
        # The profile has no NAI: the template makes it.
        auth = ProfileFileAuthenticator(SAMPLE, naiTemplate="{mac}@mab.test")
        profile = self.successResultOf(auth.authenticate(AccessRequest("02:00:00:00:00:02", "e")))
        self.assertEqual(profile.nai, b"02-00-00-00-00-02@mab.test")
        self.assertEqual(profile.localNetworkPrefix, ipaddress.IPv6Network("2001:db8:2::/64"))
        self.assertTrue(profile.mayChooseAddress)
        self.assertEqual(profile.addressMode, "slaac")

    def test_macOnlyProfileKnowsNai(self) -> None:
        # A MAC-only request matching a profile with a NAI gets that NAI.
        auth = ProfileFileAuthenticator(SAMPLE)
        profile = self.successResultOf(auth.authenticate(AccessRequest("02:00:00:00:00:01", "e")))
        self.assertEqual(profile, ALICE)

    def test_macOnlyByTemplateNai(self) -> None:
        path = self.write('[[profile]]\nnai = "02-00-00-00-00-07@lab"\n'
                          'local_network_prefix = "2001:db8:7::/64"\n')
        auth = ProfileFileAuthenticator(path, naiTemplate="{mac}@lab")
        profile = self.successResultOf(auth.authenticate(AccessRequest("02:00:00:00:00:07", "e")))
        self.assertEqual(profile.nai, b"02-00-00-00-00-07@lab")

    def test_naiFromAnyMac(self) -> None:
        auth = ProfileFileAuthenticator(SAMPLE)
        profile = self.successResultOf(
            auth.authenticate(AccessRequest("02:00:00:00:00:77", "e", b"carol@lmm.test")))
        self.assertEqual(profile.localAddress, "2001:db8:1::c")
        self.assertEqual(profile.addressMode, "manual")
        self.assertIsNone(profile.virtualLmapMac)

    def test_unknownRejected(self) -> None:
        auth = ProfileFileAuthenticator(SAMPLE)
        failure = self.failureResultOf(
            auth.authenticate(AccessRequest("02:00:00:00:00:99", "eth1", b"eve@lmm.test")),
            AccessRejected)
        self.assertIn("eve@lmm.test", failure.value.reason)
        self.failureResultOf(auth.authenticate(AccessRequest("02:00:00:00:00:99", "e")),
                             AccessRejected)

    def test_wrongMacRejected(self) -> None:
        auth = ProfileFileAuthenticator(SAMPLE)
        failure = self.failureResultOf(
            auth.authenticate(AccessRequest("02:00:00:00:00:09", "e", b"alice@lmm.test")),
            AccessRejected)
        self.assertIn("02:00:00:00:00:09", failure.value.reason)

    def test_macOfAnotherNai(self) -> None:
        # bob comes from alice's MAC: alice's profile is not his.
        auth = ProfileFileAuthenticator(SAMPLE)
        self.failureResultOf(
            auth.authenticate(AccessRequest("02:00:00:00:00:01", "e", b"bob@lmm.test")),
            AccessRejected)

    def test_minimalDefaults(self) -> None:
        path = self.write('[[profile]]\nmac = "02:00:00:00:00:0A"\nlocal_address = "2001:db8::a"\n')
        auth = ProfileFileAuthenticator(path)
        self.assertEqual(
            self.successResultOf(auth.authenticate(AccessRequest("02:00:00:00:00:0a", "e"))),
            Profile(nai=b"02000000000a@lmm.test", localAddress="2001:db8::a"))

    def test_badMacRejected(self) -> None:
        auth = ProfileFileAuthenticator(SAMPLE)
        self.failureResultOf(auth.authenticate(AccessRequest("02:00", "e")), AccessRejected)

    def test_emptyFileRejectsAll(self) -> None:
        auth = ProfileFileAuthenticator(self.write(""))
        self.failureResultOf(auth.authenticate(AccessRequest("02:00:00:00:00:01", "e")),
                             AccessRejected)

    # -- errors name the file and the key

    def test_badValueNamesKey(self) -> None:
        text = open(SAMPLE).read().replace('local_address = "2001:db8:1::c"',
                                           'local_address = "2001:db8:1::zz"')
        self.assertConfigError(text, "profile[2].local_address", "IPv6 address")

    def test_unknownKeyHint(self) -> None:
        self.assertConfigError('[[profile]]\nnai = "a@b"\nlocal_adress = "2001:db8::1"\n',
                               "profile[0].local_adress", "did you mean 'local_address'")

    def test_eachKeyChecked(self) -> None:
        cases = {
            "lmap_address": '"10.0.0.1"',
            "local_network_prefix": '"2001:db8::1/64"',
            "virtual_lmap_mac": '"02:00:00:00:00"',
            "virtual_lmap_link_local": '"2001:db8::1"',
            "address_mode": '"dhcp"',
            "may_choose_address": '"yes"',
            "dhcp_server": '"dhcp.example"',
            "session_timeout": "0",
            "mac": '"nope"',
            "nai": '""',
        }
        for key, value in cases.items():
            text = (f'[[profile]]\nnai = "x@y"\nlocal_address = "2001:db8::1"\n{key} = {value}\n'
                    if key != "nai" else f'[[profile]]\nnai = {value}\n')
            self.assertConfigError(text, f"profile[0].{key}")

    def test_needsNaiOrMac(self) -> None:
        self.assertConfigError('[[profile]]\nlocal_address = "2001:db8::1"\n', "profile[0]",
                               "nai or a mac")

    def test_duplicates(self) -> None:
        self.assertConfigError('[[profile]]\nnai = "a@b"\nlocal_address = "2001:db8::1"\n'
                               '[[profile]]\nnai = "a@b"\nlocal_address = "2001:db8::2"\n',
                               "profile[1].nai", "profile[0]")
        self.assertConfigError('[[profile]]\nmac = "02:00:00:00:00:01"\nlocal_address = "::1"\n'
                               '[[profile]]\nmac = "02:00:00:00:00:01"\nlocal_address = "::2"\n',
                               "profile[1].mac")

    def test_needsPrefixOrAddress(self) -> None:
        text = '[[profile]]\nnai = "a@b"\nlmap_address = "2001:db8::1"\n'
        self.assertConfigError(text, "profile[0]", "neither", "require_prefix_or_address")
        # The LMAP assigns them (draft 6.1, Binding Cache Confirmation).
        auth = ProfileFileAuthenticator(self.write(text), requirePrefixOrAddress=False)
        profile = self.successResultOf(
            auth.authenticate(AccessRequest("02:00:00:00:00:01", "e", b"a@b")))
        self.assertIsNone(profile.localNetworkPrefix)

    def test_addressOutsidePrefix(self) -> None:
        self.assertConfigError('[[profile]]\nnai = "a@b"\nlocal_network_prefix = "2001:db8:1::/64"'
                               '\nlocal_address = "2001:db8:2::1"\n', "profile[0].local_address",
                               "outside")

    def test_fileLevelErrors(self) -> None:
        self.assertConfigError("[[profile]\n", None, "not valid TOML")
        self.assertConfigError('[profiles]\nnai = "a"\n', "profiles", "unknown key")
        self.assertConfigError('profile = "x"\n', "profile", "[[profile]]")
        missing = os.path.abspath(self.mktemp())
        e = self.assertRaises(ConfigError, ProfileFileAuthenticator, missing)
        self.assertIn("cannot read", str(e))


class BackendTests(SynchronousTestCase):
    def test_declared(self) -> None:
        auth = findBackend(IAuthenticator, "file").build({"path": SAMPLE}, reactor)
        self.assertIsInstance(auth, ProfileFileAuthenticator)
        auth.stop()

    def test_settings(self) -> None:
        auth = fileBackend({"path": SAMPLE, "nai_template": "{mac}@x",
                            "require_prefix_or_address": False}, reactor)
        self.assertEqual(auth.naiTemplate, "{mac}@x")
        e = self.assertRaises(ConfigError, fileBackend, {}, reactor)
        self.assertEqual(e.key, "path")
        e = self.assertRaises(ConfigError, fileBackend, {"path": SAMPLE, "nai_template": "{x}"},
                              reactor)
        self.assertEqual(e.key, "nai_template")
        e = self.assertRaises(ConfigError, fileBackend, {"path": SAMPLE, "pth": 1}, reactor)
        self.assertEqual(e.key, "pth")

    def test_exceptions(self) -> None:
        self.assertEqual(AccessRejected("no").reason, "no")
        self.assertEqual(AAAUnavailable("down").reason, "down")
