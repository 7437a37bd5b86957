"""The auth_log collector end to end: real files, exactly-once appends, the detectors, the agent."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from analysis import detect_auth
from analysis.rules import RulesJudge
from collectors import auth_log
from foundation.context import CollectContext, DetectContext
from foundation.model import CollectResult, Severity

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "auth_log"
ATTACKER = "203.0.113.77"


def stamp(ts: float) -> str:
    return time.strftime("%b %e %H:%M:%S", time.localtime(ts))


def loghub_lines(corpus: Path, needle: str, count: int) -> list[str]:
    """Real loghub sshd lines containing ``needle``, without their timestamp (CRLF removed)."""
    text = (corpus / "loghub" / "OpenSSH" / "OpenSSH_2k.log").read_text(encoding="utf-8")
    found = [line.rstrip("\r")[16:] for line in text.splitlines() if needle in line]
    assert len(found) >= count
    return found[:count]


def attack(corpus: Path, start: float, failures: int, address: str = ATTACKER) -> list[str]:
    """Real failed-password lines re-addressed and re-timed: one every 20 s from ``start``."""
    lines = loghub_lines(corpus, "Failed password for root from 183.62.140.253", failures)
    return [f"{stamp(start + 20 * i)} {body.replace('183.62.140.253', address)}"
            for i, body in enumerate(lines)]


def login(corpus: Path, at: float, address: str = ATTACKER) -> str:
    (body,) = loghub_lines(corpus, "Accepted password for fztu", 1)
    return f"{stamp(at)} {body.replace('119.137.62.142', address)}"


def collect(settings: Any, state: dict[str, Any], now: float) -> CollectResult:
    return auth_log.collect(CollectContext(settings, now, state))


def test_appends_between_cycles_are_counted_exactly_once(corpus: Path, tmp_path: Path,
                                                         make_settings: Any) -> None:
    log = tmp_path / "auth.log"
    data = (corpus / "loghub" / "OpenSSH" / "OpenSSH_2k.log").read_bytes() + b"\r\n"
    cut = data.index(b"\n", len(data) // 3) + 1
    log.write_bytes(data[:cut])
    settings = make_settings(AUTH_LOG_PATH=log, AUTH_LOG_BACKEND="file", LOG_START_AT="start")
    now = time.mktime((2026, 11, 23, 0, 0, 0, 0, 0, -1))
    first = collect(settings, {}, now)
    with open(log, "ab") as handle:           # appended, no rotation
        handle.write(data[cut:])
    second = collect(settings, json.loads(json.dumps(first.state)), now + 300)
    third = collect(settings, json.loads(json.dumps(second.state)), now + 600)
    a, b, c = first.observations, second.observations, third.observations
    assert a["backend"] == "file" and a["path"] == str(log)
    assert a["lines_read"] + b["lines_read"] == 2000 and c["lines_read"] == 0
    assert a["failed_logins"] + b["failed_logins"] == 528 and c["failed_logins"] == 0
    assert sum(o["failed_by_ip"].get("183.62.140.253", 0) for o in (a, b)) == 286
    assert a["accepted_count"] + b["accepted_count"] == 1
    samples = {s.metric: s for s in first.samples}
    assert samples["auth.failed_logins"].value == a["failed_logins"]
    assert samples["auth.failed_logins"].by_hour


def test_missing_file_is_unavailable_with_a_fix(tmp_path: Path, make_settings: Any) -> None:
    settings = make_settings(AUTH_LOG_PATH=tmp_path / "nope.log", AUTH_LOG_BACKEND="file")
    result = collect(settings, {}, time.time())
    assert result.available is False
    assert "nope.log" in result.note and "rsyslog" in result.note


def test_bruteforce_spanning_two_cycles(corpus: Path, tmp_path: Path, make_settings: Any,
                                        store: Any) -> None:
    log, now = tmp_path / "auth.log", time.time()
    lines = attack(corpus, now - 500, 5)
    log.write_text("\n".join(lines[:3]) + "\n")
    settings = make_settings(AUTH_LOG_PATH=log, AUTH_LOG_BACKEND="file", LOG_START_AT="start")
    first = collect(settings, {}, now)
    ctx = DetectContext(settings, now, store)
    assert [f.kind for f in detect_auth.detect(first, ctx)] == []
    with open(log, "a") as handle:
        handle.write("\n".join(lines[3:]) + "\n")
    second = collect(settings, json.loads(json.dumps(first.state)), now + 60)
    (finding,) = detect_auth.detect(second, ctx)
    assert finding.kind == "ssh_bruteforce" and finding.key == ATTACKER
    assert finding.severity == Severity.MEDIUM and finding.floor == Severity.NONE
    assert finding.labels == {"address": ATTACKER}
    assert 1 <= len(finding.evidence) <= 5 and ATTACKER in finding.evidence[0]
    assert second.observations["failed_logins"] == 2


def test_sudo_failure_and_user_created_from_the_real_capture(tmp_path: Path, make_settings: Any,
                                                             store: Any) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes((FIXTURES / "debian12_tools.log").read_bytes())
    settings = make_settings(AUTH_LOG_PATH=log, AUTH_LOG_BACKEND="file", LOG_START_AT="start")
    result = collect(settings, {}, time.time())
    found = {(f.kind, f.key): f for f in detect_auth.detect(result, DetectContext(
        settings, time.time(), store))}
    assert set(found) == {("sudo_failure", "carol"), ("user_created", "carol")}
    assert found["sudo_failure", "carol"].value == 3.0
    assert "new user: name=carol" in found["user_created", "carol"].evidence[0]
    assert result.observations["sudo_failures"] == 3


def agent(settings: Any, store: Any) -> Agent:
    return Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(io.StringIO())})


def test_login_after_failures_through_the_agent_cycle(corpus: Path, tmp_path: Path,
                                                      make_settings: Any, store: Any) -> None:
    log, now = tmp_path / "auth.log", time.time()
    log.write_text("\n".join([*attack(corpus, now - 400, 6), login(corpus, now - 200)]) + "\n")
    settings = make_settings(AUTH_LOG_PATH=log, AUTH_LOG_BACKEND="file", LOG_START_AT="start",
                             COLLECTORS=["auth_log"])
    report = agent(settings, store).run_cycle()
    assert report["collectors"]["auth_log"]["ok"] is True
    kinds = {f["kind"]: f for f in report["findings"]}
    assert kinds["login_after_failures"]["severity"] == "high"
    assert kinds["login_after_failures"]["floor"] == "high"
    assert kinds["ssh_bruteforce"]["severity"] == "medium"
    assert "new_login_source" not in kinds                 # the first run only learns
    assert report["verdict"]["severity"] == "high"
    # a later cycle: the same user from a new address is a new login source
    with open(log, "a") as handle:
        handle.write(login(corpus, now - 100, "198.51.100.20") + "\n")
    report = agent(settings, store).run_cycle()
    kinds = {f["kind"]: f for f in report["findings"]}
    assert set(kinds) == {"new_login_source"}
    assert kinds["new_login_source"]["severity"] == "medium"


def test_monitor_agent_once_json(corpus: Path, tmp_path: Path) -> None:
    """The operator's command line, settings from MONITOR_* variables."""
    log, now = tmp_path / "auth.log", time.time()
    log.write_text("\n".join([*attack(corpus, now - 400, 5), login(corpus, now - 300)]) + "\n")
    env = {**os.environ, "MONITOR_COLLECTORS": "auth_log", "MONITOR_AUTH_LOG_PATH": str(log),
           "MONITOR_AUTH_LOG_BACKEND": "file", "MONITOR_LOG_START_AT": "start",
           "MONITOR_DATA_DIR": str(tmp_path / "data"), "MONITOR_OLLAMA_HOST": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "monitor_agent.py", "--once", "--json"], cwd=ROOT,
                          env=env, capture_output=True, timeout=120)
    report = json.loads(done.stdout)
    (finding,) = [f for f in report["findings"] if f["kind"] == "login_after_failures"]
    assert (finding["severity"], finding["floor"]) == ("high", "high")
    obs = report["observations"]["auth_log"]
    assert obs["accepted_logins"][0]["failures_before"] == 5
    assert obs["failed_by_ip"] == {ATTACKER: 5}


