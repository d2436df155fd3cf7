"""
What both daemons share: the --config option, settings every daemon has (the
wire profile, the tunnel backend), and turning a bad file into one clear line.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, ClassVar, Mapping, NoReturn, Sequence

from twisted.python import usage

from lmm import config, heartbeat, logs, mh, security
from lmm.backends import UnknownBackend, findBackend
from lmm.config import ConfigError, Setting
from lmm.interfaces import IReactor, ITunnelDataPlane
from lmm.journal import LOG_SETTINGS
from lmm.live import LiveKeys, SwapError
from lmm.service import SignalingConfig

__all__ = ["CONTROL_SETTINGS", "HEARTBEAT_SETTINGS", "LOG_SETTINGS", "METRICS_SETTINGS",
           "SECURITY_SETTINGS", "TUNNEL_SETTINGS", "WIRE_SETTINGS", "DaemonOptions"]

_OPTION_TYPE = config.integer(2, 255)
_REJECT_STATUS = config.integer(128, 255)


WIRE_SETTINGS = [
    Setting("wire.profile", config.oneOf(*mh.PROFILES), "draft",
            "numbering of the draft's codes and options: draft or rfc5213 (docs/wire.md)"),
    Setting("wire.proxy_registration_not_supported", _REJECT_STATUS, None,
            "status for 'Proxy Registration not supported' (default: the profile's)"),
    Setting("wire.binding_cache_entry_missing", _REJECT_STATUS, None,
            "status for 'Binding Cache Entry missing' (default: the profile's)"),
    Setting("wire.binding_cache_confirmation_type", _OPTION_TYPE, None,
            "option type of the Binding Cache Confirmation option (default: the profile's)"),
    Setting("wire.local_address_type", _OPTION_TYPE, None,
            "option type of the assigned Local Address option (default: the profile's)"),
    Setting("wire.binding_cache_confirmation_length", config.integer(0, 1), None,
            "data bytes in a Binding Cache Confirmation sent: 0 (the draft) or 1 (default: "
            "the profile's, 1, which tshark reads cleanly)"),
]

SECURITY_SETTINGS = [
    Setting("security.authentication", config.boolean, True,
            "authenticate every MPA-LMAP message (RFC 4285); false: none, with a warning "
            "(docs/security.md)"),
    Setting("security.keys", config.string, None,
            "the key file (its security associations), relative to this file; "
            "required with authentication; mode 0600"),
    Setting("security.replay_window", config.number(0.01, 300), security.DEFAULT_REPLAY_WINDOW,
            "largest difference between a message's timestamp and this clock, seconds"),
    Setting("security.max_rate_per_source", config.number(0, 1e7), 5000.0,
            "Mobility Header messages read from one source address a second at most, "
            "the rest dropped unread (0: no limit)"),
]

CONTROL_SETTINGS = [
    Setting("control.socket", config.string, None,
            "path of the control channel's UNIX socket (lmmctl, docs/operations.md), "
            "relative to this file (default: none)"),
]

HEARTBEAT_SETTINGS = [
    Setting("heartbeat.interval", config.number(0, 3600), heartbeat.DEFAULT_INTERVAL,
            "seconds between Heartbeat requests to each peer (RFC 5847; 0: none)"),
    Setting("heartbeat.timeout", config.number(0.01, 3600), heartbeat.DEFAULT_TIMEOUT,
            "seconds a Heartbeat request waits for its response before it is missed"),
    Setting("heartbeat.missed_allowed", config.integer(1, 100),
            heartbeat.DEFAULT_MISSED_ALLOWED,
            "missed Heartbeat requests in a row before a peer is down"),
]


def _metricsListen(value: object) -> str:
    from lmm.metrics import listenDescription  # only read when the key is set

    return listenDescription(value)


METRICS_SETTINGS = [
    Setting("metrics.listen", _metricsListen, None,
            "where the Prometheus metrics are served (/metrics): \"HOST:PORT\" such as "
            "\"[::1]:9480\" or \":9480\", or a Twisted endpoint such as "
            "\"unix:/run/lmm/metrics.sock\" (default: none, metrics off)"),
]

TUNNEL_SETTINGS = [
    Setting("tunnel.backend", config.string, "auto",
            "tunnel data plane backend, by name: auto (seg6 where the kernel has it, "
            "else userspace), seg6, ip6tnl, userspace; recording carries nothing, for "
            "control-plane tests (docs/dataplane.md)"),
    Setting("tunnel.options", config.table, {}, "the backend's own settings", table=True),
]

_WIRE_FIELDS = {
    "wire.proxy_registration_not_supported": "proxyRegistrationNotSupported",
    "wire.binding_cache_entry_missing": "bindingCacheEntryMissing",
    "wire.binding_cache_confirmation_type": "bindingCacheConfirmationType",
    "wire.local_address_type": "localAddressType",
    "wire.binding_cache_confirmation_length": "bindingCacheConfirmationLength",
}


def wireProfile(path: str, values: dict[str, Any]) -> mh.WireProfile:
    """The profile the [wire] table asks for."""
    base = mh.PROFILES[values["wire.profile"]]
    changes: dict[str, Any] = {}
    changed = None
    for key, attribute in _WIRE_FIELDS.items():
        if values[key] is not None:
            changes[attribute] = values[key]
            changed = key
    if changed is None:
        return base
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as e:
        raise ConfigError(path, changed, str(e)) from None


def loadAssociations(path: str | None, values: Mapping[str, Any]
                     ) -> security.SecurityAssociations | None:
    """The security associations the [security] table names (None: no
    authentication); a L{ConfigError} naming the configuration file's
    C{security.keys}, or the key file and its key, when they cannot be used."""
    if not values["security.authentication"]:
        return None
    where = path or "the configuration"
    name = values["security.keys"]
    if name is None:
        raise ConfigError(where, "security.keys",
                          "missing: authentication is on (security.authentication = true) "
                          "and needs a key file (docs/security.md)")
    keyPath = config.besideConfig(path, name)
    try:
        return security.loadKeyFile(keyPath)
    except ConfigError as e:
        if e.key is None:
            raise ConfigError(where, "security.keys", f"{keyPath}: {e.message}") from None
        raise


def heartbeatPolicy(path: str | None, values: Mapping[str, Any]) -> heartbeat.HeartbeatPolicy:
    """The [heartbeat] table's policy; a L{ConfigError} naming the key that does not fit."""
    try:
        return heartbeat.HeartbeatPolicy(values["heartbeat.interval"],
                                          values["heartbeat.timeout"],
                                          values["heartbeat.missed_allowed"])
    except ValueError as e:
        raise ConfigError(path or "the configuration", "heartbeat.timeout", str(e)) from None


