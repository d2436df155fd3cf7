"""
Metrics for Prometheus: what the daemons already count, read when scraped
(docs/operations.md, "Metrics").

Off by default; C{metrics.listen} turns it on (L{METRICS_SETTINGS} in
L{lmm.daemon}). Nothing here imports prometheus_client or twisted.web at
module level: a daemon without metrics never loads them (L{metricsService}
does, when it builds the server).

Two parts:
  - L{DaemonCollector}: a prometheus_client collector that reads, at scrape
    time, a core service's C{allCounters()} and state (the Binding Cache's
    size, the Visitor List by state) and turns them into the documented
    families (L{familyOf}: one table, the counters' own names as labels
    where they vary). Every counter also appears whole as
    C{lmm_events_total{daemon, event}}: nothing counted is missing.
  - L{MPALatencies}: the MPA's latency histograms, observed by the service
    (an Access-Request to its answer) and from the agent's
    C{visitor.registered} note (its C{sinceAttach} and C{sincePbu}
    fields). Plain buckets (L{Histogram}): an observation is a bisect and two
    additions, and nothing is measured when metrics are off. The LMAP adds
    nothing to its Proxy Binding Update path: all it exposes is read when
    scraped.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from twisted.application.service import Service
from twisted.python.failure import Failure

from lmm.aaa import AAAUnavailable, AccessRejected
from lmm.actions import Note
from lmm.config import ConfigError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IListeningPort

__all__ = ["BUCKETS", "DaemonCollector", "Histogram", "MPALatencies", "listenDescription",
           "metricsService"]

#: Upper bounds of the latency histograms' buckets, seconds: from a
#: millisecond (an answer from this host) to a minute (retransmissions given up).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0)

#: What an answer of the authenticator is, for C{lmm_mpa_aaa_latency_seconds}.
AAA_RESULTS = ("accept", "reject", "unavailable", "error")


# --- the setting ---------------------------------------------------------------------

_HOST_PORT = re.compile(r"\A(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<v4>[0-9.]*)):(?P<port>\d+)\Z")


def listenDescription(value: Any) -> str:
    """
    C{metrics.listen}: where the metrics server listens, as a Twisted server
    endpoint description (C{"tcp6:9480:interface=\\:\\:1"}, C{"unix:/run/lmm/m.sock"})
    or, as Prometheus exporters take it, C{"HOST:PORT"}: C{"[::1]:9480"},
    C{"192.0.2.1:9480"}, C{":9480"} (every address, IPv6 and IPv4). Returns
    the endpoint description; a ValueError says what is wrong.
    """
    from twisted.internet.endpoints import serverFromString

    if not isinstance(value, str) or not value:
        raise ValueError(f"expected \"HOST:PORT\" or a Twisted endpoint such as "
                         f"\"tcp6:9480:interface=\\:\\:1\", got {value!r}")
    found = _HOST_PORT.match(value)
    if found is not None:
        port = int(found["port"])
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range")
        if found["v6"] is not None:
            description = f"tcp6:{port}:interface=" + found["v6"].replace(":", "\\:")
        elif found["v4"]:
            description = f"tcp:{port}:interface={found['v4']}"
        else:
            description = f"tcp6:{port}:interface=\\:\\:"
    else:
        description = value
    try:
        # Parsed only (nothing listens): the reactor is not needed for that.
        serverFromString(None, description)  # type: ignore[arg-type]
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{value!r} is not a server endpoint: {e}") from None
    return description


# --- latencies ---------------------------------------------------------------------------


class Histogram:
    """Counts of observations per bucket (L{BUCKETS}), their sum and count."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: Sequence[float] = BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: past every bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound is in that bound's bucket (le).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus's buckets: (C{le}, observations up to it), +Inf last."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(self.bounds + (float("inf"),), self.counts):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out


