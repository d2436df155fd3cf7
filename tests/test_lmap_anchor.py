"""lmm.lmap.anchor: Proxy Binding Update processing, expiry and revocation, without I/O."""

from __future__ import annotations

import dataclasses
from hashlib import blake2b
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from lmm import mh, signaling
from lmm.heartbeat import HeartbeatPolicy
from lmm.lmap.anchor import (
    Action,
    AddTunnel,
    LocalMobilityAnchor,
    Note,
    RemoveTunnel,
    SendMessage,
)
from lmm.lmap.cache import BindingCache, BindingCacheEntry
from lmm.mh import Status
from lmm.signaling import isNewer
from lmm.tunnel import ROLE_LMAP, TunnelBinding

LMAP = "2001:db8:ffff::1"
LNP = IPv6Network("2001:db8:1::/64")
LNP2 = IPv6Network("2001:db8:2::/64")
MPAS = IPv6Network("2001:db8:a::/64")
MPA1 = "2001:db8:a::1"
MPA2 = "2001:db8:a::2"
MPA3 = "2001:db8:a::3"
STRANGER = "2001:db8:b::1"
NAI = b"ms1@example.net"
ADDRESS = "2001:db8:1::10"
T0 = 1000.0


def makeAnchor(
    profile: mh.WireProfile = mh.DRAFT,
    prefixes: tuple[IPv6Network, ...] = (LNP, LNP2),
    mpas: tuple[IPv6Network, ...] = (MPAS,),
    address: str = LMAP,
    **kwargs: Any,
) -> LocalMobilityAnchor:
    settings: dict[str, Any] = {
        "maxLifetime": 3600, "revocationTimeout": 1.0, "revocationRetries": 3,
    }
    settings.update(kwargs)
    return LocalMobilityAnchor(address, list(prefixes), list(mpas), profile=profile, **settings)


def pbu(
    sequence: int,
    lifetime: int = 3600,
    nai: bytes | None = NAI,
    address: str | None = ADDRESS,
    prefixLength: int = 64,
    confirm: bool = False,
    ack: bool = True,
    proxy: bool = True,
    extra: tuple[mh.MobilityOption, ...] = (),
) -> mh.BindingUpdate:
    options: list[mh.MobilityOption] = []
    if nai is not None:
        options.append(mh.MobileNodeIdentifier(nai))
    if confirm:
        options.append(mh.BindingCacheConfirmation())
    if address is not None:
        options.append(mh.LocalAddress(address, prefixLength))
    options.extend(extra)
    return mh.BindingUpdate(sequence, lifetime, tuple(options), ack=ack, proxy=proxy)


POOL = IPv6Network("2001:db8:100::/48")
LLID = mh.MobileNodeLinkLayerIdentifier(bytes.fromhex("020000000001"))


def pbu5213(
    sequence: int,
    prefix: str | None = "::",
    prefixLength: int = 0,
    handoff: int | None = mh.HandoffIndicator.UNKNOWN,
    technology: int | None = mh.AccessTechnology.IEEE_802_3,
    lifetime: int = 3600,
    nai: bytes | None = NAI,
    extra: tuple[mh.MobilityOption, ...] = (LLID,),
) -> mh.BindingUpdate:
    """A PBU as RFC 5213 6.9.1.5 has a MAG build it."""
    options: list[mh.MobilityOption] = []
    if nai is not None:
        options.append(mh.MobileNodeIdentifier(nai))
    if prefix is not None:
        options.append(mh.HomeNetworkPrefix(prefix, prefixLength))
    if handoff is not None:
        options.append(mh.HandoffIndicatorOption(handoff))
    if technology is not None:
        options.append(mh.AccessTechnologyType(technology))
    options.extend(extra)
    return mh.BindingUpdate(sequence, lifetime, tuple(options), ack=True, proxy=True)


def hashPrefix(nai: bytes, pool: IPv6Network = POOL, length: int = 64) -> str:
    """The first home network prefix the anchor tries for C{nai}."""
    index = int.from_bytes(blake2b(nai, digest_size=16).digest(), "big")
    index &= (1 << (length - pool.prefixlen)) - 1
    return str(IPv6Address(int(pool.network_address) | index << (128 - length)))


def sends(actions: list[Action]) -> list[SendMessage]:
    return [a for a in actions if isinstance(a, SendMessage)]


def notes(actions: list[Action]) -> list[Note]:
    return [a for a in actions if isinstance(a, Note)]


def shape(actions: list[Action]) -> list[str]:
    """The actions in order, Notes left out, as short words."""
    words = []
    for a in actions:
        if isinstance(a, SendMessage):
            words.append(f"send {type(a.message).__name__} {a.destination}")
        elif isinstance(a, AddTunnel):
            words.append(f"add {a.binding.mobileAddress} {a.binding.remoteEndpoint}")
        elif isinstance(a, RemoveTunnel):
            words.append(f"remove {a.binding.mobileAddress} {a.binding.remoteEndpoint}")
    return words


def onlyAck(testCase: SynchronousTestCase, actions: list[Action]) -> mh.BindingAck:
    messages = sends(actions)
    testCase.assertEqual(len(messages), 1, actions)
    message = messages[0].message
    assert isinstance(message, mh.BindingAck)
    return message


def hashAddress(nai: bytes, prefix: IPv6Network) -> int:
    """The first address the anchor tries for C{nai} (the documented choice)."""
    identifier = int.from_bytes(blake2b(nai, digest_size=16).digest(), "big")
    return int(prefix.network_address) | (identifier & int(prefix.hostmask))


class SequenceNumberTests(SynchronousTestCase):
    def test_newer(self) -> None:
        self.assertTrue(isNewer(2, 1))
        self.assertTrue(isNewer(1 + 32767, 1))
        self.assertTrue(isNewer(0, 65535))
        self.assertTrue(isNewer(5, 65530))

    def test_notNewer(self) -> None:
        self.assertFalse(isNewer(1, 1))
        self.assertFalse(isNewer(0, 1))
        self.assertFalse(isNewer(1 + 32768, 1))
        self.assertFalse(isNewer(65535, 0))


class ConstructionTests(SynchronousTestCase):
    def test_noPrefixes(self) -> None:
        self.assertRaises(ValueError, makeAnchor, prefixes=())

    def test_badNumbers(self) -> None:
        self.assertRaises(ValueError, makeAnchor, maxLifetime=3)
        self.assertRaises(ValueError, makeAnchor, revocationTimeout=0)
        self.assertRaises(ValueError, makeAnchor, revocationRetries=-1)

    def test_maxLifetimeCarriedByWire(self) -> None:
        """A maximum the wire cannot carry is lowered to what it can."""
        self.assertEqual(makeAnchor(maxLifetime=10**6).maxLifetime, mh.MAX_LIFETIME)
        self.assertEqual(makeAnchor(maxLifetime=3601).maxLifetime, 3600)

    def test_canonicalAddress(self) -> None:
        self.assertEqual(makeAnchor(address="2001:0db8:ffff:0::1").address, LMAP)

    def test_adoptStore(self) -> None:
        """Entries already in the store given to an anchor expire like new ones."""
        store = BindingCache()
        tunnel = TunnelBinding(ADDRESS, 128, LMAP, MPA1, ROLE_LMAP)
        store.put(BindingCacheEntry(NAI, ADDRESS, 64, MPA1, 40, 1, tunnel, T0, T0))
        anchor = makeAnchor(store=store)
        self.assertIs(anchor.store, store)
        self.assertEqual(anchor.nextDeadline(), T0 + 40)
        self.assertEqual(shape(anchor.tick(T0 + 40)), [f"remove {ADDRESS} {MPA1}"])


class RejectionTests(SynchronousTestCase):
    def test_proxyFlagClear(self) -> None:
        """A plain Binding Update: "Proxy Registration not supported", P clear."""
        for profile, status in ((mh.DRAFT, 140), (mh.RFC5213, Status.PROXY_REG_NOT_ENABLED)):
            anchor = makeAnchor(profile)
            actions = anchor.receive(pbu(7, proxy=False), MPA1, T0)
            ack = onlyAck(self, actions)
            self.assertEqual((ack.status, ack.sequence, ack.proxy), (status, 7, False))
            self.assertEqual(sends(actions)[0].destination, MPA1)
            self.assertEqual(len(anchor.store), 0)
            self.assertEqual(anchor.counters[f"pbu.rejected.{status}"], 1)
            self.assertEqual([n.event for n in notes(actions)], ["pbu.rejected"])

    def test_notAnMPA(self) -> None:
        """A source outside the MPA prefixes: the same status, P set."""
        for profile, status in ((mh.DRAFT, 140), (mh.RFC5213, 152)):
            anchor = makeAnchor(profile)
            ack = onlyAck(self, anchor.receive(pbu(7), STRANGER, T0))
            self.assertEqual((ack.status, ack.sequence, ack.proxy), (status, 7, True))
            self.assertEqual(len(anchor.store), 0)

    def test_noMPAsConfigured(self) -> None:
        """With no MPA prefix configured, nobody may register."""
        anchor = makeAnchor(mpas=())
        self.assertEqual(onlyAck(self, anchor.receive(pbu(1), MPA1, T0)).status, 140)

    def test_garbageSource(self) -> None:
        anchor = makeAnchor()
        self.assertEqual(onlyAck(self, anchor.receive(pbu(1), "not an address", T0)).status, 140)

    def test_customProfile(self) -> None:
        profile = mh.WireProfile("custom", 200, 201, 18, 22)
        anchor = makeAnchor(profile)
        self.assertEqual(onlyAck(self, anchor.receive(pbu(1), STRANGER, T0)).status, 200)
        ack = onlyAck(self, anchor.receive(pbu(1, confirm=True, address=None), MPA1, T0))
        self.assertEqual(ack.status, 201)

    def test_missingIdentifier(self) -> None:
        anchor = makeAnchor()
        actions = anchor.receive(pbu(3, nai=None), MPA1, T0)
        self.assertEqual(onlyAck(self, actions).status, Status.MISSING_MN_IDENTIFIER_OPTION)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])
        self.assertEqual(len(anchor.store), 0)

    def test_identifierNotNAI(self) -> None:
        anchor = makeAnchor()
        bu = pbu(3, nai=None, extra=(mh.MobileNodeIdentifier(b"\x01\x02", subtype=2),))
        ack = onlyAck(self, anchor.receive(bu, MPA1, T0))
        self.assertEqual(ack.status, Status.MISSING_MN_IDENTIFIER_OPTION)

    def test_rejectionRepliedWithoutAFlag(self) -> None:
        """A rejection is always answered (RFC 6275 9.5.1)."""
        anchor = makeAnchor()
        ack = onlyAck(self, anchor.receive(pbu(3, nai=None, ack=False), MPA1, T0))
        self.assertEqual(ack.status, Status.MISSING_MN_IDENTIFIER_OPTION)

    def test_alternateCareOfNotAnMPA(self) -> None:
        anchor = makeAnchor()
        bu = pbu(1, extra=(mh.AlternateCareOfAddress(STRANGER),))
        self.assertEqual(onlyAck(self, anchor.receive(bu, MPA1, T0)).status, 140)
        self.assertEqual(len(anchor.store), 0)


class RegistrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.anchor = makeAnchor()

    def test_newBinding(self) -> None:
        """The tunnel is added before the PBA leaves; the entry says it all."""
        actions = self.anchor.receive(pbu(17), MPA1, T0)
        self.assertEqual(shape(actions), [f"add {ADDRESS} {MPA1}", f"send BindingAck {MPA1}"])
        tunnel = TunnelBinding(ADDRESS, 128, LMAP, MPA1, ROLE_LMAP)
        self.assertEqual(actions[0], AddTunnel(tunnel))
        ack = onlyAck(self, actions)
        self.assertEqual(
            ack, mh.ProxyBindingAck(0, 17, 3600, (mh.LocalAddress(ADDRESS, 64),))
        )
        entry = self.anchor.store.get(NAI)
        assert entry is not None
        self.assertEqual(
            entry,
            BindingCacheEntry(NAI, ADDRESS, 64, MPA1, 3600, 17, tunnel, T0, T0),
        )
        self.assertIs(self.anchor.store.getByAddress(ADDRESS), entry)
        [note] = notes(actions)
        self.assertEqual(note.event, "binding.created")
        self.assertEqual(note.fields["nai"], NAI.decode())
        self.assertEqual(self.anchor.counters["pbu.accepted"], 1)
        self.assertEqual(self.anchor.counters["binding.created"], 1)

    def test_noAckWanted(self) -> None:
        """Accepted without the A flag: the tunnel, no PBA."""
        actions = self.anchor.receive(pbu(1, ack=False), MPA1, T0)
        self.assertEqual(shape(actions), [f"add {ADDRESS} {MPA1}"])

    def test_refresh(self) -> None:
        """A refresh from the same MPA: no tunnel change, no Note, the entry moves on."""
        self.anchor.receive(pbu(1), MPA1, T0)
        actions = self.anchor.receive(pbu(2, lifetime=1200), MPA1, T0 + 100)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])
        self.assertEqual(notes(actions), [])
        ack = onlyAck(self, actions)
        self.assertEqual((ack.status, ack.sequence, ack.lifetime), (0, 2, 1200))
        entry = self.anchor.store.get(NAI)
        assert entry is not None
        self.assertEqual(
            (entry.sequence, entry.lifetime, entry.expires, entry.created, entry.updated),
            (2, 1200, T0 + 1300, T0, T0 + 100),
        )
        self.assertEqual(self.anchor.counters["pbu.accepted"], 2)

    def test_refreshWithoutAddress(self) -> None:
        """A refresh naming no address (or ::) keeps the entry's address."""
        self.anchor.receive(pbu(1), MPA1, T0)
        for sequence, address in ((2, None), (3, "::")):
            actions = self.anchor.receive(pbu(sequence, address=address), MPA1, T0 + sequence)
            self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])
            ack = onlyAck(self, actions)
            self.assertEqual(ack.options, (mh.LocalAddress(ADDRESS, 64),))

    def test_refreshNoAck(self) -> None:
        self.anchor.receive(pbu(1), MPA1, T0)
        self.assertEqual(self.anchor.receive(pbu(2, ack=False), MPA1, T0 + 1), [])

    def test_alternateCareOf(self) -> None:
        """The Alternate Care-of Address is the tunnel's far end; the PBA goes to the source."""
        bu = pbu(1, extra=(mh.AlternateCareOfAddress(MPA2),))
        actions = self.anchor.receive(bu, MPA1, T0)
        self.assertEqual(shape(actions), [f"add {ADDRESS} {MPA2}", f"send BindingAck {MPA1}"])
        entry = self.anchor.store.get(NAI)
        assert entry is not None
        self.assertEqual(entry.careOfAddress, MPA2)

    def test_canonicalSource(self) -> None:
        """Sources are compared as addresses, and entries share one string per MPA."""
        self.anchor.receive(pbu(1), "2001:db8:a:0:0::1", T0)
        self.anchor.receive(pbu(1, nai=b"other", address="2001:db8:1::11"), MPA1, T0)
        a, b = self.anchor.store.get(NAI), self.anchor.store.get(b"other")
        assert a is not None and b is not None
        self.assertEqual(a.careOfAddress, MPA1)
        self.assertIs(a.careOfAddress, b.careOfAddress)
        actions = self.anchor.receive(pbu(2), MPA1, T0 + 1)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])


class LifetimeTests(SynchronousTestCase):
    def granted(self, requested: int, maxLifetime: int = 3600) -> int:
        anchor = makeAnchor(maxLifetime=maxLifetime)
        ack = onlyAck(self, anchor.receive(pbu(1, lifetime=requested), MPA1, T0))
        entry = anchor.store.get(NAI)
        assert entry is not None
        self.assertEqual((entry.lifetime, entry.expires), (ack.lifetime, T0 + ack.lifetime))
        return ack.lifetime

    def test_capped(self) -> None:
        self.assertEqual(self.granted(10000), 3600)
        self.assertEqual(self.granted(3600), 3600)
        self.assertEqual(self.granted(1200), 1200)

    def test_roundedDown(self) -> None:
        """The grant never exceeds the maximum, and is whole units of 4 s."""
        self.assertEqual(self.granted(10000, maxLifetime=3601), 3600)
        self.assertEqual(self.granted(1003), 1000)

    def test_minimum(self) -> None:
        self.assertEqual(self.granted(1), 4)
        self.assertEqual(self.granted(4), 4)
        self.assertEqual(self.granted(7), 4)


class SequenceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.anchor = makeAnchor()

    def assertOutOfWindow(self, sequence: int, last: int, source: str = MPA1) -> None:
        entry = self.anchor.store.get(NAI)
        assert entry is not None
        before = (entry.sequence, entry.expires, entry.careOfAddress)
        actions = self.anchor.receive(pbu(sequence), source, T0 + 10)
        ack = onlyAck(self, actions)
        self.assertEqual(
            (ack.status, ack.sequence, ack.lifetime),
            (Status.SEQUENCE_NUMBER_OUT_OF_WINDOW, last, 0),
        )
        self.assertEqual(shape(actions), [f"send BindingAck {source}"])
        self.assertEqual((entry.sequence, entry.expires, entry.careOfAddress), before)

    def test_old(self) -> None:
        self.anchor.receive(pbu(10), MPA1, T0)
        self.assertOutOfWindow(9, 10)
        self.assertOutOfWindow(10, 10)
        self.assertOutOfWindow(10 + 32768, 10)
        self.assertEqual(self.anchor.counters["pbu.rejected.135"], 3)

    def test_wraparound(self) -> None:
        self.anchor.receive(pbu(65535), MPA1, T0)
        ack = onlyAck(self, self.anchor.receive(pbu(0), MPA1, T0 + 1))
        self.assertEqual((ack.status, ack.sequence), (0, 0))
        self.assertOutOfWindow(65535, 0)
        ack = onlyAck(self, self.anchor.receive(pbu(32767), MPA1, T0 + 2))
        self.assertEqual(ack.status, 0)

    def test_perMPA(self) -> None:
        """A PBU from another MPA is a handover whatever its number; numbers are
        then checked against the new MPA's."""
        self.anchor.receive(pbu(500), MPA1, T0)
        ack = onlyAck(self, [a for a in self.anchor.receive(pbu(3), MPA2, T0 + 1)
                             if not (isinstance(a, SendMessage)
                                     and isinstance(a.message, mh.BindingRevocationIndication))])
        self.assertEqual(ack.status, 0)
        self.assertOutOfWindow(3, 3, MPA2)
        ack = onlyAck(self, self.anchor.receive(pbu(4), MPA2, T0 + 2))
        self.assertEqual(ack.status, 0)


class ConfirmationTests(SynchronousTestCase):
    def test_missing(self) -> None:
        for profile, status in ((mh.DRAFT, 141),
                                (dataclasses.replace(mh.DRAFT, bindingCacheEntryMissing=153),
                                 Status.NOT_LMA_FOR_THIS_MOBILE_NODE)):
            anchor = makeAnchor(profile)
            actions = anchor.receive(pbu(1, confirm=True, address=None), MPA1, T0)
            ack = onlyAck(self, actions)
            self.assertEqual((ack.status, ack.proxy), (status, True))
            self.assertEqual(len(anchor.store), 0)
            self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])
            # Every new MS's first answer: counted and noted as no refusal (issue 14).
            self.assertEqual([n.event for n in notes(actions)], ["pbu.confirmation-missing"])
            self.assertEqual((anchor.counters["pbu.confirmation-missing"],
                              anchor.counters[f"pbu.rejected.{status}"]), (1, 0))

    def test_found(self) -> None:
        """The PBA carries the entry's Local Address and LNP length."""
        anchor = makeAnchor()
        anchor.receive(pbu(1), MPA1, T0)
        actions = anchor.receive(pbu(2, confirm=True, address=None), MPA1, T0 + 1)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])
        ack = onlyAck(self, actions)
        self.assertEqual((ack.status, ack.options), (0, (mh.LocalAddress(ADDRESS, 64),)))

    def test_precedence(self) -> None:
        """With both options, the confirmation wins: the entry's address stays."""
        anchor = makeAnchor()
        anchor.receive(pbu(1), MPA1, T0)
        ack = onlyAck(self, anchor.receive(pbu(2, confirm=True, address="2001:db8:1::99"),
                                           MPA1, T0 + 1))
        self.assertEqual(ack.options, (mh.LocalAddress(ADDRESS, 64),))

    def test_handover(self) -> None:
        anchor = makeAnchor()
        anchor.receive(pbu(1), MPA1, T0)
        actions = anchor.receive(pbu(1, confirm=True, address=None), MPA2, T0 + 1)
        self.assertEqual(
            shape(actions),
            [f"add {ADDRESS} {MPA2}",
             f"send BindingAck {MPA2}", f"send BindingRevocationIndication {MPA1}"],
        )
        self.assertEqual(sends(actions)[0].message.options,  # type: ignore[attr-defined]
                         (mh.LocalAddress(ADDRESS, 64),))


class DeregistrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.anchor = makeAnchor()
        self.anchor.receive(pbu(1), MPA1, T0)

    def test_fromCurrentMPA(self) -> None:
        actions = self.anchor.receive(pbu(2, lifetime=0), MPA1, T0 + 5)
        self.assertEqual(shape(actions), [f"remove {ADDRESS} {MPA1}", f"send BindingAck {MPA1}"])
        ack = onlyAck(self, actions)
        self.assertEqual((ack.status, ack.sequence, ack.lifetime, ack.proxy), (0, 2, 0, True))
        self.assertIsNone(self.anchor.store.get(NAI))
        self.assertIsNone(self.anchor.store.getByAddress(ADDRESS))
        self.assertEqual([n.event for n in notes(actions)], ["binding.deregistered"])
        self.assertEqual(self.anchor.counters["pbu.deregistered"], 1)
        self.assertIsNone(self.anchor.nextDeadline())
        self.assertEqual(self.anchor.tick(T0 + 3600), [])

    def test_fromPreviousMPA(self) -> None:
        """A late deregistration from the MPA the MS left is accepted and changes nothing."""
        self.anchor.receive(pbu(1), MPA2, T0 + 1)
        actions = self.anchor.receive(pbu(99, lifetime=0), MPA1, T0 + 2)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])
        self.assertEqual(onlyAck(self, actions).status, 0)
        entry = self.anchor.store.get(NAI)
        assert entry is not None
        self.assertEqual(entry.careOfAddress, MPA2)
        self.assertEqual(self.anchor.counters["pbu.deregistered.stale"], 1)

    def test_unknown(self) -> None:
        actions = self.anchor.receive(pbu(1, lifetime=0, nai=b"nobody"), MPA1, T0)
        ack = onlyAck(self, actions)
        self.assertEqual((ack.status, ack.lifetime), (0, 0))
        self.assertEqual(self.anchor.counters["pbu.deregistered.unknown"], 1)

    def test_oldSequence(self) -> None:
        ack = onlyAck(self, self.anchor.receive(pbu(1, lifetime=0), MPA1, T0 + 1))
        self.assertEqual(ack.status, Status.SEQUENCE_NUMBER_OUT_OF_WINDOW)
        self.assertIsNotNone(self.anchor.store.get(NAI))

    def test_noAck(self) -> None:
        actions = self.anchor.receive(pbu(2, lifetime=0, ack=False), MPA1, T0 + 1)
        self.assertEqual(shape(actions), [f"remove {ADDRESS} {MPA1}"])

    def test_sameAddressAgain(self) -> None:
        """After a deregistration the address is free and a new binding starts afresh."""
        self.anchor.receive(pbu(2, lifetime=0), MPA1, T0 + 1)
        actions = self.anchor.receive(pbu(1), MPA2, T0 + 2)
        self.assertEqual(shape(actions), [f"add {ADDRESS} {MPA2}", f"send BindingAck {MPA2}"])


