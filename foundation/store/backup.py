"""Backups of the store, and getting a damaged store back: restore a backup, or salvage what reads.

Backups are online copies made with SQLite's backup API (the agent keeps running), written to a
temporary name, checked with ``PRAGMA quick_check``, fsynced and renamed into DATA_DIR/backups as
``monitor-YYYYmmddTHHMMSSZ.db``; only the newest STORE_BACKUP_GENERATIONS are kept. Restore and
salvage never delete the operator's data: the damaged files are renamed aside first.
"""
from __future__ import annotations

import calendar
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from foundation.store import files
from foundation.store.data_storage import Store
from foundation.store.files import StoreDamaged, StoreError
from foundation.store.salvage import copy_readable_rows
from foundation.store.schema import MIGRATIONS

log = logging.getLogger(__name__)

BACKUP_DIR = "backups"
BACKUP_NAME = re.compile(r"^monitor-(\d{8}T\d{6}Z)\.db$")
STAMP = "%Y%m%dT%H%M%SZ"
COUNTED_TABLES = ("cycles", "samples", "series", "baselines", "findings", "finding_events",
                  "collector_state", "seen", "outbox", "recaps", "meta")


@dataclass(frozen=True)
class Backup:
    """One backup file and when it was taken (from its name)."""

    path: Path
    taken_at: float


def backup_dir(db: Path) -> Path:
    """DATA_DIR/backups."""
    return db.parent / BACKUP_DIR


def list_backups(db: Path) -> list[Backup]:
    """The store's backups, newest first (only files named as this module names them)."""
    found = []
    folder = backup_dir(db)
    if not folder.is_dir():
        return []
    for entry in folder.iterdir():
        match = BACKUP_NAME.match(entry.name)
        if match and entry.is_file() and not entry.is_symlink():
            taken = calendar.timegm(time.strptime(match.group(1), STAMP))
            found.append(Backup(entry, taken))
    return sorted(found, key=lambda b: b.taken_at, reverse=True)