def signalingConfig(path: str | None, values: Mapping[str, Any], profile: mh.WireProfile,
                    local: str, role: str) -> SignalingConfig:
    """The signaling's protection as the configuration asks for it (the
    [security] table) at C{local}, in C{role}."""
    associations = loadAssociations(path, values)
    codec = security.SignalingCodec(profile, local, role, associations,
                                    values["security.replay_window"])
    keyFile = (None if associations is None
               else config.besideConfig(path, values["security.keys"]))
    return SignalingConfig(codec, keyFile, values["security.max_rate_per_source"])


def commonLiveKeys(core: Any, path: str | None) -> list[LiveKeys]:
    """
    What a reload applies live in both daemons (L{lmm.live.Reloader}): the
    tunnel backend (swapped, make before break), C{log.level}, and the
    signaling's protection -- the key file is read again at every reload (a
    key rollover: its contents change, not its name), the replay window and
    the per-source limit. Turning authentication on or off needs a restart.
    """

    def tunnel(values: Mapping[str, Any]) -> Any:
        from lmm.dataplane.swapping import AUTO, tunnelConfig

        plane = core.dataPlane
        name, options = values["tunnel.backend"], dict(values["tunnel.options"])
        if name == AUTO and plane.name in ("seg6", "userspace"):
            name = plane.name  # what auto picked at start; it would pick it again

        def swapped(result: Any) -> None:
            plane.config = tunnelConfig(values, plane.current, path)

        if name == plane.name:
            if options != dict(plane.config.options if plane.config else {}):
                raise SwapError(f"tunnel.options changed for the backend in use ({name}): "
                                "swap to another backend and back, or restart")
            swapped(None)
            return None
        return plane.swap(name, options).addCallback(swapped)

    def security(values: Mapping[str, Any]) -> None:
        signaling = core.signaling
        codec = signaling.codec
        if values["security.authentication"] != (codec.associations is not None):
            return  # on or off: a restart (it is named as needing one)
        associations = loadAssociations(path, values)
        codec.replayWindow = values["security.replay_window"]
        codec.rekey(associations)
        if associations is not None:
            signaling.keyFile = config.besideConfig(path, values["security.keys"])
        limiter = signaling.sources
        limiter.rate = values["security.max_rate_per_source"]
        limiter.burst = max(1.0, limiter.rate)

    return [
        LiveKeys(("tunnel.backend", "tunnel.options"), tunnel),
        LiveKeys(("log.level",), lambda values: setLogLevel(core, values["log.level"])),
        LiveKeys(("security.keys", "security.replay_window", "security.max_rate_per_source"),
                 security, always=True),
    ]


def setLogLevel(core: Any, level: str) -> None:
    """A reload's C{log.level}: the journal's protocol steps and every other
    logger of the process (L{lmm.logs.setLevel})."""
    core.journal.setLevel(level)
    logs.setLevel(level)


