"""
Network access authentication for the MPA: what is asked, what comes back, and
the profile-file backend.

The MPA authenticates a Mobile Station when it attaches and downloads its
profile (draft section 6.1): its NAI, its LMAP, its Local Network Prefix and
Local Address, the virtual LMAP MAC, how it configures its address, its DHCPv6
server (draft section 7). An L{IAuthenticator} backend does it: RADIUS
(L{lmm.radius}) in production, or L{ProfileFileAuthenticator}, a TOML file of
profiles, for setups without a RADIUS server. See docs/aaa.md.
"""

from __future__ import annotations

import functools
import ipaddress
import string
from dataclasses import dataclass
from typing import Any, Mapping

from twisted.internet import defer
from zope.interface import implementer

from lmm import config
from lmm.config import ConfigError, Setting
from lmm.inet import inNetwork
from lmm.interfaces import IAuthenticator, IReactor
from lmm.logs import Logger

ADDRESS_MODES = ("slaac", "dhcpv6", "manual")

# The usual MAC-authentication practice: the MAC, bare lowercase hex, as the
# user part; the .test realm (RFC 2606) until a deployment sets its own.
DEFAULT_NAI_TEMPLATE = "{mac_plain}@lmm.test"

# The longest NAI that fits a RADIUS User-Name (RFC 2865 section 5).
MAX_NAI_LENGTH = 253


@dataclass(frozen=True)
class AccessRequest:
    """
    What the MPA knows about an MS when it asks for access.

    @ivar mac: the MS's MAC address, lowercase colon form.
    @ivar accessInterface: the access link the MS is on.
    @ivar nai: the NAI from the access authentication (802.1X), or None when
        the link gives only a MAC: the backend then makes one with its NAI
        template (L{naiFromMac}).
    """

    mac: str
    accessInterface: str
    nai: bytes | None = None


@dataclass(frozen=True)
class Profile:
    """
    A Mobile Station's profile (draft sections 6 and 7). None: the AAA server
    did not say; the MPA uses its own configuration or asks the LMAP.

    @ivar addressMode: how the MS gets its Local Address: C{"slaac"},
        C{"dhcpv6"} or C{"manual"}.
    @ivar mayChooseAddress: whether an address the MS picked itself (learned
        from its DAD or its traffic) may be registered (draft section 6).
    @ivar sessionTimeout: seconds the access is granted for, if limited.
    """

    nai: bytes
    lmapAddress: str | None = None
    localNetworkPrefix: ipaddress.IPv6Network | None = None
    localAddress: str | None = None
    virtualLmapMac: str | None = None
    virtualLmapLinkLocal: str | None = None
    addressMode: str = "slaac"
    mayChooseAddress: bool = False
    dhcpServer: str | None = None
    sessionTimeout: int | None = None


class AccessRejected(Exception):
    """The AAA server (or the profile file) said no; C{reason} says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AAAUnavailable(Exception):
    """No AAA server answered; C{reason} says which were tried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- answers reused ----------------------------------------------------------

#: aaa.reuse's default, seconds: how long an Access-Accept may be reused when
#: the same MS attaches again (a handover back, a link that flapped).
REUSE = 300.0
#: The most answers an MPA remembers (least recently used go first): a few
#: hundred bytes each.
MAX_REUSABLE = 16384


class RecentAuthorizations:
    """
    The Access-Accepts an MPA got lately, by the request they answered
    (MAC, access link, the link's NAI), for C{reuse} seconds and never past
    the answer's Session-Timeout. An MS that attaches again within that time
    is served at once with the answer it got, while the MPA asks the AAA
    server again beside it (L{lmm.mpa.agent.MobilityProxyAgent}): a
    handover no longer waits for a RADIUS round trip, and a changed or
    withdrawn authorization still takes effect one round trip later (issue
    15; RFC 2865 5.27: Session-Timeout bounds the service, it is not
    extended). C{reuse} 0: nothing is reused.
    """

    def __init__(self, reuse: float = REUSE, limit: int = MAX_REUSABLE) -> None:
        self.reuse = reuse
        self.limit = limit
        # Insertion order is use order: dicts keep it, a remembered one is
        # moved to the end.
        self._answers: dict[AccessRequest, tuple[Profile, float, float]] = {}

    def remember(self, request: AccessRequest, profile: Profile, now: float) -> None:
        """C{profile} answered C{request} at C{now}."""
        answers = self._answers
        answers.pop(request, None)
        if self.reuse <= 0:
            return
        until = now + self.reuse
        if profile.sessionTimeout:
            until = min(until, now + profile.sessionTimeout)
        answers[request] = (profile, now, until)
        while len(answers) > self.limit:
            del answers[next(iter(answers))]

    def recall(self, request: AccessRequest, now: float) -> tuple[Profile, float] | None:
        """The profile that answered C{request} and when it did, if it may
        still be reused at C{now}."""
        found = self._answers.get(request)
        if found is None:
            return None
        profile, answeredAt, until = found
        if until <= now or answeredAt + self.reuse <= now:
            del self._answers[request]
            return None
        return profile, answeredAt

    def forget(self, request: AccessRequest) -> None:
        self._answers.pop(request, None)

    def __len__(self) -> int:
        return len(self._answers)