class MPALatencies:
    """
    The MPA's latency histograms.

    @ivar aaa: an Access-Request (the authenticator asked) to its answer, by
        result (L{AAA_RESULTS}).
    @ivar handover: an MS's attach at this MPA to the acceptance of the
        registration that made it registered here (the agent's
        C{visitor.registered} C{sinceAttach}): AAA, the PBU's round trip and
        its retransmissions; for a new MS also the wait for its address.
    @ivar registration: the first transmission of a PBU to its acceptance
        (C{sincePbu}), for every registration that set up or moved a tunnel.
    """

    def __init__(self) -> None:
        self.aaa = {result: Histogram() for result in AAA_RESULTS}
        self.handover = Histogram()
        self.registration = Histogram()

    def answered(self, result: Any, started: float, clock: Callable[[], float]) -> Any:
        """A callback and errback: the authenticator answered C{result}; passes it on."""
        if isinstance(result, Failure):
            error = result.value
            kind = ("reject" if isinstance(error, AccessRejected)
                    else "unavailable" if isinstance(error, AAAUnavailable) else "error")
        else:
            kind = "accept"
        self.aaa[kind].observe(max(0.0, clock() - started))
        return result

    def observe(self, note: Note) -> None:
        """The timings a note carries (the agent's C{visitor.registered})."""
        if note.event != "visitor.registered":
            return
        fields = note.fields
        sinceAttach = fields.get("sinceAttach")
        if sinceAttach is not None:
            self.handover.observe(sinceAttach)
        sincePbu = fields.get("sincePbu")
        if sincePbu is not None:
            self.registration.observe(sincePbu)

    def watching(self, journal: Any) -> Any:
        """C{journal} for the service's L{lmm.service.ActionPerformer}: each
        note observed (L{observe}), then journaled."""
        return _WatchedJournal(journal, self)


class _WatchedJournal:
    def __init__(self, journal: Any, latencies: MPALatencies) -> None:
        self.journal = journal
        self.latencies = latencies

    def note(self, note: Note) -> None:
        self.latencies.observe(note)
        self.journal.note(note)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.journal, name)


# --- the families --------------------------------------------------------------------

#: Counters that are something received and dropped, or not sent: a prefix
#: (ending in ".") or a whole name. C{lmm_drops_total}'s C{reason} is the
#: counter's name.
DROPS = (
    "malformed.", "refused.", "ignored.", "action.failed.", "mh.rate-limited",
    "mh.send-failed.", "mh.send-unprotected", "frame-error.", "frame.bad-mac",
    "frame.unknown-interface", "frame.not-sent", "pba.unmatched", "pba.wrong-source",
    "pba.nai-mismatch", "bra.unmatched", "heartbeat.unmatched", "heartbeat.refused",
    "binding-error.rate-limited", "relay.send-failed.", "relay.send-no-port",
    "access.send-failed.", "access.send-dropped", "access.read-error.",
)

#: The LMAP's: counter name -> (family, labels). C{<status>}: a status code.
_LMAP_FIXED: dict[str, tuple[str, dict[str, str]]] = {
    "pbu.accepted": ("lmm_lmap_pbu", {"result": "accepted", "status": "0"}),
    "binding.created": ("lmm_lmap_bindings_created", {}),
    "pbu.handover": ("lmm_lmap_handovers", {}),
    "pbu.deregistered": ("lmm_lmap_bindings_removed", {"reason": "deregistered"}),
    "binding.expired": ("lmm_lmap_bindings_removed", {"reason": "expired"}),
    "binding.peer-restarted": ("lmm_lmap_bindings_removed", {"reason": "mpa-restarted"}),
    "binding.tunnel-failed": ("lmm_tunnel_operations", {"operation": "add-failed"}),
    "bri.retransmitted": ("lmm_retransmissions", {"message": "bri"}),
}