def problems_of(path: Path) -> list[str]:
    """What is wrong with a store file ([] when it is a sound SQLite file of a known version)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(files.SQLITE_MAGIC))
    except OSError as err:
        return [f"cannot read it: {err.strerror}"]
    if head != files.SQLITE_MAGIC:
        return ["not a SQLite database"]
    try:
        conn = _read_only(path)
    except sqlite3.Error as err:
        return [str(err)]
    try:
        problems = files.quick_check(conn)
        if not problems:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                problems = [f"schema version {version} is newer than this agent's"]
    finally:
        conn.close()
    return problems


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)


def make_backup(store: Store, now: float, generations: int) -> Backup:
    """Write a verified backup of the open store and keep only the newest ``generations``."""
    folder = backup_dir(store.path)
    files.make_private_dir(folder)
    final = folder / f"monitor-{time.strftime(STAMP, time.gmtime(now))}.db"
    with files.private_umask():
        fd, tmp_name = tempfile.mkstemp(prefix=".monitor-", suffix=".db.tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        store.backup_to(tmp)
        problems = problems_of(tmp)
        if problems:  # the backup API copies pages as they are: a damaged source shows here
            raise StoreDamaged(store.path, "its backup copy failed quick_check: "
                               + "; ".join(problems[:3]))
        files.fsync_path(tmp)
        os.replace(tmp, final)
        files.fsync_dir(folder)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    others = [b for b in list_backups(store.path) if b.path != final]
    for old in others[max(0, generations - 1):]:   # the new one counts, even after a clock step back
        old.path.unlink(missing_ok=True)
    for stale in folder.glob(".monitor-*.db.tmp"):  # left by a kill mid-backup
        if stale != tmp:
            stale.unlink(missing_ok=True)
    return Backup(final, now)


def backup_if_due(store: Store, now: float, interval_hours: int,
                  generations: int) -> Backup | None:
    """Make a backup when the newest is older than the interval (or dated in the future)."""
    if generations <= 0:
        return None
    backups = list_backups(store.path)
    interval = interval_hours * 3600
    if backups and 0 <= now - backups[0].taken_at < interval:
        return None
    started = time.monotonic()
    made = make_backup(store, now, generations)
    log.info("store backed up to %s (%d bytes, %.2f s)", made.path, made.path.stat().st_size,
             time.monotonic() - started)
    return made


def set_aside(db: Path, now: float, why: str) -> Path:
    """Rename monitor.db (and its -wal, -shm) to ``monitor.db.<why>-<stamp>``; the new name."""
    base = f"{db.name}.{why}-{time.strftime(STAMP, time.gmtime(now))}"
    aside, n = db.with_name(base), 0
    while any(p.exists() for p in files.side_files(aside)):  # never replace a kept one
        n += 1
        aside = db.with_name(f"{base}.{n}")
    for suffix in ("", *files.SIDE_SUFFIXES):
        source = db.with_name(db.name + suffix)
        if source.exists():  # -wal must keep its db's name + "-wal" to stay readable with it
            os.replace(source, aside.with_name(aside.name + suffix))
    files.fsync_dir(db.parent)
    return aside


def counts(path: Path) -> dict[str, int]:
    """Rows per table of a (sound) store file, for saying what a restore or salvage brought."""
    conn = _read_only(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        out = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]  # noqa: S608
               for t in COUNTED_TABLES if t in tables}
        if "findings" in tables:
            out["open findings"] = conn.execute(
                "SELECT COUNT(*) FROM findings WHERE open = 1").fetchone()[0]
    finally:
        conn.close()
    return out


def _install(db: Path, source: Path) -> None:
    """Copy ``source`` into place as monitor.db (0600, fsynced, by rename)."""
    with files.private_umask():
        fd, tmp_name = tempfile.mkstemp(prefix=".monitor-", suffix=".db.tmp", dir=db.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, db)
        files.fsync_dir(db.parent)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    files.write_marker(db)


def restore(db: Path, source: Path | None, now: float) -> str:
    """Put the latest sound backup (or ``source``) in place of the store; what was done."""
    skipped = []
    if source is None:
        for backup in list_backups(db):
            trouble = problems_of(backup.path)
            if not trouble:
                source = backup.path
                break
            skipped.append(f"{backup.path.name} ({trouble[0]})")
        if source is None:
            raise StoreError(f"no sound backup in {backup_dir(db)}"
                             + (f" (skipped {', '.join(skipped)})" if skipped else "")
                             + f". Fix: `{files.CLI} store salvage` recovers what the "
                               "damaged store still holds")
    else:
        trouble = problems_of(source)
        if trouble:
            raise StoreError(f"{source} cannot be restored: {'; '.join(trouble[:3])}")
    lock = files.StoreLock(db, exclusive=True)
    try:
        aside = set_aside(db, now, "replaced") if _any_file(db) else None
        _install(db, source)
    finally:
        lock.release()
    taken = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(source.stat().st_mtime))
    lines = [f"restored {db} from {source} (written {taken}): {_describe(counts(db))}"]
    if skipped:
        lines.append(f"skipped damaged backups: {', '.join(skipped)}")
    if aside is not None:
        lines.append(f"the previous store is kept as {aside}")
    lines.append("what happened after the backup (samples, findings, log cursors) is not in it: "
                 "log lines since then that are still in the logs are read again")
    return "\n".join(lines)


def salvage(db: Path, now: float) -> str:
    """Rebuild the store from the rows that still read, skipping damaged pages; what was saved."""
    if not db.exists() or db.stat().st_size == 0:
        raise StoreError(f"{db} is missing or empty: nothing to salvage. Fix: "
                         f"`{files.CLI} store restore` puts the latest backup back")
    lock = files.StoreLock(db, exclusive=True)
    try:
        with tempfile.TemporaryDirectory(dir=db.parent, prefix=".salvage-") as work:
            copy = Path(work) / "damaged.db"
            for suffix in ("", "-wal"):  # read a copy: the original stays byte for byte as it was
                if db.with_name(db.name + suffix).exists():
                    shutil.copyfile(db.with_name(db.name + suffix),
                                    copy.with_name(copy.name + suffix))
            rescued = Path(work) / "salvaged.db"
            version = files.header_user_version(db)
            result = copy_readable_rows(copy, rescued, min(version, len(MIGRATIONS))
                                        or len(MIGRATIONS))
            trouble = problems_of(rescued)
            if trouble:
                raise StoreError(f"the salvaged copy is not sound either ({trouble[0]}); the "
                                 f"store is left as it was. Fix: `{files.CLI} store "
                                 "restore` (a backup) or `store reset` (start empty)")
            aside = set_aside(db, now, "damaged")
            _install(db, rescued)
    finally:
        lock.release()
    lines = [f"salvaged {db}: {_describe(result.rows)} read back",
             f"the damaged store is kept as {aside}"]
    if result.damaged:
        lines.append("rows on damaged pages could not be read: "
                     + ", ".join(f"{t} ({n} damaged spot(s) skipped)"
                                 for t, n in result.damaged.items()))
    return "\n".join(lines)


def reset(db: Path, now: float) -> str:
    """Start an empty store on purpose: the old files are kept aside, the backups kept."""
    lock = files.StoreLock(db, exclusive=True)
    try:
        aside = set_aside(db, now, "reset") if _any_file(db) else None
        files.forget_marker(db)
    finally:
        lock.release()
    kept = f"; the old store is kept as {aside}" if aside else ""
    return f"the next start creates an empty store at {db}{kept}; backups are kept in {backup_dir(db)}"


def _any_file(db: Path) -> bool:
    return any(p.exists() for p in files.side_files(db))


def _describe(found: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in found.items())
