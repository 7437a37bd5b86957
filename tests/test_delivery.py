"""Delivery that loses nothing and repeats nothing, through agent.cycle.Agent and the real outbox."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from agent.cycle import Agent
from alerts.discord import DiscordNotifier
from alerts.home_assistant import HomeAssistantNotifier
from alerts.outbox import DeliveryError, deliver_due
from analysis.rules import RulesJudge
from foundation.store.data_storage import Store
from tests.fakes.discord_server import FakeDiscord, Reply

START = time.mktime((2026, 6, 15, 12, 0, 0, 0, 0, -1))  # local noon
CYCLE_S = 300.0


class Clock:
    """A settable clock for the agent."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def discord():
    with FakeDiscord() as fake:
        yield fake


def open_agent(settings: Any, clock: Clock, discord_timeout_s: float = 1.0,
               extra: dict[str, Any] | None = None) -> Agent:
    """A fresh Store and Agent on the settings' database (a restart opens new ones)."""
    store = Store.open(settings.db_path)
    notifiers = {"discord": DiscordNotifier(settings, timeout_s=discord_timeout_s)}
    notifiers.update(extra or {})
    return Agent(settings, store, RulesJudge(), notifiers, clock=clock)


def footers(discord: FakeDiscord) -> list[tuple[str, str]]:
    """(embed timestamp, footer) of every accepted embed: which alert of which cycle arrived."""
    return [(e["timestamp"], e.get("footer", {}).get("text", ""))
            for a in discord.accepted for e in a.payload.get("embeds", [])]


def test_an_hour_of_failing_discord_and_a_restart_lose_and_double_nothing(discord, make_settings):
    missing = f"monitor-test-absent-{uuid.uuid4().hex[:8]}"
    settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[missing],
                             DISCORD_WEBHOOK_URL=discord.url, ALERT_COOLDOWN_MINUTES=10,
                             ALERT_RETRY_MAX_SECONDS=600)
    clock = Clock(START)
    # A hang answers 503 after the client's 0.5 s timeout: it never posts, on any load. (A hang that
    # posts, then answers late, is a real double: tests/faults/test_possible_repeat.py marks it.)
    failures = [Reply(500), Reply(429, retry_after=40.0), Reply(429, retry_after=20.0, via=True),
                Reply(503, delay_s=1.5), Reply(502), Reply(503)]
    agent = open_agent(settings, clock, discord_timeout_s=0.5)
    reports = []
    for step in range(13):                       # an hour of cycles, every 5 minutes
        discord.script = [failures[step % len(failures)]]
        discord.default = Reply(503)
        if step == 6:                            # the agent restarts half-way through
            agent.store.close()
            agent = open_agent(settings, clock, discord_timeout_s=0.5)
        reports.append(agent.run_cycle())
        clock.now += CYCLE_S
    assert discord.accepted == []
    alerts = [a for r in reports for a in r["alerts"] if a["status"] != "suppressed"]
    assert len(alerts) == 7                      # new at 0 min, then a repeat every 10 minutes
    assert all(a["status"] == "queued" and a["severity"] == "high" for a in alerts)

    agent.store.close()                          # restart again, then Discord recovers
    agent = open_agent(settings, clock)
    discord.script, discord.default = [], None
    for _ in range(3):
        clock.now += settings.ALERT_RETRY_MAX_SECONDS
        deliver_due(agent.store, agent.notifiers, clock(), settings.ALERT_RETRY_MAX_SECONDS)
    assert agent.store.outbox_counts() == {"sent": 7}
    arrived = footers(discord)
    assert len(arrived) == 7 and len(set(arrived)) == 7          # each alert exactly once
    assert [f.split(" · ")[-1] for _, f in arrived] == ["new"] + ["repeat"] * 6
    assert all("late: queued" in a.payload["content"] for a in discord.accepted)
    agent.store.close()


@pytest.fixture
def sleeper() -> Callable[[], subprocess.Popen]:
    """Start python sleepers with a unique argv[0]; all stopped by their pid at the end."""
    name = f"monitor-sleeper-{uuid.uuid4().hex[:8]}"
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([name, "-c", "import time; time.sleep(120)"],
                                executable=sys.executable)
        started.append(proc)
        return proc

    start.name = name  # type: ignore[attr-defined]
    yield start
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(10)


def test_alert_repeat_after_cooldown_and_resolved(discord, make_settings, sleeper):
    settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[sleeper.name],
                             DISCORD_WEBHOOK_URL=discord.url, ALERT_COOLDOWN_MINUTES=10)
    clock = Clock(START)
    agent = open_agent(settings, clock)
    proc = sleeper()
    time.sleep(0.2)
    assert agent.run_cycle()["findings"] == [] and discord.accepted == []

    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(10)
    clock.now += CYCLE_S
    report = agent.run_cycle()
    assert [f["kind"] for f in report["findings"]] == ["process_missing"]
    assert [(a["channel"], a["purpose"], a["status"]) for a in report["alerts"]] == [
        ("discord", "alert", "sent")]
    clock.now += CYCLE_S                         # 5 minutes later: within the cooldown
    report = agent.run_cycle()
    assert [a["status"] for a in report["alerts"]] == ["suppressed"]
    clock.now += CYCLE_S                         # 10 minutes after the first alert: repeat
    report = agent.run_cycle()
    assert [a["status"] for a in report["alerts"]] == ["sent"]

    sleeper()
    time.sleep(0.2)
    clock.now += CYCLE_S
    report = agent.run_cycle()
    assert report["findings"] == []
    assert [(a["purpose"], a["status"]) for a in report["alerts"]] == [("resolved", "sent")]
    clock.now += CYCLE_S
    assert agent.run_cycle()["alerts"] == []
    kinds = [a.payload["content"].split(" ")[0] for a in discord.accepted]
    assert len(discord.accepted) == 3 and kinds[2] == "\u2705"
    assert [f.split(" · ")[-1] for _, f in footers(discord)[:2]] == ["new", "repeat"]
    assert discord.accepted[2].payload["embeds"][0]["color"] == 0x2ECC71
    agent.store.close()


@pytest.mark.parametrize("floor_override,expected", [(False, "suppressed"), (True, "failed")])
def test_quiet_hours_keep_the_speaker_silent_unless_the_floor_is_high(
        discord, make_settings, floor_override, expected):
    missing = f"monitor-test-absent-{uuid.uuid4().hex[:8]}"
    settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[missing],
                             DISCORD_WEBHOOK_URL=discord.url, TTS_QUIET_HOURS="11:00-13:00",
                             TTS_QUIET_HOURS_FLOOR_OVERRIDE=floor_override,
                             HOME_ASSISTANT_URL="http://127.0.0.1:9", HOME_ASSISTANT_TOKEN="tok-x1",
                             GOOGLE_HOME_SPEAKER_ID="media_player.kitchen")
    class Refusing(HomeAssistantNotifier):
        """Home Assistant answering 401: a sent announcement shows as "failed"."""

        def send(self, message: Any, now: float) -> None:
            raise DeliveryError("refused", permanent=True)

    agent = open_agent(settings, Clock(START), extra={"home_assistant": Refusing(settings)})
    report = agent.run_cycle()
    status = {a["channel"]: a["status"] for a in report["alerts"]}
    assert status == {"discord": "sent", "home_assistant": expected}
    assert len(discord.accepted) == 1
    agent.store.close()
