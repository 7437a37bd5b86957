"""The Alertmanager channel against a real Alertmanager (Debian's prometheus-alertmanager) run with
the shipped deploy/alertmanager/alertmanager.yml: agents with the shipped deploy/fleet-agent.env
post their findings through the outbox, Alertmanager groups them across hosts into one Discord
message (to the loopback fake of tests/fakes/discord_server.py), keeps a silenced host quiet and
sends the resolve; plus the alert shape, the re-posting rules, `check` and `test-alert`."""
from __future__ import annotations

import argparse
import io
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent import check, trial_alert
from agent.cycle import Agent
from agent.fleet_state import HORIZON_INTERVALS, state_items
from alerts.alertmanager import AlertmanagerNotifier, render
from alerts.channels import make_notifiers
from alerts.outbox import DeliveryError, deliver_due
from analysis.rules import RulesJudge
from foundation.model import Finding, Judged, Severity
from foundation.redact import redact
from foundation.settings import ConfigError, Settings, load_settings
from foundation.store.data_storage import OutboxMessage, Store
from tests.alertmanager_server import SHIPPED, Alertmanager, binary, free_port, shipped_config, wait_for
from tests.conftest import ROOT
from tests.fakes.discord_server import FakeDiscord
from tests.procs import start_named, stop, unique_name

FLEET_ENV = ROOT / "deploy" / "fleet-agent.env"
pytestmark = pytest.mark.slow


def fleet_environ(alertmanager_url: str) -> dict[str, str]:
    """deploy/fleet-agent.env as systemd reads it, with loopback addresses for this machine."""
    found = {}
    for line in FLEET_ENV.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            found[name] = value
    assert found["MONITOR_ALERTMANAGER_URL"] == "http://alertmanager.lan:9093"
    found.update(MONITOR_ALERTMANAGER_URL=alertmanager_url, MONITOR_METRICS_BIND="127.0.0.1")
    return found


def fleet_settings(tmp_path: Path, host: str, alertmanager_url: str, watched: str,
                   **overrides: Any) -> Settings:
    return load_settings(environ=fleet_environ(alertmanager_url), overrides={
        "HOST_NAME": host, "DATA_DIR": tmp_path / host, "COLLECTORS": ["processes"],
        "PROCESSES_TO_MONITOR": [watched], **overrides})


def fleet_agent(tmp_path: Path, host: str, alertmanager_url: str, watched: str) -> Agent:
    """An agent as the service runs it: its own store, the configured notifiers."""
    settings = fleet_settings(tmp_path, host, alertmanager_url, watched)
    return Agent(settings, Store.open(settings.db_path), RulesJudge(),
                 make_notifiers(settings, io.StringIO()))


def state_entry(report: dict[str, Any]) -> dict[str, Any]:
    [entry] = [a for a in report["alerts"] if a["channel"] == "alertmanager"]
    return entry


def by_host(alerts: list[dict[str, Any]], alertname: str = "process_missing"
            ) -> dict[str, dict[str, Any]]:
    return {a["labels"]["host"]: a for a in alerts if a["labels"]["alertname"] == alertname}


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


# -- the shipped configuration --------------------------------------------------------------------

