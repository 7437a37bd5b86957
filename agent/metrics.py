"""An optional Prometheus /metrics endpoint, bound to 127.0.0.1 by default.

The exported names follow Prometheus' conventions: base units (seconds, ratios, bytes, celsius),
``_total`` counters for counts over cycles, no empty labels and no ``_created`` series, so
``promtool check metrics`` passes. What a stored metric is (its name for people, whether it is a
count per cycle) comes from foundation/series.py; how it is exported is ``SAMPLE_EXPORTS`` here.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from foundation.model import Sample
from foundation.series import metric_spec

log = logging.getLogger(__name__)

MS = 1e-3             # milliseconds -> seconds
PERCENT = 1e-2        # percent -> ratio (0..1)
MIB = float(2**20)    # the collectors' "MB" are MiB (bytes / 2**20) -> bytes


@dataclass(frozen=True)
class Export:
    """How one stored metric is exported: its Prometheus name, the collector that writes it, the
    factor to its base unit and the label that carries its key (None: it has no key)."""

    name: str              # a count per cycle (MetricSpec.per_cycle) is a counter: "..._total"
    collector: str
    scale: float = 1.0
    label: str | None = None


# Stored metric -> how /metrics shows it. A stored metric not listed here is still in the store,
# the recap and the dashboard, just not exported.
SAMPLE_EXPORTS: dict[str, Export] = {
    "sensor.temperature_c": Export("monitor_temperature_celsius", "sensors", label="sensor"),
    "ping.rtt_avg_ms": Export("monitor_ping_rtt_average_seconds", "ping", MS, "target"),
    "ping.loss_percent": Export("monitor_ping_loss_ratio", "ping", PERCENT, "target"),
    "syslog.lines": Export("monitor_syslog_lines_total", "syslog"),
    "syslog.errors": Export("monitor_syslog_error_lines_total", "syslog"),
    "syslog.malformed": Export("monitor_syslog_malformed_lines_total", "syslog"),
    "auth.failed_logins": Export("monitor_auth_failed_logins_total", "auth_log"),
    "auth.accepted_logins": Export("monitor_auth_accepted_logins_total", "auth_log"),
    "auth.invalid_users": Export("monitor_auth_invalid_user_attempts_total", "auth_log"),
    "auth.sudo_failures": Export("monitor_auth_sudo_failures_total", "auth_log"),
    "auth.preauth_probes": Export("monitor_auth_preauth_probes_total", "auth_log"),
    "containers.running": Export("monitor_containers_running", "containers"),
    "container.up": Export("monitor_container_up", "containers", label="container"),
    "container.restart_count": Export("monitor_container_restarts", "containers",
                                      label="container"),
    "llm_runtimes.count": Export("monitor_llm_runtimes", "llm_runtimes"),
    "llm_runtimes.external_connections": Export("monitor_llm_runtime_external_connections",
                                                "llm_runtimes"),
    "ollama.latency_ms": Export("monitor_ollama_latency_seconds", "llm_runtimes", MS),
    "llm_traffic.requests": Export("monitor_llm_provider_requests_total", "llm_traffic"),
    "llm_traffic.request_bytes": Export("monitor_llm_provider_sent_bytes_total", "llm_traffic"),
    "llm_traffic.response_bytes": Export("monitor_llm_provider_received_bytes_total",
                                         "llm_traffic"),
    "llm_traffic.secret_requests": Export("monitor_llm_provider_secret_requests_total",
                                          "llm_traffic"),
    "system.memory_percent": Export("monitor_memory_used_ratio", "processes", PERCENT),
    "system.load1": Export("monitor_load1", "processes"),
    "processes.count": Export("monitor_processes", "processes"),
    "process.count": Export("monitor_watched_process_instances", "processes", label="process"),
    "process.memory_rss_mb": Export("monitor_watched_process_resident_memory_bytes", "processes",
                                    MIB, "process"),
    "nmap.hosts_up": Export("monitor_nmap_hosts_up", "nmap"),
    "nmap.open_ports": Export("monitor_nmap_open_ports", "nmap"),
}

GAUGE, COUNTER = "gauge", "counter"
Rows = Iterable[tuple[tuple[str, ...], float]]   # (label values after host, value) of one family
ALERT_STATUSES = ("sent", "queued", "suppressed", "failed")
SEVERITY_RANK = {"none": 0, "low": 1, "medium": 2, "high": 3}
CLIENT_TIMEOUT_S = 30.0    # a client that stops sending mid-request gives up its thread


class MetricsError(Exception):
    """The /metrics endpoint cannot be served (the port is taken, the address is not local)."""


def is_counter(metric: str) -> bool:
    """Whether a stored metric is exported as a counter: a count per cycle, summed over cycles."""
    return metric_spec(metric).per_cycle


def help_text(metric: str) -> str:
    """The HELP line of an exported stored metric, from its declaration for people."""
    export = SAMPLE_EXPORTS[metric]
    text = metric_spec(metric).name
    if export.label:
        text += f", by {export.label}"
    return text + (" (counted since the agent started)" if is_counter(metric) else "")


class MetricsExporter:
    """Holds the agent's Prometheus metrics and updates them from each cycle's report.

    ``collectors`` and ``channels`` (the enabled collectors, the configured alert channels) get
    their error counters at 0 from the start, so a rate or an alert rule has a series before the
    first failure; ``interval_s`` is exported so a rule can tell a stalled agent.
    """

    def __init__(self, host: str, collectors: Sequence[str] = (), channels: Iterable[str] = (),
                 interval_s: float | None = None) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._started = time.time()
        self._interval_s = interval_s
        self._collector_up: dict[str, float] = {}
        self._collector_duration: dict[str, float] = {}
        self._collector_errors: dict[str, float] = {}
        self._alerts: dict[tuple[str, str], float] = {}
        self._findings: dict[tuple[str, str], float] = {}
        self._verdict: tuple[str, float] | None = None
        self._last_cycle: float | None = None
        self._cycle_duration: float | None = None
        self._gauges: dict[str, dict[tuple[str, str], float]] = {}   # by collector: (metric, key)
        self._counts: dict[tuple[str, str], float] = {}                # (metric, key)
        for name in collectors:
            self._seed_collector(name)
        for channel in channels:
            self._seed_channel(channel)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def _seed_collector(self, name: str) -> None:
        self._collector_errors.setdefault(name, 0.0)
        for metric, export in SAMPLE_EXPORTS.items():
            if export.collector == name and export.label is None and is_counter(metric):
                self._counts.setdefault((metric, ""), 0.0)

    def _seed_channel(self, channel: str) -> None:
        for status in ALERT_STATUSES:
            self._alerts.setdefault((channel, status), 0.0)

    # -- serving ----------------------------------------------------------------------------------

    def start(self, port: int, bind: str) -> int:
        """Serve /metrics; returns the bound port (useful with port 0)."""
        try:
            ipv6 = ipaddress.ip_address(bind).version == 6
        except ValueError as err:
            raise MetricsError(f"cannot serve metrics on {bind!r} (METRICS_BIND): "
                               "not an IP address") from err
        server_class = _MetricsServer6 if ipv6 else _MetricsServer
        try:
            server = make_server(bind, port, make_wsgi_app(self.registry), server_class,
                                 handler_class=_MetricsHandler)
        except OSError as err:
            raise MetricsError(f"cannot serve metrics on {bind}:{port} (METRICS_PORT, "
                               f"METRICS_BIND): {err.strerror or err}") from err
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True,
                                        name="metrics-server")
        self._thread.start()
        bound = int(server.server_port)
        log.info("serving Prometheus metrics on http://%s:%d/metrics",
                 f"[{bind}]" if ipv6 else bind, bound)
        return bound

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- folding a cycle in -----------------------------------------------------------------------

    def update(self, report: Mapping[str, Any], samples: Iterable[tuple[str, Sample]]) -> None:
        """Fold one cycle's report and samples (collector, sample) into the metrics."""
        fresh: dict[str, dict[tuple[str, str], float]] = {}
        counted: dict[tuple[str, str], float] = {}
        for collector, sample in samples:
            export = SAMPLE_EXPORTS.get(sample.metric)
            if export is None or bool(sample.key) != (export.label is not None):
                continue  # not exported, or a key where none is declared (or none where one is)
            series = (sample.metric, sample.key)
            value = float(f"{sample.value * export.scale:.12g}")  # 2.1e-05, not 2.1000000000000002e-05
            if is_counter(sample.metric):
                counted[series] = counted.get(series, 0.0) + value
            else:
                fresh.setdefault(collector, {})[series] = value
        findings: dict[tuple[str, str], float] = {}
        for finding in report["findings"]:
            key = (finding["kind"], finding["severity"])
            findings[key] = findings.get(key, 0.0) + 1
        with self._lock:
            for name, status in report["collectors"].items():
                self._seed_collector(name)
                up = bool(status["ok"] and status.get("available", True))
                self._collector_up[name] = 1.0 if up else 0.0
                self._collector_duration[name] = float(status["duration_s"])
                if not status["ok"]:
                    self._collector_errors[name] += 1
                if not up:  # what a failed collector or a missing source last said is not known now
                    self._gauges.pop(name, None)
            # a collector that ran without samples (a scan still running) keeps its last values
            self._gauges.update(fresh)
            for series, value in counted.items():
                self._counts[series] = self._counts.get(series, 0.0) + value
            for alert in [*report["alerts"], *report.get("redelivered", [])]:
                self._seed_channel(alert["channel"])
                key = (alert["channel"], alert["status"])
                self._alerts[key] = self._alerts.get(key, 0.0) + 1
            self._findings = findings
            self._verdict = (report["verdict"]["by"],
                             float(SEVERITY_RANK.get(report["verdict"]["severity"], 0)))
            self._last_cycle = datetime.fromisoformat(report["started_at"]).timestamp()
            self._cycle_duration = float(report["duration_s"])

    # -- the scrape -------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """The metric families of one scrape (prometheus_client's collector interface)."""
        with self._lock:
            families = list(self._agent_families()) + list(self._sample_families())
        return iter(f for f in families if f.samples)

    def _agent_families(self) -> Iterator[Metric]:
        def one(value: float) -> Rows:
            return [((), value)]

        def by_name(values: Mapping[str, float]) -> Rows:
            return [((name,), value) for name, value in values.items()]

        host = self.host
        yield _family(GAUGE, "monitor_start_time_seconds", "When the agent started (Unix time)",
                      [], one(self._started), host)
        if self._interval_s is not None:
            yield _family(GAUGE, "monitor_cycle_interval_seconds", "Time between the starts of "
                          "two cycles (MONITOR_INTERVAL_SECONDS)", [], one(self._interval_s), host)
        if self._last_cycle is not None and self._cycle_duration is not None:
            yield _family(GAUGE, "monitor_last_cycle_timestamp_seconds",
                          "Start of the last completed cycle (Unix time)", [],
                          one(self._last_cycle), host)
            yield _family(GAUGE, "monitor_cycle_duration_seconds", "Duration of the last cycle",
                          [], one(self._cycle_duration), host)
        if self._verdict is not None:
            by, rank = self._verdict
            yield _family(GAUGE, "monitor_verdict_severity", "Overall severity of the last cycle "
                          "(0 none, 1 low, 2 medium, 3 high), by who decided it", ["by"],
                          [((by,), rank)], host)
        yield _family(GAUGE, "monitor_findings", "Open findings of the last cycle",
                      ["kind", "severity"], self._findings.items(), host)
        yield _family(GAUGE, "monitor_collector_up", "1 when the collector ran and its source was "
                      "available in the last cycle", ["collector"], by_name(self._collector_up),
                      host)
        yield _family(GAUGE, "monitor_collector_duration_seconds", "Duration of the collector in "
                      "the last cycle", ["collector"], by_name(self._collector_duration), host)
        yield _family(COUNTER, "monitor_collector_errors_total", "Collector failures",
                      ["collector"], by_name(self._collector_errors), host)
        yield _family(COUNTER, "monitor_alerts_total", "Alert messages by channel and delivery "
                      "status", ["channel", "status"], self._alerts.items(), host)

    def _sample_families(self) -> Iterator[Metric]:
        rows: dict[str, list[tuple[tuple[str, ...], float]]] = {}
        for values in [*self._gauges.values(), self._counts]:
            for (metric, key), value in values.items():
                rows.setdefault(metric, []).append(((key,) if key else (), value))
        for metric, export in SAMPLE_EXPORTS.items():
            yield _family(COUNTER if is_counter(metric) else GAUGE, export.name, help_text(metric),
                          [export.label] if export.label else [], rows.get(metric, []), self.host)


