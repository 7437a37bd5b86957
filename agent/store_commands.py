"""`python monitor_agent.py store check|backup|restore|salvage|reset`: the store's health and repair."""
from __future__ import annotations

import argparse
import sys
import time

from foundation.settings import Settings
from foundation.store import backup, files
from foundation.store.data_storage import Store, StoreError


def describe_backups(backups: list[backup.Backup], now: float) -> str:
    """The backups (newest first) in a sentence: how many and how old the newest is."""
    if not backups:
        return "no backup yet"
    age_h = (now - backups[0].taken_at) / 3600
    return f"{len(backups)} backup(s), the newest {age_h:.1f} h old ({backups[0].path.name})"


def health(settings: Settings, now: float) -> tuple[bool, str, str]:
    """(sound, what was seen, the fix) for the store and its backups; for `check` and `store check`."""
    db = settings.db_path
    if not files.store_present(db):
        return True, f"no store at {db} yet (the first cycle creates it)", ""
    try:
        store = Store.open(db)
    except StoreError as err:
        text = str(err)
        what, _, fix = text.partition(". Fix: ")
        return False, what, fix
    try:
        size = db.stat().st_size
    finally:
        store.close()
    backups = backup.list_backups(db)
    detail = (f"store {db} sound (quick_check ok, {size / 1e6:.1f} MB); "
              f"{describe_backups(backups, now)}")
    late_s = 2 * settings.STORE_BACKUP_INTERVAL_HOURS * 3600 + 3600
    if settings.STORE_BACKUP_GENERATIONS and backups and now - backups[0].taken_at > late_s:
        return False, detail + ": backups have stopped", (
            "see the agent's log for the failed backups (journalctl -u monitor-agent), or run "
            f"`{files.CLI} store backup`")
    return True, detail, ""


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run one store action; 0 done, 1 the store is damaged or the action failed."""
    db, now = settings.db_path, time.time()
    try:
        if args.store_action == "check":
            ok, what, fix = health(settings, now)
            print(("\u2714 " if ok else "\u2718 ") + what + (f"\n    fix: {fix}" if fix else ""))
            return 0 if ok else 1
        if args.store_action == "backup":
            store = Store.open(db)
            try:
                made = backup.make_backup(store, now, max(1, settings.STORE_BACKUP_GENERATIONS))
            finally:
                store.close()
            print(f"backed up to {made.path} ({made.path.stat().st_size} bytes, verified)")
        elif args.store_action == "restore":
            print(backup.restore(db, args.source, now))
        elif args.store_action == "salvage":
            print(backup.salvage(db, now))
        elif args.store_action == "reset":
            print(backup.reset(db, now))
    except StoreError as err:
        print(f"store {args.store_action} failed: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"store {args.store_action} failed: {err.filename or db}: {err.strerror}",
              file=sys.stderr)
        return 1
    return 0
