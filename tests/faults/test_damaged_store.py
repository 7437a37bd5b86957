"""A damaged store, for real: pages of the `cycles` b-tree overwritten, monitor.db cut to 0 bytes.

Each test builds a store with the real CLI (`--once`, the processes collector only), damages the
file on disk, then runs `status`, `check`, `--once` and the `store` commands as subprocesses, as
an operator would. Before issue 14 `status` died with a traceback, `--once` exited 0 and a 0-byte
monitor.db was silently replaced by an empty store.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.faults
HISTORY_CYCLES = 400


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One run of monitor_agent.py with DATA_DIR=data and a cheap, offline configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update({"MONITOR_DATA_DIR": str(data), "MONITOR_COLLECTORS": "processes",
                "MONITOR_OLLAMA_HOST": "http://127.0.0.1:9", "COLUMNS": "200"})
    return subprocess.run([sys.executable, "monitor_agent.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def built_store(data: Path) -> Path:
    """A store made by the CLI (with its backup), then given a long history of cycle reports."""
    first = cli(data, "--once")
    assert first.returncode == 0, first.stderr
    db = data / "monitor.db"
    conn = sqlite3.connect(db)
    report = conn.execute("SELECT report FROM cycles").fetchone()[0]
    with conn:
        conn.executemany("INSERT INTO cycles (started_at, duration_s, severity, by, report) "
                         "VALUES (?, 0.1, 'none', 'rules', ?)",
                         [(1.0e9 + i, report) for i in range(HISTORY_CYCLES)])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db


def count(db: Path, table: str) -> int:
    """Rows of a table, read by a connection of the test's own."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def damage_cycles_leaves(db: Path, every: int = 3) -> list[int]:
    """Overwrite the cell area of every third leaf page of the `cycles` b-tree; the pages hit."""
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    leaves = [r[0] for r in conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'cycles' AND pagetype = 'leaf' ORDER BY pageno")]
    conn.close()
    assert len(leaves) > 10, leaves
    hit = leaves[1::every]
    with open(db, "r+b") as handle:
        for page in hit:
            handle.seek((page - 1) * page_size)
            handle.write(b"\x0d\xff\xff\xff\xff\xff\xff\xff")   # leaf flag, then nonsense offsets
            handle.seek((page - 1) * page_size + 200)
            handle.write(os.urandom(page_size - 400))
    return hit


def test_a_corrupted_cycles_table_is_reported_refused_and_salvaged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = built_store(data)
    before = {t: count(db, t) for t in ("cycles", "samples", "collector_state", "series")}
    hit = damage_cycles_leaves(db)
    damaged_bytes = db.read_bytes()

    status = cli(data, "status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "Traceback" not in status.stdout + status.stderr
    assert "is damaged" in status.stdout and "store restore" in status.stdout, status.stdout

    check = cli(data, "check")
    assert check.returncode == 1
    assert "\u2718 store: the store" in check.stdout and "is damaged" in check.stdout, check.stdout
    assert "fix: stop the agent" in check.stdout

    once = cli(data, "--once")
    assert once.returncode == 1, once.stderr
    assert "Traceback" not in once.stderr and "is damaged" in once.stderr, once.stderr
    assert db.read_bytes() == damaged_bytes            # refused: not written to, not replaced

    salvage = cli(data, "store", "salvage")
    assert salvage.returncode == 0, salvage.stderr
    kept = [p for p in data.iterdir() if p.name.startswith("monitor.db.damaged-")]
    assert len(kept) == 1 and kept[0].read_bytes() == damaged_bytes   # the operator's data kept
    assert "cycles (" in salvage.stdout and "damaged spot" in salvage.stdout, salvage.stdout
    after = {t: count(db, t) for t in before}
    assert 0 < after["cycles"] < before["cycles"]      # the sound leaves were read back
    for table in ("samples", "collector_state", "series"):
        assert after[table] == before[table], table    # the undamaged tables are whole
    assert f"{after['cycles']} cycles" in salvage.stdout
    print(f"\ndamaged {len(hit)} of the cycles leaves; salvage read back {after['cycles']} of "
          f"{before['cycles']} cycles and every row of the other tables")

    again = cli(data, "--once")
    assert again.returncode == 0, again.stderr
    assert cli(data, "status").returncode == 0


def test_a_store_cut_to_zero_bytes_is_damaged_not_new_and_restored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = built_store(data)
    os.truncate(db, 0)

    once = cli(data, "--once")
    assert once.returncode == 1, once.stderr
    assert "0 bytes, but a store existed here" in once.stderr, once.stderr
    assert "store restore" in once.stderr and "Traceback" not in once.stderr
    assert db.stat().st_size == 0                      # not silently replaced by an empty store
    status = cli(data, "status")
    assert status.returncode == 1 and "0 bytes" in status.stdout, status.stdout

    backups = list((data / "backups").iterdir())       # the first cycle's automatic backup
    assert len(backups) == 1
    cycles = count(backups[0], "cycles")
    restore = cli(data, "store", "restore")
    assert restore.returncode == 0, restore.stderr
    assert f"{cycles} cycles" in restore.stdout, restore.stdout
    assert count(db, "cycles") == cycles
    assert any(p.name.startswith("monitor.db.replaced-") and p.stat().st_size == 0
               for p in data.iterdir())                # the empty file is kept aside too
    assert cli(data, "--once").returncode == 0
    assert count(db, "cycles") == cycles + 1


def test_a_missing_store_where_one_was_needs_an_explicit_reset(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = built_store(data)
    db.unlink()
    once = cli(data, "--once")
    assert once.returncode == 1 and "is missing, but a store existed" in once.stderr, once.stderr
    assert not db.exists()
    reset = cli(data, "store", "reset")
    assert reset.returncode == 0 and "empty store" in reset.stdout, reset.stderr
    fresh = cli(data, "--once")
    assert fresh.returncode == 0, fresh.stderr
    assert count(db, "cycles") == 1


def test_restore_and_salvage_refuse_while_the_store_is_in_use(tmp_path: Path) -> None:
    from foundation.store.data_storage import Store

    data = tmp_path / "data"
    db = built_store(data)
    store = Store.open(db)                             # as the running agent holds it
    try:
        for action in ("restore", "salvage", "reset"):
            run = cli(data, "store", action)
            assert run.returncode == 1, (action, run.stdout)
            assert "is in use" in run.stderr and "stop the agent first" in run.stderr, run.stderr
    finally:
        store.close()
    assert not [p for p in data.iterdir() if ".damaged-" in p.name or ".replaced-" in p.name]