def _family(kind: str, name: str, text: str, labels: list[str], rows: Rows, host: str) -> Metric:
    """One family; every series labelled with the host. A counter gets no ``_created`` series."""
    family: GaugeMetricFamily | CounterMetricFamily = (
        CounterMetricFamily(name, text, labels=["host", *labels]) if kind == COUNTER
        else GaugeMetricFamily(name, text, labels=["host", *labels]))
    for values, value in sorted(rows):
        family.add_metric([host, *values], value)
    return family


# -- the HTTP server: prometheus_client's WSGI app, with clients that hang up taken in stride ------

ROUTINE_ERRORS = (ConnectionError, TimeoutError)   # reset, broken pipe, aborted; a silent client


class _MetricsHandler(WSGIRequestHandler):
    """Serves one request; logs requests at debug level instead of printing them."""

    timeout = CLIENT_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics client %s: %s", self.client_address[0], format % args)


class _MetricsServer(ThreadingMixIn, WSGIServer):
    """A thread per request; a client that resets or leaves is routine, not a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver prints a traceback to stderr here; log instead, quietly when routine."""
        err = sys.exc_info()[1]
        if isinstance(err, ROUTINE_ERRORS):
            log.debug("metrics client %s went away: %s", client_address[0], err)
        else:
            log.warning("metrics request from %s failed", client_address[0], exc_info=True)


class _MetricsServer6(_MetricsServer):
    address_family = socket.AF_INET6