class AddressTests(SynchronousTestCase):
    def assigned(self, anchor: LocalMobilityAnchor, bu: mh.BindingUpdate,
                 source: str = MPA1, now: float = T0) -> tuple[str, int]:
        ack = onlyAck(self, anchor.receive(bu, source, now))
        self.assertEqual(ack.status, 0, ack)
        [option] = ack.options
        assert isinstance(option, mh.LocalAddress)
        return option.address, option.prefixLength

    def test_assignDeterministic(self) -> None:
        """:: gets an address from the first LNP, the same for the same NAI every time."""
        one, two = makeAnchor(), makeAnchor()
        a = self.assigned(one, pbu(1, address="::"))
        self.assertEqual(a, self.assigned(two, pbu(1, address="::")))
        self.assertEqual(a, (str(IPv6Address(hashAddress(NAI, LNP))), 64))
        self.assertIn(IPv6Address(a[0]), LNP)
        b = self.assigned(one, pbu(1, nai=b"ms2@example.net", address="::"))
        self.assertNotEqual(a, b)

    def test_noOptionAssigns(self) -> None:
        """Neither a confirmation nor a Local Address: as if :: was asked for."""
        a = self.assigned(makeAnchor(), pbu(1, address=None))
        self.assertEqual(a, self.assigned(makeAnchor(), pbu(1, address="::")))

    def test_sameAddressAfterDeregistration(self) -> None:
        anchor = makeAnchor()
        a = self.assigned(anchor, pbu(1, address="::"))
        anchor.receive(pbu(2, lifetime=0), MPA1, T0 + 1)
        self.assertEqual(a, self.assigned(anchor, pbu(3, address="::"), MPA2, T0 + 2))

    def test_assignFromNamedPrefix(self) -> None:
        """The LNP itself (zero interface identifier) asks for an address in it."""
        anchor = makeAnchor()
        address, length = self.assigned(anchor, pbu(1, address="2001:db8:2::", prefixLength=64))
        self.assertIn(IPv6Address(address), LNP2)
        self.assertEqual(address, str(IPv6Address(hashAddress(NAI, LNP2))))
        self.assertEqual(length, 64)
        # Asked again, the MS keeps it.
        again = self.assigned(anchor, pbu(2, address="2001:db8:2::"), now=T0 + 1)
        self.assertEqual(again, (address, 64))

    def test_assignFromSubPrefix(self) -> None:
        """A prefix inside an LNP: an address inside it; the LNP's length in the reply."""
        anchor = makeAnchor(prefixes=(IPv6Network("2001:db8:1::/48"),))
        address, length = self.assigned(
            anchor, pbu(1, address="2001:db8:1:5::", prefixLength=64))
        self.assertIn(IPv6Address(address), IPv6Network("2001:db8:1:5::/64"))
        self.assertEqual(length, 48)

    def test_collisionProbes(self) -> None:
        """The hashed address taken by another NAI: the next one up."""
        first = str(IPv6Address(hashAddress(NAI, LNP)))
        anchor = makeAnchor()
        self.assigned(anchor, pbu(1, nai=b"squatter", address=first))
        address, _ = self.assigned(anchor, pbu(1, address="::"))
        self.assertEqual(IPv6Address(address), IPv6Address(first) + 1)

    def findNAI(self, prefix: IPv6Network, identifier: int) -> bytes:
        for i in range(10000):
            nai = b"probe%d" % i
            if hashAddress(nai, prefix) == int(prefix.network_address) | identifier:
                return nai
        raise AssertionError("no such NAI")

    def test_neverZeroIdentifier(self) -> None:
        prefix = IPv6Network("2001:db8:9::/126")
        nai = self.findNAI(prefix, 0)
        anchor = makeAnchor(prefixes=(prefix,))
        self.assertEqual(self.assigned(anchor, pbu(1, nai=nai, address="::")),
                         ("2001:db8:9::1", 126))

    def test_neverOwnAddress(self) -> None:
        prefix = IPv6Network("2001:db8:9::/126")
        nai = self.findNAI(prefix, 1)
        anchor = makeAnchor(prefixes=(prefix,), address="2001:db8:9::1")
        self.assertEqual(self.assigned(anchor, pbu(1, nai=nai, address="::")),
                         ("2001:db8:9::2", 126))

    def test_exhausted(self) -> None:
        prefix = IPv6Network("2001:db8:9::/126")
        anchor = makeAnchor(prefixes=(prefix,), address="2001:db8:9::1")
        self.assigned(anchor, pbu(1, nai=b"a", address="::"))
        self.assigned(anchor, pbu(1, nai=b"b", address="::"))
        ack = onlyAck(self, anchor.receive(pbu(1, nai=b"c", address="::"), MPA1, T0))
        self.assertEqual(ack.status, Status.INSUFFICIENT_RESOURCES)
        self.assertEqual(len(anchor.store), 2)

    def test_cacheFull(self) -> None:
        """Rule 13: past lmap.max_bindings a new binding gets 130; the bindings
        held are still refreshed; an expired one makes room."""
        anchor = makeAnchor(maxBindings=2)
        for nai in (b"a", b"b"):
            self.assertEqual(onlyAck(self, anchor.receive(pbu(1, nai=nai, address="::"),
                                                          MPA1, T0)).status, 0)
        actions = anchor.receive(pbu(1, nai=b"c", address="::"), MPA1, T0 + 1)
        self.assertEqual(onlyAck(self, actions).status, Status.INSUFFICIENT_RESOURCES)
        [note] = [a for a in actions if isinstance(a, Note)]
        self.assertIn("the Binding Cache is full (2 bindings", note.fields["reason"])
        self.assertEqual(anchor.counters["binding.cache-full"], 1)
        self.assertEqual(anchor.counters["pbu.rejected.130"], 1)
        self.assertEqual(len(anchor.store), 2)
        # A refresh is served.
        self.assertEqual(onlyAck(self, anchor.receive(pbu(2, nai=b"a", address="::"),
                                                      MPA1, T0 + 2)).status, 0)
        # b expires (the timer has not run): c takes its place.
        later = T0 + 3601
        self.assertEqual(onlyAck(self, anchor.receive(pbu(2, nai=b"c", address="::"),
                                                      MPA1, later)).status, 0)
        self.assertEqual(sorted(e.nai for e in anchor.store), [b"a", b"c"])

    def test_expiredHolderMakesRoom(self) -> None:
        """An address whose holder has expired (tick not run yet) is free."""
        prefix = IPv6Network("2001:db8:9::/127")
        anchor = makeAnchor(prefixes=(prefix,))
        self.assigned(anchor, pbu(1, nai=b"a", address="::", lifetime=60))
        actions = anchor.receive(pbu(1, nai=b"b", address="::"), MPA2, T0 + 60)
        self.assertEqual(
            shape(actions),
            ["remove 2001:db8:9::1 " + MPA1, "add 2001:db8:9::1 " + MPA2,
             f"send BindingAck {MPA2}"],
        )
        self.assertIsNone(anchor.store.get(b"a"))

    def test_outsidePrefixes(self) -> None:
        anchor = makeAnchor()
        for address in ("2001:db8:3::1", "2001:db8:3::"):
            ack = onlyAck(self, anchor.receive(pbu(1, address=address), MPA1, T0))
            self.assertEqual(ack.status, Status.NOT_HOME_SUBNET)
        self.assertEqual(len(anchor.store), 0)

    def test_boundToAnotherNAI(self) -> None:
        anchor = makeAnchor()
        anchor.receive(pbu(1, nai=b"first"), MPA1, T0)
        actions = anchor.receive(pbu(1), MPA2, T0 + 1)
        ack = onlyAck(self, actions)
        self.assertEqual(ack.status, Status.DUPLICATE_ADDRESS_DETECTION_FAILED)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA2}"])
        self.assertIsNone(anchor.store.get(NAI))

    def test_staticAfterExpiredHolder(self) -> None:
        anchor = makeAnchor()
        anchor.receive(pbu(1, nai=b"first", lifetime=60), MPA1, T0)
        actions = anchor.receive(pbu(1), MPA2, T0 + 61)
        self.assertEqual(
            shape(actions),
            [f"remove {ADDRESS} {MPA1}", f"add {ADDRESS} {MPA2}", f"send BindingAck {MPA2}"],
        )
        self.assertEqual([n.event for n in notes(actions)], ["binding.expired", "binding.created"])

    def test_reserved(self) -> None:
        """The LMAP's own address and an LNP's Subnet-Router anycast address."""
        anchor = makeAnchor(prefixes=(IPv6Network("2001:db8:ffff::/64"),))
        for address, length in ((LMAP, 64), ("2001:db8:ffff::", 128)):
            ack = onlyAck(self, anchor.receive(pbu(1, address=address, prefixLength=length),
                                               MPA1, T0))
            self.assertEqual(ack.status, Status.ADMINISTRATIVELY_PROHIBITED)

    def test_canonicalStatic(self) -> None:
        anchor = makeAnchor()
        address, _ = self.assigned(anchor, pbu(1, address="2001:0db8:1:0::10"))
        self.assertEqual(address, ADDRESS)
        self.assertIs(anchor.store.getByAddress(ADDRESS), anchor.store.get(NAI))

    def test_addressChange(self) -> None:
        """A new address from the same MPA replaces the old one."""
        anchor = makeAnchor()
        anchor.receive(pbu(1), MPA1, T0)
        actions = anchor.receive(pbu(2, address="2001:db8:1::20"), MPA1, T0 + 1)
        self.assertEqual(
            shape(actions),
            [f"remove {ADDRESS} {MPA1}", f"add 2001:db8:1::20 {MPA1}",
             f"send BindingAck {MPA1}"],
        )
        self.assertEqual([n.event for n in notes(actions)], ["binding.address-changed"])
        self.assertIsNone(anchor.store.getByAddress(ADDRESS))
        entry = anchor.store.get(NAI)
        assert entry is not None
        self.assertIs(anchor.store.getByAddress("2001:db8:1::20"), entry)
        self.assertEqual((entry.created, entry.updated, entry.sequence), (T0, T0 + 1, 2))


