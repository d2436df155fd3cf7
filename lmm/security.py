"""
Protected signaling between MPA and LMAP: RFC 4285's Mobility Message
Authentication option (section 5) and Mobility Message Replay Protection
option (section 6) on every message, both directions (PBU, PBA, BRI, BRA,
Heartbeat). Pure: bytes, messages and a clock in, bytes and messages out.

RFC 4285 is written for a mobile node (MN) and its home agent (HA). Here:

 - the mobility security association (SA) is between one MPA and the LMAP
   (the pair that signals), not per MS: the MS takes no part in the signaling;
   each end holds it as the peer's address, a Mobility SPI, an algorithm and a
   key (L{MobilitySecurityAssociation}, from a key file, L{loadKeyFile});
 - "Mobility Data = care-of address | home address | MH Data" (5.1): the
   care-of address is the MPA's address (the proxy care-of address), the home
   address the LMAP's, whichever end sends. A message is bound to the pair, so
   a message from one MPA cannot be replayed as another's;
 - "MH Data" is the Mobility Header up to and including the option's SPI,
   checksum zero; the option is the last one in the message (section 5);
 - the subtype is MN-HA (1); the algorithm is the SA's: HMAC-SHA1-96
   (RFC 4285's, for conformance) or HMAC-SHA256-128 (SHA-256 truncated to
   128 bits, as IPsec's RFC 4868 does);
 - the Replay Protection option carries the sender's time as a 64-bit NTP
   timestamp (section 6). A receiver refuses a message whose timestamp is
   further than the replay window from its own clock; the LMAP also orders
   the PBUs of one MS by it, whichever MPA they come from
   (L{lmm.lmap.anchor}). The two ends' clocks must agree (NTP) to well
   within the window.

What fails is refused with a L{Refused} error (a L{MobilityHeaderError}: the
cores count it by reason and decide what to answer; docs/security.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import stat
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmm import inet, mh
from lmm.config import ConfigError, writePrivateFile

try:
    from lmm import _hmac  # type: ignore[attr-defined]
except ImportError:  # not built (setup.py: optional), hashlib does it
    _hmac = None

#: Which code computes the signaling's MACs (the control channel's security
#: command shows it): the C one costs a quarter of hashlib's (issue 12).
HMAC_IMPLEMENTATION = "C (lmm._hmac, libcrypto)" if _hmac is not None else "Python (hashlib)"

# --- algorithms -------------------------------------------------------------

_ZERO_CHECKSUM = b"\x00\x00"  # the checksum field as the MAC covers it (RFC 4285 5.1)


@dataclass(frozen=True)
class Algorithm:
    """An HMAC and how many bytes of it the option carries."""

    name: str
    digest: str  # hashlib's name
    length: int  # bytes kept
    minimumKey: int  # bytes: RFC 2104 2, a key no shorter than the hash's output


HMAC_SHA1_96 = Algorithm("hmac-sha1-96", "sha1", 12, 20)
HMAC_SHA256_128 = Algorithm("hmac-sha256-128", "sha256", 16, 32)
ALGORITHMS = {a.name: a for a in (HMAC_SHA1_96, HMAC_SHA256_128)}

#: RFC 4285 section 5: Mobility SPI values 0-255 are reserved.
FIRST_SPI = 256
MAX_SPI = 0xFFFFFFFF

#: The replay window's default, seconds: clocks kept by NTP agree to a few ms.
DEFAULT_REPLAY_WINDOW = 1.0


@dataclass(frozen=True)
class MobilitySecurityAssociation:
    """One SA: the peer's address (canonical), the SPI, the algorithm, the key
    (never shown by C{repr})."""

    peer: str
    spi: int
    algorithm: Algorithm
    key: bytes = field(repr=False)
    # RFC 2104's keyed inner and outer hash states, computed once: an HMAC is
    # then two copies and two short updates (a third of hmac.digest's time).
    _inner: Any = field(init=False, repr=False, compare=False)
    _outer: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = self.algorithm.digest
        key = self.key
        block = hashlib.new(name).block_size
        if len(key) > block:
            key = hashlib.new(name, key).digest()
        key = key.ljust(block, b"\x00")
        object.__setattr__(self, "_inner", hashlib.new(name, bytes(b ^ 0x36 for b in key)))
        object.__setattr__(self, "_outer", hashlib.new(name, bytes(b ^ 0x5C for b in key)))

    def mac(self, data: bytes) -> bytes:
        """First(length, HMAC(key, data)) (RFC 2104, RFC 4285 5.1)."""
        return self.between(b"")(data)

    def between(self, pair: bytes) -> Authenticator:
        """This SA's MAC of what follows C{pair} (the two addresses that
        begin every Mobility Data, RFC 4285 5.1), the pair hashed in once:
        in C when L{lmm._hmac} was built (L{HMAC_IMPLEMENTATION})."""
        if _hmac is not None:
            return _hmac.Authenticator(self, self.spi, self.algorithm.length,  # type: ignore
                                       self.algorithm.digest, self.key, pair)
        return self.hashlibBetween(pair)

    def hashlibBetween(self, pair: bytes) -> Authenticator:
        """L{between} with hashlib, whether or not L{lmm._hmac} was built."""
        inner = self._inner.copy()
        inner.update(pair)
        return Authenticator(self, inner, self._outer)

    def describe(self) -> dict[str, Any]:
        """What the control channel shows: everything but the key."""
        return {"peer": self.peer, "spi": self.spi, "algorithm": self.algorithm.name}


class Authenticator:
    """
    The MAC of one SA between one pair of addresses: C{authenticator(data)} is
    First(length, HMAC(key, pair | data)). What the signaling calls per
    message, so it keeps the keyed states (L{MobilitySecurityAssociation.between}).
    """

    __slots__ = ("sa", "spi", "length", "_inner", "_outer")

    def __init__(self, sa: MobilitySecurityAssociation, inner: Any, outer: Any) -> None:
        self.sa = sa
        self.spi = sa.spi
        self.length = sa.algorithm.length
        self._inner = inner
        self._outer = outer

    def __call__(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[: self.length]

    def check(self, data: bytes, covered: int, expected: bytes) -> bool:
        """Whether C{expected} is the MAC of C{data[:covered]} with the
        checksum (bytes 4 and 5) taken as zero (RFC 4285 5.1); compared in
        constant time."""
        if not 6 <= covered <= len(data):
            raise ValueError(f"covered {covered}: outside 6..{len(data)}")
        return hmac.compare_digest(self(data[:4] + _ZERO_CHECKSUM + data[6:covered]), expected)

    def seal(self, body: bytes, mhType: int, timestamp: int) -> bytes:
        """L{mh.sealBody} under this SA: the bytes to send."""
        return mh.sealBody(body, mhType, self.spi, timestamp, self.length, self)

    def open(self, data: bytes, now: float, window: int) -> tuple[int, int] | None:
        """lmm._hmac's fast path of L{SignalingCodec.decode}; here none (None:
        the general decode does it all)."""
        return None


class SecurityAssociations:
    """
    The SAs of one daemon, by peer. Every SA listed for a peer is accepted
    from it; the first one listed signs what is sent to it. Rolling a key over
    (docs/security.md): list the new SA second at both ends, then first, then
    drop the old one; each step a reload, no restart.
    """

    def __init__(self, associations: Iterable[MobilitySecurityAssociation]) -> None:
        self.byPeer: dict[str, list[MobilitySecurityAssociation]] = {}
        self._bySpi: dict[tuple[str, int], MobilitySecurityAssociation] = {}
        for sa in associations:
            if (sa.peer, sa.spi) in self._bySpi:
                raise ValueError(f"SPI {sa.spi} is listed twice for {sa.peer}")
            self.byPeer.setdefault(sa.peer, []).append(sa)
            self._bySpi[sa.peer, sa.spi] = sa

    def sending(self, peer: str) -> MobilitySecurityAssociation | None:
        """The SA that signs what goes to C{peer}, or None."""
        listed = self.byPeer.get(peer)
        return listed[0] if listed else None

    def lookup(self, peer: str, spi: int) -> MobilitySecurityAssociation | None:
        return self._bySpi.get((peer, spi))

    def __contains__(self, peer: object) -> bool:
        return peer in self.byPeer

    def __len__(self) -> int:
        return len(self._bySpi)

    def describe(self) -> list[dict[str, Any]]:
        return [sa.describe() for listed in self.byPeer.values() for sa in listed]


# --- key files --------------------------------------------------------------


def _association(path: str, index: int, table: Any) -> MobilitySecurityAssociation:
    where = f"association[{index}]"
    if not isinstance(table, Mapping):
        raise ConfigError(path, where, f"expected a table, got {table!r}")
    unknown = set(table) - {"peer", "spi", "algorithm", "key"}
    if unknown:
        raise ConfigError(path, f"{where}.{sorted(unknown)[0]}", "unknown key")
    for name in ("peer", "spi", "algorithm", "key"):
        if name not in table:
            raise ConfigError(path, f"{where}.{name}", "missing (required)")
    try:
        peer = inet.canonical(str(table["peer"]))
    except (OSError, ValueError):
        raise ConfigError(path, f"{where}.peer",
                          f"expected an IPv6 address, got {table['peer']!r}") from None
    spi = table["spi"]
    if isinstance(spi, bool) or not isinstance(spi, int) or not FIRST_SPI <= spi <= MAX_SPI:
        raise ConfigError(path, f"{where}.spi",
                          f"expected {FIRST_SPI}..{MAX_SPI} (0-255 are reserved, RFC 4285 5)")
    algorithm = ALGORITHMS.get(table["algorithm"])
    if algorithm is None:
        raise ConfigError(path, f"{where}.algorithm",
                          f"expected one of {', '.join(ALGORITHMS)}")
    text = table["key"]
    try:
        key = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        key = b""
    if not key:
        # The value is not repeated: it may be most of a key.
        raise ConfigError(path, f"{where}.key", "expected the key as hexadecimal digits")
    if len(key) < algorithm.minimumKey:
        raise ConfigError(path, f"{where}.key",
                          f"{len(key)} bytes; {algorithm.name} needs at least "
                          f"{algorithm.minimumKey} (RFC 2104 section 2)")
    return MobilitySecurityAssociation(peer, spi, algorithm, key)


def checkPermissions(path: str) -> None:
    """Refuse (L{ConfigError}) a key file that anybody but its owner may read
    or write, or that is not a regular file."""
    try:
        status = os.stat(path)
    except OSError as e:
        raise ConfigError(path, None, f"cannot read the key file: {e.strerror}") from None
    if not stat.S_ISREG(status.st_mode):
        raise ConfigError(path, None, "the key file is not a regular file")
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077:
        raise ConfigError(path, None, f"the key file's mode is {mode:04o}: others may read "
                                      f"it; chmod 600 {path}")


def loadKeyFile(path: str) -> SecurityAssociations:
    """
    The SAs of a key file: TOML, one C{[[association]]} table per SA with
    C{peer} (address), C{spi} (256..2**32-1), C{algorithm} (L{ALGORITHMS})
    and C{key} (hexadecimal). A file others may read is refused; every error
    is a L{ConfigError} naming the file and the key, never the key's value.
    """
    checkPermissions(path)
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError:
        # tomllib's message may quote the line, and with it a key.
        raise ConfigError(path, None, "not valid TOML") from None
    unknown = set(document) - {"association"}
    if unknown:
        raise ConfigError(path, sorted(unknown)[0], "unknown key")
    tables = document.get("association", [])
    if not isinstance(tables, list) or not tables:
        raise ConfigError(path, "association", "no [[association]] tables")
    associations = [_association(path, i, t) for i, t in enumerate(tables)]
    try:
        return SecurityAssociations(associations)
    except ValueError as e:
        raise ConfigError(path, "association", str(e)) from None


def writeKeyFile(path: str, associations: Iterable[MobilitySecurityAssociation]) -> str:
    """Write C{associations} as a key file L{loadKeyFile} reads, mode 0600,
    replacing C{path} at once (a daemon reloading it never sees half a file);
    C{path}. For the lab, the benchmarks and the tests: an operator writes his
    own, the format is in docs/security.md."""
    text = "".join(f'[[association]]\npeer = "{sa.peer}"\nspi = {sa.spi}\n'
                   f'algorithm = "{sa.algorithm.name}"\nkey = "{sa.key.hex()}"\n\n'
                   for sa in associations)
    writePrivateFile(path, text)
    return path


# --- timestamps (RFC 4285 section 6: NTP format) -------------------------------

_NTP_EPOCH = 2208988800  # seconds from 1900-01-01 to 1970-01-01


_NTP_SECOND = 1 << 32  # one second in a 64-bit NTP timestamp's units
_NTP_ERA = 1 << 64
_NTP_HALF = 1 << 63


def ntpTimestamp(now: float) -> int:
    """C{now} (POSIX seconds) as a 64-bit NTP timestamp."""
    return int((now + _NTP_EPOCH) * _NTP_SECOND) % _NTP_ERA


def fromNtpTimestamp(timestamp: int) -> float:
    return timestamp / _NTP_SECOND - _NTP_EPOCH


def rfc5213Timestamp(now: float) -> int:
    """C{now} (POSIX seconds) as RFC 5213 8.8's Timestamp option: seconds in
    the upper 48 bits, 1/65536 s in the lower 16."""
    return int(now * 65536) & (_NTP_ERA - 1)


def ntpFromRfc5213(timestamp: int) -> int:
    """An RFC 5213 Timestamp in 64-bit NTP units, the ones the LMAP orders
    PBUs in (L{lmm.lmap.anchor}, rule 11), whichever option carried it."""
    return ((((timestamp >> 16) + _NTP_EPOCH) << 32) | ((timestamp & 0xFFFF) << 16)) % _NTP_ERA


# --- refusals -----------------------------------------------------------------


class Refused(mh.MobilityHeaderError):
    """
    A message that decoded but is not protected as it must be. C{reason} (a
    counter key, under C{refused.}) says why; C{message} is the decoded
    message, not to be acted on; C{timestamp} its replay protection time, if
    it had one.
    """

    reason = "refused"

    def __init__(self, text: str, message: mh.Message,
                 timestamp: int | None = None) -> None:
        super().__init__(text)
        self.message = message
        self.timestamp = timestamp


class UnknownPeer(Refused):
    """No SA with the sender at all: not a configured peer (RFC 4285 5)."""

    reason = "unknown-peer"


class MissingAuthentication(Refused):
    reason = "auth-missing"


class UnknownSPI(Refused):
    reason = "auth-unknown-spi"


class BadAuthenticator(Refused):
    reason = "auth-bad-mac"


class MissingTimestamp(Refused):
    reason = "replay-missing"


class StaleTimestamp(Refused):
    """The timestamp is outside the replay window of the receiver's clock."""

    reason = "replay-stale"