# --- NAI from a MAC ---------------------------------------------------------


def _macForms(mac: str) -> dict[str, str]:
    octets = config.macAddress(mac).split(":")
    forms = {
        "mac": "-".join(octets),  # RFC 3580 Calling-Station-Id style
        "mac_colon": ":".join(octets),
        "mac_plain": "".join(octets),
    }
    # Upper-case variants: RFC 3580 writes Calling-Station-Id in upper case.
    forms.update({name.upper(): value.upper() for name, value in list(forms.items())})
    return forms


NAI_PLACEHOLDERS = tuple(_macForms("00:00:00:00:00:00"))


@functools.lru_cache(maxsize=64)
def _templatePieces(template: str) -> tuple[tuple[str, str | None], ...]:
    # Parsed once per template (a daemon has one or two), not per attach.
    pieces = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if field is not None and field not in NAI_PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{field}}} in NAI template {template!r}; "
                             f"known: {', '.join('{' + p + '}' for p in NAI_PLACEHOLDERS)}")
        if spec or conversion:
            raise ValueError(f"NAI template {template!r}: placeholders take no format or "
                             f"conversion")
        pieces.append((literal, field))
    return tuple(pieces)


def naiFromMac(template: str, mac: str) -> bytes:
    """
    Make an NAI from a MAC address, for links that give only a MAC.

    @param template: text with placeholders: C{{mac}} (C{aa-bb-cc-dd-ee-ff},
        the RFC 3580 Calling-Station-Id style), C{{mac_colon}}
        (C{aa:bb:cc:dd:ee:ff}), C{{mac_plain}} (C{aabbccddeeff}), and the
        same in upper case (C{{MAC}}, C{{MAC_COLON}}, C{{MAC_PLAIN}}).
    @param mac: a MAC address, colon form.
    @raise ValueError: an unknown placeholder, a bad MAC, or an empty or
        over-long result.
    """
    forms = _macForms(mac)
    nai = "".join(literal + (forms[field] if field is not None else "")
                  for literal, field in _templatePieces(template)).encode("utf-8")
    if not nai:
        raise ValueError("NAI template makes an empty NAI")
    if len(nai) > MAX_NAI_LENGTH:
        raise ValueError(f"NAI template makes a {len(nai)}-octet NAI; at most "
                         f"{MAX_NAI_LENGTH} fit a RADIUS User-Name")
    return nai


def naiTemplate(value: Any) -> str:
    """Configuration parser for an NAI template: checked once, at load time."""
    text = config.string(value)
    naiFromMac(text, "02:00:00:00:00:01")
    return text


def naiParser(value: Any) -> bytes:
    """Configuration parser for an NAI."""
    nai = config.string(value).encode("utf-8")
    if len(nai) > MAX_NAI_LENGTH:
        raise ValueError(f"an NAI has at most {MAX_NAI_LENGTH} octets, this one {len(nai)}")
    return nai


def linkLocalAddress(value: Any) -> str:
    """Configuration parser for an IPv6 link-local address."""
    address = config.ipv6Address(value)
    if not ipaddress.IPv6Address(address).is_link_local:
        raise ValueError(f"expected a link-local address (fe80::/10), got {value!r}")
    return address


