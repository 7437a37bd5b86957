"""A fleet of two agents as docs/fleet.md sets it up, with the shipped files: a real Prometheus
run with deploy/prometheus/fleet.yml scrapes both agents' /metrics, runs the shipped rules and
sends what fires to a real Alertmanager run with deploy/alertmanager/alertmanager.yml, to which
the agents (deploy/fleet-agent.env) post their findings themselves; the agent's own alert holds
back the rule's alert about the same finding."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.metrics import MetricsExporter
from tests.alertmanager_server import Alertmanager, free_port, shipped_config, wait_for
from tests.conftest import ROOT
from tests.fakes.discord_server import FakeDiscord
from tests.procs import unique_name
from tests.test_alertmanager import by_host, fleet_agent, state_entry
from tests.test_metrics import promtool
from tests.test_prometheus_rules import RULES, query

FLEET = ROOT / "deploy" / "prometheus" / "fleet.yml"
DOCS = ROOT / "docs" / "fleet.md"
pytestmark = pytest.mark.slow


def fleet_config(targets: list[str], alertmanager: str, rules: Path) -> str:
    """deploy/prometheus/fleet.yml with this machine's addresses and one-second intervals."""
    text = FLEET.read_text(encoding="utf-8")
    for old, new in (("scrape_interval: 30s", "scrape_interval: 1s"),
                     ("evaluation_interval: 30s", "evaluation_interval: 1s"),
                     ('targets: ["alertmanager.lan:9093"]', f"targets: {json.dumps([alertmanager])}"),
                     ("- /etc/prometheus/rules/homelab-monitor-rules.yml", f"- {rules}"),
                     ('targets: ["nas.lan:9101", "gpu-box.lan:9101", "pi.lan:9101"]',
                      f"targets: {json.dumps(targets)}")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


def test_the_fleet_config_passes_promtool(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(fleet_config(["127.0.0.1:9101"], "127.0.0.1:9093", RULES))
    checked = subprocess.run([promtool(), "check", "config", str(config)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout


def test_the_docs_show_the_tested_files() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for path in (FLEET, ROOT / "deploy" / "alertmanager" / "alertmanager.yml",
                 ROOT / "deploy" / "fleet-agent.env"):
        body = path.read_text(encoding="utf-8").strip()
        assert body in text, f"docs/fleet.md does not show {path.relative_to(ROOT)} as it is"


def test_one_prometheus_and_one_alertmanager_watch_two_agents(tmp_path: Path,
                                                              discord: FakeDiscord) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: apt-get install prometheus (make test installs it)")
    hosts = ("nas", "gpu-box")
    exporters: list[MetricsExporter] = []
    with Alertmanager(tmp_path / "am", shipped_config(discord.url)) as am:
        targets = []
        for host in hosts:           # each agent: its own store, its own /metrics
            agent = fleet_agent(tmp_path, host, am.url, unique_name())
            try:
                report = agent.run_cycle()
            finally:
                agent.store.close()
            assert state_entry(report)["status"] == "sent"
            exporter = MetricsExporter(host, collectors=agent.settings.COLLECTORS,
                                       channels=agent.notifiers,
                                       interval_s=agent.settings.MONITOR_INTERVAL_SECONDS)
            exporter.update(report, agent.last_samples)
            exporters.append(exporter)
            targets.append(f"127.0.0.1:{exporter.start(0, agent.settings.METRICS_BIND)}")
        web = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(fleet_config(targets, f"127.0.0.1:{am.port}", RULES))
        log_path = tmp_path / "prometheus.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen([binary, f"--config.file={config}",
                                     f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                     f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
                                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file)
        base = f"http://127.0.0.1:{web}"

        def scraped() -> dict[str, Any] | None:
            try:
                up = query(base, 'up{job="homelab-monitor"}')
                findings = query(base, 'monitor_findings{kind="process_missing"}')
                rules = requests.get(f"{base}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            except requests.ConnectionError:
                return None
            firing = {a["labels"]["host"] for a in rules if a["state"] == "firing"}
            sent = by_host(am.alerts(), "HomelabMonitorHighFinding")
            if len(up) == 2 and firing == set(hosts) and set(sent) == set(hosts):
                return {"up": up, "findings": findings, "sent": sent}
            return None

        try:
            found = wait_for(scraped, 120, 0.5)   # generous: start, then a scrape every second
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            finally:
                for exporter in exporters:
                    exporter.stop()
        assert found, log_path.read_text(errors="replace")[-2000:]
        assert sorted(s["value"][1] for s in found["up"]) == ["1", "1"]
        assert {s["metric"]["host"] for s in found["findings"]} == set(hosts)
        assert all(s["value"][1] == "1" for s in found["findings"])
        # the rule's alerts reached Alertmanager; the agents' own alerts hold them back
        for host, alert in found["sent"].items():
            assert alert["labels"]["job"] == "homelab-monitor"
            assert alert["status"]["state"] == "suppressed", (host, alert)
            assert alert["status"]["inhibitedBy"]
        agents_own = by_host(am.alerts())
        assert set(agents_own) == set(hosts)
        assert all(a["status"]["state"] == "active" for a in agents_own.values())
        assert wait_for(lambda: discord.accepted, 60)
        time.sleep(3)
    # one notification, of the agents' alerts: the rule's, held back, sent none
    [title] = [m.payload["embeds"][0]["title"] for m in discord.accepted]
    assert title.startswith("[FIRING:2] process_missing")
