"""twistd lmm-mpa: the Mobility Proxy Agent on an access router."""

from __future__ import annotations

import ipaddress

from twisted.application.service import MultiService

from lmm import aaa, config, mh
from lmm.config import ConfigError, Setting
from lmm.daemon import (
    CONTROL_SETTINGS,
    HEARTBEAT_SETTINGS,
    LOG_SETTINGS,
    METRICS_SETTINGS,
    SECURITY_SETTINGS,
    TUNNEL_SETTINGS,
    WIRE_SETTINGS,
    DaemonOptions,
    checkBackend,
    configErrorExit,
)
from lmm.interfaces import IAttachDetector, IAuthenticator, IDHCPv6Relay
from lmm.mpa.agent import (
    DEPARTURE_HOLD,
    REJECT_HOLD_DOWN,
    RETRY_INTERVAL,
    UNAVAILABLE_HOLD_DOWN,
)
from lmm.signaling import MAX_BINDACK_TIMEOUT

# Locally administered (the 02 bit) and inside IANA's documentation block
# 00-00-5E-00-53-xx (RFC 7042): never a real NIC's. Every MPA of a domain must
# advertise the same one, so that an MS keeps its default router's neighbor
# entry across a handover.
DEFAULT_VIRTUAL_LMAP_MAC = "02:00:5e:00:53:01"


def unicastMac(value: object) -> str:
    mac = config.macAddress(value)
    if int(mac[:2], 16) & 1:
        raise ValueError(f"expected a unicast MAC address, {mac} is a group address")
    return mac


def dhcpServer(value: object) -> str:
    address = config.ipv6Address(value)
    parsed = ipaddress.IPv6Address(address)
    if parsed.is_unspecified or parsed.is_link_local:
        raise ValueError(f"expected a global unicast or multicast address, not {address}")
    return address


SETTINGS = [
    Setting("mpa.address", config.ipv6Address,
            help="this MPA's address: MH source and tunnel end"),
    Setting("mpa.lmap", config.ipv6Address,
            help="the LMAP's address (when the profile names none)"),
    Setting("mpa.access_interfaces", config.listOf(config.string, minimum=1),
            help="the access links Mobile Stations attach to"),
    Setting("mpa.virtual_lmap_mac", unicastMac, DEFAULT_VIRTUAL_LMAP_MAC,
            help="the MS's default router's MAC, when the profile names none"),
    Setting("mpa.access_technology", config.oneOf(*mh.ACCESS_TECHNOLOGY_NAMES), "ieee802.3",
            help="rfc5213 wire profile: the access links' technology, sent in the Access "
                 "Technology Type option (RFC 5213 8.5)"),
    Setting("registration.lifetime", config.integer(4, 262140), 3600,
            help="registration lifetime asked for in Proxy Binding Updates, seconds"),
    Setting("registration.timeout", config.number(0.01, 60), 1.0,
            help="first Proxy Binding Update retransmission timeout, seconds"),
    Setting("registration.max_retries", config.integer(0, 10), 3,
            help="Proxy Binding Update retransmissions before giving up"),
    Setting("registration.max_interval", config.number(0.01, 3600), MAX_BINDACK_TIMEOUT,
            help="longest interval between PBU retransmissions, seconds (the back-off's cap)"),
    Setting("registration.retry_interval", config.number(0.1, 86400), RETRY_INTERVAL,
            help="seconds before a registration given up or rejected is tried again"),
    Setting("registration.refresh_fraction", config.number(0.05, 0.95), 0.75,
            help="a binding is refreshed when this fraction of its lifetime has passed"),
    Setting("ra.mtu", config.integer(1280, 65535), 1460,
            help="MTU advertised to Mobile Stations (room for the tunnel header)"),
    Setting("aaa.backend", config.string, "file",
            help="authentication backend by name: file or radius (docs/aaa.md)"),
    Setting("aaa.options", config.table, {}, "the authentication backend's own settings",
            table=True),
    Setting("aaa.reuse", config.number(0, 86400), aaa.REUSE,
            help="seconds an Access-Accept serves the same MS attaching again at once, "
                 "checked with the AAA server beside it (never past its Session-Timeout; "
                 "0: every attach waits for the AAA server)"),
    Setting("attach.backend", config.string, "packet",
            help="attach detection backend by name: packet or explicit (docs/mpa.md)"),
    Setting("attach.options", config.table, {}, "the attach detection backend's own settings",
            table=True),
    Setting("attach.max_authenticating", config.integer(1, 65536), 256,
            help="Access-Requests outstanding at once; new MACs beyond are refused, counted"),
    Setting("attach.max_visitors_per_link", config.integer(1, 1 << 20), 4096,
            help="visitors (held-down MACs included) per access link; new MACs beyond are "
                 "refused, counted"),
    Setting("attach.reject_hold_down", config.number(0, 86400), REJECT_HOLD_DOWN,
            help="seconds a MAC the AAA server rejected gets no answer"),
    Setting("attach.unavailable_hold_down", config.number(0, 86400), UNAVAILABLE_HOLD_DOWN,
            help="seconds a MAC no AAA server answered for (or whose tunnel failed) waits"),
    Setting("attach.departure_hold", config.number(0, 60), DEPARTURE_HOLD,
            help="seconds a registered visitor its base station reported gone waits for a "
                 "handover's revocation, its downlink held, before it is deregistered "
                 "(0: at once; docs/mpa.md)"),
    Setting("dhcp.enabled", config.boolean, True,
            help="relay Mobile Stations' DHCPv6 messages (UDP port 547 on mpa.address)"),
    Setting("dhcp.server", dhcpServer, None,
            help="the DHCPv6 server when the MS profile names none (default: none)"),
    Setting("dhcp.backend", config.string, "udp",
            help="the DHCPv6 relay port's backend, by name (docs/dhcpv6.md)"),
    Setting("dhcp.options", config.table, {}, "the relay port backend's own settings",
            table=True),
    Setting("dhcp.answer_timeout", config.number(0.1, 600), 5.0,
            help="seconds after which a request the server did not answer is logged"),
    Setting("state.path", config.string, "/var/lib/lmm/mpa.state",
            help="where the MPA keeps its Restart Counter (RFC 5847), relative to this file"),
    *CONTROL_SETTINGS,
    *HEARTBEAT_SETTINGS,
    *TUNNEL_SETTINGS,
    *WIRE_SETTINGS,
    *SECURITY_SETTINGS,
    *LOG_SETTINGS,
    *METRICS_SETTINGS,
]


class Options(DaemonOptions):
    daemonName = "lmm-mpa"
    settings = SETTINGS
    longdesc = "Runs an MPA: detects Mobile Stations, registers them with their LMAP."

    def checkConfig(self, path: str) -> None:
        values = self.configValues
        checkBackend(path, "aaa.backend", IAuthenticator, values["aaa.backend"])
        checkBackend(path, "attach.backend", IAttachDetector, values["attach.backend"])
        checkBackend(path, "dhcp.backend", IDHCPv6Relay, values["dhcp.backend"])
        if values["attach.backend"] == "explicit" and values["control.socket"] is None:
            raise ConfigError(path, "control.socket", "the explicit attach backend hears of "
                              "attaches on the control channel: set control.socket")


def makeService(options: Options) -> MultiService:
    from lmm.mpa.service import makeMPAService

    try:
        top = makeMPAService(options.configValues, options.profile, options["config"])
    except ConfigError as e:
        configErrorExit(options, e)
    # A key whose value stops the start (a metrics port in use): one line too.
    top.startFailed = lambda e: configErrorExit(options, e)
    return top
