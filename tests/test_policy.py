"""Alert transitions per fingerprint: new, worse, repeat after the cooldown, resolved."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from alerts.policy import decide
from analysis import detectors
from analysis.rules import RulesJudge
from foundation.model import CollectResult, Finding, Judged, Severity


@dataclass
class Row:
    severity: str
    alerted_severity: str | None = None
    alerted_at: float | None = None


def judged(severity: Severity) -> Judged:
    return Judged(Finding("ping", "host_unreachable", "gw", severity, "gw down"), severity, "")


def test_transitions() -> None:
    item = judged(Severity.HIGH)
    fp = item.finding.fingerprint
    assert decide([item], {}, [], 0, 600)[0].why == "new"
    assert decide([item], {fp: Row("medium")}, [], 0, 600)[0].why == "worse"
    assert decide([item], {fp: Row("high", "high", 100.0)}, [], 200.0, 600)[0].why == "cooldown"
    assert decide([item], {fp: Row("high", "high", 100.0)}, [], 700.0, 600)[0].why == "repeat"
    assert decide([judged(Severity.MEDIUM)], {}, [], 0, 600)[0].alert is False
    [resolved] = decide([], {fp: Row("high", "high", 1.0)}, [fp], 5.0, 600)
    assert (resolved.why, resolved.alert) == ("resolved", True)
    assert decide([], {fp: Row("medium")}, [fp], 5.0, 600) == []  # never alerted: nothing to say


def test_a_medium_finding_that_turns_high_alerts_once_as_worse(
        make_settings: Any, store: Any, fake_collectors: Any) -> None:
    levels = iter([Severity.MEDIUM, Severity.HIGH, Severity.HIGH])
    fake_collectors["install"](
        "ping", lambda ctx: CollectResult(observations={"level": next(levels).value}),
        detect=lambda result, ctx: [Finding("ping", "host_unreachable", "gw", Severity.parse(
            result.observations["level"]), "gw down", facts={
                "target": "gw", "target_spoken": "The ping target gw", "cycles": 2})])
    out = io.StringIO()
    agent = Agent(make_settings(COLLECTORS=["ping"]), store, RulesJudge(),
                  {"console": ConsoleNotifier(out)})
    first, second, third = agent.run_cycle(), agent.run_cycle(), agent.run_cycle()
    assert first["alerts"] == []                                   # medium: the recap's business
    assert [(a["purpose"], a["status"]) for a in second["alerts"]] == [("alert", "sent")]
    assert [a["status"] for a in third["alerts"]] == ["suppressed"]  # cooldown
    assert out.getvalue().count("[ALERT]") == 1


def test_a_one_off_event_alerts_once_and_closes_without_a_resolved_message(
        make_settings: Any, store: Any, fake_collectors: Any) -> None:
    from analysis.kinds import KindSpec

    present = iter([True, False, False])
    fake_collectors["install"](
        "auth_log", lambda ctx: CollectResult(observations={"seen": next(present)}),
        detect=lambda result, ctx: [Finding(
            "auth_log", "login_after_failures", "203.0.113.9", Severity.HIGH,
            "login after 6 failures", floor=Severity.HIGH, facts={"failures": 6},
            labels={"user": "root", "address": "203.0.113.9"})] if result.observations["seen"]
        else [],
        kinds=(KindSpec("login_after_failures", "auth_log", Severity.HIGH, Severity.HIGH, "t", "a",
                        event=True),))
    out = io.StringIO()
    agent = Agent(make_settings(COLLECTORS=["auth_log"]), store, RulesJudge(),
                  {"console": ConsoleNotifier(out)})
    first, second = agent.run_cycle(), agent.run_cycle()
    assert [a["purpose"] for a in first["alerts"]] == ["alert"]
    assert second["alerts"] == []                          # no "resolved" for a break-in
    assert store.findings() == {}                          # but it is closed
    assert "[RESOLVED]" not in out.getvalue()


def test_every_shipped_one_off_kind_is_marked() -> None:
    kinds = {k.kind: k for k in detectors.all_kinds()}
    for kind in ("login_after_failures", "new_login_source", "sudo_failure", "user_created",
                 "new_open_port", "host_appeared", "kernel_event", "novel_log_message"):
        assert kinds[kind].event, kind
    for kind in ("process_missing", "container_down", "host_unreachable", "temperature_high",
                 "llm_external_connection"):
        assert not kinds[kind].event, kind