def checkProfile(profile: Profile, requirePrefixOrAddress: bool) -> tuple[str | None, str] | None:
    """
    What makes C{profile} unusable for the MPA, or None: the profile-file key
    at fault (None: the profile as a whole) and why. Both backends apply the
    same rule (docs/aaa.md).
    """
    if requirePrefixOrAddress and profile.localNetworkPrefix is None \
            and profile.localAddress is None:
        return None, "neither a Local Network Prefix nor a Local Address"
    if profile.localNetworkPrefix is not None and profile.localAddress is not None \
            and not inNetwork(profile.localAddress, profile.localNetworkPrefix):
        return "local_address", (f"Local Address {profile.localAddress} is outside the Local "
                                 f"Network Prefix {profile.localNetworkPrefix}")
    return None


# --- the profile file ------------------------------------------------------

# Keys of a [[profile]] table, with the Profile field each one fills.
PROFILE_SETTINGS = [
    Setting("nai", naiParser, None, "the MS's NAI"),
    Setting("mac", config.macAddress, None, "the MS's MAC address"),
    Setting("lmap_address", config.ipv6Address, None, "the LMAP's address"),
    Setting("local_network_prefix", config.ipv6Prefix, None, "the Local Network Prefix"),
    Setting("local_address", config.ipv6Address, None, "the Local Address"),
    Setting("virtual_lmap_mac", config.macAddress, None, "the virtual LMAP MAC"),
    Setting("virtual_lmap_link_local", linkLocalAddress, None,
            "the virtual LMAP's link-local address"),
    Setting("address_mode", config.oneOf(*ADDRESS_MODES), "slaac",
            "how the MS configures its address"),
    Setting("may_choose_address", config.boolean, False,
            "whether the MS may choose its own address"),
    Setting("dhcp_server", config.ipv6Address, None, "the MS's DHCPv6 server"),
    Setting("session_timeout", config.integer(1, 2**32 - 1), None,
            "seconds the access is granted for"),
]

_FIELDS = {
    "lmap_address": "lmapAddress",
    "local_network_prefix": "localNetworkPrefix",
    "local_address": "localAddress",
    "virtual_lmap_mac": "virtualLmapMac",
    "virtual_lmap_link_local": "virtualLmapLinkLocal",
    "address_mode": "addressMode",
    "may_choose_address": "mayChooseAddress",
    "dhcp_server": "dhcpServer",
    "session_timeout": "sessionTimeout",
}


@dataclass(frozen=True)
class ProfileEntry:
    """One [[profile]] of the file: who it is for, and what they get."""

    nai: bytes | None
    mac: str | None
    fields: Mapping[str, Any]

    def profile(self, nai: bytes) -> Profile:
        return Profile(nai=nai, **self.fields)


def loadProfiles(path: str, requirePrefixOrAddress: bool = True) -> list[ProfileEntry]:
    """
    Read a profile file; raise L{ConfigError} naming the file and the key,
    like C{profile[2].local_address} (profiles counted from 0).
    """
    document = config.readToml(path)
    for key in document:
        if key != "profile":
            raise ConfigError(path, key, "unknown key; the file holds [[profile]] tables only")
    tables = document.get("profile", [])
    if not isinstance(tables, list):
        raise ConfigError(path, "profile", "expected [[profile]] tables")
    entries: list[ProfileEntry] = []
    byNai: dict[bytes, int] = {}
    byMac: dict[str, int] = {}
    for index, table in enumerate(tables):
        where = f"profile[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(path, where, "expected a table")
        try:
            values = config.parseDocument(path, table, PROFILE_SETTINGS)
        except ConfigError as e:
            raise ConfigError(path, f"{where}.{e.key}", e.message) from None
        nai, mac = values["nai"], values["mac"]
        if nai is None and mac is None:
            raise ConfigError(path, where, "needs a nai or a mac (or both) to say whom it is for")
        if nai in byNai:
            raise ConfigError(path, f"{where}.nai", f"same NAI as profile[{byNai[nai]}]")
        if mac in byMac:
            raise ConfigError(path, f"{where}.mac", f"same MAC as profile[{byMac[mac]}]")
        entry = ProfileEntry(nai, mac, {field: values[key] for key, field in _FIELDS.items()})
        problem = checkProfile(entry.profile(b"-"), requirePrefixOrAddress)
        if problem is not None:
            field, message = problem
            if field is None:
                raise ConfigError(path, where, message + " (set local_network_prefix or "
                                  "local_address, or require_prefix_or_address = false)")
            raise ConfigError(path, f"{where}.{field}", message)
        if nai is not None:
            byNai[nai] = index
        if mac is not None:
            byMac[mac] = index
        entries.append(entry)
    return entries


