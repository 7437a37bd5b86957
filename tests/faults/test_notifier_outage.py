"""A long Discord outage with random failure modes and restarts: every alert arrives exactly once.

Discord (tests/fakes/discord_server.py, driven by the real alerts/discord.py notifier) answers
each request with a failure drawn at random: 500/502/503, 429 with a random ``retry_after`` (with
and without a ``Via`` header, the case discord-webhook would otherwise sleep on), and hangs longer
than the notifier's timeout. The agent runs a cycle every simulated minute for an hour on an
injected clock, is restarted (Store and Agent closed and reopened on the same file) every quarter
of an hour with one more watched process that never runs (a new high alert), and repeats open
alerts after the cooldown. After Discord recovers, every queued alert is delivered exactly once.

tests/test_delivery.py covers one scripted hour; this is the randomised soak on top of it.
"""
from __future__ import annotations

import json
import random
import sqlite3
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.cycle import Agent
from alerts.discord import DiscordNotifier
from alerts.outbox import deliver_due
from alerts.wording import footer
from analysis.rules import RulesJudge
from foundation.store.data_storage import Store
from tests.fakes.discord_server import FakeDiscord, Reply

SEED = 777
MINUTES = 60
RESTART_EVERY = 15
TIMEOUT_S = 0.5             # the notifier's; a loopback answer takes milliseconds even under load
START = time.time() - 2 * 3600
SUCCESS_RATE = 0.05          # now and then one request gets through during the outage
BUDGET_S = 120.0

pytestmark = pytest.mark.faults


def failure(rng: random.Random) -> Reply:
    """One random answer of a failing Discord."""
    kind = rng.random()
    if kind < SUCCESS_RATE:
        return Reply(200)
    if kind < 0.35:
        return Reply(rng.choice([500, 502, 503, 504]))
    if kind < 0.7:
        return Reply(429, retry_after=round(rng.uniform(0.2, 120.0), 3), via=rng.random() < 0.5)
    return Reply(503, delay_s=TIMEOUT_S * 2)         # hangs: the notifier times out first


def alert_key(timestamp: str, footers: list[str]) -> tuple[str, tuple[str, ...]]:
    """What identifies one alert message: its creation time and its findings (their footers:
    kind, metric, fingerprint and why it was sent)."""
    return timestamp, tuple(sorted(footers))


def queued_alerts(db: Path) -> list[tuple[str, tuple[str, ...]]]:
    """The key of every Discord alert message the outbox ever held."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT payload FROM outbox WHERE channel = 'discord' AND "
                            "purpose = 'alert' ORDER BY id").fetchall()
    finally:
        conn.close()
    keys = []
    for (raw,) in rows:
        payload = json.loads(raw)
        stamp = datetime.fromtimestamp(payload["created_at"], UTC).isoformat()
        keys.append(alert_key(stamp, [footer(i, series=False) for i in payload["items"]]))
    return keys


def test_an_hour_of_random_discord_failures_and_restarts_delivers_each_alert_once(
        tmp_path: Path, make_settings) -> None:
    rng = random.Random(SEED)
    names: list[str] = []
    clock = [START]
    started = time.monotonic()

    def open_agent(discord: FakeDiscord) -> Agent:
        names.append(f"monitor-never-runs-{uuid.uuid4().hex[:8]}")
        settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=list(names),
                                 DISCORD_WEBHOOK_URL=discord.url, ALERT_COOLDOWN_MINUTES=10,
                                 ALERT_RETRY_MAX_SECONDS=600)
        notifiers = {"discord": DiscordNotifier(settings, timeout_s=TIMEOUT_S)}
        return Agent(settings, Store.open(settings.db_path), RulesJudge(), notifiers,
                     clock=lambda: clock[0])

    with FakeDiscord() as discord:
        discord.script = [failure(rng) for _ in range(5000)]
        discord.default = Reply(503)
        agent = open_agent(discord)
        restarts = 0
        for minute in range(MINUTES):
            assert time.monotonic() - started < BUDGET_S, f"budget exceeded at minute {minute}"
            if minute and minute % RESTART_EVERY == 0:
                agent.store.close()
                agent = open_agent(discord)
                restarts += 1
            report = agent.run_cycle()
            assert report["verdict"]["severity"] == "high"
            clock[0] += 60
        outage_requests = discord.requests
        during = len(discord.accepted)
        db = agent.settings.db_path

        agent.store.close()                         # a last restart, then Discord is back
        agent = open_agent(discord)
        discord.script, discord.default = [], None
        rounds = 0
        while agent.store.outbox_counts().get("queued") and rounds < 20:
            clock[0] += agent.settings.ALERT_RETRY_MAX_SECONDS
            deliver_due(agent.store, agent.notifiers, clock[0],
                        agent.settings.ALERT_RETRY_MAX_SECONDS)
            rounds += 1
        counts = agent.store.outbox_counts()
        agent.store.close()

    expected = queued_alerts(db)
    arrived = Counter(alert_key(a.payload["embeds"][0]["timestamp"],
                                [e["footer"]["text"] for e in a.payload["embeds"]])
                      for a in discord.accepted)
    highs = sum(1 for a in discord.accepted if "HIGH alert" in a.payload["content"])
    print(f"\nnotifier outage: seed={SEED} simulated minutes={MINUTES} restarts={restarts + 1} "
          f"alerts queued={len(expected)} requests during the outage={outage_requests} "
          f"(accepted then {during}), delivered after recovery in {rounds} round(s); "
          f"accepted in all {len(discord.accepted)} ({highs} high); "
          f"{time.monotonic() - started:.1f} s")
    assert counts == {"sent": len(expected)}
    assert len(expected) >= 8 and len(set(expected)) == len(expected)
    assert dict(arrived) == dict.fromkeys(expected, 1)          # each one, exactly once
    assert highs == len(expected)
    assert outage_requests > 3 * len(expected)                    # it kept retrying meanwhile