class WithoutRevocationTests(SynchronousTestCase):
    """Rule 14: MPAs that do not do RFC 5846 get no revocations: configured,
    learned from a Binding Error answering one, or from revocations left
    unanswered while the MPA answers heartbeats."""

    def bris(self, actions: list[Action], to: str = MPA1) -> list[mh.Message]:
        return [a.message for a in actions if isinstance(a, SendMessage)
                and isinstance(a.message, mh.BindingRevocationIndication)
                and a.destination == to]

    def test_configured(self) -> None:
        anchor = makeAnchor(withoutRevocation=[IPv6Network(f"{MPA1}/128")])
        anchor.receive(pbu(1), MPA1, T0)
        actions = anchor.receive(pbu(1), MPA2, T0 + 1)
        self.assertEqual(self.bris(actions), [])
        self.assertEqual(onlyAck(self, actions).status, 0)
        self.assertEqual(anchor.counters["bri.not-sent"], 1)
        self.assertIn("configured", anchor.revocationless[MPA1])
        # Moving back to MPA1: MPA2 does RFC 5846, it is told.
        self.assertEqual(len(self.bris(anchor.receive(pbu(2), MPA1, T0 + 2), MPA2)), 1)

    def test_bindingErrorAnswer(self) -> None:
        anchor = makeAnchor()
        anchor.receive(pbu(1), MPA1, T0)
        anchor.receive(pbu(1), MPA2, T0 + 1)
        actions = anchor.receive(
            mh.BindingError(mh.BindingErrorStatus.UNRECOGNIZED_MH_TYPE), MPA1, T0 + 1.01)
        [note] = notes(actions)
        self.assertEqual((note.event, note.fields["mpa"], note.fields["dropped"]),
                         ("mpa.without-revocation", MPA1, 1))
        self.assertEqual(anchor.counters["mpa.without-revocation"], 1)
        self.assertEqual(len(anchor.revocations), 0)  # no retransmission
        anchor.receive(pbu(2), MPA1, T0 + 2)
        self.assertEqual(self.bris(anchor.receive(pbu(2), MPA2, T0 + 3)), [])
        # A Binding Error with nothing in flight, or another status, says nothing.
        other = makeAnchor()
        self.assertEqual(other.receive(mh.BindingError(1), MPA1, T0), [])
        self.assertEqual(other.revocationless, {})
        self.assertEqual(other.counters["binding-error.received"], 1)

    def silence(self, anchor: LocalMobilityAnchor, n: int, start: float,
                answerHeartbeats: bool = True) -> float:
        """C{n} handovers of new MSs away from MPA1, each revocation left
        unanswered until its retransmissions are spent, MPA1 heard (a
        heartbeat request from it) after each was issued."""
        now = start
        for i in range(n):
            nai = b"s%d@lmm.test" % (start + i)
            address = f"2001:db8:1::{int(start) % 1000 + i + 100:x}"
            anchor.receive(pbu(1, nai=nai, address=address), MPA1, now)
            anchor.receive(pbu(1, nai=nai, address=address), MPA2, now + 0.1)
            if answerHeartbeats:
                anchor.receive(mh.Heartbeat(int(now) + i), MPA1, now + 0.2)
            for due in (1.1, 3.1, 7.1, 15.1):
                anchor.tick(now + due)
            now += 20
        return now

    def test_silentWhileHeard(self) -> None:
        anchor = makeAnchor(heartbeat=HeartbeatPolicy(interval=10, timeout=2))
        self.silence(anchor, 2, T0)
        self.assertEqual(anchor.revocationless, {})
        self.assertEqual(len(anchor.revocations), 2)  # repeated (rule 2 of revocation)
        self.silence(anchor, 1, T0 + 40)
        self.assertIn("unanswered while it answered heartbeats", anchor.revocationless[MPA1])
        # The third was given up; the earlier ones go at their next repetition.
        anchor.tick(T0 + 200)
        self.assertEqual(len(anchor.revocations), 0)

    def test_silenceNotHeardIsLoss(self) -> None:
        """No heartbeat heard: an outage, not a peer without RFC 5846."""
        anchor = makeAnchor(heartbeat=HeartbeatPolicy(interval=10, timeout=2))
        self.silence(anchor, 4, T0, answerHeartbeats=False)
        self.assertEqual(anchor.revocationless, {})

    def test_acknowledgedOnceIsLossAfter(self) -> None:
        anchor = makeAnchor(heartbeat=HeartbeatPolicy(interval=10, timeout=2))
        anchor.receive(pbu(1), MPA1, T0)
        [bri] = self.bris(anchor.receive(pbu(1), MPA2, T0 + 1))
        anchor.receive(mh.BindingRevocationAck(bri.sequence, 0, proxy=True),  # type: ignore[union-attr]
                       MPA1, T0 + 1.01)
        self.silence(anchor, 4, T0 + 10)
        self.assertEqual(anchor.revocationless, {})


class HandoverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.anchor = makeAnchor()
        self.anchor.receive(pbu(1), MPA1, T0)

    def handover(self, source: str = MPA2, sequence: int = 1,
                 now: float = T0 + 10, **kwargs: Any) -> list[Action]:
        return self.anchor.receive(pbu(sequence, **kwargs), source, now)

    def test_order(self) -> None:
        """The new tunnel replaces the old one (no removal: the data plane's
        make before break), the PBA to the new MPA, then the BRI to the old."""
        actions = self.handover()
        self.assertEqual(
            shape(actions),
            [f"add {ADDRESS} {MPA2}",
             f"send BindingAck {MPA2}", f"send BindingRevocationIndication {MPA1}"],
        )
        add = actions[0]
        assert isinstance(add, AddTunnel)
        self.assertEqual(add.binding, TunnelBinding(ADDRESS, 128, LMAP, MPA2, ROLE_LMAP))
        bri = sends(actions)[1].message
        self.assertEqual(
            bri,
            mh.BindingRevocationIndication(
                1, mh.RevocationTrigger.INTER_MAG_HANDOVER_UNKNOWN,
                (mh.MobileNodeIdentifier(NAI), mh.LocalAddress(ADDRESS, 64)), proxy=True,
            ),
        )
        entry = self.anchor.store.get(NAI)
        assert entry is not None
        self.assertEqual((entry.careOfAddress, entry.tunnel), (MPA2, add.binding))
        self.assertEqual([n.event for n in notes(actions)], ["binding.handover"])
        self.assertEqual(self.anchor.counters["pbu.handover"], 1)
        self.assertEqual(self.anchor.counters["bri.sent"], 1)

    def test_noAckStillRevokes(self) -> None:
        actions = self.handover(ack=False)
        self.assertEqual(
            shape(actions),
            [f"add {ADDRESS} {MPA2}", f"send BindingRevocationIndication {MPA1}"],
        )

    def test_newAddress(self) -> None:
        """A handover with a new address: the BRI names the address the old MPA knows."""
        actions = self.handover(address="2001:db8:1::20")
        self.assertEqual(
            shape(actions),
            [f"remove {ADDRESS} {MPA1}", f"add 2001:db8:1::20 {MPA2}",
             f"send BindingAck {MPA2}", f"send BindingRevocationIndication {MPA1}"],
        )
        bri = sends(actions)[1].message
        self.assertEqual(bri.options[1], mh.LocalAddress(ADDRESS, 64))  # type: ignore[attr-defined]
        self.assertIsNone(self.anchor.store.getByAddress(ADDRESS))

    def test_revocationSequenceLMAPWide(self) -> None:
        self.anchor.receive(pbu(1, nai=b"other", address="2001:db8:1::11"), MPA1, T0)
        first = sends(self.handover())[1].message
        second = sends(self.anchor.receive(pbu(1, nai=b"other", address="2001:db8:1::11"),
                                           MPA3, T0 + 11))[1].message
        self.assertEqual((first.sequence, second.sequence), (1, 2))  # type: ignore[attr-defined]

    def test_revocationSequenceWraps(self) -> None:
        self.anchor.revocations.sequence.last = 65534
        first = sends(self.handover())[1].message
        second = sends(self.handover(MPA3, now=T0 + 11))[1].message
        self.assertEqual((first.sequence, second.sequence), (65535, 0))  # type: ignore[attr-defined]

    def test_retransmission(self) -> None:
        """After the timeout, then doubling; past the retransmissions, every
        cap interval while the revoked binding may live at the MPA (rule 2 of
        lmm.lmap.revocation); given up once it has expired."""
        t = T0 + 10
        bri = sends(self.handover(now=t))[1].message
        self.assertEqual(self.anchor.nextDeadline(), t + 1)
        self.assertEqual(self.anchor.tick(t + 0.5), [])
        for due in (t + 1, t + 3, t + 7):
            self.assertEqual(self.anchor.nextDeadline(), due)
            actions = self.anchor.tick(due)
            self.assertEqual(actions, [SendMessage(bri, MPA1)])
        self.assertEqual(self.anchor.counters["bri.retransmitted"], 3)
        self.assertEqual(self.anchor.nextDeadline(), t + 15)
        actions = self.anchor.tick(t + 15)
        self.assertEqual(shape(actions), [f"send BindingRevocationIndication {MPA1}"])
        [note] = notes(actions)
        self.assertEqual((note.event, note.fields["until"]), ("revocation.unanswered", T0 + 3600))
        self.assertEqual(self.anchor.counters["bri.unanswered"], 1)
        due = t + 15
        while True:
            due += 32
            self.assertEqual(self.anchor.nextDeadline(), due)
            actions = self.anchor.tick(due)
            if due >= T0 + 3600:
                break
            self.assertEqual(actions, [SendMessage(bri, MPA1)])
        self.assertEqual([n.event for n in notes(actions)], ["revocation.given-up"])
        self.assertEqual(self.anchor.counters["bri.given-up"], 1)
        self.assertEqual(self.anchor.counters["bri.unanswered"], 1)
        # Only the new binding's expiry is left to wait for.
        self.assertEqual(self.anchor.nextDeadline(), t + 3600)

    def test_acknowledgedWhileUnanswered(self) -> None:
        """Loss over: the MPA's acknowledgement ends the repetitions."""
        t = T0 + 10
        bri = sends(self.handover(now=t))[1].message
        for due in (t + 1, t + 3, t + 7, t + 15, t + 47):
            self.anchor.tick(due)
        bra = mh.BindingRevocationAck(bri.sequence, 0, proxy=True)  # type: ignore[attr-defined]
        self.anchor.receive(bra, MPA1, t + 48)
        self.assertEqual(self.anchor.counters["bri.acknowledged"], 1)
        self.assertEqual(self.anchor.nextDeadline(), t + 3600)

    def test_noRetries(self) -> None:
        anchor = makeAnchor(revocationRetries=0, revocationTimeout=0.5,
                            revocationMaxInterval=1000)
        anchor.receive(pbu(1), MPA1, T0)
        anchor.receive(pbu(1), MPA2, T0 + 1)
        self.assertEqual(anchor.nextDeadline(), T0 + 1.5)
        actions = anchor.tick(T0 + 1.5)
        self.assertEqual(shape(actions), [f"send BindingRevocationIndication {MPA1}"])
        self.assertEqual(anchor.nextDeadline(), T0 + 1001.5)
        for due in (T0 + 1001.5, T0 + 2001.5, T0 + 3001.5):
            anchor.tick(due)
        self.assertEqual(anchor.counters["bri.retransmitted"], 4)
        self.assertEqual(anchor.revocations.nextDeadline(), T0 + 4001.5)
        self.assertNotIn(f"send BindingRevocationIndication {MPA1}",
                         shape(anchor.tick(T0 + 4001.5)))
        self.assertEqual(anchor.counters["bri.given-up"], 1)

    def test_lateTick(self) -> None:
        """A late tick retransmits once and schedules from then."""
        t = T0 + 10
        self.handover(now=t)
        self.assertEqual(len(self.anchor.tick(t + 2.5)), 1)
        self.assertEqual(self.anchor.nextDeadline(), t + 4.5)

    def test_acknowledged(self) -> None:
        t = T0 + 10
        bri = sends(self.handover(now=t))[1].message
        bra = mh.BindingRevocationAck(bri.sequence, 0, proxy=True)  # type: ignore[attr-defined]
        # The handover's last step, noted with the NAI for the logs; nothing else.
        [note] = self.anchor.receive(bra, MPA1, t + 0.1)
        assert isinstance(note, Note)
        self.assertEqual((note.event, note.fields), ("bri.acknowledged", {
            "nai": NAI.decode(), "mpa": MPA1, "address": f"{ADDRESS}/64", "status": 0,
            "retransmissions": 0}))
        self.assertEqual(self.anchor.counters["bri.acknowledged"], 1)
        self.assertEqual(self.anchor.tick(t + 1), [])
        self.assertEqual(self.anchor.nextDeadline(), t + 3600)
        # The same acknowledgement again matches nothing.
        self.anchor.receive(bra, MPA1, t + 0.2)
        self.assertEqual(self.anchor.counters["bra.unmatched"], 1)

    def test_acknowledgedWithStatus(self) -> None:
        bri = sends(self.handover())[1].message
        bra = mh.BindingRevocationAck(
            bri.sequence, mh.RevocationStatus.BINDING_DOES_NOT_EXIST)  # type: ignore[attr-defined]
        self.anchor.receive(bra, MPA1, T0 + 11)
        self.assertEqual(self.anchor.counters["bri.acknowledged"], 1)
        self.assertEqual(self.anchor.counters["bra.status.128"], 1)

    def test_unmatched(self) -> None:
        bri = sends(self.handover())[1].message
        sequence = bri.sequence  # type: ignore[attr-defined]
        self.anchor.receive(mh.BindingRevocationAck(sequence + 1, 0), MPA1, T0 + 11)
        self.anchor.receive(mh.BindingRevocationAck(sequence, 0), MPA3, T0 + 11)
        self.anchor.receive(mh.BindingRevocationAck(sequence, 0), STRANGER, T0 + 11)
        self.assertEqual(self.anchor.counters["bra.unmatched"], 3)
        self.assertEqual(self.anchor.counters["bri.acknowledged"], 0)
        self.assertEqual(len(self.anchor.tick(T0 + 11)), 1)

    def test_backBeforeAcknowledged(self) -> None:
        """The MS comes back to the MPA being revoked: that revocation stops."""
        self.handover(now=T0 + 10)
        actions = self.anchor.receive(pbu(2), MPA1, T0 + 10.5)
        self.assertEqual(
            shape(actions),
            [f"add {ADDRESS} {MPA1}",
             f"send BindingAck {MPA1}", f"send BindingRevocationIndication {MPA2}"],
        )
        self.assertEqual(self.anchor.counters["bri.cancelled"], 1)
        # Only the BRI to MPA2 is retransmitted.
        actions = self.anchor.tick(T0 + 11.5)
        self.assertEqual(shape(actions), [f"send BindingRevocationIndication {MPA2}"])

    def test_lateDeregistrationAfterHandover(self) -> None:
        self.handover()
        actions = self.anchor.receive(pbu(2, lifetime=0), MPA1, T0 + 11)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])
        entry = self.anchor.store.get(NAI)
        assert entry is not None
        self.assertEqual(entry.careOfAddress, MPA2)