REFUSALS = (UnknownPeer, MissingAuthentication, UnknownSPI, BadAuthenticator,
            MissingTimestamp, StaleTimestamp)


# --- the codec of one end -----------------------------------------------------


class SignalingCodec:
    """
    The Mobility Header codec of one end of the signaling, C{local} (its
    address) in C{role} (C{"lmap"} or C{"mpa"}).

    With C{associations} None, plain L{mh.encode} and L{mh.decode}: no
    protection (an explicit setting; the daemons warn), but the MPA's PBUs
    still carry RFC 5213's Timestamp option (5.5, its default ordering) and
    the LMAP refuses one outside the window, so that the LMAP orders an MS's
    PBUs across MPAs either way (issue 16, part 2). Otherwise every
    message sent gets a Replay Protection option with the time and an
    Authentication option under the peer's sending SA, and every message
    received must carry both, the MAC right, the time within C{replayWindow}
    seconds of C{now}.
    """

    def __init__(self, profile: mh.WireProfile, local: str, role: str,
                 associations: SecurityAssociations | None = None,
                 replayWindow: float = DEFAULT_REPLAY_WINDOW) -> None:
        if role not in ("lmap", "mpa"):
            raise ValueError(f"role {role!r}: expected 'lmap' or 'mpa'")
        self.profile = profile
        self.local = inet.canonical(local)
        self.role = role
        self.replayWindow = replayWindow
        self._localPacked = inet.packAddress(self.local)
        # Per peer, the Authenticator that signs; per (peer, SPI), those that
        # check: each with the peer's address pair hashed in (rekey).
        self._signing: dict[str, Authenticator] = {}
        self._checking: dict[tuple[str, int], Authenticator] = {}
        self._window = 0
        # The fast path makes the Replay Protection option itself.
        self._opens = profile.decoders.get(mh.OptionType.REPLAY_PROTECTION) is mh.ReplayProtection
        # Unprotected, the MPA stamps its PBUs and the LMAP checks the stamps.
        self._stamps = role == "mpa"
        self.associations: SecurityAssociations | None = None
        self.rekey(associations)

    @property
    def protected(self) -> bool:
        return self.associations is not None

    def rekey(self, associations: SecurityAssociations | None) -> None:
        """Use these SAs from now on (a reload: what was in flight under an SA
        still listed stays valid)."""
        self.associations = associations
        self._window = int(self.replayWindow * _NTP_SECOND)
        signing: dict[str, Authenticator] = {}
        checking: dict[tuple[str, int], Authenticator] = {}
        for peer, listed in (associations.byPeer if associations else {}).items():
            packed = inet.packAddress(peer)
            # Mobility Data begins with the MPA's address, then the LMAP's.
            pair = (packed + self._localPacked if self.role == "lmap"
                    else self._localPacked + packed)
            for sa in listed:
                checking[peer, sa.spi] = sa.between(pair)
            signing[peer] = checking[peer, listed[0].spi]
        self._signing, self._checking = signing, checking

    # --- sending --------------------------------------------------------------

    def encode(self, message: mh.MobilityMessage, peer: str, now: float) -> bytes:
        """The bytes to send C{message} to C{peer}; C{ValueError} when C{peer}
        has no SA (nothing may be sent to it)."""
        if self.associations is None:
            if self._stamps and type(message) is mh.BindingUpdate:
                message = dataclasses.replace(message, options=(
                    *message.options, mh.Timestamp(rfc5213Timestamp(now))))
            return mh.encode(message, self.profile)
        authenticator = self._signing.get(peer)
        if authenticator is None:
            raise ValueError(f"no security association with {peer}")
        # mh.encodeSealed, laid out in C when lmm._hmac was built.
        return authenticator.seal(mh.encodeBody(message, self.profile), message.mhType,
                                  ntpTimestamp(now))

    # --- receiving ------------------------------------------------------------

    def decode(self, data: bytes, peer: str, now: float) -> mh.Message:
        """The message in C{data} from C{peer}: a L{mh.MobilityHeaderError}
        when it does not decode, a L{Refused} one when it is not protected as
        it must be. A protected message comes without its Authentication
        option (checked here, of no use beyond), with its Replay Protection
        option (the LMAP orders a mobile node's PBUs by it)."""
        if self.associations is None:
            plain = mh.decode(data, self.profile)
            if not self._stamps and type(plain) is mh.BindingUpdate:
                stamp = plain.option(mh.Timestamp)
                if stamp is not None:
                    self._checkWindow(ntpFromRfc5213(stamp.timestamp), now, plain)
            return plain
        # The fast path (lmm._hmac): lmm's own layout, its MAC right and its
        # time within the window, found in one call; anything else, and
        # anything mh.decodeBefore does not take as it is, the general decode
        # below decides, so that both give the same answer to every input.
        authenticator = self._signing.get(peer)
        if authenticator is not None and self._opens:
            opened = authenticator.open(data, now, self._window)
            if opened is not None:
                try:
                    fast = mh.decodeBefore(data, self.profile, opened[0],
                                           mh.ReplayProtection(opened[1]))
                except mh.MobilityHeaderError:
                    fast = None
                if fast is not None:
                    return fast
        return self._decodeSealed(data, peer, now)

    def _decodeSealed(self, data: bytes, peer: str, now: float) -> mh.Message:
        """L{decode} of a protected message, in general (RFC 4285's options
        wherever they may be): the reference the fast path agrees with."""
        message, authentication = mh.decodeSealed(data, self.profile)
        if authentication is None:
            raise MissingAuthentication("no Authentication option last", message)
        subtype, spi, covered, authenticationData = authentication
        if subtype != mh.AUTH_SUBTYPE_MN_HA:
            raise MissingAuthentication(f"an Authentication option of subtype {subtype}, "
                                        "not MN-HA", message)
        authenticator = self._checking.get((peer, spi))
        if authenticator is None:
            if peer not in self._signing:
                raise UnknownPeer(f"no security association with {peer}", message)
            raise UnknownSPI(f"SPI {spi} is not one of {peer}'s", message)
        # RFC 4285 5.1: the checksum taken as zero, up to and including the SPI.
        if not authenticator.check(data, covered, authenticationData):
            raise BadAuthenticator(f"the authenticator does not match SPI {spi}", message)
        # Where lmm puts it, last of what is left; elsewhere is allowed too.
        options = message.options
        replay = options[-1] if options else None
        if type(replay) is not mh.ReplayProtection:
            replay = message.option(mh.ReplayProtection)
            if replay is None:
                raise MissingTimestamp("no Replay Protection option", message)
        # _checkWindow's test, inline: this is every protected message's path.
        window = self._window
        if not -window <= ((replay.timestamp - int((now + _NTP_EPOCH) * _NTP_SECOND)
                            + _NTP_HALF) % _NTP_ERA - _NTP_HALF) <= window:
            self._checkWindow(replay.timestamp, now, message)
        return message

    def _checkWindow(self, timestamp: int, now: float, message: mh.Message) -> None:
        """L{StaleTimestamp} unless C{timestamp} (NTP units) is within the
        replay window of C{now}."""
        # The difference modulo 2**64: right across NTP's era change of 2036
        # (ntpTimestamp's own modulo is left out: the same result).
        skew = (timestamp - int((now + _NTP_EPOCH) * _NTP_SECOND) + _NTP_HALF) % _NTP_ERA \
            - _NTP_HALF
        if not -self._window <= skew <= self._window:
            raise StaleTimestamp(f"timestamp {skew / _NTP_SECOND:+.3f} s from this clock, "
                                 f"the window is {self.replayWindow:g} s", message, timestamp)


def main(argv: Sequence[str]) -> int:
    """C{python -m lmm.security newkey [ALGORITHM]}: a new random key, in hex."""
    import secrets
    import sys

    if not argv or argv[0] != "newkey" or len(argv) > 2:
        sys.stderr.write("usage: python -m lmm.security newkey [ALGORITHM]\n"
                         f"  ALGORITHM: one of {', '.join(ALGORITHMS)} (default hmac-sha256-128)\n")
        return 2
    algorithm = ALGORITHMS.get(argv[1] if len(argv) > 1 else HMAC_SHA256_128.name)
    if algorithm is None:
        sys.stderr.write(f"unknown algorithm {argv[1]!r}; one of {', '.join(ALGORITHMS)}\n")
        return 2
    print(secrets.token_hex(max(32, algorithm.minimumKey)))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
