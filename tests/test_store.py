"""The SQLite store on real files: migrations, baselines, atomic cycles, outbox, findings, retention."""
from __future__ import annotations

import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.legacy import import_legacy
from foundation.baseline import MIN_SAMPLES, Baseline
from foundation.model import Sample
from foundation.store.backup import backup_dir, backup_if_due, list_backups, make_backup, problems_of, restore
from foundation.store.data_storage import (
    ALL_HOURS,
    MIGRATIONS,
    Store,
    StoreDamaged,
    StoreError,
    UnknownTarget,
)


def test_new_store_is_migrated_wal_and_sound(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a" / "monitor.db")
    conn = sqlite3.connect(tmp_path / "a" / "monitor.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.integrity_check() == "ok"
    store.close()
    Store.open(tmp_path / "a" / "monitor.db").close()  # reopening migrates nothing


def test_a_store_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this agent"):
        Store.open(path)


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreDamaged, match=r"is not a SQLite database\. Fix: .*store restore"):
        Store.open(path)
    assert path.read_bytes() == b"this is not a database" * 100  # left as it was


def test_baseline_is_robust_to_outliers_and_incremental(store: Store) -> None:
    rng = random.Random(7)
    values = [50 + rng.gauss(0, 2) for _ in range(400)]
    values[200] = 5000.0  # one wild reading must not drag the centre
    now = time.time() - 400 * 300
    with store.transaction() as tx:
        for i, value in enumerate(values):
            tx.add_samples(now + i * 300, [Sample("cpu.temp", value, key="Package id 0")])
    base = store.baseline("cpu.temp[Package id 0]")
    assert base is not None and base.trusted and base.n == 400
    assert 48 < base.centre < 52
    assert 1.0 < base.spread < 4.0
    assert base.maximum == 5000.0
    assert base.deviation(80.0) > 5


def test_hourly_baselines_are_kept_apart(store: Store) -> None:
    day0 = time.mktime((2026, 11, 1, 0, 0, 0, 0, 0, -1))
    with store.transaction() as tx:
        for day in range(40):
            for hour, value in ((3, 30.0), (15, 60.0)):
                ts = day0 + day * 86400 + hour * 3600
                tx.add_samples(ts, [Sample("gpu.temp", value, by_hour=True)])
    assert store.baseline("gpu.temp", 3).centre == pytest.approx(30.0)
    assert store.baseline("gpu.temp", 15).centre == pytest.approx(60.0)
    overall = store.baseline("gpu.temp", ALL_HOURS)
    assert 30 < overall.centre < 60 and overall.n == 80


def test_baseline_update_is_constant_work() -> None:
    base = Baseline()
    for i in range(MIN_SAMPLES):
        base = base.update(float(i % 3), 1000)
    assert base.trusted and base.n == MIN_SAMPLES


def test_a_failed_cycle_writes_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.add_samples(time.time(), [Sample("x", 1.0)])
        tx.set_collector_state("auth_log", {"offset": 10}, time.time())
        raise RuntimeError("crash mid-cycle")
    assert store.baseline("x") is None
    assert store.collector_state("auth_log") == {}
    with store.transaction() as tx:  # and the store still works, series ids included
        tx.add_samples(time.time(), [Sample("x", 2.0)])
    assert store.baseline("x").n == 1


def test_collector_state_round_trips(store: Store) -> None:
    state = {"cursor": {"dev": 1, "ino": 2, "offset": 3, "fp": "ab"}, "list": [1, 2]}
    with store.transaction() as tx:
        tx.set_collector_state("syslog", state, time.time())
    assert store.collector_state("syslog") == state


def test_an_unchanged_collector_state_is_not_written_again(store: Store) -> None:
    """A quiet cycle returns most states unchanged: no statement for those; a changed one, and
    the same one after a rolled-back transaction, are written."""
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)

    def writes() -> int:
        count = sum("INTO collector_state" in s for s in statements)
        statements.clear()
        return count

    def stamp() -> float:
        return float(store._conn.execute(
            "SELECT updated_at FROM collector_state WHERE name = 'ping'").fetchone()[0])

    with store.transaction() as tx:
        tx.set_collector_state("ping", {"streak": {}}, 100.0)
    assert writes() == 1
    with store.transaction() as tx:
        tx.set_collector_state("ping", {"streak": {}}, 110.0)        # the same: no statement
    assert writes() == 0 and stamp() == 100.0
    with store.transaction() as tx:
        tx.set_collector_state("ping", {"streak": {"10.0.0.1": 1}}, 120.0)
    assert writes() == 1 and store.collector_state("ping") == {"streak": {"10.0.0.1": 1}}
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.set_collector_state("ping", {"streak": {}}, 130.0)
        raise RuntimeError("crash mid-cycle")
    statements.clear()
    assert store.collector_state("ping") == {"streak": {"10.0.0.1": 1}}   # rolled back
    with store.transaction() as tx:   # what the rolled-back transaction wrote is not trusted
        tx.set_collector_state("ping", {"streak": {"10.0.0.1": 1}}, 140.0)
    assert writes() == 1 and stamp() == 140.0
    store._conn.set_trace_callback(None)