class TunnelFailureTests(SynchronousTestCase):
    """L{LocalMobilityAnchor.tunnelFailed}: the data plane refused a binding's tunnel."""

    error = RuntimeError("no room for another tunnel")

    def setUp(self) -> None:
        self.anchor = makeAnchor()

    def tunnel(self, mpa: str, address: str = ADDRESS) -> TunnelBinding:
        return TunnelBinding(address, 128, LMAP, mpa, ROLE_LMAP)

    def assertRefused(self, actions: list[Action], sequence: int, mpa: str) -> None:
        """The first message is a PBA with 130 and lifetime 0 to C{mpa}, and it
        survives the wire."""
        first = sends(actions)[0]
        self.assertEqual(first.destination, mpa)
        self.assertEqual(
            first.message,
            mh.ProxyBindingAck(Status.INSUFFICIENT_RESOURCES, sequence, 0,
                               [mh.MobileNodeIdentifier(NAI)]),
        )
        decoded = mh.decode(mh.encode(first.message, mh.DRAFT), mh.DRAFT)
        assert isinstance(decoded, mh.BindingAck)
        self.assertEqual((decoded.status, decoded.sequence, decoded.lifetime, decoded.proxy),
                         (130, sequence, 0, True))

    def test_newBinding(self) -> None:
        """A new binding whose tunnel failed: the entry is gone, the MPA gets 130
        with lifetime 0, and it is counted and noted."""
        self.anchor.receive(pbu(17), MPA1, T0)
        actions = self.anchor.tunnelFailed(self.tunnel(MPA1), self.error, T0 + 0.1)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])
        self.assertRefused(actions, 17, MPA1)
        self.assertIsNone(self.anchor.store.get(NAI))
        self.assertIsNone(self.anchor.store.getByAddress(ADDRESS))
        self.assertEqual(len(self.anchor.store), 0)
        self.assertEqual(self.anchor.counters["binding.tunnel-failed"], 1)
        [note] = notes(actions)
        self.assertEqual(note.event, "binding.tunnel-failed")
        self.assertEqual(
            note.fields,
            {"nai": NAI.decode(), "address": ADDRESS, "careOf": MPA1,
             "status": Status.INSUFFICIENT_RESOURCES, "sequence": 17, "previous": None,
             "error": "no room for another tunnel", "stale": False},
        )
        # Its expiry is dropped when it comes up, with nothing to remove.
        self.assertEqual(self.anchor.tick(T0 + 3600), [])

    def test_answeredWithoutAFlag(self) -> None:
        """A rejection is answered whatever the A flag (RFC 6275 9.5.1)."""
        self.anchor.receive(pbu(3, ack=False), MPA1, T0)
        actions = self.anchor.tunnelFailed(self.tunnel(MPA1), self.error, T0)
        self.assertRefused(actions, 3, MPA1)

    def test_registerAgain(self) -> None:
        """After the failure, a later PBU for the same NAI is a new binding,
        with the same assigned address."""
        first = onlyAck(self, self.anchor.receive(pbu(1, address="::"), MPA1, T0))
        assigned = first.option(mh.LocalAddress)
        assert assigned is not None
        self.anchor.tunnelFailed(self.tunnel(MPA1, assigned.address), self.error, T0)
        actions = self.anchor.receive(pbu(2, address="::"), MPA1, T0 + 1)
        self.assertEqual(shape(actions),
                         [f"add {assigned.address} {MPA1}", f"send BindingAck {MPA1}"])
        ack = onlyAck(self, actions)
        self.assertEqual((ack.status, ack.sequence, ack.lifetime), (0, 2, 3600))
        self.assertEqual(ack.option(mh.LocalAddress), assigned)
        entry = self.anchor.store.get(NAI)
        assert entry is not None
        self.assertEqual((entry.careOfAddress, entry.sequence, entry.created), (MPA1, 2, T0 + 1))
        self.assertEqual(self.anchor.counters["binding.created"], 2)

    def test_handover(self) -> None:
        """A handover whose new tunnel failed: the entry goes too (a failed
        replacement leaves neither tunnel carried), the new MPA gets 130, and the
        revocation held back with the PBA is sent to the previous MPA."""
        self.anchor.receive(pbu(1), MPA1, T0)
        moved = self.anchor.receive(pbu(1), MPA2, T0 + 10)
        self.assertEqual(shape(moved)[:1], [f"add {ADDRESS} {MPA2}"])
        bri = sends(moved)[1]
        actions = self.anchor.tunnelFailed(self.tunnel(MPA2), self.error, T0 + 10.1)
        self.assertEqual(
            shape(actions),
            [f"send BindingAck {MPA2}", f"send BindingRevocationIndication {MPA1}"],
        )
        self.assertRefused(actions, 1, MPA2)
        self.assertEqual(sends(actions)[1], bri)
        self.assertIsNone(self.anchor.store.get(NAI))
        [note] = notes(actions)
        self.assertEqual((note.fields["careOf"], note.fields["previous"]), (MPA2, MPA1))
        self.assertEqual(self.anchor.counters["binding.tunnel-failed"], 1)
        # It is retransmitted, and acknowledged, as any revocation.
        self.assertEqual(self.anchor.tick(T0 + 11), [bri])
        sequence = bri.message.sequence  # type: ignore[attr-defined]
        self.anchor.receive(mh.BindingRevocationAck(sequence, 0, proxy=True), MPA1, T0 + 11.1)
        self.assertEqual(self.anchor.counters["bri.acknowledged"], 1)
        # The new MPA asks again for the binding to confirm: there is none; a
        # registration naming the address is a new binding.
        again = self.anchor.receive(pbu(2, address=None, confirm=True), MPA2, T0 + 12)
        self.assertEqual(onlyAck(self, again).status, mh.DRAFT.bindingCacheEntryMissing)
        again = self.anchor.receive(pbu(3), MPA2, T0 + 13)
        self.assertEqual(shape(again), [f"add {ADDRESS} {MPA2}", f"send BindingAck {MPA2}"])

    def test_handoverRevocationAlreadyRetransmitted(self) -> None:
        """A failure reported after the revocation's first retransmission: the
        previous MPA has had a copy, none is added."""
        self.anchor.receive(pbu(1), MPA1, T0)
        self.anchor.receive(pbu(1), MPA2, T0 + 10)
        self.assertEqual(len(self.anchor.tick(T0 + 11)), 1)
        actions = self.anchor.tunnelFailed(self.tunnel(MPA2), self.error, T0 + 11.5)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA2}"])
        self.assertIsNone(notes(actions)[0].fields["previous"])

    def test_handoverWithNewAddress(self) -> None:
        """Neither the old address nor the new one stays bound."""
        self.anchor.receive(pbu(1), MPA1, T0)
        self.anchor.receive(pbu(1, address="2001:db8:1::20"), MPA2, T0 + 10)
        actions = self.anchor.tunnelFailed(
            self.tunnel(MPA2, "2001:db8:1::20"), self.error, T0 + 10)
        self.assertEqual(
            shape(actions),
            [f"send BindingAck {MPA2}", f"send BindingRevocationIndication {MPA1}"],
        )
        self.assertEqual(len(self.anchor.store), 0)
        self.assertIsNone(self.anchor.store.getByAddress(ADDRESS))
        self.assertIsNone(self.anchor.store.getByAddress("2001:db8:1::20"))

    def test_addressChange(self) -> None:
        """A new address at the same MPA: the entry goes, no revocation."""
        self.anchor.receive(pbu(1), MPA1, T0)
        changed = self.anchor.receive(pbu(2, address="2001:db8:1::20"), MPA1, T0 + 10)
        self.assertEqual(shape(changed)[:2],
                         [f"remove {ADDRESS} {MPA1}", f"add 2001:db8:1::20 {MPA1}"])
        actions = self.anchor.tunnelFailed(
            self.tunnel(MPA1, "2001:db8:1::20"), self.error, T0 + 10)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])
        self.assertRefused(actions, 2, MPA1)
        self.assertEqual(len(self.anchor.store), 0)

    def test_stale(self) -> None:
        """A tunnel that is no longer the entry's (handed over since, or
        deregistered): nothing changes, nothing is sent, it is counted."""
        self.anchor.receive(pbu(1), MPA1, T0)
        self.anchor.receive(pbu(1), MPA2, T0 + 10)
        actions = self.anchor.tunnelFailed(self.tunnel(MPA1), self.error, T0 + 10.5)
        self.assertEqual(shape(actions), [])
        [note] = notes(actions)
        self.assertEqual((note.event, note.fields["stale"]), ("binding.tunnel-failed", True))
        entry = self.anchor.store.get(NAI)
        assert entry is not None
        self.assertEqual(entry.careOfAddress, MPA2)
        self.anchor.receive(pbu(2, lifetime=0), MPA2, T0 + 11)
        self.assertEqual(shape(self.anchor.tunnelFailed(self.tunnel(MPA2), self.error, T0 + 11)),
                         [])
        self.assertEqual(self.anchor.counters["binding.tunnel-failed.stale"], 2)
        self.assertEqual(self.anchor.counters["binding.tunnel-failed"], 0)

    def test_errorWithoutText(self) -> None:
        """An error with no message is named by its type."""
        self.anchor.receive(pbu(1), MPA1, T0)
        actions = self.anchor.tunnelFailed(self.tunnel(MPA1), OSError(), T0)
        self.assertEqual(notes(actions)[0].fields["error"], "OSError")


class ExpiryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.anchor = makeAnchor()

    def test_nothing(self) -> None:
        self.assertIsNone(self.anchor.nextDeadline())
        self.assertEqual(self.anchor.tick(T0), [])

    def test_expires(self) -> None:
        self.anchor.receive(pbu(1, lifetime=60), MPA1, T0)
        self.assertEqual(self.anchor.nextDeadline(), T0 + 60)
        self.assertEqual(self.anchor.tick(T0 + 59.9), [])
        actions = self.anchor.tick(T0 + 60)
        self.assertEqual(shape(actions), [f"remove {ADDRESS} {MPA1}"])
        self.assertEqual([n.event for n in notes(actions)], ["binding.expired"])
        self.assertIsNone(self.anchor.store.get(NAI))
        self.assertIsNone(self.anchor.store.getByAddress(ADDRESS))
        self.assertEqual(self.anchor.counters["binding.expired"], 1)
        self.assertIsNone(self.anchor.nextDeadline())

    def test_refreshExtends(self) -> None:
        self.anchor.receive(pbu(1, lifetime=60), MPA1, T0)
        self.anchor.receive(pbu(2, lifetime=60), MPA1, T0 + 30)
        self.assertEqual(self.anchor.nextDeadline(), T0 + 90)
        self.assertEqual(self.anchor.tick(T0 + 60), [])
        self.assertEqual(len(self.anchor.tick(T0 + 90)), 2)

    def test_tickWithoutDeadline(self) -> None:
        """tick() at the old time of a refreshed binding requeues it."""
        self.anchor.receive(pbu(1, lifetime=60), MPA1, T0)
        self.anchor.receive(pbu(2, lifetime=60), MPA1, T0 + 30)
        self.assertEqual(self.anchor.tick(T0 + 60), [])
        self.assertEqual(self.anchor.tick(T0 + 89), [])
        self.assertEqual(shape(self.anchor.tick(T0 + 90)), [f"remove {ADDRESS} {MPA1}"])

    def test_refreshShortens(self) -> None:
        self.anchor.receive(pbu(1, lifetime=3600), MPA1, T0)
        self.anchor.receive(pbu(2, lifetime=60), MPA1, T0 + 1)
        self.assertEqual(self.anchor.nextDeadline(), T0 + 61)
        self.assertEqual(shape(self.anchor.tick(T0 + 61)), [f"remove {ADDRESS} {MPA1}"])
        self.assertEqual(self.anchor.tick(T0 + 3600), [])
        self.assertIsNone(self.anchor.nextDeadline())

    def test_handoverKeepsExpiry(self) -> None:
        self.anchor.receive(pbu(1, lifetime=60), MPA1, T0)
        self.anchor.receive(pbu(1, lifetime=40), MPA2, T0 + 10)
        self.anchor.receive(mh.BindingRevocationAck(1, 0), MPA1, T0 + 10)
        self.assertEqual(self.anchor.nextDeadline(), T0 + 50)
        self.assertEqual(shape(self.anchor.tick(T0 + 50)), [f"remove {ADDRESS} {MPA2}"])

    def test_expiredSeenByPBU(self) -> None:
        """A PBU for an expired binding that tick() has not removed yet: a new binding."""
        self.anchor.receive(pbu(100, lifetime=60), MPA1, T0)
        actions = self.anchor.receive(pbu(5), MPA1, T0 + 61)
        self.assertEqual(
            shape(actions),
            [f"remove {ADDRESS} {MPA1}", f"add {ADDRESS} {MPA1}", f"send BindingAck {MPA1}"],
        )
        self.assertEqual(onlyAck(self, actions).status, 0)
        self.assertEqual(self.anchor.tick(T0 + 62), [])
        self.assertEqual(self.anchor.nextDeadline(), T0 + 61 + 3600)

    def test_recreated(self) -> None:
        """Deregistered and registered again: the old heap item does not expire
        the new binding early, and duplicates converge."""
        self.anchor.receive(pbu(1, lifetime=60), MPA1, T0)
        self.anchor.receive(pbu(2, lifetime=0), MPA1, T0 + 10)
        self.anchor.receive(pbu(3, lifetime=100), MPA1, T0 + 20)
        self.assertEqual(self.anchor.tick(T0 + 60), [])
        self.assertEqual(self.anchor.nextDeadline(), T0 + 120)
        self.assertEqual(shape(self.anchor.tick(T0 + 120)), [f"remove {ADDRESS} {MPA1}"])
        self.assertEqual(len(self.anchor._expiries), 0)

    def test_refreshesDoNotGrowHeap(self) -> None:
        self.anchor.receive(pbu(1), MPA1, T0)
        for i in range(2, 1000):
            self.anchor.receive(pbu(i), MPA1, T0 + i)
        self.assertEqual(len(self.anchor._expiries), 1)

    def test_compaction(self) -> None:
        """Churn leaves stale items behind; the heap is rebuilt before it
        passes twice the live count plus the slack."""
        slack = signaling.HEAP_SLACK
        live = 0
        for i in range(3 * slack):
            nai = b"churn%d" % i
            self.anchor.receive(pbu(1, nai=nai, address="::", lifetime=3600), MPA1, T0 + i)
            self.anchor.receive(pbu(2, nai=nai, lifetime=0), MPA1, T0 + i)
            if i % 3 == 0:
                self.anchor.receive(pbu(3, nai=nai, address="::", lifetime=600), MPA1, T0 + i)
                live += 1
            # The limit is computed when an item is pushed: one binding more then.
            self.assertLessEqual(len(self.anchor._expiries), 2 * (live + 1) + slack)
        self.assertEqual(len(self.anchor.store), live)
        self.assertGreater(self.anchor.counters["expiry-heap.compacted"], 0)
        actions = self.anchor.tick(T0 + 10 * slack)
        self.assertEqual(len([a for a in actions if isinstance(a, RemoveTunnel)]), live)
        self.assertEqual(len(self.anchor.store), 0)


class OtherMessageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.anchor = makeAnchor()

    def test_heartbeat(self) -> None:
        """An MPA's request is answered, with the LMAP's Restart Counter."""
        actions = self.anchor.receive(mh.Heartbeat(0xDEADBEEF), MPA1, T0)
        self.assertEqual(actions, [SendMessage(mh.Heartbeat(
            0xDEADBEEF, response=True, options=(mh.RestartCounter(0),)), MPA1)])
        self.assertEqual(self.anchor.counters["heartbeat.answered"], 1)

    def test_heartbeatResponse(self) -> None:
        """A response to no request of the LMAP's is counted, nothing more."""
        self.assertEqual(self.anchor.receive(mh.Heartbeat(1, response=True), MPA1, T0), [])
        self.assertEqual(self.anchor.counters["heartbeat.unmatched"], 1)

    def test_mpaRestarted(self) -> None:
        """Rule 12: the LMAP asks the MPAs it registers bindings of; an MPA
        whose Restart Counter changed loses its bindings not registered since
        (tunnels removed, each revoked with trigger 7); another MPA's stay."""
        anchor = makeAnchor(heartbeat=HeartbeatPolicy(interval=10, timeout=2),
                            restartCounter=70)
        anchor.receive(pbu(1, nai=b"a@lmm.test", address="2001:db8:1::a"), MPA1, T0)
        anchor.receive(pbu(1, nai=b"b@lmm.test", address="2001:db8:1::b"), MPA2, T0)
        self.assertEqual(anchor.nextDeadline(), T0)
        requests = [a for a in anchor.tick(T0) if isinstance(a, SendMessage)]
        self.assertEqual(sorted(a.destination for a in requests), sorted([MPA1, MPA2]))
        for request in requests:
            assert isinstance(request.message, mh.Heartbeat)
            self.assertEqual(request.message.option(mh.RestartCounter), mh.RestartCounter(70))
            anchor.receive(mh.Heartbeat(request.message.sequence, response=True,
                                        options=(mh.RestartCounter(5),)),
                           request.destination, T0 + 0.01)
        # MPA1 restarts; its first request says so.
        actions = anchor.receive(mh.Heartbeat(1, options=(mh.RestartCounter(6),)), MPA1, T0 + 5)
        self.assertIsNone(anchor.store.get(b"a@lmm.test"))
        self.assertIsNotNone(anchor.store.get(b"b@lmm.test"))
        [bri] = [a.message for a in actions if isinstance(a, SendMessage)
                 and isinstance(a.message, mh.BindingRevocationIndication)]
        assert isinstance(bri, mh.BindingRevocationIndication)
        self.assertEqual(bri.trigger, mh.RevocationTrigger.POSSIBLE_OUT_OF_SYNC_BCE_STATE)
        self.assertEqual(bri.option(mh.MobileNodeIdentifier),
                         mh.MobileNodeIdentifier(b"a@lmm.test"))
        self.assertEqual(len([a for a in actions if isinstance(a, RemoveTunnel)]), 1)
        self.assertEqual(anchor.counters["binding.peer-restarted"], 1)
        self.assertIn("lmap.mpa-restarted", [a.event for a in actions if isinstance(a, Note)])

    def test_heartbeatFromStranger(self) -> None:
        self.assertEqual(self.anchor.receive(mh.Heartbeat(1), STRANGER, T0), [])
        self.assertEqual(self.anchor.counters["heartbeat.refused"], 1)

    def test_ignored(self) -> None:
        for message, name in (
            (mh.BindingAck(0, 1, 4), "binding-ack"),
            (mh.BindingRevocationIndication(1, 0), "binding-revocation"),
        ):
            self.assertEqual(self.anchor.receive(message, MPA1, T0), [])
            self.assertEqual(self.anchor.counters["ignored." + name], 1)

    def test_unknownType(self) -> None:
        """RFC 6275 9.2: a Binding Error with status 2 to the source."""
        actions = self.anchor.malformed(mh.UnknownMessageType(42), STRANGER, T0)
        self.assertEqual(
            actions,
            [SendMessage(mh.BindingError(mh.BindingErrorStatus.UNRECOGNIZED_MH_TYPE), STRANGER)],
        )
        self.assertEqual(self.anchor.counters["malformed.unknown-mh-type"], 1)

    def test_otherMalformed(self) -> None:
        self.assertEqual(self.anchor.malformed(mh.TruncatedMessage("short"), MPA1, T0), [])
        self.assertEqual(self.anchor.malformed(mh.BadChecksum("bad"), MPA1, T0), [])
        self.assertEqual(self.anchor.counters["malformed.truncated"], 1)
        self.assertEqual(self.anchor.counters["malformed.bad-checksum"], 1)

    def test_bindingErrorRateLimited(self) -> None:
        anchor = makeAnchor(bindingErrorRate=2)
        error = mh.UnknownMessageType(42)
        self.assertEqual([len(anchor.malformed(error, STRANGER, T0)) for _ in range(3)], [1, 1, 0])
        self.assertEqual(anchor.counters["binding-error.rate-limited"], 1)
        self.assertEqual(len(anchor.malformed(error, STRANGER, T0 + 0.5)), 1)
        self.assertEqual(len(anchor.malformed(error, STRANGER, T0 + 0.5)), 0)
        self.assertEqual(makeAnchor(bindingErrorRate=0).malformed(error, STRANGER, T0), [])

    def test_stop(self) -> None:
        self.anchor.receive(pbu(1), MPA1, T0)
        self.anchor.receive(pbu(1, nai=b"other", address="::"), MPA1, T0)
        self.anchor.receive(pbu(1), MPA2, T0 + 1)
        actions = self.anchor.stop(T0 + 2)
        removed = {a.binding.mobileAddress for a in actions if isinstance(a, RemoveTunnel)}
        self.assertEqual(len(removed), 2)
        self.assertIn(ADDRESS, removed)
        self.assertEqual([n.event for n in notes(actions)], ["lmap.stopped"])
        self.assertEqual(notes(actions)[0].fields["bindings"], 2)
        # Pending revocations are forgotten.
        self.assertEqual(shape(self.anchor.tick(T0 + 5)), [])


