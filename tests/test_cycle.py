"""One cycle end to end on a real store with real processes; failures degrade, never kill."""
from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cycle import Agent, CycleAborted
from alerts.console import ConsoleNotifier
from analysis.rules import RulesJudge
from foundation.model import CollectResult, Sample
from foundation.redact import register_secret
from foundation.store.data_storage import Store
from tests.procs import start_named, stop, unique_name


def make_agent(settings: Any, store: Store, stream: io.StringIO | None = None,
               stop_event: threading.Event | None = None) -> Agent:
    return Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(stream or io.StringIO())},
                 stop_event)


def test_missing_watched_process_is_a_high_finding_and_a_console_alert(
        tmp_path: Path, make_settings: Any, store: Store) -> None:
    name = unique_name()
    proc = start_named(tmp_path / "bin", name)
    try:
        settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[name])
        out = io.StringIO()
        agent = make_agent(settings, store, out)
        report = agent.run_cycle()
        watched = report["observations"]["processes"]["watched"][name]
        assert watched["running"] and watched["pids"] == [proc.pid]
        assert report["findings"] == [] and out.getvalue() == ""
        stop(proc)
        report = agent.run_cycle()
    finally:
        stop(proc)
    [finding] = report["findings"]
    assert (finding["kind"], finding["severity"], finding["floor"]) == ("process_missing", "high",
                                                                        "high")
    assert report["verdict"]["severity"] == "high" and report["verdict"]["by"] == "rules"
    assert report["alerts"] == [{"channel": "console", "purpose": "alert", "severity": "high",
                                 "status": "sent", "findings": [finding["id"]]}]
    assert name in out.getvalue() and "process_missing" in out.getvalue()


def test_alert_fires_once_then_resolves_when_the_process_returns(
        tmp_path: Path, make_settings: Any, store: Store) -> None:
    name = unique_name()
    settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[name])
    out = io.StringIO()
    agent = make_agent(settings, store, out)
    first = agent.run_cycle()
    second = agent.run_cycle()
    assert [a["status"] for a in first["alerts"]] == ["sent"]
    assert [a["status"] for a in second["alerts"]] == ["suppressed"]  # within the cooldown
    assert out.getvalue().count("[ALERT]") == 1
    proc = start_named(tmp_path / "bin", name)
    try:
        third = agent.run_cycle()
    finally:
        stop(proc)
    assert third["findings"] == []
    assert [(a["purpose"], a["status"]) for a in third["alerts"]] == [("resolved", "sent")]
    assert "[RESOLVED]" in out.getvalue()


def test_cmdline_entries_match_a_substring_of_the_command_line(
        tmp_path: Path, make_settings: Any, store: Store) -> None:
    name = unique_name()
    proc = start_named(tmp_path / "bin", name)
    try:
        settings = make_settings(COLLECTORS=["processes"],
                                 PROCESSES_TO_MONITOR=["cmdline:import time; time.sleep(600)"])
        report = make_agent(settings, store).run_cycle()
    finally:
        stop(proc)
    watched = report["observations"]["processes"]["watched"]
    assert proc.pid in watched["cmdline:import time; time.sleep(600)"]["pids"]


def test_a_failing_collector_is_reported_without_its_secret_and_the_cycle_goes_on(
        make_settings: Any, store: Store, fake_collectors: dict[str, Any]) -> None:
    secret = "hunter2-webhook-token-value"
    register_secret(secret)

    def explode(ctx: Any) -> CollectResult:
        raise ConnectionError(f"could not reach https://x/api/webhooks/1/{secret}")

    fake_collectors["install"]("ping", explode)
    settings = make_settings(COLLECTORS=["ping", "processes"], PROCESSES_TO_MONITOR=[])
    report = make_agent(settings, store).run_cycle()
    ping = report["collectors"]["ping"]
    assert ping["ok"] is False and "ConnectionError" in ping["error"]
    assert secret not in ping["error"]
    assert report["collectors"]["processes"]["ok"] is True
    assert report["observations"]["processes"]["process_count"] > 0


def test_an_overrunning_collector_times_out_and_does_not_pile_up(
        make_settings: Any, store: Store, fake_collectors: dict[str, Any]) -> None:
    release = threading.Event()
    calls = []

    def slow(ctx: Any) -> CollectResult:
        calls.append(time.monotonic())
        release.wait(30)
        return CollectResult(observations={"late": True})

    fake_collectors["install"]("nmap", slow, timeout=0.3)
    settings = make_settings(COLLECTORS=["nmap", "processes"])
    agent = make_agent(settings, store)
    t0 = time.monotonic()
    first = agent.run_cycle()
    assert time.monotonic() - t0 < 15  # 0.3 s expected; waiting for the collector: 30 s
    assert "timed out" in first["collectors"]["nmap"]["error"]
    second = agent.run_cycle()
    assert "still running" in second["collectors"]["nmap"]["error"]
    assert len(calls) == 1  # not started a second time while the first still runs
    release.set()
    time.sleep(0.1)
    third = agent.run_cycle()
    assert third["collectors"]["nmap"]["ok"] is True and len(calls) == 2


