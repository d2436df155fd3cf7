"""
Property tests for L{lmm.mh} with hypothesis.

 - bytes from the network, random or shaped like a Mobility Header, either
   decode or raise L{MobilityHeaderError}: never IndexError, struct.error, ...
 - every valid message, under the shipped profiles and random ones, round-trips;
 - valid encodings with bytes flipped, cut off or added still only raise
   L{MobilityHeaderError}.

LMM_HYPOTHESIS_EXAMPLES sets the number of examples of the random-bytes test
(2000 by default; CI runs 100000); the structured tests run a tenth of it, at
least 2000 (or all of it, if that is less).
"""

from __future__ import annotations

import functools
import os
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lmm import mh
from lmm.mh import (
    DRAFT,
    RFC5213,
    AccessTechnologyType,
    AlternateCareOfAddress,
    Authentication,
    BindingAck,
    BindingAuthorizationData,
    BindingCacheConfirmation,
    BindingError,
    BindingRefreshAdvice,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
    Experimental,
    HandoffIndicatorOption,
    Heartbeat,
    HomeNetworkPrefix,
    LinkLocalAddress,
    LocalAddress,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    MobilityHeaderError,
    MobilityMessage,
    MobilityOption,
    NonceIndices,
    ReplayProtection,
    Timestamp,
    UnknownOption,
    WireProfile,
)

EXAMPLES = int(os.environ.get("LMM_HYPOTHESIS_EXAMPLES", "2000"))
# The structured tests cost 1 to 4 ms an example against about 1 ms for random
# bytes: of a large budget they get a tenth, but never fewer than 2000.
STRUCTURED_EXAMPLES = min(EXAMPLES, max(2000, EXAMPLES // 10))
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=HEALTH
)
STRUCTURED = settings(
    max_examples=STRUCTURED_EXAMPLES, deadline=None, database=None, suppress_health_check=HEALTH
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)
flag = st.booleans()
# Canonical text, as the codec gives it back.
addresses = st.binary(min_size=16, max_size=16).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))
lifetimes = u16.map(lambda units: units * mh.LIFETIME_UNIT)
prefixLengths = st.integers(0, 128)

# Each option class and how to draw one; bodies stay under 255 bytes.
OPTIONS: dict[type[MobilityOption], st.SearchStrategy[MobilityOption]] = {
    BindingRefreshAdvice: st.builds(BindingRefreshAdvice, u16),
    AlternateCareOfAddress: st.builds(AlternateCareOfAddress, addresses),
    NonceIndices: st.builds(NonceIndices, u16, u16),
    BindingAuthorizationData: st.builds(BindingAuthorizationData, st.binary(max_size=255)),
    MobileNodeIdentifier: st.builds(MobileNodeIdentifier, st.binary(min_size=1, max_size=254), u8),
    Authentication: st.builds(Authentication, u8, u32, st.binary(max_size=250)),
    ReplayProtection: st.builds(ReplayProtection, u64),
    Experimental: st.builds(Experimental, st.binary(max_size=255)),
    BindingCacheConfirmation: st.just(BindingCacheConfirmation()),
    LocalAddress: st.builds(LocalAddress, addresses, prefixLengths),
    HomeNetworkPrefix: st.builds(HomeNetworkPrefix, addresses, prefixLengths),
    HandoffIndicatorOption: st.builds(HandoffIndicatorOption, u8),
    AccessTechnologyType: st.builds(AccessTechnologyType, u8),
    MobileNodeLinkLayerIdentifier: st.builds(
        MobileNodeLinkLayerIdentifier, st.binary(min_size=1, max_size=253)
    ),
    LinkLocalAddress: st.builds(LinkLocalAddress, addresses),
    Timestamp: st.builds(Timestamp, u64),
}


# The shipped profiles, and others that move the draft's options around: onto
# free numbers, onto each other's, onto IANA options they then hide (MN-ID and
# Authentication, HNP and Experimental swapped).
PROFILES = [
    DRAFT,
    RFC5213,
    WireProfile("free", 200, 201, 240, 241),
    WireProfile("hiding", 128, 255, 8, 9),
    WireProfile("swapped", 141, 140, 22, 18),
    WireProfile("high", 254, 255, 254, 255),
]
profiles = st.sampled_from(PROFILES)