class ForeignRequestTests(SynchronousTestCase):
    """Rule 15: what a peer on the other profile asks."""

    def test_draftLocalAddressNamed(self) -> None:
        """A draft MPA's Local Address (type 22) read by an rfc5213 LMAP as an
        HNP holding a whole address: the mismatch named once, and the PBU,
        which lacks RFC 5213's Handoff Indicator, refused with 161 (5.3.1)."""
        anchor = makeAnchor(mh.RFC5213)
        data = mh.encode(pbu(1), mh.DRAFT)
        bu = mh.decode(data, mh.RFC5213)
        assert isinstance(bu, mh.BindingUpdate)
        self.assertEqual(bu.option(mh.HomeNetworkPrefix), mh.HomeNetworkPrefix(ADDRESS, 64))
        actions = anchor.receive(bu, MPA1, T0)
        ack = onlyAck(self, actions)
        self.assertEqual(ack.status, Status.MISSING_HANDOFF_INDICATOR_OPTION)
        # RFC 5213 5.3.6: a rejection carries the request's HNP back.
        self.assertEqual(ack.options, (mh.MobileNodeIdentifier(NAI),
                                       mh.HomeNetworkPrefix(ADDRESS, 64)))
        self.assertEqual([n.event for n in notes(actions)],
                         ["peer.profile-mismatch", "pbu.rejected"])
        self.assertIn("the Local Address of the 'draft' wire profile",
                      notes(actions)[0].fields["sign"])
        actions = anchor.receive(mh.decode(mh.encode(pbu(2), mh.DRAFT), mh.RFC5213), MPA1, T0)
        self.assertEqual([n.event for n in notes(actions)], ["pbu.rejected"])
        self.assertEqual(anchor.counters["peer.profile-mismatch"], 2)
        self.assertEqual(list(anchor.profileMismatches.peers), [MPA1])

    def test_draftConfirmationNamed(self) -> None:
        """A draft MPA's Binding Cache Confirmation at an rfc5213 LMAP: an
        option RFC 5213 does not know, skipped (RFC 6275 9.2), so the PBU
        has no HNP: 158; the mismatch named."""
        anchor = makeAnchor(mh.RFC5213)
        actions = anchor.receive(pbu(1, confirm=True, address=None), MPA1, T0)
        self.assertEqual(onlyAck(self, actions).status,
                         Status.MISSING_HOME_NETWORK_PREFIX_OPTION)
        self.assertIn("Binding Cache Confirmation", anchor.profileMismatches.peers[MPA1])
        self.assertEqual(len(anchor.store), 0)

    def assertNamedAtDraftLmap(self, sent: mh.BindingUpdate, sign: str) -> None:
        """C{sent} under the rfc5213 profile, read by a draft LMAP, names its
        MPA with C{sign} in the sentence."""
        anchor = makeAnchor(mh.DRAFT)
        bu = mh.decode(mh.encode(sent, mh.RFC5213), mh.DRAFT)
        assert isinstance(bu, mh.BindingUpdate)
        actions = anchor.receive(bu, MPA1, T0)
        self.assertIn("peer.profile-mismatch", [n.event for n in notes(actions)])
        self.assertIn(sign, anchor.profileMismatches.peers[MPA1])

    def test_rfc5213RequestNamed(self) -> None:
        """An RFC 5213 PBU at a draft LMAP: its Handoff Indicator and Access
        Technology Type name the peer."""
        self.assertNamedAtDraftLmap(pbu5213(1), "RFC 5213's protocol")

    def test_rfc5213LocalAddressNamed(self) -> None:
        """An rfc5213 MPA's Local Address (type 253) is unknown to a draft
        LMAP: the RFC has it skipped (RFC 6275 9.2), and the peer named."""
        self.assertNamedAtDraftLmap(pbu(1), "'rfc5213'")


def perNodeAnchor(prefixes: tuple[IPv6Network, ...] = (POOL,),
                  **kwargs: Any) -> LocalMobilityAnchor:
    return makeAnchor(mh.RFC5213, prefixes=prefixes, **kwargs)


class PerNodePrefixTests(SynchronousTestCase):
    """Rule 16: RFC 5213's protocol, a home network prefix per MS."""

    def test_initial(self) -> None:
        """An HNP of ::/0 (RFC 5213 6.9.1.1) gets a /64 of the pool, chosen
        by the NAI's hash; its tunnel routes the prefix before the PBA, which
        carries RFC 5213 5.3.6's options: MN-ID, HNP, and the request's
        Handoff Indicator, Access Technology Type and Link-layer Identifier."""
        anchor = perNodeAnchor()
        stamp = mh.Timestamp(123 << 16)
        actions = anchor.receive(pbu5213(1, extra=(LLID, stamp)), MPA1, T0)
        prefix = hashPrefix(NAI)
        self.assertEqual(shape(actions), [f"add {prefix} {MPA1}", f"send BindingAck {MPA1}"])
        add = actions[0]
        assert isinstance(add, AddTunnel)
        self.assertEqual(add.binding, TunnelBinding(prefix, 64, LMAP, MPA1, ROLE_LMAP))
        ack = onlyAck(self, actions)
        self.assertEqual((ack.status, ack.lifetime), (0, 3600))
        self.assertEqual(ack.options, (
            mh.MobileNodeIdentifier(NAI), mh.HomeNetworkPrefix(prefix, 64),
            mh.HandoffIndicatorOption(mh.HandoffIndicator.UNKNOWN),
            mh.AccessTechnologyType(mh.AccessTechnology.IEEE_802_3), LLID, stamp))
        entry = anchor.store.get(NAI)
        assert entry is not None
        self.assertEqual((entry.localAddress, entry.prefixLength), (prefix, 64))

    def test_sameNaiSamePrefix(self) -> None:
        """Deregistered and registered again, an MS gets the same prefix."""
        anchor = perNodeAnchor()
        anchor.receive(pbu5213(1), MPA1, T0)
        anchor.receive(pbu5213(2, lifetime=0), MPA1, T0 + 1)
        self.assertEqual(len(anchor.store), 0)
        ack = onlyAck(self, anchor.receive(pbu5213(3), MPA1, T0 + 2))
        self.assertEqual(ack.option(mh.HomeNetworkPrefix),
                         mh.HomeNetworkPrefix(hashPrefix(NAI), 64))

    def test_collision(self) -> None:
        """Two MSs never share a prefix: the second probes upwards."""
        anchor = perNodeAnchor(prefixes=(IPv6Network("2001:db8:100::/63"),))
        first = onlyAck(self, anchor.receive(pbu5213(1), MPA1, T0))
        second = onlyAck(self, anchor.receive(pbu5213(1, nai=b"other"), MPA1, T0))
        third = onlyAck(self, anchor.receive(pbu5213(1, nai=b"third"), MPA1, T0))
        prefixes = {m.option(mh.HomeNetworkPrefix) for m in (first, second)}
        self.assertEqual(prefixes, {mh.HomeNetworkPrefix("2001:db8:100::", 64),
                                    mh.HomeNetworkPrefix("2001:db8:100:1::", 64)})
        self.assertEqual(third.status, Status.INSUFFICIENT_RESOURCES)

    def test_ownAddressNeverDelegated(self) -> None:
        """The /64 holding the LMAP's own address is not delegated."""
        anchor = perNodeAnchor(prefixes=(IPv6Network("2001:db8:100::/63"),),
                               address="2001:db8:100::1")
        ack = onlyAck(self, anchor.receive(pbu5213(1, nai=b"a"), MPA1, T0))
        self.assertEqual(ack.option(mh.HomeNetworkPrefix),
                         mh.HomeNetworkPrefix("2001:db8:100:1::", 64))
        ack = onlyAck(self, anchor.receive(pbu5213(1, nai=b"b"), MPA1, T0))
        self.assertEqual(ack.status, Status.INSUFFICIENT_RESOURCES)

    def test_requestedHonoured(self) -> None:
        """A free /64 of a pool asked for (a MAG that knows the MS's prefix)
        is delegated."""
        anchor = perNodeAnchor()
        ack = onlyAck(self, anchor.receive(pbu5213(1, "2001:db8:100:7::", 64), MPA1, T0))
        self.assertEqual((ack.status, ack.option(mh.HomeNetworkPrefix)),
                         (0, mh.HomeNetworkPrefix("2001:db8:100:7::", 64)))

    def test_requestedRefused(self) -> None:
        """155 for a prefix this LMAP does not delegate: outside the pools,
        another length, host bits (the draft's Local Address), another MS's;
        159 for an MS whose binding holds another. Each rejection names the
        MS and carries the request's HNP, HI and ATT (RFC 5213 5.3.6)."""
        anchor = perNodeAnchor()
        anchor.receive(pbu5213(1, nai=b"other", prefix="2001:db8:100:9::", prefixLength=64),
                       MPA1, T0)
        cases = [("2001:db8:200::", 64, Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX),
                 ("2001:db8:100::", 56, Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX),
                 ("2001:db8:100::10", 64, Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX),
                 ("2001:db8:100:9::", 64, Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX)]
        for sequence, (prefix, length, status) in enumerate(cases, 1):
            actions = anchor.receive(pbu5213(sequence, prefix, length), MPA1, T0)
            ack = onlyAck(self, actions)
            self.assertEqual((ack.status, ack.lifetime), (status, 0), prefix)
            self.assertEqual(ack.options, (
                mh.MobileNodeIdentifier(NAI), mh.HomeNetworkPrefix(prefix, length),
                mh.HandoffIndicatorOption(mh.HandoffIndicator.UNKNOWN),
                mh.AccessTechnologyType(mh.AccessTechnology.IEEE_802_3), LLID))
        self.assertIsNone(anchor.store.get(NAI))
        anchor.receive(pbu5213(10), MPA1, T0)
        ack = onlyAck(self, anchor.receive(pbu5213(11, "2001:db8:100:7::", 64), MPA1, T0))
        self.assertEqual(ack.status, Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH)

    def test_requiredOptions(self) -> None:
        """RFC 5213 5.3.1: no HNP 158, no Handoff Indicator 161, no Access
        Technology Type 162; nothing is created."""
        anchor = perNodeAnchor()
        for bu, status in ((pbu5213(1, prefix=None), Status.MISSING_HOME_NETWORK_PREFIX_OPTION),
                           (pbu5213(2, handoff=None), Status.MISSING_HANDOFF_INDICATOR_OPTION),
                           (pbu5213(3, technology=None), Status.MISSING_ACCESS_TECH_TYPE_OPTION),
                           (pbu5213(4, nai=None), Status.MISSING_MN_IDENTIFIER_OPTION)):
            self.assertEqual(onlyAck(self, anchor.receive(bu, MPA1, T0)).status, status)
        self.assertEqual(len(anchor.store), 0)
        self.assertEqual(anchor.profileMismatches.peers, {})

    def test_handover(self) -> None:
        """The MS at another MAG, asking ::/0 (handoff state unknown) or its
        prefix: the same prefix, its tunnel moved, the PBA to the new MAG,
        then RFC 5846's revocation to the old one naming the prefix."""
        for asked in (("::", 0), (hashPrefix(NAI), 64)):
            anchor = perNodeAnchor()
            anchor.receive(pbu5213(1), MPA1, T0)
            prefix = hashPrefix(NAI)
            actions = anchor.receive(pbu5213(1, *asked), MPA2, T0 + 1)
            self.assertEqual(shape(actions), [
                f"add {prefix} {MPA2}",
                f"send BindingAck {MPA2}", f"send BindingRevocationIndication {MPA1}"])
            bri = sends(actions)[1].message
            assert isinstance(bri, mh.BindingRevocationIndication)
            self.assertEqual(bri.options, (mh.MobileNodeIdentifier(NAI),
                                           mh.HomeNetworkPrefix(prefix, 64)))
            self.assertEqual(anchor.revocations.snapshot()[0][3:5], (prefix, 64))

    def test_refresh(self) -> None:
        """A re-registration (Handoff Indicator 5) from the same MAG touches
        no tunnel and echoes its options."""
        anchor = perNodeAnchor()
        anchor.receive(pbu5213(1), MPA1, T0)
        prefix = hashPrefix(NAI)
        actions = anchor.receive(
            pbu5213(2, prefix, 64, handoff=mh.HandoffIndicator.NOT_CHANGED), MPA1, T0 + 1)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])
        self.assertEqual(onlyAck(self, actions).option(mh.HandoffIndicatorOption),
                         mh.HandoffIndicatorOption(mh.HandoffIndicator.NOT_CHANGED))

    def test_deregistration(self) -> None:
        """Lifetime 0 from the binding's MAG: tunnel and entry go; the PBA
        names the MS and its prefix (RFC 5213 5.3.5, 5.3.6)."""
        anchor = perNodeAnchor()
        anchor.receive(pbu5213(1), MPA1, T0)
        prefix = hashPrefix(NAI)
        actions = anchor.receive(pbu5213(2, prefix, 64, lifetime=0), MPA1, T0 + 1)
        self.assertEqual(shape(actions), [f"remove {prefix} {MPA1}", f"send BindingAck {MPA1}"])
        ack = onlyAck(self, actions)
        self.assertEqual(ack.options[:2], (mh.MobileNodeIdentifier(NAI),
                                           mh.HomeNetworkPrefix(prefix, 64)))
        ack = onlyAck(self, anchor.receive(pbu5213(3, lifetime=0), MPA1, T0 + 2))
        self.assertEqual((ack.status, ack.options[:2]),
                         (0, (mh.MobileNodeIdentifier(NAI), mh.HomeNetworkPrefix("::", 0))))

    def test_poolLongerThanPrefix(self) -> None:
        self.assertRaises(ValueError, perNodeAnchor, prefixes=(IPv6Network("2001:db8::/80"),))
        self.assertRaises(ValueError, perNodeAnchor, homeNetworkPrefixLength=0)