def test_outbox_queue_retry_and_send(store: Store) -> None:
    now = 1_000_000.0
    with store.transaction() as tx:
        first = tx.enqueue(channel="discord", purpose="alert", severity="high",
                           payload={"items": []}, now=now, dedupe_key="k1")
        again = tx.enqueue(channel="discord", purpose="alert", severity="high",
                           payload={"items": []}, now=now, dedupe_key="k1")
    assert first is not None and again is None
    assert [m.id for m in store.due_messages(now)] == [first]
    store.mark_retry(first, now + 10, "HTTP 503")
    assert store.due_messages(now + 5) == []
    due = store.due_messages(now + 10)
    assert due[0].attempts == 1
    store.mark_sent(first, now + 11)
    assert store.due_messages(now + 100) == []
    assert store.outbox_counts() == {"sent": 1}


def test_findings_keep_first_seen_while_open_and_reset_when_reopened(store: Store) -> None:
    args = {"source": "processes", "kind": "process_missing", "key": "nginx", "severity": "high",
                "floor": "high", "summary": "gone", "details": {}}
    with store.transaction() as tx:
        tx.upsert_finding("fp1", now=100.0, **args)
        tx.mark_alerted("fp1", "high", 100.0)
    with store.transaction() as tx:
        tx.upsert_finding("fp1", now=200.0, **args)
    row = store.findings()["fp1"]
    assert (row.first_seen, row.last_seen, row.alerted_severity) == (100.0, 200.0, "high")
    with store.transaction() as tx:
        tx.resolve_finding("fp1", 300.0)
    assert store.findings() == {}
    with store.transaction() as tx:
        tx.upsert_finding("fp1", now=400.0, **args)
    row = store.findings()["fp1"]
    assert (row.first_seen, row.alerted_severity) == (400.0, None)
    assert len(store.finding_events_since(0)) == 3


def test_retention_trims_old_rows_only(store: Store) -> None:
    now = time.time()
    with store.transaction() as tx:
        tx.add_samples(now - 40 * 86400, [Sample("old", 1.0)])
        tx.add_samples(now - 1 * 86400, [Sample("old", 2.0)])
    assert store.trim(now, 30) == 1
    assert store.samples_since("old", 0) == [(pytest.approx(now - 86400), 2.0)]
    assert store.baseline("old").n == 2  # the baseline keeps what it learned


def test_legacy_json_is_imported_once(tmp_path: Path, store: Store) -> None:
    legacy = tmp_path / "monitoring_data.json"
    legacy.write_text(json.dumps({
        "history": [
            {"timestamp": "2026-11-01T10:00:00", "cpu_temp": 41.5, "ping": {"avg_ms": 1.2},
             "note": "text is skipped", "ok": True},
            {"timestamp": 1761991200, "cpu_temp": 43.0, "ping": {"avg_ms": 1.4}},
        ],
        "gpu_temp": [[1761991200, 55.0], [1761991500, 56.0], "junk"],
    }))
    note = import_legacy(store, tmp_path)
    assert note is not None and "imported 6 samples in 3 series" in note
    assert store.baseline("legacy.history.cpu_temp").n == 2
    assert store.baseline("legacy.history.ping.avg_ms").n == 2
    assert store.baseline("legacy.gpu_temp").centre == pytest.approx(55.5, abs=0.6)
    assert not legacy.exists() and (tmp_path / "monitoring_data.json.imported").exists()
    assert import_legacy(store, tmp_path) is None


def test_unreadable_legacy_json_is_left_in_place(tmp_path: Path, store: Store) -> None:
    legacy = tmp_path / "monitoring_data.json"
    legacy.write_text("{not json")
    note = import_legacy(store, tmp_path)
    assert note is not None and "could not import" in note and legacy.exists()


# -- file safety (issue 13.4) and backups (issue 14.5) ------------------------------------------

def test_the_folder_is_created_0700_and_the_files_0600(tmp_path: Path) -> None:
    db = tmp_path / "new" / "data" / "monitor.db"
    store = Store.open(db)
    with store.transaction() as tx:
        tx.set_meta("k", "v")            # the WAL and its index exist while the store is open
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in db.parent.iterdir()}
    store.close()
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert {"monitor.db", "monitor.db-wal", "monitor.db-shm"} <= set(modes), modes
    assert set(modes.values()) == {0o600}, modes