@functools.cache
def optionsFor(profile: WireProfile) -> st.SearchStrategy[MobilityOption]:
    """Options that come back as themselves under C{profile}: not those whose
    number the profile gave to one of the draft's options, and unknown options
    only of numbers the profile does not know."""
    visible = [
        strategy
        for cls, strategy in OPTIONS.items()
        if profile.decoders.get(profile.typeOf[cls]) is cls
    ]
    unknownTypes = [t for t in range(2, 256) if t not in profile.decoders]
    unknown = st.builds(UnknownOption, st.sampled_from(unknownTypes), st.binary(max_size=255))
    return st.one_of(*visible, unknown)


@functools.cache
def messagesFor(profile: WireProfile) -> st.SearchStrategy[MobilityMessage]:
    # At most 6 options of at most 257 bytes plus padding stay under 2048 bytes.
    options = st.lists(optionsFor(profile), max_size=6).map(tuple)
    return st.one_of(
        st.builds(BindingUpdate, u16, lifetimes, options, flag, flag, flag, flag, flag, flag, flag),
        st.builds(BindingAck, u8, u16, lifetimes, options, flag, flag, flag),
        st.builds(BindingError, u8, addresses, options),
        st.builds(Heartbeat, u32, flag, flag, options),
        st.builds(BindingRevocationIndication, u16, u8, options, flag, flag, flag),
        st.builds(BindingRevocationAck, u16, u8, options, flag, flag, flag),
    )


# One strategy per profile, built once: hypothesis validates each new strategy,
# which would otherwise cost more than the test.
profilesAndMessages = st.one_of(*(st.tuples(st.just(p), messagesFor(p)) for p in PROFILES))


# Message types lmm reads, and the fixed length of each after the 6-byte header.
FIXED_LENGTHS = {5: 6, 6: 6, 7: 18, 13: 6, 16: 6}
# Option types some profile decodes, to reach their decoders often.
KNOWN_OPTION_TYPES = sorted({*DRAFT.decoders, *RFC5213.decoders} - {0, 1})