class WireTests(SynchronousTestCase):
    """Every message the anchor sends survives lmm.mh's encoder and decoder."""

    def scenario(self, profile: mh.WireProfile) -> list[SendMessage]:
        anchor = makeAnchor(profile)
        out: list[Action] = []
        out += anchor.receive(pbu(1), MPA1, T0)  # accepted, static
        out += anchor.receive(pbu(1, nai=b"two", address="::", lifetime=9), MPA1, T0)
        out += anchor.receive(pbu(2, confirm=True, address=None), MPA1, T0 + 1)
        out += anchor.receive(pbu(1), MPA2, T0 + 2)  # handover: PBA + BRI
        out += anchor.tick(T0 + 3)  # BRI retransmission
        out += anchor.receive(pbu(1, lifetime=0, nai=b"two"), MPA1, T0 + 4)  # stale sequence
        out += anchor.receive(pbu(2, lifetime=0, nai=b"two"), MPA1, T0 + 4)  # deregistration
        out += anchor.receive(pbu(1, proxy=False), MPA1, T0)
        out += anchor.receive(pbu(1), STRANGER, T0)
        out += anchor.receive(pbu(1, nai=None), MPA1, T0)
        out += anchor.receive(pbu(1, nai=b"x", confirm=True), MPA1, T0)
        out += anchor.receive(pbu(1, nai=b"x", address="2001:db8:3::1"), MPA1, T0)
        out += anchor.receive(pbu(1, nai=b"x"), MPA1, T0)
        out += anchor.receive(mh.Heartbeat(7), MPA1, T0)
        out += anchor.malformed(mh.UnknownMessageType(99), STRANGER, T0)
        return sends(out)

    def checkProfile(self, profile: mh.WireProfile) -> None:
        messages = self.scenario(profile)
        kinds = {type(m.message).__name__ for m in messages}
        self.assertEqual(
            kinds,
            {"BindingAck", "BindingRevocationIndication", "Heartbeat", "BindingError"},
        )
        statuses = {m.message.status for m in messages if isinstance(m.message, mh.BindingAck)}
        self.assertEqual(
            statuses,
            {0, profile.proxyRegistrationNotSupported, profile.bindingCacheEntryMissing,
             Status.MISSING_MN_IDENTIFIER_OPTION, Status.SEQUENCE_NUMBER_OUT_OF_WINDOW,
             Status.NOT_HOME_SUBNET, Status.DUPLICATE_ADDRESS_DETECTION_FAILED},
        )
        for send in messages:
            data = mh.encode(send.message, profile)
            self.assertEqual(mh.decode(data, profile), send.message)
            IPv6Address(send.destination)

    def test_draft(self) -> None:
        self.checkProfile(mh.DRAFT)

    def test_rfc5213(self) -> None:
        """RFC 5213's protocol: each message kind and status, through the codec."""
        anchor = perNodeAnchor()
        out: list[Action] = []
        out += anchor.receive(pbu5213(1), MPA1, T0)
        out += anchor.receive(pbu5213(1), MPA2, T0 + 1)  # handover: PBA + BRI
        out += anchor.receive(pbu5213(2, "2001:db8:200::", 64, nai=b"x"), MPA1, T0)
        out += anchor.receive(pbu5213(3, prefix=None, nai=b"x"), MPA1, T0)
        out += anchor.receive(pbu5213(4, handoff=None, nai=b"x"), MPA1, T0)
        out += anchor.receive(pbu5213(5, technology=None, nai=b"x"), MPA1, T0)
        out += anchor.receive(pbu5213(2, "2001:db8:100:7::", 64), MPA2, T0 + 2)
        out += anchor.receive(pbu5213(3, lifetime=0), MPA2, T0 + 3)
        messages = sends(out)
        statuses = {m.message.status for m in messages if isinstance(m.message, mh.BindingAck)}
        self.assertEqual(statuses, {0, 155, 158, 159, 161, 162})
        for send in messages:
            data = mh.encode(send.message, mh.RFC5213)
            self.assertEqual(mh.decode(data, mh.RFC5213), send.message)


class TimestampOrderTests(SynchronousTestCase):
    """Rule 11: with protected signaling the PBUs of one MS are ordered by
    their Replay Protection timestamps, whichever MPA sends them."""

    def stamped(self, sequence: int, at: float, **kwargs: Any) -> mh.BindingUpdate:
        from lmm.security import ntpTimestamp

        return pbu(sequence, extra=(mh.ReplayProtection(ntpTimestamp(at)),), **kwargs)

    def test_replayAcrossHandover(self) -> None:
        """The PBU MPA1 sent before the MS moved, replayed after the handover
        to MPA2, is refused with 157 and takes nothing back."""
        anchor = makeAnchor()
        first = self.stamped(1, T0)
        anchor.receive(first, MPA1, T0)
        anchor.receive(self.stamped(1, T0 + 1, confirm=True, address=None), MPA2, T0 + 1)
        before = anchor.store.get(NAI)
        assert before is not None
        actions = anchor.receive(first, MPA1, T0 + 1.2)
        self.assertEqual(shape(actions), [f"send BindingAck {MPA1}"])
        ack = onlyAck(self, actions)
        self.assertEqual(ack.status, Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED)
        after = anchor.store.get(NAI)
        assert after is not None
        self.assertEqual(after.careOfAddress, MPA2)
        self.assertEqual(anchor.counters["pbu.rejected.157"], 1)

    def test_unprotectedTimestampOption(self) -> None:
        """Unprotected, RFC 5213's Timestamp option orders them the same way
        (issue 16, part 2): the replay across a handover gets 157."""
        from lmm.security import rfc5213Timestamp

        def stamped(sequence: int, at: float, **kwargs: Any) -> mh.BindingUpdate:
            return pbu(sequence, extra=(mh.Timestamp(rfc5213Timestamp(at)),), **kwargs)

        anchor = makeAnchor()
        first = stamped(1, T0)
        self.assertEqual(onlyAck(self, anchor.receive(first, MPA1, T0)).status, 0)
        moved = stamped(1, T0 + 1, confirm=True, address=None)
        handover = sends(anchor.receive(moved, MPA2, T0 + 1))
        self.assertEqual([type(m.message).__name__ for m in handover],
                         ["BindingAck", "BindingRevocationIndication"])
        actions = anchor.receive(first, MPA1, T0 + 1.2)
        self.assertEqual(onlyAck(self, actions).status, Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED)
        entry = anchor.store.get(NAI)
        assert entry is not None
        self.assertEqual(entry.careOfAddress, MPA2)

    def test_newerAccepted(self) -> None:
        """Newer timestamps are accepted from either MPA, and the entry keeps
        the last accepted one; a late PBU from the MPA the MS left is refused
        even with a newer sequence number."""
        anchor = makeAnchor()
        anchor.receive(self.stamped(1, T0), MPA1, T0)
        anchor.receive(self.stamped(2, T0 + 5), MPA1, T0 + 5)
        anchor.receive(self.stamped(9, T0 + 6, confirm=True, address=None), MPA2, T0 + 6)
        entry = anchor.store.get(NAI)
        assert entry is not None
        from lmm.security import ntpTimestamp

        self.assertEqual(entry.timestamp, ntpTimestamp(T0 + 6))
        late = anchor.receive(self.stamped(3, T0 + 5.5), MPA1, T0 + 6.1)
        self.assertEqual(onlyAck(self, late).status, Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED)
        self.assertEqual(anchor.store.get(NAI).careOfAddress, MPA2)  # type: ignore[union-attr]

    def test_unstampedUnordered(self) -> None:
        """Without the option (unprotected signaling) nothing changes: rule 7 only."""
        anchor = makeAnchor()
        anchor.receive(self.stamped(1, T0 + 100), MPA1, T0)
        actions = anchor.receive(pbu(1, confirm=True, address=None), MPA2, T0 + 1)
        self.assertEqual(sends(actions)[0].message.status, 0)  # type: ignore[attr-defined]
        self.assertEqual(anchor.store.get(NAI).careOfAddress, MPA2)  # type: ignore[union-attr]

    def test_refusedCountedNotAnswered(self) -> None:
        """What the codec refused is counted by reason and answered with nothing."""
        from lmm.security import BadAuthenticator

        anchor = makeAnchor()
        error = BadAuthenticator("no", pbu(1))
        self.assertEqual(anchor.malformed(error, MPA1, T0), [])
        self.assertEqual(anchor.counters["refused.auth-bad-mac"], 1)
        self.assertIsNone(anchor.store.get(NAI))
