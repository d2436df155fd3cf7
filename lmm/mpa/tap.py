"""twistd lmm-mpa: the Mobility Proxy Agent on an access router."""

from __future__ import annotations

from twisted.application.service import MultiService

from lmm import config
from lmm.config import Setting
from lmm.daemon import LOG_SETTINGS, TUNNEL_SETTINGS, WIRE_SETTINGS, DaemonOptions

SETTINGS = [
    Setting("mpa.address", config.ipv6Address,
            help="this MPA's address: MH source and tunnel end"),
    Setting("mpa.lmap", config.ipv6Address,
            help="the LMAP's address (when the profile names none)"),
    Setting("mpa.access_interfaces", config.listOf(config.string, minimum=1),
            help="the access links Mobile Stations attach to"),
    Setting("registration.lifetime", config.integer(4, 262140), 3600,
            help="registration lifetime asked for in Proxy Binding Updates, seconds"),
    Setting("registration.timeout", config.number(0.01, 60), 1.0,
            help="first Proxy Binding Update retransmission timeout, seconds"),
    Setting("registration.max_retries", config.integer(0, 10), 3,
            help="Proxy Binding Update retransmissions before giving up"),
    Setting("ra.mtu", config.integer(1280, 65535), 1460,
            help="MTU advertised to Mobile Stations (room for the tunnel header)"),
    *TUNNEL_SETTINGS,
    *WIRE_SETTINGS,
    *LOG_SETTINGS,
]


class Options(DaemonOptions):
    daemonName = "lmm-mpa"
    settings = SETTINGS
    longdesc = "Runs an MPA: detects Mobile Stations, registers them with their LMAP."


def makeService(options: Options) -> MultiService:
    # The MPA's services arrive with the MPA issue; the daemon starts empty until then.
    return MultiService()