_MPA_FIXED: dict[str, tuple[str, dict[str, str]]] = {
    "pbu.sent": ("lmm_mpa_pbu_sent", {}),
    "binding.refresh-sent": ("lmm_mpa_pbu_refreshes", {}),
    "pbu.deregistration": ("lmm_mpa_pbu_deregistrations", {}),
    "pbu.retransmitted": ("lmm_retransmissions", {"message": "pbu"}),
    "pba.accepted": ("lmm_mpa_pba", {"result": "accepted", "status": "0"}),
    "aaa.requested": ("lmm_mpa_aaa_requests", {}),
    "aaa.accepted": ("lmm_mpa_aaa_answers", {"result": "accept"}),
    "aaa.rejected": ("lmm_mpa_aaa_answers", {"result": "reject"}),
    "aaa.unavailable": ("lmm_mpa_aaa_answers", {"result": "unavailable"}),
    "aaa.late": ("lmm_mpa_aaa_answers", {"result": "late"}),
    "visitor.attached": ("lmm_mpa_attaches", {}),
    "bri.received": ("lmm_mpa_revocations", {"event": "received"}),
    "visitor.revoked": ("lmm_mpa_revocations", {"event": "revoked"}),
    "bri.unknown": ("lmm_mpa_revocations", {"event": "unknown"}),
    "bri.unknown-source": ("lmm_mpa_revocations", {"event": "unknown-source"}),
    "tunnel.add-failed": ("lmm_tunnel_operations", {"operation": "add-failed"}),
}

_COMMON_FIXED: dict[str, tuple[str, dict[str, str]]] = {
    "tunnel.add": ("lmm_tunnel_operations", {"operation": "add"}),
    "tunnel.remove": ("lmm_tunnel_operations", {"operation": "remove"}),
    "action.failed.RemoveTunnel": ("lmm_tunnel_operations", {"operation": "remove-failed"}),
}

#: Every counter family: name (without C{_total}) -> (help, label names).
#: C{daemon} is added to the families that both daemons have.
COUNTER_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "lmm_events": ("every counter of the daemon, by its name (docs: the COUNTERS tables)",
                   ("daemon", "event")),
    "lmm_drops": ("messages and frames dropped or not sent, by the counter saying why",
                  ("daemon", "reason")),
    "lmm_retransmissions": ("retransmissions, by message (pbu, bri, access-request)",
                            ("daemon", "message")),
    "lmm_tunnel_operations": ("tunnel bindings added to and removed from the data plane, "
                              "and those that failed", ("daemon", "operation")),
    "lmm_lmap_pbu": ("Proxy Binding Updates answered, by result and the PBA's status",
                     ("result", "status")),
    "lmm_lmap_bindings_created": ("new bindings", ()),
    "lmm_lmap_handovers": ("bindings moved to another MPA", ()),
    "lmm_lmap_bindings_removed": ("bindings removed, by reason", ("reason",)),
    "lmm_lmap_revocations": ("Binding Revocation Indications, by event (sent, "
                             "retransmitted, acknowledged, given-up, ...)", ("event",)),
    "lmm_mpa_attaches": ("new visitors (Mobile Stations detected)", ()),
    "lmm_mpa_aaa_requests": ("Access-Requests made (authentications started)", ()),
    "lmm_mpa_aaa_answers": ("answers to authentications, by result", ("result",)),
    "lmm_mpa_aaa_backend": ("the authentication backend's own counters (RADIUS: "
                            "request.sent, server.timeout, ...)", ("event",)),
    "lmm_mpa_pbu_sent": ("Proxy Binding Updates sent, refreshes included, not "
                         "retransmissions", ()),
    "lmm_mpa_pbu_refreshes": ("refreshing Proxy Binding Updates sent", ()),
    "lmm_mpa_pbu_deregistrations": ("deregistrations sent (lifetime 0)", ()),
    "lmm_mpa_pba": ("Proxy Binding Acknowledgements of registrations, by result and "
                    "status", ("result", "status")),
    "lmm_mpa_revocations": ("Binding Revocation Indications received and what came of "
                            "them", ("event",)),
    "lmm_mpa_relay": ("the DHCPv6 relay's counters (its core's and its port's), by event",
                      ("event",)),
}


