"""known_issues.json: strict validation at start-up, matching, and mute/cap applied in the cycle."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.cycle import Agent
from analysis.known_issues import load_known_issues, parse_known_issues
from analysis.rules import RulesJudge
from foundation.model import Judged, Severity
from foundation.settings import ConfigError
from tests.fakes import make_finding

KINDS = {"process_missing", "ssh_bruteforce", "rtt_high"}


def _doc(**entry: object) -> str:
    base = {"id": "e1", "description": "a known thing", "enabled": True,
            "match": {"kind": "process_missing"}, "action": "mute"}
    base.update(entry)
    return json.dumps({"known_issues": [base]})


def _local(hour: int, minute: int = 0) -> float:
    """An epoch time at this local hour today."""
    now = time.localtime()
    return time.mktime((now.tm_year, now.tm_mon, now.tm_mday, hour, minute, 0, 0, 0, -1))


def test_the_shipped_file_is_valid_and_all_disabled() -> None:
    issues = load_known_issues(Path("known_issues.json"))
    assert len(issues.entries) >= 4
    assert not any(e.enabled for e in issues.entries)
    assert {e.action for e in issues.entries} == {"mute", "cap", "context"}


@pytest.mark.parametrize("text, where", [
    ("{not json", "not valid JSON"),
    ('{"issues": []}', "top level"),
    (_doc(id="bad id!"), "entry #1: field id"),
    (_doc(description=""), "entry 'e1': field description"),
    (_doc(enabled="yes"), "field enabled"),
    (_doc(action="silence"), "field action"),
    (_doc(action="cap"), "field cap_at"),
    (_doc(action="cap", cap_at="critical"), "field cap_at"),
    (_doc(cap_at="low"), "field cap_at: only goes with action cap"),
    (_doc(match={"kind": "process_missing", "summary": "("}), "match.summary: invalid regular"),
    (_doc(match={"kind": "process_missing", "labels": {"user": "[a"}}), "match.labels.user"),
    (_doc(match={"kind": "process_missing", "window": "25:00-02:00"}), "match.window"),
    (_doc(match={"kind": "process_missing", "window": "02:00-02:00"}), "match.window"),
    (_doc(match={"kind": "proces_missing"}), "unknown finding kind 'proces_missing'"),
    (_doc(match={"kind": []}), "match.kind"),
    (_doc(match={"kind": "process_missing", "sumary": "x"}), "match.sumary: unknown field"),
    (_doc(enable=True), "field enable: unknown field"),
])
def test_mistakes_name_the_file_entry_and_field(text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=r"known_issues\.json") as err:
        parse_known_issues(text, "known_issues.json", KINDS)
    assert where in str(err.value)


def test_duplicate_ids_are_refused() -> None:
    doc = json.loads(_doc())
    doc["known_issues"].append(doc["known_issues"][0])
    with pytest.raises(ConfigError, match="more than one entry"):
        parse_known_issues(json.dumps(doc), "k.json", KINDS)


def test_unknown_kind_is_allowed_in_a_disabled_entry() -> None:
    issues = parse_known_issues(_doc(enabled=False, match={"kind": "future_kind"}), "k", KINDS)
    assert issues.entries[0].kinds == ("future_kind",)


def test_matching_by_kind_summary_labels_and_window() -> None:
    entry = parse_known_issues(_doc(match={
        "kind": ["process_missing"], "summary": "(?i)plex", "labels": {"process": "^plex"},
        "window": "23:00-02:00"}), "k", KINDS).entries[0]
    plex = make_finding("plex", summary="Plex is gone", labels={"process": "plexmediaserver"})
    assert entry.matches(plex, _local(23, 30)) and entry.matches(plex, _local(1, 59))
    assert not entry.matches(plex, _local(2, 0)) and not entry.matches(plex, _local(12))
    assert not entry.matches(make_finding("sshd", labels={"process": "sshd"}), _local(1))
    assert not entry.matches(make_finding("plex", summary="Plex", labels={}), _local(1))


def test_apply_mutes_caps_and_leaves_context_alone() -> None:
    doc = {"known_issues": [
        {"id": "mute-a", "description": "d", "enabled": True, "action": "mute",
         "match": {"kind": "process_missing", "labels": {"process": "^a$"}}},
        {"id": "cap-b", "description": "d", "enabled": True, "action": "cap", "cap_at": "low",
         "match": {"kind": "process_missing", "labels": {"process": "^b$"}}},
        {"id": "ctx-c", "description": "d", "enabled": True, "action": "context",
         "match": {"kind": "process_missing"}},
        {"id": "off", "description": "d", "enabled": False, "action": "mute",
         "match": {"kind": "process_missing"}}]}
    issues = parse_known_issues(json.dumps(doc), "k", KINDS)
    judged = [Judged(make_finding(n, labels={"process": n}, floor=Severity.HIGH), Severity.HIGH,
                     "llm") for n in "abc"]
    out, matched = issues.apply(judged, time.time())
    assert [j.severity for j in out] == [Severity.NONE, Severity.LOW, Severity.HIGH]
    assert matched[judged[0].finding.fingerprint].id == "mute-a"
    assert matched[judged[1].finding.fingerprint].before is Severity.HIGH
    assert judged[2].finding.fingerprint not in matched
    assert "capped at low by known issue cap-b" in out[1].reason
    context = issues.context([j.finding for j in judged], time.time())
    assert [c.id for c in context] == ["mute-a", "cap-b", "ctx-c"]


def test_a_cap_never_raises_a_severity() -> None:
    issues = parse_known_issues(_doc(action="cap", cap_at="medium"), "k", KINDS)
    out, _ = issues.apply([Judged(make_finding("x"), Severity.LOW, "r")], time.time())
    assert out[0].severity is Severity.LOW


def test_cycle_reports_muted_findings_and_suppressed_alerts(tmp_path: Path, make_settings,
                                                           store) -> None:
    path = tmp_path / "known.json"
    path.write_text(json.dumps({"known_issues": [
        {"id": "retired-zq9", "description": "retired on purpose", "enabled": True,
         "action": "mute", "match": {"kind": "process_missing",
                                     "labels": {"process": "^zq9-retired$"}}}]}))
    settings = make_settings(COLLECTORS=["processes"], KNOWN_ISSUES_PATH=path,
                             PROCESSES_TO_MONITOR=["zq9-retired", "zq9-watched"])

    class Sink:
        channel = "console"

        def send(self, message: object, now: float) -> None:
            """Accept every message."""

    agent = Agent(settings, store, RulesJudge(), {"console": Sink()})
    report = agent.run_cycle()
    by_summary = {f["summary"]: f for f in report["findings"]}
    muted = by_summary["watched process 'zq9-retired' is not running"]
    kept = by_summary["watched process 'zq9-watched' is not running"]
    assert muted["severity"] == "none" and muted["known_issue"] == "retired-zq9"
    assert kept["severity"] == "high" and "known_issue" not in kept
    suppressed = [a for a in report["alerts"] if a["status"] == "suppressed"]
    assert suppressed and suppressed[0]["known_issue"] == "retired-zq9"
    assert muted["id"] in suppressed[0]["findings"]


def test_a_bad_file_makes_the_agent_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    bad = tmp_path / "known.json"
    bad.write_text(_doc(action="cap"))
    monkeypatch.setenv("MONITOR_KNOWN_ISSUES_PATH", str(bad))
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MONITOR_COLLECTORS", '["processes"]')
    # main() sets up the process's logging on this test's captured stderr: put it back after,
    # or later tests' log records go to a closed stream ("--- Logging error ---")
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    assert main(["--once"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "entry 'e1': field cap_at" in err