@st.composite
def shapedHeaders(draw: st.DrawFn) -> bytes:
    """Bytes that get past the first checks: mostly a known MH type, a Header Len
    that fits, and an option area made of type-length-value triples of mostly
    known types, so the option decoders see every kind of wrong length."""
    mhType = draw(st.one_of(st.sampled_from(sorted(FIXED_LENGTHS)), u8))
    fixedLength = FIXED_LENGTHS.get(mhType, 6)
    fixed = draw(st.binary(min_size=fixedLength, max_size=fixedLength))
    if mhType == mh.MHType.BINDING_REVOCATION:
        fixed = bytes((draw(st.integers(0, 3)),)) + fixed[1:]
    options = b""
    kinds = st.one_of(st.sampled_from(KNOWN_OPTION_TYPES), u8)
    for kind, body in draw(st.lists(st.tuples(kinds, st.binary(max_size=24)), max_size=8)):
        length = draw(st.one_of(st.just(len(body)), u8))
        options += bytes((kind, length)) + body
    body = fixed + options
    fitting = max(0, -(-(6 + len(body)) // 8) - 1)  # the Header Len that holds it all
    units = draw(st.one_of(st.just(fitting), u8))
    size = (units + 1) * 8
    # Zero-fill or cut the body to the size Header Len says, then maybe cut or
    # extend the whole.
    data = bytes((draw(u8), units, mhType, draw(u8))) + draw(st.binary(min_size=2, max_size=2))
    data += (body + bytes(size))[: size - 6]
    change = draw(st.one_of(st.just(0), st.integers(-8, 8)))
    return data[:change] if change < 0 else data + bytes(change)


def decodeOrMobilityHeaderError(data: bytes, profile: WireProfile) -> None:
    try:
        message = mh.decode(data, profile)
    except MobilityHeaderError as e:
        # The counter key and the message must be there.
        assert e.reason and str(e)
    else:
        assert isinstance(message, MobilityMessage)


class RandomBytesTests(SynchronousTestCase):
    """Whatever arrives, decode says what is wrong with a MobilityHeaderError."""

    @SETTINGS
    @given(st.binary(max_size=2100), st.sampled_from([DRAFT, RFC5213]))
    def test_randomBytes(self, data: bytes, profile: WireProfile) -> None:
        decodeOrMobilityHeaderError(data, profile)

    @STRUCTURED
    @given(shapedHeaders(), profiles)
    def test_shapedHeaders(self, data: bytes, profile: WireProfile) -> None:
        decodeOrMobilityHeaderError(data, profile)


class RoundTripTests(SynchronousTestCase):
    @STRUCTURED
    @given(profilesAndMessages)
    def test_roundTrip(self, case: tuple[WireProfile, MobilityMessage]) -> None:
        profile, message = case
        data = mh.encode(message, profile)
        self.assertEqual(len(data) % 8, 0)
        self.assertEqual((data[1] + 1) * 8, len(data))
        self.assertEqual(mh.decode(data, profile), message)
        self.assertEqual(mh.encode(mh.decode(data, profile), profile), data)

    @STRUCTURED
    @given(profilesAndMessages, st.binary(min_size=16, max_size=16))
    def test_checksum(self, case: tuple[WireProfile, MobilityMessage], source: bytes) -> None:
        """A filled-in checksum verifies, and the header still decodes the same."""
        profile, message = case
        address = socket.inet_ntop(socket.AF_INET6, source)
        data = mh.withChecksum(address, "2001:db8::2", mh.encode(message, profile))
        mh.verifyChecksum(address, "2001:db8::2", data)
        self.assertEqual(mh.decode(data, profile), message)


class MutationTests(SynchronousTestCase):
    """Damaged valid headers: flipped bytes, a wrong Header Len, cut or extended."""

    @STRUCTURED
    @given(profilesAndMessages, st.data())
    def test_mutated(self, case: tuple[WireProfile, MobilityMessage], data: st.DataObject) -> None:
        profile, message = case
        encoded = bytearray(mh.encode(message, profile))
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            position = data.draw(st.integers(0, len(encoded) - 1), label="position")
            encoded[position] = data.draw(u8, label="byte")
        if data.draw(st.booleans(), label="cut"):
            encoded = encoded[: data.draw(st.integers(0, len(encoded)), label="length")]
        else:
            encoded += data.draw(st.binary(max_size=16), label="extra")
        for decodeProfile in {profile, DRAFT, RFC5213}:
            decodeOrMobilityHeaderError(bytes(encoded), decodeProfile)

    @STRUCTURED
    @given(profilesAndMessages, u8)
    def test_headerLen(self, case: tuple[WireProfile, MobilityMessage], units: int) -> None:
        """Any Header Len on a valid body: shorter ones cut the options anywhere."""
        profile, message = case
        encoded = mh.encode(message, profile)
        decodeOrMobilityHeaderError(encoded[:1] + bytes((units,)) + encoded[2:], profile)

    @STRUCTURED
    @given(profilesAndMessages, st.data())
    def test_optionLength(
        self, case: tuple[WireProfile, MobilityMessage], data: st.DataObject
    ) -> None:
        """A wrong Length byte in one option (found with the codec's own walk)."""
        profile, message = case
        encoded = bytearray(mh.encode(message, profile))
        position = 24 if isinstance(message, BindingError) else 12
        lengths = []
        while position < len(encoded):
            if encoded[position] == 0:
                position += 1
                continue
            lengths.append(position + 1)
            position += 2 + encoded[position + 1]
        if not lengths:
            return
        encoded[data.draw(st.sampled_from(lengths))] = data.draw(u8)
        decodeOrMobilityHeaderError(bytes(encoded), profile)


class StrategyTests(SynchronousTestCase):
    """The strategies draw what they claim to."""

    def test_everyOptionClassDrawn(self) -> None:
        # A profile where nothing is hidden: every class is in play.
        lab = WireProfile("lab", 200, 201, 240, 241)
        seen: set[type] = set()

        @settings(max_examples=300, deadline=None, database=None)
        @given(optionsFor(lab))
        def draw(option: MobilityOption) -> None:
            seen.add(type(option))

        draw()
        self.assertEqual(seen, set(OPTIONS) | {UnknownOption})

    def test_shapedHeadersReachOptions(self) -> None:
        """Shaped headers get past the length checks often enough to matter."""
        outcomes: dict[str, int] = {}

        @settings(max_examples=500, deadline=None, database=None)
        @given(shapedHeaders())
        def draw(data: bytes) -> None:
            try:
                mh.decode(data)
                key = "decoded"
            except MobilityHeaderError as e:
                key = e.reason
            outcomes[key] = outcomes.get(key, 0) + 1

        draw()
        self.assertGreater(outcomes.get("decoded", 0), 25, outcomes)
        self.assertGreater(outcomes.get("bad-option", 0), 10, outcomes)
        self.assertIn("option-overrun", outcomes)
