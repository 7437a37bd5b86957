"""Alert transitions per fingerprint: new, worse, repeat after the cooldown, resolved."""
from __future__ import annotations

import io
import sys
import types
from dataclasses import dataclass
from typing import Any

import collectors
from alerts.console import ConsoleNotifier
from alerts.policy import Judged, decide
from analysis import detectors
from analysis.judge import RulesJudge
from core.cycle import Agent
from core.model import CollectResult, Finding, Severity


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
        make_settings: Any, store: Any, monkeypatch: Any) -> None:
    levels = iter([Severity.MEDIUM, Severity.HIGH, Severity.HIGH])
    collector = types.ModuleType("tests.fake_escalating")
    collector.collect = lambda ctx: CollectResult(observations={"level": next(levels).value})
    collector.timeout_s = lambda settings: 5.0
    detector = types.ModuleType("tests.fake_detect_escalating")
    detector.detect = lambda result, ctx: [Finding(
        "ping", "host_unreachable", "gw", Severity.parse(result.observations["level"]), "gw down")]
    detector.KINDS = ()
    monkeypatch.setitem(sys.modules, collector.__name__, collector)
    monkeypatch.setitem(sys.modules, detector.__name__, detector)
    monkeypatch.setitem(collectors.REGISTRY, "ping", collector.__name__)
    monkeypatch.setitem(detectors.DETECTORS, "ping", detector.__name__)
    out = io.StringIO()
    agent = Agent(make_settings(COLLECTORS=["ping"]), store, RulesJudge(),
                  {"console": ConsoleNotifier(out)})
    first, second, third = agent.run_cycle(), agent.run_cycle(), agent.run_cycle()
    assert first["alerts"] == []                                   # medium: the recap's business
    assert [(a["purpose"], a["status"]) for a in second["alerts"]] == [("alert", "sent")]
    assert [a["status"] for a in third["alerts"]] == ["suppressed"]  # cooldown
    assert out.getvalue().count("[ALERT]") == 1
