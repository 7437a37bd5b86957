"""Docker out of reach while containers are watched: one high finding, resolved when it answers.

Before, an unreachable engine made the containers collector "unavailable" and the watched
containers produced no finding at all, although CONSTRAINTS.md calls a watched container that is
down "always serious". The engine here is a real podman API service (tests/podman_engine.py),
stopped and started again by its pid; the hung engine is a Unix socket that accepts and never
answers.
"""
from __future__ import annotations

import io
import os
import socket
from pathlib import Path
from typing import Any

import pytest

import collectors.containers as containers
from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from analysis.rules import RulesJudge
from foundation.store.data_storage import Store
from tests.podman_engine import IMAGE, PodmanEngine
from tests.procs import unique_name

pytestmark = pytest.mark.faults


def _agent(settings: Any, store: Store, out: io.StringIO) -> Agent:
    return Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(out)})


def _open(store: Store) -> set[tuple[str, str, str, str]]:
    return {(r.kind, r.key, r.severity, r.floor) for r in store.findings(open_only=True).values()}


@pytest.fixture
def own_engine(tmp_path: Path):
    """A podman engine of this test's own: it is stopped mid-test, which a shared one must not be."""
    engine = PodmanEngine(tmp_path / "podman")
    try:
        yield engine.start()
    finally:
        engine.stop()


def test_a_stopped_engine_is_one_high_finding_naming_the_watched_and_resolves_when_back(
        own_engine: PodmanEngine, make_settings: Any, store: Store) -> None:
    web = unique_name("web")
    ghost = unique_name("ghost")   # watched, never created: container_down before the outage
    made = own_engine.podman("run", "-d", "--name", web, IMAGE, "sleep", "600")
    assert made.returncode == 0, made.stderr
    settings = make_settings(COLLECTORS=["containers"], DOCKER_HOST=own_engine.url,
                             DOCKER_CONTAINERS_TO_MONITOR=[web, ghost])
    out = io.StringIO()
    agent = _agent(settings, store, out)

    agent.run_cycle()
    assert _open(store) == {("container_down", ghost, "high", "high")}

    own_engine.stop_service()
    down = agent.run_cycle()
    unreachable = [f for f in down["findings"] if f["kind"] == "docker_unreachable"]
    assert [(f["severity"], f["floor"]) for f in unreachable] == [("high", "high")]
    assert web in unreachable[0]["summary"] and ghost in unreachable[0]["summary"]
    # what was known to be wrong stays open: nobody can see that it is fixed
    assert _open(store) == {("container_down", ghost, "high", "high"),
                            ("docker_unreachable", "engine", "high", "high")}
    assert "docker_unreachable" in out.getvalue()
    assert {a["status"] for a in down["alerts"]} == {"sent"}

    again = agent.run_cycle()   # still down: the same finding, not a second alert
    assert [f["kind"] for f in again["findings"]].count("docker_unreachable") == 1
    assert {a["status"] for a in again["alerts"]} <= {"suppressed"}   # cooldown
    assert out.getvalue().count("docker_unreachable") == 1

    own_engine.serve()
    back = agent.run_cycle()
    assert back["collectors"]["containers"]["available"]
    assert back["observations"]["containers"]["watched"][web]["running"]
    assert _open(store) == {("container_down", ghost, "high", "high")}
    assert [(a["purpose"], a["status"]) for a in back["alerts"]
            if a["status"] != "suppressed"] == [("resolved", "sent")]
    assert "RESOLVED" in out.getvalue()


def test_a_hung_engine_is_a_finding_within_the_collectors_bound(
        make_settings: Any, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(containers, "API_TIMEOUT_S", 1)
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as server:   # accepts, reads nothing, never answers
        server.bind(str(path))
        server.listen(16)
        settings = make_settings(COLLECTORS=["containers"], DOCKER_HOST=f"unix://{path}",
                                 DOCKER_CONTAINERS_TO_MONITOR=["web"])
        bound = containers.timeout_s(settings)      # 2 x 1 s + 5 s
        report = _agent(settings, store, io.StringIO()).run_cycle()
    status = report["collectors"]["containers"]
    assert status["ok"], status           # it ended by itself, not by the cycle's deadline
    assert status["duration_s"] < bound
    [finding] = report["findings"]
    assert (finding["kind"], finding["severity"], finding["floor"]) == (
        "docker_unreachable", "high", "high")
    assert "no answer within 1 s" in finding["summary"] and "web" in finding["summary"]


def test_nothing_watched_and_no_engine_stays_quiet(make_settings: Any, store: Store,
                                                   tmp_path: Path) -> None:
    settings = make_settings(COLLECTORS=["containers"],
                             DOCKER_HOST=f"unix://{tmp_path}/absent.sock")
    report = _agent(settings, store, io.StringIO()).run_cycle()
    assert not report["collectors"]["containers"]["available"]
    assert report["findings"] == []
    assert os.path.exists(tmp_path) and _open(store) == set()
