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


def test_status_json_is_one_document_with_silences_and_dependencies(tmp_path: Path) -> None:
    import json

    missing = unique_name()
    closed = {"MONITOR_OLLAMA_HOST": "http://127.0.0.1:9", "MONITOR_OLLAMA_TIMEOUT_SECONDS": "5"}
    assert run(tmp_path, "--once", MONITOR_PROCESSES_TO_MONITOR=missing, **closed).returncode == 0
    assert run(tmp_path, "snooze", "ping_loss", "--for", "1h").returncode == 0
    for args in (("status", "--json"), ("--json", "status")):   # either place of the flag
        proc = run(tmp_path, *args)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("\n") == 1
        doc = json.loads(proc.stdout)
        assert set(doc) >= {"version", "last_cycle", "open_findings", "outbox", "silences",
                            "dependencies"}
        assert doc["last_cycle"]["verdict"]["by"] == "rules" and doc["last_cycle"]["findings"] == 1
        assert "observations" not in doc["last_cycle"]
        [finding] = doc["open_findings"]
        assert finding["kind"] == "process_missing" and missing in finding["summary"]
        assert finding["alerted_severity"] == "high" and finding["silenced_by"] is None
        assert doc["outbox"] == {"queued": 0, "sent": 1, "failed": 0}
        assert doc["silences"]["maintenance"] is None and doc["silences"]["acks"] == []
        assert doc["silences"]["snoozes"][0]["target"] == "ping_loss"
        ollama = doc["dependencies"]["ollama"]
        assert ollama["up"] is False and ollama["down_for_s"] >= 0 and "127.0.0.1:9" in ollama["error"]
    tables = run(tmp_path, "status").stdout
    assert "Dependencies" in tables and "down for" in tables and "ping_loss" in tables