@implementer(IAuthenticator)
class ProfileFileAuthenticator:
    """
    Profiles from a TOML file: the embedded default for setups without a
    RADIUS server. An MS with no profile is rejected.

    A request with an NAI is matched by NAI, then by MAC; a request with only
    a MAC by MAC, then by the NAI its template makes. A profile naming both a
    NAI and a MAC matches only when both agree with the request.
    """

    name = "file"
    log = Logger()

    def __init__(self, path: str, naiTemplate: str = DEFAULT_NAI_TEMPLATE,
                 requirePrefixOrAddress: bool = True) -> None:
        self.path = path
        self.naiTemplate = naiTemplate
        self.entries = loadProfiles(path, requirePrefixOrAddress)
        self._byNai = {e.nai: e for e in self.entries if e.nai is not None}
        self._byMac = {e.mac: e for e in self.entries if e.mac is not None}
        self.log.info("{count} MS profile(s) from {path}", count=len(self.entries), path=path)

    def lookup(self, request: AccessRequest) -> Profile:
        """The profile for C{request}, or L{AccessRejected}."""
        if request.nai is not None:
            nai = request.nai
            entry = self._byNai.get(nai) or self._byMac.get(request.mac)
            if entry is not None and entry.nai is not None and entry.nai != nai:
                raise AccessRejected(f"MAC {request.mac} belongs to another NAI")
        else:
            nai = naiFromMac(self.naiTemplate, request.mac)
            entry = self._byMac.get(request.mac) or self._byNai.get(nai)
            if entry is not None and entry.nai is not None:
                nai = entry.nai  # the profile knows who this MAC is
        if entry is None:
            raise AccessRejected(f"no profile for {nai.decode('utf-8', 'replace')} "
                                 f"({request.mac}) in {self.path}")
        if entry.mac is not None and entry.mac != request.mac:
            raise AccessRejected(f"{nai.decode('utf-8', 'replace')} may not attach from "
                                 f"MAC {request.mac}")
        return entry.profile(nai)

    def authenticate(self, request: AccessRequest) -> defer.Deferred[Profile]:
        try:
            try:
                profile = self.lookup(request)
            except ValueError as e:  # a MAC the template cannot use
                raise AccessRejected(f"cannot authenticate {request}: {e}") from None
        except AccessRejected as e:
            # The agent's visitor.rejected says it at info, the first of a second.
            self.log.debug("access rejected: MAC {mac} on {interface}: {reason}",
                           mac=request.mac, interface=request.accessInterface, reason=e.reason)
            return defer.fail(e)
        # Once per MS: debug, as the MPA's other per-visitor events (docs/operations.md).
        self.log.debug("access accepted: {nai} (MAC {mac} on {interface})",
                       nai=profile.nai.decode("utf-8", "replace"), mac=request.mac,
                       interface=request.accessInterface)
        return defer.succeed(profile)

    def stop(self) -> None:
        pass


# --- backend factory ---------------------------------------------------------

FILE_SETTINGS = [
    Setting("path", config.string, help="the profile file (TOML, sample in etc/profiles.toml)"),
    Setting("nai_template", naiTemplate, DEFAULT_NAI_TEMPLATE,
            "NAI for an MS the link gives only a MAC for"),
    Setting("require_prefix_or_address", config.boolean, True,
            "reject profiles with neither a prefix nor an address"),
]


def backendSettings(label: str, settings: Mapping[str, Any],
                    declared: list[Setting]) -> dict[str, Any]:
    """
    Check a backend's settings table; a bad one gives L{ConfigError} with
    C{label} in place of the file name (the daemon's file is not known here).
    """
    return config.parseDocument(label, settings, declared)


def fileBackend(settings: Mapping[str, Any], reactor: IReactor) -> ProfileFileAuthenticator:
    """Build the C{file} authenticator; keys in L{FILE_SETTINGS}."""
    values = backendSettings("file authenticator settings", settings, FILE_SETTINGS)
    return ProfileFileAuthenticator(values["path"], values["nai_template"],
                                    values["require_prefix_or_address"])
