"""/metrics: served on loopback after real cycles, scraped over HTTP, parsed with prometheus_client's
own parser and checked with a real `promtool check metrics` (names, base units, counters, labels)."""
from __future__ import annotations

import io
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import collectors
from agent.cycle import Agent
from agent.metrics import SAMPLE_EXPORTS, MetricsError, MetricsExporter, is_counter
from alerts.console import ConsoleNotifier
from analysis.rules import RulesJudge
from foundation.model import Sample
from foundation.series import METRICS
from foundation.settings import load_settings
from foundation.store.data_storage import Store
from tests.conftest import ROOT
from tests.procs import unique_name

COLLECTORS = ["processes", "ping", "auth_log", "syslog", "sensors"]
# the stored unit -> the exported name's suffix and the factor to that base unit
BASE_UNITS = {"ms": ("_seconds", 1e-3), "%": ("_ratio", 1e-2), "°C": ("_celsius", 1.0),
              "MB": ("_bytes", 2.0**20)}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: apt-get install prometheus (make test installs it)")
    return path


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on an exposition, given on its standard input."""
    return subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60, check=False)


def fetch(port: int, host: str = "127.0.0.1") -> str:
    response = requests.get(f"http://{host}:{port}/metrics", timeout=10)
    response.raise_for_status()
    return response.text


def parse(text: str) -> dict[str, list]:
    """Family name -> samples (a counter's family is named without its "_total")."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def scrape(port: int) -> dict[str, list]:
    return parse(fetch(port))


def by_name(text: str) -> dict[str, list]:
    """Exported sample name (with "_total") -> samples."""
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def report(kind: str = "process_missing") -> dict:
    return {"started_at": "2026-11-23T10:00:00+00:00", "duration_s": 0.25,
            "collectors": {"processes": {"ok": True, "available": True, "duration_s": 0.01},
                           "ping": {"ok": False, "available": True, "duration_s": 5.0}},
            "findings": [{"kind": kind, "severity": "high"}, {"kind": kind, "severity": "high"}],
            "verdict": {"severity": "high", "by": "rules"},
            "alerts": [{"channel": "console", "status": "sent"}], "redelivered": []}


# -- real cycles ----------------------------------------------------------------------------------

def _auth_lines(stamp: str, user: str, address: str, first_pid: int, count: int) -> str:
    return "".join(f"{stamp} box sshd[{first_pid + i}]: Failed password for {user} from {address} "
                   f"port {50000 + i} ssh2\n" for i in range(count))


def real_cycles(tmp_path: Path) -> tuple[Any, Agent, Store, list[tuple[dict, list]]]:
    """Two real cycles of processes (a watched process missing), ping of 127.0.0.1, an auth log and
    a syslog file that grow between them, and sensors (no sensor here: unavailable).

    Returns (settings, agent, store, [(report, samples)] per cycle); the caller closes the store.
    """
    stamp = time.strftime("%b %e %H:%M:%S")
    auth, syslog = tmp_path / "auth.log", tmp_path / "syslog"
    auth.write_text(_auth_lines(stamp, "root", "192.0.2.7", 100, 3))
    syslog.write_text(f"{stamp} box myapp[1]: started\n")  # the first read only finds the end
    settings = load_settings(environ={}, overrides={
        "DATA_DIR": tmp_path / "data", "HOST_NAME": "box", "COLLECTORS": COLLECTORS,
        "PROCESSES_TO_MONITOR": [unique_name()], "PING_TARGETS": ["127.0.0.1"], "PING_COUNT": 1,
        "AUTH_LOG_PATH": auth, "AUTH_LOG_BACKEND": "file", "SYSLOG_PATH": str(syslog),
        "SYSLOG_BACKEND": "file", "LOG_START_AT": "start"})
    store = Store.open(tmp_path / "store" / "monitor.db")
    agent = Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(io.StringIO())})
    cycles = [(agent.run_cycle(), list(agent.last_samples))]
    with open(auth, "a", encoding="ascii") as handle:
        handle.write(_auth_lines(stamp, "invalid user bob", "192.0.2.8", 200, 2))
    with open(syslog, "a", encoding="ascii") as handle:
        handle.write(f"{stamp} box myapp[1]: error: disk on fire\n"
                     f"{stamp} box kernel: something critical happened\n")
    cycles.append((agent.run_cycle(), list(agent.last_samples)))
    return settings, agent, store, cycles


