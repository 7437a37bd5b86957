"""`status` on a store that real cycles wrote."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.procs import unique_name


def run(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "COLUMNS": "200",
           "MONITOR_DATA_DIR": str(tmp_path / "data"), "MONITOR_COLLECTORS": "processes", **extra}
    return subprocess.run([sys.executable, str(ROOT / "monitor_agent.py"), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def test_status_before_any_cycle_says_what_to_do(tmp_path: Path) -> None:
    proc = run(tmp_path, "status")
    assert proc.returncode == 1 and "--once" in proc.stdout


def test_status_shows_last_cycle_open_findings_baselines_and_outbox(tmp_path: Path) -> None:
    missing = unique_name()
    assert run(tmp_path, "--once", MONITOR_PROCESSES_TO_MONITOR=missing).returncode == 0
    proc = run(tmp_path, "status")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Last cycle" in out and "verdict high by rules" in out
    assert "process_missing" in out and missing in out
    assert "processes.count" in out                  # a baseline row
    assert "Outbox: 0 queued, 1 sent, 0 failed" in out
