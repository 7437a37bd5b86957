"""An optional Prometheus /metrics endpoint (prometheus_client), bound to 127.0.0.1 by default."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from foundation.model import Sample

log = logging.getLogger(__name__)

# Sampled metrics exported by name: stored metric -> (Prometheus name, help, label for the key).
# A stored metric not listed here is still in the store and the recap, just not exported.
SAMPLE_EXPORTS: dict[str, tuple[str, str, str]] = {
    "sensor.temperature_c": ("monitor_temperature_celsius", "Temperature of a sensor", "sensor"),
    "ping.rtt_avg_ms": ("monitor_ping_rtt_avg_milliseconds", "Average ping round-trip", "target"),
    "ping.loss_percent": ("monitor_ping_loss_percent", "Ping packet loss", "target"),
    "auth.failed_logins": ("monitor_failed_logins", "Failed logins in the last cycle", "key"),
    "syslog.errors": ("monitor_syslog_errors", "Error lines in the last cycle", "key"),
    "system.load1": ("monitor_load1", "One-minute load average", "key"),
    "system.memory_percent": ("monitor_memory_percent", "Memory in use", "key"),
    "process.count": ("monitor_watched_process_instances", "Instances of a watched process",
                      "process"),
}


class MetricsError(Exception):
    """The /metrics endpoint cannot be served (the port is taken, the address is not local)."""


class MetricsExporter:
    """Holds the agent's Prometheus metrics and updates them from each cycle's report."""

    def __init__(self, host: str) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        r = self.registry
        self.collector_duration = Gauge("monitor_collector_duration_seconds",
                                        "Duration of the collector in the last cycle",
                                        ["host", "collector"], registry=r)
        self.collector_up = Gauge("monitor_collector_up", "1 when the collector ran and its "
                                  "source was available in the last cycle", ["host", "collector"],
                                  registry=r)
        self.collector_errors = Counter("monitor_collector_errors", "Collector failures",
                                        ["host", "collector"], registry=r)
        self.findings = Gauge("monitor_findings", "Findings of the last cycle",
                              ["host", "kind", "severity"], registry=r)
        self.alerts = Counter("monitor_alerts", "Alerts by channel and delivery status",
                              ["host", "channel", "status"], registry=r)
        self.last_cycle = Gauge("monitor_last_cycle_timestamp_seconds",
                                "Start of the last completed cycle", ["host"], registry=r)
        self.cycle_duration = Gauge("monitor_cycle_duration_seconds",
                                    "Duration of the last cycle", ["host"], registry=r)
        self.verdict = Gauge("monitor_verdict_severity", "Overall severity of the last cycle "
                             "(0 none, 1 low, 2 medium, 3 high)", ["host", "by"], registry=r)
        self.sampled = {metric: Gauge(name, text, ["host", label], registry=r)
                        for metric, (name, text, label) in SAMPLE_EXPORTS.items()}
        self.host = host
        self._server: Any = None

    def start(self, port: int, bind: str) -> int:
        """Serve /metrics; returns the bound port (useful with port 0)."""
        try:
            started = start_http_server(port, addr=bind, registry=self.registry)
        except OSError as err:
            raise MetricsError(f"cannot serve metrics on {bind}:{port} (METRICS_PORT, "
                               f"METRICS_BIND): {err.strerror or err}") from err
        self._server = started[0] if isinstance(started, tuple) else None
        bound = self._server.server_port if self._server is not None else port
        log.info("serving Prometheus metrics on http://%s:%d/metrics", bind, bound)
        return bound

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def update(self, report: dict[str, Any], samples: Iterable[tuple[str, Sample]]) -> None:
        """Fold one cycle's report and samples into the metrics."""
        rank = {"none": 0, "low": 1, "medium": 2, "high": 3}
        host = self.host
        with self._lock:
            for name, status in report["collectors"].items():
                self.collector_duration.labels(host, name).set(status["duration_s"])
                self.collector_up.labels(host, name).set(
                    1 if status["ok"] and status.get("available", True) else 0)
                if not status["ok"]:
                    self.collector_errors.labels(host, name).inc()
            self.findings.clear()
            counts: dict[tuple[str, str], int] = {}
            for finding in report["findings"]:
                key = (finding["kind"], finding["severity"])
                counts[key] = counts.get(key, 0) + 1
            for (kind, severity), count in counts.items():
                self.findings.labels(host, kind, severity).set(count)
            for alert in report["alerts"] + report.get("redelivered", []):
                self.alerts.labels(host, alert["channel"], alert["status"]).inc()
            started = datetime.fromisoformat(report["started_at"]).timestamp()
            self.last_cycle.labels(host).set(started)
            self.cycle_duration.labels(host).set(report["duration_s"])
            self.verdict.clear()
            self.verdict.labels(host, report["verdict"]["by"]).set(
                rank.get(report["verdict"]["severity"], 0))
            for _, sample in samples:
                gauge = self.sampled.get(sample.metric)
                if gauge is not None:
                    gauge.labels(host, sample.key).set(sample.value)