def exporter_for(settings: Any, agent: Agent) -> MetricsExporter:
    """The exporter as agent/cli.py makes it."""
    return MetricsExporter(settings.host_name, collectors=settings.COLLECTORS,
                           channels=agent.notifiers, interval_s=settings.MONITOR_INTERVAL_SECONDS)


def sample_value(samples: list[tuple[str, Sample]], metric: str, key: str = "") -> float:
    [value] = [s.value for _, s in samples if s.metric == metric and s.key == key]
    return value


def test_a_real_cycles_scrape_passes_promtool_in_base_units(tmp_path: Path) -> None:
    settings, agent, store, cycles = real_cycles(tmp_path)
    try:
        exporter = exporter_for(settings, agent)
        port = exporter.start(0, "127.0.0.1")
        try:
            texts = [fetch(port)]
            for cycle_report, samples in cycles:
                exporter.update(cycle_report, samples)
                texts.append(fetch(port))
        finally:
            exporter.stop()
    finally:
        store.close()
    for text in texts:
        checked = promtool_check_metrics(text)
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
        assert "_created" not in text and 'key="' not in text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                assert all(value != "" for value in sample.labels.values()), sample
                assert sample.labels["host"] == settings.host_name
    before, after_first, after_second = (by_name(t) for t in texts)

    # before any cycle: every error counter is there at 0, per collector and channel
    errors = {s.labels["collector"]: s.value for s in before["monitor_collector_errors_total"]}
    assert errors == dict.fromkeys(COLLECTORS, 0.0)
    assert {(s.labels["channel"], s.labels["status"]): s.value
            for s in before["monitor_alerts_total"]} == {
        ("console", status): 0.0 for status in ("sent", "queued", "suppressed", "failed")}
    assert [s.value for s in before["monitor_auth_failed_logins_total"]] == [0.0]
    assert [s.value for s in before["monitor_syslog_error_lines_total"]] == [0.0]
    assert "monitor_last_cycle_timestamp_seconds" not in before
    assert [s.value for s in before["monitor_cycle_interval_seconds"]] == [300.0]

    # counts over cycles are counters: 3 failed logins, then 2 more; 2 error lines in the second
    first_samples, second_samples = cycles[0][1], cycles[1][1]
    assert sample_value(first_samples, "auth.failed_logins") == 3.0
    assert sample_value(second_samples, "auth.failed_logins") == 2.0
    assert [s.value for s in after_first["monitor_auth_failed_logins_total"]] == [3.0]
    assert [s.value for s in after_second["monitor_auth_failed_logins_total"]] == [5.0]
    assert [s.value for s in after_second["monitor_syslog_error_lines_total"]] == [2.0]
    assert [s.value for s in after_second["monitor_syslog_lines_total"]] == [2.0]

    # base units: ms -> s, percent -> ratio, MiB -> bytes
    [rtt] = after_second["monitor_ping_rtt_average_seconds"]
    assert rtt.labels == {"host": settings.host_name, "target": "127.0.0.1"}
    assert rtt.value == pytest.approx(sample_value(second_samples, "ping.rtt_avg_ms", "127.0.0.1")
                                      / 1000)
    assert 0 < rtt.value < 1
    [loss] = after_second["monitor_ping_loss_ratio"]
    assert loss.value == 0.0
    [memory] = after_second["monitor_memory_used_ratio"]
    assert 0 < memory.value < 1
    assert memory.value == pytest.approx(sample_value(second_samples, "system.memory_percent") / 100)
    [load] = after_second["monitor_load1"]
    assert set(load.labels) == {"host"}        # a sample without a key has no key label at all
    [missing] = after_second["monitor_watched_process_instances"]
    assert missing.labels["process"] == settings.PROCESSES_TO_MONITOR[0] and missing.value == 0

    # the cycle: collectors, findings, verdict
    up = {s.labels["collector"]: s.value for s in after_second["monitor_collector_up"]}
    assert up == {"processes": 1.0, "ping": 1.0, "auth_log": 1.0, "syslog": 1.0, "sensors": 0.0}
    assert "monitor_temperature_celsius" not in after_second   # no sensor here, no stale value
    errors = {s.labels["collector"]: s.value
              for s in after_second["monitor_collector_errors_total"]}
    assert errors == dict.fromkeys(COLLECTORS, 0.0)
    [finding] = after_second["monitor_findings"]
    assert (finding.labels["kind"], finding.labels["severity"], finding.value) == (
        "process_missing", "high", 1.0)
    [verdict] = after_second["monitor_verdict_severity"]
    assert (verdict.labels["by"], verdict.value) == ("rules", 3.0)
    alerts = {(s.labels["channel"], s.labels["status"]): s.value
              for s in after_second["monitor_alerts_total"]}
    assert alerts[("console", "sent")] == 1.0 and alerts[("console", "failed")] == 0.0
    [last] = after_second["monitor_last_cycle_timestamp_seconds"]
    assert abs(last.value - time.time()) < 3600