def test_journal_backend_on_a_real_journal_file(corpus: Path, tmp_path: Path,
                                                make_settings: Any, store: Any) -> None:
    """Debian 12 without rsyslog: the auth facilities of a journal built by the real tools."""
    from tests.test_journal import T0, build, entry

    failures = [body.split(": ", 1)[1] for body in
                loghub_lines(corpus, "Failed password for root from 183.62.140.253", 6)]
    (accepted,) = loghub_lines(corpus, "Accepted password for fztu", 1)
    accepted = accepted.split(": ", 1)[1].replace("119.137.62.142", "183.62.140.253")
    entries = [entry(i, text, SYSLOG_IDENTIFIER="sshd", _PID=str(100 + i), PRIORITY="5",
                     SYSLOG_FACILITY="4", _UID="0") for i, text in enumerate(failures)]
    entries.append(entry(6, accepted, SYSLOG_IDENTIFIER="sshd", _PID="200", PRIORITY="6",
                         SYSLOG_FACILITY="10", _UID="0"))
    entries.append(entry(7, "Failed password for root from 192.0.2.99 port 1 ssh2",
                         SYSLOG_IDENTIFIER="sshd", _PID="300", PRIORITY="6",
                         SYSLOG_FACILITY="3", _UID="0"))  # not an auth facility: not read
    build(tmp_path / "journal", "auth", entries)
    settings = make_settings(AUTH_LOG_BACKEND="journal",
                             JOURNAL_DIRECTORY=str(tmp_path / "journal"),
                             LOG_START_AT="start", AUTH_LOG_PATH=tmp_path / "absent.log")
    result = collect(settings, {}, T0 / 1e6 + 60)
    obs = result.observations
    assert obs["backend"] == "journal" and obs["lines_read"] == 7
    assert obs["failed_logins"] == 6 and obs["failed_by_ip"] == {"183.62.140.253": 6}
    (login_seen,) = obs["accepted_logins"]
    assert login_seen["failures_before"] == 6 and login_seen["ts"] == T0 / 1e6 + 6
    kinds = {f.kind for f in detect_auth.detect(result, DetectContext(settings, T0 / 1e6, store))}
    assert kinds == {"ssh_bruteforce", "login_after_failures"}