def controlSocket(path: str | None, values: Mapping[str, Any]) -> str | None:
    """The control channel's socket, C{control.socket} relative to the
    configuration file like every path it names (None: no channel)."""
    name = values["control.socket"]
    return None if name is None else config.besideConfig(path, name)


def checkBackend(path: str, key: str, interface: Any, name: str) -> None:
    try:
        findBackend(interface, name)
    except UnknownBackend as e:
        raise ConfigError(path, key, str(e)) from None


def backendError(e: Exception, path: str, key: str) -> ConfigError:
    """A backend's complaint about its own table, as an error of the daemon's file."""
    if isinstance(e, ConfigError):
        if e.path and os.path.isfile(e.path):
            return e  # it names a file of its own (a profile file) and the key there
        where = f"{key}.{e.key}" if e.key else key
        message = e.message if e.path.endswith(" settings") else f"{e.path}: {e.message}"
        return ConfigError(path, where, message)
    return ConfigError(path, key, str(e))


def buildBackend(interface: Any, name: str, settings: Mapping[str, Any], reactor: IReactor,
                 path: str, key: str) -> Any:
    """Build backend C{name}; a bad C{settings} table gives a L{ConfigError}
    naming the daemon's file C{path} and C{key} (C{"aaa.options"})."""
    try:
        return findBackend(interface, name).build(settings, reactor)
    except (ConfigError, ValueError) as e:
        raise backendError(e, path, key) from None


def configErrorExit(options: DaemonOptions, error: ConfigError) -> NoReturn:
    """As for a bad key: one line and exit status 1, not a traceback."""
    sys.stderr.write(f"{options.daemonName}: configuration error: {error}\n")
    raise SystemExit(1) from None


#: twistd's own default pidfile, the same for every daemon started from one folder.
TWISTD_PIDFILE = "twistd.pid"


def pidfileName(daemonName: str, configPath: str | None) -> str:
    """The pidfile a daemon gets when twistd's C{--pidfile} is left at its
    default: C{lmm-mpa.pid} for C{--config mpa.toml}, C{lmm-mpa-mpa2.pid} for
    C{mpa2.toml} (an LMAP and MPAs started from one folder each get their own;
    docs/operations.md)."""
    stem = os.path.splitext(os.path.basename(configPath or ""))[0]
    short = daemonName.removeprefix("lmm-")
    if not stem or stem == short:
        return f"{daemonName}.pid"
    return f"{daemonName}-{stem}.pid"


class DaemonOptions(usage.Options):
    """twistd options for an lmm daemon: --config FILE, checked at once."""

    daemonName: ClassVar[str]
    settings: ClassVar[Sequence[Setting]]
    optParameters = [["config", "c", None, "The configuration file (TOML); samples in etc/."]]

    configValues: dict[str, Any]
    profile: mh.WireProfile

    def getUsage(self, width: int | None = None) -> str:
        return (super().getUsage(width) + "\nConfiguration keys:\n"
                + config.describe(self.settings) + "\n")

    def loadConfig(self, path: str) -> None:
        """Read and check the file; raise L{ConfigError}."""
        self.configValues = config.load(path, self.settings)
        self.profile = wireProfile(path, self.configValues)
        checkBackend(path, "tunnel.backend", ITunnelDataPlane, self.configValues["tunnel.backend"])
        self.checkConfig(path)

    def checkConfig(self, path: str) -> None:
        """Checks across keys, for subclasses; raise L{ConfigError}."""

    @classmethod
    def read(cls, path: str) -> dict[str, Any]:
        """The file's values, read and checked as at start (a reload's);
        L{ConfigError} for a bad one."""
        options = cls()
        options.loadConfig(path)
        return options.configValues

    def namePidfile(self) -> None:
        """A pidfile named after this daemon (L{pidfileName}) when twistd's
        options (C{self.parent}) still hold twistd's default C{twistd.pid}:
        twistd refuses a second daemon with the same pidfile. An explicit
        C{--pidfile FILE} (or C{--pidfile=}, none) is left alone."""
        parent = getattr(self, "parent", None)
        if parent is not None and parent.get("pidfile") == TWISTD_PIDFILE:
            parent["pidfile"] = pidfileName(self.daemonName, self["config"])

    def postOptions(self) -> None:
        self.namePidfile()
        if self["config"] is None:
            raise usage.UsageError("--config FILE is required (samples are in etc/)")
        try:
            self.loadConfig(self["config"])
        except ConfigError as e:
            # One line and a non-zero exit, not twistd's usage dump or a traceback.
            configErrorExit(self, e)
        # Milliseconds in the log, or JSON lines, where twistd would write it
        # (lmm.logs), unless twistd's --logger or --syslog say otherwise.
        parent = getattr(self, "parent", None)
        if parent is not None:
            # twistd's process: log.level holds for all of it, whichever observer logs.
            logs.setLevel(self.configValues["log.level"])
        logs.useDefaultLogger(parent, self.configValues["log.format"])