def test_promtool_rejects_what_the_exporter_no_longer_does() -> None:
    """The check is real: the old names (milliseconds, a counter without _total) fail it."""
    bad = ("# HELP monitor_ping_rtt_avg_milliseconds Average ping round-trip\n"
           "# TYPE monitor_ping_rtt_avg_milliseconds gauge\n"
           'monitor_ping_rtt_avg_milliseconds{host="box",target="127.0.0.1"} 0.05\n'
           "# HELP monitor_failed_logins Failed logins\n"
           "# TYPE monitor_failed_logins counter\n"
           'monitor_failed_logins{host="box"} 3\n')
    checked = promtool_check_metrics(bad)
    assert checked.returncode != 0
    assert "milliseconds" in checked.stderr and "monitor_failed_logins" in checked.stderr


def test_the_export_table_follows_the_declarations_and_base_units() -> None:
    names = [export.name for export in SAMPLE_EXPORTS.values()]
    assert len(names) == len(set(names))
    for metric, export in SAMPLE_EXPORTS.items():
        spec = METRICS[metric]                       # declared once, with its unit for people
        module = ROOT / (collectors.REGISTRY[export.collector].replace(".", "/") + ".py")
        assert f'"{metric}"' in module.read_text(encoding="utf-8"), (metric, export.collector)
        assert re.fullmatch(r"monitor_[a-z0-9_]+", export.name), export.name
        assert export.name.endswith("_total") == spec.per_cycle == is_counter(metric), metric
        if spec.unit in BASE_UNITS:
            suffix, scale = BASE_UNITS[spec.unit]
            assert export.name.endswith(suffix) and export.scale == scale, metric
        else:
            assert export.scale == 1.0, metric
        assert not re.search(r"milli|percent|_mb\b|_ms\b", export.name), export.name
        assert export.label != "", metric


