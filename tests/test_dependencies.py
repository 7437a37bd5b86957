"""The journal speaks on change: Ollama, Discord and Docker going down are logged once, coming back
once, across restarts (the state is in the store), and `status` says for how long."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from agent import status
from agent.cli import cycle_line
from agent.cycle import Agent
from agent.dependencies import Health, docker_health
from alerts.discord import DiscordNotifier
from analysis.ollama_judge import OllamaJudge
from analysis.rules import RulesJudge
from foundation.model import CollectorStatus, CollectResult, Finding, Severity
from foundation.store.data_storage import Store
from tests.fakes.discord_server import FakeDiscord, Reply
from tests.fakes.ollama_server import MISSING_MODEL, SERVER_ERROR, VALID, FakeOllama

START = time.mktime((2026, 6, 15, 12, 0, 0, 0, 0, -1))
CYCLE_S = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def probe(fake_collectors: dict[str, Any]) -> None:
    """A stand-in source with one high finding every cycle (so the judge is asked)."""
    fake_collectors["install"](
        "probe", lambda ctx: CollectResult(observations={}),
        detect=lambda result, ctx: [Finding(source="probe", kind="probe_down", key="a",
                                            severity=Severity.HIGH, summary="probe a is down")])


def records(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == level]


def test_ollama_down_is_logged_once_kept_across_a_restart_and_back_once(
        make_settings, probe, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    with FakeOllama(behaviour=MISSING_MODEL) as fake:
        settings = make_settings(COLLECTORS=["probe"], OLLAMA_HOST=fake.url, LLM_CACHE_MINUTES=0,
                                 OLLAMA_TIMEOUT_SECONDS=10)

        def start() -> Agent:
            return Agent(settings, Store.open(settings.db_path), OllamaJudge(settings),
                         {}, clock=clock)

        agent = start()
        for _ in range(3):                  # the warm-up fails each cycle: one warning in all
            assert agent.run_cycle()["verdict"]["by"] == "rules"
            clock.now += CYCLE_S
        [down] = records(caplog, "agent.dependencies", logging.WARNING)
        assert down.startswith("ollama is down since ") and "ollama pull" in down
        assert "the rules decide" in down
        assert records(caplog, "analysis.ollama_judge", logging.WARNING) == []
        row = agent.store.dependencies()["ollama"]
        assert (row.up, row.since, row.checked_at) == (False, START, START + 2 * CYCLE_S)
        # each cycle took the judge's outcome: one that asks nothing confirms nothing
        assert agent.judge.take_health() is None
        doc = status.document(agent.store, clock.now)
        assert doc["dependencies"]["ollama"]["down_for_s"] == 3 * CYCLE_S
        agent.store.close()

        agent = start()                     # a restart: the outage is not news
        fake.behaviour = SERVER_ERROR       # loads now, answers 500: still down
        agent.run_cycle()
        clock.now += CYCLE_S
        assert len(records(caplog, "agent.dependencies", logging.WARNING)) == 1
        assert agent.store.dependencies()["ollama"].since == START
        fake.behaviour = VALID
        assert agent.run_cycle()["verdict"]["by"] == "llm"
        [back] = records(caplog, "agent.dependencies", logging.INFO)
        assert back.startswith("ollama is back after 20 min (down since ")
        row = agent.store.dependencies()["ollama"]
        assert row.up and row.error is None and row.since == clock.now
        agent.store.close()


def test_discord_down_is_logged_once_then_back_and_the_cycle_line_counts_queued(
        make_settings, probe, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    with FakeDiscord() as discord:
        discord.default = Reply(503)
        settings = make_settings(COLLECTORS=["probe"], DISCORD_WEBHOOK_URL=discord.url,
                                 ALERT_COOLDOWN_MINUTES=60, ALERT_RETRY_MAX_SECONDS=60)
        store = Store.open(settings.db_path)
        agent = Agent(settings, store, RulesJudge(),
                      {"discord": DiscordNotifier(settings, timeout_s=5.0)}, clock=clock)
        lines = []
        for _ in range(3):
            lines.append(cycle_line(agent.run_cycle()))
            clock.now += CYCLE_S
        [down] = records(caplog, "agent.dependencies", logging.WARNING)
        assert down.startswith("discord is down since ") and "Discord server error (503)" in down
        assert "alerts wait in the outbox" in down
        assert records(caplog, "alerts.outbox", logging.WARNING) == []  # retries: DEBUG only
        assert len(records(caplog, "alerts.outbox", logging.DEBUG)) >= 3
        assert "alerts: 0 delivered, 1 queued, 0 suppressed" in lines[0]
        assert "alerts: 0 delivered, 0 queued, 1 suppressed" in lines[1]   # the cooldown
        discord.default = None
        agent.run_cycle()
        [back] = records(caplog, "agent.dependencies", logging.INFO)
        assert back.startswith("discord is back after 15 min")
        assert len(discord.accepted) == 1 and store.dependencies()["discord"].up
        store.close()


def test_docker_down_is_tracked_only_when_containers_are_watched(
        make_settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    socket = f"unix://{tmp_path}/no-docker.sock"
    settings = make_settings(COLLECTORS=["containers"], DOCKER_HOST=socket,
                             DOCKER_CONTAINERS_TO_MONITOR=["web"])
    store = Store.open(settings.db_path)
    agent = Agent(settings, store, RulesJudge(), {}, clock=clock)
    for _ in range(2):
        agent.run_cycle()
        clock.now += CYCLE_S
    [down] = records(caplog, "agent.dependencies", logging.WARNING)
    assert down.startswith("docker is down since ") and "no-docker.sock" in down
    row = store.dependencies()["docker"]
    assert not row.up and "no Docker socket" in (row.error or "")
    store.close()

    unwatched = make_settings(COLLECTORS=["containers"], DOCKER_HOST=socket,
                              DATA_DIR=tmp_path / "other")
    store = Store.open(unwatched.db_path)
    Agent(unwatched, store, RulesJudge(), {}, clock=clock).run_cycle()
    assert store.dependencies() == {}        # no container watched: Docker is not relied on
    store.close()


def test_docker_health_reads_the_collectors_outcome(make_settings) -> None:
    watched = make_settings(DOCKER_CONTAINERS_TO_MONITOR=["web"])
    ok = {"containers": CollectorStatus(True, None, 0.1)}
    assert docker_health(watched, ok, {"containers": {"engine": {"api_version": "1.41"}}}) \
        == Health(True)
    unavailable = {"containers": CollectorStatus(True, None, 0.1, note="nothing answers")}
    assert docker_health(watched, unavailable, {"containers": {"engine": None}}) \
        == Health(False, "nothing answers")
    failed = {"containers": CollectorStatus(False, "timed out after 25 s", 25.0)}
    assert docker_health(watched, failed, {}) is None       # no evidence either way
    assert docker_health(make_settings(), ok, {"containers": {"engine": None}}) is None


def test_docker_going_away_and_back_with_a_real_engine(
        make_settings, podman_engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    settings = make_settings(COLLECTORS=["containers"], DOCKER_HOST=podman_engine.url,
                             DOCKER_CONTAINERS_TO_MONITOR=["web"])
    store = Store.open(settings.db_path)
    agent = Agent(settings, store, RulesJudge(), {}, clock=clock)
    try:
        agent.run_cycle()
        assert store.dependencies()["docker"].up
        assert records(caplog, "agent.dependencies", logging.INFO) == []  # first seen up: no news
        podman_engine.stop_service()
        for _ in range(2):
            clock.now += CYCLE_S
            agent.run_cycle()
        [down] = records(caplog, "agent.dependencies", logging.WARNING)
        assert down.startswith("docker is down since ")
    finally:
        podman_engine.serve()            # the session's engine, for the tests that follow
    clock.now += CYCLE_S
    agent.run_cycle()
    [back] = records(caplog, "agent.dependencies", logging.INFO)
    assert back.startswith("docker is back after 10 min")
    store.close()