def test_stop_mid_cycle_aborts_quickly_and_commits_nothing(
        make_settings: Any, store: Store, fake_collectors: dict[str, Any]) -> None:
    def slow(ctx: Any) -> CollectResult:
        time.sleep(20)
        return CollectResult(observations={}, samples=(Sample("never", 1.0),))

    fake_collectors["install"]("sensors", slow, timeout=60)
    stop_event = threading.Event()
    agent = make_agent(make_settings(COLLECTORS=["sensors", "processes"]), store,
                       stop_event=stop_event)
    threading.Timer(0.3, stop_event.set).start()
    t0 = time.monotonic()
    with pytest.raises(CycleAborted):
        agent.run_cycle()
    assert time.monotonic() - t0 < 10  # 0.3 s expected; waiting for the collector: 20 s
    assert store.baseline("processes.count") is None and store.last_cycle() is None


def test_samples_state_and_baselines_are_committed_with_the_cycle(
        make_settings: Any, store: Store) -> None:
    agent = make_agent(make_settings(COLLECTORS=["processes"]), store)
    agent.run_cycle()
    agent.run_cycle()
    assert store.baseline("processes.count").n == 2
    assert "cpu" in store.collector_state("processes")
    assert store.last_cycle()["collectors"]["processes"]["ok"] is True
    assert store.integrity_check() == "ok"


def test_collectors_start_one_after_another_unless_one_is_slow(
        make_settings: Any, store: Store, fake_collectors: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A quick collector ends before the next one starts (no fight for the interpreter's lock);
    a slow one does not hold the next back: they overlap, each within its own bound."""
    import agent.cycle as cycle

    events: list[tuple[str, str]] = []
    release = threading.Event()

    def quick(name: str) -> Any:
        def collect(ctx: Any) -> CollectResult:
            events.append((name, "start"))
            events.append((name, "end"))
            return CollectResult(observations={})
        return collect

    def slow(ctx: Any) -> CollectResult:
        events.append(("slow", "start"))
        released = release.wait(30)      # released by the collector after it, if that one runs
        events.append(("slow", "end" if released else "end, never released"))
        return CollectResult(observations={})

    def releaser(ctx: Any) -> CollectResult:
        events.append(("releaser", "start"))
        release.set()
        return CollectResult(observations={})

    for name in ("syslog", "auth_log", "sensors"):
        fake_collectors["install"](name, quick(name))
    fake_collectors["install"]("ping", slow, timeout=60)
    fake_collectors["install"]("nmap", releaser)
    # a stagger far longer than a quick collector takes, even on a loaded machine: the order is
    # then decided by the stagger alone
    monkeypatch.setattr(cycle, "STAGGER_S", 10.0)
    settings = make_settings(COLLECTORS=["syslog", "auth_log", "sensors", "ping", "nmap"])
    t0 = time.monotonic()
    report = make_agent(settings, store).run_cycle()
    assert all(report["collectors"][n]["ok"] for n in settings.COLLECTORS)
    assert events[:6] == [("syslog", "start"), ("syslog", "end"), ("auth_log", "start"),
                          ("auth_log", "end"), ("sensors", "start"), ("sensors", "end")]
    # the slow one was still running when the next started 10 s later, and was released by it
    assert events[6:] == [("slow", "start"), ("releaser", "start"), ("slow", "end")]
    assert time.monotonic() - t0 < 25   # quick ones did not wait the stagger out


def test_a_stop_during_the_stagger_aborts_the_cycle(
        make_settings: Any, store: Store, fake_collectors: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.cycle as cycle

    stop_event, release = threading.Event(), threading.Event()
    started: list[str] = []

    def hung(ctx: Any) -> CollectResult:
        started.append("ping")
        stop_event.set()                 # the operator stops the agent meanwhile
        release.wait(30)
        return CollectResult(observations={})

    def after(ctx: Any) -> CollectResult:
        started.append("nmap")
        return CollectResult(observations={})

    fake_collectors["install"]("ping", hung)
    fake_collectors["install"]("nmap", after)
    monkeypatch.setattr(cycle, "STAGGER_S", 2.0)   # time enough for the first to be running
    settings = make_settings(COLLECTORS=["ping", "nmap"])
    try:
        with pytest.raises(CycleAborted):
            make_agent(settings, store, stop_event=stop_event).run_cycle()
    finally:
        release.set()
    assert started == ["ping"]           # the next collector was not started after the stop