def test_a_world_readable_store_of_an_older_version_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "monitor.db"
    Store.open(db).close()
    os.chmod(db, 0o644)
    Store.open(db).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_symlinked_store_file_is_refused_and_named(tmp_path: Path, suffix: str) -> None:
    db = tmp_path / "data" / "monitor.db"
    Store.open(db).close()
    elsewhere = tmp_path / "elsewhere"
    link = db.with_name(db.name + suffix)
    if suffix == "":
        os.replace(db, elsewhere)                   # the real store, moved out of DATA_DIR
    else:
        elsewhere.write_bytes(b"")
        link.unlink(missing_ok=True)
    link.symlink_to(elsewhere)
    with pytest.raises(StoreError, match=rf"cannot be opened: {link} is a symbolic link"):
        Store.open(db)
    assert link.is_symlink()                        # refused, not replaced


def test_a_symlinked_store_is_exit_1_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    target = tmp_path / "victim.db"
    (data / "monitor.db").symlink_to(target)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update({"MONITOR_DATA_DIR": str(data), "MONITOR_COLLECTORS": "processes"})
    run = subprocess.run([sys.executable, "monitor_agent.py", "--once"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "the store cannot be opened" in run.stderr and "symbolic link" in run.stderr
    assert "Traceback" not in run.stderr and not target.exists()


def _fill(store: Store, n: int) -> None:
    with store.transaction() as tx:
        tx.add_history(("cpu.temp", 1.0e9 + i * 300, float(i % 7)) for i in range(n))


def test_backups_are_verified_rotated_and_made_only_when_due(store: Store) -> None:
    _fill(store, 500)
    day = 86400.0
    t0 = 1.8e9
    assert backup_if_due(store, t0, 24, 3) is not None
    assert backup_if_due(store, t0 + 3600, 24, 3) is None              # not due yet
    made = [backup_if_due(store, t0 + k * day, 24, 3) for k in range(1, 5)]
    assert all(made)
    kept = list_backups(store.path)
    assert [b.taken_at for b in kept] == [t0 + k * day for k in (4, 3, 2)]   # newest 3
    for backup in kept:
        assert stat.S_IMODE(backup.path.stat().st_mode) == 0o600
        assert problems_of(backup.path) == []
        conn = sqlite3.connect(backup.path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
        assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 500
        conn.close()
    assert backup_if_due(store, t0, 24, 3) is not None   # newest dated in the future: clock went back
    assert backup_if_due(store, t0 + 9 * day, 24, 0) is None           # 0 generations: none


def test_a_backup_killed_midway_leaves_no_backup_and_is_cleaned(store: Store) -> None:
    _fill(store, 50)
    folder = backup_dir(store.path)
    folder.mkdir(mode=0o700)
    stale = folder / ".monitor-abc.db.tmp"
    stale.write_bytes(b"half a backup")
    make_backup(store, 1.8e9, 3)
    assert not stale.exists()
    assert [b.path.name for b in list_backups(store.path)] == ["monitor-20270115T080000Z.db"]


def test_a_damaged_backup_never_counts(tmp_path: Path) -> None:
    db = tmp_path / "monitor.db"
    store = Store.open(db)
    _fill(store, 3000)
    store.close()
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    leaf = conn.execute("SELECT pageno FROM dbstat WHERE name='samples' AND pagetype='leaf' "
                        "LIMIT 1 OFFSET 3").fetchone()[0]
    conn.close()
    with open(db, "r+b") as handle:
        handle.seek((leaf - 1) * page_size)
        handle.write(b"\x0d" + b"\xff" * 200)
    store = Store.open(db, check=False)          # damaged after the start-up check
    try:
        with pytest.raises(StoreDamaged, match="backup copy failed quick_check"):
            make_backup(store, 1.8e9, 3)
    finally:
        store.close()
    assert list_backups(db) == [] and not list(backup_dir(db).glob(".monitor-*"))


def test_restore_from_a_named_file_keeps_the_old_store_aside(tmp_path: Path) -> None:
    db = tmp_path / "data" / "monitor.db"
    store = Store.open(db)
    _fill(store, 10)
    made = make_backup(store, 1.8e9, 3)
    _fill(store, 5)
    store.close()
    text = restore(db, made.path, 1.8e9 + 60)
    assert "10 samples" in text and "kept as" in text
    reopened = Store.open(db)
    assert len(reopened.samples_since("cpu.temp", 0)) == 10
    reopened.close()
    aside = [p for p in db.parent.iterdir() if p.name.startswith("monitor.db.replaced-")]
    assert aside and sqlite3.connect(aside[0]).execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 15
    not_db = tmp_path / "junk.db"
    not_db.write_bytes(b"x" * 4096)
    with pytest.raises(StoreError, match="cannot be restored: not a SQLite database"):
        restore(db, not_db, 1.8e9 + 120)


def _store_at_version(path: Path, version: int) -> None:
    """A store file as an agent of schema ``version`` left it, with one open finding."""
    from foundation.store.schema import apply_migration

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    for number in range(version):
        apply_migration(conn, number)
    conn.execute(f"PRAGMA user_version={version}")
    conn.execute("INSERT INTO findings (fingerprint, source, kind, key, severity, floor, summary, "
                 "first_seen, last_seen, open) VALUES ('f1', 'processes', 'process_missing', "
                 "'nginx', 'high', 'high', 'nginx down', 1, 2, 1)")
    conn.commit()
    conn.close()


def test_migration_3_adds_silences_and_dependencies_and_keeps_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "old" / "monitor.db"
    _store_at_version(path, 2)
    store = Store.open(path)
    try:
        assert set(store.findings()) == {"f1"}        # what version 2 held is still there
        assert store.silences(10.0) == [] and store.dependencies() == {}
        row = store.acknowledge("f1", 10.0, None)
        assert (row.type, row.target, row.severity, row.until) == ("ack", "f1", "high", None)
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 3
    conn.close()


def test_silences_start_replace_end_and_expire(store: Store) -> None:
    with store.transaction() as tx:
        tx.upsert_finding("fp1", "processes", "process_missing", "nginx", "medium", "none",
                          "nginx down", 100.0, {})
    first = store.add_silence("snooze", "ping_loss", 100.0, 200.0)
    second = store.add_silence("snooze", "ping_loss", 150.0, 400.0)   # replaces the first
    maintenance = store.add_silence("maintenance", "", 150.0, 160.0)
    ack = store.acknowledge("fp1", 150.0, None)
    assert ack.severity == "medium"
    assert [s.id for s in store.silences(155.0)] == [second.id, maintenance.id, ack.id]
    assert [s.id for s in store.silences(165.0)] == [second.id, ack.id]   # maintenance is over
    ended = {s.id: s for s in store.silences(165.0, include_ended=True)}
    assert ended[first.id].ended_why == "replaced" and ended[first.id].ended_at == 150.0
    assert store.end_silences("snooze", 170.0, "ping_loss") == 1
    assert store.end_silences("snooze", 171.0, "ping_loss") == 0          # nothing left to end
    assert [s.type for s in store.silences(172.0)] == ["ack"]
    with pytest.raises(UnknownTarget):
        store.acknowledge("not-open", 172.0, None)
    with pytest.raises(ValueError, match="not one of"):
        store.add_silence("mute", "x", 172.0, None)


def test_an_ack_ends_when_its_finding_resolves_or_is_alerted_again(store: Store) -> None:
    with store.transaction() as tx:
        for fp in ("a", "b", "c"):
            tx.upsert_finding(fp, "processes", "process_missing", fp, "medium", "none", fp,
                              100.0, {})
    store.acknowledge("a", 110.0, None)           # until it resolves
    store.acknowledge("b", 110.0, 10_000.0)       # for a while: resolving does not end it
    store.acknowledge("c", 110.0, None)
    with store.transaction() as tx:
        tx.resolve_finding("a", 120.0)
        tx.resolve_finding("b", 120.0)
        tx.mark_alerted("c", "high", 120.0)       # alerted: it got worse than the ack
    rows = {s.target: s for s in store.silences(130.0, include_ended=True)}
    assert (rows["a"].ended_at, rows["a"].ended_why) == (120.0, "resolved")
    assert rows["b"].in_force(130.0)
    assert (rows["c"].ended_at, rows["c"].ended_why) == (120.0, "alerted")


def test_retention_trims_silences_that_ended_long_ago(store: Store) -> None:
    now = 100 * 86400.0
    store.add_silence("maintenance", "", now - 40 * 86400, now - 39 * 86400)   # long over
    store.add_silence("snooze", "ping_loss", now - 1000, now + 1000)             # in force
    store.trim(now, 30)
    assert [s.type for s in store.silences(now, include_ended=True)] == ["snooze"]


def test_dependency_rows_round_trip(store: Store) -> None:
    from foundation.store.data_storage import DependencyRow

    store.record_dependencies([DependencyRow("ollama", False, 10.0, "refused", 20.0),
                               DependencyRow("discord", True, 5.0, None, 20.0)])
    store.record_dependencies([DependencyRow("ollama", False, 10.0, "refused", 30.0)])
    rows = store.dependencies()
    assert rows["ollama"] == DependencyRow("ollama", False, 10.0, "refused", 30.0)
    assert rows["discord"].up and rows["discord"].since == 5.0
