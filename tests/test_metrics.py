"""/metrics: served on loopback, scraped over HTTP and parsed with prometheus_client's own parser."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import MetricsError, MetricsExporter
from foundation.model import Sample
from tests.conftest import ROOT
from tests.procs import unique_name


def scrape(port: int) -> dict[str, list]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def report(kind: str = "process_missing") -> dict:
    return {"started_at": "2026-11-23T10:00:00+00:00", "duration_s": 0.25,
            "collectors": {"processes": {"ok": True, "available": True, "duration_s": 0.01},
                           "ping": {"ok": False, "available": True, "duration_s": 5.0}},
            "findings": [{"kind": kind, "severity": "high"}, {"kind": kind, "severity": "high"}],
            "verdict": {"severity": "high", "by": "rules"},
            "alerts": [{"channel": "console", "status": "sent"}], "redelivered": []}


def test_exporter_serves_cycle_metrics_that_prometheus_can_parse() -> None:
    exporter = MetricsExporter("box")
    port = exporter.start(0, "127.0.0.1")
    try:
        exporter.update(report(), [
            ("ping", Sample("ping.rtt_avg_ms", 0.05, key="127.0.0.1")),
            ("sensors", Sample("sensor.temperature_c", 41.0, key="coretemp/Package id 0"))])
        exporter.update(report(), [])
        metrics = scrape(port)
    finally:
        exporter.stop()
    up = {s.labels["collector"]: s.value for s in metrics["monitor_collector_up"]}
    assert up == {"processes": 1.0, "ping": 0.0}
    errors = {s.labels["collector"]: s.value for s in metrics["monitor_collector_errors"]
              if s.name.endswith("_total")}
    assert errors == {"ping": 2.0}
    [findings] = metrics["monitor_findings"]
    assert (findings.labels["kind"], findings.labels["severity"], findings.value) == (
        "process_missing", "high", 2.0)
    sent = [s for s in metrics["monitor_alerts"] if s.name.endswith("_total")]
    assert sent[0].labels == {"host": "box", "channel": "console", "status": "sent"}
    assert sent[0].value == 2.0
    [rtt] = metrics["monitor_ping_rtt_avg_milliseconds"]
    assert rtt.labels["target"] == "127.0.0.1" and rtt.value == 0.05
    [temp] = metrics["monitor_temperature_celsius"]
    assert temp.value == 41.0
    [last] = metrics["monitor_last_cycle_timestamp_seconds"]
    assert last.value == pytest.approx(1795428000.0)


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(MetricsError, match="METRICS_PORT"):
            MetricsExporter("box").start(taken.getsockname()[1], "127.0.0.1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_running_agent_serves_metrics(tmp_path: Path) -> None:
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "MONITOR_DATA_DIR": str(tmp_path / "data"), "MONITOR_COLLECTORS": "processes",
           "MONITOR_PROCESSES_TO_MONITOR": unique_name(), "MONITOR_METRICS_PORT": str(port),
           "MONITOR_INTERVAL_SECONDS": "30", "MONITOR_OLLAMA_TIMEOUT_SECONDS": "5"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        metrics: dict = {}
        while time.monotonic() < deadline:
            try:
                metrics = scrape(port)
                if metrics.get("monitor_last_cycle_timestamp_seconds"):
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert metrics["monitor_last_cycle_timestamp_seconds"][0].value > time.time() - 60
    kinds = {s.labels["kind"] for s in metrics["monitor_findings"]}
    assert kinds == {"process_missing"}
    assert any(s.labels["process"] and s.value == 0 for s in
               metrics["monitor_watched_process_instances"])
    assert proc.returncode == 0
