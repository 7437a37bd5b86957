"""Timeouts that cannot fit the interval are refused, with the rule the real cycle follows.

The settings used to accept a 10 s interval together with a 60 s Ollama timeout and the
containers collector's 25 s bound. The cycle runs its collectors in parallel, each within its own
bound, and then the judge within ``judge_limit_s``: its worst case is the largest collector bound
plus the judge's, which is what ``agent.budget.check_fits`` compares with the interval.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import collectors.containers
import collectors.processes
from agent.budget import check_fits, collector_bounds, judge_limit_s
from agent.cycle import Agent
from foundation.model import CollectResult
from foundation.settings import ConfigError
from foundation.store.data_storage import Store
from tests.conftest import ROOT

pytestmark = pytest.mark.faults


def test_the_issues_example_is_refused_naming_the_settings_and_the_numbers(
        make_settings: Any) -> None:
    settings = make_settings(MONITOR_INTERVAL_SECONDS=10, OLLAMA_TIMEOUT_SECONDS=60,
                             COLLECTORS=["processes", "containers"])
    with pytest.raises(ConfigError) as err:
        check_fits(settings)
    text = str(err.value)
    assert text.startswith("MONITOR_INTERVAL_SECONDS: 10 s")
    assert "OLLAMA_TIMEOUT_SECONDS 60 s" in text and "containers" in text
    assert "may take 150 s" in text and "at least 150" in text   # 25 s + (2 x 60 + 5) s
    assert "COLLECTORS" in text


def test_parallel_collectors_count_once_and_the_judge_after_them(make_settings: Any) -> None:
    base = {"COLLECTORS": ["processes", "containers"], "OLLAMA_TIMEOUT_SECONDS": 1}
    bounds = collector_bounds(make_settings(**base))
    assert bounds == {"processes": 15.0, "containers": 25.0}
    worst = max(bounds.values()) + judge_limit_s(make_settings(**base))
    assert worst == 32.0 < sum(bounds.values())            # a sum would refuse what fits
    check_fits(make_settings(**base, MONITOR_INTERVAL_SECONDS=32))
    with pytest.raises(ConfigError, match="may take 32 s"):
        check_fits(make_settings(**base, MONITOR_INTERVAL_SECONDS=31))


def test_collector_timeout_caps_every_bound_and_the_cycle_enforces_it(make_settings: Any,
                                                                      store: Any) -> None:
    """COLLECTOR_TIMEOUT_SECONDS (like Prometheus' scrape_timeout) makes short intervals possible."""
    base = {"COLLECTORS": ["processes", "syslog"], "OLLAMA_TIMEOUT_SECONDS": 1,
            "MONITOR_INTERVAL_SECONDS": 10}
    with pytest.raises(ConfigError, match="COLLECTOR_TIMEOUT_SECONDS"):
        check_fits(make_settings(**base))
    capped = make_settings(**base, COLLECTOR_TIMEOUT_SECONDS=3)
    assert collector_bounds(capped) == {"processes": 3.0, "syslog": 3.0}
    check_fits(capped)                                          # 3 s + (2 x 1 + 5) s = 10 s
    assert collector_bounds(make_settings(**base, COLLECTOR_TIMEOUT_SECONDS=200)) == {
        "processes": 15.0, "syslog": 90.0}                      # a cap never lengthens a bound


def test_only_enabled_collectors_count(make_settings: Any) -> None:
    check_fits(make_settings(COLLECTORS=["processes"], OLLAMA_TIMEOUT_SECONDS=1,
                             MONITOR_INTERVAL_SECONDS=22))      # 15 s + 7 s
    with pytest.raises(ConfigError, match="slowest, syslog, may take 90 s"):
        check_fits(make_settings(COLLECTORS=["processes", "syslog"], OLLAMA_TIMEOUT_SECONDS=1,
                                 MONITOR_INTERVAL_SECONDS=22))


def test_the_defaults_fit() -> None:
    from foundation.settings import load_settings

    check_fits(load_settings(environ={}))


class _HungJudge:
    """A judge that never answers (until the test ends)."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def judge(self, *args: Any) -> Any:
        self.release.wait()
        raise RuntimeError("released")


def test_the_real_cycle_takes_the_slowest_collector_then_the_judge(
        make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hung collectors and a hung judge: the cycle lasts the rule's worst case (not less).

    That it is not more (the collectors overlap) is a matter of wall time, which a loaded machine
    stretches by seconds; the rule's side of it is test_parallel_collectors_count_once_...
    """
    release = threading.Event()
    started: dict[str, float] = {}

    def hung(name: str):
        def collect(ctx: Any) -> CollectResult:
            started[name] = time.monotonic()
            release.wait()
            return CollectResult(observations={})
        return collect

    monkeypatch.setattr(collectors.processes, "collect", hung("processes"))
    monkeypatch.setattr(collectors.processes, "timeout_s", lambda s: 2.0)
    monkeypatch.setattr(collectors.containers, "collect", hung("containers"))
    monkeypatch.setattr(collectors.containers, "timeout_s", lambda s: 3.0)
    settings = make_settings(COLLECTORS=["processes", "containers"], OLLAMA_TIMEOUT_SECONDS=0.25,
                             ALWAYS_ASK_LLM=True, MONITOR_INTERVAL_SECONDS=10)
    worst = max(collector_bounds(settings).values()) + judge_limit_s(settings)
    assert worst == 8.5
    check_fits(settings)
    store = Store.open(tmp_path / "monitor.db")
    try:
        agent = Agent(settings, store, _HungJudge(release), {})
        t0 = time.monotonic()
        report = agent.run_cycle()
        took = time.monotonic() - t0
    finally:
        release.set()
        store.close()
    assert took >= worst * 0.99           # the rule is not laxer than the cycle
    assert set(started) == {"processes", "containers"}
    assert "timed out after 3 s" in report["collectors"]["containers"]["error"]
    assert report["verdict"]["by"] == "rules" and "no answer within" in report["verdict"]["note"]


@pytest.mark.parametrize("command", [["--once"], ["check"]])
def test_the_cli_refuses_with_exit_2_and_no_traceback(tmp_path: Path, command: list[str]) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "MONITOR_DATA_DIR": str(tmp_path / "data"),
           "MONITOR_COLLECTORS": "processes,containers", "MONITOR_INTERVAL_SECONDS": "10",
           "MONITOR_OLLAMA_TIMEOUT_SECONDS": "60"}
    proc = subprocess.run([sys.executable, str(ROOT / "monitor_agent.py"), *command], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "configuration error: MONITOR_INTERVAL_SECONDS: 10 s" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data" / "monitor.db").exists()   # refused before anything ran