def test_the_fleet_docs_list_every_exported_name() -> None:
    text = (ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(monitor_\w+)` \|", text, re.M))
    exporter = MetricsExporter("box", interval_s=300)
    exporter.update(report(), [])       # every family about the agent and its cycle
    exported = set(by_name(generate(exporter))) | {e.name for e in SAMPLE_EXPORTS.values()}
    assert len(exported) == len(SAMPLE_EXPORTS) + 10
    assert listed == exported


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
    errors = {s.labels["collector"]: s.value for s in metrics["monitor_collector_errors"]}
    assert errors == {"ping": 2.0, "processes": 0.0}
    [findings] = metrics["monitor_findings"]
    assert (findings.labels["kind"], findings.labels["severity"], findings.value) == (
        "process_missing", "high", 2.0)
    sent = [s for s in metrics["monitor_alerts"] if s.labels["status"] == "sent"]
    assert [(s.name, s.labels, s.value) for s in sent] == [
        ("monitor_alerts_total", {"host": "box", "channel": "console", "status": "sent"}, 2.0)]
    # ping failed in the second cycle: its round trip is no longer known, so it is not exported
    assert "monitor_ping_rtt_average_seconds" not in metrics
    # sensors did not run in the second cycle (no status): its last temperature stands
    [temp] = metrics["monitor_temperature_celsius"]
    assert temp.value == 41.0 and temp.labels["sensor"] == "coretemp/Package id 0"
    [last] = metrics["monitor_last_cycle_timestamp_seconds"]
    assert last.value == pytest.approx(1795428000.0)


def test_gauges_follow_the_last_cycle_and_counters_add_up() -> None:
    exporter = MetricsExporter("box", collectors=["ping", "nmap"])
    ok = {"ok": True, "available": True, "duration_s": 0.1}
    base = {"started_at": "2026-11-23T10:00:00+00:00", "duration_s": 0.2, "findings": [],
            "verdict": {"severity": "none", "by": "rules"}, "alerts": [], "redelivered": []}
    exporter.update({**base, "collectors": {"ping": ok, "nmap": ok}}, [
        ("ping", Sample("ping.rtt_avg_ms", 2.0, key="a")),
        ("ping", Sample("ping.rtt_avg_ms", 3.0, key="b")),
        ("nmap", Sample("nmap.open_ports", 4.0))])
    # the next cycle: target b lost every reply (no round trip), nmap's scan still runs (no samples)
    exporter.update({**base, "collectors": {"ping": ok, "nmap": ok}}, [
        ("ping", Sample("ping.rtt_avg_ms", 1.0, key="a")),
        ("ping", Sample("ping.loss_percent", 100.0, key="b"))])
    metrics = by_name(generate(exporter))
    assert {s.labels["target"]: s.value for s in metrics["monitor_ping_rtt_average_seconds"]} == {
        "a": 0.001}
    assert [s.value for s in metrics["monitor_ping_loss_ratio"]] == [1.0]
    assert [s.value for s in metrics["monitor_nmap_open_ports"]] == [4.0]
    # the source goes away: what it said last is dropped, not left standing
    exporter.update({**base, "collectors": {"ping": {**ok, "available": False}, "nmap": ok}}, [])
    metrics = by_name(generate(exporter))
    assert "monitor_ping_rtt_average_seconds" not in metrics
    assert [s.value for s in metrics["monitor_nmap_open_ports"]] == [4.0]


def generate(exporter: MetricsExporter) -> str:
    from prometheus_client import generate_latest

    return generate_latest(exporter.registry).decode()


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(MetricsError, match="METRICS_PORT"):
            MetricsExporter("box").start(taken.getsockname()[1], "127.0.0.1")


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_serves_on_ipv6_loopback() -> None:
    exporter = MetricsExporter("box")
    port = exporter.start(0, "::1")
    try:
        text = fetch(port, "[::1]")
    finally:
        exporter.stop()
    assert "monitor_start_time_seconds" in text


# -- clients that hang up -------------------------------------------------------------------------

def reset_midway(port: int, partial: bytes) -> None:
    """Connect, send part of a request, and close with a TCP reset (SO_LINGER 0)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(partial)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


PARTIALS = (b"GET /metr", b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: te")


def test_a_client_reset_is_routine_not_a_traceback(capfd: pytest.CaptureFixture[str],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.metrics")
    exporter = MetricsExporter("box")
    port = exporter.start(0, "127.0.0.1")
    try:
        for partial in PARTIALS:
            reset_midway(port, partial)
        deadline = time.monotonic() + 30   # the handler threads see the resets in their own time
        while time.monotonic() < deadline and sum(
                "went away" in r.getMessage() for r in caplog.records) < len(PARTIALS):
            time.sleep(0.05)
        text = fetch(port)                 # and the server still serves
    finally:
        exporter.stop()
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone) == len(PARTIALS) and all(r.levelno == logging.DEBUG for r in gone)
    assert "Connection reset" in gone[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    captured = capfd.readouterr()
    for stream in (captured.out, captured.err, caplog.text):
        assert "Traceback" not in stream and "ConnectionResetError" not in stream
    assert "monitor_start_time_seconds" in text


# -- the agent itself -----------------------------------------------------------------------------

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
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py")], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            try:
                text = fetch(port)
                if "monitor_last_cycle_timestamp_seconds" in text:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        for partial in PARTIALS:
            reset_midway(port, partial)
        fetch(port)   # served after the resets
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode == 0
    log_text = stderr_path.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log_text and "ConnectionResetError" not in log_text
    checked = promtool_check_metrics(text)
    assert (checked.returncode, checked.stderr) == (0, "")
    metrics = by_name(text)
    assert metrics["monitor_last_cycle_timestamp_seconds"][0].value > time.time() - 60
    assert [s.value for s in metrics["monitor_cycle_interval_seconds"]] == [30.0]
    kinds = {s.labels["kind"] for s in metrics["monitor_findings"]}
    assert kinds == {"process_missing"}
    assert any(s.labels["process"] and s.value == 0 for s in
               metrics["monitor_watched_process_instances"])
    assert {s.labels["collector"]: s.value for s in metrics["monitor_collector_errors_total"]} == {
        "processes": 0.0}
    assert {s.labels["status"] for s in metrics["monitor_alerts_total"]
            if s.labels["channel"] == "console"} == {"sent", "queued", "suppressed", "failed"}
