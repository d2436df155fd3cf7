"""
The C{allowlist} authenticator: the MACs listed get access, every one with
the same profile; any other MAC is rejected. An example of a backend written
outside lmm: it provides L{lmm.interfaces.IAuthenticator} and is declared in
C{twisted/plugins/lmm_example_backends.py}.

    [aaa]
    backend = "allowlist"
    [aaa.options]
    macs = ["02:00:00:00:00:01", "02:00:00:00:00:02"]
    lmap_address = "2001:db8:ff::1"
    local_network_prefix = "2001:db8:1::/64"
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from lmm import config
from lmm.aaa import DEFAULT_NAI_TEMPLATE, AccessRejected, AccessRequest, Profile, naiFromMac
from lmm.config import Setting
from lmm.interfaces import IAuthenticator, IReactor

log = Logger(namespace="lmm_example.allowlist")

SETTINGS = [
    Setting("macs", config.listOf(config.macAddress), help="the MACs that get access"),
    Setting("lmap_address", config.ipv6Address, help="the LMAP every one is anchored at"),
    Setting("local_network_prefix", config.ipv6Prefix,
            help="the prefix their addresses come from (SLAAC)"),
    Setting("nai_template", config.string, DEFAULT_NAI_TEMPLATE,
            help="the NAI made of a MAC (lmm.aaa.naiFromMac)"),
]


@implementer(IAuthenticator)
class AllowlistAuthenticator:
    name = "allowlist"

    def __init__(self, macs: list[str], lmapAddress: str, prefix: ipaddress.IPv6Network,
                 naiTemplate: str) -> None:
        self.macs = frozenset(macs)
        self.lmapAddress = lmapAddress
        self.prefix = prefix
        self.naiTemplate = naiTemplate
        self.answered = 0

    def authenticate(self, request: AccessRequest) -> defer.Deferred[Profile]:
        self.answered += 1
        if request.mac not in self.macs:
            log.info("{mac} is not on the list", mac=request.mac)
            return defer.fail(AccessRejected(f"{request.mac} is not on the allowlist"))
        nai = request.nai or naiFromMac(self.naiTemplate, request.mac)
        return defer.succeed(Profile(nai=nai, lmapAddress=self.lmapAddress,
                                     localNetworkPrefix=self.prefix))

    def stop(self) -> None:
        pass


def allowlistBackend(settings: Mapping[str, Any], reactor: IReactor) -> AllowlistAuthenticator:
    values = config.parseDocument("allowlist authenticator settings", settings, SETTINGS)
    return AllowlistAuthenticator(values["macs"], values["lmap_address"],
                                  values["local_network_prefix"], values["nai_template"])
