"""The data folder's file system full: a clear error, no corruption, and recovery when space returns.

The test mounts a small tmpfs of its own as DATA_DIR, fills it with a ballast file until writes
fail, and runs cycles in-process (agent.cycle.Agent) and through the CLI (`--once`). A cycle that
cannot commit raises StoreError (the CLI exits 1 with a one-line message), commits nothing, and
loses nothing: the log lines it read are read again by the next cycle, once the ballast is gone.
"""
from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.cycle import Agent
from analysis.rules import RulesJudge
from foundation.store.data_storage import Store, StoreError
from tests.conftest import ROOT

SIZE = "8m"
START = time.time() - 3600   # an hour ago: the CLI's later cycles must not trim these as old

pytestmark = pytest.mark.faults


@contextmanager
def small_fs(where: Path) -> Iterator[Path]:
    """A tmpfs of SIZE mounted at ``where`` for the duration (unmounted whatever happens)."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(where)],
                   check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def fill(ballast: Path, limit_chunks: int = 10_000) -> int:
    """Write ``ballast`` until the file system refuses (ENOSPC); the bytes written."""
    written = 0
    with open(ballast, "ab", buffering=0) as handle:
        for size in (1 << 18, 1 << 12, 1 << 9):
            for _ in range(limit_chunks):
                try:
                    written += handle.write(b"\0" * size)
                except OSError as err:
                    assert err.errno == errno.ENOSPC, err
                    break
    return written


def checkpoint(db: Path) -> None:
    """Empty the WAL (as a checkpoint does), so the next commit needs new space."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def query(db: Path, sql: str) -> object:
    """One value from the store, read by a separate connection."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


LINES_SQL = ("SELECT COALESCE(SUM(x.value), 0) FROM samples x JOIN series s ON s.id = x.series_id"
             " WHERE s.name = 'syslog.lines'")


def append(log: Path, count: int, tag: str) -> None:
    """Append numbered syslog lines."""
    with open(log, "a", encoding="utf-8") as handle:
        handle.writelines(f"Nov 23 10:00:01 host app[1]: {tag} line {n}\n" for n in range(count))


def cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One `monitor_agent.py --once` run."""
    return subprocess.run([sys.executable, "monitor_agent.py", "--once"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_full_disk_gives_a_clear_error_no_corruption_and_recovery(tmp_path: Path,
                                                                    make_settings) -> None:
    log = tmp_path / "syslog"
    log.touch()
    missing = f"monitor-never-runs-{uuid.uuid4().hex[:8]}"
    with small_fs(tmp_path / "mnt") as mnt:
        data = mnt / "data"
        ballast = mnt / "ballast"
        settings = make_settings(DATA_DIR=data, COLLECTORS=["processes", "syslog"],
                                 SYSLOG_PATH=log, SYSLOG_BACKEND="file", LOG_START_AT="start",
                                 PROCESSES_TO_MONITOR=[missing])
        db = settings.db_path
        clock = [START]
        store = Store.open(db)
        agent = Agent(settings, store, RulesJudge(), {}, clock=lambda: clock[0])
        written = 0
        try:
            for tag in ("first", "second"):
                append(log, 500, tag)
                written += 500
                agent.run_cycle()
                clock[0] += 300
            first_run_lines = 500               # a first run's backlog is never a sample
            assert query(db, LINES_SQL) == written - first_run_lines
            cycles_before = query(db, "SELECT COUNT(*) FROM samples")

            # -- in-process: the disk fills up ---------------------------------------------------
            checkpoint(db)
            filled = fill(ballast)
            append(log, 700, "while-full")
            written += 700
            failures = 0
            for _ in range(3):                  # it keeps failing cleanly while the disk is full
                with pytest.raises(StoreError, match=r"disk is full|disk I/O|database or disk"):
                    agent.run_cycle()
                failures += 1
                clock[0] += 300
            assert store.integrity_check() == "ok"
            assert query(db, "SELECT COUNT(*) FROM samples") == cycles_before  # nothing half-done
            os.unlink(ballast)
            report = agent.run_cycle()          # space is back: the same lines are read now
            assert report["collectors"]["syslog"]["ok"]
            assert query(db, LINES_SQL) == written - first_run_lines
            assert store.integrity_check() == "ok"
        finally:
            store.close()

        # -- the command line: a full disk at start-up and mid-cycle ---------------------------------
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        env.update({"MONITOR_DATA_DIR": str(data), "MONITOR_COLLECTORS": "processes,syslog",
                    "MONITOR_SYSLOG_PATH": str(log), "MONITOR_SYSLOG_BACKEND": "file",
                    "MONITOR_LOG_START_AT": "start", "MONITOR_PROCESSES_TO_MONITOR": missing,
                    "MONITOR_OLLAMA_HOST": "http://127.0.0.1:9"})
        fill(ballast)
        append(log, 300, "cli-while-full")
        written += 300
        runs = []
        for _ in range(2):
            run = cli(env)
            runs.append(run)
            assert run.returncode == 1, run.stderr
            assert "Traceback" not in run.stderr, run.stderr
            assert "disk is full" in run.stderr or "disk I/O" in run.stderr, run.stderr
        os.unlink(ballast)   # (even reading needs space: SQLite creates its -shm file to read WAL)
        assert query(db, "PRAGMA integrity_check") == "ok"
        run = cli(env)
        assert run.returncode == 0, run.stderr
        assert query(db, "PRAGMA integrity_check") == "ok"
        assert query(db, LINES_SQL) == written - first_run_lines
    message = [line for line in runs[0].stderr.splitlines() if "ERROR" in line]
    print(f"\ndisk full: tmpfs {SIZE}, ballast {filled} bytes; in-process failures={failures}, "
          f"CLI failures={len(runs)}, then recovery; all {written} lines accounted; "
          f"CLI says: {message[:1]}")