def familyOf(daemon: str, name: str, bindingCacheEntryMissing: int
             ) -> tuple[str, dict[str, str]] | None:
    """The family (beside C{lmm_events}) counter C{name} of C{daemon} is
    part of, and its labels; None: only C{lmm_events}. Pure."""
    fixed = (_LMAP_FIXED if daemon == "lmap" else _MPA_FIXED).get(name) or _COMMON_FIXED.get(name)
    if fixed is not None:
        return fixed
    for drop in DROPS:
        if name == drop or (drop.endswith(".") and name.startswith(drop)):
            return "lmm_drops", {"reason": name}
    missing = {"result": "confirmation-missing", "status": str(bindingCacheEntryMissing)}
    if daemon == "lmap":
        if name.startswith("pbu.rejected."):
            return "lmm_lmap_pbu", {"result": "rejected", "status": name[13:]}
        if name == "pbu.confirmation-missing":
            return "lmm_lmap_pbu", missing
        if name.startswith("bri."):
            return "lmm_lmap_revocations", {"event": name[4:]}
        if name.startswith("bra.status."):
            return "lmm_lmap_revocations", {"event": "bra-status-" + name[11:]}
    else:
        if name.startswith("pba.rejected."):
            return "lmm_mpa_pba", {"result": "rejected", "status": name[13:]}
        if name == "pba.confirmation-missing":
            return "lmm_mpa_pba", missing
        if name.startswith("pba.invalid."):
            return "lmm_mpa_pba", {"result": "invalid-" + name[12:], "status": "0"}
        if name.startswith("relay."):
            return "lmm_mpa_relay", {"event": name[6:]}
    return None


class DaemonCollector:
    """
    A prometheus_client collector of one daemon's core service (an
    L{lmm.lmap.service.LMAPService} for C{daemon="lmap"}, an
    L{lmm.mpa.service.MPAService} for C{"mpa"}): everything is read when
    scraped, in the reactor's thread.
    """

    def __init__(self, daemon: str, core: Any) -> None:
        if daemon not in ("lmap", "mpa"):
            raise ValueError(f"unknown daemon {daemon!r}")
        self.daemon = daemon
        self.core = core

    def describe(self) -> list[Any]:
        # Nothing to describe ahead: the registry then never collects at register time.
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        daemon, core = self.daemon, self.core
        counters = core.allCounters()
        families: dict[str, Any] = {}

        def family(name: str) -> Any:
            found = families.get(name)
            if found is None:
                help, labels = COUNTER_FAMILIES[name]
                found = families[name] = CounterMetricFamily(name, help, labels=labels)
            return found

        def add(name: str, labels: dict[str, str], value: float) -> None:
            names = COUNTER_FAMILIES[name][1]
            values = {"daemon": daemon, **labels}
            family(name).add_metric([values.get(n, "") for n in names], value)

        missing = int(core.profile.bindingCacheEntryMissing)
        for name in sorted(counters):
            value = counters[name]
            add("lmm_events", {"event": name}, value)
            found = familyOf(daemon, name, missing)
            if found is not None:
                add(found[0], found[1], value)
        authenticator = getattr(core, "authenticator", None)
        # The backend inside a swappable one (lmm.live): its counters restart with a swap.
        backend = getattr(getattr(authenticator, "current", authenticator), "counters", None)
        if daemon == "mpa" and backend:
            for name in sorted(backend):
                add("lmm_mpa_aaa_backend", {"event": name}, backend[name])
                if name == "request.retransmitted":
                    add("lmm_retransmissions", {"message": "access-request"}, backend[name])
        yield from families.values()

        info = GaugeMetricFamily("lmm_tunnel_backend_info", "the tunnel backend carrying "
                                 "the bindings (1, by name)", labels=("daemon", "backend"))
        info.add_metric([daemon, str(core.dataPlane.name)], 1)
        yield info
        if daemon == "lmap":
            yield GaugeMetricFamily("lmm_lmap_bindings", "bindings in the Binding Cache",
                                    value=len(core.anchor.store))
            return
        yield self._visitors(GaugeMetricFamily)
        latencies: MPALatencies | None = getattr(core, "latencies", None)
        if latencies is None:
            return
        aaa = HistogramMetricFamily(
            "lmm_mpa_aaa_latency_seconds", "an Access-Request to its answer, by result",
            labels=("result",))
        for result, histogram in latencies.aaa.items():
            aaa.add_metric([result], histogram.cumulative(), histogram.sum)
        yield aaa
        for name, histogram, help in (
                ("lmm_mpa_handover_latency_seconds", latencies.handover,
                 "an MS's attach at this MPA to its registration's acceptance"),
                ("lmm_mpa_registration_latency_seconds", latencies.registration,
                 "a PBU's first transmission to its acceptance (registrations that set up "
                 "or move a tunnel)")):
            yield HistogramMetricFamily(name, help, buckets=histogram.cumulative(),
                                        sum_value=histogram.sum)

    def _visitors(self, gauge: Any) -> Any:
        from lmm.mpa.visitor import VisitorState

        # Deregistering entries have left the Visitor List (lmm.mpa.visitor).
        counts = {state.value: 0 for state in VisitorState
                  if state is not VisitorState.DEREGISTERING}
        for visitor in self.core.agent.visitors:
            counts[visitor.state.value] = counts.get(visitor.state.value, 0) + 1
        family = gauge("lmm_mpa_visitors", "visitors in the Visitor List, by state",
                       labels=("state",))
        for state, count in counts.items():
            family.add_metric([state], count)
        return family


