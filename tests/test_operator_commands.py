"""The operator's commands: ack, snooze, maintenance (in the cycle and on the command line),
test-alert through the real notifiers, and --version."""
from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

import agent
from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from alerts.discord import DiscordNotifier
from alerts.recap import finding_groups
from analysis.rules import RulesJudge
from foundation.durations import DurationError, duration_text, parse_duration
from foundation.model import CollectResult, Finding, Severity
from foundation.store.data_storage import Store
from tests.conftest import ROOT
from tests.fakes.discord_server import WEBHOOK_TOKEN, FakeDiscord, Reply
from tests.procs import run_agent, unique_name

START = time.mktime((2026, 6, 15, 12, 0, 0, 0, 0, -1))   # local noon: no quiet hours involved
CYCLE_S = 300.0
SPEAKER = "media_player.living_room"


# -- durations ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("2h", 7200), ("1d", 86400),
                                           ("1h30m", 5400), (" 45S ", 45), ("1w", 604800)])
def test_durations_as_the_operator_types_them(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "m", "2 h", "1h-5m", "0m", "-1h", "1y", "91d", "1.5h"])
def test_what_is_not_a_duration_is_refused(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_durations_for_people() -> None:
    assert [duration_text(s) for s in (5, 600, 7500, 7200, 93600, 86400)] == [
        "5 s", "10 min", "2 h 5 min", "2 h", "1 d 2 h", "1 d"]


# -- silences in the cycle ------------------------------------------------------------------------

class Clock:
    """The agent's settable clock."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Probe:
    """A stand-in source whose findings the test sets: {key: severity} of the kind given."""

    def __init__(self, fake_collectors: dict[str, Any], name: str, kind: str) -> None:
        self.present: dict[str, Severity] = {}
        fake_collectors["install"](
            name, lambda ctx: CollectResult(observations={}),
            detect=lambda result, ctx: [
                Finding(source=name, kind=kind, key=key, severity=severity,
                        summary=f"{name} {key} is down") for key, severity in self.present.items()])


@pytest.fixture
def discord():
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def rig(make_settings, fake_collectors, discord, tmp_path: Path) -> dict[str, Any]:
    """An agent on a real store with two stand-in sources, the console and the fake Discord."""
    settings = make_settings(COLLECTORS=["probe", "other"], ALERT_COOLDOWN_MINUTES=10,
                             DISCORD_WEBHOOK_URL=discord.url)
    probe = Probe(fake_collectors, "probe", "probe_down")
    other = Probe(fake_collectors, "other", "other_down")
    clock = Clock()
    out = io.StringIO()
    store = Store.open(settings.db_path)
    notifiers = {"console": ConsoleNotifier(out),
                 "discord": DiscordNotifier(settings, timeout_s=5.0)}
    yield {"agent": Agent(settings, store, RulesJudge(), notifiers, clock=clock), "clock": clock,
           "store": store, "probe": probe, "other": other, "out": out, "settings": settings}
    store.close()


def cycle(rig: dict[str, Any]) -> dict[str, Any]:
    """One cycle, then the clock moves on by one interval."""
    report = rig["agent"].run_cycle()
    rig["clock"].now += CYCLE_S
    return report


def outcomes(report: dict[str, Any]) -> set[tuple[str, str, str, str | None]]:
    """(channel, purpose, status, reason) of every alert entry of a report."""
    return {(a["channel"], a["purpose"], a["status"], a.get("reason")) for a in report["alerts"]}


def test_maintenance_holds_every_alert_back_yet_records_and_recaps(rig, discord) -> None:
    store, clock = rig["store"], rig["clock"]
    store.add_silence("maintenance", "", clock.now, clock.now + 3600)
    rig["probe"].present = {"a": Severity.HIGH}
    rig["other"].present = {"b": Severity.HIGH}
    first = cycle(rig)
    assert outcomes(first) == {(c, "alert", "suppressed", "maintenance")
                               for c in ("console", "discord")}
    assert len(first["alerts"]) == 4                       # two findings, two channels each
    assert rig["out"].getvalue() == "" and discord.accepted == []
    assert store.outbox_counts() == {}                     # nothing even queued
    rows = store.findings()
    assert {r.kind for r in rows.values()} == {"probe_down", "other_down"}
    assert all(r.alerted_severity is None for r in rows.values())
    groups = finding_groups(store.finding_events_since(START - 1))
    assert {g["kind"] for g in groups} == {"probe_down", "other_down"}   # the recap has them

    assert store.end_silences("maintenance", clock.now) == 1           # `maintenance off`
    second = cycle(rig)
    assert outcomes(second) == {(c, "alert", "sent", None) for c in ("console", "discord")}
    assert rig["out"].getvalue().count("[ALERT]") == 1 and len(discord.accepted) == 1


def test_a_snooze_holds_back_its_kind_only_and_ends_on_time(rig, discord) -> None:
    store, clock = rig["store"], rig["clock"]
    store.add_silence("snooze", "probe_down", clock.now, clock.now + 2 * CYCLE_S)
    rig["probe"].present = {"a": Severity.HIGH}
    rig["other"].present = {"b": Severity.HIGH}
    first = cycle(rig)
    by_finding = {(a["findings"][0], a["channel"]): (a["status"], a.get("reason"))
                  for a in first["alerts"] if len(a["findings"]) == 1}
    probe_fp = next(f["id"] for f in first["findings"] if f["kind"] == "probe_down")
    other_fp = next(f["id"] for f in first["findings"] if f["kind"] == "other_down")
    assert by_finding[(probe_fp, "discord")] == ("suppressed", "snooze")
    assert by_finding[(other_fp, "discord")] == ("sent", None)     # another kind: alerted
    [message] = discord.accepted
    assert "other" in json.dumps(message.payload) and "probe a" not in json.dumps(message.payload)
    cycle(rig)                                                     # still snoozed
    third = cycle(rig)                                             # the snooze has run out
    assert ("discord", "alert", "sent", None) in outcomes(third)
    assert len(discord.accepted) == 2 and "probe a" in json.dumps(discord.accepted[1].payload)


def test_an_ack_holds_repeats_and_the_resolved_message_then_ends(rig, discord) -> None:
    store, clock = rig["store"], rig["clock"]
    rig["probe"].present = {"a": Severity.HIGH}
    first = cycle(rig)
    [fp] = [f["id"] for f in first["findings"]]
    assert ("discord", "alert", "sent", None) in outcomes(first)
    ack = store.acknowledge(fp, clock.now, None)
    assert ack.severity == "high"
    clock.now += 600                                              # past the 10 min cooldown
    repeat = cycle(rig)
    assert outcomes(repeat) == {(c, "alert", "suppressed", "ack") for c in ("console", "discord")}
    rig["probe"].present = {}
    resolved = cycle(rig)
    assert outcomes(resolved) == {(c, "resolved", "suppressed", "ack")
                                  for c in ("console", "discord")}
    assert len(discord.accepted) == 1 and "[RESOLVED]" not in rig["out"].getvalue()
    assert store.silences(clock.now) == []                       # it lasted until the resolution
    [row] = store.silences(clock.now, include_ended=True)
    assert row.ended_why == "resolved"


def test_an_acked_finding_that_gets_worse_is_alerted_again(rig, discord) -> None:
    store, clock = rig["store"], rig["clock"]
    rig["probe"].present = {"a": Severity.MEDIUM}
    first = cycle(rig)
    [fp] = [f["id"] for f in first["findings"]]
    assert first["alerts"] == []                                  # medium waits for the recap
    store.acknowledge(fp, clock.now, 10 * 3600 + clock.now)
    cycle(rig)                                                    # same severity: nothing
    rig["probe"].present = {"a": Severity.HIGH}
    worse = cycle(rig)
    assert outcomes(worse) == {(c, "alert", "sent", None) for c in ("console", "discord")}
    assert len(discord.accepted) == 1
    assert "worse" in json.dumps(discord.accepted[0].payload)
    [row] = store.silences(clock.now, include_ended=True)
    assert row.ended_why == "alerted"                            # the ack is spent
    after = cycle(rig)                                            # back to the plain cooldown
    assert outcomes(after) == {(c, "alert", "suppressed", "cooldown")
                               for c in ("console", "discord")}


# -- the commands ---------------------------------------------------------------------------------

def run(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """The CLI with no Ollama to ask (a closed loopback port, a short timeout)."""
    return run_agent(tmp_path, *args, **{"OLLAMA_HOST": "http://127.0.0.1:9",
                                         "OLLAMA_TIMEOUT_SECONDS": "5", **settings})


def test_ack_snooze_and_maintenance_from_the_command_line(tmp_path: Path) -> None:
    missing = unique_name()
    assert run(tmp_path, "ack", "0123abcd").returncode == 2           # no cycle has run yet
    first = run(tmp_path, "--once", "--json", PROCESSES_TO_MONITOR=missing)
    assert first.returncode == 0, first.stderr
    [finding] = json.loads(first.stdout)["findings"]
    fp = finding["id"]

    wrong = run(tmp_path, "ack", "ffffffffffffffff")
    assert wrong.returncode == 2
    assert "no open finding has the fingerprint 'ffffffffffffffff'" in wrong.stderr
    assert fp in wrong.stderr and "process_missing" in wrong.stderr   # it names what exists
    acked = run(tmp_path, "ack", fp[:6])                                # a unique prefix will do
    assert acked.returncode == 0, acked.stderr
    assert f"acknowledged {fp} at high until the finding resolves" in acked.stdout

    typo = run(tmp_path, "snooze", "proces_missing")
    assert typo.returncode == 2
    assert "did you mean process_missing?" in typo.stderr and "ping_loss" in typo.stderr
    assert run(tmp_path, "snooze", "ping_loss", "--for", "90x").returncode == 2
    snoozed = run(tmp_path, "snooze", "ping_loss")
    assert snoozed.returncode == 0 and "(4 h from now)" in snoozed.stdout   # the default
    assert run(tmp_path, "maintenance", "2h").returncode == 0

    status = run(tmp_path, "status")
    assert status.returncode == 0, status.stderr
    assert fp in status.stdout and "Silences" in status.stdout
    assert "maintenance" in status.stdout and "until it resolves" in status.stdout
    doc = json.loads(run(tmp_path, "status", "--json").stdout)
    assert [a["target"] for a in doc["silences"]["acks"]] == [fp]
    assert [s["target"] for s in doc["silences"]["snoozes"]] == ["ping_loss"]
    assert doc["silences"]["maintenance"]["until"] is not None
    assert doc["open_findings"][0]["silenced_by"] == "maintenance"

    again = run(tmp_path, "--once", "--json", PROCESSES_TO_MONITOR=missing)
    report = json.loads(again.stdout)
    assert {(a["status"], a["reason"]) for a in report["alerts"]} == {("suppressed", "maintenance")}
    assert "[ALERT]" not in again.stderr

    off = run(tmp_path, "maintenance", "off")
    assert off.returncode == 0 and "maintenance ended" in off.stdout
    assert run(tmp_path, "maintenance", "off").stdout.strip() == "no maintenance window was in force"
    doc = json.loads(run(tmp_path, "status", "--json").stdout)
    assert doc["silences"]["maintenance"] is None
    assert doc["open_findings"][0]["silenced_by"] == "ack"
    assert run(tmp_path, "ack", fp, "--off").stdout.strip() == f"ack of {fp} ended"


# -- test-alert -----------------------------------------------------------------------------------

def test_test_alert_goes_through_every_configured_channel_and_stores_nothing(
        tmp_path: Path, hass, discord) -> None:
    channels = {"DISCORD_WEBHOOK_URL": discord.url, "HOME_ASSISTANT_URL": hass.url,
                "HOME_ASSISTANT_TOKEN": hass.token, "GOOGLE_HOME_SPEAKER_ID": SPEAKER,
                "HOME_ASSISTANT_TTS_ENTITY": hass.tts_entity}
    missing = unique_name()
    assert run(tmp_path, "--once", PROCESSES_TO_MONITOR=missing, **channels).returncode == 0
    db = tmp_path / "data" / "monitor.db"
    before = sqlite3.connect(db).execute("SELECT COUNT(*), MAX(id) FROM outbox").fetchone()
    alerts_before = len(discord.accepted)
    proc = run(tmp_path, "test-alert", **channels)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\u2714 discord: test message sent" in proc.stdout
    assert "\u2714 home_assistant: test message sent" in proc.stdout
    [test] = discord.accepted[alerts_before:]
    assert "Test message from homelab-monitor" in json.dumps(test.payload)
    media = hass.state(SPEAKER)["attributes"]["media_content_id"]
    assert "This is a test of the alerts" in media.replace("+", " ").replace("%20", " ")
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*), MAX(id) FROM outbox").fetchone() == before
    [(alerted_at,)] = conn.execute("SELECT alerted_at FROM findings").fetchall()
    conn.close()
    assert alerted_at is not None    # the real finding's cooldown clock is the real alert's


def test_test_alert_reports_each_failure_with_secrets_redacted(tmp_path: Path, hass,
                                                               discord) -> None:
    discord.default = Reply(500)
    bad_token = "not-a-real-token-4242"
    proc = run(tmp_path, "test-alert", DISCORD_WEBHOOK_URL=discord.url,
               HOME_ASSISTANT_URL=hass.url, HOME_ASSISTANT_TOKEN=bad_token,
               GOOGLE_HOME_SPEAKER_ID=SPEAKER, HOME_ASSISTANT_TTS_ENTITY=hass.tts_entity)
    assert proc.returncode == 1
    assert "\u2718 discord: Discord server error (500)" in proc.stdout
    assert "\u2718 home_assistant: Home Assistant refused HOME_ASSISTANT_TOKEN (401)" in proc.stdout
    for text in (proc.stdout, proc.stderr):
        assert WEBHOOK_TOKEN not in text and bad_token not in text
    assert not (tmp_path / "data" / "monitor.db").exists()


def test_test_alert_with_the_console_only_says_what_would_enable_the_others(
        tmp_path: Path) -> None:
    proc = run(tmp_path, "test-alert")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("[TEST]") and "Test message from homelab-monitor" in proc.stdout
    assert "\u2714 console: test message sent" in lines
    assert "- discord: not configured (set DISCORD_WEBHOOK_URL)" in lines
    assert ("- home_assistant: not configured (set HOME_ASSISTANT_URL, HOME_ASSISTANT_TOKEN and "
            "GOOGLE_HOME_SPEAKER_ID)") in lines


# -- --version ------------------------------------------------------------------------------------

def test_version_has_one_source(tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "agent.__version__"}
    proc = run(tmp_path, "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"homelab-monitor {agent.__version__}"
    doc = json.loads(run(tmp_path, "status", "--json").stdout)   # no store yet: still versioned
    assert doc["version"] == agent.__version__ and "--once" in doc["fix"]
