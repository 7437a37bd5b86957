"""The command line as an operator runs it: --once, --json, the loop, and a clean stop on signals."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.procs import agent_env, run_agent, unique_name

STOP_BOUND_S = 8.0
STOP_WAIT_S = 25.0


def test_once_json_prints_one_report_and_nothing_else(tmp_path: Path) -> None:
    missing = unique_name()
    proc = run_agent(tmp_path, "--once", "--json", PROCESSES_TO_MONITOR=missing)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert proc.stdout.count("\n") == 1
    for key in ("started_at", "duration_s", "collectors", "observations", "findings", "verdict",
                "alerts"):
        assert key in report
    assert set(report["collectors"]["processes"]) >= {"ok", "error", "duration_s"}
    [finding] = report["findings"]
    assert finding["kind"] == "process_missing"
    assert (finding["severity"], finding["floor"]) == ("high", "high")
    assert report["verdict"]["by"] in ("rules", "llm")
    assert report["alerts"][0]["channel"] == "console"
    assert "[ALERT]" in proc.stderr and missing in proc.stderr  # the console alert, off stdout


def test_once_prints_a_readable_summary(tmp_path: Path) -> None:
    proc = run_agent(tmp_path, "--once", PROCESSES_TO_MONITOR="init,systemd")
    assert proc.returncode == 0, proc.stderr
    assert "Collectors:" in proc.stdout and "processes" in proc.stdout
    assert "Verdict:" in proc.stdout


def test_test_mode_runs_one_cycle(tmp_path: Path) -> None:
    proc = run_agent(tmp_path, "--json", TEST_MODE="true")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["collectors"]["processes"]["ok"] is True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_loop_within_two_seconds_with_a_sound_store(
        tmp_path: Path, signum: int) -> None:
    proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py")], cwd=ROOT,
                            env=agent_env(tmp_path, MONITOR_INTERVAL_SECONDS="30", OLLAMA_TIMEOUT_SECONDS="5",
                                          PROCESSES_TO_MONITOR=unique_name()),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = tmp_path / "data" / "monitor.db"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait for the first cycle to commit
            if db.exists():
                conn = sqlite3.connect(db)
                try:
                    if conn.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] >= 1:
                        break
                except sqlite3.OperationalError:
                    pass
                finally:
                    conn.close()
            time.sleep(0.1)
        else:
            pytest.fail("the loop never committed a cycle")
        t0 = time.monotonic()
        proc.send_signal(signum)
        proc.wait(STOP_WAIT_S)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    # ~0.6 s here (bench/stop_time.py), 2.6 s with stress-ng beside the suite. A loop that
    # ignored the signal would sleep on to its next cycle (30 s away): 8 s tells them apart on any
    # load and stays under the unit's TimeoutStopSec=15.
    assert elapsed < STOP_BOUND_S
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM findings WHERE open = 1").fetchone()[0] == 1
    conn.close()


def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run_agent(tmp_path, "--once", DATA_DIR=str(blocker / "data"))
    assert proc.returncode == 1
    assert "cannot open the store" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_cycle_line_tells_delivered_queued_and_suppressed_apart(tmp_path: Path) -> None:
    assert run_agent(tmp_path, "maintenance", "1h").returncode == 0
    log = tmp_path / "agent.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py")], cwd=ROOT,
                                env=agent_env(tmp_path, MONITOR_INTERVAL_SECONDS="60",
                                              OLLAMA_HOST="http://127.0.0.1:9",
                                              OLLAMA_TIMEOUT_SECONDS="5",
                                              PROCESSES_TO_MONITOR=unique_name()),
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60   # the first cycle starts at once; ~1 s here
        while time.monotonic() < deadline and proc.poll() is None and not lines:
            lines = [x for x in log.read_text().splitlines() if " INFO monitor_agent: cycle: " in x]
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert lines, log.read_text()
    assert "cycle: 1 finding(s), verdict high by rules, alerts: 0 delivered, 0 queued, " \
           "1 suppressed, " in lines[0]
