"""twistd lmm-lmap: the Local Mobility Anchor Point."""

from __future__ import annotations

from twisted.application.service import MultiService

from lmm import config
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
    configErrorExit,
)
from lmm.lmap.anchor import DEFAULT_HOME_NETWORK_PREFIX_LENGTH, DEFAULT_MAX_BINDINGS
from lmm.lmap.store import SYNCHRONOUS
from lmm.signaling import MAX_BINDACK_TIMEOUT

SETTINGS = [
    Setting("lmap.address", config.ipv6Address,
            help="this LMAP's address: MH source and tunnel end"),
    Setting("lmap.local_network_prefixes", config.listOf(config.ipv6Prefix, minimum=1),
            help="the Local Network Prefixes this LMAP anchors; in the rfc5213 wire "
                 "profile, the pools each MS's home network prefix is delegated from"),
    Setting("lmap.home_network_prefix_length", config.integer(1, 128),
            DEFAULT_HOME_NETWORK_PREFIX_LENGTH,
            help="rfc5213 wire profile: the length of each MS's home network prefix "
                 "(64 for SLAAC)"),
    Setting("lmap.mpas", config.listOf(config.ipv6Prefix, minimum=1),
            help="addresses or prefixes of the MPAs allowed proxy registration"),
    Setting("lmap.max_lifetime", config.integer(4, 262140), 3600,
            help="the longest registration lifetime granted, seconds"),
    Setting("lmap.max_bindings", config.integer(1, 100_000_000), DEFAULT_MAX_BINDINGS,
            help="most bindings held; a new one past it is refused with 130"),
    Setting("revocation.timeout", config.number(0.01, 60), 1.0,
            help="first Binding Revocation Indication retransmission timeout, seconds"),
    Setting("revocation.max_retries", config.integer(0, 10), 3,
            help="Binding Revocation Indication retransmissions at the doubling back-off "
                 "(then every max_interval while the revoked binding may live)"),
    Setting("revocation.max_interval", config.number(0.01, 3600), MAX_BINDACK_TIMEOUT,
            help="longest interval between retransmissions, seconds (the back-off's cap)"),
    Setting("revocation.disabled_for", config.listOf(config.ipv6Prefix), [],
            help="MPAs (addresses or prefixes) that do not do RFC 5846: sent no revocations"),
    Setting("store.backend", config.oneOf("sqlite", "memory"), "sqlite",
            help="where the Binding Cache is kept: sqlite (survives restarts) or memory"),
    Setting("store.path", config.string, "/var/lib/lmm/lmap.sqlite",
            help="the sqlite store's database file, relative to this file; mode 0600"),
    Setting("store.synchronous", config.oneOf(*SYNCHRONOUS), "normal",
            help="normal: a commit survives the daemon's death; full: also a power cut"),
    Setting("store.checkpoint_interval", config.number(0.05, 3600), 1.0,
            help="seconds between copies of the write-ahead log into the database"),
    *CONTROL_SETTINGS,
    *HEARTBEAT_SETTINGS,
    *TUNNEL_SETTINGS,
    *WIRE_SETTINGS,
    *SECURITY_SETTINGS,
    *LOG_SETTINGS,
    *METRICS_SETTINGS,
]


class Options(DaemonOptions):
    daemonName = "lmm-lmap"
    settings = SETTINGS
    longdesc = "Runs an LMAP: answers Proxy Binding Updates and anchors Local Network Prefixes."

    def checkConfig(self, path: str) -> None:
        prefixes = self.configValues["lmap.local_network_prefixes"]
        for i, a in enumerate(prefixes):
            for b in prefixes[i + 1:]:
                if a.overlaps(b):
                    raise ConfigError(path, "lmap.local_network_prefixes",
                                      f"{a} and {b} overlap")
        length = self.configValues["lmap.home_network_prefix_length"]
        if self.profile.perNodePrefixes:
            for pool in prefixes:
                if pool.prefixlen > length:
                    raise ConfigError(path, "lmap.local_network_prefixes",
                                      f"{pool} is longer than the /{length} home network "
                                      "prefixes delegated from it "
                                      "(lmap.home_network_prefix_length)")


def makeService(options: Options) -> MultiService:
    """The LMAP daemon: its services composed by L{lmm.lmap.service.makeLMAPService}."""
    from lmm.lmap.service import makeLMAPService

    try:
        top = makeLMAPService(options.configValues, options.profile, options["config"])
    except ConfigError as e:
        configErrorExit(options, e)
    # A key whose value stops the start (a metrics port in use): one line too.
    top.startFailed = lambda e: configErrorExit(options, e)
    return top
