"""The cost of the store's safety: quick_check at start, one verified online backup, a salvage.

The store holds HISTORY_RETENTION_DAYS (30) of history at the default 5-minute interval: SERIES
series sampled every cycle, one cycle report of REPORT_BYTES per cycle (a `--once --json` report
of this machine with every collector is 3-6 kB), and finding events.
Run: .venv/bin/python -m bench.store_backup [--days N]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "store_backup.json"
STEP_S = 300
SERIES = 40
REPORT_BYTES = 4000


def fill(db: Path, days: int) -> dict[str, int]:
    """Write ``days`` of history; the rows written per kind."""
    sys.path.insert(0, str(ROOT))
    from foundation.store.data_storage import Store

    store = Store.open(db)
    cycles = days * 86400 // STEP_S
    start = time.time() - days * 86400
    report = {"started_at": "x", "notes": ["y" * REPORT_BYTES]}
    with store.transaction() as tx:
        for s in range(SERIES):
            tx.add_history(((f"bench.series{s}", start + i * STEP_S, float(i % 17))
                            for i in range(cycles)), by_hour=s % 4 == 0)
        for i in range(cycles):
            tx.save_cycle(start + i * STEP_S, 0.5, "none", "rules", report)
            if i % 12 == 0:
                tx.upsert_finding(f"fp{i % 50}", "bench", "kind", "k", "low", "none", "s",
                                  start + i * STEP_S, {})
    store.close()
    return {"cycles": cycles, "samples": cycles * SERIES}


def timed(fn) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    """Fill a store, then time open (with quick_check), a backup and a salvage; print and save."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from foundation.store.backup import make_backup, salvage
    from foundation.store.data_storage import Store

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "data" / "monitor.db"
        rows = fill(db, args.days)
        size = db.stat().st_size
        open_check = min(timed(lambda: Store.open(db).close()) for _ in range(3))
        open_plain = min(timed(lambda: Store.open(db, check=False).close()) for _ in range(3))
        store = Store.open(db)
        made = []
        backup_s = min(timed(lambda: made.append(make_backup(store, time.time(), 3)))
                       for _ in range(3))
        store.close()
        backup_size = made[-1].path.stat().st_size
        salvage_s = timed(lambda: salvage(db, time.time()))
    figures = {"days": args.days, **rows, "store_mb": round(size / 1e6, 1),
               "open_with_quick_check_s": round(open_check, 3),
               "open_without_check_s": round(open_plain, 3),
               "quick_check_s": round(open_check - open_plain, 3),
               "backup_s": round(backup_s, 3), "backup_mb": round(backup_size / 1e6, 1),
               "salvage_s": round(salvage_s, 2)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"store of {args.days} days: {rows['cycles']} cycles, {rows['samples']} samples, "
          f"{figures['store_mb']} MB")
    print(f"open with quick_check {open_check:.3f} s, without {open_plain:.3f} s "
          f"(quick_check {figures['quick_check_s']:.3f} s)")
    print(f"verified backup (backup API + quick_check + fsync) {backup_s:.3f} s, "
          f"{figures['backup_mb']} MB per generation")
    print(f"salvage (row by row) of the sound store {salvage_s:.2f} s")


if __name__ == "__main__":
    main()