# --- the server ------------------------------------------------------------------------


def _resource(registry: Any) -> Any:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from twisted.web.resource import Resource

    class Metrics(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            # In the reactor's thread: the counters are not read while they change.
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
            return bytes(generate_latest(registry))

    class Root(Resource):
        def getChild(self, path: bytes, request: Any) -> Any:
            if path == b"metrics":
                return metrics
            return Resource.getChild(self, path, request)

        def render_GET(self, request: Any) -> bytes:
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            return b'<html><body><a href="/metrics">metrics</a></body></html>\n'

    metrics = Metrics()
    return Root()


class MetricsService(Service):
    """
    The metrics' HTTP server on C{description} (a Twisted server endpoint)
    while the daemon runs: C{/metrics} in Prometheus's text format. A port
    it cannot listen on stops the start with a L{ConfigError} naming
    C{metrics.listen} in C{path}.
    """

    name = "metrics"

    def __init__(self, description: str, registry: Any, reactor: Any,
                 path: str | None = None) -> None:
        self.description = description
        self.registry = registry
        self.reactor = reactor
        self.path = path or "the configuration"
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        from twisted.internet.endpoints import serverFromString
        from twisted.web.server import Site

        from lmm.logs import Logger

        site = Site(_resource(self.registry))
        site.noisy = False  # no log line per scrape
        site.log = lambda request: None  # type: ignore[method-assign]
        listening = serverFromString(self.reactor, self.description).listen(site)
        result: list[Any] = []
        listening.addBoth(result.append)
        if result and isinstance(result[0], Failure):
            raise ConfigError(self.path, "metrics.listen",
                              f"cannot listen on {self.description}: "
                              f"{result[0].getErrorMessage()}")
        if result:
            self.port = result[0]
        Service.startService(self)
        Logger(namespace="lmm.metrics").info(
            "metrics for Prometheus at {where}/metrics", where=self.where())

    def where(self) -> str:
        """Where it listens, as an operator writes it: C{[::1]:9480}."""
        if self.port is None:
            return self.description
        address = self.port.getHost()
        host = getattr(address, "host", None)
        if host is None:
            return str(getattr(address, "name", address))
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{address.port}"  # type: ignore[attr-defined]

    def stopService(self) -> Any:
        Service.stopService(self)
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None


def metricsService(daemon: str, core: Any, description: str, reactor: Any,
                   path: str | None = None) -> MetricsService:
    """The metrics server of C{core} (L{DaemonCollector}), with the process's
    own metrics (CPU, memory, open files: prometheus_client's
    C{process_*})."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon, core))
    ProcessCollector(registry=registry)
    return MetricsService(description, registry, reactor, path)
