"""What each stored metric is, for people: a human name and its unit, declared once.

The collectors write samples under these metric names; the messages, the recap, the dashboard and
/metrics read the names and units from here, so a number is never shown without its unit.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """One stored metric: its name for people, its unit as written and as spoken."""

    metric: str
    name: str            # "Ping round trip"
    unit: str            # as written after a number: "ms", "°C", "%", "" for a plain count
    spoken_unit: str     # as said after a number: "milliseconds", "degrees", "percent"
    per_cycle: bool = False   # a count over one cycle (lines, logins), not a level


METRICS: dict[str, MetricSpec] = {m.metric: m for m in (
    MetricSpec("sensor.temperature_c", "Temperature", "°C", "degrees"),
    MetricSpec("ping.rtt_avg_ms", "Ping round trip", "ms", "milliseconds"),
    MetricSpec("ping.loss_percent", "Ping loss", "%", "percent"),
    MetricSpec("syslog.lines", "Log lines", "lines", "lines", per_cycle=True),
    MetricSpec("syslog.errors", "Log errors", "lines", "lines", per_cycle=True),
    MetricSpec("syslog.malformed", "Malformed log lines", "lines", "lines", per_cycle=True),
    MetricSpec("auth.failed_logins", "Failed logins", "logins", "logins", per_cycle=True),
    MetricSpec("auth.accepted_logins", "Logins", "logins", "logins", per_cycle=True),
    MetricSpec("auth.invalid_users", "Logins as unknown users", "attempts", "attempts",
               per_cycle=True),
    MetricSpec("auth.sudo_failures", "sudo refusals", "refusals", "refusals", per_cycle=True),
    MetricSpec("auth.preauth_probes", "SSH probes", "connections", "connections", per_cycle=True),
    MetricSpec("containers.running", "Containers running", "containers", "containers"),
    MetricSpec("container.up", "Container up", "", ""),
    MetricSpec("container.restart_count", "Container restarts", "restarts", "restarts"),
    MetricSpec("llm_runtimes.count", "LLM runtimes", "runtimes", "runtimes"),
    MetricSpec("llm_runtimes.external_connections", "LLM external connections", "connections",
               "connections"),
    MetricSpec("ollama.latency_ms", "Ollama latency", "ms", "milliseconds"),
    MetricSpec("llm_traffic.requests", "LLM requests to providers", "requests", "requests",
               per_cycle=True),
    MetricSpec("llm_traffic.request_bytes", "Bytes sent to LLM providers", "B", "bytes",
               per_cycle=True),
    MetricSpec("llm_traffic.response_bytes", "Bytes from LLM providers", "B", "bytes",
               per_cycle=True),
    MetricSpec("llm_traffic.secret_requests", "LLM requests carrying a secret", "requests",
               "requests", per_cycle=True),
    MetricSpec("system.memory_percent", "Memory in use", "%", "percent"),
    MetricSpec("system.load1", "Load average (1 min)", "", ""),
    MetricSpec("processes.count", "Processes", "processes", "processes"),
    MetricSpec("process.count", "Instances of a watched process", "instances", "instances"),
    MetricSpec("process.memory_rss_mb", "Memory of a watched process", "MB", "megabytes"),
    MetricSpec("nmap.hosts_up", "Hosts up", "hosts", "hosts"),
    MetricSpec("nmap.open_ports", "Open ports", "ports", "ports"),
)}


def metric_spec(metric: str) -> MetricSpec:
    """The declaration of a stored metric; an undeclared one is shown by its own name, no unit."""
    return METRICS.get(metric) or MetricSpec(metric, metric, "", "")


def with_unit(value: float, metric: str, digits: int = 3) -> str:
    """``value`` with the metric's unit, e.g. ``41.5 °C``, ``12 ms``, ``3 %``, ``7 logins``."""
    unit = metric_spec(metric).unit
    number = f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"
    if value == 1 and len(unit) > 2 and unit.endswith("s"):     # 1 login, 1 process
        unit = unit[:-2] if unit.endswith("sses") else unit[:-1]
    return f"{number} {unit}".rstrip()