def test_the_shipped_config_passes_amtool(tmp_path: Path) -> None:
    checked = subprocess.run([binary("amtool"), "check-config", str(SHIPPED)], capture_output=True,
                             text=True, timeout=60, check=False, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout and "1 inhibit rules" in checked.stdout


# -- a fleet against a real Alertmanager ----------------------------------------------------------

def test_a_fleet_is_grouped_silenced_and_resolved_by_a_real_alertmanager(
        tmp_path: Path, discord: FakeDiscord) -> None:
    names = {host: unique_name() for host in ("nas", "gpu-box", "pi")}
    # group_wait 10 s: the three agents' first cycles fit well within it, even on a loaded box
    with Alertmanager(tmp_path / "am", shipped_config(discord.url, group_wait="10s")) as am:
        # pi is in maintenance: silenced in Alertmanager before its agent says anything
        silence = am.silence({"host": "pi"}, "pi is being rebuilt")
        agents = {host: fleet_agent(tmp_path, host, am.url, watched)
                  for host, watched in names.items()}
        try:
            for agent in agents.values():
                assert state_entry(agent.run_cycle())["status"] == "sent"
            alerts = wait_for(lambda: len(by_host(am.alerts())) == 3 and by_host(am.alerts()))
            assert alerts, am.alerts()
            nas = alerts["nas"]
            assert nas["labels"] == {
                "alertname": "process_missing", "host": "nas", "kind": "process_missing",
                "severity": "high", "source": "processes",
                "fingerprint": nas["labels"]["fingerprint"]}
            assert nas["annotations"]["summary"] == f"Process {names['nas']} is not running"
            assert "systemctl status" in nas["annotations"]["action"]
            assert nas["annotations"]["description"].startswith(
                f"watched process '{names['nas']}' is not running")
            # open: it ends four intervals after the post, unless it is posted again
            interval = agents["nas"].settings.MONITOR_INTERVAL_SECONDS
            assert seconds(nas["endsAt"]) - time.time() == pytest.approx(
                HORIZON_INTERVALS * interval, abs=120)
            assert alerts["pi"]["status"]["state"] == "suppressed"
            assert alerts["pi"]["status"]["silencedBy"] == [silence]
            assert alerts["nas"]["status"]["state"] == alerts["gpu-box"]["status"]["state"] \
                == "active"

            # one grouped notification for the kind, both unsilenced hosts in it, pi not
            assert wait_for(lambda: discord.accepted, 90)
            time.sleep(6)                      # three group intervals: nothing more comes
            [first] = discord.accepted
            [embed] = first.payload["embeds"]
            assert embed["title"].startswith("[FIRING:2] process_missing")
            lines = embed["description"].splitlines()
            assert f"🔴 **nas**: Process {names['nas']} is not running (what to do: Check " \
                   f"the service (`systemctl status {names['nas']}`" in embed["description"]
            assert any(line.startswith("🔴 **gpu-box**: ") for line in lines)
            assert "**pi**" not in embed["description"] and names["pi"] not in str(first.payload)

            # the next cycle posts the same alerts again, later ends: no new notification
            ends = seconds(alerts["gpu-box"]["endsAt"])
            time.sleep(1.1)
            assert state_entry(agents["gpu-box"].run_cycle())["status"] == "sent"
            again = by_host(am.alerts())["gpu-box"]
            assert seconds(again["endsAt"]) > ends
            assert again["labels"] == alerts["gpu-box"]["labels"]
            assert again["startsAt"] == alerts["gpu-box"]["startsAt"]

            # nas's process comes back: the agent resolves its alert, Alertmanager tells Discord
            proc = start_named(tmp_path / "bin", names["nas"])
            try:
                report = agents["nas"].run_cycle()
            finally:
                stop(proc)
            entry = state_entry(report)
            assert (entry["status"], entry["firing"], entry["ended"]) == ("sent", 0, 1)
            assert wait_for(lambda: "nas" not in by_host(am.alerts()), 30), am.alerts()
            assert set(by_host(am.alerts())) == {"gpu-box", "pi"}
            assert wait_for(lambda: len(discord.accepted) >= 2, 60)
            resolved = discord.accepted[1].payload["embeds"][0]["description"]
            assert f"✅ **nas**: Process {names['nas']} is running again" in resolved
            assert "🔴 **gpu-box**" in resolved and "**pi**" not in resolved
        finally:
            for agent in agents.values():
                agent.store.close()
    assert [m.live_mentions for m in discord.accepted] == [[], []]


def test_the_agents_alert_holds_back_the_prometheus_rule_on_the_same_finding(
        tmp_path: Path, discord: FakeDiscord) -> None:
    watched = unique_name()
    with Alertmanager(tmp_path / "am", shipped_config(discord.url)) as am:
        agent = fleet_agent(tmp_path, "nas", am.url, watched)
        try:
            agent.run_cycle()
        finally:
            agent.store.close()
        # what Prometheus posts when HomelabMonitorHighFinding fires, for nas and for pi
        rule = {"alertname": "HomelabMonitorHighFinding", "job": "homelab-monitor",
                "instance": "nas.lan:9101", "kind": "process_missing", "severity": "critical"}
        am.post([{"labels": {**rule, "host": "nas"}}, {"labels": {**rule, "host": "pi"}}])
        found = wait_for(lambda: len(by_host(am.alerts(), "HomelabMonitorHighFinding")) == 2
                         and by_host(am.alerts(), "HomelabMonitorHighFinding"))
        assert found
        assert found["nas"]["status"]["state"] == "suppressed"
        assert found["nas"]["status"]["inhibitedBy"]
        assert found["pi"]["status"]["state"] == "active"   # no agent alert of pi's: it stays


def test_alertmanager_down_queues_one_state_and_sends_it_when_back(tmp_path: Path,
                                                                 discord: FakeDiscord) -> None:
    port = free_port()
    agent = fleet_agent(tmp_path, "nas", f"http://127.0.0.1:{port}", unique_name())
    try:
        first = agent.run_cycle()
        assert state_entry(first)["status"] == "queued"
        # nothing changed and the first state still waits: no second row for it
        second = agent.run_cycle()
        assert [a for a in second["alerts"] if a["channel"] == "alertmanager"] == []
        assert [r["status"] for r in second["redelivered"] if r["channel"] == "alertmanager"] \
            in ([], ["queued"])
        waiting = [m for m in agent.store.due_messages(float("inf"))
                   if m.channel == "alertmanager"]
        assert len(waiting) == 1
        with Alertmanager(tmp_path / "am", shipped_config(discord.url), port=port) as am:
            # the retry, due now (an hour on: past the backoff)
            [sent] = deliver_due(agent.store, agent.notifiers, time.time() + 3600, 60)
            assert (sent.channel, sent.status) == ("alertmanager", "sent")
            [nas] = by_host(am.alerts()).values()
            # sent late, still open: it ends intervals after the send, not after the cycle
            assert seconds(nas["endsAt"]) > time.time() + 3600
    finally:
        agent.store.close()


# -- check and test-alert -------------------------------------------------------------------------

def test_check_and_test_alert_reach_alertmanager(tmp_path: Path, discord: FakeDiscord,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with Alertmanager(tmp_path / "am", shipped_config(discord.url)) as am:
        settings = fleet_settings(tmp_path, "nas", am.url, unique_name())
        outcome = check.check_alertmanager(settings)
        assert outcome.ok, outcome
        assert outcome.detail.startswith(f"Alertmanager 0.25.0 at 127.0.0.1:{am.port} answers "
                                         "(cluster disabled)")
        assert trial_alert.command(argparse.Namespace(), settings) == 0
        out = capsys.readouterr().out
        assert "\u2714 alertmanager: test message sent" in out
        [test] = [a for a in am.alerts() if a["labels"]["alertname"] == "test_alert"]
        assert test["labels"]["host"] == "nas" and test["labels"]["severity"] == "none"
        assert test["annotations"]["summary"] == trial_alert.HEADLINE
        assert seconds(test["endsAt"]) - seconds(test["startsAt"]) == pytest.approx(60, abs=1)
    down = check.check_alertmanager(settings)
    assert not down.ok and down.detail.startswith(f"Alertmanager unreachable at 127.0.0.1:{am.port}")


# bcrypt of "s3cret-pw" (mkpasswd -m bcrypt -R 10), for Alertmanager's own basic auth
PASSWORD_HASH = "$2b$10$461GtSJ4fB8fa3E875S7Sev29sFSiqDZ6f8UDWo5HR9sII2jTkTWi"


def test_basic_auth_in_the_url_is_used_and_a_wrong_password_is_said(
        tmp_path: Path, discord: FakeDiscord) -> None:
    web = tmp_path / "web.yml"        # --web.config.file: plain http is allowed on loopback
    web.write_text(f'basic_auth_users:\n  agent: "{PASSWORD_HASH}"\n', encoding="utf-8")
    with Alertmanager(tmp_path / "am", shipped_config(discord.url),
                      extra_args=[f"--web.config.file={web}"]) as am:
        good = f"http://agent:s3cret-pw@127.0.0.1:{am.port}"
        agent = fleet_agent(tmp_path, "nas", good, unique_name())
        try:
            assert check.check_alertmanager(agent.settings).ok
            assert state_entry(agent.run_cycle())["status"] == "sent"
        finally:
            agent.store.close()
        wrong = fleet_settings(tmp_path, "pi", f"http://agent:not-it@127.0.0.1:{am.port}",
                               unique_name())
        refused = check.check_alertmanager(wrong)
        assert not refused.ok and "refused the credentials of ALERTMANAGER_URL (401)" in \
            refused.detail
        assert "not-it" not in refused.detail + refused.fix
        agent = Agent(wrong, Store.open(wrong.db_path), RulesJudge(),
                      make_notifiers(wrong, io.StringIO()))
        try:
            entry = state_entry(agent.run_cycle())
        finally:
            agent.store.close()
        assert entry["status"] == "failed"        # permanent: the next cycle's state retries


# -- the shape posted, without a server -----------------------------------------------------------

def _finding(labels: dict[str, str] | None = None, severity: Severity = Severity.HIGH) -> Finding:
    return Finding(source="processes", kind="process_missing", key="nginx", severity=severity,
                   floor=Severity.NONE, summary="watched process 'nginx' is not running",
                   labels=labels or {"process": "nginx"}, facts={"process": "nginx"})


def test_untrusted_text_is_made_inert_in_every_annotation() -> None:
    hostile = "@everyone <@123> https://evil.example/x \u202egnp.exe\u200b"
    item = {"fingerprint": "f" * 16, "kind": "ssh_bruteforce", "source": "auth_log",
            "severity": "high", "headline": f"login from {hostile}",
            "description": f"user {hostile}\nforged line", "action": "look", "starts_at": 1000.0,
            "ends_at": None}
    [alert] = render({"purpose": "state", "host": "nas", "created_at": 1000.0,
                      "horizon_s": 1200.0, "items": [item]}, now=1100.0)
    text = str(alert["annotations"])
    for bad in ("@everyone", "<@123>", "https://", "\u202e", "\u200b", "\n"):
        assert bad not in text, bad
    assert "\uff20everyone" in text and "hxxps[://]evil[.]example" in text
    assert alert["startsAt"] == "1970-01-01T00:16:40.000Z"
    assert alert["endsAt"] == "1970-01-01T00:38:20.000Z"      # sent at 1100, plus the horizon
    assert "generatorURL" not in alert


def test_a_resolved_item_ends_at_its_resolve_time_and_links_to_the_dashboard() -> None:
    item = {"fingerprint": "ab/cd", "kind": "process_missing", "source": "processes",
            "severity": "high", "headline": "Process nginx is running again",
            "starts_at": 1000.0, "ends_at": 1300.0}
    [alert] = render({"purpose": "state", "host": "nas", "created_at": 1300.0, "horizon_s": 1200.0,
                      "dashboard": "https://nas.lan:8765/", "items": [item]}, now=5000.0)
    assert alert["endsAt"] == "1970-01-01T00:21:40.000Z"
    assert alert["generatorURL"] == "https://nas.lan:8765/findings/ab%2Fcd"


def _row(store: Store, finding: Finding, severity: str) -> Any:
    with store.transaction() as tx:
        tx.upsert_finding(finding.fingerprint, finding.source, finding.kind, finding.key, severity,
                          finding.floor.value, finding.summary, 100.0,
                          {"facts": dict(finding.facts), "labels": dict(finding.labels)})
    return store.findings()[finding.fingerprint]


def test_what_changes_and_what_ends(store: Store) -> None:
    f = _finding()
    fp = f.fingerprint
    high = Judged(f, Severity.HIGH, "rules")
    firing, ended, changed = state_items(Severity.HIGH, [high], {}, [], 200.0)
    assert [i["fingerprint"] for i in firing] == [fp] and ended == [] and changed
    assert firing[0]["starts_at"] == 200.0
    row = _row(store, f, "high")
    firing, ended, changed = state_items(Severity.HIGH, [high], {fp: row}, [], 300.0)
    assert (len(firing), ended, changed) == (1, [], False)    # a refresh
    assert firing[0]["starts_at"] == 100.0                     # since the finding's first cycle
    # judged medium now: below the threshold, its high alert ends
    firing, ended, changed = state_items(Severity.HIGH, [Judged(f, Severity.MEDIUM, "llm")],
                                         {fp: row}, [], 300.0)
    assert firing == [] and [(i["severity"], i["ends_at"]) for i in ended] == [("high", 300.0)]
    # with medium posted too, the severity label changes: the old alert ends, a new one fires
    firing, ended, changed = state_items(Severity.MEDIUM, [Judged(f, Severity.MEDIUM, "llm")],
                                         {fp: row}, [], 300.0)
    assert [i["severity"] for i in firing] == ["medium"] and [i["severity"] for i in ended] == \
        ["high"] and changed
    # not seen this cycle (its collector failed): still open, still posted
    firing, ended, changed = state_items(Severity.HIGH, [], {fp: row}, [], 300.0)
    assert [i["ends_at"] for i in firing] == [None] and ended == [] and not changed
    # closed: posted once more, ending now, in the words of what came back
    firing, ended, changed = state_items(Severity.HIGH, [], {fp: row}, [fp], 300.0)
    assert firing == [] and ended[0]["headline"] == "Process nginx is running again"
    assert ended[0]["ends_at"] == 300.0 and changed


def test_the_url_may_hold_basic_auth_which_is_never_shown(tmp_path: Path) -> None:
    settings = load_settings(environ={}, overrides={
        "DATA_DIR": tmp_path, "ALERTMANAGER_URL": "https://agent:pa55-w0rd@am.example.net/am/"})
    notifier = AlertmanagerNotifier(settings)
    assert notifier._base == "https://am.example.net/am"
    assert notifier._auth == ("agent", "pa55-w0rd")
    assert "pa55-w0rd" not in redact("failed: pa55-w0rd and https://agent:pa55-w0rd@am.example.net/am/")
    assert "pa55-w0rd" not in repr(settings)
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={}, overrides={
            "DATA_DIR": tmp_path, "ALERTMANAGER_URL": "http://agent:pa55-w0rd@am.lan:9093"})
    assert "in clear" in str(refused.value) and "pa55-w0rd" not in str(refused.value)


def test_other_messages_are_refused_not_sent(tmp_path: Path) -> None:
    settings = load_settings(environ={}, overrides={
        "DATA_DIR": tmp_path, "ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}"})
    message = OutboxMessage(1, 0.0, "alertmanager", "recap", None, "none",
                            {"purpose": "recap"}, 0, "queued")
    with pytest.raises(DeliveryError) as refused:
        AlertmanagerNotifier(settings).send(message, 0.0)
    assert refused.value.permanent