def test_journal_sshd_lines_from_a_non_root_writer_are_not_believed(tmp_path: Path,
                                                                     make_settings: Any,
                                                                     store: Any) -> None:
    """`logger -p auth.info -t sshd` as a user: journald records _UID, and only root is sshd."""
    from tests.test_journal import T0, build, entry

    attacker, operator = "203.0.113.7", "192.168.1.50"
    forged = [entry(i, f"Failed password for root from {operator} port {4000 + i} ssh2",
                    SYSLOG_IDENTIFIER="sshd", _PID=str(100 + i), PRIORITY="5", SYSLOG_FACILITY="4",
                    _UID="1000", _COMM="logger") for i in range(8)]
    forged.append(entry(8, f"Accepted password for root from {attacker} port 5 ssh2",
                        SYSLOG_IDENTIFIER="sshd-session", _PID="150", PRIORITY="6",
                        SYSLOG_FACILITY="10"))       # no _UID at all: not believed either
    real = entry(9, f"Accepted publickey for alice from {operator} port 6 ssh2: ED25519 SHA256:x",
                 SYSLOG_IDENTIFIER="sshd", _PID="200", PRIORITY="6", SYSLOG_FACILITY="10",
                 _UID="0", _COMM="sshd")
    build(tmp_path / "journal", "auth", [*forged, real])
    settings = make_settings(AUTH_LOG_BACKEND="journal",
                             JOURNAL_DIRECTORY=str(tmp_path / "journal"),
                             LOG_START_AT="start", AUTH_LOG_PATH=tmp_path / "absent.log")
    result = collect(settings, {}, T0 / 1e6 + 60)
    obs = result.observations
    assert obs["lines_read"] == 10
    assert obs["failed_logins"] == 0 and obs["failed_by_ip"] == {}
    (login_seen,) = obs["accepted_logins"]
    assert login_seen["user"] == "alice" and login_seen["failures_before"] == 0
    kinds = {f.kind for f in detect_auth.detect(result, DetectContext(settings, T0 / 1e6, store))}
    assert "login_after_failures" not in kinds and "ssh_bruteforce" not in kinds
