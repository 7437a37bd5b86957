"""The shipped Prometheus rules and Grafana dashboard (deploy/): checked and unit-tested with a real
promtool, and run by a real Prometheus that scrapes a real exporter after real cycles."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.metrics import MetricsExporter
from foundation.model import Sample
from tests.conftest import ROOT
from tests.test_metrics import by_name, exporter_for, fetch, promtool, real_cycles

RULES = ROOT / "deploy" / "prometheus" / "homelab-monitor-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "homelab-monitor-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "homelab-monitor.json"
ALERTS = ("HomelabMonitorTargetDown", "HomelabMonitorAbsent", "HomelabMonitorStalled",
          "HomelabMonitorHighFinding", "HomelabMonitorCollectorDown")
# PromQL words the dashboard may use; any other bare word in a query must be an exported metric
PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring",
                "group_left", "group_right", "bool", "and", "or", "unless", "time", "rate",
                "increase", "e"}   # "e": the exponent of a number such as 1e3


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=cwd)


# -- the rules ------------------------------------------------------------------------------------

def test_the_rules_pass_promtool_check() -> None:
    checked = run(promtool(), "check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout
    assert re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.M) == list(ALERTS)


def test_the_rules_unit_tests_pass() -> None:
    tested = run(promtool(), "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def rule_tests() -> list[tuple[str, bool]]:
    """(alert name, whether alerts are expected) of every alert_rule_test in the test file."""
    text = RULE_TESTS.read_text()
    found = []
    for entry in re.split(r"^\s*- eval_time: ", text, flags=re.M)[1:]:
        alert = re.search(r"^\s*alertname: (\w+)$", entry, re.M)
        expected = re.search(r"^\s*exp_alerts:(.*)$", entry, re.M)
        assert alert and expected, entry
        found.append((alert.group(1), expected.group(1).strip() != "[]"))
    return found


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    tests = rule_tests()
    for alert in ALERTS:
        assert (alert, True) in tests, f"{alert} is never shown firing"
        assert (alert, False) in tests, f"{alert} is never shown quiet"


# one change per rule that its unit tests must catch
BREAKAGES = {
    "HomelabMonitorTargetDown": ("for: 5m", "for: 1m"),
    "HomelabMonitorAbsent": ('absent(up{job="homelab-monitor"})', 'absent(up{job="monitor"})'),
    "HomelabMonitorStalled": ("> 3 * monitor_cycle_interval_seconds",
                              "> 4 * monitor_cycle_interval_seconds"),
    "HomelabMonitorHighFinding": ('monitor_findings{severity="high"} > 0',
                                  'monitor_findings{severity=~"high|medium"} > 0'),
    "HomelabMonitorCollectorDown": ("monitor_collector_up == 0", "monitor_collector_up < 2"),
}


@pytest.mark.parametrize("alert", ALERTS)
def test_a_broken_rule_fails_its_unit_tests(alert: str, tmp_path: Path) -> None:
    old, new = BREAKAGES[alert]
    text = RULES.read_text()
    assert text.count(old) == 1
    (tmp_path / RULES.name).write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = run(promtool(), "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0
    assert alert in tested.stdout + tested.stderr


# -- the dashboard --------------------------------------------------------------------------------

def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (the words left once strings, label matchers,
    ranges, label lists and the known functions and keywords are taken out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr)) - PROMQL_WORDS


def test_metric_names_are_found_in_promql() -> None:
    assert metric_names('sum by (host, severity) (increase(monitor_x_total{host=~"$host"}[1h]))'
                        ' > bool 3 * other') == {"monitor_x_total", "other"}


def test_the_dashboard_is_importable_and_templated_on_host() -> None:
    board = dashboard()
    [source] = board["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS", "datasource", "prometheus")
    [host] = board["templating"]["list"]
    assert host["name"] == "host" and host["multi"] and host["includeAll"]
    assert host["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = " | ".join(p["title"] for p in panels).lower()
    for wanted in ("agent", "last cycle", "findings by severity", "collector up", "temperature",
                   "ping round trip", "ping loss", "failed logins", "alerts by status"):
        assert wanted in titles, wanted
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            # every metric is selected for the chosen hosts
            for match in re.finditer(r"\bmonitor_\w+", target["expr"]):
                assert target["expr"][match.end():].startswith('{host=~"$host"}'), target["expr"]


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": expr.replace("$host", ".+")}
        for i, expr in enumerate(queries())]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps(rules))        # JSON is YAML
    checked = run(promtool(), "check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def exporter_after_real_cycles(tmp_path: Path) -> tuple[MetricsExporter, Any, Any]:
    """An exporter fed two real cycles, plus a temperature (this machine has no sensor)."""
    settings, agent, store, cycles = real_cycles(tmp_path)
    store.close()
    exporter = exporter_for(settings, agent)
    for cycle_report, samples in cycles:
        exporter.update(cycle_report, samples)
    last = cycles[-1][0]
    sensors = {"ok": True, "available": True, "duration_s": 0.01}
    exporter.update({**last, "collectors": {**last["collectors"], "sensors": sensors},
                     "alerts": [], "redelivered": []},
                    [("sensors", Sample("sensor.temperature_c", 47.0, key="coretemp/Core 0"))])
    return exporter, settings, cycles


def test_the_dashboard_uses_only_metrics_the_exporter_exports(tmp_path: Path) -> None:
    exporter, _, _ = exporter_after_real_cycles(tmp_path)
    port = exporter.start(0, "127.0.0.1")
    try:
        exported = by_name(fetch(port))
    finally:
        exporter.stop()
    used: set[str] = set()
    for expr in queries():
        names = metric_names(expr)
        assert names, expr
        used |= names
    assert used - set(exported) == set()
    [host] = dashboard()["templating"]["list"]
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", host["definition"]).groups()
    assert host["query"]["query"] == host["definition"]
    assert metric in exported and all(label in s.labels for s in exported[metric])
    # the panels the brief asks for read what the exporter has
    for name in ("monitor_temperature_celsius", "monitor_ping_rtt_average_seconds",
                 "monitor_ping_loss_ratio", "monitor_auth_failed_logins_total",
                 "monitor_alerts_total", "monitor_collector_up", "monitor_findings",
                 "monitor_last_cycle_timestamp_seconds"):
        assert name in used, name


# -- a real Prometheus ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def test_a_real_prometheus_scrapes_the_exporter_runs_the_rules_and_the_dashboard(
        tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: apt-get install prometheus (make test installs it)")
    exporter, settings, _ = exporter_after_real_cycles(tmp_path)
    port = exporter.start(0, "127.0.0.1")
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "homelab-monitor",
                            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}))
    log_path = tmp_path / "prometheus.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([binary, f"--config.file={config}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file)
    base = f"http://127.0.0.1:{web}"
    assert settings.host_name == "box"      # a plain word: a regex that matches itself
    exprs = [e.replace("$host", settings.host_name) for e in queries()]
    empty: list[str] = exprs
    alerts: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 120   # generous: prometheus starts, then scrapes every 1 s
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                empty = [e for e in exprs if not query(base, e)]
                alerts = requests.get(f"{base}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            except requests.ConnectionError:
                continue
            if not empty and any(a["state"] == "firing" for a in alerts):
                break
        [cycling] = query(base, exprs[0])
        scraped = query(base, 'up{job="homelab-monitor"}')
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        finally:
            exporter.stop()
    log_text = log_path.read_text(errors="replace")
    assert empty == [], log_text[-2000:]
    assert cycling["value"][1] == "1"            # the agent is cycling
    assert [s["value"][1] for s in scraped] == ["1"]
    firing = [(a["labels"]["alertname"], a["labels"].get("kind")) for a in alerts
              if a["state"] == "firing"]
    assert firing == [("HomelabMonitorHighFinding", "process_missing")], alerts
    assert {a["labels"]["alertname"] for a in alerts} == {"HomelabMonitorHighFinding"}
    [high] = alerts
    assert high["labels"]["host"] == settings.host_name
    assert high["labels"]["job"] == "homelab-monitor"
